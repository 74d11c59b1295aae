//! Opening a partition directory: find the segments, trust or rebuild their indexes,
//! recover the active segment after an unclean shutdown (CRC scan, cut the torn tail),
//! the durable log-start-offset file, and the producer state (snapshot + replay) with the
//! aborted-transaction index.
//!
//! Runs once, single-threaded, before the `PartitionLog` exists.

use super::batch::{self, BatchHeader};
use super::index::{IndexFile, OffsetIndex, TimeIndex, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use super::io::{sync_dir, Backend};
use super::producers::{self, AbortedTxn, ProducerState};
use super::segment::{file_name, Segment, NO_TIMESTAMP};
use super::snapshot;
use super::txnindex::{self, TxnIndexFile};
use super::{LogConfig, LogError, RecoveryReport};
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// Name of the file holding the log start offset (DeleteRecords), in the partition dir.
pub const LOG_START_OFFSET_FILE: &str = "log-start-offset";
const LOG_START_MAGIC: &[u8; 4] = b"KLS1";
const LOG_START_LEN: usize = 16;

pub(crate) struct Loaded {
    pub segments: Vec<Arc<Segment>>,
    pub log_start: i64,
    pub report: RecoveryReport,
}

fn storage(what: &str, path: &Path, e: impl std::fmt::Display) -> LogError {
    LogError::Storage(format!("{what} {}: {e}", path.display()))
}

/// Base offset of a segment data file name (`<20 digits>.log`).
fn parse_segment_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn load(
    dir: &Path,
    config: &LogConfig,
    clean: bool,
    backend: &dyn Backend,
) -> Result<Loaded, LogError> {
    let started = Instant::now();
    fs::create_dir_all(dir).map_err(|e| storage("create log dir", dir, e))?;
    let mut report = RecoveryReport {
        dir: dir.to_owned(),
        clean_shutdown: clean,
        ..Default::default()
    };

    let mut bases = Vec::new();
    let mut others = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| storage("list", dir, e))? {
        let entry = entry.map_err(|e| storage("list", dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match parse_segment_name(&name) {
            Some(base) => bases.push(base),
            None => others.push(name),
        }
    }
    bases.sort_unstable();
    // Indexes without a data file and temp files of an interrupted write are garbage.
    for name in others {
        let orphan_index = ["index", "timeindex"].iter().any(|ext| {
            name.strip_suffix(&format!(".{ext}"))
                .and_then(|stem| parse_segment_name(&format!("{stem}.log")))
                .is_some_and(|b| bases.binary_search(&b).is_err())
        });
        if orphan_index || name.ends_with(".tmp") {
            let p = dir.join(&name);
            tracing::warn!(path = %p.display(), "removing stray file");
            fs::remove_file(&p).map_err(|e| storage("remove", &p, e))?;
            report.files_removed += 1;
        }
    }

    let persisted_start = read_log_start(dir)?;
    let mut segments = Vec::with_capacity(bases.len().max(1));
    for (i, &base) in bases.iter().enumerate() {
        let seg = match bases.get(i + 1) {
            Some(&next) => open_sealed(dir, base, next, config, backend, &mut report)?,
            None => open_active(dir, base, config, clean, backend, &mut report)?,
        };
        segments.push(Arc::new(seg));
    }
    if segments.is_empty() {
        let base = persisted_start.unwrap_or(0).max(0);
        segments.push(Arc::new(create_segment(dir, base, config, backend)?));
    }

    let first_base = segments[0].base_offset;
    let active = segments.last().expect("non-empty").clone();
    let mut log_end = active.next_offset();
    let mut log_start = persisted_start.unwrap_or(first_base).max(first_base);
    if log_start > log_end {
        // The records the log start pointed into were lost (tail cut): start over there,
        // as Kafka's truncateFullyAndStartAt does.
        tracing::warn!(
            dir = %dir.display(), log_start, log_end,
            "log start offset is past the recovered log end; deleting all segments and restarting at the log start"
        );
        for seg in segments.drain(..) {
            seg.delete_files()
                .map_err(|e| storage("delete segment", &seg.log_path(), e))?;
        }
        segments.push(Arc::new(create_segment(dir, log_start, config, backend)?));
        log_end = log_start;
    } else {
        log_start = log_start.min(log_end);
    }
    let active = segments.last().expect("non-empty");
    active
        .activate(config.index_max_bytes)
        .map_err(|e| storage("map indexes of", &active.log_path(), e))?;
    // Whatever survived is made durable now, so the durable offset starts at the log end.
    active
        .sync()
        .map_err(|e| storage("fsync", &active.log_path(), e))?;
    sync_dir(dir).map_err(|e| storage("fsync dir", dir, e))?;

    report.segments_opened = segments.len();
    report.log_start_offset = log_start;
    report.log_end_offset = log_end;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Loaded {
        segments,
        log_start,
        report,
    })
}

fn create_segment(
    dir: &Path,
    base: i64,
    config: &LogConfig,
    backend: &dyn Backend,
) -> Result<Segment, LogError> {
    let seg = Segment::create(dir, base, backend, config.index_max_bytes)
        .map_err(|e| storage("create segment", &dir.join(file_name(base, "log")), e))?;
    sync_dir(dir).map_err(|e| storage("fsync dir", dir, e))?;
    Ok(seg)
}

/// Open a data file and load its two indexes as they are on disk (`None` per index when
/// missing or malformed, with the reason logged).
type OpenedFiles = (
    Box<dyn super::io::SegmentFile>,
    u64,
    Option<OffsetIndex>,
    Option<TimeIndex>,
);

fn open_files(dir: &Path, base: i64, backend: &dyn Backend) -> Result<OpenedFiles, LogError> {
    let log_path = dir.join(file_name(base, "log"));
    let file = backend
        .open(&log_path, false)
        .map_err(|e| storage("open", &log_path, e))?;
    let size = file.file_len().map_err(|e| storage("stat", &log_path, e))?;
    if size > u64::from(u32::MAX) {
        return Err(storage(
            "open",
            &log_path,
            format!("segment of {size} bytes exceeds the 4 GiB position limit"),
        ));
    }
    let load = |path: std::path::PathBuf, entry_size| -> Result<Option<IndexFile>, LogError> {
        match IndexFile::load(&path, entry_size).map_err(|e| storage("open index", &path, e))? {
            None => {
                tracing::warn!(path = %path.display(), "index missing; rebuilding");
                Ok(None)
            }
            Some(Err(why)) => {
                tracing::warn!(path = %path.display(), "index malformed ({why}); rebuilding");
                Ok(None)
            }
            Some(Ok(idx)) => Ok(Some(idx)),
        }
    };
    let offset_index = load(Segment::index_path(dir, base), OFFSET_ENTRY_SIZE)?.map(OffsetIndex);
    let time_index = load(Segment::time_index_path(dir, base), TIME_ENTRY_SIZE)?.map(TimeIndex);
    let offset_index = offset_index.and_then(|idx| match idx.sanity_check(size) {
        Ok(()) => Some(idx),
        Err(why) => {
            tracing::warn!(
                segment = base,
                "offset index inconsistent ({why}); rebuilding"
            );
            None
        }
    });
    let time_index = time_index.and_then(|idx| match idx.sanity_check() {
        Ok(()) => Some(idx),
        Err(why) => {
            tracing::warn!(
                segment = base,
                "time index inconsistent ({why}); rebuilding"
            );
            None
        }
    });
    Ok((file, size, offset_index, time_index))
}

fn fresh_indexes(
    dir: &Path,
    base: i64,
    config: &LogConfig,
) -> Result<(OffsetIndex, TimeIndex), LogError> {
    let p = Segment::index_path(dir, base);
    let oi = IndexFile::create(&p, OFFSET_ENTRY_SIZE, config.index_max_bytes)
        .map_err(|e| storage("create", &p, e))?;
    let p = Segment::time_index_path(dir, base);
    let ti = IndexFile::create(&p, TIME_ENTRY_SIZE, config.index_max_bytes)
        .map_err(|e| storage("create", &p, e))?;
    Ok((OffsetIndex(oi), TimeIndex(ti)))
}

/// A segment before the active one: fsynced and indexed when it was rolled. Its indexes
/// are trusted when they pass the sanity check, else rebuilt from the data.
fn open_sealed(
    dir: &Path,
    base: i64,
    next_base: i64,
    config: &LogConfig,
    backend: &dyn Backend,
    report: &mut RecoveryReport,
) -> Result<Segment, LogError> {
    let (file, size, oi, ti) = open_files(dir, base, backend)?;
    if let (Some(oi), Some(ti)) = (oi, ti) {
        let seg = Segment::assemble(dir, base, file, size, oi, ti);
        {
            let mut st = seg.state.write();
            st.next_offset = next_base;
            if let Some((ts, rel)) = st.time_index.last() {
                st.max_timestamp = ts;
                st.offset_of_max_timestamp = base + i64::from(rel);
            }
        }
        return Ok(seg);
    }
    let (oi, ti) = fresh_indexes(dir, base, config)?;
    let seg = Segment::assemble(dir, base, file, size, oi, ti);
    let end = rebuild(&seg, config, report)?;
    if end < size {
        // Data of a sealed segment is not cut: it was fsynced at roll, and cutting the
        // middle of the log would lose acknowledged records. Reads past `end` will fail.
        tracing::error!(
            segment = base,
            valid_bytes = end,
            size,
            "sealed segment has corrupt data; indexed up to the corruption"
        );
    }
    seg.state.write().next_offset = next_base;
    seg.seal()
        .map_err(|e| storage("seal", &seg.log_path(), e))?;
    report.indexes_rebuilt += 2;
    Ok(seg)
}

/// The last segment. After a clean shutdown its (trimmed) indexes are trusted and only the
/// batches after the last index entry are walked to find the end; otherwise, or when that
/// walk finds a bad tail, every batch is CRC-checked and a torn/corrupt tail cut off.
fn open_active(
    dir: &Path,
    base: i64,
    config: &LogConfig,
    clean: bool,
    backend: &dyn Backend,
    report: &mut RecoveryReport,
) -> Result<Segment, LogError> {
    let (file, size, oi, ti) = open_files(dir, base, backend)?;
    let file = match (clean, oi, ti) {
        (true, Some(oi), Some(ti)) => {
            let seg = Segment::assemble(dir, base, file, size, oi, ti);
            if tail_after_clean_shutdown(&seg, config)? {
                return Ok(seg);
            }
            tracing::warn!(
                segment = base,
                "clean shutdown recorded but the segment tail does not frame; recovering it"
            );
            seg.into_file()
        }
        (_, oi, ti) => {
            // Unmap before the index files are recreated.
            drop((oi, ti));
            file
        }
    };
    let (oi, ti) = fresh_indexes(dir, base, config)?;
    let seg = Segment::assemble(dir, base, file, size, oi, ti);
    let end = rebuild(&seg, config, report)?;
    report.segments_recovered += 1;
    report.indexes_rebuilt += 2;
    if end < size {
        tracing::warn!(
            segment = base,
            valid_bytes = end,
            truncated_bytes = size - end,
            "truncating torn or corrupt tail"
        );
        seg.file
            .set_len(end)
            .map_err(|e| storage("truncate", &seg.log_path(), e))?;
        seg.file
            .sync_data()
            .map_err(|e| storage("fsync", &seg.log_path(), e))?;
        seg.publish_size(end);
        report.bytes_truncated += size - end;
    }
    Ok(seg)
}

/// Scan every batch of `seg` (framing, magic, CRC, offsets increasing), rebuilding its
/// indexes and bookkeeping; returns the end of the valid prefix.
fn rebuild(
    seg: &Segment,
    config: &LogConfig,
    report: &mut RecoveryReport,
) -> Result<u64, LogError> {
    let mut st = seg.state.write();
    st.reset(seg.base_offset);
    let mut problem: Option<String> = None;
    let end = seg
        .scan(0, seg.size(), |pos, h, bytes| {
            if let Err(e) = batch::check(bytes) {
                problem = Some(e.to_string());
                return ControlFlow::Break(());
            }
            if h.base_offset < st.next_offset || h.last_offset_delta < 0 {
                problem = Some(format!(
                    "batch offsets [{}, {}] not after {}",
                    h.base_offset,
                    h.last_offset(),
                    st.next_offset
                ));
                return ControlFlow::Break(());
            }
            if st.created_ms.is_none() {
                st.created_ms = Some(h.max_timestamp);
            }
            st.on_batch(seg.base_offset, pos as u32, h, config.index_interval_bytes);
            report.batches_scanned += 1;
            ControlFlow::Continue(())
        })
        .map_err(|e| storage("scan", &seg.log_path(), e))?;
    if let Some(e) = end.error {
        problem = Some(e.to_string());
    }
    if let Some(why) = problem {
        tracing::warn!(
            segment = seg.base_offset,
            at_byte = end.pos,
            "log scan stopped: {why}"
        );
    }
    Ok(end.pos)
}

/// Finish loading an active segment whose indexes were trimmed at a clean close: walk the
/// batch headers after the last index entry for the next offset and max timestamp.
/// Returns false when the tail does not frame (the caller then recovers the segment).
fn tail_after_clean_shutdown(seg: &Segment, config: &LogConfig) -> Result<bool, LogError> {
    // Make room for appends before on_batch may add entries.
    seg.activate(config.index_max_bytes)
        .map_err(|e| storage("map indexes of", &seg.log_path(), e))?;
    let mut st = seg.state.write();
    let (from, from_offset) = st
        .offset_index
        .last()
        .map_or((0, seg.base_offset), |(rel, pos)| {
            (u64::from(pos), seg.base_offset + i64::from(rel))
        });
    if let Some((ts, rel)) = st.time_index.last() {
        st.max_timestamp = ts;
        st.offset_of_max_timestamp = seg.base_offset + i64::from(rel);
    }
    st.next_offset = from_offset;
    let mut bad = false;
    let mut first = from > 0;
    let end = seg
        .scan(from, seg.size(), |pos, h, _| {
            if h.magic != batch::MAGIC_V2
                || h.base_offset < st.next_offset
                || (first && h.base_offset != from_offset)
            {
                bad = true;
                return ControlFlow::Break(());
            }
            first = false;
            st.on_batch(seg.base_offset, pos as u32, h, config.index_interval_bytes);
            ControlFlow::Continue(())
        })
        .map_err(|e| storage("scan", &seg.log_path(), e))?;
    if bad || end.error.is_some() || end.pos != seg.size() {
        return Ok(false);
    }
    if seg.size() > 0 {
        let mut head = [0u8; batch::HEADER_LEN];
        let n = seg
            .file
            .read_at(&mut head, 0)
            .map_err(|e| storage("read", &seg.log_path(), e))?;
        st.created_ms = BatchHeader::parse(&head[..n]).map(|h| h.max_timestamp);
    }
    if st.max_timestamp == NO_TIMESTAMP && seg.size() > 0 {
        return Ok(false); // a non-empty sealed segment always has a final time index entry
    }
    Ok(true)
}

/// The persisted log start offset; `None` when absent or unreadable (logged).
pub(crate) fn read_log_start(dir: &Path) -> Result<Option<i64>, LogError> {
    let path = dir.join(LOG_START_OFFSET_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(storage("read", &path, e)),
    };
    if bytes.len() != LOG_START_LEN || &bytes[..4] != LOG_START_MAGIC {
        tracing::warn!(path = %path.display(), "log start offset file malformed; ignoring it");
        return Ok(None);
    }
    let crc = u32::from_be_bytes(bytes[12..16].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&bytes[..12]) {
        tracing::warn!(path = %path.display(), "log start offset file fails its CRC; ignoring it");
        return Ok(None);
    }
    Ok(Some(i64::from_be_bytes(
        bytes[4..12].try_into().expect("8 bytes"),
    )))
}

/// Persist the log start offset: write a temp file, fsync it, rename over the old one,
/// fsync the directory. A crash leaves either the old or the new value.
pub(crate) fn write_log_start(dir: &Path, offset: i64) -> io::Result<()> {
    let mut bytes = [0u8; LOG_START_LEN];
    bytes[..4].copy_from_slice(LOG_START_MAGIC);
    bytes[4..12].copy_from_slice(&offset.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[..12]);
    bytes[12..].copy_from_slice(&crc.to_be_bytes());
    let tmp = dir.join(format!("{LOG_START_OFFSET_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, dir.join(LOG_START_OFFSET_FILE))?;
    sync_dir(dir)
}

/// The producer state `open` rebuilt, with the files it keeps using.
pub(crate) struct ProducersLoaded {
    pub state: ProducerState,
    pub first_unstable: i64,
    pub aborted: Vec<AbortedTxn>,
    pub index: TxnIndexFile,
    pub snapshots: Vec<i64>,
}

/// Rebuild the producer state and the aborted-transaction index of a loaded log:
///
/// 1. Snapshots outside `[log_start, log_end]` are deleted (the log no longer holds what
///    follows them, or they predate the log start). The newest remaining one that decodes is
///    loaded; corrupt ones are deleted and counted, and the next older one is tried.
/// 2. Index entries below the snapshot's offset are kept (they were fsynced before the
///    snapshot was written); entries at or after it are dropped and re-derived. A missing
///    index or a damaged entry below the snapshot's offset discards the snapshot: everything
///    is then rebuilt from the log start.
/// 3. The batch headers from the snapshot's offset (or the log start) to the log end are
///    replayed, without validation (Kafka's replication origin); for control batches the
///    marker record's key and value are read to tell commit from abort.
/// 4. The index file is rewritten if it changed; a snapshot is written at the log end when
///    anything was replayed, so that the next open starts there.
pub(crate) fn load_producers(
    dir: &Path,
    segments: &[Arc<Segment>],
    log_start: i64,
    log_end: i64,
    report: &mut RecoveryReport,
) -> Result<ProducersLoaded, LogError> {
    let mut snaps = snapshot::list(dir).map_err(|e| storage("list", dir, e))?;
    let (mut usable, stale): (Vec<i64>, Vec<i64>) = snaps
        .drain(..)
        .partition(|o| (log_start..=log_end).contains(o));
    snapshot::delete(dir, stale).map_err(|e| storage("delete snapshots in", dir, e))?;

    let mut loaded: Option<(i64, ProducerState)> = None;
    while let Some(&offset) = usable.last() {
        let p = snapshot::path(dir, offset);
        match snapshot::read(dir, offset).map_err(|e| storage("read", &p, e))? {
            Ok(state) => {
                loaded = Some((offset, state));
                break;
            }
            Err(why) => {
                tracing::warn!(path = %p.display(), "producer state snapshot corrupt ({why}); ignoring it");
                snapshot::delete(dir, [offset]).map_err(|e| storage("delete", &p, e))?;
                report.snapshots_ignored += 1;
                usable.pop();
            }
        }
    }

    let index_path = txnindex::path(dir);
    let raw = txnindex::read(dir).map_err(|e| storage("read", &index_path, e))?;
    let mut aborted = Vec::new();
    if let Some((from, _)) = &loaded {
        let from = *from;
        let damaged = match &raw {
            None => Some("missing".to_string()),
            Some(entries) => {
                let mut prev = i64::MIN;
                let mut stop = entries.len();
                for (i, e) in entries.iter().enumerate() {
                    match e {
                        Some(t) if t.last_offset < from && t.last_offset > prev => {
                            prev = t.last_offset;
                            if t.last_offset >= log_start {
                                aborted.push(*t);
                            }
                        }
                        _ => {
                            stop = i;
                            break;
                        }
                    }
                }
                // A torn or stale tail is at or after the snapshot; a sound entry below it
                // after the stop means the stop was damage.
                entries[stop..]
                    .iter()
                    .flatten()
                    .any(|t| t.last_offset < from)
                    .then(|| format!("entry {stop} is damaged"))
            }
        };
        if let Some(why) = damaged {
            tracing::warn!(
                path = %index_path.display(),
                "aborted-transaction index {why}; rebuilding producer state from the log start"
            );
            report.txn_index_rebuilt = true;
            loaded = None;
            aborted.clear();
        }
    }
    let (from, mut state) = match loaded {
        Some((o, s)) => {
            report.producer_snapshot = Some(o);
            (o, s)
        }
        None => (log_start, ProducerState::default()),
    };

    let replayed = replay(segments, from, log_end, &mut state, &mut aborted)?;
    report.producer_batches_replayed = replayed;
    report.producers = state.len();

    let unchanged = raw.as_ref().is_some_and(|r| {
        r.len() == aborted.len() && r.iter().zip(&aborted).all(|(a, b)| a.as_ref() == Some(b))
    });
    let index = if unchanged {
        TxnIndexFile::open(dir)
    } else {
        TxnIndexFile::rewrite(dir, &aborted)
    }
    .map_err(|e| storage("open", &index_path, e))?;

    let mut snapshots = usable;
    if from < log_end {
        // Entries re-derived above may sit in the file unsynced (appended before a crash):
        // make them durable before a snapshot vouches for them.
        index.sync().map_err(|e| storage("fsync", &index_path, e))?;
        let p = snapshot::path(dir, log_end);
        snapshot::write_and_sync_dir(dir, log_end, &state).map_err(|e| storage("write", &p, e))?;
        if snapshots.last() != Some(&log_end) {
            snapshots.push(log_end);
        }
    }
    state.dirty = false;
    snapshot::prune(dir, &mut snapshots, log_start)
        .map_err(|e| storage("delete snapshots in", dir, e))?;
    Ok(ProducersLoaded {
        first_unstable: state.first_unstable_offset(),
        state,
        aborted,
        index,
        snapshots,
    })
}

/// Replay the stored batches with a producer id whose offsets reach `from` or beyond
/// (headers only, plus the marker record of control batches). Returns how many.
fn replay(
    segments: &[Arc<Segment>],
    from: i64,
    log_end: i64,
    state: &mut ProducerState,
    aborted: &mut Vec<AbortedTxn>,
) -> Result<u64, LogError> {
    let mut n = 0u64;
    if from >= log_end {
        return Ok(0);
    }
    for (i, seg) in segments.iter().enumerate() {
        let seg_end = segments.get(i + 1).map_or(log_end, |s| s.base_offset);
        if seg_end <= from {
            continue;
        }
        seg.scan(seg.position_for(from), seg.size(), |_, h, bytes| {
            if h.last_offset() < from || h.producer_id < 0 {
                return ControlFlow::Continue(());
            }
            n += 1;
            if !h.is_control() {
                state.replay_data(h);
                return ControlFlow::Continue(());
            }
            match producers::parse_marker(bytes) {
                Some((commit, coordinator_epoch)) => {
                    let done = state.end_txn(
                        h.producer_id,
                        h.producer_epoch,
                        coordinator_epoch,
                        commit,
                        h.base_offset,
                        h.max_timestamp,
                    );
                    aborted.extend(done);
                }
                None if h.record_count > 0 => tracing::warn!(
                    segment = seg.base_offset,
                    offset = h.base_offset,
                    "control batch without a readable transaction marker; ignored"
                ),
                None => {}
            }
            ControlFlow::Continue(())
        })
        .map_err(|e| storage("scan", &seg.log_path(), e))?;
    }
    Ok(n)
}
