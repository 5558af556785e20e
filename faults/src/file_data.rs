//! The contents of one simulated file: what the process sees, what is durable, and the
//! writes in between.
//!
//! A file keeps three things:
//! - `current`: the bytes as the process sees them (the page cache);
//! - `durable`: the bytes on the medium, which survive any crash;
//! - `pending`: the writes and size changes since the last sync, in order, each with its
//!   new bytes (a redo log).
//!
//! A write copies its bytes into `current` and into a pending entry; `sync` replays the
//! pending entries onto `durable` and drops them. Both cost what the write wrote, never a
//! copy of the whole file. Reads and `read_durable` need no replay.
//!
//! A crash, or a failed sync, *settles* the pending entries: [`FileData::settle`] replays
//! them onto `durable` with seeded choices at sector granularity (see
//! [`CrashModel`](crate::CrashModel)). After a crash `current` becomes the settled
//! `durable`. After a failed sync `current` is left alone (the page cache still holds the
//! new bytes, as Linux does) while `durable` keeps the settled bytes; since the pending
//! entries are gone, no later sync can make the lost bytes durable.
//!
//! Invariant: with no failed sync in the file's history, replaying `pending` onto `durable`
//! gives `current` ([`FileData::check_invariants`]).

use crate::log::{FaultKind, FaultRecord};
use crate::plan::CrashModel;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// The largest file the simulated disk holds: it lives in memory.
pub const FILE_BYTES_MAX: u64 = 1 << 32;

/// One write or size change not yet durable.
#[derive(Debug, Clone)]
enum Pending {
    Write {
        offset: u64,
        bytes: Vec<u8>,
        op: u64,
    },
    SetLen {
        len_bytes: u64,
        op: u64,
    },
}

/// What became of one sector piece of an unsynced write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceFate {
    New,
    Old,
    Zeroed,
    /// The first `n` bytes are new, the rest old.
    Torn(usize),
}

/// The contents of one file.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileData {
    current: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
    /// Set once a failed sync settled this file: `current` may then differ from
    /// `durable` + `pending` for good.
    diverged: bool,
}

impl FileData {
    pub(crate) fn len(&self) -> u64 {
        self.current.len() as u64
    }

    pub(crate) fn durable_bytes(&self) -> &[u8] {
        &self.durable
    }

    pub(crate) fn current_bytes(&self) -> &[u8] {
        &self.current
    }

    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Copies bytes at `offset` into `buf`; returns how many (0 at or past the end).
    pub(crate) fn read(&self, buf: &mut [u8], offset: u64) -> usize {
        let len = self.current.len() as u64;
        if offset >= len {
            return 0;
        }
        let start = offset as usize;
        let n = buf.len().min((len - offset) as usize);
        buf[..n].copy_from_slice(&self.current[start..start + n]);
        n
    }

    /// Writes `bytes` at `offset` (extending with zeros as needed), not yet durable. The
    /// caller has checked `offset + bytes.len() <= FILE_BYTES_MAX`.
    pub(crate) fn write(&mut self, offset: u64, bytes: &[u8], op: u64) {
        if bytes.is_empty() {
            return;
        }
        let end = offset as usize + bytes.len();
        if end > self.current.len() {
            self.current.resize(end, 0);
        }
        self.current[offset as usize..end].copy_from_slice(bytes);
        self.pending.push(Pending::Write {
            offset,
            bytes: bytes.to_vec(),
            op,
        });
    }

    /// Truncates or extends with zeros, not yet durable. The caller has checked
    /// `len_bytes <= FILE_BYTES_MAX`.
    pub(crate) fn set_len(&mut self, len_bytes: u64, op: u64) {
        self.current.resize(len_bytes as usize, 0);
        self.pending.push(Pending::SetLen { len_bytes, op });
    }

    /// Makes every pending entry durable.
    pub(crate) fn sync(&mut self) {
        for entry in self.pending.drain(..) {
            match entry {
                Pending::Write { offset, bytes, .. } => {
                    let start = offset as usize;
                    let end = start + bytes.len();
                    if end > self.durable.len() {
                        self.durable.resize(end, 0);
                    }
                    self.durable[start..end].copy_from_slice(&bytes);
                }
                Pending::SetLen { len_bytes, .. } => self.durable.resize(len_bytes as usize, 0),
            }
        }
        debug_assert!(self.diverged || self.durable.len() == self.current.len());
    }

