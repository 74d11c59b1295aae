//! PartitionLog tests against real files in temp dirs (faults through `io::faults`).

use super::batch::tests::{make_batch, make_batch_ts};
use super::batch::{self, Batches};
use super::io::faults::{Faults, FaultyBackend};
use super::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use std::sync::atomic::Ordering::SeqCst;

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(dir, config, true).expect("open").0
}

/// Decode every batch in `bytes`, checking each CRC: (offset, timestamp) per record.
fn decode_all(bytes: &Bytes) -> Vec<(i64, i64)> {
    let mut b = bytes.clone();
    let sets = RecordBatchDecoder::decode_all(&mut b).expect("stored batches decode");
    sets.iter()
        .flat_map(|s| s.records.iter().map(|r| (r.offset, r.timestamp)))
        .collect()
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    let mut it = Batches::new(bytes);
    let v: Vec<_> = it.by_ref().map(|(_, h, _)| h).collect();
    assert!(it.stopped_at().is_none(), "reads return whole batches only");
    v
}

fn segment_files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

#[test]
fn partition_log_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
}

#[test]
fn round_trip_all_codecs_pass_through_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut sent = Vec::new();
    for (i, c) in codecs.iter().enumerate() {
        let b = make_batch(10, 1000 * i as i64, *c);
        let info = log.append(&b, 5).unwrap();
        assert_eq!(info.base_offset, 10 * i as i64);
        assert_eq!(info.last_offset, 10 * i as i64 + 9);
        assert_eq!(info.record_count, 10);
        assert_eq!(info.log_append_time_ms, -1);
        sent.push(b);
    }
    assert_eq!(log.log_end_offset(), 50);
    assert_eq!(log.high_watermark(), 50);
    let r = log.read(0, 1 << 20, log.high_watermark()).unwrap();
    assert_eq!(r.high_watermark, 50);
    assert_eq!(r.log_start_offset, 0);
    // Stored verbatim apart from baseOffset and partitionLeaderEpoch (both outside the CRC).
    let mut pos = 0;
    for (i, b) in sent.iter().enumerate() {
        let stored = &r.bytes[pos..pos + b.len()];
        assert_eq!(&stored[16..], &b[16..], "codec {:?}", codecs[i]);
        let h = BatchHeader::parse(stored).unwrap();
        assert_eq!(h.base_offset, 10 * i as i64);
        assert_eq!(h.partition_leader_epoch, 0);
        assert_eq!(h.compression(), codecs[i] as u8);
        pos += b.len();
    }
    assert_eq!(pos, r.bytes.len());
    let recs = decode_all(&r.bytes);
    assert_eq!(
        recs.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..50).collect::<Vec<_>>()
    );
    assert_eq!(log.size_bytes(), pos as u64);
}

#[test]
fn read_from_inside_a_batch_returns_that_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 1,
            ..LogConfig::default()
        },
    );
    for _ in 0..5 {
        log.append(&make_batch(10, 0, Compression::None), 0)
            .unwrap();
    }
    for offset in [0, 5, 9, 10, 17, 49] {
        let r = log.read(offset, 1, 50).unwrap();
        let hs = headers(&r.bytes);
        assert_eq!(hs.len(), 1, "offset {offset}");
        assert_eq!(hs[0].base_offset, offset / 10 * 10);
    }
}

