//! `FaultyFs`: the plan's error injection around any other [`Fs`], typically the real
//! disk ([`omendb_env::OsEnv`] on a temporary directory).
//!
//! It injects what a real file system can be made to report without a simulated medium:
//! - read error: EIO, the inner read is not made;
//! - write error: EIO, nothing written;
//! - torn write: a sector-aligned prefix is written through, then EIO;
//! - sync error: EIO, the inner sync is not made;
//! - sync_dir error: EIO, the inner sync_dir is not made;
//! - disk full: a space budget over the *growth* of files through this `FaultyFs` since it
//!   was created (`set_len` shrinking gives space back; removing files does not, since the
//!   wrapper does not know their size). A write that crosses the budget writes the prefix
//!   that fits, then fails with `StorageFull`; a growing `set_len` fails whole.
//!
//! It does not crash, misdirect, tear silently, flip bits or make sectors latent: those
//! need the simulated medium ([`SimFs`](crate::SimFs)). After an injected sync error the
//! real kernel may still write the data back; what this wrapper checks is the engine's
//! error path (the failure is reported and never acknowledged), while the loss itself is
//! modelled by `SimFs`. Calls are counted and faults logged as `SimFs` does (the page-cache
//! hint `drop_cached` is passed through uncounted, as `SimFs` leaves it uncounted).

use crate::inject::Injector;
use crate::log::{FaultKind, FaultRecord, Stats};
use crate::plan::FaultPlan;
use omendb_env::{File, Fs, OpenMode};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// Any [`Fs`] with the fault plan's errors injected (see the module doc).
#[derive(Clone)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    injector: Arc<Mutex<Injector>>,
}

struct FaultyFile {
    inner: Box<dyn File>,
    injector: Arc<Mutex<Injector>>,
    path: String,
}

fn lock(injector: &Mutex<Injector>) -> MutexGuard<'_, Injector> {
    injector
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultyFs {
    /// Wraps `inner`; faults follow `plan` (its crash fields are ignored).
    pub fn new(inner: Arc<dyn Fs>, plan: FaultPlan) -> FaultyFs {
        FaultyFs {
            inner,
            injector: Arc::new(Mutex::new(Injector::new(plan))),
        }
    }

    /// The wrapped file system.
    pub fn inner(&self) -> &Arc<dyn Fs> {
        &self.inner
    }

    /// Replaces the rates and the space limit (the random stream is not reseeded).
    pub fn set_plan(&self, plan: FaultPlan) {
        lock(&self.injector).set_plan(plan);
    }

    /// Sets (or removes) the budget on file growth through this wrapper.
    pub fn set_space_limit(&self, limit_bytes: Option<u64>) {
        lock(&self.injector).plan.space_limit_bytes = limit_bytes;
    }

    /// Calls counted so far.
    pub fn op_count(&self) -> u64 {
        lock(&self.injector).op_count
    }

    /// Counters (bytes and calls through the wrapper, faults by kind).
    pub fn stats(&self) -> Stats {
        lock(&self.injector).stats.clone()
    }

    /// Every injected fault, oldest first.
    pub fn fault_log(&self) -> Vec<FaultRecord> {
        lock(&self.injector).log.records()
    }

    /// The fault log as text, one record per line.
    pub fn fault_log_text(&self) -> String {
        lock(&self.injector).log.text()
    }
}

impl fmt::Debug for FaultyFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let injector = lock(&self.injector);
        f.debug_struct("FaultyFs")
            .field("plan", &injector.plan.to_string())
            .field("op_count", &injector.op_count)
            .finish()
    }
}

