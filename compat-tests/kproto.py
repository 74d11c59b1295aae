"""A tiny hand-written Kafka wire codec for the raw-socket tests.

Only what the tests need: framing, request headers v1/v2, ApiVersions v0/v3,
Metadata v1, Produce v2/v3 and Fetch v4 (non-flexible), record batch headers and
CRC-32C; for the KIP-848 tests also flexible (compact, tagged-field) encodings of
Metadata v12, ConsumerGroupHeartbeat v0-v1, ConsumerGroupDescribe v0-v1, OffsetCommit
v8-v9, OffsetFetch v9 and ListGroups v5, and JoinGroup v5; for the producer tests InitProducerId,
Produce v7 with producer ids and sequences, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit,
Describe/ListTransactions, DescribeProducers, OffsetFetch v7, ListOffsets v2, Fetch v4 with isolation
level and aborted transactions, SyncGroup v3, and control batches. Written from the Apache Kafka
protocol guide and message specs, independent of the broker's code.
"""
from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

API_PRODUCE, API_FETCH, API_LIST_OFFSETS, API_METADATA = 0, 1, 2, 3
API_VERSIONS = 18
UNSUPPORTED_VERSION = 35


# ------------------------------------------------------------------ primitive encoders
def i8(v): return struct.pack(">b", v)
def i16(v): return struct.pack(">h", v)
def i32(v): return struct.pack(">i", v)
def i64(v): return struct.pack(">q", v)
def u32(v): return struct.pack(">I", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def nbytes(b: bytes | None) -> bytes:
    if b is None:
        return i32(-1)
    return i32(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        if v < 0x80:
            out.append(v)
            return bytes(out)
        out.append((v & 0x7F) | 0x80)
        v >>= 7


def varint(v: int) -> bytes:
    return uvarint((v << 1) ^ (v >> 63))


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


# ------------------------------------------------------------------ decoder
class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, fmt: str):
        v = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return v

    def i8(self): return self._take(">b")
    def i16(self): return self._take(">h")
    def i32(self): return self._take(">i")
    def i64(self): return self._take(">q")
    def u32(self): return self._take(">I")

    def uvarint(self) -> int:
        shift = result = 0
        while True:
            b = self.data[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def varint(self) -> int:
        v = self.uvarint()
        return (v >> 1) ^ -(v & 1)

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s

    def raw(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        if len(b) != n:
            raise ValueError("short read")
        self.pos += n
        return b

    def nbytes(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        return self.raw(n)

    def skip_tagged(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.pos += self.uvarint()

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ------------------------------------------------------------------ framing
def request(api_key: int, version: int, corr: int, body: bytes, client_id: str | None = "kairos-raw",
            flexible: bool = False) -> bytes:
    """One framed request. `flexible` selects request header v2 (tagged fields)."""
    hdr = i16(api_key) + i16(version) + i32(corr) + string(client_id)
    if flexible:
        hdr += uvarint(0)
    payload = hdr + body
    return i32(len(payload)) + payload


class Conn:
    def __init__(self, bootstrap: str, timeout: float = 10.0):
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.settimeout(timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (size,) = struct.unpack(">i", self._recv_exact(4))
        assert 0 <= size < 256 << 20, f"response frame size {size}"
        return self._recv_exact(size)

    def recv_response(self, corr: int) -> Reader:
        """Read one frame, check its correlation id, return a Reader positioned after it."""
        frame = self.recv_frame()
        r = Reader(frame)
        got = r.i32()
        assert got == corr, f"correlation id {got}, expected {corr}"
        return r

    def closed_by_peer(self, wait: float) -> bool:
        """True when the peer closes (or resets) the connection within `wait` seconds;
        data that arrives in the meantime is read and discarded."""
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not chunk:
                return True


# ------------------------------------------------------------------ ApiVersions
def api_versions_v0_body() -> bytes:
    return b""


def api_versions_v3_body(name="kairos-raw", version="1.0") -> bytes:
    return compact_string(name) + compact_string(version) + uvarint(0)


def parse_api_versions_v0(r: Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    err = r.i16()
    n = r.i32()
    table = {}
    for _ in range(max(n, 0)):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        table[k] = (lo, hi)
    return err, table


def parse_api_versions_v3(r: Reader) -> tuple[int, dict[int, tuple[int, int]]]:
    err = r.i16()
    n = r.uvarint() - 1
    table = {}
    for _ in range(max(n, 0)):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.skip_tagged()
        table[k] = (lo, hi)
    r.i32()  # throttle_time_ms
    r.skip_tagged()
    return err, table


# ------------------------------------------------------------------ Metadata v1
def metadata_v1_body(topics: list[str] | None) -> bytes:
    if topics is None:
        return i32(-1)
    return i32(len(topics)) + b"".join(string(t) for t in topics)


def parse_metadata_v1(r: Reader) -> dict:
    brokers = []
    for _ in range(r.i32()):
        brokers.append((r.i32(), r.string(), r.i32(), r.string()))
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err = r.i16()
        name = r.string()
        internal = r.i8()
        parts = []
        for _ in range(r.i32()):
            perr, pidx, leader = r.i16(), r.i32(), r.i32()
            reps = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts.append((pidx, perr, leader, reps, isr))
        topics[name] = {"error": err, "internal": internal, "partitions": parts}
    return {"brokers": brokers, "controller": controller, "topics": topics}


# ------------------------------------------------------------------ record batches
_CRC32C_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC32C_TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    t = _CRC32C_TABLE
    for b in data:
        crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


@dataclass
class Batch:
    base_offset: int
    length: int
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int
    crc_ok: bool
    raw: bytes

    @property
    def codec(self) -> int:
        return self.attributes & 0x7

    @property
    def log_append_time(self) -> bool:
        return bool(self.attributes & 0x8)

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta


def parse_batches(records: bytes) -> list[Batch]:
    """Parse the record batches of a Fetch response's `records` (a trailing partial
    batch, which Kafka may return, is ignored)."""
    out = []
    pos = 0
    while pos + 12 <= len(records):
        base_offset, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):
            break
        r = Reader(records, pos + 12)
        epoch, magic, crc = r.i32(), r.i8(), r.u32()
        crc_ok = crc32c(records[pos + 21:end]) == crc
        attrs, lod = r.i16(), r.i32()
        bts, mts = r.i64(), r.i64()
        pid, pep, bseq, cnt = r.i64(), r.i16(), r.i32(), r.i32()
        out.append(Batch(base_offset, length, epoch, magic, crc, attrs, lod, bts, mts, pid, pep, bseq, cnt,
                         crc_ok, records[pos:end]))
        pos = end
    return out


def simple_batch(values: list[bytes], base_ts: int | None = None) -> bytes:
    """An uncompressed magic-2 record batch (no keys, no headers) with a valid CRC."""
    if base_ts is None:
        base_ts = int(time.time() * 1000)
    recs = b""
    for i, v in enumerate(values):
        body = i8(0) + varint(0) + varint(i) + varint(-1) + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    after_crc = (i16(0) + i32(len(values) - 1) + i64(base_ts) + i64(base_ts) + i64(-1) + i16(-1) + i32(-1)
                 + i32(len(values)) + recs)
    crc = crc32c(after_crc)
    after_len = i32(0) + i8(2) + u32(crc) + after_crc
    return i64(0) + i32(len(after_len)) + after_len


# ------------------------------------------------------------------ Produce v2/v3, Fetch v4
def produce_body(version: int, topic: str, partition: int, records: bytes, acks: int = -1,
                 timeout_ms: int = 5000) -> bytes:
    body = b""
    if version >= 3:
        body += string(None)  # transactional_id
    body += i16(acks) + i32(timeout_ms)
    body += i32(1) + string(topic) + i32(1) + i32(partition) + nbytes(records)
    return body


def parse_produce_v2(r: Reader) -> list[tuple[str, int, int, int]]:
    """[(topic, partition, error_code, base_offset)] of a Produce v2/v3 response."""
    out = []
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, base = r.i32(), r.i16(), r.i64()
            r.i64()  # log_append_time
            out.append((name, idx, err, base))
    return out


def fetch_v4_body(topic: str, partition: int, offset: int, max_wait_ms: int = 0, min_bytes: int = 1,
                  max_bytes: int = 50 << 20, partition_max_bytes: int = 10 << 20) -> bytes:
    return (i32(-1) + i32(max_wait_ms) + i32(min_bytes) + i32(max_bytes) + i8(0)
            + i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(partition_max_bytes))


def parse_fetch_v4(r: Reader) -> dict:
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, hw, lso = r.i32(), r.i16(), r.i64(), r.i64()
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64(), r.i64()
            records = r.nbytes() or b""
            out[(name, idx)] = {"error": err, "high_watermark": hw, "lso": lso, "records": records}
    return out


def fetch_batches(bootstrap: str, topic: str, partition: int = 0, offset: int = 0,
                  max_bytes: int = 50 << 20) -> tuple[dict, list[Batch]]:
    """One Fetch v4 from `offset`; returns (partition response, parsed batches)."""
    with Conn(bootstrap) as c:
        c.send(request(API_FETCH, 4, 7, fetch_v4_body(topic, partition, offset, max_bytes=max_bytes,
                                                      partition_max_bytes=max_bytes)))
        resp = parse_fetch_v4(c.recv_response(7))
    p = resp[(topic, partition)]
    return p, parse_batches(p["records"])


def fetch_all_batches(bootstrap: str, topic: str, partition: int = 0) -> list[Batch]:
    """Every batch of a partition, fetching until the high watermark."""
    out: list[Batch] = []
    offset = 0
    for _ in range(1000):
        p, batches = fetch_batches(bootstrap, topic, partition, offset)
        assert p["error"] == 0, f"fetch error {p['error']}"
        if not batches:
            break
        out.extend(batches)
        offset = batches[-1].last_offset + 1
        if offset >= p["high_watermark"]:
            break
    return out


# ------------------------------------------------------------------ flexible versions (KIP-482)
# Written from the JSON message specs of apache/kafka (clients/src/main/resources/common/message/).
API_OFFSET_COMMIT, API_OFFSET_FETCH, API_JOIN_GROUP = 8, 9, 11
API_CONSUMER_GROUP_HEARTBEAT, API_CONSUMER_GROUP_DESCRIBE = 68, 69

TAGS = b"\x00"   # an empty tagged-field section


def boolean(v: bool) -> bytes:
    return i8(1 if v else 0)


def compact_array(items: list[bytes] | None) -> bytes:
    """A compact (nullable) array of already-encoded items."""
    if items is None:
        return uvarint(0)
    return uvarint(len(items) + 1) + b"".join(items)


def compact_int32s(vs: list[int]) -> bytes:
    return compact_array([i32(v) for v in vs])


def _compact_string_r(self) -> str | None:
    n = self.uvarint() - 1
    if n < 0:
        return None
    return self.raw(n).decode()


def _compact_len(self) -> int:
    """Length of a compact array (-1: null)."""
    return self.uvarint() - 1


def _compact_int32s_r(self) -> list[int] | None:
    n = self.compact_len()
    return None if n < 0 else [self.i32() for _ in range(n)]


Reader.compact_string = _compact_string_r
Reader.compact_len = _compact_len
Reader.compact_int32s = _compact_int32s_r
Reader.uuid = lambda self: self.raw(16)
Reader.boolean = lambda self: self.i8() != 0


def call(bootstrap_or_conn, api_key: int, version: int, body: bytes, flexible: bool, corr: int = 1) -> Reader:
    """Send one request, return a Reader after the response header (for a flexible
    response: after its tagged fields; ApiVersions is the exception and is not handled here)."""
    own = not isinstance(bootstrap_or_conn, Conn)
    c = Conn(bootstrap_or_conn) if own else bootstrap_or_conn
    try:
        c.send(request(api_key, version, corr, body, flexible=flexible))
        r = c.recv_response(corr)
        if flexible:
            r.skip_tagged()
        return r
    finally:
        if own:
            c.close()


# ------------------------------------------------------------------ Metadata v12 (topic ids)
def metadata_v12_body(topics: list[str] | None, allow_auto_create: bool = False) -> bytes:
    items = None if topics is None else [bytes(16) + compact_string(t) + TAGS for t in topics]
    return compact_array(items) + boolean(allow_auto_create) + boolean(False) + TAGS


def parse_metadata_v12(r: Reader) -> dict:
    r.i32()  # throttle
    brokers = []
    for _ in range(r.compact_len()):
        brokers.append((r.i32(), r.compact_string(), r.i32(), r.compact_string()))
        r.skip_tagged()
    cluster_id = r.compact_string()
    controller = r.i32()
    topics = {}
    for _ in range(r.compact_len()):
        err, name, tid, internal = r.i16(), r.compact_string(), r.uuid(), r.boolean()
        parts = []
        for _ in range(r.compact_len()):
            perr, idx, leader, epoch = r.i16(), r.i32(), r.i32(), r.i32()
            r.compact_int32s(), r.compact_int32s(), r.compact_int32s()
            r.skip_tagged()
            parts.append((idx, perr, leader, epoch))
        r.i32()  # topic authorized operations
        r.skip_tagged()
        topics[name] = {"error": err, "id": tid, "internal": internal, "partitions": parts}
    r.skip_tagged()
    return {"brokers": brokers, "cluster_id": cluster_id, "controller": controller, "topics": topics}


def topic_ids(bootstrap: str, topics: list[str]) -> dict[str, bytes]:
    """{topic name: 16-byte topic id} from Metadata v12."""
    md = parse_metadata_v12(call(bootstrap, API_METADATA, 12, metadata_v12_body(topics), flexible=True))
    out = {}
    for t in topics:
        info = md["topics"][t]
        assert info["error"] == 0 and info["id"] != bytes(16), (t, info)
        out[t] = info["id"]
    return out


# ------------------------------------------------------------------ ConsumerGroupHeartbeat v0-v1 (KIP-848)
def consumer_group_heartbeat_body(group_id: str, member_id: str, member_epoch: int, *, version: int = 1,
                                  instance_id: str | None = None, rack_id: str | None = None,
                                  rebalance_timeout_ms: int = -1,
                                  subscribed_topic_names: list[str] | None = None,
                                  subscribed_topic_regex: str | None = None,
                                  server_assignor: str | None = None,
                                  topic_partitions: dict[bytes, list[int]] | None = None) -> bytes:
    """`topic_partitions`: {topic id: [partitions]} the member owns (None: unchanged)."""
    body = compact_string(group_id) + compact_string(member_id) + i32(member_epoch)
    body += compact_string(instance_id) + compact_string(rack_id) + i32(rebalance_timeout_ms)
    body += compact_array(None if subscribed_topic_names is None
                          else [compact_string(n) for n in subscribed_topic_names])
    if version >= 1:
        body += compact_string(subscribed_topic_regex)
    else:
        assert subscribed_topic_regex is None, "SubscribedTopicRegex is v1+"
    body += compact_string(server_assignor)
    body += compact_array(None if topic_partitions is None
                          else [tid + compact_int32s(ps) + TAGS for tid, ps in topic_partitions.items()])
    return body + TAGS


def parse_consumer_group_heartbeat(r: Reader) -> dict:
    out = {"throttle_ms": r.i32(), "error": r.i16(), "message": r.compact_string(),
           "member_id": r.compact_string(), "member_epoch": r.i32(), "heartbeat_interval_ms": r.i32()}
    # Assignment: a nullable struct, encoded as an int8 marker (-1: null) before its fields
    present = r.i8()
    if present < 0:
        out["assignment"] = None
    else:
        assignment = {}
        for _ in range(r.compact_len()):
            tid = r.uuid()
            assignment[tid] = sorted(r.compact_int32s())
            r.skip_tagged()
        r.skip_tagged()
        out["assignment"] = assignment
    r.skip_tagged()
    return out


def consumer_group_heartbeat(bootstrap_or_conn, group_id: str, member_id: str, member_epoch: int,
                             version: int = 1, corr: int = 1, **fields) -> dict:
    body = consumer_group_heartbeat_body(group_id, member_id, member_epoch, version=version, **fields)
    return parse_consumer_group_heartbeat(call(bootstrap_or_conn, API_CONSUMER_GROUP_HEARTBEAT, version, body,
                                               flexible=True, corr=corr))


# ------------------------------------------------------------------ ConsumerGroupDescribe v0-v1
def consumer_group_describe(bootstrap_or_conn, group_ids: list[str], version: int = 0,
                            include_authorized_operations: bool = False) -> list[dict]:
    body = compact_array([compact_string(g) for g in group_ids]) + boolean(include_authorized_operations) + TAGS
    r = call(bootstrap_or_conn, API_CONSUMER_GROUP_DESCRIBE, version, body, flexible=True)
    r.i32()  # throttle

    def assignment():
        tps = {}
        for _ in range(r.compact_len()):
            tid, name, parts = r.uuid(), r.compact_string(), r.compact_int32s()
            r.skip_tagged()
            tps[name] = {"id": tid, "partitions": sorted(parts)}
        r.skip_tagged()
        return tps

    groups = []
    for _ in range(r.compact_len()):
        g = {"error": r.i16(), "message": r.compact_string(), "group_id": r.compact_string(),
             "state": r.compact_string(), "group_epoch": r.i32(), "assignment_epoch": r.i32(),
             "assignor": r.compact_string(), "members": []}
        for _ in range(r.compact_len()):
            m = {"member_id": r.compact_string(), "instance_id": r.compact_string(),
                 "rack_id": r.compact_string(), "member_epoch": r.i32(), "client_id": r.compact_string(),
                 "client_host": r.compact_string()}
            names = r.compact_len()
            m["subscribed_topic_names"] = [r.compact_string() for _ in range(max(names, 0))]
            m["subscribed_topic_regex"] = r.compact_string()
            m["assignment"] = assignment()
            m["target_assignment"] = assignment()
            if version >= 1:
                m["member_type"] = r.i8()   # v1 (Kafka 4.1): -1 unknown, 0 classic, 1 consumer
            r.skip_tagged()
            g["members"].append(m)
        g["authorized_operations"] = r.i32()
        r.skip_tagged()
        groups.append(g)
    r.skip_tagged()
    return groups


# ------------------------------------------------------------------ OffsetCommit v8-v9, OffsetFetch v9
def offset_commit_flex(bootstrap_or_conn, version: int, group_id: str, epoch: int, member_id: str,
                       offsets: dict[str, list[tuple[int, int]]], instance_id: str | None = None,
                       corr: int = 1) -> dict[tuple[str, int], int]:
    """OffsetCommit v8/v9; offsets {topic: [(partition, offset)]} -> {(topic, partition): error}."""
    assert version in (8, 9)
    body = compact_string(group_id) + i32(epoch) + compact_string(member_id) + compact_string(instance_id)
    body += compact_array([compact_string(t) + compact_array(
        [i32(p) + i64(o) + i32(-1) + compact_string(None) + TAGS for p, o in ps]) + TAGS
        for t, ps in offsets.items()])
    r = call(bootstrap_or_conn, API_OFFSET_COMMIT, version, body + TAGS, flexible=True, corr=corr)
    r.i32()  # throttle
    out = {}
    for _ in range(r.compact_len()):
        name = r.compact_string()
        for _ in range(r.compact_len()):
            p, err = r.i32(), r.i16()
            r.skip_tagged()
            out[(name, p)] = err
        r.skip_tagged()
    return out


def offset_fetch_v9(bootstrap_or_conn, group_id: str, member_id: str | None, epoch: int,
                    topics: dict[str, list[int]] | None, corr: int = 1) -> dict:
    """One group: {"error": group error, "offsets": {(topic, partition): (offset, error)}}."""
    tpart = None if topics is None else [compact_string(t) + compact_int32s(ps) + TAGS for t, ps in topics.items()]
    body = compact_array([compact_string(group_id) + compact_string(member_id) + i32(epoch)
                          + compact_array(tpart) + TAGS]) + boolean(False) + TAGS
    r = call(bootstrap_or_conn, API_OFFSET_FETCH, 9, body, flexible=True, corr=corr)
    r.i32()  # throttle
    res = None
    for _ in range(r.compact_len()):
        gid = r.compact_string()
        offs = {}
        for _ in range(r.compact_len()):
            name = r.compact_string()
            for _ in range(r.compact_len()):
                p, off = r.i32(), r.i64()
                r.i32(), r.compact_string()   # committed leader epoch, metadata
                err = r.i16()
                r.skip_tagged()
                offs[(name, p)] = (off, err)
            r.skip_tagged()
        err = r.i16()
        r.skip_tagged()
        if gid == group_id:
            res = {"error": err, "offsets": offs}
    assert res is not None, "group missing from the OffsetFetch response"
    return res


# ------------------------------------------------------------------ JoinGroup v5 (classic, non-flexible)
def join_group_v5(bootstrap_or_conn, group_id: str, member_id: str = "", protocol_type: str = "consumer",
                  protocols: list[tuple[str, bytes]] | None = None, session_timeout_ms: int = 10000,
                  rebalance_timeout_ms: int = 10000, instance_id: str | None = None, corr: int = 1) -> dict:
    if protocols is None:
        protocols = [("range", b"")]
    body = string(group_id) + i32(session_timeout_ms) + i32(rebalance_timeout_ms) + string(member_id)
    body += string(instance_id) + string(protocol_type)
    body += i32(len(protocols)) + b"".join(string(n) + nbytes(m) for n, m in protocols)
    r = call(bootstrap_or_conn, API_JOIN_GROUP, 5, body, flexible=False, corr=corr)
    return {"throttle_ms": r.i32(), "error": r.i16(), "generation": r.i32(), "protocol": r.string(),
            "leader": r.string(), "member_id": r.string()}


def consumer_subscription_v0(topics: list[str]) -> bytes:
    """ConsumerProtocolSubscription v0 (the metadata of a classic 'consumer' JoinGroup)."""
    return i16(0) + i32(len(topics)) + b"".join(string(t) for t in topics) + nbytes(b"")


# ------------------------------------------------------------------ ListGroups v5
def list_groups_v5(bootstrap_or_conn, states: list[str] | None = None, types: list[str] | None = None,
                   corr: int = 1) -> dict[str, dict]:
    """{group id: {"protocol_type", "state", "type"}}; the top-level error must be 0."""
    body = compact_array([compact_string(s) for s in states or []])
    body += compact_array([compact_string(t) for t in types or []]) + TAGS
    r = call(bootstrap_or_conn, 16, 5, body, flexible=True, corr=corr)
    r.i32()  # throttle
    err = r.i16()
    assert err == 0, f"ListGroups error {err}"
    out = {}
    for _ in range(r.compact_len()):
        g = r.compact_string()
        out[g] = {"protocol_type": r.compact_string(), "state": r.compact_string(), "type": r.compact_string()}
        r.skip_tagged()
    r.skip_tagged()
    return out


# ------------------------------------------------------------------ idempotent / transactional producers
# Written from the JSON message specs of apache/kafka: InitProducerId v0-v4, Produce v7,
# AddPartitionsToTxn v0-v3, AddOffsetsToTxn v0-v3, EndTxn v0-v4, TxnOffsetCommit v0-v3,
# DescribeTransactions v0, ListTransactions v0-v1, DescribeProducers v0, OffsetFetch v7,
# ListOffsets v2, and the control records of DefaultRecordBatch / EndTransactionMarker.
API_INIT_PRODUCER_ID, API_ADD_PARTITIONS_TO_TXN, API_ADD_OFFSETS_TO_TXN, API_END_TXN = 22, 24, 25, 26
API_TXN_OFFSET_COMMIT, API_DESCRIBE_PRODUCERS, API_DESCRIBE_TRANSACTIONS, API_LIST_TRANSACTIONS = 28, 61, 65, 66

ATTR_TRANSACTIONAL, ATTR_CONTROL = 0x10, 0x20

# error codes (org.apache.kafka.common.protocol.Errors)
NONE, UNKNOWN_TOPIC_OR_PARTITION, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID = 0, 3, 22, 25
OUT_OF_ORDER_SEQUENCE_NUMBER, DUPLICATE_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH = 45, 46, 47
INVALID_TXN_STATE, INVALID_PRODUCER_ID_MAPPING, INVALID_TRANSACTION_TIMEOUT = 48, 49, 50
CONCURRENT_TRANSACTIONS, OPERATION_NOT_ATTEMPTED, UNKNOWN_PRODUCER_ID = 51, 55, 59
UNSTABLE_OFFSET_COMMIT, PRODUCER_FENCED, TRANSACTIONAL_ID_NOT_FOUND = 88, 90, 105


def _s(v: str | None, flex: bool) -> bytes:
    return compact_string(v) if flex else string(v)


def _arr(items: list[bytes], flex: bool) -> bytes:
    return compact_array(items) if flex else i32(len(items)) + b"".join(items)


def _tags(flex: bool) -> bytes:
    return TAGS if flex else b""


def _rs(r: Reader, flex: bool) -> str | None:
    return r.compact_string() if flex else r.string()


def _rn(r: Reader, flex: bool) -> int:
    return r.compact_len() if flex else r.i32()


def _rtags(r: Reader, flex: bool) -> None:
    if flex:
        r.skip_tagged()


def producer_batch(values: list[bytes], producer_id: int, producer_epoch: int, base_sequence: int,
                   transactional: bool = False, base_ts: int | None = None,
                   keys: list[bytes | None] | None = None) -> bytes:
    """An uncompressed magic-2 record batch carrying a producer id, epoch and base sequence
    (idempotent / transactional produce), with a valid CRC."""
    if base_ts is None:
        base_ts = int(time.time() * 1000)
    keys = keys or [None] * len(values)
    recs = b""
    for i, (k, v) in enumerate(zip(keys, values)):
        kb = varint(-1) if k is None else varint(len(k)) + k
        body = i8(0) + varint(0) + varint(i) + kb + varint(len(v)) + v + varint(0)
        recs += varint(len(body)) + body
    attrs = ATTR_TRANSACTIONAL if transactional else 0
    after_crc = (i16(attrs) + i32(len(values) - 1) + i64(base_ts) + i64(base_ts) + i64(producer_id)
                 + i16(producer_epoch) + i32(base_sequence) + i32(len(values)) + recs)
    after_len = i32(0) + i8(2) + u32(crc32c(after_crc)) + after_crc
    return i64(0) + i32(len(after_len)) + after_len


def batch_records(b: Batch) -> list[tuple[int, bytes | None, bytes | None]]:
    """[(offset, key, value)] of an uncompressed batch (headers skipped)."""
    assert b.codec == 0, "batch_records: compressed batch"
    r = Reader(b.raw, 61)
    out = []
    for _ in range(b.record_count):
        n = r.varint()
        end = r.pos + n
        r.i8()
        r.varint()  # timestamp delta
        od = r.varint()
        kl = r.varint()
        key = None if kl < 0 else r.raw(kl)
        vl = r.varint()
        val = None if vl < 0 else r.raw(vl)
        r.pos = end
        out.append((b.base_offset + od, key, val))
    return out


def control_type(b: Batch) -> int | None:
    """For a control batch: the marker type of its record (0 abort, 1 commit); else None."""
    if not b.attributes & ATTR_CONTROL:
        return None
    [(_, key, _)] = batch_records(b)
    rk = Reader(key)
    rk.i16()  # version
    return rk.i16()


def init_producer_id(bootstrap_or_conn, transactional_id: str | None = None, timeout_ms: int = 60000,
                     producer_id: int = -1, producer_epoch: int = -1, version: int = 4,
                     corr: int = 1) -> tuple[int, int, int]:
    """InitProducerId -> (error, producer id, producer epoch)."""
    flex = version >= 2
    body = _s(transactional_id, flex) + i32(timeout_ms)
    if version >= 3:
        body += i64(producer_id) + i16(producer_epoch)
    r = call(bootstrap_or_conn, API_INIT_PRODUCER_ID, version, body + _tags(flex), flexible=flex, corr=corr)
    r.i32()  # throttle
    return r.i16(), r.i64(), r.i16()


def produce_v7(bootstrap_or_conn, topic: str, partition: int, records: bytes,
               transactional_id: str | None = None, acks: int = -1, timeout_ms: int = 5000,
               corr: int = 1) -> tuple[int, int]:
    """One batch to one partition with Produce v7 -> (error, base offset)."""
    body = string(transactional_id) + i16(acks) + i32(timeout_ms)
    body += i32(1) + string(topic) + i32(1) + i32(partition) + nbytes(records)
    r = call(bootstrap_or_conn, API_PRODUCE, 7, body, flexible=False, corr=corr)
    out = None
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, base = r.i32(), r.i16(), r.i64()
            r.i64(), r.i64()  # log_append_time, log_start_offset
            if (name, idx) == (topic, partition):
                out = (err, base)
    assert out is not None, "partition missing from the Produce response"
    return out


def add_partitions_to_txn(bootstrap_or_conn, transactional_id: str, producer_id: int, producer_epoch: int,
                          topics: dict[str, list[int]], version: int = 3,
                          corr: int = 1) -> dict[tuple[str, int], int]:
    """AddPartitionsToTxn v0-v3 -> {(topic, partition): error}."""
    flex = version >= 3
    body = _s(transactional_id, flex) + i64(producer_id) + i16(producer_epoch)
    body += _arr([_s(t, flex) + _arr([i32(p) for p in ps], flex) + _tags(flex) for t, ps in topics.items()], flex)
    r = call(bootstrap_or_conn, API_ADD_PARTITIONS_TO_TXN, version, body + _tags(flex), flexible=flex, corr=corr)
    r.i32()  # throttle
    out = {}
    for _ in range(_rn(r, flex)):
        name = _rs(r, flex)
        for _ in range(_rn(r, flex)):
            p, err = r.i32(), r.i16()
            _rtags(r, flex)
            out[(name, p)] = err
        _rtags(r, flex)
    return out


def add_offsets_to_txn(bootstrap_or_conn, transactional_id: str, producer_id: int, producer_epoch: int,
                       group_id: str, version: int = 3, corr: int = 1) -> int:
    flex = version >= 3
    body = _s(transactional_id, flex) + i64(producer_id) + i16(producer_epoch) + _s(group_id, flex)
    r = call(bootstrap_or_conn, API_ADD_OFFSETS_TO_TXN, version, body + _tags(flex), flexible=flex, corr=corr)
    r.i32()
    return r.i16()


def end_txn(bootstrap_or_conn, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool,
            version: int = 3, corr: int = 1) -> int:
    flex = version >= 3
    body = _s(transactional_id, flex) + i64(producer_id) + i16(producer_epoch) + boolean(commit)
    r = call(bootstrap_or_conn, API_END_TXN, version, body + _tags(flex), flexible=flex, corr=corr)
    r.i32()
    return r.i16()


def txn_offset_commit(bootstrap_or_conn, transactional_id: str, group_id: str, producer_id: int,
                      producer_epoch: int, offsets: dict[str, list[tuple[int, int]]], generation: int = -1,
                      member_id: str = "", instance_id: str | None = None, version: int = 3,
                      corr: int = 1) -> dict[tuple[str, int], int]:
    """TxnOffsetCommit v0-v3; offsets {topic: [(partition, offset)]} -> {(topic, partition): error}."""
    flex = version >= 3
    body = _s(transactional_id, flex) + _s(group_id, flex) + i64(producer_id) + i16(producer_epoch)
    if version >= 3:
        body += i32(generation) + _s(member_id, flex) + _s(instance_id, flex)
    topics = []
    for t, ps in offsets.items():
        parts = []
        for p, o in ps:
            parts.append(i32(p) + i64(o) + (i32(-1) if version >= 2 else b"") + _s(None, flex) + _tags(flex))
        topics.append(_s(t, flex) + _arr(parts, flex) + _tags(flex))
    body += _arr(topics, flex)
    r = call(bootstrap_or_conn, API_TXN_OFFSET_COMMIT, version, body + _tags(flex), flexible=flex, corr=corr)
    r.i32()
    out = {}
    for _ in range(_rn(r, flex)):
        name = _rs(r, flex)
        for _ in range(_rn(r, flex)):
            p, err = r.i32(), r.i16()
            _rtags(r, flex)
            out[(name, p)] = err
        _rtags(r, flex)
    return out


def describe_transactions(bootstrap_or_conn, transactional_ids: list[str], corr: int = 1) -> dict[str, dict]:
    """DescribeTransactions v0 -> {transactional id: {...}} (partitions as {topic: sorted list})."""
    body = compact_array([compact_string(t) for t in transactional_ids]) + TAGS
    r = call(bootstrap_or_conn, API_DESCRIBE_TRANSACTIONS, 0, body, flexible=True, corr=corr)
    r.i32()
    out = {}
    for _ in range(r.compact_len()):
        d = {"error": r.i16()}
        tid = r.compact_string()
        d.update(state=r.compact_string(), timeout_ms=r.i32(), start_time_ms=r.i64(),
                 producer_id=r.i64(), producer_epoch=r.i16())
        parts = {}
        for _ in range(r.compact_len()):
            name = r.compact_string()
            parts[name] = sorted(r.compact_int32s())
            r.skip_tagged()
        d["partitions"] = parts
        r.skip_tagged()
        out[tid] = d
    r.skip_tagged()
    return out


def list_transactions(bootstrap_or_conn, states: list[str] | None = None, producer_ids: list[int] | None = None,
                      duration_ms: int | None = None, corr: int = 1) -> dict:
    """ListTransactions v0 (v1 with duration_ms) -> {"error", "unknown_states", "txns": {id: (pid, state)}}."""
    version = 1 if duration_ms is not None else 0
    body = compact_array([compact_string(s) for s in states or []])
    body += compact_array([i64(p) for p in producer_ids or []])
    if version >= 1:
        body += i64(duration_ms)
    r = call(bootstrap_or_conn, API_LIST_TRANSACTIONS, version, body + TAGS, flexible=True, corr=corr)
    r.i32()
    err = r.i16()
    unknown = [r.compact_string() for _ in range(max(r.compact_len(), 0))]
    txns = {}
    for _ in range(r.compact_len()):
        tid, pid, st = r.compact_string(), r.i64(), r.compact_string()
        r.skip_tagged()
        txns[tid] = (pid, st)
    r.skip_tagged()
    return {"error": err, "unknown_states": unknown, "txns": txns}


def describe_producers(bootstrap_or_conn, topic: str, partitions: list[int], corr: int = 1) -> dict[int, dict]:
    """DescribeProducers v0 -> {partition: {"error", "message", "producers": {pid: {...}}}}."""
    body = compact_array([compact_string(topic) + compact_int32s(partitions) + TAGS]) + TAGS
    r = call(bootstrap_or_conn, API_DESCRIBE_PRODUCERS, 0, body, flexible=True, corr=corr)
    r.i32()
    out = {}
    for _ in range(r.compact_len()):
        r.compact_string()
        for _ in range(r.compact_len()):
            p = {"partition": r.i32(), "error": r.i16(), "message": r.compact_string(), "producers": {}}
            for _ in range(r.compact_len()):
                pid = r.i64()
                p["producers"][pid] = {"epoch": r.i32(), "last_sequence": r.i32(), "last_timestamp": r.i64(),
                                       "coordinator_epoch": r.i32(), "txn_start_offset": r.i64()}
                r.skip_tagged()
            r.skip_tagged()
            out[p["partition"]] = p
        r.skip_tagged()
    r.skip_tagged()
    return out


def offset_fetch_v7(bootstrap_or_conn, group_id: str, topics: dict[str, list[int]] | None,
                    require_stable: bool, corr: int = 1) -> dict:
    """OffsetFetch v7 -> {"error": group error, "offsets": {(topic, partition): (offset, error)}}."""
    tpart = None if topics is None else [compact_string(t) + compact_int32s(ps) + TAGS for t, ps in topics.items()]
    body = compact_string(group_id) + compact_array(tpart) + boolean(require_stable) + TAGS
    r = call(bootstrap_or_conn, API_OFFSET_FETCH, 7, body, flexible=True, corr=corr)
    r.i32()
    offs = {}
    for _ in range(r.compact_len()):
        name = r.compact_string()
        for _ in range(r.compact_len()):
            p, off = r.i32(), r.i64()
            r.i32(), r.compact_string()   # committed leader epoch, metadata
            err = r.i16()
            r.skip_tagged()
            offs[(name, p)] = (off, err)
        r.skip_tagged()
    err = r.i16()
    r.skip_tagged()
    return {"error": err, "offsets": offs}


def list_offsets_v2(bootstrap_or_conn, topic: str, partitions: list[int], timestamp: int = -1,
                    isolation_level: int = 0, corr: int = 1) -> dict[int, tuple[int, int]]:
    """ListOffsets v2 (-1 latest, -2 earliest) -> {partition: (error, offset)}."""
    body = i32(-1) + i8(isolation_level) + i32(1) + string(topic) + i32(len(partitions))
    body += b"".join(i32(p) + i64(timestamp) for p in partitions)
    r = call(bootstrap_or_conn, API_LIST_OFFSETS, 2, body, flexible=False, corr=corr)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        r.string()
        for _ in range(r.i32()):
            p, err = r.i32(), r.i16()
            r.i64()  # timestamp
            out[p] = (err, r.i64())
    return out


def fetch_v4(bootstrap_or_conn, topic: str, partition: int, offset: int, isolation_level: int = 0,
             max_bytes: int = 10 << 20, corr: int = 1) -> dict:
    """One Fetch v4 -> {"error", "high_watermark", "lso", "aborted": [(pid, first offset)], "batches"}."""
    body = (i32(-1) + i32(0) + i32(1) + i32(max_bytes) + i8(isolation_level)
            + i32(1) + string(topic) + i32(1) + i32(partition) + i64(offset) + i32(max_bytes))
    r = call(bootstrap_or_conn, API_FETCH, 4, body, flexible=False, corr=corr)
    r.i32()  # throttle
    out = None
    for _ in range(r.i32()):
        name = r.string()
        for _ in range(r.i32()):
            idx, err, hw, lso = r.i32(), r.i16(), r.i64(), r.i64()
            n = r.i32()
            aborted = None if n < 0 else [(r.i64(), r.i64()) for _ in range(n)]
            records = r.nbytes() or b""
            if (name, idx) == (topic, partition):
                out = {"error": err, "high_watermark": hw, "lso": lso, "aborted": aborted,
                       "batches": parse_batches(records)}
    assert out is not None, "partition missing from the Fetch response"
    return out


def sync_group_v3(bootstrap_or_conn, group_id: str, generation: int, member_id: str,
                  assignments: dict[str, bytes] | None = None, corr: int = 1) -> int:
    """SyncGroup v3 (classic, non-flexible) -> error."""
    assignments = assignments or {}
    body = string(group_id) + i32(generation) + string(member_id) + string(None)
    body += i32(len(assignments)) + b"".join(string(m) + nbytes(a) for m, a in assignments.items())
    r = call(bootstrap_or_conn, 14, 3, body, flexible=False, corr=corr)
    r.i32()
    return r.i16()
