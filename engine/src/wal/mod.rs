//! The write-ahead log: segment files of checksummed, LSN-numbered records, a commit
//! pipeline with group commit, and recovery.
//!
//! **Commit as submit + complete.** [`Wal::append`] writes a record to the current segment
//! (not synced) and returns its LSN: the ticket. A record is acknowledged once
//! `lsn_durable >= lsn`. [`Wal::sync_to`] is the blocking completion: the first waiter
//! becomes the leader and syncs everything written so far, later waiters sleep on a
//! condition variable and are covered by that one fsync (group commit). The
//! [`CommitWorker`]'s `step()` is the same sync, run by a background worker (OsEnv) or by the
//! simulator's schedule, so a single thread can keep many commits in flight.
//!
//! **Failures.** A failed write is undone by truncating the segment back (then the log goes
//! on); if that truncate fails, or a sync fails, the log is *poisoned*: the data the sync
//! covered may not be durable, so nothing after `lsn_durable` is ever acknowledged and every
//! later append is refused until the database is reopened and recovers from what is really on
//! disk (the PostgreSQL fsync lesson: never retry an fsync as if nothing happened).
//!
//! **Segments.** A segment is synced in full before the next one is created, and a new segment
//! is made durable (file and directory entry) before any record in it is acknowledged. So
//! only the last segment can have a torn tail; see [`format`] for how damage is classified.
//!
//! Invariants: `lsn_durable <= lsn_written < lsn_next`, all three monotonic; LSNs are
//! contiguous across segments.

pub(crate) mod format;

