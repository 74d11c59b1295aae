"""Consumer groups with the pure-Python clients: kafka-python 3.x (KafkaConsumer,
KafkaAdminClient) and aiokafka (AIOKafkaConsumer), classic protocol.

kafka-python runs the group protocol inside poll(), so each member polls in its own
thread (two members polled alternately from one thread would block each other's
JoinGroup). aiokafka members are tasks of one event loop."""
from __future__ import annotations

import asyncio
import threading
import time
import uuid

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, RebalanceInProgressError
from aiokafka.structs import OffsetAndMetadata as AioOffsetAndMetadata
from aiokafka.structs import TopicPartition as AioTP
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata, TopicPartition

from kutil import create_topic, producer, produce_all


def gid(tag: str = "g") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def produce_spread(bootstrap, topic, partitions, per_partition, tag="r"):
    recs = [{"partition": p, "value": b"%s-p%d-%d" % (tag.encode(), p, i)}
            for i in range(per_partition) for p in range(partitions)]
    res = produce_all(producer(bootstrap), topic, recs)
    return {(r[1], r[2]): rec["value"] for r, rec in zip(res, recs)}


def kp_consumer(bootstrap, group, **kw):
    conf = dict(bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                enable_auto_commit=False, heartbeat_interval_ms=500, session_timeout_ms=10000,
                request_timeout_ms=15000)
    conf.update(kw)
    return KafkaConsumer(**conf)


def poll_records(c, n, timeout=20.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=200).values():
            out.extend(recs)
    return out


# --------------------------------------------------------------------------- kafka-python
def test_kafka_python_group_consume_commit_committed(broker, topic):
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    expected = produce_spread(bs, topic, 2, 10)
    group = gid("kp")
    c = kp_consumer(bs, group)
    try:
        c.subscribe([topic])
        recs = poll_records(c, 20)
        assert sorted((r.partition, r.offset, r.value) for r in recs) == \
            sorted((p, o, v) for (p, o), v in expected.items())
        assert c.assignment() == {TopicPartition(topic, 0), TopicPartition(topic, 1)}
        # commit() without offsets: the current positions
        c.commit()
        assert c.committed(TopicPartition(topic, 0)) == 10
        assert c.committed(TopicPartition(topic, 1)) == 10
        # explicit offsets with metadata
        c.commit({TopicPartition(topic, 0): OffsetAndMetadata(4, "kp-meta", -1)})
        got = c.committed(TopicPartition(topic, 0), metadata=True)
        assert (got.offset, got.metadata) == (4, "kp-meta")
        # commit_async with a callback
        done = threading.Event()
        result = {}

        def cb(offsets, response):
            result["r"] = response
            done.set()
        c.commit_async({TopicPartition(topic, 1): OffsetAndMetadata(7, "async", -1)}, callback=cb)
        deadline = time.monotonic() + 10
        while not done.is_set() and time.monotonic() < deadline:
            c.poll(timeout_ms=100)
        assert done.is_set() and not isinstance(result["r"], Exception), result
        got = c.committed(TopicPartition(topic, 1), metadata=True)
        assert (got.offset, got.metadata) == (7, "async")
    finally:
        c.close(autocommit=False)
    # a new member resumes at 4 / 7
    c = kp_consumer(bs, group)
    try:
        c.subscribe([topic])
        recs = poll_records(c, 6 + 3)
        time.sleep(0.3)
        recs += poll_records(c, 1, timeout=0.5)
        assert sorted((r.partition, r.offset) for r in recs) == \
            [(0, o) for o in range(4, 10)] + [(1, o) for o in range(7, 10)]
    finally:
        c.close(autocommit=False)


