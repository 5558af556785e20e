//! How a run ended: its counters, hashes and probe hits ([`Outcome`]), and the failed check
//! with the context a reader needs to start debugging ([`Failure`]).

use crate::checker::Check;
use crate::config::RunConfig;
use std::collections::BTreeMap;

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check that failed (stable name, compared by the shrinker).
    pub check: Check,
    /// What exactly was wrong.
    pub detail: String,
    /// The step at which it failed.
    pub step: u64,
    /// The newest trace lines.
    pub trace_tail: Vec<String>,
    /// The disk's fault log.
    pub fault_log: String,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The configuration.
    pub config: RunConfig,
    /// Steps run.
    pub steps: u64,
    /// Engine operations issued (writes, reads, checkpoints, opens).
    pub engine_ops: u64,
    /// Crashes (disk restarts).
    pub crashes: u64,
    /// Recoveries checked.
    pub recoveries: u64,
    /// Faults by kind, as the disk counted them.
    pub faults: BTreeMap<String, u64>,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Hash of the disk image at the end of the run.
    pub disk_hash: u64,
    /// The run stopped early because the engine correctly reported damage it cannot
    /// repair (corruption, unreadable sectors) after silent faults were injected.
    pub stopped_on_detected_damage: Option<String>,
    /// Recoveries that lost writes the engine had claimed durable, excused by the exact
    /// recovery oracle because silent damage explains the loss ([`crate::oracle`]), by reason.
    pub excused_losses: BTreeMap<String, u64>,
    /// Whether the liveness phase ran: the healed disk took acknowledged writes, a
    /// checkpoint, a hot-tier flush (with a hot cap) and a compaction.
    pub liveness_checked: bool,
    /// Hits of every coverage probe during the run, by name (every probe, zeros included).
    pub probes: BTreeMap<&'static str, u64>,
    /// Durability claims the acknowledgement oracle checked against the disk's durable
    /// image, and those it excused after silent damage to the log or a checkpoint.
    pub oracle_checks: u64,
    /// See `oracle_checks`.
    pub oracle_excused: u64,
    /// Damage at rest injected ([`crate::at_rest`]), by kind and moment
    /// (`truncate_after_crash`, ...; `refused_...` when no file was at rest).
    pub at_rest_injected: BTreeMap<String, u64>,
    /// Opens after damage at rest, by moment and outcome (`after_close_corruption`,
    /// `after_crash_excused_loss`, `..._intact`).
    pub at_rest_outcomes: BTreeMap<String, u64>,
    /// The failure, if any check failed.
    pub failure: Option<Failure>,
}

impl Outcome {
    /// The outcome of a run that panicked (the engine must never panic).
    pub fn panicked(seed: u64, config: &RunConfig, message: String) -> Outcome {
        Outcome {
            seed,
            config: config.clone(),
            steps: 0,
            engine_ops: 0,
            crashes: 0,
            recoveries: 0,
            faults: BTreeMap::new(),
            trace_hash: 0,
            disk_hash: 0,
            stopped_on_detected_damage: None,
            excused_losses: BTreeMap::new(),
            liveness_checked: false,
            probes: BTreeMap::new(),
            oracle_checks: 0,
            oracle_excused: 0,
            at_rest_injected: BTreeMap::new(),
            at_rest_outcomes: BTreeMap::new(),
            failure: Some(Failure {
                check: Check::Panic,
                detail: message,
                step: 0,
                trace_tail: vec!["(replay the seed to see the trace up to the panic)".into()],
                fault_log: String::new(),
            }),
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}
