//! Producer state tests: idempotence, transactions, LSO, the aborted-transaction index,
//! snapshots and recovery. Real files in temp dirs.

use super::batch::tests::make_batch;
use super::batch::{
    self, POS_ATTRIBUTES, POS_BASE_SEQUENCE, POS_CRC, POS_PRODUCER_EPOCH, POS_PRODUCER_ID,
};
use super::*;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

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

/// A producer batch of `n` records: producer id, epoch, base sequence, transactional flag.
fn pbatch(pid: i64, epoch: i16, seq: i32, n: usize, txn: bool) -> Vec<u8> {
    let mut b = make_batch(n, 1_000, Compression::None);
    b[POS_PRODUCER_ID..][..8].copy_from_slice(&pid.to_be_bytes());
    b[POS_PRODUCER_EPOCH..][..2].copy_from_slice(&epoch.to_be_bytes());
    b[POS_BASE_SEQUENCE..][..4].copy_from_slice(&seq.to_be_bytes());
    if txn {
        let attrs =
            i16::from_be_bytes([b[POS_ATTRIBUTES], b[POS_ATTRIBUTES + 1]]) | ATTR_TRANSACTIONAL;
        b[POS_ATTRIBUTES..][..2].copy_from_slice(&attrs.to_be_bytes());
    }
    let crc = batch::compute_crc(&b);
    b[POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Everything the producer state is: the encoded entries (sorted by id, with their cached
/// batches), the aborted index, the LSO.
fn fingerprint(log: &PartitionLog) -> (Vec<u8>, Vec<producers::AbortedTxn>, i64) {
    let state = snapshot::encode(0, &log.writer.lock().producers);
    (state, log.aborted.read().clone(), log.last_stable_offset())
}

fn snapshot_files(dir: &Path) -> Vec<i64> {
    snapshot::list(dir).unwrap()
}

#[test]
fn retried_batch_is_deduplicated_also_after_clean_and_unclean_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    log.append(&make_batch(2, 0, Compression::None), 0).unwrap(); // no producer id
    let first = log.append(&pbatch(7, 0, 0, 3, false), 0).unwrap();
    assert_eq!(
        (first.base_offset, first.last_offset, first.duplicate),
        (2, 4, false)
    );
    let second = log.append(&pbatch(7, 0, 3, 2, false), 0).unwrap();
    assert_eq!((second.base_offset, second.last_offset), (5, 6));
    let (leo, size) = (log.log_end_offset(), log.size_bytes());

    let check = |log: &PartitionLog| {
        for (b, orig) in [
            (pbatch(7, 0, 0, 3, false), &first),
            (pbatch(7, 0, 3, 2, false), &second),
        ] {
            let dup = log.append(&b, 0).unwrap();
            assert!(dup.duplicate);
            assert_eq!(
                (dup.base_offset, dup.last_offset, dup.record_count),
                (orig.base_offset, orig.last_offset, 0)
            );
        }
        assert_eq!(log.log_end_offset(), leo, "nothing written twice");
        assert_eq!(log.size_bytes(), size);
    };
    check(&log);

    log.close().unwrap();
    drop(log);
    let log = open(dir.path(), small_config());
    check(&log);

    // Kill-like: appends after the last snapshot, no close.
    let third = log.append(&pbatch(7, 0, 5, 1, false), 0).unwrap();
    let (leo, size) = (log.log_end_offset(), log.size_bytes());
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(report.producer_batches_replayed, 1, "{report}");
    let dup = log.append(&pbatch(7, 0, 5, 1, false), 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, third.base_offset);
    assert_eq!((log.log_end_offset(), log.size_bytes()), (leo, size));
    // And the sequence continues after the replayed batch.
    assert_eq!(
        log.append(&pbatch(7, 0, 6, 1, false), 0)
            .unwrap()
            .base_offset,
        leo
    );
    assert!(matches!(
        log.append(&pbatch(7, 0, 6, 1, false), 0),
        Ok(AppendInfo {
            duplicate: true,
            ..
        })
    ));
}

#[test]
fn only_the_last_five_batches_are_remembered() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    for seq in 0..7 {
        log.append(&pbatch(1, 0, seq, 1, false), 0).unwrap();
    }
    for seq in 2..7 {
        let d = log.append(&pbatch(1, 0, seq, 1, false), 0).unwrap();
        assert!(d.duplicate);
        assert_eq!(d.base_offset, i64::from(seq));
    }
    // Older than the cache: an out-of-order sequence, as in Kafka.
    assert!(matches!(
        log.append(&pbatch(1, 0, 1, 1, false), 0),
        Err(LogError::OutOfOrderSequence(_))
    ));
    // Same first sequence but a different range is not a duplicate.
    assert!(matches!(
        log.append(&pbatch(1, 0, 6, 2, false), 0),
        Err(LogError::OutOfOrderSequence(_))
    ));
    assert_eq!(log.log_end_offset(), 7);
}

#[test]
fn out_of_order_sequences_and_stale_epochs_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // An unknown producer may start at any sequence.
    log.append(&pbatch(3, 2, 42, 2, false), 0).unwrap();
    let (leo, size) = (log.log_end_offset(), log.size_bytes());
    for (bad, what) in [
        (pbatch(3, 2, 45, 1, false), "gap"),
        (pbatch(3, 2, 43, 1, false), "overlap"),
        (pbatch(3, 2, 0, 1, false), "restart without a new epoch"),
        (pbatch(3, 3, 5, 1, false), "new epoch not at 0"),
    ] {
        assert!(
            matches!(log.append(&bad, 0), Err(LogError::OutOfOrderSequence(_))),
            "{what}"
        );
    }
    assert!(matches!(
        log.append(&pbatch(3, 1, 44, 1, false), 0),
        Err(LogError::InvalidProducerEpoch(_))
    ));
    // A producer id with a negative sequence is malformed (Kafka's LogValidator).
    assert!(matches!(
        log.append(&pbatch(3, 2, -1, 1, false), 0),
        Err(LogError::InvalidRecord(_))
    ));
    // All-or-nothing: a good batch followed by a bad one writes neither.
    let mut two = pbatch(3, 2, 44, 1, false);
    two.extend_from_slice(&pbatch(3, 2, 99, 1, false));
    assert!(matches!(
        log.append(&two, 0),
        Err(LogError::OutOfOrderSequence(_))
    ));
    assert_eq!((log.log_end_offset(), log.size_bytes()), (leo, size));
    assert!(!log.is_failed());
    // Batches of one request chain: 44 then 45.
    let mut two = pbatch(3, 2, 44, 1, false);
    two.extend_from_slice(&pbatch(3, 2, 45, 1, false));
    assert_eq!(log.append(&two, 0).unwrap().last_offset, leo + 1);
    // A new epoch starts at 0 and fences the old one.
    log.append(&pbatch(3, 3, 0, 1, false), 0).unwrap();
    assert!(matches!(
        log.append(&pbatch(3, 2, 46, 1, false), 0),
        Err(LogError::InvalidProducerEpoch(_))
    ));
    let p = log.producers();
    assert_eq!(p.len(), 1);
    assert_eq!(
        (p[0].producer_id, p[0].epoch, p[0].last_sequence),
        (3, 3, 0)
    );
    assert_eq!(p[0].current_txn_start_offset, -1);
}

