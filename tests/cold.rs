//! The cold tier on a real disk: flush at checkpoint, reopen, reads across the hot/cold
//! boundary against a model, plain Parquet, orphan files and corruption.

mod common;

use common::model_ops::{check_against_model, key_value_pairs, op, sync_mode};
use common::*;
use omendb::{Database, Durability, Error, Options};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn open_cold(path: &Path, hot_rows_max: usize) -> Database {
    Database::open(
        path,
        Options {
            sync: Durability::None,
            background_worker: true,
            hot_rows_max: Some(hot_rows_max),
            compaction_worker: false,
            ..Options::default()
        },
    )
    .expect("open")
}

/// The Parquet files in `cold/`, sorted.
fn segment_files(root: &Path) -> Vec<PathBuf> {
    cold_files(root)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// Every file in `cold/`, sorted.
fn cold_files(root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("cold"))
        .expect("cold dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// The shared model test with a hot tier of at most 4 rows: every checkpoint flushes, so
    /// gets, updates, deletes, scans and scan_batches cross the hot/cold boundary.
    #[test]
    fn table_with_cold_tier_matches_btreemap(
        ops in prop::collection::vec(op(), 1..80),
        sync in sync_mode(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        check_against_model(ops, || {
            Database::open(dir.path(), Options { sync, background_worker: true, hot_rows_max: Some(4), compaction_worker: false, ..Options::default() })
                .expect("open")
        })?;
    }
}

#[test]
fn rows_survive_flush_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 1000);
    db.create_table(table_def("t")).unwrap();
    for chunk in (0..5000i64).collect::<Vec<_>>().chunks(500) {
        db.insert_batch("t", chunk.iter().map(|&k| row(k, k * 10)).collect())
            .unwrap();
        db.checkpoint().unwrap();
    }
    assert!(db.cold_segment_count("t").unwrap() >= 4);
    // No key column in memory: the filters and directories take about a byte or two a row.
    let memory = db.cold_memory_bytes("t").unwrap();
    assert!(
        memory > 0 && memory < 3 * 4000,
        "{memory} bytes for 4,000 cold rows"
    );
    // Update and delete cold rows, then flush again.
    db.update("t", 7, row(7, -7)).unwrap();
    assert!(db.delete("t", 8).unwrap());
    assert!(!db.delete("t", 8).unwrap());
    assert!(matches!(
        db.insert("t", row(9, 0)),
        Err(Error::DuplicateKey { .. })
    ));
    db.insert("t", row(8, 88)).unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let db = open_cold(dir.path(), 1000);
    assert_eq!(db.row_count("t").unwrap(), 5000);
    for k in 0..5000i64 {
        let expected = match k {
            7 => row(7, -7),
            8 => row(8, 88),
            _ => row(k, k * 10),
        };
        assert_eq!(db.get("t", k).unwrap(), Some(expected), "key {k}");
    }
    assert_eq!(db.get("t", 5000).unwrap(), None);
    let all = db.scan("t", ..).unwrap();
    assert_eq!(all.len(), 5000);
    let pairs = {
        let mut p = key_value_pairs(&db.scan_batches("t", .., Some(&["v", "k"])).unwrap());
        p.sort_unstable();
        p
    };
    assert_eq!(pairs.len(), 5000);
    assert_eq!(pairs[7], (7, -7));
    assert_eq!(pairs[8], (8, 88));
    db.check_invariants().unwrap();
}

/// A key scrambled over the whole i64 range (a bijection), so every segment spans every key.
fn scrambled(i: i64) -> i64 {
    i.wrapping_mul(0x9e37_79b9_7f4a_7c15_u64 as i64) ^ 0x5555
}

