//! The one error type of the engine.
//!
//! Every variant carries what a user needs to act on it: the table, the column, the key, the
//! file and offset. Bad input is rejected before anything changes; corruption is a value,
//! never a panic and never silently skipped.

use crate::schema::DataType;
use std::io;
use std::path::PathBuf;

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No table of that name.
    #[error("table {table:?} does not exist")]
    TableNotFound {
        /// The name asked for.
        table: String,
    },
    /// A table of that name exists already.
    #[error("table {table:?} already exists")]
    TableExists {
        /// The name asked for.
        table: String,
    },
    /// No column of that name in the table.
    #[error("table {table:?} has no column {column:?}")]
    ColumnNotFound {
        /// The table.
        table: String,
        /// The name asked for.
        column: String,
    },
    /// A table definition is not acceptable.
    #[error("invalid schema for table {table:?}: {reason}")]
    InvalidSchema {
        /// The table being defined.
        table: String,
        /// What is wrong.
        reason: String,
    },
    /// A table or column name is empty, too long or has forbidden characters.
    #[error("invalid {what} name {name:?}: {reason}")]
    InvalidName {
        /// "table" or "column".
        what: &'static str,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A row has the wrong number of values.
    #[error("table {table:?} has {expected} columns, the row has {found} values")]
    RowArity {
        /// The table.
        table: String,
        /// Columns of the table.
        expected: usize,
        /// Values in the row.
        found: usize,
    },
    /// A value does not have its column's type.
    #[error("column {table:?}.{column:?} has type {expected:?}, got a {found} value")]
    TypeMismatch {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The column's type.
        expected: DataType,
        /// The type of the value given.
        found: &'static str,
    },
    /// NULL in a column that is not nullable (the primary key never is).
    #[error("column {table:?}.{column:?} is not nullable")]
    NullNotAllowed {
        /// The table.
        table: String,
        /// The column.
        column: String,
    },
    /// A value is larger than [`crate::limits::VALUE_BYTES_MAX`].
    #[error("value of {table:?}.{column:?} is {size_bytes} bytes; the limit is {limit_bytes}")]
    ValueTooLarge {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// Size of the value.
        size_bytes: usize,
        /// The limit.
        limit_bytes: usize,
    },
    /// The primary key exists already (in the table, or earlier in the same batch).
    #[error("duplicate primary key {key} in table {table:?}")]
    DuplicateKey {
        /// The table.
        table: String,
        /// The key.
        key: i64,
    },
    /// No row with that primary key.
    #[error("no row with primary key {key} in table {table:?}")]
    KeyNotFound {
        /// The table.
        table: String,
        /// The key.
        key: i64,
    },
    /// An update tried to change the primary key of a row.
    #[error("update of key {key} in table {table:?} would change the primary key to {new_key}")]
    KeyChanged {
        /// The table.
        table: String,
        /// The key of the row updated.
        key: i64,
        /// The key in the new row.
        new_key: i64,
    },
    /// A batch with no rows.
    #[error("empty batch for table {table:?}")]
    EmptyBatch {
        /// The table.
        table: String,
    },
    /// A batch or record past a documented limit.
    #[error("{what} is {size} but the limit is {limit}")]
    LimitExceeded {
        /// What was too large, e.g. "batch rows" or "log record bytes".
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// An I/O operation failed (including disk full: see [`Error::is_storage_full`]).
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// The operation, e.g. "wal append".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// On-disk bytes are not what was written.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The file.
        path: PathBuf,
        /// Byte offset of the damaged structure.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The log could not be made durable (a failed fsync or a failed truncate after a failed
    /// write). Writes are refused until the database is reopened, which recovers from what
    /// is really on disk.
    #[error("the write-ahead log is unusable until the database is reopened: {reason}")]
    Poisoned {
        /// The failure that poisoned the log.
        reason: String,
    },
    /// A ticket that this database never issued (e.g. one kept from before a reopen).
    #[error("ticket for LSN {lsn} was not issued by this log, which has written up to LSN {lsn_written}")]
    InvalidTicket {
        /// The ticket's LSN.
        lsn: u64,
        /// The last LSN this log wrote.
        lsn_written: u64,
    },
    /// The database was closed.
    #[error("the database is closed")]
    Closed,

    /// Another open [`crate::Database`], in this process or another, holds the directory.
    #[error("database directory {path} is in use by another open database")]
    Locked {
        /// The database directory.
        path: std::path::PathBuf,
    },
}

impl Error {
    /// Whether this is an I/O error caused by a full disk.
    pub fn is_storage_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::StorageFull)
    }

    /// Whether this error reports damaged on-disk data.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}
