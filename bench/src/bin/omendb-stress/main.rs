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
//!
//! Files: `worker.rs` (the client threads), `model.rs` (rows, the acknowledged record, key
//! distributions), `sampler.rs` (progress, soak verifications, watchdog), `summary.rs`
//! (totals, growth, the report), `memory.rs` (RSS, heap, the counting allocator, CPU),
//! `histogram.rs` (latencies).

mod histogram;
mod memory;
mod model;
mod sampler;
mod summary;
mod worker;

use clap::Parser;
use histogram::Histogram;
use memory::{cpu_seconds, live_heap};
use model::{check_state, make_row, owned_max, table_def, KeyDraw, Owned, TABLE};
use omendb::{Database, Durability, Options};
use omendb_bench::parse_duration;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use summary::{merged_model, FinalCheck, Summary, Totals};
use worker::{run_thread, Progress, Shared, ThreadReport};

#[global_allocator]
static ALLOCATOR: live_heap::Counting = live_heap::Counting;

/// Rows per batch of the preload.
const PRELOAD_BATCH_ROWS: usize = 10_000;

/// Stack of each client thread: they recurse little, and a hundred of them share the
/// machine.
const CLIENT_STACK_BYTES: usize = 256 << 10;

/// Longest sleep of the checkpoint thread between looks at the stop signal.
const CHECKPOINT_TICK_MAX: Duration = Duration::from_millis(50);

#[derive(Parser, Debug, Clone)]
#[command(
    name = "omendb-stress",
    about = "Concurrent stress and soak runs of omendb"
)]
pub struct Args {
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
    /// Key distribution of reads and inserts: uniform, or zipf (YCSB's, theta 0.99, ranks
    /// scrambled; see omendb_keygen::Dist).
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

/// `always`, `none`, `batch` (10 ms) or `batch:MS`: a bare number after `batch:` is in
/// milliseconds, and a duration with a unit (`batch:2ms`, `batch:0.5s`) is taken as given.
fn parse_sync(text: &str) -> Result<Durability, String> {
    Ok(match text {
        "always" => Durability::Always,
        "none" => Durability::None,
        "batch" => Durability::Batch {
            max_delay: Duration::from_millis(10),
        },
        other => match other.strip_prefix("batch:") {
            Some(delay) if !delay.is_empty() && delay.bytes().all(|b| b.is_ascii_digit()) => {
                Durability::Batch {
                    max_delay: parse_duration(&format!("{delay}ms"))?,
                }
            }
            Some(delay) => Durability::Batch {
                max_delay: parse_duration(delay)?,
            },
            None => {
                return Err(format!(
                    "bad --sync {other:?}: always, batch, batch:MS, none"
                ))
            }
        },
    })
}

/// The settings the arguments give, checked before anything starts.
struct Plan {
    read_per_mille: u64,
    write_mix: Vec<u64>,
    sync: Durability,
    dist: KeyDraw,
    dir: PathBuf,
}

impl Plan {
    fn of(args: &Args) -> Result<Plan, String> {
        if args.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        let mix = parse_parts(&args.mix, 2, "--mix")?;
        let dir = args.dir.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("omendb-stress-{}", std::process::id()))
        });
        Ok(Plan {
            read_per_mille: mix[0] * 1000 / (mix[0] + mix[1]),
            write_mix: parse_parts(&args.write_mix, 3, "--write-mix")?,
            sync: parse_sync(&args.sync)?,
            dist: KeyDraw::new(&args.dist, args.keys.max(1))?,
            dir,
        })
    }
}

fn main() {
    let args = Args::parse();
    if let Err(message) = run(args) {
        eprintln!("omendb-stress: {message}");
        std::process::exit(2);
    }
}

