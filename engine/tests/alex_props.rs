//! Property tests: random operation sequences on the ALEX index and on `BTreeIndex`, the
//! `BTreeMap` reference, both driven through the `PrimaryIndex` trait the table uses, every
//! answer compared, one test per key distribution, `check_invariants` after every step.
//! Small size limits make splits, parent doubling, splits down, root growth and contraction
//! happen within a few hundred keys.
//!
//! A failure prints the distribution, the limits and the shrunk operation list.

use std::ops::Bound;

use omendb::index::alex::{Alex, AlexConfig, AlexIndex};
use omendb::index::{BTreeIndex, PrimaryIndex, RowLocation};
use proptest::prelude::*;

mod key_dist;
use key_dist::{key_of, Dist};

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    /// `insert_with`, whose closure must run once, and only for an absent key.
    InsertWith(u64),
    /// Insert of a present key (by index into the model), which must be rejected.
    InsertPresent(usize),
    Get(u64),
    GetPresent(usize),
    Remove(u64),
    RemovePresent(usize),
    /// `replace` of a key that is most likely absent (nothing changes).
    Replace(u64),
    /// `replace` of a present key with a new location.
    ReplacePresent(usize, u64),
    /// Lower raw, upper raw, bound kinds (0 included, 1 excluded, 2 unbounded).
    Range(u64, u64, u8, u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<u64>().prop_map(Op::Insert),
        2 => any::<u64>().prop_map(Op::InsertWith),
        1 => any::<usize>().prop_map(Op::InsertPresent),
        2 => any::<u64>().prop_map(Op::Get),
        2 => any::<usize>().prop_map(Op::GetPresent),
        1 => any::<u64>().prop_map(Op::Remove),
        2 => any::<usize>().prop_map(Op::RemovePresent),
        1 => any::<u64>().prop_map(Op::Replace),
        1 => (any::<usize>(), any::<u64>()).prop_map(|(which, raw)| Op::ReplacePresent(which, raw)),
        1 => (any::<u64>(), any::<u64>(), 0u8..3, 0u8..3).prop_map(|(a, b, c, d)| Op::Range(a, b, c, d)),
    ]
}

/// Mostly removes: drains a tree so that data nodes empty out and the reclaiming paths
/// (slots given to a neighbour, single-child parents replaced, the root halved) run often.
fn draining_op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => any::<u64>().prop_map(Op::Insert),
        1 => any::<u64>().prop_map(Op::Remove),
        8 => any::<usize>().prop_map(Op::RemovePresent),
        1 => any::<usize>().prop_map(Op::GetPresent),
        1 => (any::<u64>(), any::<u64>(), 0u8..3, 0u8..3).prop_map(|(a, b, c, d)| Op::Range(a, b, c, d)),
    ]
}

fn config_strategy() -> impl Strategy<Value = AlexConfig> {
    prop_oneof![
        3 => Just(AlexConfig::tiny()),
        1 => Just(AlexConfig {
            data_node_slots_max: 128,
            inner_fanout_max: 4,
            tree_depth_max: 6,
        }),
        1 => Just(AlexConfig::default()),
    ]
}

fn bound(kind: u8, key: i64) -> Bound<i64> {
    match kind {
        0 => Bound::Included(key),
        1 => Bound::Excluded(key),
        _ => Bound::Unbounded,
    }
}

/// The model's keys by position (for "present key" operations).
fn nth_key(model: &BTreeIndex, index: usize) -> Option<i64> {
    if model.is_empty() {
        return None;
    }
    model
        .range(Bound::Unbounded, Bound::Unbounded)
        .nth(index % model.len())
        .map(|(key, _)| key)
}

/// Every pair of `index`, through the trait.
fn pairs(index: &impl PrimaryIndex) -> Vec<(i64, RowLocation)> {
    index.range(Bound::Unbounded, Bound::Unbounded).collect()
}

