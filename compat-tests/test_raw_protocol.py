"""Raw requests for APIs the stock clients use only implicitly."""
from __future__ import annotations

import time

import pytest

import kproto
from kproto import Conn, i32, request, string
from kutil import consume, create_topic, producer, produce_all

API_OFFSET_FOR_LEADER_EPOCH = 23


def offset_for_leader_epoch_v2(bootstrap, topic, partitions: list[tuple[int, int, int]]):
    """[(partition, current_leader_epoch, leader_epoch)] -> {partition: (error, leader_epoch, end_offset)}"""
    body = i32(1) + string(topic) + i32(len(partitions))
    for p, cur, ep in partitions:
        body += i32(p) + i32(cur) + i32(ep)
    with Conn(bootstrap) as c:
        c.send(request(API_OFFSET_FOR_LEADER_EPOCH, 2, 31, body))
        r = c.recv_response(31)
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            err, part, epoch, end = r.i16(), r.i32(), r.i32(), r.i64()
            out[part] = (err, epoch, end)
    return out


def test_offset_for_leader_epoch(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_all(producer(broker.bootstrap), topic, [{"value": b"x", "partition": 0}] * 5)
    res = offset_for_leader_epoch_v2(broker.bootstrap, topic, [(0, -1, 0), (1, -1, 0), (7, -1, 0)])
    assert res[0] == (0, 0, 5), res[0]      # the single epoch 0 ends at the log end offset
    assert res[1] == (0, 0, 0), res[1]
    assert res[7][0] == 3, res[7]           # UNKNOWN_TOPIC_OR_PARTITION
    res = offset_for_leader_epoch_v2(broker.bootstrap, topic + "-missing", [(0, -1, 0)])
    assert res[0][0] == 3


def test_metadata_v1_unknown_topic_auto_created(broker, topic):
    """Metadata v1-v3 have no allow_auto_topic_creation flag: auto-creation applies."""
    with Conn(broker.bootstrap) as c:
        for attempt in range(20):
            c.send(request(kproto.API_METADATA, 1, 40 + attempt, kproto.metadata_v1_body([topic])))
            md = kproto.parse_metadata_v1(c.recv_response(40 + attempt))
            t = md["topics"][topic]
            if t["error"] == 0:
                break
            assert t["error"] == 5, t  # LEADER_NOT_AVAILABLE while being created, as in Kafka
    assert t["error"] == 0 and [p[0] for p in t["partitions"]] == [0]
    node_id = md["brokers"][0][0]
    assert md["controller"] == node_id
    assert t["partitions"][0][2:] == (node_id, [node_id], [node_id])


def test_metadata_v1_no_auto_create(broker_factory, topic):
    b = broker_factory.start("--no-auto-create")
    with Conn(b.bootstrap) as c:
        c.send(request(kproto.API_METADATA, 1, 3, kproto.metadata_v1_body([topic])))
        md = kproto.parse_metadata_v1(c.recv_response(3))
    assert md["topics"][topic]["error"] == 3


# ------------------------------------------------------------------ KIP-848 consumer groups
# Error codes (org.apache.kafka.common.protocol.Errors).
UNKNOWN_MEMBER_ID, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID = 25, 23, 24
UNSUPPORTED_VERSION, INVALID_REQUEST, GROUP_ID_NOT_FOUND, MEMBER_ID_REQUIRED = 35, 42, 69, 79
FENCED_MEMBER_EPOCH, UNSUPPORTED_ASSIGNOR, STALE_MEMBER_EPOCH, INVALID_REGULAR_EXPRESSION = 110, 112, 113, 128

KIP848 = pytest.mark.kip848


def join_848(conn, group, member_id, topics, **fields):
    """A first ConsumerGroupHeartbeat v1 (epoch 0) subscribing to `topics`."""
    return kproto.consumer_group_heartbeat(conn, group, member_id, 0, rebalance_timeout_ms=30000,
                                           subscribed_topic_names=topics, topic_partitions={}, **fields)


def hb_848(conn, group, member_id, epoch, owned=None, **fields):
    return kproto.consumer_group_heartbeat(conn, group, member_id, epoch, topic_partitions=owned, **fields)


def describe_848(conn, group):
    [g] = kproto.consumer_group_describe(conn, [group])
    return g


_T = ["the-topic"]
_JOIN = {"rebalance_timeout_ms": 30000, "subscribed_topic_names": _T, "topic_partitions": {}}


@KIP848
@pytest.mark.parametrize("member_id, epoch, fields, code", [
    pytest.param("", 0, _JOIN, INVALID_REQUEST, id="v1-empty-member-id"),
    pytest.param("m1", 0, {"rebalance_timeout_ms": 30000, "topic_partitions": {}}, INVALID_REQUEST,
                 id="epoch0-no-subscription"),
    pytest.param("m1", 0, {"subscribed_topic_names": _T, "topic_partitions": {}}, INVALID_REQUEST,
                 id="epoch0-no-rebalance-timeout"),
    pytest.param("m1", 0, {"rebalance_timeout_ms": 30000, "subscribed_topic_names": _T}, INVALID_REQUEST,
                 id="epoch0-owned-partitions-null"),
    pytest.param("m1", -3, {}, INVALID_REQUEST, id="epoch-minus-3"),
    pytest.param("m1", -2, {}, INVALID_REQUEST, id="static-leave-without-instance-id"),
    pytest.param("m1", 0, {**_JOIN, "instance_id": ""}, INVALID_REQUEST, id="empty-instance-id"),
    pytest.param("m1", 0, {**_JOIN, "rack_id": ""}, INVALID_REQUEST, id="empty-rack-id"),
    pytest.param("m1", 0, {**_JOIN, "server_assignor": "nope"}, UNSUPPORTED_ASSIGNOR, id="unknown-assignor"),
    pytest.param("m1", 0, {"rebalance_timeout_ms": 30000, "topic_partitions": {}, "subscribed_topic_regex": "("},
                 INVALID_REGULAR_EXPRESSION, id="invalid-regex"),
    # Kafka answers GROUP_ID_NOT_FOUND; Kairos chooses UNKNOWN_MEMBER_ID on purpose (librdkafka
    # rejoins on it, while GROUP_ID_NOT_FOUND is no rejoin signal for it): see consumer_heartbeat
    pytest.param("m1", 3, {}, UNKNOWN_MEMBER_ID, id="epoch3-unknown-group"),
])
def test_consumer_group_heartbeat_refused(broker, member_id, epoch, fields, code):
    """Invalid ConsumerGroupHeartbeat v1 requests get Kafka 4's error codes (with a message)
    and create no group."""
    group = "g-refused"
    with Conn(broker.bootstrap) as c:
        r = kproto.consumer_group_heartbeat(c, group, member_id, epoch, **fields)
        assert r["error"] == code, r
        assert r["message"], f"no error message: {r}"
        assert r["assignment"] is None, r
        assert describe_848(c, group)["error"] == GROUP_ID_NOT_FOUND


@KIP848
@pytest.mark.parametrize("fields", [
    pytest.param({"subscribed_topic_names": []}, id="empty-names"),
    pytest.param({"subscribed_topic_regex": ""}, id="empty-regex"),
])
def test_consumer_group_heartbeat_join_without_topics(broker, fields):
    """Kafka 4 accepts a member joining with an empty list of names or an empty regex (only
    both null is INVALID_REQUEST): it is a member of the group with no partitions."""
    with Conn(broker.bootstrap) as c:
        r = kproto.consumer_group_heartbeat(c, "g-empty-sub", "m1", 0, rebalance_timeout_ms=30000,
                                            topic_partitions={}, **fields)
        assert r["error"] == 0, r
        assert r["member_epoch"] >= 1 and r["assignment"] == {}, r
        g = describe_848(c, "g-empty-sub")
        assert g["error"] == 0 and [m["member_id"] for m in g["members"]] == ["m1"], g


@KIP848
def test_consumer_group_heartbeat_join_fence_leave(broker, topic):
    """A member joins (epoch >= 1, its member id, heartbeat interval 5000 ms, every partition by
    topic id from Metadata v12), heartbeats, is fenced for a future epoch, and leaves."""
    create_topic(broker.bootstrap, topic, partitions=3)
    tid = kproto.topic_ids(broker.bootstrap, [topic])[topic]
    group = "g-flow"
    with Conn(broker.bootstrap) as c:
        r = join_848(c, group, "member-a", [topic])
        assert r["error"] == 0 and r["message"] is None, r
        assert r["member_id"] == "member-a", r
        assert r["member_epoch"] >= 1, r
        assert r["heartbeat_interval_ms"] == 5000, r
        assert r["assignment"] == {tid: [0, 1, 2]}, r
        epoch = r["member_epoch"]
        print("first member's epoch:", epoch)

        # a plain heartbeat (nothing changed): same epoch, no assignment sent
        r = hb_848(c, group, "member-a", epoch)
        assert (r["error"], r["member_epoch"], r["assignment"]) == (0, epoch, None), r
        # a full heartbeat (what a client sends after a reconnect) gets the assignment again
        r = hb_848(c, group, "member-a", epoch, owned={tid: [0, 1, 2]}, rebalance_timeout_ms=30000,
                   subscribed_topic_names=[topic])
        assert (r["error"], r["member_epoch"], r["assignment"]) == (0, epoch, {tid: [0, 1, 2]}), r

        g = describe_848(c, group)
        assert (g["error"], g["state"], g["group_epoch"], g["assignment_epoch"], g["assignor"]) == \
            (0, "Stable", epoch, epoch, "uniform"), g
        [m] = g["members"]
        assert m["member_id"] == "member-a" and m["member_epoch"] == epoch and m["client_id"] == "kairos-raw"
        assert m["subscribed_topic_names"] == [topic] and m["subscribed_topic_regex"] is None
        assert m["assignment"] == {topic: {"id": tid, "partitions": [0, 1, 2]}}
        assert m["target_assignment"] == m["assignment"]
        [g1] = kproto.consumer_group_describe(c, [group], version=1)
        assert g1["members"][0]["member_type"] == 1, g1   # v1: 1 = consumer-protocol member

        # an epoch ahead of the member's: FENCED_MEMBER_EPOCH
        r = hb_848(c, group, "member-a", epoch + 6)
        assert r["error"] == FENCED_MEMBER_EPOCH and r["message"], r
        # an unknown member of an existing group: UNKNOWN_MEMBER_ID
        r = hb_848(c, group, "member-x", 3)
        assert r["error"] == UNKNOWN_MEMBER_ID, r
        # the fenced request changed nothing
        r = hb_848(c, group, "member-a", epoch)
        assert (r["error"], r["member_epoch"]) == (0, epoch), r

        # leave: epoch -1 answers -1; the member is gone, the group Empty
        r = hb_848(c, group, "member-a", -1)
        assert (r["error"], r["member_id"], r["member_epoch"]) == (0, "member-a", -1), r
        g = describe_848(c, group)
        assert (g["error"], g["state"], g["members"]) == (0, "Empty", []), g
        assert g["group_epoch"] > epoch, g
        r = hb_848(c, group, "member-a", epoch)
        assert r["error"] == UNKNOWN_MEMBER_ID, r


@KIP848
def test_consumer_group_heartbeat_v0_member_id_from_the_coordinator(broker, topic):
    """v0 (before KIP-1082): a member joins with an empty member id and the coordinator
    chooses one; later heartbeats use it."""
    create_topic(broker.bootstrap, topic, partitions=1)
    with Conn(broker.bootstrap) as c:
        r = kproto.consumer_group_heartbeat(c, "g-v0", "", 0, version=0, rebalance_timeout_ms=30000,
                                            subscribed_topic_names=[topic], topic_partitions={})
        assert r["error"] == 0 and r["member_id"] and r["member_epoch"] >= 1, r
        r2 = kproto.consumer_group_heartbeat(c, "g-v0", r["member_id"], r["member_epoch"], version=0)
        assert (r2["error"], r2["member_epoch"]) == (0, r["member_epoch"]), r2
        r3 = kproto.consumer_group_heartbeat(c, "g-v0", "", r["member_epoch"], version=0)
        assert r3["error"] == INVALID_REQUEST, r3


@KIP848
def test_consumer_group_states_reconciling_assigning(broker, topic):
    """ListGroups v5 / ConsumerGroupDescribe states of a consumer group driven by raw
    heartbeats: Stable -> Reconciling (a partition moves: the owner must revoke it first;
    the newcomer gets it only once released) -> Stable -> Assigning (a member left, no
    target yet) -> Stable -> Empty. A partition is never assigned to two members."""
    create_topic(broker.bootstrap, topic, partitions=2)
    tid = kproto.topic_ids(broker.bootstrap, [topic])[topic]
    group = "g-states"

    def state():
        listed = kproto.list_groups_v5(c)[group]
        assert listed["type"] == "consumer" and listed["protocol_type"] == "consumer", listed
        d = describe_848(c, group)
        assert d["state"] == listed["state"], (d["state"], listed)
        assert group in kproto.list_groups_v5(c, states=[listed["state"]], types=["consumer"])
        assert group not in kproto.list_groups_v5(c, types=["classic"])
        return listed["state"]

    with Conn(broker.bootstrap) as c:
        a = join_848(c, group, "A", [topic])
        assert a["assignment"] == {tid: [0, 1]}, a
        ea = a["member_epoch"]
        assert state() == "Stable"
        assert group not in kproto.list_groups_v5(c, states=["Empty", "Reconciling", "Assigning"])

        b = join_848(c, group, "B", [topic])
        eb = b["member_epoch"]
        assert b["error"] == 0 and eb > ea, b
        assert b["assignment"] == {}, f"B got a partition A still owns: {b}"
        assert state() == "Reconciling"
        # A is told to keep one partition (revoking the other) at its old epoch
        r = hb_848(c, group, "A", ea)
        assert r["error"] == 0 and r["member_epoch"] == ea, r
        assert r["assignment"] is not None and len(r["assignment"][tid]) == 1, r
        keep = r["assignment"][tid]
        # B still gets nothing while A has not confirmed the revocation
        r = hb_848(c, group, "B", eb)
        assert r["error"] == 0 and r["assignment"] in (None, {}), r
        assert state() == "Reconciling"
        # A confirms (owns only what it keeps): new epoch
        r = hb_848(c, group, "A", ea, owned={tid: keep})
        assert r["error"] == 0 and r["member_epoch"] == eb, r
        # now B gets the released partition
        r = hb_848(c, group, "B", eb, owned={})
        assert r["error"] == 0 and r["assignment"] == {tid: sorted({0, 1} - set(keep))}, r
        assert state() == "Stable"

        r = hb_848(c, group, "B", -1)
        assert (r["error"], r["member_epoch"]) == (0, -1), r
        assert state() == "Assigning"
        assert group in kproto.list_groups_v5(c, states=["Assigning"])
        r = hb_848(c, group, "A", eb, owned={tid: keep})
        assert r["error"] == 0 and r["member_epoch"] > eb and r["assignment"] == {tid: [0, 1]}, r
        assert state() == "Stable"

        r = hb_848(c, group, "A", -1)
        assert r["error"] == 0, r
        assert state() == "Empty"
        assert group in kproto.list_groups_v5(c, states=["Empty"], types=["consumer"])


@KIP848
def test_offset_commit_fetch_member_epoch(broker, topic):
    """OffsetCommit v9 / OffsetFetch v9 from a consumer-group member must carry its current
    epoch (STALE_MEMBER_EPOCH otherwise), an unknown member is UNKNOWN_MEMBER_ID, and
    OffsetCommit v8 from a member is UNSUPPORTED_VERSION."""
    create_topic(broker.bootstrap, topic, partitions=2)
    group = "g-commit"
    with Conn(broker.bootstrap) as c:
        e = join_848(c, group, "A", [topic])["member_epoch"]

        def commit(version, epoch, member, offset=5):
            return kproto.offset_commit_flex(c, version, group, epoch, member, {topic: [(0, offset), (1, offset)]})

        ok = {(topic, 0): 0, (topic, 1): 0}
        assert commit(9, e, "A") == ok
        for bad in (e - 1, e + 1, 0):
            assert commit(9, bad, "A", 9) == {k: STALE_MEMBER_EPOCH for k in ok}, bad
        assert commit(9, e, "nobody", 9) == {k: UNKNOWN_MEMBER_ID for k in ok}
        # a commit without member (admin, or a consumer without group management) to an active group
        assert commit(9, -1, "", 9) == {k: UNKNOWN_MEMBER_ID for k in ok}
        # a member of a consumer group cannot commit below v9
        assert commit(8, e, "A", 9) == {k: UNSUPPORTED_VERSION for k in ok}

        f = kproto.offset_fetch_v9(c, group, "A", e, {topic: [0, 1]})
        assert f == {"error": 0, "offsets": {(topic, 0): (5, 0), (topic, 1): (5, 0)}}, f
        f = kproto.offset_fetch_v9(c, group, "A", e - 1, {topic: [0, 1]})
        assert f["error"] == STALE_MEMBER_EPOCH, f
        f = kproto.offset_fetch_v9(c, group, "nobody", e, {topic: [0, 1]})
        assert f["error"] == UNKNOWN_MEMBER_ID, f
        f = kproto.offset_fetch_v9(c, group, None, -1, None)   # admin: all offsets
        assert f == {"error": 0, "offsets": {(topic, 0): (5, 0), (topic, 1): (5, 0)}}, f

        # once the group is empty, commits without a member are accepted again (v8 and v9)
        assert hb_848(c, group, "A", -1)["error"] == 0
        assert commit(9, -1, "", 7) == ok
        assert commit(8, -1, "", 8) == ok
        f = kproto.offset_fetch_v9(c, group, None, -1, {topic: [0, 1]})
        assert f["offsets"] == {(topic, 0): (8, 0), (topic, 1): (8, 0)}, f


@KIP848
def test_offset_commit_v8_without_member_to_active_consumer_group(broker, topic):
    """Kafka checks the member before the version: an OffsetCommit v8 without member id
    (generation -1, e.g. a classic client committing by hand into the group's name) to a
    consumer group with members is UNKNOWN_MEMBER_ID, as it is for v9
    (ConsumerGroup.validateOffsetCommit: getOrMaybeCreateMember throws first)."""
    create_topic(broker.bootstrap, topic, partitions=1)
    with Conn(broker.bootstrap) as c:
        join_848(c, "g-v8", "A", [topic])
        res = kproto.offset_commit_flex(c, 8, "g-v8", -1, "", {topic: [(0, 1)]})
        assert res == {(topic, 0): UNKNOWN_MEMBER_ID}, res


@KIP848
def test_consumer_group_describe_and_classic_join(broker, topic):
    """ConsumerGroupDescribe: unknown group and classic group -> GROUP_ID_NOT_FOUND, empty id ->
    INVALID_GROUP_ID. A classic JoinGroup to a consumer group with members ->
    INCONSISTENT_GROUP_PROTOCOL (the member is untouched); to an empty consumer group it is
    accepted (MEMBER_ID_REQUIRED, the v4+ first round trip) and the group becomes classic."""
    create_topic(broker.bootstrap, topic, partitions=1)
    bs = broker.bootstrap
    with Conn(bs) as c:
        groups = kproto.consumer_group_describe(c, ["g-nope", ""])
        assert [(g["group_id"], g["error"]) for g in groups] == [("g-nope", GROUP_ID_NOT_FOUND), ("", INVALID_GROUP_ID)]
        # a classic group (only committed offsets, no member)
        res = kproto.offset_commit_flex(c, 8, "g-classic", -1, "", {topic: [(0, 1)]})
        assert res == {(topic, 0): 0}
        assert describe_848(c, "g-classic")["error"] == GROUP_ID_NOT_FOUND

        r = join_848(c, "g-848", "A", [topic])
        epoch = r["member_epoch"]
        meta = kproto.consumer_subscription_v0([topic])
        j = kproto.join_group_v5(c, "g-848", protocols=[("range", meta)])
        assert j["error"] == INCONSISTENT_GROUP_PROTOCOL, j
        j = kproto.join_group_v5(c, "g-848", protocol_type="other", protocols=[("x", b"")])
        assert j["error"] == INCONSISTENT_GROUP_PROTOCOL, j
        g = describe_848(c, "g-848")
        assert g["error"] == 0 and [(m["member_id"], m["member_epoch"]) for m in g["members"]] == [("A", epoch)], g
        assert hb_848(c, "g-848", "A", epoch)["error"] == 0

        assert hb_848(c, "g-848", "A", -1)["error"] == 0
        j = kproto.join_group_v5(c, "g-848", protocols=[("range", meta)])
        assert j["error"] == MEMBER_ID_REQUIRED and j["member_id"], j
        assert describe_848(c, "g-848")["error"] == GROUP_ID_NOT_FOUND


# ------------------------------------------------------------------ idempotent and transactional producers
# Marker `txn`. Error codes are kproto's (org.apache.kafka.common.protocol.Errors).
TXN = pytest.mark.txn
K = kproto
NEVER_ISSUED_PID = 7_777_777_777    # no broker hands out ids this high in a test


def hw(bs, topic, partition=0, isolation_level=0) -> int:
    """Latest offset from ListOffsets v2: the high watermark (read_uncommitted) or the
    last stable offset (read_committed)."""
    err, off = K.list_offsets_v2(bs, topic, [partition], -1, isolation_level)[partition]
    assert err == 0, f"ListOffsets error {err}"
    return off


def batch(values, pid, epoch, seq, txn=False):
    return K.producer_batch([v if isinstance(v, bytes) else v.encode() for v in values], pid, epoch, seq,
                            transactional=txn)


def wait_for(cond, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout}s) waiting for {what}")
        time.sleep(interval)


