"""Client quotas: producer_byte_rate / consumer_byte_rate per client id, as Kafka 4 has them.

Quotas are set and read through Kafka's AlterClientQuotas/DescribeClientQuotas and through
the console's /api/v1/quotas. No stock client here has an admin method for quotas
(kafka-python 3.0.12's KafkaAdminClient and confluent-kafka 2.16's AdminClient have none), so
the Kafka API is driven with kafka-python's own protocol classes (its encoder, its version
negotiation) over its admin client's connection. Enforcement is measured with
confluent-kafka (librdkafka) producers and consumers and with raw requests (kproto).

Kafka's rate is measured over 11 one-second samples and never over less than 10 s, so a
client may send 10 s worth of its quota at once before it is throttled. The runs below move
2.5 MiB at 200 KiB/s: the first 2 MiB pass at once, the rest only after ~10 s.
"""
from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer, TopicPartition
from kafka.admin import KafkaAdminClient
from kafka.protocol.admin.client_quotas import AlterClientQuotasRequest, DescribeClientQuotasRequest

import kproto
import kutil

Q = 200 * 1024                       # the quota of the enforcement tests, bytes/s
RECORD = 1024                        # record value size
TOTAL = int(2.5 * 1024 * 1024)       # bytes moved per run
INVALID_REQUEST, UNSUPPORTED_VERSION = 42, 35
API_PRODUCE, API_FETCH, API_VERSIONS = 0, 1, 18


# ------------------------------------------------------------------ Kafka API (kafka-python)
def kafka_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, client_id="quota-admin")


def _send(admin, request):
    return admin._manager.run(admin._manager.send, request)


def alter(admin, entries, validate_only=False, version=None) -> list[tuple[dict, int, str | None]]:
    """entries: [(entity {type: name|None}, ops {key: value|None (remove)})]
    -> [(entity, error_code, error_message)] in the broker's order."""
    E = AlterClientQuotasRequest.EntryData
    kw = {} if version is None else {"version": version}
    req = AlterClientQuotasRequest(
        entries=[E(entity=[E.EntityData(entity_type=t, entity_name=n) for t, n in entity.items()],
                   ops=[E.OpData(key=k, value=0.0 if v is None else float(v), remove=v is None)
                        for k, v in ops.items()])
                 for entity, ops in entries],
        validate_only=validate_only, **kw)
    resp = _send(admin, req)
    return [({e.entity_type: e.entity_name for e in entry.entity}, entry.error_code, entry.error_message)
            for entry in resp.entries]


def alter_ok(admin, entity, ops, **kw):
    [(_, code, msg)] = alter(admin, [(entity, ops)], **kw)
    assert code == 0, msg


def describe(admin, components=(), strict=False, version=None):
    """components: [(entity_type, match_type, match)] -> (error, message, {client id: {key: value}})."""
    C = DescribeClientQuotasRequest.ComponentData
    kw = {} if version is None else {"version": version}
    resp = _send(admin, DescribeClientQuotasRequest(
        components=[C(entity_type=t, match_type=m, match=n) for t, m, n in components],
        strict=strict, **kw))
    found = {}
    for entry in resp.entries or []:
        [entity] = entry.entity
        assert entity.entity_type == "client-id"
        found[entity.entity_name] = {v.key: v.value for v in entry.values}
    return resp.error_code, resp.error_message, found


def console_quotas(broker) -> dict:
    status, body = kutil.console_call(broker, "GET", "/api/v1/quotas")
    assert status == 200, body
    return {q["client_id"]: {k: v for k, v in q.items() if k != "client_id" and v is not None}
            for q in body["quotas"]}


def console_put(broker, body):
    return kutil.console_call(broker, "PUT", "/api/v1/quotas", body)


