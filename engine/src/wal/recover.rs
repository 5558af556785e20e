//! Recovery's half of the log: [`Wal::recover`] lists the segments, removes a last
//! segment whose creation was torn, checks each header, and replays every intact record
//! after the checkpoint through the caller's function; [`scan_segment`] walks one
//! segment's frames and decides where its log ends. The writer's half (the commit
//! pipeline, rolls, [`Wal::start`], which starts a fresh segment on what recovery found)
//! is the parent module; the bytes are `format`.
//!
//! **Torn tail versus corruption.** A crash can leave the unsynced end of the last segment
//! in any state: cut short, zero-filled, or with later sectors persisted and earlier ones
//! not. A bad frame there is a torn tail and is truncated. A bad frame that a later intact
//! frame proves was synced (its `lsn_durable` covers the bad frame's LSN) is corruption;
//! so is any bad frame in a segment that is not the last, because a segment is synced in
//! full before the next one is created. Corruption is reported, never skipped.
//!
//! Nothing is written into a scanned segment: the caller makes the recovered state durable
//! in a checkpoint, and [`Wal::start`] then removes the scanned segments (crate::recovery).

use super::format::{
    decode_segment_header, parse_frame, parse_segment_file_name, read_u64, segment_file_name,
    Frame, SegmentHeader, FRAME_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use super::{SegmentInfo, Wal};
use crate::env::{Fs, OpenMode};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The log as recovery found it: what [`Wal::start`] needs.
#[derive(Debug)]
pub struct LogScan {
    /// What the scan found.
    pub stats: RecoveryStats,
    pub(super) segments: Vec<PathBuf>,
    pub(super) seq_last: u64,
}

/// What recovery found in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Records passed to the replay function (after the checkpoint).
    pub records_replayed: u64,
    /// Bytes cut from a torn tail.
    pub bytes_truncated: u64,
    /// LSN of the last intact record (or the checkpoint's LSN).
    pub lsn_last: u64,
    /// Segments read.
    pub segments: u64,
    /// Where a torn tail was cut: the segment and the offset of the first byte removed.
    pub truncated_at: Option<(PathBuf, u64)>,
}

