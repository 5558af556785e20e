//! The fault plan: which faults the disk injects, how often, and what a crash keeps.
//!
//! A [`FaultPlan`] is plain data: per-call probabilities for each fault, the call at which
//! the disk freezes, a space budget, the sector size, and a [`CrashModel`] that says how
//! much of the unsynced state a crash (or a failed sync) keeps. [`FaultPlan::none`] turns
//! every fault off (a crash still loses unsynced data, since that is not a fault but what
//! a crash is). [`FaultPlan::from_seed`] draws a whole plan from one `u64` for swarm
//! testing: some seeds are calm, some are storms, and each seed enables a different subset
//! of faults, so that rare combinations get their turn.
//!
//! The plan's `seed` also seeds the disk's own random choices, so a plan plus the sequence
//! of calls made on the disk determines everything the disk does.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

/// The smallest and largest sector sizes the disk accepts.
pub const SECTOR_BYTES_MIN: u64 = 512;
/// See [`SECTOR_BYTES_MIN`].
pub const SECTOR_BYTES_MAX: u64 = 64 * 1024;

/// What a crash (or a failed sync) does to state that was not yet durable.
///
/// Unsynced writes are decided piece by piece, a piece being the part of one write that
/// falls in one sector: it persists whole (`sector_persist`), reads as zeros
/// (`sector_zeroed`), is torn (a prefix of the new bytes then the old ones,
/// `sector_torn`), or keeps its old bytes (the rest). Each piece is drawn independently,
/// so later writes may persist while earlier ones do not. Only bytes the unsynced write
/// covered change: bytes of a sector that were already durable are never damaged.
///
/// File sizes are journaled metadata: the unsynced size changes of a file (set_len,
/// writes past the end) are kept as an in-order prefix, each one kept with probability
/// `len_persist` if all earlier ones were. Pending directory operations are each kept with
/// probability `dir_op_persist`, and an operation is lost if an earlier lost one touched
/// the same directory entry, so a rename either happened or not, and never half.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrashModel {
    /// Probability that an unsynced sector piece persists with its new bytes.
    pub sector_persist: f64,
    /// Probability that an unsynced sector piece reads as zeros.
    pub sector_zeroed: f64,
    /// Probability that an unsynced sector piece is torn (new prefix, old rest).
    pub sector_torn: f64,
    /// Probability that each unsynced size change persists (given the earlier ones did).
    pub len_persist: f64,
    /// Probability that each pending directory operation persists.
    pub dir_op_persist: f64,
    /// At a power loss, when the size change of a write that extended the file is the first
    /// one lost: the probability that the size still moved to a byte inside that write (as when the
    /// kernel grew the file chunk by chunk and an inode update with a partial size reached
    /// the journal), anywhere from one byte of the write (past the size before it) to one
    /// byte short of its end. Drawn from a stream of the disk's own, so the other draws stay as they were.
    pub len_mid_write: f64,
}

impl CrashModel {
    /// Half of everything unsynced survives; a few sectors are zeroed or torn.
    pub fn coin_flip() -> CrashModel {
        CrashModel {
            sector_persist: 0.5,
            sector_zeroed: 0.05,
            sector_torn: 0.05,
            len_persist: 0.75,
            dir_op_persist: 0.5,
            len_mid_write: 0.5,
        }
    }

    /// A crash loses everything that was not durable.
    pub fn lose_all() -> CrashModel {
        CrashModel {
            sector_persist: 0.0,
            sector_zeroed: 0.0,
            sector_torn: 0.0,
            len_persist: 0.0,
            dir_op_persist: 0.0,
            len_mid_write: 0.0,
        }
    }

    /// A crash keeps everything, as if the kernel had flushed it all just in time.
    pub fn keep_all() -> CrashModel {
        CrashModel {
            sector_persist: 1.0,
            sector_zeroed: 0.0,
            sector_torn: 0.0,
            len_persist: 1.0,
            dir_op_persist: 1.0,
            len_mid_write: 0.0,
        }
    }

    fn normalized(self) -> CrashModel {
        let persist = probability(self.sector_persist);
        let zeroed = probability(self.sector_zeroed).min(1.0 - persist);
        let torn = probability(self.sector_torn).min(1.0 - persist - zeroed);
        CrashModel {
            sector_persist: persist,
            sector_zeroed: zeroed,
            sector_torn: torn.max(0.0),
            len_persist: probability(self.len_persist),
            dir_op_persist: probability(self.dir_op_persist),
            len_mid_write: probability(self.len_mid_write),
        }
    }
}

impl Default for CrashModel {
    fn default() -> Self {
        CrashModel::coin_flip()
    }
}

