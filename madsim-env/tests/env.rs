//! The pieces of `omendb-madsim` one at a time: the clock, the worker tasks, power loss.
//! Needs `RUSTFLAGS="--cfg madsim"`.

#![cfg(madsim)]

use madsim::runtime::Handle;
use madsim::time::sleep;
use omendb_env::{Clock, Fs, OpenMode, Spawn, StepResult, Worker};
use omendb_faults::CrashModel;
use omendb_madsim::{
    power_loss, power_on, FaultPlan, MadsimClock, MadsimEnv, MadsimSpawner, SimFs,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[madsim::test]
async fn clock_follows_virtual_time() {
    let clock = MadsimClock::current().expect("inside madsim");
    let before = clock.now_monotonic();
    let wall_before = clock.now_wall_micros();
    sleep(Duration::from_secs(5)).await;
    let slept = clock.now_monotonic() - before;
    assert!(slept >= Duration::from_secs(5) && slept < Duration::from_millis(5_100));
    assert!(clock.now_wall_micros() - wall_before >= 5_000_000);
    // A synchronous sleep cannot yield: it moves virtual time on.
    let before = clock.now_monotonic();
    clock.sleep(Duration::from_secs(2));
    assert!(clock.now_monotonic() - before >= Duration::from_secs(2));
}

#[test]
fn clock_and_spawner_outside_madsim_are_errors() {
    assert!(MadsimClock::current().is_err());
    let worker = Counter {
        steps: Arc::new(AtomicU64::new(0)),
        idle: Duration::from_secs(1),
    };
    assert!(MadsimSpawner::new().spawn(Box::new(worker)).is_err());
}

/// Counts its steps; always idle for `idle`.
struct Counter {
    steps: Arc<AtomicU64>,
    idle: Duration,
}

impl Worker for Counter {
    fn name(&self) -> &str {
        "counter"
    }

    fn step(&mut self) -> StepResult {
        self.steps.fetch_add(1, Ordering::Relaxed);
        StepResult::Idle(self.idle)
    }
}

#[madsim::test]
async fn worker_sleeps_idle_in_virtual_time_wakes_early_and_stops() {
    let spawner = MadsimSpawner::new();
    let steps = Arc::new(AtomicU64::new(0));
    let control = spawner
        .spawn(Box::new(Counter {
            steps: steps.clone(),
            idle: Duration::from_secs(1),
        }))
        .expect("spawn");
    sleep(Duration::from_millis(10)).await;
    assert_eq!(
        steps.load(Ordering::Relaxed),
        1,
        "one step, then idle for 1 s"
    );
    control.wake();
    sleep(Duration::from_millis(10)).await;
    assert_eq!(
        steps.load(Ordering::Relaxed),
        2,
        "a wake ends the idle sleep"
    );
    sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        steps.load(Ordering::Relaxed),
        3,
        "the idle sleep ends after 1 s"
    );
    assert_eq!(spawner.live(), 1);
    control.stop();
    sleep(Duration::from_secs(5)).await;
    assert_eq!(steps.load(Ordering::Relaxed), 3, "no step after stop");
    assert_eq!(spawner.live(), 0);
    assert_eq!(spawner.steps(), 3);
}

/// Writes `synced` and syncs it, then writes `unsynced` after it, on the node's disk.
fn write_file(disk: &SimFs) -> std::io::Result<()> {
    let file = disk.open(Path::new("/f"), OpenMode::Create)?;
    file.write_at(b"synced", 0)?;
    file.sync()?;
    disk.sync_dir(Path::new("/"))?;
    file.write_at(b"unsynced", 6)?;
    Ok(())
}

#[madsim::test]
async fn power_loss_drops_what_was_not_synced_and_reboots_the_node() {
    let handle = Handle::current();
    let plan = FaultPlan::none()
        .with_seed(7)
        .with_crash_model(CrashModel::lose_all());
    let disk = SimFs::new(plan);
    let boots = Arc::new(AtomicU64::new(0));
    let node = {
        let disk = disk.clone();
        let boots = boots.clone();
        handle
            .create_node()
            .name("writer")
            .init(move || {
                let disk = disk.clone();
                let boots = boots.clone();
                async move {
                    if boots.fetch_add(1, Ordering::Relaxed) == 0 {
                        write_file(&disk).expect("write");
                    }
                    // An env made at boot spawns its workers on this node.
                    let env = MadsimEnv::new(disk).expect("env");
                    env.env()
                        .spawner
                        .spawn(Box::new(Counter {
                            steps: Arc::new(AtomicU64::new(0)),
                            idle: Duration::from_millis(100),
                        }))
                        .expect("spawn");
                    std::future::pending::<()>().await;
                }
            })
            .build()
    };
    sleep(Duration::from_millis(10)).await;
    assert_eq!(
        disk.read_current(Path::new("/f")).expect("read"),
        b"syncedunsynced"
    );
    power_loss(&handle, node.id(), &disk).await;
    assert!(disk.is_frozen(), "the disk froze with the node");
    power_on(&handle, node.id(), &disk);
    assert!(!disk.is_frozen());
    assert_eq!(disk.read_current(Path::new("/f")).expect("read"), b"synced");
    sleep(Duration::from_millis(10)).await;
    assert_eq!(boots.load(Ordering::Relaxed), 2, "the node booted again");
}
