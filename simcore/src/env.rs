//! The simulated environment of any target: a virtual clock ([`SimClock`]) and a spawner
//! whose workers the target's scheduler steps itself ([`SimSpawner`]). Both implement the
//! `omendb-env` traits, so anything written against `Clock` and `Spawn` (OmenDB's engine, or
//! a third target) runs on them with no wall time and no threads: time moves only when the
//! scheduler advances it or a worker sleeps, and a worker runs only inside
//! [`SimSpawner::step_all`], in spawn order.

use omendb_env::{Clock, Spawn, StepResult, Worker, WorkerControl};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The wall-clock time the virtual clock starts at: 2026-01-01T00:00:00Z, in microseconds.
const WALL_EPOCH_MICROS: i64 = 1_767_225_600_000_000;

/// Virtual time: advances only when the scheduler (or a `sleep`) says so.
#[derive(Debug, Default)]
pub struct SimClock {
    nanos: AtomicU64,
}

impl SimClock {
    /// Moves time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(by, Ordering::Relaxed);
    }

    /// Virtual time since the start of the run.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }
}

impl Clock for SimClock {
    fn now_monotonic(&self) -> Duration {
        self.elapsed()
    }

    fn now_wall_micros(&self) -> i64 {
        WALL_EPOCH_MICROS + (self.nanos.load(Ordering::Relaxed) / 1000) as i64
    }

    fn sleep(&self, duration: Duration) {
        self.advance(duration);
    }
}

/// The control of one worker on a [`SimSpawner`]: `stop` takes it off the schedule (it is
/// dropped at the next [`SimSpawner::step_all`] or [`SimSpawner::reap`]); `wake` does
/// nothing, as every live worker is stepped at every turn anyway.
#[derive(Debug, Default)]
pub struct SimControl {
    stopped: AtomicBool,
}

impl WorkerControl for SimControl {
    fn wake(&self) {}

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
    }
}

struct Slot {
    worker: Box<dyn Worker>,
    control: Arc<SimControl>,
}

/// Holds spawned workers; [`SimSpawner::step_all`] runs one step of each, in spawn order.
#[derive(Default)]
pub struct SimSpawner {
    slots: Mutex<Vec<Slot>>,
}

/// Most steps one worker gets per `step_all` while it reports `Busy`.
pub const STEPS_PER_TURN_MAX: usize = 4;

impl SimSpawner {
    /// Steps every live worker until it is idle (at most [`STEPS_PER_TURN_MAX`] times);
    /// returns how many steps ran.
    pub fn step_all(&self) -> usize {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|slot| !slot.control.stopped.load(Ordering::Acquire));
        let mut steps = 0;
        for slot in slots.iter_mut() {
            for _ in 0..STEPS_PER_TURN_MAX {
                if slot.control.stopped.load(Ordering::Acquire) {
                    break;
                }
                steps += 1;
                match slot.worker.step() {
                    StepResult::Busy => continue,
                    StepResult::Idle(_) => break,
                    StepResult::Done => {
                        slot.control.stop();
                        break;
                    }
                }
            }
        }
        steps
    }

    /// Drops the workers that were stopped, as their threads would end; returns how many.
    /// `step_all` drops them too, at its next turn: until then they keep what they hold
    /// (the log's file handles), which a process that has exited would not.
    pub fn reap(&self) -> usize {
        let stopped: Vec<Slot> = {
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, live) = std::mem::take(&mut *slots)
                .into_iter()
                .partition(|slot| slot.control.stopped.load(Ordering::Acquire));
            *slots = live;
            stopped
        };
        // Dropped outside the lock: a worker's drop may touch the disk.
        stopped.len()
    }

    /// Live workers.
    pub fn live(&self) -> usize {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots
            .iter()
            .filter(|s| !s.control.stopped.load(Ordering::Acquire))
            .count()
    }
}

impl Spawn for SimSpawner {
    fn spawn(&self, worker: Box<dyn Worker>) -> io::Result<Arc<dyn WorkerControl>> {
        let control = Arc::new(SimControl::default());
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Slot {
                worker,
                control: control.clone(),
            });
        Ok(control)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy twice, then done; counts its steps.
    struct Countdown {
        busy_left: u32,
        steps: Arc<AtomicU64>,
    }

    impl Worker for Countdown {
        fn name(&self) -> &str {
            "countdown"
        }

        fn step(&mut self) -> StepResult {
            self.steps.fetch_add(1, Ordering::Relaxed);
            if self.busy_left == 0 {
                return StepResult::Done;
            }
            self.busy_left -= 1;
            StepResult::Busy
        }
    }

    #[test]
    fn the_clock_moves_only_when_told() {
        let clock = SimClock::default();
        assert_eq!(clock.now_monotonic(), Duration::ZERO);
        clock.sleep(Duration::from_millis(5));
        clock.advance(Duration::from_micros(7));
        assert_eq!(clock.elapsed(), Duration::from_micros(5_007));
        assert_eq!(clock.now_wall_micros(), WALL_EPOCH_MICROS + 5_007);
    }

    #[test]
    fn workers_run_only_when_stepped_and_leave_when_done_or_stopped() {
        let spawner = SimSpawner::default();
        let steps = Arc::new(AtomicU64::new(0));
        let spawn = |busy_left| {
            spawner.spawn(Box::new(Countdown {
                busy_left,
                steps: steps.clone(),
            }))
        };
        let _first = spawn(2).expect("spawns");
        let second = spawn(10).expect("spawns");
        assert_eq!(steps.load(Ordering::Relaxed), 0, "nothing runs on its own");
        assert_eq!(spawner.live(), 2);
        // The first: busy, busy, done (3 steps); the second: 4 busy steps (the turn's cap).
        assert_eq!(spawner.step_all(), 3 + STEPS_PER_TURN_MAX);
        assert_eq!(spawner.live(), 1);
        second.stop();
        assert_eq!(spawner.live(), 0);
        assert_eq!(spawner.reap(), 2);
        assert_eq!(spawner.step_all(), 0);
    }
}
