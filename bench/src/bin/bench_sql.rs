//! Benchmark: SQL over OmenDB (DataFusion through `omendb-sql`) against the engine's own
//! streaming scan, SQLite and DuckDB, on the same rows in the same run.
//!
//! Loads `--rows` rows of `t(k BIGINT PRIMARY KEY, v BIGINT uniform in [0, 1e9), g BIGINT
//! in 0..16, s VARCHAR of 8-16 chars)` through the engine API, keys shuffled (a permutation
//! of 0..rows, so every batch lands all over the key space), batches of `--batch` rows
//! under `Durability::Batch`, the hot tier capped at `--hot` rows (default rows / 10) and a
//! checkpoint every rows / 20, so most rows end in cold segments. Then, page cache warm,
//! medians of `--repeat` runs after one untimed run:
//!
//! - `SELECT sum(v) FROM t`, and the engine's `scan_stream(.., ["v"])` summing the same;
//! - `SELECT sum(v) FROM t WHERE k BETWEEN a AND b` over `--range` keys (default 1M) at
//!   random places, and the engine's range scan of the same keys;
//! - `SELECT v, s FROM t WHERE k = c` for `--points` random keys (9 in 10 cold): p50 and
//!   p99 of the whole query, of DataFusion's planning alone (SQL text to physical plan) and
//!   of execution alone, with the engine's `get` of the same keys;
//! - `SELECT g, count(*), sum(v) FROM t GROUP BY g`.
//!
//! Every answer is checked (sums against the generator, the group counts against rows).
//! SQLite (rusqlite, bundled; unless `--no-sqlite`) gets the same rows in a rowid table
//! `k INTEGER PRIMARY KEY` and the same queries, point queries both prepared once and
//! prepared per query. With `--duckdb`, the rows are exported to one Parquet file and
//! `scripts/duckdb-sql-bench.sh` loads them into a DuckDB table with `k` as PRIMARY KEY
//! (inserted in key order: DuckDB's best case for ranges) and runs the same queries. The
//! last line printed is one JSON object.
//!
//! ```text
//! cargo run --release -p omendb-bench --bin bench_sql -- --rows 10000000 --duckdb
//! ```

use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value};
use omendb_bench::{
    arg, flag, load_average, median, num, quantile, s_of, status_kb, v_of, KeyOrder,
};
use omendb_keygen::splitmix64;
use omendb_sql::datafusion::arrow::array::{Array, Int64Array, RecordBatch};
use omendb_sql::datafusion::physical_plan::collect;
use omendb_sql::SqlSession;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error>;

const GROUPS: u64 = 16;
fn g_of(key: u64) -> i64 {
    (splitmix64(key ^ 0x6767) % GROUPS) as i64
}

fn row_of(key: u64) -> Vec<Value> {
    vec![
        Value::Int64(key as i64),
        Value::Int64(v_of(key)),
        Value::Int64(g_of(key)),
        Value::Utf8(s_of(key)),
    ]
}

fn int(batch: &RecordBatch, column: usize, row: usize) -> Result<i64, BoxError> {
    let array = batch
        .column(column)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or("an Int64 column")?;
    Ok(array.value(row))
}

/// The one Int64 value a one-row, one-column result holds (NULL as 0).
fn scalar(batches: &[RecordBatch]) -> Result<i64, BoxError> {
    let batch = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .ok_or("an empty result")?;
    if batch.column(0).is_null(0) {
        return Ok(0);
    }
    int(batch, 0, 0)
}

/// `sum(v)` and the rows of `range` through the engine's streaming scan.
fn engine_sum(db: &Database, range: std::ops::RangeInclusive<i64>) -> Result<(i64, u64), BoxError> {
    let mut sum = 0i64;
    let mut rows = 0u64;
    for batch in db.scan_stream("t", range, Some(&["v"]))? {
        let batch = batch?;
        let v = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or("column v is Int64")?;
        sum = v.values().iter().fold(sum, |acc, x| acc.wrapping_add(*x));
        rows += batch.num_rows() as u64;
    }
    Ok((sum, rows))
}

struct Timed {
    median_s: f64,
}

