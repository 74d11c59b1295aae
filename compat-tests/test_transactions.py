"""Idempotent and transactional producers with stock clients (issue 4).

confluent-kafka (librdkafka 2.16) transactional producers and read_committed /
read_uncommitted consumers, kafka-python 3.x and aiokafka transactional producers (aiokafka
speaks the v0 transaction APIs), and kafka-python's admin client for ListTransactions,
DescribeTransactions and DescribeProducers (confluent-kafka's AdminClient has none of them).
What is checked, against Kafka 4.x behaviour:
  * commit visible and abort invisible under read_committed, both visible under
    read_uncommitted, control records never shown to the application
  * an open transaction holds read_committed back at the last stable offset (Fetch, partition
    EOF, ListOffsets / watermarks with isolation level); after the commit everything is visible
  * interleaved transactions on one partition: only the aborted producer's records are dropped
  * zombie fencing: a second producer with the same transactional.id fences the first
  * consume-transform-produce with send_offsets_to_transaction: exactly once, committed
    offsets advance only on commit, an aborted iteration is redone
  * transaction.timeout.ms: the transaction of a SIGKILLed producer is aborted by the broker,
    a live producer whose transaction expired is fenced
  * broker SIGTERM / SIGKILL in the middle of a transaction: a consistent log afterwards

Raw-protocol cases (duplicate batches, sequence gaps, epochs, unknown producer ids, bad
transactional requests) are in test_raw_protocol.py (marker `txn` as well).
Conditions are awaited by polling, never by long sleeps.
"""
from __future__ import annotations

import asyncio
import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

import kproto
from kutil import admin, consume, consumer, create_topic, producer, produce_all

pytestmark = pytest.mark.txn

FENCED = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
RU = "read_uncommitted"
RC = "read_committed"


# --------------------------------------------------------------------------- helpers
def tid(tag: str = "tx") -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def txn_producer(bootstrap: str, txn_id: str, timeout_ms: int = 60000, **conf) -> Producer:
    """A confluent-kafka transactional producer. librdkafka wants message.timeout.ms <=
    transaction.timeout.ms and socket.timeout.ms <= transaction.timeout.ms + 100."""
    c = {"bootstrap.servers": bootstrap, "linger.ms": 5, "transactional.id": txn_id,
         "transaction.timeout.ms": timeout_ms, "message.timeout.ms": min(timeout_ms, 20000),
         "socket.timeout.ms": min(timeout_ms, 10000)}
    c.update(conf)
    return Producer(c)


def read(bootstrap: str, topic: str, partition: int = 0, isolation: str = RC, timeout: float = 20.0):
    """Every record of a partition up to its end (the last stable offset for read_committed)."""
    return consume(bootstrap, topic, partition, conf={"isolation.level": isolation}, timeout=timeout)


def values(recs) -> list[bytes]:
    return [r.value for r in recs]


def end_offset(bootstrap: str, topic: str, partition: int = 0, isolation: str = RC) -> int:
    """The high watermark as a consumer sees it (ListOffsets with the consumer's isolation level)."""
    c = consumer(bootstrap, **{"isolation.level": isolation})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)[1]
    finally:
        c.close()


def admin_latest(bootstrap: str, topic: str, partition: int, level: IsolationLevel) -> int:
    a = admin(bootstrap)
    tp = TopicPartition(topic, partition)
    res = a.list_offsets({tp: OffsetSpec.latest()}, isolation_level=level, request_timeout=10)
    return res[tp].result(10).offset


def raw_end(bootstrap: str, topic: str, partition: int = 0, isolation_level: int = 0) -> int:
    """ListOffsets v2 latest, cheap enough to poll: HW (0) or LSO (1)."""
    err, off = kproto.list_offsets_v2(bootstrap, topic, [partition], -1, isolation_level)[partition]
    assert err == 0, f"ListOffsets error {err}"
    return off


def stable(bootstrap: str, topic: str, partition: int = 0) -> bool:
    """No open transaction on the partition: LSO == HW."""
    return raw_end(bootstrap, topic, partition, 1) == raw_end(bootstrap, topic, partition, 0)


def settle(bootstrap: str, topic: str, partitions: int = 1, timeout: float = 10.0) -> None:
    """Wait until no partition of the topic has an open transaction. Kafka writes the markers
    after EndTxn has answered, so a committed transaction becomes readable a moment later."""
    wait_until(lambda: all(stable(bootstrap, topic, q) for q in range(partitions)), timeout,
               f"the last stable offsets of {topic} to reach the high watermarks")


