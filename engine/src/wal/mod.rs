//! The write-ahead log: segment files of checksummed, LSN-numbered records, and a commit
//! pipeline with group commit. Recovery's scan of the log is the child module `recover`
//! ([`Wal::recover`]); the bytes are `format`; the clean-close marker is `end`.
//!
//! **Commit as submit + complete.** [`Wal::append`] encodes a record into the in-memory log
//! buffer and returns its LSN: the ticket. It does no I/O (unless the buffer passes
//! [`limits::LOG_BUFFER_BYTES_FLUSH`]: then the appender writes it out, a plain write) and
//! never an fsync, so the database calls it under its state lock, and log order is apply
//! order. A record is acknowledged under `Durability::Always` once `lsn_durable >= lsn`.
//! [`Wal::sync_to`] is the blocking completion: the first waiter becomes the *log writer*
//! (the leader), takes the whole buffer, and with the lock released writes it with one
//! `write_at` and syncs it with one fsync; later waiters sleep on a condition variable and
//! are covered by that fsync (group commit). The [`CommitWorker`]'s `step()` is the same
//! writer, run by a background worker (OsEnv) or by the simulator's schedule, so a single
//! thread can keep many commits in flight. One log writer at a time (`io_in_progress`); no
//! lock is held across its I/O, so appenders (and readers) never wait for an fsync, except
//! when the buffer is full ([`limits::LOG_BUFFER_BYTES_MAX`]; back-pressure).
//!
//! **Failures.** A failed write is undone by truncating the segment back and syncing; its
//! bytes go back in front of the buffer and the log goes on (the caller that led it gets the
//! error; its records, already applied, may still become durable: not acknowledged). If the
//! truncate fails, or a sync fails, the log is *poisoned*: the data the sync covered may not
//! be durable, so nothing after `lsn_durable` is ever acknowledged and every later append is
//! refused until the database is reopened and recovers from what is really on disk (the
//! PostgreSQL fsync lesson: never retry an fsync as if nothing happened).
//!
//! **Segments.** A segment is synced in full before the next one is created, and a new segment
//! is made durable (file and directory entry) before any record in it is acknowledged. So
//! only the last segment can have a torn tail; see [`format`] for how damage is classified.
//!
//! **Page cache.** After a sync that succeeded, the log writer tells the OS it may drop the
//! synced whole pages of the segment (one hint per MiB, and all of a finished segment): a
//! log is read only at recovery, so keeping it cached would only grow the page cache by
//! every byte logged. The partial last page stays, since the next append writes into it.
//!
//! **Rolls** happen only in the log writer with no lock held: when the buffer does not fit
//! in the current segment (sync the old one, create the new one, write the buffer there) and
//! for checkpoints ([`Wal::roll`]). A writer that must not fsync (an appender emptying a full
//! buffer) never rolls, so a segment may pass its size target until the next writer rolls.
//!
//! Invariants: `lsn_durable <= lsn_written <= lsn_appended < lsn_next`, all monotonic; the
//! buffer holds exactly the frames `lsn_written + 1 ..= lsn_appended`; LSNs are contiguous
//! across segments.

pub(crate) mod end;
pub(crate) mod format;
mod recover;

pub use recover::{LogScan, RecoveryStats};