/// A flush that rebuilds the cold-key filter drops the old one first, so for the length of
/// the build duplicate checks take the per-segment path. Inserts on another thread, racing
/// many such builds, still refuse every cold key and accept every fresh one.
#[test]
fn duplicate_checks_hold_while_a_flush_rebuilds_the_key_filter() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(open_cold(dir.path(), 500));
    db.create_table(table_def("t")).unwrap();
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let checkpoints = std::sync::Arc::new(AtomicUsize::new(0));
    let checkpointer = {
        let (db, done, checkpoints) = (db.clone(), done.clone(), checkpoints.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Acquire) {
                db.checkpoint().unwrap();
                checkpoints.fetch_add(1, Ordering::Release);
            }
        })
    };
    // Inserts go on until 40 checkpoints (each a flush, some of them rebuilding the filter)
    // have run beside them.
    let (mut next, mut round) = (0i64, 0i64);
    while checkpoints.load(Ordering::Acquire) < 40 && round < 200_000 {
        let rows: Vec<_> = (next..next + 400).map(|i| row(scrambled(i), i)).collect();
        db.insert_batch("t", rows).unwrap();
        next += 400;
        // A key inserted earlier: cold by now, or hot if its flush is still in flight.
        let existing = scrambled((round * 7_919) % next);
        let batch = vec![row(scrambled(1_000_000_000 + round), 0), row(existing, 1)];
        match db.insert_batch("t", batch) {
            Err(Error::DuplicateKey { key, .. }) => assert_eq!(key, existing, "round {round}"),
            other => panic!("round {round}: key {existing} inserted again: {other:?}"),
        }
        round += 1;
    }
    done.store(true, Ordering::Release);
    checkpointer.join().unwrap();
    assert!(checkpoints.load(Ordering::Acquire) >= 40, "{round} rounds");
    assert!(db.cold_segment_count("t").unwrap() >= 10);
    assert_eq!(db.row_count("t").unwrap(), next as usize);
}

/// Every duplicate insert is refused, and every fresh key accepted, whether the cold tier's
/// key filter is built (from the third segment on), absent (after a reopen, until a flush
/// builds it again) or rebuilt larger (as flushes pass its capacity).
#[test]
fn duplicates_are_found_through_the_cold_key_filter_and_without_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 2_000);
    db.create_table(table_def("t")).unwrap();
    let mut next = 0i64;
    let check = |db: &Database, inserted: i64, tag: &str| {
        // Batches of existing keys, each with fresh keys around it: refused whole, naming
        // the smallest existing key.
        for probe in (0..inserted).step_by(997) {
            let existing = scrambled(probe);
            let batch = vec![row(scrambled(1_000_000 + probe), 1), row(existing, 2)];
            match db.insert_batch("t", batch) {
                Err(Error::DuplicateKey { key, .. }) => assert_eq!(key, existing, "{tag}"),
                other => panic!("{tag}: key {existing} inserted again: {other:?}"),
            }
            assert!(
                matches!(
                    db.insert("t", row(existing, 3)),
                    Err(Error::DuplicateKey { .. })
                ),
                "{tag}: single insert of {existing}"
            );
        }
        assert_eq!(db.row_count("t").unwrap(), inserted as usize, "{tag}");
    };
    for round in 0..6 {
        let rows: Vec<_> = (next..next + 3_000).map(|i| row(scrambled(i), i)).collect();
        db.insert_batch("t", rows).unwrap();
        next += 3_000;
        db.checkpoint().unwrap();
        check(&db, next, &format!("after flush {round}"));
    }
    assert!(db.cold_segment_count("t").unwrap() >= 4);
    // A deleted cold key may be inserted again (the filter still passes it; its segment's
    // deletion vector hides it).
    assert!(db.delete("t", scrambled(5)).unwrap());
    db.insert("t", row(scrambled(5), -5)).unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let db = open_cold(dir.path(), 2_000);
    check(&db, next, "after reopen");
    let rows: Vec<_> = (next..next + 3_000).map(|i| row(scrambled(i), i)).collect();
    db.insert_batch("t", rows).unwrap();
    next += 3_000;
    db.checkpoint().unwrap();
    check(&db, next, "after the first flush since reopen");
    assert_eq!(
        db.get("t", scrambled(5)).unwrap(),
        Some(row(scrambled(5), -5))
    );
    for i in (0..next).step_by(101) {
        assert_eq!(
            db.get("t", scrambled(i)).unwrap().map(|r| r[0].clone()),
            Some(omendb::Value::Int64(scrambled(i)))
        );
    }
    db.check_invariants().unwrap();
}

