//! The commit pipeline under a schedule explorer (shuttle): small models of the real `Wal`
//! (its appends, group-commit leader and followers, the worker's step, checkpoint rolls, a
//! failed fsync, a full buffer) with a few threads each, run under thousands of schedules.
//!
//! With `--features shuttle` the log's `Mutex` and `Condvar` are shuttle's, so shuttle
//! decides every interleaving at each lock, wait and notify, and at the yield points this
//! file's in-memory disk adds inside every write and sync. It checks, in every schedule:
//! - no deadlock and no lost wakeup (shuttle fails a run in which every thread is blocked);
//! - no acknowledgement before the covering fsync: when `sync_to(lsn)` returns `Ok`, the
//!   disk's durable bytes (what a crash would leave) already recover to at least `lsn`;
//! - a failed fsync poisons the log: nothing it covered is acknowledged, and appends fail.
//!
//! Run: `cargo test -p omendb --features shuttle --test shuttle_commit` (docs/TESTING.md).
#![cfg(feature = "shuttle")]

use omendb::env::{Clock, File, Fs, OpenMode};
use omendb::wal::Wal;
use omendb::{Durability, Lsns};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DIR: &str = "/db/wal";

#[derive(Default)]
struct FileData {
    data: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default)]
struct DiskState {
    files: BTreeMap<PathBuf, Arc<Mutex<FileData>>>,
    syncs: u64,
    fail_sync_number: Option<u64>,
}

/// An in-memory disk whose writes and syncs are shuttle yield points. Directory entries
/// are durable at once (the model is about the log's records, not its directory).
#[derive(Clone, Default)]
struct MemFs {
    state: Arc<Mutex<DiskState>>,
}

struct MemFile {
    fs: MemFs,
    data: Arc<Mutex<FileData>>,
}

impl MemFs {
    fn lock(&self) -> std::sync::MutexGuard<'_, DiskState> {
        self.state.lock().unwrap()
    }

    /// Fails the `n`th sync from now (1 = the next one).
    fn fail_sync_in(&self, n: u64) {
        let mut state = self.lock();
        state.fail_sync_number = Some(state.syncs + n);
    }

    /// What a crash now would leave: every file cut to its durable bytes.
    fn crash_image(&self) -> MemFs {
        let state = self.lock();
        let files = state
            .files
            .iter()
            .map(|(path, file)| {
                let durable = file.lock().unwrap().durable.clone();
                (
                    path.clone(),
                    Arc::new(Mutex::new(FileData {
                        data: durable.clone(),
                        durable,
                    })),
                )
            })
            .collect();
        MemFs {
            state: Arc::new(Mutex::new(DiskState {
                files,
                ..DiskState::default()
            })),
        }
    }

    /// The LSNs a recovery from the durable bytes would replay, in order.
    fn durable_lsns(&self) -> Vec<u64> {
        let image = self.crash_image();
        let mut lsns = Vec::new();
        Wal::recover(&image, Path::new(DIR), 0, |lsn, _, _| {
            lsns.push(lsn);
            Ok(())
        })
        .expect("the durable log recovers");
        lsns
    }
}

impl File for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let file = self.data.lock().unwrap();
        let start = (offset as usize).min(file.data.len());
        let n = buf.len().min(file.data.len() - start);
        buf[..n].copy_from_slice(&file.data[start..start + n]);
        Ok(n)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        shuttle::thread::yield_now();
        let mut file = self.data.lock().unwrap();
        let end = offset as usize + buf.len();
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[offset as usize..end].copy_from_slice(buf);
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        shuttle::thread::yield_now();
        let fail = {
            let mut state = self.fs.lock();
            state.syncs += 1;
            state.fail_sync_number == Some(state.syncs)
        };
        if fail {
            return Err(io::Error::other("injected fsync failure"));
        }
        let mut file = self.data.lock().unwrap();
        file.durable = file.data.clone();
        drop(file);
        shuttle::thread::yield_now();
        Ok(())
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        self.data.lock().unwrap().data.resize(len_bytes as usize, 0);
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.data.lock().unwrap().data.len() as u64)
    }
}

impl Fs for MemFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        let mut state = self.lock();
        let exists = state.files.contains_key(path);
        match mode {
            OpenMode::Read | OpenMode::ReadWrite if !exists => {
                return Err(io::Error::from(io::ErrorKind::NotFound))
            }
            OpenMode::CreateNew if exists => {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists))
            }
            _ => {}
        }
        let data = state.files.entry(path.to_path_buf()).or_default().clone();
        Ok(Box::new(MemFile {
            fs: self.clone(),
            data,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.lock();
        let file = state
            .files
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        state.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock()
            .files
            .remove(path)
            .map(drop)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        Ok(self
            .lock()
            .files
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| Some(p.file_name()?.to_str()?.to_string()))
            .collect())
    }

    fn create_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        Ok(self.lock().files.contains_key(path))
    }
}

/// A clock that moves 1 ms per reading, so a `Batch` delay passes after a few steps.
#[derive(Default)]
struct StepClock(AtomicU64);

impl Clock for StepClock {
    fn now_monotonic(&self) -> Duration {
        Duration::from_millis(self.0.fetch_add(1, Ordering::Relaxed))
    }
    fn now_wall_micros(&self) -> i64 {
        0
    }
    fn sleep(&self, _duration: Duration) {}
}

fn start(fs: &MemFs, mode: Durability) -> Arc<Wal> {
    let dir = Path::new(DIR);
    let scan = Wal::recover(fs, dir, 0, |_, _, _| Ok(())).expect("recover empty");
    let wal = Wal::start(
        Arc::new(fs.clone()),
        Arc::new(StepClock::default()),
        dir,
        mode,
        scan,
        0,
    )
    .expect("start");
    Arc::new(wal)
}