def markers(bootstrap: str, topic: str, partition: int = 0) -> list[tuple[int, int]]:
    """[(offset, 0 abort / 1 commit)] of the control batches in a partition."""
    return [(b.base_offset, kproto.control_type(b)) for b in kproto.fetch_all_batches(bootstrap, topic, partition)
            if b.attributes & kproto.ATTR_CONTROL]


def wait_until(cond, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timeout ({timeout}s) waiting for {what}")
        time.sleep(interval)


def describe_txn(bootstrap: str, txn_id: str) -> dict:
    d = kproto.describe_transactions(bootstrap, [txn_id])[txn_id]
    assert d["error"] == 0, d
    return d


def fenced_error(exc: BaseException):
    assert isinstance(exc, KafkaException), repr(exc)
    err = exc.args[0]
    assert err.code() in FENCED and err.fatal(), f"expected a fatal 'fenced' error, got {err!r}"
    return err


# a transactional producer in another process: opens a transaction, writes, reports, waits to be killed
CHILD_TXN = r"""
import json, sys, time
from confluent_kafka import Producer
bs, txn_id, topic, n, timeout_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
p = Producer({"bootstrap.servers": bs, "transactional.id": txn_id, "transaction.timeout.ms": timeout_ms,
              "message.timeout.ms": timeout_ms, "linger.ms": 5, "socket.timeout.ms": min(timeout_ms, 10000)})
p.init_transactions(20)
p.begin_transaction()
for i in range(n):
    p.produce(topic, value=b"%s-%d" % (txn_id.encode(), i), partition=0)
left = p.flush(15)
print(json.dumps({"ready": left == 0}), flush=True)
while True:
    p.poll(0.2)
"""


def spawn_open_transaction(bootstrap: str, txn_id: str, topic: str, n: int, timeout_ms: int):
    """Start CHILD_TXN and wait until its records are written; returns the process."""
    child = subprocess.Popen([sys.executable, "-c", CHILD_TXN, bootstrap, txn_id, topic, str(n), str(timeout_ms)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in child.stdout], daemon=True).start()
    try:
        line = lines.get(timeout=30)
    except queue.Empty:
        child.kill()
        raise AssertionError(f"the transactional child did not start: {child.stderr.read()[-2000:]}")
    assert json.loads(line) == {"ready": True}, line
    return child


def kill(child) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
        child.wait(10)


# --------------------------------------------------------------------------- commit / abort
def test_commit_visible_abort_invisible(broker, topic):
    """Committed transactions are visible under read_committed, aborted ones are not; under
    read_uncommitted both are; the commit/abort markers take an offset each but are never
    delivered; the end offsets (consumer watermarks, AdminClient list_offsets for both isolation
    levels) are the high watermark once no transaction is open. Compressed batches too."""
    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    p = txn_producer(bs, tid(), **{"compression.type": "lz4"})
    p.init_transactions(20)
    rounds = [("c1", True), ("a1", False), ("c2", True), ("a2", False), ("c3", True)]
    for tag, commit in rounds:
        p.begin_transaction()
        for i in range(30):
            p.produce(topic, value=b"%s-%02d" % (tag.encode(), i), partition=i % 2)
        assert p.flush(15) == 0
        if commit:
            p.commit_transaction(20)
        else:
            p.abort_transaction(20)
    settle(bs, topic, 2)

    for part in (0, 1):
        want = [b"%s-%02d" % (tag.encode(), i) for tag, _ in rounds for i in range(30) if i % 2 == part]
        want_committed = [v for v in want if v[:1] == b"c"]
        hw = 15 * len(rounds) + len(rounds)     # data + one marker per transaction
        assert end_offset(bs, topic, part, RU) == hw
        assert end_offset(bs, topic, part, RC) == hw, "LSO below HW with no open transaction"
        assert admin_latest(bs, topic, part, IsolationLevel.READ_COMMITTED) == hw
        assert admin_latest(bs, topic, part, IsolationLevel.READ_UNCOMMITTED) == hw

        rc = read(bs, topic, part, RC)
        assert values(rc) == want_committed, f"partition {part}: read_committed got {values(rc)[:5]}..."
        ru = read(bs, topic, part, RU)
        assert values(ru) == want, f"partition {part}: read_uncommitted got {values(ru)[:5]}..."
        ms = markers(bs, topic, part)
        assert [t for _, t in ms] == [1 if c else 0 for _, c in rounds], ms
        assert [m for m, _ in ms] == [15 * (k + 1) + k for k in range(len(rounds))], ms
        delivered = {r.offset for r in ru}
        assert not delivered & {m for m, _ in ms}, "a control record was delivered"
        assert all(b.codec == 3 for b in kproto.fetch_all_batches(bs, topic, part)
                   if not b.attributes & kproto.ATTR_CONTROL)


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_open_transaction_holds_back_read_committed(broker, topic, outcome):
    """While transaction A is open, read_committed sees nothing from A's first offset on -
    not even records committed later by B or written without a transaction - and the
    read_committed end offset (ListOffsets, Fetch's last stable offset) is A's first offset;
    read_uncommitted sees everything. Once A ends, read_committed sees A's records (commit) or
    not (abort) and everything after them."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    produce_all(producer(bs), topic, [{"value": b"plain-0"}])                      # offset 0
    pa = txn_producer(bs, tid("hold-a"))
    pa.init_transactions(20)
    pa.begin_transaction()
    for i in range(3):
        pa.produce(topic, value=b"a-%d" % i, partition=0)                          # 1..3
    assert pa.flush(15) == 0
    pb = txn_producer(bs, tid("hold-b"))
    pb.init_transactions(20)
    pb.begin_transaction()
    for i in range(3):
        pb.produce(topic, value=b"b-%d" % i, partition=0)                          # 4..6
    pb.commit_transaction(20)                                                       # marker 7
    wait_until(lambda: raw_end(bs, topic) == 8, 10, "B's commit marker")
    produce_all(producer(bs), topic, [{"value": b"plain-%d" % i} for i in (1, 2)])  # 8, 9

    everything = [b"plain-0", b"a-0", b"a-1", b"a-2", b"b-0", b"b-1", b"b-2", b"plain-1", b"plain-2"]
    assert values(read(bs, topic, isolation=RU)) == everything
    assert values(read(bs, topic, isolation=RC)) == [b"plain-0"], "read past the open transaction"
    assert end_offset(bs, topic, 0, RC) == 1
    assert end_offset(bs, topic, 0, RU) == 10
    assert admin_latest(bs, topic, 0, IsolationLevel.READ_COMMITTED) == 1
    assert admin_latest(bs, topic, 0, IsolationLevel.READ_UNCOMMITTED) == 10
    f = kproto.fetch_v4(bs, topic, 0, 0, isolation_level=1)
    assert (f["high_watermark"], f["lso"]) == (10, 1), f
    assert all(b.last_offset < 1 for b in f["batches"]), "read_committed Fetch returned batches past the LSO"

    if outcome == "commit":
        pa.commit_transaction(20)
    else:
        pa.abort_transaction(20)
    wait_until(lambda: stable(bs, topic), 5, "the LSO to reach the HW after A ended")
    assert end_offset(bs, topic, 0, RC) == 11 == end_offset(bs, topic, 0, RU)
    want = [v for v in everything if outcome == "commit" or not v.startswith(b"a-")]
    assert values(read(bs, topic, isolation=RC)) == want
    assert values(read(bs, topic, isolation=RU)) == everything
    assert markers(bs, topic) == [(7, 1), (10, 1 if outcome == "commit" else 0)]
    f = kproto.fetch_v4(bs, topic, 0, 0, isolation_level=1)
    assert f["lso"] == 11
    if outcome == "abort":
        assert f["aborted"] is not None and [first for _, first in f["aborted"]] == [1], f["aborted"]
    else:
        assert not f["aborted"], f["aborted"]


def test_interleaved_transactions(broker, topic):
    """Two transactions (and plain records) interleaved batch by batch on one partition, one
    aborted and one committed: read_committed delivers exactly the committed producer's records
    and the plain ones, in offset order (the aborted list must name the right producer and first
    offset); read_uncommitted delivers all of them."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    pa = txn_producer(bs, tid("inter-a"))
    pb = txn_producer(bs, tid("inter-b"))
    plain = producer(bs)
    for p in (pa, pb):
        p.init_transactions(20)
        p.begin_transaction()
    order = []
    for i in range(4):
        for name, p in (("a", pa), ("b", pb), ("p", plain)):
            v = b"%s-%d" % (name.encode(), i)
            p.produce(topic, value=v, partition=0)
            assert p.flush(10) == 0
            order.append(v)
    pa.abort_transaction(20)
    pb.commit_transaction(20)
    settle(bs, topic)
    assert values(read(bs, topic, isolation=RC)) == [v for v in order if not v.startswith(b"a-")]
    assert values(read(bs, topic, isolation=RU)) == order
    f = kproto.fetch_v4(bs, topic, 0, 0, isolation_level=1)
    assert f["aborted"] is not None and [first for _, first in f["aborted"]] == [0], f["aborted"]


# --------------------------------------------------------------------------- fencing and timeouts
@pytest.mark.parametrize("how", ["commit", "produce"])
def test_zombie_fenced_by_new_instance(broker, topic, how):
    """Two producers with the same transactional.id: the second's init_transactions aborts the
    first one's open transaction and fences it; the first gets a fatal 'fenced' error on its
    next operation (commit, or a produce), writes nothing more, and the second one works."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    txn = tid("zombie")
    client_errors = []   # the fencing errors are expected: keep them off stderr

    def on_error(e):
        client_errors.append(e)

    p1 = txn_producer(bs, txn, log_level=2, error_cb=on_error)
    p1.init_transactions(20)
    p1.begin_transaction()
    for i in range(3):
        p1.produce(topic, value=b"z-%d" % i, partition=0)
    assert p1.flush(15) == 0
    e1 = describe_txn(bs, txn)["producer_epoch"]

    p2 = txn_producer(bs, txn)
    p2.init_transactions(30)
    d = describe_txn(bs, txn)
    assert d["producer_epoch"] > e1 and d["state"] in ("Empty", "CompleteAbort"), d
    assert stable(bs, topic), "the zombie's transaction is still open after the new instance initialized"
    assert markers(bs, topic) == [(3, 0)]

    if how == "commit":
        with pytest.raises(KafkaException) as ei:
            p1.commit_transaction(15)
        print("zombie commit:", fenced_error(ei.value))
    else:
        # (no delivery callback: confluent-kafka raises the fatal error from flush() and then
        # fails to call a Python callback - SystemError)
        p1.produce(topic, value=b"z-late", partition=0)
        try:
            p1.flush(15)
        except KafkaException as e:
            print("zombie flush:", fenced_error(e))
        print("zombie client errors:", client_errors)
        with pytest.raises(KafkaException) as ei:
            p1.commit_transaction(15)
        print("zombie commit after the produce:", fenced_error(ei.value))
    with pytest.raises(KafkaException):   # fenced for good
        p1.begin_transaction()
        p1.commit_transaction(10)

    p2.begin_transaction()
    for i in range(2):
        p2.produce(topic, value=b"new-%d" % i, partition=0)
    p2.commit_transaction(20)
    settle(bs, topic)
    assert values(read(bs, topic, isolation=RC)) == [b"new-0", b"new-1"]
    assert values(read(bs, topic, isolation=RU)) == [b"z-0", b"z-1", b"z-2", b"new-0", b"new-1"]
    assert markers(bs, topic) == [(3, 0), (6, 1)]


def test_killed_producer_transaction_aborted_after_timeout(broker, topic):
    """A producer in another process is SIGKILLed with its transaction open
    (transaction.timeout.ms = 3000): read_committed is held back until the broker aborts the
    transaction - not before the timeout, within about a second after it. Its records are then
    invisible to read_committed, the LSO is past them, the producer epoch is bumped (fenced), and
    the transactional id can be used again."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    produce_all(producer(bs), topic, [{"value": b"before"}])
    txn = tid("dead")
    t_spawn = time.monotonic()
    child = spawn_open_transaction(bs, txn, topic, 4, 3000)
    try:
        t_ready = time.monotonic()
        assert raw_end(bs, topic, 0, 0) == 5 and raw_end(bs, topic, 0, 1) == 1
        assert values(read(bs, topic, isolation=RC)) == [b"before"]
        d = describe_txn(bs, txn)
        assert (d["state"], d["timeout_ms"], d["partitions"]) == ("Ongoing", 3000, {topic: [0]}), d
        epoch = d["producer_epoch"]
        kill(child)
    finally:
        kill(child)
    wait_until(lambda: stable(bs, topic), 3 + 6, "the broker to abort the dead producer's transaction",
               interval=0.05)
    took = time.monotonic() - t_spawn
    print(f"aborted {took:.1f}s after the producer started, {time.monotonic() - t_ready:.1f}s after it was ready")
    assert took >= 3.0, f"aborted {took:.1f}s after the producer started: before transaction.timeout.ms (3 s)"
    assert time.monotonic() - t_ready <= 3 + 3, "aborted too late"

    assert raw_end(bs, topic, 0, 0) == 6 and raw_end(bs, topic, 0, 1) == 6
    assert end_offset(bs, topic, 0, RC) == 6
    assert markers(bs, topic) == [(5, 0)]
    assert values(read(bs, topic, isolation=RC)) == [b"before"]
    assert values(read(bs, topic, isolation=RU)) == [b"before"] + [b"%s-%d" % (txn.encode(), i) for i in range(4)]
    d = wait_until(lambda: (lambda d: d if d["state"] == "CompleteAbort" else None)(describe_txn(bs, txn)), 5,
                   "state CompleteAbort")
    assert d["producer_epoch"] > epoch, f"epoch not bumped by the timeout abort: {epoch} -> {d}"

    p = txn_producer(bs, txn)
    p.init_transactions(20)
    p.begin_transaction()
    p.produce(topic, value=b"after", partition=0)
    p.commit_transaction(20)
    settle(bs, topic)
    assert values(read(bs, topic, isolation=RC)) == [b"before", b"after"]


def test_expired_transaction_fences_its_producer(broker, topic):
    """A live producer leaves its transaction open longer than transaction.timeout.ms (2000):
    the broker aborts it and bumps the epoch, so the producer's commit fails with a fatal
    'fenced' error; its records stay invisible to read_committed."""
    bs = broker.bootstrap
    create_topic(bs, topic)
    txn = tid("expire")
    p = txn_producer(bs, txn, timeout_ms=2000, log_level=2, error_cb=lambda e: None)
    p.init_transactions(20)
    t0 = time.monotonic()
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=b"late-%d" % i, partition=0)
    assert p.flush(10) == 0
    assert not stable(bs, topic)
    wait_until(lambda: stable(bs, topic), 2 + 6, "the broker to abort the expired transaction", interval=0.05)
    assert time.monotonic() - t0 >= 2.0, "aborted before transaction.timeout.ms"
    assert markers(bs, topic) == [(3, 0)]
    with pytest.raises(KafkaException) as ei:
        p.commit_transaction(15)
    print("commit after expiry:", fenced_error(ei.value))
    assert values(read(bs, topic, isolation=RC)) == []
    assert raw_end(bs, topic) == 4, "the fenced commit wrote something"


