"""Raw-socket abuse: bad input never crashes the broker nor disturbs other clients;
version negotiation details old clients depend on."""
from __future__ import annotations

import os
import random
import struct
import time

import pytest

import kproto
from kproto import (API_FETCH, API_METADATA, API_PRODUCE, API_VERSIONS, UNSUPPORTED_VERSION, Conn, i16,
                    i32, request, uvarint)
from kutil import consume, producer, produce_all


def assert_serves(broker, topic):
    """The broker still answers a fresh client normally."""
    with Conn(broker.bootstrap) as c:
        c.send(request(API_VERSIONS, 0, 4242, b""))
        err, table = kproto.parse_api_versions_v0(c.recv_response(4242))
        assert err == 0 and API_PRODUCE in table
    res = produce_all(producer(broker.bootstrap), topic, [{"value": b"still alive"}])
    assert [r.value for r in consume(broker.bootstrap, topic)][-1] == b"still alive"
    assert broker.alive()
    return res


def api_versions_v0(bootstrap):
    with Conn(bootstrap) as c:
        c.send(request(API_VERSIONS, 0, 1, b""))
        return kproto.parse_api_versions_v0(c.recv_response(1))


# ------------------------------------------------------------------ version negotiation
def test_api_versions_v0_and_v3_agree(broker):
    err0, t0 = api_versions_v0(broker.bootstrap)
    assert err0 == 0
    with Conn(broker.bootstrap) as c:
        c.send(request(API_VERSIONS, 3, 2, kproto.api_versions_v3_body(), flexible=True))
        err3, t3 = kproto.parse_api_versions_v3(c.recv_response(2))
    assert err3 == 0
    assert t0 == t3
    for key in (API_PRODUCE, API_FETCH, 2, API_METADATA, API_VERSIONS, 19, 20, 32):
        assert key in t0, f"API {key} not advertised: {sorted(t0)}"
    assert t0[API_VERSIONS][0] == 0 and t0[API_VERSIONS][1] >= 3


def test_produce_advertised_from_v0(broker):
    """librdkafka < 2.11 (kcat 1.7.1) only compresses when Produce v0 is in range;
    record batches need Produce 3 / Fetch 4, zstd Produce 7 / Fetch 10."""
    _, table = api_versions_v0(broker.bootstrap)
    lo, hi = table[API_PRODUCE]
    assert lo == 0, f"Produce advertised from v{lo}, must be v0"
    assert hi >= 7
    flo, fhi = table[API_FETCH]
    assert flo <= 4 and fhi >= 10
    assert table[2][0] <= 1, "ListOffsets v1 needed by old librdkafka for timestamp lookups"


@pytest.mark.parametrize("version", [0, 1, 2])
def test_produce_v0_to_v2_unsupported_version(broker, topic, version):
    records = kproto.simple_batch([b"x"])
    with Conn(broker.bootstrap) as c:
        c.send(request(API_PRODUCE, version, 77, kproto.produce_body(version, topic, 0, records)))
        try:
            r = c.recv_response(77)
        except ConnectionError as e:
            pytest.fail(f"Produce v{version}: connection closed ({e}) instead of UNSUPPORTED_VERSION (35)")
        if version == 2:
            parts = kproto.parse_produce_v2(r)
            assert parts and all(p[2] == UNSUPPORTED_VERSION for p in parts), parts
        else:
            assert UNSUPPORTED_VERSION.to_bytes(2, "big") in r.data[4:], r.data


def test_produce_v3_raw_works(broker, topic):
    """The hand-made batch of the v0-v2 test is valid: v3 accepts it."""
    from kutil import create_topic
    create_topic(broker.bootstrap, topic)
    with Conn(broker.bootstrap) as c:
        c.send(request(API_PRODUCE, 3, 78, kproto.produce_body(3, topic, 0, kproto.simple_batch([b"a", b"b"]))))
        parts = kproto.parse_produce_v2(c.recv_response(78))
    assert parts == [(topic, 0, 0, 0)]
    assert [r.value for r in consume(broker.bootstrap, topic)] == [b"a", b"b"]