# ------------------------------------------------------------------ setting and reading quotas
def test_quotas_set_and_read_through_kafka_api_and_console(broker):
    with kafka_admin(broker) as a:
        assert describe(a) == (0, None, {})
        alter_ok(a, {"client-id": "slow"}, {"producer_byte_rate": Q})
        # v0 (non-flexible) as well as v1
        alter_ok(a, {"client-id": None}, {"consumer_byte_rate": 1_000_000}, version=0)
        want = {"slow": {"producer_byte_rate": Q}, None: {"consumer_byte_rate": 1_000_000}}
        assert describe(a)[2] == want
        assert describe(a, version=0)[2] == want
        assert console_quotas(broker) == want

        # the filters: exact name, default entity, any client id; strict
        assert describe(a, [("client-id", 0, "slow")], strict=True)[2] == {"slow": want["slow"]}
        assert describe(a, [("client-id", 1, None)])[2] == {None: want[None]}
        assert describe(a, [("client-id", 2, None)], strict=True)[2] == want
        assert describe(a, [("client-id", 0, "nobody")])[2] == {}
        assert describe(a, [("user", 2, None)])[2] == {}      # no user quotas exist
        assert describe(a, strict=True)[2] == {}

        # the console writes what the Kafka API reads, and replaces the whole entity
        status, body = console_put(broker, {"client_id": "c2", "producer_byte_rate": 1000,
                                            "consumer_byte_rate": 2000})
        assert status == 200, body
        assert body == {"client_id": "c2", "producer_byte_rate": 1000, "consumer_byte_rate": 2000}
        assert describe(a, [("client-id", 0, "c2")])[2] == {
            "c2": {"producer_byte_rate": 1000, "consumer_byte_rate": 2000}}
        status, body = console_put(broker, {"client_id": "c2", "consumer_byte_rate": 3000})
        assert status == 200 and body["producer_byte_rate"] is None, body
        assert describe(a, [("client-id", 0, "c2")])[2] == {"c2": {"consumer_byte_rate": 3000}}
        status, body = console_put(broker, {"client_id": "c2", "producer_byte_rate": None,
                                            "consumer_byte_rate": None})
        assert status == 200, body
        assert "c2" not in describe(a)[2]
        assert "c2" not in console_quotas(broker)

        # validate_only checks without changing anything
        alter_ok(a, {"client-id": "dry"}, {"producer_byte_rate": 5}, validate_only=True)
        [(_, code, _)] = alter(a, [({"client-id": "dry"}, {"producer_byte_rate": -5})], validate_only=True)
        assert code == INVALID_REQUEST
        assert "dry" not in describe(a)[2]

        # removal through the Kafka API; an entity without limits disappears
        alter_ok(a, {"client-id": None}, {"consumer_byte_rate": None})
        assert describe(a)[2] == {"slow": {"producer_byte_rate": Q}}
        assert console_quotas(broker) == {"slow": {"producer_byte_rate": Q}}


def test_quotas_survive_a_restart(broker):
    with kafka_admin(broker) as a:
        alter_ok(a, {"client-id": "kept"}, {"producer_byte_rate": 4096, "consumer_byte_rate": 8192})
    status, body = console_put(broker, {"client_id": None, "producer_byte_rate": 1 << 20})
    assert status == 200, body
    want = {"kept": {"producer_byte_rate": 4096, "consumer_byte_rate": 8192},
            None: {"producer_byte_rate": 1 << 20}}
    broker.restart()
    assert console_quotas(broker) == want
    with kafka_admin(broker) as a:
        assert describe(a)[2] == want


# ------------------------------------------------------------------ bad input
def test_bad_alterations_and_filters_over_the_kafka_api(broker):
    with kafka_admin(broker) as a:
        p = {"producer_byte_rate": 1000}
        cases = [
            ({"user": "alice"}, p, "not supported"),
            ({"ip": None}, p, "not supported"),
            ({"user": None, "client-id": "c"}, p, "not supported"),
            ({"group": "g"}, p, "Unhandled client quota entity type: group"),
            ({}, p, "Invalid empty client quota entity"),
            ({"client-id": ""}, p, "Empty client-id not supported"),
            ({"client-id": "x" * 256}, p, "255"),
            ({"client-id": "c"}, {"request_percentage": 50}, "not supported by Kairos"),
            ({"client-id": "c"}, {"controller_mutation_rate": 5}, "not supported by Kairos"),
            ({"client-id": "c"}, {"bogus": 5}, "Invalid configuration key bogus"),
            ({"client-id": "c"}, {"producer_byte_rate": 0}, "must be greater than 0"),
            ({"client-id": "c"}, {"consumer_byte_rate": -100}, "must be greater than 0"),
            ({"client-id": "c"}, {"producer_byte_rate": 1.5}, "cannot be a fractional value"),
            ({"client-id": "c"}, {"producer_byte_rate": 1e300}, "too large"),
        ]
        for entity, ops, msg in cases:
            [(_, code, message)] = alter(a, [(entity, ops)])
            assert code == INVALID_REQUEST and msg in (message or ""), (entity, ops, code, message)
        # per entity: the good one of a request is applied, the bad one is not
        res = alter(a, [({"client-id": "good"}, p), ({"client-id": "bad"}, {"producer_byte_rate": -1})])
        assert sorted((e["client-id"], code) for e, code, _ in res) == [("bad", INVALID_REQUEST), ("good", 0)]
        # an entity named twice in one request is refused
        res = alter(a, [({"client-id": "twice"}, p), ({"client-id": "twice"}, p)])
        assert [(e, code) for e, code, _ in res] == [({"client-id": "twice"}, INVALID_REQUEST)]

        bad_filters = [
            ([("bogus", 2, None)], UNSUPPORTED_VERSION),
            ([("client-id", 0, None)], INVALID_REQUEST),       # exact without a name
            ([("client-id", 1, "x")], INVALID_REQUEST),        # default with a name
            ([("client-id", 2, "x")], INVALID_REQUEST),        # any with a name
            ([("client-id", 7, None)], INVALID_REQUEST),       # unknown match type
            ([("", 2, None)], INVALID_REQUEST),
            ([("client-id", 2, None), ("client-id", 1, None)], INVALID_REQUEST),
            ([("ip", 2, None), ("client-id", 2, None)], INVALID_REQUEST),
        ]
        for components, want in bad_filters:
            code, message, found = describe(a, components)
            assert code == want and message and not found, (components, code, message)
        assert describe(a)[2] == {"good": p}
    assert console_quotas(broker) == {"good": p}


