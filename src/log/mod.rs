//! The partition commit log: segments of verbatim magic-v2 record batches with sparse
//! offset and time indexes, startup recovery, retention, DeleteRecords and group commit,
//! plus Kafka's per-partition producer state (idempotent and transactional producers:
//! sequence/epoch checks and deduplication, open transactions and the last stable offset,
//! the aborted-transaction index, transaction markers).
//! Knows no sockets and no API versions; the on-disk layout is in `docs/format.md`.
//!
//! # Concurrency contract
//!
//! * [`PartitionLog`] is `Send + Sync`; share it in an `Arc`.
//! * **Single writer**: `append`, roll, `delete_records_before`, `apply_retention`,
//!   `set_config` and `close` serialize on one internal mutex.
//! * **Readers** (`read`, `offset_for_timestamp`, `max_timestamp`, the offset getters,
//!   `last_stable_offset`, `aborted_transactions`) never take the writer mutex. They take
//!   the segment-list `RwLock` (write-locked only to add or drop a segment) and a segment's
//!   index `RwLock` (write-locked once per append for the index update) just long enough to
//!   clone an `Arc` or binary-search; file reads run with no lock held. A reader never sees bytes past the *published end*: the writer writes the
//!   bytes, updates the index, then publishes the segment size and the log end offset
//!   (Release); readers load them (Acquire) and read at most that far.
//! * `sync_through` / `sync` take neither the writer mutex nor a write lock: concurrent
//!   callers share one fdatasync (group commit) while appends go on.
//! * **Fail-stop**: after a failed write, fsync, roll or file deletion every later
//!   mutating call (and `sync_through`) returns [`LogError::Storage`] until the process
//!   reopens the log; a failed fsync is never retried. Reads keep serving published data;
//!   a read I/O error is reported as `Storage` without failing the partition.
//!
//! # Hot paths
//!
//! `append` = one CRC-32C pass over the request, one copy into a reusable buffer (to patch
//! baseOffset, partitionLeaderEpoch and, for LogAppendTime, maxTimestamp + CRC, re-hashing
//! only the 40 header bytes), one `pwrite`. `read` = one index binary search and normally one
//! `pread` into the buffer that becomes the returned `Bytes`. No per-record work on either.
//! Producer state costs nothing for batches without a producer id, and one `HashMap` lookup
//! (plus one insert after the write) per batch with one; `last_stable_offset` is three
//! atomic loads. `producers()` (DescribeProducers, rare) takes the writer mutex.
//!
//! # Producer state
//!
//! Owned by the writer (see `producers.rs`): for every producer id its epoch, last five
//! batches (epoch, sequence range, offsets) and open transaction. `append` checks every
//! batch with a producer id against it before anything is written (all-or-nothing with
//! offset assignment); `append_control` writes transaction markers. Persisted as snapshot
//! files (at roll, clean close and after recovery) and the aborted-transaction index file;
//! `open` loads the newest sound snapshot at or below the log end and replays the batch
//! headers after it (`recovery.rs`).

pub mod batch;
mod index;
pub mod io;
mod producers;
pub mod records;
mod recovery;
mod segment;
mod snapshot;
mod txnindex;

pub use batch::{
    BatchHeader, ATTR_COMPRESSION_MASK, ATTR_CONTROL, ATTR_DELETE_HORIZON, ATTR_LOG_APPEND_TIME,
    ATTR_TIMESTAMP_TYPE, ATTR_TRANSACTIONAL,
};
pub use producers::ProducerInfo;
pub use recovery::LOG_START_OFFSET_FILE;
pub use txnindex::TXN_INDEX_FILE;

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};
use producers::{AbortedTxn, ProducerState, Staged, Staging};
use segment::{Segment, NO_TIMESTAMP};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// How record timestamps are interpreted (topic config `message.timestamp.type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Per-partition log configuration (Kafka topic config names in the comments).
/// Plain data; thread-safe to clone and send.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// segment.bytes; clamped to 1..=2^31-1 so file positions fit the u32 index fields.
    pub segment_bytes: u64,
    /// segment.ms: roll when the active segment's first append is older than this.
    pub segment_ms: i64,
    /// index.interval.bytes: log bytes between offset (and time) index entries.
    pub index_interval_bytes: u32,
    /// segment.index.bytes: size of each preallocated index; roll when one is full.
    pub index_max_bytes: u32,
    /// max.message.bytes: largest batch accepted (per batch, as Kafka).
    pub max_message_bytes: u32,
    /// message.timestamp.type.
    pub timestamp_type: TimestampType,
    /// retention.ms; -1 = keep forever.
    pub retention_ms: i64,
    /// retention.bytes; -1 = unlimited.
    pub retention_bytes: i64,
    /// message.timestamp.after.max.ms: how far ahead of the broker clock a CreateTime
    /// batch's max timestamp may be.
    pub timestamp_after_max_ms: i64,
    /// message.timestamp.before.max.ms: how far behind the broker clock a CreateTime
    /// batch's base timestamp may be.
    pub timestamp_before_max_ms: i64,
    /// producer.id.expiration.ms (a broker config in Kafka): `apply_retention` forgets
    /// producers without an open transaction whose last timestamp is this much older than
    /// its clock. Negative: never.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            index_max_bytes: 10 * 1024 * 1024,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            timestamp_after_max_ms: 3_600_000,
            timestamp_before_max_ms: i64::MAX,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}

