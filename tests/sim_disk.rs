//! The engine's API and model tests on the simulated disk with every fault off: the Env
//! boundary holds (nothing reaches the OS), and crash semantics behave as promised.
#![cfg(feature = "sim")]

mod common;

use common::model_ops::{check_against_model, op, sync_mode};
use common::*;
use omendb::{Database, Durability, Options};
use omendb_faults::{FaultPlan, SimFs};
use omendb_sim::env::SimMachine;
use proptest::prelude::*;

fn open_on(machine: &SimMachine, sync: Durability) -> Database {
    open_with_copy_max(machine, sync, Options::default().checkpoint_copy_bytes_max)
}

/// `copy_max` 0 makes every checkpoint stream to its file instead of copying the state.
fn open_with_copy_max(machine: &SimMachine, sync: Durability, copy_max: usize) -> Database {
    Database::open_with_env(
        machine.env(),
        "/db",
        Options {
            sync,
            background_worker: true,
            hot_rows_max: None,
            compaction_worker: false,
            checkpoint_copy_bytes_max: copy_max,
            ..Options::default()
        },
    )
    .expect("open on the simulated disk")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn table_matches_btreemap_on_sim_disk(
        ops in prop::collection::vec(op(), 1..60),
        sync in sync_mode(),
        seed in any::<u64>(),
        stream in any::<bool>(),
    ) {
        let machine = SimMachine::new(SimFs::new(FaultPlan::none().with_seed(seed)));
        let copy_max = if stream { 0 } else { Options::default().checkpoint_copy_bytes_max };
        check_against_model(ops, || open_with_copy_max(&machine, sync, copy_max))?;
        prop_assert!(machine.disk.check_invariants().is_ok());
    }
}

#[test]
fn acknowledged_rows_survive_power_loss_on_sim_disk() {
    for seed in 0..50u64 {
        let machine = SimMachine::new(SimFs::new(FaultPlan::none().with_seed(seed)));
        let db = open_on(&machine, Durability::Always);
        db.create_table(table_def("t")).unwrap();
        for k in 0..40 {
            db.insert("t", row(k, k)).unwrap();
        }
        // An unacknowledged write in flight when the power goes.
        let _in_flight = db
            .submit(omendb::Write::Insert {
                table: "t".into(),
                rows: vec![row(1000, 0)],
            })
            .unwrap();
        machine.disk.freeze();
        drop(db);
        machine.disk.restart();
        let db = open_on(&machine, Durability::Always);
        for k in 0..40 {
            assert_eq!(
                db.get("t", k).unwrap(),
                Some(row(k, k)),
                "seed {seed} key {k}"
            );
        }
        let n = db.row_count("t").unwrap();
        assert!(n == 40 || n == 41, "seed {seed}: {n} rows");
    }
}

#[test]
fn unsynced_rows_may_vanish_but_the_log_stays_a_prefix() {
    let mut lost_some = false;
    for seed in 0..50u64 {
        let machine = SimMachine::new(SimFs::new(FaultPlan::none().with_seed(seed)));
        let db = open_on(&machine, Durability::None);
        db.create_table(table_def("t")).unwrap();
        db.checkpoint().unwrap();
        for k in 0..40 {
            db.insert("t", row(k, k)).unwrap();
        }
        machine.disk.freeze();
        drop(db);
        machine.disk.restart();
        let db = open_on(&machine, Durability::None);
        let n = db.row_count("t").unwrap() as i64;
        lost_some |= n < 40;
        // Whatever survived is exactly the first n inserts.
        let keys: Vec<i64> = db
            .scan("t", ..)
            .unwrap()
            .iter()
            .map(|r| match r[0] {
                omendb::Value::Int64(k) => k,
                _ => -1,
            })
            .collect();
        assert_eq!(keys, (0..n).collect::<Vec<_>>(), "seed {seed}");
    }
    assert!(
        lost_some,
        "no seed lost an unsynced write: the crash model is not exercised"
    );
}
