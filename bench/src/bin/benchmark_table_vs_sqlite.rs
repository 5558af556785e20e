//! `benchmark_table_vs_sqlite`: an OmenDB table against SQLite on the same workload, with
//! the same durability, in one run.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin benchmark_table_vs_sqlite -- \
//!     --rows 10000000 --dist uniform --sync batch --seed 1
//! ```
//!
//! Each engine runs in its own child process (this binary re-invoked with `--side`), one
//! after the other, so the two never share a CPU, an allocator or a peak-RSS high-water mark
//! (`VmHWM` of `/proc/self/status`). The parent prints a table and, as its last line, one JSON
//! object with every figure and the ratios. `--report FILE.jsonl` turns the JSON lines of many
//! runs into a markdown table of medians and an SVG plot (see scripts/bench-matrix.sh).
//!
//! What makes the comparison fair, and what each figure means:
//! - Schema: `k Int64` primary key, `v Int64`, `f Float64`, `s Utf8` (8-16 chars). SQLite
//!   gets `k INTEGER PRIMARY KEY`, its fastest keyed layout (the table is clustered on k).
//! - Durability: SQLite in WAL mode with `synchronous` matched to our mode: `Durability::Always` ->
//!   FULL (fsync per commit), `Durability::Batch` -> NORMAL (no fsync per commit; WAL synced at
//!   its checkpoints), `Durability::None` -> OFF.
//! - Inserts: the same batches (`--batch` rows, one transaction / one `insert_batch`
//!   each), the same rows in the same order; SQLite uses one prepared INSERT. The timer
//!   covers building each engine's input from the harness's tuples, every commit, every
//!   fsync the mode asks for, and at the end (under `always` and `batch`) the wait until the
//!   last write is on disk: our log's `is_durable`, SQLite's `-wal` file fsynced. Generating
//!   keys is outside the timer on both sides.
//! - Point gets: keys drawn at random from the inserted set (seeded, identical on both
//!   sides), `--warmup` untimed gets first, then `--queries` gets each timed alone (the
//!   clock's own cost is measured and reported as `timer_overhead_ns`, not subtracted). Both
//!   return the same owned tuple `(k, v, f, s)`: ours through `get_with` (reads the row in
//!   place, copies the four values out), SQLite's prepared SELECT reading every column.
//! - Batched gets: the same timed keys again, [`GET_BATCH_KEYS`] per call, the pass timed as
//!   a whole (no clock per get) and reported per key: ours through `get_many_with` (a
//!   pipeline that requests each key's index slot and row ahead, so the misses overlap);
//!   SQLite has no multi-key lookup, so its figure is the same prepared SELECT back to back.
//! - Range scans: the same key ranges of about `--range-rows` rows, zero-copy on both sides
//!   (our `for_each_row`, SQLite's row cursor with borrowed text), summing `v` and `len(s)`.
//! - Full aggregate: `sum(v)` over the table (our `for_each_row`, SQLite's `SELECT sum(v)`),
//!   one untimed pass, then the median of three.
//! - Caches: everything is measured warm. Our hot tier is in memory by design; SQLite gets a
//!   `--sqlite-cache-mib` page cache (1 GiB by default instead of its 2 MiB) and its file sits
//!   in the OS page cache after the load. Cold-cache reads are not measured.
//! - Bytes on disk: after our `checkpoint` + `close` and SQLite's `close` (which checkpoints
//!   its WAL into the database file), the sum of the files left.
//! - Memory the machine lends: `--settle-secs S` waits S seconds before each side starts.
//!   In a VM whose host takes back the memory a guest frees (virtio-balloon free page
//!   reporting, as on the machine of docs/BENCHMARKS.md), memory freed a few seconds ago is
//!   still backed and costs about 25x less to touch first than memory freed longer ago
//!   (`bench_index --touch-mib`). Without the pause a side that starts right after another
//!   process loads faster than one that starts after an idle spell; with it, every side
//!   starts from the same state (20 s was enough there). The pause is outside every phase
//!   timer and is taken out of `wall_s`; `settle_s` records it.

use omendb::{
    Column, DataType, Database, Durability, Options, RowRef, TableDef, Value, ValueRef, Write,
};
use omendb_bench::{dir_bytes, load_average, median, parse_count, status_kb, JsonLine};
use omendb_keygen::{mix64, skewed_low, unit_f64, Dist, Permutation, Zipf};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TABLE: &str = "bench";

type BenchResult<T> = std::result::Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&args) {
        eprintln!("benchmark_table_vs_sqlite: {e}");
        std::process::exit(1);
    }
}

fn run(args: &[String]) -> BenchResult<()> {
    let config = Config::parse(args)?;
    if let Some(input) = &config.report {
        return report(input, config.svg.as_deref());
    }
    match config.side {
        Some(side) => {
            let measures = match side {
                Side::Omendb => omendb_side(&config)?,
                Side::Sqlite => sqlite_side(&config)?,
            };
            println!("{}", measures.to_json());
            Ok(())
        }
        None => compare(args, &config),
    }
}

// ---------------------------------------------------------------------------------------
// Configuration