#[test]
fn sequences_wrap_from_i32_max_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&pbatch(5, 0, i32::MAX - 1, 1, false), 0)
        .unwrap();
    log.append(&pbatch(5, 0, i32::MAX, 1, false), 0).unwrap();
    log.append(&pbatch(5, 0, 0, 1, false), 0).unwrap();
    // A batch crossing the wrap: MAX-1, MAX, 0.
    log.append(&pbatch(6, 0, i32::MAX - 1, 3, false), 0)
        .unwrap();
    assert_eq!(log.producers()[1].last_sequence, 0);
    log.append(&pbatch(6, 0, 1, 1, false), 0).unwrap();
    let d = log
        .append(&pbatch(6, 0, i32::MAX - 1, 3, false), 0)
        .unwrap();
    assert!(d.duplicate);
    assert_eq!((d.base_offset, d.last_offset), (3, 5));
    assert!(matches!(
        log.append(&pbatch(5, 0, i32::MAX, 1, false), 0),
        Ok(AppendInfo {
            duplicate: true,
            base_offset: 1,
            ..
        })
    ));
}

#[test]
fn requests_mixing_duplicates_and_new_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&pbatch(1, 0, 0, 2, false), 0).unwrap();
    log.append(&pbatch(1, 0, 2, 2, false), 0).unwrap();
    let mut mixed = pbatch(1, 0, 2, 2, false);
    mixed.extend_from_slice(&pbatch(1, 0, 4, 1, false));
    assert!(matches!(
        log.append(&mixed, 0),
        Err(LogError::OutOfOrderSequence(_))
    ));
    let mut with_plain = pbatch(1, 0, 2, 2, false);
    with_plain.extend_from_slice(&make_batch(1, 0, Compression::None));
    assert!(matches!(
        log.append(&with_plain, 0),
        Err(LogError::OutOfOrderSequence(_))
    ));
    // All duplicates: the original range.
    let mut both = pbatch(1, 0, 0, 2, false);
    both.extend_from_slice(&pbatch(1, 0, 2, 2, false));
    let d = log.append(&both, 0).unwrap();
    assert_eq!((d.base_offset, d.last_offset, d.duplicate), (0, 3, true));
    assert_eq!(log.log_end_offset(), 4);
}