/// Runs `ops` on `tree` and on `model` through [`PrimaryIndex`], comparing every answer and
/// checking the tree's invariants after each step.
fn run(
    dist: Dist,
    mut tree: AlexIndex,
    mut model: BTreeIndex,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let step_offset = model.len();
    for (index, op) in ops.iter().enumerate() {
        let step = step_offset + index;
        match *op {
            Op::Insert(raw) => {
                let key = key_of(dist, step, raw);
                prop_assert_eq!(
                    tree.insert(key, raw),
                    model.insert(key, raw),
                    "insert {}",
                    key
                );
            }
            Op::InsertWith(raw) => {
                let key = key_of(dist, step, raw);
                let mut calls = 0;
                let inserted = tree.insert_with(key, || {
                    calls += 1;
                    raw
                });
                prop_assert_eq!(
                    inserted,
                    model.insert_with(key, || raw),
                    "insert_with {}",
                    key
                );
                prop_assert_eq!(calls, u32::from(inserted), "insert_with {} calls", key);
            }
            Op::InsertPresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert!(!tree.insert(key, 0), "duplicate insert {} accepted", key);
                }
            }
            Op::Get(raw) => {
                let key = key_of(dist, (raw >> 32) as usize % (step + 1), raw);
                prop_assert_eq!(tree.get(key), model.get(key), "get {}", key);
            }
            Op::GetPresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert_eq!(tree.get(key), model.get(key), "get {}", key);
                }
            }
            Op::Remove(raw) => {
                let key = key_of(dist, (raw >> 32) as usize % (step + 1), raw);
                prop_assert_eq!(tree.remove(key), model.remove(key), "remove {}", key);
            }
            Op::RemovePresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert_eq!(tree.remove(key), model.remove(key), "remove {}", key);
                }
            }
            Op::Replace(raw) => {
                let key = key_of(dist, (raw >> 32) as usize % (step + 1), raw);
                prop_assert_eq!(
                    tree.replace(key, raw),
                    model.replace(key, raw),
                    "replace {}",
                    key
                );
            }
            Op::ReplacePresent(which, raw) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert_eq!(
                        tree.replace(key, raw),
                        model.replace(key, raw),
                        "replace {}",
                        key
                    );
                }
            }
            Op::Range(low_raw, high_raw, low_kind, high_kind) => {
                let lower = bound(low_kind, key_of(dist, step, low_raw));
                let upper = bound(high_kind, key_of(dist, step, high_raw));
                let got: Vec<(i64, u64)> = tree.range(lower, upper).take(64).collect();
                let want: Vec<(i64, u64)> = model.range(lower, upper).take(64).collect();
                prop_assert_eq!(got, want, "range {:?}..{:?}", lower, upper);
            }
        }
        prop_assert_eq!(tree.len(), model.len());
        if let Err(problem) = tree.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {problem}")));
        }
    }
    prop_assert_eq!(pairs(&tree), pairs(&model));
    Ok(())
}

fn random_ops(dist: Dist, config: AlexConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    run(dist, Alex::with_config(config), BTreeIndex::new(), &ops)
}

fn bulk_then_ops(
    dist: Dist,
    config: AlexConfig,
    initial: Vec<u64>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let mut sorted: Vec<(i64, u64)> = initial
        .iter()
        .enumerate()
        .map(|(step, raw)| (key_of(dist, step, *raw), *raw))
        .collect();
    // Bulk load takes strictly ascending keys: one pair a key, the first drawn.
    sorted.sort_by_key(|(key, _)| *key);
    sorted.dedup_by_key(|(key, _)| *key);
    let model = BTreeIndex::bulk_load(&sorted).map_err(TestCaseError::fail)?;
    let tree = Alex::bulk_load_with_config(&sorted, config).map_err(TestCaseError::fail)?;
    if let Err(problem) = tree.check_invariants() {
        return Err(TestCaseError::fail(format!("after bulk load: {problem}")));
    }
    prop_assert_eq!(pairs(&tree), pairs(&model));
    run(dist, tree, model, &ops)
}

macro_rules! distribution_props {
    ($($name:ident => $dist:expr,)*) => {
        $(
            mod $name {
                use super::*;

                proptest! {
                    #![proptest_config(ProptestConfig::with_cases(40))]

                    #[test]
                    fn random_ops_match_btree_index(
                        config in config_strategy(),
                        ops in prop::collection::vec(op_strategy(), 1..400),
                    ) {
                        random_ops($dist, config, ops)?;
                    }

                    #[test]
                    fn bulk_load_then_ops_match_btree_index(
                        config in config_strategy(),
                        initial in prop::collection::vec(any::<u64>(), 0..600),
                        ops in prop::collection::vec(op_strategy(), 1..200),
                    ) {
                        bulk_then_ops($dist, config, initial, ops)?;
                    }

                    #[test]
                    fn draining_matches_btree_index(
                        config in config_strategy(),
                        initial in prop::collection::vec(any::<u64>(), 0..1500),
                        ops in prop::collection::vec(draining_op_strategy(), 1..1200),
                    ) {
                        bulk_then_ops($dist, config, initial, ops)?;
                    }
                }
            }
        )*
    };
}

distribution_props! {
    sequential => Dist::Sequential,
    descending => Dist::Descending,
    uniform => Dist::Uniform,
    log_uniform_narrow => Dist::LogUniformNarrow,
    skewed_low => Dist::SkewedLow,
    skewed_high => Dist::SkewedHigh,
    clustered => Dist::Clustered,
    time_series => Dist::TimeSeries,
    log_uniform_wide => Dist::LogUniformWide,
    edges => Dist::Edges,
}