def test_bad_console_input(broker):
    bad = [
        {},                                                     # client_id is required
        {"producer_byte_rate": 1000},
        {"client_id": 7, "producer_byte_rate": 1000},
        {"client_id": "a", "producer_byte_rate": -1},
        {"client_id": "a", "producer_byte_rate": 0},
        {"client_id": "a", "consumer_byte_rate": "fast"},
        {"client_id": "a", "consumer_byte_rate": [1]},
        {"client_id": "a", "producer_byte_rate": 1.5},
        {"client_id": "a", "producer_byte_rate": 1000, "bogus": 1},
        {"client_id": "a", "request_percentage": 5},
        {"client_id": "", "producer_byte_rate": 1000},
        {"client_id": "x" * 256, "producer_byte_rate": 1000},
        [1, 2],
        b"{not json",
    ]
    for body in bad:
        status, resp = console_put(broker, body)
        assert status == 400, (body, status, resp)
        assert isinstance(resp.get("error"), str) and resp["error"], (body, resp)
    # over the console's body limit (1 MiB): refused before it is parsed
    status, resp = console_put(broker, {"client_id": "a", "pad": "x" * (2 << 20)})
    assert status in (400, 413) and resp.get("error"), (status, resp)
    # the longest client id accepted
    status, resp = console_put(broker, {"client_id": "y" * 255, "producer_byte_rate": 1000})
    assert status == 200, resp
    assert console_quotas(broker) == {"y" * 255: {"producer_byte_rate": 1000}}


# ------------------------------------------------------------------ enforcement, librdkafka
class Stats:
    """Largest throttle time librdkafka reported in its statistics (brokers[*].throttle.max, ms)."""

    def __init__(self):
        self.throttle_max = 0
        self.throttle_cnt = 0

    def __call__(self, text):
        for b in json.loads(text).get("brokers", {}).values():
            t = b.get("throttle") or {}
            self.throttle_max = max(self.throttle_max, t.get("max", 0))
            self.throttle_cnt += t.get("cnt", 0)


def produce_run(broker, topic, client_id) -> tuple[float, Stats]:
    """TOTAL bytes in RECORD-sized records: (seconds until the last delivery, stats)."""
    stats = Stats()
    p = Producer({
        "bootstrap.servers": broker.bootstrap, "client.id": client_id,
        "batch.size": 16384, "linger.ms": 5,
        "statistics.interval.ms": 200, "stats_cb": stats,
        "socket.timeout.ms": 30000, "message.timeout.ms": 60000})
    n = TOTAL // RECORD
    start = time.monotonic()
    kutil.produce_all(p, topic, [{"value": bytes([i % 251]) * RECORD} for i in range(n)], timeout=60)
    elapsed = time.monotonic() - start
    p.poll(0.5)   # a last statistics callback
    return elapsed, stats