#[test]
fn max_bytes_counts_whole_batches_and_first_batch_is_always_whole() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    let b = make_batch(4, 0, Compression::None);
    let size = b.len();
    for _ in 0..10 {
        log.append(&b, 0).unwrap();
    }
    let hw = log.high_watermark();
    assert_eq!(
        headers(&log.read(0, size * 5 / 2, hw).unwrap().bytes).len(),
        2
    );
    assert_eq!(headers(&log.read(0, size * 3, hw).unwrap().bytes).len(), 3);
    assert_eq!(
        log.read(8, 1, hw).unwrap().bytes.len(),
        size,
        "KIP-74: first batch whole even over max_bytes"
    );
    assert_eq!(
        headers(&log.read(6, 100 * size, hw).unwrap().bytes).len(),
        9
    );
    // upper_offset: only batches whose last offset is below it.
    let hs = headers(&log.read(0, 100 * size, 12).unwrap().bytes);
    assert_eq!(hs.len(), 3);
    assert!(log.read(0, 100 * size, 3).unwrap().bytes.is_empty());
    assert!(log.read(13, 100 * size, 12).unwrap().bytes.is_empty());
    // Regression: an "unlimited" max_bytes must not overflow the read span.
    assert_eq!(
        headers(&log.read(0, usize::MAX, hw).unwrap().bytes).len(),
        10
    );
}

#[test]
fn offsets_outside_the_log_are_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert!(
        log.read(0, 100, 0).unwrap().bytes.is_empty(),
        "empty log: offset 0 == LEO"
    );
    log.append(&make_batch(3, 0, Compression::None), 0).unwrap();
    assert!(log.read(3, 100, 3).unwrap().bytes.is_empty());
    assert!(matches!(
        log.read(4, 100, 3),
        Err(LogError::OffsetOutOfRange {
            offset: 4,
            start: 0,
            end: 3
        })
    ));
    assert!(matches!(
        log.read(-1, 100, 3),
        Err(LogError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn segments_roll_by_size_and_reopen_across_many_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let b = make_batch(3, 1000, Compression::None);
    for i in 0..200i64 {
        let info = log.append(&b, i).unwrap();
        assert_eq!(info.base_offset, 3 * i);
    }
    let n = log.segment_count();
    assert!(n >= 15, "{n} segments");
    for seg in log.segments_snapshot() {
        assert!(seg.size() <= 4096);
    }
    let before = log.read(0, 1 << 20, 600).unwrap().bytes;
    log.close().unwrap();
    assert!(
        matches!(log.append(&b, 0), Err(LogError::Storage(_))),
        "no appends after close"
    );
    drop(log);
    // Sealed indexes are trimmed to their used size.
    for p in segment_files(dir.path(), "index") {
        assert_eq!(std::fs::metadata(&p).unwrap().len() % 8, 0);
        assert!(std::fs::metadata(&p).unwrap().len() < 4096);
    }

    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert_eq!(report.segments_opened, n);
    assert_eq!(report.segments_recovered, 0);
    assert_eq!(report.indexes_rebuilt, 0);
    assert!(report.to_string().contains("clean shutdown"), "{report}");
    assert_eq!(log.log_end_offset(), 600);
    let mut offset = 0;
    while offset < 600 {
        let r = log.read(offset, 1 << 20, 600).unwrap();
        let recs = decode_all(&r.bytes);
        assert_eq!(recs[0].0, offset / 3 * 3);
        offset = recs.last().unwrap().0 + 1;
    }
    assert_eq!(
        log.read(0, 1 << 20, 600).unwrap().bytes,
        before.slice(..log.read(0, 1 << 20, 600).unwrap().bytes.len())
    );
    assert_eq!(log.append(&b, 0).unwrap().base_offset, 600);
    for o in [0, 299, 599, 602] {
        assert_eq!(
            decode_all(&log.read(o, 1, 603).unwrap().bytes)[0].0,
            o / 3 * 3
        );
    }
}

#[test]
fn reopen_after_clean_close_keeps_offsets_timestamps_and_accepts_appends() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), LogConfig::default());
        log.append(&make_batch_ts(&[10, 30, 20], Compression::None), 0)
            .unwrap();
        log.append(&make_batch_ts(&[5], Compression::Lz4), 0)
            .unwrap();
        log.close().unwrap();
        log.close().unwrap();
    }
    let (log, report) = PartitionLog::open(dir.path(), LogConfig::default(), true).unwrap();
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.durable_offset(), 4);
    assert_eq!(log.max_timestamp().unwrap(), Some((1, 30)));
    assert_eq!(log.offset_for_timestamp(25).unwrap(), Some((1, 30)));
    assert_eq!(
        log.append(&make_batch(2, 0, Compression::None), 0)
            .unwrap()
            .base_offset,
        4
    );
}

