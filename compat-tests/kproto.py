"""A tiny hand-written Kafka wire codec for the raw-socket tests.

Only what the tests need: framing, request headers v1/v2, ApiVersions v0/v3,
Metadata v1, Produce v2/v3 and Fetch v4 (non-flexible), record batch headers and
CRC-32C. Written from the Apache Kafka protocol guide, independent of the broker's code.
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
