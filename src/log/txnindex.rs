//! The aborted-transaction index file of a partition (`aborted.txnindex`, format in
//! `docs/format.md`): one fixed-size, CRC-protected entry per aborted transaction, in marker
//! order (so by last offset). Appended with the marker, not fsynced per append: everything
//! at or after the newest snapshot's offset is re-derived from the log on open.
//!
//! Used by the partition's single writer only.

use super::io::sync_dir;
use super::producers::AbortedTxn;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const TXN_INDEX_FILE: &str = "aborted.txnindex";
pub const ENTRY_SIZE: usize = 36;

pub fn path(dir: &Path) -> PathBuf {
    dir.join(TXN_INDEX_FILE)
}

pub fn encode(t: &AbortedTxn) -> [u8; ENTRY_SIZE] {
    let mut b = [0u8; ENTRY_SIZE];
    b[0..8].copy_from_slice(&t.producer_id.to_be_bytes());
    b[8..16].copy_from_slice(&t.first_offset.to_be_bytes());
    b[16..24].copy_from_slice(&t.last_offset.to_be_bytes());
    b[24..32].copy_from_slice(&t.last_stable_offset.to_be_bytes());
    let crc = crc32c::crc32c(&b[..32]);
    b[32..].copy_from_slice(&crc.to_be_bytes());
    b
}

/// One entry; `None` when its CRC fails.
pub fn decode(b: &[u8]) -> Option<AbortedTxn> {
    if b.len() != ENTRY_SIZE {
        return None;
    }
    let i64_at = |at: usize| i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let crc = u32::from_be_bytes(b[32..36].try_into().expect("4 bytes"));
    (crc == crc32c::crc32c(&b[..32])).then(|| AbortedTxn {
        producer_id: i64_at(0),
        first_offset: i64_at(8),
        last_offset: i64_at(16),
        last_stable_offset: i64_at(24),
    })
}

/// The entries on disk, `None` per entry whose CRC fails; a partial trailing entry is
/// dropped. `Ok(None)` when the file does not exist.
pub fn read(dir: &Path) -> io::Result<Option<Vec<Option<AbortedTxn>>>> {
    let bytes = match fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(bytes.chunks_exact(ENTRY_SIZE).map(decode).collect()))
}

/// The open index file, appended at its end.
pub struct TxnIndexFile {
    file: File,
    len: u64,
}

impl TxnIndexFile {
    /// Replace the file with exactly `entries`, durably (temp file, fsync, rename, fsync
    /// of the directory), and open it for appends. No entries: the file is just truncated
    /// (or created), without fsync: entries an old file may show again after a power loss
    /// are below the log start or at/after the newest snapshot, and both kinds are dropped
    /// on open (and the directory entry is made durable by the next snapshot's directory
    /// fsync). This keeps partitions that never abort a transaction free of extra fsyncs.
    pub fn rewrite(dir: &Path, entries: &[AbortedTxn]) -> io::Result<TxnIndexFile> {
        let dst = path(dir);
        if entries.is_empty() {
            File::create(&dst)?;
            return Self::open(dir);
        }
        let tmp = dir.join(format!("{TXN_INDEX_FILE}.tmp"));
        let mut bytes = Vec::with_capacity(entries.len() * ENTRY_SIZE);
        for t in entries {
            bytes.extend_from_slice(&encode(t));
        }
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, &dst)?;
        sync_dir(dir)?;
        Self::open(dir)
    }

    /// Open the existing file for appends after its last whole entry.
    pub fn open(dir: &Path) -> io::Result<TxnIndexFile> {
        let file = OpenOptions::new().read(true).write(true).open(path(dir))?;
        let len = file.metadata()?.len() / ENTRY_SIZE as u64 * ENTRY_SIZE as u64;
        Ok(TxnIndexFile { file, len })
    }

    pub fn append(&mut self, t: &AbortedTxn) -> io::Result<()> {
        self.file.write_all_at(&encode(t), self.len)?;
        self.len += ENTRY_SIZE as u64;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}
