//! What SQL statements do to an OmenDB database beyond answering queries: the access path
//! `EXPLAIN` shows for each kind of key filter, the errors bad statements get (and that
//! they change nothing), and the `omendb` command line.

use datafusion::arrow::array::{Array, Int64Array, StringArray};
use datafusion::arrow::util::pretty::pretty_format_batches;
use omendb::{Database, Options};
use omendb_sql::SqlSession;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    session: SqlSession,
}

impl Fixture {
    fn new(dir: &Path, options: Options) -> Fixture {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let db = Arc::new(Database::open(dir, options).expect("open"));
        let session = SqlSession::new(db).expect("session");
        let fixture = Fixture { runtime, session };
        fixture.run("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT NOT NULL, s VARCHAR)");
        let values: Vec<String> = (0..1_000)
            .map(|k| format!("({k}, {}, 's{k}')", k * 10))
            .collect();
        fixture.run(&format!("INSERT INTO t VALUES {}", values.join(", ")));
        fixture
    }

    fn run(&self, sql: &str) -> Vec<datafusion::arrow::array::RecordBatch> {
        self.runtime
            .block_on(self.session.sql(sql))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    fn error(&self, sql: &str) -> String {
        match self.runtime.block_on(self.session.sql(sql)) {
            Ok(batches) => panic!("{sql} succeeded: {batches:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// The text of `EXPLAIN sql`'s physical plan.
    fn plan(&self, sql: &str) -> String {
        let batches = self.run(&format!("EXPLAIN {sql}"));
        pretty_format_batches(&batches).expect("format").to_string()
    }

    /// `count(*)`, `sum(v)` and a digest of every row, to show a statement changed nothing.
    fn state(&self) -> (i64, i64, String) {
        let batches = self.run("SELECT count(*), sum(v) FROM t");
        let count = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0);
        let sum = batches[0]
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0);
        let rows = self.run("SELECT k, v, s FROM t ORDER BY k");
        let mut digest = String::new();
        for batch in &rows {
            let s = batch
                .column(2)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8");
            for i in 0..batch.num_rows() {
                digest.push_str(if s.is_null(i) { "-" } else { s.value(i) });
            }
        }
        (count, sum, digest)
    }
}

#[test]
fn explain_names_the_access_path_of_each_key_filter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Fixture::new(dir.path(), Options::default());
    let cases = [
        ("SELECT v FROM t WHERE k = 7", "path=point keys=[7]"),
        (
            "SELECT v FROM t WHERE k IN (9, 3, 9)",
            "path=point keys=[3, 9]",
        ),
        (
            "SELECT v FROM t WHERE k = 3 OR k = 5",
            "path=point keys=[3, 5]",
        ),
        (
            "SELECT v FROM t WHERE k BETWEEN 10 AND 20",
            "path=key_range [10, 20]",
        ),
        (
            "SELECT v FROM t WHERE k > 10 AND k < 20 AND v > 3",
            "path=key_range (10, 20)",
        ),
        (
            "SELECT v FROM t WHERE k >= 990",
            "path=key_range [990, +inf)",
        ),
        ("SELECT sum(v) FROM t", "path=full_columnar_scan"),
        (
            "SELECT sum(v) FROM t WHERE v > 100",
            "path=full_columnar_scan",
        ),
        (
            "SELECT v FROM t WHERE k > 9223372036854775807",
            "path=point keys=[]",
        ),
    ];
    for (sql, path) in cases {
        let plan = f.plan(sql);
        assert!(plan.contains(path), "{sql}: expected {path:?} in\n{plan}");
    }
    // Projection and limit pushdown: only the columns used are read, the scan stops early.
    let plan = f.plan("SELECT s FROM t LIMIT 3");
    assert!(plan.contains("projection=[s], limit=3"), "{plan}");
    // A join reads each side along its own path.
    f.run("CREATE TABLE u (k BIGINT PRIMARY KEY, w BIGINT)");
    let plan = f.plan("SELECT t.v, u.w FROM t JOIN u ON t.v = u.k WHERE t.k BETWEEN 1 AND 5");
    assert!(plan.contains("table=t, path=key_range [1, 5]"), "{plan}");
    assert!(plan.contains("table=u, path=full_columnar_scan"), "{plan}");
    // Key filters carried across a join on the keys: both sides read one point.
    let plan = f.plan("SELECT t.v, u.w FROM t JOIN u ON t.k = u.k WHERE t.k = 4");
    assert!(plan.contains("table=t, path=point keys=[4]"), "{plan}");
    assert!(plan.contains("table=u, path=point keys=[4]"), "{plan}");
}

#[test]
fn filters_on_other_integer_columns_prune_cold_row_groups_and_answer_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Fixture::new(
        dir.path(),
        Options {
            hot_rows_max: Some(100),
            ..Options::default()
        },
    );
    // v = 10 k rises with the key: each flush's segment holds its own band of v.
    f.session.database().checkpoint().expect("checkpoint");
    for start in (1_000..4_000).step_by(1_000) {
        let values: Vec<String> = (start..start + 1_000)
            .map(|k| format!("({k}, {}, 's{k}')", k * 10))
            .collect();
        f.run(&format!("INSERT INTO t VALUES {}", values.join(", ")));
        f.session.database().checkpoint().expect("checkpoint");
    }
    let count = |sql: &str| {
        f.run(sql)[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64")
            .value(0)
    };
    let cases = [
        ("v BETWEEN 100 AND 200", "prune=[v in [100, 200]]", 11),
        ("v > 39000", "prune=[v in (39000, +inf)]", 99),
        ("v IN (40, 20)", "prune=[v in [20, 40]]", 2),
        ("v < 0", "prune=[v in (-inf, 0)]", 0),
    ];
    for (filter, prune, rows) in cases {
        let sql = format!("SELECT count(*) FROM t WHERE {filter}");
        let plan = f.plan(&sql);
        assert!(plan.contains(prune), "{sql}: expected {prune:?} in\n{plan}");
        assert_eq!(count(&sql), rows, "{sql}");
        let analyzed = f.run(&format!("EXPLAIN ANALYZE {sql}"));
        let text = pretty_format_batches(&analyzed)
            .expect("format")
            .to_string();
        let pruned = text
            .split("row_groups_pruned=")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("{sql}: no row_groups_pruned in\n{text}"));
        assert!(pruned >= 2, "{sql}: {pruned} row groups pruned\n{text}");
    }
    // Not pruned: a column of another type, filters over two columns. (`v IS NULL OR ...`
    // is simplified away here, v being NOT NULL; the differential corpus has it on a
    // nullable column.)
    for filter in ["s = 's7'", "v > 5 OR k < 3", "v > 5 OR s IS NULL"] {
        let plan = f.plan(&format!("SELECT count(*) FROM t WHERE {filter}"));
        assert!(!plan.contains("prune="), "{filter}: {plan}");
    }
    assert_eq!(
        count("SELECT count(*) FROM t WHERE v IS NULL OR v > 39000"),
        99
    );
    // With a key range, both apply.
    let sql = "SELECT count(*) FROM t WHERE k BETWEEN 0 AND 3000 AND v >= 29990";
    assert!(f.plan(sql).contains("path=key_range [0, 3000]"));
    assert_eq!(count(sql), 2);
}