/// Leave the log as a crash would: no close, then damage the tail of the active segment.
fn crash_with_tail(damage: impl FnOnce(&Path)) -> (tempfile::TempDir, i64, i64) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    let b = make_batch(5, 0, Compression::None);
    for _ in 0..7 {
        log.append(&b, 0).unwrap();
    }
    let last_base = log.log_end_offset() - 5;
    let end = log.log_end_offset();
    drop(log);
    let active = segment_files(dir.path(), "log").pop().unwrap();
    damage(&active);
    (dir, last_base, end)
}

#[test]
fn torn_tail_is_truncated_and_appends_continue_at_the_right_offset() {
    let (dir, last_base, _) = crash_with_tail(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len - 7)
            .unwrap();
    });
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(report.segments_recovered, 1);
    assert!(report.bytes_truncated > 0);
    assert!(report.to_string().contains("unclean shutdown"));
    assert_eq!(log.log_end_offset(), last_base);
    let info = log.append(&make_batch(2, 0, Compression::None), 0).unwrap();
    assert_eq!(info.base_offset, last_base);
    let recs = decode_all(&log.read(0, 1 << 20, log.high_watermark()).unwrap().bytes);
    assert!(recs.windows(2).all(|w| w[1].0 == w[0].0 + 1));
}

#[test]
fn corrupt_crc_in_tail_is_truncated_on_recovery() {
    let (dir, last_base, _) = crash_with_tail(|p| {
        let mut bytes = std::fs::read(p).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x5a;
        std::fs::write(p, bytes).unwrap();
    });
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert!(report.bytes_truncated > 0);
    assert_eq!(log.log_end_offset(), last_base);
    assert_eq!(
        log.append(&make_batch(1, 0, Compression::None), 0)
            .unwrap()
            .base_offset,
        last_base
    );
}

#[test]
fn regression_clean_flag_with_torn_tail_still_recovers() {
    // A caller that wrongly claims a clean shutdown must not get a log ending mid-batch.
    let (dir, last_base, _) = crash_with_tail(|p| {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
    });
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert!(report.bytes_truncated > 0);
    assert_eq!(log.log_end_offset(), last_base);
}

#[test]
fn unclean_open_of_intact_log_loses_nothing() {
    let (dir, _, end) = crash_with_tail(|_| {});
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(report.bytes_truncated, 0);
    assert_eq!(log.log_end_offset(), end);
}

#[test]
fn missing_index_files_are_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for i in 0..60 {
        log.append(&make_batch_ts(&[i * 10, i * 10 + 5], Compression::None), 0)
            .unwrap();
    }
    log.close().unwrap();
    let expected = (
        log.offset_for_timestamp(333).unwrap(),
        log.max_timestamp().unwrap(),
    );
    assert_eq!(expected.0, Some((67, 335)));
    drop(log);
    let indexes = segment_files(dir.path(), "index");
    let time_indexes = segment_files(dir.path(), "timeindex");
    assert!(indexes.len() > 3);
    for p in indexes.iter().chain(&time_indexes).step_by(2) {
        std::fs::remove_file(p).unwrap();
    }
    // A garbage index must be detected too.
    std::fs::write(&indexes[1], [0xffu8; 16]).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert!(report.indexes_rebuilt >= indexes.len(), "{report}");
    assert_eq!(
        (
            log.offset_for_timestamp(333).unwrap(),
            log.max_timestamp().unwrap()
        ),
        expected
    );
    for o in 0..120 {
        assert_eq!(
            decode_all(&log.read(o, 1, 120).unwrap().bytes)[0].0,
            o / 2 * 2
        );
    }
    assert_eq!(segment_files(dir.path(), "index").len(), indexes.len());
}

