//! Options of a database: durability mode ([`Durability`]), checkpoint policy.

use std::time::Duration;

/// When a write is durable, relative to when it is acknowledged (returns `Ok`).
///
/// Every write goes first to the log buffer in memory (applied and visible at once); the log
/// writer hands the buffer to the OS with one write and, when the mode says, one fsync.
/// Dropping or closing the `Database` writes the buffer out, so only a crash (of the process
/// or the machine) can lose what the mode allows it to lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledged means fsynced: an acknowledged write survives any crash. Concurrent
    /// committers share one write and one fsync (group commit).
    Always,
    /// Acknowledged means in the log buffer; a background worker writes and fsyncs whatever
    /// has waited `max_delay`. A crash of the machine or of the process may lose the writes
    /// acknowledged in the last `max_delay` (plus one write and fsync's duration); nothing
    /// earlier.
    Batch {
        /// The loss window.
        max_delay: Duration,
    },
    /// Acknowledged means in the log buffer; the worker writes it to the OS within about
    /// [`LOG_WRITE_DELAY`](crate::limits::LOG_WRITE_DELAY) and fsyncs only at segment rolls,
    /// checkpoints and close. A crash of the process may lose that last delay's writes; a
    /// crash of the machine, any write since the last checkpoint or close.
    None,
}

/// The old name of [`Durability`], which shadowed `std::marker::Sync` wherever it was
/// imported. Kept for one release.
#[deprecated(note = "renamed to Durability")]
pub type Sync = Durability;

/// How a database is opened.
#[derive(Debug, Clone)]
pub struct Options {
    /// The durability mode of every write.
    pub sync: Durability,
    /// Start the log writer worker (needed for `Durability::Batch`, and for `Durability::None` to write
    /// the buffer out within its delay; with `Durability::Always` writers sync themselves, so the
    /// worker only matters to callers that use `submit`). Without it, a full buffer is
    /// written by the writer that finds it full, and the rest at checkpoint, close or drop.
    pub background_worker: bool,
    /// The cold tier: at each checkpoint, a table whose hot tier holds more rows than this
    /// moves its lowest-key rows to a new Parquet segment, keeping half this many hot.
    /// `None` (the default): everything stays hot.
    pub hot_rows_max: Option<usize>,
    /// Start the background flush worker (with `hot_rows_max`): whenever a table's hot tier
    /// holds more than `hot_rows_max` rows, it moves the lowest-key rows to a new segment,
    /// keeping half the cap hot, then writes a checkpoint, so that callers need not
    /// checkpoint to keep the hot tier bounded. Writers wait while the rows are copied and
    /// while the segment is swapped in, not while it is encoded, written and fsynced. The
    /// hot tier can pass the cap by what writers insert during one flush; nothing throttles
    /// them. Off by default.
    pub flush_worker: bool,
    /// Start the background compaction worker, which runs `Database::compact_step` until
    /// there is nothing to compact, then waits a second. Off by default.
    pub compaction_worker: bool,
    /// Compaction's size tiers (see `Database::compact_step`): segments of at most this many
    /// visible rows are merged whenever there are two; above it, four segments of one tier
    /// (each tier four times the size of the one below) are merged into one. Default
    /// [`COMPACTION_BASE_ROWS`](crate::limits::COMPACTION_BASE_ROWS).
    pub compaction_base_rows: u64,
    /// A checkpoint taken while the database runs captures an image of the state under the
    /// read lock (index walks; the row pages shared copy on write). When the hot rows take at
    /// most this many bytes the image is encoded into memory before the lock is released,
    /// which for a small state costs less than the page copies sharing makes writers pay;
    /// above it, the image is encoded straight into the file after the lock is released.
    /// Writers never wait for an fsync either way. Default
    /// [`CHECKPOINT_COPY_BYTES_MAX`](crate::limits::CHECKPOINT_COPY_BYTES_MAX).
    pub checkpoint_copy_bytes_max: usize,
    /// The log starts a new segment once the current one would pass this many bytes.
    /// Default [`WAL_SEGMENT_BYTES_TARGET`](crate::limits::WAL_SEGMENT_BYTES_TARGET); the
    /// simulator draws small ones so that segment rolls (and a roll right after an error)
    /// happen in its short runs.
    pub log_segment_bytes_target: u64,
    /// A writer that finds this many bytes in the log buffer writes them out itself.
    /// Default [`LOG_BUFFER_BYTES_FLUSH`](crate::limits::LOG_BUFFER_BYTES_FLUSH).
    pub log_buffer_bytes_flush: usize,
    /// Most bytes in the log buffer (back-pressure past it); raised to
    /// `log_buffer_bytes_flush` if below. Default
    /// [`LOG_BUFFER_BYTES_MAX`](crate::limits::LOG_BUFFER_BYTES_MAX).
    pub log_buffer_bytes_max: usize,
    /// The primary index's limit on a data node's slots (ALEX node capacity: a full node
    /// this large splits instead of expanding). Default 2^20, clamped to at least 64; the
    /// simulator draws small ones so that splits and expansions happen on small tables.
    pub index_data_node_slots_max: usize,
    /// The primary index's limit on an inner node's children (a power of two; others are
    /// rounded down). Default 2^20.
    pub index_inner_fanout_max: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: Durability::Always,
            background_worker: true,
            hot_rows_max: None,
            flush_worker: false,
            compaction_worker: false,
            compaction_base_rows: crate::limits::COMPACTION_BASE_ROWS,
            checkpoint_copy_bytes_max: crate::limits::CHECKPOINT_COPY_BYTES_MAX,
            log_segment_bytes_target: crate::limits::WAL_SEGMENT_BYTES_TARGET,
            log_buffer_bytes_flush: crate::limits::LOG_BUFFER_BYTES_FLUSH,
            log_buffer_bytes_max: crate::limits::LOG_BUFFER_BYTES_MAX,
            index_data_node_slots_max: crate::index::alex::AlexConfig::default()
                .data_node_slots_max,
            index_inner_fanout_max: crate::index::alex::AlexConfig::default().inner_fanout_max,
        }
    }
}

impl Options {
    /// Default options with durability `sync`.
    pub fn with_sync(sync: Durability) -> Options {
        Options {
            sync,
            ..Options::default()
        }
    }
}
