//! `Database`: open, the write pipeline, reads, flushes and checkpoints, compaction, close.
//!
//! Kept thin: the catalog owns tables and rows, the log owns durability, checkpoints own
//! snapshots. A write runs under the state's write lock, so log order is apply order and a
//! write the log refused is not in the state. Updates, deletes and catalog changes are
//! checked, appended to the log buffer (memory, no fsync), then applied; inserts, the hot
//! path, are validated and inserted, then appended, and undone if the append fails
//! (crate::catalog, crate::table). Writing the buffer out and waiting for durability
//! (`Durability::Always`) happen after the lock is released, so writers that arrive during one
//! fsync share the next one (group commit) and no lock of the state is held across a log
//! fsync: an appender that finds the buffer past its flush mark writes it out under the lock
//! (a plain write), and writers wait for the log writer only when the buffer is full
//! (back-pressure).
//!
//! **Checkpoints** ([`Database::checkpoint`], `Shared::checkpoint`): with
//! `Options::hot_rows_max`, tables over the cap first flush to the cold tier in three phases
//! (`Shared::flush_phase`: copy under the read lock, write and fsync with no lock held,
//! install under the write lock). Then `checkpoint::take` runs the protocol: the log rolls
//! (no lock held), the state is copied into memory under the read lock (or, when its hot
//! rows pass `Options::checkpoint_copy_bytes_max`, streamed to the file's page cache under
//! it), and the file is synced, read back and renamed after the lock is released; older
//! checkpoints and the log segments it covers are removed last (crate::checkpoint).
//!
//! **Open** ([`Database::open_with_env`]) recovers (crate::recovery: the directory lock, the
//! newest checkpoint, the log after it, a checkpoint of the recovered state and a fresh log
//! segment), then starts the background workers.
//!
//! **Threads.** `Database` is `Send + Sync`; share it with `Arc`. The state's lock is a
//! [`ShardedRwLock`]: readers take the read lock of their own shard, so they run in parallel
//! with each other without writing a shared cache line; a writer takes every shard and holds
//! them only to check, append to the buffer and apply (about a microsecond), so readers and
//! writers interleave at that grain.
//!
//! Reads see every applied write, including writes whose fsync is still in flight: a reader
//! may observe a write that a crash then takes away, exactly the writes whose `Ticket` was
//! never acknowledged. Acknowledged writes are never lost under the mode's promise.
//!
//! **One process per directory.** Open takes [`Fs::lock_dir`](crate::env::Fs::lock_dir) on
//! the directory before it reads anything there, and the `Database` holds the lock until it
//! is closed or dropped: meanwhile any other open of the directory, from this process or
//! another, fails with [`Error::Locked`]. `OsEnv` implements the lock with `flock`, which the
//! kernel releases however the process ends.

use crate::catalog::{Catalog, LoggedOp};
use crate::checkpoint;
use crate::cold;
use crate::cold::prune::ColumnRange;
use crate::env::{remove_durably, DirLock, Env, WorkerControl};
use crate::error::{Error, Result};
use crate::options::{Durability, Options};
use crate::recovery::{self, Recovered};
use crate::rowstore::RowRef;
use crate::schema::{Row, TableDef};
use crate::shard_lock::{ReadGuard, ShardedRwLock, WriteGuard};
use crate::table::{TableId, TableScan};
use crate::wal::{CommitWorker, Lsns, RecoveryStats, Wal, WAL_DIR};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A write, as submitted to [`Database::submit`].
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create a table.
    CreateTable(TableDef),
    /// Drop a table and its rows.
    DropTable {
        /// The table.
        table: String,
    },
    /// Insert rows, all or nothing.
    Insert {
        /// The table.
        table: String,
        /// The rows (at least one).
        rows: Vec<Row>,
    },
    /// Replace the row with primary key `key` (which the new row must keep).
    Update {
        /// The table.
        table: String,
        /// The key of the row.
        key: i64,
        /// The new row.
        row: Row,
    },
    /// Delete the row with primary key `key`, if there is one.
    Delete {
        /// The table.
        table: String,
        /// The key.
        key: i64,
    },
}

/// A submitted write: it is applied (visible to reads) and in the log; it is acknowledged
/// once [`Database::is_acknowledged`] says so or [`Database::wait`] returns `Ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[must_use = "a write is acknowledged only after waiting on its ticket"]
pub struct Ticket {
    lsn: u64,
}

impl Ticket {
    /// The write's log sequence number (0 for a write that changed nothing).
    pub fn lsn(&self) -> u64 {
        self.lsn
    }
}

/// What happened while opening.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// LSN of the checkpoint loaded (0 if none).
    pub checkpoint_lsn: u64,
    /// The LSN the last clean close recorded as the log's end (`LOG_END`), which recovery
    /// reached; `None` if the last close was not clean (a crash, or a drop without
    /// `close`), in which case a torn tail may have been cut (`recovery.truncated_at`).
    pub clean_close_lsn: Option<u64>,
    /// What log recovery found.
    pub recovery: RecoveryStats,
}

struct Shared {
    env: Env,
    root: PathBuf,
    options: Options,
    /// The catalog and every table's rows: one lock, so log order is apply order.
    state: ShardedRwLock<Catalog>,
    wal: Arc<Wal>,
    closed: AtomicBool,
    /// Serialises checkpoints and flushes; holds the flush the worker has in flight.
    checkpoint_lock: Mutex<Option<FlushJob>>,
    /// Held by a compaction step from its plan to its install.
    compaction_lock: Mutex<()>,
}

