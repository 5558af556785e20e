//! The fault decisions [`SimFs`](crate::SimFs) and [`FaultyFs`](crate::FaultyFs) share: the
//! plan in force and its random stream, the call count, the space budget, the fault log and
//! the counters, and the faults both inject the same way.
//!
//! Each wrapper keeps one [`Injector`] and asks it, call by call and in its own fixed order,
//! whether a fault strikes ([`Injector::coin`]), how much of a write survives a tear
//! ([`Injector::torn_prefix`]) or a full disk ([`Injector::full_prefix_len`]), and records
//! what it injected ([`Injector::fail`]). What differs between the two stays with them:
//! `SimFs` also crashes, misdirects, tears silently, flips bits and keeps latent sectors,
//! and counts space over the files it holds; `FaultyFs` counts growth through itself.
//!
//! Randomness: a fault whose rate is zero draws nothing, so a calm plan spends no
//! randomness on faults, and every draw comes from the one ChaCha8 stream seeded by the
//! plan's seed; a seed's faults are therefore the same on every run.

use crate::error::injected;
use crate::file_data::sector_pieces;
use crate::log::{FaultKind, FaultLog, FaultRecord, Stats};
use crate::plan::FaultPlan;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::io;

/// A fault plan at work: its stream, the calls and bytes it counts, what it injected.
pub(crate) struct Injector {
    /// The plan in force (normalized).
    pub(crate) plan: FaultPlan,
    /// The stream every fault draw comes from, seeded by the first plan's seed.
    pub(crate) rng: ChaCha8Rng,
    /// I/O calls counted so far (1-based numbers; never reset).
    pub(crate) op_count: u64,
    /// The bytes the space limit counts against (what each wrapper counts differs).
    pub(crate) used_bytes: u64,
    pub(crate) log: FaultLog,
    pub(crate) stats: Stats,
}

impl Injector {
    /// An injector for `plan` (normalized here), its stream seeded by the plan's seed.
    pub(crate) fn new(plan: FaultPlan) -> Injector {
        let plan = plan.normalized();
        Injector {
            rng: ChaCha8Rng::seed_from_u64(plan.seed),
            plan,
            op_count: 0,
            used_bytes: 0,
            log: FaultLog::default(),
            stats: Stats::default(),
        }
    }

    /// Replaces the plan's rates and limits; the stream is not reseeded (the new plan's
    /// seed is ignored), so a run that changes plans midway stays a function of the first
    /// seed.
    pub(crate) fn set_plan(&mut self, plan: FaultPlan) {
        let seed = self.plan.seed;
        self.plan = FaultPlan {
            seed,
            ..plan.normalized()
        };
    }

    /// Counts one I/O call and returns its number.
    pub(crate) fn count_op(&mut self) -> u64 {
        self.op_count += 1;
        self.stats.ops += 1;
        self.op_count
    }

    /// Draws the fault whose rate `rate_of` picks from the plan (`|plan| plan.read_error`);
    /// draws nothing when the rate is zero.
    pub(crate) fn coin(&mut self, rate_of: fn(&FaultPlan) -> f64) -> bool {
        let rate = rate_of(&self.plan);
        rate > 0.0 && self.rng.random_bool(rate)
    }

    /// Bytes the space limit still allows; `u64::MAX` without a limit.
    pub(crate) fn space_left(&self) -> u64 {
        match self.plan.space_limit_bytes {
            Some(limit) => limit.saturating_sub(self.used_bytes),
            None => u64::MAX,
        }
    }

    /// How many bytes of a write of `len_bytes` at `offset`, into a file of `len_before`
    /// bytes, fit in the space left: the prefix a full disk writes before it fails.
    pub(crate) fn full_prefix_len(&self, len_before: u64, offset: u64, len_bytes: u64) -> u64 {
        let allowed_end = len_before.saturating_add(self.space_left());
        allowed_end.saturating_sub(offset).min(len_bytes)
    }

    /// Draws where a torn write of `buf` at `offset` stops: at the start of one of its
    /// sector pieces, so a prefix of whole pieces (possibly none, never all) is written.
    /// Returns the prefix's length and the fault log's detail. `buf` must not be empty.
    pub(crate) fn torn_prefix(&mut self, offset: u64, buf: &[u8]) -> (usize, String) {
        let pieces: Vec<u64> = sector_pieces(offset, buf, self.plan.sector_bytes)
            .map(|(piece_offset, _)| piece_offset)
            .collect();
        let kept = self.rng.random_range(0..pieces.len());
        let prefix_len = (pieces[kept] - offset) as usize;
        (
            prefix_len,
            format!("wrote {kept} of {} sector pieces", pieces.len()),
        )
    }

    /// Adds `record` to the log and the fault counters.
    pub(crate) fn record(&mut self, record: FaultRecord) {
        *self.stats.faults.entry(record.kind).or_insert(0) += 1;
        self.log.push(record);
    }

    /// Records a fault of `kind` at call `op` on `path`.
    pub(crate) fn record_at(
        &mut self,
        kind: FaultKind,
        op: u64,
        path: &str,
        offset: u64,
        len_bytes: u64,
        detail: String,
    ) {
        self.record(FaultRecord {
            op,
            kind,
            path: path.to_owned(),
            offset,
            len_bytes,
            detail,
        });
    }

    /// Records an injected fault and returns the error the call reports for it.
    pub(crate) fn fail(
        &mut self,
        kind: FaultKind,
        op: u64,
        path: &str,
        offset: u64,
        len_bytes: u64,
        detail: String,
    ) -> io::Error {
        self.record_at(kind, op, path, offset, len_bytes, detail);
        injected(kind, op, path, offset)
    }

    /// Counts a read that returned `len_bytes` bytes.
    pub(crate) fn count_read(&mut self, len_bytes: usize) {
        self.stats.reads += 1;
        self.stats.bytes_read += len_bytes as u64;
    }

    /// Counts a write of `len_bytes` bytes that reported success.
    pub(crate) fn count_write(&mut self, len_bytes: usize) {
        self.stats.writes += 1;
        self.stats.bytes_written += len_bytes as u64;
    }
}
