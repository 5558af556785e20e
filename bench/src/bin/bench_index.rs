//! Benchmark: the ALEX index against `BTreeMap<i64, u64>` on the same keys, in one process.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin bench_index -- --keys 10000000 --dist uniform --seed 1
//!     [--build bulk|insert] [--lookups 1000000] [--inserts 1000000] [--scans 100000]
//!     [--scan-len 100]
//! cargo run --release -p omendb-bench --bin bench_index -- --chase-mib 1024
//! cargo run --release -p omendb-bench --bin bench_index -- --touch-mib 4096
//! cargo run --release -p omendb-bench --bin bench_index -- --layout-probe 1 --keys 10000000
//! cargo run --release -p omendb-bench --bin bench_index -- --window 100000 --keys 30000000
//! ```
//!
//! Phases, each timed for both structures: build (bulk load from sorted pairs, or inserts in
//! random order), lookups of present keys in a random order drawn before timing, inserts of
//! keys not yet present, range scans of `scan-len` keys from random present keys. Memory is
//! measured twice: the index's own `bytes_used()` accounting, and the heap growth seen by a
//! counting allocator while the structure was built (the only figure available for
//! `BTreeMap`). The last line of output is one JSON object with the results.
//!
//! Keys (`--dist`, meanings as in `omendb_keygen::Dist`): `uniform` random i64, `sequential`
//! 1..N, `pareto` (1e9 / u: dense just above 1e9 with a long tail; called `zipf` before
//! the names were unified, the same keys), `clustered` (1000 random cluster starts, keys
//! 1-64 apart within a cluster).
//!
//! This binary sits outside the engine library and its Env boundary: it reads the clock
//! directly.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use omendb::index::alex::{Alex, AlexIndex};
use omendb_bench::{parse_count, JsonLine};
use omendb_keygen::{pareto, Dist, SplitMix64};

/// Heap bytes currently allocated, as seen by the global allocator.
struct CountingAllocator;

static HEAP_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_BYTES.fetch_add(new_size, Ordering::Relaxed);
        HEAP_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn heap_bytes() -> usize {
    HEAP_BYTES.load(Ordering::Relaxed)
}

/// The key distributions this benchmark draws (`--dist`; meanings in `omendb_keygen::Dist`).
const DISTS: [Dist; 4] = [
    Dist::Uniform,
    Dist::Sequential,
    Dist::Pareto,
    Dist::Clustered,
];

struct Args {
    keys: usize,
    dist: Dist,
    seed: u64,
    build_by_insert: bool,
    lookups: usize,
    inserts: usize,
    scans: usize,
    scan_len: usize,
    /// `--chase-mib N`: only measure a dependent random load over N MiB (see [`chase`]).
    chase_mib: usize,
    /// `--touch-mib N`: only measure the first write to N MiB of fresh memory (see [`touch`]).
    touch_mib: usize,
    /// `--layout-probe 1`: only compare a get's cost with the row in the slot and apart
    /// (see [`layout_probe`]).
    layout_probe: bool,
    /// `--window W`: only slide a window of W live keys over `keys` sequential keys (see
    /// [`sliding_window`]).
    window: usize,
}