/// After `sync_to(lsn)` returned `Ok`: a crash now must keep `lsn`.
fn assert_acknowledged_is_durable(fs: &MemFs, lsn: u64) {
    let lsns = fs.durable_lsns();
    assert!(
        lsns.last().is_some_and(|&last| last >= lsn),
        "lsn {lsn} acknowledged but a crash now recovers only {lsns:?}"
    );
    assert!(
        lsns.iter().copied().eq(1..=lsns.len() as u64),
        "durable log is not a contiguous prefix: {lsns:?}"
    );
}

fn config() -> shuttle::Config {
    let mut config = shuttle::Config::new();
    config.max_steps = shuttle::MaxSteps::FailAfter(100_000);
    config.stack_size = 1 << 20;
    config
}

fn check(iterations: usize, body: impl Fn() + Send + Sync + 'static) {
    let body = Arc::new(body);
    let random = shuttle::Runner::new(
        shuttle::scheduler::RandomScheduler::new_from_seed(0x5eed, iterations),
        config(),
    );
    let b = body.clone();
    random.run(move || b());
    let pct = shuttle::Runner::new(
        shuttle::scheduler::PctScheduler::new_from_seed(0x5eed, 3, iterations),
        config(),
    );
    pct.run(move || body());
}

/// Group commit: writers append and wait, the worker steps, a checkpoint rolls the segment.
/// Every acknowledgement is covered by an fsync; nobody sleeps forever.
#[test]
fn group_commit_acknowledges_only_after_the_covering_fsync() {
    check(3_000, || {
        let fs = MemFs::default();
        let wal = start(&fs, Durability::Always);
        let mut threads = Vec::new();
        for t in 0..3u8 {
            let (wal, fs) = (wal.clone(), fs.clone());
            threads.push(shuttle::thread::spawn(move || {
                for _ in 0..2 {
                    let lsn = wal.append(3, &[t; 24]).expect("append");
                    wal.sync_to(lsn).expect("sync_to");
                    assert_acknowledged_is_durable(&fs, lsn);
                    assert!(wal.is_durable(lsn).expect("not poisoned"));
                }
            }));
        }
        {
            let wal = wal.clone();
            threads.push(shuttle::thread::spawn(move || {
                for _ in 0..2 {
                    let _ = wal.commit_step();
                }
                let lsn = wal.roll().expect("roll");
                assert!(wal.is_durable(lsn).expect("not poisoned"));
            }));
        }
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(
            wal.lsns(),
            Lsns {
                appended: 6,
                durable: 6
            }
        );
        assert_eq!(fs.durable_lsns(), (1..=6).collect::<Vec<_>>());
    });
}

/// One fsync fails, wherever the schedule puts it: nothing it covered is acknowledged, the
/// log is poisoned, later appends fail, and every waiter wakes up.
#[test]
fn a_failed_fsync_poisons_and_wakes_every_waiter() {
    for failing in 1..=3u64 {
        check(1_000, move || {
            let fs = MemFs::default();
            let wal = start(&fs, Durability::Always);
            fs.fail_sync_in(failing);
            let mut threads = Vec::new();
            for t in 0..3u8 {
                let (wal, fs) = (wal.clone(), fs.clone());
                threads.push(shuttle::thread::spawn(move || {
                    for _ in 0..2 {
                        let Ok(lsn) = wal.append(3, &[t; 24]) else {
                            assert!(wal.poisoned().is_some(), "append refused unpoisoned");
                            return;
                        };
                        match wal.sync_to(lsn) {
                            Ok(()) => assert_acknowledged_is_durable(&fs, lsn),
                            Err(_) => {
                                assert!(wal.poisoned().is_some(), "sync_to failed unpoisoned");
                                assert!(wal.is_durable(lsn).is_err());
                                assert!(wal.append(3, b"after").is_err());
                                return;
                            }
                        }
                    }
                }));
            }
            {
                let wal = wal.clone();
                threads.push(shuttle::thread::spawn(move || {
                    let _ = wal.commit_step();
                }));
            }
            for thread in threads {
                thread.join().expect("thread");
            }
            // Durable never claims more than the disk holds.
            let durable = wal.lsns().durable;
            let lsns = fs.durable_lsns();
            assert!(lsns.last().copied().unwrap_or(0) >= durable);
        });
    }
}

/// `Durability::Batch` with records big enough to fill the buffer: appenders write a full buffer
/// themselves, wait when it is full and the writer is busy (back-pressure), and the worker
/// syncs on its delay. No deadlock; everything is durable after `sync_all`.
#[test]
fn full_buffer_back_pressure_never_deadlocks() {
    let record_bytes = 6 << 20; // three fill the 16 MiB buffer
    check(40, move || {
        let fs = MemFs::default();
        let wal = start(
            &fs,
            Durability::Batch {
                max_delay: Duration::from_millis(2),
            },
        );
        let mut threads = Vec::new();
        for t in 0..2u8 {
            let wal = wal.clone();
            threads.push(shuttle::thread::spawn(move || {
                let payload = vec![t; record_bytes];
                for _ in 0..2 {
                    wal.append(3, &payload).expect("append");
                }
            }));
        }
        {
            let wal = wal.clone();
            threads.push(shuttle::thread::spawn(move || {
                for _ in 0..3 {
                    let _ = wal.commit_step();
                }
            }));
        }
        for thread in threads {
            thread.join().expect("thread");
        }
        wal.sync_all().expect("sync_all");
        assert_eq!(
            wal.lsns(),
            Lsns {
                appended: 4,
                durable: 4
            }
        );
        assert_eq!(fs.durable_lsns(), vec![1, 2, 3, 4]);
    });
}