#[test]
fn segments_are_plain_parquet() {
    use arrow_array::cast::AsArray;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 10);
    db.create_table(table_def("t")).unwrap();
    db.insert_batch("t", (0..100).map(|k| row(k, k + 1)).collect())
        .unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let file = std::fs::File::open(&files[0]).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["k", "v", "s", "b"]);
    use arrow_schema::DataType as A;
    let types: Vec<&A> = schema.fields().iter().map(|f| f.data_type()).collect();
    assert_eq!(types, [&A::Int64, &A::Int64, &A::Utf8, &A::Binary]);
    assert!(!schema.field(0).is_nullable());
    let mut keys = Vec::new();
    for batch in builder.build().unwrap() {
        let batch = batch.unwrap();
        let k = batch
            .column(0)
            .as_primitive::<arrow_array::types::Int64Type>();
        keys.extend(k.values().iter().copied());
        let s = batch.column(2).as_string::<i32>();
        assert_eq!(s.value(0), format!("value-{}", k.value(0) + 1));
    }
    // The lowest keys went cold, sorted; 5 stayed hot.
    assert_eq!(keys, (0..95).collect::<Vec<i64>>());
}

#[test]
fn unlisted_segment_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 10);
    db.create_table(table_def("t")).unwrap();
    db.insert_batch("t", (0..30).map(|k| row(k, k)).collect())
        .unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let listed = cold_files(dir.path());
    assert_eq!(listed.len(), 2, "a segment and its index: {listed:?}");
    // What a flush that crashed before its checkpoint leaves.
    let cold = dir.path().join("cold");
    std::fs::copy(
        &listed[1],
        cold.join("0000000001-00000000000000000007.parquet"),
    )
    .unwrap();
    std::fs::copy(&listed[0], cold.join("0000000001-00000000000000000007.idx")).unwrap();
    std::fs::write(cold.join("x.parquet.tmp"), b"partial").unwrap();
    std::fs::write(cold.join("x.idx.tmp"), b"partial").unwrap();
    let db = open_cold(dir.path(), 10);
    assert_eq!(cold_files(dir.path()), listed);
    assert_eq!(db.row_count("t").unwrap(), 30);
}

