//! OmenDB: an embedded HTAP database.
//!
//! Tables with typed schemas and a persisted catalog; primary keys indexed by an ALEX learned
//! index; a checksummed write-ahead log with group commit and crash recovery. All I/O, time
//! and threads go through [`env`], so the same engine runs on a real disk or inside the
//! deterministic simulator.

pub mod env;
pub mod index;