fn usage() -> String {
    format!(
        "usage: bench_index [--keys N=10000000] [--dist {}] [--seed S=1] \
         [--build bulk|insert] [--lookups N=1000000] [--inserts N=1000000] [--scans N=100000] \
         [--scan-len N=100]\n   or: bench_index --chase-mib MIB | --touch-mib MIB | \
         --layout-probe 1 [--keys N] | --window W [--keys N]",
        Dist::names(&DISTS)
    )
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        keys: 10_000_000,
        dist: Dist::Uniform,
        seed: 1,
        build_by_insert: false,
        lookups: 1_000_000,
        inserts: 1_000_000,
        scans: 100_000,
        scan_len: 100,
        chase_mib: 0,
        touch_mib: 0,
        layout_probe: false,
        window: 0,
    };
    let mut given = std::env::args().skip(1);
    while let Some(flag) = given.next() {
        if flag == "--help" || flag == "-h" {
            return Err(usage());
        }
        let value = given
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || parse_count(&flag, &value);
        match flag.as_str() {
            "--keys" => args.keys = number()? as usize,
            "--dist" => args.dist = Dist::parse(&value, &DISTS)?,
            "--seed" => args.seed = number()?,
            "--build" => {
                args.build_by_insert = match value.as_str() {
                    "bulk" => false,
                    "insert" => true,
                    other => return Err(format!("unknown --build {other}")),
                }
            }
            "--lookups" => args.lookups = number()? as usize,
            "--inserts" => args.inserts = number()? as usize,
            "--scans" => args.scans = number()? as usize,
            "--scan-len" => args.scan_len = number()? as usize,
            "--chase-mib" => args.chase_mib = number()? as usize,
            "--touch-mib" => args.touch_mib = number()? as usize,
            "--layout-probe" => args.layout_probe = number()? != 0,
            "--window" => args.window = number()? as usize,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if args.chase_mib > 0 && args.touch_mib > 0 {
        return Err("--chase-mib and --touch-mib are separate runs; give one".into());
    }
    for mib in [args.chase_mib, args.touch_mib] {
        if mib.checked_mul(1 << 20).is_none() {
            return Err(format!("{mib} MiB is more than this machine can address"));
        }
    }
    if args.keys == 0 && args.chase_mib == 0 && args.touch_mib == 0 {
        return Err("--keys must be positive".into());
    }
    Ok(args)
}

/// `count` distinct keys of `dist`, sorted.
fn distinct_keys(dist: Dist, count: usize, rng: &mut SplitMix64) -> Vec<i64> {
    let mut keys: Vec<i64> = Vec::with_capacity(count + count / 8);
    // Clustered: 1000 clusters at random places, keys within a cluster 1..64 apart.
    let clusters: Vec<i64> = (0..1000).map(|_| (rng.next_u64() >> 2) as i64).collect();
    let mut cursor = 0i64;
    while keys.len() < count {
        let missing = count - keys.len();
        for _ in 0..missing + missing / 16 + 16 {
            let key = match dist {
                Dist::Uniform => rng.next_u64() as i64,
                Dist::Sequential => {
                    cursor += 1;
                    cursor
                }
                // Dense just above 1e9, with a long tail.
                Dist::Pareto => pareto(1e9, rng.unit()) as i64,
                Dist::Clustered => {
                    let base = clusters[rng.below_usize(clusters.len())];
                    base.wrapping_add(
                        (rng.below_usize(count / 1000 + 1) * 32 + rng.below_usize(32)) as i64,
                    )
                }
                other => unreachable!("--dist {} is not in DISTS", other.name()),
            };
            keys.push(key);
        }
        keys.sort_unstable();
        keys.dedup();
    }
    if keys.len() > count {
        // Drop a random surplus so that what is left keeps the distribution's shape.
        let surplus = keys.len() - count;
        let mut drop: Vec<usize> = (0..surplus).map(|_| rng.below_usize(keys.len())).collect();
        drop.sort_unstable();
        drop.dedup();
        let mut position = 0;
        keys.retain(|_| {
            let keep = drop.binary_search(&position).is_err();
            position += 1;
            keep
        });
        keys.truncate(count);
    }
    keys
}

fn ns_per(elapsed: std::time::Duration, operations: usize) -> f64 {
    elapsed.as_nanos() as f64 / operations.max(1) as f64
}

/// The machine's floor for a get: nanoseconds per load when each load's address comes from
/// the previous one (a pointer chase), over `mib` MiB in one random cycle through its 64-byte
/// lines, like an index slot then a row in a table far larger than the caches. With `huge`,
/// the buffer is advised onto transparent huge pages before it is touched, as the engine's
/// index and row pages are. The median of five passes of a million loads each.
fn chase(mib: usize, huge: bool, rng: &mut SplitMix64) -> f64 {
    const WORDS_PER_LINE: usize = 8;
    let lines = (mib << 20) / 64;
    let mut memory: Vec<u64> = Vec::with_capacity(lines * WORDS_PER_LINE);
    if huge {
        advise_huge_pages(memory.as_ptr() as usize, lines * 64);
    }
    memory.resize(lines * WORDS_PER_LINE, 0);
    // Sattolo's shuffle: one cycle through every line.
    let mut order: Vec<usize> = (0..lines).collect();
    for i in (1..lines).rev() {
        order.swap(i, rng.below_usize(i));
    }
    for i in 0..lines {
        memory[order[i] * WORDS_PER_LINE] = (order[(i + 1) % lines] * WORDS_PER_LINE) as u64;
    }
    drop(order);
    let mut at = 0usize;
    let loads = 1_000_000;
    let mut passes: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..loads {
                at = memory[at] as usize;
            }
            started.elapsed().as_nanos() as f64 / loads as f64
        })
        .collect();
    std::hint::black_box(at);
    passes.sort_by(f64::total_cmp);
    passes[passes.len() / 2]
}