impl LogConfig {
    /// The config with every limit inside what the format can represent.
    fn normalized(mut self) -> Self {
        self.segment_bytes = self.segment_bytes.clamp(1, i32::MAX as u64);
        // At least 4 time index entries (the last one is reserved for roll/close).
        self.index_max_bytes = self.index_max_bytes.max(4 * index::TIME_ENTRY_SIZE as u32);
        self
    }
}

/// Errors of the log layer. The protocol layer maps them to Kafka error codes (noted per
/// variant) in its one error-mapping place.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Framing or CRC wrong (CORRUPT_MESSAGE).
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    /// Magic != 2, recordCount != lastOffsetDelta + 1, empty batch from a producer, control
    /// batch from a producer (INVALID_RECORD).
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A batch larger than max.message.bytes (MESSAGE_TOO_LARGE).
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    MessageTooLarge { size: usize, max: u32 },
    /// OFFSET_OUT_OF_RANGE; `start`/`end` are the log start and end offsets at the time.
    #[error("offset {offset} out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    /// A CreateTime timestamp outside message.timestamp.{before,after}.max.ms (INVALID_TIMESTAMP).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// I/O error (KAFKA_STORAGE_ERROR). After a write-side one the partition is failed.
    #[error("storage error: {0}")]
    Storage(String),
    /// A batch or marker whose producer epoch is older than the producer's current epoch
    /// (INVALID_PRODUCER_EPOCH).
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A sequence number that does not continue the producer's sequence, or a new epoch
    /// not starting at 0 (OUT_OF_ORDER_SEQUENCE_NUMBER).
    #[error("out of order sequence number: {0}")]
    OutOfOrderSequence(String),
    /// A non-transactional batch from a producer with an open transaction (INVALID_TXN_STATE).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker with an older coordinator epoch than the producer's last one
    /// (TRANSACTION_COORDINATOR_FENCED).
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
}

/// Result of a successful append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The LogAppendTime stamped on the batches, -1 for CreateTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// Records written (0 for a duplicate).
    pub record_count: i64,
    /// The request was a retry of batches already in the log (same producer id, epoch and
    /// sequence range as one of the producer's last 5 batches): nothing was written and the
    /// offsets are those of the original.
    pub duplicate: bool,
}

/// Result of a read: whole stored batches, verbatim.
#[derive(Clone, Debug)]
pub struct ReadResult {
    pub bytes: Bytes,
    pub high_watermark: i64,
    pub log_start_offset: i64,
}

/// What `open` found and repaired. `Display` is one line for the broker log.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    pub dir: PathBuf,
    pub clean_shutdown: bool,
    pub segments_opened: usize,
    /// Segments whose every batch was scanned and CRC-checked.
    pub segments_recovered: usize,
    pub batches_scanned: u64,
    /// Bytes cut off torn or corrupt tails.
    pub bytes_truncated: u64,
    /// Index files (offset or time) rebuilt from the log.
    pub indexes_rebuilt: usize,
    /// Stray files removed (orphan indexes, temp files).
    pub files_removed: usize,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub duration_ms: u64,
    /// Producers known after recovery.
    pub producers: usize,
    /// Offset of the producer state snapshot loaded, `None` when none was usable.
    pub producer_snapshot: Option<i64>,
    /// Corrupt snapshot files ignored (and deleted).
    pub snapshots_ignored: usize,
    /// Batches with a producer id replayed after the snapshot (or from the log start).
    pub producer_batches_replayed: u64,
    /// The aborted-transaction index was missing or damaged and rebuilt from the whole log.
    pub txn_index_rebuilt: bool,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "log {} opened after {}: {} segment(s), offsets [{}, {}); recovered {} segment(s) \
             ({} batches scanned, {} bytes truncated), rebuilt {} index file(s), removed {} stray file(s); \
             {} producer(s) from {} + {} batch(es) replayed, {} corrupt snapshot(s) ignored{} in {} ms",
            self.dir.display(),
            if self.clean_shutdown { "clean shutdown" } else { "unclean shutdown" },
            self.segments_opened,
            self.log_start_offset,
            self.log_end_offset,
            self.segments_recovered,
            self.batches_scanned,
            self.bytes_truncated,
            self.indexes_rebuilt,
            self.files_removed,
            self.producers,
            match self.producer_snapshot {
                Some(o) => format!("snapshot at {o}"),
                None => "no snapshot".to_string(),
            },
            self.producer_batches_replayed,
            self.snapshots_ignored,
            if self.txn_index_rebuilt { ", aborted-txn index rebuilt" } else { "" },
            self.duration_ms,
        )
    }
}

/// Result of one retention pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub new_log_start_offset: i64,
}

/// Writer-only state, behind `PartitionLog::writer`.
struct Writer {
    config: LogConfig,
    active: Arc<Segment>,
    /// The request copy that gets patched and written (reused across appends).
    scratch: Vec<u8>,
    validated: batch::Validated,
    closed: bool,
    producers: ProducerState,
    /// Producer states changed by the request being appended (reused across appends).
    staged: Vec<Staged>,
    txn_index: txnindex::TxnIndexFile,
    /// Offsets of the snapshot files on disk, ascending.
    snapshots: Vec<i64>,
}

/// A transaction marker being appended.
#[derive(Clone, Copy, Debug)]
struct Marker {
    producer_id: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
}

