//! Pure functions over the bytes of magic-v2 record batches: parse a header, walk
//! concatenated batches, validate what a producer sent, patch the fields the broker owns.
//!
//! Nothing here touches files or decodes records; this is the whole per-batch work of the
//! hot path (one CRC pass). All functions are pure and therefore thread-safe.
//!
//! Header layout (big-endian), 61 bytes:
//!
//! | at | field                | type | CRC? |
//! |----|----------------------|------|------|
//! |  0 | baseOffset           | i64  | no   |
//! |  8 | batchLength          | i32  | no   |
//! | 12 | partitionLeaderEpoch | i32  | no   |
//! | 16 | magic                | i8   | no   |
//! | 17 | crc                  | u32  | no   |
//! | 21 | attributes           | i16  | yes  |
//! | 23 | lastOffsetDelta      | i32  | yes  |
//! | 27 | baseTimestamp        | i64  | yes  |
//! | 35 | maxTimestamp         | i64  | yes  |
//! | 43 | producerId           | i64  | yes  |
//! | 51 | producerEpoch        | i16  | yes  |
//! | 53 | baseSequence         | i32  | yes  |
//! | 57 | recordCount          | i32  | yes  |

use super::{LogError, TimestampType};

/// Bytes of the fixed batch header.
pub const HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the bytes not counted by batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only record format this log stores.
pub const MAGIC_V2: i8 = 2;

pub const POS_BASE_OFFSET: usize = 0;
pub const POS_BATCH_LENGTH: usize = 8;
pub const POS_PARTITION_LEADER_EPOCH: usize = 12;
pub const POS_MAGIC: usize = 16;
pub const POS_CRC: usize = 17;
/// The CRC-32C covers everything from here to the end of the batch.
pub const POS_ATTRIBUTES: usize = 21;
pub const POS_LAST_OFFSET_DELTA: usize = 23;
pub const POS_BASE_TIMESTAMP: usize = 27;
pub const POS_MAX_TIMESTAMP: usize = 35;
pub const POS_PRODUCER_ID: usize = 43;
pub const POS_PRODUCER_EPOCH: usize = 51;
pub const POS_BASE_SEQUENCE: usize = 53;
pub const POS_RECORD_COUNT: usize = 57;

/// Attribute bits 0-2: compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
/// Attribute bit 3: timestamps are LogAppendTime (set by the broker).
pub const ATTR_LOG_APPEND_TIME: i16 = 0x08;
/// Kafka's name for bit 3 (same value as [`ATTR_LOG_APPEND_TIME`]).
pub const ATTR_TIMESTAMP_TYPE: i16 = ATTR_LOG_APPEND_TIME;
/// Attribute bit 4: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
/// Attribute bit 5: the batch holds a control record (transaction marker).
pub const ATTR_CONTROL: i16 = 0x20;
/// Attribute bit 6: baseTimestamp is the delete horizon (compaction).
pub const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Smallest legal batchLength: a header with no records.
const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - LOG_OVERHEAD) as i32;

/// The decoded fixed header of one batch. Plain data: `Copy`, thread-safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

impl BatchHeader {
    /// Parse the 61-byte header at the start of `buf`; `None` when `buf` is shorter.
    /// Checks nothing else (see [`frame`] for framing checks).
    pub fn parse(buf: &[u8]) -> Option<BatchHeader> {
        if buf.len() < HEADER_LEN {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(buf, POS_BASE_OFFSET),
            batch_length: be_i32(buf, POS_BATCH_LENGTH),
            partition_leader_epoch: be_i32(buf, POS_PARTITION_LEADER_EPOCH),
            magic: buf[POS_MAGIC] as i8,
            crc: u32::from_be_bytes(buf[POS_CRC..POS_CRC + 4].try_into().expect("4 bytes")),
            attributes: be_i16(buf, POS_ATTRIBUTES),
            last_offset_delta: be_i32(buf, POS_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(buf, POS_BASE_TIMESTAMP),
            max_timestamp: be_i64(buf, POS_MAX_TIMESTAMP),
            producer_id: be_i64(buf, POS_PRODUCER_ID),
            producer_epoch: be_i16(buf, POS_PRODUCER_EPOCH),
            base_sequence: be_i32(buf, POS_BASE_SEQUENCE),
            record_count: be_i32(buf, POS_RECORD_COUNT),
        })
    }

