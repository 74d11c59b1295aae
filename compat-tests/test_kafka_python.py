"""kafka-python 3.x: producer, consumer with manual assignment (no group), admin."""
from __future__ import annotations

import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import InvalidTopicError, TopicAlreadyExistsError, UnknownTopicOrPartitionError

from kutil import consume, create_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def kp_producer(bootstrap, **kw):
    # kafka-python 3.x is idempotent by default (InitProducerId); that default is
    # tested on its own in test_kafka_python_default_idempotent_producer
    kw.setdefault("enable_idempotence", False)
    return KafkaProducer(bootstrap_servers=bootstrap, request_timeout_ms=10000, **kw)


def kp_consumer(bootstrap, **kw):
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="earliest", request_timeout_ms=10000, **kw)


def poll_n(c, n, timeout=15.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=500).values():
            out.extend(recs)
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_produce_consume(broker, topic, codec):
    p = kp_producer(broker.bootstrap, compression_type=None if codec == "none" else codec, acks="all",
                    linger_ms=10)
    records = [(b"k%d" % i if i % 3 else None, b"value %d " % i * (i % 7), [("h", b"%d" % i), ("h", b"dup")])
               for i in range(60)]
    futs = [p.send(topic, key=k, value=v, headers=h, partition=0, timestamp_ms=1600000000000 + i)
            for i, (k, v, h) in enumerate(records)]
    metas = [f.get(timeout=15) for f in futs]
    p.close(timeout=5)
    assert [m.offset for m in metas] == list(range(60))

    # read back with confluent-kafka: the bytes on the wire are what kafka-python sent
    got = consume(broker.bootstrap, topic)
    assert [(r.key, r.value or b"", r.headers, r.ts) for r in got] == \
        [(k, v, h, 1600000000000 + i) for i, (k, v, h) in enumerate(records)]

    # and with kafka-python itself
    c = kp_consumer(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    c.assign([tp])
    recs = poll_n(c, 60)
    c.close()
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in recs] == \
        [(i, k, v, h) for i, (k, v, h) in enumerate(records)]


def test_kafka_python_seek_and_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    p = kp_producer(broker.bootstrap, linger_ms=0)
    base = 1650000000000
    for i in range(20):
        p.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=base + 100 * i).get(timeout=10)
    p.send(topic, value=b"p1", partition=1).get(timeout=10)
    p.close(timeout=5)

    c = kp_consumer(broker.bootstrap)
    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    c.assign([tp0, tp1])
    assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
    assert c.end_offsets([tp0, tp1]) == {tp0: 20, tp1: 1}
    found = c.offsets_for_times({tp0: base + 1050, tp1: base * 2})
    assert found[tp0].offset == 11 and found[tp0].timestamp == base + 1100
    assert found[tp1] is None
    c.seek(tp0, 15)
    c.seek(tp1, 1)
    recs = poll_n(c, 5)
    assert [(r.offset, r.value) for r in recs] == [(i, b"v%d" % i) for i in range(15, 20)]
    c.seek_to_beginning(tp0)
    recs = poll_n(c, 20)
    assert [r.offset for r in recs] == list(range(20))
    c.close()


def test_kafka_python_admin(broker, topic):
    a = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        a.create_topics({topic: {"num_partitions": 3, "replication_factor": 1,
                                 "configs": {"retention.ms": "99000"}}})
        assert topic in a.list_topics()
        desc = [t for t in a.describe_topics([topic]) if t["name"] == topic][0]
        assert len(desc["partitions"]) == 3
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
        with pytest.raises(InvalidTopicError):
            a.create_topics({"bad name!": {"num_partitions": 1, "replication_factor": 1}})

        cfg = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="all")
        tcfg = cfg["topic"][topic]
        assert tcfg["retention.ms"]["value"] == "99000"
        assert tcfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert tcfg["cleanup.policy"]["value"] == "delete"
        modified = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert set(modified) == {"retention.ms"}, modified

        a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"retention.ms": "12345"})])
        cfg = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert cfg["retention.ms"]["value"] == "12345"

        a.delete_topics([topic])
        deadline = time.monotonic() + 10
        while topic in a.list_topics() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert topic not in a.list_topics()
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([topic])
    finally:
        a.close()


def test_kafka_python_default_idempotent_producer(broker, topic):
    """kafka-python 3.x's default producer is idempotent, like Java's since 3.0: it needs
    InitProducerId and sequenced batches."""
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
    try:
        metas = [p.send(topic, key=b"k", value=b"v%d" % i).get(timeout=15) for i in range(5)]
    finally:
        p.close(timeout=5)
    assert [m.offset for m in metas] == list(range(5))
    assert [r.value for r in consume(broker.bootstrap, topic)] == [b"v%d" % i for i in range(5)]
