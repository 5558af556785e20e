//! omendb-sim: deterministic simulation testing of OmenDB.
//!
//! One u64 seed decides everything: the workload ([`workload`]), the schedule of client
//! operations, worker steps, crashes and restarts ([`runner`], configured by [`config`]), and the faults of the
//! simulated disk (`omendb-faults`). The engine runs single-threaded on a virtual clock
//! ([`env`](mod@env)); after every operation its results are compared with a reference model, and
//! after every recovery its state must be one the model allows ([`model`]); [`checker`]
//! holds every judgement and its name ([`Check`]), [`outcome`] what a run reports. A failing run
//! prints its seed, the failed check, the fault log and the last trace lines; replaying the
//! seed reproduces it bit for bit, and [`shrink`] looks for a shorter run that fails the same
//! way. [`seeds`] reads the seed files under `seeds/` that are replayed forever.
//!
//! Why not madsim: madsim simulates async (tokio-style) code and is switched on by a
//! `--cfg madsim` rustflag, its file system keeps unsynced data across a "crash", and
//! `std::thread::spawn` panics under it. The engine is synchronous and its crash semantics
//! are the point, so the simulator owns its scheduler, clock and disk (see
//! shared/ARCHITECTURE.md). Async applications that embed OmenDB can run it on madsim with
//! the same disk through `omendb-madsim` (madsim-env/).

pub mod at_rest;
pub mod checker;
pub mod config;
pub mod env;
pub mod flush_aim;
pub mod liveness;
pub mod metamorphic;
pub mod model;
pub mod oracle;
pub mod outcome;
pub mod runner;
pub mod seeds;
pub mod shrink;
pub mod sweep;
pub mod trace;
pub mod workload;

pub use checker::Check;
pub use config::{replay_command, FaultMask, RunConfig};
pub use outcome::{Failure, Outcome};
pub use runner::run;
