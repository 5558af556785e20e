//! SQL over OmenDB through DataFusion.
//!
//! [`SqlSession`] wraps a [`omendb::Database`] and a DataFusion `SessionContext` whose
//! default schema is the engine's catalog: every table the engine has is a table of the
//! session, looked up when a query names it, so DDL run through the engine API and through
//! SQL see the same tables.
//!
//! **Reads.** Each table is an [`OmenTable`] (a DataFusion `TableProvider`). Filters on the
//! primary key are taken by the table exactly and pick the access path ([`AccessPath`]):
//! `k = c` and `k IN (...)` run one batched point read ([`omendb::Database::get_many_batch`]),
//! ranges (`<`, `<=`, `>`, `>=`, `BETWEEN`, and their conjunctions) a key-range scan, and
//! anything else the full columnar scan. Range and full scans stream from
//! [`omendb::Database::scan_stream`] on a blocking thread (a bounded channel of batches, so
//! nothing collects the table); only the projected columns are decoded, and a pushed
//! `LIMIT` stops the scan. `EXPLAIN` shows the path in the `OmenScanExec` line. Filters on
//! other columns are evaluated by DataFusion above the scan.
//!
//! **Writes.** `CREATE TABLE` (one `PRIMARY KEY` column of `BIGINT` or `TIMESTAMP`) and
//! `DROP TABLE` go to the engine's catalog. `INSERT INTO ... VALUES / SELECT` collects the
//! statement's rows and inserts them with one `insert_batch`: logged, all or nothing, with
//! the engine's typed errors (a duplicate key refuses the whole statement). `DELETE` and
//! `UPDATE` find the matching keys with the same scan paths and, batch by batch as the
//! scan yields them, submit one engine write per row, waiting once for the last: under
//! `Durability::Batch` or a crash the statement's writes survive as a prefix, in the order the
//! scan yielded them; they are not one atomic unit. `UPDATE` cannot
//! change the primary key.
//!
//! **Types.** `BIGINT` (and the narrower integers, widened) is Int64, `DOUBLE` (and
//! `REAL`) Float64, `VARCHAR`/`TEXT` Utf8, `BYTEA` Binary, `BOOLEAN` Bool, `TIMESTAMP`
//! Timestamp (microseconds, UTC). Other SQL types are refused when the table is created,
//! naming the column ([`types`]).

pub mod error;
mod keys;
mod provider;
mod scan;
mod session;
pub mod types;
mod write;

pub use error::{Error, Result};
pub use keys::KeySet;
pub use provider::OmenTable;
pub use scan::{AccessPath, OmenScanExec};
pub use session::SqlSession;

pub use datafusion;