/// Asks for transparent huge pages under the whole 2 MiB pages of `bytes` bytes at `start`,
/// as the engine does for its large arrays before they are touched.
fn advise_huge_pages(start: usize, bytes: usize) {
    let (first, end) = (
        start.next_multiple_of(2 << 20),
        (start + bytes) / (2 << 20) * (2 << 20),
    );
    if end > first {
        // SAFETY: the range is 2 MiB-aligned and inside one live allocation of ours that is
        // not yet touched; MADV_HUGEPAGE changes only how the kernel backs it.
        let _ =
            unsafe { libc::madvise(first as *mut libc::c_void, end - first, libc::MADV_HUGEPAGE) };
    }
}

/// What first touching fresh memory costs: GB/s writing one byte per 4 KiB page of a new
/// `mib` MiB allocation (advised onto huge pages, as the engine's arrays are), so nearly all
/// the time is the kernel's page fault and zeroing. Run twice: `fresh` first, then `again`,
/// a second allocation right after the first is freed. In a VM whose host lends memory
/// lazily and takes back what the guest frees (virtio-balloon free page reporting), `fresh`
/// after an idle spell pays a host fault per page and `again` reuses pages the host still
/// backs; on bare metal the two are alike. Returns (fresh, again).
fn touch(mib: usize) -> (f64, f64) {
    let pass = || {
        let bytes = mib << 20;
        let mut memory: Vec<u8> = Vec::with_capacity(bytes);
        advise_huge_pages(memory.as_ptr() as usize, bytes);
        let started = Instant::now();
        let base = memory.as_mut_ptr();
        for page in (0..bytes).step_by(4096) {
            // SAFETY: `Vec::as_mut_ptr` may be written through anywhere below the capacity,
            // and `page < bytes`, the capacity; `memory` keeps length 0 and no reference to
            // the spare capacity is made, so the bytes are never read.
            unsafe { base.add(page).write_volatile(1) };
        }
        bytes as f64 / started.elapsed().as_secs_f64() / 1e9
    };
    let fresh = pass();
    (fresh, pass())
}

/// Inline bytes of a clustered slot in the layout probe: enough for the table benchmark's
/// rows (`v` Int64, `f` Float64, `s` Utf8 of 8-16 bytes) packed as
/// `[v 8][f 8][s length 1][s bytes]`, at most 33 bytes, padded so that a slot (key + payload)
/// is 48 bytes.
const PROBE_INLINE_BYTES: usize = 40;

/// A row stored in the index slot itself: the clustered layout of the probe.
#[derive(Clone, Copy)]
struct InlineRow([u8; PROBE_INLINE_BYTES]);

impl Default for InlineRow {
    fn default() -> Self {
        InlineRow([0; PROBE_INLINE_BYTES])
    }
}

/// The probe's row for `key`: the table benchmark's shape, `s` 8 to 16 bytes long.
fn probe_row(key: i64) -> (i64, f64, Vec<u8>) {
    let h = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let len = 8 + (h % 9) as usize;
    let s = (0..len)
        .map(|i| b'a' + ((h >> (i * 3)) % 26) as u8)
        .collect();
    (key.wrapping_mul(3), key as f64 * 0.5, s)
}

/// Reads a packed probe row the way a get does: the two numbers, and `s` copied into an
/// owned `String` (the table benchmark's reader does the same on both sides).
#[inline]
fn read_probe_row(bytes: &[u8], s_at: usize, s_len: usize) -> (i64, f64, String) {
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[..8]);
    let mut f = [0u8; 8];
    f.copy_from_slice(&bytes[8..16]);
    let s = String::from_utf8_lossy(&bytes[s_at..s_at + s_len]).into_owned();
    (i64::from_le_bytes(v), f64::from_le_bytes(f), s)
}