#[test]
fn transactions_move_the_lso_and_aborts_are_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.last_stable_offset(), 0);
    log.append(&make_batch(2, 0, Compression::None), 0).unwrap(); // 0-1
    assert_eq!(log.last_stable_offset(), 2);
    log.append(&pbatch(10, 0, 0, 3, true), 0).unwrap(); // 2-4 opens at 2
    assert_eq!(log.last_stable_offset(), 2);
    log.append(&make_batch(1, 0, Compression::None), 0).unwrap(); // 5
    log.append(&pbatch(10, 0, 3, 1, true), 0).unwrap(); // 6
    assert_eq!((log.last_stable_offset(), log.high_watermark()), (2, 7));
    assert_eq!(log.producers()[0].current_txn_start_offset, 2);
    // A non-transactional batch inside the producer's open transaction.
    assert!(matches!(
        log.append(&pbatch(10, 0, 4, 1, false), 0),
        Err(LogError::InvalidTxnState(_))
    ));
    let m = log.append_control(10, 0, true, 0, 50).unwrap(); // 7
    assert_eq!((m.base_offset, m.last_offset, m.record_count), (7, 7, 1));
    assert_eq!(log.last_stable_offset(), 8);
    assert!(
        log.aborted_transactions(0, 8).is_empty(),
        "a commit is not indexed"
    );
    let p = log.producers()[0];
    assert_eq!(
        (
            p.current_txn_start_offset,
            p.last_timestamp,
            p.last_sequence
        ),
        (-1, 50, 3)
    );

    log.append(&pbatch(10, 0, 4, 2, true), 0).unwrap(); // 8-9
    assert_eq!(log.last_stable_offset(), 8);
    log.append_control(10, 0, false, 0, 60).unwrap(); // 10
    assert_eq!(log.last_stable_offset(), 11);
    assert_eq!(log.aborted_transactions(0, 11), vec![(10, 8)]);
    // A marker with no open transaction is written and changes nothing else.
    assert_eq!(
        log.append_control(10, 0, false, 0, 70).unwrap().base_offset,
        11
    );
    assert_eq!(log.aborted_transactions(0, 12), vec![(10, 8)]);
    assert_eq!(log.last_stable_offset(), 12);
    // Markers are checked like Kafka's appendEndTxnMarker.
    log.append(&pbatch(10, 2, 0, 1, true), 0).unwrap(); // 12, epoch 2
    assert!(matches!(
        log.append_control(10, 1, false, 0, 0),
        Err(LogError::InvalidProducerEpoch(_))
    ));
    log.append_control(10, 2, true, 5, 0).unwrap();
    assert!(matches!(
        log.append_control(10, 2, true, 4, 0),
        Err(LogError::TransactionCoordinatorFenced(_))
    ));
    // A marker from a newer epoch (the coordinator fencing a producer) is accepted.
    log.append(&pbatch(10, 2, 1, 1, true), 0).unwrap();
    log.append_control(10, 3, false, 5, 0).unwrap();
    assert_eq!(log.producers()[0].epoch, 3);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert!(matches!(
        log.append_control(-1, 0, true, 0, 0),
        Err(LogError::InvalidRecord(_))
    ));
}