/// A segment file the checkpoint lists but that is gone (removed at rest) is damage, not an
/// I/O error to retry: open reports `Corruption` naming it, and every later open the same
/// way, until the file is back. (The simulator's damage at rest found it reported as
/// `Io` NotFound, which an operator or a retry loop would take for a transient error.)
#[test]
fn a_missing_listed_segment_file_is_corruption_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 10);
    db.create_table(table_def("t")).unwrap();
    db.insert_batch("t", (0..30).map(|k| row(k, k)).collect())
        .unwrap();
    db.checkpoint().unwrap();
    db.close().unwrap();
    let segment = segment_files(dir.path()).remove(0);
    let index = segment.with_extension("idx");
    for file in [&index, &segment] {
        let bytes = std::fs::read(file).unwrap();
        std::fs::remove_file(file).unwrap();
        for _ in 0..2 {
            match Database::open(dir.path(), Options::with_sync(Durability::None)) {
                Err(Error::Corruption { path, reason, .. }) => {
                    assert_eq!(&path, file);
                    assert!(reason.contains("missing"), "{reason}");
                }
                other => panic!("expected corruption naming {file:?}, got {other:?}"),
            }
        }
        std::fs::write(file, bytes).unwrap();
    }
    let db = open_cold(dir.path(), 10);
    assert_eq!(db.row_count("t").unwrap(), 30);
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn corrupted_segment_is_reported_with_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 10);
    db.create_table(table_def("t")).unwrap();
    db.insert_batch("t", (0..2000).map(|k| row(k, k)).collect())
        .unwrap();
    db.checkpoint().unwrap();
    drop(db);
    let segment = segment_files(dir.path()).remove(0);
    let index = segment.with_extension("idx");
    let len = std::fs::metadata(&segment).unwrap().len();
    let original = std::fs::read(&segment).unwrap();
    // A damaged index or footer: open reads both, and says which file.
    for (file, offset) in [(&index, 20), (&segment, len - 20)] {
        let before = std::fs::read(file).unwrap();
        flip_byte(file, offset);
        match Database::open(dir.path(), Options::with_sync(Durability::None)) {
            Err(Error::Corruption { path, .. }) => assert_eq!(&path, file),
            other => panic!("expected corruption of {file:?}, got {other:?}"),
        }
        std::fs::write(file, before).unwrap();
    }
    // A damaged data page, at rest: open does not read it; `verify` and the reads that
    // touch it report it.
    flip_byte(&segment, len / 3);
    let db = open_cold(dir.path(), 10);
    match db.verify("t") {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, segment),
        other => panic!("expected corruption of {segment:?}, got {other:?}"),
    }
    drop(db);
    // While open: the page checksums catch it, and no read returns a wrong row.
    std::fs::write(&segment, &original).unwrap();
    let db = open_cold(dir.path(), 10);
    assert_eq!(db.verify("t").unwrap(), 1995);
    flip_byte(&segment, len / 3);
    match db.scan_batches("t", .., None) {
        Err(Error::Corruption { path, .. }) => assert_eq!(path, segment),
        other => panic!("expected corruption of {segment:?}, got {other:?}"),
    }
    let mut errors = 0;
    for k in 0..2000 {
        match db.get("t", k) {
            Ok(found) => assert_eq!(found, Some(row(k, k))),
            Err(Error::Corruption { path, .. }) => {
                assert_eq!(path, segment);
                errors += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(errors > 0, "no point read touched the damaged page");
    assert!(errors < 2000, "every point read failed");
}

#[test]
fn compaction_preserves_contents_and_drops_dead_rows() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_cold(dir.path(), 100);
    db.create_table(table_def("t")).unwrap();
    let mut model = std::collections::BTreeMap::new();
    for round in 0..5i64 {
        let rows: Vec<_> = (round * 200..round * 200 + 200)
            .map(|k| row(k, k))
            .collect();
        for r in &rows {
            if let omendb::Value::Int64(k) = r[0] {
                model.insert(k, r.clone());
            }
        }
        db.insert_batch("t", rows).unwrap();
        db.checkpoint().unwrap();
        // Update and delete rows that went cold.
        for k in (0..round * 200).step_by(7) {
            if model.contains_key(&k) {
                db.update("t", k, row(k, -k)).unwrap();
                model.insert(k, row(k, -k));
            }
        }
        for k in (0..round * 200).step_by(11) {
            assert_eq!(db.delete("t", k).unwrap(), model.remove(&k).is_some());
        }
    }
    db.checkpoint().unwrap();
    let before = db.cold_segment_count("t").unwrap();
    assert!(before >= 3, "{before} segments");
    let expected: Vec<_> = model.values().cloned().collect();
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    assert!(db.compact_step().unwrap());
    assert_eq!(db.cold_segment_count("t").unwrap(), 1);
    assert!(!db.compact_step().unwrap(), "nothing left to compact");
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    assert_eq!(segment_files(dir.path()).len(), 1, "replaced files removed");
    db.check_invariants().unwrap();
    drop(db);
    let db = open_cold(dir.path(), 100);
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    assert_eq!(db.row_count("t").unwrap(), expected.len());
    for k in 0..1000 {
        assert_eq!(db.get("t", k).unwrap().as_ref(), model.get(&k), "key {k}");
    }
}

#[test]
fn compaction_worker_merges_segments_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(
        dir.path(),
        Options {
            sync: Durability::None,
            background_worker: true,
            hot_rows_max: Some(50),
            compaction_worker: true,
            ..Options::default()
        },
    )
    .unwrap();
    db.create_table(table_def("t")).unwrap();
    for round in 0..4i64 {
        db.insert_batch(
            "t",
            (round * 100..round * 100 + 100)
                .map(|k| row(k, k))
                .collect(),
        )
        .unwrap();
        db.checkpoint().unwrap();
    }
    db.delete("t", 3).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.cold_segment_count("t").unwrap() > 1 || segment_files(dir.path()).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not compact"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let expected: Vec<_> = (0..400).filter(|&k| k != 3).map(|k| row(k, k)).collect();
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    db.close().unwrap();
    let db = open_cold(dir.path(), 50);
    assert_eq!(db.scan("t", ..).unwrap(), expected);
}