use crate::env::{remove_durably, Clock, File, Fs, OpenMode, StepResult, Worker};
use crate::error::{Error, Result};
use crate::limits;
use crate::options::Durability;
use format::{encode_frame, encode_segment_header, segment_file_name, SEGMENT_HEADER_BYTES};
#[cfg(feature = "shuttle")]
use shuttle::sync::{Condvar, Mutex, MutexGuard};
use std::path::{Path, PathBuf};
use std::sync::Arc;
#[cfg(not(feature = "shuttle"))]
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The log's directory under the database's root.
pub(crate) const WAL_DIR: &str = "wal";

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
    /// Bytes of the current segment that reached the file (header included).
    write_offset: u64,
    /// Bytes at the start of the current segment already synced and dropped from the OS
    /// page cache (see [`drop_synced`]); a multiple of [`CACHE_PAGE_BYTES`].
    cache_dropped_to: u64,
    /// Frames appended but not yet written to the file: LSNs `lsn_written + 1 ..=
    /// lsn_appended`, in order. At most `LOG_BUFFER_BYTES_MAX` (one larger frame alone).
    buffer: Vec<u8>,
    /// An empty buffer kept for the next swap, so that steady state allocates nothing.
    spare: Vec<u8>,
    lsn_next: u64,
    lsn_appended: u64,
    lsn_written: u64,
    lsn_durable: u64,
    /// One log writer at a time: whoever sets this writes, syncs and rolls segments with
    /// the lock released; nobody else touches the files meanwhile.
    io_in_progress: bool,
    poisoned: Option<String>,
    /// Monotonic time of the oldest record not yet durable.
    unsynced_since: Option<Duration>,
    /// Monotonic time of the oldest record still in `buffer`.
    buffered_since: Option<Duration>,
}

/// What the log writer does with the segment besides writing the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Roll {
    /// Never roll (the caller may hold the database's state lock: no fsync allowed).
    Never,
    /// Roll first if the buffer does not fit in the current segment.
    IfFull,
    /// Write the buffer, sync, and start a new segment (checkpoints).
    Always,
}

/// The log's size limits: [`limits`]' constants unless [`crate::Options`] (the simulator's
/// BUGGIFY knobs) says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalLimits {
    /// A segment is closed and a new one started once it would pass this many bytes
    /// ([`limits::WAL_SEGMENT_BYTES_TARGET`]).
    pub segment_bytes_target: u64,
    /// A writer that finds this many bytes buffered writes them out itself
    /// ([`limits::LOG_BUFFER_BYTES_FLUSH`]).
    pub buffer_bytes_flush: usize,
    /// Most bytes buffered; past it a writer waits for a busy log writer
    /// ([`limits::LOG_BUFFER_BYTES_MAX`]). At least `buffer_bytes_flush`.
    pub buffer_bytes_max: usize,
}

impl Default for WalLimits {
    fn default() -> Self {
        WalLimits {
            segment_bytes_target: limits::WAL_SEGMENT_BYTES_TARGET,
            buffer_bytes_flush: limits::LOG_BUFFER_BYTES_FLUSH,
            buffer_bytes_max: limits::LOG_BUFFER_BYTES_MAX,
        }
    }
}

/// Where the log stands ([`crate::Database::lsns`]): `durable <= appended`, both only grow
/// while the database is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lsns {
    /// The last LSN appended: its write is applied and its record is in the log buffer or
    /// the file, not necessarily synced (under `Durability::Always` it is not yet
    /// acknowledged until `durable` reaches it).
    pub appended: u64,
    /// The last LSN synced: every record up to it survives a crash.
    pub durable: u64,
}

/// The write-ahead log of one database.
pub struct Wal {
    fs: Arc<dyn Fs>,
    clock: Arc<dyn Clock>,
    dir: PathBuf,
    mode: Durability,
    limits: WalLimits,
    state: Mutex<WalState>,
    /// Signalled whenever the log writer finishes (durability advanced, or the log was
    /// poisoned): group-commit followers and writers held back by a full buffer wait on it.
    io_done: Condvar,
}