    /// A crash: settles the pending entries and makes `current` what survived.
    pub(crate) fn crash(
        &mut self,
        rng: &mut ChaCha8Rng,
        len_rng: &mut ChaCha8Rng,
        model: &CrashModel,
        sector_bytes: u64,
        path: &str,
        records: &mut Vec<FaultRecord>,
    ) {
        self.settle(rng, len_rng, model, sector_bytes, path, records);
        self.current.clone_from(&self.durable);
        self.diverged = false;
    }

    /// A failed sync: settles the pending entries as a crash would, but the process keeps
    /// seeing its own writes.
    pub(crate) fn fail_sync(
        &mut self,
        rng: &mut ChaCha8Rng,
        len_rng: &mut ChaCha8Rng,
        model: &CrashModel,
        sector_bytes: u64,
        path: &str,
        records: &mut Vec<FaultRecord>,
    ) {
        self.settle(rng, len_rng, model, sector_bytes, path, records);
        self.diverged = self.current != self.durable;
    }

    /// Replays the pending entries onto `durable` with seeded losses, and drops them.
    ///
    /// Data: each sector piece of each write draws its fate independently. Size: the size
    /// changes are kept as an in-order prefix, and when the first one lost is an extending
    /// write's, the size may stop at any byte inside it (`len_mid_write`, drawn from
    /// `len_rng`). Records what was lost into `records`.
    fn settle(
        &mut self,
        rng: &mut ChaCha8Rng,
        len_rng: &mut ChaCha8Rng,
        model: &CrashModel,
        sector_bytes: u64,
        path: &str,
        records: &mut Vec<FaultRecord>,
    ) {
        if self.pending.is_empty() {
            return;
        }
        let mut image = std::mem::take(&mut self.durable);
        // The size as the crash leaves it, and as the process saw it at each step.
        let mut len_settled = image.len() as u64;
        let mut len_process = len_settled;
        let mut sizes_alive = true;
        let mut size_lost_at: Option<(u64, u64)> = None; // (op, size the process had)
        let mut len_mid = false;
        for entry in std::mem::take(&mut self.pending) {
            match entry {
                Pending::Write { offset, bytes, op } => {
                    let end = offset + bytes.len() as u64;
                    if end as usize > image.len() {
                        image.resize(end as usize, 0);
                    }
                    let fates = settle_write(rng, model, sector_bytes, offset, &bytes, &mut image);
                    if let Some(detail) = fates.describe_loss() {
                        records.push(FaultRecord {
                            op,
                            kind: FaultKind::UnsyncedWriteLost,
                            path: path.to_owned(),
                            offset,
                            len_bytes: bytes.len() as u64,
                            detail,
                        });
                    }
                    if end > len_process {
                        len_process = end;
                        sizes_alive = sizes_alive && rng.random_bool(model.len_persist);
                        if sizes_alive {
                            len_settled = end;
                        } else if size_lost_at.is_none() {
                            size_lost_at = Some((op, end));
                            // A partial size from inside this write: the size grows
                            // from the write's start chunk by chunk, so it may stop from
                            // one byte of it to one byte short of its end.
                            let from = len_settled.max(offset) + 1;
                            if end > from && len_rng.random_bool(model.len_mid_write) {
                                len_settled = len_rng.random_range(from..end);
                                len_mid = true;
                                omendb_env::probe!(crate::PROBE_LEN_MID_WRITE);
                            }
                        }
                    }
                }
                Pending::SetLen { len_bytes, op } => {
                    len_process = len_bytes;
                    sizes_alive = sizes_alive && rng.random_bool(model.len_persist);
                    if sizes_alive {
                        if len_bytes as usize > image.len() {
                            image.resize(len_bytes as usize, 0);
                        }
                        // Bytes past a truncation read as zeros if the file grows again;
                        // bytes up to an extension are zeros too (all earlier size
                        // changes were kept, so nothing visible lies there).
                        let (from, to) = if len_bytes < len_settled {
                            (len_bytes as usize, image.len())
                        } else {
                            (len_settled as usize, len_bytes as usize)
                        };
                        image[from..to].fill(0);
                        len_settled = len_bytes;
                    } else if size_lost_at.is_none() {
                        size_lost_at = Some((op, len_bytes));
                    }
                }
            }
        }
        if let Some((op, len_lost)) = size_lost_at {
            records.push(FaultRecord {
                op,
                kind: FaultKind::UnsyncedLenLost,
                path: path.to_owned(),
                offset: 0,
                len_bytes: len_settled,
                detail: format!(
                    "size settled at {len_settled}{}, size changes from {len_lost} on lost \
                     (process saw {len_process})",
                    if len_mid { " (inside a write)" } else { "" }
                ),
            });
        }
        image.truncate(len_settled as usize);
        self.durable = image;
    }

