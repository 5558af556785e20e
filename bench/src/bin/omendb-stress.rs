//! `omendb-stress`: many threads against one database, every acknowledged write checked.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin omendb-stress -- \
//!     --threads 100 --mix 50:50 --keys 100000 --dist uniform --sync batch --duration 60s
//! ```
//!
//! **Workload.** One table `(k Int64 pk, v Int64, payload Binary)`, preloaded to half of
//! `--keys`. A reader gets a key drawn from `--dist`. A writer inserts a key drawn from
//! `--dist` (a key already present is refused with `DuplicateKey`: expected, counted apart),
//! or updates or deletes a key it owns. A thread owns the keys it inserted (and the preloaded
//! keys `k` with `k % threads == its index`) until it deletes them (an insert becomes a delete
//! while a thread owns twice its share), so no other thread ever
//! changes an owned key: each thread's record of what was acknowledged is exact, and the
//! database must equal the union of all threads' records.
//!
//! **Checks.** At the end (and every `--verify-every` during a `--soak`, each thread its own
//! keys while the others run) every acknowledged write is read back; at the end the whole
//! table must equal the merged model, then again after close and reopen. A background thread
//! checkpoints every `--checkpoint-every` so that the log stays bounded.
//!
//! **Reports.** A progress line per `--sample-every` on stderr (ops/s, RSS from
//! /proc/self/statm); a watchdog names any thread whose current operation has run longer than
//! `--stuck-after`, with that operation; heap bytes in use (glibc `mallinfo2`) beside RSS, and
//! with `--live-heap` the bytes the program itself holds allocated (a counting allocator); a
//! summary; and, as the last line on stdout, one JSON object. Only the `live` figure tells a
//! leak: glibc counts the chunks parked in its per-thread caches as in use, and with many
//! threads those caches fill for many minutes. Exit status 1 if anything acknowledged was
//! lost, any unexpected error happened or a thread got stuck.
//!
//! A benchmark binary, so it uses OS threads and clocks directly; the engine library does not.

use clap::Parser;
use omendb::{Column, DataType, Database, Error, Options, Row, Sync, TableDef, Value};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const TABLE: &str = "stress";

