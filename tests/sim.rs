//! The simulator as part of `cargo test --features sim`: every seed in seeds/ is replayed,
//! a bounded sweep runs, and the determinism check runs each of a few seeds twice.
#![cfg(feature = "sim")]

use omendb_sim::seeds::load_dir;
use omendb_sim::sweep::{
    probes_listed, sweep, ProbeScope, Summary, PROBES_RARE, PROBES_UNREACHABLE,
};
use omendb_sim::{replay_command, run, FaultMask, Outcome, RunConfig};
use std::path::Path;
use std::sync::OnceLock;

fn describe(outcome: &Outcome) -> String {
    match &outcome.failure {
        None => format!("seed {} passed", outcome.seed),
        Some(f) => format!(
            "seed {} failed {} at step {}: {}\nreplay: {}\n{}",
            outcome.seed,
            f.check,
            f.step,
            f.detail,
            replay_command(outcome.seed, &outcome.config),
            f.trace_tail.join("\n")
        ),
    }
}

#[test]
fn every_seed_in_seeds_dir_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    let seeds = load_dir(&dir).expect("seeds/ parses");
    assert!(!seeds.is_empty(), "no seed files in {}", dir.display());
    for file in seeds {
        let outcome = run(file.seed, &file.config);
        assert!(
            outcome.passed(),
            "{}: {}",
            file.path.display(),
            describe(&outcome)
        );
    }
}

/// The bounded sweep, run once and shared by the tests that check it.
fn bounded_sweep() -> &'static Summary {
    static SUMMARY: OnceLock<Summary> = OnceLock::new();
    SUMMARY.get_or_init(|| {
        let seeds: Vec<u64> = (0..300).collect();
        let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
        sweep(
            &seeds,
            &RunConfig {
                ops: 600,
                ..RunConfig::default()
            },
            jobs,
            &|_, _, _| {},
        )
    })
}

#[test]
fn bounded_sweep_hits_every_probe() {
    let summary = bounded_sweep();
    let missed = summary.probes_required_missed(ProbeScope::Bounded);
    assert!(
        missed.is_empty(),
        "probes never hit in the bounded sweep: {missed:?}\nall hits: {:?}",
        summary.probes
    );
    for (name, _) in PROBES_UNREACHABLE.iter().chain(PROBES_RARE) {
        assert!(
            probes_listed().any(|listed| listed == *name),
            "a probe list names {name}, which is no probe"
        );
    }
}

#[test]
fn probe_counts_are_per_run_under_parallel_runs() {
    let config = RunConfig {
        ops: 300,
        ..RunConfig::default()
    };
    let alone = run(3, &config).probes;
    let together: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = [3u64, 4, 3]
            .into_iter()
            .map(|seed| {
                let config = config.clone();
                scope.spawn(move || run(seed, &config).probes)
            })
            .collect();
        runs.into_iter().map(|r| r.join().expect("run")).collect()
    });
    assert_eq!(together[0], alone);
    assert_eq!(together[2], alone);
    assert!(alone.values().sum::<u64>() > 0, "seed 3 hit no probe");
}

#[test]
fn bounded_sweep_passes() {
    let summary = bounded_sweep();
    let failures: Vec<String> = summary.failed.iter().map(describe).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // The sweep must exercise what it claims to: crashes, recoveries and several faults.
    assert!(summary.crashes > 100, "only {} crashes", summary.crashes);
    assert!(
        summary.recoveries > 300,
        "only {} recoveries",
        summary.recoveries
    );
    // Every run that did not stop on damage at rest ends with the liveness phase.
    assert_eq!(
        summary.liveness_checked + summary.detected_damage,
        summary.seeds,
        "runs neither checked for liveness nor stopped on damage"
    );
    // Damage at rest (schedule generation 6): every kind at both moments, reported as
    // corruption after a clean close, excused as a lost tail after a crash.
    for kind in ["truncate", "remove", "zero"] {
        for moment in ["after_close", "after_crash"] {
            let key = format!("{kind}_{moment}");
            assert!(
                summary.at_rest_injected.get(&key).copied().unwrap_or(0) > 0,
                "no {key} in the sweep: {:?}",
                summary.at_rest_injected
            );
        }
    }
    for outcome in ["after_close_corruption", "after_crash_excused_loss"] {
        assert!(
            summary.at_rest_outcomes.get(outcome).copied().unwrap_or(0) > 0,
            "no {outcome} in the sweep: {:?}",
            summary.at_rest_outcomes
        );
    }
    for kind in [
        "crash",
        "sync_error",
        "write_error",
        "bit_flip",
        "disk_full",
        "unsynced_write_lost",
    ] {
        assert!(
            summary.faults.get(kind).copied().unwrap_or(0) > 0,
            "no {kind} fault in the sweep: {:?}",
            summary.faults
        );
    }
}

#[test]
fn calm_runs_check_every_operation() {
    // With faults off, nothing may be excused: every run must reach its last step.
    for seed in 0..20 {
        let config = RunConfig {
            ops: 500,
            faults: FaultMask::NONE,
            echo: false,
            schedule: omendb_sim::config::SCHEDULE_CURRENT,
        };
        let outcome = run(seed, &config);
        assert!(outcome.passed(), "{}", describe(&outcome));
        assert_eq!(outcome.steps, 500);
        assert!(outcome.stopped_on_detected_damage.is_none());
        assert!(outcome.excused_losses.is_empty());
        assert!(
            outcome.liveness_checked,
            "seed {seed}: liveness not checked"
        );
    }
}

#[test]
fn same_seed_same_trace_and_disk() {
    for seed in [0u64, 7, 21, 277, 1918] {
        let config = RunConfig {
            ops: 800,
            ..RunConfig::default()
        };
        let first = run(seed, &config);
        let second = run(seed, &config);
        assert_eq!(
            first.trace_hash, second.trace_hash,
            "seed {seed}: trace differs"
        );
        assert_eq!(
            first.disk_hash, second.disk_hash,
            "seed {seed}: disk image differs"
        );
        assert_eq!(first.steps, second.steps);
    }
    // And different seeds do differ.
    let config = RunConfig {
        ops: 200,
        ..RunConfig::default()
    };
    assert_ne!(run(1, &config).trace_hash, run(2, &config).trace_hash);
}