    /// Flips one bit of durable data, and of the current bytes too unless a pending entry
    /// covers that byte (then the process sees its newer write there).
    pub(crate) fn flip_durable_bit(&mut self, bit_offset: u64) -> bool {
        let byte = bit_offset / 8;
        if byte >= self.durable.len() as u64 {
            return false;
        }
        let at = byte as usize;
        let mask = 1u8 << (bit_offset % 8);
        let covered = self.pending.iter().any(|entry| match entry {
            Pending::Write { offset, bytes, .. } => {
                byte >= *offset && byte < offset + bytes.len() as u64
            }
            Pending::SetLen { len_bytes, .. } => *len_bytes <= byte,
        });
        // After a failed sync the page cache may hold other bytes than the medium; it
        // shows the flip only where both agreed.
        if !covered && self.current.get(at) == Some(&self.durable[at]) {
            self.current[at] ^= mask;
        }
        self.durable[at] ^= mask;
        true
    }

    /// Cuts the file to `len_bytes` at rest (the process is not running): the durable and
    /// the current bytes both end there. `false`, and nothing changed, if a write or size
    /// change is still pending or `len_bytes` is not shorter than the file.
    pub(crate) fn truncate_at_rest(&mut self, len_bytes: u64) -> bool {
        if self.has_pending() || len_bytes >= self.len() || len_bytes >= self.durable.len() as u64 {
            return false;
        }
        self.durable.truncate(len_bytes as usize);
        self.current.truncate(len_bytes as usize);
        true
    }

    /// Zeroes bytes `[offset, offset + len_bytes)` at rest, in the durable and the current
    /// bytes (clamped to each). `false`, and nothing changed, if a write or size change is
    /// still pending or the range starts at or past the end.
    pub(crate) fn zero_at_rest(&mut self, offset: u64, len_bytes: u64) -> bool {
        if self.has_pending() || offset >= self.len() || offset >= self.durable.len() as u64 {
            return false;
        }
        for bytes in [&mut self.durable, &mut self.current] {
            let end = offset.saturating_add(len_bytes).min(bytes.len() as u64);
            bytes[offset as usize..end as usize].fill(0);
        }
        true
    }

    /// Checks the structural invariant (see the module doc).
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.diverged {
            return Ok(());
        }
        let mut replayed = self.clone();
        replayed.sync();
        if replayed.durable != self.current {
            return Err(format!(
                "durable + pending ({} bytes) differs from current ({} bytes)",
                replayed.durable.len(),
                self.current.len()
            ));
        }
        Ok(())
    }
}

/// How many pieces of one write met each fate.
#[derive(Debug, Default)]
struct Fates {
    new: u64,
    old: u64,
    zeroed: u64,
    torn: u64,
}

impl Fates {
    fn describe_loss(&self) -> Option<String> {
        if self.old == 0 && self.zeroed == 0 && self.torn == 0 {
            return None;
        }
        Some(format!(
            "{} of {} sector pieces persisted ({} old, {} zeroed, {} torn)",
            self.new,
            self.new + self.old + self.zeroed + self.torn,
            self.old,
            self.zeroed,
            self.torn
        ))
    }
}

fn draw_fate(rng: &mut ChaCha8Rng, model: &CrashModel, piece_len: usize) -> PieceFate {
    let r: f64 = rng.random();
    if r < model.sector_persist {
        PieceFate::New
    } else if r < model.sector_persist + model.sector_zeroed {
        PieceFate::Zeroed
    } else if r < model.sector_persist + model.sector_zeroed + model.sector_torn && piece_len > 1 {
        PieceFate::Torn(rng.random_range(1..piece_len))
    } else {
        PieceFate::Old
    }
}

/// Applies one unsynced write to `image` (already long enough), piece by piece.
fn settle_write(
    rng: &mut ChaCha8Rng,
    model: &CrashModel,
    sector_bytes: u64,
    offset: u64,
    bytes: &[u8],
    image: &mut [u8],
) -> Fates {
    let mut fates = Fates::default();
    for (piece_offset, piece) in sector_pieces(offset, bytes, sector_bytes) {
        let start = piece_offset as usize;
        let target = &mut image[start..start + piece.len()];
        match draw_fate(rng, model, piece.len()) {
            PieceFate::New => {
                target.copy_from_slice(piece);
                fates.new += 1;
            }
            PieceFate::Old => fates.old += 1,
            PieceFate::Zeroed => {
                target.fill(0);
                fates.zeroed += 1;
            }
            PieceFate::Torn(n) => {
                target[..n].copy_from_slice(&piece[..n]);
                fates.torn += 1;
            }
        }
    }
    fates
}