fn timed<T>(
    repeat: usize,
    mut run: impl FnMut() -> Result<T, BoxError>,
    check: impl Fn(&T) -> bool,
) -> Result<Timed, BoxError> {
    let first = run()?;
    if !check(&first) {
        return Err("a wrong answer".into());
    }
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let t = Instant::now();
        let out = run()?;
        times.push(t.elapsed().as_secs_f64());
        if !check(&out) {
            return Err("a wrong answer".into());
        }
    }
    Ok(Timed {
        median_s: median(times),
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_sql: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), BoxError> {
    let rows = num("--rows", 1_000_000).max(1);
    let hot = num("--hot", rows / 10) as usize;
    let batch = num("--batch", 10_000);
    let every = num("--checkpoint-every", (rows / 20).max(1));
    let repeat = num("--repeat", 5) as usize;
    let range_keys = num("--range", 1_000_000).min(rows) as i64;
    let points = num("--points", 2_000);
    let dir = arg("--dir").unwrap_or_else(|| "/tmp/omendb-bench-sql".into());
    let with_sqlite = !flag("--no-sqlite");
    let with_duckdb = flag("--duckdb");
    let load_before = load_average();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let db_dir = Path::new(&dir).join("omendb");
    let options = Options {
        sync: Durability::Batch {
            max_delay: Duration::from_millis(10),
        },
        hot_rows_max: Some(hot),
        compaction_worker: flag("--compact"),
        ..Options::default()
    };

    // Load through the engine.
    let db = Database::open(&db_dir, options)?;
    db.create_table(TableDef::new(
        "t",
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("g", DataType::Int64),
            Column::new("s", DataType::Utf8),
        ],
    )?)?;
    let order = KeyOrder::new(rows, true);
    let started = Instant::now();
    let mut since = 0;
    let mut i = 0;
    while i < rows {
        let end = (i + batch).min(rows);
        db.insert_batch("t", (i..end).map(|j| row_of(order.key(j))).collect())?;
        since += end - i;
        i = end;
        if since >= every {
            db.checkpoint()?;
            since = 0;
        }
    }
    db.checkpoint()?;
    let load_s = started.elapsed().as_secs_f64();
    let segments = db.cold_segment_count("t")?;
    eprintln!(
        "omendb: {rows} rows loaded in {load_s:.1} s ({:.0} rows/s), {segments} segments",
        rows as f64 / load_s
    );
    let expected_sum = (0..rows).map(v_of).fold(0i64, i64::wrapping_add);
    let mut expected_groups = [0u64; GROUPS as usize];
    for k in 0..rows {
        expected_groups[g_of(k) as usize] += 1;
    }
    let ranges: Vec<(i64, i64)> = (0..repeat as u64 + 1)
        .map(|r| {
            let lo = (splitmix64(r + 77) % (rows - range_keys as u64 + 1)) as i64;
            (lo, lo + range_keys - 1)
        })
        .collect();
    let range_sum =
        |lo: i64, hi: i64| -> i64 { (lo..=hi).map(|k| v_of(k as u64)).fold(0, i64::wrapping_add) };
    let range_sums: Vec<i64> = ranges.iter().map(|&(lo, hi)| range_sum(lo, hi)).collect();
    let point_keys: Vec<i64> = (0..points)
        .map(|p| (splitmix64(p ^ 0xC01D) % rows) as i64)
        .collect();

    let db = Arc::new(db);
    let runtime = tokio::runtime::Builder::new_multi_thread().build()?;
    let session = SqlSession::new(db.clone())?;
    let sql = |query: &str| -> Result<Vec<RecordBatch>, BoxError> {
        Ok(runtime.block_on(session.sql(query))?)
    };

    // Full sums.
    let engine_full = timed(
        repeat,
        || engine_sum(&db, i64::MIN..=i64::MAX),
        |&(s, n)| (s, n) == (expected_sum, rows),
    )?;
    let sql_full = timed(
        repeat,
        || scalar(&sql("SELECT sum(v) FROM t")?),
        |&s| s == expected_sum,
    )?;
    eprintln!(
        "full sum(v): SQL {:.3} s ({:.0} rows/s), engine scan {:.3} s ({:.0} rows/s): SQL/engine {:.2}",
        sql_full.median_s,
        rows as f64 / sql_full.median_s,
        engine_full.median_s,
        rows as f64 / engine_full.median_s,
        sql_full.median_s / engine_full.median_s
    );

    // Range sums: a different range each run.
    let mut at = 0usize;
    let engine_range = timed(
        repeat,
        || {
            at = (at + 1) % ranges.len();
            let (lo, hi) = ranges[at];
            Ok((engine_sum(&db, lo..=hi)?.0, at))
        },
        |&(s, at)| s == range_sums[at],
    )?;
    let mut at = 0usize;
    let sql_range = timed(
        repeat,
        || {
            at = (at + 1) % ranges.len();
            let (lo, hi) = ranges[at];
            Ok((
                scalar(&sql(&format!(
                    "SELECT sum(v) FROM t WHERE k BETWEEN {lo} AND {hi}"
                ))?)?,
                at,
            ))
        },
        |&(s, at)| s == range_sums[at],
    )?;
    let (lo, hi) = ranges[0];
    let explain = sql(&format!(
        "EXPLAIN SELECT sum(v) FROM t WHERE k BETWEEN {lo} AND {hi}"
    ))?;
    let explain =
        omendb_sql::datafusion::arrow::util::pretty::pretty_format_batches(&explain)?.to_string();
    let scan_line = explain
        .lines()
        .find(|l| l.contains("OmenScanExec"))
        .unwrap_or("(no OmenScanExec line)")
        .trim_matches(|c: char| c == '|' || c.is_whitespace())
        .to_string();
    eprintln!(
        "range sum of {range_keys} keys: SQL {:.2} ms, engine {:.2} ms; {scan_line}",
        sql_range.median_s * 1e3,
        engine_range.median_s * 1e3
    );

    // Point queries: planning and execution apart.
    let ctx = session.context();
    let (mut total_ns, mut plan_ns, mut exec_ns, mut get_ns) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut batch_ns = Vec::new();
    for (n, &key) in point_keys.iter().enumerate() {
        let query = format!("SELECT v, s FROM t WHERE k = {key}");
        let t0 = Instant::now();
        let plan =
            runtime.block_on(async { ctx.sql(&query).await?.create_physical_plan().await })?;
        let t1 = Instant::now();
        let batches = runtime.block_on(collect(plan, ctx.task_ctx()))?;
        let t2 = Instant::now();
        let got = batches.iter().find(|b| b.num_rows() > 0).ok_or("no row")?;
        if int(got, 0, 0)? != v_of(key as u64) {
            return Err(format!("wrong v for key {key}").into());
        }
        let t3 = Instant::now();
        let row = db.get("t", key)?;
        let t4 = Instant::now();
        let batch = db.get_many_batch("t", &[key], Some(&["v", "s"]))?;
        let t5 = Instant::now();
        if batch.num_rows() != 1 {
            return Err(format!("get_many_batch missed key {key}").into());
        }
        if row.as_deref() != Some(&row_of(key as u64)[..]) {
            return Err(format!("wrong row for key {key}").into());
        }
        // The first tenth warms caches.
        if n as u64 >= points / 10 {
            plan_ns.push((t1 - t0).as_nanos() as u64);
            exec_ns.push((t2 - t1).as_nanos() as u64);
            total_ns.push((t2 - t0).as_nanos() as u64);
            get_ns.push((t4 - t3).as_nanos() as u64);
            batch_ns.push((t5 - t4).as_nanos() as u64);
        }
    }
    let us = |ns: u64| ns as f64 / 1e3;
    let point = [
        quantile(&mut total_ns, 0.5),
        quantile(&mut total_ns, 0.99),
        quantile(&mut plan_ns, 0.5),
        quantile(&mut exec_ns, 0.5),
        quantile(&mut exec_ns, 0.99),
        quantile(&mut get_ns, 0.5),
        quantile(&mut batch_ns, 0.5),
    ];
    eprintln!(
        "k = c: SQL p50 {:.1} us (p99 {:.1}) = planning p50 {:.1} us + execution p50 {:.1} us (p99 {:.1}); engine get p50 {:.1} us, get_many_batch of the one key p50 {:.1} us",
        us(point[0]), us(point[1]), us(point[2]), us(point[3]), us(point[4]), us(point[5]), us(point[6])
    );

    // GROUP BY a low-cardinality column.
    let group = timed(
        repeat,
        || {
            let batches = sql("SELECT g, count(*), sum(v) FROM t GROUP BY g")?;
            let mut counts = [0u64; GROUPS as usize];
            for batch in &batches {
                for r in 0..batch.num_rows() {
                    counts[int(batch, 0, r)? as usize] += int(batch, 1, r)? as u64;
                }
            }
            Ok(counts)
        },
        |counts| *counts == expected_groups,
    )?;
    eprintln!("GROUP BY g ({GROUPS} groups): SQL {:.3} s", group.median_s);
    let rss = status_kb("VmHWM:") * 1024;

    let mut json = String::new();
    write!(
        json,
        "{{\"rows\":{rows},\"hot_rows_max\":{hot},\"segments\":{segments},\"load_s\":{load_s:.1},\
         \"load_average_before\":{load_before:.2},\"load_average_after\":{:.2},\
         \"omendb\":{{\"sql_sum_s\":{:.4},\"engine_sum_s\":{:.4},\"sql_over_engine_sum\":{:.3},\
         \"sql_range_ms\":{:.3},\"engine_range_ms\":{:.3},\"range_scan\":\"{}\",\
         \"point_p50_us\":{:.2},\"point_p99_us\":{:.2},\"point_planning_p50_us\":{:.2},\
         \"point_execution_p50_us\":{:.2},\"point_execution_p99_us\":{:.2},\"engine_get_p50_us\":{:.2},\"engine_get_many_batch_p50_us\":{:.2},\
         \"group_by_s\":{:.4},\"peak_rss_bytes\":{rss}}}",
        load_average(),
        sql_full.median_s,
        engine_full.median_s,
        sql_full.median_s / engine_full.median_s,
        sql_range.median_s * 1e3,
        engine_range.median_s * 1e3,
        scan_line.replace('"', "'"),
        us(point[0]),
        us(point[1]),
        us(point[2]),
        us(point[3]),
        us(point[4]),
        us(point[5]),
        us(point[6]),
        group.median_s,
    )?;

    if with_sqlite {
        json.push_str(&sqlite(
            &dir,
            rows,
            &order,
            repeat,
            &ranges,
            &range_sums,
            &point_keys,
            expected_sum,
        )?);
    }
    if with_duckdb {
        let export = Path::new(&dir).join("export.parquet");
        export_parquet(&db, &export)?;
        json.push_str(&duckdb(&export, repeat, &ranges, &point_keys)?);
    }
    drop(session);
    if let Ok(db) = Arc::try_unwrap(db) {
        db.close()?;
    }
    json.push('}');
    println!("{json}");
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn sqlite(
    dir: &str,
    rows: u64,
    order: &KeyOrder,
    repeat: usize,
    ranges: &[(i64, i64)],
    range_sums: &[i64],
    point_keys: &[i64],
    expected_sum: i64,
) -> Result<String, BoxError> {
    let path = Path::new(dir).join("sqlite.db");
    let mut conn = rusqlite::Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-1048576;
         CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL, g INTEGER NOT NULL, s TEXT NOT NULL);",
    )?;
    let started = Instant::now();
    let mut i = 0;
    while i < rows {
        let end = (i + 100_000).min(rows);
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO t VALUES (?1, ?2, ?3, ?4)")?;
            for j in i..end {
                let k = order.key(j);
                insert.execute(rusqlite::params![k as i64, v_of(k), g_of(k), s_of(k)])?;
            }
        }
        tx.commit()?;
        i = end;
    }
    let load_s = started.elapsed().as_secs_f64();
    eprintln!(
        "sqlite: loaded in {load_s:.1} s ({:.0} rows/s)",
        rows as f64 / load_s
    );
    let one = |sql: &str| -> Result<i64, BoxError> {
        Ok(conn
            .query_row(sql, [], |r| r.get::<_, Option<i64>>(0))?
            .unwrap_or(0))
    };
    let full = timed(
        repeat,
        || one("SELECT sum(v) FROM t"),
        |&s| s == expected_sum,
    )?;
    let mut at = 0usize;
    let range = timed(
        repeat,
        || {
            at = (at + 1) % ranges.len();
            let (lo, hi) = ranges[at];
            Ok((
                one(&format!(
                    "SELECT sum(v) FROM t WHERE k BETWEEN {lo} AND {hi}"
                ))?,
                at,
            ))
        },
        |&(s, at)| s == range_sums[at],
    )?;
    let group = timed(
        repeat,
        || {
            let mut statement = conn.prepare("SELECT g, count(*), sum(v) FROM t GROUP BY g")?;
            let n: i64 = statement
                .query_map([], |r| r.get::<_, i64>(1))?
                .collect::<rusqlite::Result<Vec<i64>>>()?
                .iter()
                .sum();
            Ok(n)
        },
        |&n| n as u64 == rows,
    )?;
    let (mut prepared_ns, mut unprepared_ns) = (Vec::new(), Vec::new());
    {
        let mut statement = conn.prepare("SELECT v, s FROM t WHERE k = ?1")?;
        for (n, &key) in point_keys.iter().enumerate() {
            let t = Instant::now();
            let v: i64 = statement.query_row([key], |r| r.get(0))?;
            let elapsed = t.elapsed().as_nanos() as u64;
            if v != v_of(key as u64) {
                return Err(format!("sqlite: wrong v for {key}").into());
            }
            if n >= point_keys.len() / 10 {
                prepared_ns.push(elapsed);
            }
        }
    }
    for (n, &key) in point_keys.iter().enumerate() {
        let t = Instant::now();
        let v: i64 = conn.query_row(&format!("SELECT v, s FROM t WHERE k = {key}"), [], |r| {
            r.get(0)
        })?;
        let elapsed = t.elapsed().as_nanos() as u64;
        if v != v_of(key as u64) {
            return Err(format!("sqlite: wrong v for {key}").into());
        }
        if n >= point_keys.len() / 10 {
            unprepared_ns.push(elapsed);
        }
    }
    let prepared = quantile(&mut prepared_ns, 0.5) as f64 / 1e3;
    let unprepared = quantile(&mut unprepared_ns, 0.5) as f64 / 1e3;
    eprintln!(
        "sqlite: sum {:.3} s, range {:.2} ms, k = c p50 {prepared:.1} us prepared / {unprepared:.1} us with prepare, GROUP BY {:.3} s",
        full.median_s,
        range.median_s * 1e3,
        group.median_s
    );
    drop(conn);
    let _ = std::fs::remove_file(&path);
    Ok(format!(
        ",\"sqlite\":{{\"load_s\":{load_s:.1},\"sum_s\":{:.4},\"range_ms\":{:.3},\"point_prepared_p50_us\":{prepared:.2},\
         \"point_p50_us\":{unprepared:.2},\"group_by_s\":{:.4}}}",
        full.median_s,
        range.median_s * 1e3,
        group.median_s
    ))
}