class _Tracker(ConsumerRebalanceListener):
    def __init__(self, owner):
        self.owner = owner

    def on_partitions_revoked(self, revoked):
        o = self.owner
        with o.lock:
            # commit what was consumed before giving partitions up
            if o.pending:
                try:
                    o.c.commit({TopicPartition(o.topic, p): OffsetAndMetadata(off, "", -1)
                                for p, off in o.pending.items()})
                    o.pending.clear()
                except Exception as e:  # noqa: BLE001
                    o.errors.append(f"commit on revoke: {e!r}")
            o.owned -= {tp.partition for tp in revoked}
            o.events.append(("revoke", sorted(tp.partition for tp in revoked)))

    def on_partitions_assigned(self, assigned):
        o = self.owner
        with o.lock:
            o.owned |= {tp.partition for tp in assigned}
            o.events.append(("assign", sorted(tp.partition for tp in assigned)))


class KPMember(threading.Thread):
    def __init__(self, bootstrap, group, topic, name, registry, **kw):
        super().__init__(daemon=True)
        self.topic, self.name, self.registry = topic, name, registry
        self.lock = registry["lock"]
        self.owned: set[int] = set()
        self.events, self.records, self.errors, self.foreign = [], [], [], []
        self.pending: dict[int, int] = {}
        self.stop = threading.Event()
        self.c = kp_consumer(bootstrap, group, client_id=name, **kw)
        self.c.subscribe([topic], listener=_Tracker(self))

    def run(self):
        try:
            while not self.stop.is_set():
                batch = self.c.poll(timeout_ms=100)
                with self.lock:
                    for tp, recs in batch.items():
                        for r in recs:
                            if r.partition not in self.owned:
                                self.foreign.append((r.partition, r.offset))
                            self.records.append((r.partition, r.offset, r.value))
                            self.pending[r.partition] = r.offset + 1
                    # no partition owned twice, checked under the shared lock
                    for other in self.registry["members"]:
                        if other is not self and other.is_alive() and self.owned & other.owned:
                            self.errors.append(f"overlap {self.name}/{other.name}: {self.owned & other.owned}")
                if self.pending:
                    try:
                        self.c.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                                       for p, o in self.pending.items()})
                        self.pending.clear()
                    except Exception as e:  # noqa: BLE001 - retried on the next round / on revoke
                        if "Rebalance" not in repr(e) and "CommitFailed" not in repr(e):
                            self.errors.append(f"commit: {e!r}")
        finally:
            self.c.close(autocommit=False)


def wait_for(cond, timeout, what, members):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with members[0].lock:
            if cond():
                return
        time.sleep(0.05)
    raise AssertionError(f"timeout waiting for {what}: " +
                         str({m.name: (sorted(m.owned), len(m.records), m.events[-3:], m.errors[-3:]) for m in members}))


def test_kafka_python_two_members_share_partitions(broker, topic):
    bs = broker.bootstrap
    parts = 6
    create_topic(bs, topic, partitions=parts)
    expected = produce_spread(bs, topic, parts, 10)
    group = gid("kp2")
    reg = {"lock": threading.Lock(), "members": []}
    a = KPMember(bs, group, topic, "kpA", reg)
    b = KPMember(bs, group, topic, "kpB", reg)
    reg["members"] += [a, b]
    a.start()
    b.start()
    try:
        wait_for(lambda: a.owned and b.owned and (a.owned | b.owned) == set(range(parts))
                 and len(a.records) + len(b.records) >= len(expected), 30, "two members sharing", [a, b])
        assert len(a.owned) == 3 and len(b.owned) == 3 and not (a.owned & b.owned)
        more = produce_spread(bs, topic, parts, 5, tag="more")
        expected.update(more)
        wait_for(lambda: len(a.records) + len(b.records) >= len(expected), 20, "more records", [a, b])
        time.sleep(0.5)
    finally:
        for m in (a, b):
            m.stop.set()
        for m in (a, b):
            m.join(15)
    for m in (a, b):
        assert not m.errors, (m.name, m.errors)
        assert not m.foreign, (m.name, m.foreign)
    seen = [(p, o) for m in (a, b) for p, o, _ in m.records]
    assert sorted(seen) == sorted(expected)
    assert all(expected[(p, o)] == v for m in (a, b) for p, o, v in m.records)
    a_parts = {p for p, _, _ in a.records}
    assert not (a_parts & {p for p, _, _ in b.records}), "the same partition was consumed by both members"
    adm = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    try:
        offs = adm.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in offs.items()} == {p: 15 for p in range(parts)}
    finally:
        adm.close()


