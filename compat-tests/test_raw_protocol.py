"""Raw requests for APIs the stock clients use only implicitly."""
from __future__ import annotations

import pytest

import kproto
from kproto import Conn, i32, request, string
from kutil import create_topic, producer, produce_all

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
