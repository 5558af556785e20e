//! The simulated environment: a virtual clock, and a spawner whose workers the scheduler
//! steps itself. With the simulated disk from `omendb-faults` they make an [`Env`] in which
//! nothing depends on wall time or threads.

use omendb::env::{Clock, Spawn, StepResult, Worker, WorkerControl};
use omendb::Env;
use omendb_faults::SimFs;
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

#[derive(Debug, Default)]
struct SimControl {
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
const STEPS_PER_TURN_MAX: usize = 4;

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
