//! What a run does besides its seed: the fault classes it may inject ([`FaultMask`], parsed
//! from the command line and seed files), the step budget and the schedule generation
//! ([`RunConfig`]), and the one command line that replays a run ([`replay_command`]).
//!
//! **Schedule generations.** A change to the simulator that adds draws to the run's stream
//! or disk calls to the fault phase moves the trajectory of the seeds it touches, and a
//! seed file would then no longer replay the run it was saved for. Such a change bumps
//! [`SCHEDULE_CURRENT`] and keys off [`RunConfig::schedule`]; seed files name their
//! generation (a file without one is generation 1) and replay it as recorded.
//!
//! | generation | adds |
//! |---|---|
//! | 1 | the schedule as of the acknowledgement oracle (seed files 0001-0007) |
//! | 2 | `Options::compaction_base_rows` drawn per seed from {default, 1, 4, 16} (size-tiered compaction; seed file 0008) |
//! | 3 | metamorphic checks in the fault phase ([`crate::metamorphic`]); descending and back-filling key distributions ([`crate::workload::KeyDist`]) |
//! | 4 | BUGGIFY knobs: log segment and buffer sizes and the checkpoint copy threshold drawn per seed ([`crate::workload::Knobs`]) |
//! | 5 | ALEX node capacity and inner fanout drawn per seed too (seed file 0009: a failed seal for appends left a stale slot) |
//! | 6 | damage at rest after a clean close and after a crash: files cut, removed, zeroed ([`crate::at_rest`]; seed file 0010: a missing cold file was an I/O error) |
//! | 7 | the background flush worker (`Options::flush_worker`) on for half the seeds with a hot-tier cap: its copy, write and install phases are worker steps, so writes land between them |
//! | 8 | a quarter of the seeds log into 512-byte segments (most writes roll), and damage at rest aims at an interior log segment (neither the first nor the last of three or more) for half of the damage to segments not aimed at the last: at generation 7 a log at rest had one segment at 370 of 379 moments, and a planted "LSN gap checked only for the first segment" failed no seed |
//! | 9 | after a worker step that leaves a flush in flight, half the time a burst of two to six updates and deletes of keys the flush copied, in descending key order ([`crate::flush_aim`]): at generation 8 writes met a flush in flight in 14 of 1,000 seeds, and a planted unsorted install failed none |
//! | 10 | the metamorphic checks also read an unbounded `scan_batches` of each table's fixed-width columns, which the engine serves from its hot columns in slot order, against the full scan ([`crate::metamorphic`]) |

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
    /// Damage at rest while the process is down: a file cut short, removed, or a range of it
    /// zeroed (schedule generation 6 on, [`crate::at_rest`]).
    pub at_rest: bool,
}

impl FaultMask {
    /// Every fault class.
    pub const ALL: FaultMask = FaultMask {
        crash: true,
        io: true,
        disk_full: true,
        corruption: true,
        at_rest: true,
    };
    /// No faults at all.
    pub const NONE: FaultMask = FaultMask {
        crash: false,
        io: false,
        disk_full: false,
        corruption: false,
        at_rest: false,
    };

    /// The class names, in the order of [`FaultMask::without`]'s index.
    pub const NAMES: [&'static str; 5] = ["crash", "io", "disk_full", "corruption", "at_rest"];

    fn flags(&self) -> [bool; 5] {
        [
            self.crash,
            self.io,
            self.disk_full,
            self.corruption,
            self.at_rest,
        ]
    }

    fn from_flags(flags: [bool; 5]) -> FaultMask {
        FaultMask {
            crash: flags[0],
            io: flags[1],
            disk_full: flags[2],
            corruption: flags[3],
            at_rest: flags[4],
        }
    }

    /// The mask without class `i` (an index into [`FaultMask::NAMES`]), for shrinking.
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
        let mut flags = [false; FaultMask::NAMES.len()];
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
            n if n == FaultMask::NAMES.len() => f.write_str("all"),
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
    /// The schedule generation (module doc): [`SCHEDULE_CURRENT`] unless replaying a seed
    /// file recorded with an older one.
    pub schedule: u32,
}

/// The default schedule generation (module doc).
pub const SCHEDULE_CURRENT: u32 = 10;
/// The newest generation, which may not be the default while it fails seeds.
pub const SCHEDULE_MAX: u32 = 10;
const _: () = assert!(SCHEDULE_CURRENT <= SCHEDULE_MAX);

impl RunConfig {
    /// Whether the compaction tiers' base is drawn per seed (generation 2 on); before, every
    /// seed ran the default.
    pub fn compaction_tiers_drawn(&self) -> bool {
        self.schedule >= 2
    }