#[test]
fn log_append_time_rewrite_produces_a_batch_whose_crc_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        },
    );
    for c in [Compression::None, Compression::Zstd] {
        let info = log.append(&make_batch(3, 7, c), 123_456).unwrap();
        assert_eq!(info.log_append_time_ms, 123_456);
    }
    let r = log.read(0, 1 << 20, 6).unwrap();
    for h in headers(&r.bytes) {
        assert_eq!(h.timestamp_type(), TimestampType::LogAppendTime);
        assert_eq!(h.max_timestamp, 123_456);
    }
    let mut b = r.bytes.clone();
    let sets = RecordBatchDecoder::decode_all(&mut b).expect("CRC verifies after the rewrite");
    assert_eq!(sets.len(), 2);
    assert!(Batches::new(&r.bytes).all(|(p, _, s)| batch::verify_crc(&r.bytes[p..p + s])));
    assert_eq!(
        log.offset_for_timestamp(100_000).unwrap(),
        Some((0, 123_456))
    );
    assert_eq!(log.max_timestamp().unwrap(), Some((0, 123_456)));
}

#[test]
fn invalid_requests_are_rejected_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 2000,
            ..LogConfig::default()
        },
    );
    let good = make_batch(2, 0, Compression::None);
    log.append(&good, 0).unwrap();
    let (leo, size) = (log.log_end_offset(), log.size_bytes());
    let file = segment_files(dir.path(), "log").pop().unwrap();

    let mut bad_crc = good.clone();
    *bad_crc.last_mut().unwrap() ^= 1;
    let mut bad_magic = good.clone();
    bad_magic[batch::POS_MAGIC] = 1;
    let big = make_batch(30, 0, Compression::None);
    let mut trailing = good.clone();
    trailing.extend_from_slice(&good[..30]);
    let mut two_then_bad = good.clone();
    two_then_bad.extend_from_slice(&bad_crc);
    let mut control = good.clone();
    let attrs = i16::from_be_bytes([control[21], control[22]]) | ATTR_CONTROL;
    control[21..23].copy_from_slice(&attrs.to_be_bytes());
    let crc = batch::compute_crc(&control);
    control[17..21].copy_from_slice(&crc.to_be_bytes());

    assert!(matches!(
        log.append(&bad_crc, 0),
        Err(LogError::CorruptMessage(_))
    ));
    assert!(matches!(
        log.append(&bad_magic, 0),
        Err(LogError::InvalidRecord(_))
    ));
    assert!(matches!(
        log.append(&big, 0),
        Err(LogError::MessageTooLarge { max: 2000, .. })
    ));
    assert!(matches!(
        log.append(&trailing, 0),
        Err(LogError::CorruptMessage(_))
    ));
    assert!(matches!(
        log.append(&two_then_bad, 0),
        Err(LogError::CorruptMessage(_))
    ));
    assert!(matches!(
        log.append(&control, 0),
        Err(LogError::InvalidRecord(_))
    ));
    assert!(matches!(
        log.append(&[], 0),
        Err(LogError::InvalidRecord(_))
    ));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (leo, size));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size);
    assert!(
        !log.is_failed(),
        "validation errors do not fail the partition"
    );
}

#[test]
fn offset_for_timestamp_finds_the_exact_record_inside_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&make_batch_ts(&[100, 105, 110, 120], Compression::Gzip), 0)
        .unwrap(); // 0..3
    log.append(&make_batch_ts(&[50, 300, 60], Compression::None), 0)
        .unwrap(); // 4..6
    for i in 0..100 {
        log.append(&make_batch_ts(&[1000 + i], Compression::None), 0)
            .unwrap(); // 7..106
    }
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 100)));
    assert_eq!(log.offset_for_timestamp(106).unwrap(), Some((2, 110)));
    assert_eq!(log.offset_for_timestamp(110).unwrap(), Some((2, 110)));
    assert_eq!(log.offset_for_timestamp(121).unwrap(), Some((5, 300)));
    assert_eq!(log.offset_for_timestamp(301).unwrap(), Some((7, 1000)));
    assert_eq!(log.offset_for_timestamp(1077).unwrap(), Some((84, 1077)));
    assert_eq!(log.offset_for_timestamp(1099).unwrap(), Some((106, 1099)));
    assert_eq!(log.offset_for_timestamp(1100).unwrap(), None);
    // Never below the log start.
    log.delete_records_before(1).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((1, 105)));
}