def init_txn(conn, txn_id, timeout_ms=60000, version=4):
    """InitProducerId for a transactional id, retried while CONCURRENT_TRANSACTIONS (a previous
    transaction of the id being aborted), as clients do -> (producer id, epoch)."""
    deadline = time.monotonic() + 15
    while True:
        err, pid, epoch = K.init_producer_id(conn, txn_id, timeout_ms, version=version)
        if err != K.CONCURRENT_TRANSACTIONS or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert err == 0 and pid >= 0 and epoch >= 0, (err, pid, epoch)
    return pid, epoch


@TXN
def test_init_producer_id_idempotent_and_transactional(broker):
    """Without a transactional id every InitProducerId hands out a new producer id at epoch 0
    (any timeout: Java's idempotent producer sends Integer.MAX_VALUE, librdkafka -1); with one,
    the same id comes back with the epoch bumped each time. Every version 0-4 answers."""
    bs = broker.bootstrap
    with Conn(bs) as c:
        seen = set()
        for version, timeout in [(0, -1), (1, 60000), (2, 2147483647), (3, 0), (4, 2147483647)]:
            err, pid, epoch = K.init_producer_id(c, None, timeout, version=version)
            assert (err, epoch) == (0, 0) and pid >= 0, (version, err, pid, epoch)
            assert pid not in seen, f"producer id {pid} handed out twice"
            seen.add(pid)
        txn_ids = {}
        for version in range(5):
            err, pid, epoch = K.init_producer_id(c, f"tx-init-{version}", 30000, version=version)
            assert (err, epoch) == (0, 0) and pid not in seen, (version, err, pid, epoch)
            seen.add(pid)
            txn_ids[f"tx-init-{version}"] = pid
        for tid, pid in txn_ids.items():
            for bump in (1, 2):
                assert K.init_producer_id(c, tid, 30000) == (0, pid, bump)
        d = K.describe_transactions(c, list(txn_ids))
        for tid, pid in txn_ids.items():
            assert d[tid]["error"] == 0 and d[tid]["state"] == "Empty", d[tid]
            assert (d[tid]["producer_id"], d[tid]["producer_epoch"], d[tid]["timeout_ms"]) == (pid, 2, 30000)
            assert d[tid]["partitions"] == {}


