//! The simulated disk and its fault model, behind the `omendb-env` traits. It depends on
//! `omendb-env` (std and libc), not on the database engine: any program whose I/O goes through
//! those traits can run on it.
//!
//! [`SimFs`] is an in-memory, deterministic file system that implements
//! [`omendb_env::Fs`]. It keeps, for every file, the bytes the process sees and the bytes
//! that are durable; for every directory, the entries the process sees and the durable
//! ones. A seeded [`FaultPlan`] decides which faults it injects (I/O errors, torn and
//! misdirected writes, disk full, bit flips, latent sector errors) and at which I/O call
//! it freezes; [`SimFs::restart`] then applies crash semantics. Every fault lands in a
//! log ([`SimFs::fault_log`]) so a failing run can show what happened to the disk.
//! [`FaultyFs`] injects the same errors (not crashes) around any other `Fs`, such as the
//! real disk.
//!
//! Modules, in the order data flows:
//! - `plan`: the fault plan and the crash model, drawn from one seed;
//! - `inject`: the fault decisions `SimFs` and `FaultyFs` share (the plan's stream, call
//!   and space counts, torn and full-disk prefixes, recording a fault);
//! - `disk`: [`SimFs`], its handles, call counting, fault injection;
//! - `namespace`: directories, pending directory operations and what a crash keeps of them;
//! - `file_data`: one file's current bytes, durable bytes and pending writes;
//! - `log`: fault records and counters;
//! - `hash`: the stable hash behind `SimFs::disk_hash`;
//! - `error`: the [`Crashed`] and [`InjectedFault`] errors and how to recognise them;
//! - `faulty_os`: [`FaultyFs`].
//!
//! docs/TESTING.md ("The fault model") says what the engine promises under each fault.

mod disk;
mod error;
mod faulty_os;
mod file_data;
mod hash;
mod inject;
mod log;
mod namespace;
mod plan;

pub use disk::SimFs;
pub use error::{is_crash, is_crash_error, is_injected, Crashed, InjectedFault};
pub use faulty_os::FaultyFs;
pub use file_data::FILE_BYTES_MAX;
pub use log::{FaultKind, FaultRecord, Stats, FAULT_LOG_RECORDS_MAX};
pub use namespace::PATH_DEPTH_MAX;
pub use plan::{CrashModel, FaultPlan, SECTOR_BYTES_MAX, SECTOR_BYTES_MIN};

/// Probe: a write to an unreadable (latent) sector healed it (the drive remapped it).
pub const PROBE_LATENT_HEALED_BY_WRITE: &str = "disk.latent_healed_by_write";
/// Probe: a crash left a file's size at a byte inside an extending write.
pub const PROBE_LEN_MID_WRITE: &str = "disk.len_mid_write";

/// The simulated disk's coverage probes ([`omendb_env::probe`]), for a sweep to require.
pub const PROBES: [&str; 2] = [PROBE_LATENT_HEALED_BY_WRITE, PROBE_LEN_MID_WRITE];
