"""confluent-kafka AdminClient against Kairos, plus topic auto-creation."""
from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource, NewPartitions,
                                   NewTopic, ResourceType)

from kutil import (admin, consume, create_topic, kafka_error_code, producer, produce_all, wait_topic,
                   watermarks)

INVALID_TOPIC_EXCEPTION = 17
UNKNOWN_TOPIC_OR_PARTITION = 3
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_CONFIG = 40
OFFSET_OUT_OF_RANGE = 1

TOPIC_CONFIGS_THAT_MUST_EXIST = ["retention.ms", "retention.bytes", "segment.bytes", "segment.ms",
                                 "message.timestamp.type", "max.message.bytes", "cleanup.policy"]


def error_of(future, timeout=15):
    try:
        future.result(timeout)
    except KafkaException as e:
        return kafka_error_code(e)
    return None


def topic_names(a):
    return set(a.list_topics(timeout=10).topics)


def describe_topic_configs(a, topic) -> dict:
    res = ConfigResource(ResourceType.TOPIC, topic)
    return a.describe_configs([res], request_timeout=10)[res].result(10)


def test_create_topic_partitions_and_configs(broker, topic):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=5, replication_factor=1,
                                   config={"retention.ms": "123456", "cleanup.policy": "compact",
                                           "max.message.bytes": "20000"})], request_timeout=10)
    assert error_of(fs[topic]) is None
    t = wait_topic(a, topic, 5)
    assert sorted(t.partitions) == [0, 1, 2, 3, 4]
    for p in t.partitions.values():
        assert p.error is None and p.leader >= 0 and p.replicas == [p.leader] and p.isrs == [p.leader]
    cfg = describe_topic_configs(a, topic)
    for name, value in {"retention.ms": "123456", "cleanup.policy": "compact", "max.message.bytes": "20000"}.items():
        assert cfg[name].value == value
        assert cfg[name].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, (name, cfg[name].source)
        assert not cfg[name].is_default


def test_create_topic_default_partitions(broker, topic):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic)], request_timeout=10)  # num_partitions/replication_factor -1
    assert error_of(fs[topic]) is None
    assert len(wait_topic(a, topic).partitions) == 1


def test_validate_only_creates_nothing(broker, topic):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)], validate_only=True,
                         request_timeout=10)
    assert error_of(fs[topic]) is None
    time.sleep(0.3)
    assert topic not in topic_names(a)
    # validate_only still validates
    fs = a.create_topics([NewTopic("bad name!", num_partitions=1, replication_factor=1)], validate_only=True,
                         request_timeout=10)
    assert error_of(fs["bad name!"]) == INVALID_TOPIC_EXCEPTION
    # and then creating it for real works
    create_topic(a, topic, partitions=3)


def test_create_existing_topic(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, partitions=2)
    fs = a.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)], request_timeout=10)
    assert error_of(fs[topic]) == TOPIC_ALREADY_EXISTS
    assert len(wait_topic(a, topic).partitions) == 2  # unchanged


@pytest.mark.parametrize("name", ["bad name!", "..", ".", "a" * 250, "with/slash", "tab\tname", "ümlaut"])
def test_invalid_topic_names_refused(broker, name):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)], request_timeout=10)
    assert error_of(fs[name]) == INVALID_TOPIC_EXCEPTION
    assert name not in topic_names(a)


def test_longest_valid_topic_name(broker):
    a = admin(broker.bootstrap)
    name = "a" * 249
    create_topic(a, name)
    produce_all(producer(broker.bootstrap), name, [{"value": b"x"}])
    assert [r.value for r in consume(broker.bootstrap, name)] == [b"x"]