impl Wal {
    /// Scans the log in `dir` for recovery, replaying, in LSN order, every intact record
    /// with an LSN above `lsn_checkpoint` through `replay(lsn, kind, payload)`. A torn tail
    /// of the last segment ends the log (its size is reported); a last segment whose
    /// creation was torn is removed; damage anywhere else is corruption.
    ///
    /// Nothing is appended to the scanned segments: the caller makes the recovered state
    /// durable in a checkpoint and then calls [`Wal::start`], which removes them and starts
    /// a fresh segment. (Records replayed from the last segment may be readable only from
    /// the OS cache after a failed fsync, and rewriting them in place could tear sectors
    /// that were durable.)
    pub fn recover(
        fs: &dyn Fs,
        dir: &Path,
        lsn_checkpoint: u64,
        mut replay: impl FnMut(u64, u8, &[u8]) -> Result<()>,
    ) -> Result<LogScan> {
        fs.create_dir(dir)
            .map_err(|e| Error::io("create log directory", dir, e))?;
        let names = fs
            .list(dir)
            .map_err(|e| Error::io("list log directory", dir, e))?;
        let mut seqs: Vec<u64> = names
            .iter()
            .filter_map(|n| parse_segment_file_name(n))
            .collect();
        seqs.sort_unstable();
        // A segment is made durable before anything in it is acknowledged, so a last
        // segment whose header is torn and whose rest is zeros was being created when the
        // crash came and held nothing: remove it first, so that the one before it is last.
        let mut dir_changed = false;
        // Set when the last segment was a torn creation: creating it proves the one before
        // was synced in full, so that one keeps the rules of a middle segment.
        let mut last_is_sealed = false;
        if let Some(&seq) = seqs.last() {
            let path = dir.join(segment_file_name(seq));
            let bytes = fs
                .open(&path, OpenMode::Read)
                .and_then(|file| file.read_all())
                .map_err(|e| Error::io("read log segment", &path, e))?;
            if let Err(reason) = decode_segment_header(&bytes) {
                if is_zero_from(&bytes, SEGMENT_HEADER_BYTES) {
                    tracing::info!(path = %path.display(), %reason, "removing a log segment whose creation was torn");
                    fs.remove(&path)
                        .map_err(|e| Error::io("remove torn log segment", &path, e))?;
                    crate::probe!(WalTornCreationRemoved);
                    dir_changed = true;
                    last_is_sealed = true;
                    seqs.pop();
                }
            }
        }

        let mut stats = RecoveryStats {
            lsn_last: lsn_checkpoint,
            ..RecoveryStats::default()
        };
        let mut segments = Vec::new();
        for (i, &seq) in seqs.iter().enumerate() {
            let path = dir.join(segment_file_name(seq));
            let is_last = i + 1 == seqs.len() && !last_is_sealed;
            let file = fs
                .open(&path, OpenMode::Read)
                .map_err(|e| Error::io("open log segment", &path, e))?;
            let bytes = file
                .read_all()
                .map_err(|e| Error::io("read log segment", &path, e))?;
            let header = match decode_segment_header(&bytes) {
                Ok(header) if header.seq == seq => header,
                Ok(header) => {
                    return Err(Error::corruption(
                        &path,
                        16,
                        format!(
                            "header names segment {} but the file is segment {seq}",
                            header.seq
                        ),
                    ))
                }
                Err(reason) => return Err(Error::corruption(&path, 0, reason)),
            };
            stats.segments += 1;
            if header.first_lsn > stats.lsn_last + 1 {
                return Err(Error::corruption(
                    &path,
                    24,
                    format!(
                        "log gap: segment starts at LSN {} but the log so far ends at LSN {}",
                        header.first_lsn, stats.lsn_last
                    ),
                ));
            }
            // A record that does not apply is corruption of the log; but applying it may
            // read a cold segment (to find the row an update or delete hides), and a failed
            // or damaged read there is that file's error, reported as it is.
            let mut segment_error: Option<Error> = None;
            let mut replay_frame = |frame: Frame<'_>, offset: u64| -> Result<(), (u64, String)> {
                if frame.lsn <= stats.lsn_last {
                    return Ok(()); // covered by the checkpoint (or an older segment)
                }
                replay(frame.lsn, frame.kind, frame.payload).map_err(|e| {
                    let reason = format!("record with LSN {} does not apply: {e}", frame.lsn);
                    if matches!(e, Error::Io { .. } | Error::Corruption { .. }) {
                        segment_error = Some(e);
                    }
                    (offset, reason)
                })?;
                stats.records_replayed += 1;
                stats.lsn_last = frame.lsn;
                Ok(())
            };
            let scan = scan_segment(&bytes, header, is_last, &mut replay_frame);
            if let Some(e) = segment_error.take() {
                return Err(e);
            }
            let scan = scan.map_err(|(offset, reason)| {
                crate::probe!(WalMidLogCorruption);
                Error::corruption(&path, offset, reason)
            })?;
            if scan.torn_bytes > 0 {
                crate::probe!(WalTornTailTruncated);
                tracing::info!(
                    path = %path.display(),
                    offset = scan.valid_end,
                    bytes = scan.torn_bytes,
                    "truncating a torn log tail"
                );
                stats.bytes_truncated += scan.torn_bytes;
                stats.truncated_at = Some((path.clone(), scan.valid_end));
            }
            stats.lsn_last = stats.lsn_last.max(scan.lsn_last);
            segments.push(SegmentInfo {
                seq,
                first_lsn: header.first_lsn,
                path,
            });
        }
        if dir_changed {
            fs.sync_dir(dir)
                .map_err(|e| Error::io("sync log directory", dir, e))?;
        }
        let seq_last = segments
            .last()
            .map_or(seqs.last().copied().unwrap_or(0), |s| s.seq);
        Ok(LogScan {
            stats,
            segments: segments.into_iter().map(|s| s.path).collect(),
            seq_last,
        })
    }
}

/// What the scan of one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SegmentScan {
    /// Bytes of the segment that hold intact records (header included).
    pub valid_end: u64,
    /// LSN of the last intact record, or `first_lsn - 1` if none.
    pub lsn_last: u64,
    /// Bytes after `valid_end` that are a torn tail (0 if none).
    pub torn_bytes: u64,
}

