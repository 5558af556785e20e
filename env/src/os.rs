//! `OsEnv`: the production [`Env`](super::Env) on std. The only file in the engine that
//! touches `std::fs`, the system clocks and `std::thread`.

use super::{Clock, DirLock, File, Fs, OpenMode, Spawn, StepResult, Worker, WorkerControl};
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The operating system: files on the real disk, system clocks, one thread per worker.
#[derive(Debug)]
pub struct OsEnv {
    origin: Instant,
    /// Whether [`File::map`] maps (else it returns `None` and readers copy with `pread`).
    map_reads: bool,
    /// Bytes its files keep mapped whole ([`File::map_whole`]), against `whole_bytes_max`.
    whole_bytes: Arc<AtomicU64>,
    whole_bytes_max: u64,
}

/// The share of physical memory an [`OsEnv`]'s files keep mapped whole at most, by default
/// ([`File::map_whole`]): a sixteenth (1.5 GB of 24 GB: every segment of a 100M-row table,
/// a tenth of a 1B-row one). Pages a read touched count in resident memory while mapped,
/// and with large page-cache folios (ext4 and xfs on Linux 6.x) the kernel maps a whole
/// folio, up to 2 MiB, at the first touch of it: a scan of one column of a segment soon
/// makes about the whole file resident.
pub const WHOLE_MAPPED_MEMORY_SHARE: u64 = 16;

/// Physical memory in bytes; 0 if the system does not say.
fn physical_memory_bytes() -> u64 {
    // SAFETY: sysconf reads no memory of ours.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    match (u64::try_from(pages), u64::try_from(page)) {
        (Ok(pages), Ok(page)) => pages.saturating_mul(page),
        _ => 0,
    }
}

impl OsEnv {
    /// A new environment; its monotonic clock starts at zero now. Its files map large
    /// reads ([`File::map`]) and keep up to a [`WHOLE_MAPPED_MEMORY_SHARE`]th of physical
    /// memory mapped whole ([`File::map_whole`]).
    pub fn new() -> OsEnv {
        OsEnv {
            origin: Instant::now(),
            map_reads: true,
            whole_bytes: Arc::new(AtomicU64::new(0)),
            whole_bytes_max: physical_memory_bytes() / WHOLE_MAPPED_MEMORY_SHARE,
        }
    }

    /// This environment with at most `bytes` of files mapped whole at a time (0: none; every
    /// large read then maps and unmaps its own range).
    pub fn with_whole_mapped_bytes_max(self, bytes: u64) -> OsEnv {
        OsEnv {
            whole_bytes_max: bytes,
            ..self
        }
    }

    /// A new environment whose files never map ([`File::map`] returns `None`), so every
    /// read is a `pread`: a device's read error then reaches the caller as an
    /// `io::Error` rather than as `SIGBUS` in a mapped read, at the cost of a copy.
    pub fn without_mapped_reads() -> OsEnv {
        OsEnv {
            map_reads: false,
            whole_bytes_max: 0,
            ..OsEnv::new()
        }
    }
}

/// Bytes of a file mapped read-only ([`File::map`]); unmapped when dropped.
pub struct Mapping {
    /// The start of the mapping (page-aligned) and its length.
    base: *mut libc::c_void,
    mapped: usize,
    /// Where the asked-for bytes start in the mapping, and their length.
    skip: usize,
    len: usize,
    /// The count a whole-file mapping was taken from, given back when it is dropped.
    whole_bytes: Option<Arc<AtomicU64>>,
}

// SAFETY: the mapping is read-only and private to this value until it is dropped, so
// sharing or moving it between threads reads the same immutable bytes.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `base..base + mapped` is a live PROT_READ mapping owned by `self`, and
        // `skip + len <= mapped` by construction in `OsFile::map`.
        unsafe { std::slice::from_raw_parts((self.base as *const u8).add(self.skip), self.len) }
    }
}

impl std::ops::Deref for Mapping {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_ref()
    }
}

impl std::fmt::Debug for Mapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapping").field("len", &self.len).finish()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `base` and `mapped` are exactly what mmap returned and took, and no
        // borrow of the bytes outlives `self`.
        unsafe {
            libc::munmap(self.base, self.mapped);
        }
        if let Some(count) = &self.whole_bytes {
            count.fetch_sub(self.mapped as u64, Ordering::Relaxed);
        }
    }
}

impl Default for OsEnv {
    fn default() -> Self {
        OsEnv::new()
    }
}

struct OsFile {
    file: fs::File,
    map_reads: bool,
    whole_bytes: Arc<AtomicU64>,
    whole_bytes_max: u64,
}

