"""confluent-kafka-python (librdkafka 2.16): produce/consume details.

Consumer groups are a later issue: every consumer here uses manual assignment."""
from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_LOG_APPEND_TIME, KafkaError, TopicPartition
from confluent_kafka.admin import OffsetSpec

import kproto
from kutil import admin, consume, consumer, create_topic, producer, produce_all, watermarks

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def test_keys_values_headers_exact(broker, topic):
    records = [
        {"key": b"k1", "value": b"v1"},
        {"key": None, "value": b"null key"},
        {"key": b"null value", "value": None},
        {"key": b"empty value", "value": b""},
        {"key": None, "value": None},
        {"key": b"dup headers", "value": b"x", "headers": [("h", b"1"), ("h", b"2"), ("other", b"3"), ("h", b"4")]},
        {"key": b"empty header value", "value": b"y", "headers": [("e", b"")]},
        {"key": b"null header value", "value": b"z", "headers": [("n", None)]},
        {"key": bytes(range(256)), "value": bytes(range(255, -1, -1)) * 40},
        {"key": "ключ".encode(), "value": "значение 値".encode(), "headers": [("ü", "ö".encode())]},
    ]
    res = produce_all(producer(broker.bootstrap), topic, records)
    assert [r[2] for r in res] == list(range(len(records)))
    got = consume(broker.bootstrap, topic)
    assert [r.offset for r in got] == list(range(len(records)))
    for rec, want in zip(got, records):
        assert rec.key == want["key"]
        assert rec.value == want["value"]
        assert rec.headers == want.get("headers"), (rec.headers, want.get("headers"))


@pytest.mark.parametrize("codec", list(CODECS))
def test_codecs_round_trip_and_stored_compressed(broker, topic, codec):
    n = 300
    records = [{"key": b"key-%d" % (i % 10), "value": (b"record %05d " % i) * 20,
                "headers": [("i", str(i).encode())]} for i in range(n)]
    p = producer(broker.bootstrap, compression_type=codec, linger_ms=20)
    produce_all(p, topic, records)
    got = consume(broker.bootstrap, topic)
    assert [(r.offset, r.key, r.value, r.headers) for r in got] == \
        [(i, r["key"], r["value"], r["headers"]) for i, r in enumerate(records)]
    batches = kproto.fetch_all_batches(broker.bootstrap, topic, 0)
    assert {b.codec for b in batches} == {CODECS[codec]}
    assert all(b.crc_ok for b in batches)
    # offsets of consecutive batches are contiguous
    for a, b in zip(batches, batches[1:]):
        assert b.base_offset == a.last_offset + 1


@pytest.mark.parametrize("acks", ["0", "1", "all"])
def test_acks(broker, topic, acks):
    create_topic(broker.bootstrap, topic)
    records = [{"key": b"k%d" % i, "value": b"acks=%s #%d" % (acks.encode(), i)} for i in range(50)]
    res = produce_all(producer(broker.bootstrap, acks=acks), topic, records)
    if acks != "0":
        assert [r[2] for r in res] == list(range(50))
    got = consume(broker.bootstrap, topic, count=50, timeout=15)
    assert [(r.offset, r.key, r.value) for r in got] == [(i, r["key"], r["value"]) for i, r in enumerate(records)]