/// Scans the records of one segment in order, calling `visit` for each intact one; stops at
/// the first bad frame and classifies it (module doc). `Err((offset, reason))` is corruption.
fn scan_segment(
    bytes: &[u8],
    header: SegmentHeader,
    is_last: bool,
    mut visit: impl FnMut(Frame<'_>, u64) -> Result<(), (u64, String)>,
) -> Result<SegmentScan, (u64, String)> {
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn_expected = header.first_lsn;
    while offset < bytes.len() {
        match parse_frame(bytes, offset) {
            Some(frame) if frame.lsn == lsn_expected && frame.lsn_durable < frame.lsn => {
                visit(frame, offset as u64)?;
                offset += frame.size_bytes();
                lsn_expected += 1;
            }
            found => {
                let why = match found {
                    Some(frame) => format!(
                        "record has LSN {} (durable mark {}), expected LSN {lsn_expected}",
                        frame.lsn, frame.lsn_durable
                    ),
                    None => {
                        format!("damaged record header or checksum (expected LSN {lsn_expected})")
                    }
                };
                if !is_last {
                    return Err((
                        offset as u64,
                        format!("{why} in a segment that is not the last"),
                    ));
                }
                if let Some(proof) = later_synced_frame(bytes, offset + 1, lsn_expected) {
                    return Err((
                        offset as u64,
                        format!(
                            "{why}; the intact record with LSN {} at offset {proof} shows it was synced",
                            parse_frame(bytes, proof).map_or(0, |f| f.lsn)
                        ),
                    ));
                }
                return Ok(SegmentScan {
                    valid_end: offset as u64,
                    lsn_last: lsn_expected - 1,
                    torn_bytes: (bytes.len() - offset) as u64,
                });
            }
        }
    }
    Ok(SegmentScan {
        valid_end: offset as u64,
        lsn_last: lsn_expected - 1,
        torn_bytes: 0,
    })
}

/// Offset of an intact frame at or after `from` whose durable mark covers `lsn_damaged`.
fn later_synced_frame(bytes: &[u8], from: usize, lsn_damaged: u64) -> Option<usize> {
    // Each record takes at least FRAME_HEADER_BYTES, which bounds the LSNs a later frame
    // can plausibly carry; the cheap field checks skip most offsets before the checksum.
    let lsn_bound = lsn_damaged.saturating_add((bytes.len() / FRAME_HEADER_BYTES) as u64 + 1);
    let last_start = bytes.len().checked_sub(FRAME_HEADER_BYTES)?;
    (from..=last_start).find(|&at| {
        let lsn = read_u64(bytes, at + 8);
        let lsn_durable = read_u64(bytes, at + 16);
        lsn > lsn_damaged
            && lsn <= lsn_bound
            && lsn_durable >= lsn_damaged
            && lsn_durable < lsn
            && parse_frame(bytes, at).is_some()
    })
}

/// Whether every byte from `offset` on is zero.
fn is_zero_from(bytes: &[u8], offset: usize) -> bool {
    bytes
        .get(offset..)
        .is_none_or(|rest| rest.iter().all(|&b| b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{encode_frame, encode_segment_header};

    fn segment(records: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut bytes = encode_segment_header(1, 1).to_vec();
        for (lsn, durable, payload) in records {
            encode_frame(&mut bytes, *lsn, *durable, 3, payload);
        }
        bytes
    }

    fn scan(bytes: &[u8], is_last: bool) -> Result<SegmentScan, (u64, String)> {
        let header = decode_segment_header(bytes).unwrap();
        scan_segment(bytes, header, is_last, |_, _| Ok(()))
    }

    #[test]
    fn intact_segment_scans_to_its_end() {
        let bytes = segment(&[(1, 0, b"a"), (2, 1, b"bb")]);
        let out = scan(&bytes, true).unwrap();
        assert_eq!(out.valid_end, bytes.len() as u64);
        assert_eq!(out.lsn_last, 2);
        assert_eq!(out.torn_bytes, 0);
    }

    #[test]
    fn unsynced_damage_is_a_torn_tail_and_synced_damage_is_corruption() {
        // Record 2 was written before record 1 was known durable: damage to 1 is torn.
        let mut torn = segment(&[(1, 0, b"aaaa"), (2, 0, b"bbbb")]);
        torn[SEGMENT_HEADER_BYTES + 26] ^= 1;
        assert_eq!(scan(&torn, true).unwrap().lsn_last, 0);
        // Record 2 says 1 was durable: damage to 1 is corruption.
        let mut corrupt = segment(&[(1, 0, b"aaaa"), (2, 1, b"bbbb")]);
        corrupt[SEGMENT_HEADER_BYTES + 26] ^= 1;
        let (offset, _) = scan(&corrupt, true).unwrap_err();
        assert_eq!(offset, SEGMENT_HEADER_BYTES as u64);
        // Any damage in a segment that is not the last is corruption.
        assert!(scan(&torn, false).is_err());
    }
}
