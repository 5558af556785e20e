//! `omendb-sqlite-sim`: SQLite on the simulated disk, driven by the generic simulation core
//! (`omendb-simcore`) as OmenDB's simulator is.
//!
//! - `sweep --seeds A..B [--shard I/N]`: every seed; exit code 1 if any broke its promise;
//! - `run --seed N`: one seed, printing its trace's tail;
//! - `chaos --duration 60s [--start S]`: fresh seeds until the time is up;
//! - `determinism --seeds A..B`: each seed twice, the same trace hash.
//!
//! Options for all: `--synchronous full|normal|off` (default full), `--promise
//! durable|prefix` (default: the setting's own), `--transactions N`, `--json`. Exit code 2
//! on bad arguments.

use omendb_keygen::parse_duration;
use omendb_simcore::Target;
use omendb_sqlite_sim::{Promise, RunConfig, Sqlite, Summary, Synchronous};
use std::process::ExitCode;
use std::time::Duration;

fn usage() -> ExitCode {
    eprintln!(
        "usage: omendb-sqlite-sim sweep --seeds A..B [--shard I/N] | run --seed N | chaos --duration 60s [--start S] | determinism --seeds A..B\n  options: [--synchronous full|normal|off] [--promise durable|prefix] [--transactions N] [--json]"
    );
    ExitCode::from(2)
}

fn pair(text: &str, sep: &str) -> Option<(u64, u64)> {
    let (a, b) = text.split_once(sep)?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        return usage();
    };
    let value = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let synchronous = match Synchronous::parse(&value("--synchronous").unwrap_or("full".into())) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut config = RunConfig::new(synchronous);
    match value("--promise").as_deref() {
        None => {}
        Some("durable") => config.promise = Promise::Durable,
        Some("prefix") => config.promise = Promise::Prefix,
        Some(other) => {
            eprintln!("--promise must be durable or prefix, not {other:?}");
            return ExitCode::from(2);
        }
    }
    if let Some(n) = value("--transactions") {
        match n.parse() {
            Ok(n) => config.transactions = n,
            Err(_) => return usage(),
        }
    }
    let json = args.iter().any(|a| a == "--json");
    let target = Sqlite { config };
    let report = |summary: &Summary| {
        for outcome in &summary.failed {
            eprintln!(
                "FAILED seed {}: {}\n  replay: {}",
                outcome.seed,
                outcome.failure.as_deref().unwrap_or(""),
                target.replay_command(outcome.seed)
            );
        }
    };
    let print_summary = |summary: &Summary| {
        println!(
            "{} seeds, {} failed, {} commits, {} crashes, {} in-flight commits applied, {} recoveries rolled back acknowledged commits",
            summary.seeds,
            summary.failed.len(),
            summary.commits,
            summary.crashes,
            summary.in_flight_applied,
            summary.rolled_back
        );
        if json {
            println!("{}", summary.to_json(&target.config));
        }
    };
    let ok = match command.as_str() {
        "run" => {
            let Some(seed) = value("--seed").and_then(|s| s.parse().ok()) else {
                return usage();
            };
            let outcome = target.run(seed);
            for line in &outcome.trace_tail {
                println!("{line}");
            }
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
            outcome.failure.is_none()
        }
        "sweep" => {
            let Some((from, to)) = value("--seeds").and_then(|r| pair(&r, "..")) else {
                return usage();
            };
            let seeds =
                omendb_simcore::shard(from, to, value("--shard").and_then(|s| pair(&s, "/")));
            // SQLite's PRNG is process-global, so runs take turns (see the crate docs).
            let mut summary = Summary::default();
            for ran in omendb_simcore::sweep(&target, &seeds, 1, &|_, _, _| {}) {
                summary.add(ran.outcome);
            }
            report(&summary);
            print_summary(&summary);
            summary.failed.is_empty()
        }
        "chaos" => {
            let duration = match value("--duration").map(|d| parse_duration(&d)) {
                None => Duration::from_secs(60),
                Some(Ok(duration)) => duration,
                Some(Err(e)) => {
                    eprintln!("--duration: {e}");
                    return ExitCode::from(2);
                }
            };
            let start = value("--start")
                .and_then(|s| s.parse().ok())
                .unwrap_or(1_000_000);
            let mut summary = Summary::default();
            omendb_simcore::chaos(&target, start, duration, 1, 64, &mut |runs, _| {
                for ran in runs {
                    summary.add(ran.outcome);
                }
            });
            report(&summary);
            print_summary(&summary);
            summary.failed.is_empty()
        }
        "determinism" => {
            let Some((from, to)) = value("--seeds").and_then(|r| pair(&r, "..")) else {
                return usage();
            };
            let (ok, lines) = omendb_simcore::determinism(&target, from, to);
            for line in lines {
                println!("{line}");
            }
            ok
        }
        _ => return usage(),
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