def consume_run(broker, topic, client_id) -> tuple[float, Stats]:
    """Reads TOTAL // RECORD records from offset 0: (seconds until the last one, stats)."""
    stats = Stats()
    c = kutil.consumer(broker.bootstrap, **{
        "client.id": client_id, "statistics.interval.ms": 200, "stats_cb": stats,
        "enable.partition.eof": False})
    n = TOTAL // RECORD
    got = 0
    try:
        start = time.monotonic()
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = start + 60
        while got < n:
            assert time.monotonic() < deadline, f"{client_id}: {got} of {n} records after 60 s"
            for m in c.consume(num_messages=1000, timeout=0.2):
                assert m.error() is None, m.error()
                got += 1
        elapsed = time.monotonic() - start
        c.consume(num_messages=1, timeout=0.5)   # a last statistics callback
    finally:
        c.close()
    return elapsed, stats


def test_a_producer_is_held_to_its_producer_byte_rate(broker, topic):
    kutil.create_topic(broker.bootstrap, topic)
    with kafka_admin(broker) as a:
        alter_ok(a, {"client-id": "slow"}, {"producer_byte_rate": Q})

    fast, fast_stats = produce_run(broker, topic, "fast")
    assert fast < 5, f"an unlimited client id took {fast:.1f} s"
    assert fast_stats.throttle_max == 0

    slow, slow_stats = produce_run(broker, topic, "slow")
    rate = TOTAL / slow
    print(f"producer: unlimited {TOTAL / fast / 1024:.0f} KiB/s, slow {rate / 1024:.0f} KiB/s "
          f"over {slow:.1f} s, quota {Q // 1024} KiB/s, max throttle {slow_stats.throttle_max} ms")
    # 2 MiB pass at once (10 s of credit); the rest waits for the rate to come down
    assert slow >= 8, f"2.5 MiB at {Q} B/s took only {slow:.1f} s"
    assert rate <= 1.5 * Q, f"{rate:.0f} B/s against a quota of {Q}"
    assert rate >= 0.5 * Q, f"{rate:.0f} B/s: throttled far below the quota of {Q}"
    assert slow_stats.throttle_max > 0, "librdkafka saw no throttle time"


def test_a_consumer_is_held_to_its_consumer_byte_rate(broker, topic):
    kutil.create_topic(broker.bootstrap, topic)
    produce_run(broker, topic, "filler")
    status, body = console_put(broker, {"client_id": "slowc", "consumer_byte_rate": Q})
    assert status == 200, body

    fast, fast_stats = consume_run(broker, topic, "fastc")
    assert fast < 5, f"an unlimited client id took {fast:.1f} s"
    assert fast_stats.throttle_max == 0

    slow, slow_stats = consume_run(broker, topic, "slowc")
    rate = TOTAL / slow
    print(f"consumer: unlimited {TOTAL / fast / 1024:.0f} KiB/s, slow {rate / 1024:.0f} KiB/s "
          f"over {slow:.1f} s, quota {Q // 1024} KiB/s, max throttle {slow_stats.throttle_max} ms")
    assert slow >= 8, f"2.5 MiB at {Q} B/s took only {slow:.1f} s"
    assert rate <= 1.5 * Q, f"{rate:.0f} B/s against a quota of {Q}"
    assert rate >= 0.5 * Q, f"{rate:.0f} B/s: throttled far below the quota of {Q}"
    assert slow_stats.throttle_max > 0, "librdkafka saw no throttle time"


# ------------------------------------------------------------------ enforcement, raw requests
def produce_v7_frame(topic, records, client_id, corr, acks=1) -> bytes:
    body = kproto.string(None) + kproto.i16(acks) + kproto.i32(5000)
    body += kproto.i32(1) + kproto.string(topic) + kproto.i32(1) + kproto.i32(0) + kproto.nbytes(records)
    return kproto.request(API_PRODUCE, 7, corr, body, client_id=client_id)


def parse_produce_v7(r) -> tuple[int, int]:
    """(error of the one partition, throttle_time_ms)."""
    errors = []
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            r.i32()
            errors.append(r.i16())
            r.i64(), r.i64(), r.i64()
    [err] = errors
    return err, r.i32()


def fetch_v4(conn, topic, offset, client_id, corr) -> tuple[int, dict]:
    conn.send(kproto.request(API_FETCH, 4, corr, kproto.fetch_v4_body(topic, 0, offset), client_id=client_id))
    r = conn.recv_response(corr)
    throttle = r.i32()
    r.pos -= 4   # parse_fetch_v4 reads the throttle time itself
    return throttle, kproto.parse_fetch_v4(r)


