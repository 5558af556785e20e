//! The same rows in OmenDB (through SQL) and in SQLite, the same queries, the same answers:
//! with every row hot, with most rows in cold segments, and after updates and deletes of
//! flushed rows (which the cold tier hides with deletion vectors).

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use omendb::{Database, Options};
use omendb_keygen::SplitMix64;
use omendb_sql::SqlSession;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Int(a), Val::Int(b)) => a == b,
            (Val::Text(a), Val::Text(b)) => a == b,
            (Val::Real(a), Val::Real(b)) => {
                a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
            }
            // SQLite returns integral sums of floats and averages as either kind.
            (Val::Int(a), Val::Real(b)) | (Val::Real(b), Val::Int(a)) => {
                (*a as f64 - b).abs() < 1e-6
            }
            _ => false,
        }
    }
}

const ROWS: i64 = 6_000;

/// The keys of table t: mostly -3000..3000 in steps, and a few at the ends of i64.
fn keys() -> Vec<i64> {
    let mut keys: Vec<i64> = (0..ROWS - 6).map(|i| (i - ROWS / 2) * 3).collect();
    keys.extend([
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 2,
        i64::MAX - 2,
        i64::MAX - 1,
        i64::MAX,
    ]);
    keys
}

fn sql_literal(v: &Val) -> String {
    match v {
        Val::Null => "NULL".into(),
        Val::Int(i) => i.to_string(),
        Val::Real(f) => format!("{f:?}"),
        Val::Text(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

/// The rows of t and u as SQL VALUES tuples.
fn rows() -> (Vec<String>, Vec<String>) {
    // Seeded, so the corpus data is the same every run.
    let mut gen = SplitMix64::new(42);
    let words = [
        "apple", "banana", "cherry", "date", "elder", "fig", "grape", "o'hara",
    ];
    let mut t = Vec::new();
    for k in keys() {
        let v = if gen.below(10) == 0 {
            Val::Null
        } else {
            Val::Int(gen.below(2_000) as i64 - 1_000)
        };
        let f = if gen.below(10) == 0 {
            Val::Null
        } else {
            Val::Real((gen.below(100_000) as f64) / 64.0)
        };
        let s = if gen.below(10) == 0 {
            Val::Null
        } else {
            Val::Text(format!(
                "{}{}",
                words[gen.below(words.len() as u64) as usize],
                gen.below(50)
            ))
        };
        let b = match gen.below(3) {
            0 => "NULL",
            1 => "true",
            _ => "false",
        };
        t.push(format!(
            "({k}, {}, {}, {}, {b})",
            sql_literal(&v),
            sql_literal(&f),
            sql_literal(&s)
        ));
    }
    let mut u = Vec::new();
    for k in keys().into_iter().step_by(4) {
        u.push(format!("({k}, {}, {})", gen.below(5), gen.below(100)));
    }
    (t, u)
}

const CREATE: [&str; 2] = [
    "CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT, f DOUBLE, s VARCHAR, b BOOLEAN)",
    "CREATE TABLE u (k BIGINT PRIMARY KEY, grp BIGINT NOT NULL, w BIGINT)",
];

/// Queries both must answer alike. Each has an ORDER BY that makes its order total (or
/// returns one row), with NULLs placed explicitly (the two systems' defaults differ).
const QUERIES: &[&str] = &[
    "SELECT k, v, f, s, b FROM t ORDER BY k",
    "SELECT * FROM t WHERE k = 300",
    "SELECT * FROM t WHERE k = 301",
    "SELECT k, s FROM t WHERE k IN (-9000, -3, 0, 3, 4, 8997, 9223372036854775807) ORDER BY k",
    "SELECT k, v FROM t WHERE k BETWEEN -600 AND 600 ORDER BY k",
    "SELECT k, v FROM t WHERE k > -600 AND k <= 600 AND v > 0 ORDER BY k",
    "SELECT count(*), sum(v) FROM t WHERE k >= 100 AND k < 4000",
    "SELECT k FROM t WHERE k >= 9223372036854775805 ORDER BY k",
    "SELECT k FROM t WHERE k <= -9223372036854775806 ORDER BY k",
    "SELECT k FROM t WHERE k < -9223372036854775807 ORDER BY k",
    "SELECT k FROM t WHERE k > 9223372036854775806 ORDER BY k",
    "SELECT count(*) FROM t WHERE k > 9223372036854775807",
    "SELECT count(*) FROM t WHERE k BETWEEN 10 AND 5",
    "SELECT count(*) FROM t WHERE k = 3 OR k = 6 OR k = 7",
    "SELECT count(*) FROM t WHERE k < -8000 OR k > 8000",
    "SELECT k, v FROM t WHERE k NOT BETWEEN -8990 AND 8990 ORDER BY k",
    "SELECT k FROM t WHERE k IN (3, 6, 9) AND v > 0 ORDER BY k",
    "SELECT k, v FROM t WHERE v > 990 ORDER BY k",
    // Filters on v (nullable BIGINT) prune cold row groups by their statistics, then
    // DataFusion applies them: the answers must not change.
    "SELECT k, v FROM t WHERE v BETWEEN -5 AND 5 ORDER BY k",
    "SELECT count(*), sum(v) FROM t WHERE v IN (1, 2, 999)",
    "SELECT k FROM t WHERE v = -1000 OR v = 999 ORDER BY k",
    "SELECT count(*) FROM t WHERE v < -990 AND v IS NOT NULL",
    "SELECT count(*) FROM t WHERE v IS NULL OR v > 995",
    "SELECT count(*) FROM t WHERE v > 5000",
    "SELECT k FROM t WHERE v IS NULL ORDER BY k",
    "SELECT k, s FROM t WHERE s LIKE 'o''h%' ORDER BY k",
    "SELECT k FROM t WHERE b ORDER BY k",
    "SELECT count(*), count(v), count(s), sum(v), min(v), max(v), min(s), max(s) FROM t",
    "SELECT avg(f), sum(f), min(f), max(f) FROM t",
    "SELECT count(*) FROM t WHERE k = 12345",
    "SELECT v % 7 AS g, count(*), sum(v) FROM t GROUP BY v % 7 ORDER BY g NULLS FIRST",
    "SELECT b, count(*), min(k), max(k) FROM t GROUP BY b ORDER BY b NULLS FIRST",
    "SELECT v % 5 AS g, count(*) AS n FROM t GROUP BY v % 5 HAVING count(*) > 1000 ORDER BY g NULLS FIRST",
    "SELECT DISTINCT b FROM t ORDER BY b NULLS FIRST",
    "SELECT k, v FROM t ORDER BY v DESC NULLS LAST, k LIMIT 10",
    "SELECT k FROM t ORDER BY k LIMIT 5",
    "SELECT k FROM t ORDER BY k DESC LIMIT 5 OFFSET 2",
    "SELECT t.k, t.v, u.grp, u.w FROM t JOIN u ON t.k = u.k WHERE u.w > 90 ORDER BY t.k",
    "SELECT u.grp, count(*), sum(t.v) FROM t JOIN u ON t.k = u.k GROUP BY u.grp ORDER BY u.grp",
    "SELECT count(*) FROM t LEFT JOIN u ON t.k = u.k WHERE u.k IS NULL",
    "SELECT k FROM t WHERE k IN (SELECT k FROM u WHERE w = 7) ORDER BY k",
    "SELECT count(*) FROM t WHERE k BETWEEN -9223372036854775807 - 1 AND -9223372036854775806",
];

/// Writes applied to both after the rows are in (and flushed, in the cold run).
const CHANGES: &[&str] = &[
    "UPDATE t SET v = v + 1000000 WHERE k BETWEEN -300 AND 300",
    "UPDATE t SET s = 'changed', b = NULL WHERE k IN (-8997, 8994, 9223372036854775807)",
    "UPDATE t SET f = NULL WHERE v > 900",
    "DELETE FROM t WHERE k = 0",
    "DELETE FROM t WHERE k IN (-9223372036854775808, 3, 6, 12345)",
    "DELETE FROM t WHERE k > 8000",
    "DELETE FROM t WHERE v < -990",
    "DELETE FROM u WHERE grp = 3",
    "INSERT INTO t VALUES (1, 1, 1.5, 'new', true), (2, NULL, NULL, NULL, NULL)",
];

fn arrow_values(array: &ArrayRef) -> Vec<Val> {
    let n = array.len();
    let target = match array.data_type() {
        DataType::Boolean => None,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(DataType::Float64),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => Some(DataType::Utf8),
        _ => Some(DataType::Int64),
    };
    let array = match &target {
        Some(t) => cast(array, t).expect("cast"),
        None => array.clone(),
    };
    (0..n)
        .map(|i| {
            if array.is_null(i) {
                return Val::Null;
            }
            if let Some(a) = array.as_any().downcast_ref::<Int64Array>() {
                Val::Int(a.value(i))
            } else if let Some(a) = array.as_any().downcast_ref::<Float64Array>() {
                Val::Real(a.value(i))
            } else if let Some(a) = array.as_any().downcast_ref::<StringArray>() {
                Val::Text(a.value(i).to_string())
            } else if let Some(a) = array.as_any().downcast_ref::<BooleanArray>() {
                Val::Int(i64::from(a.value(i)))
            } else {
                panic!("unexpected type {}", array.data_type())
            }
        })
        .collect()
}

fn omen_rows(runtime: &tokio::runtime::Runtime, session: &SqlSession, sql: &str) -> Vec<Vec<Val>> {
    let batches = runtime
        .block_on(session.sql(sql))
        .unwrap_or_else(|e| panic!("OmenDB failed {sql}: {e}"));
    let mut rows = Vec::new();
    for batch in batches {
        let columns: Vec<Vec<Val>> = batch.columns().iter().map(arrow_values).collect();
        for i in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| c[i].clone()).collect());
        }
    }
    rows
}

