"""kafkajs (node subprocess): admin and producer. kafkajs consumers need consumer
groups (a later issue), so what kafkajs produces is read back with confluent-kafka."""
from __future__ import annotations

import base64
import time

import pytest

from kutil import consume, create_topic, kafkajs, producer, produce_all


def test_kafkajs_admin_topics(broker, topic):
    bs = broker.bootstrap
    r = kafkajs("create-topics", bs, {"topics": [
        {"topic": topic, "numPartitions": 3, "configEntries": [{"name": "retention.ms", "value": "4242000"}]},
        {"topic": topic + "-b", "numPartitions": 1},
    ]})
    assert r["created"] is True
    # creating again: kafkajs reports "not created" (TOPIC_ALREADY_EXISTS is swallowed by createTopics)
    assert kafkajs("create-topics", bs, {"topics": [{"topic": topic, "numPartitions": 3}]})["created"] is False
    md = kafkajs("metadata", bs, {"topics": [topic]})
    assert [t["name"] for t in md["topics"]] == [topic]
    parts = md["topics"][0]["partitions"]
    assert [p["partitionId"] for p in parts] == [0, 1, 2]
    assert all(p["leader"] >= 0 and p["errorCode"] == 0 for p in parts)

    listed = kafkajs("list-topics", bs, {})["topics"]
    assert topic in listed and topic + "-b" in listed

    cfg = kafkajs("describe-configs", bs, {"topic": topic, "names": ["retention.ms", "cleanup.policy"]})
    assert cfg["errorCode"] == 0
    assert cfg["configs"] == {"retention.ms": "4242000", "cleanup.policy": "delete"}

    offs = kafkajs("offsets", bs, {"topic": topic})["offsets"]
    assert [(o["partition"], o["offset"], o["high"], o["low"]) for o in offs] == [(p, "0", "0", "0") for p in range(3)]

    r = kafkajs("create-topics", bs, {"topics": [{"topic": topic + "-v", "numPartitions": 2}], "validateOnly": True})
    assert topic + "-v" not in kafkajs("list-topics", bs, {})["topics"]

    err = kafkajs("create-topic-error", bs, {"topic": "bad name!"})
    assert err["type"] == "INVALID_TOPIC_EXCEPTION", err

    kafkajs("delete-topics", bs, {"topics": [topic, topic + "-b"]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listed = kafkajs("list-topics", bs, {})["topics"]
        if topic not in listed:
            break
        time.sleep(0.2)
    assert topic not in listed and topic + "-b" not in listed


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_kafkajs_produce_read_by_confluent(broker, topic, compression):
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    binary = bytes(range(256))
    messages = [
        {"key": "k0", "value": "plain", "partition": 0, "headers": {"h": "1", "trace-id": "abc"}},
        {"key": None, "value": "no key", "partition": 0},
        {"key": "k2", "value": None, "partition": 0},
        {"key": "k3", "value": "", "partition": 0},
        {"key": "k4", "value": {"b64": base64.b64encode(binary).decode()}, "partition": 0,
         "timestamp": 1600000000999},
        {"key": "k5", "value": "multi", "partition": 0, "headers": {"dup": ["a", "b"]}},
        {"key": "p1", "value": "to partition one", "partition": 1},
    ]
    r = kafkajs("produce", bs, {"topic": topic, "compression": compression, "acks": -1, "messages": messages})
    by_part = {x["partition"]: x for x in r["results"]}
    assert by_part[0]["errorCode"] == 0 and by_part[0]["baseOffset"] == "0"
    assert by_part[1]["errorCode"] == 0 and by_part[1]["baseOffset"] == "0"

    got = consume(bs, topic, 0)
    assert [(r.offset, r.key, r.value) for r in got] == [
        (0, b"k0", b"plain"), (1, None, b"no key"), (2, b"k2", None), (3, b"k3", b""), (4, b"k4", binary),
        (5, b"k5", b"multi")]
    assert got[0].headers == [("h", b"1"), ("trace-id", b"abc")]
    assert got[5].headers == [("dup", b"a"), ("dup", b"b")]
    assert got[4].ts == 1600000000999
    assert [r.value for r in consume(bs, topic, 1)] == [b"to partition one"]

    offs = kafkajs("offsets", bs, {"topic": topic})["offsets"]
    assert [(o["partition"], o["high"], o["low"]) for o in offs] == [(0, "6", "0"), (1, "1", "0")]


def test_kafkajs_offsets_by_timestamp(broker, topic):
    bs = broker.bootstrap
    base = 1680000000000
    p = producer(bs, linger_ms=0)
    for i in range(10):
        produce_all(p, topic, [{"value": b"v%d" % i, "timestamp": base + 1000 * i}])
    r = kafkajs("offsets-by-time", bs, {"topic": topic, "timestamp": base + 4500})
    assert r["offsets"] == [{"partition": 0, "offset": "5"}]


def test_kafkajs_produce_auto_creates(broker, topic):
    r = kafkajs("produce", broker.bootstrap, {"topic": topic, "messages": [{"key": "a", "value": "b"}]})
    assert r["results"][0]["errorCode"] == 0
    assert [(x.key, x.value) for x in consume(broker.bootstrap, topic)] == [(b"a", b"b")]