def test_invalid_create_arguments(broker, topic):
    a = admin(broker.bootstrap)
    fs = a.create_topics([NewTopic(topic + "-p0", num_partitions=0, replication_factor=1)], request_timeout=10)
    assert error_of(fs[topic + "-p0"]) == INVALID_PARTITIONS
    fs = a.create_topics([NewTopic(topic + "-cfg", num_partitions=1, replication_factor=1,
                                   config={"retention.ms": "not-a-number"})], request_timeout=10)
    assert error_of(fs[topic + "-cfg"]) == INVALID_CONFIG
    fs = a.create_topics([NewTopic(topic + "-unk", num_partitions=1, replication_factor=1,
                                   config={"no.such.config": "1"})], request_timeout=10)
    assert error_of(fs[topic + "-unk"]) == INVALID_CONFIG
    fs = a.create_topics([NewTopic(topic + "-ts", num_partitions=1, replication_factor=1,
                                   config={"message.timestamp.type": "Sometimes"})], request_timeout=10)
    assert error_of(fs[topic + "-ts"]) == INVALID_CONFIG
    names = topic_names(a)
    assert not any(n.startswith(topic) for n in names), names


def test_delete_topics(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, partitions=2)
    produce_all(producer(broker.bootstrap), topic, [{"value": b"x", "partition": 1}])
    fs = a.delete_topics([topic], request_timeout=10)
    assert error_of(fs[topic]) is None
    deadline = time.monotonic() + 10
    while topic in topic_names(a) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert topic not in topic_names(a)
    fs = a.delete_topics([topic + "-never-existed"], request_timeout=10)
    assert error_of(fs[topic + "-never-existed"]) == UNKNOWN_TOPIC_OR_PARTITION
    # re-create with the same name: empty, new partition count
    create_topic(a, topic, partitions=1)
    assert watermarks(broker.bootstrap, topic) == (0, 0)


def test_create_partitions(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, partitions=1)
    produce_all(producer(broker.bootstrap), topic, [{"value": b"p0"}])
    fs = a.create_partitions([NewPartitions(topic, 4)], request_timeout=10)
    assert error_of(fs[topic]) is None
    wait_topic(a, topic, 4)
    produce_all(producer(broker.bootstrap), topic, [{"value": b"p3", "partition": 3}])
    assert [r.value for r in consume(broker.bootstrap, topic, 3)] == [b"p3"]
    assert [r.value for r in consume(broker.bootstrap, topic, 0)] == [b"p0"]
    # shrinking or keeping the count is refused
    for n in (2, 4):
        fs = a.create_partitions([NewPartitions(topic, n)], request_timeout=10)
        assert error_of(fs[topic]) == INVALID_PARTITIONS, n
    fs = a.create_partitions([NewPartitions(topic + "-missing", 3)], request_timeout=10)
    assert error_of(fs[topic + "-missing"]) == UNKNOWN_TOPIC_OR_PARTITION


def test_describe_topic_configs_with_defaults(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, config={"retention.ms": "86400000"})
    cfg = describe_topic_configs(a, topic)
    for name in TOPIC_CONFIGS_THAT_MUST_EXIST:
        assert name in cfg, f"describe_configs lacks {name}: {sorted(cfg)}"
    assert cfg["retention.ms"].value == "86400000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert not cfg["retention.ms"].is_default
    for name in ("segment.bytes", "cleanup.policy", "message.timestamp.type", "max.message.bytes"):
        e = cfg[name]
        assert e.is_default, f"{name} should be a default"
        assert e.source in (ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value), (name, e.source)
        assert e.value not in (None, ""), name
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["message.timestamp.type"].value == "CreateTime"
    assert int(cfg["segment.bytes"].value) > 0
    assert int(cfg["max.message.bytes"].value) >= 1_000_000


def test_describe_configs_unknown_topic(broker, topic):
    a = admin(broker.bootstrap)
    res = ConfigResource(ResourceType.TOPIC, topic + "-missing")
    fut = a.describe_configs([res], request_timeout=10)[res]
    assert error_of(fut) == UNKNOWN_TOPIC_OR_PARTITION