use crate::env::{Clock, File, Fs, OpenMode, StepResult, Worker};
use crate::error::{Error, Result};
use crate::limits;
use crate::options::Sync as SyncMode;
use format::{
    decode_segment_header, encode_frame, encode_segment_header, is_zero_from,
    parse_segment_file_name, scan_segment, segment_file_name, Frame, SEGMENT_HEADER_BYTES,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// A live segment: its number, the first LSN it holds, its path.
#[derive(Debug, Clone)]
struct SegmentInfo {
    seq: u64,
    first_lsn: u64,
    path: PathBuf,
}

struct WalState {
    segment: Arc<dyn File>,
    segments: Vec<SegmentInfo>,
    write_offset: u64,
    lsn_next: u64,
    lsn_written: u64,
    lsn_durable: u64,
    sync_in_progress: bool,
    poisoned: Option<String>,
    /// Monotonic time of the oldest write not yet synced.
    unsynced_since: Option<Duration>,
    frame: Vec<u8>,
}

/// The write-ahead log of one database.
pub struct Wal {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    mode: SyncMode,
    state: Mutex<WalState>,
    durable_changed: Condvar,
}

/// The log as recovery found it: what [`Wal::start`] needs.
#[derive(Debug)]
pub struct LogScan {
    /// What the scan found.
    pub stats: RecoveryStats,
    segments: Vec<PathBuf>,
    seq_last: u64,
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
            let mut replay_frame = |frame: Frame<'_>, offset: u64| -> Result<(), (u64, String)> {
                if frame.lsn <= stats.lsn_last {
                    return Ok(()); // covered by the checkpoint (or an older segment)
                }
                replay(frame.lsn, frame.kind, frame.payload).map_err(|e| {
                    (
                        offset,
                        format!("record with LSN {} does not apply: {e}", frame.lsn),
                    )
                })?;
                stats.records_replayed += 1;
                stats.lsn_last = frame.lsn;
                Ok(())
            };
            let scan = scan_segment(&bytes, header, is_last, &mut replay_frame)
                .map_err(|(offset, reason)| Error::corruption(&path, offset, reason))?;
            if scan.torn_bytes > 0 {
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

    /// Starts the log after recovery: removes the scanned segments, whose records must all
    /// be covered by a durable checkpoint at `lsn_covered`, then creates a fresh segment
    /// for LSN `lsn_covered + 1`.
    pub fn start(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        mode: SyncMode,
        scan: LogScan,
        lsn_covered: u64,
    ) -> Result<Wal> {
        debug_assert!(lsn_covered >= scan.stats.lsn_last);
        if !scan.segments.is_empty() {
            for path in &scan.segments {
                fs.remove(path)
                    .map_err(|e| Error::io("remove recovered log segment", path, e))?;
            }
            fs.sync_dir(dir)
                .map_err(|e| Error::io("sync log directory", dir, e))?;
        }
        let lsn_next = lsn_covered + 1;
        // A stray half-made segment left by a failed start is removed by the next recovery
        // (torn header) or is a valid empty segment covered by the checkpoint.
        let (segment, info) = create_segment(fs.as_ref(), dir, scan.seq_last + 1, lsn_next)
            .map_err(|failed| failed.error)?;
        Ok(Wal {
            fs,
            clock,
            dir: dir.to_path_buf(),
            mode,
            state: Mutex::new(WalState {
                segment,
                segments: vec![info],
                write_offset: SEGMENT_HEADER_BYTES as u64,
                lsn_next,
                lsn_written: lsn_next - 1,
                lsn_durable: lsn_next - 1,
                sync_in_progress: false,
                poisoned: None,
                unsynced_since: None,
                frame: Vec::new(),
            }),
            durable_changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, WalState> {
        // The state is only changed in short sections that do not panic; a poisoned mutex
        // still holds consistent counters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The durability mode.
    pub fn mode(&self) -> SyncMode {
        self.mode
    }

    /// Writes one record (not synced) and returns its LSN. On failure nothing of the
    /// record remains in the log, or the log is poisoned.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64> {
        if payload.len() > limits::RECORD_BYTES_MAX {
            return Err(Error::LimitExceeded {
                what: "log record bytes",
                size: payload.len(),
                limit: limits::RECORD_BYTES_MAX,
            });
        }
        let mut state = self.lock();
        if let Some(reason) = &state.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        let frame_bytes = (format::FRAME_HEADER_BYTES + payload.len()) as u64;
        if state.write_offset > SEGMENT_HEADER_BYTES as u64
            && state.write_offset + frame_bytes > limits::WAL_SEGMENT_BYTES_TARGET
        {
            self.roll_locked(&mut state)?;
        }
        let lsn = state.lsn_next;
        let lsn_durable = state.lsn_durable;
        let mut frame = std::mem::take(&mut state.frame);
        frame.clear();
        encode_frame(&mut frame, lsn, lsn_durable, kind, payload);
        let offset = state.write_offset;
        let written = state.segment.write_at(&frame, offset);
        // Keep a modest buffer for the next record; drop a huge one.
        if frame.capacity() <= 1 << 20 {
            state.frame = frame;
        }
        if let Err(e) = written {
            // Undo durably: an unsynced truncate could be lost in a crash and let the failed
            // record resurface in place of the next one.
            let path = self.current_path(&state);
            let undone = state
                .segment
                .set_len(offset)
                .and_then(|()| state.segment.sync());
            if let Err(undo) = undone {
                state.poisoned = Some(format!(
                    "write at offset {offset} of {} failed ({e}) and truncating it back failed ({undo})",
                    path.display()
                ));
                self.durable_changed.notify_all();
            } else {
                // That sync covered every earlier write too.
                state.lsn_durable = state.lsn_written;
                state.unsynced_since = None;
                self.durable_changed.notify_all();
            }
            return Err(Error::io("log append", path, e));
        }
        state.write_offset += frame_bytes;
        state.lsn_written = lsn;
        state.lsn_next = lsn + 1;
        if state.unsynced_since.is_none() {
            state.unsynced_since = Some(self.clock.now_monotonic());
        }
        Ok(lsn)
    }

    /// Blocks until `lsn` is durable, syncing as the group-commit leader if no sync is under
    /// way. Fails if the log is (or becomes) poisoned before `lsn` is durable.
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        let mut state = self.lock();
        if lsn > state.lsn_written {
            // Only a ticket from another log (say, from before a reopen) can be ahead of
            // what was written; waiting for it would never end.
            return Err(Error::InvalidTicket {
                lsn,
                lsn_written: state.lsn_written,
            });
        }
        loop {
            if state.lsn_durable >= lsn {
                return Ok(());
            }
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            if state.sync_in_progress {
                state = self
                    .durable_changed
                    .wait(state)
                    .unwrap_or_else(|p| p.into_inner());
                continue;
            }
            state = self.sync_as_leader(state);
        }
    }

    /// Syncs everything written so far, releasing the lock during the fsync so that other
    /// writers can append the next group meanwhile.
    fn sync_as_leader<'a>(
        &'a self,
        mut state: MutexGuard<'a, WalState>,
    ) -> MutexGuard<'a, WalState> {
        debug_assert!(!state.sync_in_progress);
        state.sync_in_progress = true;
        let target = state.lsn_written;
        let segment = state.segment.clone();
        let path = self.current_path(&state);
        drop(state);
        let _span = tracing::debug_span!("wal sync", lsn = target).entered();
        let synced = segment.sync();
        let mut state = self.lock();
        state.sync_in_progress = false;
        match synced {
            Ok(()) => {
                debug_assert!(target <= state.lsn_written);
                if target > state.lsn_durable {
                    state.lsn_durable = target;
                }
                if state.lsn_durable == state.lsn_written {
                    state.unsynced_since = None;
                }
            }
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "log sync failed; poisoning the log");
                state
                    .poisoned
                    .get_or_insert_with(|| format!("sync of {} failed: {e}", path.display()));
            }
        }
        self.durable_changed.notify_all();
        state
    }

    /// Syncs everything written so far (if anything is unsynced).
    pub fn sync_all(&self) -> Result<()> {
        let target = self.lock().lsn_written;
        self.sync_to(target)
    }

    /// Whether `lsn` is durable; `Err` if the log was poisoned before it became durable.
    pub fn is_durable(&self, lsn: u64) -> Result<bool> {
        let state = self.lock();
        if lsn > state.lsn_written {
            return Err(Error::InvalidTicket {
                lsn,
                lsn_written: state.lsn_written,
            });
        }
        if state.lsn_durable >= lsn {
            return Ok(true);
        }
        match &state.poisoned {
            Some(reason) => Err(Error::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(false),
        }
    }

    /// `(lsn_written, lsn_durable)`.
    pub fn lsns(&self) -> (u64, u64) {
        let state = self.lock();
        (state.lsn_written, state.lsn_durable)
    }

    /// The poison reason, if the log is poisoned.
    pub fn poisoned(&self) -> Option<String> {
        self.lock().poisoned.clone()
    }

    /// One step of group commit, for the background worker: syncs if anything is written
    /// and the mode says it is due. Returns how long until the next step is due.
    pub fn commit_step(&self) -> StepResult {
        let idle = Duration::from_millis(100);
        let state = self.lock();
        if state.poisoned.is_some() {
            return StepResult::Idle(idle);
        }
        let Some(since) = state.unsynced_since else {
            return StepResult::Idle(match self.mode {
                SyncMode::Batch { max_delay } => max_delay.min(idle),
                _ => idle,
            });
        };
        if state.sync_in_progress {
            return StepResult::Idle(Duration::from_micros(100));
        }
        let due = match self.mode {
            SyncMode::Always => true,
            SyncMode::Batch { max_delay } => {
                let age = self.clock.now_monotonic().saturating_sub(since);
                if age < max_delay {
                    return StepResult::Idle(max_delay - age);
                }
                true
            }
            SyncMode::None => false,
        };
        if !due {
            return StepResult::Idle(idle);
        }
        drop(self.sync_as_leader(state));
        StepResult::Busy
    }

    /// Syncs the current segment and starts a new one; returns the last LSN of the segments
    /// before it. Used by checkpoints, so that older segments can be removed whole.
    pub fn roll(&self) -> Result<u64> {
        let mut state = self.lock();
        if let Some(reason) = &state.poisoned {
            return Err(Error::Poisoned {
                reason: reason.clone(),
            });
        }
        // Wait out a leader's sync so that the old segment is not synced twice at once.
        while state.sync_in_progress {
            state = self
                .durable_changed
                .wait(state)
                .unwrap_or_else(|p| p.into_inner());
        }
        self.roll_locked(&mut state)?;
        Ok(state.lsn_written)
    }

    fn roll_locked(&self, state: &mut WalState) -> Result<()> {
        let path = self.current_path(state);
        if let Err(e) = state.segment.sync() {
            state
                .poisoned
                .get_or_insert_with(|| format!("sync of {} failed: {e}", path.display()));
            self.durable_changed.notify_all();
            return Err(Error::io("log segment sync", path, e));
        }
        state.lsn_durable = state.lsn_written;
        state.unsynced_since = None;
        self.durable_changed.notify_all();
        let seq = state.segments.last().map_or(1, |s| s.seq + 1);
        let (segment, info) = match create_segment(self.fs.as_ref(), &self.dir, seq, state.lsn_next)
        {
            Ok(made) => made,
            Err(failed) => {
                if failed.stray {
                    state.poisoned.get_or_insert_with(|| {
                        format!(
                            "a half-made log segment could not be removed: {}",
                            failed.error
                        )
                    });
                    self.durable_changed.notify_all();
                }
                return Err(failed.error);
            }
        };
        state.segment = segment;
        state.segments.push(info);
        state.write_offset = SEGMENT_HEADER_BYTES as u64;
        Ok(())
    }

    /// Removes the segments whose records all have LSNs `<= lsn` (covered by a checkpoint).
    pub fn remove_segments_through(&self, lsn: u64) -> Result<()> {
        let doomed: Vec<SegmentInfo> = {
            let mut state = self.lock();
            let keep_from = (0..state.segments.len())
                .find(|&i| {
                    state
                        .segments
                        .get(i + 1)
                        .is_none_or(|next| next.first_lsn > lsn + 1)
                })
                .unwrap_or(0);
            state.segments.drain(..keep_from).collect()
        };
        if doomed.is_empty() {
            return Ok(());
        }
        for segment in &doomed {
            self.fs
                .remove(&segment.path)
                .map_err(|e| Error::io("remove log segment", &segment.path, e))?;
        }
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("sync log directory", &self.dir, e))
    }

    fn current_path(&self, state: &WalState) -> PathBuf {
        state
            .segments
            .last()
            .map_or_else(|| self.dir.clone(), |s| s.path.clone())
    }
}