def test_many_partitions_ordering(broker, topic):
    parts = 12
    create_topic(broker.bootstrap, topic, partitions=parts)
    p = producer(broker.bootstrap, linger_ms=10)
    # explicit partitions: each partition gets its own sequence
    explicit = [{"partition": i % parts, "value": b"p%d-seq%d" % (i % parts, i // parts)} for i in range(parts * 40)]
    produce_all(p, topic, explicit)
    # keyed records without a partition: the client's partitioner picks; per key order must hold
    keyed = [{"key": b"user-%d" % (i % 7), "value": b"keyed-%d" % i} for i in range(140)]
    keyed_res = produce_all(p, topic, keyed)

    by_partition = {}
    for part in range(parts):
        got = consume(broker.bootstrap, topic, part)
        assert [r.offset for r in got] == list(range(len(got))), f"partition {part} offsets not contiguous"
        assert [r.value for r in got[:40]] == [b"p%d-seq%d" % (part, s) for s in range(40)]
        by_partition[part] = got[40:]
    # every keyed record is where its delivery report said, in produce order per key
    for rec, (err, part, off) in zip(keyed, keyed_res):
        stored = by_partition[part][off - 40]
        assert (stored.offset, stored.key, stored.value) == (off, rec["key"], rec["value"])
    for part, recs in by_partition.items():
        keys = {r.key for r in recs}
        for k in keys:
            seq = [int(r.value.split(b"-")[1]) for r in recs if r.key == k]
            assert seq == sorted(seq)
    assert sum(len(v) for v in by_partition.values()) == len(keyed)


def test_create_time_preserved(broker, topic):
    now = int(time.time() * 1000)
    records = [{"value": b"a", "timestamp": 1600000000123},
               {"value": b"b", "timestamp": 1},
               {"value": b"c"}]
    before = int(time.time() * 1000)
    produce_all(producer(broker.bootstrap), topic, records)
    after = int(time.time() * 1000)
    got = consume(broker.bootstrap, topic)
    assert [(r.ts_type, r.ts) for r in got[:2]] == [(TIMESTAMP_CREATE_TIME, 1600000000123), (TIMESTAMP_CREATE_TIME, 1)]
    assert got[2].ts_type == TIMESTAMP_CREATE_TIME and before - 5 <= got[2].ts <= after + 5, (now, got[2])


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_log_append_time(broker, topic, codec):
    create_topic(broker.bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce_all(producer(broker.bootstrap, compression_type=codec, linger_ms=20), topic,
                [{"value": b"v%d" % i, "timestamp": 1000000000000 + i} for i in range(20)])
    after = int(time.time() * 1000)
    got = consume(broker.bootstrap, topic, conf={"check.crcs": True})
    assert [r.value for r in got] == [b"v%d" % i for i in range(20)]
    for r in got:
        assert r.ts_type == TIMESTAMP_LOG_APPEND_TIME, f"timestamp type {r.ts_type}, expected LogAppendTime (2)"
        assert before - 1000 <= r.ts <= after + 1000, f"log append time {r.ts} not in [{before}, {after}]"
    batches = kproto.fetch_all_batches(broker.bootstrap, topic, 0)
    assert all(b.log_append_time for b in batches), "batch attribute bit 3 (LogAppendTime) not set"
    assert all(b.crc_ok for b in batches), "CRC not recomputed after rewriting the batch for LogAppendTime"
    assert all(before - 1000 <= b.max_timestamp <= after + 1000 for b in batches)


@pytest.mark.parametrize("codec", ["none", "gzip"])
def test_seek_into_middle_of_batch(broker, topic, codec):
    p = producer(broker.bootstrap, linger_ms=200, compression_type=codec)
    produce_all(p, topic, [{"key": b"k%d" % i, "value": b"v%d" % i} for i in range(20)])
    batches = kproto.fetch_all_batches(broker.bootstrap, topic, 0)
    assert any(b.base_offset < 7 <= b.last_offset for b in batches), \
        f"test setup: offset 7 should be inside a batch: {[(b.base_offset, b.last_offset) for b in batches]}"
    # raw: a fetch from offset 7 starts with the whole batch that contains 7
    part, from7 = kproto.fetch_batches(broker.bootstrap, topic, 0, 7)
    assert from7 and from7[0].base_offset <= 7 <= from7[0].last_offset
    for start in (7, 13, 19, 0):
        got = consume(broker.bootstrap, topic, offset=start)
        assert [(r.offset, r.key, r.value) for r in got] == [(i, b"k%d" % i, b"v%d" % i) for i in range(start, 20)]


def test_seek_after_assign(broker, topic):
    produce_all(producer(broker.bootstrap), topic, [{"value": b"v%d" % i} for i in range(30)])
    c = consumer(broker.bootstrap)
    try:
        tp = TopicPartition(topic, 0, 0)
        c.assign([tp])
        first = None
        deadline = time.monotonic() + 15
        while first is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                first = m
        assert first is not None and first.offset() == 0
        c.seek(TopicPartition(topic, 0, 21))
        got = []
        while len(got) < 9 and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.value()))
        assert got == [(i, b"v%d" % i) for i in range(21, 30)]
    finally:
        c.close()


def test_offsets_for_times_and_watermarks(broker, topic):
    base = 1700000000000
    # one batch per record so that every timestamp lookup is unambiguous
    p = producer(broker.bootstrap, linger_ms=0)
    stamps = [base + 1000 * i for i in range(10)]
    stamps[6] = base + 50_000  # the max timestamp is in the middle of the log
    for i, ts in enumerate(stamps):
        produce_all(p, topic, [{"value": b"v%d" % i, "timestamp": ts}])
    assert watermarks(broker.bootstrap, topic) == (0, 10)

    c = consumer(broker.bootstrap)
    try:
        q = [TopicPartition(topic, 0, base + 3500)]
        res = c.offsets_for_times(q, timeout=10)
        assert res[0].error is None and res[0].offset == 4
        res = c.offsets_for_times([TopicPartition(topic, 0, base)], timeout=10)
        assert res[0].offset == 0
        # a timestamp after every record: the end of the log (-1 from the broker)
        res = c.offsets_for_times([TopicPartition(topic, 0, base + 100_000)], timeout=10)
        assert res[0].offset in (-1, 10), res[0]
        # first record with timestamp >= ts: record 6 has the largest timestamp
        res = c.offsets_for_times([TopicPartition(topic, 0, base + 9500)], timeout=10)
        assert res[0].offset == 6
    finally:
        c.close()

    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, want in ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10),
                       (OffsetSpec.for_timestamp(base + 2000), 2)):
        r = a.list_offsets({tp: spec}, request_timeout=10)[tp].result(10)
        assert r.offset == want, (spec, r)


