//! The wheel's RocksDB layout: binary keys and values of the `delay_*` column
//! families. Pure encoding, no I/O.
//!
//! - `delay_wheel`: `due_ms u64 BE | delay partition u32 BE | delay offset u64 BE | target`
//!   -> [`Entry`]. Keys sort by due time, then id: the timer scans forward.
//! - `delay_ids`: `target | 0x00 | delay partition u32 BE | delay offset u64 BE` -> `due_ms
//!   u64 BE` (where the entry sits in the wheel).
//! - `delay_meta`: `ckpt/<delay topic id>/<partition>` -> next offset to ingest (i64 BE);
//!   `seq/<pid>/<target>/<partition>` -> next sequence of the wheel's producer there (i32 BE);
//!   `intent/<target>/<partition>` -> [`Intent`]; `stats/<target>` -> [`Stats`];
//!   `pid` -> the wheel's producer id (i64 BE); `cancel/<delay_ids key>` -> empty, a cancel
//!   that arrived before its delay record was ingested.
//!
//! Topic names are `[a-zA-Z0-9._-]`, so a 0x00 separator is unambiguous.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::control::Schedule;

/// Identifies a delay record: its target topic, and its partition and offset in the
/// delay topic.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DelayId {
    pub target: String,
    pub partition: i32,
    pub offset: i64,
}

impl std::fmt::Display for DelayId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.partition, self.offset)
    }
}

pub fn wheel_key(due_ms: i64, id: &DelayId) -> Vec<u8> {
    let mut k = Vec::with_capacity(20 + id.target.len());
    k.extend_from_slice(&(due_ms.max(0) as u64).to_be_bytes());
    k.extend_from_slice(&(id.partition as u32).to_be_bytes());
    k.extend_from_slice(&(id.offset as u64).to_be_bytes());
    k.extend_from_slice(id.target.as_bytes());
    k
}

/// `(due_ms, id)` of a wheel key.
pub fn parse_wheel_key(k: &[u8]) -> Option<(i64, DelayId)> {
    if k.len() < 20 {
        return None;
    }
    let due = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
    let partition = u32::from_be_bytes(k[8..12].try_into().ok()?) as i32;
    let offset = u64::from_be_bytes(k[12..20].try_into().ok()?) as i64;
    let target = std::str::from_utf8(&k[20..]).ok()?.to_string();
    Some((
        due,
        DelayId {
            target,
            partition,
            offset,
        },
    ))
}

pub fn id_prefix(target: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(target.len() + 1);
    k.extend_from_slice(target.as_bytes());
    k.push(0);
    k
}

pub fn id_key(id: &DelayId) -> Vec<u8> {
    let mut k = id_prefix(&id.target);
    k.extend_from_slice(&(id.partition as u32).to_be_bytes());
    k.extend_from_slice(&(id.offset as u64).to_be_bytes());
    k
}

pub fn parse_id_key(k: &[u8]) -> Option<DelayId> {
    let sep = k.iter().position(|&b| b == 0)?;
    let rest = &k[sep + 1..];
    if rest.len() != 12 {
        return None;
    }
    Some(DelayId {
        target: std::str::from_utf8(&k[..sep]).ok()?.to_string(),
        partition: u32::from_be_bytes(rest[0..4].try_into().ok()?) as i32,
        offset: u64::from_be_bytes(rest[4..12].try_into().ok()?) as i64,
    })
}

pub fn due_value(due_ms: i64) -> [u8; 8] {
    (due_ms.max(0) as u64).to_be_bytes()
}

pub fn parse_due(v: &[u8]) -> Option<i64> {
    Some(u64::from_be_bytes(v.try_into().ok()?) as i64)
}

/// A pending delivery: where it goes and what it carries (control headers removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Partition of the target topic.
    pub target_partition: i32,
    pub schedule: Schedule,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// In order, duplicates kept.
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

const ENTRY_V1: u8 = 1;

fn put_opt(b: &mut BytesMut, v: &Option<Bytes>) {
    match v {
        None => b.put_i32(-1),
        Some(v) => {
            b.put_i32(v.len() as i32);
            b.put_slice(v);
        }
    }
}

