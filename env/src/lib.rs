//! The Env boundary of OmenDB, as a crate of its own: the traits through which a program
//! reaches the operating system (the file system [`Fs`] and [`File`], time [`Clock`],
//! background work [`Spawn`] and [`Worker`]), their production implementation [`OsEnv`]
//! on std, and coverage [`probe`]s. It depends on std and libc only, so a simulated disk
//! (`omendb-faults`) or another program's simulator can implement these traits without
//! taking the database engine, Arrow or Parquet.
//!
//! A program that wants to be simulated routes every nondeterministic call through these
//! traits; a simulator then plugs in an in-memory disk with a fault model, a virtual
//! clock and a spawner whose workers it steps itself. (In OmenDB a test,
//! `tests/env_boundary.rs`, greps the engine for calls around them.)
//!
//! Crash semantics a program may rely on, and which a simulated disk must model:
//! - nothing written to a [`File`] is durable until [`File::sync`] returns `Ok`;
//! - a created, renamed or removed directory entry is durable only after
//!   [`Fs::sync_dir`] on its parent returns `Ok`;
//! - after a failed `sync`, the data it covered must be treated as lost (the PostgreSQL
//!   fsync lesson): the engine never acknowledges it and never retries the sync as if
//!   nothing happened.

mod os;
pub mod probe;

pub use os::{Mapping, OsEnv};

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How a file is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Read only; the file must exist.
    Read,
    /// Read and write; the file must exist.
    ReadWrite,
    /// Read and write; created empty if missing, kept as it is if present.
    Create,
    /// Read and write; must not exist yet (`ErrorKind::AlreadyExists` otherwise).
    CreateNew,
}