# --------------------------------------------------------------------------- consume-transform-produce
def committed_of(c: Consumer, topic: str, partitions: int) -> dict[int, int]:
    res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    return {tp.partition: tp.offset for tp in res}


def test_consume_transform_produce_exactly_once(broker, topic):
    """The exactly-once loop: a group consumer (read_committed) feeds a transactional producer
    that writes the transformed records and sends the consumer's offsets to the transaction
    (AddOffsetsToTxn + TxnOffsetCommit with the member id and generation). One iteration is
    aborted and redone after rewinding to the committed offsets. Every input record is in the
    output exactly once under read_committed; committed offsets advance only on commit."""
    bs = broker.bootstrap
    src, dst = topic + "-in", topic + "-out"
    create_topic(bs, src, partitions=2)
    create_topic(bs, dst, partitions=2)
    inputs = [b"in-%02d" % i for i in range(40)]
    produce_all(producer(bs), src, [{"value": v, "partition": i % 2} for i, v in enumerate(inputs)])
    group = tid("ctp-group")
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False,
                  "auto.offset.reset": "earliest", "isolation.level": RC,
                  "heartbeat.interval.ms": 500, "session.timeout.ms": 10000, "socket.timeout.ms": 10000})
    p = txn_producer(bs, tid("ctp"))
    p.init_transactions(20)
    processed: list[bytes] = []
    aborted: list[bytes] = []
    iteration = 0
    try:
        committed = committed_of(c, src, 2)       # nothing yet
        c.subscribe([src])
        deadline = time.monotonic() + 40
        while len(processed) < len(inputs):
            assert time.monotonic() < deadline, f"processed {len(processed)} of {len(inputs)}"
            msgs = c.consume(num_messages=7, timeout=0.3)
            for m in msgs:
                if m.error() and m.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(m.error())
            msgs = [m for m in msgs if not m.error()]
            if not msgs:
                continue
            iteration += 1
            p.begin_transaction()
            nxt = {}
            for m in msgs:
                p.produce(dst, key=m.value(), value=b"out:" + m.value(), partition=m.partition())
                nxt[m.partition()] = m.offset() + 1
            p.send_offsets_to_transaction([TopicPartition(src, q, o) for q, o in sorted(nxt.items())],
                                          c.consumer_group_metadata(), 20)
            if iteration == 2:
                # the transaction holds offsets for the group: a read_committed consumer's committed()
                # (OffsetFetch require_stable) gets UNSTABLE_OFFSET_COMMIT and retries until its timeout
                with pytest.raises(KafkaException) as ei:
                    c.committed([TopicPartition(src, q) for q in nxt], timeout=2)
                assert ei.value.args[0].code() == KafkaError._TIMED_OUT, ei.value
                assert p.flush(10) == 0
                p.abort_transaction(20)
                assert committed_of(c, src, 2) == committed, "an aborted transaction moved the committed offsets"
                aborted.extend(m.value() for m in msgs)
                for q in range(2):    # rewind: redo the aborted input
                    c.seek(TopicPartition(src, q, committed[q] if committed[q] >= 0 else 0))
                continue
            p.commit_transaction(20)
            now = committed_of(c, src, 2)
            for q in range(2):
                assert now[q] == nxt.get(q, committed[q]), f"committed offsets after the commit: {now}, expected {nxt}"
            committed = now
            processed.extend(m.value() for m in msgs)
    finally:
        c.close()
    assert aborted, "no iteration was aborted"
    assert sorted(processed) == sorted(inputs), "input processed more than once or not at all"
    settle(bs, dst, 2)

    out_rc = [r for q in (0, 1) for r in read(bs, dst, q, RC)]
    assert sorted(r.key for r in out_rc) == sorted(inputs)
    assert all(r.value == b"out:" + r.key for r in out_rc)
    out_ru = [r for q in (0, 1) for r in read(bs, dst, q, RU)]
    assert sorted(r.key for r in out_ru) == sorted(inputs + aborted)

    c2 = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    try:
        assert committed_of(c2, src, 2) == {0: 20, 1: 20}
    finally:
        c2.close()