@TXN
def test_init_producer_id_with_producer_id_and_epoch(broker):
    """InitProducerId v3+ carrying the producer's current id and epoch (KIP-360, sent by clients
    recovering from an abortable error), as Kafka's TransactionCoordinator answers it: the current
    epoch is bumped; a retry with the epoch before that bump gets the current epoch back without
    another bump; any other epoch or another producer id -> PRODUCER_FENCED (v4+;
    INVALID_PRODUCER_EPOCH below v4); an id without an epoch or an epoch without an id ->
    INVALID_REQUEST."""
    bs = broker.bootstrap
    with Conn(bs) as c:
        pid, e0 = init_txn(c, "tx-kip360")
        assert e0 == 0

        def ipid(producer_id, epoch, version=4):
            return K.init_producer_id(c, "tx-kip360", 60000, producer_id=producer_id, producer_epoch=epoch,
                                      version=version)

        got = {"bump (pid, 0)": ipid(pid, 0)}
        got["retry (pid, 0)"] = ipid(pid, 0)
        got["unknown epoch (pid, 7) v4"] = ipid(pid, 7)[0]
        got["unknown epoch (pid, 7) v3"] = ipid(pid, 7, version=3)[0]
        got["other id (pid+1000, 1)"] = ipid(pid + 1000, 1)[0]
        got["id without epoch (pid, -1)"] = ipid(pid, -1)[0]
        got["epoch without id (-1, 1)"] = ipid(-1, 1)[0]
        got["plain, no id (-1, -1)"] = ipid(-1, -1)
        assert got == {"bump (pid, 0)": (0, pid, 1), "retry (pid, 0)": (0, pid, 1),
                       "unknown epoch (pid, 7) v4": K.PRODUCER_FENCED,
                       "unknown epoch (pid, 7) v3": K.INVALID_PRODUCER_EPOCH,
                       "other id (pid+1000, 1)": K.PRODUCER_FENCED,
                       "id without epoch (pid, -1)": 42, "epoch without id (-1, 1)": 42,
                       "plain, no id (-1, -1)": (0, pid, 2)}, got