/// Splits a write into the parts that fall in each sector: `(offset, bytes)` pairs.
pub(crate) fn sector_pieces(
    offset: u64,
    bytes: &[u8],
    sector_bytes: u64,
) -> impl Iterator<Item = (u64, &[u8])> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done == bytes.len() {
            return None;
        }
        let at = offset + done as u64;
        let sector_end = (at / sector_bytes + 1) * sector_bytes;
        let n = ((sector_end - at) as usize).min(bytes.len() - done);
        let piece = &bytes[done..done + n];
        done += n;
        Some((at, piece))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    #[test]
    fn pieces_follow_sector_boundaries() {
        let bytes = vec![1u8; 1000];
        let pieces: Vec<(u64, usize)> = sector_pieces(300, &bytes, 512)
            .map(|(o, p)| (o, p.len()))
            .collect();
        assert_eq!(pieces, vec![(300, 212), (512, 512), (1024, 276)]);
        assert_eq!(sector_pieces(0, &[], 512).count(), 0);
    }

    #[test]
    fn sync_makes_current_durable() {
        let mut file = FileData::default();
        file.write(0, b"hello world", 1);
        file.set_len(5, 2);
        file.write(8, b"xy", 3);
        assert_eq!(file.durable_bytes(), b"");
        file.check_invariants().unwrap();
        file.sync();
        assert_eq!(file.durable_bytes(), b"hello\0\0\0xy");
        assert_eq!(file.current_bytes(), file.durable_bytes());
        assert!(!file.has_pending());
    }

    #[test]
    fn crash_with_lose_all_keeps_only_durable() {
        let mut file = FileData::default();
        file.write(0, b"durable", 1);
        file.sync();
        file.write(0, b"XXXXXXXXXXXX", 2);
        file.set_len(3, 3);
        let mut records = Vec::new();
        file.crash(
            &mut rng(1),
            &mut rng(2),
            &CrashModel::lose_all(),
            512,
            "/f",
            &mut records,
        );
        assert_eq!(file.current_bytes(), b"durable");
        assert_eq!(records.len(), 2, "{records:?}");
    }

    #[test]
    fn crash_with_keep_all_keeps_everything() {
        let mut file = FileData::default();
        file.write(0, b"abc", 1);
        file.sync();
        file.write(10, b"def", 2);
        file.set_len(12, 3);
        let expected = file.current_bytes().to_vec();
        let mut records = Vec::new();
        file.crash(
            &mut rng(1),
            &mut rng(2),
            &CrashModel::keep_all(),
            512,
            "/f",
            &mut records,
        );
        assert_eq!(file.current_bytes(), expected.as_slice());
        assert!(records.is_empty());
    }

    #[test]
    fn truncation_then_regrowth_reads_zeros() {
        let mut file = FileData::default();
        file.write(0, b"0123456789", 1);
        file.sync();
        file.set_len(2, 2);
        file.set_len(6, 3);
        let mut records = Vec::new();
        file.crash(
            &mut rng(1),
            &mut rng(2),
            &CrashModel::keep_all(),
            512,
            "/f",
            &mut records,
        );
        assert_eq!(file.current_bytes(), b"01\0\0\0\0");
    }

    #[test]
    fn failed_sync_is_never_made_durable_later() {
        let mut file = FileData::default();
        file.write(0, b"old!", 1);
        file.sync();
        file.write(0, b"new!", 2);
        let mut records = Vec::new();
        file.fail_sync(
            &mut rng(1),
            &mut rng(2),
            &CrashModel::lose_all(),
            512,
            "/f",
            &mut records,
        );
        assert_eq!(
            file.current_bytes(),
            b"new!",
            "the page cache keeps the write"
        );
        file.sync();
        assert_eq!(
            file.durable_bytes(),
            b"old!",
            "a later sync does not save it"
        );
        file.check_invariants().unwrap();
    }

    #[test]
    fn flip_reaches_current_unless_overwritten() {
        let mut file = FileData::default();
        file.write(0, &[0u8; 4], 1);
        file.sync();
        file.write(2, &[7u8], 2);
        assert!(file.flip_durable_bit(0));
        assert!(file.flip_durable_bit(2 * 8 + 1));
        assert!(!file.flip_durable_bit(4 * 8));
        assert_eq!(file.durable_bytes(), &[1, 0, 2, 0]);
        assert_eq!(file.current_bytes(), &[1, 0, 7, 0]);
    }
}