#[test]
fn rows_changed_while_a_compaction_merges_stay_changed() {
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(
        Database::open(
            dir.path(),
            Options {
                sync: Durability::None,
                background_worker: true,
                hot_rows_max: Some(20_000),
                compaction_worker: false,
                // Tier-1 segments from 2,000 rows: four of a size merge.
                compaction_base_rows: 2_000,
                ..Options::default()
            },
        )
        .unwrap(),
    );
    db.create_table(table_def("t")).unwrap();
    let mut model = std::collections::BTreeMap::new();
    // Shuffled keys, so every segment spans the key range.
    let keys: Vec<i64> = (0..200_000i64).map(|i| (i * 7_919) % 200_000).collect();
    for chunk in keys.chunks(25_000) {
        let rows: Vec<_> = chunk.iter().map(|&k| row(k, k)).collect();
        for r in &rows {
            if let omendb::Value::Int64(k) = r[0] {
                model.insert(k, r.clone());
            }
        }
        db.insert_batch("t", rows).unwrap();
        db.checkpoint().unwrap();
    }
    assert!(db.cold_segment_count("t").unwrap() >= 4);
    let compactor = {
        let db = db.clone();
        std::thread::spawn(move || {
            omendb::probe::reset();
            while db.compact_step().unwrap() {}
            omendb::probe::count(omendb::probe::Probe::ColdHiddenDuringMerge)
        })
    };
    // Update and delete cold rows while the merge runs.
    for round in 0..40i64 {
        for k in (round..200_000).step_by(997) {
            if round % 2 == 0 {
                db.update("t", k, row(k, -k - round)).unwrap();
                model.insert(k, row(k, -k - round));
            } else {
                db.delete("t", k).unwrap();
                model.remove(&k);
            }
        }
    }
    let carried = compactor.join().unwrap();
    // Informational: how many changes landed during a merge (timing decides).
    eprintln!("rows hidden during a merge and carried over: {carried}");
    db.checkpoint().unwrap();
    while db.compact_step().unwrap() {}
    db.check_invariants().unwrap();
    let expected: Vec<_> = model.values().cloned().collect();
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    assert_eq!(db.row_count("t").unwrap(), expected.len());
    drop(compactor_free(db));
    let db = open_cold(dir.path(), 20_000);
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    for k in (0..200_000).step_by(991) {
        assert_eq!(db.get("t", k).unwrap().as_ref(), model.get(&k), "key {k}");
    }
}

/// The database out of its `Arc` (the compaction thread has ended), to close it.
fn compactor_free(db: std::sync::Arc<Database>) -> Database {
    std::sync::Arc::try_unwrap(db).expect("no other owner")
}

