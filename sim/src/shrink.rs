//! Shrinking a failing run: the same seed with fewer steps and fewer fault classes, through
//! the generic core's shrinker ([`omendb_simcore::shrink`]); OmenDB is its first target.
//!
//! A run's workload and schedule are drawn step by step from the seed's stream, so a run
//! with fewer steps is a prefix of the longer one; the disk's faults come from their own
//! stream, so switching a fault class off leaves the workload as it was. The shrinker
//! looks for the smallest step count that still fails the same check (bisection), then
//! drops every fault class it can ([`FaultMask::NAMES`] in order).

use crate::checker::Check;
use crate::config::{FaultMask, RunConfig};
use crate::outcome::Outcome;
use crate::runner::run;
use crate::sweep::OmenDb;

/// Most runs one shrink may spend.
pub const SHRINK_RUNS_MAX: u32 = omendb_simcore::shrink::SHRINK_RUNS_MAX;

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

impl omendb_simcore::shrink::Shrink for OmenDb {
    type Knobs = RunConfig;
    type Check = Check;

    fn knobs(&self) -> RunConfig {
        self.config.clone()
    }

    fn run_with(&self, seed: u64, knobs: &RunConfig) -> Outcome {
        run(seed, knobs)
    }

    fn failed_check(&self, outcome: &Outcome) -> Option<Check> {
        outcome.failure.as_ref().map(|f| f.check)
    }

    fn steps_run(&self, outcome: &Outcome) -> u64 {
        outcome.steps
    }

    fn steps(&self, knobs: &RunConfig) -> u64 {
        knobs.ops
    }

    fn with_steps(&self, knobs: &RunConfig, steps: u64) -> RunConfig {
        RunConfig {
            ops: steps,
            ..knobs.clone()
        }
    }

    fn reductions(&self) -> usize {
        FaultMask::NAMES.len()
    }

    /// Fault class `index` switched off.
    fn reduce(&self, knobs: &RunConfig, index: usize) -> Option<RunConfig> {
        let faults = knobs.faults.without(index);
        (faults != knobs.faults).then(|| RunConfig {
            faults,
            ..knobs.clone()
        })
    }
}

/// Shrinks a failing `(seed, config)`. Returns `None` if it does not fail.
pub fn shrink(seed: u64, config: &RunConfig) -> Option<Shrunk> {
    let shrunk = omendb_simcore::shrink::shrink(
        &OmenDb {
            config: config.clone(),
        },
        seed,
        SHRINK_RUNS_MAX,
    )?;
    Some(Shrunk {
        config: shrunk.knobs,
        outcome: shrunk.outcome,
        runs: shrunk.runs,
    })
}
