//! Shrinking a failing seed: the same seed with a smaller step budget and fewer of whatever
//! else the target can switch off, failing the same check.
//!
//! It works when a target draws its workload and schedule step by step from the seed's
//! stream, so that a run with fewer steps is a prefix of the longer one, and draws what
//! [`Shrink::reduce`] switches off (OmenDB: its fault classes) from streams of their own,
//! so that switching one off leaves the rest of the run as it was. The shrinker looks for
//! the smallest step budget that still fails the same check (bisection between a passing
//! lower bound and the failing step count), then tries each reduction once, in order,
//! keeping those that still fail the same way. Every run counts against a budget.

use crate::{Outcome, Target};

/// A target whose runs can be made smaller. OmenDB's is the step budget and its fault
/// classes (`omendb-sim shrink`).
pub trait Shrink: Target {
    /// Everything a run can be made smaller in, the step budget included.
    type Knobs: Clone;
    /// What failed: two runs fail the same way when their checks are equal.
    type Check: PartialEq;

    /// The knobs [`Target::run`] runs with, where shrinking starts.
    fn knobs(&self) -> Self::Knobs;
    /// Runs `seed` with `knobs` instead.
    fn run_with(&self, seed: u64, knobs: &Self::Knobs) -> Self::Outcome;
    /// The check `outcome` failed, if any.
    fn failed_check(&self, outcome: &Self::Outcome) -> Option<Self::Check>;
    /// The steps a run of `outcome` took (a failing run stops at its failure).
    fn steps_run(&self, outcome: &Self::Outcome) -> u64;
    /// The step budget of `knobs`.
    fn steps(&self, knobs: &Self::Knobs) -> u64;
    /// `knobs` with a step budget of `steps`.
    fn with_steps(&self, knobs: &Self::Knobs, steps: u64) -> Self::Knobs;
    /// How many reductions besides the step budget [`Shrink::reduce`] knows.
    fn reductions(&self) -> usize {
        0
    }
    /// `knobs` with reduction `index` (below [`Shrink::reductions`]) applied, or `None` when
    /// it changes nothing (that fault class is already off).
    fn reduce(&self, _knobs: &Self::Knobs, _index: usize) -> Option<Self::Knobs> {
        None
    }
}

/// Most runs one shrink spends unless told otherwise.
pub const SHRINK_RUNS_MAX: u32 = 200;

/// The result of a shrink.
#[derive(Debug, Clone)]
pub struct Shrunk<K, O> {
    /// The smallest failing knobs found (their step budget the steps the run took).
    pub knobs: K,
    /// Their outcome.
    pub outcome: O,
    /// Runs spent, the first included.
    pub runs: u32,
}

