//! [`MadsimSpawner`]: `Env` workers as madsim tasks.
//!
//! Each spawned [`Worker`] becomes one task on the node that spawns it, which loops:
//! stop if asked; run one `step`; tell the tasks in [`MadsimSpawner::wait_until`] that a
//! step ran; then, after `Busy`, yield to the scheduler; after `Idle(d)`, sleep `d` of
//! virtual time or until [`WorkerControl::wake`]; after `Done`, end. A step is synchronous
//! and bounded (the `Worker` contract), so the task never blocks the runtime.
//!
//! `stop` sets a flag the loop checks before every step, and wakes the task so that it ends
//! and drops the worker (and what it holds: OmenDB's commit worker holds the log) at its
//! next turn. On one thread that keeps the trait's promise: once `stop` returns, no step
//! starts. Killing the node drops the task, worker and all, wherever it was waiting.

use omendb_env::{Spawn, StepResult, Worker, WorkerControl};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// The longest [`MadsimSpawner::wait_until`] sleeps between two checks of its condition.
pub const WAIT_RECHECK_INTERVAL: Duration = Duration::from_millis(10);

/// The control of one worker task.
#[derive(Debug, Default)]
struct TaskControl {
    stopped: AtomicBool,
    /// Ends an `Idle` sleep early; holds one permit if woken while not waiting.
    woken: Notify,
}

impl WorkerControl for TaskControl {
    fn wake(&self) {
        self.woken.notify_one();
    }

    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.woken.notify_one();
    }
}

/// What the spawner shares with its tasks.
#[derive(Debug, Default)]
struct Shared {
    /// The workers spawned so far (dead ones are pruned at the next spawn).
    controls: Mutex<Vec<Weak<TaskControl>>>,
    /// Notified (all waiters) after every step of every worker.
    stepped: Notify,
    /// Steps run, over all workers.
    steps: AtomicU64,
}

/// [`Spawn`] whose workers are madsim tasks on the calling node. Spawning outside a madsim
/// runtime is an error.
#[derive(Debug, Clone, Default)]
pub struct MadsimSpawner {
    shared: Arc<Shared>,
}

impl MadsimSpawner {
    /// A spawner with no workers yet.
    pub fn new() -> MadsimSpawner {
        MadsimSpawner::default()
    }

    /// Wakes every live worker (ends their `Idle` sleeps).
    pub fn wake_all(&self) {
        let controls = self
            .shared
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for control in controls.iter().filter_map(Weak::upgrade) {
            control.wake();
        }
    }

    /// Waits until `done` returns `Ok(true)` (or an error, returned as is): checks it, and
    /// if not done wakes every worker and sleeps until one has stepped, or
    /// [`WAIT_RECHECK_INTERVAL`] of virtual time has passed (the condition may change without
    /// a step: another task's inline fsync), then checks again. Never blocks the runtime; it
    /// waits forever if nothing ever makes `done` true, so bound it with
    /// `madsim::time::timeout` where that can happen.
    pub async fn wait_until<E>(&self, mut done: impl FnMut() -> Result<bool, E>) -> Result<(), E> {
        loop {
            // Registered before the check, so a step between the check and the await is seen.
            let stepped = self.shared.stepped.notified();
            let mut stepped = std::pin::pin!(stepped);
            stepped.as_mut().enable();
            if done()? {
                return Ok(());
            }
            self.wake_all();
            let _ = madsim::time::timeout(WAIT_RECHECK_INTERVAL, stepped).await;
        }
    }

    /// Steps run so far, over all workers.
    pub fn steps(&self) -> u64 {
        self.shared.steps.load(Ordering::Relaxed)
    }

    /// Live workers (spawned, not stopped, not finished).
    pub fn live(&self) -> usize {
        let controls = self
            .shared
            .controls
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        controls
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|c| !c.stopped.load(Ordering::Acquire))
            .count()
    }
}

impl Spawn for MadsimSpawner {
    fn spawn(&self, worker: Box<dyn Worker>) -> io::Result<Arc<dyn WorkerControl>> {
        if madsim::runtime::Handle::try_current().is_err() {
            return Err(io::Error::other(format!(
                "MadsimSpawner: worker {} spawned outside a madsim runtime",
                worker.name()
            )));
        }
        let control = Arc::new(TaskControl::default());
        {
            let mut controls = self
                .shared
                .controls
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            controls.retain(|c| c.strong_count() > 0);
            controls.push(Arc::downgrade(&control));
        }
        madsim::task::spawn(run(worker, control.clone(), self.shared.clone()));
        Ok(control)
    }
}

/// The loop of one worker task.
async fn run(mut worker: Box<dyn Worker>, control: Arc<TaskControl>, shared: Arc<Shared>) {
    loop {
        if control.stopped.load(Ordering::Acquire) {
            break;
        }
        let result = worker.step();
        shared.steps.fetch_add(1, Ordering::Relaxed);
        shared.stepped.notify_waiters();
        match result {
            StepResult::Busy => madsim::task::yield_now().await,
            StepResult::Idle(idle) => {
                // Either the sleep ends or a wake comes; both mean "step again".
                let _ = madsim::time::timeout(idle, control.woken.notified()).await;
            }
            StepResult::Done => {
                control.stopped.store(true, Ordering::Release);
                break;
            }
        }
    }
    // The worker (and what it holds) drops here, as the task ends.
}