@TXN
def test_idempotent_init_producer_id_never_hands_out_foreign_ids(broker, topic):
    """An InitProducerId without transactional id but with a producer id and epoch (Kafka ignores
    them and hands out a new id) must not give the caller a producer id it cannot use (one never
    issued, which Produce then refuses with UNKNOWN_PRODUCER_ID) nor one that belongs to a
    transactional id."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    with Conn(bs) as c:
        tpid, tep = init_txn(c, "tx-owner")
        tpid, tep = init_txn(c, "tx-owner")       # epoch 1
        problems = []
        err, pid, ep = K.init_producer_id(c, None, -1, producer_id=NEVER_ISSUED_PID, producer_epoch=0)
        if err == 0:
            res = K.produce_v7(c, topic, 0, batch(["x"], pid, ep, 0))
            if res[0] != 0:
                problems.append(f"InitProducerId answered producer id {pid} epoch {ep} for a never-issued id, "
                                f"and Produce then refuses it: {res}")
        err, pid, ep = K.init_producer_id(c, None, -1, producer_id=tpid, producer_epoch=tep - 1)
        if err == 0 and pid == tpid:
            res = K.produce_v7(c, topic, 0, batch(["y"], pid, ep, 0))
            problems.append(f"an idempotent producer was given the producer id {pid} (epoch {ep}) of transactional "
                            f"id tx-owner (epoch {tep}); a Produce with it answered {res}")
        assert not problems, problems


@TXN
def test_idempotent_produce_dedupe_gaps_epochs_unknown_ids(broker, topic):
    """Per-partition producer state: a retried batch among the last 5 is acknowledged with its
    original offset and not written again; an older one, or a gap, is OUT_OF_ORDER_SEQUENCE_NUMBER;
    a producer id never issued is UNKNOWN_PRODUCER_ID; a bumped epoch (Java's idempotent producer
    bumps it locally, KIP-360) must start at sequence 0 and fences the older epoch
    (INVALID_PRODUCER_EPOCH). Refused batches are not written."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    with Conn(bs) as c:
        err, pid, ep = K.init_producer_id(c, None, 2147483647)
        assert err == 0
        b0 = batch(["a0", "a1", "a2"], pid, ep, 0)
        b1 = batch(["b0", "b1"], pid, ep, 3)
        assert K.produce_v7(c, topic, 0, b0) == (0, 0)
        assert K.produce_v7(c, topic, 0, b1) == (0, 3)
        assert K.produce_v7(c, topic, 0, b0) == (0, 0), "duplicate of a recent batch: original offset"
        assert K.produce_v7(c, topic, 0, b1) == (0, 3)
        assert hw(c, topic) == 5, "a duplicate was written twice"

        assert K.produce_v7(c, topic, 0, batch(["gap"], pid, ep, 7))[0] == K.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert hw(c, topic) == 5
        singles = [batch([f"s{s}"], pid, ep, s) for s in range(5, 11)]     # offsets 5..10
        for s, x in zip(range(5, 11), singles):
            assert K.produce_v7(c, topic, 0, x) == (0, s)
        # the 5 latest batches (seq 6..10) are remembered, seq 5 and b1 no longer
        assert K.produce_v7(c, topic, 0, singles[1]) == (0, 6)
        assert K.produce_v7(c, topic, 0, singles[5]) == (0, 10)
        assert K.produce_v7(c, topic, 0, b1)[0] == K.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert hw(c, topic) == 11

        for seq in (0, 42):
            res = K.produce_v7(c, topic, 0, batch(["ghost"], NEVER_ISSUED_PID, 0, seq))
            assert res[0] == K.UNKNOWN_PRODUCER_ID, (seq, res)
        assert hw(c, topic) == 11

        assert K.produce_v7(c, topic, 0, batch(["e1-bad"], pid, ep + 1, 11))[0] == K.OUT_OF_ORDER_SEQUENCE_NUMBER
        assert K.produce_v7(c, topic, 0, batch(["e1"], pid, ep + 1, 0)) == (0, 11)
        assert K.produce_v7(c, topic, 0, batch(["stale"], pid, ep, 11))[0] == K.INVALID_PRODUCER_EPOCH
        assert hw(c, topic) == 12

        got = consume(bs, topic, conf={"isolation.level": "read_uncommitted"})
        assert [r.value for r in got] == [b"a0", b"a1", b"a2", b"b0", b"b1"] + [b"s%d" % s for s in range(5, 11)] + [b"e1"]
        stored = [(x.base_offset, x.producer_id, x.producer_epoch, x.base_sequence, x.record_count)
                  for x in K.fetch_all_batches(bs, topic)]
        assert stored == [(0, pid, ep, 0, 3), (3, pid, ep, 3, 2)] + \
            [(s, pid, ep, s, 1) for s in range(5, 11)] + [(11, pid, ep + 1, 0, 1)], stored

        prod = K.describe_producers(c, topic, [0, 9])
        assert prod[9]["error"] == K.UNKNOWN_TOPIC_OR_PARTITION, prod[9]
        assert prod[0]["error"] == 0, prod[0]
        st = prod[0]["producers"][pid]
        assert (st["epoch"], st["last_sequence"], st["txn_start_offset"]) == (ep + 1, 0, -1), st
        assert NEVER_ISSUED_PID not in prod[0]["producers"]


