//! The client threads: each draws reads and writes from the mix, records what was
//! acknowledged in its [`Owned`] record, verifies its record when the sampler asks (soaks),
//! and publishes its progress for the sampler and the watchdog.

use crate::histogram::Histogram;
use crate::model::{make_row, owned_max, KeyDraw, Owned, TABLE};
use crate::Args;
use omendb::{Database, Error, Value};
use omendb_keygen::SplitMix64;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::Barrier;
use std::time::Instant;

/// What a thread is doing, as published in [`Progress::op_kind`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum OpKind {
    Idle = 0,
    Get = 1,
    Insert = 2,
    Update = 3,
    Delete = 4,
    Verify = 5,
}

impl OpKind {
    pub fn from_u8(code: u8) -> OpKind {
        match code {
            1 => OpKind::Get,
            2 => OpKind::Insert,
            3 => OpKind::Update,
            4 => OpKind::Delete,
            5 => OpKind::Verify,
            _ => OpKind::Idle,
        }
    }
}

/// What a thread publishes for the sampler and the watchdog (relaxed atomics: figures, not
/// synchronisation).
#[derive(Default)]
#[repr(align(128))]
pub struct Progress {
    pub read_ops: AtomicU64,
    pub write_ops: AtomicU64,
    pub op_kind: AtomicU8,
    pub op_key: AtomicI64,
    /// Nanoseconds since the run's origin when the current operation started; 0 when idle.
    pub op_started_ns: AtomicU64,
    /// Soak verifications this thread has finished.
    pub verified_epoch: AtomicU64,
}

impl Progress {
    /// Publishes that an operation of `kind` on `key` starts now.
    fn begin(&self, kind: OpKind, key: i64, now_ns: u64) {
        self.op_kind.store(kind as u8, Ordering::Relaxed);
        self.op_key.store(key, Ordering::Relaxed);
        self.op_started_ns.store(now_ns.max(1), Ordering::Relaxed);
    }
}

/// What every thread shares: the database, the run's settings and the signals between the
/// main thread and the others.
pub struct Shared {
    pub db: Database,
    pub args: Args,
    pub dist: KeyDraw,
    pub read_per_mille: u64,
    /// Inserts, updates, deletes: relative weights among the writes.
    pub write_mix: Vec<u64>,
    pub origin: Instant,
    pub stop: AtomicBool,
    /// Soak verifications asked for so far; a thread verifies when this passes its own.
    pub verify_epoch: AtomicU64,
    pub progress: Vec<Progress>,
}

impl Shared {
    /// Nanoseconds since the run's origin.
    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

/// A thread's result.
#[derive(Default)]
pub struct ThreadReport {
    pub owned: Owned,
    pub read_latency: Option<Histogram>,
    pub write_latency: Option<Histogram>,
    pub all_latency: Option<Histogram>,
    pub reads: u64,
    pub writes: u64,
    pub writes_applied: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub lost: u64,
    pub first_error: Option<String>,
}

impl ThreadReport {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

/// One thread's state while it runs.
struct Worker<'a> {
    shared: &'a Shared,
    progress: &'a Progress,
    rng: SplitMix64,
    owned: Owned,
    report: ThreadReport,
    next_version: i64,
    value_bytes: usize,
    /// Most keys this thread owns: its inserts turn into deletes at this count.
    owned_max: usize,
}

/// Thread `index`'s whole run: waits at `start`, then reads and writes until the stop
/// signal, starting from the keys `owned` holds.
pub fn run_thread(shared: &Shared, index: usize, owned: Owned, start: &Barrier) -> ThreadReport {
    let mut worker = Worker {
        shared,
        progress: &shared.progress[index],
        rng: SplitMix64::new(
            shared
                .args
                .seed
                .wrapping_mul(0x2545_F491_4F6C_DD1D)
                .wrapping_add(index as u64 + 1),
        ),
        owned,
        report: ThreadReport::default(),
        next_version: ((index as i64 + 1) << 40) + 1,
        value_bytes: shared.args.value_bytes,
        owned_max: owned_max(shared.args.keys, shared.progress.len()),
    };
    let mut read_latency = Histogram::new();
    let mut write_latency = Histogram::new();
    start.wait();
    while !shared.stop.load(Ordering::Relaxed) {
        worker.verify_if_asked();
        let is_read = worker.rng.below(1000) < shared.read_per_mille;
        let started = Instant::now();
        if is_read {
            worker.read();
            read_latency.record(started.elapsed().as_nanos() as u64);
            worker.progress.read_ops.fetch_add(1, Ordering::Relaxed);
        } else {
            worker.write();
            write_latency.record(started.elapsed().as_nanos() as u64);
            worker.progress.write_ops.fetch_add(1, Ordering::Relaxed);
        }
        worker.progress.op_started_ns.store(0, Ordering::Relaxed);
    }
    worker
        .progress
        .op_kind
        .store(OpKind::Idle as u8, Ordering::Relaxed);
    let mut all = read_latency.clone();
    all.merge(&write_latency);
    let mut report = worker.report;
    report.read_latency = Some(read_latency);
    report.write_latency = Some(write_latency);
    report.all_latency = Some(all);
    report.owned = worker.owned;
    report
}

impl Worker<'_> {
    /// A soak's verification, when the sampler has asked for one this thread has not done.
    fn verify_if_asked(&mut self) {
        let epoch = self.shared.verify_epoch.load(Ordering::Acquire);
        if epoch <= self.progress.verified_epoch.load(Ordering::Relaxed) {
            return;
        }
        self.progress
            .op_kind
            .store(OpKind::Verify as u8, Ordering::Relaxed);
        self.progress
            .op_started_ns
            .store(self.shared.now_ns().max(1), Ordering::Relaxed);
        self.report.lost += verify_owned(
            &self.shared.db,
            &self.owned,
            self.value_bytes,
            &mut self.report,
        );
        self.progress.op_started_ns.store(0, Ordering::Relaxed);
        self.progress.verified_epoch.store(epoch, Ordering::Release);
    }

