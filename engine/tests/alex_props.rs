//! Property tests: random operation sequences on the ALEX index against a `BTreeMap` model,
//! one test per key distribution, `check_invariants` after every step. Small size limits make
//! splits, parent doubling, splits down, root growth and contraction happen within a few
//! hundred keys.
//!
//! A failure prints the distribution, the limits and the shrunk operation list.

use std::collections::BTreeMap;
use std::ops::Bound;

use omendb::index::alex::{Alex, AlexConfig};
use proptest::prelude::*;

mod key_dist;
use key_dist::{key_of, Dist};

#[derive(Debug, Clone)]
enum Op {
    Insert(u64),
    /// Insert of a present key (by index into the model), which must be rejected.
    InsertPresent(usize),
    Get(u64),
    GetPresent(usize),
    Remove(u64),
    RemovePresent(usize),
    /// Lower raw, upper raw, bound kinds (0 included, 1 excluded, 2 unbounded).
    Range(u64, u64, u8, u8),
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => any::<u64>().prop_map(Op::Insert),
        1 => any::<usize>().prop_map(Op::InsertPresent),
        2 => any::<u64>().prop_map(Op::Get),
        2 => any::<usize>().prop_map(Op::GetPresent),
        1 => any::<u64>().prop_map(Op::Remove),
        2 => any::<usize>().prop_map(Op::RemovePresent),
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

fn within(key: i64, lower: Bound<i64>, upper: Bound<i64>) -> bool {
    let above = match lower {
        Bound::Included(low) => key >= low,
        Bound::Excluded(low) => key > low,
        Bound::Unbounded => true,
    };
    let below = match upper {
        Bound::Included(high) => key <= high,
        Bound::Excluded(high) => key < high,
        Bound::Unbounded => true,
    };
    above && below
}

/// Keys of the model by position (for "present key" operations).
fn nth_key(model: &BTreeMap<i64, u64>, index: usize) -> Option<i64> {
    if model.is_empty() {
        return None;
    }
    model.keys().nth(index % model.len()).copied()
}

/// Runs `ops` on `tree` and `model`, comparing every result and checking invariants.
fn run(
    dist: Dist,
    mut tree: Alex<i64, u64>,
    mut model: BTreeMap<i64, u64>,
    ops: &[Op],
) -> Result<(), TestCaseError> {
    let step_offset = model.len();
    for (index, op) in ops.iter().enumerate() {
        let step = step_offset + index;
        match *op {
            Op::Insert(raw) => {
                let key = key_of(dist, step, raw);
                let fresh = !model.contains_key(&key);
                prop_assert_eq!(tree.insert(key, raw), fresh, "insert {}", key);
                model.entry(key).or_insert(raw);
            }
            Op::InsertPresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert!(!tree.insert(key, 0), "duplicate insert {} accepted", key);
                }
            }
            Op::Get(raw) => {
                let key = key_of(dist, (raw >> 32) as usize % (step + 1), raw);
                prop_assert_eq!(tree.get(key), model.get(&key).copied(), "get {}", key);
            }
            Op::GetPresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert_eq!(tree.get(key), model.get(&key).copied(), "get {}", key);
                }
            }
            Op::Remove(raw) => {
                let key = key_of(dist, (raw >> 32) as usize % (step + 1), raw);
                prop_assert_eq!(tree.remove(key), model.remove(&key), "remove {}", key);
            }
            Op::RemovePresent(which) => {
                if let Some(key) = nth_key(&model, which) {
                    prop_assert_eq!(tree.remove(key), model.remove(&key), "remove {}", key);
                }
            }
            Op::Range(low_raw, high_raw, low_kind, high_kind) => {
                let lower = bound(low_kind, key_of(dist, step, low_raw));
                let upper = bound(high_kind, key_of(dist, step, high_raw));
                let got: Vec<(i64, u64)> = tree.range(lower, upper).take(64).collect();
                let want: Vec<(i64, u64)> = model
                    .iter()
                    .filter(|(k, _)| within(**k, lower, upper))
                    .take(64)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                prop_assert_eq!(got, want, "range {:?}..{:?}", lower, upper);
            }
        }
        prop_assert_eq!(tree.len(), model.len());
        if let Err(problem) = tree.check_invariants() {
            return Err(TestCaseError::fail(format!("after {op:?}: {problem}")));
        }
    }
    let all: Vec<(i64, u64)> = tree.range(Bound::Unbounded, Bound::Unbounded).collect();
    let want: Vec<(i64, u64)> = model.into_iter().collect();
    prop_assert_eq!(all, want);
    Ok(())
}

fn random_ops(dist: Dist, config: AlexConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    run(dist, Alex::with_config(config), BTreeMap::new(), &ops)
}

fn bulk_then_ops(
    dist: Dist,
    config: AlexConfig,
    initial: Vec<u64>,
    ops: Vec<Op>,
) -> Result<(), TestCaseError> {
    let model: BTreeMap<i64, u64> = initial
        .iter()
        .enumerate()
        .map(|(step, raw)| (key_of(dist, step, *raw), *raw))
        .collect();
    let pairs: Vec<(i64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    let tree = Alex::bulk_load_with_config(&pairs, config).map_err(TestCaseError::fail)?;
    if let Err(problem) = tree.check_invariants() {
        return Err(TestCaseError::fail(format!("after bulk load: {problem}")));
    }
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
                    fn random_ops_match_btreemap(
                        config in config_strategy(),
                        ops in prop::collection::vec(op_strategy(), 1..400),
                    ) {
                        random_ops($dist, config, ops)?;
                    }

                    #[test]
                    fn bulk_load_then_ops_match_btreemap(
                        config in config_strategy(),
                        initial in prop::collection::vec(any::<u64>(), 0..600),
                        ops in prop::collection::vec(op_strategy(), 1..200),
                    ) {
                        bulk_then_ops($dist, config, initial, ops)?;
                    }

                    #[test]
                    fn draining_matches_btreemap(
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