#[test]
fn key_paths_return_the_rows_a_full_scan_would() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        hot_rows_max: Some(100),
        ..Options::default()
    };
    let f = Fixture::new(dir.path(), options);
    f.session.database().checkpoint().expect("checkpoint");
    assert!(
        f.session
            .database()
            .cold_segment_count("t")
            .expect("segments")
            > 0
    );
    for (keyed, scanned) in [
        (
            "SELECT sum(v) FROM t WHERE k BETWEEN 100 AND 499",
            "SELECT sum(v) FROM t WHERE k + 0 BETWEEN 100 AND 499",
        ),
        (
            "SELECT sum(v) FROM t WHERE k IN (1, 500, 999, 5000)",
            "SELECT sum(v) FROM t WHERE k + 0 IN (1, 500, 999, 5000)",
        ),
        (
            "SELECT count(*) FROM t WHERE k < 10 OR k > 990",
            "SELECT count(*) FROM t WHERE k + 0 < 10 OR k + 0 > 990",
        ),
    ] {
        assert!(f.plan(scanned).contains("full_columnar_scan"));
        let a = pretty_format_batches(&f.run(keyed))
            .expect("format")
            .to_string();
        let b = pretty_format_batches(&f.run(scanned))
            .expect("format")
            .to_string();
        assert_eq!(a, b, "{keyed}");
    }
}