#[test]
fn two_producers_interleaving_transactions_lso_is_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&pbatch(1, 0, 0, 2, true), 0).unwrap(); // A 0-1
    log.append(&pbatch(2, 0, 0, 2, true), 0).unwrap(); // B 2-3
    log.append(&pbatch(1, 0, 2, 1, true), 0).unwrap(); // A 4
    assert_eq!(log.last_stable_offset(), 0);
    log.append_control(1, 0, true, 0, 0).unwrap(); // A commits at 5
    assert_eq!(log.last_stable_offset(), 2, "B's transaction still open");
    log.append(&pbatch(1, 0, 3, 1, true), 0).unwrap(); // A again at 6
    assert_eq!(log.last_stable_offset(), 2);
    log.append_control(2, 0, false, 0, 0).unwrap(); // B aborts at 7
    assert_eq!(log.last_stable_offset(), 6);
    log.append_control(1, 0, false, 0, 0).unwrap(); // A aborts at 8
    assert_eq!(log.last_stable_offset(), 9);
    let a = log.aborted.read().clone();
    assert_eq!(
        a.iter()
            .map(|t| (
                t.producer_id,
                t.first_offset,
                t.last_offset,
                t.last_stable_offset
            ))
            .collect::<Vec<_>>(),
        vec![(2, 2, 7, 6), (1, 6, 8, 9)],
        "the LSO at B's abort was A's open transaction"
    );
    assert_eq!(log.aborted_transactions(0, 9), vec![(2, 2), (1, 6)]);
}

#[test]
fn aborted_transactions_for_fetch_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    // Three aborted transactions: [0,2) marker 2, [3,5) marker 5, [6,8) marker 8.
    for (pid, at) in [(1i64, 0), (2, 3), (3, 6)] {
        assert_eq!(
            log.append(&pbatch(pid, 0, 0, 2, true), 0)
                .unwrap()
                .base_offset,
            at
        );
        log.append_control(pid, 0, false, 0, 0).unwrap();
    }
    log.append(&make_batch(1, 0, Compression::None), 0).unwrap(); // 9
    let q = |from, upper| log.aborted_transactions(from, upper);
    assert_eq!(q(0, 10), vec![(1, 0), (2, 3), (3, 6)]);
    assert_eq!(
        q(2, 10),
        vec![(1, 0), (2, 3), (3, 6)],
        "marker at 2 is still ahead"
    );
    assert_eq!(q(3, 10), vec![(2, 3), (3, 6)]);
    assert_eq!(q(0, 3), vec![(1, 0)], "first offset 3 is not below 3");
    assert_eq!(q(0, 4), vec![(1, 0), (2, 3)]);
    assert_eq!(q(6, 7), vec![(3, 6)]);
    assert!(q(9, 10).is_empty());
    assert!(q(0, 0).is_empty());
}