impl OsFile {
    /// Maps `range` read-only ([`File::map`]), every page at once when `populate`.
    fn map_range(
        &self,
        range: std::ops::Range<u64>,
        populate: bool,
    ) -> io::Result<Option<Mapping>> {
        use std::os::fd::AsRawFd;
        if !self.map_reads || range.is_empty() {
            return Ok(None);
        }
        let file_len = self.len()?;
        if range.end > file_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "cannot map bytes {}..{} of a file of {file_len} bytes",
                    range.start, range.end
                ),
            ));
        }
        // SAFETY: sysconf reads no memory of ours.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as u64,
            _ => return Ok(None),
        };
        let start = range.start - range.start % page;
        let (Ok(offset), Ok(mapped), Ok(skip), Ok(len)) = (
            libc::off_t::try_from(start),
            usize::try_from(range.end - start),
            usize::try_from(range.start - start),
            usize::try_from(range.end - range.start),
        ) else {
            return Ok(None);
        };
        // MAP_POPULATE maps every page now (a page-cache hit costs no fault later; a miss is
        // read now, as pread would). Without it, pages are mapped as they are touched.
        #[cfg(target_os = "linux")]
        let flags = match populate {
            true => libc::MAP_SHARED | libc::MAP_POPULATE,
            false => libc::MAP_SHARED,
        };
        #[cfg(not(target_os = "linux"))]
        let flags = {
            let _ = populate;
            libc::MAP_SHARED
        };
        // SAFETY: a fresh read-only mapping of this file's descriptor, at an address the
        // kernel picks: it aliases no memory of ours. The range lies within the file.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ,
                flags,
                self.file.as_raw_fd(),
                offset,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(Mapping {
            base,
            mapped,
            skip,
            len,
            whole_bytes: None,
        }))
    }
}

impl File for OsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        loop {
            match self.file.read_at(buf, offset) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.file.set_len(len_bytes)
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn map(&self, range: std::ops::Range<u64>) -> io::Result<Option<Mapping>> {
        self.map_range(range, true)
    }

    fn map_whole(&self) -> io::Result<Option<Mapping>> {
        let len = self.len()?;
        if !self.map_reads || len == 0 {
            return Ok(None);
        }
        // Taken from the Env's count first, given back if the mapping fails or when it
        // is dropped.
        let taken = self.whole_bytes.fetch_add(len, Ordering::Relaxed);
        if taken.saturating_add(len) > self.whole_bytes_max {
            self.whole_bytes.fetch_sub(len, Ordering::Relaxed);
            return Ok(None);
        }
        match self.map_range(0..len, false) {
            Ok(Some(mut mapping)) => {
                // The count holds `len`, which is what the mapping gives back.
                debug_assert_eq!(mapping.mapped as u64, len);
                mapping.whole_bytes = Some(self.whole_bytes.clone());
                Ok(Some(mapping))
            }
            other => {
                self.whole_bytes.fetch_sub(len, Ordering::Relaxed);
                other
            }
        }
    }
    #[cfg(target_os = "linux")]
    fn drop_cached(&self, range: std::ops::Range<u64>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if range.is_empty() {
            // posix_fadvise reads a length of 0 as "to the end of the file".
            return Ok(());
        }
        let (Ok(offset), Ok(len)) = (
            libc::off_t::try_from(range.start),
            libc::off_t::try_from(range.end - range.start),
        ) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "cache range {}..{} does not fit the platform's file offsets",
                    range.start, range.end
                ),
            ));
        };
        // SAFETY: the descriptor is this file's own and open for as long as `self` lives;
        // POSIX_FADV_DONTNEED reads and writes no memory of ours and never changes the file,
        // only whether the kernel keeps clean pages of it cached.
        let rc = unsafe {
            libc::posix_fadvise(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::POSIX_FADV_DONTNEED,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }
}

impl Fs for OsEnv {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        let mut options = fs::OpenOptions::new();
        match mode {
            OpenMode::Read => options.read(true),
            OpenMode::ReadWrite => options.read(true).write(true),
            OpenMode::Create => options.read(true).write(true).create(true),
            OpenMode::CreateNew => options.read(true).write(true).create_new(true),
        };
        let file = options.open(path)?;
        Ok(Box::new(OsFile {
            file,
            map_reads: self.map_reads,
            whole_bytes: self.whole_bytes.clone(),
            whole_bytes_max: self.whole_bytes_max,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            match entry.file_name().into_string() {
                Ok(name) => names.push(name),
                Err(raw) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("non-UTF-8 file name {raw:?} in {}", dir.display()),
                    ))
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }

    /// `flock(LOCK_EX | LOCK_NB)` on the directory itself. The lock belongs to the open file
    /// description, so a second open of the same directory, even in this process, is refused
    /// until the guard (which owns that descriptor) is dropped; the kernel releases it when
    /// the process ends, however it ends.
    #[cfg(unix)]
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        use std::os::fd::AsRawFd;
        let handle = fs::File::open(dir)?;
        // SAFETY: the descriptor is `handle`'s own and open for the whole call; flock reads
        // and writes no memory of ours.
        let rc = unsafe { libc::flock(handle.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(DirLock(Box::new(handle))));
        }
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(error)
        }
    }
}