impl Shared {
    fn read(&self) -> Result<ReadGuard<'_, Catalog>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        // A panic while holding the lock can only come from a bug in apply; the state is
        // then suspect, and refusing is safer than serving it.
        self.state.read().map_err(|_| Error::Poisoned {
            reason: "a writer panicked while holding the table state".into(),
        })
    }

    fn write_lock(&self) -> Result<WriteGuard<'_, Catalog>> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.state.write().map_err(|_| Error::Poisoned {
            reason: "a writer panicked while holding the table state".into(),
        })
    }

    fn checkpoint(&self) -> Result<u64> {
        let mut job = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(hot_rows_max) = self.options.hot_rows_max {
            self.flush_over(&mut job, hot_rows_max)?;
        }
        self.checkpoint_locked()
    }

    /// A checkpoint of the state as it is (no flush); `checkpoint_lock` is held.
    fn checkpoint_locked(&self) -> Result<u64> {
        checkpoint::take(
            &self.env,
            &self.root,
            &self.wal,
            self.options.checkpoint_copy_bytes_max,
            || self.read(),
        )
    }

    /// Flushes every table whose hot tier holds more than `hot_rows_max` rows down to half
    /// that, after finishing the flush the worker has in flight (`job`, the state guarded by
    /// `checkpoint_lock`: one flush runs at a time). See [`Shared::flush_phase`].
    fn flush_over(&self, job: &mut Option<FlushJob>, hot_rows_max: usize) -> Result<()> {
        while job.is_some() {
            self.flush_phase(job, None, hot_rows_max)?;
        }
        let over: Vec<TableId> = self
            .read()?
            .tables()
            .filter(|t| t.hot_len() > hot_rows_max)
            .map(|t| t.id)
            .collect();
        for table_id in over {
            self.flush_phase(job, Some(table_id), hot_rows_max)?;
            while job.is_some() {
                self.flush_phase(job, None, hot_rows_max)?;
            }
        }
        Ok(())
    }

    /// Runs one phase of a flush; `job` (guarded by `checkpoint_lock`) carries it between
    /// phases, so that the flush worker can run one per step and writers, readers and
    /// other steps run between them:
    /// 1. with no job, starts one for table `start` (or the first table over the cap) if
    ///    it holds more than `hot_rows_max` hot rows: copies its lowest rows, all but half
    ///    the cap, under the read lock (writers wait for the copy);
    /// 2. writes and fsyncs the copy as a segment with no lock held;
    /// 3. under the write lock, lists the segment and drops the rows from the hot tier
    ///    (rows written since the copy stay hot, and their copies are hidden in the new
    ///    segment at once).
    ///
    /// Returns whether it did anything. The segment is listed durably by the next
    /// checkpoint; until then its rows are also in the log, and a crash leaves the file
    /// unlisted (open removes it). On an error the job is dropped and the table unchanged.
    fn flush_phase(
        &self,
        job: &mut Option<FlushJob>,
        start: Option<TableId>,
        hot_rows_max: usize,
    ) -> Result<bool> {
        let fs = self.env.fs.clone();
        let dir = self.root.join(cold::COLD_DIR);
        match job.take() {
            None => {
                let state = self.read()?;
                let table = match start {
                    Some(id) => state.table_by_id(id),
                    None => state.tables().find(|t| t.hot_len() > hot_rows_max),
                };
                let Some(table) = table.filter(|t| t.hot_len() > hot_rows_max) else {
                    return Ok(false);
                };
                let _span = tracing::info_span!("flush_copy", table = table.def.name()).entered();
                let Some(snapshot) = table.flush_snapshot(hot_rows_max / 2) else {
                    return Ok(false);
                };
                *job = Some(FlushJob {
                    table_id: table.id,
                    def: table.def.clone(),
                    // Every copied row is in the log up to here (appends happen under the
                    // write lock).
                    lsn: self.wal.lsns().appended,
                    id: table.cold.reserve_id(),
                    key_filter: table.cold.key_filter_plan(snapshot.len() as u64),
                    snapshot,
                    segment: None,
                    built_filter: None,
                });
                Ok(true)
            }
            Some(mut flush) if flush.segment.is_none() => {
                let written = {
                    let _span = tracing::info_span!(
                        "flush",
                        table = flush.def.name(),
                        rows = flush.snapshot.len()
                    )
                    .entered();
                    flush.snapshot.write(
                        &self.env,
                        &dir,
                        flush.table_id,
                        &flush.def,
                        flush.id,
                        flush.lsn,
                    )
                };
                match written {
                    Ok(segment) => {
                        flush.segment = Some(segment);
                        if matches!(flush.key_filter, cold::KeyFilterPlan::Build(_)) {
                            // The table's filter goes before its replacement is built, so a
                            // rebuild holds one filter, not two (at 1B rows that is 1.3 GB
                            // less at the peak). Meanwhile duplicate checks and gets take the
                            // per-segment path, which is always sound, only slower.
                            let retired = self.write_lock().ok().and_then(|mut state| {
                                state
                                    .table_by_id_mut(flush.table_id)
                                    .filter(|t| Arc::ptr_eq(&t.def, &flush.def))
                                    .and_then(|t| t.cold.take_key_filter())
                            });
                            drop(retired);
                        }
                        flush.built_filter = flush.update_key_filter();
                        *job = Some(flush);
                        Ok(true)
                    }
                    Err(e) => {
                        let state = self.read()?;
                        if let Some(table) = state.table_by_id(flush.table_id) {
                            table.flush_abandon();
                        }
                        Err(e)
                    }
                }
            }
            Some(flush) => {
                let FlushJob {
                    table_id,
                    def,
                    snapshot,
                    segment,
                    built_filter,
                    ..
                } = flush;
                let Some(segment) = segment else {
                    return Ok(false);
                };
                let mut state = self.write_lock()?;
                match state.table_by_id_mut(table_id) {
                    Some(table) if Arc::ptr_eq(&table.def, &def) => {
                        let retired = {
                            let _span =
                                tracing::info_span!("flush_install", table = def.name()).entered();
                            let retired = table.flush_install(&snapshot, segment);
                            if let Some(filter) = built_filter {
                                table.cold.set_key_filter(filter);
                            }
                            retired
                        };
                        // The old index and pages are freed with the lock released.
                        drop(state);
                        drop(retired);
                    }
                    // The table was dropped while its segment was written: the files go
                    // too (unlisted, so a failure to remove them leaves garbage for open).
                    _ => {
                        drop(state);
                        for path in [segment.path(), segment.index_path()] {
                            fs.remove(path).map_err(|e| {
                                Error::io("remove segment of a dropped table", path, e)
                            })?;
                        }
                    }
                }
                Ok(true)
            }
        }
    }

    /// One step of the flush worker: a phase of the flush in flight or of a new one; after
    /// a flush's last phase, a checkpoint that lists its segment.
    fn flush_worker_step(&self, hot_rows_max: usize) -> Result<bool> {
        let mut job = self
            .checkpoint_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let installing = job.as_ref().is_some_and(|j| j.segment.is_some());
        let did = self.flush_phase(&mut job, None, hot_rows_max)?;
        if installing {
            self.checkpoint_locked()?;
        }
        Ok(did)
    }

    fn compact_step(&self) -> Result<bool> {
        // One step at a time (the worker and callers may both ask), so a step's inputs stay
        // listed until it installs its output.
        let _one = self
            .compaction_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let fs = self.env.fs.clone();
        let dir = self.root.join(cold::COLD_DIR);
        // Plan under the read lock: the inputs (segments are immutable; their deletion
        // vectors are snapshots) and the new segment's id.
        let plan = {
            let state = self.read()?;
            let plan = state.tables().find_map(|table| {
                let inputs = table
                    .cold
                    .plan_compaction(self.options.compaction_base_rows)?;
                Some((table.id, table.def.clone(), inputs, table.cold.reserve_id()))
            });
            plan
        };
        let Some((table_id, def, inputs, id)) = plan else {
            return Ok(false);
        };
        // Merge with no lock held: readers and writers go on.
        let merged = {
            let _span =
                tracing::info_span!("compact", table = def.name(), inputs = inputs.len()).entered();
            cold::ColdTier::write_merged(fs.as_ref(), &dir, table_id, &def, &inputs, id)?
        };
        if inputs.len() > 1 {
            crate::probe!(ColdMerge);
        } else {
            crate::probe!(ColdRewriteDead);
        }
        let replaced = {
            let mut state = self.write_lock()?;
            match state.table_by_id_mut(table_id) {
                Some(table) if Arc::ptr_eq(&table.def, &def) => {
                    table.cold.install_merged(&def, &inputs, merged)?
                }
                // The table was dropped while merging: its new segment goes too.
                _ => merged
                    .map(|s| vec![s.path().to_path_buf(), s.index_path().to_path_buf()])
                    .unwrap_or_default(),
            }
        };
        self.checkpoint()?;
        remove_durably(
            fs.as_ref(),
            &dir,
            &replaced,
            "remove compacted segment",
            "sync cold directory",
        )?;
        Ok(true)
    }
}