#[test]
fn bad_statements_get_a_clear_error_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = Fixture::new(dir.path(), Options::default());
    let before = f.state();
    let cases: &[(&str, &str)] = &[
        ("SELEC k FROM t", "SELEC"),
        ("SELECT k FROM nowhere", "nowhere"),
        ("SELECT nothing FROM t", "nothing"),
        ("INSERT INTO nowhere VALUES (1, 2, 'x')", "nowhere"),
        (
            "INSERT INTO t VALUES (5000, 'not a number', 'x')",
            "not a number",
        ),
        ("INSERT INTO t VALUES (5000, 1)", "t"),
        ("INSERT INTO t VALUES (5000, 1, 'x', 4)", "t"),
        (
            "INSERT INTO t VALUES (5000, NULL, 'x')",
            "\"t\".\"v\" is not nullable",
        ),
        (
            "INSERT INTO t VALUES (NULL, 1, 'x')",
            "\"t\".\"k\" is not nullable",
        ),
        (
            "INSERT INTO t SELECT NULL, 1, 'x'",
            "\"t\".\"k\" is not nullable",
        ),
        // All or nothing: the new key 5001 goes in only with the duplicate 7.
        ("INSERT INTO t VALUES (5001, 1, 'x'), (7, 1, 'x')", "7"),
        (
            "INSERT INTO t (k, s) VALUES (5002, 'x')",
            "\"t\".\"v\" is not nullable",
        ),
        ("UPDATE t SET k = 5 WHERE k = 6", "primary key"),
        ("UPDATE t SET nothing = 5 WHERE k = 6", "nothing"),
        ("UPDATE t SET v = 'x' WHERE k = 6", "x"),
        ("DELETE FROM nowhere WHERE k = 1", "nowhere"),
        ("CREATE TABLE t (k BIGINT PRIMARY KEY)", "t"),
        (
            "CREATE TABLE w (k BIGINT PRIMARY KEY, d DECIMAL(10, 2))",
            "d",
        ),
        ("CREATE TABLE w (k VARCHAR PRIMARY KEY, v BIGINT)", "k"),
        ("CREATE TABLE w (k BIGINT, v BIGINT)", "PRIMARY KEY"),
        (
            "CREATE TABLE w (a BIGINT, b BIGINT, PRIMARY KEY (a, b))",
            "PRIMARY KEY",
        ),
        ("CREATE TABLE w AS SELECT 1 AS k", "AS SELECT"),
        ("DROP TABLE nowhere", "nowhere"),
        ("CREATE VIEW w AS SELECT * FROM t", "VIEW"),
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "commits on its own"),
        ("SELECT 1; SELEC 2", "SELEC"),
    ];
    for (sql, names) in cases {
        let message = f.error(sql);
        assert!(
            message.to_lowercase().contains(&names.to_lowercase()),
            "{sql}: the error should name {names:?}: {message}"
        );
        assert_eq!(f.state(), before, "{sql} changed the table");
    }
    let tables = f.session.database().table_names().expect("tables");
    assert_eq!(tables, vec!["t".to_string()], "no table was created");
}

#[test]
fn ddl_and_writes_through_sql_reach_the_engine_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let f = Fixture::new(dir.path(), Options::default());
        f.run("CREATE TABLE e (ts TIMESTAMP PRIMARY KEY, n INT, x DOUBLE, b BOOLEAN, raw BYTEA)");
        f.run("INSERT INTO e VALUES ('2026-12-03T10:00:00Z', 1, 0.5, true, X'00ff')");
        f.run("INSERT INTO e SELECT to_timestamp_micros(k), 2, NULL AS x, NULL AS b, NULL AS raw FROM t WHERE k < 10 AND k > 0");
        f.run("UPDATE t SET v = -1 WHERE k BETWEEN 0 AND 9");
        f.run("DELETE FROM t WHERE k >= 990");
        f.run("CREATE TABLE gone (k BIGINT PRIMARY KEY)");
        f.run("DROP TABLE gone");
        f.run("DROP TABLE IF EXISTS gone");
        f.run("CREATE TABLE IF NOT EXISTS e (ts TIMESTAMP PRIMARY KEY)");
        let db = f.session.database();
        assert_eq!(db.row_count("e").expect("rows"), 10);
        assert_eq!(db.row_count("t").expect("rows"), 990);
    }
    let db = Database::open(dir.path(), Options::default()).expect("reopen");
    let mut names = db.table_names().expect("tables");
    names.sort();
    assert_eq!(names, vec!["e".to_string(), "t".to_string()]);
    assert_eq!(db.row_count("t").expect("rows"), 990);
    let row = db.get("t", 5).expect("get").expect("row 5");
    assert_eq!(row[1], omendb::Value::Int64(-1));
}

