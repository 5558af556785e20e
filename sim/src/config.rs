//! What a run does besides its seed: the fault classes it may inject ([`FaultMask`], parsed
//! from the command line and seed files) and the step budget ([`RunConfig`]), and the one
//! command line that replays a run ([`replay_command`]).

use omendb_faults::FaultPlan;
use std::fmt;

/// Which fault classes a run may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultMask {
    /// Crashes: at seeded I/O calls and between operations.
    pub crash: bool,
    /// Transient I/O errors: read, write, torn write, sync, sync_dir.
    pub io: bool,
    /// A space limit (disk full).
    pub disk_full: bool,
    /// Silent corruption: bit flips, acknowledged torn writes, misdirected writes, latent
    /// sector errors.
    pub corruption: bool,
}

impl FaultMask {
    /// Every fault class.
    pub const ALL: FaultMask = FaultMask {
        crash: true,
        io: true,
        disk_full: true,
        corruption: true,
    };
    /// No faults at all.
    pub const NONE: FaultMask = FaultMask {
        crash: false,
        io: false,
        disk_full: false,
        corruption: false,
    };

    const NAMES: [&'static str; 4] = ["crash", "io", "disk_full", "corruption"];

    fn flags(&self) -> [bool; 4] {
        [self.crash, self.io, self.disk_full, self.corruption]
    }

    fn from_flags(flags: [bool; 4]) -> FaultMask {
        FaultMask {
            crash: flags[0],
            io: flags[1],
            disk_full: flags[2],
            corruption: flags[3],
        }
    }

    /// The mask without class `i` (0..4), for shrinking.
    pub fn without(&self, i: usize) -> FaultMask {
        let mut flags = self.flags();
        if let Some(flag) = flags.get_mut(i) {
            *flag = false;
        }
        FaultMask::from_flags(flags)
    }

    /// Parses `all`, `none`, or a comma-separated list of class names.
    pub fn parse(text: &str) -> Result<FaultMask, String> {
        match text.trim() {
            "all" => return Ok(FaultMask::ALL),
            "none" | "" => return Ok(FaultMask::NONE),
            _ => {}
        }
        let mut flags = [false; 4];
        for name in text.split(',').map(str::trim) {
            let i = FaultMask::NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| {
                    format!(
                        "unknown fault class {name:?}; expected one of {:?}",
                        FaultMask::NAMES
                    )
                })?;
            flags[i] = true;
        }
        Ok(FaultMask::from_flags(flags))
    }

    /// The plan with every fault class outside the mask switched off.
    pub fn apply(&self, mut plan: FaultPlan) -> FaultPlan {
        if !self.crash {
            plan.crash_at_op = None;
        }
        if !self.io {
            plan.read_error = 0.0;
            plan.write_error = 0.0;
            plan.write_torn = 0.0;
            plan.sync_error = 0.0;
            plan.sync_dir_error = 0.0;
        }
        if !self.disk_full {
            plan.space_limit_bytes = None;
        }
        if !self.corruption {
            plan.read_latent = 0.0;
            plan.write_torn_acked = 0.0;
            plan.write_misdirected = 0.0;
            plan.bit_flip = 0.0;
        }
        plan
    }
}

impl fmt::Display for FaultMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = FaultMask::NAMES
            .iter()
            .zip(self.flags())
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        match on.len() {
            0 => f.write_str("none"),
            4 => f.write_str("all"),
            _ => f.write_str(&on.join(",")),
        }
    }
}

/// What a run does besides its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Scheduler steps.
    pub ops: u64,
    /// Fault classes allowed.
    pub faults: FaultMask,
    /// Print every trace line (replay).
    pub echo: bool,
    /// Run the metamorphic checks in the schedule ([`crate::metamorphic`]). Their reads of
    /// cold segments shift a hot-capped seed's disk calls, so seed files recorded before
    /// them turn them off to replay the trajectory they were recorded with.
    pub metamorphic: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            ops: 1000,
            faults: FaultMask::ALL,
            echo: false,
            metamorphic: true,
        }
    }
}

/// The command that replays `seed` under `config`, printed wherever a run is reported.
pub fn replay_command(seed: u64, config: &RunConfig) -> String {
    format!(
        "cargo run --release -p omendb-sim -- replay {seed} --ops {} --faults {}{}",
        config.ops,
        config.faults,
        if config.metamorphic {
            ""
        } else {
            " --no-metamorphic"
        }
    )
}
