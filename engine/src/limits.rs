//! Every size limit of the engine, in one place. Each is enforced with a typed error
//! ([`crate::Error::LimitExceeded`], [`crate::Error::ValueTooLarge`],
//! [`crate::Error::InvalidName`], [`crate::Error::InvalidSchema`]) and tested at its edge.

/// Largest Utf8 or Binary value, in bytes (inclusive): 16 MiB.
pub const VALUE_BYTES_MAX: usize = 16 << 20;

/// Longest table or column name, in bytes (inclusive).
pub const NAME_BYTES_MAX: usize = 128;

/// Most columns in a table (inclusive).
pub const COLUMNS_MAX: usize = 1024;

/// Most tables in a database (inclusive).
pub const TABLES_MAX: usize = 4096;

/// Most rows in one `insert_batch` (inclusive).
pub const BATCH_ROWS_MAX: usize = 1 << 20;

/// Largest payload of one log record, in bytes (inclusive): 256 MiB. A batch whose
/// encoding is larger is refused before anything is written.
pub const RECORD_BYTES_MAX: usize = 256 << 20;

/// Largest row in the hot tier's packed form, in bytes (inclusive): a row must fit in one
/// log record, so this is [`RECORD_BYTES_MAX`]; packing is never larger than the log's
/// encoding, so only a row the log refuses can reach it.
pub const ROW_BYTES_MAX: usize = RECORD_BYTES_MAX;

/// A log segment is closed and a new one started once it holds this many bytes. A single
/// record larger than this still fits: it gets a segment to itself.
pub const WAL_SEGMENT_BYTES_TARGET: u64 = 64 << 20;

/// A writer that finds at least this many bytes in the log buffer, and no log writer busy,
/// writes the buffer to the file itself (a write, never an fsync): 1 MiB.
pub const LOG_BUFFER_BYTES_FLUSH: usize = 1 << 20;

/// Most bytes in the log buffer (one larger record still fits alone): 16 MiB. A writer
/// that would pass it while the log writer is busy waits for it (back-pressure).
pub const LOG_BUFFER_BYTES_MAX: usize = 16 << 20;

/// Capacity the log keeps for its next buffer after a write: 2 MiB. A buffer that grew
/// larger during a slow fsync is shrunk to this once written.
pub const LOG_BUFFER_BYTES_SPARE: usize = 2 << 20;

/// With `Durability::None`, how long the background worker lets records wait in the log buffer
/// before writing them to the OS.
pub const LOG_WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(10);

/// Default of [`crate::Options::checkpoint_copy_bytes_max`]: 64 MiB.
pub const CHECKPOINT_COPY_BYTES_MAX: usize = 64 << 20;

/// Default [`Options::compaction_base_rows`](crate::Options::compaction_base_rows): cold
/// segments up to about a million rows are cheap to rewrite, so they are merged freely;
/// larger ones only four of a size at a time, which bounds how often a row is rewritten to
/// about `log4(rows / 2^20)` times.
pub const COMPACTION_BASE_ROWS: u64 = 1 << 20;