def _assigned(member: dict) -> list:
    """(topic, partition) pairs of a described member's decoded assignment (object or dict)."""
    ma = member.get("member_assignment")
    if ma is None:
        return []
    if hasattr(ma, "partitions"):
        return sorted((tp.topic, tp.partition) for tp in ma.partitions())
    parts = ma.get("assigned_partitions") if isinstance(ma, dict) else None
    out = []
    for t in parts or []:
        if isinstance(t, dict):
            out += [(t["topic"], p) for p in t["partitions"]]
        else:
            out += [(t[0], p) for p in t[1]]
    return sorted(out)


def test_kafka_python_admin_groups(broker, topic):
    bs = broker.bootstrap
    parts = 3
    create_topic(bs, topic, partitions=parts)
    produce_spread(bs, topic, parts, 4)
    group = gid("kpadm")
    adm = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    c = kp_consumer(bs, group, client_id="kp-admin-member")
    try:
        c.subscribe([topic])
        assert len(poll_records(c, 12)) == 12
        c.commit({TopicPartition(topic, p): OffsetAndMetadata(p + 1, f"m{p}", -1) for p in range(parts)})

        groups = {g["group_id"]: g for g in adm.list_groups()}
        assert group in groups, groups
        assert groups[group]["protocol_type"] == "consumer"
        assert groups[group].get("group_state", "Stable") == "Stable"
        stable = {g["group_id"] for g in adm.list_groups(states_filter=["Stable"])}
        empty = {g["group_id"] for g in adm.list_groups(states_filter=["Empty"])}
        assert group in stable and group not in empty

        d = adm.describe_groups([group])[group]
        assert d["error"] is None
        assert d["group_state"] == "Stable"
        assert d["protocol_type"] == "consumer"
        assert d["protocol_data"] in ("range", "roundrobin", "sticky", "cooperative-sticky")
        assert len(d["members"]) == 1
        mem = d["members"][0]
        assert mem["client_id"] == "kp-admin-member"
        assert _assigned(mem) == [(topic, p) for p in range(parts)]

        offs = adm.list_group_offsets({group: None})[group]
        assert {tp: (om.offset, om.metadata) for tp, om in offs.items()} == \
            {TopicPartition(topic, p): (p + 1, f"m{p}") for p in range(parts)}
        offs = adm.list_group_offsets({group: [TopicPartition(topic, 2)]})[group]
        assert {tp: om.offset for tp, om in offs.items()} == {TopicPartition(topic, 2): 3}

        # OffsetDelete while the member is subscribed to the topic: GROUP_SUBSCRIBED_TO_TOPIC
        res = adm.delete_group_offsets(group, [TopicPartition(topic, 0)])
        assert res[TopicPartition(topic, 0)].__name__ == "GroupSubscribedToTopicError", res
        res = adm.delete_groups([group])
        assert dict(res) == {group: "NonEmptyGroupError"}, res
    finally:
        c.close(autocommit=False)

    d = adm.describe_groups([group])[group]
    assert d["group_state"] == "Empty" and d["members"] == []
    empty = {g["group_id"] for g in adm.list_groups(states_filter=["Empty"])}
    assert group in empty
    # OffsetDelete on the empty group works and removes just that partition
    res = adm.delete_group_offsets(group, [TopicPartition(topic, 0)])
    assert res[TopicPartition(topic, 0)].__name__ == "NoError", res
    offs = adm.list_group_offsets({group: None})[group]
    assert {tp.partition: om.offset for tp, om in offs.items() if om.offset >= 0} == {1: 2, 2: 3}
    assert dict(adm.delete_groups([group])) == {group: "OK"}
    assert group not in {g["group_id"] for g in adm.list_groups()}
    adm.close()


