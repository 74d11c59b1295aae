"""Delay topics: a crash between a delivery's append to the target and the wheel's
bookkeeping must not deliver twice (src/delay module docs: intent + the wheel's own
idempotent producer sequence).

The broker is started with KAIROSTEST_CRASH_AFTER_DELAY_APPEND=1, a test hook that
aborts the process right after its first delivery reached the target log; the test
then restarts it without the hook and counts deliveries. Real process, real files."""
from __future__ import annotations

import collections
import time

import pytest

from kutil import consume, produce_all, producer

pytestmark = pytest.mark.delay

HOOK = "KAIROSTEST_CRASH_AFTER_DELAY_APPEND"


def _wait_exit(b, timeout=20.0):
    deadline = time.monotonic() + timeout
    while b.alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not b.alive(), f"the broker did not abort at the crash point\n{b.log_tail()}"
    b.exit_codes.append(b.proc.returncode)
    assert "aborting after a delivery append" in b.log_text(), b.log_tail()


def _ids(recs):
    return collections.Counter(
        (dict(r.headers or [])["kairos-delay-id"], r.ts) for r in recs)


@pytest.mark.parametrize("fsync", ["always", "interval"])
def test_crash_after_append_delivers_once(broker_factory, topic, monkeypatch, fsync):
    monkeypatch.setenv(HOOK, "1")
    b = broker_factory.start("--fsync", fsync)
    p = producer(b.bootstrap)
    first, later = 25, 10
    n = first + later
    produce_all(p, f"{topic}.delay", [
        {"value": b"v%d" % i, "headers": [("kairos-delay-ms", "400"), ("n", str(i))]}
        for i in range(first)])
    # Due after the crash and before the restart: the restarted wheel has more due records
    # than the interrupted delivery held, so only replaying exactly that delivery (same
    # records, same sequence) keeps the log's duplicate detection working.
    produce_all(p, f"{topic}.delay", [
        {"value": b"v%d" % i, "headers": [("kairos-delay-ms", "700"), ("n", str(i))]}
        for i in range(first, n)])
    _wait_exit(b)
    time.sleep(0.8)
    monkeypatch.delenv(HOOK)
    b.start()
    got = consume(b.bootstrap, topic, count=n, timeout=20)
    time.sleep(1.0)  # anything doubled would have arrived by now
    got = consume(b.bootstrap, topic, timeout=10)
    counts = _ids(got)
    assert len(got) == n, f"{len(got)} deliveries of {n} delays: {counts.most_common(3)}"
    assert all(c == 1 for c in counts.values()), counts.most_common(3)
    assert sorted(int(dict(r.headers)["n"]) for r in got) == list(range(n))
    assert "finishing a delivery interrupted by a crash" in b.log_text(), b.log_tail()
    b.assert_no_panic()


def test_crash_during_repeats_keeps_the_count(broker_factory, topic, monkeypatch):
    monkeypatch.setenv(HOOK, "1")
    b = broker_factory.start("--fsync", "always")
    p = producer(b.bootstrap)
    produce_all(p, f"{topic}.delay", [{"value": b"tick", "headers": [
        ("kairos-delay-ms", "300"), ("kairos-repeat-ms", "300"), ("kairos-repeat-count", "3")]}])
    _wait_exit(b)
    monkeypatch.delenv(HOOK)
    b.start()
    got = consume(b.bootstrap, topic, count=3, timeout=20)
    time.sleep(1.0)
    got = consume(b.bootstrap, topic, timeout=10)
    stamps = [r.ts for r in got]
    assert len(got) == 3, stamps
    assert len(set(stamps)) == 3 and stamps == sorted(stamps), stamps
    assert [b2 - a for a, b2 in zip(stamps, stamps[1:])] == [300, 300], stamps