# --------------------------------------------------------------------------- broker restarts
@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_broker_restart_mid_transaction(broker_factory, topic, how):
    """The broker stops (SIGTERM, or kill -9) while a transaction is open, and while another
    producer's transaction (transaction.timeout.ms 4000, the producer killed) is left open.
    After the restart: the open transaction can still be committed (after SIGTERM it must be;
    after kill -9 it may instead fail and be aborted), the abandoned one is aborted on its
    timeout, later transactions work, committed data is visible exactly once and aborted data
    not at all - also after another clean restart."""
    b = broker_factory.start()
    bs = b.bootstrap
    create_topic(bs, topic, partitions=2)
    txn = tid("restart")
    p = txn_producer(bs, txn, log_level=2, error_cb=lambda e: None, **{"reconnect.backoff.max.ms": 500})
    p.init_transactions(20)

    def txn_round(tag: str, end=None):
        p.begin_transaction()
        for i in range(6):
            p.produce(topic, value=b"%s-%d" % (tag.encode(), i), partition=i % 2)
        assert p.flush(15) == 0
        if end == "commit":
            p.commit_transaction(20)
        elif end == "abort":
            p.abort_transaction(20)

    txn_round("t1", "commit")
    abandoned = tid("abandoned")
    kill(spawn_open_transaction(bs, abandoned, topic, 3, 4000))
    txn_round("t2")                  # left open across the restart
    hw1 = raw_end(bs, topic, 1, 0)
    assert raw_end(bs, topic, 1, 1) == 4 and hw1 == 7    # t1: 3 + marker; t2 open from offset 4
    if how == "sigterm":
        b.restart()
    else:
        b.kill()
        b.start()
    # the open transactions still hold read_committed back after the restart
    assert (raw_end(bs, topic, 1, 1), raw_end(bs, topic, 1, 0)) == (4, hw1), \
        "after the restart the open transaction's records are visible to read_committed (or lost)"
    assert values(read(bs, topic, 1, RC)) == [b"t1-1", b"t1-3", b"t1-5"]
    assert describe_txn(bs, txn)["state"] == "Ongoing"

    t2_committed = True
    try:
        p.commit_transaction(30)
    except KafkaException as e:
        err = e.args[0]
        print(f"commit of the open transaction after {how}: {err!r}")
        if how == "sigterm":
            raise AssertionError(f"the transaction open across a clean restart could not be committed: {err!r}")
        t2_committed = False
        if err.txn_requires_abort():
            p.abort_transaction(30)
        else:
            p = txn_producer(bs, txn)
            p.init_transactions(30)
    print(f"after {how}: the open transaction was {'committed' if t2_committed else 'aborted'}")
    wait_until(lambda: stable(bs, topic, 0) and stable(bs, topic, 1), 15,
               "the abandoned transaction to be aborted after the restart")
    txn_round("t3", "abort")
    txn_round("t4", "commit")

    def check():
        settle(bs, topic, 2)
        wait_until(lambda: describe_txn(bs, txn)["state"] == "CompleteCommit", 10, "CompleteCommit")
        committed = {b"%s-%d" % (t, i) for t in (b"t1", b"t4") + ((b"t2",) if t2_committed else ()) for i in range(6)}
        written = {b"%s-%d" % (t, i) for t in (b"t1", b"t2", b"t3", b"t4") for i in range(6)} | \
            {b"%s-%d" % (abandoned.encode(), i) for i in range(3)}
        rc = [v for q in (0, 1) for v in values(read(bs, topic, q, RC))]
        ru = [v for q in (0, 1) for v in values(read(bs, topic, q, RU))]
        assert sorted(rc) == sorted(committed), f"read_committed: {sorted(set(rc) ^ committed)[:10]} differ"
        assert len(ru) == len(set(ru)), f"records stored twice: {sorted(v for v in set(ru) if ru.count(v) > 1)[:10]}"
        assert set(ru) == written, f"read_uncommitted: {sorted(set(ru) ^ written)[:10]} differ"
        for q in (0, 1):
            assert stable(bs, topic, q)
        assert describe_txn(bs, txn)["state"] == "CompleteCommit"
        assert describe_txn(bs, abandoned)["state"] == "CompleteAbort"

    check()
    b.restart()
    check()


