//! Sparse, memory-mapped segment indexes: the offset index (`.index`) and the time index
//! (`.timeindex`). Layouts are in `docs/format.md`.
//!
//! Thread-safety: these types are not synchronized; a segment keeps them behind its
//! `RwLock` (writer appends under the write lock, readers search under the read lock).
//!
//! Files of the active segment are preallocated to `segment.index.bytes` and mapped whole;
//! the in-memory entry count says how much is used. On roll and close they are trimmed to
//! the used size, which is how a clean reopen knows the entry count (file length / entry size).

use memmap2::{MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// Map `len` bytes of `file` read-write. `None` for an empty length (nothing to map).
///
/// This is the only `unsafe` in the log. Mapping a file is unsafe because another process
/// or code path could truncate or rewrite the file while it is mapped (SIGBUS / data race).
/// That does not happen here: index files live in the partition directory, which this
/// process owns exclusively, and every resize (`set_len`) of an index file is done by
/// [`IndexFile`] only after it has dropped its mapping.
fn map_file(file: &File, len: usize) -> io::Result<Option<MmapMut>> {
    if len == 0 {
        return Ok(None);
    }
    // SAFETY: see the function documentation: exclusive ownership of the file and no
    // resize while mapped.
    let map = unsafe { MmapOptions::new().len(len).map_mut(file)? };
    Ok(Some(map))
}

/// A file of fixed-size entries, memory-mapped.
pub(crate) struct IndexFile {
    file: File,
    map: Option<MmapMut>,
    entry_size: usize,
    entries: usize,
    /// Entries the current mapping can hold.
    capacity: usize,
}

impl IndexFile {
    /// Create (or truncate) an empty index preallocated to `max_bytes`.
    pub fn create(path: &Path, entry_size: usize, max_bytes: u32) -> io::Result<IndexFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        let mut idx = IndexFile {
            file,
            map: None,
            entry_size,
            entries: 0,
            capacity: 0,
        };
        idx.resize(max_bytes)?;
        Ok(idx)
    }

    /// Open an existing index as it is on disk: entries = file length / entry size.
    /// `Ok(None)` when the file does not exist.
    pub fn load(path: &Path, entry_size: usize) -> io::Result<Option<Result<IndexFile, String>>> {
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len() as usize;
        if !len.is_multiple_of(entry_size) {
            return Ok(Some(Err(format!(
                "length {len} is not a multiple of {entry_size}"
            ))));
        }
        let map = map_file(&file, len)?;
        let entries = len / entry_size;
        Ok(Some(Ok(IndexFile {
            file,
            map,
            entry_size,
            entries,
            capacity: entries,
        })))
    }

    /// Remap with room for `max_bytes / entry_size` entries (never below the used entries).
    pub fn resize(&mut self, max_bytes: u32) -> io::Result<()> {
        let capacity = (max_bytes as usize / self.entry_size).max(self.entries);
        if capacity == self.capacity && (self.map.is_some() || capacity == 0) {
            return Ok(());
        }
        if let Some(map) = self.map.take() {
            map.flush()?;
        }
        let len = capacity * self.entry_size;
        self.file.set_len(len as u64)?;
        self.map = map_file(&self.file, len)?;
        self.capacity = capacity;
        Ok(())
    }

    /// Shrink the file to the used entries and make it durable (roll / close).
    pub fn trim_and_sync(&mut self) -> io::Result<()> {
        if let Some(map) = &self.map {
            map.flush()?;
        }
        let used = self.entries * self.entry_size;
        if self.capacity != self.entries {
            self.map = None;
            self.file.set_len(used as u64)?;
            self.map = map_file(&self.file, used)?;
            self.capacity = self.entries;
        }
        self.file.sync_all()
    }

    pub fn entries(&self) -> usize {
        self.entries
    }
    pub fn is_full(&self) -> bool {
        self.entries >= self.capacity
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn entry(&self, i: usize) -> &[u8] {
        debug_assert!(i < self.entries);
        let map = self.map.as_ref().expect("entries imply a mapping");
        &map[i * self.entry_size..(i + 1) * self.entry_size]
    }

    /// Append one entry; false (nothing written) when full.
    fn push(&mut self, entry: &[u8]) -> bool {
        assert_eq!(entry.len(), self.entry_size, "entry size");
        if self.is_full() {
            return false;
        }
        let at = self.entries * self.entry_size;
        let map = self.map.as_mut().expect("capacity implies a mapping");
        map[at..at + self.entry_size].copy_from_slice(entry);
        self.entries += 1;
        true
    }

    /// Forget all entries (rebuild). The bytes stay until overwritten; the count rules.
    fn clear(&mut self) {
        self.entries = 0;
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// `.index`: (relative offset u32 BE, file position u32 BE) for the first batch after every
/// `index.interval.bytes` of log; the offset is the batch's base offset.
pub(crate) struct OffsetIndex(pub(crate) IndexFile);

pub const OFFSET_ENTRY_SIZE: usize = 8;
pub const TIME_ENTRY_SIZE: usize = 12;

impl OffsetIndex {
    pub fn get(&self, i: usize) -> (u32, u32) {
        let e = self.0.entry(i);
        (u32_at(e, 0), u32_at(e, 4))
    }
    pub fn last(&self) -> Option<(u32, u32)> {
        self.0.entries().checked_sub(1).map(|i| self.get(i))
    }
    /// Largest entry whose relative offset is <= `rel`.
    pub fn lookup(&self, rel: u32) -> Option<(u32, u32)> {
        let n = self.0.entries();
        // partition_point over a virtual slice: first index whose offset > rel.
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).0 <= rel {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }
    pub fn append(&mut self, rel: u32, pos: u32) -> bool {
        let mut e = [0u8; OFFSET_ENTRY_SIZE];
        e[..4].copy_from_slice(&rel.to_be_bytes());
        e[4..].copy_from_slice(&pos.to_be_bytes());
        self.0.push(&e)
    }
    pub fn clear(&mut self) {
        self.0.clear()
    }
    pub fn is_full(&self) -> bool {
        self.0.is_full()
    }
    /// Entries strictly increasing in offset and position, positions inside the log.
    pub fn sanity_check(&self, log_size: u64) -> Result<(), String> {
        let mut prev: Option<(u32, u32)> = None;
        for i in 0..self.0.entries() {
            let (rel, pos) = self.get(i);
            if u64::from(pos) >= log_size {
                return Err(format!(
                    "entry {i} points at byte {pos} beyond the log size {log_size}"
                ));
            }
            if let Some((pr, pp)) = prev {
                if rel <= pr || pos <= pp {
                    return Err(format!("entry {i} ({rel}, {pos}) not after ({pr}, {pp})"));
                }
            }
            prev = Some((rel, pos));
        }
        Ok(())
    }
}

/// `.timeindex`: (max timestamp so far i64 BE, relative base offset u32 BE of the batch
/// that first reached it), appended when the segment's max timestamp has grown past the last
/// entry. One slot is always kept free for the final entry written on roll/close.
pub(crate) struct TimeIndex(pub(crate) IndexFile);

impl TimeIndex {
    pub fn get(&self, i: usize) -> (i64, u32) {
        let e = self.0.entry(i);
        (i64_at(e, 0), u32_at(e, 8))
    }
    pub fn last(&self) -> Option<(i64, u32)> {
        self.0.entries().checked_sub(1).map(|i| self.get(i))
    }
    /// Largest entry whose timestamp is strictly below `ts`: every record up to and including
    /// the batch at that entry's offset is older than `ts`.
    pub fn lookup_below(&self, ts: i64) -> Option<(i64, u32)> {
        let (mut lo, mut hi) = (0usize, self.0.entries());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).0 < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo.checked_sub(1).map(|i| self.get(i))
    }
    /// Append when `ts` is past the last entry. `final_entry` may use the reserved slot.
    pub fn maybe_append(&mut self, ts: i64, rel: u32, final_entry: bool) -> bool {
        if self.last().is_some_and(|(last, _)| ts <= last) {
            return false;
        }
        if !final_entry && self.is_full() {
            return false;
        }
        let mut e = [0u8; TIME_ENTRY_SIZE];
        e[..8].copy_from_slice(&ts.to_be_bytes());
        e[8..].copy_from_slice(&rel.to_be_bytes());
        self.0.push(&e)
    }
    pub fn clear(&mut self) {
        self.0.clear()
    }
    /// Full for ordinary entries (the last slot is reserved).
    pub fn is_full(&self) -> bool {
        self.0.entries() + 1 >= self.0.capacity()
    }
    /// Timestamps strictly increasing, offsets non-decreasing and below `next_rel` if known.
    pub fn sanity_check(&self) -> Result<(), String> {
        let mut prev: Option<(i64, u32)> = None;
        for i in 0..self.0.entries() {
            let (ts, rel) = self.get(i);
            if let Some((pt, pr)) = prev {
                if ts <= pt || rel < pr {
                    return Err(format!("entry {i} ({ts}, {rel}) not after ({pt}, {pr})"));
                }
            }
            prev = Some((ts, rel));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_trim_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.index");
        let mut idx = OffsetIndex(IndexFile::create(&p, OFFSET_ENTRY_SIZE, 80).unwrap());
        assert_eq!(idx.lookup(5), None);
        for i in 1..=10u32 {
            assert!(idx.append(i * 10, i * 1000));
        }
        assert!(idx.is_full());
        assert!(!idx.append(200, 20_000));
        assert_eq!(idx.lookup(9), None);
        assert_eq!(idx.lookup(10), Some((10, 1000)));
        assert_eq!(idx.lookup(55), Some((50, 5000)));
        assert_eq!(idx.lookup(1000), Some((100, 10_000)));
        idx.0.trim_and_sync().unwrap();
        drop(idx);
        let idx = OffsetIndex(
            IndexFile::load(&p, OFFSET_ENTRY_SIZE)
                .unwrap()
                .unwrap()
                .unwrap(),
        );
        assert_eq!(idx.0.entries(), 10);
        idx.sanity_check(10_001).unwrap();
        assert!(idx.sanity_check(10_000).is_err());
    }

    #[test]
    fn time_index_reserves_final_slot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.timeindex");
        let mut idx = TimeIndex(IndexFile::create(&p, TIME_ENTRY_SIZE, 36).unwrap());
        assert!(idx.maybe_append(100, 0, false));
        assert!(!idx.maybe_append(100, 1, false), "not past the last entry");
        assert!(idx.maybe_append(200, 5, false));
        assert!(idx.is_full());
        assert!(!idx.maybe_append(300, 9, false));
        assert!(idx.maybe_append(300, 9, true));
        assert_eq!(idx.lookup_below(100), None);
        assert_eq!(idx.lookup_below(101), Some((100, 0)));
        assert_eq!(idx.lookup_below(300), Some((200, 5)));
        assert_eq!(idx.last(), Some((300, 9)));
        idx.sanity_check().unwrap();
    }
}
