//! Damage at rest (schedule generation 6, issue 18): while the process is down, a file of
//! the database is cut short at any byte, removed, or has a range zeroed.
//!
//! **When.** At two moments, each with the seed's rate (from generation 9, 0.5 at a moment
//! with three or more log segments at rest, in a seed whose rate is not 0): after a clean close, before the
//! next open; and after a crash, once the disk has restarted and before the first open
//! attempt (not between the attempts of one open). At most one injection per moment, so at
//! most one between two opens; never once the liveness phase has healed the disk.
//!
//! **What.** One file at rest (same inode in the durable and the current view, nothing
//! unsynced, no handle; see `SimFs::truncate_at_rest`): half the time a log segment (half
//! of those the last one; from generation 8, of the others, when there are three or more,
//! half an interior one: neither the segment recovery starts from nor the last, where a
//! lost segment is a gap only the LSN chain shows; from generation 9, with three or more,
//! half the injections remove an interior one outright, the one damage only the chain can
//! show), else any file of the database. Then, with the kind drawn: cut at
//! a byte (half the time anywhere, half the time within its last 512 bytes), removed, or a
//! range zeroed (from a byte drawn the same way, to the end half the time, else 1 byte to
//! 4 KiB). The disk records it in the fault log.
//!
//! **The stream.** Every draw comes from a ChaCha8 stream of its own, seeded from the seed
//! and a salt. Generations 1-5 make no draw and no injection, so their runs are unchanged
//! bit for bit; at generation 6 the schedule's own draws stay as they were up to the first
//! injection (the damage then changes what the engine reads, and so what follows).
//!
//! **What the checker expects** ([`crate::checker`]):
//! - *After a clean close* the engine knows where its log ended (`LOG_END`,
//!   docs/FORMAT.md). The next open must report `Error::Corruption` (naming a file of the
//!   log, or the damaged file) or recover every acknowledged write: a silent loss fails
//!   `unexplained_loss`, whatever the damage looks like.
//! - *After a crash* there is no marker (unless the crash cut short an open that followed
//!   a clean close, which leaves the marker in place and the first rule in force). A cut of
//!   the last segment's tail, its removal, or zeros over its last frames read exactly as
//!   the crash's own torn tail, so the engine cannot know: the state must still be one the
//!   model allows (a prefix of the writes), and each lost acknowledged write needs an
//!   excuse from the exact recovery oracle ([`crate::oracle::LogImage::explain_loss`]):
//!   the damage since the last open touched the first lost LSN's frame in the last
//!   segment with no later frame vouching for it, or cut the segment at that frame's
//!   start, or removed the segment after the last one left, or made the last segment look
//!   like a torn creation. Damage anywhere else (a middle segment, a checkpoint, a cold
//!   segment, the marker) must be reported as corruption, or do no harm.
//!
//! Each injection is counted by kind and moment, and each open that follows it by outcome
//! (`corruption`: reported, at the open or while reading the recovered state back;
//! `excused_loss`; `intact`: nothing acknowledged lost; `unreadable`: the open stopped on a
//! latent sector first); the sweep's JSON has both, as `"at_rest":{"injected":{...},
//! "outcomes":{...}}`.

use crate::oracle::{scan_frames, segment_seq, SEGMENT_HEADER_BYTES};
use crate::runner::{Sim, DB_PATH};
use omendb_faults::SimFs;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// Mixed into the seed for the stream of at-rest draws.
const AT_REST_SALT: u64 = 0x5eed_c0de_0c0f_0006;
/// Rates per moment a seed draws from (swarm testing: half the seeds none, so that runs
/// stopped by detected damage leave most seeds their whole schedule and liveness phase).
const RATES: [f64; 4] = [0.0, 0.0, 0.03, 0.15];
/// Generation 9: the chance of an injection at a moment with three or more log segments at
/// rest, in a seed that injects at all.
const GAP_MOMENT_RATE: f64 = 0.5;
/// A cut or a zeroed range starts within this many bytes of the end half the time: the
/// log's tail is where the interesting frames are.
const TAIL_BYTES: u64 = 512;
/// The longest zeroed range that does not run to the end.
const ZERO_BYTES_MAX: u64 = 4096;

/// When the damage struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moment {
    /// After a clean close: the engine recorded where its log ends.
    AfterClose,
    /// After a crash, before the restart's open.
    AfterCrash,
}

impl Moment {
    /// A short name for counters and the trace.
    pub fn name(self) -> &'static str {
        match self {
            Moment::AfterClose => "after_close",
            Moment::AfterCrash => "after_crash",
        }
    }
}

