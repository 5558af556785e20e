//! The end of a run: the threads' reports merged into totals and one model, memory growth
//! after the warm-up, throughput of the first and last windows, then the summary on stderr
//! and, as the last line on stdout, one JSON object.

use crate::histogram::Histogram;
use crate::sampler::{Sample, Sampling};
use crate::worker::ThreadReport;
use crate::Args;
use omendb_bench::{load_average, JsonLine};
use std::collections::HashMap;
use std::time::Duration;

/// The longest throughput window and default warm-up: five minutes.
const WINDOW_MAX: Duration = Duration::from_secs(300);

/// Errors printed at the end, at most.
const ERRORS_PRINTED_MAX: usize = 10;

/// The threads' reports added up.
#[derive(Default)]
pub struct Totals {
    pub read_latency: Histogram,
    pub write_latency: Histogram,
    pub all_latency: Histogram,
    pub reads: u64,
    pub writes: u64,
    pub applied: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub lost: u64,
    pub first_errors: Vec<String>,
}

impl Totals {
    /// The sums of `reports`.
    pub fn merge(reports: &[ThreadReport]) -> Totals {
        let mut totals = Totals::default();
        for report in reports {
            for (total, part) in [
                (&mut totals.read_latency, &report.read_latency),
                (&mut totals.write_latency, &report.write_latency),
                (&mut totals.all_latency, &report.all_latency),
            ] {
                if let Some(part) = part {
                    total.merge(part);
                }
            }
            totals.reads += report.reads;
            totals.writes += report.writes;
            totals.applied += report.writes_applied;
            totals.duplicates += report.duplicates;
            totals.errors += report.errors;
            totals.lost += report.lost;
            totals.first_errors.extend(report.first_error.clone());
        }
        totals
    }

    /// Counts `errors` (from outside the client threads) as errors.
    pub fn add_errors(&mut self, errors: Vec<String>) {
        self.errors += errors.len() as u64;
        self.first_errors.extend(errors);
    }
}

/// The union of the threads' records, key to acknowledged version, and how many keys two
/// threads both claim (each is an error: a key has one owner).
pub fn merged_model(reports: &[ThreadReport], totals: &mut Totals) -> (HashMap<i64, i64>, u64) {
    let mut model: HashMap<i64, i64> = HashMap::new();
    let mut conflicts = 0u64;
    for report in reports {
        for (&key, &(_, version)) in &report.owned.versions {
            if model.insert(key, version).is_some() {
                conflicts += 1;
                totals
                    .first_errors
                    .push(format!("key {key} acknowledged as inserted by two threads"));
            }
        }
    }
    (model, conflicts)
}

/// A memory figure after the warm-up and at the end, in KiB, and the growth between.
#[derive(Clone, Copy)]
pub struct Growth {
    pub baseline_kib: u64,
    pub end_kib: u64,
    pub pct: f64,
}

impl Growth {
    /// The growth of `kib` over `samples` from the first sample at or after `warmup`.
    fn of(samples: &[Sample], warmup: Duration, kib: fn(&Sample) -> u64) -> Growth {
        let baseline_kib = samples
            .iter()
            .find(|s| s.at >= warmup)
            .or(samples.last())
            .map_or(0, kib);
        let end_kib = samples.last().map_or(0, kib);
        let pct = if baseline_kib > 0 {
            (end_kib as f64 - baseline_kib as f64) * 100.0 / baseline_kib as f64
        } else {
            0.0
        };
        Growth {
            baseline_kib,
            end_kib,
            pct,
        }
    }
}

/// Operations per second between the last sample at or before `from` and the first at or
/// after `to`.
fn window_rate(samples: &[Sample], from: Duration, to: Duration) -> f64 {
    let first = samples
        .iter()
        .rev()
        .find(|s| s.at <= from)
        .or(samples.first());
    let last = samples.iter().find(|s| s.at >= to).or(samples.last());
    match (first, last) {
        (Some(a), Some(b)) if b.at > a.at => {
            (b.reads + b.writes - a.reads - a.writes) as f64 / (b.at - a.at).as_secs_f64()
        }
        _ => 0.0,
    }
}

