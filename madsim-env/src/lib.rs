//! OmenDB's [`Env`](omendb_env::Env) on [madsim](https://github.com/madsim-rs/madsim): an
//! async application simulated under madsim gets a simulated disk per node ([`SimFs`], with
//! its fault plan and power-loss semantics), and the `Env` clock and background workers run
//! on madsim's virtual time and tasks. Anything written on the `omendb-env` traits (OmenDB
//! itself, or another program) can run inside a madsim node this way.
//!
//! Built only with `RUSTFLAGS="--cfg madsim"` (madsim's simulation mode); without it the
//! crate is empty. The pieces, in the order a node uses them:
//! - [`MadsimClock`]: [`Clock`](omendb_env::Clock) over madsim's virtual time.
//! - [`MadsimSpawner`]: [`Spawn`](omendb_env::Spawn) whose workers are madsim tasks on the
//!   node that spawned them: each loops over [`Worker::step`](omendb_env::Worker::step),
//!   yields after `Busy`, sleeps `Idle(d)` in virtual time unless
//!   [`WorkerControl::wake`](omendb_env::WorkerControl::wake) comes first, and ends on
//!   `Done` or `stop`. A killed node's workers die with its other tasks.
//! - [`MadsimEnv`]: the three together with the node's disk, and
//!   [`MadsimEnv::wait_until`], the async way to wait for durability.
//! - [`power_loss`] and [`power_on`]: madsim's node kill and restart with the disk's crash
//!   semantics (freeze the disk, kill the node, let its tasks drop; restart the disk, so
//!   that only what was synced plus a seeded choice of the rest survives; boot the node).
//!
//! **One thread, no blocking.** madsim runs every node's tasks on one thread, so nothing
//! may block: a blocked task would block the whole simulation. The `Env` traits are
//! synchronous, and that is fine here because `SimFs` never blocks, and no task can observe
//! another in the middle of a synchronous call (there is no await inside one). What does not
//! work is a wait for another task's progress inside a synchronous call. In OmenDB:
//! - `Database::execute`, `insert` and the other blocking writes under
//!   `Durability::Always` work: the caller finds no log writer busy (one can only be busy
//!   inside a synchronous call) and becomes the writer, fsyncing inline. Each such write
//!   pays its own fsync: no group commit.
//! - `Database::submit` plus [`MadsimEnv::wait_until`] on `Database::is_acknowledged`
//!   gives group commit: the commit worker's task syncs for every writer that submitted
//!   since its last step, and the writers await it.
//! - [`Clock::sleep`](omendb_env::Clock::sleep) cannot yield from a synchronous call, so it
//!   advances virtual time at once (as the OmenDB simulator's clock does). The engine calls
//!   it nowhere today.
//! - `Spawn::join` keeps its default (one closure after the other).
//!
//! What madsim gives and what the disk adds: docs/TESTING.md ("Async applications on
//! madsim").

#![cfg(madsim)]

mod clock;
mod node;
mod spawn;

pub use clock::MadsimClock;
pub use node::{power_loss, power_on, MadsimEnv, POWER_LOSS_SETTLE};
pub use spawn::{MadsimSpawner, WAIT_RECHECK_INTERVAL};

/// `SimFs`, the simulated disk, re-exported so that an application needs one crate.
pub use omendb_faults::{FaultPlan, SimFs};