/// Keep the reusable append buffer from pinning a huge allocation forever.
const SCRATCH_KEEP_BYTES: usize = 8 << 20;

/// One partition's log. Thread-safe (`Send + Sync`); see the module docs for the contract.
pub struct PartitionLog {
    dir: PathBuf,
    backend: Arc<dyn io::Backend>,
    writer: Mutex<Writer>,
    /// Ordered by base offset; the last one is active. Never empty.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// What readers need of the config (the index interval).
    index_interval_bytes: std::sync::atomic::AtomicU32,
    leo: AtomicI64,
    log_start: AtomicI64,
    durable: AtomicI64,
    size_bytes: AtomicU64,
    failed: AtomicBool,
    failure: OnceLock<String>,
    /// True while one group-commit fsync runs; waiters sleep on `sync_done`.
    sync_running: Mutex<bool>,
    sync_done: Condvar,
    appended: tokio::sync::Notify,
    /// First offset of the oldest open transaction (`i64::MAX` when none). Lowered before
    /// the LEO that covers a new transaction is published, raised after the marker that
    /// ends it is.
    first_unstable: AtomicI64,
    /// Aborted transactions by marker offset (the in-memory aborted-transaction index).
    /// Written by the writer only.
    aborted: RwLock<Vec<AbortedTxn>>,
}

impl PartitionLog {
    /// Open or create the log in `dir`. `clean_shutdown` false => recover the active (last)
    /// segment: scan every batch, check framing and CRC, truncate a torn/corrupt tail,
    /// rebuild its indexes. Missing or inconsistent indexes of older segments are rebuilt
    /// in either case. Logs what it repaired.
    pub fn open(
        dir: &Path,
        config: LogConfig,
        clean_shutdown: bool,
    ) -> Result<(PartitionLog, RecoveryReport), LogError> {
        Self::open_with_backend(dir, config, clean_shutdown, io::default_backend())
    }

    /// [`PartitionLog::open`] with segment data files opened through `backend`
    /// (fault injection in tests).
    pub fn open_with_backend(
        dir: &Path,
        config: LogConfig,
        clean_shutdown: bool,
        backend: Arc<dyn io::Backend>,
    ) -> Result<(PartitionLog, RecoveryReport), LogError> {
        let config = config.normalized();
        let loaded = recovery::load(dir, &config, clean_shutdown, &*backend)?;
        let active = loaded
            .segments
            .last()
            .expect("load returns at least one segment")
            .clone();
        let leo = active.next_offset();
        let size: u64 = loaded.segments.iter().map(|s| s.size()).sum();
        let mut report = loaded.report;
        let started = std::time::Instant::now();
        let p =
            recovery::load_producers(dir, &loaded.segments, loaded.log_start, leo, &mut report)?;
        report.duration_ms += started.elapsed().as_millis() as u64;
        if report.bytes_truncated > 0
            || report.indexes_rebuilt > 0
            || report.files_removed > 0
            || report.snapshots_ignored > 0
            || report.txn_index_rebuilt
        {
            tracing::warn!("{report}");
        } else {
            tracing::info!("{report}");
        }
        let log = PartitionLog {
            dir: dir.to_owned(),
            backend,
            index_interval_bytes: config.index_interval_bytes.into(),
            writer: Mutex::new(Writer {
                config,
                active,
                scratch: Vec::new(),
                validated: batch::Validated::default(),
                closed: false,
                producers: p.state,
                staged: Vec::new(),
                txn_index: p.index,
                snapshots: p.snapshots,
            }),
            segments: RwLock::new(loaded.segments),
            leo: AtomicI64::new(leo),
            log_start: AtomicI64::new(loaded.log_start),
            // `load` fsynced the active segment: everything on disk is durable.
            durable: AtomicI64::new(leo),
            size_bytes: AtomicU64::new(size),
            failed: AtomicBool::new(false),
            failure: OnceLock::new(),
            sync_running: Mutex::new(false),
            sync_done: Condvar::new(),
            appended: tokio::sync::Notify::new(),
            first_unstable: AtomicI64::new(p.first_unstable),
            aborted: RwLock::new(p.aborted),
        };
        Ok((log, report))
    }

    /// Validate every batch in `records` (one or more concatenated v2 batches from a
    /// producer), assign offsets from the log end offset and write them with one write.
    /// Atomic: on a validation error nothing is written. Control batches are refused
    /// (INVALID_RECORD), as Kafka refuses them from clients.
    ///
    /// Batches with a producer id (>= 0) are also checked against the producer's state, as
    /// Kafka does for client appends: a base sequence < 0 is INVALID_RECORD; an epoch older
    /// than the producer's is `InvalidProducerEpoch`; a newer epoch must start at sequence 0
    /// (unless the producer has no state), the same epoch must continue at last sequence + 1
    /// (i32::MAX wraps to 0; a producer with no state may start anywhere), else
    /// `OutOfOrderSequence`; a non-transactional batch while the producer's transaction is
    /// open is `InvalidTxnState`. A transactional batch opens the producer's transaction at
    /// its base offset if none is open.
    ///
    /// Duplicates: when every batch of the request repeats (same epoch and sequence range)
    /// one of its producer's last 5 batches, nothing is written and the result has the
    /// original offsets (first batch's base, last batch's last) with `duplicate` set. A
    /// request mixing duplicates with new batches is refused with `OutOfOrderSequence`
    /// (clients send one batch per partition per request).
    pub fn append(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo, LogError> {
        self.append_inner(records, now_ms, None)
    }

    /// Append a transaction marker for `producer_id` (the transaction coordinator's
    /// WriteTxnMarkers): one control batch (attributes transactional|control, the producer
    /// id and epoch, base sequence -1, one record with key `[0i16, 0 abort | 1 commit]` and
    /// value `[0i16, coordinator_epoch i32]`, timestamp `now_ms`). It ends the producer's
    /// open transaction; an abort of a non-empty transaction is added to the
    /// aborted-transaction index. A marker for a producer without an open transaction is
    /// still written (Kafka does the same for retried markers).
    ///
    /// Errors: an epoch older than the producer's (`InvalidProducerEpoch`), a coordinator
    /// epoch older than its last marker's (`TransactionCoordinatorFenced`), and the usual
    /// storage errors.
    pub fn append_control(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        if producer_id < 0 {
            return Err(LogError::InvalidRecord(format!(
                "transaction marker for producer id {producer_id}"
            )));
        }
        let batch = producers::control_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            now_ms,
        );
        let marker = Marker {
            producer_id,
            epoch: producer_epoch,
            commit,
            coordinator_epoch,
        };
        self.append_inner(&batch, now_ms, Some(marker))
    }