# --------------------------------------------------------------------------- other clients
def test_kafka_python_transactions(broker, topic):
    """kafka-python 3.x: a transactional producer commits and aborts; its own read_committed
    consumer (end_offsets = LSO) and confluent-kafka agree on what is visible."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP

    bs = broker.bootstrap
    create_topic(bs, topic)
    p = KafkaProducer(bootstrap_servers=bs, transactional_id=tid("kp"), request_timeout_ms=10000)
    try:
        p.init_transactions()
        for tag, commit in [("kc1", True), ("ka", False), ("kc2", True)]:
            p.begin_transaction()
            for i in range(5):
                p.send(topic, value=b"%s-%d" % (tag.encode(), i), partition=0)
            p.flush(timeout=10)
            if commit:
                p.commit_transaction()
            else:
                p.abort_transaction()
    finally:
        p.close(timeout=5)
    settle(bs, topic)
    committed = [b"kc1-%d" % i for i in range(5)] + [b"kc2-%d" % i for i in range(5)]
    everything = [b"kc1-%d" % i for i in range(5)] + [b"ka-%d" % i for i in range(5)] + [b"kc2-%d" % i for i in range(5)]

    def kp_read(isolation, n):
        """(end offset, values): reads n records, then polls once more for anything extra."""
        c = KafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                          auto_offset_reset="earliest", isolation_level=isolation, request_timeout_ms=10000)
        try:
            tp = KTP(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            end = c.end_offsets([tp])[tp]
            out = []
            deadline = time.monotonic() + 15
            while len(out) < n and time.monotonic() < deadline:
                for recs in c.poll(timeout_ms=300).values():
                    out.extend(r.value for r in recs)
            for recs in c.poll(timeout_ms=500).values():
                out.extend(r.value for r in recs)
            return end, out
        finally:
            c.close()

    assert kp_read(RC, len(committed)) == (18, committed)
    assert kp_read(RU, len(everything)) == (18, everything)
    assert values(read(bs, topic, isolation=RC)) == committed
    assert values(read(bs, topic, isolation=RU)) == everything


def test_aiokafka_transactions(broker, topic):
    """aiokafka (v0 of InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
    EndTxn): commit, abort, and offsets sent to a transaction (group without members); its
    read_committed consumer sees only the committed records."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from aiokafka import TopicPartition as ATP

    bs = broker.bootstrap
    create_topic(bs, topic)
    group = tid("aio-group")

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=bs, transactional_id=tid("aio"), request_timeout_ms=10000)
        await p.start()
        try:
            async with p.transaction():
                for i in range(4):
                    await p.send_and_wait(topic, b"ac-%d" % i, partition=0)
            await p.begin_transaction()
            for i in range(4):
                await p.send_and_wait(topic, b"aa-%d" % i, partition=0)
            await p.abort_transaction()
            async with p.transaction():
                await p.send_and_wait(topic, b"ac-last", partition=0)
                await p.send_offsets_to_transaction({ATP(topic, 0): 42}, group)
        finally:
            await p.stop()

    async def consume_all(isolation, n):
        """(end offset, values): reads n records, then fetches once more for anything extra."""
        c = AIOKafkaConsumer(bootstrap_servers=bs, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", isolation_level=isolation)
        await c.start()
        try:
            tp = ATP(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            end = (await c.end_offsets([tp]))[tp]
            out = []
            deadline = time.monotonic() + 15
            while len(out) < n and time.monotonic() < deadline:
                for recs in (await c.getmany(timeout_ms=300)).values():
                    out.extend(r.value for r in recs)
            for recs in (await c.getmany(timeout_ms=500)).values():
                out.extend(r.value for r in recs)
            return end, out
        finally:
            await c.stop()

    asyncio.run(asyncio.wait_for(produce(), 60))
    settle(bs, topic)
    committed = [b"ac-%d" % i for i in range(4)] + [b"ac-last"]
    everything = [b"ac-%d" % i for i in range(4)] + [b"aa-%d" % i for i in range(4)] + [b"ac-last"]
    assert asyncio.run(asyncio.wait_for(consume_all(RC, len(committed)), 30)) == (12, committed)
    assert asyncio.run(asyncio.wait_for(consume_all(RU, len(everything)), 30)) == (12, everything)
    assert values(read(bs, topic, isolation=RC)) == committed
    c = Consumer({"bootstrap.servers": bs, "group.id": group, "enable.auto.commit": False})
    try:
        assert committed_of(c, topic, 1) == {0: 42}
    finally:
        c.close()


def test_admin_list_describe_transactions_and_producers(broker, topic):
    """kafka-python's admin client: describe_transactions (state, producer id/epoch, timeout,
    start time, partitions; unknown id -> TransactionalIdNotFoundError), list_transactions (state
    and producer id filters) and describe_producers (the open transaction's first offset, last
    sequence) during and after a confluent-kafka transaction."""
    from kafka import KafkaAdminClient
    from kafka import TopicPartition as KTP
    from kafka.errors import TransactionalIdNotFoundError

    bs = broker.bootstrap
    create_topic(bs, topic, partitions=2)
    produce_all(producer(bs), topic, [{"value": b"x", "partition": 0}] * 2)
    txn = tid("adm")
    p = txn_producer(bs, txn, timeout_ms=45000)
    p.init_transactions(20)
    a = KafkaAdminClient(bootstrap_servers=bs, request_timeout_ms=10000)
    try:
        d = a.describe_transactions([txn])[txn]
        assert (d.state.value, d.transaction_timeout_ms, d.topic_partitions) == ("Empty", 45000, set()), d
        pid, epoch = d.producer_id, d.producer_epoch

        t0 = int(time.time() * 1000)
        p.begin_transaction()
        for i in range(5):
            p.produce(topic, value=b"t-%d" % i, partition=i % 2)   # 3 to partition 0, 2 to 1
        assert p.flush(15) == 0
        d = a.describe_transactions([txn])[txn]
        assert (d.state.value, d.producer_id, d.producer_epoch) == ("Ongoing", pid, epoch), d
        assert d.topic_partitions == {KTP(topic, 0), KTP(topic, 1)}, d
        assert t0 - 2000 <= d.transaction_start_time_ms <= int(time.time() * 1000) + 2000, d

        listed = [t for ts in a.list_transactions().values() for t in ts]
        assert (txn, pid, "Ongoing") in [(t.transactional_id, t.producer_id, t.state.value) for t in listed], listed
        assert txn in [t.transactional_id for ts in a.list_transactions(state_filters=["Ongoing"]).values() for t in ts]
        assert txn not in [t.transactional_id for ts in a.list_transactions(state_filters=["CompleteCommit"]).values()
                           for t in ts]
        assert [t.transactional_id for ts in a.list_transactions(producer_id_filters=[pid]).values() for t in ts] == [txn]

        prod = a.describe_producers([KTP(topic, 0), KTP(topic, 1)])
        for part, first, last_seq in [(0, 2, 2), (1, 0, 1)]:
            st = {s.producer_id: s for s in prod[KTP(topic, part)].active_producers}
            assert pid in st, (part, prod)
            assert (st[pid].producer_epoch, st[pid].current_transaction_start_offset, st[pid].last_sequence) == \
                (epoch, first, last_seq), (part, st[pid])

        p.commit_transaction(20)
        d = wait_until(lambda: (lambda d: d if d.state.value == "CompleteCommit" else None)(
            a.describe_transactions([txn])[txn]), 5, "CompleteCommit")
        assert d.topic_partitions == set(), d
        prod = a.describe_producers([KTP(topic, 0)])
        st = {s.producer_id: s for s in prod[KTP(topic, 0)].active_producers}
        assert st[pid].current_transaction_start_offset == -1, st[pid]
        with pytest.raises(TransactionalIdNotFoundError):
            a.describe_transactions([txn + "-unknown"])
    finally:
        a.close()