/// Rates and switches for every fault the simulated disk can inject.
///
/// Probabilities are per call of the named kind, in `[0, 1]`; out-of-range values are
/// clamped when the disk takes the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultPlan {
    /// Seeds the disk's random choices (fault draws and crash decisions).
    pub seed: u64,
    /// The unit of atomicity of the simulated device: 512 or 4096 (any power of two in
    /// `SECTOR_BYTES_MIN..=SECTOR_BYTES_MAX` is accepted).
    pub sector_bytes: u64,
    /// The disk freezes at this I/O call (1-based, counted over the disk's whole life).
    pub crash_at_op: Option<u64>,
    /// The most bytes all files together may hold; `None` for no limit.
    pub space_limit_bytes: Option<u64>,
    /// A read fails with EIO (transiently).
    pub read_error: f64,
    /// A read touches a sector that becomes unreadable for good (latent sector error).
    pub read_latent: f64,
    /// A write fails with EIO and writes nothing.
    pub write_error: f64,
    /// A write writes a prefix of its sectors, then fails with EIO.
    pub write_torn: f64,
    /// A write writes only some of its sectors and reports success.
    pub write_torn_acked: f64,
    /// A write lands at another offset or in another file and reports success.
    pub write_misdirected: f64,
    /// A sync fails with EIO (and the writes it covered are settled as a crash would).
    pub sync_error: f64,
    /// A sync_dir fails with EIO (the entries it covered stay pending).
    pub sync_dir_error: f64,
    /// At any I/O call, one random bit of durable data flips.
    pub bit_flip: f64,
    /// What a crash keeps of the unsynced state.
    pub crash: CrashModel,
}

impl FaultPlan {
    /// No faults at all, 4 KiB sectors, no space limit, no crash planned; a crash that the
    /// caller triggers follows [`CrashModel::coin_flip`].
    pub fn none() -> FaultPlan {
        FaultPlan {
            seed: 0,
            sector_bytes: 4096,
            crash_at_op: None,
            space_limit_bytes: None,
            read_error: 0.0,
            read_latent: 0.0,
            write_error: 0.0,
            write_torn: 0.0,
            write_torn_acked: 0.0,
            write_misdirected: 0.0,
            sync_error: 0.0,
            sync_dir_error: 0.0,
            bit_flip: 0.0,
            crash: CrashModel::coin_flip(),
        }
    }

    /// This plan with another seed.
    pub fn with_seed(mut self, seed: u64) -> FaultPlan {
        self.seed = seed;
        self
    }

    /// This plan with another crash model.
    pub fn with_crash_model(mut self, crash: CrashModel) -> FaultPlan {
        self.crash = crash;
        self
    }

    /// Draws a whole plan from one seed (swarm testing).
    ///
    /// A quarter of the seeds are calm (no faults but crashes), half are light (each fault
    /// on with some probability, at rates of 1e-5..1e-3 per call), a quarter are storms
    /// (rates of 1e-3..5e-2). Faults that corrupt data silently (acknowledged torn
    /// writes, misdirected writes, bit flips, latent sectors) are switched on less often
    /// than errors the engine sees. Half of the seeds plan a crash within the first 50,000
    /// calls; a fifth set a space limit between 256 KiB and 64 MiB.
    pub fn from_seed(seed: u64) -> FaultPlan {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // A stream of its own, so the plan's draws never mirror the disk's.
        rng.set_stream(1);
        let weather = rng.random_range(0..4u32);
        let (rate_min, rate_max, loud_on, silent_on) = match weather {
            0 => (0.0, 0.0, 0.0, 0.0),
            1 | 2 => (1e-5, 1e-3, 0.5, 0.2),
            _ => (1e-3, 5e-2, 0.7, 0.4),
        };
        let mut draw = |on: f64| -> f64 {
            if on > 0.0 && rng.random_bool(on) {
                log_uniform(&mut rng, rate_min, rate_max)
            } else {
                0.0
            }
        };
        let read_error = draw(loud_on);
        let write_error = draw(loud_on);
        let write_torn = draw(loud_on);
        let sync_error = draw(loud_on);
        let sync_dir_error = draw(loud_on);
        let read_latent = draw(silent_on);
        let write_torn_acked = draw(silent_on);
        let write_misdirected = draw(silent_on);
        let bit_flip = draw(silent_on);
        let sector_bytes = if rng.random_bool(0.5) { 512 } else { 4096 };
        let crash_at_op = rng
            .random_bool(0.5)
            .then(|| rng.random_range(1..=50_000u64));
        let space_limit_bytes = rng
            .random_bool(0.2)
            .then(|| log_uniform(&mut rng, 256.0 * 1024.0, 64.0 * 1024.0 * 1024.0) as u64);
        let sector_persist = rng.random_range(0.0..1.0);
        let crash = CrashModel {
            sector_persist,
            sector_zeroed: rng.random_range(0.0..0.1),
            sector_torn: rng.random_range(0.0..0.1),
            len_persist: rng.random_range(0.0..1.0),
            dir_op_persist: rng.random_range(0.0..1.0),
            // Not drawn: a new draw here would move every later draw of every seed.
            len_mid_write: 0.5,
        }
        .normalized();
        FaultPlan {
            seed,
            sector_bytes,
            crash_at_op,
            space_limit_bytes,
            read_error,
            read_latent,
            write_error,
            write_torn,
            write_torn_acked,
            write_misdirected,
            sync_error,
            sync_dir_error,
            bit_flip,
            crash,
        }
    }