    /// Total bytes of the batch on disk/wire (header included).
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }
    /// Offset one past the batch.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> u8 {
        (self.attributes & ATTR_COMPRESSION_MASK) as u8
    }
    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & ATTR_LOG_APPEND_TIME != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// Why the bytes at some position are not a whole, sound batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header, or than batchLength announces: a torn tail or a short buffer.
    Incomplete { needed: usize, available: usize },
    /// batchLength smaller than an empty batch or negative.
    BadLength(i32),
    /// Magic byte is not 2.
    BadMagic(i8),
    /// Stored CRC does not match the bytes.
    BadCrc { stored: u32, computed: u32 },
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Incomplete { needed, available } => {
                write!(f, "incomplete batch: need {needed} bytes, have {available}")
            }
            FrameError::BadLength(l) => write!(f, "invalid batchLength {l}"),
            FrameError::BadMagic(m) => write!(f, "unsupported magic {m} (only v2)"),
            FrameError::BadCrc { stored, computed } => {
                write!(
                    f,
                    "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
                )
            }
        }
    }
}

/// Cheap completeness check: the header of the batch at the start of `buf` and its total
/// size, if the header is there and batchLength is sane. Does not look at the body.
pub fn frame(buf: &[u8]) -> Result<(BatchHeader, usize), FrameError> {
    let Some(h) = BatchHeader::parse(buf) else {
        return Err(FrameError::Incomplete {
            needed: HEADER_LEN,
            available: buf.len(),
        });
    };
    if h.batch_length < MIN_BATCH_LENGTH {
        return Err(FrameError::BadLength(h.batch_length));
    }
    let size = h.size();
    if buf.len() < size {
        return Err(FrameError::Incomplete {
            needed: size,
            available: buf.len(),
        });
    }
    Ok((h, size))
}

/// Frame the batch at the start of `buf`, check magic and CRC. One pass over the bytes.
pub fn check(buf: &[u8]) -> Result<(BatchHeader, usize), FrameError> {
    let (h, size) = frame(buf)?;
    if h.magic != MAGIC_V2 {
        return Err(FrameError::BadMagic(h.magic));
    }
    let computed = compute_crc(&buf[..size]);
    if computed != h.crc {
        return Err(FrameError::BadCrc {
            stored: h.crc,
            computed,
        });
    }
    Ok((h, size))
}

/// CRC-32C as it should be stored for `batch` (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[POS_ATTRIBUTES..])
}

/// Whether the stored CRC matches the batch bytes.
pub fn verify_crc(batch: &[u8]) -> bool {
    batch.len() >= HEADER_LEN
        && BatchHeader::parse(batch).is_some_and(|h| h.crc == compute_crc(batch))
}

/// Iterator over whole batches in a buffer: yields `(position, header, size)` and stops
/// at the first bytes that do not frame (see [`Batches::stopped_at`]). Framing only:
/// no magic or CRC check, so it is cheap enough for the read path.
pub struct Batches<'a> {
    buf: &'a [u8],
    pos: usize,
    error: Option<FrameError>,
}

impl<'a> Batches<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            pos: 0,
            error: None,
        }
    }
    /// Position after the last whole batch yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Why iteration stopped before the end of the buffer, if it did.
    pub fn stopped_at(&self) -> Option<&FrameError> {
        self.error.as_ref()
    }
}

