//! Records inside a v2 batch: decoding (with decompression) and encoding of plain
//! batches. Only features that must look inside batches use this (delay topics,
//! transaction markers); produce and fetch never do.
//!
//! Headers are kept as a list, in order, duplicates included (Kafka allows repeated
//! header keys; a map would lose them).

use bytes::{Buf, Bytes};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{self, BatchHeader, HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};

/// One record of a batch, with its absolute offset and timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub offset: i64,
    /// The record's timestamp; for a LogAppendTime batch, the batch's max timestamp.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// Zigzag varint (Kafka's `ByteUtils.writeVarint`).
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Bytes [`put_varint`] writes for `v`.
fn varint_len(v: i64) -> usize {
    let z = ((v << 1) ^ (v >> 63)) as u64;
    (64 - z.max(1).leading_zeros() as usize).div_ceil(7)
}

/// Bytes a nullable field (varint length, then the bytes) takes.
fn field_len(b: Option<&[u8]>) -> usize {
    b.map_or(1, |b| varint_len(b.len() as i64) + b.len())
}

fn put_field(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// A cursor over bytes with Kafka's varints.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }

    pub fn varint(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let b = *self.take(1)?.first()?;
            z |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        None
    }

    /// A varint length then that many bytes; a negative length is null.
    fn nullable(&mut self, base: &Bytes) -> Option<Option<Bytes>> {
        let n = self.varint()?;
        if n < 0 {
            return Some(None);
        }
        let s = self.take(usize::try_from(n).ok()?)?;
        Some(Some(base.slice_ref(s)))
    }
}

/// The records of one whole batch (`batch` starts at its base offset field), decompressed.
pub fn decode(batch: &Bytes) -> Result<(BatchHeader, Vec<Record>), String> {
    let (h, size) = batch::frame(batch).map_err(|e| e.to_string())?;
    if h.magic != MAGIC_V2 {
        return Err(format!("magic {} is not supported", h.magic));
    }
    let body = batch.slice(HEADER_LEN..size);
    let body = match h.compression() {
        0 => body,
        c => {
            let out = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
            let mut input = body;
            match c {
                1 => Gzip::decompress(&mut input, out),
                2 => Snappy::decompress(&mut input, out),
                3 => Lz4::decompress(&mut input, out),
                4 => Zstd::decompress(&mut input, out),
                other => return Err(format!("unknown compression codec {other}")),
            }
            .map_err(|e| format!("decompressing: {e}"))?
        }
    };
    let log_append = h.timestamp_type() == super::TimestampType::LogAppendTime;
    let count = usize::try_from(h.record_count).unwrap_or(0);
    let mut out = Vec::with_capacity(count.min(body.len() / 7 + 1));
    let mut r = Reader(&body);
    let bad = |what: &str, i: usize| format!("record {i}: bad {what}");
    for i in 0..count {
        let len = r.varint().ok_or_else(|| bad("length", i))?;
        let rec = r
            .take(usize::try_from(len).map_err(|_| bad("length", i))?)
            .ok_or_else(|| bad("length", i))?;
        let mut rr = Reader(rec);
        rr.take(1).ok_or_else(|| bad("attributes", i))?;
        let ts_delta = rr.varint().ok_or_else(|| bad("timestamp", i))?;
        let off_delta = rr.varint().ok_or_else(|| bad("offset delta", i))?;
        let key = rr.nullable(&body).ok_or_else(|| bad("key", i))?;
        let value = rr.nullable(&body).ok_or_else(|| bad("value", i))?;
        let n = rr.varint().ok_or_else(|| bad("header count", i))?;
        let n = usize::try_from(n).map_err(|_| bad("header count", i))?;
        let mut headers = Vec::with_capacity(n.min(rec.len()));
        for _ in 0..n {
            let k = rr
                .nullable(&body)
                .and_then(|k| k)
                .ok_or_else(|| bad("header key", i))?;
            let v = rr.nullable(&body).ok_or_else(|| bad("header value", i))?;
            headers.push((k, v));
        }
        out.push(Record {
            offset: h.base_offset + off_delta,
            timestamp: if log_append {
                h.max_timestamp
            } else {
                h.base_timestamp + ts_delta
            },
            key,
            value,
            headers,
        });
    }
    Ok((h, out))
}

/// An idempotent producer's identity for [`encode`]: id, epoch, first sequence.
#[derive(Clone, Copy, Debug)]
pub struct ProducerStamp {
    pub id: i64,
    pub epoch: i16,
    pub base_sequence: i32,
}