    fn append_inner(
        &self,
        records: &[u8],
        now_ms: i64,
        marker: Option<Marker>,
    ) -> Result<AppendInfo, LogError> {
        let mut guard = self.writer.lock();
        self.check_writable(&guard)?;
        let w = &mut *guard;
        if records.len() > i32::MAX as usize {
            return Err(LogError::MessageTooLarge {
                size: records.len(),
                max: w.config.max_message_bytes,
            });
        }
        batch::validate_producer_records(
            records,
            w.config.max_message_bytes,
            marker.is_some(),
            &mut w.validated,
        )?;
        let log_append_time = w.config.timestamp_type == TimestampType::LogAppendTime;
        if marker.is_none() && !log_append_time {
            check_timestamps(&w.validated, &w.config, now_ms)?;
        }
        let base_offset = self.leo.load(Ordering::Relaxed); // the writer owns it
        w.staged.clear();
        if let Some(m) = &marker {
            w.producers
                .check_marker(m.producer_id, m.epoch, m.coordinator_epoch)?;
        } else if w.validated.batches.iter().any(|b| b.1.producer_id >= 0) {
            if log_append_time {
                // The producer state remembers the timestamps as stored.
                for b in w.validated.batches.iter_mut() {
                    b.1.max_timestamp = now_ms;
                }
            }
            let batches = w.validated.batches.iter().map(|b| &b.1);
            if let Staging::Duplicate {
                first_offset,
                last_offset,
                timestamp,
            } = w.producers.stage(batches, base_offset, &mut w.staged)?
            {
                return Ok(AppendInfo {
                    base_offset: first_offset,
                    last_offset,
                    log_append_time_ms: if log_append_time { timestamp } else { -1 },
                    log_start_offset: self.log_start_offset(),
                    record_count: 0,
                    duplicate: true,
                });
            }
        }
        let last_offset = base_offset + w.validated.offset_count - 1;
        if self.should_roll(w, records.len(), last_offset, now_ms) {
            self.roll(w, base_offset)?;
        }

        w.scratch.clear();
        w.scratch.extend_from_slice(records);
        let mut next = base_offset;
        for (pos, h, size) in w.validated.batches.iter_mut() {
            let b = &mut w.scratch[*pos..*pos + *size];
            batch::set_base_offset(b, next);
            batch::set_partition_leader_epoch(b, 0);
            if log_append_time {
                batch::set_log_append_time(b, now_ms);
                h.max_timestamp = now_ms;
                h.attributes |= ATTR_LOG_APPEND_TIME;
            }
            h.base_offset = next;
            h.partition_leader_epoch = 0;
            next = h.next_offset();
        }
        debug_assert_eq!(next, last_offset + 1);

        let seg = w.active.clone();
        let pos = seg.size();
        if let Err(e) = seg.file.write_all_at(&w.scratch, pos) {
            return Err(self.fail(format!(
                "write to {} at byte {pos}: {e}",
                seg.log_path().display()
            )));
        }
        // Producer state, before the new end is published: a reader that sees the new LEO
        // sees the transactions it opens and the aborts it indexes.
        let unstable_before = self.first_unstable.load(Ordering::Relaxed);
        if let Some(m) = marker {
            let aborted = w.producers.end_txn(
                m.producer_id,
                m.epoch,
                m.coordinator_epoch,
                m.commit,
                base_offset,
                now_ms,
            );
            if let Some(t) = aborted {
                if let Err(e) = w.txn_index.append(&t) {
                    return Err(self.fail(format!(
                        "append to {}: {e}",
                        txnindex::path(&self.dir).display()
                    )));
                }
                self.aborted.write().push(t);
            }
        } else if !w.staged.is_empty() {
            w.producers.commit(&w.staged);
        }
        let unstable_after = w.producers.first_unstable_offset();
        if unstable_after < unstable_before {
            self.first_unstable.store(unstable_after, Ordering::Release);
        }
        let interval = w.config.index_interval_bytes;
        {
            let mut st = seg.state.write();
            st.created_ms.get_or_insert(now_ms);
            for (p, h, _) in &w.validated.batches {
                st.on_batch(seg.base_offset, (pos + *p as u64) as u32, h, interval);
            }
            // Publish while the index lock is held: a reader that saw the new index
            // entries then loads a size that covers them.
            seg.publish_size(pos + records.len() as u64);
        }
        self.size_bytes
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.leo.store(next, Ordering::Release);
        // A transaction ends only once its marker is visible.
        if unstable_after > unstable_before {
            self.first_unstable.store(unstable_after, Ordering::Release);
        }
        let record_count = w.validated.record_count;
        if w.scratch.capacity() > SCRATCH_KEEP_BYTES {
            w.scratch = Vec::new();
        }
        drop(guard);
        self.appended.notify_waiters();
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: if log_append_time { now_ms } else { -1 },
            log_start_offset: self.log_start_offset(),
            record_count,
            duplicate: false,
        })
    }

    /// Kafka's roll conditions, checked before an append of `len` bytes ending at `last_offset`.
    fn should_roll(&self, w: &Writer, len: usize, last_offset: i64, now_ms: i64) -> bool {
        let seg = &w.active;
        let size = seg.size();
        if size == 0 {
            return false; // an empty segment takes anything, even a batch over segment.bytes
        }
        let st = seg.state.read();
        size + len as u64 > w.config.segment_bytes
            || st
                .created_ms
                .is_some_and(|t| now_ms - t > w.config.segment_ms)
            || st.offset_index.is_full()
            || st.time_index.is_full()
            || last_offset - seg.base_offset > i64::from(i32::MAX)
    }

    /// Seal the active segment (fsync, final time index entry, trim), snapshot the producer
    /// state at `base_offset` (== LEO) and start a new segment there. Writer only.
    fn roll(&self, w: &mut Writer, base_offset: i64) -> Result<(), LogError> {
        let old = w.active.clone();
        old.seal()
            .map_err(|e| self.fail(format!("seal segment {}: {e}", old.log_path().display())))?;
        self.snapshot_producers(w, base_offset, false)?;
        let seg = Segment::create(
            &self.dir,
            base_offset,
            &*self.backend,
            w.config.index_max_bytes,
        )
        .map_err(|e| {
            self.fail(format!(
                "create segment {base_offset} in {}: {e}",
                self.dir.display()
            ))
        })?;
        io::sync_dir(&self.dir)
            .map_err(|e| self.fail(format!("fsync dir {}: {e}", self.dir.display())))?;
        let seg = Arc::new(seg);
        self.segments.write().push(seg.clone());
        w.active = seg;
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(())
    }

    /// Write the producer state snapshot at `offset` (the LEO, every batch below it is
    /// durable): the aborted-transaction index is fsynced first, so that the snapshot vouches
    /// for every index entry below it. Prunes old snapshots. `sync_dir`: fsync the directory
    /// (roll does it itself right after). Writer only.
    fn snapshot_producers(
        &self,
        w: &mut Writer,
        offset: i64,
        sync_dir: bool,
    ) -> Result<(), LogError> {
        let dir = &self.dir;
        w.txn_index
            .sync()
            .map_err(|e| self.fail(format!("fsync {}: {e}", txnindex::path(dir).display())))?;
        let written = if sync_dir {
            snapshot::write_and_sync_dir(dir, offset, &w.producers)
        } else {
            snapshot::write(dir, offset, &w.producers)
        };
        written.map_err(|e| {
            self.fail(format!(
                "write {}: {e}",
                snapshot::path(dir, offset).display()
            ))
        })?;
        w.producers.dirty = false;
        if w.snapshots.last() != Some(&offset) {
            w.snapshots.push(offset);
        }
        snapshot::prune(dir, &mut w.snapshots, self.log_start_offset())
            .map_err(|e| self.fail(format!("delete old snapshots in {}: {e}", dir.display())))
    }

    /// After the log start moved: drop aborted transactions wholly below it (rewriting the
    /// index file) and snapshots below it. Writer only.
    fn trim_below_log_start(&self, w: &mut Writer) -> Result<(), LogError> {
        let start = self.log_start_offset();
        let n = self
            .aborted
            .read()
            .partition_point(|t| t.last_offset < start);
        if n > 0 {
            let kept = self.aborted.read()[n..].to_vec();
            w.txn_index = txnindex::TxnIndexFile::rewrite(&self.dir, &kept).map_err(|e| {
                self.fail(format!(
                    "rewrite {}: {e}",
                    txnindex::path(&self.dir).display()
                ))
            })?;
            self.aborted.write().drain(..n);
        }
        snapshot::prune(&self.dir, &mut w.snapshots, start).map_err(|e| {
            self.fail(format!(
                "delete old snapshots in {}: {e}",
                self.dir.display()
            ))
        })
    }

    /// The last stable offset: the first offset of the oldest open transaction, capped by
    /// the high watermark (and raised to the log start). Read-committed fetches read below
    /// it. Lock-free.
    pub fn last_stable_offset(&self) -> i64 {
        let hw = self.high_watermark();
        let unstable = self.first_unstable.load(Ordering::Acquire);
        unstable.max(self.log_start_offset()).min(hw)
    }

    /// The aborted transactions whose data overlaps `[from_offset, upper_offset)`, as
    /// (producer id, first offset), by marker offset: what a read-committed fetch from
    /// `from_offset` up to `upper_offset` (the LSO) returns (Kafka's `collectAbortedTxns`:
    /// marker at or after `from_offset`, first offset below `upper_offset`). Takes only a
    /// read lock.
    pub fn aborted_transactions(&self, from_offset: i64, upper_offset: i64) -> Vec<(i64, i64)> {
        producers::collect_aborted(&self.aborted.read(), from_offset, upper_offset)
    }

    /// Every producer the partition remembers (DescribeProducers), by producer id.
    pub fn producers(&self) -> Vec<ProducerInfo> {
        self.writer.lock().producers.infos()
    }

    /// Whole batches starting with the batch that contains `offset`, at most `max_bytes`
    /// except that the first batch is always whole (KIP-74), only batches whose last offset
    /// < `upper_offset`, all from one segment. `offset == LEO` -> empty;
    /// `offset < log start` or `> LEO` -> `OffsetOutOfRange`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_offset: i64,
    ) -> Result<ReadResult, LogError> {
        let leo = self.leo.load(Ordering::Acquire);
        let start = self.log_start.load(Ordering::Acquire);
        let result = |bytes| ReadResult {
            bytes,
            high_watermark: leo,
            log_start_offset: start,
        };
        // Never past the end published when this read started.
        let upper_offset = upper_offset.min(leo);
        if offset < start || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: leo,
            });
        }
        if offset == leo || offset >= upper_offset {
            return Ok(result(Bytes::new()));
        }
        let slack =
            self.index_interval_bytes.load(Ordering::Relaxed) as usize + 2 * batch::HEADER_LEN;
        let mut seg = self.segment_for(offset);
        while let Some(s) = seg {
            match s.read(offset, max_bytes, upper_offset, slack) {
                Ok(Some(bytes)) => return Ok(result(bytes)),
                Ok(None) => seg = self.segment_after(s.base_offset),
                Err(e) => return Err(LogError::Storage(e.to_string())),
            }
        }
        // Offsets below the first segment: retention removed them while we looked.
        let start = self.log_start.load(Ordering::Acquire);
        if offset < start {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: leo,
            });
        }
        Ok(result(Bytes::new()))
    }

    /// The segment whose base offset is the largest <= `offset`.
    fn segment_for(&self, offset: i64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.base_offset <= offset);
        i.checked_sub(1).map(|i| segs[i].clone())
    }

    fn segment_after(&self, base_offset: i64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let i = segs.partition_point(|s| s.base_offset <= base_offset);
        segs.get(i).cloned()
    }

    fn segments_snapshot(&self) -> Vec<Arc<Segment>> {
        self.segments.read().clone()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.leo.load(Ordering::Acquire)
    }
    /// == LEO (single replica).
    pub fn high_watermark(&self) -> i64 {
        self.log_end_offset()
    }
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }
    /// Bytes of all segment data files.
    pub fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Number of segments (the active one included).
    pub fn segment_count(&self) -> usize {
        self.segments.read().len()
    }
    /// Whether an I/O error has failed the partition (until reopen).
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// ListOffsets by timestamp: the first record (by offset, at or after log start) whose
    /// timestamp is >= `ts`, as (offset, timestamp). Skips segments by max timestamp, finds
    /// the batch with the time and offset indexes, decodes only that batch.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let start = self.log_start_offset();
        for seg in self.segments_snapshot() {
            let below = {
                let st = seg.state.read();
                if st.max_timestamp == NO_TIMESTAMP
                    || st.max_timestamp < ts
                    || st.next_offset <= start
                {
                    continue;
                }
                st.time_index
                    .lookup_below(ts)
                    .map(|(_, rel)| seg.base_offset + i64::from(rel))
            };
            // Both are positions of batches at or before the answer.
            let from = below
                .map_or(0, |o| seg.position_for(o))
                .max(seg.position_for(start));
            let mut found = Ok(None);
            seg.scan(from, seg.size(), |_, h, bytes| {
                if h.last_offset() < start || h.max_timestamp < ts {
                    return ControlFlow::Continue(());
                }
                found = first_record_matching(h, bytes, start, |t| t >= ts);
                match found {
                    Ok(None) => ControlFlow::Continue(()),
                    _ => ControlFlow::Break(()),
                }
            })
            .map_err(|e| LogError::Storage(e.to_string()))?;
            if let Some(hit) = found? {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: (offset, timestamp) of the first record with the largest
    /// timestamp; `None` when the log holds no batch. As in Kafka, segment max timestamps
    /// are not filtered by the log start offset.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let mut best: Option<(Arc<Segment>, i64, i64)> = None;
        for seg in self.segments_snapshot() {
            let (ts, off) = {
                let st = seg.state.read();
                (st.max_timestamp, st.offset_of_max_timestamp)
            };
            if ts != NO_TIMESTAMP && best.as_ref().is_none_or(|b| ts > b.1) {
                best = Some((seg, ts, off));
            }
        }
        let Some((seg, ts, off)) = best else {
            return Ok(None);
        };
        let batch = seg
            .find_batch(off)
            .map_err(|e| LogError::Storage(e.to_string()))?;
        if let Some((_, h, bytes)) = batch {
            if let Some(hit) = first_record_matching(&h, &bytes, i64::MIN, |t| t == ts)? {
                return Ok(Some(hit));
            }
        }
        Ok(Some((off, ts)))
    }

    /// DeleteRecords: move the log start to `offset` (<= HW, else `OffsetOutOfRange`),
    /// persist it durably, then delete the segments wholly below it. Returns the new low
    /// watermark (unchanged when `offset` is not past it).
    pub fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let mut w = self.writer.lock();
        self.check_writable(&w)?;
        let (start, hw) = (self.log_start_offset(), self.high_watermark());
        if offset < 0 || offset > hw {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start,
                end: hw,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        recovery::write_log_start(&self.dir, offset).map_err(|e| {
            self.fail(format!(
                "persist log start offset in {}: {e}",
                self.dir.display()
            ))
        })?;
        self.log_start.store(offset, Ordering::Release);
        let n = self.segments_below_log_start();
        self.delete_oldest(&mut w, n)?;
        self.trim_below_log_start(&mut w)?;
        tracing::info!(dir = %self.dir.display(), log_start_offset = offset, "records deleted");
        Ok(offset)
    }

    /// Leading non-active segments whose records are all below the log start offset.
    fn segments_below_log_start(&self) -> usize {
        let start = self.log_start_offset();
        let segs = self.segments.read();
        segs.windows(2)
            .take_while(|p| p[1].base_offset <= start)
            .count()
    }

    /// Drop the `n` oldest segments (never the active one). Writer only.
    fn delete_oldest(&self, _w: &mut Writer, n: usize) -> Result<(usize, u64), LogError> {
        if n == 0 {
            return Ok((0, 0));
        }
        let removed: Vec<Arc<Segment>> = {
            let segs = self.segments.read();
            let n = n.min(segs.len() - 1);
            // Advance the log start before the segments disappear, so that a reader never
            // finds an offset >= log start without a segment for it.
            let first_kept = segs[n].base_offset;
            self.log_start.fetch_max(first_kept, Ordering::AcqRel);
            drop(segs);
            self.segments.write().drain(..n).collect()
        };
        let mut bytes = 0;
        for seg in &removed {
            bytes += seg.size();
            seg.delete_files().map_err(|e| {
                self.fail(format!("delete segment {}: {e}", seg.log_path().display()))
            })?;
        }
        io::sync_dir(&self.dir)
            .map_err(|e| self.fail(format!("fsync dir {}: {e}", self.dir.display())))?;
        self.size_bytes.fetch_sub(bytes, Ordering::Relaxed);
        Ok((removed.len(), bytes))
    }

    /// Retention: delete, oldest first, non-active segments whose max timestamp is older
    /// than `retention.ms`, those that keep the rest above `retention.bytes`, and those wholly
    /// below the log start offset (Kafka semantics). Never the active segment. Then drops the
    /// aborted transactions and snapshots below the log start, and expires producers idle
    /// for `producer_id_expiration_ms` (with no open transaction).
    pub fn apply_retention(&self, now_ms: i64) -> Result<RetentionReport, LogError> {
        let mut w = self.writer.lock();
        self.check_writable(&w)?;
        let segs = self.segments_snapshot();
        let sealed = &segs[..segs.len() - 1];
        let by_time = if w.config.retention_ms < 0 {
            0
        } else {
            sealed
                .iter()
                .take_while(|s| {
                    let ts = s.state.read().max_timestamp;
                    let ts = if ts < 0 {
                        s.modified_ms().unwrap_or(now_ms)
                    } else {
                        ts
                    };
                    now_ms - ts > w.config.retention_ms
                })
                .count()
        };
        let by_size = if w.config.retention_bytes < 0 {
            0
        } else {
            let mut excess = self.size_bytes() as i64 - w.config.retention_bytes;
            sealed
                .iter()
                .take_while(|s| {
                    let size = s.size() as i64;
                    let delete = excess - size >= 0;
                    if delete {
                        excess -= size;
                    }
                    delete
                })
                .count()
        };
        let n = by_time.max(by_size).max(self.segments_below_log_start());
        let (segments_deleted, bytes_deleted) = self.delete_oldest(&mut w, n)?;
        self.trim_below_log_start(&mut w)?;
        if w.config.producer_id_expiration_ms >= 0 {
            let expiration = w.config.producer_id_expiration_ms;
            let expired = w.producers.expire(now_ms, expiration);
            if expired > 0 {
                tracing::debug!(dir = %self.dir.display(), expired, "expired producer ids");
            }
        }
        if segments_deleted > 0 {
            tracing::info!(
                dir = %self.dir.display(),
                segments_deleted, bytes_deleted, log_start_offset = self.log_start_offset(),
                "retention deleted segments"
            );
        }
        Ok(RetentionReport {
            segments_deleted,
            bytes_deleted,
            new_log_start_offset: self.log_start_offset(),
        })
    }

    /// Replace the config. Index sizes apply from the next segment on.
    pub fn set_config(&self, config: LogConfig) {
        let config = config.normalized();
        let mut w = self.writer.lock();
        self.index_interval_bytes
            .store(config.index_interval_bytes, Ordering::Relaxed);
        w.config = config;
    }

    pub fn config(&self) -> LogConfig {
        self.writer.lock().config.clone()
    }

    /// Returns once everything below `end_offset` is fsynced (group commit). A caller that
    /// finds the durable offset already there returns at once; otherwise one caller
    /// fdatasyncs everything appended so far while the others wait, then all re-check.
    /// Blocking: call it from `spawn_blocking`.
    pub fn sync_through(&self, end_offset: i64) -> Result<(), LogError> {
        // Nothing beyond the log end can become durable; do not wait for it.
        let end_offset = end_offset.min(self.log_end_offset());
        loop {
            if self.durable.load(Ordering::Acquire) >= end_offset {
                return Ok(());
            }
            self.check_failed()?;
            let mut running = self.sync_running.lock();
            if self.durable.load(Ordering::Acquire) >= end_offset {
                return Ok(());
            }
            if *running {
                self.sync_done.wait(&mut running);
                continue;
            }
            *running = true;
            drop(running);
            let result = self.sync_now();
            *self.sync_running.lock() = false;
            self.sync_done.notify_all();
            result?;
        }
    }

    /// One fdatasync of the active segment; sealed segments were fsynced when rolled.
    fn sync_now(&self) -> Result<(), LogError> {
        // LEO first, then the active segment: if a roll happened in between, the data
        // below `target` is in a segment that the roll already fsynced.
        let target = self.leo.load(Ordering::Acquire);
        let active = self.segments.read().last().expect("never empty").clone();
        active
            .sync()
            .map_err(|e| self.fail(format!("fdatasync {}: {e}", active.log_path().display())))?;
        self.check_failed()?;
        self.durable.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Sync everything appended so far.
    pub fn sync(&self) -> Result<(), LogError> {
        self.sync_through(self.log_end_offset())
    }

    /// Everything below this offset is on stable storage.
    pub fn durable_offset(&self) -> i64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Notified (`notify_waiters`) after every append. Long-poll callers: create
    /// `notified()`, pin it, `enable()` it, re-check the log end, then await.
    pub fn appended(&self) -> &tokio::sync::Notify {
        &self.appended
    }

    /// Clean close: fsync, final time index entry, indexes trimmed and fsynced, producer
    /// state snapshot at the LEO. Later appends fail; reads keep working. Idempotent.
    pub fn close(&self) -> Result<(), LogError> {
        let mut w = self.writer.lock();
        if w.closed {
            return Ok(());
        }
        self.check_failed()?;
        w.active.seal().map_err(|e| {
            self.fail(format!(
                "close segment {}: {e}",
                w.active.log_path().display()
            ))
        })?;
        self.durable
            .fetch_max(self.log_end_offset(), Ordering::AcqRel);
        let leo = self.log_end_offset();
        if w.producers.dirty || w.snapshots.last() != Some(&leo) {
            self.snapshot_producers(&mut w, leo, true)?;
        }
        w.closed = true;
        tracing::info!(dir = %self.dir.display(), log_end_offset = self.log_end_offset(), "log closed");
        Ok(())
    }

    fn check_failed(&self) -> Result<(), LogError> {
        if self.failed.load(Ordering::Acquire) {
            let why = self.failure.get().map_or("unknown", String::as_str);
            return Err(LogError::Storage(format!(
                "partition log failed earlier ({why}); reopen required"
            )));
        }
        Ok(())
    }

    fn check_writable(&self, w: &Writer) -> Result<(), LogError> {
        self.check_failed()?;
        if w.closed {
            return Err(LogError::Storage(format!(
                "log {} is closed",
                self.dir.display()
            )));
        }
        Ok(())
    }

    /// Fail-stop: remember the first I/O error; every later mutation returns Storage.
    fn fail(&self, what: String) -> LogError {
        let _ = self.failure.set(what.clone());
        self.failed.store(true, Ordering::Release);
        tracing::error!(dir = %self.dir.display(), "{what}; partition failed until reopen");
        LogError::Storage(what)
    }
}

/// Kafka's CreateTime bounds, checked on batch headers only (no record decoding):
/// the max timestamp against the future bound, the base timestamp against the past one.
fn check_timestamps(v: &batch::Validated, c: &LogConfig, now_ms: i64) -> Result<(), LogError> {
    for (_, h, _) in &v.batches {
        if h.max_timestamp > now_ms.saturating_add(c.timestamp_after_max_ms) {
            return Err(LogError::InvalidTimestamp(format!(
                "timestamp {} is more than message.timestamp.after.max.ms={} ahead of the broker time {now_ms}",
                h.max_timestamp, c.timestamp_after_max_ms
            )));
        }
        if h.base_timestamp >= 0
            && h.base_timestamp < now_ms.saturating_sub(c.timestamp_before_max_ms)
        {
            return Err(LogError::InvalidTimestamp(format!(
                "timestamp {} is more than message.timestamp.before.max.ms={} behind the broker time {now_ms}",
                h.base_timestamp, c.timestamp_before_max_ms
            )));
        }
    }
    Ok(())
}

/// First record of the stored batch `bytes` at or after `min_offset` whose timestamp
/// satisfies `pred`, as (offset, timestamp). LogAppendTime batches: every record carries
/// maxTimestamp, so no decoding.
fn first_record_matching(
    h: &BatchHeader,
    bytes: &[u8],
    min_offset: i64,
    pred: impl Fn(i64) -> bool,
) -> Result<Option<(i64, i64)>, LogError> {
    if h.timestamp_type() == TimestampType::LogAppendTime {
        return Ok(pred(h.max_timestamp).then(|| (h.base_offset.max(min_offset), h.max_timestamp)));
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let set = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).map_err(|e| {
        LogError::CorruptMessage(format!(
            "decoding stored batch at offset {}: {e}",
            h.base_offset
        ))
    })?;
    Ok(set
        .records
        .iter()
        .find(|r| r.offset >= min_offset && pred(r.timestamp))
        .map(|r| (r.offset, r.timestamp)))
}

#[cfg(test)]
mod producer_tests;
#[cfg(test)]
mod tests;