def seconds_to_answer(conn, client_id, corr) -> float:
    """Sends ApiVersions v0 and waits for its answer."""
    start = time.monotonic()
    conn.send(kproto.request(API_VERSIONS, 0, corr, b"", client_id=client_id))
    conn.recv_response(corr)
    return time.monotonic() - start


def expected_throttle_ms(recorded_bytes, quota) -> float:
    """Kafka's throttle time for a first request: the rate is taken over 10 s."""
    rate = recorded_bytes / 10.0
    return (rate - quota) / quota * 10_000


def test_a_throttled_connection_is_muted_until_the_throttle_time_passed(broker, topic):
    kutil.create_topic(broker.bootstrap, topic)
    quota = 10_000
    with kafka_admin(broker) as a:
        alter_ok(a, {"client-id": "raw-slow"}, {"producer_byte_rate": quota})
    records = kproto.simple_batch([b"p" * 10_000] * 12)   # ~120 kB: 12 s of quota
    frame = produce_v7_frame(topic, records, "raw-slow", 1)
    with kproto.Conn(broker.bootstrap) as c, kproto.Conn(broker.bootstrap) as other:
        c.send(frame)
        err, throttle = parse_produce_v7(c.recv_response(1))
        assert err == 0
        want = expected_throttle_ms(len(frame) - 4, quota)
        assert abs(throttle - want) <= 50, (throttle, want)
        # the same client id on another connection is not muted
        assert seconds_to_answer(other, "raw-slow", 2) < 0.5
        # this connection's next request waits for the throttle time
        waited = seconds_to_answer(c, "raw-slow", 3)
        assert throttle / 1000 - 0.1 <= waited <= throttle / 1000 + 1.5, (waited, throttle)
        # afterwards it is answered at once again
        assert seconds_to_answer(c, "raw-slow", 4) < 0.5
    status, text = 0, ""
    import urllib.request
    with urllib.request.urlopen(broker.console + "/metrics", timeout=10) as r:
        status, text = r.status, r.read().decode()
    assert status == 200
    line = [ln for ln in text.splitlines()
            if ln.startswith("kairos_quota_throttle_seconds_sum") and 'client_id="raw-slow"' in ln]
    assert line and 'kind="produce"' in line[0] and float(line[0].rsplit(" ", 1)[1]) >= throttle / 1000, line


def test_a_throttled_fetch_is_answered_empty_and_mutes(broker, topic):
    kutil.create_topic(broker.bootstrap, topic)
    quota = 10_000   # at most 100 kB per fetch, 10 s of credit
    with kproto.Conn(broker.bootstrap) as c:
        for corr in (1, 2):
            c.send(produce_v7_frame(topic, kproto.simple_batch([b"f" * 10_000] * 6), "filler", corr))
            assert parse_produce_v7(c.recv_response(corr)) == (0, 0)
    status, body = console_put(broker, {"client_id": "raw-slowc", "consumer_byte_rate": quota})
    assert status == 200, body
    with kproto.Conn(broker.bootstrap) as c:
        # 60 kB: within the credit, and the 100 kB cap leaves the second batch out
        throttle, resp = fetch_v4(c, topic, 0, "raw-slowc", 1)
        assert throttle == 0
        batches = kproto.parse_batches(resp[(topic, 0)]["records"])
        assert len(batches) == 1 and batches[0].record_count == 6
        # 60 kB more would make 12 s of quota in 10: an empty answer with the throttle time
        throttle, resp = fetch_v4(c, topic, 6, "raw-slowc", 2)
        assert throttle > 1000 and resp == {}, (throttle, resp)
        waited = seconds_to_answer(c, "raw-slowc", 3)
        assert throttle / 1000 - 0.1 <= waited <= throttle / 1000 + 1.5, (waited, throttle)
        # the taken-back bytes were not counted: the same fetch is throttled again, not more
        throttle2, resp = fetch_v4(c, topic, 6, "raw-slowc", 4)
        assert resp == {} and 0 < throttle2 <= throttle, (throttle, throttle2)
    # another client id reads everything at once
    with kproto.Conn(broker.bootstrap) as c:
        throttle, resp = fetch_v4(c, topic, 6, "raw-other", 1)
        assert throttle == 0 and kproto.parse_batches(resp[(topic, 0)]["records"])