#[test]
fn max_timestamp_is_the_first_record_with_the_largest_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    assert_eq!(log.max_timestamp().unwrap(), None);
    log.append(&make_batch_ts(&[1, 2, 3], Compression::None), 0)
        .unwrap();
    log.append(&make_batch_ts(&[7, 900, 8, 900], Compression::Snappy), 0)
        .unwrap(); // 3..6
    for _ in 0..50 {
        log.append(&make_batch_ts(&[500], Compression::None), 0)
            .unwrap();
    }
    log.append(&make_batch_ts(&[900], Compression::None), 0)
        .unwrap();
    assert_eq!(log.max_timestamp().unwrap(), Some((4, 900)));
}

#[test]
fn delete_records_before_persists_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for _ in 0..100 {
        log.append(&make_batch(3, 0, Compression::None), 0).unwrap();
    }
    let segments = log.segment_count();
    assert!(matches!(
        log.delete_records_before(301),
        Err(LogError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.delete_records_before(0).unwrap(), 0);
    assert_eq!(log.delete_records_before(151).unwrap(), 151);
    assert_eq!(
        log.delete_records_before(100).unwrap(),
        151,
        "never moves back"
    );
    assert_eq!(log.log_start_offset(), 151);
    assert!(log.segment_count() < segments);
    assert!(matches!(
        log.read(150, 100, 300),
        Err(LogError::OffsetOutOfRange { start: 151, .. })
    ));
    assert_eq!(log.read(151, 1, 300).unwrap().log_start_offset, 151);
    assert_eq!(decode_all(&log.read(151, 1, 300).unwrap().bytes)[0].0, 150);
    drop(log); // unclean: the log start was fsynced when set
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(log.log_start_offset(), 151);
    assert_eq!(report.log_start_offset, 151);
    assert_eq!(
        log.append(&make_batch(1, 0, Compression::None), 0)
            .unwrap()
            .log_start_offset,
        151
    );
    assert!(dir.path().join(LOG_START_OFFSET_FILE).exists());
}

#[test]
fn regression_log_start_past_recovered_end_restarts_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for _ in 0..5 {
        log.append(&make_batch(3, 0, Compression::None), 0).unwrap();
    }
    log.delete_records_before(15).unwrap();
    drop(log);
    // The tail that held offsets up to 15 is lost.
    let active = segment_files(dir.path(), "log").pop().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap()
        .set_len(10)
        .unwrap();
    let (log, _) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (15, 15));
    assert_eq!(
        log.append(&make_batch(1, 0, Compression::None), 0)
            .unwrap()
            .base_offset,
        15
    );
}

#[test]
fn retention_by_bytes_deletes_oldest_segments_never_the_active_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            retention_bytes: 10_000,
            retention_ms: -1,
            ..small_config()
        },
    );
    for _ in 0..150 {
        log.append(&make_batch(3, 0, Compression::None), 0).unwrap();
    }
    let before = log.size_bytes();
    let r = log.apply_retention(0).unwrap();
    assert!(r.segments_deleted > 0);
    assert_eq!(log.size_bytes(), before - r.bytes_deleted);
    assert!(log.size_bytes() >= 10_000, "never below retention.bytes");
    let first = log.segments_snapshot()[0].size();
    assert!(
        log.size_bytes() - first < 10_000,
        "one more deletion would go below"
    );
    assert_eq!(r.new_log_start_offset, log.log_start_offset());
    assert_eq!(
        log.log_start_offset(),
        log.segments_snapshot()[0].base_offset
    );
    assert!(log.read(log.log_start_offset(), 1, 450).is_ok());
    assert_eq!(log.apply_retention(0).unwrap().segments_deleted, 0);

    log.set_config(LogConfig {
        retention_bytes: 0,
        retention_ms: -1,
        ..small_config()
    });
    log.apply_retention(0).unwrap();
    assert_eq!(log.segment_count(), 1, "only the active segment is left");
}

