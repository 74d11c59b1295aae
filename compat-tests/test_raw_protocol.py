"""Raw requests for APIs the stock clients use only implicitly."""
from __future__ import annotations

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
