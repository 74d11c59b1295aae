"""aiokafka: producer and consumer with manual assignment (no group)."""
from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from kutil import consume, create_topic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def getmany_n(c, n, timeout=15.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        batch = await c.getmany(timeout_ms=500)
        for recs in batch.values():
            out.extend(recs)
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_aiokafka_produce_consume(broker, topic, codec):
    records = [(b"key-%d" % (i % 5) if i % 4 else None, (b"aio %d;" % i) * (i % 9 + 1),
                [("h1", b"x"), ("h2", b"%d" % i)]) for i in range(80)]

    async def produce():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all",
                             compression_type=None if codec == "none" else codec, linger_ms=10)
        await p.start()
        try:
            futs = [await p.send(topic, value=v, key=k, headers=h, partition=0, timestamp_ms=1700000000000 + i)
                    for i, (k, v, h) in enumerate(records)]
            return [(await f).offset for f in futs]
        finally:
            await p.stop()

    offsets = run(produce())
    assert offsets == list(range(80))
    got = consume(broker.bootstrap, topic)
    assert [(r.key, r.value, r.headers, r.ts) for r in got] == \
        [(k, v, h, 1700000000000 + i) for i, (k, v, h) in enumerate(records)]

    async def read_back():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            return await getmany_n(c, 80)
        finally:
            await c.stop()

    recs = run(read_back())
    assert [(r.offset, r.key, r.value, list(r.headers)) for r in recs] == \
        [(i, k, v, h) for i, (k, v, h) in enumerate(records)]


def test_aiokafka_seek_and_offsets(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    base = 1690000000000

    async def scenario():
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=50)
        await p.start()
        try:
            # one batch for partition 0 so that seeking lands inside it
            futs = [await p.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=base + 10 * i)
                    for i in range(30)]
            await asyncio.gather(*futs)
            await p.send_and_wait(topic, value=b"two", partition=2)
        finally:
            await p.stop()

        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest")
        await c.start()
        try:
            tps = [TopicPartition(topic, i) for i in range(3)]
            c.assign(tps)
            assert await c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0, tps[2]: 0}
            assert await c.end_offsets(tps) == {tps[0]: 30, tps[1]: 0, tps[2]: 1}
            found = await c.offsets_for_times({tps[0]: base + 101, tps[1]: base})
            assert found[tps[0]].offset == 11 and found[tps[0]].timestamp == base + 110
            assert found[tps[1]] is None
            c.seek(tps[0], 23)
            c.seek(tps[2], 1)
            recs = await getmany_n(c, 7)
            assert [(r.partition, r.offset, r.value) for r in recs] == [(0, i, b"v%d" % i) for i in range(23, 30)]
            await c.seek_to_beginning(tps[2])
            recs = await getmany_n(c, 1)
            assert [(r.partition, r.offset, r.value) for r in recs] == [(2, 0, b"two")]
        finally:
            await c.stop()

    run(scenario())


def test_aiokafka_long_poll_wakeup(broker, topic):
    create_topic(broker.bootstrap, topic)

    async def scenario():
        c = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", fetch_max_wait_ms=5000)
        await c.start()
        p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=0)
        await p.start()
        try:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.seek(tp, 0)
            getter = asyncio.ensure_future(c.getone())
            await asyncio.sleep(1.0)
            sent = time.monotonic()
            await p.send_and_wait(topic, value=b"ping", partition=0)
            rec = await asyncio.wait_for(getter, 15)
            return rec.value, time.monotonic() - sent
        finally:
            await p.stop()
            await c.stop()

    value, elapsed = run(scenario())
    assert value == b"ping"
    assert elapsed < 3.0, f"aiokafka got the record {elapsed:.2f}s after produce; long-poll not woken by data"