    /// Whether any fault that returns an error or corrupts data is on (crashes aside).
    pub fn has_faults(&self) -> bool {
        self.fault_rates().iter().any(|(_, rate)| *rate > 0.0) || self.space_limit_bytes.is_some()
    }

    fn fault_rates(&self) -> [(&'static str, f64); 9] {
        [
            ("read_error", self.read_error),
            ("read_latent", self.read_latent),
            ("write_error", self.write_error),
            ("write_torn", self.write_torn),
            ("write_torn_acked", self.write_torn_acked),
            ("write_misdirected", self.write_misdirected),
            ("sync_error", self.sync_error),
            ("sync_dir_error", self.sync_dir_error),
            ("bit_flip", self.bit_flip),
        ]
    }

    /// The plan with probabilities clamped to `[0, 1]` and the sector size rounded to an
    /// accepted power of two.
    pub(crate) fn normalized(&self) -> FaultPlan {
        let sector = self
            .sector_bytes
            .clamp(SECTOR_BYTES_MIN, SECTOR_BYTES_MAX)
            .next_power_of_two()
            .min(SECTOR_BYTES_MAX);
        FaultPlan {
            sector_bytes: sector,
            read_error: probability(self.read_error),
            read_latent: probability(self.read_latent),
            write_error: probability(self.write_error),
            write_torn: probability(self.write_torn),
            write_torn_acked: probability(self.write_torn_acked),
            write_misdirected: probability(self.write_misdirected),
            sync_error: probability(self.sync_error),
            sync_dir_error: probability(self.sync_dir_error),
            bit_flip: probability(self.bit_flip),
            crash: self.crash.normalized(),
            ..self.clone()
        }
    }
}

impl Default for FaultPlan {
    fn default() -> Self {
        FaultPlan::none()
    }
}

/// One line: seed, sector size, crash call, space limit, then every fault that is on.
impl fmt::Display for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "seed={} sector={}", self.seed, self.sector_bytes)?;
        match self.crash_at_op {
            Some(op) => write!(f, " crash_at_op={op}")?,
            None => write!(f, " crash_at_op=none")?,
        }
        if let Some(limit) = self.space_limit_bytes {
            write!(f, " space_limit={limit}")?;
        }
        for (name, rate) in self.fault_rates() {
            if rate > 0.0 {
                write!(f, " {name}={rate:.2e}")?;
            }
        }
        let c = &self.crash;
        write!(
            f,
            " crash[persist={:.2} zeroed={:.2} torn={:.2} len={:.2} dir={:.2}]",
            c.sector_persist, c.sector_zeroed, c.sector_torn, c.len_persist, c.dir_op_persist
        )
    }
}

fn probability(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

fn log_uniform(rng: &mut ChaCha8Rng, min: f64, max: f64) -> f64 {
    let exponent = rng.random_range(min.ln()..max.ln());
    exponent.exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_has_no_faults() {
        assert!(!FaultPlan::none().has_faults());
        assert_eq!(FaultPlan::none().crash_at_op, None);
    }

    #[test]
    fn from_seed_is_deterministic_and_varied() {
        assert_eq!(FaultPlan::from_seed(42), FaultPlan::from_seed(42));
        let plans: Vec<FaultPlan> = (0..64).map(FaultPlan::from_seed).collect();
        let calm = plans.iter().filter(|p| !p.has_faults()).count();
        let stormy = plans
            .iter()
            .filter(|p| p.write_error > 1e-3 || p.sync_error > 1e-3)
            .count();
        assert!(calm > 0, "some seeds are calm");
        assert!(stormy > 0, "some seeds are storms");
        assert!(plans.iter().any(|p| p.sector_bytes == 512));
        assert!(plans.iter().any(|p| p.sector_bytes == 4096));
        for plan in &plans {
            assert_eq!(&plan.normalized(), plan, "drawn plans are already valid");
        }
    }

    #[test]
    fn normalized_clamps() {
        let plan = FaultPlan {
            sector_bytes: 1000,
            read_error: 7.0,
            write_error: f64::NAN,
            crash: CrashModel {
                sector_persist: 0.9,
                sector_zeroed: 0.9,
                sector_torn: 0.9,
                len_persist: -1.0,
                dir_op_persist: 2.0,
                len_mid_write: 3.0,
            },
            ..FaultPlan::none()
        }
        .normalized();
        assert_eq!(plan.sector_bytes, 1024);
        assert_eq!(plan.read_error, 1.0);
        assert_eq!(plan.write_error, 0.0);
        let c = plan.crash;
        assert!(c.sector_persist + c.sector_zeroed + c.sector_torn <= 1.0 + 1e-12);
        assert_eq!(c.len_persist, 0.0);
        assert_eq!(c.dir_op_persist, 1.0);
    }
}