#[test]
fn control_batches_decode_as_kafka_control_records() {
    for ts_type in [TimestampType::CreateTime, TimestampType::LogAppendTime] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            dir.path(),
            LogConfig {
                timestamp_type: ts_type,
                ..LogConfig::default()
            },
        );
        log.append(&pbatch(42, 3, 0, 2, true), 0).unwrap();
        let m = log.append_control(42, 3, true, 7, 1234).unwrap();
        let stored = log
            .read(m.base_offset, 1 << 20, log.high_watermark())
            .unwrap()
            .bytes;
        let (h, size) = batch::check(&stored).expect("CRC and framing");
        assert_eq!(size, stored.len());
        assert_eq!(
            (
                h.base_offset,
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.record_count
            ),
            (2, 42, 3, -1, 1)
        );
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(h.max_timestamp, 1234);
        assert_eq!(producers::parse_marker(&stored), Some((true, 7)));
        let mut buf = stored.clone();
        let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
        assert_eq!(set.records.len(), 1);
        let r = &set.records[0];
        assert!(r.control && r.transactional);
        assert_eq!(
            (r.offset, r.producer_id, r.producer_epoch, r.timestamp),
            (2, 42, 3, 1234)
        );
        assert_eq!(
            r.key.as_deref(),
            Some(&[0u8, 0, 0, 1][..]),
            "version 0, COMMIT"
        );
        assert_eq!(
            r.value.as_deref(),
            Some(&[0u8, 0, 0, 0, 0, 7][..]),
            "version 0, coordinator epoch 7"
        );

        let abort = producers::control_batch(9, 1, false, -1, 5);
        let set = RecordBatchDecoder::decode(&mut Bytes::from(abort.clone())).unwrap();
        assert_eq!(set.records[0].key.as_deref(), Some(&[0u8, 0, 0, 0][..]));
        assert_eq!(producers::parse_marker(&abort), Some((false, -1)));
    }
}

/// A mixed workload over many segments: idempotent and transactional producers, commits
/// and aborts, plain batches. Returns the number of appends.
fn workload(log: &PartitionLog, rounds: i32, seq0: i32) {
    for i in 0..rounds {
        let seq = seq0 + i;
        log.append(&pbatch(20, 1, seq, 1, false), 0).unwrap();
        log.append(&make_batch(1, 0, Compression::None), 0).unwrap();
        log.append(&pbatch(10, 0, seq * 2, 2, true), 0).unwrap();
        log.append(&pbatch(11, 4, seq, 1, true), 0).unwrap();
        if i % 3 == 2 {
            log.append_control(10, 0, i % 2 == 0, 1, 100 + i64::from(i))
                .unwrap();
        }
        if i % 4 == 3 {
            log.append_control(11, 4, false, 1, 200 + i64::from(i))
                .unwrap();
        }
    }
}

#[test]
fn snapshot_plus_tail_replay_equals_the_state_before_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    workload(&log, 40, 0);
    assert!(log.segment_count() > 5);
    assert!(!log.aborted_transactions(0, i64::MAX).is_empty());
    assert!(
        log.last_stable_offset() < log.high_watermark(),
        "open transactions left"
    );
    let before = fingerprint(&log);
    let snaps = snapshot_files(dir.path());
    assert_eq!(
        snaps.len(),
        snapshot::SNAPSHOTS_KEPT,
        "old snapshots pruned: {snaps:?}"
    );
    let active_base = log.segments.read().last().unwrap().base_offset;
    assert_eq!(*snaps.last().unwrap(), active_base);

    // Kill-like: no close. The newest snapshot is the last roll; the tail is replayed.
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(report.producer_snapshot, Some(active_base), "{report}");
    assert!(report.producer_batches_replayed > 0);
    assert_eq!(report.producers, 3);
    assert_eq!(fingerprint(&log), before);
    assert!(
        snapshot_files(dir.path()).contains(&log.log_end_offset()),
        "snapshot after replay"
    );

    workload(&log, 10, 40);
    let before = fingerprint(&log);
    log.close().unwrap();
    drop(log);
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert_eq!(report.producer_snapshot, Some(log.log_end_offset()));
    assert_eq!(report.producer_batches_replayed, 0);
    assert_eq!(fingerprint(&log), before);
    // The state works: the next sequences and the dedupe cache carried over.
    assert!(
        log.append(&pbatch(20, 1, 49, 1, false), 0)
            .unwrap()
            .duplicate
    );
    log.append(&pbatch(20, 1, 50, 1, false), 0).unwrap();
}