impl Wal {
    /// Starts the log after recovery: removes the scanned segments, whose records must all
    /// be covered by a durable checkpoint at `lsn_covered`, then creates a fresh segment
    /// for LSN `lsn_covered + 1`.
    pub fn start(
        fs: Arc<dyn Fs>,
        clock: Arc<dyn Clock>,
        dir: &Path,
        mode: Durability,
        scan: LogScan,
        lsn_covered: u64,
    ) -> Result<Wal> {
        debug_assert!(lsn_covered >= scan.stats.lsn_last);
        remove_durably(
            fs.as_ref(),
            dir,
            &scan.segments,
            "remove recovered log segment",
            "sync log directory",
        )?;
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
            limits: WalLimits::default(),
            state: Mutex::new(WalState {
                segment,
                segments: vec![info],
                write_offset: SEGMENT_HEADER_BYTES as u64,
                cache_dropped_to: 0,
                buffer: Vec::new(),
                spare: Vec::new(),
                lsn_next,
                lsn_appended: lsn_next - 1,
                lsn_written: lsn_next - 1,
                lsn_durable: lsn_next - 1,
                io_in_progress: false,
                poisoned: None,
                unsynced_since: None,
                buffered_since: None,
            }),
            io_done: Condvar::new(),
        })
    }

    /// The log with `limits` instead of the defaults (set before any append). A buffer
    /// maximum below the flush mark is raised to it.
    pub fn with_limits(mut self, limits: WalLimits) -> Wal {
        self.limits = WalLimits {
            buffer_bytes_max: limits.buffer_bytes_max.max(limits.buffer_bytes_flush),
            ..limits
        };
        self
    }

    fn lock(&self) -> MutexGuard<'_, WalState> {
        // The state is only changed in short sections that do not panic; a poisoned mutex
        // still holds consistent counters.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait_io<'a>(&'a self, state: MutexGuard<'a, WalState>) -> MutexGuard<'a, WalState> {
        self.io_done.wait(state).unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record to the log buffer and returns its LSN. No I/O unless the buffer
    /// is full (then the caller writes it out, or waits for the log writer if one is busy);
    /// never an fsync, so callers may hold the database's state lock. On `Err` nothing of
    /// the record is in the log.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64> {
        if payload.len() > limits::RECORD_BYTES_MAX {
            return Err(Error::LimitExceeded {
                what: "log record bytes",
                size: payload.len(),
                limit: limits::RECORD_BYTES_MAX,
            });
        }
        let frame_bytes = format::FRAME_HEADER_BYTES + payload.len();
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            let buffered = state.buffer.len();
            if buffered == 0
                || (buffered < self.limits.buffer_bytes_flush
                    && buffered + frame_bytes <= self.limits.buffer_bytes_max)
            {
                break;
            }
            if !state.io_in_progress {
                // Write the buffer out ourselves: a write, never a sync or a roll.
                let (next, failed) = self.io_as_writer(state, false, Roll::Never);
                state = next;
                if let Some(e) = failed {
                    return Err(e);
                }
            } else if buffered + frame_bytes > self.limits.buffer_bytes_max {
                // Back-pressure: the buffer is full and the log writer is busy.
                state = self.wait_io(state);
            } else {
                break;
            }
        }
        let lsn = state.lsn_next;
        let lsn_durable = state.lsn_durable;
        encode_frame(&mut state.buffer, lsn, lsn_durable, kind, payload);
        state.lsn_appended = lsn;
        state.lsn_next = lsn + 1;
        if state.buffered_since.is_none() {
            let now = self.clock.now_monotonic();
            state.buffered_since = Some(now);
            state.unsynced_since.get_or_insert(now);
        }
        debug_assert!(state.lsn_durable <= state.lsn_written);
        debug_assert!(state.lsn_written <= state.lsn_appended);
        Ok(lsn)
    }

    /// Blocks until `lsn` is durable, writing and syncing as the group-commit leader if no
    /// log writer is busy. Fails if the log is (or becomes) poisoned before `lsn` is
    /// durable, or with the leader's I/O error (the record stays in the log buffer and may
    /// still become durable: treat it as not acknowledged).
    pub fn sync_to(&self, lsn: u64) -> Result<()> {
        let mut state = self.lock();
        if lsn > state.lsn_appended {
            // Only a ticket from another log (say, from before a reopen) can be ahead of
            // what was appended; waiting for it would never end.
            return Err(Error::InvalidTicket {
                lsn,
                lsn_written: state.lsn_appended,
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
            if state.io_in_progress {
                state = self.wait_io(state);
                continue;
            }
            let (next, failed) = self.io_as_writer(state, true, Roll::IfFull);
            state = next;
            if let Some(e) = failed {
                if state.lsn_durable < lsn {
                    return Err(e);
                }
            }
        }
    }

    /// The log writer: takes the buffer, then with the lock released writes it (rolling to
    /// a new segment as `roll` says) and syncs if `sync`. Returns the relocked state and
    /// the error, if any. A failed sync, or a failed write that cannot be undone, poisons
    /// the log; a failed write that was undone (or a segment that could not be created)
    /// puts the bytes back in front of the buffer, and the log goes on.
    fn io_as_writer<'a>(
        &'a self,
        mut state: MutexGuard<'a, WalState>,
        sync: bool,
        roll: Roll,
    ) -> (MutexGuard<'a, WalState>, Option<Error>) {
        debug_assert!(!state.io_in_progress);
        state.io_in_progress = true;
        let spare = std::mem::take(&mut state.spare);
        let bytes = std::mem::replace(&mut state.buffer, spare);
        let buffered_since = state.buffered_since.take();
        let lsn_target = state.lsn_appended;
        let lsn_before = state.lsn_written;
        let offset = state.write_offset;
        let cache_dropped_to = state.cache_dropped_to;
        let segment = state.segment.clone();
        let seq_next = state.segments.last().map_or(1, |s| s.seq + 1);
        let path = self.current_path(&state);
        drop(state);

        let roll_first = roll == Roll::IfFull
            && !bytes.is_empty()
            && offset > SEGMENT_HEADER_BYTES as u64
            && offset + bytes.len() as u64 > self.limits.segment_bytes_target;
        let outcome = self.write_out(
            &segment,
            &path,
            offset,
            cache_dropped_to,
            &bytes,
            seq_next,
            lsn_before,
            lsn_target,
            roll_first,
            sync || roll == Roll::Always,
            roll == Roll::Always,
        );

        let mut state = self.lock();
        state.io_in_progress = false;
        if let Some((file, info)) = outcome.new_segment {
            state.segment = file;
            state.segments.push(info);
        }
        state.write_offset = outcome.offset_end;
        state.cache_dropped_to = outcome.cache_dropped_to;
        if outcome.written {
            state.lsn_written = lsn_target;
        }
        if outcome.lsn_durable > state.lsn_durable {
            state.lsn_durable = outcome.lsn_durable;
        }
        let mut failed = None;
        match outcome.failure {
            None => {
                if state.lsn_durable == state.lsn_appended {
                    state.unsynced_since = None;
                } else if outcome.lsn_durable == lsn_target {
                    // Only records appended during the I/O are still unsynced.
                    state.unsynced_since = state.buffered_since;
                }
                // Keep a modest buffer for the next swap. One that grew while the log writer
                // was slow (up to LOG_BUFFER_BYTES_MAX) is shrunk, so a burst's memory is given
                // back instead of held for the life of the database.
                let mut bytes = bytes;
                bytes.clear();
                bytes.shrink_to(limits::LOG_BUFFER_BYTES_SPARE);
                state.spare = bytes;
            }
            Some(failure) => {
                if let Some(reason) = failure.poison {
                    tracing::error!(%reason, "poisoning the log");
                    state.poisoned.get_or_insert(reason);
                } else if !outcome.written {
                    // Nothing of `bytes` is in the file: put them back in front of what was
                    // appended meanwhile, so that the log goes on in LSN order.
                    let mut bytes = bytes;
                    bytes.extend_from_slice(&state.buffer);
                    state.buffer = bytes;
                    state.buffered_since = match (buffered_since, state.buffered_since) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                failed = Some(failure.error);
            }
        }
        debug_assert!(state.lsn_durable <= state.lsn_written);
        debug_assert!(state.lsn_written <= state.lsn_appended);
        self.io_done.notify_all();
        (state, failed)
    }

    /// The I/O of [`Wal::io_as_writer`], run by the one log writer with the lock released:
    /// roll first if asked, write `bytes` at `offset`, sync if asked, roll after if asked.
    #[allow(clippy::too_many_arguments)]
    fn write_out(
        &self,
        segment: &Arc<dyn File>,
        path: &Path,
        offset: u64,
        cache_dropped_to: u64,
        bytes: &[u8],
        seq_next: u64,
        lsn_before: u64,
        lsn_target: u64,
        roll_first: bool,
        sync: bool,
        roll_after: bool,
    ) -> WriteOutcome {
        let mut outcome = WriteOutcome {
            written: false,
            offset_end: offset,
            cache_dropped_to,
            lsn_durable: 0,
            new_segment: None,
            failure: None,
        };
        let sync_failed = |path: &Path, e: std::io::Error| {
            crate::probe!(WalSyncFailurePoisons);
            WriteFailure {
                poison: Some(format!("sync of {} failed: {e}", path.display())),
                error: Error::io("log sync", path, e),
            }
        };
        let create_failed = |failed: CreateFailed| {
            crate::probe!(WalSegmentCreateFailed);
            WriteFailure {
                poison: failed.stray.then(|| {
                    format!(
                        "a half-made log segment could not be removed: {}",
                        failed.error
                    )
                }),
                error: failed.error,
            }
        };
        let (mut file, mut file_path) = (segment.clone(), path.to_path_buf());
        if roll_first {
            // A segment is synced in full before the next one is created.
            if let Err(e) = segment.sync() {
                outcome.failure = Some(sync_failed(path, e));
                return outcome;
            }
            outcome.lsn_durable = lsn_before;
            // The segment is finished: all of it, its last partial page too.
            drop_synced(segment.as_ref(), path, cache_dropped_to..offset);
            match create_segment(self.fs.as_ref(), &self.dir, seq_next, lsn_before + 1) {
                Ok(made) => {
                    crate::probe!(WalSegmentRoll);
                    crate::probe!(WalSegmentRollBySize);
                    file = made.0.clone();
                    file_path = made.1.path.clone();
                    outcome.offset_end = SEGMENT_HEADER_BYTES as u64;
                    outcome.cache_dropped_to = 0;
                    outcome.new_segment = Some(made);
                }
                Err(failed) => {
                    outcome.failure = Some(create_failed(failed));
                    return outcome;
                }
            }
        }
        if !bytes.is_empty() {
            let at = outcome.offset_end;
            if let Err(e) = file.write_at(bytes, at) {
                if e.kind() == std::io::ErrorKind::StorageFull {
                    crate::probe!(WalDiskFullInRecord);
                }
                // Undo durably: an unsynced truncate could be lost in a crash and let the
                // failed records resurface after a gap.
                let undone = file.set_len(at).and_then(|()| file.sync());
                outcome.failure = Some(match undone {
                    Ok(()) => {
                        crate::probe!(WalWriteUndone);
                        // That sync covered every earlier write too.
                        outcome.lsn_durable = lsn_before;
                        WriteFailure {
                            poison: None,
                            error: Error::io("log write", &file_path, e),
                        }
                    }
                    Err(undo) => {
                        crate::probe!(WalUndoFailurePoisons);
                        WriteFailure {
                        poison: Some(format!(
                            "write at offset {at} of {} failed ({e}) and truncating it back failed ({undo})",
                            file_path.display()
                        )),
                        error: Error::io("log write", &file_path, e),
                    }
                    }
                });
                return outcome;
            }
            outcome.offset_end = at + bytes.len() as u64;
        }
        outcome.written = true;
        if sync {
            let _span = tracing::debug_span!("wal sync", lsn = lsn_target).entered();
            if let Err(e) = file.sync() {
                outcome.failure = Some(sync_failed(&file_path, e));
                return outcome;
            }
            outcome.lsn_durable = lsn_target;
            // Whole pages only: the next append writes into the partial last page, and a
            // dropped one would have to be read back from the disk first.
            let whole_pages = outcome.offset_end / CACHE_PAGE_BYTES * CACHE_PAGE_BYTES;
            if whole_pages >= outcome.cache_dropped_to + CACHE_DROP_BYTES_MIN {
                drop_synced(
                    file.as_ref(),
                    &file_path,
                    outcome.cache_dropped_to..whole_pages,
                );
                outcome.cache_dropped_to = whole_pages;
            }
        }
        if roll_after {
            debug_assert!(outcome.new_segment.is_none() && sync);
            match create_segment(self.fs.as_ref(), &self.dir, seq_next, lsn_target + 1) {
                Ok(made) => {
                    crate::probe!(WalSegmentRoll);
                    drop_synced(
                        file.as_ref(),
                        &file_path,
                        outcome.cache_dropped_to..outcome.offset_end,
                    );
                    outcome.offset_end = SEGMENT_HEADER_BYTES as u64;
                    outcome.cache_dropped_to = 0;
                    outcome.new_segment = Some(made);
                }
                // The old segment stays current, with the buffer written and synced.
                Err(failed) => outcome.failure = Some(create_failed(failed)),
            }
        }
        outcome
    }

    /// Writes the log buffer to the OS (no sync). For a database dropped without `close`,
    /// so that only a crash, not a drop, loses what was acknowledged under `Batch`/`None`.
    pub fn write_buffered(&self) -> Result<()> {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            if state.buffer.is_empty() {
                return Ok(());
            }
            if state.io_in_progress {
                state = self.wait_io(state);
                continue;
            }
            let (next, failed) = self.io_as_writer(state, false, Roll::Never);
            if let Some(e) = failed {
                return Err(e);
            }
            state = next;
        }
    }

    /// Makes everything appended so far durable (if anything is not).
    pub fn sync_all(&self) -> Result<()> {
        let target = self.lock().lsn_appended;
        self.sync_to(target)
    }

    /// Whether `lsn` is durable; `Err` if the log was poisoned before it became durable.
    pub fn is_durable(&self, lsn: u64) -> Result<bool> {
        let state = self.lock();
        if lsn > state.lsn_appended {
            return Err(Error::InvalidTicket {
                lsn,
                lsn_written: state.lsn_appended,
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

    /// The last LSN in the log (in the buffer or the file) and the last one synced.
    pub fn lsns(&self) -> Lsns {
        let state = self.lock();
        Lsns {
            appended: state.lsn_appended,
            durable: state.lsn_durable,
        }
    }

    /// The poison reason, if the log is poisoned.
    pub fn poisoned(&self) -> Option<String> {
        self.lock().poisoned.clone()
    }

    /// One step of the log writer, for the background worker: with `Durability::Always` and
    /// `Batch` it writes and syncs when a sync is due; with `None` it writes the buffer
    /// (rolling segments as needed) and syncs only at a roll. Returns how long until the
    /// next step is due.
    pub fn commit_step(&self) -> StepResult {
        let idle = Duration::from_millis(100);
        let state = self.lock();
        if state.poisoned.is_some() {
            return StepResult::Idle(idle);
        }
        let Some(since) = state.unsynced_since else {
            return StepResult::Idle(match self.mode {
                Durability::Batch { max_delay } => max_delay.min(idle),
                Durability::None => limits::LOG_WRITE_DELAY.min(idle),
                Durability::Always => idle,
            });
        };
        if state.io_in_progress {
            return StepResult::Idle(Duration::from_micros(100));
        }
        let sync = match self.mode {
            Durability::Always => true,
            Durability::Batch { max_delay } => {
                let age = self.clock.now_monotonic().saturating_sub(since);
                if age < max_delay {
                    return StepResult::Idle(max_delay - age);
                }
                true
            }
            Durability::None => {
                if state.buffer.is_empty() {
                    return StepResult::Idle(limits::LOG_WRITE_DELAY);
                }
                false
            }
        };
        let (state, failed) = self.io_as_writer(state, sync, Roll::IfFull);
        drop(state);
        match failed {
            // Let the disk recover before trying again (a poisoned log stays idle).
            Some(_) => StepResult::Idle(Duration::from_millis(10)),
            None if sync => StepResult::Busy,
            None => StepResult::Idle(limits::LOG_WRITE_DELAY),
        }
    }

    /// Writes and syncs everything appended so far and starts a new segment; returns the
    /// last LSN of the segments before it. Used by checkpoints, so that older segments can
    /// be removed whole. Holds no lock of the database: callers must not either.
    pub fn roll(&self) -> Result<u64> {
        let mut state = self.lock();
        loop {
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned {
                    reason: reason.clone(),
                });
            }
            if !state.io_in_progress {
                break;
            }
            state = self.wait_io(state);
        }
        let lsn_target = state.lsn_appended;
        let (state, failed) = self.io_as_writer(state, true, Roll::Always);
        match failed {
            Some(e) => Err(e),
            None => {
                debug_assert!(state.lsn_durable >= lsn_target);
                Ok(lsn_target)
            }
        }
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
        let paths: Vec<&Path> = doomed
            .iter()
            .map(|segment| segment.path.as_path())
            .collect();
        remove_durably(
            self.fs.as_ref(),
            &self.dir,
            &paths,
            "remove log segment",
            "sync log directory",
        )
    }

    fn current_path(&self, state: &WalState) -> PathBuf {
        state
            .segments
            .last()
            .map_or_else(|| self.dir.clone(), |s| s.path.clone())
    }
}

/// What the log writer's I/O did. `written`: the bytes taken from the buffer are in the
/// file, which ends at `offset_end` (of the new segment, if one was made).
struct WriteOutcome {
    written: bool,
    offset_end: u64,
    /// `WalState::cache_dropped_to` for the segment that ends at `offset_end`.
    cache_dropped_to: u64,
    lsn_durable: u64,
    new_segment: Option<(Arc<dyn File>, SegmentInfo)>,
    failure: Option<WriteFailure>,
}

/// A failed log write or sync; `poison` says why the log must refuse everything from now.
struct WriteFailure {
    error: Error,
    poison: Option<String>,
}

/// Why a segment could not be created.
struct CreateFailed {
    error: Error,
    /// Whether the half-made file may still be in the directory after a crash. If so the
    /// log must be poisoned: a stray last segment would make the real last one look like
    /// a middle segment with a torn tail, which is corruption.
    stray: bool,
}

/// Page size assumed when keeping a segment's partial last page cached; on a system with
/// larger pages the kernel itself keeps partial pages that are not at the end of the file.
const CACHE_PAGE_BYTES: u64 = 4096;
/// Synced bytes that build up before the log drops them: one hint per MiB of log, not one
/// per group commit.
const CACHE_DROP_BYTES_MIN: u64 = 1 << 20;

/// Tells the OS that `range` of a segment, synced, need not stay in its page cache. The log
/// is read back only at recovery, and a cached log would grow the page cache by every byte
/// ever logged (4.6 GB in a 100M-row load), pushing out the application's own pages and, on
/// a VM, making every page of it a fresh one. Called only after a sync that succeeded (see
/// [`File::drop_cached`]). A hint: its failure changes nothing and is only traced.
fn drop_synced(file: &dyn File, path: &Path, range: std::ops::Range<u64>) {
    if let Err(e) = file.drop_cached(range) {
        tracing::debug!(path = %path.display(), error = %e, "log page-cache hint refused");
    }
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
