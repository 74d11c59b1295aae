"""Prometheus metrics at /metrics, read back after stock-client traffic (confluent-kafka).

The text is parsed strictly (families declared once with # TYPE, their samples
contiguous, labels well formed) by a small parser written here, then checked against
what the clients did: requests and latency per API, bytes and records per topic,
partition offsets, group offsets and lag, connections, delay and view series.
"""
from __future__ import annotations

import math
import re
import time
import urllib.request
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, TopicPartition

import kproto
from kproto import Conn, request
from kutil import admin, consume, console_call, consumer, create_topic, produce_all, producer, watermarks

NAME = re.compile(r"^kairos_[a-z_]+$")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", "")}


# --------------------------------------------------------------------------- the parser
@dataclass
class Scrape:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    # (sample name, labels, value, family)
    samples: list[tuple[str, dict, float, str]] = field(default_factory=list)

    def series(self, name: str, **match) -> list[tuple[dict, float]]:
        return [(l, v) for n, l, v, _ in self.samples
                if n == name and all(l.get(k) == str(w) for k, w in match.items())]

    def value(self, name: str, **labels) -> float | None:
        """The sample with exactly these labels, None if absent."""
        want = {k: str(v) for k, v in labels.items()}
        found = [v for n, l, v, _ in self.samples if n == name and l == want]
        assert len(found) <= 1, f"{name}{labels} appears {len(found)} times"
        return found[0] if found else None


def unescape(v: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), v)


def parse(text: str) -> Scrape:
    """Prometheus text format 0.0.4, strictly: a sample's family must be the one the last
    # TYPE line declared (families contiguous, each declared once)."""
    s = Scrape()
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line:
            continue
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            assert name not in s.helps, f"line {n}: second HELP for {name}"
            s.helps[name] = help_
            continue
        if line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped"), f"line {n}: {line}"
            assert name not in s.types, f"line {n}: family {name} declared twice (not contiguous)"
            current = name
            s.types[name] = kind
            continue
        assert not line.startswith("#"), f"line {n}: unexpected comment {line!r}"
        m = SAMPLE.match(line)
        assert m, f"line {n}: not a sample: {line!r}"
        name, raw_labels, raw_value = m.groups()
        assert current is not None, f"line {n}: sample before any # TYPE"
        kind = s.types[current]
        allowed = [current + suf for suf in SUFFIXES.get(kind, ("",))]
        assert name in allowed, f"line {n}: {name} inside family {current} ({kind})"
        labels = {}
        if raw_labels:
            pos = 0
            while pos < len(raw_labels):
                lm = LABEL.match(raw_labels, pos)
                assert lm, f"line {n}: bad labels {raw_labels!r}"
                assert lm.group(1) not in labels, f"line {n}: label {lm.group(1)} twice"
                labels[lm.group(1)] = unescape(lm.group(2))
                pos = lm.end()
                if pos < len(raw_labels):
                    assert raw_labels[pos] == ",", f"line {n}: bad labels {raw_labels!r}"
                    pos += 1
        value = float(raw_value)  # also +Inf, NaN
        s.samples.append((name, labels, value, current))
    return s


def scrape(broker) -> Scrape:
    with urllib.request.urlopen(broker.console + "/metrics", timeout=10) as r:
        assert r.status == 200
        assert r.headers.get("content-type", "").startswith("text/plain"), r.headers
        return parse(r.read().decode())


def wait_scrape(broker, pred, what: str, timeout: float = 10.0) -> Scrape:
    deadline = time.monotonic() + timeout
    while True:
        s = scrape(broker)
        if pred(s):
            return s
        assert time.monotonic() < deadline, f"/metrics never showed {what}"
        time.sleep(0.1)


