//! Benchmark: the cold tier at scale. Loads `--rows` rows `(k Int64 pk, v Int64, s Utf8)`
//! with sequential keys into a database whose hot tier is capped at `--hot` rows (a
//! checkpoint flushes whenever the hot tier passes the cap), then measures a full-table
//! aggregate (`sum(v)` through `scan_batches` with projection `v`) and point reads of cold
//! keys. Prints peak RSS (VmHWM) and bytes on disk; the last line is one JSON object.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin bench_cold -- --rows 100000000 --hot 10000000 --dir /tmp/cold-bench
//! ```
//!
//! Benchmarks sit outside the engine library and its Env boundary: they read the clock
//! and /proc directly.

use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value};
use omendb_bench::{dir_bytes, num, status_kb};
use std::path::Path;
use std::time::Instant;

fn main() -> omendb::Result<()> {
    let rows = num("--rows", 1_000_000);
    let hot = num("--hot", 100_000) as usize;
    let batch = num("--batch", 100_000);
    let dir = std::env::args()
        .skip_while(|a| a != "--dir")
        .nth(1)
        .unwrap_or_else(|| "/tmp/omendb-bench-cold".into());
    let _ = std::fs::remove_dir_all(&dir);
    let db = Database::open(
        &dir,
        Options {
            sync: Durability::None,
            background_worker: false,
            hot_rows_max: Some(hot),
            compaction_worker: false,
            ..Options::default()
        },
    )?;
    db.create_table(TableDef::new(
        "t",
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("s", DataType::Utf8),
        ],
    )?)?;
    let started = Instant::now();
    let mut since_flush = 0usize;
    let mut checkpoints = 0;
    let mut k = 0u64;
    while k < rows {
        let end = (k + batch).min(rows);
        let batch_rows = (k..end)
            .map(|i| {
                vec![
                    Value::Int64(i as i64),
                    Value::Int64((i % 1000) as i64),
                    Value::Utf8(format!("s{}", i % 10_000)),
                ]
            })
            .collect();
        db.insert_batch("t", batch_rows)?;
        since_flush += (end - k) as usize;
        k = end;
        if since_flush > hot / 2 {
            db.checkpoint()?;
            checkpoints += 1;
            since_flush = 0;
        }
    }
    db.checkpoint()?;
    let load_s = started.elapsed().as_secs_f64();
    let segments = db.cold_segment_count("t")?;
    let key_bytes = db.cold_memory_bytes("t")?;
    eprintln!(
        "loaded {rows} rows in {load_s:.1} s ({checkpoints} checkpoints, {segments} segments)"
    );

    let started = Instant::now();
    let batches = db.scan_batches("t", .., Some(&["v"]))?;
    let mut sum = 0i64;
    let mut counted = 0u64;
    for b in &batches {
        let v = b
            .column(0)
            .as_any()
            .downcast_ref::<omendb_arrow::Int64Array>()
            .expect("Int64 column");
        sum = v.values().iter().fold(sum, |acc, x| acc.wrapping_add(*x));
        counted += b.num_rows() as u64;
    }
    drop(batches);
    let scan_s = started.elapsed().as_secs_f64();
    let expected: i64 = (0..rows).map(|i| (i % 1000) as i64).sum();
    assert_eq!(counted, rows, "row count of the scan");
    assert_eq!(sum, expected, "sum(v)");
    let scan_rows_per_s = rows as f64 / scan_s;
    eprintln!("sum(v) = {sum} over {counted} rows in {scan_s:.2} s: {scan_rows_per_s:.0} rows/s");

    let lookups = 10_000u64;
    let cold_rows = rows.saturating_sub(hot as u64).max(1);
    let started = Instant::now();
    for i in 0..lookups {
        let key = (i.wrapping_mul(2_654_435_761) % cold_rows) as i64;
        let row = db.get("t", key)?;
        assert!(row.is_some(), "key {key}");
    }
    let get_us = started.elapsed().as_secs_f64() * 1e6 / lookups as f64;
    let disk_bytes = dir_bytes(Path::new(&dir));
    let rss = status_kb("VmHWM:") * 1024;
    eprintln!(
        "cold point read {get_us:.1} us; disk {disk_bytes} bytes; peak RSS {rss} bytes; cold tier memory {key_bytes} bytes"
    );
    println!(
        "{{\"rows\":{rows},\"hot_rows_max\":{hot},\"load_s\":{load_s:.2},\"checkpoints\":{checkpoints},\"segments\":{segments},\"scan_sum_s\":{scan_s:.3},\"scan_rows_per_s\":{scan_rows_per_s:.0},\"cold_get_us\":{get_us:.2},\"disk_bytes\":{disk_bytes},\"peak_rss_bytes\":{rss},\"cold_memory_bytes\":{key_bytes}}}"
    );
    db.close()
}

mod omendb_arrow {
    pub use omendb_sql::datafusion::arrow::array::Int64Array;
}