#[test]
fn retention_by_time_uses_segment_max_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            retention_ms: 1000,
            ..small_config()
        },
    );
    for i in 0..100 {
        log.append(
            &make_batch_ts(&[i * 100, i * 100 + 1], Compression::None),
            0,
        )
        .unwrap();
    }
    let segs = log.segments_snapshot();
    assert!(segs.len() > 4);
    let now = 5000;
    let expected = segs[..segs.len() - 1]
        .iter()
        .take_while(|s| now - s.state.read().max_timestamp > 1000)
        .count();
    assert!(expected > 0);
    let r = log.apply_retention(now).unwrap();
    assert_eq!(r.segments_deleted, expected);
    let first = log.segments_snapshot()[0].clone();
    assert!(
        now - first.state.read().max_timestamp <= 1000,
        "first kept segment is not expired"
    );
    assert_eq!(log.log_start_offset(), first.base_offset);
    let r = log.apply_retention(1_000_000).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        r.new_log_start_offset,
        log.segments_snapshot()[0].base_offset
    );
}

#[test]
fn segment_rolls_when_older_than_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_ms: 1000,
            ..LogConfig::default()
        },
    );
    let b = make_batch(1, 0, Compression::None);
    log.append(&b, 10_000).unwrap();
    log.append(&b, 10_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.append(&b, 11_001).unwrap();
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.segments_snapshot()[1].base_offset, 2);
}

#[test]
fn batch_larger_than_segment_bytes_goes_into_a_fresh_segment() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 500,
            ..LogConfig::default()
        },
    );
    log.append(&make_batch(1, 0, Compression::None), 0).unwrap();
    let big = make_batch(20, 0, Compression::None);
    assert!(big.len() > 500);
    log.append(&big, 0).unwrap();
    log.append(&make_batch(1, 0, Compression::None), 0).unwrap();
    let segs = log.segments_snapshot();
    assert_eq!(
        segs.iter().map(|s| s.base_offset).collect::<Vec<_>>(),
        vec![0, 1, 21]
    );
    assert_eq!(segs[1].size(), big.len() as u64);
    assert_eq!(
        headers(&log.read(5, 1, 22).unwrap().bytes)[0].base_offset,
        1
    );
}

#[test]
fn roll_when_the_offset_index_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            index_interval_bytes: 1,
            index_max_bytes: 64,
            ..LogConfig::default()
        },
    );
    for _ in 0..40 {
        log.append(&make_batch(1, 0, Compression::None), 0).unwrap();
    }
    assert!(log.segment_count() >= 4);
    for o in 0..40 {
        assert_eq!(
            headers(&log.read(o, 1, 40).unwrap().bytes)[0].base_offset,
            o
        );
    }
}

#[test]
fn group_commit_many_threads_all_return_and_durable_offset_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut ends = Vec::new();
                for _ in 0..20 {
                    let info = log.append(&make_batch(2, 0, Compression::None), 0).unwrap();
                    log.sync_through(info.last_offset + 1).unwrap();
                    assert!(log.durable_offset() > info.last_offset);
                    ends.push(info.last_offset + 1);
                }
                ends
            })
        })
        .collect();
    let mut max_end = 0;
    for t in threads {
        max_end = max_end.max(*t.join().unwrap().iter().max().unwrap());
    }
    assert_eq!(max_end, 640);
    assert!(log.durable_offset() >= max_end);
    log.sync_through(10_000).unwrap(); // beyond the end: returns, does not hang
    log.sync().unwrap();
}