/// The key distributions this benchmark runs (`--dist`); docs/BENCHMARKS.md says what each
/// models, `omendb_keygen::Dist` what each name means.
const DISTS: [Dist; 6] = [
    Dist::Sequential,
    Dist::Uniform,
    Dist::Zipf,
    Dist::Skewed,
    Dist::Clustered,
    Dist::Timeseries,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncMode {
    Always,
    Batch,
    None,
}

impl SyncMode {
    fn parse(s: &str) -> BenchResult<SyncMode> {
        Ok(match s {
            "always" => SyncMode::Always,
            "batch" => SyncMode::Batch,
            "none" => SyncMode::None,
            _ => return Err(format!("unknown --sync {s:?}")),
        })
    }

    fn name(self) -> &'static str {
        match self {
            SyncMode::Always => "always",
            SyncMode::Batch => "batch",
            SyncMode::None => "none",
        }
    }

    /// SQLite's `synchronous` setting with the same promise, in WAL mode.
    fn sqlite_synchronous(self) -> &'static str {
        match self {
            SyncMode::Always => "FULL",
            SyncMode::Batch => "NORMAL",
            SyncMode::None => "OFF",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Omendb,
    Sqlite,
}

impl Side {
    fn parse(s: &str) -> BenchResult<Side> {
        match s {
            "omendb" => Ok(Side::Omendb),
            "sqlite" => Ok(Side::Sqlite),
            _ => Err(format!("unknown side {s:?} (omendb or sqlite)")),
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    rows: u64,
    dist: Dist,
    sync: SyncMode,
    seed: u64,
    batch_rows: usize,
    queries: usize,
    warmup_queries: usize,
    ranges: usize,
    range_rows: u64,
    batch_delay_ms: u64,
    sqlite_cache_mib: u64,
    repeat_gets: bool,
    settle_secs: u64,
    dir: PathBuf,
    keep: bool,
    side: Option<Side>,
    only: Option<Side>,
    report: Option<PathBuf>,
    svg: Option<PathBuf>,
}

const USAGE: &str = "usage: benchmark_table_vs_sqlite --rows N \
--dist sequential|uniform|zipf|skewed|clustered|timeseries --sync always|batch|none --seed S \
[--batch ROWS=10000] [--queries N=1000000] [--warmup N=100000] [--ranges N=1000] \
[--range-rows N=1000] [--batch-delay-ms MS=10] [--sqlite-cache-mib MIB=1024] \
[--dir PATH=/tmp/omendb-bench] [--keep] [--only omendb|sqlite] [--repeat-gets] \
[--settle-secs S=0]\n   or: benchmark_table_vs_sqlite --report RESULTS.jsonl [--svg OUT.svg]";

impl Config {
    fn parse(args: &[String]) -> BenchResult<Config> {
        let mut config = Config {
            rows: 1_000_000,
            dist: Dist::Uniform,
            sync: SyncMode::Batch,
            seed: 1,
            batch_rows: 10_000,
            queries: 1_000_000,
            warmup_queries: 100_000,
            ranges: 1_000,
            range_rows: 1_000,
            batch_delay_ms: 10,
            sqlite_cache_mib: 1024,
            repeat_gets: false,
            settle_secs: 0,
            dir: std::env::temp_dir().join("omendb-bench"),
            keep: false,
            side: None,
            only: None,
            report: None,
            svg: None,
        };
        let mut i = 0;
        while i < args.len() {
            let flag = args[i].as_str();
            if flag == "--keep" || flag == "--repeat-gets" {
                config.keep |= flag == "--keep";
                config.repeat_gets |= flag == "--repeat-gets";
                i += 1;
                continue;
            }
            if flag == "--help" || flag == "-h" {
                return Err(USAGE.to_string());
            }
            let value = args
                .get(i + 1)
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let number = || parse_count(flag, value);
            match flag {
                "--rows" => config.rows = number()?,
                "--dist" => config.dist = Dist::parse(value, &DISTS)?,
                "--sync" => config.sync = SyncMode::parse(value)?,
                "--seed" => config.seed = number()?,
                "--batch" => config.batch_rows = number()? as usize,
                "--queries" => config.queries = number()? as usize,
                "--warmup" => config.warmup_queries = number()? as usize,
                "--ranges" => config.ranges = number()? as usize,
                "--range-rows" => config.range_rows = number()?,
                "--batch-delay-ms" => config.batch_delay_ms = number()?,
                "--sqlite-cache-mib" => config.sqlite_cache_mib = number()?,
                "--settle-secs" => config.settle_secs = number()?,
                "--dir" => config.dir = PathBuf::from(value),
                "--report" => config.report = Some(PathBuf::from(value)),
                "--svg" => config.svg = Some(PathBuf::from(value)),
                "--side" => config.side = Some(Side::parse(value)?),
                "--only" => config.only = Some(Side::parse(value)?),
                _ => return Err(format!("unknown flag {flag:?}\n{USAGE}")),
            }
            i += 2;
        }
        if config.rows == 0 || config.batch_rows == 0 || config.queries == 0 {
            return Err("--rows, --batch and --queries must be positive".into());
        }
        if config.batch_rows > omendb::limits::BATCH_ROWS_MAX {
            return Err(format!(
                "--batch {} is over BATCH_ROWS_MAX {}",
                config.batch_rows,
                omendb::limits::BATCH_ROWS_MAX
            ));
        }
        Ok(config)
    }
}

// ---------------------------------------------------------------------------------------
// Workload: every key is a pure function of its insertion index, so neither side keeps a
// key list in memory (it would count in its peak RSS), and queries pick a random index.

/// Up to 1,024 clusters, each at least 4,096 rows long (fewer clusters in small runs).
const CLUSTERS_MAX: u64 = 1024;
const CLUSTER_ROWS_MIN: u64 = 4096;
const TIMESERIES_START_US: i64 = 1_700_000_000_000_000;
const TIMESERIES_STEP_US: i64 = 1_000;

/// The keys of one run. See docs/BENCHMARKS.md for what each distribution models.
#[derive(Debug, Clone)]
struct Workload {
    rows: u64,
    dist: Dist,
    seed_mix: u64,
    order: Permutation,
    local_order: Permutation,
    clusters: u64,
}

impl Workload {
    fn new(config: &Config) -> Workload {
        Workload {
            rows: config.rows,
            dist: config.dist,
            seed_mix: mix64(config.seed ^ 0x0123_4567_89ab_cdef),
            order: Permutation::new(config.rows, config.seed),
            local_order: Permutation::new(64, config.seed ^ 1),
            clusters: (config.rows / CLUSTER_ROWS_MIN).clamp(1, CLUSTERS_MAX),
        }
    }

    /// The key inserted `index`-th (distinct for distinct indexes below `rows`).
    fn key_at(&self, index: u64) -> i64 {
        match self.dist {
            Dist::Sequential => index as i64,
            // A bijection of the index: distinct keys spread over all of i64.
            Dist::Uniform | Dist::Zipf => mix64(index ^ self.seed_mix) as i64,
            Dist::Skewed => self.skewed_key(self.order.apply(index)),
            Dist::Clustered => {
                let (cluster, offset) = (index % self.clusters, index / self.clusters);
                self.cluster_base(cluster) + offset as i64
            }
            Dist::Timeseries => self.timeseries_key(self.timeseries_position(index)),
            other => unreachable!("--dist {} is not in DISTS", other.name()),
        }
    }

    /// The `rank`-th smallest key of the skewed set: dense at the bottom of the key space,
    /// ever sparser above (a sixth-power CDF over 2^56), strictly increasing in `rank`.
    fn skewed_key(&self, rank: u64) -> i64 {
        let fraction = rank as f64 / self.rows as f64;
        rank as i64 + skewed_low(fraction, 6, 1 << 56) as i64
    }

    /// Clusters are 2^40 apart, each starting at a random offset below 2^39.
    fn cluster_base(&self, cluster: u64) -> i64 {
        ((cluster << 40) + (mix64(cluster ^ self.seed_mix) & ((1 << 39) - 1))) as i64
    }

    fn cluster_len(&self, cluster: u64) -> u64 {
        self.rows / self.clusters + u64::from(cluster < self.rows % self.clusters)
    }

    /// A reading every millisecond with up to a millisecond of jitter: strictly increasing
    /// in `position`.
    fn timeseries_key(&self, position: u64) -> i64 {
        let jitter = (mix64(position ^ self.seed_mix) % TIMESERIES_STEP_US as u64) as i64;
        TIMESERIES_START_US + position as i64 * TIMESERIES_STEP_US + jitter
    }

    /// Arrival order: in time order, except that one block of 64 readings in 8 arrives
    /// shuffled (late and early arrivals within 64 positions).
    fn timeseries_position(&self, index: u64) -> u64 {
        let block = index / 64;
        let block_full = (block + 1) * 64 <= self.rows;
        if block_full && mix64(block ^ self.seed_mix) & 7 == 0 {
            block * 64 + self.local_order.apply(index % 64)
        } else {
            index
        }
    }

    /// A key range holding about `range_rows` rows (exactly, except for the hashed and
    /// clustered sets near their ends), starting at a random inserted key.
    fn range(&self, rng: &mut ChaCha8Rng, range_rows: u64) -> (i64, i64) {
        let span = range_rows.min(self.rows);
        let rank = rng.random_range(0..=self.rows - span);
        match self.dist {
            Dist::Sequential => (rank as i64, (rank + span) as i64),
            Dist::Skewed => (self.skewed_key(rank), self.skewed_key_end(rank + span)),
            Dist::Timeseries => (
                self.timeseries_key(rank),
                self.timeseries_key_end(rank + span),
            ),
            Dist::Uniform | Dist::Zipf => {
                let low = self.key_at(rng.random_range(0..self.rows));
                let width = ((span as u128) << 64) / u128::from(self.rows);
                let width = i64::try_from(width).unwrap_or(i64::MAX);
                (low, low.saturating_add(width))
            }
            Dist::Clustered => {
                let cluster = rng.random_range(0..self.clusters);
                let len = self.cluster_len(cluster);
                let offset = rng.random_range(0..=len - span.min(len));
                let low = self.cluster_base(cluster) + offset as i64;
                (low, low + span as i64)
            }
            other => unreachable!("--dist {} is not in DISTS", other.name()),
        }
    }

    fn skewed_key_end(&self, rank: u64) -> i64 {
        if rank >= self.rows {
            i64::MAX
        } else {
            self.skewed_key(rank)
        }
    }

    fn timeseries_key_end(&self, position: u64) -> i64 {
        if position >= self.rows {
            i64::MAX
        } else {
            self.timeseries_key(position)
        }
    }

    /// Point-get keys, identical on both sides: uniform over the inserted set, or under
    /// `zipf` YCSB's Zipfian popularity (theta 0.99, `omendb_keygen::Zipf`) with the popular
    /// keys scattered by a seeded permutation.
    fn query_keys(&self, seed: u64, count: usize) -> BenchResult<Vec<i64>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        if self.dist == Dist::Zipf {
            let zipf = Zipf::new(self.rows, Zipf::THETA_YCSB)?;
            let hot = Permutation::new(self.rows, seed ^ 2);
            Ok((0..count)
                .map(|_| self.key_at(hot.apply(zipf.rank(unit_f64(rng.random::<u64>())))))
                .collect())
        } else {
            Ok((0..count)
                .map(|_| self.key_at(rng.random_range(0..self.rows)))
                .collect())
        }
    }
}

/// One row as the harness generates it, before either engine sees it.
#[derive(Debug, Clone, Copy)]
struct Tuple {
    k: i64,
    v: i64,
    f: f64,
    s_bytes: [u8; 16],
    s_len: u8,
}

impl Tuple {
    fn of_key(k: i64) -> Tuple {
        let h = mix64(k as u64 ^ 0xa076_1d64_78bd_642f);
        let g = mix64(h);
        let s_len = 8 + (h % 9) as u8;
        let mut s_bytes = [0u8; 16];
        for (i, byte) in s_bytes.iter_mut().enumerate() {
            *byte = b'a' + ((g >> (i * 4)) & 0xf) as u8;
        }
        Tuple {
            k,
            v: (h >> 20) as i64 % 1_000_000,
            f: (g >> 11) as f64 / (1u64 << 53) as f64,
            s_bytes,
            s_len,
        }
    }

    fn s(&self) -> &str {
        std::str::from_utf8(&self.s_bytes[..self.s_len as usize]).unwrap_or("")
    }
}

fn fill_batch(workload: &Workload, start: u64, end: u64, out: &mut Vec<Tuple>) {
    out.clear();
    out.extend((start..end).map(|i| Tuple::of_key(workload.key_at(i))));
}

// ---------------------------------------------------------------------------------------
// Measures of one side: a `JsonLine` each, and one for the comparison

/// The `q` quantile of ascending `sorted` (nearest rank); `sorted` is not empty.
fn quantile(sorted: &[u64], q: f64) -> u64 {
    let n = sorted.len();
    sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
}

fn percentiles(latencies_ns: &mut [u64], measures: &mut JsonLine) {
    latencies_ns.sort_unstable();
    let n = latencies_ns.len();
    let at = |q: f64| quantile(latencies_ns, q) as f64;
    measures.set("get_p50_ns", at(0.50));
    measures.set("get_p99_ns", at(0.99));
    measures.set("get_p999_ns", at(0.999));
    measures.set("get_max_ns", latencies_ns[n - 1] as f64);
    let sum: u64 = latencies_ns.iter().sum();
    measures.set("get_mean_ns", sum as f64 / n as f64);
}

/// `--repeat-gets`: times the same gets again, in the same order, to tell a slow key from a
/// slow moment. Sets `get_repeat_p50_ns`/`_p99_ns`/`_p999_ns`, and `get_slow_repeat_fraction`:
/// of the gets at or above the first round's p99, the fraction at or above the second
/// round's p99 again (about 0.01 if slowness is the moment's, near 1 if it is the key's).
fn repeat_gets(
    db: &Database,
    keys: &[i64],
    first_ns: &[u64],
    measures: &mut JsonLine,
) -> BenchResult<()> {
    let mut again_ns = Vec::with_capacity(keys.len());
    for &key in keys {
        let started = Instant::now();
        let row = db
            .get_with(TABLE, key, read_row)
            .map_err(|err| format!("omendb get: {err}"))?;
        black_box(row);
        again_ns.push(started.elapsed().as_nanos() as u64);
    }
    let sorted = |latencies: &[u64]| {
        let mut sorted = latencies.to_vec();
        sorted.sort_unstable();
        sorted
    };
    let (first_sorted, again_sorted) = (sorted(first_ns), sorted(&again_ns));
    let (first_p99, again_p99) = (quantile(&first_sorted, 0.99), quantile(&again_sorted, 0.99));
    let slow_first: Vec<usize> = (0..keys.len())
        .filter(|&i| first_ns[i] >= first_p99)
        .collect();
    let slow_both = slow_first
        .iter()
        .filter(|&&i| again_ns[i] >= again_p99)
        .count();
    measures.set("get_repeat_p50_ns", quantile(&again_sorted, 0.50) as f64);
    measures.set("get_repeat_p99_ns", again_p99 as f64);
    measures.set("get_repeat_p999_ns", quantile(&again_sorted, 0.999) as f64);
    measures.set(
        "get_slow_repeat_fraction",
        slow_both as f64 / slow_first.len().max(1) as f64,
    );
    Ok(())
}

/// Median cost of reading the clock once (`Instant::now` pairs back to back).
fn timer_overhead_ns() -> f64 {
    let mut samples: Vec<u64> = (0..10_001)
        .map(|_| {
            let started = Instant::now();
            black_box(started.elapsed().as_nanos() as u64)
        })
        .collect();
    samples.sort_unstable();
    samples[samples.len() / 2] as f64
}

/// The main thread's (time on a CPU, time runnable but waiting for one), in seconds, from
/// `/proc/self/schedstat`: how much of a phase's wall time the machine's other load took.
fn sched_seconds() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/self/schedstat").unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<f64>().unwrap_or(f64::NAN));
    let on_cpu_ns = fields.next().unwrap_or(f64::NAN);
    let waiting_ns = fields.next().unwrap_or(f64::NAN);
    (on_cpu_ns / 1e9, waiting_ns / 1e9)
}

fn set_sched(measures: &mut JsonLine, phase: &str, before: (f64, f64)) {
    let after = sched_seconds();
    measures.set(&format!("{phase}_on_cpu_s"), after.0 - before.0);
    measures.set(&format!("{phase}_runqueue_wait_s"), after.1 - before.1);
}

/// `/proc/self/status` field `name` (`VmRSS`, `VmHWM`) in bytes.
fn status_bytes(name: &str) -> f64 {
    status_kb(&format!("{name}:")) as f64 * 1024.0
}

fn fresh_dir(path: &Path) -> BenchResult<()> {
    if path.exists() {
        std::fs::remove_dir_all(path).map_err(|e| format!("remove {}: {e}", path.display()))?;
    }
    std::fs::create_dir_all(path).map_err(|e| format!("create {}: {e}", path.display()))
}

const AGGREGATE_PASSES: usize = 3;

fn common_measures(config: &Config, side: &str) -> JsonLine {
    let mut measures = JsonLine::default();
    measures.set_text("side", side);
    measures.set("timer_overhead_ns", timer_overhead_ns());
    measures.set("rows", config.rows as f64);
    measures
}

// ---------------------------------------------------------------------------------------
// OmenDB

/// What a point get returns on both sides: every column, owned (SQLite's side reads the
/// same four columns into the same tuple).
/// Keys per call in the batched-get pass: a modest batch, like one page of a lookup join.
const GET_BATCH_KEYS: usize = 64;

fn read_row(row: RowRef<'_>) -> (i64, i64, f64, String) {
    (
        row.key(),
        row.value(1).as_i64().unwrap_or(0),
        row.value(2).as_f64().unwrap_or(0.0),
        row.value(3).as_str().unwrap_or("").to_string(),
    )
}

fn omendb_side(config: &Config) -> BenchResult<JsonLine> {
    let workload = Workload::new(config);
    let dir = config.dir.join("omendb");
    fresh_dir(&dir)?;
    let e = |what: &'static str| move |err: omendb::Error| format!("omendb {what}: {err}");
    let sync = match config.sync {
        SyncMode::Always => Durability::Always,
        SyncMode::Batch => Durability::Batch {
            max_delay: Duration::from_millis(config.batch_delay_ms),
        },
        SyncMode::None => Durability::None,
    };
    let mut measures = common_measures(config, "omendb");
    let db = Database::open(&dir, Options::with_sync(sync)).map_err(e("open"))?;
    let def = TableDef::new(
        TABLE,
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("f", DataType::Float64),
            Column::new("s", DataType::Utf8),
        ],
    )
    .map_err(e("table definition"))?;
    db.create_table(def).map_err(e("create table"))?;

    // Insert.
    let sched_before = sched_seconds();
    let mut tuples = Vec::with_capacity(config.batch_rows);
    let mut insert_time = Duration::ZERO;
    let mut last_ticket = None;
    let mut start = 0;
    while start < config.rows {
        let end = (start + config.batch_rows as u64).min(config.rows);
        fill_batch(&workload, start, end, &mut tuples);
        let started = Instant::now();
        let rows = tuples
            .iter()
            .map(|t| {
                vec![
                    Value::Int64(t.k),
                    Value::Int64(t.v),
                    Value::Float64(t.f),
                    Value::Utf8(t.s().to_string()),
                ]
            })
            .collect();
        let ticket = db
            .submit(Write::Insert {
                table: TABLE.to_string(),
                rows,
            })
            .map_err(e("insert"))?;
        db.wait(ticket).map_err(e("commit"))?;
        insert_time += started.elapsed();
        last_ticket = Some(ticket);
        start = end;
    }
    // Under `batch`, ingest ends when the last write is on disk (the worker's fsync).
    let started = Instant::now();
    if let (SyncMode::Batch, Some(ticket)) = (config.sync, last_ticket) {
        while !db.is_durable(ticket).map_err(e("durability"))? {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    insert_time += started.elapsed();
    set_sched(&mut measures, "insert", sched_before);
    measures.set("insert_s", insert_time.as_secs_f64());
    measures.set(
        "insert_rows_per_s",
        config.rows as f64 / insert_time.as_secs_f64(),
    );
    measures.set("rss_after_insert_bytes", status_bytes("VmRSS"));
    let count = db.row_count(TABLE).map_err(e("row count"))?;
    if count as u64 != config.rows {
        return Err(format!(
            "omendb holds {count} rows, expected {}",
            config.rows
        ));
    }
    measures.set(
        "index_bytes",
        db.index_bytes(TABLE).map_err(e("index bytes"))? as f64,
    );

    // Point gets.
    let keys = workload.query_keys(config.seed, config.warmup_queries + config.queries)?;
    let (warmup, timed) = keys.split_at(config.warmup_queries);
    let mut checksum = 0i64;
    for &key in warmup {
        let row = db.get_with(TABLE, key, read_row).map_err(e("get"))?;
        checksum = checksum.wrapping_add(black_box(row).map_or(0, |r| r.1));
    }
    let sched_before = sched_seconds();
    let mut latencies_ns = Vec::with_capacity(timed.len());
    let mut found = 0usize;
    let started_all = Instant::now();
    for &key in timed {
        let started = Instant::now();
        let row = db.get_with(TABLE, key, read_row).map_err(e("get"))?;
        let row = black_box(row);
        latencies_ns.push(started.elapsed().as_nanos() as u64);
        if let Some(row) = row {
            checksum = checksum.wrapping_add(row.1);
            found += 1;
        }
    }
    measures.set(
        "get_per_s",
        timed.len() as f64 / started_all.elapsed().as_secs_f64(),
    );
    if found != timed.len() {
        return Err(format!("omendb found {found} of {} keys", timed.len()));
    }
    set_sched(&mut measures, "get", sched_before);
    if config.repeat_gets {
        repeat_gets(&db, timed, &latencies_ns, &mut measures)?;
    }
    percentiles(&mut latencies_ns, &mut measures);

    // Batched gets: the same keys, GET_BATCH_KEYS per call, timed as a whole.
    let mut found = 0usize;
    let started = Instant::now();
    for batch in timed.chunks(GET_BATCH_KEYS) {
        db.get_many_with(TABLE, batch, |_, row| {
            let row = black_box(read_row(row));
            checksum = checksum.wrapping_add(row.1);
            found += 1;
        })
        .map_err(e("get_many"))?;
    }
    measures.set(
        "get_batched_ns_per_key",
        started.elapsed().as_nanos() as f64 / timed.len() as f64,
    );
    if found != timed.len() {
        return Err(format!(
            "omendb get_many found {found} of {} keys",
            timed.len()
        ));
    }
    drop(keys);
    measures.set("rss_after_gets_bytes", status_bytes("VmRSS"));
    measures.set("peak_rss_before_checkpoint_bytes", status_bytes("VmHWM"));

    // Range scans.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x3c6e_f372_fe94_f82b);
    let ranges: Vec<(i64, i64)> = (0..config.ranges + config.ranges / 10)
        .map(|_| workload.range(&mut rng, config.range_rows))
        .collect();
    let (warmup, timed) = ranges.split_at(config.ranges / 10);
    let mut visit = |low: i64, high: i64, rows: &mut u64| -> BenchResult<()> {
        db.for_each_row(TABLE, low..high, |row| {
            if let (Some(ValueRef::Int64(v)), Some(ValueRef::Utf8(s))) = (row.get(1), row.get(3)) {
                checksum = checksum.wrapping_add(v + s.len() as i64);
            }
            *rows += 1;
        })
        .map_err(e("range scan"))
    };
    let mut range_rows = 0u64;
    for &(low, high) in warmup {
        visit(low, high, &mut range_rows)?;
    }
    range_rows = 0;
    let started = Instant::now();
    for &(low, high) in timed {
        visit(low, high, &mut range_rows)?;
    }
    let range_time = started.elapsed().as_secs_f64();
    measures.set("range_rows_total", range_rows as f64);
    measures.set("range_rows_per_s", range_rows as f64 / range_time);

    // Full aggregate: one untimed pass, then the median of the timed ones.
    let mut aggregate_rates = Vec::new();
    for pass in 0..=AGGREGATE_PASSES {
        let started = Instant::now();
        let mut sum = 0i64;
        let mut rows = 0u64;
        db.for_each_row(TABLE, .., |row| {
            if let Some(ValueRef::Int64(v)) = row.get(1) {
                sum = sum.wrapping_add(v);
            }
            rows += 1;
        })
        .map_err(e("aggregate"))?;
        let seconds = started.elapsed().as_secs_f64();
        checksum = checksum.wrapping_add(black_box(sum));
        if rows != config.rows {
            return Err(format!("omendb aggregate saw {rows} rows"));
        }
        if pass > 0 {
            aggregate_rates.push(rows as f64 / seconds);
        }
    }
    measures.set("agg_rows_per_s", median(aggregate_rates));
    measures.set("checksum", (checksum & 0xffff_ffff) as f64);

    // Checkpoint and close; then what is left on disk.
    measures.set("wal_bytes", dir_bytes(&dir) as f64);
    let started = Instant::now();
    db.checkpoint().map_err(e("checkpoint"))?;
    measures.set("checkpoint_s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    db.close().map_err(e("close"))?;
    measures.set("close_s", started.elapsed().as_secs_f64());
    measures.set("disk_bytes", dir_bytes(&dir) as f64);
    measures.set("peak_rss_bytes", status_bytes("VmHWM"));
    if !config.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(measures)
}

// ---------------------------------------------------------------------------------------
// SQLite

fn sqlite_side(config: &Config) -> BenchResult<JsonLine> {
    use rusqlite::{params, Connection};
    let workload = Workload::new(config);
    let dir = config.dir.join("sqlite");
    fresh_dir(&dir)?;
    let path = dir.join("bench.sqlite");
    let e = |what: &'static str| move |err: rusqlite::Error| format!("sqlite {what}: {err}");
    let mut measures = common_measures(config, "sqlite");
    measures.set_text("sqlite_version", rusqlite::version());
    let conn = Connection::open(&path).map_err(e("open"))?;
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(e("journal_mode"))?;
    if !journal.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite refused WAL mode: {journal}"));
    }
    conn.pragma_update(None, "synchronous", config.sync.sqlite_synchronous())
        .map_err(e("synchronous"))?;
    let cache_kib = -(config.sqlite_cache_mib as i64 * 1024);
    conn.pragma_update(None, "cache_size", cache_kib)
        .map_err(e("cache_size"))?;
    conn.execute_batch(
        "CREATE TABLE bench (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, \
         f REAL NOT NULL, s TEXT NOT NULL)",
    )
    .map_err(e("create table"))?;

    // Insert.
    let sched_before = sched_seconds();
    let mut begin = conn.prepare("BEGIN").map_err(e("prepare"))?;
    let mut commit = conn.prepare("COMMIT").map_err(e("prepare"))?;
    let mut insert = conn
        .prepare("INSERT INTO bench (k, v, f, s) VALUES (?1, ?2, ?3, ?4)")
        .map_err(e("prepare"))?;
    let mut tuples = Vec::with_capacity(config.batch_rows);
    let mut insert_time = Duration::ZERO;
    let mut start = 0;
    while start < config.rows {
        let end = (start + config.batch_rows as u64).min(config.rows);
        fill_batch(&workload, start, end, &mut tuples);
        let started = Instant::now();
        begin.execute([]).map_err(e("begin"))?;
        for t in &tuples {
            insert
                .execute(params![t.k, t.v, t.f, t.s()])
                .map_err(e("insert"))?;
        }
        commit.execute([]).map_err(e("commit"))?;
        insert_time += started.elapsed();
        start = end;
    }
    // Under `batch` (synchronous=NORMAL) the WAL is synced only at SQLite's checkpoints:
    // ingest ends when the WAL's tail is on disk, as ours does.
    let started = Instant::now();
    if config.sync == SyncMode::Batch {
        let wal = dir.join("bench.sqlite-wal");
        std::fs::File::open(&wal)
            .and_then(|f| f.sync_all())
            .map_err(|err| format!("fsync {}: {err}", wal.display()))?;
    }
    insert_time += started.elapsed();
    drop((begin, commit, insert));
    set_sched(&mut measures, "insert", sched_before);
    measures.set("insert_s", insert_time.as_secs_f64());
    measures.set(
        "insert_rows_per_s",
        config.rows as f64 / insert_time.as_secs_f64(),
    );
    measures.set("rss_after_insert_bytes", status_bytes("VmRSS"));
    let count: i64 = conn
        .query_row("SELECT count(*) FROM bench", [], |row| row.get(0))
        .map_err(e("count"))?;
    if count as u64 != config.rows {
        return Err(format!(
            "sqlite holds {count} rows, expected {}",
            config.rows
        ));
    }

    // Point gets.
    let keys = workload.query_keys(config.seed, config.warmup_queries + config.queries)?;
    let (warmup, timed) = keys.split_at(config.warmup_queries);
    let mut get = conn
        .prepare("SELECT k, v, f, s FROM bench WHERE k = ?1")
        .map_err(e("prepare"))?;
    let read_row = |row: &rusqlite::Row<'_>| -> rusqlite::Result<(i64, i64, f64, String)> {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
    };
    let mut checksum = 0i64;
    for &key in warmup {
        let row = get.query_row([key], read_row).map_err(e("get"))?;
        checksum = checksum.wrapping_add(black_box(row).1);
    }
    let sched_before = sched_seconds();
    let mut latencies_ns = Vec::with_capacity(timed.len());
    let started_all = Instant::now();
    for &key in timed {
        let started = Instant::now();
        let row = get.query_row([key], read_row).map_err(e("get"))?;
        let row = black_box(row);
        latencies_ns.push(started.elapsed().as_nanos() as u64);
        checksum = checksum.wrapping_add(row.1);
    }
    measures.set(
        "get_per_s",
        timed.len() as f64 / started_all.elapsed().as_secs_f64(),
    );
    set_sched(&mut measures, "get", sched_before);
    percentiles(&mut latencies_ns, &mut measures);

    // Batched gets: SQLite has no multi-key lookup; the same prepared SELECT back to back,
    // timed as a whole like ours.
    let started = Instant::now();
    for &key in timed {
        let row = get.query_row([key], read_row).map_err(e("get"))?;
        checksum = checksum.wrapping_add(black_box(row).1);
    }
    measures.set(
        "get_batched_ns_per_key",
        started.elapsed().as_nanos() as f64 / timed.len() as f64,
    );
    drop(keys);
    drop(get);

    // Range scans.
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0x3c6e_f372_fe94_f82b);
    let ranges: Vec<(i64, i64)> = (0..config.ranges + config.ranges / 10)
        .map(|_| workload.range(&mut rng, config.range_rows))
        .collect();
    let (warmup, timed) = ranges.split_at(config.ranges / 10);
    let mut scan = conn
        .prepare("SELECT k, v, f, s FROM bench WHERE k >= ?1 AND k < ?2")
        .map_err(e("prepare"))?;
    let mut visit = |low: i64, high: i64, rows: &mut u64| -> BenchResult<()> {
        let mut cursor = scan.query([low, high]).map_err(e("range scan"))?;
        while let Some(row) = cursor.next().map_err(e("range scan"))? {
            let v: i64 = row.get(1).map_err(e("range scan"))?;
            let s = row
                .get_ref(3)
                .and_then(|s| s.as_str().map_err(Into::into))
                .map_err(e("range scan"))?;
            checksum = checksum.wrapping_add(v + s.len() as i64);
            *rows += 1;
        }
        Ok(())
    };
    let mut range_rows = 0u64;
    for &(low, high) in warmup {
        visit(low, high, &mut range_rows)?;
    }
    range_rows = 0;
    let started = Instant::now();
    for &(low, high) in timed {
        visit(low, high, &mut range_rows)?;
    }
    let range_time = started.elapsed().as_secs_f64();
    drop(scan);
    measures.set("range_rows_total", range_rows as f64);
    measures.set("range_rows_per_s", range_rows as f64 / range_time);

    // Full aggregate.
    let mut aggregate = conn
        .prepare("SELECT sum(v), count(*) FROM bench")
        .map_err(e("prepare"))?;
    let mut aggregate_rates = Vec::new();
    for pass in 0..=AGGREGATE_PASSES {
        let started = Instant::now();
        let (sum, rows): (i64, i64) = aggregate
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(e("aggregate"))?;
        let seconds = started.elapsed().as_secs_f64();
        checksum = checksum.wrapping_add(black_box(sum));
        if rows as u64 != config.rows {
            return Err(format!("sqlite aggregate saw {rows} rows"));
        }
        if pass > 0 {
            aggregate_rates.push(rows as f64 / seconds);
        }
    }
    drop(aggregate);
    measures.set("agg_rows_per_s", median(aggregate_rates));
    measures.set("checksum", (checksum & 0xffff_ffff) as f64);

    // Close: SQLite checkpoints its WAL into the database file and removes it.
    measures.set("wal_bytes", dir_bytes(&dir) as f64);
    let started = Instant::now();
    conn.close()
        .map_err(|(_, err)| format!("sqlite close: {err}"))?;
    measures.set("close_s", started.elapsed().as_secs_f64());
    measures.set("disk_bytes", dir_bytes(&dir) as f64);
    measures.set("peak_rss_bytes", status_bytes("VmHWM"));
    if !config.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(measures)
}