#[test]
fn updates_and_deletes_over_many_batches_of_both_tiers_change_each_row_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        hot_rows_max: Some(3_000),
        ..Options::default()
    };
    let f = Fixture::new(dir.path(), options);
    for chunk in 0..20 {
        let values: Vec<String> = (0..1_000)
            .map(|i| {
                let k = 1_000 + chunk * 1_000 + i;
                format!("({k}, {k}, 'x')")
            })
            .collect();
        f.run(&format!("INSERT INTO t VALUES {}", values.join(", ")));
    }
    f.session.database().checkpoint().expect("checkpoint");
    assert!(
        f.session
            .database()
            .cold_segment_count("t")
            .expect("segments")
            > 0
    );
    let count = |sql: &str| -> u64 {
        let batches = f.run(sql);
        let array = batches[0].column(0);
        if let Some(a) = array
            .as_any()
            .downcast_ref::<datafusion::arrow::array::UInt64Array>()
        {
            a.value(0)
        } else {
            array
                .as_any()
                .downcast_ref::<Int64Array>()
                .expect("count")
                .value(0) as u64
        }
    };
    // 21,000 rows: k = v for k >= 1000, v = 10 k below.
    assert_eq!(count("UPDATE t SET v = v + 1 WHERE k >= 1000"), 20_000);
    assert_eq!(count("SELECT count(*) FROM t WHERE v = k + 1"), 20_000);
    assert_eq!(count("DELETE FROM t WHERE k % 2 = 0"), 10_500);
    assert_eq!(count("SELECT count(*) FROM t"), 10_500);
    assert_eq!(count("SELECT count(*) FROM t WHERE k % 2 = 0"), 0);
}

fn omendb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_omendb"))
        .args(args)
        .output()
        .expect("run omendb")
}

#[test]
fn the_command_line_prints_rows_and_exits_1_on_bad_input_without_changing_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8 path");
    let out = omendb(&[
        "sql",
        path,
        "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT); INSERT INTO t VALUES (1, 10), (2, 20)",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = omendb(&["sql", path, "SELECT k, v FROM t ORDER BY k"]);
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("| 2 | 20 |"), "{table}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("2 rows in"),
        "the query time is printed"
    );

    let out = omendb(&[
        "sql",
        path,
        "SELECT k, v FROM t ORDER BY k",
        "--format",
        "csv",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "k,v\n1,10\n2,20\n");
    let out = omendb(&[
        "sql",
        path,
        "SELECT k, v FROM t WHERE k = 2",
        "--format",
        "json",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"[{"k":2,"v":20}]"#
    );

    for bad in [
        "SELEC * FROM t",
        "SELECT * FROM nowhere",
        "SELECT nothing FROM t",
        "INSERT INTO t VALUES (3, 'three')",
        "INSERT INTO t VALUES (3, 30), (1, 10)",
        "CREATE TABLE w (k BIGINT PRIMARY KEY, d DECIMAL(10, 2))",
    ] {
        let out = omendb(&["sql", path, bad]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("error: "), "{bad}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad}: {stderr}");
    }
    let out = omendb(&[
        "sql",
        path,
        "SELECT count(*) AS n, sum(v) AS s FROM t",
        "--format",
        "csv",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "n,s\n2,30\n",
        "the database is unchanged"
    );

    let out = omendb(&["sql", path, "SELECT 1", "--format", "xml"]);
    assert_eq!(out.status.code(), Some(2), "usage errors exit 2");
    let out = omendb(&["nosuch"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_shell_reads_statements_from_standard_input_and_survives_errors() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_str().expect("utf-8 path");
    let mut child = Command::new(env!("CARGO_BIN_EXE_omendb"))
        .args(["sql", path, "--format", "csv"])
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let script = "CREATE TABLE t (k BIGINT PRIMARY KEY,\n v BIGINT);\nSELEC oops;\nINSERT INTO t VALUES (1, 2);\nSELECT * FROM t;\n\\q\n";
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("k,v\n1,2\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("error: "));
}
