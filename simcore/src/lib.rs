//! The generic core of a deterministic simulation, over any system under test.
//!
//! A system under test is a [`Target`]: something that runs one seed start to end on the
//! calling thread (its workload, its model, its checker, its simulated disk and clock) and
//! says how that went ([`Outcome`]: passed or not, and a hash of the run's trace). This
//! crate drives targets the same way whatever they are:
//! - [`sweep`]: a list of seeds on `jobs` threads, each seed whole on one thread, panics
//!   caught as failures, a watchdog that names a seed that never returns, results in seed
//!   order, so a sweep's result does not depend on the thread count;
//! - [`shard`]: one shard of a seed range, for CI machines that split a sweep;
//! - [`chaos`]: fresh seeds in batches until the time is up (each batch a deterministic
//!   sweep, so every failure it finds replays from its seed);
//! - [`replay_twice`], [`determinism`]: the determinism check (the same seed twice, the
//!   same trace hash);
//! - [`parse_seed_file`]: the `key = value` seed files of a `seeds/` directory;
//! - [`shrink`](mod@shrink): a failing seed with a smaller step budget and fewer of
//!   whatever else the target can switch off ([`shrink::Shrink`]), failing the same check;
//! - [`cli`]: the command line of a target's binary (`sweep`, `replay`, `chaos`, ...)
//!   over a [`cli::Frontend`], so a new target gets every command;
//! - [`env`](mod@env): the virtual clock and the stepped spawner, implementations of `omendb-env`'s
//!   `Clock` and `Spawn` that a target's scheduler drives.
//!
//! Targets so far: OmenDB (`omendb-sim`) and SQLite on the simulated disk
//! (`omendb-sqlite-sim`). What a target keeps for itself: the schedule (its clients,
//! workers and faults), its model and checker, the shape of its summary and JSON.
//!
//! Nothing here reads a clock or spawns a thread *inside* a run: time is read only to
//! report busy seconds and to end a chaos run, and threads only run whole seeds.

pub mod cli;
pub mod env;
pub mod shrink;
pub mod swarm;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What one run of a seed says about itself.
pub trait Outcome {
    /// The seed that ran.
    fn seed(&self) -> u64;
    /// Whether every check passed.
    fn passed(&self) -> bool;
    /// A hash of the whole trace: two runs of one seed must give the same.
    fn trace_hash(&self) -> u64;
}

/// A system under test.
pub trait Target: Sync {
    /// One run's outcome.
    type Outcome: Outcome + Send;
    /// Runs `seed` start to end on the calling thread.
    fn run(&self, seed: u64) -> Self::Outcome;
    /// The outcome of a run of `seed` that panicked with `message` (a failure).
    fn panicked(&self, seed: u64, message: String) -> Self::Outcome;
    /// The command that replays `seed`, printed with every failure.
    fn replay_command(&self, seed: u64) -> String;
}

/// One run of a sweep: its outcome and the seconds its thread spent on it.
#[derive(Debug, Clone)]
pub struct Ran<O> {
    pub outcome: O,
    pub busy_s: f64,
}

/// A seed still running after this long is reported as hung, with its replay command, and
/// the process exits with status 3: a run is single-threaded and bounded, so only a call
/// that never returns can take this long, and a stuck thread cannot be stopped otherwise.
pub const HANG_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs every seed of `seeds` on `jobs` threads and returns the runs in seed order.
/// `progress(done, total, failed)` is called after each run.
pub fn sweep<T: Target>(
    target: &T,
    seeds: &[u64],
    jobs: usize,
    progress: &(dyn Fn(u64, u64, u64) + Sync),
) -> Vec<Ran<T::Outcome>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Ran<T::Outcome>>> = Mutex::new(Vec::with_capacity(seeds.len()));
    let failed = AtomicUsize::new(0);
    let running: Mutex<BTreeMap<u64, Instant>> = Mutex::new(BTreeMap::new());
    let finished = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Watchdog: a run that never returns is reported with its replay command.
        scope.spawn(|| {
            while !finished.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let running = lock(&running);
                if let Some((seed, since)) = running
                    .iter()
                    .find(|(_, since)| since.elapsed() > HANG_TIMEOUT)
                {
                    eprintln!(
                        "HUNG seed {seed}: still running after {:.0}s; replay: {}",
                        since.elapsed().as_secs_f64(),
                        target.replay_command(*seed)
                    );
                    std::process::exit(3);
                }
            }
        });
        let workers: Vec<_> = (0..jobs.max(1))
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&seed) = seeds.get(i) else {
                        break;
                    };
                    let started = Instant::now();
                    lock(&running).insert(seed, started);
                    let outcome =
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(seed)))
                            .unwrap_or_else(|panic| {
                                let message = panic
                                    .downcast_ref::<String>()
                                    .cloned()
                                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                    .unwrap_or_else(|| "a panic without a message".into());
                                target.panicked(seed, message)
                            });
                    lock(&running).remove(&seed);
                    let busy_s = started.elapsed().as_secs_f64();
                    if !outcome.passed() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut results = lock(&results);
                    results.push(Ran { outcome, busy_s });
                    let done = results.len() as u64;
                    drop(results);
                    progress(
                        done,
                        seeds.len() as u64,
                        failed.load(Ordering::Relaxed) as u64,
                    );
                })
            })
            .collect();
        for worker in workers {
            // Runs catch their own panics; a worker ends only by running out of seeds.
            let _ = worker.join();
        }
        finished.store(true, Ordering::Relaxed);
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|ran| ran.outcome.seed());
    results
}