// ---------------------------------------------------------------------------------------
// The comparison

/// The label of the primary index in every result (`--report` groups runs by it): the
/// index type the engine's tables use, `pub(crate) type Index = AlexIndex` in table.rs.
const INDEX_LABEL: &str = "AlexIndex";

fn run_side(args: &[String], side: &str, settle_secs: u64) -> BenchResult<JsonLine> {
    if settle_secs > 0 {
        eprintln!("benchmark_table_vs_sqlite: settling {settle_secs} s before the {side} side");
        std::thread::sleep(Duration::from_secs(settle_secs));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let output = Command::new(exe)
        .args(args)
        .args(["--side", side])
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("run the {side} side: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the {side} side failed ({}): {stdout}",
            output.status
        ));
    }
    let last = stdout.lines().last().unwrap_or("");
    JsonLine::from_json(last)
}

const SIDE_FIELDS: &[&str] = &[
    "insert_rows_per_s",
    "insert_s",
    "insert_on_cpu_s",
    "insert_runqueue_wait_s",
    "get_on_cpu_s",
    "get_runqueue_wait_s",
    "get_p50_ns",
    "get_p99_ns",
    "get_p999_ns",
    "get_max_ns",
    "get_mean_ns",
    "get_per_s",
    "get_batched_ns_per_key",
    "get_repeat_p50_ns",
    "get_repeat_p99_ns",
    "get_repeat_p999_ns",
    "get_slow_repeat_fraction",
    "range_rows_per_s",
    "range_rows_total",
    "agg_rows_per_s",
    "rss_after_insert_bytes",
    "rss_after_gets_bytes",
    "peak_rss_before_checkpoint_bytes",
    "peak_rss_bytes",
    "wal_bytes",
    "disk_bytes",
    "close_s",
    "checkpoint_s",
    "index_bytes",
    "timer_overhead_ns",
    "checksum",
];