/// Shrinks a failing `seed` of `target`, spending at most `runs_max` runs. Returns `None`
/// if the seed does not fail with the target's knobs.
pub fn shrink<T: Shrink>(
    target: &T,
    seed: u64,
    runs_max: u32,
) -> Option<Shrunk<T::Knobs, T::Outcome>> {
    let knobs = target.knobs();
    let first = target.run_with(seed, &knobs);
    let check = target.failed_check(&first)?;
    debug_assert!(!first.passed(), "a run with a failed check passed");
    let mut best = Shrunk {
        knobs: target.with_steps(&knobs, target.steps_run(&first).max(1)),
        outcome: first,
        runs: 1,
    };
    let try_knobs = |candidate: T::Knobs, best: &mut Shrunk<T::Knobs, T::Outcome>| -> bool {
        if best.runs >= runs_max {
            return false;
        }
        best.runs += 1;
        let outcome = target.run_with(seed, &candidate);
        let same = target
            .failed_check(&outcome)
            .is_some_and(|failed| failed == check);
        if same {
            best.knobs = target.with_steps(&candidate, target.steps_run(&outcome).max(1));
            best.outcome = outcome;
        }
        same
    };
    // Fewer steps: bisect between a passing lower bound and the failing step count.
    let mut lo = 0u64;
    while target.steps(&best.knobs) - lo > 1 {
        let mid = lo + (target.steps(&best.knobs) - lo) / 2;
        let candidate = target.with_steps(&best.knobs, mid);
        if !try_knobs(candidate, &mut best) {
            lo = mid;
        }
        if best.runs >= runs_max {
            break;
        }
    }
    // Then each reduction the target knows, once.
    for index in 0..target.reductions() {
        if let Some(candidate) = target.reduce(&best.knobs, index) {
            try_knobs(candidate, &mut best);
        }
    }
    Some(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy target: a run of `steps` steps fails check "late" at step 37 when fault A is
    /// on, and fails check "b" at step 90 when fault B is on (whichever comes first).
    struct Toy {
        knobs: ToyKnobs,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    struct ToyKnobs {
        steps: u64,
        a: bool,
        b: bool,
    }

    #[derive(Debug)]
    struct Ran {
        steps: u64,
        failed: Option<&'static str>,
    }

    impl Outcome for Ran {
        fn seed(&self) -> u64 {
            0
        }
        fn passed(&self) -> bool {
            self.failed.is_none()
        }
        fn trace_hash(&self) -> u64 {
            self.steps
        }
    }

    impl Target for Toy {
        type Outcome = Ran;
        fn run(&self, seed: u64) -> Ran {
            self.run_with(seed, &self.knobs)
        }
        fn panicked(&self, _seed: u64, _message: String) -> Ran {
            Ran {
                steps: 0,
                failed: Some("panic"),
            }
        }
        fn replay_command(&self, seed: u64) -> String {
            format!("toy {seed}")
        }
    }

    impl Shrink for Toy {
        type Knobs = ToyKnobs;
        type Check = &'static str;
        fn knobs(&self) -> ToyKnobs {
            self.knobs
        }
        fn run_with(&self, _seed: u64, knobs: &ToyKnobs) -> Ran {
            for step in 1..=knobs.steps {
                if knobs.a && step == 37 {
                    return Ran {
                        steps: step,
                        failed: Some("a"),
                    };
                }
                if knobs.b && step == 90 {
                    return Ran {
                        steps: step,
                        failed: Some("b"),
                    };
                }
            }
            Ran {
                steps: knobs.steps,
                failed: None,
            }
        }
        fn failed_check(&self, outcome: &Ran) -> Option<&'static str> {
            outcome.failed
        }
        fn steps_run(&self, outcome: &Ran) -> u64 {
            outcome.steps
        }
        fn steps(&self, knobs: &ToyKnobs) -> u64 {
            knobs.steps
        }
        fn with_steps(&self, knobs: &ToyKnobs, steps: u64) -> ToyKnobs {
            ToyKnobs { steps, ..*knobs }
        }
        fn reductions(&self) -> usize {
            2
        }
        fn reduce(&self, knobs: &ToyKnobs, index: usize) -> Option<ToyKnobs> {
            match index {
                0 if knobs.a => Some(ToyKnobs { a: false, ..*knobs }),
                1 if knobs.b => Some(ToyKnobs { b: false, ..*knobs }),
                _ => None,
            }
        }
    }

    #[test]
    fn shrinks_to_the_failing_step_and_drops_what_it_does_not_need() {
        let toy = Toy {
            knobs: ToyKnobs {
                steps: 1000,
                a: true,
                b: true,
            },
        };
        let shrunk = shrink(&toy, 7, SHRINK_RUNS_MAX).expect("fails");
        assert_eq!(
            shrunk.knobs,
            ToyKnobs {
                steps: 37,
                a: true,
                b: false
            }
        );
        assert_eq!(shrunk.outcome.failed, Some("a"));
        assert!(shrunk.runs <= 10, "{} runs", shrunk.runs);
    }

    #[test]
    fn a_passing_seed_has_nothing_to_shrink_and_the_budget_holds() {
        let passing = Toy {
            knobs: ToyKnobs {
                steps: 1000,
                a: false,
                b: false,
            },
        };
        assert!(shrink(&passing, 7, SHRINK_RUNS_MAX).is_none());
        let failing = Toy {
            knobs: ToyKnobs {
                steps: 1000,
                a: false,
                b: true,
            },
        };
        let shrunk = shrink(&failing, 7, 3).expect("fails");
        assert_eq!(shrunk.runs, 3);
        assert_eq!(shrunk.outcome.failed, Some("b"));
    }
}