def test_api_versions_v99_falls_back_to_v0(broker, topic):
    with Conn(broker.bootstrap) as c:
        c.send(request(API_VERSIONS, 99, 5, kproto.api_versions_v3_body(), flexible=True))
        r = c.recv_response(5)
        err, table = kproto.parse_api_versions_v0(r)
        assert err == UNSUPPORTED_VERSION
        assert API_VERSIONS in table and table[API_PRODUCE][0] == 0, table
        assert r.remaining() in (0, 4), f"{r.remaining()} trailing bytes after a v0 ApiVersions body"
        # the connection stays usable
        c.send(request(API_VERSIONS, 0, 6, b""))
        assert kproto.parse_api_versions_v0(c.recv_response(6))[0] == 0
    assert_serves(broker, topic)


def test_unknown_api_key(broker, topic):
    with Conn(broker.bootstrap) as c:
        c.send(request(9999, 0, 9, b"\x00" * 16))
        try:
            frame = c.recv_frame()
        except (ConnectionError, OSError):
            frame = None  # closing the connection is acceptable
        if frame is not None:
            (corr,) = struct.unpack_from(">i", frame)
            assert corr == 9
            assert UNSUPPORTED_VERSION.to_bytes(2, "big") in frame[4:], frame
    assert_serves(broker, topic)


def test_unknown_version_of_known_api(broker, topic):
    """Metadata v200: UNSUPPORTED_VERSION or a closed connection, never a crash."""
    with Conn(broker.bootstrap) as c:
        c.send(request(API_METADATA, 200, 10, uvarint(1) + uvarint(0), flexible=True))
        try:
            frame = c.recv_frame()
            assert struct.unpack_from(">i", frame)[0] == 10
        except (ConnectionError, OSError):
            pass
    assert_serves(broker, topic)


# ------------------------------------------------------------------ garbage
def test_random_bytes(broker, topic):
    rnd = random.Random(1234)
    for i in range(20):
        with Conn(broker.bootstrap, timeout=3) as c:
            size = rnd.choice([rnd.randrange(1, 64), rnd.randrange(64, 4096)])
            blob = bytes(rnd.randrange(256) for _ in range(size))
            if i % 2 == 0:  # a plausible length prefix followed by garbage
                blob = struct.pack(">i", len(blob)) + blob
            try:
                c.send(blob)
                c.closed_by_peer(0.3)
            except OSError:
                pass
    assert_serves(broker, topic)


def test_truncated_frame(broker, topic):
    with Conn(broker.bootstrap) as c:
        full = request(API_METADATA, 1, 11, kproto.metadata_v1_body(None))
        c.send(full[:len(full) - 3])
        time.sleep(0.3)
    with Conn(broker.bootstrap) as c:  # length says 100, 10 bytes come, then the client goes away
        c.send(struct.pack(">i", 100) + os.urandom(10))
    assert_serves(broker, topic)


@pytest.mark.parametrize("size", [0x7FFFFFFF, -1, -2147483648, 0])
def test_oversized_or_negative_frame_closes_connection(broker, topic, size):
    with Conn(broker.bootstrap) as c:
        c.send(struct.pack(">i", size) + b"\x00\x12\x00\x00" + b"\x00" * 100)
        if size != 0:
            assert c.closed_by_peer(5.0), f"frame size {size}: connection not closed"
        else:
            c.closed_by_peer(1.0)
    assert_serves(broker, topic)