/// The flush worker moves rows to the cold tier on its own thread while one writer inserts,
/// updates and deletes, with no checkpoint called: every change lands exactly once, the hot
/// tier is brought back under its cap, and a reopen sees the same table.
#[test]
fn flush_worker_keeps_up_with_a_writer_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        sync: Durability::None,
        background_worker: true,
        hot_rows_max: Some(5_000),
        flush_worker: true,
        compaction_worker: true,
        ..Options::default()
    };
    let db = Database::open(dir.path(), options.clone()).unwrap();
    db.create_table(table_def("t")).unwrap();
    let mut model = std::collections::BTreeMap::new();
    let n = 100_000i64;
    let keys: Vec<i64> = (0..n).map(|i| (i * 7_919) % n).collect();
    for (round, chunk) in keys.chunks(2_000).enumerate() {
        let rows: Vec<_> = chunk.iter().map(|&k| row(k, k)).collect();
        db.insert_batch("t", rows).unwrap();
        chunk.iter().for_each(|&k| {
            model.insert(k, row(k, k));
        });
        // Change rows already loaded, hot, cold or being flushed right now.
        let round = round as i64;
        for &k in keys[..(round as usize + 1) * 2_000].iter().step_by(97) {
            if (k + round) % 3 == 0 {
                db.delete("t", k).unwrap();
                model.remove(&k);
            } else if model.contains_key(&k) {
                db.update("t", k, row(k, -k - round)).unwrap();
                model.insert(k, row(k, -k - round));
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while db.hot_row_count("t").unwrap() > 5_000 {
        assert!(
            std::time::Instant::now() < deadline,
            "the flush worker did not bring the hot tier under its cap"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(db.cold_segment_count("t").unwrap() >= 1);
    db.check_invariants().unwrap();
    let expected: Vec<_> = model.values().cloned().collect();
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    assert_eq!(db.row_count("t").unwrap(), expected.len());
    db.close().unwrap();
    let db = Database::open(dir.path(), options).unwrap();
    assert_eq!(db.scan("t", ..).unwrap(), expected);
    db.check_invariants().unwrap();
}

/// `t(k pk, ts Timestamp rising with k, v Int64 scattered, n Int64 nullable and always
/// NULL, s Utf8)` loaded in key order with a flush every 1,000 rows: each segment (one row
/// group) holds a narrow band of `ts` and every value of `v`.
fn zone_map_table(path: &Path) -> Database {
    use omendb::{Column, DataType, TableDef, Value};
    let db = open_cold(path, 500);
    let def = TableDef::new(
        "t",
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("ts", DataType::Timestamp),
            Column::new("v", DataType::Int64),
            Column::new("n", DataType::Int64).nullable(),
            Column::new("s", DataType::Utf8),
        ],
    )
    .expect("valid definition");
    db.create_table(def).expect("create");
    for start in (0..8_000i64).step_by(1_000) {
        let rows = (start..start + 1_000)
            .map(|k| {
                vec![
                    Value::Int64(k),
                    Value::Timestamp(1_000_000 + k * 10),
                    Value::Int64((k * 7_919) % 1_000),
                    Value::Null,
                    Value::Utf8(format!("row {k}")),
                ]
            })
            .collect();
        db.insert_batch("t", rows).expect("insert");
        db.checkpoint().expect("checkpoint");
    }
    db
}

/// (k, ts, v) of every row a pruned scan yields.
fn pruned_rows(
    db: &Database,
    ranges: &[omendb::ColumnRange],
) -> (std::collections::BTreeSet<(i64, i64, i64)>, u64) {
    use arrow_array::{Array, Int64Array, TimestampMicrosecondArray};
    let mut scan = db
        .scan_stream_pruned("t", .., Some(&["k", "ts", "v"]), ranges)
        .expect("scan");
    let mut rows = std::collections::BTreeSet::new();
    for batch in scan.by_ref() {
        let batch = batch.expect("batch");
        let k = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("k");
        let ts = batch
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .expect("ts");
        let v = batch
            .column(2)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("v");
        for i in 0..batch.num_rows() {
            assert!(rows.insert((k.value(i), ts.value(i), v.value(i))));
        }
        assert_eq!(k.null_count(), 0);
    }
    (rows, scan.row_groups_skipped())
}

#[test]
fn a_pruned_scan_skips_row_groups_outside_the_ranges_and_keeps_every_row_inside() {
    use omendb::ColumnRange;
    use std::ops::Bound::{Excluded, Included, Unbounded};
    use std::ops::RangeBounds;
    let dir = tempfile::tempdir().unwrap();
    let db = zone_map_table(dir.path());
    let segments = db.cold_segment_count("t").expect("segments") as u64;
    assert!(segments >= 5, "{segments} segments");
    let (all, skipped) = pruned_rows(&db, &[]);
    assert_eq!((all.len(), skipped), (8_000, 0));
    let range = |column: &str, low, high| ColumnRange {
        column: column.into(),
        low,
        high,
    };
    let cases = [
        // A band of ts: the segments around it are read, the others are not.
        vec![range("ts", Included(1_020_000), Excluded(1_025_000))],
        vec![range("ts", Unbounded, Included(1_000_005))],
        vec![range("ts", Excluded(1_079_990), Unbounded)],
        // v spans every segment: nothing to skip, and nothing lost.
        vec![range("v", Included(10), Included(20))],
        // Both: the narrower wins.
        vec![
            range("v", Included(0), Included(500)),
            range("ts", Included(1_040_000), Included(1_040_100)),
        ],
        // No value can match: every cold row group goes.
        vec![range("ts", Excluded(i64::MAX), Unbounded)],
        // An all-NULL column matches no range.
        vec![range("n", Included(0), Included(10))],
    ];
    let within = |(_, ts, v): (i64, i64, i64), ranges: &[ColumnRange]| {
        ranges.iter().all(|r| {
            let x = if r.column == "ts" { ts } else { v };
            r.column != "n" && (r.low, r.high).contains(&x)
        })
    };
    for ranges in cases {
        let (rows, skipped) = pruned_rows(&db, &ranges);
        let wanted: Vec<_> = all
            .iter()
            .copied()
            .filter(|&r| within(r, &ranges))
            .collect();
        let kept: Vec<_> = rows
            .iter()
            .copied()
            .filter(|&r| within(r, &ranges))
            .collect();
        assert_eq!(kept, wanted, "{ranges:?}");
        assert!(rows.is_subset(&all), "{ranges:?}");
        let narrow = ranges.iter().any(|r| r.column != "v");
        assert_eq!(skipped > 0, narrow, "{ranges:?}: {skipped} skipped");
        if narrow {
            // At most the rows of two segments, and the hot tier's, are read.
            assert!(
                rows.len() < 2_000 + 1_000,
                "{ranges:?}: {} rows",
                rows.len()
            );
        }
    }
}

#[test]
fn a_pruned_scan_refuses_unknown_columns_and_columns_it_cannot_prune() {
    use omendb::ColumnRange;
    use std::ops::Bound::Unbounded;
    let dir = tempfile::tempdir().unwrap();
    let db = zone_map_table(dir.path());
    let range = |column: &str| {
        vec![ColumnRange {
            column: column.into(),
            low: Unbounded,
            high: Unbounded,
        }]
    };
    let e = db.scan_stream_pruned("t", .., None, &range("nope")).err();
    assert!(
        matches!(e, Some(Error::ColumnNotFound { ref column, .. }) if column == "nope"),
        "{e:?}"
    );
    let e = db.scan_stream_pruned("t", .., None, &range("s")).err();
    assert!(
        matches!(e, Some(Error::TypeMismatch { ref column, .. }) if column == "s"),
        "{e:?}"
    );
}

/// A scan reads a column chunk of 64 KiB or more through a mapping (`File::map`), a smaller
/// one or every one under `OsEnv::without_mapped_reads` with `read_at`: both return the
/// same rows, and both report a damaged page as `Corruption` naming the file.
#[test]
fn mapped_and_copied_chunk_reads_agree_and_both_catch_damage() {
    use omendb::env::OsEnv;
    use omendb::Env;
    let rows = 60_000i64;
    // Full-width values: the `v` chunk is plain, 8 bytes a row, about 480 KB.
    let v_of = |k: i64| (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as i64;
    let expected = (0..rows).fold(0i64, |s, k| s.wrapping_add(v_of(k)));
    let options = || Options {
        sync: Durability::None,
        background_worker: true,
        hot_rows_max: Some(1000),
        compaction_worker: false,
        ..Options::default()
    };
    for mapped in [true, false] {
        let env = || match mapped {
            true => Env::os(),
            false => Env::of_os(OsEnv::without_mapped_reads()),
        };
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open_with_env(env(), dir.path(), options()).unwrap();
        db.create_table(table_def("t")).unwrap();
        for chunk in (0..rows).collect::<Vec<_>>().chunks(10_000) {
            db.insert_batch("t", chunk.iter().map(|&k| row(k, v_of(k))).collect())
                .unwrap();
        }
        db.checkpoint().unwrap();
        let sum = |db: &Database| -> omendb::Result<i64> {
            Ok(
                common::model_ops::values_of(&db.scan_batches("t", .., Some(&["v"]))?)
                    .into_iter()
                    .fold(0i64, |s, v| s.wrapping_add(v)),
            )
        };
        assert_eq!(sum(&db).unwrap(), expected, "mapped {mapped}");
        drop(db);
        let segment = segment_files(dir.path()).remove(0);
        let len = std::fs::metadata(&segment).unwrap().len();
        assert!(len > 600_000, "the segment is {len} bytes");
        // A byte of every 8 KiB of the data pages (open reads only the file's tail, the
        // footer and page index, and its sidecar).
        for offset in (4096..len * 9 / 10).step_by(8192) {
            flip_byte(&segment, offset);
        }
        let db = Database::open_with_env(env(), dir.path(), options()).unwrap();
        match sum(&db) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, segment, "mapped {mapped}"),
            other => panic!("mapped {mapped}: expected corruption of {segment:?}, got {other:?}"),
        }
    }
}