/// How long the compaction worker waits when it found nothing to do.
const COMPACTION_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

/// The background compaction worker: each step is one `compact_step`.
struct CompactionWorker {
    shared: std::sync::Weak<Shared>,
}

impl crate::env::Worker for CompactionWorker {
    fn name(&self) -> &str {
        "compaction"
    }

    fn step(&mut self) -> crate::env::StepResult {
        use crate::env::StepResult;
        let Some(shared) = self.shared.upgrade() else {
            return StepResult::Done;
        };
        match shared.compact_step() {
            Ok(true) => StepResult::Busy,
            Ok(false) => StepResult::Idle(COMPACTION_IDLE),
            Err(Error::Closed) => StepResult::Done,
            Err(e) => {
                tracing::warn!(error = %e, "compaction step failed");
                StepResult::Idle(COMPACTION_IDLE)
            }
        }
    }
}

/// A flush between its phases (see `Shared::flush_phase`).
struct FlushJob {
    table_id: TableId,
    def: Arc<TableDef>,
    lsn: u64,
    /// The reserved segment id.
    id: u64,
    snapshot: crate::table::FlushSnapshot,
    /// What the flush does to the table's cold-key filter, decided with the copy.
    key_filter: cold::KeyFilterPlan,
    /// Written, not yet listed.
    segment: Option<cold::Segment>,
    /// The filter to install with the segment, after a `KeyFilterPlan::Build` (`None`: the
    /// build failed, and the old filter goes too).
    built_filter: Option<Option<Arc<cold::keyfilter::ColdKeyFilter>>>,
}