def test_describe_broker_configs(broker):
    a = admin(broker.bootstrap)
    md = a.list_topics(timeout=10)
    broker_id = next(iter(md.brokers))
    res = ConfigResource(ResourceType.BROKER, str(broker_id))
    cfg = a.describe_configs([res], request_timeout=10)[res].result(10)
    assert len(cfg) >= 5, f"broker configs: {sorted(cfg)}"
    sources = {e.source for e in cfg.values()}
    assert sources & {ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value}, sources
    # a broker-level default for a topic config is described under its broker name
    assert any(n in cfg for n in ("log.retention.ms", "log.retention.hours", "log.segment.bytes",
                                  "num.partitions", "auto.create.topics.enable")), sorted(cfg)


def test_incremental_alter_configs_round_trip(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic)
    default_retention = describe_topic_configs(a, topic)["retention.ms"].value

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "1048576", incremental_operation=AlterConfigOpType.SET)])
    assert error_of(a.incremental_alter_configs([res], request_timeout=10)[res]) is None
    cfg = describe_topic_configs(a, topic)
    assert (cfg["retention.ms"].value, cfg["segment.bytes"].value) == ("3600000", "1048576")
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE)])
    assert error_of(a.incremental_alter_configs([res], request_timeout=10)[res]) is None
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == default_retention and cfg["retention.ms"].is_default
    assert cfg["segment.bytes"].value == "1048576"  # untouched

    bad = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)])
    assert error_of(a.incremental_alter_configs([bad], request_timeout=10)[bad]) == INVALID_CONFIG
    missing = ConfigResource(ResourceType.TOPIC, topic + "-missing", incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET)])
    assert error_of(a.incremental_alter_configs([missing], request_timeout=10)[missing]) == \
        UNKNOWN_TOPIC_OR_PARTITION