/// One injection, until the open that follows it is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// When.
    pub moment: Moment,
    /// Whether it touched a log segment or the log end marker.
    pub log: bool,
    /// A cut inside a frame of the sealed segment with this sequence number (the one before
    /// an empty last segment): an open that reports corruption must not name a later
    /// segment instead (a gap there means the cut was taken for a torn tail).
    pub cut_sealed_seq: Option<u64>,
}

/// The seed's at-rest schedule: its stream and rate.
#[derive(Debug, Clone)]
pub struct AtRest {
    rng: ChaCha8Rng,
    /// The chance of an injection at each moment.
    pub rate: f64,
    /// Generation 8 on: an interior log segment (neither the first nor the last of three
    /// or more) is aimed at on purpose (see the module doc).
    interior: bool,
    /// Generation 9 on: with three or more log segments at rest, half the injections remove
    /// an interior one (see the module doc).
    gaps: bool,
}

impl AtRest {
    /// The schedule of `seed` (generation 6 on).
    pub fn draw(seed: u64, interior: bool, gaps: bool) -> AtRest {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ AT_REST_SALT);
        let rate = RATES[rng.random_range(0..RATES.len())];
        AtRest {
            rng,
            rate,
            interior,
            gaps,
        }
    }

    /// A byte offset in `[0, len)`: anywhere half the time, else in the last
    /// [`TAIL_BYTES`]. `len` must be positive.
    fn offset(&mut self, len: u64) -> u64 {
        if self.rng.random_bool(0.5) {
            self.rng.random_range(0..len)
        } else {
            self.rng.random_range(len.saturating_sub(TAIL_BYTES)..len)
        }
    }

    /// Damages one file of the database at `root` on `disk`, if the coin says so and a file
    /// is at rest; returns what it did (for the trace) and whether it touched the log.
    #[allow(clippy::type_complexity)]
    fn inject(
        &mut self,
        disk: &SimFs,
        root: &str,
    ) -> Option<(String, &'static str, bool, Option<u64>)> {
        if self.rate <= 0.0 {
            return None;
        }
        let durable = disk.durable_files();
        let files: Vec<String> = disk
            .files()
            .into_iter()
            .filter(|p| p.starts_with(&format!("{root}/")) && durable.contains(p))
            .collect();
        let segments: Vec<&String> = files
            .iter()
            .filter(|p| p.starts_with(&format!("{root}/wal/")) && p.ends_with(".wal"))
            .collect();
        // The segment before an empty last one: its tail is not the log's tail, so damage
        // there must be reported, never cut as a torn tail (only the empty segment after it
        // would not show the loss as a gap in the LSN chain).
        let before_empty_last = match segments.as_slice() {
            [.., before, last] => {
                let len = |p: &String| disk.read_current(Path::new(p)).map_or(0, |b| b.len());
                (len(last) <= SEGMENT_HEADER_BYTES && len(before) > SEGMENT_HEADER_BYTES)
                    .then(|| (*before).clone())
            }
            _ => None,
        };
        // Three segments at rest are rare (every open checkpoints and starts a fresh log), so
        // from generation 9 such a moment is damaged at a rate of its own, as is one with a
        // segment before an empty last one.
        let gap_moment = self.gaps && (segments.len() >= 3 || before_empty_last.is_some());
        let rate = if gap_moment {
            GAP_MOMENT_RATE
        } else {
            self.rate
        };
        if !self.rng.random_bool(rate) {
            return None;
        }
        if let (true, Some(before)) = (gap_moment, &before_empty_last) {
            if self.rng.random_bool(0.5) {
                // Inside one of its frames: a sealed segment cut there is provably damaged.
                let bytes = disk.read_current(Path::new(before)).unwrap_or_default();
                let seq = segment_seq(before);
                let frames = seq
                    .map(|seq| scan_frames(seq, &bytes).frames)
                    .unwrap_or_default();
                if !frames.is_empty() {
                    let frame = frames[self.rng.random_range(0..frames.len())];
                    let cut = frame.offset_bytes + self.rng.random_range(1..frame.size_bytes);
                    let what = format!(
                        "cut {before} (before an empty last segment) from {} to {cut} bytes, inside the frame of LSN {}",
                        bytes.len(),
                        frame.lsn
                    );
                    return Some(match disk.truncate_at_rest(Path::new(before), cut) {
                        Ok(()) => (what, "truncate_before_empty_last", true, seq),
                        Err(e) => (
                            format!("not injected ({e}): {what}"),
                            "refused",
                            false,
                            None,
                        ),
                    });
                }
            }
        }
        if gap_moment && segments.len() >= 3 && self.rng.random_bool(0.5) {
            // A whole interior segment gone: only the LSN chain shows the gap (a cut or zeroed
            // one fails its CRC, which recovery reports anyway).
            let path = segments[self.rng.random_range(1..segments.len() - 1)].clone();
            let len = disk.read_current(Path::new(&path)).map_or(0, |b| b.len());
            let what = format!("removed interior {path} ({len} bytes)");
            return Some(match disk.remove_at_rest(Path::new(&path)) {
                Ok(()) => (what, "remove_interior", true, None),
                Err(e) => (
                    format!("not injected ({e}): {what}"),
                    "refused",
                    false,
                    None,
                ),
            });
        }
        let path = if !segments.is_empty() && self.rng.random_bool(0.5) {
            if self.rng.random_bool(0.5) {
                segments[segments.len() - 1].clone()
            } else if self.interior && segments.len() >= 3 && self.rng.random_bool(0.5) {
                segments[self.rng.random_range(1..segments.len() - 1)].clone()
            } else {
                segments[self.rng.random_range(0..segments.len())].clone()
            }
        } else if !files.is_empty() {
            files[self.rng.random_range(0..files.len())].clone()
        } else {
            return None;
        };
        let len = disk.read_current(Path::new(&path)).map_or(0, |b| b.len()) as u64;
        let kind = self.rng.random_range(0..10u32);
        let (result, what, kind) = if kind < 3 || len == 0 {
            (
                disk.remove_at_rest(Path::new(&path)),
                format!("removed {path} ({len} bytes)"),
                "remove",
            )
        } else if kind < 7 {
            let cut = self.offset(len);
            (
                disk.truncate_at_rest(Path::new(&path), cut),
                format!("cut {path} from {len} to {cut} bytes"),
                "truncate",
            )
        } else {
            let from = self.offset(len);
            let zeroed = if self.rng.random_bool(0.5) {
                len - from
            } else {
                self.rng.random_range(1..=ZERO_BYTES_MAX.min(len - from))
            };
            (
                disk.zero_at_rest(Path::new(&path), from, zeroed),
                format!("zeroed {zeroed} bytes of {path} at {from} (of {len})"),
                "zero",
            )
        };
        // A removed checkpoint counts as damage to the log: the segments it covered are gone,
        // so it was the only record of its LSNs (a cut or zeroed one fails its CRC instead).
        let log = path.starts_with(&format!("{root}/wal/"))
            || path == format!("{root}/LOG_END")
            || (kind == "remove" && path.starts_with(&format!("{root}/checkpoint-")));
        match result {
            Ok(()) => Some((what, kind, log, None)),
            Err(e) => Some((
                format!("not injected ({e}): {what}"),
                "refused",
                false,
                None,
            )),
        }
    }
}