#[test]
fn appended_notify_fires_on_append() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path(), LogConfig::default()));
    rt.block_on(async {
        let notified = log.appended().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        assert_eq!(log.log_end_offset(), 0);
        let writer = {
            let log = log.clone();
            std::thread::spawn(move || log.append(&make_batch(1, 0, Compression::None), 0).unwrap())
        };
        tokio::time::timeout(std::time::Duration::from_secs(10), notified)
            .await
            .expect("notified");
        writer.join().unwrap();
        assert_eq!(log.log_end_offset(), 1);
    });
}

#[test]
fn fail_stop_after_a_write_error_until_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let backend = Arc::new(FaultyBackend(faults.clone()));
    let (log, _) =
        PartitionLog::open_with_backend(dir.path(), LogConfig::default(), true, backend.clone())
            .unwrap();
    let b = make_batch(2, 0, Compression::None);
    log.append(&b, 0).unwrap();
    faults.fail_writes.store(true, SeqCst);
    assert!(matches!(log.append(&b, 0), Err(LogError::Storage(_))));
    faults.fail_writes.store(false, SeqCst);
    assert!(
        matches!(log.append(&b, 0), Err(LogError::Storage(_))),
        "no retry after an I/O error"
    );
    assert!(matches!(log.sync(), Ok(()) | Err(LogError::Storage(_))));
    assert!(matches!(
        log.delete_records_before(1),
        Err(LogError::Storage(_))
    ));
    assert!(log.is_failed());
    assert_eq!(log.log_end_offset(), 2);
    assert_eq!(
        decode_all(&log.read(0, 1000, 2).unwrap().bytes).len(),
        2,
        "reads still serve published data"
    );
    drop(log);
    let (log, _) =
        PartitionLog::open_with_backend(dir.path(), LogConfig::default(), false, backend).unwrap();
    assert_eq!(log.append(&b, 0).unwrap().base_offset, 2);
}

#[test]
fn fail_stop_after_an_fsync_error_never_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let (log, _) = PartitionLog::open_with_backend(
        dir.path(),
        LogConfig::default(),
        true,
        Arc::new(FaultyBackend(faults.clone())),
    )
    .unwrap();
    let info = log.append(&make_batch(2, 0, Compression::None), 0).unwrap();
    faults.fail_syncs.store(true, SeqCst);
    assert!(matches!(
        log.sync_through(info.last_offset + 1),
        Err(LogError::Storage(_))
    ));
    faults.fail_syncs.store(false, SeqCst);
    assert!(matches!(
        log.sync_through(info.last_offset + 1),
        Err(LogError::Storage(_))
    ));
    assert!(matches!(
        log.append(&make_batch(2, 0, Compression::None), 0),
        Err(LogError::Storage(_))
    ));
    assert_eq!(log.durable_offset(), 0);
}

#[test]
fn torn_write_is_cut_on_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let backend = Arc::new(FaultyBackend(faults.clone()));
    let (log, _) =
        PartitionLog::open_with_backend(dir.path(), LogConfig::default(), true, backend.clone())
            .unwrap();
    let b = make_batch(4, 0, Compression::None);
    log.append(&b, 0).unwrap();
    faults.tear_next_write_at.store(b.len() + 100, SeqCst);
    let mut two = b.clone();
    two.extend_from_slice(&b);
    assert!(matches!(log.append(&two, 0), Err(LogError::Storage(_))));
    assert_eq!(log.log_end_offset(), 4, "a failed write publishes nothing");
    drop(log);
    let (log, report) =
        PartitionLog::open_with_backend(dir.path(), LogConfig::default(), false, backend).unwrap();
    assert_eq!(report.bytes_truncated, 100);
    assert_eq!(
        log.log_end_offset(),
        8,
        "the whole first batch of the torn write survived"
    );
    assert_eq!(log.append(&b, 0).unwrap().base_offset, 8);
}

