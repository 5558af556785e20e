//! Random sequences of table operations, with reopen and checkpoint points, checked
//! against a `BTreeMap` model step by step. Shared by the real-disk and sim-disk tests.

use super::*;
use omendb::{Database, Durability, Error, Row};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::ops::Bound;

#[derive(Debug, Clone)]
pub enum Op {
    Insert(i64, i64),
    InsertBatch(Vec<i64>, i64),
    Get(i64),
    GetMany(Vec<i64>),
    Update(i64, i64),
    Delete(i64),
    Scan(i64, i64),
    Reopen,
    Checkpoint,
    Compact,
}

fn key() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => -20i64..20,
        1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, i64::MAX - 1, i64::MAX]),
    ]
}

pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (key(), any::<i64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 => (prop::collection::vec(key(), 1..8), any::<i64>()).prop_map(|(ks, v)| Op::InsertBatch(ks, v)),
        4 => key().prop_map(Op::Get),
        2 => prop::collection::vec(key(), 0..40).prop_map(Op::GetMany),
        3 => (key(), any::<i64>()).prop_map(|(k, v)| Op::Update(k, v)),
        3 => key().prop_map(Op::Delete),
        2 => (key(), key()).prop_map(|(a, b)| Op::Scan(a, b)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Compact),
    ]
}

pub fn sync_mode() -> impl Strategy<Value = Durability> {
    prop_oneof![
        Just(Durability::None),
        Just(Durability::Batch {
            max_delay: std::time::Duration::from_millis(1)
        }),
    ]
}

/// Runs `ops` against a database from `open_db` (called again at every reopen point) and
/// a `BTreeMap` model.
pub fn check_against_model(
    ops: Vec<Op>,
    mut open_db: impl FnMut() -> Database,
) -> Result<(), TestCaseError> {
    let mut db = open_db();
    db.create_table(table_def("t")).unwrap();
    let mut model: BTreeMap<i64, Row> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Insert(k, v) => {
                let got = db.insert("t", row(k, v));
                match model.entry(k) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        prop_assert!(
                            matches!(got, Err(Error::DuplicateKey { key, .. }) if key == k),
                            "{:?}",
                            got
                        );
                    }
                    std::collections::btree_map::Entry::Vacant(slot) => {
                        prop_assert!(got.is_ok());
                        slot.insert(row(k, v));
                    }
                }
            }
            Op::InsertBatch(ks, v) => {
                let rows: Vec<Row> = ks.iter().map(|&k| row(k, v)).collect();
                let mut sorted = ks.clone();
                sorted.sort_unstable();
                sorted.dedup();
                let duplicate =
                    sorted.len() != ks.len() || ks.iter().any(|k| model.contains_key(k));
                let got = db.insert_batch("t", rows);
                if duplicate {
                    prop_assert!(matches!(got, Err(Error::DuplicateKey { .. })), "{:?}", got);
                } else {
                    prop_assert!(got.is_ok());
                    for k in ks {
                        model.insert(k, row(k, v));
                    }
                }
            }
            Op::Get(k) => prop_assert_eq!(db.get("t", k).unwrap(), model.get(&k).cloned()),
            Op::GetMany(ks) => {
                let want: Vec<Option<Row>> = ks.iter().map(|k| model.get(k).cloned()).collect();
                prop_assert_eq!(db.get_many("t", &ks).unwrap(), want);
                // The visitor sees the found keys once each, in the order asked.
                let mut seen = Vec::new();
                db.get_many_with("t", &ks, |i, row| seen.push((i, row.key())))
                    .unwrap();
                let found: Vec<(usize, i64)> = ks
                    .iter()
                    .enumerate()
                    .filter(|(_, k)| model.contains_key(k))
                    .map(|(i, k)| (i, *k))
                    .collect();
                prop_assert_eq!(seen, found);
            }
            Op::Update(k, v) => {
                let got = db.update("t", k, row(k, v));
                if let Some(slot) = model.get_mut(&k) {
                    prop_assert!(got.is_ok());
                    *slot = row(k, v);
                } else {
                    prop_assert!(matches!(got, Err(Error::KeyNotFound { .. })), "{:?}", got);
                }
            }
            Op::Delete(k) => {
                prop_assert_eq!(db.delete("t", k).unwrap(), model.remove(&k).is_some())
            }
            Op::Scan(a, b) => {
                let (lo, hi) = (a.min(b), a.max(b));
                let expected: Vec<Row> = model.range(lo..=hi).map(|(_, r)| r.clone()).collect();
                prop_assert_eq!(db.scan("t", lo..=hi).unwrap(), expected.clone());
                let mut pairs =
                    key_value_pairs(&db.scan_batches("t", lo..=hi, Some(&["v", "k"])).unwrap());
                pairs.sort_unstable();
                let expected_pairs: Vec<(i64, i64)> = expected
                    .iter()
                    .map(|r| match (&r[0], &r[1]) {
                        (omendb::Value::Int64(k), omendb::Value::Int64(v)) => (*k, *v),
                        _ => unreachable!(),
                    })
                    .collect();
                prop_assert_eq!(pairs, expected_pairs);
                // Without the key the hot rows may come column by column in slot order
                // (when the range holds every hot key): the same values, in any order.
                for (range, want) in [
                    ((Bound::Included(lo), Bound::Included(hi)), expected),
                    (
                        (Bound::Unbounded, Bound::Unbounded),
                        model.values().cloned().collect(),
                    ),
                ] {
                    let mut values = values_of(&db.scan_batches("t", range, Some(&["v"])).unwrap());
                    values.sort_unstable();
                    let mut want: Vec<i64> = want
                        .iter()
                        .map(|r| match &r[1] {
                            omendb::Value::Int64(v) => *v,
                            _ => unreachable!(),
                        })
                        .collect();
                    want.sort_unstable();
                    prop_assert_eq!(values, want);
                }
            }
            Op::Reopen => {
                drop(db);
                db = open_db();
            }
            Op::Checkpoint => {
                db.checkpoint().unwrap();
            }
            Op::Compact => {
                db.compact_step().unwrap();
            }
        }
        db.check_invariants().unwrap();
    }
    let all: Vec<Row> = model.values().cloned().collect();
    prop_assert_eq!(db.scan("t", ..).unwrap(), all.clone());
    drop(db);
    let db = open_db();
    prop_assert_eq!(db.scan("t", ..).unwrap(), all);
    Ok(())
}

/// (k, v) of batches whose columns are `v` then `k` (Int64 both).
pub fn key_value_pairs(batches: &[omendb::RecordBatch]) -> Vec<(i64, i64)> {
    use arrow_array::{cast::AsArray, types::Int64Type};
    let mut pairs = Vec::new();
    for batch in batches {
        assert_eq!(batch.num_columns(), 2);
        let v = batch.column(0).as_primitive::<Int64Type>();
        let k = batch.column(1).as_primitive::<Int64Type>();
        for i in 0..batch.num_rows() {
            pairs.push((k.value(i), v.value(i)));
        }
    }
    pairs
}

/// The values of the one Int64 column of `batches`.
pub fn values_of(batches: &[omendb::RecordBatch]) -> Vec<i64> {
    use arrow_array::{cast::AsArray, types::Int64Type};
    let mut values = Vec::new();
    for batch in batches {
        assert_eq!(batch.num_columns(), 1);
        values.extend(batch.column(0).as_primitive::<Int64Type>().iter().flatten());
    }
    values
}
