//! Recovery: what [`Database::open_with_env`](crate::Database::open_with_env) does before the
//! database takes its first write, from a directory in any state a crash can leave.
//!
//! The steps, in order (docs/ARCHITECTURE.md "Open and recovery" says why each is there):
//! 1. create `<db>/wal/` (and the root) if missing;
//! 2. take the directory lock ([`Fs::lock_dir`](crate::env::Fs::lock_dir));
//!    [`Error::Locked`] if another open holds it, and nothing is touched;
//! 3. sync the root and its parent, create `cold/`, sync the root again: a directory an
//!    earlier open created but never synced would otherwise vanish in a crash with
//!    everything written inside it;
//! 4. remove a leftover `checkpoint.tmp`;
//! 5. read the clean-close marker `LOG_END` (crate::wal::end), removing `LOG_END.tmp`;
//! 6. load the newest checkpoint, or start from an empty catalog (crate::checkpoint); a
//!    damaged newest checkpoint is corruption, never a reason to fall back to an older one;
//! 7. give every table's index the `Options`' ALEX limits;
//! 8. remove every file in `cold/` the loaded checkpoint does not list;
//! 9. replay the log after the checkpoint ([`Wal::recover`]): decode, check and apply each
//!    intact record as a live write would; a torn tail of the last segment ends the log;
//! 10. after a clean close, check that the log reached the LSN `LOG_END` recorded;
//! 11. if records were replayed, write a checkpoint of the recovered state at the last
//!     replayed LSN and remove older checkpoints;
//! 12. start a fresh log segment ([`Wal::start`]), removing every scanned segment;
//! 13. remove `LOG_END`.
//!
//! The caller then starts the background workers.
//!
//! Invariants:
//! - nothing on disk changes before the lock is held, and nothing that recovery needs is
//!   removed before a durable checkpoint covers it: a crash at any call of recovery leaves a
//!   directory that recovers to the same state (the simulator crashes inside recovery too);
//! - the recovered LSN is at least the checkpoint's, and every record at or below it was
//!   applied exactly once, in LSN order, through the same check and apply as a live write;
//! - a lost acknowledged write is reported, not hidden: damage outside a torn tail, and a
//!   log shorter than `LOG_END` says, are [`Error::Corruption`] raised before anything is
//!   written;
//! - every open starts a fresh log segment: durable log bytes are never rewritten in place,
//!   and records readable only from the page cache (after a failed fsync) are durable in the
//!   checkpoint of step 11 before anything new is acknowledged.

use crate::catalog::{Catalog, LoggedOp};
use crate::checkpoint;
use crate::cold;
use crate::db::OpenStats;
use crate::env::{DirLock, Env};
use crate::error::{Error, Result};
use crate::options::Options;
use crate::wal::{Wal, WalLimits, WAL_DIR};
use std::path::Path;

/// The database as recovery left it: the state, a fresh log, the directory lock held.
pub(crate) struct Recovered {
    pub(crate) catalog: Catalog,
    pub(crate) wal: Wal,
    pub(crate) dir_lock: DirLock,
    pub(crate) stats: OpenStats,
}

