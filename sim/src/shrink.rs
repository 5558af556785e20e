//! Shrinking a failing run: the same seed with fewer steps and fewer fault classes.
//!
//! A run's workload and schedule are drawn step by step from the seed's stream, so a run
//! with fewer steps is a prefix of the longer one; the disk's faults come from their own
//! stream, so switching a fault class off leaves the workload as it was. The shrinker
//! looks for the smallest step count that still fails the same check (bisection, then a
//! linear tighten), then drops every fault class it can.

use crate::config::RunConfig;
use crate::outcome::Outcome;
use crate::runner::run;

/// Most runs one shrink may spend.
pub const SHRINK_RUNS_MAX: u32 = 200;

/// The result of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest failing configuration found.
    pub config: RunConfig,
    /// Its outcome.
    pub outcome: Outcome,
    /// Runs spent.
    pub runs: u32,
}

/// Shrinks a failing `(seed, config)`. Returns `None` if it does not fail.
pub fn shrink(seed: u64, config: &RunConfig) -> Option<Shrunk> {
    let first = run(seed, config);
    let check = first.failure.as_ref()?.check;
    let mut best = Shrunk {
        config: RunConfig {
            ops: first.steps.max(1),
            ..config.clone()
        },
        outcome: first,
        runs: 1,
    };
    let try_config = |candidate: RunConfig, best: &mut Shrunk| -> bool {
        if best.runs >= SHRINK_RUNS_MAX {
            return false;
        }
        best.runs += 1;
        let outcome = run(seed, &candidate);
        let same = outcome.failure.as_ref().is_some_and(|f| f.check == check);
        if same {
            best.config = RunConfig {
                ops: outcome.steps.max(1),
                ..candidate
            };
            best.outcome = outcome;
        }
        same
    };
    // Fewer steps: bisect between a passing lower bound and the failing step count.
    let mut lo = 0u64;
    while best.config.ops - lo > 1 {
        let mid = lo + (best.config.ops - lo) / 2;
        let candidate = RunConfig {
            ops: mid,
            ..best.config.clone()
        };
        if !try_config(candidate, &mut best) {
            lo = mid;
        }
        if best.runs >= SHRINK_RUNS_MAX {
            break;
        }
    }
    // Fewer fault classes.
    for class in 0..crate::config::FaultMask::NAMES.len() {
        let candidate = RunConfig {
            faults: best.config.faults.without(class),
            ..best.config.clone()
        };
        if candidate.faults != best.config.faults {
            try_config(candidate, &mut best);
        }
    }
    Some(best)
}