/// Every row of `t` into one Parquet file, for DuckDB to load.
fn export_parquet(db: &Database, path: &Path) -> Result<(), BoxError> {
    let schema = db.arrow_schema("t")?;
    let file = std::fs::File::create(path)?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(1 << 20))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, Some(props))?;
    for batch in db.scan_stream("t", .., None)? {
        writer.write(&batch?)?;
    }
    writer.close()?;
    Ok(())
}

fn duckdb(
    export: &Path,
    repeat: usize,
    ranges: &[(i64, i64)],
    point_keys: &[i64],
) -> Result<String, BoxError> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/duckdb-sql-bench.sh");
    let ranges: Vec<String> = ranges.iter().map(|(lo, hi)| format!("{lo}:{hi}")).collect();
    let keys: Vec<String> = point_keys.iter().map(i64::to_string).collect();
    let keys_file = export.with_extension("keys");
    std::fs::write(&keys_file, keys.join("\n"))?;
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(export)
        .arg(ranges.join(","))
        .arg(&keys_file)
        .arg(repeat.to_string())
        .output()?;
    if !out.status.success() {
        return Err(format!(
            "duckdb script failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or("no JSON from the duckdb script")?;
    eprintln!("duckdb: {line}");
    Ok(format!(",\"duckdb\":{line}"))
}