impl FlushJob {
    /// Carries out the flush's [`cold::KeyFilterPlan`] with no lock held, once its segment
    /// is written: adds its keys to the table's filter, or builds a new filter. Returns the
    /// filter to install with the segment, if the plan built one (`Some(None)`: the build
    /// failed reading an older segment, so no filter at all is sound; the read path that
    /// needs that page reports the failure).
    fn update_key_filter(&self) -> Option<Option<Arc<cold::keyfilter::ColdKeyFilter>>> {
        match &self.key_filter {
            cold::KeyFilterPlan::Skip => None,
            cold::KeyFilterPlan::Add(filter) => {
                filter.insert_all(self.snapshot.keys());
                None
            }
            cold::KeyFilterPlan::Build(segments) => {
                let pk = self.def.primary_key_index();
                match cold::keyfilter::ColdKeyFilter::build(segments, pk, self.snapshot.keys()) {
                    Ok(filter) => Some(Some(Arc::new(filter))),
                    Err(e) => {
                        tracing::warn!(error = %e, table = self.def.name(), "cold key filter not built");
                        Some(None)
                    }
                }
            }
        }
    }
}

/// How long the flush worker waits between looks at the hot tiers when there is nothing to
/// flush.
const FLUSH_IDLE: std::time::Duration = std::time::Duration::from_millis(20);

/// The background flush worker (`Options::flush_worker`): each step is one phase of a
/// flush (copy, write, install), and the install is followed by a checkpoint.
struct FlushWorker {
    shared: std::sync::Weak<Shared>,
    hot_rows_max: usize,
}

impl crate::env::Worker for FlushWorker {
    fn name(&self) -> &str {
        "flush"
    }

    fn step(&mut self) -> crate::env::StepResult {
        use crate::env::StepResult;
        let Some(shared) = self.shared.upgrade() else {
            return StepResult::Done;
        };
        match shared.flush_worker_step(self.hot_rows_max) {
            Ok(true) => StepResult::Busy,
            Ok(false) => StepResult::Idle(FLUSH_IDLE),
            Err(Error::Closed) => StepResult::Done,
            Err(e) => {
                tracing::warn!(error = %e, "flush step failed");
                StepResult::Idle(COMPACTION_IDLE)
            }
        }
    }
}