#[test]
fn concurrent_readers_never_see_partial_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(
        dir.path(),
        LogConfig {
            segment_bytes: 64 * 1024,
            ..LogConfig::default()
        },
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|k| {
            let (log, stop) = (log.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut offset = 0i64;
                while !stop.load(SeqCst) {
                    let hw = log.high_watermark();
                    let r = log.read(offset, 4096 * (k + 1), hw).unwrap();
                    for (p, h, s) in Batches::new(&r.bytes) {
                        assert!(batch::verify_crc(&r.bytes[p..p + s]));
                        assert!(h.last_offset() < hw);
                    }
                    let hs = headers(&r.bytes);
                    offset = hs.last().map_or(offset, |h| h.next_offset());
                    if offset >= hw && hw > 5000 {
                        offset = 0;
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let b = make_batch(5, 0, Compression::None);
    for i in 0..2000 {
        log.append(&b, i).unwrap();
    }
    stop.store(true, SeqCst);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    assert!(log.segment_count() > 10);
}

#[test]
fn regression_read_at_exact_segment_boundary_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        },
    );
    for _ in 0..6 {
        log.append(&make_batch(2, 0, Compression::None), 0).unwrap();
    }
    for seg in log.segments_snapshot() {
        let r = log.read(seg.base_offset, 1 << 20, 12).unwrap();
        assert_eq!(headers(&r.bytes)[0].base_offset, seg.base_offset);
    }
}

#[test]
fn recovery_report_display_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, report) = PartitionLog::open(dir.path(), LogConfig::default(), false).unwrap();
    let line = report.to_string();
    assert!(!line.contains('\n'));
    assert!(line.contains("offsets [0, 0)"), "{line}");
}

#[test]
fn stray_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000500.index"), [0u8; 8]).unwrap();
    std::fs::write(dir.path().join("log-start-offset.tmp"), [0u8; 3]).unwrap();
    let (_, report) = PartitionLog::open(dir.path(), LogConfig::default(), true).unwrap();
    assert_eq!(report.files_removed, 2);
}

/// Rough throughput check (run with `--ignored --nocapture`): ~1 MB batches of 100-byte records.
#[test]
#[ignore]
fn bench_append_and_read_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            max_message_bytes: 2 << 20,
            ..LogConfig::default()
        },
    );
    let b = make_batch(7000, 0, Compression::None);
    let n = 300;
    let t = std::time::Instant::now();
    for _ in 0..n {
        log.append(&b, 0).unwrap();
    }
    let dt = t.elapsed().as_secs_f64();
    println!(
        "append: {:.2} M records/s, {:.0} MB/s",
        (n * 7000) as f64 / dt / 1e6,
        (n * b.len()) as f64 / dt / 1e6
    );
    let t = std::time::Instant::now();
    let mut offset = 0;
    let hw = log.high_watermark();
    while offset < hw {
        let r = log.read(offset, 1 << 20, hw).unwrap();
        offset = headers(&r.bytes).last().unwrap().next_offset();
    }
    let dt = t.elapsed().as_secs_f64();
    println!("read: {:.2} M records/s", (n * 7000) as f64 / dt / 1e6);
}

#[test]
fn create_time_outside_the_configured_bounds_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = 10_000_000;
    let log = open(
        dir.path(),
        LogConfig {
            timestamp_after_max_ms: 1000,
            timestamp_before_max_ms: 5000,
            ..LogConfig::default()
        },
    );
    let future = make_batch(1, now + 1001, Compression::None);
    assert!(matches!(
        log.append(&future, now),
        Err(LogError::InvalidTimestamp(_))
    ));
    let past = make_batch(1, now - 5001, Compression::None);
    assert!(matches!(
        log.append(&past, now),
        Err(LogError::InvalidTimestamp(_))
    ));
    assert_eq!(log.log_end_offset(), 0);
    log.append(&make_batch(1, now + 1000, Compression::None), now)
        .unwrap();
    // LogAppendTime topics overwrite the timestamps, so no bound applies.
    log.set_config(LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        timestamp_after_max_ms: 0,
        ..LogConfig::default()
    });
    log.append(&future, now).unwrap();
}