/// Percentiles of per-get latencies, each get timed on its own as the table benchmark does.
fn latency_summary(mut ns: Vec<u64>) -> (u64, u64, f64) {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() as f64 * q) as usize).min(ns.len() - 1)];
    let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64;
    (at(0.5), at(0.99), mean)
}

/// `--layout-probe`: what a get costs with the row beside its key in the index slot (one
/// dependent miss) against the engine's layout, where the slot holds the row's location in a
/// separate packed row store (two dependent misses). Both ALEX indexes are built by inserting
/// the same keys in the same random order; each get is timed on its own and copies the row
/// out, like `benchmark_table_vs_sqlite`, but without the table layer (lock, table lookup,
/// decoding by schema), so the difference between the two is the layout's alone.
fn layout_probe(args: &Args, rng: &mut SplitMix64) {
    let mut keys = distinct_keys(Dist::Uniform, args.keys, rng);
    rng.shuffle(&mut keys);
    let lookups: Vec<i64> = (0..args.lookups)
        .map(|_| keys[rng.below_usize(keys.len())])
        .collect();
    let time_gets = |get: &dyn Fn(i64) -> Option<(i64, f64, String)>| {
        let mut ns = Vec::with_capacity(lookups.len());
        let mut missing = 0usize;
        for &key in &lookups {
            let started = Instant::now();
            let row = black_box(get(key));
            ns.push(started.elapsed().as_nanos() as u64);
            missing += usize::from(row.is_none());
        }
        if missing > 0 {
            eprintln!("bench_index: layout probe: {missing} present keys not found");
            std::process::exit(1);
        }
        latency_summary(ns)
    };
    let mut report = JsonLine::new();
    report.set("layout_probe_keys", keys.len() as f64);

    // The timer alone: two clock reads around a get that does no work.
    {
        let (p50, _, mean) = time_gets(&|key| Some((key, 0.0, String::new())));
        println!("timer alone: p50 {p50} ns, mean {mean:.0} ns");
        report.set("timer_p50_ns", p50 as f64);
    }

    // Separate: packed rows appended to a row store in insertion order, the slot holds the
    // byte offset. Rows are `[v 8][f 8][s end offset u32][s bytes]`, as in the engine.
    {
        let heap_before = heap_bytes();
        let started = Instant::now();
        let mut store: Vec<u8> = Vec::with_capacity(keys.len() * 37);
        advise_huge_pages(store.as_ptr() as usize, store.capacity());
        let mut index = Alex::<i64, u64>::new();
        for &key in &keys {
            let (v, f, s) = probe_row(key);
            let at = store.len() as u64;
            store.extend_from_slice(&v.to_le_bytes());
            store.extend_from_slice(&f.to_le_bytes());
            store.extend_from_slice(&(20 + s.len() as u32).to_le_bytes());
            store.extend_from_slice(&s);
            index.insert(key, at);
        }
        let build_ns = ns_per(started.elapsed(), keys.len());
        let bytes = heap_bytes() - heap_before;
        let (p50, p99, mean) = time_gets(&|key| {
            let at = index.get(key)? as usize;
            let row = &store[at..];
            let mut end = [0u8; 4];
            end.copy_from_slice(&row[16..20]);
            let end = u32::from_le_bytes(end) as usize;
            Some(read_probe_row(row, 20, end - 20))
        });
        println!(
            "separate (slot -> row store): get p50 {p50} ns, p99 {p99} ns, mean {mean:.0} ns; \
             insert {build_ns:.0} ns/key; {:.1} bytes/key ({:.1} index + {:.1} rows)",
            bytes as f64 / keys.len() as f64,
            index.bytes_used() as f64 / keys.len() as f64,
            store.len() as f64 / keys.len() as f64,
        );
        report
            .set("separate_get_p50_ns", p50 as f64)
            .set("separate_get_p99_ns", p99 as f64)
            .set("separate_get_mean_ns", mean)
            .set("separate_insert_ns", build_ns)
            .set(
                "separate_index_bytes_per_key",
                index.bytes_used() as f64 / keys.len() as f64,
            )
            .set(
                "separate_row_bytes_per_key",
                store.len() as f64 / keys.len() as f64,
            );
    }

    // Clustered: the packed row inside the slot, `[v 8][f 8][s length 1][s bytes]`.
    {
        let started = Instant::now();
        let mut index = Alex::<i64, InlineRow>::new();
        for &key in &keys {
            let (v, f, s) = probe_row(key);
            let mut row = InlineRow::default();
            row.0[..8].copy_from_slice(&v.to_le_bytes());
            row.0[8..16].copy_from_slice(&f.to_le_bytes());
            row.0[16] = s.len() as u8;
            row.0[17..17 + s.len()].copy_from_slice(&s);
            index.insert(key, row);
        }
        let build_ns = ns_per(started.elapsed(), keys.len());
        let (p50, p99, mean) = time_gets(&|key| {
            let row = index.get(key)?;
            Some(read_probe_row(&row.0, 17, row.0[16] as usize))
        });
        let per_key = index.bytes_used() as f64 / keys.len() as f64;
        println!(
            "clustered (row in the slot, {}-byte slots): get p50 {p50} ns, p99 {p99} ns, \
             mean {mean:.0} ns; insert {build_ns:.0} ns/key; {per_key:.1} bytes/key",
            std::mem::size_of::<(i64, InlineRow)>(),
        );
        report
            .set("clustered_get_p50_ns", p50 as f64)
            .set("clustered_get_p99_ns", p99 as f64)
            .set("clustered_get_mean_ns", mean)
            .set("clustered_insert_ns", build_ns)
            .set("clustered_bytes_per_key", per_key);
    }
    println!("{}", report.to_json());
}

