//! Benchmark: the HTAP case at scale, through the public API only. Loads `--rows` rows of
//! `t(k Int64 pk, v Int64 uniform in [0, 1e9), s Utf8 of 8-16 alphanumerics)` in batches of
//! `--batch` rows under `Durability::Batch`, with the hot tier capped at `--hot` rows and a
//! checkpoint every `--checkpoint-every` rows (default: rows / 20), then measures:
//!
//! - ingest rows/s, checkpoints (flushes) included, and the time spent in checkpoints;
//! - full `sum(v)` over hot and cold through `scan_stream(.., ["v"])`, one thread, median of
//!   `--repeat` runs, page cache warm;
//! - `sum(v)` over a range of `--range` keys (default 1M) at random places, median;
//! - point gets of hot keys and of cold keys, p50 and p99;
//! - reopen (close, open, first get) time;
//! - bytes on disk per row, cold-tier memory per cold row, peak RSS (VmHWM).
//!
//! Key orders (`--dist`): `shuffled` (a permutation of 0..rows: every batch lands all over
//! the key space, the case users have), `sequential` (0..rows in order: the easy case), and
//! `zipf` (inserts shuffled; the point gets draw ranks by YCSB's Zipfian law, theta 0.99,
//! scattered by the key order, so a few keys take most reads; see `omendb_keygen::Dist`).
//!
//! With `--compact`, the compaction worker merges segments in the background during the
//! load and the reads (it needs `--checkpoint-every` small enough that the hot tier stays
//! near `--hot`; for 1B rows, `--checkpoint-every 5000000`).
//!
//! With `--flush-worker`, the loader never checkpoints: the engine's flush worker moves rows
//! to the cold tier whenever the hot tier passes `--hot` (off the write lock: writers wait
//! only for the copy of the rows and the swap) and checkpoints after each flush, on the
//! other core, as an application that leaves maintenance to the engine would run it. The
//! load ends with one checkpoint, timed in the ingest.
//!
//! With `--checkpoint-thread`, the loader asks a thread of its own for each checkpoint (the
//! same schedule, every `--checkpoint-every` rows; a request made while one runs waits for
//! it, at most one queued) and goes on loading: an application that checkpoints beside its
//! writers. Writers then wait only for what a checkpoint does under the state's locks.
//!
//! With `OMENDB_SPANS=1`, the engine's tracing spans (flush copy, flush write, install,
//! checkpoint copy and finish) print their busy time to stderr as they close.
//!
//! With `--duckdb`, runs `scripts/duckdb-bench.sh` over the same database directory
//! afterwards (DuckDB over the cold segment files, and a native DuckDB table of the same
//! rows) and prints the ratios. The last line is one JSON object.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin bench_htap -- --rows 10000000 --hot 1000000 --dist shuffled --duckdb
//! ```
//!
//! Benchmarks sit outside the engine library and its Env boundary: they read the clock and
//! /proc directly.

/// With `--features mimalloc`: an application's allocator choice. glibc's malloc spends a
/// fifth of a long shuffled load consolidating the rows each batch frees (docs/BENCHMARKS.md),
/// so both are measured.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
/// The allocator, as the JSON line names it.
const ALLOCATOR_NAME: &str = if cfg!(feature = "mimalloc") {
    "mimalloc"
} else {
    "glibc"
};

use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value};
use omendb_bench::{arg, dir_bytes, flag, median, num, s_of, status_kb, v_of, KeyOrder};
use omendb_keygen::{splitmix64, unit_f64, Dist, Zipf};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An `insert_batch` of 10,000 rows takes about 7 ms unblocked; a call over this waited.
const STALL_BATCH: Duration = Duration::from_millis(20);

fn row_of(key: u64) -> Vec<Value> {
    vec![
        Value::Int64(key as i64),
        Value::Int64(v_of(key)),
        Value::Utf8(s_of(key)),
    ]
}

fn quantile_ns(xs: &mut [u64], q: f64) -> u64 {
    xs.sort_unstable();
    xs[((xs.len() - 1) as f64 * q) as usize]
}

