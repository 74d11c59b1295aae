//! Producer state snapshot files (`<20-digit offset>.snapshot`, format in `docs/format.md`):
//! every producer entry as of an offset, so that opening a log replays only the batches
//! after it. Written at roll, at clean close and after recovery; the newest few are kept.
//!
//! Plain functions over files; the caller (the partition's writer or `open`) serializes them.

use super::io::sync_dir;
use super::producers::{BatchMeta, ProducerEntry, ProducerState, NUM_BATCHES_TO_RETAIN};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub const SNAPSHOT_SUFFIX: &str = ".snapshot";
const MAGIC: &[u8; 4] = b"KPS1";
const HEADER: usize = 20;
const ENTRY_FIXED: usize = 31;
const BATCH_LEN: usize = 24;
/// Snapshots kept (newest first); older ones are deleted after a new one is written.
pub const SNAPSHOTS_KEPT: usize = 3;

pub fn path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}{SNAPSHOT_SUFFIX}"))
}

/// Offset of a snapshot file name, if it is one.
pub fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn list(dir: &Path) -> io::Result<Vec<i64>> {
    let mut v = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(o) = parse_name(&entry?.file_name().to_string_lossy()) {
            v.push(o);
        }
    }
    v.sort_unstable();
    Ok(v)
}

pub fn encode(offset: i64, state: &ProducerState) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER + state.len() * (ENTRY_FIXED + 2 * BATCH_LEN));
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(&[0; 4]); // CRC, below
    b.extend_from_slice(&offset.to_be_bytes());
    b.extend_from_slice(&(state.len() as u32).to_be_bytes());
    let mut entries: Vec<_> = state.entries().collect();
    entries.sort_unstable_by_key(|(id, _)| *id);
    for (id, e) in entries {
        b.extend_from_slice(&id.to_be_bytes());
        b.extend_from_slice(&e.epoch.to_be_bytes());
        b.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        b.extend_from_slice(&e.last_timestamp.to_be_bytes());
        b.extend_from_slice(&e.txn_first_offset.to_be_bytes());
        b.push(e.batches().len() as u8);
        for m in e.batches() {
            b.extend_from_slice(&m.last_seq.to_be_bytes());
            b.extend_from_slice(&m.offset_delta.to_be_bytes());
            b.extend_from_slice(&m.last_offset.to_be_bytes());
            b.extend_from_slice(&m.timestamp.to_be_bytes());
        }
    }
    let crc = crc32c::crc32c(&b[8..]);
    b[4..8].copy_from_slice(&crc.to_be_bytes());
    b
}

/// Decode a snapshot taken at `offset`; `Err(why)` when it is not exactly a sound one.
pub fn decode(bytes: &[u8], offset: i64) -> Result<ProducerState, String> {
    if bytes.len() < HEADER || &bytes[..4] != MAGIC {
        return Err("bad magic or too short".into());
    }
    let stored = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
    let computed = crc32c::crc32c(&bytes[8..]);
    if stored != computed {
        return Err(format!(
            "CRC mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let mut r = Cursor(&bytes[8..]);
    let at = r.i64()?;
    if at != offset {
        return Err(format!("holds offset {at}, named {offset}"));
    }
    let n = r.u32()?;
    let mut state = ProducerState::default();
    for _ in 0..n {
        let id = r.i64()?;
        let mut e = ProducerEntry::default();
        e.epoch = r.i16()?;
        e.coordinator_epoch = r.i32()?;
        e.last_timestamp = r.i64()?;
        e.txn_first_offset = r.i64()?;
        let batches = r.take(1)?[0] as usize;
        if id < 0 || batches > NUM_BATCHES_TO_RETAIN || state.get(id).is_some() {
            return Err(format!("bad entry for producer {id}"));
        }
        for _ in 0..batches {
            e.push_batch(BatchMeta {
                last_seq: r.i32()?,
                offset_delta: r.i32()?,
                last_offset: r.i64()?,
                timestamp: r.i64()?,
            });
        }
        state.load_entry(id, e);
    }
    if !r.0.is_empty() {
        return Err(format!("{} trailing bytes", r.0.len()));
    }
    Ok(state)
}

/// Write the snapshot of `state` at `offset` durably: temp file, fsync, rename. The caller
/// fsyncs the directory (roll and open do it anyway; see [`write_and_sync_dir`]).
pub fn write(dir: &Path, offset: i64, state: &ProducerState) -> io::Result<()> {
    let bytes = encode(offset, state);
    let dst = path(dir, offset);
    let tmp = dst.with_extension("snapshot.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &dst)
}

pub fn write_and_sync_dir(dir: &Path, offset: i64, state: &ProducerState) -> io::Result<()> {
    write(dir, offset, state)?;
    sync_dir(dir)
}

/// Read and decode the snapshot at `offset`: `Ok(Err(why))` when it is corrupt.
pub fn read(dir: &Path, offset: i64) -> io::Result<Result<ProducerState, String>> {
    let bytes = fs::read(path(dir, offset))?;
    Ok(decode(&bytes, offset))
}

/// Delete the snapshot files at these offsets (missing ones are fine).
pub fn delete(dir: &Path, offsets: impl IntoIterator<Item = i64>) -> io::Result<()> {
    for o in offsets {
        match fs::remove_file(path(dir, o)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Keep the newest [`SNAPSHOTS_KEPT`] of `offsets` (ascending) that are at or above
/// `log_start`; delete the rest, files and entries.
pub fn prune(dir: &Path, offsets: &mut Vec<i64>, log_start: i64) -> io::Result<()> {
    let below = offsets.partition_point(|o| *o < log_start);
    let excess = (offsets.len() - below).saturating_sub(SNAPSHOTS_KEPT);
    let n = below + excess;
    if n > 0 {
        delete(dir, offsets[..n].iter().copied())?;
        offsets.drain(..n);
    }
    Ok(())
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated".into());
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch::BatchHeader;

    fn header(pid: i64, seq: i32, base: i64, txn: bool) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: if txn {
                crate::log::ATTR_TRANSACTIONAL
            } else {
                0
            },
            last_offset_delta: 1,
            base_timestamp: 5,
            max_timestamp: 6,
            producer_id: pid,
            producer_epoch: 3,
            base_sequence: seq,
            record_count: 2,
        }
    }

    #[test]
    fn snapshots_round_trip_and_reject_every_damage() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.replay_data(&header(1, i * 2, i64::from(i) * 2, false));
        }
        s.replay_data(&header(2, 0, 20, true));
        s.end_txn(3, 1, 9, false, 30, 77);
        let bytes = encode(42, &s);
        let back = decode(&bytes, 42).unwrap();
        assert_eq!(encode(42, &back), bytes);
        assert_eq!(back.first_unstable_offset(), 20);
        assert_eq!(back.get(1).unwrap().batches().len(), NUM_BATCHES_TO_RETAIN);
        assert_eq!(back.infos(), s.infos());
        assert!(decode(&bytes, 41).is_err(), "offset must match the name");
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], 42).is_err());
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(decode(&b, 42).is_err(), "flip at {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, 42).is_err());
    }

    #[test]
    fn snapshot_names() {
        assert_eq!(parse_name("00000000000000000042.snapshot"), Some(42));
        assert_eq!(parse_name("42.snapshot"), None);
        assert_eq!(parse_name("00000000000000000042.snapshot.tmp"), None);
        assert_eq!(
            path(Path::new("/d"), 42),
            Path::new("/d/00000000000000000042.snapshot")
        );
    }
}