#[derive(Parser, Debug, Clone)]
#[command(
    name = "omendb-stress",
    about = "Concurrent stress and soak runs of omendb"
)]
struct Args {
    /// Client threads.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Reads to writes, as R:W (for example 50:50, 100:0).
    #[arg(long, default_value = "50:50")]
    mix: String,
    /// Inserts to updates to deletes among the writes, as I:U:D.
    #[arg(long, default_value = "40:40:20")]
    write_mix: String,
    /// Size of the key space; half of it is preloaded.
    #[arg(long, default_value_t = 100_000)]
    keys: u64,
    /// Key distribution of reads and inserts: uniform, or zipf (theta 0.99, scrambled).
    #[arg(long, default_value = "uniform")]
    dist: String,
    /// Durability: always, batch (10 ms), batch:MS, none.
    #[arg(long, default_value = "batch")]
    sync: String,
    /// How long the measured run lasts (500ms, 60s, 30m, 1h).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// A soak: every thread verifies its acknowledged writes every --verify-every.
    #[arg(long)]
    soak: bool,
    /// Interval of the soak's verifications.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    verify_every: Duration,
    /// Interval of database checkpoints (0s: none).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    checkpoint_every: Duration,
    /// Interval of progress lines, RSS samples and watchdog checks.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    sample_every: Duration,
    /// Warm-up excluded from the RSS baseline (default: a sixth of the run, at most 5 min).
    #[arg(long, value_parser = parse_duration)]
    warmup: Option<Duration>,
    /// The watchdog reports an operation running longer than this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    stuck_after: Duration,
    /// Bytes of the payload column.
    #[arg(long, default_value_t = 32)]
    value_bytes: usize,
    /// Seed of the threads' random streams.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Database directory (default: a fresh one under the temp dir, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the database directory.
    #[arg(long)]
    keep: bool,
    /// Also count the bytes the program itself holds allocated (a counting global
    /// allocator; costs an atomic add per allocation), reported as `live` beside the heap.
    #[arg(long)]
    live_heap: bool,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("bad duration {text:?}"))?;
    let seconds = match unit {
        "" | "s" => number,
        "ms" => number / 1e3,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(format!("bad duration unit in {text:?} (ms, s, m, h)")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_parts(text: &str, count: usize, what: &str) -> Result<Vec<u64>, String> {
    let parts: Vec<u64> = text
        .split(':')
        .map(|p| p.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad {what} {text:?}"))?;
    if parts.len() != count || parts.iter().sum::<u64>() == 0 {
        return Err(format!(
            "bad {what} {text:?}: want {count} numbers, not all 0"
        ));
    }
    Ok(parts)
}

fn parse_sync(text: &str) -> Result<Sync, String> {
    Ok(match text {
        "always" => Sync::Always,
        "none" => Sync::None,
        "batch" => Sync::Batch {
            max_delay: Duration::from_millis(10),
        },
        other => match other.strip_prefix("batch:") {
            Some(delay) => Sync::Batch {
                max_delay: parse_duration(delay)
                    .or_else(|_| parse_duration(&format!("{delay}ms")))?,
            },
            None => {
                return Err(format!(
                    "bad --sync {other:?}: always, batch, batch:MS, none"
                ))
            }
        },
    })
}

// ---------------------------------------------------------------------------------------
// Random numbers and key distributions

/// SplitMix64: small, fast, good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Keys in `0..n`, uniform or Zipfian (YCSB's generator, ranks scrambled by a hash so that
/// the hot keys spread over the key space).
#[derive(Clone)]
enum KeyDist {
    Uniform {
        n: u64,
    },
    Zipf {
        n: u64,
        theta: f64,
        zeta_n: f64,
        alpha: f64,
        eta: f64,
    },
}

impl KeyDist {
    fn new(name: &str, n: u64) -> Result<KeyDist, String> {
        match name {
            "uniform" => Ok(KeyDist::Uniform { n }),
            "zipf" => {
                let theta = 0.99f64;
                let zeta = |count: u64| (1..=count).map(|i| 1.0 / (i as f64).powf(theta)).sum();
                let zeta_n: f64 = zeta(n);
                let zeta_2: f64 = zeta(2);
                Ok(KeyDist::Zipf {
                    n,
                    theta,
                    zeta_n,
                    alpha: 1.0 / (1.0 - theta),
                    eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
                })
            }
            other => Err(format!("bad --dist {other:?}: uniform, zipf")),
        }
    }

    fn sample(&self, rng: &mut Rng) -> i64 {
        match *self {
            KeyDist::Uniform { n } => rng.below(n) as i64,
            KeyDist::Zipf {
                n,
                theta,
                zeta_n,
                alpha,
                eta,
            } => {
                let u = rng.unit();
                let uz = u * zeta_n;
                let rank = if uz < 1.0 {
                    0
                } else if uz < 1.0 + 0.5f64.powf(theta) {
                    1
                } else {
                    ((n as f64 * (eta * u - eta + 1.0).powf(alpha)) as u64).min(n - 1)
                };
                // FNV-1a of the rank: scrambles hot ranks over the key space.
                let mut hash = 0xcbf2_9ce4_8422_2325u64;
                for byte in rank.to_le_bytes() {
                    hash = (hash ^ byte as u64).wrapping_mul(0x0100_0000_01b3);
                }
                (hash % n) as i64
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Latency histogram: log-linear buckets (16 per power of two), ~6% resolution.

const SUB_BUCKETS: usize = 16;
const BUCKETS: usize = 64 * SUB_BUCKETS;

#[derive(Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max_ns: u64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_ns: 0,
        }
    }

    fn bucket(ns: u64) -> usize {
        if ns < SUB_BUCKETS as u64 {
            return ns as usize;
        }
        let power = 63 - ns.leading_zeros() as usize; // >= 4
        let sub = (ns >> (power - 4)) as usize & (SUB_BUCKETS - 1);
        (power - 3) * SUB_BUCKETS + sub
    }

    /// The upper edge of a bucket.
    fn bucket_ns(bucket: usize) -> u64 {
        if bucket < SUB_BUCKETS {
            return bucket as u64;
        }
        let power = bucket / SUB_BUCKETS + 3;
        let sub = (bucket % SUB_BUCKETS) as u64;
        ((SUB_BUCKETS as u64 + sub + 1) << (power - 4)) - 1
    }

    fn record(&mut self, ns: u64) {
        self.counts[Histogram::bucket(ns)] += 1;
        self.total += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    fn quantile_ns(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((self.total as f64 * q).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Histogram::bucket_ns(bucket).min(self.max_ns);
            }
        }
        self.max_ns
    }
}

// ---------------------------------------------------------------------------------------
// Rows and the per-thread model

fn table_def() -> TableDef {
    TableDef::new(
        TABLE,
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("payload", DataType::Binary),
        ],
    )
    .expect("valid schema")
}

/// The row for key `k` whose version is `v`: the payload is derived from both, so a row read
/// back is checked whole.
fn make_row(k: i64, v: i64, value_bytes: usize) -> Row {
    let mut payload = vec![0u8; value_bytes];
    let stamp = (v ^ k.rotate_left(17)).to_le_bytes();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = stamp[i % 8].wrapping_add(i as u8);
    }
    vec![Value::Int64(k), Value::Int64(v), Value::Binary(payload)]
}

/// What one thread has had acknowledged: the keys it owns and the version of each.
#[derive(Default)]
struct Owned {
    keys: Vec<i64>,
    versions: HashMap<i64, (usize, i64)>,
}

/// Most keys one thread owns: its inserts turn into deletes at this count.
fn owned_max(keys: u64, threads: usize) -> usize {
    (keys as usize / threads.max(1)).max(16)
}

impl Owned {
    /// A record that never reallocates while it holds at most `max` keys, so the harness's
    /// own memory is fixed from the start and does not show as growth during a soak. Without
    /// this the map doubles whenever a thread's count first wanders past 7/8 of the map's
    /// capacity, which at half the key space happens at random times for minutes. Twice
    /// `max`: the map also reallocates to a larger size when deleted-entry markers use up its
    /// spare room while it is over half full; at most half full it rehashes in place.
    fn with_capacity(max: usize) -> Owned {
        Owned {
            keys: Vec::with_capacity(max),
            versions: HashMap::with_capacity(max.saturating_mul(2)),
        }
    }

    fn insert(&mut self, key: i64, version: i64) {
        match self.versions.get_mut(&key) {
            Some(entry) => entry.1 = version,
            None => {
                self.versions.insert(key, (self.keys.len(), version));
                self.keys.push(key);
            }
        }
    }

    fn remove(&mut self, key: i64) {
        if let Some((slot, _)) = self.versions.remove(&key) {
            let last = self.keys.pop().expect("keys and versions agree");
            if last != key {
                self.keys[slot] = last;
                self.versions.get_mut(&last).expect("indexed").0 = slot;
            }
        }
    }

    fn pick(&self, rng: &mut Rng) -> Option<(i64, i64)> {
        if self.keys.is_empty() {
            return None;
        }
        let key = self.keys[rng.below(self.keys.len() as u64) as usize];
        Some((key, self.versions[&key].1))
    }
}

// ---------------------------------------------------------------------------------------
// Threads

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum OpKind {
    Idle = 0,
    Get = 1,
    Insert = 2,
    Update = 3,
    Delete = 4,
    Verify = 5,
}

impl OpKind {
    fn from_u8(code: u8) -> OpKind {
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
struct Progress {
    read_ops: AtomicU64,
    write_ops: AtomicU64,
    op_kind: AtomicU8,
    op_key: AtomicI64,
    /// Nanoseconds since the run's origin when the current operation started; 0 when idle.
    op_started_ns: AtomicU64,
    /// Soak verifications this thread has finished.
    verified_epoch: AtomicU64,
}

struct Shared {
    db: Database,
    args: Args,
    dist: KeyDist,
    read_per_mille: u64,
    write_mix: Vec<u64>,
    origin: Instant,
    stop: AtomicBool,
    verify_epoch: AtomicU64,
    progress: Vec<Progress>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }
}

#[derive(Default)]
struct ThreadReport {
    owned: Owned,
    read_latency: Option<Histogram>,
    write_latency: Option<Histogram>,
    all_latency: Option<Histogram>,
    reads: u64,
    writes: u64,
    writes_applied: u64,
    duplicates: u64,
    errors: u64,
    lost: u64,
    first_error: Option<String>,
}

impl ThreadReport {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(what);
        }
    }
}

fn run_thread(shared: &Shared, index: usize, mut owned: Owned, start: &Barrier) -> ThreadReport {
    let mut rng = Rng(shared
        .args
        .seed
        .wrapping_mul(0x2545_F491_4F6C_DD1D)
        .wrapping_add(index as u64 + 1));
    let progress = &shared.progress[index];
    let value_bytes = shared.args.value_bytes;
    let mut report = ThreadReport::default();
    let mut read_latency = Histogram::new();
    let mut write_latency = Histogram::new();
    let mut next_version = ((index as i64 + 1) << 40) + 1;
    let owned_max = owned_max(shared.args.keys, shared.progress.len());
    let insert_cut = shared.write_mix[0];
    let update_cut = insert_cut + shared.write_mix[1];
    let write_total = update_cut + shared.write_mix[2];
    start.wait();
    while !shared.stop.load(Ordering::Relaxed) {
        let epoch = shared.verify_epoch.load(Ordering::Acquire);
        if epoch > progress.verified_epoch.load(Ordering::Relaxed) {
            progress
                .op_kind
                .store(OpKind::Verify as u8, Ordering::Relaxed);
            progress
                .op_started_ns
                .store(shared.now_ns().max(1), Ordering::Relaxed);
            report.lost += verify_owned(&shared.db, &owned, value_bytes, &mut report);
            progress.op_started_ns.store(0, Ordering::Relaxed);
            progress.verified_epoch.store(epoch, Ordering::Release);
        }
        let is_read = rng.below(1000) < shared.read_per_mille;
        let started = Instant::now();
        if is_read {
            let key = shared.dist.sample(&mut rng);
            progress.op_kind.store(OpKind::Get as u8, Ordering::Relaxed);
            progress.op_key.store(key, Ordering::Relaxed);
            progress
                .op_started_ns
                .store(shared.now_ns().max(1), Ordering::Relaxed);
            match shared.db.get(TABLE, key) {
                Ok(Some(row)) => {
                    // Any row read must be a row some writer wrote for that key.
                    let v = match row.get(1) {
                        Some(Value::Int64(v)) => *v,
                        _ => -1,
                    };
                    if row != make_row(key, v, value_bytes) {
                        report.error(format!("get {key}: malformed row {row:?}"));
                    }
                }
                Ok(None) => {}
                Err(e) => report.error(format!("get {key}: {e}")),
            }
            report.reads += 1;
            read_latency.record(started.elapsed().as_nanos() as u64);
            progress.read_ops.fetch_add(1, Ordering::Relaxed);
        } else {
            let mut choice = rng.below(write_total);
            if choice < insert_cut && owned.keys.len() >= owned_max {
                // Hold each thread near its share of the rows: without this, one thread's
                // count is a random walk, and so is the memory of its record.
                choice = update_cut;
            }
            let target = if choice < insert_cut {
                None
            } else {
                owned.pick(&mut rng)
            };
            match target {
                None => {
                    let key = shared.dist.sample(&mut rng);
                    let version = next_version;
                    next_version += 1;
                    progress
                        .op_kind
                        .store(OpKind::Insert as u8, Ordering::Relaxed);
                    progress.op_key.store(key, Ordering::Relaxed);
                    progress
                        .op_started_ns
                        .store(shared.now_ns().max(1), Ordering::Relaxed);
                    match shared.db.insert(TABLE, make_row(key, version, value_bytes)) {
                        Ok(()) => {
                            if owned.versions.contains_key(&key) {
                                report.error(format!(
                                    "insert {key}: accepted over an acknowledged row"
                                ));
                            }
                            owned.insert(key, version);
                            report.writes_applied += 1;
                        }
                        Err(Error::DuplicateKey { .. }) => report.duplicates += 1,
                        Err(e) => report.error(format!("insert {key}: {e}")),
                    }
                }
                Some((key, _)) if choice < update_cut => {
                    let version = next_version;
                    next_version += 1;
                    progress
                        .op_kind
                        .store(OpKind::Update as u8, Ordering::Relaxed);
                    progress.op_key.store(key, Ordering::Relaxed);
                    progress
                        .op_started_ns
                        .store(shared.now_ns().max(1), Ordering::Relaxed);
                    match shared
                        .db
                        .update(TABLE, key, make_row(key, version, value_bytes))
                    {
                        Ok(()) => {
                            owned.insert(key, version);
                            report.writes_applied += 1;
                        }
                        Err(Error::KeyNotFound { .. }) => {
                            report.lost += 1;
                            report.error(format!(
                                "update {key}: an owned, acknowledged row is missing"
                            ));
                            owned.remove(key);
                        }
                        Err(e) => report.error(format!("update {key}: {e}")),
                    }
                }
                Some((key, _)) => {
                    progress
                        .op_kind
                        .store(OpKind::Delete as u8, Ordering::Relaxed);
                    progress.op_key.store(key, Ordering::Relaxed);
                    progress
                        .op_started_ns
                        .store(shared.now_ns().max(1), Ordering::Relaxed);
                    match shared.db.delete(TABLE, key) {
                        Ok(true) => {
                            owned.remove(key);
                            report.writes_applied += 1;
                        }
                        Ok(false) => {
                            report.lost += 1;
                            report.error(format!(
                                "delete {key}: an owned, acknowledged row is missing"
                            ));
                            owned.remove(key);
                        }
                        Err(e) => report.error(format!("delete {key}: {e}")),
                    }
                }
            }
            report.writes += 1;
            write_latency.record(started.elapsed().as_nanos() as u64);
            progress.write_ops.fetch_add(1, Ordering::Relaxed);
        }
        progress.op_started_ns.store(0, Ordering::Relaxed);
    }
    progress
        .op_kind
        .store(OpKind::Idle as u8, Ordering::Relaxed);
    let mut all = read_latency.clone();
    all.merge(&write_latency);
    report.read_latency = Some(read_latency);
    report.write_latency = Some(write_latency);
    report.all_latency = Some(all);
    report.owned = owned;
    report
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

// ---------------------------------------------------------------------------------------
// Sampling: throughput, RSS, watchdog

/// glibc's `struct mallinfo2` (glibc 2.33 and later).
#[repr(C)]
#[derive(Default)]
struct MallInfo2 {
    arena: usize,
    ordblks: usize,
    smblks: usize,
    hblks: usize,
    hblkhd: usize,
    usmblks: usize,
    fsmblks: usize,
    uordblks: usize,
    fordblks: usize,
    keepcost: usize,
}

extern "C" {
    fn mallinfo2() -> MallInfo2;
}

/// Bytes the program has allocated and not freed (glibc's in-use arena bytes plus mmapped
/// blocks), in KiB. RSS minus this is memory the allocator holds free: growth of this is a
/// leak, growth of RSS alone is the allocator's fragmentation.
fn heap_in_use_kib() -> u64 {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct by value.
    let info = unsafe { mallinfo2() };
    ((info.uordblks + info.hblkhd) / 1024) as u64
}

/// Bytes the program holds allocated, exactly as it asked for them (`Layout::size`), kept by a
/// counting global allocator over the system one once `--live-heap` switches it on. Unlike
/// `mallinfo2`, which counts as in use every chunk glibc has not put back in its bins (chunks
/// parked in the per-thread caches included: up to 7 of each size class up to 1 KiB per
/// thread), this moves only when the program's own data grows or shrinks.
mod live_heap {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicUsize, Ordering};

    /// Counters on separate cache lines, so that threads on different cores rarely write
    /// the same one; a thread keeps its shard for life.
    const SHARDS: usize = 64;

    #[repr(align(128))]
    struct Shard(AtomicIsize);

    static COUNTS: [Shard; SHARDS] = [const { Shard(AtomicIsize::new(0)) }; SHARDS];
    static ENABLED: AtomicBool = AtomicBool::new(false);
    static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        // Constant-initialised and without a destructor: reading it never allocates.
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }

    #[inline]
    fn add(delta: isize) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let shard = SHARD
            .try_with(|cell| {
                let mut shard = cell.get();
                if shard == usize::MAX {
                    shard = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
                    cell.set(shard);
                }
                shard
            })
            .unwrap_or(0);
        COUNTS[shard].0.fetch_add(delta, Ordering::Relaxed);
    }

    pub struct Counting;

    // SAFETY: every call is forwarded to the system allocator unchanged; the counting only
    // adds to atomics and never allocates.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: the caller's contract for `alloc` is passed on as it is.
            let ptr = unsafe { System.alloc(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as for `alloc`.
            let ptr = unsafe { System.alloc_zeroed(layout) };
            if !ptr.is_null() {
                add(layout.size() as isize);
            }
            ptr
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
            unsafe { System.dealloc(ptr, layout) };
            add(-(layout.size() as isize));
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: as for `dealloc`; on failure the old block is left as it was.
            let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
            if !new_ptr.is_null() {
                add(new_size as isize - layout.size() as isize);
            }
            new_ptr
        }
    }

    /// Starts counting; blocks allocated before and freed after make the figure low by
    /// their size (a few KiB of argument parsing).
    pub fn enable() {
        ENABLED.store(true, Ordering::Relaxed);
    }

    pub fn enabled() -> bool {
        ENABLED.load(Ordering::Relaxed)
    }

    /// Bytes allocated and not freed since `enable`, in KiB.
    pub fn kib() -> u64 {
        let bytes: isize = COUNTS
            .iter()
            .map(|shard| shard.0.load(Ordering::Relaxed))
            .sum();
        (bytes.max(0) / 1024) as u64
    }
}