def test_malformed_bodies(broker, topic):
    bodies = [
        (API_METADATA, 1, i32(1_000_000_000)),                 # array count far beyond the frame
        (API_METADATA, 1, i32(1) + i16(30000) + b"abc"),       # string longer than the frame
        (API_PRODUCE, 3, i16(-1) + i16(1) + i32(1000)),        # truncated produce
        (API_PRODUCE, 3, kproto.produce_body(3, topic, 0, b"\x00" * 70)),  # records: zeros
        (API_PRODUCE, 3, kproto.produce_body(3, topic, 0, os.urandom(200))),
        (API_FETCH, 4, i32(-1) + i32(100)),                     # truncated fetch
        (API_VERSIONS, 3, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),  # varint overflow
    ]
    for n, (key, ver, body) in enumerate(bodies):
        with Conn(broker.bootstrap, timeout=5) as c:
            c.send(request(key, ver, 100 + n, body, flexible=(key == API_VERSIONS and ver >= 3)))
            try:
                c.closed_by_peer(0.5)
            except OSError:
                pass
    assert_serves(broker, topic)


def test_corrupt_batch_crc_refused(broker, topic):
    from kutil import create_topic
    create_topic(broker.bootstrap, topic)
    batch = bytearray(kproto.simple_batch([b"payload"]))
    batch[-3] ^= 0xFF  # flip bits in the record data: CRC no longer matches
    with Conn(broker.bootstrap) as c:
        c.send(request(API_PRODUCE, 3, 55, kproto.produce_body(3, topic, 0, bytes(batch))))
        try:
            parts = kproto.parse_produce_v2(c.recv_response(55))
            assert parts[0][2] == 2, f"CORRUPT_MESSAGE (2) expected, got {parts}"
        except ConnectionError:
            pass  # closing is acceptable too
    assert consume(broker.bootstrap, topic) == []
    assert_serves(broker, topic)


# ------------------------------------------------------------------ pipelining
def test_pipelined_requests_answered_in_order(broker, topic):
    from kutil import create_topic
    create_topic(broker.bootstrap, topic, partitions=2)
    reqs = []
    kinds = []
    for i in range(12):
        corr = 1000 + i
        kind = i % 3
        if kind == 0:
            reqs.append(request(API_VERSIONS, 0, corr, b""))
        elif kind == 1:
            reqs.append(request(API_METADATA, 1, corr, kproto.metadata_v1_body([topic])))
        else:
            reqs.append(request(API_VERSIONS, 3, corr, kproto.api_versions_v3_body(), flexible=True))
        kinds.append(kind)
    with Conn(broker.bootstrap) as c:
        c.send(b"".join(reqs))  # one write: the broker sees them all at once
        for i, kind in enumerate(kinds):
            r = c.recv_response(1000 + i)
            if kind == 0:
                assert kproto.parse_api_versions_v0(r)[0] == 0
            elif kind == 1:
                md = kproto.parse_metadata_v1(r)
                assert md["topics"][topic]["error"] == 0
                assert sorted(p[0] for p in md["topics"][topic]["partitions"]) == [0, 1]
                assert md["brokers"][0][1:3] == ("127.0.0.1", broker.port)
            else:
                assert kproto.parse_api_versions_v3(r)[0] == 0


def test_pipelined_fetch_long_poll_does_not_reorder(broker, topic):
    """A long-polling Fetch followed by an ApiVersions on the same connection: the
    ApiVersions answer must come after the Fetch answer (request order)."""
    from kutil import create_topic
    create_topic(broker.bootstrap, topic)
    with Conn(broker.bootstrap) as c:
        c.send(request(API_FETCH, 4, 1, kproto.fetch_v4_body(topic, 0, 0, max_wait_ms=500))
               + request(API_VERSIONS, 0, 2, b""))
        kproto.parse_fetch_v4(c.recv_response(1))
        assert kproto.parse_api_versions_v0(c.recv_response(2))[0] == 0


def test_other_clients_unaffected_during_abuse(broker, topic):
    """Half-open garbage connections stay open while a normal client works."""
    bad = []
    try:
        for _ in range(20):
            c = Conn(broker.bootstrap)
            c.send(struct.pack(">i", 5000) + b"\x00\x03")  # a frame that never completes
            bad.append(c)
        t0 = time.monotonic()
        assert_serves(broker, topic)
        assert time.monotonic() - t0 < 10
    finally:
        for c in bad:
            c.close()
    assert_serves(broker, topic)