/// The seeds of `from..to` in shard `index` of `count` (`seed % count == index`), or all of
/// them without a shard.
pub fn shard(from: u64, to: u64, shard: Option<(u64, u64)>) -> Vec<u64> {
    (from..to)
        .filter(|seed| shard.is_none_or(|(index, count)| seed % count == index))
        .collect()
}

/// Runs fresh seeds from `start` in batches of `batch` until `duration` has passed (at
/// least one batch), each batch a [`sweep`]; `on_batch(runs, next_seed)` sees every batch.
/// Returns the first seed not run.
pub fn chaos<T: Target>(
    target: &T,
    start: u64,
    duration: Duration,
    jobs: usize,
    batch: u64,
    on_batch: &mut dyn FnMut(Vec<Ran<T::Outcome>>, u64),
) -> u64 {
    let started = Instant::now();
    let mut next = start;
    loop {
        let seeds: Vec<u64> = (next..next + batch.max(1)).collect();
        next += batch.max(1);
        on_batch(sweep(target, &seeds, jobs, &|_, _, _| {}), next);
        if started.elapsed() >= duration {
            return next;
        }
    }
}

/// The determinism check: runs `seed` twice; the two outcomes must have the same trace hash.
pub fn replay_twice<T: Target>(target: &T, seed: u64) -> (T::Outcome, T::Outcome) {
    (target.run(seed), target.run(seed))
}

/// The determinism check over seeds `from..to`: each runs twice. Returns whether every
/// pair had the same trace hash, and one line per seed (`seed N: <hash> <hash> same`, or
/// `DIFFERENT`).
pub fn determinism<T: Target>(target: &T, from: u64, to: u64) -> (bool, Vec<String>) {
    let mut all_same = true;
    let mut lines = Vec::new();
    for seed in from..to {
        let (first, second) = replay_twice(target, seed);
        let same = first.trace_hash() == second.trace_hash();
        all_same &= same;
        lines.push(format!(
            "seed {seed}: {:016x} {:016x} {}",
            first.trace_hash(),
            second.trace_hash(),
            if same { "same" } else { "DIFFERENT" }
        ));
    }
    (all_same, lines)
}

/// Parses a seed file: `key = value` lines, `#` comments and blank lines ignored. A key
/// given twice, or a line without `=`, is an error naming its line.
pub fn parse_seed_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut fields = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected `key = value`", n + 1));
        };
        let key = key.trim().to_string();
        if fields
            .insert(key.clone(), value.trim().to_string())
            .is_some()
        {
            return Err(format!("line {}: `{key}` given twice", n + 1));
        }
    }
    Ok(fields)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy target: seed `s` fails when `s % 7 == 3`, panics when `s == 13`.
    struct Toy;

    #[derive(Debug, Clone, PartialEq)]
    struct Toyed {
        seed: u64,
        passed: bool,
        hash: u64,
    }

    impl Outcome for Toyed {
        fn seed(&self) -> u64 {
            self.seed
        }
        fn passed(&self) -> bool {
            self.passed
        }
        fn trace_hash(&self) -> u64 {
            self.hash
        }
    }

    impl Target for Toy {
        type Outcome = Toyed;
        fn run(&self, seed: u64) -> Toyed {
            assert!(seed != 13, "seed 13 panics");
            Toyed {
                seed,
                passed: seed % 7 != 3,
                hash: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            }
        }
        fn panicked(&self, seed: u64, _message: String) -> Toyed {
            Toyed {
                seed,
                passed: false,
                hash: 0,
            }
        }
        fn replay_command(&self, seed: u64) -> String {
            format!("toy {seed}")
        }
    }

    #[test]
    fn a_sweep_is_the_same_on_one_thread_and_on_four() {
        let seeds = shard(0, 40, None);
        let one: Vec<Toyed> = sweep(&Toy, &seeds, 1, &|_, _, _| {})
            .into_iter()
            .map(|r| r.outcome)
            .collect();
        let four: Vec<Toyed> = sweep(&Toy, &seeds, 4, &|_, _, _| {})
            .into_iter()
            .map(|r| r.outcome)
            .collect();
        assert_eq!(one, four);
        let failed: Vec<u64> = one.iter().filter(|o| !o.passed).map(|o| o.seed).collect();
        assert_eq!(failed, vec![3, 10, 13, 17, 24, 31, 38], "13 panicked");
    }

    #[test]
    fn shards_partition_a_range() {
        let mut all: Vec<u64> = (0..3).flat_map(|i| shard(5, 30, Some((i, 3)))).collect();
        all.sort_unstable();
        assert_eq!(all, (5..30).collect::<Vec<_>>());
    }

    #[test]
    fn chaos_runs_at_least_one_batch_of_fresh_seeds() {
        let mut seen = Vec::new();
        let next = chaos(&Toy, 100, Duration::ZERO, 2, 8, &mut |runs, _| {
            seen.extend(runs.into_iter().map(|r| r.outcome.seed));
        });
        assert_eq!(next, 108);
        assert_eq!(seen, (100..108).collect::<Vec<_>>());
    }

    #[test]
    fn seed_files_parse_and_name_bad_lines() {
        let fields = parse_seed_file("# found by CI\nseed = 42\nops=1000\n\n").expect("parses");
        assert_eq!(fields.get("seed").map(String::as_str), Some("42"));
        assert_eq!(fields.get("ops").map(String::as_str), Some("1000"));
        assert!(parse_seed_file("seed 42").unwrap_err().contains("line 1"));
        assert!(parse_seed_file("a = 1\na = 2")
            .unwrap_err()
            .contains("twice"));
        let (a, b) = replay_twice(&Toy, 5);
        assert_eq!(a.trace_hash(), b.trace_hash());
    }
}