/// One uncompressed CreateTime batch of `records` (offsets 0.., each record's own
/// timestamp; `offset` fields are ignored), base offset 0, CRC computed.
pub fn encode(records: &[Record], producer: ProducerStamp) -> Vec<u8> {
    let base_ts = records.first().map_or(0, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(base_ts);
    let head = Head {
        base_offset: 0,
        partition_leader_epoch: 0,
        attributes: 0,
        last_offset_delta: (records.len() as i32 - 1).max(0),
        base_timestamp: base_ts,
        max_timestamp: max_ts,
        producer,
    };
    let mut b = Vec::new();
    write(
        &mut b,
        &head,
        records.iter().enumerate().map(|(i, r)| (i as i64, r)),
    );
    b
}

/// Appends to `out` `records` (a subset of `h`'s, possibly with new values) as one
/// uncompressed batch that keeps `h`'s offsets and range (base offset, last offset delta: a
/// consumer moves past the whole original batch even when its last records are gone),
/// timestamps, producer fields and attributes other than compression. With no record it
/// is an empty batch, as compaction leaves them.
pub fn rewrite(out: &mut Vec<u8>, h: &BatchHeader, records: &[Record]) {
    let head = Head {
        base_offset: h.base_offset,
        partition_leader_epoch: h.partition_leader_epoch,
        attributes: h.attributes & !(batch::ATTR_COMPRESSION_MASK),
        last_offset_delta: h.last_offset_delta,
        base_timestamp: h.base_timestamp,
        max_timestamp: h.max_timestamp,
        producer: ProducerStamp {
            id: h.producer_id,
            epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
        },
    };
    write(
        out,
        &head,
        records.iter().map(|r| (r.offset - h.base_offset, r)),
    )
}

struct Head {
    base_offset: i64,
    partition_leader_epoch: i32,
    attributes: i16,
    last_offset_delta: i32,
    base_timestamp: i64,
    max_timestamp: i64,
    producer: ProducerStamp,
}

/// Appends one batch to `out`; each record written once, in place.
fn write<'a>(out: &mut Vec<u8>, head: &Head, records: impl Iterator<Item = (i64, &'a Record)>) {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let mut n = 0i32;
    for (offset_delta, r) in records {
        n += 1;
        let ts_delta = r.timestamp - head.base_timestamp;
        let headers_len: usize = r
            .headers
            .iter()
            .map(|(k, v)| field_len(Some(k)) + field_len(v.as_deref()))
            .sum();
        let len = 1
            + varint_len(ts_delta)
            + varint_len(offset_delta)
            + field_len(r.key.as_deref())
            + field_len(r.value.as_deref())
            + varint_len(r.headers.len() as i64)
            + headers_len;
        out.reserve(len + 5);
        put_varint(out, len as i64);
        out.push(0); // attributes
        put_varint(out, ts_delta);
        put_varint(out, offset_delta);
        put_field(out, r.key.as_deref());
        put_field(out, r.value.as_deref());
        put_varint(out, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_field(out, Some(k));
            put_field(out, v.as_deref());
        }
    }
    let b = &mut out[start..];
    let batch_length = (b.len() - LOG_OVERHEAD) as i32;
    let p = &head.producer;
    b[batch::POS_BASE_OFFSET..][..8].copy_from_slice(&head.base_offset.to_be_bytes());
    b[batch::POS_BATCH_LENGTH..][..4].copy_from_slice(&batch_length.to_be_bytes());
    b[batch::POS_PARTITION_LEADER_EPOCH..][..4]
        .copy_from_slice(&head.partition_leader_epoch.to_be_bytes());
    b[batch::POS_MAGIC] = MAGIC_V2 as u8;
    b[batch::POS_ATTRIBUTES..][..2].copy_from_slice(&head.attributes.to_be_bytes());
    b[batch::POS_LAST_OFFSET_DELTA..][..4].copy_from_slice(&head.last_offset_delta.to_be_bytes());
    b[batch::POS_BASE_TIMESTAMP..][..8].copy_from_slice(&head.base_timestamp.to_be_bytes());
    b[batch::POS_MAX_TIMESTAMP..][..8].copy_from_slice(&head.max_timestamp.to_be_bytes());
    b[batch::POS_PRODUCER_ID..][..8].copy_from_slice(&p.id.to_be_bytes());
    b[batch::POS_PRODUCER_EPOCH..][..2].copy_from_slice(&p.epoch.to_be_bytes());
    b[batch::POS_BASE_SEQUENCE..][..4].copy_from_slice(&p.base_sequence.to_be_bytes());
    b[batch::POS_RECORD_COUNT..][..4].copy_from_slice(&n.to_be_bytes());
    let crc = batch::compute_crc(b);
    b[batch::POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record as KRecord, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };

    fn krecords() -> Vec<KRecord> {
        (0..5)
            .map(|i| {
                let mut headers = IndexMap::new();
                headers.insert(
                    StrBytes::from_static_str("h"),
                    Some(Bytes::from(format!("{i}"))),
                );
                headers.insert(StrBytes::from_static_str("n"), None);
                KRecord {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: 10 + i,
                    sequence: -1,
                    timestamp: 1000 + i,
                    key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
                    value: Some(Bytes::from(vec![b'v'; i as usize * 40])),
                    headers,
                }
            })
            .collect()
    }

    #[test]
    fn decodes_what_the_protocol_crate_encodes_with_every_codec() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let want = krecords();
            let mut buf = bytes::BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                &want,
                &RecordEncodeOptions {
                    version: 2,
                    compression: c,
                },
            )
            .unwrap();
            // The crate may write several batches: decode each.
            let all = buf.freeze();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < all.len() {
                let (_, size) = batch::frame(&all[pos..]).unwrap();
                got.extend(decode(&all.slice(pos..pos + size)).unwrap().1);
                pos += size;
            }
            assert_eq!(got.len(), 5, "{c:?}");
            for (g, w) in got.iter().zip(&want) {
                assert_eq!((g.offset, g.timestamp), (w.offset, w.timestamp), "{c:?}");
                assert_eq!((&g.key, &g.value), (&w.key, &w.value), "{c:?}");
                let wh: Vec<(Bytes, Option<Bytes>)> = w
                    .headers
                    .iter()
                    .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
                    .collect();
                assert_eq!(g.headers, wh, "{c:?}");
            }
        }
    }

    #[test]
    fn rewrite_keeps_offsets_range_and_producer_fields() {
        let mut buf = bytes::BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &krecords(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::Zstd,
            },
        )
        .unwrap();
        let all = buf.freeze();
        let (_, size) = batch::frame(&all).unwrap();
        let (h, recs) = decode(&all.slice(..size)).unwrap();
        let mut kept: Vec<Record> = recs.iter().filter(|r| r.offset % 2 == 1).cloned().collect();
        if let Some(r) = kept.first_mut() {
            r.value = Some(Bytes::from_static(b"new"));
        }
        // Appended after what the buffer holds.
        let mut out = b"before".to_vec();
        rewrite(&mut out, &h, &kept);
        assert_eq!(&out[..6], b"before");
        let b = Bytes::from(out).slice(6..);
        assert!(batch::verify_crc(&b));
        let (h2, got) = decode(&b).unwrap();
        assert_eq!(
            (h2.base_offset, h2.last_offset()),
            (h.base_offset, h.last_offset())
        );
        assert_eq!((h2.producer_id, h2.compression()), (h.producer_id, 0));
        assert_eq!(got, kept);
        let mut empty = Vec::new();
        rewrite(&mut empty, &h, &[]);
        let empty = Bytes::from(empty);
        let (h3, none) = decode(&empty).unwrap();
        assert!(none.is_empty());
        assert_eq!((h3.record_count, h3.next_offset()), (0, h.next_offset()));
    }

    #[test]
    fn varint_len_is_what_put_varint_writes() {
        for v in [
            0,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i32::MAX as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(varint_len(v), b.len(), "{v}");
        }
    }

    #[test]
    fn encode_keeps_duplicate_headers_and_round_trips() {
        let dup = |k: &'static [u8], v: &'static [u8]| {
            (Bytes::from_static(k), Some(Bytes::from_static(v)))
        };
        let recs = vec![
            Record {
                offset: 0,
                timestamp: 500,
                key: None,
                value: Some(Bytes::from_static(b"a")),
                headers: vec![dup(b"d", b"1"), dup(b"x", b"y"), dup(b"d", b"2")],
            },
            Record {
                offset: 1,
                timestamp: 400,
                key: Some(Bytes::from_static(b"k")),
                value: None,
                headers: vec![],
            },
        ];
        let stamp = ProducerStamp {
            id: 7,
            epoch: 0,
            base_sequence: 42,
        };
        let b = Bytes::from(encode(&recs, stamp));
        let (h, got) = decode(&b).unwrap();
        assert!(batch::verify_crc(&b));
        assert_eq!((h.producer_id, h.base_sequence, h.record_count), (7, 42, 2));
        assert_eq!((h.base_timestamp, h.max_timestamp), (500, 500));
        assert_eq!(got, recs);
        // The protocol crate reads it too.
        let set = RecordBatchDecoder::decode(&mut b.clone()).unwrap();
        assert_eq!(set.records.len(), 2);
        // Truncated input is an error, not a panic.
        for cut in HEADER_LEN..b.len() {
            let mut t = b.slice(..cut).to_vec();
            let len = (t.len() - LOG_OVERHEAD) as i32;
            t[batch::POS_BATCH_LENGTH..][..4].copy_from_slice(&len.to_be_bytes());
            let _ = decode(&Bytes::from(t));
        }
    }
}