#[test]
fn without_snapshots_the_whole_log_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    workload(&log, 30, 0);
    let before = fingerprint(&log);
    drop(log);
    for s in snapshot_files(dir.path()) {
        std::fs::remove_file(snapshot::path(dir.path(), s)).unwrap();
    }
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(report.producer_snapshot, None);
    assert_eq!(report.snapshots_ignored, 0);
    assert_eq!(fingerprint(&log), before);
}

#[test]
fn corrupt_snapshots_are_ignored_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    workload(&log, 40, 0);
    let before = fingerprint(&log);
    log.close().unwrap();
    drop(log);
    let snaps = snapshot_files(dir.path());
    let newest = snapshot::path(dir.path(), *snaps.last().unwrap());
    let mut bytes = std::fs::read(&newest).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(&newest, bytes).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert_eq!(report.snapshots_ignored, 1);
    assert_eq!(report.producer_snapshot, Some(snaps[snaps.len() - 2]));
    assert!(
        report.to_string().contains("1 corrupt snapshot(s) ignored"),
        "{report}"
    );
    assert_eq!(fingerprint(&log), before);
    drop(log);

    // Every snapshot garbage (a short one, a bad magic): the whole log is replayed.
    for s in snapshot_files(dir.path()) {
        std::fs::write(snapshot::path(dir.path(), s), b"KPS1").unwrap();
    }
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert!(report.snapshots_ignored >= 2, "{report}");
    assert_eq!(report.producer_snapshot, None);
    assert_eq!(fingerprint(&log), before);
}

#[test]
fn damaged_or_missing_txn_index_is_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    workload(&log, 40, 0);
    let before = fingerprint(&log);
    log.close().unwrap();
    drop(log);
    let path = txnindex::path(dir.path());
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), before.1.len() * txnindex::ENTRY_SIZE);
    bytes[3] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert!(report.txn_index_rebuilt, "{report}");
    assert_eq!(fingerprint(&log), before);
    log.close().unwrap();
    drop(log);
    std::fs::remove_file(&path).unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert!(report.txn_index_rebuilt);
    assert_eq!(fingerprint(&log), before);

    // A torn tail entry (an append a crash cut) is not damage: it is re-derived.
    log.append(&pbatch(30, 0, 0, 1, true), 0).unwrap();
    log.append_control(30, 0, false, 1, 0).unwrap();
    let before = fingerprint(&log);
    drop(log);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert!(!report.txn_index_rebuilt, "{report}");
    assert_eq!(fingerprint(&log), before);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (before.1.len() * txnindex::ENTRY_SIZE) as u64
    );
}