def test_alter_configs_replaces_the_set(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, config={"retention.ms": "7200000"})
    default_mmb = describe_topic_configs(a, topic)["max.message.bytes"].value
    res = ConfigResource(ResourceType.TOPIC, topic, set_config={"max.message.bytes": "5000"})
    assert error_of(a.alter_configs([res], request_timeout=10)[res]) is None
    cfg = describe_topic_configs(a, topic)
    assert cfg["max.message.bytes"].value == "5000"
    # AlterConfigs (not incremental) replaces the whole set: retention.ms is back to its default
    assert cfg["retention.ms"].is_default, cfg["retention.ms"]
    # and the new limit is enforced
    p = producer(broker.bootstrap, linger_ms=0, **{"retries": 0})
    res = produce_all(p, topic, [{"value": b"x" * 8000}], check=False)
    assert res[0][0] is not None and res[0][0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert default_mmb != "5000"


def test_delete_records(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, partitions=2)
    p = producer(broker.bootstrap, linger_ms=0)
    for i in range(10):
        produce_all(p, topic, [{"value": b"v%d" % i, "partition": 0}])
    produce_all(p, topic, [{"value": b"other", "partition": 1}])
    tp = TopicPartition(topic, 0, 6)
    res = a.delete_records([tp], request_timeout=10)
    fut = next(iter(res.values()))
    deleted = fut.result(10)
    assert deleted.low_watermark == 6
    assert watermarks(broker.bootstrap, topic, 0) == (6, 10)
    assert watermarks(broker.bootstrap, topic, 1) == (0, 1)
    assert [(r.offset, r.value) for r in consume(broker.bootstrap, topic, 0, offset=0)] == \
        [(i, b"v%d" % i) for i in range(6, 10)]
    # -1 means "up to the high watermark"
    tp = TopicPartition(topic, 0, -1)
    assert next(iter(a.delete_records([tp], request_timeout=10).values())).result(10).low_watermark == 10
    assert watermarks(broker.bootstrap, topic, 0) == (10, 10)
    # beyond the high watermark: OFFSET_OUT_OF_RANGE
    tp = TopicPartition(topic, 1, 5)
    assert error_of(next(iter(a.delete_records([tp], request_timeout=10).values()))) == OFFSET_OUT_OF_RANGE
    # new records continue at offset 10
    assert produce_all(p, topic, [{"value": b"after", "partition": 0}])[0][2] == 10


def test_describe_cluster(broker):
    a = admin(broker.bootstrap)
    d = a.describe_cluster(request_timeout=10).result(10)
    assert len(d.nodes) == 1
    node = d.nodes[0]
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    assert d.controller is not None and d.controller.id == node.id
    assert d.cluster_id, "empty cluster id"
    md = a.list_topics(timeout=10)
    assert md.cluster_id == d.cluster_id
    assert list(md.brokers) == [node.id]


def test_describe_topics_has_topic_ids(broker, topic):
    a = admin(broker.bootstrap)
    create_topic(a, topic, partitions=3)
    create_topic(a, topic + "-2")
    res = a.describe_topics(TopicCollection([topic, topic + "-2"]), request_timeout=10)
    d1, d2 = res[topic].result(10), res[topic + "-2"].result(10)
    assert d1.name == topic and len(d1.partitions) == 3
    assert str(d1.topic_id) not in ("", "AAAAAAAAAAAAAAAAAAAAAA"), f"null topic id {d1.topic_id}"
    assert str(d1.topic_id) != str(d2.topic_id)
    # stable
    again = a.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result(10)
    assert str(again.topic_id) == str(d1.topic_id)
    for p in d1.partitions:
        assert p.leader is not None and p.leader.id >= 0


def test_list_topics(broker, topic):
    a = admin(broker.bootstrap)
    for i in range(3):
        create_topic(a, f"{topic}-{i}", partitions=i + 1)
    md = a.list_topics(timeout=10)
    for i in range(3):
        t = md.topics[f"{topic}-{i}"]
        assert t.error is None and sorted(t.partitions) == list(range(i + 1))
    one = a.list_topics(topic=f"{topic}-2", timeout=10)
    assert list(one.topics) == [f"{topic}-2"]


# ------------------------------------------------------------------ auto-creation
def test_auto_create_on_produce_default_one_partition(broker, topic):
    a = admin(broker.bootstrap)
    assert topic not in topic_names(a)
    res = produce_all(producer(broker.bootstrap), topic, [{"value": b"hello"}])
    assert res[0][1:] == (0, 0)
    assert len(wait_topic(a, topic).partitions) == 1
    assert [r.value for r in consume(broker.bootstrap, topic)] == [b"hello"]
    cfg = describe_topic_configs(a, topic)
    assert cfg["cleanup.policy"].value == "delete"


def test_auto_create_partitions_flag(broker_factory, topic):
    b = broker_factory.start("--partitions", "3")
    produce_all(producer(b.bootstrap), topic, [{"value": b"x"}])
    a = admin(b.bootstrap)
    assert len(wait_topic(a, topic).partitions) == 3
    # explicit creation without a count uses the same default
    fs = a.create_topics([NewTopic(topic + "-explicit")], request_timeout=10)
    assert error_of(fs[topic + "-explicit"]) is None
    assert len(wait_topic(a, topic + "-explicit").partitions) == 3


def test_no_auto_create(broker_factory, topic):
    b = broker_factory.start("--no-auto-create")
    p = producer(b.bootstrap, **{"topic.metadata.propagation.max.ms": 1000, "message.timeout.ms": 5000})
    md = p.list_topics(topic=topic, timeout=10)  # producer metadata requests allow auto-creation
    t = md.topics[topic]
    assert t.error is not None and t.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, t.error
    res = produce_all(p, topic, [{"value": b"x"}], check=False, timeout=15)
    assert res[0][0] is not None and res[0][0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC,
                                                          KafkaError._MSG_TIMED_OUT), res[0][0]
    a = admin(b.bootstrap)
    assert topic not in topic_names(a)
    # explicit creation still works
    create_topic(a, topic)
    # a new producer: the old one has cached the topic as non-existent
    assert produce_all(producer(b.bootstrap), topic, [{"value": b"y"}])[0][2] == 0
