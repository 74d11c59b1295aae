"""Views (DESIGN.md "Views" and "View scripts"): a view defined in the console is read by
stock consumers by name, with or without a group, and holds only the kept records,
transformed, at the source's offsets; a fully dropped range never stalls a consumer
(librdkafka, kcat, kafka-python, kafkajs) nor makes kafkajs skip records after it;
compressed source batches work; a group's lag on a view is shown by the console;
produce to a view is refused; bad definitions get 4xx JSON; views survive a restart."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest
from confluent_kafka import KafkaError
from kafka import KafkaConsumer, TopicPartition as KTopicPartition

from kutil import (NODE_DIR, console_call, consume, consumer, create_topic, kafkajs, kcat,
                   produce_all, producer)


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


def make_view(broker, source, name, script):
    code, body = call(broker, "POST", "/api/v1/views", {"name": name, "source": source, "script": script})
    assert code == 201, body


def view_lag(broker, group, view) -> dict:
    """The console's committed offset, high watermark and lag of `group` on `view`, by partition."""
    code, body = call(broker, "GET", f"/api/v1/groups/{group}")
    assert code == 200, body
    return {o["partition"]: (o["committed"], o["high_watermark"], o["lag"])
            for o in body["offsets"] if o["topic"] == view}


def wait_lag(broker, group, view, want, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        got = view_lag(broker, group, view)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def kafkajs_group(args: dict, bootstrap: str, timeout: float = 60.0) -> dict:
    """compat-tests/node/kafkajs-group.js consume: subscribe, commit each record's offset + 1."""
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (NODE_DIR / "node_modules" / "kafkajs").is_dir(), "run `npm ci` in compat-tests/node"
    cp = subprocess.run([node, str(NODE_DIR / "kafkajs-group.js"), "consume", bootstrap, json.dumps(args)],
                        capture_output=True, timeout=timeout, text=True, cwd=str(NODE_DIR),
                        env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"))
    assert cp.returncode == 0, f"kafkajs-group failed:\n{cp.stdout[-2000:]}\n{cp.stderr[-3000:]}"
    return json.loads(cp.stdout.strip().splitlines()[-1])


def test_kcat_reads_a_view_with_and_without_a_group_and_lag_shows(broker, topic):
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=1)
    want = fill(broker, topic)
    view = f"{topic}-bj"
    make_view(broker, topic, view, 'json.city == "beijing"')

    # No group: partition 0 from the beginning to its end (-e must not stop early nor stall).
    cp = kcat(["-b", bs, "-C", "-t", view, "-p", "0", "-o", "beginning", "-e", "-f", "%o|%k|%s\n"])
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    lines = [l.split("|", 2) for l in cp.stdout.decode().splitlines()]
    assert [int(o) for o, _, _ in lines] == want
    assert all(json.loads(v)["city"] == "beijing" for _, _, v in lines)
    assert lines[0][1] == "k0"

    # A balanced consumer group: kcat stores each offset and commits when it closes.
    group = f"{topic}-kcat"
    cp = kcat(["-b", bs, "-G", group, view, "-c", str(len(want)), "-f", "%o\n",
               "-X", "auto.offset.reset=earliest"], timeout=60)
    assert cp.returncode == 0, cp.stderr.decode()[-2000:]
    assert [int(o) for o in cp.stdout.decode().split()] == want
    # Lag on the view: the source's high watermark minus the committed offset.
    assert wait_lag(broker, group, view, {0: (181, 181, 0)}) == {0: (181, 181, 0)}
    produce_all(producer(bs), topic, [{"value": json.dumps({"city": "paris", "price": i}).encode()}
                                      for i in range(5)])
    assert wait_lag(broker, group, view, {0: (181, 186, 5)}) == {0: (181, 186, 5)}
    code, body = call(broker, "GET", f"/api/v1/groups/{group}")
    assert body["lag"] == 5, body


def test_kafkajs_reads_a_view_with_a_group_and_without(broker, topic):
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=1)
    want = fill(broker, topic)
    view = f"{topic}-bj"
    make_view(broker, topic, view, 'json.city == "beijing"')

    group = f"{topic}-kjs"
    res = kafkajs_group({"topic": view, "groupId": group, "clientId": "kjs-view",
                         "count": len(want), "maxMs": 30000}, bs)
    assert not res["errors"], res["errors"]
    assert [int(r["offset"]) for r in res["records"]] == want
    assert all(json.loads(r["value"])["city"] == "beijing" for r in res["records"])
    assert wait_lag(broker, group, view, {0: (181, 181, 0)}) == {0: (181, 181, 0)}

    # No committed offsets: from the middle of the dropped range to the record after it.
    res = kafkajs("read", bs, {"topic": view, "partition": 0, "offset": 150, "count": 1, "maxMs": 20000})
    assert [int(r["offset"]) for r in res["records"]] == [180]