def test_list_offsets_max_timestamp(broker, topic):
    base = 1700000000000
    p = producer(broker.bootstrap, linger_ms=0)
    stamps = [base + i for i in range(8)]
    stamps[3] = base + 99_999
    for i, ts in enumerate(stamps):
        produce_all(p, topic, [{"value": b"v%d" % i, "timestamp": ts}])
    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    r = a.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)[tp].result(10)
    assert (r.offset, r.timestamp) == (3, base + 99_999)


def test_long_poll_woken_by_new_data(broker, topic):
    create_topic(broker.bootstrap, topic)
    c = consumer(broker.bootstrap, **{"fetch.wait.max.ms": 5000, "fetch.min.bytes": 1,
                                      "enable.partition.eof": False})
    received = {}

    def poll_loop():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and not m.error():
                received["t"] = time.monotonic()
                received["value"] = m.value()
                return

    try:
        c.assign([TopicPartition(topic, 0, 0)])
        t = threading.Thread(target=poll_loop)
        t.start()
        time.sleep(1.0)  # the consumer is now parked in a long-poll Fetch on an empty partition
        p = producer(broker.bootstrap, linger_ms=0)
        sent = time.monotonic()
        produce_all(p, topic, [{"value": b"wake up"}])
        t.join(25)
        assert received.get("value") == b"wake up", "consumer never received the record"
        elapsed = received["t"] - sent
        assert elapsed < 3.0, (f"record arrived {elapsed:.2f}s after produce: the 5 s long-poll was not woken "
                               "by new data")
    finally:
        c.close()


def test_raw_fetch_long_poll_waits_when_empty(broker, topic):
    """A Fetch with max_wait 1000 ms on an empty partition waits (~1 s), not 0 s and not forever."""
    create_topic(broker.bootstrap, topic)
    with kproto.Conn(broker.bootstrap) as conn:
        t0 = time.monotonic()
        conn.send(kproto.request(kproto.API_FETCH, 4, 1, kproto.fetch_v4_body(topic, 0, 0, max_wait_ms=1000)))
        resp = kproto.parse_fetch_v4(conn.recv_response(1))
        dt = time.monotonic() - t0
    assert resp[(topic, 0)]["error"] == 0
    assert resp[(topic, 0)]["records"] == b""
    assert 0.8 <= dt <= 3.0, f"empty long-poll answered after {dt:.2f}s, expected ~1 s"