impl Fs for FaultyFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        lock(&self.injector).count_op();
        let inner = self.inner.open(path, mode)?;
        Ok(Box::new(FaultyFile {
            inner,
            injector: self.injector.clone(),
            path: path.display().to_string(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        lock(&self.injector).count_op();
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.injector).count_op();
        self.inner.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        lock(&self.injector).count_op();
        self.inner.list(dir)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        lock(&self.injector).count_op();
        self.inner.create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut injector = lock(&self.injector);
        let op = injector.count_op();
        if injector.coin(|plan| plan.sync_dir_error) {
            return Err(injector.fail(
                FaultKind::SyncDirError,
                op,
                &dir.display().to_string(),
                0,
                0,
                String::new(),
            ));
        }
        self.inner.sync_dir(dir)?;
        injector.stats.sync_dirs += 1;
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        lock(&self.injector).count_op();
        self.inner.exists(path)
    }

    /// Passed through uncounted and without a fault draw, like `SimFs`: not an I/O call.
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<omendb_env::DirLock>> {
        self.inner.lock_dir(dir)
    }
}

impl File for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut injector = lock(&self.injector);
        let op = injector.count_op();
        if injector.coin(|plan| plan.read_error) {
            return Err(injector.fail(
                FaultKind::ReadError,
                op,
                &self.path,
                offset,
                buf.len() as u64,
                String::new(),
            ));
        }
        let n = self.inner.read_at(buf, offset)?;
        injector.count_read(n);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut injector = lock(&self.injector);
        let op = injector.count_op();
        let len_bytes = buf.len() as u64;
        if injector.coin(|plan| plan.write_error) {
            return Err(injector.fail(
                FaultKind::WriteError,
                op,
                &self.path,
                offset,
                len_bytes,
                String::new(),
            ));
        }
        let end = offset.saturating_add(len_bytes);
        let len_before = self.inner.len()?;
        let growth = end.saturating_sub(len_before);
        if growth > injector.space_left() {
            let prefix_len = injector.full_prefix_len(len_before, offset, len_bytes) as usize;
            self.inner.write_at(&buf[..prefix_len], offset)?;
            injector.used_bytes += (offset + prefix_len as u64).saturating_sub(len_before);
            let detail = format!("wrote {prefix_len} of {} bytes", buf.len());
            return Err(injector.fail(
                FaultKind::DiskFull,
                op,
                &self.path,
                offset,
                len_bytes,
                detail,
            ));
        }
        if !buf.is_empty() && injector.coin(|plan| plan.write_torn) {
            let (prefix_len, detail) = injector.torn_prefix(offset, buf);
            self.inner.write_at(&buf[..prefix_len], offset)?;
            injector.used_bytes += (offset + prefix_len as u64).saturating_sub(len_before);
            return Err(injector.fail(
                FaultKind::TornWrite,
                op,
                &self.path,
                offset,
                len_bytes,
                detail,
            ));
        }
        self.inner.write_at(buf, offset)?;
        injector.used_bytes += growth;
        injector.count_write(buf.len());
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let mut injector = lock(&self.injector);
        let op = injector.count_op();
        if injector.coin(|plan| plan.sync_error) {
            return Err(injector.fail(FaultKind::SyncError, op, &self.path, 0, 0, String::new()));
        }
        self.inner.sync()?;
        injector.stats.syncs += 1;
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        let mut injector = lock(&self.injector);
        let op = injector.count_op();
        let len_before = self.inner.len()?;
        let growth = len_bytes.saturating_sub(len_before);
        if growth > injector.space_left() {
            let detail = format!("extend from {len_before}");
            return Err(injector.fail(
                FaultKind::DiskFull,
                op,
                &self.path,
                len_before,
                growth,
                detail,
            ));
        }
        self.inner.set_len(len_bytes)?;
        let shrink = len_before.saturating_sub(len_bytes);
        injector.used_bytes = (injector.used_bytes + growth).saturating_sub(shrink);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        lock(&self.injector).count_op();
        self.inner.len()
    }

    /// Passed through without a fault draw: the hint changes no result, so the fault
    /// schedule (and every recorded seed) stays as it was.
    fn drop_cached(&self, range: std::ops::Range<u64>) -> io::Result<()> {
        self.inner.drop_cached(range)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::is_injected;
    use omendb_env::OsEnv;

    fn os_in_tempdir() -> (tempfile::TempDir, Arc<dyn Fs>) {
        let dir = tempfile::tempdir().unwrap();
        (dir, Arc::new(OsEnv::new()))
    }

    #[test]
    fn errors_are_injected_on_the_real_disk() {
        let (dir, os) = os_in_tempdir();
        let fs = FaultyFs::new(
            os,
            FaultPlan {
                read_error: 1.0,
                write_error: 1.0,
                sync_error: 1.0,
                sync_dir_error: 1.0,
                ..FaultPlan::none()
            },
        );
        let path = dir.path().join("f");
        let file = fs.open(&path, OpenMode::Create).unwrap();
        assert!(is_injected(&file.write_at(b"abc", 0).unwrap_err()));
        assert_eq!(file.len().unwrap(), 0);
        assert!(is_injected(&file.sync().unwrap_err()));
        assert!(is_injected(&file.read_at(&mut [0u8; 3], 0).unwrap_err()));
        assert!(is_injected(&fs.sync_dir(dir.path()).unwrap_err()));
        fs.set_plan(FaultPlan::none());
        file.write_at(b"abc", 0).unwrap();
        file.sync().unwrap();
        fs.sync_dir(dir.path()).unwrap();
        assert_eq!(file.read_all().unwrap(), b"abc");
        assert_eq!(fs.fault_log().len(), 4);
        assert_eq!(fs.stats().faults_total(), 4);
    }

    #[test]
    fn disk_full_on_the_real_disk_writes_a_prefix_then_recovers() {
        let (dir, os) = os_in_tempdir();
        let fs = FaultyFs::new(os, FaultPlan::none());
        fs.set_space_limit(Some(1000));
        let file = fs.open(&dir.path().join("f"), OpenMode::Create).unwrap();
        file.write_at(&[1u8; 800], 0).unwrap();
        let err = file.write_at(&[2u8; 400], 800).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(file.len().unwrap(), 1000);
        assert_eq!(
            file.set_len(2000).unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        file.set_len(500).unwrap(); // gives space back
        file.write_at(&[3u8; 400], 500).unwrap();
        fs.set_space_limit(None);
        file.write_at(&[4u8; 4000], 900).unwrap();
        assert_eq!(file.len().unwrap(), 4900);
    }

    #[test]
    fn a_torn_write_on_the_real_disk_leaves_a_sector_prefix() {
        let (dir, os) = os_in_tempdir();
        let fs = FaultyFs::new(
            os,
            FaultPlan {
                write_torn: 1.0,
                sector_bytes: 512,
                ..FaultPlan::none().with_seed(9)
            },
        );
        let file = fs.open(&dir.path().join("f"), OpenMode::Create).unwrap();
        assert!(file.write_at(&[1u8; 4096], 0).is_err());
        let len = file.len().unwrap();
        assert!(len < 4096 && len % 512 == 0);
    }
}
