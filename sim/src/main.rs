//! `omendb-sim`: run, sweep, replay, shrink and chaos-test OmenDB under the deterministic
//! simulator. The commands, their parsing and exit codes (0 when every run passed, 1 when
//! any failed, 2 on bad arguments) are the generic core's ([`omendb_simcore::cli`]); this
//! file adds OmenDB's flags (`--ops`, `--faults`, `--schedule`, `--require-probes`) and
//! prints its outcomes, progress and summaries.

use indicatif::{ProgressBar, ProgressStyle};
use omendb_sim::config::SCHEDULE_CURRENT;
use omendb_sim::sweep::{sweep, OmenDb, ProbeScope, Summary};
use omendb_sim::{replay_command, FaultMask, Outcome, RunConfig};
use omendb_simcore::cli::{Command, Flag, Frontend, Invocation};
use std::process::ExitCode;
use std::time::Instant;

/// The simulator allocates and frees small buffers at a high rate (rows, frames, trace
/// lines, the disk's sector maps): glibc's malloc and free were a fifth of its profile.
/// Allocation addresses never reach a trace, so the allocator does not affect determinism.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OmenDB's own flags.
const FLAGS: &[Flag] = &[
    Flag {
        name: "ops",
        value: Some("N"),
        help: "scheduler steps per seed (default 1000)",
    },
    Flag {
        name: "faults",
        value: Some("CLASSES"),
        help: "fault classes: all (the default), none, or a list of crash,io,disk_full,corruption,at_rest",
    },
    Flag {
        name: "schedule",
        value: Some("G"),
        help: "schedule generation (1 to the newest, the default), to replay a seed recorded with an older one",
    },
    Flag {
        name: "require-probes",
        value: None,
        help: "chaos: fail if a reachable probe was never hit (see omendb_sim::sweep::PROBES_RARE)",
    },
];

/// Steps per seed without `--ops`.
const OPS_DEFAULT: u64 = 1000;

/// OmenDB's command line.
struct Sim;

impl Frontend for Sim {
    type Target = OmenDb;
    type Summary = Summary;

    fn name(&self) -> &'static str {
        "omendb-sim"
    }

    fn flags(&self) -> &'static [Flag] {
        FLAGS
    }

    fn target(&self, invocation: &Invocation) -> Result<OmenDb, String> {
        let options = &invocation.options;
        let ops = match options.value("ops") {
            None => OPS_DEFAULT,
            Some(text) => text
                .trim()
                .parse()
                .map_err(|e| format!("bad --ops {text:?}: {e}"))?,
        };
        let faults = options
            .value("faults")
            .map(FaultMask::parse)
            .transpose()?
            .unwrap_or(FaultMask::ALL);
        let schedule = options
            .value("schedule")
            .map(RunConfig::parse_schedule)
            .transpose()?
            .unwrap_or(SCHEDULE_CURRENT);
        Ok(OmenDb {
            config: RunConfig {
                ops,
                faults,
                // `replay` prints the whole trace.
                echo: matches!(invocation.command, Command::Replay { .. }),
                schedule,
            },
        })
    }

    fn sweep(&self, target: &OmenDb, seeds: &[u64], jobs: usize) -> Summary {
        let bar = ProgressBar::new(seeds.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {pos}/{len} seeds {msg} [{elapsed_precise}, eta {eta}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let summary = sweep(seeds, &target.config, jobs, &|_, _, failed| {
            bar.inc(1);
            if failed > 0 {
                bar.set_message(format!("{failed} failed"));
            }
        });
        bar.finish_and_clear();
        summary
    }

    fn chaos_batch(
        &self,
        _target: &OmenDb,
        invocation: &Invocation,
        total: &mut Summary,
        batch: Summary,
        next: u64,
        started: Instant,
    ) {
        for outcome in &batch.failed {
            report_failure(outcome);
        }
        total.merge(batch);
        let start = match invocation.command {
            Command::Chaos { start, .. } => start,
            _ => 0,
        };
        eprintln!(
            "chaos: {} seeds ({}..{}), {} failed, {:.0}s",
            total.seeds,
            start,
            next,
            total.failed.len(),
            started.elapsed().as_secs_f64()
        );
    }

    fn print_run(&self, _target: &OmenDb, invocation: &Invocation, outcome: &Outcome) {
        print_outcome(outcome, invocation.json);
    }

    fn print_summary(&self, _target: &OmenDb, invocation: &Invocation, summary: &Summary) -> bool {
        if matches!(invocation.command, Command::Chaos { .. }) {
            // A chaos run reported its failures batch by batch.
            println!(
                "chaos: {} seeds, {} failed, {} crashes, {:.0} sim ops/s per core",
                summary.seeds,
                summary.failed.len(),
                summary.crashes,
                summary.sim_ops_per_s()
            );
            if invocation.json {
                println!("{}", summary.to_json());
            }
            let require_probes = invocation.options.switch("require-probes");
            let missed = summary.probes_required_missed(ProbeScope::Long);
            if require_probes && !missed.is_empty() {
                eprintln!("chaos: probes never hit: {missed:?}");
            }
            return summary.failed.is_empty() && (!require_probes || missed.is_empty());
        }
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
        if invocation.json {
            println!("{}", summary.to_json());
        }
        summary.failed.is_empty()
    }

    fn shrink(&self, target: &OmenDb, _invocation: &Invocation, seed: u64) -> Result<bool, String> {
        let config = &target.config;
        Ok(match omendb_sim::shrink::shrink(seed, config) {
            None => {
                println!(
                    "seed {seed} passes with --ops {} --faults {}: nothing to shrink",
                    config.ops, config.faults
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
        })
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

fn main() -> ExitCode {
    omendb_simcore::cli::main(&Sim)
}