/// An open database. `Send + Sync`: share it with `Arc` across threads.
pub struct Database {
    shared: Arc<Shared>,
    worker: Mutex<Option<Arc<dyn WorkerControl>>>,
    /// The flush and compaction workers, when started.
    maintenance: Mutex<Vec<Arc<dyn WorkerControl>>>,
    open_stats: OpenStats,
    /// The directory's one-writer lock. Declared last, so that it is released only after
    /// `Drop` has handed the log buffer to the OS and stopped the workers.
    _dir_lock: DirLock,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("root", &self.shared.root)
            .finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating if needed) the database in directory `path` on the real disk.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Database> {
        Database::open_with_env(Env::os(), path, options)
    }

    /// Opens (creating if needed) the database in `path` through `env`, recovering from the
    /// latest checkpoint and the log after it. A directory holds one open database at a
    /// time: while one is open (until it is closed or dropped), another open of the same
    /// directory, from this process or another, fails with [`Error::Locked`] and touches
    /// nothing.
    pub fn open_with_env(env: Env, path: impl AsRef<Path>, options: Options) -> Result<Database> {
        let root = path.as_ref().to_path_buf();
        let span = tracing::info_span!("open", path = %root.display());
        let _entered = span.enter();
        let Recovered {
            catalog,
            wal,
            dir_lock,
            stats: open_stats,
        } = recovery::recover(&env, &root, &options)?;
        let wal = Arc::new(wal);
        let worker = if options.background_worker {
            Some(
                env.spawner
                    .spawn(Box::new(CommitWorker::new(wal.clone())))
                    .map_err(|e| Error::io("start group-commit worker", &root, e))?,
            )
        } else {
            None
        };
        let compaction_worker = options.compaction_worker;
        let flush_worker = options.flush_worker;
        let shared = Arc::new(Shared {
            env,
            root,
            options,
            state: ShardedRwLock::new(catalog),
            wal,
            closed: AtomicBool::new(false),
            checkpoint_lock: Mutex::new(None),
            compaction_lock: Mutex::new(()),
        });
        let mut maintenance: Vec<Arc<dyn WorkerControl>> = Vec::new();
        let mut wanted: Vec<(Box<dyn crate::env::Worker>, &str)> = Vec::new();
        if let (true, Some(hot_rows_max)) = (flush_worker, shared.options.hot_rows_max) {
            wanted.push((
                Box::new(FlushWorker {
                    shared: Arc::downgrade(&shared),
                    hot_rows_max,
                }),
                "start flush worker",
            ));
        }
        if compaction_worker {
            wanted.push((
                Box::new(CompactionWorker {
                    shared: Arc::downgrade(&shared),
                }),
                "start compaction worker",
            ));
        }
        for (spawn, what) in wanted {
            match shared.env.spawner.spawn(spawn) {
                Ok(control) => maintenance.push(control),
                Err(e) => {
                    maintenance.iter().for_each(|w| w.stop());
                    if let Some(worker) = worker {
                        worker.stop();
                    }
                    return Err(Error::io(what, &shared.root, e));
                }
            }
        }
        Ok(Database {
            shared,
            worker: Mutex::new(worker),
            maintenance: Mutex::new(maintenance),
            open_stats,
            _dir_lock: dir_lock,
        })
    }

    /// What opening found: the checkpoint loaded and what log recovery did.
    pub fn open_stats(&self) -> &OpenStats {
        &self.open_stats
    }

    /// The directory of this database.
    pub fn path(&self) -> &Path {
        &self.shared.root
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.shared.options.sync
    }

    /// The durability mode, under its old name.
    #[deprecated(note = "renamed to durability()")]
    pub fn sync_mode(&self) -> Durability {
        self.durability()
    }

    fn read(&self) -> Result<ReadGuard<'_, Catalog>> {
        self.shared.read()
    }

    fn write_lock(&self) -> Result<WriteGuard<'_, Catalog>> {
        self.shared.write_lock()
    }

    /// Validates `write`, appends it to the log and applies it; does not wait for
    /// durability. On `Err` nothing changed. See [`Ticket`].
    pub fn submit(&self, write: Write) -> Result<Ticket> {
        let mut state = self.write_lock()?;
        let op = match write {
            Write::CreateTable(def) => LoggedOp::CreateTable {
                id: state.next_table_id(),
                def,
            },
            Write::DropTable { table } => LoggedOp::DropTable {
                id: state.table_id(&table)?,
            },
            Write::Insert { table, rows } => LoggedOp::Insert {
                id: state.table_id(&table)?,
                rows,
            },
            Write::Update { table, key, row } => LoggedOp::Update {
                id: state.table_id(&table)?,
                key,
                row,
            },
            Write::Delete { table, key } => LoggedOp::Delete {
                id: state.table_id(&table)?,
                key,
            },
        };
        // Encode before the check consumes the op (the checked form borrows nothing), into
        // the catalog's reused buffer.
        let mut payload = std::mem::take(&mut state.log_scratch);
        let kind = op.encode_into(&mut payload);
        let wal = &self.shared.wal;
        let result = match op {
            LoggedOp::Insert { id, rows } => state
                .insert_logged(id, rows, || wal.append(kind, &payload))
                .map(|lsn| Ticket { lsn }),
            op => match state.check(op) {
                Ok(Some(checked)) => wal.append(kind, &payload).map(|lsn| {
                    state.apply(checked);
                    Ticket { lsn }
                }),
                Ok(None) => Ok(Ticket { lsn: 0 }),
                Err(e) => Err(e),
            },
        };
        state.log_scratch = payload;
        state.shrink_log_scratch();
        result
    }

    /// Blocks until `ticket` is acknowledged under the durability mode: with
    /// `Durability::Always` until its record is fsynced (sharing the fsync with concurrent
    /// writers); with `Batch` and `None` it already is.
    pub fn wait(&self, ticket: Ticket) -> Result<()> {
        match self.shared.options.sync {
            Durability::Always if ticket.lsn > 0 => {
                let _span = tracing::debug_span!("commit", lsn = ticket.lsn).entered();
                self.shared.wal.sync_to(ticket.lsn)
            }
            _ => Ok(()),
        }
    }

    /// Whether `ticket` is acknowledged (never blocks). `Err` if the log failed before it
    /// became durable: such a write must be treated as not acknowledged.
    pub fn is_acknowledged(&self, ticket: Ticket) -> Result<bool> {
        match self.shared.options.sync {
            Durability::Always if ticket.lsn > 0 => self.shared.wal.is_durable(ticket.lsn),
            _ => Ok(true),
        }
    }

    /// Whether `ticket`'s record is durable on disk (in every mode).
    pub fn is_durable(&self, ticket: Ticket) -> Result<bool> {
        if ticket.lsn == 0 {
            return Ok(true);
        }
        self.shared.wal.is_durable(ticket.lsn)
    }

    /// Why the log refuses writes until reopen, if it does (a failed fsync, or a failed
    /// write that could not be undone).
    pub fn poisoned(&self) -> Option<String> {
        self.shared.wal.poisoned()
    }

    /// Where the log stands: the last LSN appended (in the log buffer or the file) and the
    /// last one synced ([`Lsns`]).
    pub fn lsns(&self) -> Lsns {
        self.shared.wal.lsns()
    }

    /// Submits and waits.
    pub fn execute(&self, write: Write) -> Result<Ticket> {
        let ticket = self.submit(write)?;
        self.wait(ticket)?;
        Ok(ticket)
    }

    /// Creates a table.
    pub fn create_table(&self, def: TableDef) -> Result<()> {
        self.execute(Write::CreateTable(def)).map(drop)
    }

    /// Drops a table and its rows.
    pub fn drop_table(&self, table: &str) -> Result<()> {
        self.execute(Write::DropTable {
            table: table.to_string(),
        })
        .map(drop)
    }

    /// Names of all tables, sorted.
    pub fn table_names(&self) -> Result<Vec<String>> {
        Ok(self.read()?.names())
    }

    /// The definition of `table`.
    pub fn table_def(&self, table: &str) -> Result<TableDef> {
        Ok((*self.read()?.table(table)?.def).clone())
    }

    /// A handle on `table` (checked to exist now; operations check again).
    pub fn table(&self, table: &str) -> Result<Table<'_>> {
        self.read()?.table(table)?;
        Ok(Table {
            db: self,
            name: table.to_string(),
        })
    }

    /// Inserts one row.
    pub fn insert(&self, table: &str, row: Row) -> Result<()> {
        self.insert_batch(table, vec![row])
    }

    /// Inserts rows, all or nothing: a duplicate key (in the table or within the batch) or
    /// any invalid row refuses the whole batch.
    pub fn insert_batch(&self, table: &str, rows: Vec<Row>) -> Result<()> {
        self.execute(Write::Insert {
            table: table.to_string(),
            rows,
        })
        .map(drop)
    }

    /// Replaces the row with key `key`; `Error::KeyNotFound` if there is none.
    pub fn update(&self, table: &str, key: i64, row: Row) -> Result<()> {
        self.execute(Write::Update {
            table: table.to_string(),
            key,
            row,
        })
        .map(drop)
    }

    /// Deletes the row with key `key`; returns whether there was one.
    pub fn delete(&self, table: &str, key: i64) -> Result<bool> {
        let ticket = self.execute(Write::Delete {
            table: table.to_string(),
            key,
        })?;
        Ok(ticket.lsn > 0)
    }

    /// The row with key `key`.
    pub fn get(&self, table: &str, key: i64) -> Result<Option<Row>> {
        self.read()?.table(table)?.get(key)
    }

    /// Calls `read` with the row with key `key`, read in place without copying it, and
    /// returns what `read` returns (`None` if there is no such row). The read lock is held
    /// while `read` runs, so writers wait: keep it short, and do not write to this database
    /// from inside it.
    pub fn get_with<T>(
        &self,
        table: &str,
        key: i64,
        read: impl FnOnce(RowRef<'_>) -> T,
    ) -> Result<Option<T>> {
        self.read()?.table(table)?.get_with(key, read)
    }

    /// The rows with keys `keys`, in that order: `None` for a key without a row. Faster per
    /// key than one [`Database::get`] each when the rows are not in cache, because the
    /// lookups' memory accesses overlap (see [`Database::get_many_with`]).
    pub fn get_many(&self, table: &str, keys: &[i64]) -> Result<Vec<Option<Row>>> {
        let mut rows = vec![None; keys.len()];
        self.get_many_with(table, keys, |i, row| rows[i] = Some(row.to_row()))?;
        Ok(rows)
    }

    /// Calls `read(i, row)` for each `keys[i]` that has a row, in the order of `keys`,
    /// reading rows in place; keys without a row are skipped. The lookups run as a pipeline
    /// (each key's index slot, then its row, requested a few keys before it is read), so
    /// their cache misses overlap: a batch of point reads (a lookup join, a list of ids)
    /// costs a fraction of the same gets one by one. One read lock covers the whole call, so the rows are one
    /// consistent state and writers wait until it returns: keep batches modest (thousands,
    /// not millions), and do not write to this database from inside `read`. An `Err` (a cold
    /// segment that cannot be read) can come after `read` has seen some of the keys.
    pub fn get_many_with(
        &self,
        table: &str,
        keys: &[i64],
        read: impl FnMut(usize, RowRef<'_>),
    ) -> Result<()> {
        self.read()?.table(table)?.get_many_with(keys, read)
    }

    /// The rows of `keys` as one Arrow batch of the columns named in `projection` (all
    /// columns if `None`), in the order of `keys`: keys without a row are skipped, a key
    /// given twice gives its row twice. The point path for a query engine (SQL's `k = c`
    /// and `k IN (...)`); one read lock covers the call, as for [`Database::get_many_with`].
    pub fn get_many_batch(
        &self,
        table: &str,
        keys: &[i64],
        projection: Option<&[&str]>,
    ) -> Result<crate::RecordBatch> {
        let state = self.read()?;
        let table = state.table(table)?;
        let columns = table.projection_columns(projection)?;
        table.get_many_batch(keys, &columns)
    }

    /// The Arrow schema of `table`'s rows as [`Database::scan_stream`] and
    /// [`Database::get_many_batch`] yield them: one field per column, in column order
    /// (Timestamp as microseconds, UTC).
    pub fn arrow_schema(&self, table: &str) -> Result<arrow_schema::SchemaRef> {
        Ok(crate::cold::segment::arrow_schema(
            &self.read()?.table(table)?.def,
        ))
    }

    /// The rows with keys in `range`, in key order.
    pub fn scan(&self, table: &str, range: impl RangeBounds<i64>) -> Result<Vec<Row>> {
        let state = self.read()?;
        let table = state.table(table)?;
        table.scan(range.start_bound().cloned(), range.end_bound().cloned())
    }

    /// The rows with keys in `range` as Arrow batches of the columns named in `projection`
    /// (all columns if `None`), hot and cold merged: the newest version of each key, deleted
    /// keys gone. All at once; [`Database::scan_stream`] is the same as a stream. Batches
    /// come segment by segment, each in key order, then the hot rows: in key order, except
    /// when the range holds every hot key and every projected column is a fixed-width
    /// non-key column (Int64, Float64, Timestamp, Bool), which are read column by column in
    /// storage order. Rows are not globally sorted.
    pub fn scan_batches(
        &self,
        table: &str,
        range: impl RangeBounds<i64>,
        projection: Option<&[&str]>,
    ) -> Result<Vec<crate::RecordBatch>> {
        self.scan_stream(table, range, projection)?.collect()
    }

    /// The analytic path: a stream of Arrow batches of the rows with keys in `range` (see
    /// [`Database::scan_batches`] for what it yields). The hot rows in the range are copied
    /// into Arrow batches under the read lock when the stream is made; the cold segments
    /// are read as it is consumed, from a snapshot of the segment list and their deletion
    /// vectors, holding no lock, so writers, flushes and compactions go on meanwhile and the
    /// stream still sees the state of the moment it was made. Only the projected columns
    /// are decoded, the key column only at the range's two edges.
    pub fn scan_stream(
        &self,
        table: &str,
        range: impl RangeBounds<i64>,
        projection: Option<&[&str]>,
    ) -> Result<TableScan> {
        self.scan_stream_pruned(table, range, projection, &[])
    }

    /// [`Database::scan_stream`], told that only rows whose values of some Int64 or
    /// Timestamp columns lie in `ranges` are wanted: cold row groups whose statistics
    /// (min, max, nulls) rule that out are not read (zone maps; `TableScan::row_groups_skipped`
    /// counts them). The stream may still yield rows outside the ranges (the hot tier and the
    /// row groups kept are not filtered), so the caller filters. An unknown column is
    /// `ColumnNotFound`, a column of another type `TypeMismatch`.
    pub fn scan_stream_pruned(
        &self,
        table: &str,
        range: impl RangeBounds<i64>,
        projection: Option<&[&str]>,
        ranges: &[ColumnRange],
    ) -> Result<TableScan> {
        let state = self.read()?;
        let table = state.table(table)?;
        let columns = table.projection_columns(projection)?;
        table.scan_stream(
            range.start_bound().cloned(),
            range.end_bound().cloned(),
            &columns,
            ranges,
        )
    }

    /// Reads every cold segment of `table` whole and checks it: its bytes against the
    /// checksums in its index, its keys against the manifest (ascending, range, count) and
    /// against the membership filter, its pages and index against the file. Open and reads
    /// check only what they touch; this scrubs everything. Returns the cold rows checked.
    pub fn verify(&self, table: &str) -> Result<u64> {
        let state = self.read()?;
        state.table(table)?.cold.verify(&state.table(table)?.def)
    }

    /// Calls `visit` with each row whose key is in `range`, in key order; hot rows are read
    /// in place without copying (the analytic path over the hot tier). Writers wait while
    /// it runs; do not write to this database from inside it.
    pub fn for_each_row(
        &self,
        table: &str,
        range: impl RangeBounds<i64>,
        visit: impl FnMut(RowRef<'_>),
    ) -> Result<()> {
        let state = self.read()?;
        let table = state.table(table)?;
        table.for_each_row(
            range.start_bound().cloned(),
            range.end_bound().cloned(),
            visit,
        )
    }

    /// Number of rows in `table`.
    pub fn row_count(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.len())
    }

    /// Memory the hot rows of `table` take in its row store, in bytes: pages (live rows,
    /// free space, each page's unused tail) and free lists; the index is apart
    /// ([`Database::index_bytes`]).
    // Test and benchmark hook (tests/api.rs): hidden, not part of the stable API.
    #[doc(hidden)]
    pub fn row_bytes(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.row_bytes())
    }

    /// Memory the cold tier of `table` keeps for its rows, in bytes: membership filters,
    /// key page directories, page checksums and deletion vectors (about 1.2 bytes a cold
    /// row; not the bounded cache of decoded key pages nor the Parquet footers).
    // Benchmark and test hook (bench_cold, bench_htap, tests/cold.rs): hidden, not part of
    // the stable API.
    #[doc(hidden)]
    pub fn cold_memory_bytes(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.cold.memory_bytes())
    }

    /// Rows of `table` in the hot tier (the rest are in cold segments).
    // Benchmark and test hook (bench_htap, tests/cold.rs): hidden, not part of the stable
    // API.
    #[doc(hidden)]
    pub fn hot_row_count(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.hot_len())
    }

    /// The last key a flush of `table` copied, while that flush is between its copy and its
    /// install (its segment being written); `None` otherwise. Writes to hot keys at or below
    /// it during that time are the ones the install must hide in the new segment, so the
    /// simulator aims writes there (`Table::flush_install`); not for applications.
    // Simulator hook (sim/src/flush_aim.rs aims writes at a flush in flight).
    #[doc(hidden)]
    pub fn flush_in_flight(&self, table: &str) -> Result<Option<i64>> {
        Ok(self.read()?.table(table)?.flush_in_flight())
    }

    /// Number of cold segments of `table`.
    // Test, simulator and benchmark hook (tests/cold*.rs, sql/tests, sim/src/liveness.rs,
    // bench_cold, bench_sql, bench_htap): hidden, not part of the stable API.
    #[doc(hidden)]
    pub fn cold_segment_count(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.cold.segments().count())
    }

    /// Heap bytes used by `table`'s primary index.
    // Benchmark hook (benchmark_table_vs_sqlite): hidden, not part of the stable API.
    #[doc(hidden)]
    pub fn index_bytes(&self, table: &str) -> Result<usize> {
        Ok(self.read()?.table(table)?.index_bytes())
    }

    /// Writes a checkpoint of the whole state, then removes the log and checkpoints it
    /// covers. Writers wait while the state is copied (for a large state, while it is
    /// written into the file's page cache), never for its fsync; readers do not wait. With
    /// `Options::hot_rows_max`, tables over the cap first flush to the cold tier: writers
    /// wait while the rows to flush are copied and while the written segment is swapped in,
    /// not while it is encoded, written and fsynced; readers wait only for the swap.
    pub fn checkpoint(&self) -> Result<u64> {
        self.shared.checkpoint()
    }

    /// One step of cold-tier compaction, the unit the compaction worker runs (see
    /// `Options::compaction_worker`): for the first table with work, merges the segments
    /// its size-tiered policy picks (all the small ones, or four of a size, or one mostly
    /// deleted; see `Options::compaction_base_rows`) into one segment without dead rows,
    /// writes a checkpoint whose manifest lists it, then removes the replaced files.
    /// Returns whether there was work.
    ///
    /// The merge runs with no lock held, from a snapshot of the inputs; readers and writers
    /// go on, and the write lock is taken only to swap the inputs for the output (rows an
    /// update or delete hid meanwhile are hidden in the output too). A crash before the
    /// checkpoint lands leaves the new file unlisted; after it, the old files; either is
    /// removed on open. Readers see the merged segment from the swap on.
    pub fn compact_step(&self) -> Result<bool> {
        self.shared.compact_step()
    }

    /// Checks every internal invariant (catalog, tables, indexes); `Err` describes the
    /// first violation. For tests and the simulator.
    // Test and simulator hook (sim/src/checker.rs, tests/, engine/tests/, omendb-stress,
    // omendb-crash-loop): hidden, not part of the stable API.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let state = self.read().map_err(|e| e.to_string())?;
        state.check_invariants()?;
        let Lsns { appended, durable } = self.shared.wal.lsns();
        if durable > appended {
            return Err(format!("lsn_durable {durable} > lsn_appended {appended}"));
        }
        Ok(())
    }

    /// Makes everything durable and stops the background worker. Dropping without `close`
    /// is safe too: it only stops the worker, and whatever was acknowledged under the
    /// durability mode survives.
    ///
    /// A clean close also records where the log ends (`LOG_END`, docs/FORMAT.md), so that
    /// the next open reports a log cut shorter at rest as `Error::Corruption` instead of
    /// opening without the lost writes.
    pub fn close(self) -> Result<()> {
        let synced = self.shared.wal.sync_all();
        self.shared.closed.store(true, Ordering::Release);
        self.stop_worker();
        synced?;
        // Writers that were in flight when the flag went up are in the buffer now.
        self.shared.wal.sync_all()?;
        let Lsns { appended, durable } = self.shared.wal.lsns();
        if durable == appended {
            let root = &self.shared.root;
            crate::wal::end::write(
                self.shared.env.fs.as_ref(),
                root,
                &root.join(WAL_DIR),
                durable,
            )?;
        }
        Ok(())
    }

    fn stop_worker(&self) {
        let maintenance =
            std::mem::take(&mut *self.maintenance.lock().unwrap_or_else(|p| p.into_inner()));
        for worker in maintenance {
            worker.stop();
        }
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(worker) = worker {
            worker.stop();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        // Hand the log buffer to the OS, so that a drop without `close` loses only what a
        // crash of the machine would. Best effort: a poisoned log or a failed write leaves
        // the buffer unwritten, which is what an acknowledged-but-unsynced write may suffer.
        if let Err(e) = self.shared.wal.write_buffered() {
            tracing::warn!(error = %e, "log buffer not written at drop");
        }
        self.stop_worker();
    }
}

