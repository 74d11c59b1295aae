"""The console's REST API (DESIGN.md "Console", `/api/v1/openapi.json`) as a user scripts
it: topics (create, detail, configs, partitions, delete), the record browser by offset
and by time, groups (lag, offset reset only while empty, delete), the broker overview,
JSON 4xx errors with body limits, the bearer token on mutating calls and the audit log.
Every call goes over real HTTP to a real broker; data goes through stock clients."""
from __future__ import annotations

import base64
import json
import time
import urllib.request

import pytest
from confluent_kafka import TopicPartition

from kutil import console_call, consumer, create_topic, produce_all, producer


def call(broker, method, path, body=None, **kw):
    return console_call(broker, method, path, body, **kw)


# ----------------------------------------------------------------------------- topics
def test_topic_lifecycle(broker, topic):
    code, body = call(broker, "POST", "/api/v1/topics",
                      {"name": topic, "partitions": 3, "configs": {"retention.ms": "3600000"}})
    assert code == 201, body
    assert body["name"] == topic and len(body["partitions"]) == 3
    assert body["configs"]["retention.ms"] == {"value": "3600000", "source": "DYNAMIC_TOPIC_CONFIG"}
    assert body["configs"]["cleanup.policy"]["source"] == "DEFAULT_CONFIG"

    # visible to a stock client, and in the list
    p = producer(broker.bootstrap)
    produce_all(p, topic, [{"value": b"x" * 100, "partition": i % 3} for i in range(30)])
    code, lst = call(broker, "GET", "/api/v1/topics")
    assert code == 200
    row = next(t for t in lst["topics"] if t["name"] == topic)
    assert row["partitions"] == 3 and row["records"] == 30 and row["bytes"] > 3000

    code, d = call(broker, "GET", f"/api/v1/topics/{topic}")
    assert code == 200
    assert [x["high_watermark"] for x in d["partitions"]] == [10, 10, 10]
    assert all(x["log_start_offset"] == 0 and x["last_stable_offset"] == 10 for x in d["partitions"])

    # configs: set one, reset another to its default
    code, d = call(broker, "PUT", f"/api/v1/topics/{topic}/configs",
                   {"configs": {"retention.ms": None, "max.message.bytes": "2000"}})
    assert code == 200, d
    assert d["configs"]["retention.ms"]["source"] == "DEFAULT_CONFIG"
    assert d["configs"]["max.message.bytes"]["value"] == "2000"
    err = producer(broker.bootstrap)
    res = produce_all(err, topic, [{"value": b"y" * 5000, "partition": 0}], check=False)
    assert res[0][0] is not None, "the new max.message.bytes applies to producers"

    code, d = call(broker, "POST", f"/api/v1/topics/{topic}/partitions", {"count": 5})
    assert code == 200 and len(d["partitions"]) == 5
    code, e = call(broker, "POST", f"/api/v1/topics/{topic}/partitions", {"count": 2})
    assert code == 400 and "partitions" in e["error"]

    code, _ = call(broker, "DELETE", f"/api/v1/topics/{topic}")
    assert code == 204
    code, e = call(broker, "GET", f"/api/v1/topics/{topic}")
    assert code == 404 and "error" in e
    code, e = call(broker, "DELETE", f"/api/v1/topics/{topic}")
    assert code == 404


@pytest.mark.parametrize("body, status, words", [
    ({"name": "bad name!"}, 400, "illegal"),
    ({"name": ""}, 400, "empty"),
    ({"name": "x" * 250}, 400, "249"),
    ({"name": "ok-topic", "partitions": 0}, 400, "partitions"),
    ({"name": "ok-topic", "partitions": 100001}, 400, "partitions"),
    ({"name": "ok-topic", "configs": {"no.such.config": "1"}}, 400, "no.such.config"),
    ({"name": "ok-topic", "configs": {"retention.ms": "soon"}}, 400, "retention.ms"),
    ({"name": "ok-topic", "replicas": 3}, 400, "replicas"),
    ({"partitions": 1}, 400, "name"),
    (b"{not json", 400, ""),
    (b"[1,2]", 400, ""),
])
def test_topic_create_bad_input(broker, body, status, words):
    code, e = call(broker, "POST", "/api/v1/topics", body)
    assert code == status, e
    assert words.lower() in e["error"].lower()
    code, lst = call(broker, "GET", "/api/v1/topics")
    assert lst["topics"] == [], "nothing was created"