# --------------------------------------------------------------------------- aiokafka
def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_aiokafka_group_consume_commit_and_share(broker, topic):
    bs = broker.bootstrap
    parts = 4
    create_topic(bs, topic, partitions=parts)
    expected = produce_spread(bs, topic, parts, 8)
    group = gid("aio")

    async def main():
        def make(name):
            return AIOKafkaConsumer(topic, bootstrap_servers=bs, group_id=group, client_id=name,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    heartbeat_interval_ms=500, session_timeout_ms=10000)

        # one member: consume everything, commit with metadata, committed()
        c = make("aio-solo")
        await c.start()
        try:
            got = []
            deadline = time.monotonic() + 20
            while len(got) < len(expected) and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=300)).values():
                    got.extend(recs)
            assert sorted((r.partition, r.offset, r.value) for r in got) == \
                sorted((p, o, v) for (p, o), v in expected.items())
            await c.commit()
            for p in range(parts):
                assert await c.committed(AioTP(topic, p)) == 8
            await c.commit({AioTP(topic, 0): AioOffsetAndMetadata(5, "aio-meta")})
            assert await c.committed(AioTP(topic, 0)) == 5
        finally:
            await c.stop()

        # two members share the partitions; each commits what it consumed
        more = produce_spread(bs, topic, parts, 4, tag="more")
        want = dict(more)
        want.update({(0, o): expected[(0, o)] for o in range(5, 8)})
        members = {n: make(n) for n in ("aio-A", "aio-B")}
        recs = {n: [] for n in members}
        commit_errors = []
        await asyncio.gather(*(m.start() for m in members.values()))
        try:
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                for n, m in members.items():
                    batch = await m.getmany(timeout_ms=100)
                    for tp, rs in batch.items():
                        recs[n].extend(rs)
                    if batch:
                        try:
                            await m.commit()
                        except (CommitFailedError, RebalanceInProgressError) as e:
                            commit_errors.append(f"{n}: {e!r}")
                owned = [{tp.partition for tp in m.assignment()} for m in members.values()]
                assert not (owned[0] & owned[1]), owned
                if all(owned) and sum(len(r) for r in recs.values()) >= len(want):
                    break
            owned = [{tp.partition for tp in m.assignment()} for m in members.values()]
            assert owned[0] | owned[1] == set(range(parts)) and all(len(o) == 2 for o in owned), owned
        finally:
            await asyncio.gather(*(m.stop() for m in members.values()))
        seen = sorted((r.partition, r.offset, r.value) for rs in recs.values() for r in rs)
        assert seen == sorted((p, o, v) for (p, o), v in want.items()), f"commit errors: {commit_errors}"
        by_part = {n: {r.partition for r in rs} for n, rs in recs.items()}
        assert not (by_part["aio-A"] & by_part["aio-B"]), by_part

    run(main())
    adm = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    try:
        offs = adm.list_group_offsets({group: None})[group]
        assert {tp.partition: om.offset for tp, om in offs.items()} == {p: 12 for p in range(parts)}
        assert adm.describe_groups([group])[group]["group_state"] == "Empty"
    finally:
        adm.close()


def test_aiokafka_admin_groups(broker, topic):
    """aiokafka's admin client: list_consumer_groups, describe_consumer_groups,
    list_consumer_group_offsets."""
    from aiokafka.admin import AIOKafkaAdminClient
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    group = gid("aioadm")
    async def main():
        cons = AIOKafkaConsumer(bootstrap_servers=bs, group_id=group, enable_auto_commit=False)
        await cons.start()
        try:
            cons.assign([AioTP(topic, 0)])
            await cons.commit({AioTP(topic, 0): AioOffsetAndMetadata(3, "aio-adm")})
        finally:
            await cons.stop()
        a = AIOKafkaAdminClient(bootstrap_servers=bs)
        await a.start()
        try:
            groups = await a.list_consumer_groups()
            assert (group, "") in [(g[0], g[1]) for g in groups], groups
            desc = await a.describe_consumer_groups([group])
            offs = await a.list_consumer_group_offsets(group)
            return desc, offs
        finally:
            await a.close()

    desc, offs = run(main())
    assert {tp.partition: (om.offset, om.metadata) for tp, om in offs.items()} == {0: (3, "aio-adm")}
    text = repr(desc)
    assert group in text and "Empty" in text, text