fn compare(args: &[String], config: &Config) -> BenchResult<()> {
    let load_start = load_average();
    let started = Instant::now();
    eprintln!(
        "benchmark_table_vs_sqlite: {} rows, {} keys, sync {}, seed {}, index {}",
        config.rows,
        config.dist.name(),
        config.sync.name(),
        config.seed,
        INDEX_LABEL
    );
    // `--only` runs one side (for scales where the other would not fit or finish); the
    // ratios are then null.
    let ours = match config.only {
        Some(Side::Sqlite) => JsonLine::default(),
        _ => run_side(args, "omendb", config.settle_secs)?,
    };
    let theirs = match config.only {
        Some(Side::Omendb) => JsonLine::default(),
        _ => run_side(args, "sqlite", config.settle_secs)?,
    };
    let mut all = JsonLine::default();
    all.set("rows", config.rows as f64);
    all.set_text("dist", config.dist.name());
    all.set_text("sync", config.sync.name());
    all.set_text("sqlite_synchronous", config.sync.sqlite_synchronous());
    all.set_text("sqlite_journal_mode", "WAL");
    all.set_text("sqlite_version", &theirs.text("sqlite_version"));
    if let Some(only) = config.only {
        all.set_text(
            "only",
            if only == Side::Omendb {
                "omendb"
            } else {
                "sqlite"
            },
        );
    }
    all.set("sqlite_cache_mib", config.sqlite_cache_mib as f64);
    all.set("settle_s", config.settle_secs as f64);
    all.set_text("index", INDEX_LABEL);
    all.set("seed", config.seed as f64);
    all.set("batch_rows", config.batch_rows as f64);
    all.set("batch_delay_ms", config.batch_delay_ms as f64);
    all.set("queries", config.queries as f64);
    all.set("warmup_queries", config.warmup_queries as f64);
    all.set("ranges", config.ranges as f64);
    all.set("range_rows", config.range_rows as f64);
    for field in SIDE_FIELDS {
        for (prefix, side) in [("omendb", &ours), ("sqlite", &theirs)] {
            let value = side.number(field);
            if !value.is_nan() {
                all.set(&format!("{prefix}_{field}"), value);
            }
        }
    }
    let ratio = |ours_over_theirs: bool, field: &str| {
        let (a, b) = (ours.number(field), theirs.number(field));
        if ours_over_theirs {
            a / b
        } else {
            b / a
        }
    };
    all.set("get_speedup", ratio(false, "get_p50_ns"));
    all.set("get_p99_speedup", ratio(false, "get_p99_ns"));
    all.set(
        "get_batched_speedup",
        ratio(false, "get_batched_ns_per_key"),
    );
    all.set("insert_speedup", ratio(true, "insert_rows_per_s"));
    all.set("range_speedup", ratio(true, "range_rows_per_s"));
    all.set("agg_speedup", ratio(true, "agg_rows_per_s"));
    all.set("peak_rss_ratio", ratio(true, "peak_rss_bytes"));
    all.set("disk_bytes_ratio", ratio(true, "disk_bytes"));
    all.set(
        "omendb_disk_bytes_per_row",
        ours.number("disk_bytes") / config.rows as f64,
    );
    all.set(
        "sqlite_disk_bytes_per_row",
        theirs.number("disk_bytes") / config.rows as f64,
    );
    all.set(
        "omendb_rss_bytes_per_row",
        ours.number("rss_after_insert_bytes") / config.rows as f64,
    );
    all.set("load1_start", load_start);
    all.set("load1_end", load_average());
    // Wall time of the run without the `--settle-secs` pauses.
    let sides = 2 - u64::from(config.only.is_some());
    all.set(
        "wall_s",
        started.elapsed().as_secs_f64() - (sides * config.settle_secs) as f64,
    );

    println!(
        "{} rows, {} keys, sync {} (SQLite WAL, synchronous={}), batches of {}, index {}",
        config.rows,
        config.dist.name(),
        config.sync.name(),
        config.sync.sqlite_synchronous(),
        config.batch_rows,
        INDEX_LABEL
    );
    println!("| measure | OmenDB | SQLite | OmenDB / SQLite |");
    println!("|---|---|---|---|");
    let row = |name: &str, field: &str, higher_is_better: bool| {
        let (a, b) = (ours.number(field), theirs.number(field));
        let speedup = if higher_is_better { a / b } else { b / a };
        println!(
            "| {name} | {} | {} | {:.2}x{} |",
            human(a),
            human(b),
            speedup,
            if higher_is_better { "" } else { " faster" }
        );
    };
    row("insert rows/s", "insert_rows_per_s", true);
    row("get p50 ns", "get_p50_ns", false);
    row("get p99 ns", "get_p99_ns", false);
    row("get p999 ns", "get_p999_ns", false);
    row("range scan rows/s", "range_rows_per_s", true);
    row("aggregate rows/s", "agg_rows_per_s", true);
    row("peak RSS bytes", "peak_rss_bytes", true);
    row("bytes on disk", "disk_bytes", true);
    println!("{}", all.to_json());
    Ok(())
}