/// Recovers the database in `root` through `env` (the steps of the module doc).
pub(crate) fn recover(env: &Env, root: &Path, options: &Options) -> Result<Recovered> {
    let fs = env.fs.clone();
    fs.create_dir(&root.join(WAL_DIR))
        .map_err(|e| Error::io("create database directory", root, e))?;
    // One open database per directory: two logs appending to the same segments, or one
    // recovering while the other writes, would destroy acknowledged data.
    let dir_lock = fs
        .lock_dir(root)
        .map_err(|e| Error::io("lock database directory", root, e))?
        .ok_or_else(|| Error::Locked {
            path: root.to_path_buf(),
        })?;
    // Make the directories themselves durable, every time: a previous open may have
    // created them and failed before its sync, and a crash would then take them away
    // with everything later written inside.
    fs.sync_dir(root)
        .map_err(|e| Error::io("sync database directory", root, e))?;
    if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs.sync_dir(parent)
            .map_err(|e| Error::io("sync parent directory", parent, e))?;
    }
    let cold_dir = root.join(cold::COLD_DIR);
    fs.create_dir(&cold_dir)
        .map_err(|e| Error::io("create cold directory", &cold_dir, e))?;
    fs.sync_dir(root)
        .map_err(|e| Error::io("sync database directory", root, e))?;
    checkpoint::remove_temp(fs.as_ref(), root)?;
    // Where the log ended at the last clean close, if the last close was clean.
    let log_end = crate::wal::end::read(fs.as_ref(), root)?;
    let checkpoints = checkpoint::list(fs.as_ref(), root)?;
    let (checkpoint_lsn, mut catalog) = match checkpoints.last() {
        Some((lsn, path)) => (
            *lsn,
            checkpoint::load(fs.as_ref(), env.spawner.as_ref(), path, *lsn)?,
        ),
        None => (0, Catalog::new()),
    };
    let index_config = crate::index::alex::AlexConfig {
        data_node_slots_max: options.index_data_node_slots_max,
        inner_fanout_max: options.index_inner_fanout_max,
        ..crate::index::alex::AlexConfig::default()
    };
    catalog
        .set_index_config(index_config)
        .map_err(|reason| Error::corruption(root, 0, reason))?;
    checkpoint::remove_unlisted_segments(fs.as_ref(), &cold_dir, &catalog)?;
    let recovery_span = tracing::info_span!("recovery", checkpoint_lsn);
    let _recovering = recovery_span.enter();
    let wal_dir = root.join(WAL_DIR);
    let scan = Wal::recover(
        fs.as_ref(),
        &wal_dir,
        checkpoint_lsn,
        |_lsn, kind, payload| {
            let op = LoggedOp::decode(kind, payload)
                .map_err(|e| Error::corruption("<record payload>", e.offset as u64, e.reason))?;
            if let Some(checked) = catalog.check(op)? {
                catalog.apply(checked);
            }
            Ok(())
        },
    )?;
    let recovery = scan.stats.clone();
    if recovery.records_replayed > 0 {
        crate::probe!(OpenReplayedRecords);
    }
    // After a clean close the log must reach the LSN it recorded: a shorter log lost
    // acknowledged writes at rest. Reported before anything is written, so the old
    // checkpoint and segments are still there to look at.
    if let Some(end) = &log_end {
        crate::wal::end::check(
            end,
            recovery.lsn_last.max(checkpoint_lsn),
            recovery.truncated_at.as_ref(),
            fs.as_ref(),
            &wal_dir,
        )?;
    }
    if let Some((path, offset)) = &recovery.truncated_at {
        tracing::warn!(
            segment = %path.display(),
            offset,
            bytes = recovery.bytes_truncated,
            "recovery cut a torn log tail: writes after this point were not durable"
        );
    }
    tracing::info!(
        checkpoint_lsn,
        records_replayed = recovery.records_replayed,
        bytes_truncated = recovery.bytes_truncated,
        lsn_last = recovery.lsn_last,
        "recovered"
    );
    // Every open starts a fresh log on top of a durable checkpoint of the recovered
    // state. The records just replayed may be readable only from the OS cache (after a
    // failed fsync Linux keeps pages it will never write), so they are made durable in
    // a new file before the segments holding them are removed and anything new is
    // acknowledged.
    let lsn_recovered = recovery.lsn_last;
    if lsn_recovered > checkpoint_lsn {
        checkpoint::write(
            fs.as_ref(),
            env.spawner.as_ref(),
            root,
            lsn_recovered,
            &catalog,
        )?;
        checkpoint::remove_older(fs.as_ref(), root, lsn_recovered)?;
    }
    let wal = Wal::start(
        fs.clone(),
        env.clock.clone(),
        &wal_dir,
        options.sync,
        scan,
        lsn_recovered,
    )?
    .with_limits(WalLimits {
        segment_bytes_target: options.log_segment_bytes_target,
        buffer_bytes_flush: options.log_buffer_bytes_flush,
        buffer_bytes_max: options.log_buffer_bytes_max,
    });
    drop(_recovering);
    // The recovered state is durable in the new log: the marker describes a log that
    // is gone.
    if log_end.is_some() {
        crate::wal::end::remove(fs.as_ref(), root)?;
    }
    Ok(Recovered {
        catalog,
        wal,
        dir_lock,
        stats: OpenStats {
            checkpoint_lsn,
            clean_close_lsn: log_end.as_ref().map(|end| end.lsn),
            recovery,
        },
    })
}
