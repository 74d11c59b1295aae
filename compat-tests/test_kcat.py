"""Debian's kcat 1.7.1 (librdkafka 2.0.2): an old client that must keep working.

librdkafka before 2.11 only compresses when the broker's Produce range contains v0,
so besides the round trip we check that the stored batches really are compressed
(codec bits of the batches a raw Fetch returns, and the size of the segment files).
"""
from __future__ import annotations

import json
import subprocess

import pytest

import kproto
from kutil import consume, create_topic, kcat, kcat_bin

CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}


def test_kcat_version_is_the_old_client():
    out = subprocess.run([kcat_bin(), "-V"], capture_output=True, timeout=10).stdout.decode()
    # not an assertion on the exact version (any kcat must work), but say what ran
    print(out)
    assert "librdkafka" in out


def kcat_produce(bootstrap, topic, lines: list[bytes], *extra: str, partition: int | None = 0):
    args = ["-b", bootstrap, "-P", "-t", topic, "-X", "linger.ms=20", *extra]
    if partition is not None:
        args += ["-p", str(partition)]
    cp = kcat(args, input=b"\n".join(lines) + b"\n")
    assert cp.returncode == 0, f"kcat produce failed ({cp.returncode}): {cp.stderr.decode()[-2000:]}"
    return cp


def kcat_consume(bootstrap, topic, fmt: str, partition: int = 0, offset: str = "beginning", *extra: str):
    args = ["-b", bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", offset, "-e", "-f", fmt, *extra]
    cp = kcat(args)
    assert cp.returncode == 0, f"kcat consume failed ({cp.returncode}): {cp.stderr.decode()[-2000:]}"
    return cp.stdout


@pytest.mark.parametrize("codec", list(CODECS))
def test_kcat_produce_consume_keys_headers_codec(broker, topic, codec):
    n = 200
    filler = b"abcdefgh" * 125  # 1000 compressible bytes
    lines = [b"key%d:value-%d-%s" % (i, i, filler) for i in range(n)]
    raw_bytes = sum(len(l) for l in lines)
    kcat_produce(broker.bootstrap, topic, lines, "-K:", "-H", "h1=v1", "-H", "trace=abc",
                 "-X", f"compression.codec={codec}")

    out = kcat_consume(broker.bootstrap, topic, "%k|%s|%h|%o\\n")
    expected = b"".join(b"key%d|value-%d-%s|h1=v1,trace=abc|%d\n" % (i, i, filler, i) for i in range(n))
    assert out == expected

    # the stored batches carry the codec kcat was asked for
    batches = kproto.fetch_all_batches(broker.bootstrap, topic, 0)
    assert batches, "raw fetch returned no batch"
    assert {b.codec for b in batches} == {CODECS[codec]}, \
        f"stored batch codecs {[b.codec for b in batches]}, expected {CODECS[codec]} ({codec})"
    assert all(b.crc_ok for b in batches), "a stored batch has a bad CRC-32C"
    assert all(b.magic == 2 for b in batches)
    assert sum(b.record_count for b in batches) == n

    # ... and so the segment files are much smaller than the payload
    files = broker.partition_log_files(topic, 0)
    assert files, f"no <topic>-0/*.log under the data dir:\n{broker.tree()}"
    on_disk = sum(f.stat().st_size for f in files)
    if codec == "none":
        assert on_disk >= raw_bytes, f"uncompressed log {on_disk} B < payload {raw_bytes} B"
    else:
        assert on_disk < raw_bytes / 4, f"{codec}: log is {on_disk} B for {raw_bytes} B of compressible payload"


def test_kcat_metadata_json(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=3)
    cp = kcat(["-b", broker.bootstrap, "-L", "-J", "-t", topic])
    assert cp.returncode == 0, cp.stderr.decode()
    md = json.loads(cp.stdout)
    assert len(md["brokers"]) == 1
    b = md["brokers"][0]
    assert b["name"] == broker.bootstrap, f"advertised {b['name']}, listening on {broker.bootstrap}"
    topics = {t["topic"]: t for t in md["topics"]}
    assert topic in topics
    t = topics[topic]
    assert t.get("error") in (None, "Success"), t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == b["id"]
        assert [r["id"] for r in p["replicas"]] == [b["id"]]
        assert [r["id"] for r in p["isrs"]] == [b["id"]]


def test_kcat_metadata_all_topics(broker, topic):
    create_topic(broker.bootstrap, topic + "-a", partitions=2)
    create_topic(broker.bootstrap, topic + "-b", partitions=1)
    cp = kcat(["-b", broker.bootstrap, "-L", "-J"])
    assert cp.returncode == 0, cp.stderr.decode()
    md = json.loads(cp.stdout)
    counts = {t["topic"]: len(t["partitions"]) for t in md["topics"]}
    assert counts.get(topic + "-a") == 2 and counts.get(topic + "-b") == 1, counts


def test_kcat_consume_offsets(broker, topic):
    lines = [b"v%d" % i for i in range(30)]
    kcat_produce(broker.bootstrap, topic, lines)
    # absolute offset
    assert kcat_consume(broker.bootstrap, topic, "%o:%s\\n", 0, "17") == \
        b"".join(b"%d:v%d\n" % (i, i) for i in range(17, 30))
    # relative to the end (uses ListOffsets latest)
    assert kcat_consume(broker.bootstrap, topic, "%o:%s\\n", 0, "-5") == \
        b"".join(b"%d:v%d\n" % (i, i) for i in range(25, 30))


def test_kcat_null_value_and_key(broker, topic):
    # -Z: empty value -> NULL record; a line without the key delimiter has no key
    kcat_produce(broker.bootstrap, topic, [b"k1:", b"k2:v2"], "-K:", "-Z")
    recs = consume(broker.bootstrap, topic)
    assert [(r.key, r.value) for r in recs] == [(b"k1", None), (b"k2", b"v2")]
    out = kcat_consume(broker.bootstrap, topic, "%k=%s;", 0, "beginning", "-Z")
    assert out == b"k1=NULL;k2=v2;"


def test_kcat_reads_what_confluent_wrote(broker, topic):
    from kutil import producer, produce_all
    p = producer(broker.bootstrap, compression_type="lz4")
    produce_all(p, topic, [
        {"key": b"a", "value": b"1", "headers": [("x", b"1"), ("x", b"2")]},
        {"key": None, "value": b"2"},
        {"key": b"c", "value": b"3", "timestamp": 1600000000123},
    ])
    out = kcat_consume(broker.bootstrap, topic, "%k|%s|%h|%o|%T\\n", 0, "beginning", "-Z")
    lines = out.decode().splitlines()
    assert lines[0].startswith("a|1|x=1,x=2|0|")
    assert lines[1].startswith("NULL|2||1|")
    assert lines[2] == "c|3||2|1600000000123"


def test_kcat_partitions_and_keys(broker, topic):
    create_topic(broker.bootstrap, topic, partitions=4)
    for p in range(4):
        kcat_produce(broker.bootstrap, topic, [b"p%d-%d" % (p, i) for i in range(5)], partition=p)
    for p in range(4):
        assert kcat_consume(broker.bootstrap, topic, "%p/%o/%s\\n", p) == \
            b"".join(b"%d/%d/p%d-%d\n" % (p, i, p, i) for i in range(5))