@TXN
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_idempotent_dedupe_across_restart(broker_factory, topic, how):
    """The producer state survives a clean restart and a kill -9: a batch retried after the
    restart is acknowledged with its original offset, a gap is still refused, the sequence
    continues, and producer ids are never handed out twice."""
    b = broker_factory.start()
    bs = b.bootstrap
    create_topic(bs, topic)
    err, pid, ep = K.init_producer_id(bs, None, -1)
    assert err == 0
    batches = [batch([f"r{k}-{j}" for j in range(3)], pid, ep, 3 * k) for k in range(4)]
    assert [K.produce_v7(bs, topic, 0, x) for x in batches] == [(0, 0), (0, 3), (0, 6), (0, 9)]
    if how == "sigterm":
        b.restart()
    else:
        b.kill()
        b.start()
    for k in (3, 2, 0):
        assert K.produce_v7(bs, topic, 0, batches[k]) == (0, 3 * k), f"batch {k} retried after the restart"
    assert hw(bs, topic) == 12
    assert K.produce_v7(bs, topic, 0, batch(["gap"], pid, ep, 15))[0] == K.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert K.produce_v7(bs, topic, 0, batch(["next"], pid, ep, 12)) == (0, 12)
    assert K.produce_v7(bs, topic, 0, batch(["next"], pid, ep, 12)) == (0, 12)
    err, pid2, ep2 = K.init_producer_id(bs, None, -1)
    assert err == 0 and pid2 != pid, (pid, pid2)
    got = consume(bs, topic, conf={"isolation.level": "read_uncommitted"})
    assert [r.value for r in got] == [b"r%d-%d" % (k, j) for k in range(4) for j in range(3)] + [b"next"]


