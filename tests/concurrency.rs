//! Many threads on one `Database`, on a real disk, scaled to seconds: concurrent inserts
//! with disjoint and overlapping keys (a duplicate is accepted exactly once), readers beside
//! writers, tables created and dropped under inserts. Each test ends by comparing the state
//! with what the threads had acknowledged, then again after a reopen (recovery replays the
//! interleaved log in the order it was applied).
//!
//! The long runs are `omendb-stress` (docs/BENCHMARKS.md), not tests.

mod common;

use common::*;
use omendb::{Database, Durability, Error, Table};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

const THREADS: usize = 10;

fn batch() -> Durability {
    Durability::Batch {
        max_delay: Duration::from_millis(2),
    }
}

/// Runs `body(thread)` on `THREADS` threads started together; returns their results in
/// thread order.
fn on_threads<T: Send + 'static>(
    db: &Arc<Database>,
    body: impl Fn(&Database, usize) -> T + Send + Sync + 'static,
) -> Vec<T> {
    let body = Arc::new(body);
    let start = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let (db, body, start) = (db.clone(), body.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                body(&db, t)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().expect("thread panicked"))
        .collect()
}

fn all_rows(db: &Database, table: &str) -> BTreeMap<i64, omendb::Row> {
    db.scan(table, ..)
        .unwrap()
        .into_iter()
        .map(|row| match row[0] {
            omendb::Value::Int64(k) => (k, row),
            ref other => panic!("key {other:?}"),
        })
        .collect()
}

#[test]
fn database_and_table_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Database>();
    assert_send_sync::<Table<'static>>();
    assert_send_sync::<omendb::Ticket>();
}

#[test]
fn disjoint_inserts_from_ten_threads_all_land() {
    for sync in [Durability::Always, batch()] {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(dir.path(), sync));
        db.create_table(table_def("t")).unwrap();
        let per_thread = if sync == Durability::Always {
            200
        } else {
            2_000
        };
        on_threads(&db, move |db, t| {
            let table = db.table("t").unwrap();
            for i in 0..per_thread {
                let k = (i * THREADS + t) as i64;
                table.insert(row(k, k)).unwrap();
            }
        });
        let expected: BTreeMap<i64, omendb::Row> = (0..(per_thread * THREADS) as i64)
            .map(|k| (k, row(k, k)))
            .collect();
        assert_eq!(all_rows(&db, "t"), expected);
        db.check_invariants().unwrap();
        Arc::try_unwrap(db).unwrap().close().unwrap();
        let db = open(dir.path(), sync);
        assert_eq!(all_rows(&db, "t"), expected, "after reopen, {sync:?}");
    }
}

#[test]
fn overlapping_inserts_accept_each_key_exactly_once() {
    for sync in [Durability::Always, batch()] {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(open(dir.path(), sync));
        db.create_table(table_def("t")).unwrap();
        let keys = if sync == Durability::Always {
            150i64
        } else {
            1_500
        };
        // Every thread inserts every key, each in its own order, with its own value.
        let won = on_threads(&db, move |db, t| {
            let mut won = Vec::new();
            let mut duplicates = 0;
            for i in 0..keys {
                let k = (i * 7 + t as i64 * 13) % keys;
                let v = k * 100 + t as i64;
                match db.insert("t", row(k, v)) {
                    Ok(()) => won.push((k, v)),
                    Err(Error::DuplicateKey { key, .. }) => {
                        assert_eq!(key, k);
                        duplicates += 1;
                    }
                    Err(e) => panic!("insert {k}: unexpected {e}"),
                }
            }
            assert_eq!(won.len() + duplicates, keys as usize);
            won
        });
        let mut expected = BTreeMap::new();
        for (k, v) in won.into_iter().flatten() {
            assert!(
                expected.insert(k, row(k, v)).is_none(),
                "key {k} accepted twice"
            );
        }
        assert_eq!(expected.len(), keys as usize, "every key accepted once");
        assert_eq!(all_rows(&db, "t"), expected);
        Arc::try_unwrap(db).unwrap().close().unwrap();
        let db = open(dir.path(), sync);
        assert_eq!(all_rows(&db, "t"), expected, "after reopen, {sync:?}");
    }
}