/// `sum(v)` and the row count of the rows with keys in `range`, through the stream, and
/// the seconds it took to make the stream (which exports the hot rows).
fn sum_v_timed(
    db: &Database,
    range: std::ops::RangeInclusive<i64>,
) -> omendb::Result<(i64, u64, f64)> {
    let mut sum = 0i64;
    let mut rows = 0u64;
    let made = Instant::now();
    let stream = db.scan_stream("t", range, Some(&["v"]))?;
    let made = made.elapsed().as_secs_f64();
    for batch in stream {
        let batch = batch?;
        let v = batch
            .column(0)
            .as_any()
            .downcast_ref::<omendb_sql::datafusion::arrow::array::Int64Array>()
            .expect("column v is Int64");
        sum = v.values().iter().fold(sum, |acc, x| acc.wrapping_add(*x));
        rows += batch.num_rows() as u64;
    }
    Ok((sum, rows, made))
}

/// [`sum_v_timed`] without the time.
fn sum_v(db: &Database, range: std::ops::RangeInclusive<i64>) -> omendb::Result<(i64, u64)> {
    sum_v_timed(db, range).map(|(sum, rows, _)| (sum, rows))
}

fn main() -> omendb::Result<()> {
    let rows = num("--rows", 1_000_000);
    let hot = num("--hot", rows / 10) as usize;
    let batch = num("--batch", 10_000);
    let every = num("--checkpoint-every", (rows / 20).max(1));
    let repeat = num("--repeat", 5) as usize;
    let range_keys = num("--range", 1_000_000).min(rows) as i64;
    let gets = num("--gets", 20_000);
    let dist = arg("--dist").unwrap_or_else(|| "shuffled".into());
    let dir = arg("--dir").unwrap_or_else(|| "/tmp/omendb-bench-htap".into());
    let supported = [Dist::Shuffled, Dist::Sequential, Dist::Zipf];
    let shuffled = match Dist::parse(&dist, &supported) {
        Ok(parsed) => parsed != Dist::Sequential,
        Err(problem) => {
            eprintln!("{problem}");
            std::process::exit(2)
        }
    };
    // `--reuse`: measure a directory an earlier run of the same `--rows` and `--dist` loaded
    // (the load is skipped; for profiling the read paths).
    let reuse = flag("--reuse") && Path::new(&dir).exists();
    if !reuse && !flag("--open-only") {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let options = Options {
        sync: Durability::Batch {
            max_delay: Duration::from_millis(10),
        },
        hot_rows_max: Some(hot),
        // `--compact`: the background compaction worker runs during the load (size-tiered
        // merges off the write lock), as a long-lived database would.
        compaction_worker: flag("--compact"),
        flush_worker: flag("--flush-worker"),
        ..Options::default()
    };
    if std::env::var_os("OMENDB_SPANS").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
            .with_env_filter("omendb=info")
            .init();
    }
    let flush_worker = options.flush_worker;
    let checkpoint_thread = flag("--checkpoint-thread") && !flush_worker;
    let loader_checkpoints = !flush_worker;
    // `--no-mmap`: every segment read is a pread (a copy), as before mapped reads.
    // `--no-whole-map`: large reads map and unmap their own range, as before segments
    // were kept mapped whole.
    let env = || match (flag("--no-mmap"), flag("--no-whole-map")) {
        (true, _) => omendb::Env::of_os(omendb::env::OsEnv::without_mapped_reads()),
        (false, true) => {
            omendb::Env::of_os(omendb::env::OsEnv::new().with_whole_mapped_bytes_max(0))
        }
        (false, false) => omendb::Env::os(),
    };
    // `--open-only` (run by the benchmark itself): open the directory in this fresh
    // process, read one cold key, print the seconds that took on stdout, and stop.
    if flag("--open-only") {
        let t = Instant::now();
        let db = Database::open_with_env(env(), &dir, options)?;
        let first = db.get("t", 0)?;
        let open_s = t.elapsed().as_secs_f64();
        assert!(first.is_some(), "key 0 is loaded");
        println!("{open_s}");
        db.close()?;
        return Ok(());
    }
    let db = Arc::new(Database::open_with_env(env(), &dir, options.clone())?);
    // `--checkpoint-thread`: the checkpointer, fed by a queue of one request.
    let (ask, checkpointer) = if checkpoint_thread {
        let (ask, asked) = std::sync::mpsc::sync_channel::<()>(1);
        let db = Arc::clone(&db);
        let thread = std::thread::spawn(move || -> omendb::Result<(f64, u64)> {
            let (mut busy_s, mut done) = (0.0, 0);
            while asked.recv().is_ok() {
                let t = Instant::now();
                db.checkpoint()?;
                busy_s += t.elapsed().as_secs_f64();
                done += 1;
            }
            Ok((busy_s, done))
        });
        (Some(ask), Some(thread))
    } else {
        (None, None)
    };
    if !reuse {
        db.create_table(TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
                Column::new("s", DataType::Utf8),
            ],
        )?)?;
    }
    let order = KeyOrder::new(rows, shuffled);
    let started = Instant::now();
    let mut checkpoint_s = 0.0;
    let mut checkpoints = 0;
    let mut since = 0u64;
    let mut expected_sum = 0i64;
    let mut i = 0u64;
    let mut last_report = Instant::now();
    // Seconds each tenth of the rows took to load (issue 16's linearity: each 100M of 1B
    // within 20% of the mean); the last tenth ends after the final checkpoint.
    let mut tenths: Vec<f64> = Vec::with_capacity(10);
    let mut tenth_started = 0.0f64;
    // Time inside `insert_batch`, and the part of it spent in calls slower than
    // `STALL_BATCH` (a writer waiting for a flush's or checkpoint's lock, or back-pressure).
    let (mut insert_s, mut stall_s, mut stall_max_s) = (0.0f64, 0.0f64, 0.0f64);
    if reuse {
        expected_sum = (0..rows).map(v_of).fold(0i64, i64::wrapping_add);
        i = rows;
    }
    while i < rows {
        let end = (i + batch).min(rows);
        let batch_rows: Vec<Vec<Value>> = (i..end).map(|j| row_of(order.key(j))).collect();
        for r in &batch_rows {
            if let Value::Int64(v) = r[1] {
                expected_sum = expected_sum.wrapping_add(v);
            }
        }
        let t = Instant::now();
        db.insert_batch("t", batch_rows)?;
        let took = t.elapsed().as_secs_f64();
        insert_s += took;
        if took > STALL_BATCH.as_secs_f64() {
            stall_s += took;
            stall_max_s = stall_max_s.max(took);
        }
        since += end - i;
        i = end;
        if tenths.len() < 9 && i >= rows / 10 * (tenths.len() as u64 + 1) {
            let now = started.elapsed().as_secs_f64();
            tenths.push(now - tenth_started);
            tenth_started = now;
        }
        if since >= every && loader_checkpoints {
            let t = Instant::now();
            match &ask {
                // Blocks only when a request is already queued behind a running checkpoint.
                Some(ask) => {
                    if ask.send(()).is_err() {
                        break;
                    }
                }
                None => {
                    db.checkpoint()?;
                    checkpoints += 1;
                }
            }
            checkpoint_s += t.elapsed().as_secs_f64();
            since = 0;
        }
        if last_report.elapsed() > Duration::from_secs(30) {
            last_report = Instant::now();
            eprintln!(
                "  {i} rows, {:.0} rows/s, {} segments, {} hot rows",
                i as f64 / started.elapsed().as_secs_f64(),
                db.cold_segment_count("t")?,
                db.hot_row_count("t")?
            );
        }
    }
    let t = Instant::now();
    // The checkpointer finishes what it was asked for; the load ends with one more
    // checkpoint, timed in the ingest either way.
    drop(ask);
    let mut checkpointer_busy_s = 0.0;
    if let Some(thread) = checkpointer {
        let (busy_s, done) = match thread.join() {
            Ok(done) => done?,
            Err(_) => {
                eprintln!("the checkpoint thread panicked");
                std::process::exit(1)
            }
        };
        checkpointer_busy_s = busy_s;
        checkpoints += done;
    }
    if !reuse {
        db.checkpoint()?;
        checkpoints += 1;
    }
    checkpoint_s += t.elapsed().as_secs_f64();
    let db = match Arc::try_unwrap(db) {
        Ok(db) => db,
        Err(_) => {
            eprintln!("the database is still shared after the load");
            std::process::exit(1)
        }
    };
    let load_s = started.elapsed().as_secs_f64();
    let ingest_rows_per_s = rows as f64 / load_s;
    if !reuse {
        tenths.push(load_s - tenth_started);
    }
    // With the worker on, finish the merges it has left before measuring reads.
    let t = Instant::now();
    let mut drain_steps = 0;
    if flag("--compact") {
        while db.compact_step()? {
            drain_steps += 1;
        }
    }
    let drain_s = t.elapsed().as_secs_f64();
    let segments = db.cold_segment_count("t")?;
    let hot_rows = db.row_count("t")? as u64;
    eprintln!(
        "ingest: {rows} rows in {load_s:.1} s = {ingest_rows_per_s:.0} rows/s ({checkpoints} checkpoints, {checkpoint_s:.1} s; {segments} segments; then {drain_steps} compaction steps in {drain_s:.1} s)"
    );
    if checkpoint_thread {
        eprintln!("  the checkpoint thread was busy {checkpointer_busy_s:.1} s");
    }
    let tenths_text: Vec<String> = tenths.iter().map(|t| format!("{t:.1}")).collect();
    let tenth_mean = load_s / tenths.len().max(1) as f64;
    let tenth_spread = tenths
        .iter()
        .map(|t| (t / tenth_mean - 1.0).abs())
        .fold(0.0f64, f64::max);
    eprintln!(
        "  each tenth of the rows, s: {} (the farthest {:.0}% from the mean)",
        tenths_text.join(", "),
        tenth_spread * 100.0
    );
    eprintln!(
        "  inside insert_batch {insert_s:.1} s, of which {stall_s:.1} s in calls over {} ms (longest {:.0} ms)",
        STALL_BATCH.as_millis(),
        stall_max_s * 1e3
    );
    // A reused directory holds the 10,000 fresh keys of the earlier run's gets too.
    let fresh_loaded = reuse && hot_rows == rows + 10_000;
    if fresh_loaded {
        expected_sum = (rows..rows + 10_000).fold(expected_sum, |s, k| s.wrapping_add(v_of(k)));
    }
    let rows_seen = if fresh_loaded { rows + 10_000 } else { rows };
    assert_eq!(hot_rows, rows_seen, "row count");

    // Full sum, warm: one untimed pass, then the median of `repeat`.
    let (sum, counted) = sum_v(&db, i64::MIN..=i64::MAX)?;
    assert_eq!(
        (sum, counted),
        (expected_sum, rows_seen),
        "sum(v) and count"
    );
    let mut times = Vec::new();
    let mut made_times = Vec::new();
    for _ in 0..repeat {
        let t = Instant::now();
        let (s, _, made) = sum_v_timed(&db, i64::MIN..=i64::MAX)?;
        times.push(t.elapsed().as_secs_f64());
        made_times.push(made);
        assert_eq!(s, expected_sum);
    }
    let sum_s = median(times);
    let sum_hot_export_s = median(made_times);
    let sum_rows_per_s = rows as f64 / sum_s;
    eprintln!("full sum(v): {sum_s:.3} s = {sum_rows_per_s:.0} rows/s (median of {repeat})");
    eprintln!(
        "  of which making the stream (the hot rows' export): {:.1} ms (median)",
        sum_hot_export_s * 1e3
    );

    // Range sums at `repeat` random places.
    let mut times = Vec::new();
    for r in 0..repeat.max(1) as u64 {
        let lo = (splitmix64(r + 77) % (rows - range_keys as u64 + 1)) as i64;
        let hi = lo + range_keys - 1;
        let t = Instant::now();
        let (s, n) = sum_v(&db, lo..=hi)?;
        times.push(t.elapsed().as_secs_f64());
        let want: i64 = (lo..=hi).map(|k| v_of(k as u64)).sum();
        assert_eq!((s, n), (want, range_keys as u64), "range {lo}..={hi}");
    }
    let range_s = median(times);
    eprintln!(
        "range sum of {range_keys} keys: {:.2} ms (median of {repeat})",
        range_s * 1e3
    );

    // Point gets. Keys below rows / 2 are cold after the last flush (flushes move the
    // lowest keys); new keys inserted now stay hot.
    if !fresh_loaded {
        let fresh: Vec<Vec<Value>> = (rows..rows + 10_000).map(row_of).collect();
        db.insert_batch("t", fresh)?;
    }
    let cold_keys = (rows / 2).max(1);
    let zipf = if dist == "zipf" {
        match Zipf::new(cold_keys, Zipf::THETA_YCSB) {
            Ok(zipf) => Some(zipf),
            Err(problem) => {
                eprintln!("{problem}");
                std::process::exit(2)
            }
        }
    } else {
        None
    };
    let draw = |g: u64| -> i64 {
        let raw = splitmix64(g ^ 0xC01D);
        match &zipf {
            Some(zipf) => order.key(zipf.rank(unit_f64(raw))) as i64 % cold_keys as i64,
            None => (raw % cold_keys) as i64,
        }
    };
    // Warm the key page cache and the OS page cache as a steady state would.
    for g in 0..gets.min(5_000) {
        db.get("t", draw(g + 1_000_000))?;
    }
    let mut cold_ns = Vec::with_capacity(gets as usize);
    for g in 0..gets {
        let key = draw(g);
        let t = Instant::now();
        let row = db.get("t", key)?;
        cold_ns.push(t.elapsed().as_nanos() as u64);
        assert_eq!(row, Some(row_of(key as u64)), "key {key}");
    }
    let mut hot_ns = Vec::with_capacity(gets as usize);
    for g in 0..gets {
        let key = rows + splitmix64(g) % 10_000;
        let t = Instant::now();
        let row = db.get("t", key as i64)?;
        hot_ns.push(t.elapsed().as_nanos() as u64);
        assert!(row.is_some());
    }
    let (cold_p50, cold_p99) = (
        quantile_ns(&mut cold_ns, 0.5),
        quantile_ns(&mut cold_ns, 0.99),
    );
    let (hot_p50, hot_p99) = (
        quantile_ns(&mut hot_ns, 0.5),
        quantile_ns(&mut hot_ns, 0.99),
    );
    eprintln!(
        "cold get p50 {:.1} us p99 {:.1} us; hot get p50 {:.2} us p99 {:.2} us",
        cold_p50 as f64 / 1e3,
        cold_p99 as f64 / 1e3,
        hot_p50 as f64 / 1e3,
        hot_p99 as f64 / 1e3
    );
    let cold_memory = db.cold_memory_bytes("t")?;
    db.close()?;
    let disk_bytes = dir_bytes(Path::new(&dir));
    let bytes_per_row = disk_bytes as f64 / rows as f64;

    let t = Instant::now();
    let db = Database::open_with_env(env(), &dir, options)?;
    let first = db.get("t", draw(7))?;
    let reopen_s = t.elapsed().as_secs_f64();
    assert!(first.is_some());
    db.close()?;
    let rss_bytes = status_kb("VmHWM:") * 1024;
    // The open an application sees after a restart: a new process, whose memory is all
    // fresh (the reopen above also pays for this process's freed memory).
    let mut fresh_times = Vec::new();
    for _ in 0..3 {
        let out = std::env::current_exe().and_then(|exe| {
            std::process::Command::new(exe)
                .args(std::env::args().skip(1))
                .arg("--open-only")
                .output()
        });
        let open_s = out.as_ref().ok().and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout);
            out.status
                .success()
                .then(|| text.trim().parse::<f64>().ok())?
        });
        match (open_s, &out) {
            (Some(open_s), _) => fresh_times.push(open_s),
            (None, Ok(out)) => {
                eprintln!(
                    "the open in a new process failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                std::process::exit(1)
            }
            (None, Err(e)) => {
                eprintln!("the open in a new process could not start: {e}");
                std::process::exit(1)
            }
        }
    }
    let open_new_process_s = median(fresh_times);
    let cold_rows = rows.saturating_sub((hot / 2) as u64).max(1);
    eprintln!(
        "reopen {reopen_s:.3} s (in this process, after close); open in a new process {open_new_process_s:.3} s (median of 3)"
    );
    eprintln!(
        "disk {bytes_per_row:.1} bytes/row; cold tier memory {:.2} bytes/cold row; peak RSS {:.2} GB",
        cold_memory as f64 / cold_rows as f64,
        rss_bytes as f64 / 1e9
    );

    let mut duck = String::new();
    if flag("--duckdb") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/duckdb-bench.sh");
        let out = std::process::Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg(range_keys.to_string())
            .arg(repeat.to_string())
            .output();
        match out {
            Ok(out) if out.status.success() => {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(line) = text.lines().rev().find(|l| l.starts_with('{')) {
                    eprintln!("duckdb: {line}");
                    let field = |name: &str| -> Option<f64> {
                        let at = line.find(&format!("\"{name}\":"))? + name.len() + 3;
                        line[at..].split([',', '}']).next()?.trim().parse().ok()
                    };
                    if let (Some(files), Some(native)) = (
                        field("files_sum_rows_per_s"),
                        field("native_sum_rows_per_s"),
                    ) {
                        eprintln!(
                            "full sum: OmenDB {:.2}x DuckDB over the same files, {:.2}x DuckDB native",
                            sum_rows_per_s / files,
                            sum_rows_per_s / native
                        );
                        duck = format!(
                            ",\"duckdb\":{line},\"sum_vs_duckdb_files\":{:.3},\"sum_vs_duckdb_native\":{:.3}",
                            sum_rows_per_s / files,
                            sum_rows_per_s / native
                        );
                    }
                }
            }
            Ok(out) => eprintln!(
                "duckdb script failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("duckdb script did not start: {e}"),
        }
    }
    println!(
        "{{\"rows\":{rows},\"hot_rows_max\":{hot},\"dist\":\"{dist}\",\"batch\":{batch},\"allocator\":\"{ALLOCATOR_NAME}\",\"flush_worker\":{},\"checkpoint_thread\":{checkpoint_thread},\"checkpointer_busy_s\":{checkpointer_busy_s:.2},\"ingest_rows_per_s\":{ingest_rows_per_s:.0},\"load_s\":{load_s:.2},\"checkpoints\":{checkpoints},\"checkpoint_s\":{checkpoint_s:.2},\"insert_s\":{insert_s:.2},\"stall_s\":{stall_s:.2},\"stall_max_ms\":{:.1},\"segments\":{segments},\"compaction_drain_s\":{drain_s:.2},\"sum_s\":{sum_s:.4},\"sum_hot_export_s\":{sum_hot_export_s:.4},\"sum_rows_per_s\":{sum_rows_per_s:.0},\"range_keys\":{range_keys},\"range_sum_ms\":{:.3},\"cold_get_p50_ns\":{cold_p50},\"cold_get_p99_ns\":{cold_p99},\"hot_get_p50_ns\":{hot_p50},\"hot_get_p99_ns\":{hot_p99},\"reopen_s\":{reopen_s:.3},\"open_new_process_s\":{open_new_process_s:.3},\"disk_bytes_per_row\":{bytes_per_row:.2},\"cold_memory_bytes_per_row\":{:.3},\"peak_rss_bytes\":{rss_bytes},\"tenths_s\":[{}]{duck}}}",
        flush_worker,
        stall_max_s * 1e3,
        range_s * 1e3,
        cold_memory as f64 / cold_rows as f64,
        tenths_text.join(",")
    );
    Ok(())
}