# --------------------------------------------------------------------------- checks
def check_conventions(s: Scrape) -> None:
    """Names kairos_[a-z_]+; _total exactly on counters; histograms real (no summaries),
    with cumulative buckets ending in +Inf = _count."""
    assert s.types, "no metric families at all"
    for fam, kind in s.types.items():
        assert NAME.match(fam), f"metric name {fam!r}"
        assert kind in ("counter", "gauge", "histogram"), f"{fam} is a {kind}"
        assert (kind == "counter") == fam.endswith("_total"), f"{fam} ({kind}): _total only on counters"
    hists = [f for f, k in s.types.items() if k == "histogram"]
    for fam in hists:
        by_labels: dict[tuple, list] = {}
        for name, labels, value, f in s.samples:
            if f != fam:
                continue
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            by_labels.setdefault(key, []).append((name, labels, value))
        assert by_labels, f"histogram {fam} without samples"
        for key, rows in by_labels.items():
            buckets = [(float(l["le"]), v) for n, l, v in rows if n == fam + "_bucket"]
            counts = [v for n, _, v in rows if n == fam + "_count"]
            sums = [v for n, _, v in rows if n == fam + "_sum"]
            assert len(counts) == 1 and len(sums) == 1, f"{fam}{key}: _count {counts}, _sum {sums}"
            assert len(buckets) >= 2 and math.isinf(buckets[-1][0]), f"{fam}{key}: buckets {buckets}"
            les = [le for le, _ in buckets]
            assert les == sorted(les) and len(set(les)) == len(les), f"{fam}{key}: le order {les}"
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{fam}{key}: buckets not cumulative {buckets}"
            assert values[-1] == counts[0], f"{fam}{key}: +Inf bucket {values[-1]} != _count {counts[0]}"
            assert sums[0] >= 0


def api_count(s: Scrape, api: str) -> float:
    return s.value("kairos_requests_total", api=api) or 0.0


def topic_series(s: Scrape, topic: str) -> list:
    return [(n, l) for n, l, _, _ in s.samples if l.get("topic") == topic]


# --------------------------------------------------------------------------- tests
def test_metrics_follow_produce_consume_commit_and_delete(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    before = scrape(broker)
    check_conventions(before)

    # 300 records of 100 B, 100 per partition.
    p = producer(broker.bootstrap)
    produce_all(p, topic, [{"value": b"v" * 100, "partition": i % 3} for i in range(300)])

    # Read everything back and commit it, as group g1, with the consumer kept open.
    group = f"{topic}-g1"
    c = consumer(broker.bootstrap, **{"group.id": group})
    got = 0
    try:
        c.assign([TopicPartition(topic, i, 0) for i in range(3)])
        deadline = time.monotonic() + 20
        eofs = set()
        while len(eofs) < 3:
            assert time.monotonic() < deadline, f"read {got} of 300 records"
            for m in c.consume(num_messages=500, timeout=0.2):
                if m.error():
                    assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                    eofs.add(m.partition())
                    continue
                got += 1
        assert got == 300
        c.commit(offsets=[TopicPartition(topic, i, 100) for i in range(3)], asynchronous=False)

        during = scrape(broker)
        assert (during.value("kairos_connections") or 0) >= 1, "no open connection counted while a client is connected"
        assert during.value("kairos_connections_accepted_total") >= 2
    finally:
        c.close()
    # A record more on partition 0 after the commit: lag 1 there.
    produce_all(p, topic, [{"value": b"late", "partition": 0}])
    del p

    # Every client gone: each connection finished its last reply, so counters are final.
    after = wait_scrape(broker, lambda s: s.value("kairos_connections") == 0, "0 open connections")
    check_conventions(after)

    # Requests per API: counted, and each API's histogram counts the same requests.
    for api in ("ApiVersions", "Metadata", "Produce", "Fetch", "OffsetCommit"):
        assert api_count(after, api) > api_count(before, api), f"kairos_requests_total{{api={api}}} did not grow"
    for labels, v in after.series("kairos_requests_total"):
        n = after.value("kairos_request_duration_seconds_count", **labels)
        assert n == v, f"{labels}: histogram count {n} != requests {v}"
    assert after.types["kairos_request_duration_seconds"] == "histogram"

    # Per topic: produced bytes are what the log stored (batches verbatim), fetched ones at least that.
    produced = after.value("kairos_topic_produce_bytes_total", topic=topic)
    sizes = [after.value("kairos_partition_log_size_bytes", topic=topic, partition=i) for i in range(3)]
    assert produced == sum(sizes), (produced, sizes)
    values = 300 * 100 + 4
    assert values < produced < values + 301 * 40 + 61 * 301, f"{produced} bytes for {values} bytes of values"
    assert after.value("kairos_topic_produce_records_total", topic=topic) == 301
    assert after.value("kairos_topic_fetch_records_total", topic=topic) >= 300
    # Everything but the late record (one batch of < 100 bytes) was fetched.
    fetched = after.value("kairos_topic_fetch_bytes_total", topic=topic)
    assert fetched >= produced - 100, (fetched, produced)

    # Per partition: the offsets ListOffsets gives.
    for i in range(3):
        low, high = watermarks(broker.bootstrap, topic, i)
        assert after.value("kairos_partition_high_watermark", topic=topic, partition=i) == high == (101 if i == 0 else 100)
        assert after.value("kairos_partition_log_start_offset", topic=topic, partition=i) == low == 0
        assert sizes[i] > 100 * 100
        assert after.value("kairos_group_committed_offset", group=group, topic=topic, partition=i) == 100
        assert after.value("kairos_group_lag_records", group=group, topic=topic, partition=i) == (1 if i == 0 else 0)
    assert after.value("kairos_partitions") >= 3 and after.value("kairos_topics") >= 1

    # A deleted topic leaves no series behind (its committed offsets go with it).
    a = admin(broker.bootstrap)
    a.delete_topics([topic], request_timeout=15)[topic].result(15)
    gone = wait_scrape(broker, lambda s: not topic_series(s, topic), f"no series of the deleted topic {topic}")
    check_conventions(gone)


def test_every_family_follows_the_conventions(broker, topic):
    """Delay and view series too: a delayed record fires, a view is read."""
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap)
    produce_all(p, topic, [{"value": b'{"n": %d}' % i} for i in range(10)])
    view = f"{topic}-v"
    st, body = console_call(broker, "POST", "/api/v1/views",
                            {"name": view, "source": topic, "script": "json.n < 5"})
    assert st == 201, (st, body)
    assert len(consume(broker.bootstrap, view)) == 5
    produce_all(p, f"{topic}.delay", [{"value": b"later", "headers": [("kairos-delay-ms", b"0")]}])

    s = wait_scrape(broker, lambda s: (s.value("kairos_delay_fired_total", target=topic) or 0) >= 1,
                    "the delayed record fired")
    check_conventions(s)
    for fam in ("kairos_delay_lateness_seconds", "kairos_request_duration_seconds"):
        assert s.types.get(fam) == "histogram", f"{fam}: {s.types.get(fam)}"
    assert s.value("kairos_view_records_total", view=view, outcome="kept") == 5
    assert s.value("kairos_view_records_total", view=view, outcome="dropped") == 5
    # (A fetch still long-polling when the delayed record lands may read it through the
    # view: "later" is not JSON, so the script fails on it.)
    assert s.value("kairos_view_records_total", view=view, outcome="failed") in (0, 1)
    assert s.value("kairos_delay_ingested_total", target=topic) == 1
    # A deleted view leaves no series behind.
    assert console_call(broker, "DELETE", f"/api/v1/views/{view}")[0] == 200
    s = wait_scrape(broker, lambda s: s.value("kairos_view_records_total", view=view, outcome="kept") is None,
                    f"no series of the deleted view {view}")
    # Requests of unknown API keys are counted apart, not as some API's.
    with Conn(broker.bootstrap) as c:
        c.send(request(2000, 0, 9, b""))
        c.recv_response(9)
    s = wait_scrape(broker, lambda s: s.value("kairos_requests_total", api="unknown") == 1,
                    'kairos_requests_total{api="unknown"} 1')
    check_conventions(s)