/// The warm-up the RSS baseline leaves out: `--warmup`, or a sixth of the run, at most
/// five minutes.
pub fn warmup(args: &Args) -> Duration {
    args.warmup
        .unwrap_or_else(|| (args.duration / 6).min(WINDOW_MAX))
}

/// The final check: acknowledged rows missing or wrong, and rows nobody acknowledged.
pub struct FinalCheck {
    pub lost: u64,
    pub unexpected: u64,
    pub seconds: f64,
}

/// Everything the run reports.
pub struct Summary<'a> {
    pub args: &'a Args,
    pub totals: Totals,
    pub sampling: Sampling,
    pub elapsed: Duration,
    pub cpu_s: f64,
    pub checkpoints: u64,
    pub checkpoint_latency: Histogram,
    pub verifications_done: u64,
    pub check: FinalCheck,
}

impl Summary<'_> {
    /// Acknowledged writes lost: by the threads' own reads and by the final check.
    fn lost(&self) -> u64 {
        self.totals.lost + self.check.lost
    }

    /// Whether the run failed: anything acknowledged lost, a row nobody wrote, an
    /// unexpected error or a stuck thread.
    pub fn failed(&self) -> bool {
        self.lost() > 0
            || self.check.unexpected > 0
            || self.totals.errors > 0
            || self.sampling.stuck_threads > 0
    }

    fn growth(&self, kib: fn(&Sample) -> u64) -> Growth {
        Growth::of(&self.sampling.samples, warmup(self.args), kib)
    }

    /// Throughput of the first and the last window (a sixth of the run, at most five
    /// minutes), and the change between them in percent.
    fn windows(&self) -> (Duration, f64, f64, f64) {
        let window = (self.args.duration / 6).min(WINDOW_MAX);
        let samples = &self.sampling.samples;
        let first = window_rate(samples, Duration::ZERO, window);
        let last = window_rate(samples, self.elapsed.saturating_sub(window), self.elapsed);
        let change_pct = if first > 0.0 {
            (last - first) * 100.0 / first
        } else {
            0.0
        };
        (window, first, last, change_pct)
    }

    /// The summary lines on stderr.
    pub fn print(&self) {
        let args = self.args;
        let t = &self.totals;
        let seconds = self.elapsed.as_secs_f64();
        let ops = t.reads + t.writes;
        eprintln!(
            "threads={} sync={} mix={} write_mix={} keys={} dist={} duration={seconds:.1}s",
            args.threads, args.sync, args.mix, args.write_mix, args.keys, args.dist
        );
        eprintln!(
            "ops/s {:.0} (read {:.0}, write {:.0}; {} writes applied, {} duplicate-key rejections)",
            ops as f64 / seconds,
            t.reads as f64 / seconds,
            t.writes as f64 / seconds,
            t.applied,
            t.duplicates
        );
        eprintln!(
            "cpu {:.1} s ({:.2} cores busy, {:.0} ops per cpu-second); load average {:.2}",
            self.cpu_s,
            self.cpu_s / seconds,
            ops as f64 / self.cpu_s.max(1e-9),
            load_average()
        );
        eprintln!(
            "latency p50 {} ns, p99 {} ns, max {} ns; read p50/p99 {}/{} ns; write p50/p99 {}/{} ns",
            t.all_latency.quantile_ns(0.5),
            t.all_latency.quantile_ns(0.99),
            t.all_latency.max_ns,
            t.read_latency.quantile_ns(0.5),
            t.read_latency.quantile_ns(0.99),
            t.write_latency.quantile_ns(0.5),
            t.write_latency.quantile_ns(0.99)
        );
        eprintln!(
            "checkpoints {} (p99 {:.1} ms); soak verifications {}/{}; final check {:.1}s",
            self.checkpoints,
            self.checkpoint_latency.quantile_ns(0.99) as f64 / 1e6,
            self.verifications_done,
            self.sampling.verifications_asked,
            self.check.seconds
        );
        let mib = |kib: u64| kib as f64 / 1024.0;
        let rss = self.growth(|s| s.rss_kib);
        let rss_max = self.sampling.samples.iter().map(|s| s.rss_kib).max();
        eprintln!(
            "rss baseline {:.1} MiB after {:.0}s warm-up, end {:.1} MiB, max {:.1} MiB, growth {:.2}%",
            mib(rss.baseline_kib),
            warmup(args).as_secs_f64(),
            mib(rss.end_kib),
            mib(rss_max.unwrap_or(0)),
            rss.pct
        );
        let heap = self.growth(|s| s.heap_kib);
        eprintln!(
            "heap in use baseline {:.1} MiB, end {:.1} MiB, growth {:.2}%",
            mib(heap.baseline_kib),
            mib(heap.end_kib),
            heap.pct
        );
        if args.live_heap {
            let live = self.growth(|s| s.live_kib);
            eprintln!(
                "live (allocated by the program) baseline {:.1} MiB, end {:.1} MiB, growth {:.2}%",
                mib(live.baseline_kib),
                mib(live.end_kib),
                live.pct
            );
        }
        let (window, first, last, change_pct) = self.windows();
        eprintln!(
            "throughput first {:.0}s {first:.0} ops/s, last {:.0}s {last:.0} ops/s ({change_pct:+.1}%)",
            window.as_secs_f64(),
            window.as_secs_f64()
        );
        eprintln!(
            "lost_acknowledged {}, unexpected rows {}, errors {}, stuck threads {}",
            self.lost(),
            self.check.unexpected,
            t.errors,
            self.sampling.stuck_threads
        );
        for error in t.first_errors.iter().take(ERRORS_PRINTED_MAX) {
            eprintln!("  error: {error}");
        }
    }

    /// Every figure as one JSON object.
    pub fn to_json(&self) -> JsonLine {
        let args = self.args;
        let t = &self.totals;
        let seconds = self.elapsed.as_secs_f64();
        let ops = (t.reads + t.writes) as f64;
        let mut json = JsonLine::new();
        json.set("threads", args.threads as f64)
            .set_text("sync", &args.sync)
            .set_text("mix", &args.mix)
            .set_text("write_mix", &args.write_mix)
            .set("keys", args.keys as f64)
            .set_text("dist", &args.dist)
            .set_bool("soak", args.soak)
            .set("duration_s", seconds)
            .set("cpu_s", self.cpu_s)
            .set("ops_per_cpu_s", (ops / self.cpu_s.max(1e-9)).round())
            .set("ops", ops)
            .set("ops_per_s", (ops / seconds).round())
            .set("read_ops_per_s", (t.reads as f64 / seconds).round())
            .set("write_ops_per_s", (t.writes as f64 / seconds).round())
            .set("writes_applied", t.applied as f64)
            .set("duplicate_rejections", t.duplicates as f64);
        for (prefix, histogram) in [
            ("", &t.all_latency),
            ("read_", &t.read_latency),
            ("write_", &t.write_latency),
        ] {
            json.set(
                &format!("{prefix}p50_ns"),
                histogram.quantile_ns(0.5) as f64,
            )
            .set(
                &format!("{prefix}p99_ns"),
                histogram.quantile_ns(0.99) as f64,
            );
            if prefix.is_empty() {
                json.set("max_ns", histogram.max_ns as f64);
            }
        }
        json.set("lost_acknowledged", self.lost() as f64)
            .set("unexpected_rows", self.check.unexpected as f64)
            .set("errors", t.errors as f64)
            .set("stuck_threads", self.sampling.stuck_threads as f64)
            .set("checkpoints", self.checkpoints as f64)
            .set("verifications", self.verifications_done as f64);
        let rss_max = self.sampling.samples.iter().map(|s| s.rss_kib).max();
        for (name, growth) in [
            ("rss", self.growth(|s| s.rss_kib)),
            ("heap", self.growth(|s| s.heap_kib)),
            ("live", self.growth(|s| s.live_kib)),
        ] {
            json.set(&format!("{name}_baseline_kib"), growth.baseline_kib as f64)
                .set(&format!("{name}_end_kib"), growth.end_kib as f64);
            if name == "rss" {
                json.set("rss_max_kib", rss_max.unwrap_or(0) as f64);
            }
            json.set(&format!("{name}_growth_pct"), growth.pct);
        }
        let (_, first, last, change_pct) = self.windows();
        json.set("first_window_ops_per_s", first.round())
            .set("last_window_ops_per_s", last.round())
            .set("throughput_change_pct", change_pct);
        json
    }
}