fn human(value: f64) -> String {
    let abs = value.abs();
    if !value.is_finite() {
        "-".to_string()
    } else if abs >= 1e9 {
        format!("{:.2}G", value / 1e9)
    } else if abs >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if abs >= 1e4 {
        format!("{:.1}K", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

// ---------------------------------------------------------------------------------------
// Report: medians of many runs, as a markdown table and an SVG plot

/// Runs grouped by (index, rows, dist, sync): the median of each numeric field, and the run count.
fn medians(runs: &[JsonLine]) -> Vec<(JsonLine, usize)> {
    let mut groups: BTreeMap<(String, u64, String, String), Vec<&JsonLine>> = BTreeMap::new();
    for run in runs {
        let key = (
            run.text("index"),
            run.number("rows") as u64,
            run.text("dist"),
            run.text("sync"),
        );
        groups.entry(key).or_default().push(run);
    }
    groups
        .into_values()
        .map(|group| {
            let mut out = group[0].clone();
            let names: Vec<String> = out.names().map(String::from).collect();
            for name in names {
                let values: Vec<f64> = group
                    .iter()
                    .map(|run| run.number(&name))
                    .filter(|v| !v.is_nan())
                    .collect();
                if !values.is_empty() {
                    out.set(&name, median(values));
                }
            }
            (out, group.len())
        })
        .collect()
}

fn report(input: &Path, svg: Option<&Path>) -> BenchResult<()> {
    let text =
        std::fs::read_to_string(input).map_err(|e| format!("read {}: {e}", input.display()))?;
    let runs: Vec<JsonLine> = text
        .lines()
        .filter(|line| line.trim_start().starts_with('{'))
        .map(JsonLine::from_json)
        .collect::<BenchResult<_>>()?;
    if runs.is_empty() {
        return Err(format!("no results in {}", input.display()));
    }
    let groups = medians(&runs);
    println!(
        "| rows | keys | sync | runs | insert rows/s OmenDB / SQLite (x) | get p50 ns OmenDB / SQLite (x) \
         | get p99 ns | get p999 ns | range rows/s | aggregate rows/s | peak RSS MiB | disk B/row | index |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (m, count) in &groups {
        let pair = |field: &str| {
            format!(
                "{} / {}",
                human(m.number(&format!("omendb_{field}"))),
                human(m.number(&format!("sqlite_{field}")))
            )
        };
        let mib = |field: &str| m.number(field) / (1 << 20) as f64;
        println!(
            "| {} | {} | {} | {} | {} ({:.2}x) | {} ({:.1}x) | {} | {} | {} | {} | {:.0} / {:.0} | {:.1} / {:.1} | {} |",
            human(m.number("rows")),
            m.text("dist"),
            m.text("sync"),
            count,
            pair("insert_rows_per_s"),
            m.number("insert_speedup"),
            pair("get_p50_ns"),
            m.number("get_speedup"),
            pair("get_p99_ns"),
            pair("get_p999_ns"),
            pair("range_rows_per_s"),
            pair("agg_rows_per_s"),
            mib("omendb_peak_rss_bytes"),
            mib("sqlite_peak_rss_bytes"),
            m.number("omendb_disk_bytes_per_row"),
            m.number("sqlite_disk_bytes_per_row"),
            m.text("index"),
        );
    }
    if let Some(svg) = svg {
        plot(&groups, svg)?;
        eprintln!("wrote {}", svg.display());
    }
    Ok(())
}

fn plot(groups: &[(JsonLine, usize)], out: &Path) -> BenchResult<()> {
    use plotters::prelude::*;
    let err = |e: &dyn std::fmt::Display| format!("plot: {e}");
    let sync = groups
        .iter()
        .map(|(m, _)| m.text("sync"))
        .find(|s| s == "batch")
        .unwrap_or_else(|| groups[0].0.text("sync"));
    let mut dists: Vec<String> = groups.iter().map(|(m, _)| m.text("dist")).collect();
    dists.sort();
    dists.dedup();
    let series = |dist: &str, field: &str| -> Vec<(f64, f64)> {
        let mut points: Vec<(f64, f64)> = groups
            .iter()
            .filter(|(m, _)| m.text("dist") == dist && m.text("sync") == sync)
            .map(|(m, _)| (m.number("rows"), m.number(field)))
            .filter(|(x, y)| x.is_finite() && y.is_finite() && *y > 0.0)
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    };
    let all_rows: Vec<f64> = groups.iter().map(|(m, _)| m.number("rows")).collect();
    let rows_min = all_rows.iter().cloned().fold(f64::INFINITY, f64::min) / 1.5;
    let rows_max = all_rows.iter().cloned().fold(0.0, f64::max) * 1.5;
    let range_of = |fields: &[&str]| {
        let values: Vec<f64> = groups
            .iter()
            .flat_map(|(m, _)| fields.iter().map(|f| m.number(f)).collect::<Vec<_>>())
            .filter(|v| v.is_finite() && *v > 0.0)
            .collect();
        let low = values.iter().cloned().fold(f64::INFINITY, f64::min);
        let high = values.iter().cloned().fold(0.0, f64::max);
        (low / 1.5, high * 1.5)
    };
    let root = SVGBackend::new(out, (1200, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let title = format!(
        "OmenDB ({}, bold lines, filled dots) vs SQLite {} (WAL; faint lines, hollow dots), sync {sync}",
        groups[0].0.text("index"),
        groups[0].0.text("sqlite_version")
    );
    let root = root
        .titled(&title, ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((1, 2));
    let specs = [
        (
            "point get p50 latency (ns, log)",
            ["omendb_get_p50_ns", "sqlite_get_p50_ns"],
            range_of(&["omendb_get_p50_ns", "sqlite_get_p50_ns"]),
        ),
        (
            "insert throughput (rows/s, log)",
            ["omendb_insert_rows_per_s", "sqlite_insert_rows_per_s"],
            range_of(&["omendb_insert_rows_per_s", "sqlite_insert_rows_per_s"]),
        ),
    ];
    let palette = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let legend_positions = [
        SeriesLabelPosition::LowerRight,
        SeriesLabelPosition::LowerLeft,
    ];
    for ((panel, (caption, fields, (y_low, y_high))), legend_position) in
        panels.iter().zip(specs).zip(legend_positions)
    {
        let mut chart = ChartBuilder::on(panel)
            .caption(caption, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(
                (rows_min..rows_max).log_scale(),
                (y_low..y_high).log_scale(),
            )
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("rows")
            .x_label_formatter(&|x| human(*x))
            .y_label_formatter(&|y| human(*y))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, dist) in dists.iter().enumerate() {
            let color = palette[i % palette.len()];
            for (field, solid) in [(fields[0], true), (fields[1], false)] {
                let points = series(dist, field);

                let style = if solid {
                    color.stroke_width(2)
                } else {
                    color.mix(0.5).stroke_width(1)
                };
                let drawn = chart
                    .draw_series(LineSeries::new(points.clone(), style))
                    .map_err(|e| err(&e))?;
                // One legend entry per distribution; the engines differ by style.
                if solid {
                    drawn
                        .label(dist.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
                }
                // OmenDB: filled dots; SQLite: hollow ones.
                let marker = if solid {
                    color.filled()
                } else {
                    color.stroke_width(1)
                };
                chart
                    .draw_series(
                        points
                            .iter()
                            .map(move |&(x, y)| Circle::new((x, y), 3, marker)),
                    )
                    .map_err(|e| err(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .position(legend_position)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 11))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
