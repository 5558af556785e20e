//! `omendb-sim`: run, sweep, replay, shrink and chaos-test OmenDB under the deterministic
//! simulator. Exit code 0 when every run passed, 1 when any failed, 2 on bad arguments.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use omendb_keygen::parse_duration;
use omendb_sim::sweep::{sweep, OmenDb, ProbeScope, Summary};
use omendb_sim::{replay_command, run, FaultMask, Outcome, RunConfig};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The simulator allocates and frees small buffers at a high rate (rows, frames, trace
/// lines, the disk's sector maps): glibc's malloc and free were a fifth of its profile.
/// Allocation addresses never reach a trace, so the allocator does not affect determinism.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "omendb-sim",
    about = "Deterministic simulation testing of OmenDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args, Clone)]
struct RunArgs {
    /// Scheduler steps per seed.
    #[arg(long, default_value_t = 1000)]
    ops: u64,
    /// Fault classes: all, none, or a list of crash,io,disk_full,corruption,at_rest.
    #[arg(long, default_value = "all", value_parser = FaultMask::parse)]
    faults: FaultMask,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
    /// Schedule generation (1 to the newest, the default), to replay a seed recorded with
    /// an older one.
    #[arg(long, default_value_t = omendb_sim::config::SCHEDULE_CURRENT, value_parser = RunConfig::parse_schedule)]
    schedule: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Run one seed.
    Run {
        /// The seed.
        #[arg(long)]
        seed: u64,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run a range of seeds, e.g. `--seeds 0..1000`, optionally one shard of it.
    Sweep {
        /// Seed range A..B (B excluded).
        #[arg(long, value_parser = parse_range)]
        seeds: (u64, u64),
        /// Run only shard I of N (seeds with seed % N == I), e.g. `--shard 2/8`.
        #[arg(long, value_parser = parse_shard)]
        shard: Option<(u64, u64)>,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Replay one seed, printing its whole trace.
    Replay {
        /// The seed.
        seed: u64,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Find a shorter run of a failing seed that fails the same check.
    Shrink {
        /// The seed.
        seed: u64,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run fresh seeds until the time is up, e.g. `--duration 10m`.
    Chaos {
        /// Fail if a reachable probe was never hit (see omendb_sim::sweep::PROBES_RARE).
        #[arg(long)]
        require_probes: bool,
        /// How long: 90s, 10m, 2h (or 1.5h, 500ms).
        #[arg(long, value_parser = parse_duration)]
        duration: Duration,
        /// First seed (seeds then count up).
        #[arg(long, default_value_t = 1_000_000)]
        start: u64,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        args: RunArgs,
    },
    /// Run each seed twice and compare trace hashes.
    Determinism {
        /// Seed range A..B.
        #[arg(long, value_parser = parse_range, default_value = "0..20")]
        seeds: (u64, u64),
        #[command(flatten)]
        args: RunArgs,
    },
}

fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("expected A..B, got {text:?}"))?;
    let a: u64 = a
        .trim()
        .parse()
        .map_err(|e| format!("bad start {a:?}: {e}"))?;
    let b: u64 = b
        .trim()
        .parse()
        .map_err(|e| format!("bad end {b:?}: {e}"))?;
    if b < a {
        return Err(format!("empty range {text}"));
    }
    Ok((a, b))
}

fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("expected I/N, got {text:?}"))?;
    let i: u64 = i
        .trim()
        .parse()
        .map_err(|e| format!("bad shard {i:?}: {e}"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|e| format!("bad shard count {n:?}: {e}"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {i}/{n}: need 0 <= I < N"));
    }
    Ok((i, n))
}

fn jobs_or_cores(jobs: Option<usize>) -> usize {
    jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn config(args: &RunArgs, echo: bool) -> RunConfig {
    RunConfig {
        ops: args.ops,
        faults: args.faults,
        echo,
        schedule: args.schedule,
    }
}

fn report_failure(outcome: &Outcome) {
    let Some(failure) = &outcome.failure else {
        return;
    };
    eprintln!();
    eprintln!(
        "FAILED seed {} check {} at step {}",
        outcome.seed, failure.check, failure.step
    );
    eprintln!("  {}", failure.detail);
    eprintln!(
        "  replay: {}",
        replay_command(outcome.seed, &outcome.config)
    );
    let faults: Vec<&str> = failure.fault_log.lines().collect();
    if !faults.is_empty() {
        eprintln!(
            "  fault log (last {} of {}):",
            faults.len().min(20),
            faults.len()
        );
        for line in faults.iter().skip(faults.len().saturating_sub(20)) {
            eprintln!("    {line}");
        }
    }
    eprintln!("  last operations:");
    for line in &failure.trace_tail {
        eprintln!("    {line}");
    }
}

fn print_outcome(outcome: &Outcome, json: bool) {
    report_failure(outcome);
    let status = if outcome.passed() { "passed" } else { "FAILED" };
    println!(
        "seed {} {status}: {} steps, {} engine ops, {} crashes, {} recoveries, trace {:016x}{}",
        outcome.seed,
        outcome.steps,
        outcome.engine_ops,
        outcome.crashes,
        outcome.recoveries,
        outcome.trace_hash,
        outcome
            .stopped_on_detected_damage
            .as_ref()
            .map(|d| format!(", stopped on detected damage: {d}"))
            .unwrap_or_default()
    );
    if json {
        let mut summary = Summary {
            seeds: 1,
            steps: outcome.steps,
            engine_ops: outcome.engine_ops,
            crashes: outcome.crashes,
            recoveries: outcome.recoveries,
            faults: outcome.faults.clone(),
            probes: outcome.probes.clone(),
            excused_losses: outcome.excused_losses.clone(),
            at_rest_injected: outcome.at_rest_injected.clone(),
            at_rest_outcomes: outcome.at_rest_outcomes.clone(),
            ..Summary::default()
        };
        if !outcome.passed() {
            summary.failed.push(outcome.clone());
        }
        println!("{}", summary.to_json());
    }
}

fn run_sweep(seeds: Vec<u64>, config: &RunConfig, jobs: usize, json: bool) -> Summary {
    let bar = ProgressBar::new(seeds.len() as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds {msg} [{elapsed_precise}, eta {eta}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = sweep(&seeds, config, jobs, &|_, _, failed| {
        bar.inc(1);
        if failed > 0 {
            bar.set_message(format!("{failed} failed"));
        }
    });
    bar.finish_and_clear();
    for outcome in &summary.failed {
        report_failure(outcome);
    }
    println!(
        "{} seeds, {} failed, {} engine ops, {} crashes, {} recoveries, {:.0} sim ops/s per core, {:.1}s",
        summary.seeds,
        summary.failed.len(),
        summary.engine_ops,
        summary.crashes,
        summary.recoveries,
        summary.sim_ops_per_s(),
        summary.elapsed_s
    );
    if json {
        println!("{}", summary.to_json());
    }
    summary
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ok = match cli.command {
        Command::Run { seed, args } => {
            let outcome = run(seed, &config(&args, false));
            print_outcome(&outcome, args.json);
            outcome.passed()
        }
        Command::Replay { seed, args } => {
            let outcome = run(seed, &config(&args, true));
            print_outcome(&outcome, args.json);
            outcome.passed()
        }
        Command::Sweep {
            seeds: (a, b),
            shard,
            jobs,
            args,
        } => {
            let seeds: Vec<u64> = (a..b)
                .filter(|s| shard.is_none_or(|(i, n)| s % n == i))
                .collect();
            let summary = run_sweep(seeds, &config(&args, false), jobs_or_cores(jobs), args.json);
            summary.failed.is_empty()
        }
        Command::Chaos {
            require_probes,
            duration,
            start,
            jobs,
            args,
        } => {
            let started = Instant::now();
            let jobs = jobs_or_cores(jobs);
            let mut total = Summary::default();
            let config = config(&args, false);
            // Batches of 64 fresh seeds until the time is up, each a deterministic sweep.
            omendb_simcore::chaos(
                &OmenDb { config: &config },
                start,
                duration,
                jobs,
                64,
                &mut |runs, next| {
                    let summary = Summary::of_runs(runs);
                    for outcome in &summary.failed {
                        report_failure(outcome);
                    }
                    total.merge(summary);
                    eprintln!(
                        "chaos: {} seeds ({}..{}), {} failed, {:.0}s",
                        total.seeds,
                        start,
                        next,
                        total.failed.len(),
                        started.elapsed().as_secs_f64()
                    );
                },
            );
            total.elapsed_s = started.elapsed().as_secs_f64();
            println!(
                "chaos: {} seeds, {} failed, {} crashes, {:.0} sim ops/s per core",
                total.seeds,
                total.failed.len(),
                total.crashes,
                total.sim_ops_per_s()
            );
            if args.json {
                println!("{}", total.to_json());
            }
            let missed = total.probes_required_missed(ProbeScope::Long);
            if require_probes && !missed.is_empty() {
                eprintln!("chaos: probes never hit: {missed:?}");
            }
            total.failed.is_empty() && (!require_probes || missed.is_empty())
        }
        Command::Shrink { seed, args } => {
            match omendb_sim::shrink::shrink(seed, &config(&args, false)) {
                None => {
                    println!(
                        "seed {seed} passes with --ops {} --faults {}: nothing to shrink",
                        args.ops, args.faults
                    );
                    true
                }
                Some(shrunk) => {
                    report_failure(&shrunk.outcome);
                    println!(
                        "shrunk in {} runs to: seed {seed} --ops {} --faults {}",
                        shrunk.runs, shrunk.config.ops, shrunk.config.faults
                    );
                    println!("seed file (save under seeds/ once the bug is fixed):");
                    print!(
                        "{}",
                        omendb_sim::seeds::render(
                            seed,
                            &shrunk.config,
                            shrunk
                                .outcome
                                .failure
                                .as_ref()
                                .map_or("", |f| f.check.name()),
                            "YYYY-MM-DD"
                        )
                    );
                    false
                }
            }
        }
        Command::Determinism {
            seeds: (a, b),
            args,
        } => {
            let config = config(&args, false);
            let (ok, lines) = omendb_simcore::determinism(&OmenDb { config: &config }, a, b);
            for line in lines {
                println!("{line}");
            }
            ok
        }
    };
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