impl Sim {
    /// Damage at rest at `moment`, if this run injects it (see the module doc).
    pub(crate) fn inject_at_rest(&mut self, moment: Moment) {
        if self.healed || !self.config.faults.at_rest {
            return;
        }
        let Some(at_rest) = self.at_rest.as_mut() else {
            return;
        };
        // The process is down: its stopped workers (and the log handles they hold) are gone.
        self.machine.spawner.reap();
        let Some((what, kind, log, cut_sealed_seq)) = at_rest.inject(&self.machine.disk, DB_PATH)
        else {
            return;
        };
        *self
            .at_rest_injected
            .entry(format!("{kind}_{}", moment.name()))
            .or_default() += 1;
        self.log(format!("at rest ({}): {what}", moment.name()));
        if kind != "refused" {
            self.at_rest_pending = Some(Injected {
                moment,
                log,
                cut_sealed_seq,
            });
        }
    }

    /// Counts how the open after an injection ended (see the module doc) and forgets it.
    /// After a cut inside a frame of the segment before an empty last one, corruption the
    /// open reports must not name a later segment: that is the gap a cut taken for a torn
    /// tail leaves, where the cut segment is sealed and its damage provable.
    pub(crate) fn check_cut_sealed_named(&self, error: &omendb::Error) -> crate::checker::Checked {
        let Some(seq) = self.at_rest_pending.and_then(|i| i.cut_sealed_seq) else {
            return Ok(());
        };
        let omendb::Error::Corruption { path, .. } = error else {
            return Ok(());
        };
        match segment_seq(&path.to_string_lossy()) {
            Some(named) if named > seq => crate::checker::fail(
                crate::checker::Check::FalseCorruption,
                format!(
                    "log segment {seq} was cut inside a frame at rest, and a later segment follows it, but the open reported a later one: {error}"
                ),
            ),
            _ => Ok(()),
        }
    }

    pub(crate) fn judge_at_rest(&mut self, outcome: &str) {
        if let Some(injected) = self.at_rest_pending.take() {
            *self
                .at_rest_outcomes
                .entry(format!("{}_{outcome}", injected.moment.name()))
                .or_default() += 1;
        }
    }
}
