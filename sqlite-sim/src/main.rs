//! `omendb-sqlite-sim`: SQLite on the simulated disk. `sweep --seeds A..B --synchronous
//! full|normal|off [--promise durable|prefix]`, `run --seed N ...` (prints the trace's
//! tail). Exit code 0 when every run kept its promise, 1 when any broke it, 2 on bad
//! arguments.

use omendb_sqlite_sim::{run, Promise, RunConfig, Summary, Synchronous};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: omendb-sqlite-sim sweep --seeds A..B [--synchronous full|normal|off] [--promise durable|prefix] [--transactions N] [--json]\n       omendb-sqlite-sim run --seed N [same options]"
    );
    ExitCode::from(2)
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
    match command.as_str() {
        "run" => {
            let Some(seed) = value("--seed").and_then(|s| s.parse().ok()) else {
                return usage();
            };
            let outcome = run(seed, &config);
            for line in &outcome.trace_tail {
                println!("{line}");
            }
            match &outcome.failure {
                None => {
                    println!(
                        "seed {seed} kept its promise: {} commits, {} crashes, trace {:016x}",
                        outcome.commits, outcome.crashes, outcome.trace_hash
                    );
                    ExitCode::SUCCESS
                }
                Some(why) => {
                    println!(
                        "seed {seed} FAILED: {why} (trace {:016x})",
                        outcome.trace_hash
                    );
                    ExitCode::from(1)
                }
            }
        }
        "sweep" => {
            let Some((from, to)) = value("--seeds").and_then(|r| {
                let (a, b) = r.split_once("..")?;
                Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?))
            }) else {
                return usage();
            };
            let mut summary = Summary::default();
            for seed in from..to {
                let outcome = run(seed, &config);
                if let Some(why) = &outcome.failure {
                    eprintln!(
                        "FAILED seed {seed}: {why}\n  replay: cargo run --release -p omendb-sqlite-sim -- run --seed {seed} --synchronous {} --promise {}",
                        format!("{:?}", config.synchronous).to_lowercase(),
                        if config.promise == Promise::Durable { "durable" } else { "prefix" }
                    );
                }
                summary.add(outcome);
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
            if json {
                println!("{}", summary.to_json(&config));
            }
            if summary.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        _ => usage(),
    }
}
