//! A simulated node's environment ([`MadsimEnv`]) and its power ([`power_loss`],
//! [`power_on`]).
//!
//! The disk outlives the node: the test keeps a clone of the node's [`SimFs`] and moves
//! another into the node's init closure, which madsim calls again at every restart, so a
//! rebooted node finds what the crash left of its disk.
//!
//! **Power loss.** madsim's `Handle::kill` drops the node's tasks, but a dropped task may
//! still run code on its way out (OmenDB's `Database` writes its log buffer out when
//! dropped), and nothing in madsim knows about a disk. So [`power_loss`] freezes the disk
//! first (every later call fails with `omendb_faults::Crashed`, as on a machine whose power
//! is gone), then kills the node, then lets the runtime drop the killed tasks. [`power_on`]
//! restarts the disk (only what was synced survives, plus a seeded choice of the rest, torn
//! at sector granularity: `omendb_faults::CrashModel`; every old handle is dead) and then
//! restarts the node, whose init task opens the disk anew.
//!
//! Why two functions and not `Handle::kill` alone: madsim's plugin hook
//! (`plugin::Simulator::reset_node`) is told of kills but not of restarts, and a plugin is
//! registered only on a `Runtime` the test builds itself, not under `#[madsim::test]` or
//! `Runtime::check_determinism`, which build their own. A bare `Handle::kill` leaves the
//! disk running, so a task dropped on its way out could still write.

use crate::clock::MadsimClock;
use crate::spawn::MadsimSpawner;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use omendb_env::Env;
use omendb_faults::SimFs;
use std::io;
use std::sync::Arc;
use std::time::Duration;

/// How long [`power_loss`] leaves the runtime to drop the killed node's tasks (madsim runs
/// every ready task before time moves, so any positive wait does; its shortest sleep is
/// 1 ms).
pub const POWER_LOSS_SETTLE: Duration = Duration::from_millis(1);

/// The environment of one simulated node: its disk, madsim's clock, a spawner of madsim
/// tasks. Make it in the node's task (at every boot): the spawner's workers run on the node
/// that makes them.
#[derive(Debug, Clone)]
pub struct MadsimEnv {
    disk: SimFs,
    clock: Arc<MadsimClock>,
    spawner: Arc<MadsimSpawner>,
}

impl MadsimEnv {
    /// The environment of a node whose disk is `disk`; an error outside a madsim runtime.
    pub fn new(disk: SimFs) -> io::Result<MadsimEnv> {
        Ok(MadsimEnv {
            disk,
            clock: Arc::new(MadsimClock::current()?),
            spawner: Arc::new(MadsimSpawner::new()),
        })
    }

    /// The `Env` to hand to the program (`omendb::Database::open_with_env`).
    pub fn env(&self) -> Env {
        Env {
            fs: Arc::new(self.disk.clone()),
            clock: self.clock.clone(),
            spawner: self.spawner.clone(),
        }
    }

    /// The node's disk.
    pub fn disk(&self) -> &SimFs {
        &self.disk
    }

    /// The spawner (to wake workers, count steps).
    pub fn spawner(&self) -> &MadsimSpawner {
        &self.spawner
    }

    /// See [`MadsimSpawner::wait_until`]. With OmenDB: after `db.submit(write)`,
    /// `env.wait_until(|| db.is_acknowledged(ticket)).await` is the async `db.wait(ticket)`
    /// (it needs the commit worker, `Options::background_worker`, which is the default).
    pub async fn wait_until<E>(&self, done: impl FnMut() -> Result<bool, E>) -> Result<(), E> {
        self.spawner.wait_until(done).await
    }
}

/// Cuts the power of `node`, whose disk is `disk`: freezes the disk, kills the node, and
/// waits [`POWER_LOSS_SETTLE`] so that the runtime drops the node's tasks while the disk
/// is frozen. Call it from a task of another node (the supervisor).
pub async fn power_loss(handle: &Handle, node: NodeId, disk: &SimFs) {
    disk.freeze();
    handle.kill(node);
    madsim::time::sleep(POWER_LOSS_SETTLE).await;
}

/// Brings the power of `node` back: restarts the disk (crash semantics, then calls go
/// through again) and then the node (madsim runs its init closure again).
pub fn power_on(handle: &Handle, node: NodeId, disk: &SimFs) {
    disk.restart();
    handle.restart(node);
}
