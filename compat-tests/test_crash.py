"""kill -9 under load with `--fsync always`: every acknowledged record survives, byte for
byte, at the offset its acknowledgement named; nothing appears twice; offsets stay
contiguous; the broker restarts cleanly every time.

The producer is non-idempotent with retries disabled, so a record the client did not
see acknowledged is never re-sent: any duplicate in the log is the broker's fault.
"""
from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import Producer

import kproto
from kutil import consume, create_topic, producer, produce_all, watermarks

ROUNDS = 3
PRODUCE_SECONDS = 3.0
PARTITIONS = 2


RATE_PER_S = 40_000  # paced so the producer is surely still busy when the kill comes


class LoadProducer:
    """Produces unique, sequential values at RATE_PER_S (the client keeps many
    requests in flight), and records every acknowledged one."""

    def __init__(self, bootstrap: str, topic: str, round_no: int, cap: int = 1_000_000):
        self.p: Producer = producer(bootstrap, acks="all", linger_ms=2, retries=0,
                                    **{"enable.idempotence": False, "message.timeout.ms": 5000,
                                       "socket.timeout.ms": 3000, "queue.buffering.max.messages": 20000,
                                       "reconnect.backoff.max.ms": 200,
                                       "log_level": 2})  # connection errors after the kill are expected
        self.topic = topic
        self.round = round_no
        self.cap = cap
        self.acked: dict[bytes, tuple[int, int]] = {}   # value -> (partition, offset)
        self.failed = 0
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def value(self, seq: int) -> bytes:
        # unique; the tail varies so that batches are not trivially identical
        return b"r%d-%08d|" % (self.round, seq) + bytes((seq * 7 + i) % 251 for i in range(40))

    def on_delivery(self, err, msg):
        if err is None:
            self.acked[msg.value()] = (msg.partition(), msg.offset())
        else:
            self.failed += 1

    def run(self):
        seq = 0
        t0 = time.monotonic()
        while not self.stop.is_set() and seq < self.cap:
            if seq % 500 == 0:
                ahead = seq / RATE_PER_S - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)  # (poll(timeout) returns early when a report arrives)
                self.p.poll(0)
            v = self.value(seq)
            try:
                self.p.produce(self.topic, value=v, key=b"%d" % (seq % 16), partition=seq % PARTITIONS,
                               on_delivery=self.on_delivery)
                seq += 1
            except BufferError:
                self.p.poll(0.01)
                continue
            if seq % 200 == 0:
                self.p.poll(0)
        self.sent = seq

    def start(self):
        self.thread.start()

    def finish(self):
        self.stop.set()
        self.thread.join(10)
        # whatever is still queued fails (the broker is dead): wait for every report
        self.p.flush(15)
        left = len(self.p)
        if left:
            self.p.purge(in_queue=True, in_flight=True)
            self.p.flush(5)


def read_all(bootstrap, topic):
    out = {}
    for part in range(PARTITIONS):
        low, high = watermarks(bootstrap, topic, part)
        assert low == 0
        recs = consume(bootstrap, topic, part, timeout=60) if high else []
        assert len(recs) == high, f"partition {part}: high watermark {high} but read {len(recs)} records"
        out[part] = recs
    return out


def verify(bootstrap, topic, acked: dict[bytes, tuple[int, int]]):
    logs = read_all(bootstrap, topic)
    seen: dict[bytes, tuple[int, int]] = {}
    for part, recs in logs.items():
        offsets = [r.offset for r in recs]
        assert offsets == list(range(len(recs))), f"partition {part}: offsets not contiguous"
        for r in recs:
            assert r.value not in seen, f"record {r.value[:12]!r} stored twice: {seen[r.value]} and {(part, r.offset)}"
            seen[r.value] = (part, r.offset)
    missing = [v for v in acked if v not in seen]
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {[m[:12] for m in missing[:5]]}"
    moved = [(v[:12], acked[v], seen[v]) for v in acked if acked[v] != seen[v]]
    assert not moved, f"acknowledged records at other offsets than acknowledged: {moved[:5]}"
    # byte for byte: the value encodes its key too
    for part, recs in logs.items():
        for r in recs:
            if r.value.startswith(b"marker-"):
                continue
            seq = int(r.value[r.value.index(b"-") + 1:r.value.index(b"|")])
            assert r.key == b"%d" % (seq % 16) and r.partition == seq % PARTITIONS
    return sum(len(v) for v in logs.values())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill9_under_load_loses_no_acknowledged_record(broker_factory, topic):
    b = broker_factory.start("--fsync", "always")
    create_topic(b.bootstrap, topic, partitions=PARTITIONS)
    acked_total: dict[bytes, tuple[int, int]] = {}
    for rnd in range(ROUNDS):
        lp = LoadProducer(b.bootstrap, topic, rnd)
        lp.start()
        time.sleep(PRODUCE_SECONDS)
        assert lp.thread.is_alive(), "the producer stopped before the kill"
        b.kill()  # SIGKILL while producing
        unacked_at_kill = len(lp.p)
        assert b.exit_codes[-1] == -9
        lp.finish()
        assert len(lp.acked) > 100, f"round {rnd}: only {len(lp.acked)} records acknowledged in {PRODUCE_SECONDS}s"
        assert lp.thread.is_alive() is False
        acked_total.update(lp.acked)
        print(f"round {rnd}: sent {lp.sent}, acknowledged {len(lp.acked)}, failed {lp.failed}, "
              f"unacknowledged at the kill {unacked_at_kill}")

        b.start()  # restart on the same data dir after the crash
        assert b.alive()
        stored = verify(b.bootstrap, topic, acked_total)
        print(f"round {rnd}: {stored} records in the log after restart")
        # the restarted broker serves writes that land right after the recovered tail
        res = produce_all(producer(b.bootstrap), topic, [{"value": b"marker-%d" % rnd, "partition": 0}])
        assert res[0][2] == watermarks(b.bootstrap, topic, 0)[1] - 1

    # raw check: every stored batch has a valid CRC after three crash recoveries
    for part in range(PARTITIONS):
        batches = kproto.fetch_all_batches(b.bootstrap, topic, part)
        assert all(x.crc_ok for x in batches)
        for x, y in zip(batches, batches[1:]):
            assert y.base_offset == x.last_offset + 1
    b.stop()  # clean shutdown after all that: exit 0
    b.start()
    verify(b.bootstrap, topic, acked_total)
    b.assert_no_panic()