def test_kafkajs_does_not_skip_past_a_long_dropped_range(broker, topic):
    """kafkajs takes a fetch whose batches hold no record at all as 'caught up' and moves to
    the high watermark; a view must not answer that way before the high watermark."""
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=1)
    pad = "x" * 1000
    p = producer(bs, linger_ms=50)
    produce_all(p, topic, [{"value": json.dumps({"city": "paris", "pad": pad}).encode()} for _ in range(3000)]
                + [{"value": json.dumps({"city": "beijing", "n": i}).encode()} for i in range(2)])
    view = f"{topic}-bj"
    make_view(broker, topic, view, 'json.city == "beijing"')
    res = kafkajs("read", bs, {"topic": view, "partition": 0, "offset": 0, "count": 2, "maxMs": 20000})
    assert [int(r["offset"]) for r in res["records"]] == [3000, 3001]
    res = kafkajs_group({"topic": view, "groupId": f"{topic}-g", "count": 2, "maxMs": 30000}, bs)
    assert [int(r["offset"]) for r in res["records"]] == [3000, 3001]


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


ODD_VALUES = [
    b'{"city":"beijing","price":12}', b'{"city":"beijing","price":10.5}',
    b'{"city":"beijing","price":"12"}', b'{"city":"beijing"}', b'{"price":50}',
    b'{"city":"bei\\u006aing","price":11}', b'{"city":"beijing","price":1e400}',
    b'{"city":"beijing","price":99999999999999999999}', b'{"city":"beijing","price":null}',
    b'{"city":["beijing"],"price":12}', b'{"city":"beijing","price":12', b'not json',
    b'[1,2]', '{"city":"北京","price":12}'.encode(), b'{"city":"beijing","price":12,"x":"\xff"}',
    b'{"city":"beijing","price":12,"n":{"a":[1,{"b":null}]}}', None,
    b' {"price" : 10.000000000000002 , "city" : "beijing" } ',
]


@pytest.mark.parametrize("on_error", ["drop", "pass"])
def test_native_conditions_decide_like_rhai_on_odd_records(broker, topic, on_error):
    """A simple condition runs natively, anything else through rhai: a view of each, over
    records that are valid, invalid, typed oddly or null, gives librdkafka the same records."""
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_all(producer(broker.bootstrap), topic, [{"value": v} for v in ODD_VALUES])
    cond = 'json.city == "beijing" && json.price > 10'
    for name, script in [("native", cond), ("rhai", "let unused = 0; " + cond)]:
        code, body = call(broker, "POST", "/api/v1/views", {
            "name": f"{topic}-{name}", "source": topic, "script": script, "on_error": on_error})
        assert code == 201, body
    native = consume(broker.bootstrap, f"{topic}-native")
    rhai = consume(broker.bootstrap, f"{topic}-rhai")
    assert [(r.offset, r.value) for r in native] == [(r.offset, r.value) for r in rhai]
    # Compared true; compared false (10.000000000000002 > 10 is false: rhai compares floats
    # with a relative epsilon); not a JSON object, or no value: the script fails.
    fails = {6, 10, 11, 12, 14, 16}
    want = {0, 1, 5, 7, 15} | (fails if on_error == "pass" else set())
    assert {r.offset for r in native} == want
