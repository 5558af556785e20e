//! Options of a database: durability mode, checkpoint policy.

use std::time::Duration;

/// When a write is durable, relative to when it is acknowledged (returns `Ok`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Acknowledged means fsynced: an acknowledged write survives any crash. Concurrent
    /// committers share one fsync (group commit).
    Always,
    /// Acknowledged means written to the OS; a background worker fsyncs whatever has waited
    /// `max_delay`. A crash of the machine may lose the writes acknowledged in the last
    /// `max_delay` (plus one fsync's duration); a crash of the process alone loses nothing.
    Batch {
        /// The loss window.
        max_delay: Duration,
    },
    /// Acknowledged means written to the OS; fsync only on checkpoint and close. A machine
    /// crash may lose any write since the last checkpoint or close.
    None,
}

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// The durability mode of every write.
    pub sync: Sync,
    /// Start the group-commit worker (needed for `Sync::Batch`; with `Sync::Always` writers
    /// sync themselves, so the worker only matters to callers that use `submit`).
    pub background_worker: bool,
    /// The cold tier: at each checkpoint, a table whose hot tier holds more rows than this
    /// moves its lowest-key rows to a new Parquet segment, keeping half this many hot.
    /// `None` (the default): everything stays hot.
    pub hot_rows_max: Option<usize>,
    /// Start the background compaction worker, which runs `Database::compact_step` until
    /// there is nothing to compact, then waits a second. Off by default: a step rewrites all
    /// of a table's cold rows.
    pub compaction_worker: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: Sync::Always,
            background_worker: true,
            hot_rows_max: None,
            compaction_worker: false,
        }
    }
}

impl Options {
    /// Default options with durability `sync`.
    pub fn with_sync(sync: Sync) -> Options {
        Options {
            sync,
            ..Options::default()
        }
    }
}
