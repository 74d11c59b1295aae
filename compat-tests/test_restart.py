"""A clean restart (SIGTERM, exit 0, start on the same data dir) keeps every topic,
config, topic id and record, and the log continues at the right offsets."""
from __future__ import annotations

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

import kproto
from kutil import admin, consume, create_topic, producer, produce_all, watermarks


def snapshot(b, topics):
    a = admin(b.bootstrap)
    md = a.list_topics(timeout=10)
    out = {}
    ids = a.describe_topics(TopicCollection(topics), request_timeout=10)
    for t in topics:
        parts = sorted(md.topics[t].partitions)
        res = ConfigResource(ResourceType.TOPIC, t)
        cfg = a.describe_configs([res], request_timeout=10)[res].result(10)
        out[t] = {
            "partitions": parts,
            "topic_id": str(ids[t].result(10).topic_id),
            "configs": {k: (v.value, v.source, v.is_default) for k, v in cfg.items()},
            "records": {p: [(r.offset, r.key, r.value, r.headers, r.ts_type, r.ts)
                            for r in consume(b.bootstrap, t, p)] for p in parts},
            "watermarks": {p: watermarks(b.bootstrap, t, p) for p in parts},
        }
    return out


def test_restart_keeps_everything(broker, topic):
    b = broker
    t1, t2, t3 = topic + "-plain", topic + "-configured", topic + "-auto"
    a = admin(b.bootstrap)
    create_topic(a, t1, partitions=3)
    create_topic(a, t2, partitions=2, config={"retention.ms": "604800001", "message.timestamp.type": "LogAppendTime"})
    res = ConfigResource(ResourceType.TOPIC, t1, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("segment.bytes", "65536", incremental_operation=AlterConfigOpType.SET)])
    a.incremental_alter_configs([res], request_timeout=10)[res].result(10)

    p = producer(b.bootstrap, compression_type="lz4", linger_ms=5)
    produce_all(p, t1, [{"key": b"k%d" % i, "value": b"value %d " % i * 30, "partition": i % 3,
                         "headers": [("n", b"%d" % i)]} for i in range(600)])  # > 65536 B: several segments
    produce_all(p, t2, [{"key": None, "value": b"v%d" % i, "partition": i % 2} for i in range(50)])
    produce_all(p, t3, [{"value": b"auto %d" % i} for i in range(10)])  # auto-created
    # delete records moves the log start; it must survive too
    from confluent_kafka import TopicPartition
    next(iter(a.delete_records([TopicPartition(t2, 1, 5)], request_timeout=10).values())).result(10)

    before = snapshot(b, [t1, t2, t3])
    assert before[t1]["configs"]["retention.ms"][0] == "3600000"
    assert before[t2]["watermarks"][1] == (5, 25)
    b.restart()
    after = snapshot(b, [t1, t2, t3])
    for t in (t1, t2, t3):
        for key in ("partitions", "topic_id", "configs", "watermarks", "records"):
            assert after[t][key] == before[t][key], f"{t}: {key} changed across restart"

    # producing continues at the old high watermarks, batches are intact
    res = produce_all(producer(b.bootstrap), t1, [{"value": b"after restart", "partition": 0}])
    assert res[0][2] == before[t1]["watermarks"][0][1]
    batches = kproto.fetch_all_batches(b.bootstrap, t1, 0)
    assert all(x.crc_ok for x in batches)

    # a second restart right away (nothing new written in between) also works
    b.restart()
    assert consume(b.bootstrap, t1, 0)[-1].value == b"after restart"


def test_restart_after_delete_and_recreate(broker, topic):
    b = broker
    a = admin(b.bootstrap)
    create_topic(a, topic, partitions=2)
    produce_all(producer(b.bootstrap), topic, [{"value": b"old", "partition": 1}])
    a.delete_topics([topic], request_timeout=10)[topic].result(10)
    create_topic(a, topic, partitions=1)
    produce_all(producer(b.bootstrap), topic, [{"value": b"new"}])
    b.restart()
    a = admin(b.bootstrap)
    md = a.list_topics(timeout=10)
    assert sorted(md.topics[topic].partitions) == [0]
    assert [r.value for r in consume(b.bootstrap, topic)] == [b"new"]