#[test]
fn retention_and_delete_records_drop_aborted_entries_below_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for i in 0..6 {
        log.append(&pbatch(1, 0, i * 3, 3, true), 0).unwrap();
        log.append_control(1, 0, false, 0, 0).unwrap();
    }
    let aborted = log.aborted_transactions(0, i64::MAX);
    assert_eq!(aborted.len(), 6);
    for _ in 0..60 {
        log.append(&make_batch(2, 0, Compression::None), 0).unwrap();
    }
    log.set_config(LogConfig {
        retention_bytes: 4096,
        ..small_config()
    });
    let r = log.apply_retention(0).unwrap();
    assert!(r.segments_deleted > 0);
    let start = log.log_start_offset();
    assert!(start > 24, "all aborted transactions are below {start}");
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(
        std::fs::metadata(txnindex::path(dir.path())).unwrap().len(),
        0
    );
    assert!(snapshot_files(dir.path()).iter().all(|o| *o >= start));
    // Producer entries whose batches are gone stay (until they expire).
    assert_eq!(log.producers().len(), 1);
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());

    // DeleteRecords into the middle of the aborted transactions keeps the overlapping one.
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for i in 0..3 {
        log.append(&pbatch(1, 0, i * 3, 3, true), 0).unwrap(); // [4i, 4i+3), marker 4i+3
        log.append_control(1, 0, false, 0, 0).unwrap();
    }
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(1, 4), (1, 8)]);
    assert_eq!(
        std::fs::metadata(txnindex::path(dir.path())).unwrap().len(),
        2 * txnindex::ENTRY_SIZE as u64
    );
    drop(log);
    let (log, _) = PartitionLog::open(dir.path(), small_config(), false).unwrap();
    assert_eq!(log.log_start_offset(), 5);
    // Replayed from the log start: the transaction is known from its first retained batch.
    assert_eq!(log.aborted_transactions(0, i64::MAX), vec![(1, 4), (1, 8)]);
}

#[test]
fn idle_producers_expire_at_retention_unless_in_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(
        dir.path(),
        LogConfig {
            producer_id_expiration_ms: 10_000,
            ..LogConfig::default()
        },
    );
    log.append(&pbatch(1, 0, 0, 1, false), 0).unwrap(); // last timestamp 1000
    log.append(&pbatch(2, 0, 0, 1, true), 0).unwrap();
    log.apply_retention(10_999).unwrap();
    assert_eq!(log.producers().len(), 2);
    log.apply_retention(11_000).unwrap();
    let p = log.producers();
    assert_eq!(p.iter().map(|p| p.producer_id).collect::<Vec<_>>(), vec![2]);
    // Forgotten: any sequence is accepted again.
    log.append(&pbatch(1, 0, 77, 1, false), 0).unwrap();
    log.close().unwrap();
    let log = open(dir.path(), LogConfig::default());
    assert_eq!(log.producers().len(), 2);
}

#[test]
fn logs_without_producer_ids_keep_no_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), small_config());
    for _ in 0..50 {
        let info = log.append(&make_batch(3, 0, Compression::None), 0).unwrap();
        assert!(!info.duplicate);
    }
    assert!(log.producers().is_empty());
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    log.close().unwrap();
    let (log, report) = PartitionLog::open(dir.path(), small_config(), true).unwrap();
    assert_eq!(report.producers, 0);
    assert_eq!(report.producer_batches_replayed, 0);
    assert_eq!(log.last_stable_offset(), 150);
}

#[test]
fn concurrent_read_committed_never_sees_undecided_or_unindexed_aborted_data() {
    // Every transaction is aborted: a reader that trusts the LSO and the aborted list must
    // find every transactional batch below the LSO listed as aborted.
    let dir = tempfile::tempdir().unwrap();
    let log = std::sync::Arc::new(open(dir.path(), LogConfig::default()));
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for i in 0..1500 {
                log.append(&pbatch(1, 0, i, 1, true), 0).unwrap();
                if i % 7 == 0 {
                    log.append(&make_batch(1, 0, Compression::None), 0).unwrap();
                }
                log.append_control(1, 0, false, 0, 0).unwrap();
            }
        })
    };
    let mut checked = 0;
    let mut seen = 0;
    while !writer.is_finished() || checked < log.last_stable_offset() {
        let lso = log.last_stable_offset();
        let aborted: std::collections::HashSet<i64> = log
            .aborted_transactions(checked, lso)
            .into_iter()
            .map(|(_, first)| first)
            .collect();
        while checked < lso {
            let bytes = log.read(checked, 1 << 16, lso).unwrap().bytes;
            assert!(!bytes.is_empty());
            for (_, h, _) in batch::Batches::new(&bytes) {
                assert!(h.last_offset() < lso);
                if h.producer_id == 1 && !h.is_control() {
                    assert!(
                        aborted.contains(&h.base_offset),
                        "offset {} below LSO {lso}",
                        h.base_offset
                    );
                    seen += 1;
                }
                checked = h.next_offset();
            }
        }
    }
    writer.join().unwrap();
    assert_eq!(seen, 1500);
}

