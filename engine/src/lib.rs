//! OmenDB: an embedded HTAP database.
//!
//! Tables with typed schemas and a persisted catalog; primary keys indexed by an ALEX learned
//! index; a checksummed write-ahead log with group commit and crash recovery. All I/O, time
//! and threads go through [`env`], so the same engine runs on a real disk or inside the
//! deterministic simulator.
//!
//! ```no_run
//! use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value};
//! # fn main() -> omendb::Result<()> {
//! let db = Database::open("/tmp/example-db", Options::with_sync(Durability::Always))?;
//! db.create_table(TableDef::new("users", vec![
//!     Column::new("id", DataType::Int64).primary_key(),
//!     Column::new("name", DataType::Utf8),
//! ])?)?;
//! db.insert("users", vec![Value::Int64(1), Value::Utf8("ada".into())])?;
//! assert_eq!(db.get("users", 1)?.map(|row| row[1].clone()), Some(Value::Utf8("ada".into())));
//! db.close()
//! # }
//! ```
//!
//! Layers, in the order data flows: [`db`] (the API and write pipeline) → `catalog` (tables
//! and the one path by which changes apply) → `table` (rows and the primary index) →
//! [`index`] (ALEX); durability in `wal` and `checkpoint`, recovery on open in
//! `recovery`; bytes in `codec`; limits in [`limits`]; the OS behind [`env`].

mod catalog;
mod checkpoint;
mod codec;
mod cold;
pub mod db;
pub mod env;
pub mod error;
mod hot_columns;
pub mod index;
pub mod limits;
mod mem;
pub mod options;
pub mod probe;
mod recovery;
mod rowstore;
pub mod schema;
mod shard_lock;
mod table;
// The log is internal. engine/tests/shuttle_commit.rs drives `Wal` itself under shuttle's
// scheduler, so with the `shuttle` feature (which only that test uses) the module is
// public, and hidden from the docs.
#[cfg(feature = "shuttle")]
#[doc(hidden)]
pub mod wal;
#[cfg(not(feature = "shuttle"))]
mod wal;

pub use arrow_array::RecordBatch;
pub use cold::prune::ColumnRange;
pub use db::{Database, OpenStats, Table, Ticket, Write};
pub use env::Env;
pub use error::{Error, Result};
/// The old name of [`Durability`]; see [`options::Sync`].
#[allow(deprecated)]
pub use options::Sync;
pub use options::{Durability, Options};
pub use rowstore::{RowRef, ValueRef};
pub use schema::{Column, DataType, Row, TableDef, Value};
pub use table::TableScan;
pub use wal::{Lsns, RecoveryStats};