def test_reply_before_a_long_poll_is_not_held_back(broker, topic):
    """A reply queued before a deferred one leaves at once: before, it sat in the
    connection's write buffer until the long-poll fetch behind it ended."""
    create_topic(broker.bootstrap, topic, partitions=1)
    with Conn(broker.bootstrap) as c:
        for attempt in range(3):
            # ApiVersions, then a fetch that waits 3 s for data that never comes, in one write.
            c1, c2 = 10 * attempt + 1, 10 * attempt + 2
            c.send(request(kproto.API_VERSIONS, 0, c1, kproto.api_versions_v0_body())
                   + request(kproto.API_FETCH, 4, c2, kproto.fetch_v4_body(topic, 0, 0, max_wait_ms=3000)))
            t0 = time.monotonic()
            c.recv_response(c1)
            first = time.monotonic() - t0
            c.recv_response(c2)
            second = time.monotonic() - t0
            assert first < 1.0, f"ApiVersions answered after {first:.2f} s, held behind the long poll"
            assert second > 2.5, f"the fetch answered after {second:.2f} s, before its max wait"
    s = scrape(broker)
    assert s.value("kairos_request_duration_seconds_count", api="Fetch") >= 3
    # The three long polls are in the 2.5-5 s buckets, not below.
    assert s.value("kairos_request_duration_seconds_bucket", api="Fetch", le="2.5") < \
        s.value("kairos_request_duration_seconds_bucket", api="Fetch", le="5")
