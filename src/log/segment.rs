//! One segment: a `.log` data file plus its `.index` and `.timeindex`.
//!
//! Thread-safety: `Segment` is `Send + Sync`. The data file is written only by the
//! partition's single writer, at the end, and `size` is published (Release) after the bytes
//! and the index entries for them are in place; readers load `size` (Acquire) after their
//! index lookup and never read past it. Index entries and timestamp bookkeeping live in
//! `state` behind a `RwLock` held only for an index update or a binary search.

use super::batch::{self, BatchHeader, FrameError, HEADER_LEN};
use super::index::{IndexFile, OffsetIndex, TimeIndex, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use super::io::{Backend, SegmentFile};
use parking_lot::RwLock;
use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// No batch seen yet (distinct from -1, which producers use for "no timestamp").
pub(crate) const NO_TIMESTAMP: i64 = i64::MIN;

const MIN_BATCH_LENGTH: i32 = (HEADER_LEN - batch::LOG_OVERHEAD) as i32;

/// Chunk size for sequential scans (recovery, index rebuild, timestamp search).
const SCAN_CHUNK_BYTES: usize = 1 << 20;

pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// Index and timestamp bookkeeping of a segment, guarded by `Segment::state`.
pub(crate) struct SegState {
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// One past the last offset stored in this segment (== base offset when empty).
    pub next_offset: i64,
    /// Largest batch maxTimestamp in the segment; `NO_TIMESTAMP` when empty/unknown.
    pub max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// Log bytes appended since the last offset index entry.
    pub bytes_since_index: u64,
    /// When the segment got its first append (for `segment.ms`); reloaded segments use
    /// their first batch's maxTimestamp, as Kafka does.
    pub created_ms: Option<i64>,
}

impl SegState {
    /// Account for one stored batch at `pos` (same rule on append and on rebuild, so a
    /// rebuilt index equals the original): an offset index entry for the first batch after
    /// every `interval` bytes, and a time index entry at the same moment when the max
    /// timestamp has grown.
    pub fn on_batch(&mut self, base_offset: i64, pos: u32, h: &BatchHeader, interval: u32) {
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
            self.offset_of_max_timestamp = h.base_offset;
        }
        if self.bytes_since_index > u64::from(interval) {
            let rel = (h.base_offset - base_offset) as u32;
            self.offset_index.append(rel, pos);
            let rel_max = (self.offset_of_max_timestamp - base_offset) as u32;
            self.time_index
                .maybe_append(self.max_timestamp, rel_max, false);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        self.next_offset = h.next_offset();
    }

    /// Forget all index entries and bookkeeping (before a rebuild).
    pub fn reset(&mut self, base_offset: i64) {
        self.offset_index.clear();
        self.time_index.clear();
        self.next_offset = base_offset;
        self.max_timestamp = NO_TIMESTAMP;
        self.offset_of_max_timestamp = base_offset;
        self.bytes_since_index = 0;
        self.created_ms = None;
    }
}

pub(crate) struct Segment {
    pub base_offset: i64,
    pub dir: PathBuf,
    pub file: Box<dyn SegmentFile>,
    /// Published size in bytes: everything below is whole, validated batches.
    size: AtomicU64,
    pub state: RwLock<SegState>,
}

/// Where a scan stopped.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// Position after the last whole batch visited (or where the callback stopped).
    pub pos: u64,
    /// Set when the bytes at `pos` do not frame (torn or corrupt); `None` at the end or on break.
    pub error: Option<FrameError>,
}