    /// Whether the fault phase runs the metamorphic checks (generation 3 on): their reads
    /// of cold segments shift a hot-capped seed's disk calls.
    pub fn metamorphic(&self) -> bool {
        self.schedule >= 3
    }

    /// Whether tables may draw the descending and back-filling key distributions
    /// (generation 3 on).
    pub fn key_dists_v2(&self) -> bool {
        self.schedule >= 3
    }

    /// Whether the engine's BUGGIFY knobs are drawn per seed (generation 4 on).
    pub fn buggify(&self) -> bool {
        self.schedule >= 4
    }

    /// Whether the ALEX knobs are drawn too (generation 5 on).
    pub fn alex_knobs(&self) -> bool {
        self.schedule >= 5
    }

    /// Whether damage at rest is injected while the process is down (generation 6 on).
    pub fn at_rest(&self) -> bool {
        self.schedule >= 6
    }

    /// Whether the flush worker is drawn per seed (generation 7 on).
    pub fn flush_worker_drawn(&self) -> bool {
        self.schedule >= 7
    }

    /// Whether a quarter of the seeds log into tiny segments and damage at rest aims at
    /// interior log segments (generation 8 on).
    pub fn at_rest_interior(&self) -> bool {
        self.schedule >= 8
    }

    /// Whether writes are aimed at a flush in flight (generation 9 on,
    /// [`crate::flush_aim`]).
    pub fn aims_writes_at_flushes(&self) -> bool {
        self.schedule >= 9
    }

    /// Whether half the damage at rest with three or more log segments removes an interior
    /// one (generation 9 on, [`crate::at_rest`]).
    pub fn at_rest_gaps(&self) -> bool {
        self.schedule >= 9
    }

    /// Whether the metamorphic checks read the fixed-width columns unbounded too
    /// (generation 10 on): their reads of cold segments shift a seed's disk calls.
    pub fn fixed_projection_check(&self) -> bool {
        self.schedule >= 10
    }

    /// Parses a schedule generation, 1 to [`SCHEDULE_MAX`].
    pub fn parse_schedule(text: &str) -> Result<u32, String> {
        match text.trim().parse::<u32>() {
            Ok(n) if (1..=SCHEDULE_MAX).contains(&n) => Ok(n),
            _ => Err(format!(
                "schedule generation {text:?}: expected 1 to {SCHEDULE_MAX}"
            )),
        }
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            ops: 1000,
            faults: FaultMask::ALL,
            echo: false,
            schedule: SCHEDULE_CURRENT,
        }
    }
}

/// The command that replays `seed` under `config`, printed wherever a run is reported.
pub fn replay_command(seed: u64, config: &RunConfig) -> String {
    format!(
        "cargo run --release -p omendb-sim -- replay {seed} --ops {} --faults {}{}",
        config.ops,
        config.faults,
        if config.schedule == SCHEDULE_CURRENT {
            String::new()
        } else {
            format!(" --schedule {}", config.schedule)
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_masks_print_and_parse_back() {
        assert_eq!(FaultMask::ALL.to_string(), "all");
        assert_eq!(FaultMask::NONE.to_string(), "none");
        let no_rest = FaultMask::ALL.without(FaultMask::NAMES.len() - 1);
        assert!(!no_rest.at_rest && no_rest.corruption);
        assert_eq!(no_rest.to_string(), "crash,io,disk_full,corruption");
        for i in 0..FaultMask::NAMES.len() {
            let mask = FaultMask::ALL.without(i);
            assert_eq!(FaultMask::parse(&mask.to_string()), Ok(mask));
        }
        let only = FaultMask::parse("at_rest").unwrap();
        assert_eq!(
            only,
            FaultMask {
                at_rest: true,
                ..FaultMask::NONE
            }
        );
        assert!(FaultMask::parse("at_rest,nope").is_err());
    }

    #[test]
    fn generations_switch_features_on_in_order() {
        let at = |schedule| RunConfig {
            schedule,
            ..RunConfig::default()
        };
        assert!(!at(5).at_rest() && at(6).at_rest() && at(6).alex_knobs());
        assert!(!at(6).flush_worker_drawn() && at(7).flush_worker_drawn() && at(7).at_rest());
        assert!(!at(7).at_rest_interior() && at(8).at_rest_interior() && at(8).at_rest());
        assert!(!at(8).aims_writes_at_flushes() && at(9).aims_writes_at_flushes());
        assert!(!at(8).at_rest_gaps() && at(9).at_rest_gaps());
        assert!(!at(9).fixed_projection_check() && at(10).fixed_projection_check());
        assert!(RunConfig::parse_schedule(&SCHEDULE_MAX.to_string()).is_ok());
        assert!(RunConfig::parse_schedule(&(SCHEDULE_MAX + 1).to_string()).is_err());
    }
}
