//! The simulated machine: the simulated disk from `omendb-faults` with the generic core's
//! virtual clock and stepped spawner ([`omendb_simcore::env`], re-exported here), which
//! together make an [`Env`] in which nothing depends on wall time or threads.

use omendb::Env;
use omendb_faults::SimFs;
pub use omendb_simcore::env::{SimClock, SimControl, SimSpawner};
use std::sync::Arc;

/// The whole simulated machine: disk, clock, workers.
#[derive(Clone)]
pub struct SimMachine {
    /// The disk (kept to crash, restart and inspect it).
    pub disk: SimFs,
    /// The clock.
    pub clock: Arc<SimClock>,
    /// The spawner.
    pub spawner: Arc<SimSpawner>,
}

impl SimMachine {
    /// A machine on `disk`.
    pub fn new(disk: SimFs) -> SimMachine {
        SimMachine {
            disk,
            clock: Arc::new(SimClock::default()),
            spawner: Arc::new(SimSpawner::default()),
        }
    }

    /// The engine's view of this machine.
    pub fn env(&self) -> Env {
        Env {
            fs: Arc::new(self.disk.clone()),
            clock: self.clock.clone(),
            spawner: self.spawner.clone(),
        }
    }
}
