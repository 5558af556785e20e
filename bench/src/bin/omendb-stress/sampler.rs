//! The main thread during the measured run: every `--sample-every` a sample of throughput
//! and memory (and a progress line on stderr), every `--verify-every` of a soak a
//! verification asked of every thread, and the watchdog, which names any thread whose
//! current operation has run longer than `--stuck-after`.

use crate::memory::{heap_in_use_kib, live_heap, rss_kib};
use crate::worker::{OpKind, Shared};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Longest sleep between looks at the clock, so that soak verifications and the end are
/// not late by more than this.
const TICK_MAX: Duration = Duration::from_millis(100);

/// Operations done and memory held at one moment of the run.
pub struct Sample {
    /// Since the start of the measured run.
    pub at: Duration,
    pub reads: u64,
    pub writes: u64,
    pub rss_kib: u64,
    pub heap_kib: u64,
    /// 0 unless `--live-heap`.
    pub live_kib: u64,
}

impl Sample {
    /// The sample of now, `at` into the run.
    fn take(shared: &Shared, at: Duration) -> Sample {
        let sum = |ops: fn(&crate::worker::Progress) -> u64| -> u64 {
            shared.progress.iter().map(ops).sum()
        };
        Sample {
            at,
            reads: sum(|p| p.read_ops.load(Ordering::Relaxed)),
            writes: sum(|p| p.write_ops.load(Ordering::Relaxed)),
            rss_kib: rss_kib(),
            heap_kib: heap_in_use_kib(),
            live_kib: live_heap::kib(),
        }
    }

    /// The progress line for the interval from `previous` to this sample.
    fn print_since(&self, previous: &Sample) {
        let seconds = (self.at - previous.at).as_secs_f64().max(1e-9);
        let rate = |now: u64, before: u64| (now - before) as f64 / seconds;
        let live_text = if live_heap::enabled() {
            format!(" live={:>7.1}MiB", self.live_kib as f64 / 1024.0)
        } else {
            String::new()
        };
        eprintln!(
            "t={:>6.1}s ops/s={:>9.0} read/s={:>9.0} write/s={:>9.0} heap={:>7.1}MiB{live_text} rss={:>7.1}MiB",
            self.at.as_secs_f64(),
            rate(self.reads + self.writes, previous.reads + previous.writes),
            rate(self.reads, previous.reads),
            rate(self.writes, previous.writes),
            self.heap_kib as f64 / 1024.0,
            self.rss_kib as f64 / 1024.0
        );
    }
}

/// What the sampling loop saw.
pub struct Sampling {
    /// The first at the start of the run, then one per `--sample-every`.
    pub samples: Vec<Sample>,
    /// Threads the watchdog found stuck (each counted once per stuck spell).
    pub stuck_threads: u64,
    /// Soak verifications asked of the threads.
    pub verifications_asked: u64,
}

/// The watchdog's memory: which threads it has already reported in their current spell.
struct Watchdog {
    reported: Vec<bool>,
    stuck_threads: u64,
}

impl Watchdog {
    /// Reports each thread whose current operation started longer than `stuck_after` ago.
    fn check(&mut self, shared: &Shared, stuck_after: Duration) {
        let now_ns = shared.now_ns();
        for (index, progress) in shared.progress.iter().enumerate() {
            let started = progress.op_started_ns.load(Ordering::Relaxed);
            let running = Duration::from_nanos(now_ns.saturating_sub(started));
            if started == 0 || running <= stuck_after {
                self.reported[index] = false;
                continue;
            }
            if !self.reported[index] {
                self.reported[index] = true;
                self.stuck_threads += 1;
                eprintln!(
                    "watchdog: thread {index} stuck for {:.1}s in {:?} of key {}",
                    running.as_secs_f64(),
                    OpKind::from_u8(progress.op_kind.load(Ordering::Relaxed)),
                    progress.op_key.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// Samples, asks for soak verifications and watches the threads from `run_started` until
/// `--duration` has passed.
pub fn sample_until_end(shared: &Shared, run_started: Instant) -> Sampling {
    let args = &shared.args;
    // Counted from zero: the threads start with the run.
    let mut samples = vec![Sample {
        reads: 0,
        writes: 0,
        ..Sample::take(shared, Duration::ZERO)
    }];
    let mut watchdog = Watchdog {
        reported: vec![false; shared.progress.len()],
        stuck_threads: 0,
    };
    let mut next_sample = run_started + args.sample_every;
    let mut next_verify = run_started + args.verify_every;
    let mut verifications_asked = 0u64;
    let end = run_started + args.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        std::thread::sleep((next_sample.min(end) - now).min(TICK_MAX));
        let now = Instant::now();
        if args.soak && now >= next_verify && now + args.verify_every / 4 < end {
            verifications_asked += 1;
            shared
                .verify_epoch
                .store(verifications_asked, Ordering::Release);
            next_verify += args.verify_every;
        }
        if now < next_sample && now < end {
            continue;
        }
        next_sample += args.sample_every;
        let sample = Sample::take(shared, run_started.elapsed());
        if let Some(previous) = samples.last() {
            sample.print_since(previous);
        }
        samples.push(sample);
        watchdog.check(shared, args.stuck_after);
    }
    Sampling {
        samples,
        stuck_threads: watchdog.stuck_threads,
        verifications_asked,
    }
}