impl Clock for OsEnv {
    fn now_monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn now_wall_micros(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        }
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

#[derive(Default)]
struct ThreadState {
    woken: bool,
    stopping: bool,
}

/// A worker's thread: a loop of `step()`s, parked on a condition variable while idle.
struct ThreadControl {
    state: Mutex<ThreadState>,
    signal: Condvar,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl ThreadControl {
    fn run(&self, mut worker: Box<dyn Worker>) {
        loop {
            if self.lock().stopping {
                return;
            }
            let wait = match worker.step() {
                StepResult::Busy => continue,
                StepResult::Done => return,
                StepResult::Idle(wait) => wait,
            };
            let mut state = self.lock();
            if !state.woken && !state.stopping {
                state = match self.signal.wait_timeout(state, wait) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            state.woken = false;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ThreadState> {
        // A worker that panicked while holding this lock left only two booleans behind.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl WorkerControl for ThreadControl {
    fn wake(&self) {
        self.lock().woken = true;
        self.signal.notify_one();
    }

    fn stop(&self) {
        self.lock().stopping = true;
        self.signal.notify_one();
        let handle = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(handle) = handle {
            if handle.thread().id() != std::thread::current().id() {
                // A worker that panicked has already reported its panic; nothing to add.
                let _ = handle.join();
            }
        }
    }
}

impl Spawn for OsEnv {
    fn spawn(&self, worker: Box<dyn Worker>) -> io::Result<Arc<dyn WorkerControl>> {
        let control = Arc::new(ThreadControl {
            state: Mutex::new(ThreadState::default()),
            signal: Condvar::new(),
            thread: Mutex::new(None),
        });
        let runner = control.clone();
        let handle = std::thread::Builder::new()
            .name(format!("omendb-{}", worker.name()))
            .spawn(move || runner.run(worker))?;
        *control
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(handle);
        Ok(control)
    }

    fn join(&self, a: &mut (dyn FnMut() + Send), b: &mut (dyn FnMut() + Send)) {
        // Shared by reference, so that `b` can still run here if no thread can be had.
        let b = Mutex::new(b);
        let run_b = || (b.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))();
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("omendb-join".into())
                .spawn_scoped(scope, run_b);
            a();
            match spawned {
                Ok(handle) => {
                    if let Err(panic) = handle.join() {
                        std::panic::resume_unwind(panic);
                    }
                }
                Err(_) => run_b(),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file is mapped whole while the Env's bound allows, the bytes are the file's, and
    /// a dropped mapping gives its bytes back; without mapped reads nothing is mapped.
    #[test]
    fn whole_mappings_stay_within_the_envs_bound() {
        let dir = std::env::temp_dir().join(format!("omendb-env-map-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("f");
        let bytes: Vec<u8> = (0..3 * 4096 + 100).map(|i| (i * 7 % 251) as u8).collect();
        fs::write(&path, &bytes).expect("write");
        let env = OsEnv::new().with_whole_mapped_bytes_max(5 * 4096);
        let file = env.open(&path, OpenMode::Read).expect("open");
        let first = file.map_whole().expect("map").expect("within the bound");
        assert_eq!(&first[..], &bytes[..]);
        assert_eq!(env.whole_bytes.load(Ordering::Relaxed), bytes.len() as u64);
        // A second whole mapping would pass the bound.
        assert!(file.map_whole().expect("map").is_none());
        assert_eq!(env.whole_bytes.load(Ordering::Relaxed), bytes.len() as u64);
        // Ranges still map on their own.
        let part = file.map(4096..8192).expect("map").expect("a range");
        assert_eq!(&part[..], &bytes[4096..8192]);
        drop(first);
        assert_eq!(env.whole_bytes.load(Ordering::Relaxed), 0);
        assert!(file.map_whole().expect("map").is_some());
        let plain = OsEnv::without_mapped_reads();
        let file = plain.open(&path, OpenMode::Read).expect("open");
        assert!(file.map_whole().expect("map").is_none());
        assert!(file.map(0..4096).expect("map").is_none());
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