/// Why a segment could not be created.
struct CreateFailed {
    error: Error,
    /// Whether the half-made file may still be in the directory after a crash. If so the
    /// log must be poisoned: a stray last segment would make the real last one look like
    /// a middle segment with a torn tail, which is corruption.
    stray: bool,
}

/// Creates segment `seq` whose first record will have `first_lsn`, and makes it durable
/// (header synced, directory entry synced) before returning it. On failure the half-made
/// file is removed durably, or `stray` says it could not be.
fn create_segment(
    fs: &dyn Fs,
    dir: &Path,
    seq: u64,
    first_lsn: u64,
) -> std::result::Result<(Arc<dyn File>, SegmentInfo), CreateFailed> {
    let path = dir.join(segment_file_name(seq));
    let file: Arc<dyn File> = match fs.open(&path, OpenMode::Create) {
        Ok(file) => Arc::from(file),
        Err(e) => {
            // The create itself may have reached the directory before failing.
            let stray = fs.exists(&path).unwrap_or(true)
                && fs.remove(&path).and_then(|()| fs.sync_dir(dir)).is_err();
            return Err(CreateFailed {
                error: Error::io("create log segment", &path, e),
                stray,
            });
        }
    };
    let header = encode_segment_header(seq, first_lsn);
    let made = file
        .set_len(0)
        .and_then(|()| file.write_at(&header, 0))
        .and_then(|()| file.sync())
        .and_then(|()| fs.sync_dir(dir));
    if let Err(e) = made {
        drop(file);
        let stray = fs.remove(&path).and_then(|()| fs.sync_dir(dir)).is_err();
        return Err(CreateFailed {
            error: Error::io("create log segment", &path, e),
            stray,
        });
    }
    Ok((
        file,
        SegmentInfo {
            seq,
            first_lsn,
            path,
        },
    ))
}

/// The group-commit worker: each step syncs the log when the durability mode says a sync
/// is due. It holds only the log, never the database, so dropping the database stops it.
pub struct CommitWorker {
    wal: Arc<Wal>,
}

impl CommitWorker {
    /// A worker for `wal`.
    pub fn new(wal: Arc<Wal>) -> CommitWorker {
        CommitWorker { wal }
    }
}

impl Worker for CommitWorker {
    fn name(&self) -> &str {
        "group-commit"
    }

    fn step(&mut self) -> StepResult {
        self.wal.commit_step()
    }
}