def test_conflicts_limits_and_unknown_paths(broker, topic):
    assert call(broker, "POST", "/api/v1/topics", {"name": topic})[0] == 201
    code, e = call(broker, "POST", "/api/v1/topics", {"name": topic})
    assert code == 409 and "exists" in e["error"]
    assert call(broker, "POST", "/api/v1/views",
                {"name": f"{topic}-v", "source": topic, "script": "true"})[0] == 201
    code, e = call(broker, "POST", "/api/v1/topics", {"name": f"{topic}-v"})
    assert code == 409 and "view" in e["error"]
    # a body over the limit is refused before it is parsed
    big = json.dumps({"name": topic + "2", "configs": {"x": "y" * (2 << 20)}}).encode()
    code, e = call(broker, "POST", "/api/v1/topics", big)
    assert code == 413 and "error" in e
    # JSON errors for unknown paths and methods
    code, e = call(broker, "GET", "/api/v1/nope")
    assert code == 404 and "error" in e
    code, e = call(broker, "PATCH", "/api/v1/topics")
    assert code == 405 and "error" in e
    code, e = call(broker, "PUT", f"/api/v1/topics/{topic}/configs", {"configs": {"bogus": "1"}})
    assert code == 400 and "bogus" in e["error"]
    code, e = call(broker, "PUT", "/api/v1/topics/missing/configs", {"configs": {}})
    assert code == 404
    # the broker still serves Kafka clients
    produce_all(producer(broker.bootstrap), topic, [{"value": b"alive"}])