#[global_allocator]
static ALLOCATOR: live_heap::Counting = live_heap::Counting;

fn rss_kib() -> u64 {
    // /proc/self/statm: size resident shared text lib data dt, in pages.
    let Ok(text) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = text
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4 // 4 KiB pages on x86-64 Linux
}

/// CPU time of the whole process so far (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) end at the last ')'.
    let rest = text.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the ')'.
    (ticks(11) + ticks(12)) / 100.0 // USER_HZ is 100 on Linux
}

struct Sample {
    at: Duration,
    reads: u64,
    writes: u64,
    rss_kib: u64,
    heap_kib: u64,
    /// 0 unless `--live-heap`.
    live_kib: u64,
}

fn main() {
    let args = Args::parse();
    if let Err(message) = run(args) {
        eprintln!("omendb-stress: {message}");
        std::process::exit(2);
    }
}

fn run(args: Args) -> Result<(), String> {
    if args.live_heap {
        live_heap::enable();
    }
    let mix = parse_parts(&args.mix, 2, "--mix")?;
    let write_mix = parse_parts(&args.write_mix, 3, "--write-mix")?;
    let sync = parse_sync(&args.sync)?;
    let dist = KeyDist::new(&args.dist, args.keys.max(1))?;
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let threads = args.threads;
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("omendb-stress-{}", std::process::id()))
    });
    if dir.exists() && args.dir.is_none() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("clean {}: {e}", dir.display()))?;
    }
    let options = Options::with_sync(sync);
    let db = Database::open(&dir, options.clone()).map_err(|e| format!("open: {e}"))?;
    if db
        .table_names()
        .map_err(|e| e.to_string())?
        .contains(&TABLE.to_string())
    {
        return Err(format!(
            "{} already holds table {TABLE}; use a fresh --dir",
            dir.display()
        ));
    }
    db.create_table(table_def()).map_err(|e| e.to_string())?;

    // Preload half the key space; key k belongs to thread k % threads.
    let preload_started = Instant::now();
    let mut owned: Vec<Owned> = (0..threads)
        // The preload gives a thread at most ceil(keys / threads) keys: one over its cap.
        .map(|_| Owned::with_capacity(owned_max(args.keys, threads) + 1))
        .collect();
    let mut batch = Vec::new();
    for key in (0..args.keys as i64).step_by(2) {
        let thread = key as usize % threads;
        let version = (thread as i64 + 1) << 40;
        owned[thread].insert(key, version);
        batch.push(make_row(key, version, args.value_bytes));
        if batch.len() == 10_000 {
            db.insert_batch(TABLE, std::mem::take(&mut batch))
                .map_err(|e| format!("preload: {e}"))?;
        }
    }
    if !batch.is_empty() {
        db.insert_batch(TABLE, batch)
            .map_err(|e| format!("preload: {e}"))?;
    }
    db.checkpoint().map_err(|e| format!("checkpoint: {e}"))?;
    eprintln!(
        "preloaded {} rows in {:.1}s into {}",
        args.keys.div_ceil(2),
        preload_started.elapsed().as_secs_f64(),
        dir.display()
    );

    let shared = Arc::new(Shared {
        db,
        read_per_mille: mix[0] * 1000 / (mix[0] + mix[1]),
        write_mix,
        dist,
        origin: Instant::now(),
        stop: AtomicBool::new(false),
        verify_epoch: AtomicU64::new(0),
        progress: (0..threads).map(|_| Progress::default()).collect(),
        args: args.clone(),
    });
    let start = Arc::new(Barrier::new(threads + 1));
    let mut handles = Vec::with_capacity(threads);
    for (index, owned) in owned.into_iter().enumerate() {
        let shared = shared.clone();
        let start = start.clone();
        let handle = std::thread::Builder::new()
            .name(format!("stress-{index}"))
            .stack_size(256 << 10)
            .spawn(move || run_thread(&shared, index, owned, &start))
            .map_err(|e| format!("spawn thread {index}: {e}"))?;
        handles.push(handle);
    }
    // Checkpoints keep the log bounded, as an application would.
    let checkpointer = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("stress-checkpoint".into())
            .spawn(move || {
                let mut done = 0u64;
                let mut errors = Vec::new();
                let mut latency = Histogram::new();
                let every = shared.args.checkpoint_every;
                if every.is_zero() {
                    return (done, errors, latency);
                }
                let mut next = shared.origin + every;
                while !shared.stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now < next {
                        std::thread::sleep((next - now).min(Duration::from_millis(50)));
                        continue;
                    }
                    next += every;
                    let started = Instant::now();
                    match shared.db.checkpoint() {
                        Ok(_) => done += 1,
                        Err(e) => errors.push(format!("checkpoint: {e}")),
                    }
                    latency.record(started.elapsed().as_nanos() as u64);
                }
                (done, errors, latency)
            })
            .map_err(|e| format!("spawn checkpointer: {e}"))?
    };

    let run_started = Instant::now();
    let cpu_started = cpu_seconds();
    start.wait();
    let warmup = args
        .warmup
        .unwrap_or_else(|| (args.duration / 6).min(Duration::from_secs(300)));
    let mut samples = vec![Sample {
        at: Duration::ZERO,
        reads: 0,
        writes: 0,
        rss_kib: rss_kib(),
        heap_kib: heap_in_use_kib(),
        live_kib: live_heap::kib(),
    }];
    let mut stuck_reported = vec![false; threads];
    let mut stuck_threads = 0u64;
    let mut next_sample = run_started + args.sample_every;
    let mut next_verify = run_started + args.verify_every;
    let mut verifications_asked = 0u64;
    let end = run_started + args.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((next_sample.min(end) - now).min(Duration::from_millis(100)));
        let now = Instant::now();
        if args.soak && now >= next_verify && now + args.verify_every / 4 < end {
            verifications_asked += 1;
            shared
                .verify_epoch
                .store(verifications_asked, Ordering::Release);
            next_verify += args.verify_every;
        }
        if now < next_sample && now < end {
            continue;
        }
        next_sample += args.sample_every;
        let at = run_started.elapsed();
        let reads: u64 = shared
            .progress
            .iter()
            .map(|p| p.read_ops.load(Ordering::Relaxed))
            .sum();
        let writes: u64 = shared
            .progress
            .iter()
            .map(|p| p.write_ops.load(Ordering::Relaxed))
            .sum();
        let rss = rss_kib();
        let heap = heap_in_use_kib();
        let live = live_heap::kib();
        let previous = samples.last().expect("a first sample");
        let seconds = (at - previous.at).as_secs_f64().max(1e-9);
        let live_text = if live_heap::enabled() {
            format!(" live={:>7.1}MiB", live as f64 / 1024.0)
        } else {
            String::new()
        };
        eprintln!(
            "t={:>6.1}s ops/s={:>9.0} read/s={:>9.0} write/s={:>9.0} heap={:>7.1}MiB{live_text} rss={:>7.1}MiB",
            at.as_secs_f64(),
            (reads + writes - previous.reads - previous.writes) as f64 / seconds,
            (reads - previous.reads) as f64 / seconds,
            (writes - previous.writes) as f64 / seconds,
            heap as f64 / 1024.0,
            rss as f64 / 1024.0
        );
        samples.push(Sample {
            at,
            reads,
            writes,
            rss_kib: rss,
            heap_kib: heap,
            live_kib: live,
        });
        // Watchdog.
        let now_ns = shared.now_ns();
        for (index, progress) in shared.progress.iter().enumerate() {
            let started = progress.op_started_ns.load(Ordering::Relaxed);
            let running = Duration::from_nanos(now_ns.saturating_sub(started));
            if started != 0 && running > args.stuck_after {
                if !stuck_reported[index] {
                    stuck_reported[index] = true;
                    stuck_threads += 1;
                    eprintln!(
                        "watchdog: thread {index} stuck for {:.1}s in {:?} of key {}",
                        running.as_secs_f64(),
                        OpKind::from_u8(progress.op_kind.load(Ordering::Relaxed)),
                        progress.op_key.load(Ordering::Relaxed)
                    );
                }
            } else {
                stuck_reported[index] = false;
            }
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = run_started.elapsed();
    let cpu_s = cpu_seconds() - cpu_started;
    let mut reports = Vec::with_capacity(threads);
    for handle in handles {
        reports.push(
            handle
                .join()
                .map_err(|_| "a stress thread panicked".to_string())?,
        );
    }
    let (checkpoints, checkpoint_errors, checkpoint_latency) = checkpointer
        .join()
        .map_err(|_| "the checkpoint thread panicked".to_string())?;
    let verifications_done = shared
        .progress
        .iter()
        .map(|p| p.verified_epoch.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);

    // Totals.
    let mut read_latency = Histogram::new();
    let mut write_latency = Histogram::new();
    let mut all_latency = Histogram::new();
    let (mut reads, mut writes, mut applied, mut duplicates, mut errors, mut lost) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut first_errors = Vec::new();
    for report in &reports {
        if let Some(h) = &report.read_latency {
            read_latency.merge(h);
        }
        if let Some(h) = &report.write_latency {
            write_latency.merge(h);
        }
        if let Some(h) = &report.all_latency {
            all_latency.merge(h);
        }
        reads += report.reads;
        writes += report.writes;
        applied += report.writes_applied;
        duplicates += report.duplicates;
        errors += report.errors;
        lost += report.lost;
        first_errors.extend(report.first_error.clone());
    }
    errors += checkpoint_errors.len() as u64;
    first_errors.extend(checkpoint_errors);

    // The merged model: every key owned by exactly one thread.
    let mut model: HashMap<i64, i64> = HashMap::new();
    let mut conflicts = 0u64;
    for report in &reports {
        for (&key, &(_, version)) in &report.owned.versions {
            if model.insert(key, version).is_some() {
                conflicts += 1;
                first_errors.push(format!("key {key} acknowledged as inserted by two threads"));
            }
        }
    }
    let check_started = Instant::now();
    let shared = Arc::try_unwrap(shared).map_err(|_| "threads still hold the database")?;
    let (lost_live, unexpected_live) = check_state(&shared.db, &model, args.value_bytes)?;
    shared.db.check_invariants()?;
    shared.db.close().map_err(|e| format!("close: {e}"))?;
    let db = Database::open(&dir, options).map_err(|e| format!("reopen: {e}"))?;
    let (lost_reopened, unexpected_reopened) = check_state(&db, &model, args.value_bytes)?;
    db.check_invariants()?;
    db.close().map_err(|e| format!("close after reopen: {e}"))?;
    let check_s = check_started.elapsed().as_secs_f64();
    lost += lost_live + lost_reopened;
    let unexpected = unexpected_live + unexpected_reopened + conflicts;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }

    // RSS, heap in use and live bytes: after warm-up, at the end, and the growth between;
    // then throughput of the first and last windows.
    let growth = |kib: fn(&Sample) -> u64| -> (u64, u64, f64) {
        let baseline = samples
            .iter()
            .find(|s| s.at >= warmup)
            .or(samples.last())
            .map_or(0, kib);
        let end = samples.last().map_or(0, kib);
        let pct = if baseline > 0 {
            (end as f64 - baseline as f64) * 100.0 / baseline as f64
        } else {
            0.0
        };
        (baseline, end, pct)
    };
    let (baseline, rss_end, rss_growth_pct) = growth(|s| s.rss_kib);
    let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let (heap_baseline, heap_end, heap_growth_pct) = growth(|s| s.heap_kib);
    let (live_baseline, live_end, live_growth_pct) = growth(|s| s.live_kib);
    let window = (args.duration / 6).min(Duration::from_secs(300));
    let rate = |from: Duration, to: Duration| -> f64 {
        let first = samples
            .iter()
            .rev()
            .find(|s| s.at <= from)
            .or(samples.first());
        let last = samples.iter().find(|s| s.at >= to).or(samples.last());
        match (first, last) {
            (Some(a), Some(b)) if b.at > a.at => {
                (b.reads + b.writes - a.reads - a.writes) as f64 / (b.at - a.at).as_secs_f64()
            }
            _ => 0.0,
        }
    };
    let first_window = rate(Duration::ZERO, window);
    let last_window = rate(elapsed.saturating_sub(window), elapsed);
    let throughput_change_pct = if first_window > 0.0 {
        (last_window - first_window) * 100.0 / first_window
    } else {
        0.0
    };

    let seconds = elapsed.as_secs_f64();
    let ops = reads + writes;
    eprintln!(
        "threads={threads} sync={} mix={} write_mix={} keys={} dist={} duration={seconds:.1}s",
        args.sync, args.mix, args.write_mix, args.keys, args.dist
    );
    eprintln!(
        "ops/s {:.0} (read {:.0}, write {:.0}; {applied} writes applied, {duplicates} duplicate-key rejections)",
        ops as f64 / seconds,
        reads as f64 / seconds,
        writes as f64 / seconds
    );
    eprintln!(
        "cpu {cpu_s:.1} s ({:.2} cores busy, {:.0} ops per cpu-second); load average {}",
        cpu_s / seconds,
        ops as f64 / cpu_s.max(1e-9),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    eprintln!(
        "latency p50 {} ns, p99 {} ns, max {} ns; read p50/p99 {}/{} ns; write p50/p99 {}/{} ns",
        all_latency.quantile_ns(0.5),
        all_latency.quantile_ns(0.99),
        all_latency.max_ns,
        read_latency.quantile_ns(0.5),
        read_latency.quantile_ns(0.99),
        write_latency.quantile_ns(0.5),
        write_latency.quantile_ns(0.99)
    );
    eprintln!(
        "checkpoints {checkpoints} (p99 {:.1} ms); soak verifications {verifications_done}/{verifications_asked}; final check {check_s:.1}s",
        checkpoint_latency.quantile_ns(0.99) as f64 / 1e6
    );
    eprintln!(
        "rss baseline {:.1} MiB after {:.0}s warm-up, end {:.1} MiB, max {:.1} MiB, growth {rss_growth_pct:.2}%",
        baseline as f64 / 1024.0,
        warmup.as_secs_f64(),
        rss_end as f64 / 1024.0,
        rss_max as f64 / 1024.0
    );
    eprintln!(
        "heap in use baseline {:.1} MiB, end {:.1} MiB, growth {heap_growth_pct:.2}%",
        heap_baseline as f64 / 1024.0,
        heap_end as f64 / 1024.0
    );
    if live_heap::enabled() {
        eprintln!(
            "live (allocated by the program) baseline {:.1} MiB, end {:.1} MiB, growth {live_growth_pct:.2}%",
            live_baseline as f64 / 1024.0,
            live_end as f64 / 1024.0
        );
    }
    eprintln!(
        "throughput first {:.0}s {first_window:.0} ops/s, last {:.0}s {last_window:.0} ops/s ({throughput_change_pct:+.1}%)",
        window.as_secs_f64(),
        window.as_secs_f64()
    );
    eprintln!(
        "lost_acknowledged {lost}, unexpected rows {unexpected}, errors {errors}, stuck threads {stuck_threads}"
    );
    for error in first_errors.iter().take(10) {
        eprintln!("  error: {error}");
    }
    println!(
        "{{\"threads\":{threads},\"sync\":\"{}\",\"mix\":\"{}\",\"write_mix\":\"{}\",\"keys\":{},\"dist\":\"{}\",\"soak\":{},\"duration_s\":{seconds:.3},\"cpu_s\":{cpu_s:.2},\"ops_per_cpu_s\":{:.0},\"ops\":{ops},\"ops_per_s\":{:.0},\"read_ops_per_s\":{:.0},\"write_ops_per_s\":{:.0},\"writes_applied\":{applied},\"duplicate_rejections\":{duplicates},\"p50_ns\":{},\"p99_ns\":{},\"max_ns\":{},\"read_p50_ns\":{},\"read_p99_ns\":{},\"write_p50_ns\":{},\"write_p99_ns\":{},\"lost_acknowledged\":{lost},\"unexpected_rows\":{unexpected},\"errors\":{errors},\"stuck_threads\":{stuck_threads},\"checkpoints\":{checkpoints},\"verifications\":{verifications_done},\"rss_baseline_kib\":{baseline},\"rss_end_kib\":{rss_end},\"rss_max_kib\":{rss_max},\"rss_growth_pct\":{rss_growth_pct:.2},\"heap_baseline_kib\":{heap_baseline},\"heap_end_kib\":{heap_end},\"heap_growth_pct\":{heap_growth_pct:.2},\"live_baseline_kib\":{live_baseline},\"live_end_kib\":{live_end},\"live_growth_pct\":{live_growth_pct:.2},\"first_window_ops_per_s\":{first_window:.0},\"last_window_ops_per_s\":{last_window:.0},\"throughput_change_pct\":{throughput_change_pct:.2}}}",
        args.sync,
        args.mix,
        args.write_mix,
        args.keys,
        args.dist,
        args.soak,
        ops as f64 / cpu_s.max(1e-9),
        ops as f64 / seconds,
        reads as f64 / seconds,
        writes as f64 / seconds,
        all_latency.quantile_ns(0.5),
        all_latency.quantile_ns(0.99),
        all_latency.max_ns,
        read_latency.quantile_ns(0.5),
        read_latency.quantile_ns(0.99),
        write_latency.quantile_ns(0.5),
        write_latency.quantile_ns(0.99),
    );
    if lost > 0 || unexpected > 0 || errors > 0 || stuck_threads > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Compares the whole table with the model: returns (acknowledged rows missing or wrong,
/// rows the model does not have).
fn check_state(
    db: &Database,
    model: &HashMap<i64, i64>,
    value_bytes: usize,
) -> Result<(u64, u64), String> {
    let rows = db.scan(TABLE, ..).map_err(|e| format!("scan: {e}"))?;
    let mut lost = 0u64;
    let mut unexpected = 0u64;
    let mut found = 0usize;
    for row in &rows {
        let key = match row.first() {
            Some(Value::Int64(k)) => *k,
            _ => return Err(format!("row without an Int64 key: {row:?}")),
        };
        match model.get(&key) {
            Some(&version) => {
                found += 1;
                if *row != make_row(key, version, value_bytes) {
                    lost += 1;
                }
            }
            None => unexpected += 1,
        }
    }
    lost += (model.len() - found) as u64;
    Ok((lost, unexpected))
}
