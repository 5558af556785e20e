//! Where the log ended at a clean close (`LOG_END`, docs/FORMAT.md).
//!
//! A log's tail cannot vouch for itself: a last segment cut at a record boundary, zeroed
//! to its end, or removed, reads as a log that simply ended earlier, and recovery would
//! open `Ok` without writes that were acknowledged and fsynced. So `Database::close`, once
//! everything is synced, writes this small file beside the log (temporary file, fsync,
//! rename, directory fsync) with the last LSN and the segments with their lengths. Open
//! reads it before recovery and, if the recovered log ends before that LSN, fails with
//! `Error::Corruption` naming the segment that lost records and the missing LSN range,
//! before it writes anything: the old checkpoint and segments are still there. Open removes
//! the marker only after the recovered state is durable in its new log, so a crash on the
//! way leaves a marker the next open still satisfies.
//!
//! After a crash (no marker) the log's own rules apply: a torn tail of the last segment is
//! the end of the log, which is only what the durability mode allows to be lost when the
//! damage is a crash's; the same cut made at rest after a crash cannot be told from it.

use crate::env::{remove_durably, Fs, OpenMode};
use crate::error::{Error, Result};
use crate::wal::format::{parse_segment_file_name, segment_file_name};
use std::path::{Path, PathBuf};

/// The marker's file name, in the database directory.
pub(crate) const FILE: &str = "LOG_END";
const MAGIC: &[u8; 8] = b"OMENDEND";
const VERSION: u32 = 1;
/// A marker listing more segments than this is damaged.
const SEGMENTS_MAX: u64 = 1 << 20;

/// What a clean close recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogEnd {
    /// Every LSN up to this one was durable in the log at the close.
    pub lsn: u64,
    /// The log's segments then: (sequence number, length in bytes).
    pub segments: Vec<(u64, u64)>,
}

impl LogEnd {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 16 * self.segments.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&self.lsn.to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u64).to_le_bytes());
        for &(seq, len) in &self.segments {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&len.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> std::result::Result<LogEnd, (u64, String)> {
        let body_len = bytes
            .len()
            .checked_sub(4)
            .ok_or((0, "shorter than its checksum".to_string()))?;
        let (body, crc) = bytes.split_at(body_len);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        let actual = crc32c::crc32c(body);
        if stored != actual {
            return Err((
                body_len as u64,
                format!("checksum {actual:#010x} != stored {stored:#010x}"),
            ));
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> std::result::Result<&[u8], (u64, String)> {
            let part = body
                .get(at..at + n)
                .ok_or((at as u64, "ends early".to_string()))?;
            at += n;
            Ok(part)
        };
        let u64_of =
            |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        if take(8)? != MAGIC {
            return Err((0, "not a log end marker (bad magic)".into()));
        }
        let version = take(4)?;
        let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
        if version != VERSION {
            return Err((8, format!("unknown version {version}")));
        }
        let lsn = u64_of(take(8)?);
        let count = u64_of(take(8)?);
        if count > SEGMENTS_MAX {
            return Err((20, format!("{count} segments listed")));
        }
        let mut segments = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let seq = u64_of(take(8)?);
            let len = u64_of(take(8)?);
            segments.push((seq, len));
        }
        if at != body.len() {
            return Err((at as u64, "bytes after the segment list".into()));
        }
        Ok(LogEnd { lsn, segments })
    }
}

/// Records that the log in `wal_dir` ends at `lsn`, everything synced: writes `root/LOG_END`
/// durably.
pub(crate) fn write(fs: &dyn Fs, root: &Path, wal_dir: &Path, lsn: u64) -> Result<()> {
    let names = fs
        .list(wal_dir)
        .map_err(|e| Error::io("list log directory", wal_dir, e))?;
    let mut segments = Vec::new();
    for seq in names.iter().filter_map(|n| parse_segment_file_name(n)) {
        let path = wal_dir.join(segment_file_name(seq));
        let len = fs
            .open(&path, OpenMode::Read)
            .and_then(|f| f.len())
            .map_err(|e| Error::io("size log segment", &path, e))?;
        segments.push((seq, len));
    }
    let bytes = LogEnd { lsn, segments }.encode();
    let path = root.join(FILE);
    let temp = root.join(format!("{FILE}.tmp"));
    let file = fs
        .open(&temp, OpenMode::Create)
        .map_err(|e| Error::io("create log end marker", &temp, e))?;
    file.set_len(0)
        .and_then(|()| file.write_at(&bytes, 0))
        .and_then(|()| file.sync())
        .map_err(|e| Error::io("write log end marker", &temp, e))?;
    drop(file);
    fs.rename(&temp, &path)
        .map_err(|e| Error::io("rename log end marker", &path, e))?;
    fs.sync_dir(root)
        .map_err(|e| Error::io("sync database directory", root, e))
}

