"""Views (DESIGN.md "Views" and "View scripts"): a view defined in the console is read by
stock consumers by name, with or without a group, and holds only the kept records,
transformed, at the source's offsets; a fully dropped range never stalls a consumer
(librdkafka and kafka-python); compressed source batches work; produce to a view is
refused; bad definitions get 4xx JSON; views survive a restart."""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import KafkaError
from kafka import KafkaConsumer, TopicPartition as KTopicPartition

from kutil import console_call, consume, consumer, create_topic, produce_all, producer


def call(broker, method: str, path: str, body=None) -> tuple[int, dict]:
    return console_call(broker, method, path, body)


CITIES = ["beijing", "paris", "lima", "beijing", "oslo"]


def fill(broker, topic, codec="none"):
    """120 JSON records; then 60 that the beijing filter drops entirely; then one it keeps."""
    p = producer(broker.bootstrap, compression_type=codec, linger_ms=20)
    recs = [{"value": json.dumps({"city": CITIES[i % 5], "price": i}).encode(),
             "key": b"k%d" % i, "headers": [("n", str(i))]} for i in range(120)]
    recs += [{"value": json.dumps({"city": "paris", "price": i}).encode()} for i in range(60)]
    recs += [{"value": json.dumps({"city": "beijing", "price": 999}).encode()}]
    produce_all(p, topic, recs)
    return [i for i in range(120) if CITIES[i % 5] == "beijing"] + [180]


@pytest.mark.parametrize("codec", ["none", "lz4"])
def test_librdkafka_reads_a_filtered_view_with_a_group(broker, topic, codec):
    create_topic(broker.bootstrap, topic, partitions=1)
    want = fill(broker, topic, codec)
    code, body = call(broker, "POST", "/api/v1/views", {
        "name": f"{topic}-bj", "source": topic, "script": 'json.city == "beijing"'})
    assert code == 201, body
    c = consumer(broker.bootstrap, **{"group.id": f"{topic}-g", "enable.partition.eof": False})
    c.subscribe([f"{topic}-bj"])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < len(want) and time.monotonic() < deadline:
        for m in c.consume(100, 0.2):
            assert not m.error(), m.error()
            got.append(m)
    assert [m.offset() for m in got] == want, "source offsets, only kept records, no stall"
    assert all(json.loads(m.value())["city"] == "beijing" for m in got)
    assert got[0].key() == b"k0" and got[0].headers() == [("n", b"0")]
    c.commit(message=got[-1], asynchronous=False)
    committed = c.committed([__import__("confluent_kafka").TopicPartition(f"{topic}-bj", 0)])
    assert committed[0].offset == 181
    c.close()


def test_transform_and_kafka_python_skips_dropped_ranges(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=1)
    want = fill(broker, topic)
    code, body = call(broker, "POST", "/api/v1/views", {
        "name": f"{topic}-t", "source": topic,
        "script": 'if json.city != "beijing" { return false; } #{ city: json.city.to_upper(), p: json.price }'})
    assert code == 201, body
    kc = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False,
                       consumer_timeout_ms=15000)
    tp = KTopicPartition(f"{topic}-t", 0)
    kc.assign([tp])
    kc.seek(tp, 0)
    got = []
    for m in kc:
        got.append(m)
        if len(got) == len(want):
            break
    kc.close()
    assert [m.offset for m in got] == want
    assert json.loads(got[-1].value) == {"city": "BEIJING", "p": 999}
    # librdkafka reading from the middle of a dropped range reaches the last record too.
    recs = consume(broker.bootstrap, f"{topic}-t", offset=150, count=1)
    assert [r.offset for r in recs] == [180]


def test_view_is_read_only_and_definitions_are_checked(broker_factory, topic):
    b = broker_factory.start()
    create_topic(b.bootstrap, topic, partitions=2)
    ok = {"name": f"{topic}-v", "source": topic, "script": "true", "on_error": "pass"}
    assert call(b, "POST", "/api/v1/views", ok)[0] == 201
    code, body = call(b, "POST", "/api/v1/views", ok)
    assert code == 409 and "error" in body
    code, body = call(b, "POST", "/api/v1/views", {**ok, "name": f"{topic}-w", "script": "true &&"})
    assert code == 400 and body["line"] == 1, body
    code, body = call(b, "POST", "/api/v1/views", {**ok, "name": f"{topic}-w", "source": "nope"})
    assert code == 400 and "error" in body
    code, body = call(b, "POST", "/api/v1/views", {**ok, "name": topic})
    assert code == 409, body
    code, body = call(b, "POST", "/api/v1/views", {"name": "x"})
    assert code == 400 and "error" in body
    assert call(b, "GET", "/api/v1/views/nope")[0] == 404
    code, body = call(b, "PUT", f"/api/v1/views/{topic}-v",
                      {"source": topic, "script": "false", "on_error": "pass"})
    assert code == 200 and body["script"] == "false", body
    code, body = call(b, "GET", "/api/v1/views")
    assert [v["name"] for v in body["views"]] == [f"{topic}-v"]

    # Produce to a view: refused, nothing written to the source.
    p = producer(b.bootstrap)
    res = produce_all(p, f"{topic}-v", [{"value": b"x", "partition": 0}], check=False)
    assert res[0][0] is not None and res[0][0].code() == KafkaError.TOPIC_EXCEPTION, res
    # The view survives a restart with its definition.
    b.restart()
    code, body = call(b, "GET", f"/api/v1/views/{topic}-v")
    assert code == 200 and body["script"] == "false" and body["on_error"] == "pass"
    assert call(b, "DELETE", f"/api/v1/views/{topic}-v")[0] == 200
    assert call(b, "DELETE", f"/api/v1/views/{topic}-v")[0] == 404
