"""The view-script dry run (`POST /api/v1/views/test`, DESIGN.md "Console" and "View
scripts") over given records and over real records of a topic written by a stock client;
compile errors name line and column; runaway scripts are stopped; bad bodies get 4xx JSON."""
from __future__ import annotations

import json

from kutil import console_call, produce_all, producer


def post(broker, path: str, body) -> tuple[int, dict]:
    return console_call(broker, "POST", path, body)


def test_dry_run_over_real_records(broker, topic):
    p = producer(broker.bootstrap)
    values = [{"city": "beijing", "price": 12}, {"city": "paris", "price": 50},
              {"city": "beijing", "price": 3}]
    produce_all(p, topic, [{"value": json.dumps(v).encode(), "key": b"k%d" % i,
                            "headers": [("src", "t")]} for i, v in enumerate(values)])
    code, body = post(broker, "/api/v1/views/test", {
        "script": 'json.city == "beijing" && json.price > 10 && headers.src == "t"',
        "topic": topic, "partition": 0, "offset": 0})
    assert code == 200, body
    assert [r["outcome"] for r in body["results"]] == ["keep", "drop", "drop"]
    assert [r["offset"] for r in body["results"]] == [0, 1, 2]
    code, body = post(broker, "/api/v1/views/test", {
        "script": '#{ city: json.city.to_upper(), key: key }', "topic": topic, "offset": 1,
        "limit": 1})
    assert code == 200, body
    [r] = body["results"]
    assert r["outcome"] == "replace" and json.loads(r["value"]) == {"city": "PARIS", "key": "k1"}


def test_dry_run_given_records_and_errors(broker):
    code, body = post(broker, "/api/v1/views/test", {
        "script": 'if value == "x" { () } else { value + "!" }',
        "records": [{"value": "x"}, {"value": "y", "offset": 5}]})
    assert code == 200, body
    assert [r["outcome"] for r in body["results"]] == ["drop", "replace"]
    assert body["results"][1]["value"] == "y!" and body["results"][1]["offset"] == 5
    # A null value is (): calling a string method on it is a script error.
    code, body = post(broker, "/api/v1/views/test", {"script": "value.len() > 0",
                                                      "records": [{"key": "k"}]})
    assert code == 200 and body["results"][0]["outcome"] == "error", body

    code, body = post(broker, "/api/v1/views/test", {"script": "true &&\n  (", "records": []})
    assert code == 400 and body["line"] == 2 and body["column"] is not None, body

    code, body = post(broker, "/api/v1/views/test", {"script": "loop { }",
                                                      "records": [{"value": "v"}]})
    assert code == 200 and body["results"][0]["outcome"] == "error", body

    for bad in [b"{", b'{"records": []}', b'{"script": 1}', b'{"script": "true", "x": 1}']:
        code, body = post(broker, "/api/v1/views/test", bad)
        assert 400 <= code < 500 and "error" in body, (bad, code, body)
    code, body = post(broker, "/api/v1/views/test", {"script": "true", "topic": "no-such-topic"})
    assert code == 404 and "error" in body
    # The broker is unharmed.
    code, body = post(broker, "/api/v1/views/test", {"script": "true", "records": [{"value": "v"}]})
    assert code == 200 and body["results"][0]["outcome"] == "keep"