fn get_opt(b: &mut Bytes) -> Option<Option<Bytes>> {
    if b.remaining() < 4 {
        return None;
    }
    let n = b.get_i32();
    if n < 0 {
        return Some(None);
    }
    let n = n as usize;
    (b.remaining() >= n).then(|| Some(b.split_to(n)))
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let s = &self.schedule;
        let mut b = BytesMut::with_capacity(
            64 + self.key.as_ref().map_or(0, |k| k.len())
                + self.value.as_ref().map_or(0, |v| v.len()),
        );
        b.put_u8(ENTRY_V1);
        b.put_i32(self.target_partition);
        b.put_i64(s.repeat_ms);
        b.put_u32(s.remaining);
        b.put_i64(s.until_ms);
        put_opt(&mut b, &self.key);
        put_opt(&mut b, &self.value);
        b.put_u32(self.headers.len() as u32);
        for (k, v) in &self.headers {
            b.put_u32(k.len() as u32);
            b.put_slice(k);
            put_opt(&mut b, v);
        }
        b.to_vec()
    }

    /// Decodes a value stored under a wheel key with this due time.
    pub fn decode(due_ms: i64, v: &[u8]) -> Option<Entry> {
        let mut b = Bytes::copy_from_slice(v);
        if b.remaining() < 1 + 4 + 8 + 4 + 8 || b.get_u8() != ENTRY_V1 {
            return None;
        }
        let target_partition = b.get_i32();
        let repeat_ms = b.get_i64();
        let remaining = b.get_u32();
        let until_ms = b.get_i64();
        let key = get_opt(&mut b)?;
        let value = get_opt(&mut b)?;
        if b.remaining() < 4 {
            return None;
        }
        let n = b.get_u32() as usize;
        let mut headers = Vec::with_capacity(n.min(1024));
        for _ in 0..n {
            if b.remaining() < 4 {
                return None;
            }
            let kl = b.get_u32() as usize;
            if b.remaining() < kl {
                return None;
            }
            let k = b.split_to(kl);
            headers.push((k, get_opt(&mut b)?));
        }
        Some(Entry {
            target_partition,
            schedule: Schedule {
                due_ms,
                repeat_ms,
                remaining,
                until_ms,
            },
            key,
            value,
            headers,
        })
    }
}

/// Per-target counters, persisted with every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub pending: u64,
    pub fired: u64,
    pub cancelled: u64,
}

impl Stats {
    pub fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.pending.to_be_bytes());
        b[8..16].copy_from_slice(&self.fired.to_be_bytes());
        b[16..24].copy_from_slice(&self.cancelled.to_be_bytes());
        b
    }

    pub fn decode(v: &[u8]) -> Option<Stats> {
        (v.len() == 24).then(|| Stats {
            pending: u64::from_be_bytes(v[0..8].try_into().unwrap_or_default()),
            fired: u64::from_be_bytes(v[8..16].try_into().unwrap_or_default()),
            cancelled: u64::from_be_bytes(v[16..24].try_into().unwrap_or_default()),
        })
    }
}

/// A delivery in flight to one target partition: the wheel's producer sequence it was
/// appended with and the wheel keys it holds. Written before the append and deleted
/// with the entries after it; one left at start is re-appended with the same sequence,
/// which the log answers as a duplicate if the first append got in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    pub sequence: i32,
    pub keys: Vec<Vec<u8>>,
}

impl Intent {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = BytesMut::new();
        b.put_i32(self.sequence);
        b.put_u32(self.keys.len() as u32);
        for k in &self.keys {
            b.put_u16(k.len() as u16);
            b.put_slice(k);
        }
        b.to_vec()
    }

    pub fn decode(v: &[u8]) -> Option<Intent> {
        let mut b = Bytes::copy_from_slice(v);
        if b.remaining() < 8 {
            return None;
        }
        let sequence = b.get_i32();
        let n = b.get_u32() as usize;
        let mut keys = Vec::with_capacity(n.min(100_000));
        for _ in 0..n {
            if b.remaining() < 2 {
                return None;
            }
            let l = b.get_u16() as usize;
            if b.remaining() < l {
                return None;
            }
            keys.push(b.split_to(l).to_vec());
        }
        Some(Intent { sequence, keys })
    }
}

/// Kafka's `Utils.murmur2` (the Java client's default partitioner for keyed records).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h = SEED ^ len as u32;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a non-null key.
pub fn key_partition(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) % partitions.max(1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            (b"abc", 479470107),
        ];
        for (k, want) in cases {
            assert_eq!(murmur2(k), *want, "{:?}", std::str::from_utf8(k));
        }
    }

    #[test]
    fn keys_sort_by_due_then_id_and_round_trip() {
        let id = |p, o| DelayId {
            target: "orders".into(),
            partition: p,
            offset: o,
        };
        let a = wheel_key(1000, &id(1, 5));
        let b = wheel_key(1000, &id(1, 6));
        let c = wheel_key(999, &id(9, 9));
        assert!(c < a && a < b);
        assert_eq!(parse_wheel_key(&b), Some((1000, id(1, 6))));
        assert_eq!(parse_id_key(&id_key(&id(3, 7))), Some(id(3, 7)));
        assert!(id_key(&id(0, 0)).starts_with(&id_prefix("orders")));
        assert!(!id_key(&id(0, 0)).starts_with(&id_prefix("orde")));
    }

    #[test]
    fn entry_intent_stats_round_trip() {
        let e = Entry {
            target_partition: 3,
            schedule: Schedule {
                due_ms: 77,
                repeat_ms: 10,
                remaining: 2,
                until_ms: i64::MAX,
            },
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"v"))),
                (Bytes::from_static(b"h"), None),
            ],
        };
        assert_eq!(Entry::decode(77, &e.encode()), Some(e.clone()));
        let enc = e.encode();
        for cut in 0..enc.len() {
            let _ = Entry::decode(77, &enc[..cut]); // never panics
        }
        let i = Intent {
            sequence: 42,
            keys: vec![vec![1, 2], vec![]],
        };
        assert_eq!(Intent::decode(&i.encode()), Some(i));
        let s = Stats {
            pending: 1,
            fired: 2,
            cancelled: 3,
        };
        assert_eq!(Stats::decode(&s.encode()), Some(s));
    }
}
