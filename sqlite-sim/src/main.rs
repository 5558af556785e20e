//! `omendb-sqlite-sim`: SQLite on the simulated disk, driven by the generic simulation core
//! (`omendb-simcore`) as OmenDB's simulator is, through its command line
//! ([`omendb_simcore::cli`]):
//!
//! - `sweep --seeds A..B [--shard I/N]`: every seed; exit code 1 if any broke its promise;
//! - `run --seed N`, `replay --seed N`: one seed, printing its trace's tail;
//! - `chaos [--duration 60s] [--start S]`: fresh seeds until the time is up;
//! - `determinism [--seeds A..B]`: each seed twice, the same trace hash;
//! - `shrink --seed N`: the fewest transactions that break the same promise.
//!
//! Options for all: `--synchronous full|normal|off` (default full), `--promise
//! durable|prefix` (default: the setting's own), `--transactions N`, `--json`. Exit code 2
//! on bad arguments. Runs take turns on one thread whatever `--jobs` says: SQLite's PRNG is
//! process-global (see the crate docs).

use omendb_simcore::cli::{Flag, Frontend, Invocation};
use omendb_sqlite_sim::{Outcome, Promise, RunConfig, Sqlite, Summary, Synchronous};
use std::process::ExitCode;

/// SQLite's own flags.
const FLAGS: &[Flag] = &[
    Flag {
        name: "synchronous",
        value: Some("full|normal|off"),
        help: "SQLite's PRAGMA synchronous (default full)",
    },
    Flag {
        name: "promise",
        value: Some("durable|prefix"),
        help: "what the checker requires (default: the setting's own)",
    },
    Flag {
        name: "transactions",
        value: Some("N"),
        help: "transactions per run (default 150)",
    },
];

/// SQLite's command line.
struct SqliteCli;

impl Frontend for SqliteCli {
    type Target = Sqlite;
    type Summary = Summary;

    fn name(&self) -> &'static str {
        "omendb-sqlite-sim"
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn target(&self, invocation: &Invocation) -> Result<Sqlite, String> {
        let options = &invocation.options;
        let synchronous = Synchronous::parse(options.value("synchronous").unwrap_or("full"))?;
        let mut config = RunConfig::new(synchronous);
        match options.value("promise") {
            None => {}
            Some("durable") => config.promise = Promise::Durable,
            Some("prefix") => config.promise = Promise::Prefix,
            Some(other) => {
                return Err(format!(
                    "--promise must be durable or prefix, not {other:?}"
                ))
            }
        }
        if let Some(n) = options.value("transactions") {
            config.transactions = n
                .parse()
                .map_err(|e| format!("bad --transactions {n:?}: {e}"))?;
        }
        Ok(Sqlite { config })
    }

    /// One at a time: SQLite's PRNG is process-global.
    fn jobs(&self, _asked: Option<usize>) -> usize {
        1
    }

    fn print_run(&self, _target: &Sqlite, _invocation: &Invocation, outcome: &Outcome) {
        for line in &outcome.trace_tail {
            println!("{line}");
        }
        let seed = outcome.seed;
        match &outcome.failure {
            None => println!(
                "seed {seed} kept its promise: {} commits, {} crashes, trace {:016x}",
                outcome.commits, outcome.crashes, outcome.trace_hash
            ),
            Some(why) => println!(
                "seed {seed} FAILED: {why} (trace {:016x})",
                outcome.trace_hash
            ),
        }
    }

    fn print_summary(&self, target: &Sqlite, invocation: &Invocation, summary: &Summary) -> bool {
        use omendb_simcore::Target;
        for outcome in &summary.failed {
            eprintln!(
                "FAILED seed {}: {}\n  replay: {}",
                outcome.seed,
                outcome.failure.as_deref().unwrap_or(""),
                target.replay_command(outcome.seed)
            );
        }
        println!(
            "{} seeds, {} failed, {} commits, {} crashes, {} in-flight commits applied, {} recoveries rolled back acknowledged commits",
            summary.seeds,
            summary.failed.len(),
            summary.commits,
            summary.crashes,
            summary.in_flight_applied,
            summary.rolled_back
        );
        if invocation.json {
            println!("{}", summary.to_json(&target.config));
        }
        summary.failed.is_empty()
    }

    fn shrink(&self, target: &Sqlite, _invocation: &Invocation, seed: u64) -> Result<bool, String> {
        use omendb_simcore::shrink::{shrink, SHRINK_RUNS_MAX};
        use omendb_simcore::Target;
        let transactions = target.config.transactions;
        Ok(match shrink(target, seed, SHRINK_RUNS_MAX) {
            None => {
                println!(
                    "seed {seed} keeps its promise with --transactions {transactions}: nothing to shrink"
                );
                true
            }
            Some(shrunk) => {
                let shorter = Sqlite {
                    config: shrunk.knobs,
                };
                println!(
                    "shrunk in {} runs to: seed {seed} --transactions {} ({})",
                    shrunk.runs,
                    shrunk.knobs.transactions,
                    shrunk.outcome.failure.as_deref().unwrap_or("")
                );
                println!(
                    "  replay: {} --transactions {}",
                    shorter.replay_command(seed),
                    shrunk.knobs.transactions
                );
                false
            }
        })
    }
}

fn main() -> ExitCode {
    omendb_simcore::cli::main(&SqliteCli)
}