/// The marker of the last clean close, if there is one (and its leftover temporary file
/// removed).
pub(crate) fn read(fs: &dyn Fs, root: &Path) -> Result<Option<LogEnd>> {
    let temp = root.join(format!("{FILE}.tmp"));
    if fs
        .exists(&temp)
        .map_err(|e| Error::io("look for log end marker", &temp, e))?
    {
        fs.remove(&temp)
            .map_err(|e| Error::io("remove log end marker", &temp, e))?;
    }
    let path = root.join(FILE);
    if !fs
        .exists(&path)
        .map_err(|e| Error::io("look for log end marker", &path, e))?
    {
        return Ok(None);
    }
    let bytes = fs
        .open(&path, OpenMode::Read)
        .and_then(|f| f.read_all())
        .map_err(|e| Error::io("read log end marker", &path, e))?;
    LogEnd::decode(&bytes)
        .map(Some)
        .map_err(|(offset, reason)| Error::corruption(&path, offset, reason))
}

/// Removes the marker (the log it describes is gone: open made the state durable anew).
pub(crate) fn remove(fs: &dyn Fs, root: &Path) -> Result<()> {
    let path = root.join(FILE);
    if fs
        .exists(&path)
        .map_err(|e| Error::io("look for log end marker", &path, e))?
    {
        remove_durably(
            fs,
            root,
            &[&path],
            "remove log end marker",
            "sync database directory",
        )?;
    }
    Ok(())
}

/// Checks a recovery that reached `recovered` (checkpoint included) against the clean
/// close's `end`: `Err(Corruption)` naming the segment that lost records if the log now
/// ends before it. `truncated_at` is where recovery cut a torn tail, if it did.
pub(crate) fn check(
    end: &LogEnd,
    recovered: u64,
    truncated_at: Option<&(PathBuf, u64)>,
    fs: &dyn Fs,
    wal_dir: &Path,
) -> Result<()> {
    if recovered >= end.lsn {
        return Ok(());
    }
    // Name the damage: where recovery cut, else the first listed segment now missing or
    // shorter, else the last one listed.
    let mut named: Option<(PathBuf, u64, String)> =
        truncated_at.map(|(p, at)| (p.clone(), *at, "records cut off".to_string()));
    if named.is_none() {
        for &(seq, len) in &end.segments {
            let path = wal_dir.join(segment_file_name(seq));
            let now = match fs.exists(&path) {
                Ok(true) => fs.open(&path, OpenMode::Read).and_then(|f| f.len()).ok(),
                _ => None,
            };
            match now {
                None => {
                    named = Some((path, 0, "segment missing".into()));
                    break;
                }
                Some(now) if now < len => {
                    named = Some((path, now, format!("{now} bytes, {len} at the close")));
                    break;
                }
                _ => {}
            }
        }
    }
    let (path, offset, what) = named.unwrap_or_else(|| {
        let last = end.segments.last().map_or(0, |s| s.0);
        (
            wal_dir.join(segment_file_name(last)),
            0,
            "records unreadable".into(),
        )
    });
    crate::probe!(WalLogEndLost);
    Err(Error::corruption(
        path,
        offset,
        format!(
            "the log ends at LSN {recovered}, but the clean close recorded LSN {} (LSNs {}..={} lost: {what})",
            end.lsn,
            recovered + 1,
            end.lsn
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_round_trips_and_every_damage_is_refused() {
        let end = LogEnd {
            lsn: 12_345,
            segments: vec![(3, 4096), (4, 77)],
        };
        let bytes = end.encode();
        assert_eq!(LogEnd::decode(&bytes), Ok(end));
        for cut in 0..bytes.len() {
            assert!(LogEnd::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[at] ^= 1 << bit;
                assert!(LogEnd::decode(&damaged).is_err(), "bit {bit} of byte {at}");
            }
        }
    }
}