#[test]
fn readers_beside_writers_see_only_written_versions_in_order() {
    // Half the threads update keys they own with increasing versions (v = key * 1_000_000 +
    // version); half read random keys and check that each row is one a writer wrote and that
    // versions of a key never go backwards.
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), batch()));
    db.create_table(table_def("t")).unwrap();
    let keys = 200i64;
    db.insert_batch("t", (0..keys).map(|k| row(k, k * 1_000_000)).collect())
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let writers = THREADS / 2;
    let (stop_in, reads_in) = (stop.clone(), reads.clone());
    let finals = on_threads(&db, move |db, t| {
        let mut last = BTreeMap::new();
        if t < writers {
            // Writer t owns keys k with k % writers == t.
            for version in 1..=300i64 {
                for k in (t as i64..keys).step_by(writers) {
                    db.update("t", k, row(k, k * 1_000_000 + version)).unwrap();
                }
            }
            for k in (t as i64..keys).step_by(writers) {
                last.insert(k, k * 1_000_000 + 300);
            }
            if t == 0 {
                // Readers run until the first writer is done.
                stop_in.store(true, Ordering::Release);
            }
        } else {
            let mut seed = (t as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while !stop_in.load(Ordering::Acquire) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let k = (seed % keys as u64) as i64;
                let got = db
                    .get("t", k)
                    .unwrap()
                    .expect("a preloaded key is never deleted");
                let v = match got[1] {
                    omendb::Value::Int64(v) => v,
                    ref other => panic!("v {other:?}"),
                };
                assert_eq!(got, row(k, v), "a row some writer wrote");
                assert_eq!(v / 1_000_000, k, "the version belongs to the key");
                let previous = last.insert(k, v).unwrap_or(0);
                assert!(
                    v >= previous,
                    "key {k}: version went back from {previous} to {v}"
                );
                reads_in.fetch_add(1, Ordering::Relaxed);
            }
            last.clear();
        }
        last
    });
    assert!(reads.load(Ordering::Relaxed) > 0, "the readers read");
    let expected: BTreeMap<i64, omendb::Row> = finals
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, row(k, v)))
        .collect();
    assert_eq!(expected.len(), keys as usize);
    assert_eq!(all_rows(&db, "t"), expected);
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let db = open(dir.path(), batch());
    assert_eq!(all_rows(&db, "t"), expected, "after reopen");
}

#[test]
fn tables_created_and_dropped_under_concurrent_inserts() {
    // Threads 0..4 create, fill and drop their own short-lived tables over and over; the
    // others insert into those tables whenever they exist and into a stable table. The only
    // errors allowed are a table that does not exist (yet, or any more) and a duplicate key.
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), batch()));
    db.create_table(table_def("stable")).unwrap();
    let churners = 4usize;
    let rounds = 40i64;
    let stable_rows = on_threads(&db, move |db, t| {
        let mut stable = Vec::new();
        if t < churners {
            for round in 0..rounds {
                let name = format!("churn{t}");
                db.create_table(table_def(&name)).unwrap();
                for k in 0..5 {
                    match db.insert(&name, row(k, round)) {
                        Ok(()) | Err(Error::DuplicateKey { .. }) => {}
                        Err(e) => panic!("{name}: {e}"),
                    }
                }
                if round % 2 == 1 {
                    db.drop_table(&name).unwrap();
                } else {
                    // Leave it to the inserters for a moment, then drop it.
                    std::thread::yield_now();
                    db.drop_table(&name).unwrap();
                }
            }
            // The last round leaves one table behind, with a known row.
            let name = format!("churn{t}");
            db.create_table(table_def(&name)).unwrap();
            db.insert(&name, row(-1, -1)).unwrap();
        } else {
            for i in 0..400i64 {
                let k = t as i64 * 10_000 + i;
                db.insert("stable", row(k, k)).unwrap();
                stable.push(k);
                let name = format!("churn{}", i as usize % churners);
                match db.insert(&name, row(1_000 + k, k)) {
                    Ok(()) => {}
                    Err(Error::TableNotFound { .. } | Error::DuplicateKey { .. }) => {}
                    Err(e) => panic!("{name}: unexpected {e}"),
                }
            }
        }
        stable
    });
    db.check_invariants().unwrap();
    let expected: BTreeMap<i64, omendb::Row> = stable_rows
        .into_iter()
        .flatten()
        .map(|k| (k, row(k, k)))
        .collect();
    assert_eq!(all_rows(&db, "stable"), expected);
    let mut names = vec!["stable".to_string()];
    names.extend((0..churners).map(|t| format!("churn{t}")));
    names.sort();
    assert_eq!(db.table_names().unwrap(), names);
    let churned: Vec<_> = (0..churners)
        .map(|t| all_rows(&db, &format!("churn{t}")))
        .collect();
    for rows in &churned {
        assert_eq!(rows.get(&-1), Some(&row(-1, -1)));
    }
    Arc::try_unwrap(db).unwrap().close().unwrap();
    // Recovery replays creates, drops and inserts interleaved in the log: the same state.
    let db = open(dir.path(), batch());
    db.check_invariants().unwrap();
    assert_eq!(db.table_names().unwrap(), names);
    assert_eq!(all_rows(&db, "stable"), expected);
    for (t, rows) in churned.iter().enumerate() {
        assert_eq!(&all_rows(&db, &format!("churn{t}")), rows);
    }
}

#[test]
fn checkpoints_under_concurrent_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(open(dir.path(), batch()));
    db.create_table(table_def("t")).unwrap();
    let written = on_threads(&db, move |db, t| {
        let mut keys = Vec::new();
        for i in 0..500i64 {
            let k = t as i64 * 100_000 + i;
            db.insert("t", row(k, k)).unwrap();
            keys.push(k);
            if t == 0 && i % 100 == 0 {
                db.checkpoint().unwrap();
            }
        }
        keys
    });
    let expected: BTreeMap<i64, omendb::Row> = written
        .into_iter()
        .flatten()
        .map(|k| (k, row(k, k)))
        .collect();
    assert_eq!(all_rows(&db, "t"), expected);
    Arc::try_unwrap(db).unwrap().close().unwrap();
    let db = open(dir.path(), batch());
    assert_eq!(all_rows(&db, "t"), expected, "after reopen");
}