impl Segment {
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, "log"))
    }
    pub fn index_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(file_name(base, "index"))
    }
    pub fn time_index_path(dir: &Path, base: i64) -> PathBuf {
        dir.join(file_name(base, "timeindex"))
    }

    /// A new, empty segment with preallocated indexes (any old files of that name are replaced).
    pub fn create(
        dir: &Path,
        base_offset: i64,
        backend: &dyn Backend,
        index_max_bytes: u32,
    ) -> io::Result<Segment> {
        let file = backend.open(&dir.join(file_name(base_offset, "log")), true)?;
        file.set_len(0)?;
        let offset_index = OffsetIndex(IndexFile::create(
            &Self::index_path(dir, base_offset),
            OFFSET_ENTRY_SIZE,
            index_max_bytes,
        )?);
        let time_index = TimeIndex(IndexFile::create(
            &Self::time_index_path(dir, base_offset),
            TIME_ENTRY_SIZE,
            index_max_bytes,
        )?);
        Ok(Segment::assemble(
            dir,
            base_offset,
            file,
            0,
            offset_index,
            time_index,
        ))
    }

    pub fn assemble(
        dir: &Path,
        base_offset: i64,
        file: Box<dyn SegmentFile>,
        size: u64,
        offset_index: OffsetIndex,
        time_index: TimeIndex,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_owned(),
            file,
            size: AtomicU64::new(size),
            state: RwLock::new(SegState {
                offset_index,
                time_index,
                next_offset: base_offset,
                max_timestamp: NO_TIMESTAMP,
                offset_of_max_timestamp: base_offset,
                bytes_since_index: 0,
                created_ms: None,
            }),
        }
    }

    /// Take the data file back, dropping (unmapping) the indexes.
    pub fn into_file(self) -> Box<dyn SegmentFile> {
        let Segment { file, state, .. } = self;
        drop(state);
        file
    }

    /// Published size (Acquire): bytes below it are whole batches.
    pub fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }
    /// Publish a new size. Writer only, after the bytes and their index entries are in place.
    pub fn publish_size(&self, size: u64) {
        self.size.store(size, Ordering::Release)
    }

    pub fn next_offset(&self) -> i64 {
        self.state.read().next_offset
    }

    /// Position of the batch to start from when looking for `offset`: the offset index
    /// entry at or below it, else the start of the file.
    pub fn position_for(&self, offset: i64) -> u64 {
        if offset <= self.base_offset {
            return 0;
        }
        let rel = (offset - self.base_offset).min(i64::from(u32::MAX)) as u32;
        self.state
            .read()
            .offset_index
            .lookup(rel)
            .map_or(0, |(_, pos)| u64::from(pos))
    }

    /// Whole batches starting with the one holding `offset`, within `max_bytes` except the
    /// first, and with last offset < `upper_offset`. `Ok(None)` when no batch of this
    /// segment holds `offset` or anything after it (look in the next segment).
    /// Normally one pread; a second only when the first batch outgrows the first read.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_offset: i64,
        slack: usize,
    ) -> io::Result<Option<bytes::Bytes>> {
        let mut pos0 = self.position_for(offset);
        // Size after the index lookup: index entries never point past a published size.
        let end = self.size();
        if pos0 >= end {
            return Ok(None);
        }
        let span = slack.saturating_add(max_bytes.max(HEADER_LEN));
        let mut buf = self.read_chunk(pos0, (end - pos0).min(span as u64) as usize)?;
        // Locate the batch that holds `offset` (rarely outside the first chunk).
        let mut cur = 0usize;
        let first = loop {
            if pos0 + cur as u64 >= end {
                return Ok(None);
            }
            if cur >= buf.len() || buf.len() - cur < HEADER_LEN {
                // The next header is not in the chunk: read on from there.
                pos0 += cur as u64;
                cur = 0;
                let want = (end - pos0).min(span as u64) as usize;
                if want < HEADER_LEN {
                    return Err(corrupt(
                        self,
                        pos0,
                        FrameError::Incomplete {
                            needed: HEADER_LEN,
                            available: want,
                        },
                    ));
                }
                buf = self.read_chunk(pos0, want)?;
                continue;
            }
            let h = BatchHeader::parse(&buf[cur..]).expect("header length checked");
            if h.batch_length < MIN_BATCH_LENGTH {
                return Err(corrupt(
                    self,
                    pos0 + cur as u64,
                    FrameError::BadLength(h.batch_length),
                ));
            }
            if h.last_offset() >= offset {
                break h;
            }
            cur += h.size();
        };
        if first.last_offset() >= upper_offset {
            return Ok(Some(bytes::Bytes::new()));
        }
        // Extent: the first batch whole, then whole batches while they fit.
        let start = cur;
        let mut stop = cur + first.size();
        if pos0 + stop as u64 > end {
            return Err(corrupt(
                self,
                pos0 + cur as u64,
                FrameError::Incomplete {
                    needed: first.size(),
                    available: (end - pos0) as usize - cur,
                },
            ));
        }
        while stop < buf.len() {
            let Some(h) = BatchHeader::parse(&buf[stop..]) else {
                break;
            };
            let size = h.size();
            if h.batch_length < MIN_BATCH_LENGTH
                || (stop + size - start) > max_bytes
                || stop + size > buf.len()
                || h.last_offset() >= upper_offset
            {
                break;
            }
            stop += size;
        }
        if stop > buf.len() {
            // The first batch is larger than what we read: fetch the rest of it.
            let have = buf.len();
            buf.resize(stop, 0);
            let n = self.file.read_at(&mut buf[have..], pos0 + have as u64)?;
            if n < stop - have {
                return Err(short_read(self, pos0 + have as u64));
            }
        }
        Ok(Some(bytes::Bytes::from(buf).slice(start..stop)))
    }

    /// Exactly `len` bytes at `pos` (all below the published size).
    fn read_chunk(&self, pos: u64, len: usize) -> io::Result<Vec<u8>> {
        let buf = self.file.read_vec(len, pos)?;
        if buf.len() < len {
            return Err(short_read(self, pos + buf.len() as u64));
        }
        Ok(buf)
    }

    /// Visit whole batches in `[from, end)` in order with their bytes; stops at the first
    /// bytes that do not frame (reported in `ScanEnd::error`) or when `f` breaks.
    /// Reads in chunks; a batch larger than a chunk is read whole.
    pub fn scan(
        &self,
        from: u64,
        end: u64,
        mut f: impl FnMut(u64, &BatchHeader, &[u8]) -> ControlFlow<()>,
    ) -> io::Result<ScanEnd> {
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = from;
        let mut need = SCAN_CHUNK_BYTES;
        while pos < end {
            let want = (need.max(SCAN_CHUNK_BYTES) as u64).min(end - pos) as usize;
            need = SCAN_CHUNK_BYTES;
            buf.resize(want, 0);
            let n = self.file.read_at(&mut buf, pos)?;
            buf.truncate(n);
            let mut cur = 0usize;
            loop {
                match batch::frame(&buf[cur..]) {
                    Ok((h, size)) => {
                        if f(pos + cur as u64, &h, &buf[cur..cur + size]).is_break() {
                            return Ok(ScanEnd {
                                pos: pos + cur as u64,
                                error: None,
                            });
                        }
                        cur += size;
                        if cur == buf.len() {
                            break;
                        }
                    }
                    Err(FrameError::Incomplete { needed, .. }) => {
                        if pos + cur as u64 + needed as u64 > end || (cur == 0 && n < want) {
                            return Ok(ScanEnd {
                                pos: pos + cur as u64,
                                error: Some(FrameError::Incomplete {
                                    needed,
                                    available: (end - pos) as usize - cur,
                                }),
                            });
                        }
                        need = needed;
                        break;
                    }
                    Err(e) => {
                        return Ok(ScanEnd {
                            pos: pos + cur as u64,
                            error: Some(e),
                        })
                    }
                }
            }
            pos += cur as u64;
        }
        Ok(ScanEnd { pos, error: None })
    }

    /// The batch whose offsets include `offset`, as (position, header, bytes), scanning
    /// from the offset index entry below it.
    pub fn find_batch(&self, offset: i64) -> io::Result<Option<(u64, BatchHeader, Vec<u8>)>> {
        let mut found = None;
        self.scan(self.position_for(offset), self.size(), |pos, h, bytes| {
            if h.last_offset() >= offset {
                found = Some((pos, *h, bytes.to_vec()));
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        Ok(found)
    }

    /// Make the segment's data durable (fdatasync).
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The segment stops being active: data fsynced, final time index entry, indexes
    /// trimmed to their used size and fsynced. After this, a reopen trusts the indexes.
    pub fn seal(&self) -> io::Result<()> {
        self.file.sync_data()?;
        let mut st = self.state.write();
        if st.max_timestamp != NO_TIMESTAMP {
            let (ts, rel) = (
                st.max_timestamp,
                (st.offset_of_max_timestamp - self.base_offset) as u32,
            );
            st.time_index.maybe_append(ts, rel, true);
        }
        st.offset_index.0.trim_and_sync()?;
        st.time_index.0.trim_and_sync()
    }

    /// Reopen the indexes for appends (preallocated to `index_max_bytes`).
    pub fn activate(&self, index_max_bytes: u32) -> io::Result<()> {
        let mut st = self.state.write();
        st.offset_index.0.resize(index_max_bytes)?;
        st.time_index.0.resize(index_max_bytes)
    }

    /// Remove the files. Readers holding this segment keep reading from the open file.
    pub fn delete_files(&self) -> io::Result<()> {
        for p in [
            self.log_path(),
            Self::index_path(&self.dir, self.base_offset),
            Self::time_index_path(&self.dir, self.base_offset),
        ] {
            match std::fs::remove_file(&p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Modification time of the data file in ms (retention fallback when no timestamps).
    pub fn modified_ms(&self) -> Option<i64> {
        let m = std::fs::metadata(self.log_path()).ok()?.modified().ok()?;
        Some(m.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as i64)
    }
}

fn corrupt(seg: &Segment, pos: u64, e: FrameError) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "segment {} corrupt at byte {pos}: {e}",
            seg.log_path().display()
        ),
    )
}

fn short_read(seg: &Segment, pos: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!(
            "segment {} shorter than its published size (at byte {pos})",
            seg.log_path().display()
        ),
    )
}