/// An open file. All offsets are absolute; there is no cursor, so a file may be shared.
#[allow(clippy::len_without_is_empty)] // a file length is a size, not a collection
pub trait File: Send + Sync {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at or past
    /// the end).
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed. On error, any prefix
    /// of `buf` may have been written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every write so far durable (fdatasync; the size is covered too).
    fn sync(&self) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len_bytes`.
    fn set_len(&self, len_bytes: u64) -> io::Result<()>;
    /// The current length in bytes, as this process sees it.
    fn len(&self) -> io::Result<u64>;
    /// A hint that the bytes in `range` will not be read again soon, so the OS may drop
    /// them from its page cache; may do nothing (the default, and `SimFs`, which does not
    /// count it as an I/O call). Call it only on bytes whose last sync succeeded: after a
    /// failed sync Linux can hold bytes that never reached the disk as clean cached pages,
    /// and dropping those would make later reads return the old bytes. On synced bytes it
    /// changes no content and no later read. A dirty range is not dropped (Linux starts its
    /// write-back instead). The log calls it on what it has synced: a log is read only at
    /// recovery, and left cached it would grow the page cache by its whole length.
    fn drop_cached(&self, range: std::ops::Range<u64>) -> io::Result<()> {
        let _ = range;
        Ok(())
    }

    /// Reads exactly `buf.len()` bytes at `offset`, or fails with `UnexpectedEof`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let mut done = 0usize;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset + done as u64)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short read at offset {}", offset + done as u64),
                ));
            }
            done += n;
        }
        Ok(())
    }

    /// The bytes `range` of the file, mapped read-only into memory, for a large read that
    /// would otherwise copy them out of the page cache into a fresh buffer; `Ok(None)` if
    /// this file is not mapped (the default, and the simulated disks: every byte they serve
    /// comes through `read_at`, where their faults are drawn). `range` must lie within
    /// the file's length, which an implementation checks.
    ///
    /// Only for files that never shrink while mapped: reading a mapped page past the end
    /// of a file truncated meanwhile, or one the device fails to read, raises `SIGBUS`
    /// where `read_at` would return an error. A caller maps only such files and treats the
    /// bytes as untrusted as those of `read_at` (it checks their checksums).
    fn map(&self, range: std::ops::Range<u64>) -> io::Result<Option<Mapping>> {
        let _ = range;
        Ok(None)
    }

    /// The whole file, mapped read-only without reading it now: each page is mapped on
    /// first touch (from the page cache, or read then) and stays mapped while the
    /// [`Mapping`] lives, so a file read again and again (a segment that scans sum over) pays
    /// for mapping its pages once instead of at every read. Pages touched count in the
    /// process's resident memory until the mapping is dropped (they are the page cache's,
    /// and the kernel may still reclaim them); an Env bounds the bytes it keeps mapped so,
    /// and returns `Ok(None)` past its bound, as the default and the simulated disks always
    /// do. The same rules as [`File::map`] apply.
    fn map_whole(&self) -> io::Result<Option<Mapping>> {
        Ok(None)
    }

    /// Reads the whole file into memory.
    fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = self.len()?;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large for memory"))?;
        let mut buf = vec![0u8; len];
        self.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    }
}

/// A file system: the directory operations whose crash semantics matter.
pub trait Fs: Send + Sync {
    /// Opens `path` in `mode`.
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>>;
    /// Atomically replaces `to` with `from` (durable after `sync_dir` of the parent).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir` of the parent).
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// The names of the entries in `dir`, sorted, so that callers iterate deterministically.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and any missing parents; succeeds if it already exists.
    fn create_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes creates, renames and removes of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` exists (file or directory).
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// Takes an exclusive lock on the existing directory `dir` for as long as the returned
    /// guard lives: `Ok(None)` if someone else holds it, in this process or another. It is
    /// the one-writer guard of a database directory, not a disk operation: nothing is
    /// written, and a crash (of the process, or of a simulated disk) releases it. The
    /// default takes no lock and always succeeds, for test doubles that need none.
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let _ = dir;
        Ok(Some(DirLock(Box::new(()))))
    }
}

/// A held [`Fs::lock_dir`] lock; dropping it releases the lock.
pub struct DirLock(pub Box<dyn std::any::Any + Send + Sync>);

impl fmt::Debug for DirLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DirLock")
    }
}

/// Time. Monotonic time drives timeouts and group commit; wall time only stamps data.
pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary, fixed origin.
    fn now_monotonic(&self) -> Duration;
    /// Wall-clock time in microseconds since the Unix epoch.
    fn now_wall_micros(&self) -> i64;
    /// Blocks the calling thread for `duration` (a virtual clock advances instead).
    fn sleep(&self, duration: Duration);
}

/// What a worker wants after one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// More work is ready: step again soon.
    Busy,
    /// Nothing to do: step again after this long, or earlier when woken.
    Idle(Duration),
    /// The worker is finished and must not be stepped again.
    Done,
}

/// A background worker written as bounded steps: each `step` does one bounded unit of
/// work (sync one commit group, flush one segment, compact one pair) and returns.
///
/// `OsEnv` runs each worker on its own thread in a loop; the simulator calls `step`
/// wherever its seeded schedule says, on one thread.
pub trait Worker: Send {
    /// A stable name, for logs and traces.
    fn name(&self) -> &str;
    /// Does one bounded unit of work.
    fn step(&mut self) -> StepResult;
}

/// Control of a spawned worker, shared between the engine and whoever runs the worker.
pub trait WorkerControl: Send + Sync {
    /// Asks for a step soon (ends an `Idle` wait early).
    fn wake(&self);
    /// Asks the worker to stop; after this returns (in `OsEnv`, after the thread joined)
    /// the worker is never stepped again.
    fn stop(&self);
}

/// Starts background workers.
pub trait Spawn: Send + Sync {
    /// Starts `worker`; returns the handle that wakes or stops it.
    fn spawn(&self, worker: Box<dyn Worker>) -> io::Result<Arc<dyn WorkerControl>>;

    /// Runs `a` and `b` and returns when both have returned: on two threads where the
    /// environment has them (a flush builds a segment's membership filter while it encodes
    /// the Parquet file), else one after the other. Neither may depend on the other running
    /// at the same time. The default, and the simulator's, runs `a` then `b`, so a run stays
    /// deterministic.
    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        a();
        b();
    }
}

/// The environment a program runs in: a file system, a clock and a spawner.
#[derive(Clone)]
pub struct Env {
    /// The file system.
    pub fs: Arc<dyn Fs>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// The spawner of background workers.
    pub spawner: Arc<dyn Spawn>,
}

impl Env {
    /// The production environment on std.
    pub fn os() -> Env {
        Env::of_os(OsEnv::new())
    }

    /// The environment `os` (one made by [`OsEnv::without_mapped_reads`], say).
    pub fn of_os(os: OsEnv) -> Env {
        let os = Arc::new(os);
        Env {
            fs: os.clone(),
            clock: os.clone(),
            spawner: os,
        }
    }
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}
