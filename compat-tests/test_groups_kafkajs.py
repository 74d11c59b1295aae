"""kafkajs 2.2.4 consumer groups (node/kafkajs-group.js, a subprocess): run/eachMessage
consumes exactly what was produced and commits; a second run of the group resumes at
the committed offsets; two members share the partitions; admin fetchOffsets,
describeGroups and listGroups."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

from kutil import NODE_DIR, create_topic, producer, produce_all


def gid(tag: str = "g") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def produce_spread(bootstrap, topic, partitions, per_partition, tag="r"):
    recs = [{"partition": p, "key": b"k%d" % i, "value": b"%s-p%d-%d" % (tag.encode(), p, i)}
            for i in range(per_partition) for p in range(partitions)]
    res = produce_all(producer(bootstrap), topic, recs)
    return {(r[1], r[2]): rec["value"].decode() for r, rec in zip(res, recs)}


def _cmd(command, bootstrap, args):
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (NODE_DIR / "node_modules" / "kafkajs").is_dir(), "run `npm ci` in compat-tests/node"
    return [node, str(NODE_DIR / "kafkajs-group.js"), command, bootstrap, json.dumps(args)]


def _env():
    return dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")


def _result(cp_returncode, out, err, command):
    if cp_returncode != 0:
        raise AssertionError(f"kafkajs-group {command} failed ({cp_returncode}):\nstdout: {out[-3000:]}\n"
                             f"stderr: {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def kjs(command, bootstrap, args, timeout=60):
    cp = subprocess.run(_cmd(command, bootstrap, args), capture_output=True, timeout=timeout, env=_env(),
                        cwd=str(NODE_DIR), text=True)
    return _result(cp.returncode, cp.stdout, cp.stderr, command)


def kjs_start(command, bootstrap, args):
    return subprocess.Popen(_cmd(command, bootstrap, args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), cwd=str(NODE_DIR), text=True)


def kjs_wait(proc, command, timeout=60):
    out, err = proc.communicate(timeout=timeout)
    return _result(proc.returncode, out, err, command)


def recs_of(res):
    return sorted((r["partition"], int(r["offset"]), r["value"]) for r in res["records"])


def test_kafkajs_group_consume_commit_resume_admin(broker, topic):
    bs = broker.bootstrap
    parts = 3
    create_topic(bs, topic, partitions=parts)
    first = produce_spread(bs, topic, parts, 10)
    group = gid("kjs")
    res = kjs("consume", bs, {"topic": topic, "groupId": group, "clientId": "kjs-one",
                              "count": len(first), "maxMs": 30000})
    assert not res["errors"], res["errors"]
    assert recs_of(res) == sorted((p, o, v) for (p, o), v in first.items())
    assert res["joins"], "no GROUP_JOIN event"
    j = res["joins"][-1]
    assert j["isLeader"] is True
    assert sorted(j["assignment"][topic]) == list(range(parts))
    assert j["atMs"] < 3000 + 5000 + 2000, f"kafkajs joined after {j['atMs']} ms"

    adm = kjs("admin", bs, {"groupId": group, "topic": topic})
    assert len(adm["offsets"]) == 1 and adm["offsets"][0]["topic"] == topic
    assert sorted((p["partition"], p["offset"]) for p in adm["offsets"][0]["partitions"]) == \
        [(p, "10") for p in range(parts)]
    d = adm["describe"][0]
    assert (d["groupId"], d["state"], d["errorCode"], d["members"]) == (group, "Empty", 0, [])
    assert d["protocolType"] == "consumer"
    listed = {g["groupId"]: g["protocolType"] for g in adm["list"]}
    assert listed.get(group) == "consumer", adm["list"]

    # the group resumes at the committed offsets: only the new records
    second = produce_spread(bs, topic, parts, 4, tag="second")
    res = kjs("consume", bs, {"topic": topic, "groupId": group, "clientId": "kjs-two",
                              "idleMs": 2500, "maxMs": 30000})
    assert not res["errors"], res["errors"]
    assert recs_of(res) == sorted((p, o, v) for (p, o), v in second.items())
    adm = kjs("admin", bs, {"groupId": group, "topic": topic})
    assert sorted((p["partition"], p["offset"]) for p in adm["offsets"][0]["partitions"]) == \
        [(p, "14") for p in range(parts)]


def test_kafkajs_two_members_share_partitions(broker, topic):
    bs = broker.bootstrap
    parts = 4
    create_topic(bs, topic, partitions=parts)
    expected = produce_spread(bs, topic, parts, 10)
    group = gid("kjs2")
    args = {"topic": topic, "groupId": group, "idleMs": 3000, "maxMs": 40000}
    pa = kjs_start("consume", bs, dict(args, clientId="kjs-A"))
    pb = kjs_start("consume", bs, dict(args, clientId="kjs-B"))
    try:
        ra = kjs_wait(pa, "consume")
        rb = kjs_wait(pb, "consume")
    finally:
        for p in (pa, pb):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert not ra["errors"] and not rb["errors"], (ra["errors"], rb["errors"])
    # the members were in one generation together with disjoint, complete assignments
    def parts_of(j):
        return set(j["assignment"].get(topic, []))
    pairs = [(parts_of(ja), parts_of(jb)) for ja in ra["joins"] for jb in rb["joins"]]
    assert any(x and y and not (x & y) and x | y == set(range(parts)) for x, y in pairs), \
        (ra["joins"], rb["joins"])
    assert ra["records"] and rb["records"], "one member consumed nothing: the partitions were not shared"
    # every record exactly once across both (each committed what it consumed)
    seen = [(p, o) for p, o, _ in recs_of(ra) + recs_of(rb)]
    assert sorted(seen) == sorted(expected), \
        f"missing {sorted(set(expected) - set(seen))[:10]} twice {sorted({k for k in seen if seen.count(k) > 1})[:10]}"
    assert all(expected[(p, o)] == v for p, o, v in recs_of(ra) + recs_of(rb))
    adm = kjs("admin", bs, {"groupId": group, "topic": topic})
    assert sorted((p["partition"], p["offset"]) for p in adm["offsets"][0]["partitions"]) == \
        [(p, "10") for p in range(parts)]
    assert adm["describe"][0]["state"] == "Empty"