/// Rough cost of producer state on the append path (run with `--ignored --nocapture`):
/// small batches without and with a producer id.
#[test]
#[ignore]
fn bench_small_appends_with_and_without_producer_ids() {
    let n = 200_000;
    for with_pid in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), LogConfig::default());
        let batches: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                if with_pid {
                    pbatch(i64::from(i % 8), 0, i / 8, 1, false)
                } else {
                    make_batch(1, 1_000, Compression::None)
                }
            })
            .collect();
        let mut seq_base = 0;
        let t = std::time::Instant::now();
        for i in 0..n {
            let b = &batches[i % 1000];
            if with_pid && i % 1000 == 0 && i > 0 {
                seq_base += 125;
            }
            if with_pid {
                // Patch the sequence in place so every producer stays in order.
                let mut b = b.clone();
                let seq = (i % 1000 / 8) as i32 + seq_base;
                b[POS_BASE_SEQUENCE..][..4].copy_from_slice(&seq.to_be_bytes());
                let crc = batch::compute_crc(&b);
                b[POS_CRC..][..4].copy_from_slice(&crc.to_be_bytes());
                log.append(&b, 0).unwrap();
            } else {
                log.append(b, 0).unwrap();
            }
        }
        let dt = t.elapsed().as_secs_f64();
        println!(
            "producer ids {with_pid}: {:.0} k appends/s ({:.2} us each)",
            n as f64 / dt / 1e3,
            dt * 1e6 / n as f64
        );
    }
}

#[test]
fn a_marker_lost_with_a_torn_tail_reopens_its_transaction_and_drops_its_index_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), LogConfig::default());
    log.append(&pbatch(4, 0, 0, 2, true), 0).unwrap(); // 0-1
    log.close().unwrap(); // snapshot at 2, the transaction open
    drop(log);
    let log = open(dir.path(), LogConfig::default());
    log.append_control(4, 0, false, 0, 0).unwrap(); // 2
    assert_eq!(log.aborted_transactions(0, 3), vec![(4, 0)]);
    drop(log);
    // The crash lost the marker's bytes (not yet on disk) but not its index entry.
    let seg = dir.path().join("00000000000000000000.log");
    let len = std::fs::metadata(&seg).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len - 5)
        .unwrap();
    let (log, report) = PartitionLog::open(dir.path(), LogConfig::default(), false).unwrap();
    assert!(report.bytes_truncated > 0);
    assert_eq!(log.log_end_offset(), 2);
    assert!(log.aborted_transactions(0, i64::MAX).is_empty());
    assert_eq!(log.last_stable_offset(), 0, "the transaction is open again");
    assert_eq!(log.producers()[0].current_txn_start_offset, 0);
    // The coordinator writes the marker again.
    log.append_control(4, 0, false, 0, 0).unwrap();
    assert_eq!(log.aborted_transactions(0, 3), vec![(4, 0)]);
    assert_eq!(log.last_stable_offset(), 3);
    let on_disk = txnindex::read(dir.path()).unwrap().unwrap();
    assert_eq!(on_disk.len(), 1);
    assert_eq!(on_disk[0].unwrap().last_offset, 2);
}