/// The whole run: preload, the measured run, the final check, the report. Exits 1 if the
/// run failed (see [`Summary::failed`]).
fn run(args: Args) -> Result<(), String> {
    if args.live_heap {
        live_heap::enable();
    }
    let plan = Plan::of(&args)?;
    let options = Options::with_sync(plan.sync);
    if plan.dir.exists() && args.dir.is_none() {
        std::fs::remove_dir_all(&plan.dir)
            .map_err(|e| format!("clean {}: {e}", plan.dir.display()))?;
    }
    let db = Database::open(&plan.dir, options.clone()).map_err(|e| format!("open: {e}"))?;
    let owned = preload(&db, &args, &plan.dir)?;
    let dir = plan.dir;
    let shared = Arc::new(Shared {
        db,
        read_per_mille: plan.read_per_mille,
        write_mix: plan.write_mix,
        dist: plan.dist,
        origin: Instant::now(),
        stop: AtomicBool::new(false),
        verify_epoch: AtomicU64::new(0),
        progress: (0..args.threads).map(|_| Progress::default()).collect(),
        args: args.clone(),
    });
    let start = Arc::new(Barrier::new(args.threads + 1));
    let workers = spawn_workers(&shared, owned, &start)?;
    let checkpointer = spawn_checkpointer(&shared)?;

    let run_started = Instant::now();
    let cpu_started = cpu_seconds();
    start.wait();
    let sampling = sampler::sample_until_end(&shared, run_started);
    shared.stop.store(true, Ordering::Relaxed);
    let elapsed = run_started.elapsed();
    let cpu_s = cpu_seconds() - cpu_started;

    let mut reports = Vec::with_capacity(workers.len());
    for handle in workers {
        reports.push(
            handle
                .join()
                .map_err(|_| "a stress thread panicked".to_string())?,
        );
    }
    let checkpoints = checkpointer
        .join()
        .map_err(|_| "the checkpoint thread panicked".to_string())?;
    let verifications_done = shared
        .progress
        .iter()
        .map(|p| p.verified_epoch.load(Ordering::Relaxed))
        .min()
        .unwrap_or(0);
    let mut totals = Totals::merge(&reports);
    totals.add_errors(checkpoints.errors);
    let (model, conflicts) = merged_model(&reports, &mut totals);
    drop(reports);
    let shared = Arc::try_unwrap(shared).map_err(|_| "threads still hold the database")?;
    let mut check = final_check(shared.db, &dir, options, &model, args.value_bytes)?;
    check.unexpected += conflicts;
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }

    let summary = Summary {
        args: &args,
        totals,
        sampling,
        elapsed,
        cpu_s,
        checkpoints: checkpoints.done,
        checkpoint_latency: checkpoints.latency,
        verifications_done,
        check,
    };
    summary.print();
    println!("{}", summary.to_json().to_json());
    if summary.failed() {
        std::process::exit(1);
    }
    Ok(())
}

/// Creates the table and loads half the key space, key k owned by thread k % threads;
/// returns each thread's record. Refuses a directory that already holds the table.
fn preload(db: &Database, args: &Args, dir: &Path) -> Result<Vec<Owned>, String> {
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
    db.create_table(table_def()?).map_err(|e| e.to_string())?;
    let threads = args.threads;
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
        if batch.len() == PRELOAD_BATCH_ROWS {
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
    Ok(owned)
}

/// Starts one client thread per record in `owned`; each waits at `start`.
fn spawn_workers(
    shared: &Arc<Shared>,
    owned: Vec<Owned>,
    start: &Arc<Barrier>,
) -> Result<Vec<JoinHandle<ThreadReport>>, String> {
    let mut handles = Vec::with_capacity(owned.len());
    for (index, owned) in owned.into_iter().enumerate() {
        let shared = shared.clone();
        let start = start.clone();
        let handle = std::thread::Builder::new()
            .name(format!("stress-{index}"))
            .stack_size(CLIENT_STACK_BYTES)
            .spawn(move || run_thread(&shared, index, owned, &start))
            .map_err(|e| format!("spawn thread {index}: {e}"))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// What the checkpoint thread did.
struct Checkpoints {
    done: u64,
    errors: Vec<String>,
    latency: Histogram,
}

/// Starts the thread that checkpoints every `--checkpoint-every` (none for 0s), keeping the
/// log bounded as an application would.
fn spawn_checkpointer(shared: &Arc<Shared>) -> Result<JoinHandle<Checkpoints>, String> {
    let shared = shared.clone();
    std::thread::Builder::new()
        .name("stress-checkpoint".into())
        .spawn(move || {
            let mut checkpoints = Checkpoints {
                done: 0,
                errors: Vec::new(),
                latency: Histogram::new(),
            };
            let every = shared.args.checkpoint_every;
            if every.is_zero() {
                return checkpoints;
            }
            let mut next = shared.origin + every;
            while !shared.stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep((next - now).min(CHECKPOINT_TICK_MAX));
                    continue;
                }
                next += every;
                let started = Instant::now();
                match shared.db.checkpoint() {
                    Ok(_) => checkpoints.done += 1,
                    Err(e) => checkpoints.errors.push(format!("checkpoint: {e}")),
                }
                checkpoints
                    .latency
                    .record(started.elapsed().as_nanos() as u64);
            }
            checkpoints
        })
        .map_err(|e| format!("spawn checkpointer: {e}"))
}

/// The whole table against the model, then again after close and reopen, with the
/// invariants checked both times.
fn final_check(
    db: Database,
    dir: &Path,
    options: Options,
    model: &std::collections::HashMap<i64, i64>,
    value_bytes: usize,
) -> Result<FinalCheck, String> {
    let started = Instant::now();
    let (lost_live, unexpected_live) = check_state(&db, model, value_bytes)?;
    db.check_invariants()?;
    db.close().map_err(|e| format!("close: {e}"))?;
    let db = Database::open(dir, options).map_err(|e| format!("reopen: {e}"))?;
    let (lost_reopened, unexpected_reopened) = check_state(&db, model, value_bytes)?;
    db.check_invariants()?;
    db.close().map_err(|e| format!("close after reopen: {e}"))?;
    Ok(FinalCheck {
        lost: lost_live + lost_reopened,
        unexpected: unexpected_live + unexpected_reopened,
        seconds: started.elapsed().as_secs_f64(),
    })
}
