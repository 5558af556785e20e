//! Crash tests of the cold tier on the simulated disk: a crash at every I/O call of a
//! checkpoint that flushes (segment temp file, sync, read back, rename, directory sync,
//! checkpoint, log removal) leaves a database with every acknowledged row exactly once and no
//! unlisted segment file after open. The same for a compaction step.
#![cfg(feature = "sim")]

mod common;

use common::*;
use omendb::{Database, Durability, Options, Row};
use omendb_faults::{FaultPlan, SimFs};
use omendb_sim::env::SimMachine;
use std::collections::BTreeMap;

fn open_on(machine: &SimMachine) -> omendb::Result<Database> {
    Database::open_with_env(
        machine.env(),
        "/db",
        Options {
            sync: Durability::Always,
            background_worker: true,
            hot_rows_max: Some(10),
            compaction_worker: false,
            ..Options::default()
        },
    )
}

/// Builds a database whose next checkpoint flushes, with cold updates and deletes.
fn prepare(machine: &SimMachine) -> (Database, BTreeMap<i64, Row>) {
    let db = open_on(machine).expect("open");
    db.create_table(table_def("t")).unwrap();
    let mut model = BTreeMap::new();
    for k in 0..40 {
        db.insert("t", row(k, k)).unwrap();
        model.insert(k, row(k, k));
    }
    db.checkpoint().unwrap();
    assert_eq!(db.cold_segment_count("t").unwrap(), 1);
    db.update("t", 3, row(3, 33)).unwrap();
    model.insert(3, row(3, 33));
    assert!(db.delete("t", 4).unwrap());
    model.remove(&4);
    for k in 40..60 {
        db.insert("t", row(k, k)).unwrap();
        model.insert(k, row(k, k));
    }
    (db, model)
}

fn check(machine: &SimMachine, db: &Database, model: &BTreeMap<i64, Row>, what: &str) {
    let expected: Vec<Row> = model.values().cloned().collect();
    assert_eq!(db.scan("t", ..).unwrap(), expected, "{what}");
    for (k, r) in model {
        assert_eq!(
            db.get("t", *k).unwrap().as_ref(),
            Some(r),
            "{what}: key {k}"
        );
    }
    assert_eq!(db.get("t", 4).unwrap(), None, "{what}");
    assert_eq!(db.row_count("t").unwrap(), model.len(), "{what}");
    db.check_invariants().unwrap();
    let segment_files = machine
        .disk
        .files()
        .iter()
        .filter(|p| p.starts_with("/db/cold/"))
        .count();
    // Each listed segment is a Parquet file and its sidecar index.
    assert_eq!(
        segment_files,
        2 * db.cold_segment_count("t").unwrap(),
        "{what}: unlisted segment files after open: {:?}",
        machine.disk.files()
    );
}

/// Crashes `step` at each of its I/O calls in turn, for each seed in `seeds`, on a database
/// `prepare` built and `setup` readied: after the restart the database must open with every
/// row as the model has it and no unlisted segment file, run `step` again and reopen the
/// same. The first `n` at which `step` finishes without a crash ends a seed's loop; `step`
/// must then have returned `Ok(true)` and left `segments_after` segments. Returns how many
/// crash points were tried.
fn crash_at_every_io_call(
    seeds: std::ops::Range<u64>,
    name: &str,
    setup: impl Fn(&Database, &mut BTreeMap<i64, Row>),
    step: impl Fn(&Database) -> omendb::Result<bool>,
    segments_after: usize,
) -> usize {
    let mut crashes = 0;
    for seed in seeds {
        for n in 1u64.. {
            let machine = SimMachine::new(SimFs::new(FaultPlan::none().with_seed(seed)));
            let (db, mut model) = prepare(&machine);
            setup(&db, &mut model);
            let start = machine.disk.op_count();
            machine.disk.crash_at_op(start + n);
            let done = step(&db);
            let crashed = machine.disk.is_frozen();
            let what = format!("seed {seed}, crash at call {n} of the {name}");
            if !crashed {
                machine.disk.cancel_crash();
                assert!(done.unwrap_or_else(|e| panic!("{what}: {e}")), "{what}");
                assert_eq!(
                    db.cold_segment_count("t").unwrap(),
                    segments_after,
                    "{what}"
                );
                check(&machine, &db, &model, &what);
                break;
            }
            crashes += 1;
            drop(db);
            machine.disk.cancel_crash();
            machine.disk.restart();
            let db = open_on(&machine).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            check(&machine, &db, &model, &what);
            // The recovered database runs the step and reopens cleanly.
            step(&db).unwrap_or_else(|e| panic!("{what}: {name} again: {e}"));
            drop(db);
            let db = open_on(&machine).unwrap();
            check(
                &machine,
                &db,
                &model,
                &format!("{what}, after the {name} again and a reopen"),
            );
        }
    }
    crashes
}

#[test]
fn crash_at_every_io_call_of_a_flushing_checkpoint() {
    let crashes = crash_at_every_io_call(
        0..3,
        "checkpoint",
        |_, _| {},
        |db| db.checkpoint().map(|_| true),
        2,
    );
    assert!(crashes > 10, "only {crashes} crash points");
}

/// The flush that makes the third segment builds the table's cold-key filter, reading the
/// key pages of the first two (engine/src/cold/keyfilter.rs): a crash at each of those reads
/// too recovers every row, and the reopened table (no filter until a flush builds it again)
/// and the one after the retried flush find every key and no phantom.
#[test]
fn crash_at_every_io_call_of_a_flush_that_builds_the_key_filter() {
    let setup = |db: &Database, model: &mut BTreeMap<i64, Row>| {
        db.checkpoint().unwrap();
        assert_eq!(db.cold_segment_count("t").unwrap(), 2);
        for k in 60..80 {
            db.insert("t", row(k, k)).unwrap();
            model.insert(k, row(k, k));
        }
    };
    let built = || omendb::probe::count(omendb::probe::Probe::ColdKeyFilterBuilt);
    let before = built();
    let crashes = crash_at_every_io_call(
        0..2,
        "filter-building flush",
        setup,
        |db| db.checkpoint().map(|_| true),
        3,
    );
    assert!(crashes > 10, "only {crashes} crash points");
    assert!(built() > before, "no flush built the filter");
}

#[test]
fn crash_at_every_io_call_of_a_compaction() {
    let setup = |db: &Database, _: &mut BTreeMap<i64, Row>| {
        db.checkpoint().unwrap();
        assert_eq!(db.cold_segment_count("t").unwrap(), 2);
    };
    let crashes = crash_at_every_io_call(0..2, "compaction", setup, Database::compact_step, 1);
    assert!(crashes > 10, "only {crashes} crash points");
}
