//! The narrow file interface segment data goes through, so that torn writes and I/O
//! errors can be injected in unit tests. Indexes are memory-mapped and do not use it.
//!
//! Thread-safety: implementations are `Send + Sync`; positional reads may run concurrently
//! with each other and with the (single) writer.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// One segment data file, addressed by position (pread/pwrite), never by a shared cursor.
pub trait SegmentFile: Send + Sync {
    /// Fill `buf` from `pos`; returns the bytes read (short only at end of file).
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Up to `len` bytes from `pos` in a new buffer (short only at end of file).
    fn read_vec(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let n = self.read_at(&mut buf, pos)?;
        buf.truncate(n);
        Ok(buf)
    }
    /// Write all of `buf` at `pos`.
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()>;
    /// fdatasync: data and the size are durable when this returns Ok.
    fn sync_data(&self) -> io::Result<()>;
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Current length of the file in bytes.
    fn file_len(&self) -> io::Result<u64>;
}

/// Opens segment data files. The default is [`StdBackend`].
pub trait Backend: Send + Sync {
    /// Open `path` read-write, creating it (empty) when `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>>;
}

/// Plain files with pread/pwrite.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdBackend;

impl Backend for StdBackend {
    fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Box::new(StdFile(f)))
    }
}

struct StdFile(File);

impl SegmentFile for StdFile {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.0.read_at(&mut buf[done..], pos + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }
    /// pread straight into the vector's spare capacity: a fetch's buffer is not zeroed
    /// first (that cost as much as the copy itself).
    fn read_vec(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
        use std::os::fd::AsRawFd;
        let mut buf: Vec<u8> = Vec::with_capacity(len);
        let mut done = 0;
        while done < len {
            let at = libc::off_t::try_from(pos + done as u64)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            // SAFETY: the pointer and length stay inside the allocation of `len` bytes;
            // the kernel writes at most `len - done` bytes there.
            let n = unsafe {
                libc::pread(
                    self.0.as_raw_fd(),
                    buf.as_mut_ptr().add(done).cast(),
                    len - done,
                    at,
                )
            };
            match n {
                0 => break,
                n if n > 0 => done += n as usize,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        // SAFETY: the first `done` bytes were written by pread.
        unsafe { buf.set_len(done) };
        Ok(buf)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        self.0.write_all_at(buf, pos)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn file_len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

/// fsync a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub fn default_backend() -> Arc<dyn Backend> {
    Arc::new(StdBackend)
}

#[cfg(test)]
pub(crate) mod faults {
    //! A backend whose files fail or tear writes on command.
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    pub struct Faults {
        /// Every write fails.
        pub fail_writes: AtomicBool,
        /// Every fsync fails.
        pub fail_syncs: AtomicBool,
        /// When non-zero: the next write stores only this many bytes, then fails (torn write).
        pub tear_next_write_at: AtomicUsize,
    }

    pub struct FaultyBackend(pub Arc<Faults>);

    impl Backend for FaultyBackend {
        fn open(&self, path: &Path, create: bool) -> io::Result<Box<dyn SegmentFile>> {
            Ok(Box::new(FaultyFile {
                inner: StdBackend.open(path, create)?,
                faults: self.0.clone(),
            }))
        }
    }

    struct FaultyFile {
        inner: Box<dyn SegmentFile>,
        faults: Arc<Faults>,
    }

    fn injected() -> io::Error {
        io::Error::other("injected I/O error")
    }

    impl SegmentFile for FaultyFile {
        fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
            self.inner.read_at(buf, pos)
        }
        fn read_vec(&self, len: usize, pos: u64) -> io::Result<Vec<u8>> {
            self.inner.read_vec(len, pos)
        }
        fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
            if self.faults.fail_writes.load(Ordering::SeqCst) {
                return Err(injected());
            }
            let tear = self.faults.tear_next_write_at.swap(0, Ordering::SeqCst);
            if tear > 0 {
                self.inner.write_all_at(&buf[..tear.min(buf.len())], pos)?;
                return Err(injected());
            }
            self.inner.write_all_at(buf, pos)
        }
        fn sync_data(&self) -> io::Result<()> {
            if self.faults.fail_syncs.load(Ordering::SeqCst) {
                return Err(injected());
            }
            self.inner.sync_data()
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.inner.set_len(len)
        }
        fn file_len(&self) -> io::Result<u64> {
            self.inner.file_len()
        }
    }
}