fn sqlite_rows(conn: &rusqlite::Connection, sql: &str) -> Vec<Vec<Val>> {
    let mut statement = conn
        .prepare(sql)
        .unwrap_or_else(|e| panic!("SQLite failed {sql}: {e}"));
    let columns = statement.column_count();
    let rows = statement
        .query_map([], |row| {
            (0..columns)
                .map(|i| {
                    Ok(match row.get_ref(i)? {
                        rusqlite::types::ValueRef::Null => Val::Null,
                        rusqlite::types::ValueRef::Integer(v) => Val::Int(v),
                        rusqlite::types::ValueRef::Real(v) => Val::Real(v),
                        rusqlite::types::ValueRef::Text(t) => {
                            Val::Text(String::from_utf8_lossy(t).into())
                        }
                        rusqlite::types::ValueRef::Blob(_) => panic!("no blobs in the corpus"),
                    })
                })
                .collect::<rusqlite::Result<Vec<Val>>>()
        })
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

struct Both {
    runtime: tokio::runtime::Runtime,
    session: SqlSession,
    sqlite: rusqlite::Connection,
}

impl Both {
    fn write(&self, sql: &str) {
        let omen = omen_rows(&self.runtime, &self.session, sql);
        let changed = self
            .sqlite
            .execute(sql, [])
            .unwrap_or_else(|e| panic!("SQLite failed {sql}: {e}"));
        assert_eq!(
            omen,
            vec![vec![Val::Int(changed as i64)]],
            "rows changed by {sql}"
        );
    }

    fn check_corpus(&self, stage: &str) {
        for sql in QUERIES {
            let omen = omen_rows(&self.runtime, &self.session, sql);
            let lite = sqlite_rows(&self.sqlite, sql);
            assert!(
                omen == lite,
                "{stage}: {sql}\nOmenDB ({} rows): {:?}\nSQLite ({} rows): {:?}",
                omen.len(),
                &omen[..omen.len().min(8)],
                lite.len(),
                &lite[..lite.len().min(8)]
            );
        }
    }
}

fn setup(dir: &std::path::Path, options: Options) -> Both {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("runtime");
    let db = Arc::new(Database::open(dir, options).expect("open"));
    let session = SqlSession::new(db).expect("session");
    let sqlite = rusqlite::Connection::open_in_memory().expect("sqlite");
    let both = Both {
        runtime,
        session,
        sqlite,
    };
    for sql in CREATE {
        both.runtime
            .block_on(both.session.sql(sql))
            .expect("create");
        both.sqlite.execute(sql, []).expect("sqlite create");
    }
    let (t, u) = rows();
    for (table, rows) in [("t", t), ("u", u)] {
        for chunk in rows.chunks(500) {
            both.write(&format!("INSERT INTO {table} VALUES {}", chunk.join(", ")));
        }
    }
    both
}

#[test]
fn hot_tier_answers_as_sqlite_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let both = setup(dir.path(), Options::default());
    both.check_corpus("hot");
    for sql in CHANGES {
        both.write(sql);
    }
    both.check_corpus("hot, after changes");
}

#[test]
fn cold_tier_answers_as_sqlite_does_before_and_after_changes_to_flushed_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        hot_rows_max: Some(400),
        ..Options::default()
    };
    let both = setup(dir.path(), options);
    let db = both.session.database().clone();
    db.checkpoint().expect("checkpoint");
    assert!(
        db.cold_segment_count("t").expect("segments") > 0,
        "rows moved to the cold tier"
    );
    both.check_corpus("cold");
    for sql in CHANGES {
        both.write(sql);
    }
    both.check_corpus("cold, after changes");
    // The changes flushed too: deletion vectors and new segments over the old ones.
    db.checkpoint().expect("checkpoint");
    both.check_corpus("cold, after changes and a second flush");
}
