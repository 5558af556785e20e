//! [`MadsimClock`]: the `Env` clock over madsim's virtual time.
//!
//! Monotonic time is the time since the runtime started (the same for every node, and it
//! keeps running across a node's restart, as a machine's clock would not; nothing in OmenDB
//! keeps a monotonic reading across a restart). Wall time is madsim's simulated system time,
//! which starts at a seeded instant in 2022.

use madsim::time::TimeHandle;
use omendb_env::Clock;
use std::io;
use std::time::{Duration, SystemTime};

/// [`Clock`] on madsim's virtual time. Made inside a madsim runtime; usable from any of its
/// tasks.
#[derive(Clone)]
pub struct MadsimClock {
    time: TimeHandle,
}

impl std::fmt::Debug for MadsimClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MadsimClock")
            .field("elapsed", &self.time.elapsed())
            .finish()
    }
}

impl MadsimClock {
    /// The clock of the madsim runtime this is called in; an error outside one.
    pub fn current() -> io::Result<MadsimClock> {
        TimeHandle::try_current()
            .map(|time| MadsimClock { time })
            .ok_or_else(|| io::Error::other("MadsimClock: not inside a madsim runtime"))
    }
}

impl Clock for MadsimClock {
    fn now_monotonic(&self) -> Duration {
        self.time.elapsed()
    }

    fn now_wall_micros(&self) -> i64 {
        let since_epoch = self
            .time
            .now_time()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
    }

    /// A synchronous call cannot yield to madsim's scheduler, so this advances virtual time
    /// by `duration` at once (timers due meanwhile fire when the caller next yields).
    fn sleep(&self, duration: Duration) {
        self.time.advance(duration);
    }
}