/// A handle on one table of a database.
#[derive(Debug, Clone)]
pub struct Table<'db> {
    db: &'db Database,
    name: String,
}

impl Table<'_> {
    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// See [`Database::insert`].
    pub fn insert(&self, row: Row) -> Result<()> {
        self.db.insert(&self.name, row)
    }

    /// See [`Database::insert_batch`].
    pub fn insert_batch(&self, rows: Vec<Row>) -> Result<()> {
        self.db.insert_batch(&self.name, rows)
    }

    /// See [`Database::get`].
    pub fn get(&self, key: i64) -> Result<Option<Row>> {
        self.db.get(&self.name, key)
    }

    /// See [`Database::get_with`].
    pub fn get_with<T>(&self, key: i64, read: impl FnOnce(RowRef<'_>) -> T) -> Result<Option<T>> {
        self.db.get_with(&self.name, key, read)
    }

    /// See [`Database::get_many`].
    pub fn get_many(&self, keys: &[i64]) -> Result<Vec<Option<Row>>> {
        self.db.get_many(&self.name, keys)
    }

    /// See [`Database::get_many_with`].
    pub fn get_many_with(&self, keys: &[i64], read: impl FnMut(usize, RowRef<'_>)) -> Result<()> {
        self.db.get_many_with(&self.name, keys, read)
    }

    /// See [`Database::update`].
    pub fn update(&self, key: i64, row: Row) -> Result<()> {
        self.db.update(&self.name, key, row)
    }

    /// See [`Database::delete`].
    pub fn delete(&self, key: i64) -> Result<bool> {
        self.db.delete(&self.name, key)
    }

    /// See [`Database::scan`].
    pub fn scan(&self, range: impl RangeBounds<i64>) -> Result<Vec<Row>> {
        self.db.scan(&self.name, range)
    }

    /// See [`Database::row_count`].
    pub fn row_count(&self) -> Result<usize> {
        self.db.row_count(&self.name)
    }
}