@TXN
def test_transaction_markers_lso_and_aborted_list(broker, topic):
    """A transactional producer by hand: produce to a partition not added -> INVALID_TXN_STATE;
    AddPartitionsToTxn, produce, EndTxn commit writes a commit marker (a control batch, type 1),
    abort an abort marker (type 0). While a transaction is open, Fetch read_committed stops at
    the last stable offset (its first offset) and ListOffsets read_committed answers it, while
    read_uncommitted sees everything. Fetch read_committed lists the aborted transaction.
    A retried EndTxn commit after the commit is answered without error and writes nothing."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    tid = "tx-markers"
    with Conn(bs) as c:
        pid, ep = init_txn(c, tid)
        assert K.produce_v7(c, topic, 0, batch(["x"], pid, ep, 0, txn=True), transactional_id=tid)[0] \
            == K.INVALID_TXN_STATE
        assert hw(c, topic) == 0

        assert K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0]}) == {(topic, 0): 0}
        assert K.produce_v7(c, topic, 0, batch(["c0", "c1"], pid, ep, 0, txn=True), transactional_id=tid) == (0, 0)
        assert K.produce_v7(c, topic, 0, batch(["c0", "c1"], pid, ep, 0, txn=True), transactional_id=tid) == (0, 0), \
            "a retried transactional batch must be answered with its offset and not written again"
        assert K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0]}) == {(topic, 0): 0}, "adding it again is fine"
        # a non-transactional idempotent producer writes after the open transaction
        err, ipid, iep = K.init_producer_id(c, None, -1)
        assert K.produce_v7(c, topic, 0, batch(["i0", "i1"], ipid, iep, 0)) == (0, 2)

        assert (hw(c, topic, 0, 0), hw(c, topic, 0, 1)) == (4, 0)
        f = K.fetch_v4(c, topic, 0, 0, isolation_level=1)
        assert (f["error"], f["high_watermark"], f["lso"]) == (0, 4, 0), f
        assert f["batches"] == [], "read_committed Fetch returned data beyond the last stable offset"
        f = K.fetch_v4(c, topic, 0, 0, isolation_level=0)
        assert [(x.base_offset, x.record_count) for x in f["batches"]] == [(0, 2), (2, 2)]
        assert f["batches"][0].attributes & K.ATTR_TRANSACTIONAL and not f["batches"][1].attributes & K.ATTR_TRANSACTIONAL
        d = K.describe_transactions(c, [tid])[tid]
        assert (d["state"], d["producer_id"], d["producer_epoch"], d["partitions"]) == ("Ongoing", pid, ep, {topic: [0]}), d
        prod = K.describe_producers(c, topic, [0])[0]["producers"]
        assert prod[pid]["txn_start_offset"] == 0 and prod[pid]["last_sequence"] == 1, prod
        assert prod[ipid]["txn_start_offset"] == -1, prod

        assert K.end_txn(c, tid, pid, ep, True) == 0
        wait_for(lambda: hw(c, topic, 0, 1) == 5, 5, "the last stable offset after the commit")
        assert hw(c, topic) == 5
        wait_for(lambda: K.describe_transactions(c, [tid])[tid]["state"] == "CompleteCommit", 5, "CompleteCommit")
        assert K.end_txn(c, tid, pid, ep, True) == 0, "a retried EndTxn commit must succeed"
        assert K.end_txn(c, tid, pid, ep, False) == K.INVALID_TXN_STATE
        assert hw(c, topic) == 5, "the retried EndTxn wrote another marker"

        # a second transaction, aborted; the sequence continues within the epoch
        assert K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0]}, version=1) == {(topic, 0): 0}
        assert K.produce_v7(c, topic, 0, batch(["a0", "a1"], pid, ep, 2, txn=True), transactional_id=tid) == (0, 5)
        assert K.end_txn(c, tid, pid, ep, False, version=1) == 0
        wait_for(lambda: hw(c, topic, 0, 1) == 8, 5, "the last stable offset after the abort")
        wait_for(lambda: K.describe_transactions(c, [tid])[tid]["state"] == "CompleteAbort", 5, "CompleteAbort")

        f = K.fetch_v4(c, topic, 0, 0, isolation_level=1)
        assert (f["high_watermark"], f["lso"]) == (8, 8), f
        assert f["aborted"] == [(pid, 5)], f"aborted transactions: {f['aborted']}"
        f = K.fetch_v4(c, topic, 0, 5, isolation_level=1)
        assert f["aborted"] == [(pid, 5)], f"aborted transactions from offset 5: {f['aborted']}"
        batches = K.fetch_all_batches(bs, topic)
        assert [(x.base_offset, x.producer_id, K.control_type(x)) for x in batches] == \
            [(0, pid, None), (2, ipid, None), (4, pid, 1), (5, pid, None), (7, pid, 0)], batches
        assert all(x.crc_ok for x in batches)
        assert batches[2].attributes & (K.ATTR_CONTROL | K.ATTR_TRANSACTIONAL) == K.ATTR_CONTROL | K.ATTR_TRANSACTIONAL

    committed = consume(bs, topic)   # librdkafka's default isolation.level: read_committed
    assert [(r.offset, r.value) for r in committed] == [(0, b"c0"), (1, b"c1"), (2, b"i0"), (3, b"i1")]
    everything = consume(bs, topic, conf={"isolation.level": "read_uncommitted"})
    assert [(r.offset, r.value) for r in everything] == \
        [(0, b"c0"), (1, b"c1"), (2, b"i0"), (3, b"i1"), (5, b"a0"), (6, b"a1")], "control records shown"


@TXN
def test_transactional_fencing_raw(broker, topic):
    """A second InitProducerId for a transactional id with an open transaction aborts it and
    bumps the epoch; the old epoch is then fenced everywhere: AddPartitionsToTxn, AddOffsetsToTxn
    and EndTxn answer PRODUCER_FENCED (v2+; INVALID_PRODUCER_EPOCH below v2, which does not know
    it), Produce INVALID_PRODUCER_EPOCH. Nothing of the zombie is written or visible."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    tid = "tx-fence"
    with Conn(bs) as c:
        pid, e0 = init_txn(c, tid)
        assert K.add_partitions_to_txn(c, tid, pid, e0, {topic: [0]}) == {(topic, 0): 0}
        assert K.produce_v7(c, topic, 0, batch(["z0", "z1"], pid, e0, 0, txn=True), transactional_id=tid) == (0, 0)
        pid1, e1 = init_txn(c, tid)
        assert pid1 == pid and e1 > e0, (pid, e0, pid1, e1)
        wait_for(lambda: hw(c, topic, 0, 1) == hw(c, topic), 5, "the fenced transaction's abort")
        end = hw(c, topic)
        assert end == 3, "two records and one abort marker"
        assert K.describe_transactions(c, [tid])[tid]["producer_epoch"] == e1

        got = {
            "AddPartitionsToTxn v3": K.add_partitions_to_txn(c, tid, pid, e0, {topic: [0]})[(topic, 0)],
            "AddPartitionsToTxn v1": K.add_partitions_to_txn(c, tid, pid, e0, {topic: [0]}, version=1)[(topic, 0)],
            "AddOffsetsToTxn v3": K.add_offsets_to_txn(c, tid, pid, e0, "g-fence"),
            "AddOffsetsToTxn v1": K.add_offsets_to_txn(c, tid, pid, e0, "g-fence", version=1),
            "EndTxn v3": K.end_txn(c, tid, pid, e0, True),
            "EndTxn v1": K.end_txn(c, tid, pid, e0, True, version=1),
            "Produce": K.produce_v7(c, topic, 0, batch(["z2"], pid, e0, 2, txn=True), transactional_id=tid)[0],
        }
        F, E = K.PRODUCER_FENCED, K.INVALID_PRODUCER_EPOCH
        assert got == {"AddPartitionsToTxn v3": F, "AddPartitionsToTxn v1": E, "AddOffsetsToTxn v3": F,
                       "AddOffsetsToTxn v1": E, "EndTxn v3": F, "EndTxn v1": E, "Produce": E}, got
        assert hw(c, topic) == end

        # the new epoch works
        assert K.add_partitions_to_txn(c, tid, pid, e1, {topic: [0]}) == {(topic, 0): 0}
        assert K.produce_v7(c, topic, 0, batch(["n0"], pid, e1, 0, txn=True), transactional_id=tid) == (0, 3)
        assert K.end_txn(c, tid, pid, e1, True) == 0
    wait_for(lambda: hw(bs, topic, 0, 1) == 5, 5, "the last stable offset after the commit")
    assert [r.value for r in consume(bs, topic)] == [b"n0"]
    assert [r.value for r in consume(bs, topic, conf={"isolation.level": "read_uncommitted"})] == [b"z0", b"z1", b"n0"]