    /// A get of a key from the distribution: any row read must be a row some writer wrote
    /// for that key.
    fn read(&mut self) {
        let key = self.shared.dist.sample(&mut self.rng);
        self.progress.begin(OpKind::Get, key, self.shared.now_ns());
        match self.shared.db.get(TABLE, key) {
            Ok(Some(row)) => {
                let v = match row.get(1) {
                    Some(Value::Int64(v)) => *v,
                    _ => -1,
                };
                if row != make_row(key, v, self.value_bytes) {
                    self.report
                        .error(format!("get {key}: malformed row {row:?}"));
                }
            }
            Ok(None) => {}
            Err(e) => self.report.error(format!("get {key}: {e}")),
        }
        self.report.reads += 1;
    }

    /// An insert of a key from the distribution, or an update or delete of an owned key, as
    /// the write mix draws.
    fn write(&mut self) {
        let mix = &self.shared.write_mix;
        let insert_cut = mix[0];
        let update_cut = insert_cut + mix[1];
        let write_total = update_cut + mix[2];
        let mut choice = self.rng.below(write_total);
        if choice < insert_cut && self.owned.keys.len() >= self.owned_max {
            // Hold each thread near its share of the rows: without this, one thread's
            // count is a random walk, and so is the memory of its record.
            choice = update_cut;
        }
        let target = if choice < insert_cut {
            None
        } else {
            self.owned.pick(&mut self.rng)
        };
        match target {
            None => self.insert(),
            Some((key, _)) if choice < update_cut => self.update(key),
            Some((key, _)) => self.delete(key),
        }
        self.report.writes += 1;
    }

    fn insert(&mut self) {
        let key = self.shared.dist.sample(&mut self.rng);
        let version = self.take_version();
        self.progress
            .begin(OpKind::Insert, key, self.shared.now_ns());
        match self
            .shared
            .db
            .insert(TABLE, make_row(key, version, self.value_bytes))
        {
            Ok(()) => {
                if self.owned.versions.contains_key(&key) {
                    self.report
                        .error(format!("insert {key}: accepted over an acknowledged row"));
                }
                self.owned.insert(key, version);
                self.report.writes_applied += 1;
            }
            Err(Error::DuplicateKey { .. }) => self.report.duplicates += 1,
            Err(e) => self.report.error(format!("insert {key}: {e}")),
        }
    }

    fn update(&mut self, key: i64) {
        let version = self.take_version();
        self.progress
            .begin(OpKind::Update, key, self.shared.now_ns());
        match self
            .shared
            .db
            .update(TABLE, key, make_row(key, version, self.value_bytes))
        {
            Ok(()) => {
                self.owned.insert(key, version);
                self.report.writes_applied += 1;
            }
            Err(Error::KeyNotFound { .. }) => {
                self.report.lost += 1;
                self.report.error(format!(
                    "update {key}: an owned, acknowledged row is missing"
                ));
                self.owned.remove(key);
            }
            Err(e) => self.report.error(format!("update {key}: {e}")),
        }
    }

    fn delete(&mut self, key: i64) {
        self.progress
            .begin(OpKind::Delete, key, self.shared.now_ns());
        match self.shared.db.delete(TABLE, key) {
            Ok(true) => {
                self.owned.remove(key);
                self.report.writes_applied += 1;
            }
            Ok(false) => {
                self.report.lost += 1;
                self.report.error(format!(
                    "delete {key}: an owned, acknowledged row is missing"
                ));
                self.owned.remove(key);
            }
            Err(e) => self.report.error(format!("delete {key}: {e}")),
        }
    }

    /// A version no write has used: this thread's prefix, then a counter.
    fn take_version(&mut self) -> i64 {
        let version = self.next_version;
        self.next_version += 1;
        version
    }
}

/// Reads back every key `owned` records; returns how many are missing or differ.
fn verify_owned(
    db: &Database,
    owned: &Owned,
    value_bytes: usize,
    report: &mut ThreadReport,
) -> u64 {
    let mut lost = 0;
    for (&key, &(_, version)) in &owned.versions {
        match db.get(TABLE, key) {
            Ok(Some(row)) if row == make_row(key, version, value_bytes) => {}
            Ok(found) => {
                lost += 1;
                if report.first_error.is_none() {
                    report.first_error = Some(format!(
                        "verify {key}: acknowledged version {version}, found {:?}",
                        found.map(|r| r[1].clone())
                    ));
                }
            }
            Err(e) => report.error(format!("verify {key}: {e}")),
        }
    }
    lost
}