# ----------------------------------------------------------------------------- records
def test_record_browser_by_offset_and_time(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    t0 = int(time.time() * 1000) - 100_000
    recs = [{"value": f"v{i}".encode(), "key": f"k{i}".encode(), "partition": 1,
             "timestamp": t0 + i * 1000, "headers": [("h", f"{i}".encode()), ("h", b"again")]}
            for i in range(50)]
    recs.append({"value": b"\xff\x00\xfe", "key": None, "partition": 1, "timestamp": t0 + 60_000})
    produce_all(producer(broker.bootstrap, linger_ms=50), topic, recs)

    code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=1&offset=7&limit=5")
    assert code == 200, b
    assert [r["offset"] for r in b["records"]] == [7, 8, 9, 10, 11]
    assert b["next_offset"] == 12 and b["high_watermark"] == 51
    r = b["records"][0]
    assert (r["key"], r["value"], r["timestamp"]) == ("k7", "v7", t0 + 7000)
    assert r["headers"] == [{"key": "h", "value": "7"}, {"key": "h", "value": "again"}]

    # paging with next_offset reaches the end exactly
    seen, at = [], 0
    while True:
        code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=1&offset={at}&limit=13")
        seen += [r["offset"] for r in b["records"]]
        if not b["records"]:
            break
        at = b["next_offset"]
    assert seen == list(range(51))

    code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=1&timestamp={t0 + 20_500}&limit=2")
    assert [r["offset"] for r in b["records"]] == [21, 22]
    code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=1&offset=50")
    last = b["records"][0]
    assert last["key"] is None and last["value_encoding"] == "base64"
    assert base64.b64decode(last["value"]) == b"\xff\x00\xfe"
    code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=1&timestamp={t0 + 999_999}")
    assert code == 200 and b["records"] == []
    code, b = call(broker, "GET", f"/api/v1/topics/{topic}/records?partition=0")
    assert code == 200 and b["records"] == []

    for q, status in [("partition=7", 404), ("partition=x", 400), ("limit=0", 400), ("limit=1001", 400),
                      ("offset=1&timestamp=1", 400), ("color=red", 400)]:
        code, e = call(broker, "GET", f"/api/v1/topics/{topic}/records?{q}")
        assert code == status and "error" in e, (q, code, e)
    assert call(broker, "GET", "/api/v1/topics/nope/records")[0] == 404


def test_record_browser_through_a_view(broker, topic):
    create_topic(broker.bootstrap, topic)
    produce_all(producer(broker.bootstrap), topic,
                [{"value": json.dumps({"n": i}).encode()} for i in range(40)])
    assert call(broker, "POST", "/api/v1/views", {
        "name": f"{topic}-odd", "source": topic,
        "script": 'if json.n % 2 == 1 { #{n: json.n, odd: true} } else { false }'})[0] == 201
    code, b = call(broker, "GET", f"/api/v1/topics/{topic}-odd/records?offset=10&limit=3")
    assert code == 200, b
    assert [r["offset"] for r in b["records"]] == [11, 13, 15]
    assert json.loads(b["records"][0]["value"]) == {"n": 11, "odd": True}


# ----------------------------------------------------------------------------- groups
def _committed(bootstrap, group, topic, partitions):
    c = consumer(bootstrap, **{"group.id": group})
    try:
        return [tp.offset for tp in c.committed([TopicPartition(topic, p) for p in partitions], timeout=10)]
    finally:
        c.close()


def test_group_lag_reset_and_delete(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    t0 = int(time.time() * 1000) - 50_000
    produce_all(producer(broker.bootstrap), topic,
                [{"value": b"r", "partition": i % 2, "timestamp": t0 + i * 100} for i in range(40)])
    group = f"{topic}-g"
    c = consumer(broker.bootstrap, **{"group.id": group, "enable.partition.eof": False,
                                      "enable.auto.offset.store": True, "session.timeout.ms": 6000})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 30 and time.monotonic() < deadline:
        got += [m for m in c.consume(30 - len(got), 0.5) if not m.error()]
    c.commit(asynchronous=False)

    code, g = call(broker, "GET", f"/api/v1/groups/{group}")
    assert code == 200 and g["state"] == "Stable" and len(g["members"]) == 1
    assert g["lag"] == 10 and sum(o["committed"] for o in g["offsets"]) == 30

    # active member: refused, nothing changes
    code, e = call(broker, "POST", f"/api/v1/groups/{group}/reset", {"topic": topic, "to": "earliest"})
    assert code == 409 and "member" in e["error"], e
    c.close()
    code, g = call(broker, "GET", f"/api/v1/groups/{group}")
    assert g["state"] == "Empty"

    code, r = call(broker, "POST", f"/api/v1/groups/{group}/reset", {"topic": topic, "to": "earliest"})
    assert code == 200, r
    assert r["offsets"] == [{"partition": 0, "offset": 0}, {"partition": 1, "offset": 0}]
    assert _committed(broker.bootstrap, group, topic, [0, 1]) == [0, 0]
    code, g = call(broker, "GET", f"/api/v1/groups/{group}")
    assert g["lag"] == 40

    code, r = call(broker, "POST", f"/api/v1/groups/{group}/reset",
                   {"topic": topic, "to": {"offset": 5}, "partitions": [1]})
    assert code == 200 and r["offsets"] == [{"partition": 1, "offset": 5}]
    code, r = call(broker, "POST", f"/api/v1/groups/{group}/reset",
                   {"topic": topic, "to": {"offset": 10_000}, "partitions": [0]})
    assert r["offsets"] == [{"partition": 0, "offset": 20}], "clamped to the high watermark"
    # record i is at partition i % 2, offset i // 2, time t0 + 100 i: >= t0 + 1550 is i = 16 -> offset 8 (p0), i = 17 -> 8 (p1)
    code, r = call(broker, "POST", f"/api/v1/groups/{group}/reset",
                   {"topic": topic, "to": {"timestamp": t0 + 1550}})
    assert r["offsets"] == [{"partition": 0, "offset": 8}, {"partition": 1, "offset": 8}]
    code, r = call(broker, "POST", f"/api/v1/groups/{group}/reset", {"topic": topic, "to": "latest"})
    assert _committed(broker.bootstrap, group, topic, [0, 1]) == [20, 20]

    for body, status in [({"topic": "nope", "to": "latest"}, 404),
                         ({"topic": topic, "to": "tomorrow"}, 400),
                         ({"topic": topic, "to": {"offset": "x"}}, 400),
                         ({"topic": topic, "to": "latest", "partitions": [9]}, 404),
                         ({"to": "latest"}, 400)]:
        code, e = call(broker, "POST", f"/api/v1/groups/{group}/reset", body)
        assert code == status and "error" in e, (body, code, e)

    code, _ = call(broker, "DELETE", f"/api/v1/groups/{group}")
    assert code == 204
    assert call(broker, "GET", f"/api/v1/groups/{group}")[0] == 404
    assert call(broker, "DELETE", f"/api/v1/groups/{group}")[0] == 404


# ----------------------------------------------------------------------------- overview, auth, audit
def test_overview_counts_traffic(broker, topic):
    code, before = call(broker, "GET", "/api/v1/broker")
    assert code == 200
    assert before["node_id"] == 1 and before["listen"] == broker.bootstrap
    produce_all(producer(broker.bootstrap), topic, [{"value": b"z" * 1000} for _ in range(100)])
    code, after = call(broker, "GET", "/api/v1/broker")
    assert after["produce_records_total"] - before["produce_records_total"] == 100
    assert after["produce_bytes_total"] - before["produce_bytes_total"] >= 100_000
    assert after["topics"] == before["topics"] + 1 and after["uptime_ms"] >= before["uptime_ms"]


def test_token_guards_mutating_calls_and_everything_is_audited(broker_factory, topic):
    b = broker_factory.start("--console-token", "s3cret")
    code, e = call(b, "POST", "/api/v1/topics", {"name": topic})
    assert code == 401 and "token" in e["error"]
    code, e = call(b, "POST", "/api/v1/topics", {"name": topic}, token="wrong")
    assert code == 401
    assert call(b, "GET", "/api/v1/topics")[1]["topics"] == [], "refused calls change nothing"
    assert call(b, "POST", "/api/v1/topics", {"name": topic}, token="s3cret")[0] == 201
    # reads and the dry run need no token
    assert call(b, "GET", f"/api/v1/topics/{topic}")[0] == 200
    assert call(b, "POST", "/api/v1/views/test", {"script": "true", "records": [{"value": "a"}]})[0] == 200
    assert call(b, "DELETE", f"/api/v1/topics/{topic}")[0] == 401
    assert call(b, "DELETE", f"/api/v1/topics/{topic}", token="s3cret")[0] == 204

    code, audit = call(b, "GET", "/api/v1/audit")
    entries = [(x["method"], x["path"], x["status"]) for x in audit["entries"]]
    assert entries == [("POST", "/api/v1/topics", 401), ("POST", "/api/v1/topics", 401),
                       ("POST", "/api/v1/topics", 201), ("DELETE", f"/api/v1/topics/{topic}", 401),
                       ("DELETE", f"/api/v1/topics/{topic}", 204)], entries
    assert topic in audit["entries"][2]["body"]
    assert "s3cret" not in json.dumps(audit)
    log = b.log_text()
    assert log.count("kairos::audit") >= 5
    assert "s3cret" not in log.split("\n", 1)[1], "the token never reaches the log"


def test_openapi_document_matches_the_routes(broker, topic):
    code, doc = call(broker, "GET", "/api/v1/openapi.json")
    assert code == 200 and doc["openapi"].startswith("3.")
    assert {"/api/v1/topics", "/api/v1/groups/{id}/reset", "/api/v1/quotas", "/api/v1/views/test"} <= set(doc["paths"])
    create_topic(broker.bootstrap, topic)
    for path, item in doc["paths"].items():
        for method in [m for m in item if m in ("get", "post", "put", "delete")]:
            p = (path.replace("{name}", "no-such").replace("{id}", "no-such").replace("{target}", "no-such")
                 .replace("{partition}", "0").replace("{offset}", "0"))
            code, body = call(broker, method.upper(), p, {} if method in ("post", "put") else None)
            assert code != 405 and body.get("error") != "no such path", (method, path, code, body)
            assert code in item[method]["responses"] or str(code) in item[method]["responses"] or code in (400, 422), \
                (method, path, code, body)