@TXN
def test_txn_bad_input(broker, topic):
    """Refused transactional requests change nothing: EndTxn for an unknown transactional id ->
    INVALID_PRODUCER_ID_MAPPING; AddPartitionsToTxn naming a missing topic (or partition) ->
    UNKNOWN_TOPIC_OR_PARTITION for it and OPERATION_NOT_ATTEMPTED for the others, none added
    (EndTxn then finds no transaction: INVALID_TXN_STATE); InitProducerId with a timeout above
    transaction.max.timeout.ms (900000) or not positive -> INVALID_TRANSACTION_TIMEOUT, an empty
    transactional id -> INVALID_REQUEST; EndTxn with
    a stale epoch -> PRODUCER_FENCED; a producer id that is not the transactional id's ->
    INVALID_PRODUCER_ID_MAPPING."""
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    with Conn(bs) as c:
        assert K.end_txn(c, "tx-never-initialized", 0, 0, True) == K.INVALID_PRODUCER_ID_MAPPING
        assert K.end_txn(c, "tx-never-initialized", 0, 0, False, version=0) == K.INVALID_PRODUCER_ID_MAPPING

        tid = "tx-bad"
        pid, ep = init_txn(c, tid)
        res = K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0, 1], topic + "-missing": [0]})
        assert res == {(topic, 0): K.OPERATION_NOT_ATTEMPTED, (topic, 1): K.OPERATION_NOT_ATTEMPTED,
                       (topic + "-missing", 0): K.UNKNOWN_TOPIC_OR_PARTITION}, res
        res = K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0, 7]}, version=0)
        assert res == {(topic, 0): K.OPERATION_NOT_ATTEMPTED, (topic, 7): K.UNKNOWN_TOPIC_OR_PARTITION}, res
        d = K.describe_transactions(c, [tid])[tid]
        assert d["state"] == "Empty" and d["partitions"] == {}, d
        assert K.produce_v7(c, topic, 0, batch(["x"], pid, ep, 0, txn=True), transactional_id=tid)[0] \
            == K.INVALID_TXN_STATE
        assert K.end_txn(c, tid, pid, ep, True) == K.INVALID_TXN_STATE
        assert K.end_txn(c, tid, pid + 1000, ep, True) == K.INVALID_PRODUCER_ID_MAPPING

        for timeout in (900001, 2147483647, 0, -1):
            err, _, _ = K.init_producer_id(c, "tx-timeout", timeout)
            assert err == K.INVALID_TRANSACTION_TIMEOUT, (timeout, err)
        assert K.describe_transactions(c, ["tx-timeout"])["tx-timeout"]["error"] == K.TRANSACTIONAL_ID_NOT_FOUND
        assert K.init_producer_id(c, "", 60000)[0] == 42   # INVALID_REQUEST: an empty transactional id
        assert K.init_producer_id(c, "tx-timeout", 900000)[0] == 0

        pid2, ep2 = init_txn(c, tid)
        assert pid2 == pid and ep2 == ep + 1
        assert K.end_txn(c, tid, pid, ep, False) == K.PRODUCER_FENCED
        assert K.add_partitions_to_txn(c, tid, pid, ep, {topic: [0]}) == {(topic, 0): K.PRODUCER_FENCED}
        assert K.describe_transactions(c, [tid])[tid]["partitions"] == {}
        assert (hw(c, topic, 0), hw(c, topic, 1)) == (0, 0), "a refused request wrote something"


def _active_classic_member(c, group, topic):
    """A member of a classic group, Stable: (member id, generation)."""
    meta = K.consumer_subscription_v0([topic])
    j = K.join_group_v5(c, group, protocols=[("range", meta)], session_timeout_ms=30000)
    assert j["error"] == 79, j          # MEMBER_ID_REQUIRED
    member = j["member_id"]
    j = K.join_group_v5(c, group, member_id=member, protocols=[("range", meta)], session_timeout_ms=30000)
    assert j["error"] == 0 and j["leader"] == member, j
    assert K.sync_group_v3(c, group, j["generation"], member, {member: b""}) == 0
    return member, j["generation"]