def test_small_fetch_limits_still_progress(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = producer(broker.bootstrap, linger_ms=0)
    # every record (3000 B) is larger than the consumer's fetch limits
    for i in range(12):
        produce_all(p, topic, [{"partition": i % 2, "value": (b"%04d" % i) * 750}])
    conf = {"fetch.max.bytes": 1024, "max.partition.fetch.bytes": 512,
            "message.max.bytes": 1000, "receive.message.max.bytes": 4096}
    for part in range(2):
        got = consume(broker.bootstrap, topic, part, conf=conf, timeout=20)
        assert [r.value for r in got] == [(b"%04d" % i) * 750 for i in range(part, 12, 2)]


def test_fetch_limits_many_small_records(broker, topic):
    # small producer batches (~13 records) so that each fits the consumer's small limits
    p = producer(broker.bootstrap, linger_ms=50, **{"batch.size": 1500})
    records = [{"value": b"%06d" % i + b"." * 100} for i in range(2000)]
    produce_all(p, topic, records)
    got = consume(broker.bootstrap, topic, conf={"fetch.max.bytes": 2048, "max.partition.fetch.bytes": 1024,
                                                  "message.max.bytes": 1000, "receive.message.max.bytes": 8192})
    assert [r.value for r in got] == [r["value"] for r in records]


def test_record_over_max_message_bytes_refused(broker, topic):
    create_topic(broker.bootstrap, topic, config={"max.message.bytes": "10000"})
    p = producer(broker.bootstrap, linger_ms=0, **{"message.max.bytes": 2_000_000, "retries": 0})
    import os
    big = os.urandom(50_000)  # incompressible anyway; no compression configured
    res = produce_all(p, topic, [{"value": big}], check=False)
    err = res[0][0]
    assert err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE, \
        f"expected MESSAGE_TOO_LARGE (10), got {err}"
    # a record under the limit still goes through, at offset 0 (nothing was stored)
    ok = produce_all(p, topic, [{"value": b"small"}])
    assert ok[0][2] == 0
    assert [r.value for r in consume(broker.bootstrap, topic)] == [b"small"]


def test_consume_empty_and_out_of_range(broker, topic):
    create_topic(broker.bootstrap, topic)
    assert consume(broker.bootstrap, topic) == []
    produce_all(producer(broker.bootstrap), topic, [{"value": b"only"}])
    # auto.offset.reset=earliest: an offset past the end resets to 0 via OFFSET_OUT_OF_RANGE
    got = consume(broker.bootstrap, topic, offset=100, count=1, conf={"auto.offset.reset": "earliest"})
    assert [(r.offset, r.value) for r in got] == [(0, b"only")]
    # raw: fetch past the end -> OFFSET_OUT_OF_RANGE (1)
    part, _ = kproto.fetch_batches(broker.bootstrap, topic, 0, 100)
    assert part["error"] == 1, f"fetch at offset 100 of a 1-record log: error {part['error']}, expected 1"


def test_idempotent_producer(broker, topic):
    """enable.idempotence=true: InitProducerId, then sequenced batches stored verbatim."""
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap, linger_ms=5, **{"enable.idempotence": True, "batch.num.messages": 50})
    records = [{"partition": i % 3, "key": b"k%d" % i, "value": b"idem-%d" % i} for i in range(600)]
    produce_all(p, topic, records)
    for part in range(3):
        got = consume(broker.bootstrap, topic, part)
        assert [r.value for r in got] == [b"idem-%d" % i for i in range(part, 600, 3)]
        batches = kproto.fetch_all_batches(broker.bootstrap, topic, part)
        assert len({b.producer_id for b in batches}) == 1 and batches[0].producer_id >= 0
        assert batches[0].base_sequence == 0
        for a, b in zip(batches, batches[1:]):
            assert b.base_sequence == a.base_sequence + a.record_count, "sequence numbers not contiguous"