def test_kafka_python_remove_static_member_and_multi_group_admin(broker, topic):
    """KIP-345 admin removal: a static member that stopped (static members send no
    LeaveGroup) is removed with a batched LeaveGroup (v3+, by group.instance.id) and the
    survivor takes its partitions long before the 30 s session timeout. Then the multi-group
    forms: OffsetFetch v8 for two groups in one request, DescribeGroups and DeleteGroups of
    two groups."""
    from kafka.admin import MemberToRemove
    bs = broker.bootstrap
    parts = 4
    create_topic(bs, topic, partitions=parts)
    expected = produce_spread(bs, topic, parts, 5)
    group = gid("kpstatic")
    reg = {"lock": threading.Lock(), "members": []}
    a = KPMember(bs, group, topic, "kpS1", reg, group_instance_id="s1", session_timeout_ms=30000)
    b = KPMember(bs, group, topic, "kpS2", reg, group_instance_id="s2", session_timeout_ms=30000)
    reg["members"] += [a, b]
    a.start()
    b.start()
    adm = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    try:
        wait_for(lambda: a.owned and b.owned and (a.owned | b.owned) == set(range(parts))
                 and len(a.records) + len(b.records) >= len(expected), 30, "two static members sharing", [a, b])
        b.stop.set()
        b.join(15)
        assert not b.is_alive()
        time.sleep(1.5)
        with a.lock:
            assert len(a.owned) == 2, f"a stopped static member must stay in the group: A owns {a.owned}"
        d = adm.describe_groups([group])[group]
        assert sorted(m["group_instance_id"] for m in d["members"]) == ["s1", "s2"]
        s2_member_id = [m["member_id"] for m in d["members"] if m["group_instance_id"] == "s2"][0]
        t0 = time.monotonic()
        res = adm.remove_group_members(group, [MemberToRemove(group_instance_id="s2"),
                                               MemberToRemove(group_instance_id="nope")])
        # keyed by the response's member id, else its group.instance.id
        res = {("s2" if k == s2_member_id else k): v.__name__ for k, v in res.items()}
        assert res == {"s2": "NoError", "nope": "UnknownMemberIdError"}, res
        wait_for(lambda: a.owned == set(range(parts)), 10, "survivor owns every partition", [a])
        print(f"removed static member's partitions reassigned after {time.monotonic() - t0:.1f}s")
        d = adm.describe_groups([group])[group]
        assert [m["group_instance_id"] for m in d["members"]] == ["s1"]
        assert d["group_state"] == "Stable"
    finally:
        for m in (a, b):
            m.stop.set()
        for m in (a, b):
            m.join(15)
    seen = sorted((p, o) for m in (a, b) for p, o, _ in m.records)
    assert seen == sorted(expected), "records lost or consumed twice"
    for m in (a, b):
        assert not m.errors and not m.foreign, (m.name, m.errors, m.foreign)

    # a second group with committed offsets only (simple consumer commits)
    other = gid("kpother")
    c = kp_consumer(bs, other)
    try:
        c.assign([TopicPartition(topic, 1)])
        c.commit({TopicPartition(topic, 1): OffsetAndMetadata(2, "o", -1)})
    finally:
        c.close(autocommit=False)
    try:
        both = adm.list_group_offsets({group: None, other: None})     # one OffsetFetch v8, two groups
        assert {tp.partition: om.offset for tp, om in both[group].items()} == {p: 5 for p in range(parts)}
        assert {tp: (om.offset, om.metadata) for tp, om in both[other].items()} == \
            {TopicPartition(topic, 1): (2, "o")}
        ds = adm.describe_groups([group, other])
        assert ds[group]["group_state"] == "Stable" and ds[other]["group_state"] == "Empty"
        assert ds[other]["protocol_type"] == "" and ds[other]["members"] == []
        # both in one DeleteGroups: the active one refused, the empty one deleted
        res = dict(adm.delete_groups([group, other]))
        assert res == {group: "NonEmptyGroupError", other: "OK"}, res
        assert other not in {g["group_id"] for g in adm.list_groups()}
    finally:
        adm.close()