@TXN
def test_txn_offset_commit_member_checks_and_require_stable(broker, topic):
    """TxnOffsetCommit v3 into an active classic group checks the member: another generation ->
    ILLEGAL_GENERATION, an unknown member -> UNKNOWN_MEMBER_ID, the member's own -> accepted.
    While the transaction holds an offset, OffsetFetch with require_stable answers
    UNSTABLE_OFFSET_COMMIT for that partition and without it the previous offset; the offset
    counts only once the transaction commits, never when it aborts."""
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    group = "g-txn-commit"
    tid = "tx-offsets"
    with Conn(bs) as c:
        assert K.offset_commit_flex(c, 8, group, -1, "", {topic: [(0, 1), (1, 1)]}) == {(topic, 0): 0, (topic, 1): 0}
        member, gen = _active_classic_member(c, group, topic)
        pid, ep = init_txn(c, tid)
        assert K.add_offsets_to_txn(c, tid, pid, ep, group) == 0

        res = K.txn_offset_commit(c, tid, group, pid, ep, {topic: [(0, 5)]}, generation=gen + 7, member_id=member)
        assert res == {(topic, 0): K.ILLEGAL_GENERATION}, res
        res = K.txn_offset_commit(c, tid, group, pid, ep, {topic: [(0, 5)]}, generation=gen, member_id="nobody")
        assert res == {(topic, 0): K.UNKNOWN_MEMBER_ID}, res
        f = K.offset_fetch_v7(c, group, {topic: [0, 1]}, require_stable=True)
        assert f["offsets"] == {(topic, 0): (1, 0), (topic, 1): (1, 0)}, f   # nothing pending

        res = K.txn_offset_commit(c, tid, group, pid, ep, {topic: [(0, 5)]}, generation=gen, member_id=member)
        assert res == {(topic, 0): 0}, res
        f = K.offset_fetch_v7(c, group, {topic: [0, 1]}, require_stable=True)
        assert f["offsets"][(topic, 0)][1] == K.UNSTABLE_OFFSET_COMMIT, f
        assert f["offsets"][(topic, 1)] == (1, 0), f
        f = K.offset_fetch_v7(c, group, {topic: [0, 1]}, require_stable=False)
        assert f["offsets"] == {(topic, 0): (1, 0), (topic, 1): (1, 0)}, f

        assert K.end_txn(c, tid, pid, ep, True) == 0
        f = wait_for(lambda: (lambda f: f if f["offsets"][(topic, 0)][1] == 0 else None)(
            K.offset_fetch_v7(c, group, {topic: [0, 1]}, require_stable=True)), 5, "the committed offset")
        assert f["offsets"] == {(topic, 0): (5, 0), (topic, 1): (1, 0)}, f

        # aborted: the offset never counts
        assert K.add_offsets_to_txn(c, tid, pid, ep, group, version=0) == 0
        res = K.txn_offset_commit(c, tid, group, pid, ep, {topic: [(0, 9), (1, 9)]}, version=0)
        assert res == {(topic, 0): 0, (topic, 1): 0}, res
        assert K.end_txn(c, tid, pid, ep, False) == 0
        f = wait_for(lambda: (lambda f: f if f["offsets"][(topic, 0)][1] == 0 else None)(
            K.offset_fetch_v7(c, group, {topic: [0, 1]}, require_stable=True)), 5, "stable offsets after the abort")
        assert f["offsets"] == {(topic, 0): (5, 0), (topic, 1): (1, 0)}, f
    assert (hw(bs, topic, 0), hw(bs, topic, 1)) == (0, 0)


@TXN
def test_expired_transaction_with_only_offsets(broker, topic):
    """A transaction holding only group offsets (AddOffsetsToTxn + TxnOffsetCommit, no partition)
    that outlives its timeout (1500 ms) is aborted by the broker: the pending offset is dropped
    (OffsetFetch require_stable answers the old one again instead of UNSTABLE_OFFSET_COMMIT), the
    epoch is bumped, and the old epoch's EndTxn is fenced."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    group, tid = "g-expire", "tx-expire-offsets"
    with Conn(bs) as c:
        assert K.offset_commit_flex(c, 8, group, -1, "", {topic: [(0, 3)]}) == {(topic, 0): 0}
        pid, ep = init_txn(c, tid, timeout_ms=1500)
        assert K.add_offsets_to_txn(c, tid, pid, ep, group) == 0
        assert K.txn_offset_commit(c, tid, group, pid, ep, {topic: [(0, 8)]}) == {(topic, 0): 0}
        t0 = time.monotonic()
        f = K.offset_fetch_v7(c, group, {topic: [0]}, require_stable=True)
        assert f["offsets"][(topic, 0)][1] == K.UNSTABLE_OFFSET_COMMIT, f
        d = wait_for(lambda: (lambda d: d if d["state"] == "CompleteAbort" else None)(
            K.describe_transactions(c, [tid])[tid]), 1.5 + 5, "the broker to abort the expired transaction")
        assert time.monotonic() - t0 >= 1.2, "aborted before its timeout"
        assert d["producer_epoch"] > ep, d
        f = K.offset_fetch_v7(c, group, {topic: [0]}, require_stable=True)
        assert f["offsets"] == {(topic, 0): (3, 0)}, f
        assert K.end_txn(c, tid, pid, ep, True) == K.PRODUCER_FENCED
    assert hw(bs, topic) == 0


@TXN
def test_list_describe_transactions_raw(broker, topic):
    """ListTransactions v0/v1 (state, producer id and duration filters; unknown state filters
    are returned, not an error), DescribeTransactions of an unknown id ->
    TRANSACTIONAL_ID_NOT_FOUND, and the states Empty -> Ongoing -> CompleteCommit."""
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    with Conn(bs) as c:
        pa, ea = init_txn(c, "tx-list-a", 45000)
        pb, eb = init_txn(c, "tx-list-b", 45000)
        lt = K.list_transactions(c)
        assert lt["error"] == 0 and lt["unknown_states"] == [], lt
        assert lt["txns"]["tx-list-a"] == (pa, "Empty") and lt["txns"]["tx-list-b"] == (pb, "Empty"), lt
        t0 = int(time.time() * 1000)
        assert K.add_partitions_to_txn(c, "tx-list-a", pa, ea, {topic: [1, 0]}) == {(topic, 0): 0, (topic, 1): 0}
        d = K.describe_transactions(c, ["tx-list-a", "tx-list-b", "tx-list-none"])
        assert d["tx-list-none"]["error"] == K.TRANSACTIONAL_ID_NOT_FOUND, d
        a = d["tx-list-a"]
        assert (a["error"], a["state"], a["producer_id"], a["producer_epoch"], a["timeout_ms"], a["partitions"]) == \
            (0, "Ongoing", pa, ea, 45000, {topic: [0, 1]}), a
        assert t0 - 2000 <= a["start_time_ms"] <= int(time.time() * 1000) + 2000, a
        assert d["tx-list-b"]["state"] == "Empty" and d["tx-list-b"]["start_time_ms"] == -1, d["tx-list-b"]

        lt = K.list_transactions(c, states=["Ongoing", "Bogus"])
        assert lt["error"] == 0 and lt["unknown_states"] == ["Bogus"], lt
        assert "tx-list-a" in lt["txns"] and "tx-list-b" not in lt["txns"], lt
        lt = K.list_transactions(c, producer_ids=[pb])
        assert set(lt["txns"]) == {"tx-list-b"}, lt
        assert "tx-list-a" not in K.list_transactions(c, duration_ms=3_600_000)["txns"]
        assert "tx-list-a" in K.list_transactions(c, duration_ms=-1)["txns"]

        assert K.end_txn(c, "tx-list-a", pa, ea, True) == 0
        st = wait_for(lambda: (lambda s: s if s in ("CompleteCommit",) else None)(
            K.describe_transactions(c, ["tx-list-a"])["tx-list-a"]["state"]), 5, "CompleteCommit")
        assert K.list_transactions(c, states=["CompleteCommit"])["txns"].get("tx-list-a") == (pa, st)
        assert "tx-list-a" not in K.list_transactions(c, states=["Ongoing"])["txns"]