/// `--window W`: the index's memory under a sliding key window, the shape of a time-series
/// table with retention. Inserts keys `0..keys` in order and, once `window` are live, removes
/// the oldest with each insert; prints the index's bytes and data nodes ten times along the
/// way. The size should follow the live keys, not the keys inserted so far.
fn sliding_window(keys: usize, window: usize) {
    let mut index = AlexIndex::new();
    let started = Instant::now();
    let (mut bytes_max, mut nodes_max) = (0usize, 0usize);
    let mut late_bytes_min = usize::MAX;
    let step = (keys / 10).max(1);
    for key in 0..keys {
        index.insert(key as i64, key as u64);
        if key >= window {
            index.remove((key - window) as i64);
        }
        if key % step == step - 1 {
            let (bytes, nodes) = (index.bytes_used(), index.stats().data_nodes);
            println!(
                "{} keys inserted, {} live: {bytes} index bytes ({:.1} per live key), {nodes} data nodes",
                key + 1,
                index.len(),
                bytes as f64 / index.len().max(1) as f64,
            );
            if key + 1 > window {
                bytes_max = bytes_max.max(bytes);
                nodes_max = nodes_max.max(nodes);
                if key + 1 >= keys / 2 {
                    late_bytes_min = late_bytes_min.min(bytes);
                }
            }
        }
    }
    let elapsed = ns_per(started.elapsed(), keys);
    let mut report = JsonLine::new();
    report
        .set("window", window as f64)
        .set("window_keys", keys as f64)
        .set("window_ns_per_key", elapsed)
        .set("window_bytes_final", index.bytes_used() as f64)
        .set("window_bytes_max", bytes_max as f64)
        .set("window_bytes_late_min", late_bytes_min as f64)
        .set("window_data_nodes_max", nodes_max as f64);
    println!("{}", report.to_json());
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(problem) => {
            eprintln!("bench_index: {problem}");
            std::process::exit(2);
        }
    };
    let mut rng = SplitMix64::new(args.seed);
    if args.touch_mib > 0 {
        let (fresh, again) = touch(args.touch_mib);
        println!(
            "first write to {} MiB: {fresh:.2} GB/s fresh, {again:.2} GB/s right after freeing it",
            args.touch_mib
        );
        let mut report = JsonLine::new();
        report
            .set("touch_mib", args.touch_mib as f64)
            .set("touch_fresh_gb_per_s", fresh)
            .set("touch_again_gb_per_s", again);
        println!("{}", report.to_json());
        return;
    }
    if args.layout_probe {
        layout_probe(&args, &mut rng);
        return;
    }
    if args.window > 0 {
        sliding_window(args.keys, args.window);
        return;
    }
    if args.chase_mib > 0 {
        let (huge, small) = (
            chase(args.chase_mib, true, &mut rng),
            chase(args.chase_mib, false, &mut rng),
        );
        println!("dependent random load over {} MiB: {huge:.1} ns with huge pages advised, {small:.1} ns without", args.chase_mib);
        let mut report = JsonLine::new();
        report
            .set("chase_mib", args.chase_mib as f64)
            .set("chase_ns_huge_pages", huge)
            .set("chase_ns_small_pages", small);
        println!("{}", report.to_json());
        return;
    }

    // Keys: `keys` to build with, `inserts` more (absent at build) to insert later.
    let all = distinct_keys(args.dist, args.keys + args.inserts, &mut rng);
    let (base, mut fresh): (Vec<i64>, Vec<i64>) = if args.dist == Dist::Sequential {
        (all[..args.keys].to_vec(), all[args.keys..].to_vec())
    } else {
        let mut chosen = vec![false; all.len()];
        let mut left = args.inserts;
        while left > 0 {
            let index = rng.below_usize(all.len());
            if !chosen[index] {
                chosen[index] = true;
                left -= 1;
            }
        }
        let mut base = Vec::with_capacity(args.keys);
        let mut fresh = Vec::with_capacity(args.inserts);
        for (key, picked) in all.iter().zip(chosen) {
            if picked {
                fresh.push(*key);
            } else {
                base.push(*key);
            }
        }
        rng.shuffle(&mut fresh);
        (base, fresh)
    };
    drop(all);
    if args.dist == Dist::Sequential {
        // Appends arrive in order.
        fresh.sort_unstable();
    }
    let pairs: Vec<(i64, u64)> = base.iter().map(|k| (*k, *k as u64 ^ 0x5555)).collect();
    let lookups: Vec<i64> = (0..args.lookups)
        .map(|_| base[rng.below_usize(base.len())])
        .collect();
    let scan_starts: Vec<i64> = (0..args.scans)
        .map(|_| base[rng.below_usize(base.len())])
        .collect();
    let mut build_order = if args.build_by_insert {
        pairs.clone()
    } else {
        Vec::new()
    };
    rng.shuffle(&mut build_order);

    // Build.
    let heap_before = heap_bytes();
    let started = Instant::now();
    let mut alex = if args.build_by_insert {
        let mut index = AlexIndex::new();
        for (key, value) in &build_order {
            index.insert(*key, *value);
        }
        index
    } else {
        match AlexIndex::bulk_load(&pairs) {
            Ok(index) => index,
            Err(problem) => {
                eprintln!("bench_index: bulk load failed: {problem}");
                std::process::exit(1);
            }
        }
    };
    let alex_build = started.elapsed();
    let alex_heap = heap_bytes() - heap_before;
    let alex_bytes = alex.bytes_used();

    let heap_before = heap_bytes();
    let started = Instant::now();
    let mut btree: BTreeMap<i64, u64> = if args.build_by_insert {
        let mut map = BTreeMap::new();
        for (key, value) in &build_order {
            map.insert(*key, *value);
        }
        map
    } else {
        pairs.iter().copied().collect()
    };
    let btree_build = started.elapsed();
    let btree_heap = heap_bytes() - heap_before;
    drop(build_order);
    drop(pairs);
    let stats = alex.stats();
    println!(
        "built {} {} keys ({}): alex {:.0} ms, btree {:.0} ms; alex {stats:?}",
        args.keys,
        args.dist.name(),
        if args.build_by_insert {
            "inserts"
        } else {
            "bulk load"
        },
        alex_build.as_secs_f64() * 1e3,
        btree_build.as_secs_f64() * 1e3,
    );

    // Lookups of present keys, warm-up pass on a prefix first.
    let warm = lookups.len().min(100_000);
    let mut checksum = 0u64;
    for key in &lookups[..warm] {
        checksum ^= alex.get(*key).unwrap_or(0) ^ btree.get(key).copied().unwrap_or(0);
    }
    let started = Instant::now();
    for key in &lookups {
        checksum = checksum.wrapping_add(black_box(alex.get(black_box(*key))).unwrap_or(1));
    }
    let alex_get = ns_per(started.elapsed(), lookups.len());
    let started = Instant::now();
    for key in &lookups {
        checksum =
            checksum.wrapping_add(black_box(btree.get(black_box(key))).copied().unwrap_or(1));
    }
    let btree_get = ns_per(started.elapsed(), lookups.len());
    let missing = lookups.iter().filter(|k| alex.get(**k).is_none()).count();
    if missing > 0 {
        eprintln!("bench_index: {missing} present keys not found by ALEX");
        std::process::exit(1);
    }
    println!(
        "lookups: alex {alex_get:.1} ns, btree {btree_get:.1} ns, ratio {:.2}",
        btree_get / alex_get
    );

    // Range scans.
    let started = Instant::now();
    let mut scanned = 0usize;
    for start in &scan_starts {
        for (key, value) in alex
            .range(Bound::Included(*start), Bound::Unbounded)
            .take(args.scan_len)
        {
            checksum = checksum.wrapping_add(key as u64 ^ value);
            scanned += 1;
        }
    }
    let alex_scan = ns_per(started.elapsed(), scanned);
    let started = Instant::now();
    let mut btree_scanned = 0usize;
    for start in &scan_starts {
        for (key, value) in btree.range(*start..).take(args.scan_len) {
            checksum = checksum.wrapping_add(*key as u64 ^ *value);
            btree_scanned += 1;
        }
    }
    let btree_scan = ns_per(started.elapsed(), btree_scanned);
    println!(
        "scans of {}: alex {alex_scan:.2} ns/key, btree {btree_scan:.2} ns/key",
        args.scan_len
    );

    // Inserts of keys not yet present.
    let started = Instant::now();
    for key in &fresh {
        checksum = checksum.wrapping_add(u64::from(alex.insert(*key, *key as u64)));
    }
    let alex_insert = ns_per(started.elapsed(), fresh.len());
    let started = Instant::now();
    for key in &fresh {
        checksum = checksum.wrapping_add(u64::from(btree.insert(*key, *key as u64).is_none()));
    }
    let btree_insert = ns_per(started.elapsed(), fresh.len());
    if alex.len() != btree.len() {
        eprintln!(
            "bench_index: ALEX holds {} keys, BTreeMap {}",
            alex.len(),
            btree.len()
        );
        std::process::exit(1);
    }
    println!(
        "inserts: alex {alex_insert:.1} ns, btree {btree_insert:.1} ns, ratio {:.2}",
        btree_insert / alex_insert
    );
    let alex_bytes_after = alex.bytes_used();
    println!(
        "memory: alex {:.2} B/key (accounted, {:.2} after inserts; heap growth {:.2}), btree {:.2} B/key (heap growth)",
        alex_bytes as f64 / args.keys as f64,
        alex_bytes_after as f64 / alex.len() as f64,
        alex_heap as f64 / args.keys as f64,
        btree_heap as f64 / args.keys as f64,
    );
    println!("checksum {checksum}");
    let mut report = JsonLine::new();
    report
        .set("keys", args.keys as f64)
        .set_text("dist", args.dist.name())
        .set_text(
            "build",
            if args.build_by_insert {
                "insert"
            } else {
                "bulk"
            },
        )
        .set("alex_get_ns", alex_get)
        .set("btree_get_ns", btree_get)
        .set("alex_insert_ns", alex_insert)
        .set("btree_insert_ns", btree_insert)
        .set("alex_bytes_per_key", alex_bytes as f64 / args.keys as f64)
        .set("btree_bytes_per_key", btree_heap as f64 / args.keys as f64)
        .set(
            "alex_bytes_per_key_after_inserts",
            alex_bytes_after as f64 / alex.len() as f64,
        )
        .set("alex_range_ns_per_key", alex_scan)
        .set("btree_range_ns_per_key", btree_scan)
        .set("range_len", args.scan_len as f64)
        .set("alex_build_ms", alex_build.as_secs_f64() * 1e3)
        .set("btree_build_ms", btree_build.as_secs_f64() * 1e3)
        .set("alex_depth_max", stats.depth_max as f64)
        .set("alex_data_nodes", stats.data_nodes as f64);
    println!("{}", report.to_json());
}