impl Iterator for Batches<'_> {
    type Item = (usize, BatchHeader, usize);
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() || self.error.is_some() {
            return None;
        }
        match frame(&self.buf[self.pos..]) {
            Ok((h, size)) => {
                let at = self.pos;
                self.pos += size;
                Some((at, h, size))
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Summary of a validated producer request: the batches it holds, in order.
#[derive(Clone, Debug, Default)]
pub struct Validated {
    /// `(position in the request, header, size)` per batch.
    pub batches: Vec<(usize, BatchHeader, usize)>,
    /// Sum of `recordCount + ...`: the number of offsets the request takes.
    pub offset_count: i64,
    pub record_count: i64,
}

/// Validate every batch a producer sent, as Kafka's LogValidator does for magic v2:
/// framing and CRC (CORRUPT_MESSAGE), magic and offset range (INVALID_RECORD),
/// size (MESSAGE_TOO_LARGE). `allow_control` is false for clients: control batches are
/// written only by the transaction coordinator. Reuses `out` to avoid allocation.
pub fn validate_producer_records(
    records: &[u8],
    max_batch_bytes: u32,
    allow_control: bool,
    out: &mut Validated,
) -> Result<(), LogError> {
    out.batches.clear();
    out.offset_count = 0;
    out.record_count = 0;
    if records.is_empty() {
        return Err(LogError::InvalidRecord(
            "no record batch in the request".into(),
        ));
    }
    let mut pos = 0;
    while pos < records.len() {
        let rest = &records[pos..];
        // Size before CRC: do not hash megabytes we will refuse anyway.
        if let Some(h) = BatchHeader::parse(rest) {
            if h.batch_length >= MIN_BATCH_LENGTH && h.size() > max_batch_bytes as usize {
                return Err(LogError::MessageTooLarge {
                    size: h.size(),
                    max: max_batch_bytes,
                });
            }
        }
        let (h, size) = match check(rest) {
            Ok(v) => v,
            Err(FrameError::BadMagic(m)) => {
                return Err(LogError::InvalidRecord(format!(
                    "batch at byte {pos}: magic {m} is not supported, only v2"
                )))
            }
            Err(e) => {
                return Err(LogError::CorruptMessage(format!(
                    "batch at byte {pos}: {e}"
                )))
            }
        };
        if h.record_count <= 0 {
            return Err(LogError::InvalidRecord(format!(
                "batch at byte {pos}: record count {} (empty batches are not accepted from producers)",
                h.record_count
            )));
        }
        if h.last_offset_delta < 0
            || i64::from(h.record_count) != i64::from(h.last_offset_delta) + 1
        {
            return Err(LogError::InvalidRecord(format!(
                "batch at byte {pos}: record count {} inconsistent with lastOffsetDelta {}",
                h.record_count, h.last_offset_delta
            )));
        }
        if h.is_control() && !allow_control {
            return Err(LogError::InvalidRecord(format!(
                "batch at byte {pos}: control batches are not accepted from producers"
            )));
        }
        out.offset_count += i64::from(h.last_offset_delta) + 1;
        out.record_count += i64::from(h.record_count);
        out.batches.push((pos, h, size));
        pos += size;
    }
    Ok(())
}

/// Overwrite baseOffset (outside the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[POS_BASE_OFFSET..POS_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrite partitionLeaderEpoch (outside the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[POS_PARTITION_LEADER_EPOCH..POS_PARTITION_LEADER_EPOCH + 4]
        .copy_from_slice(&epoch.to_be_bytes());
}

/// Mark the batch LogAppendTime with maxTimestamp = `now_ms` and store the new CRC (a second
/// pass over the batch, paid only by LogAppendTime topics: keeping the body's CRC apart at
/// validation would need `crc32c_combine`, which costs more than hashing a small batch).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, POS_ATTRIBUTES) | ATTR_LOG_APPEND_TIME;
    batch[POS_ATTRIBUTES..POS_ATTRIBUTES + 2].copy_from_slice(&attrs.to_be_bytes());
    batch[POS_MAX_TIMESTAMP..POS_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[POS_CRC..POS_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as KTs,
    };

    /// A producer-style batch: `n` records with 100-byte values, timestamps `ts0 + i`.
    pub fn make_batch(n: usize, ts0: i64, compression: Compression) -> Vec<u8> {
        make_batch_ts(
            &(0..n as i64).map(|i| ts0 + i).collect::<Vec<_>>(),
            compression,
        )
    }

    /// A producer-style batch with one record per timestamp given.
    pub fn make_batch_ts(timestamps: &[i64], compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = timestamps
            .iter()
            .enumerate()
            .map(|(i, &ts)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: KTs::Creation,
                offset: i as i64,
                // offset - sequence constant keeps the records in one batch (baseSequence -1).
                sequence: i as i32 - 1,
                timestamp: ts,
                key: Some(bytes::Bytes::from(format!("key-{i}"))),
                value: Some(bytes::Bytes::from(vec![b'v'; 100])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode");
        buf.to_vec()
    }

    #[test]
    fn header_parses_encoder_output() {
        let b = make_batch(5, 1000, Compression::None);
        let (h, size) = check(&b).unwrap();
        assert_eq!(size, b.len());
        assert_eq!(h.magic, 2);
        assert_eq!(h.record_count, 5);
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(h.max_timestamp, 1004);
        assert_eq!(h.timestamp_type(), TimestampType::CreateTime);
        assert!(verify_crc(&b));
    }

    #[test]
    fn log_append_time_patch_keeps_crc_valid() {
        let mut b = make_batch(3, 10, Compression::None);
        check(&b).unwrap();
        set_log_append_time(&mut b, 99_999);
        set_base_offset(&mut b, 77);
        set_partition_leader_epoch(&mut b, 0);
        let (h, _) = check(&b).unwrap();
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.crc, compute_crc(&b));
    }

    #[test]
    fn validation_rejects_each_kind_of_bad_input() {
        let good = make_batch(2, 0, Compression::None);
        let mut v = Validated::default();
        validate_producer_records(&good, 1 << 20, false, &mut v).unwrap();
        assert_eq!(v.offset_count, 2);

        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 0xff;
        assert!(matches!(
            validate_producer_records(&bad_crc, 1 << 20, false, &mut v),
            Err(LogError::CorruptMessage(_))
        ));

        let mut bad_magic = good.clone();
        bad_magic[POS_MAGIC] = 1;
        assert!(matches!(
            validate_producer_records(&bad_magic, 1 << 20, false, &mut v),
            Err(LogError::InvalidRecord(_))
        ));

        assert!(matches!(
            validate_producer_records(&good, 10, false, &mut v),
            Err(LogError::MessageTooLarge { .. })
        ));

        let mut trailing = good.clone();
        trailing.extend_from_slice(&[0, 1, 2]);
        assert!(matches!(
            validate_producer_records(&trailing, 1 << 20, false, &mut v),
            Err(LogError::CorruptMessage(_))
        ));

        let truncated = &good[..good.len() - 1];
        assert!(matches!(
            validate_producer_records(truncated, 1 << 20, false, &mut v),
            Err(LogError::CorruptMessage(_))
        ));

        // recordCount disagreeing with lastOffsetDelta, CRC fixed up so only that is wrong.
        let mut bad_count = good.clone();
        bad_count[POS_RECORD_COUNT..POS_RECORD_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&bad_count);
        bad_count[POS_CRC..POS_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_producer_records(&bad_count, 1 << 20, false, &mut v),
            Err(LogError::InvalidRecord(_))
        ));

        assert!(matches!(
            validate_producer_records(&[], 1 << 20, false, &mut v),
            Err(LogError::InvalidRecord(_))
        ));
    }

    #[test]
    fn batches_iterator_stops_at_torn_tail() {
        let mut buf = make_batch(2, 0, Compression::None);
        let one = buf.len();
        buf.extend_from_slice(&make_batch(3, 0, Compression::None)[..20]);
        let mut it = Batches::new(&buf);
        assert_eq!(it.next().map(|(p, _, s)| (p, s)), Some((0, one)));
        assert!(it.next().is_none());
        assert_eq!(it.position(), one);
        assert!(matches!(
            it.stopped_at(),
            Some(FrameError::Incomplete { .. })
        ));
    }
}
