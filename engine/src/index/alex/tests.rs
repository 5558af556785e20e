//! Unit tests of the whole tree on small, hand-picked cases. The randomized comparison with
//! `BTreeIndex`, the ordered-map reference, lives in `engine/tests/alex_props.rs`.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{Alex, AlexConfig};

fn check_against(tree: &Alex<i64, u64>, model: &BTreeMap<i64, u64>) {
    tree.check_invariants().unwrap();
    assert_eq!(tree.len(), model.len());
    for (key, value) in model {
        assert_eq!(tree.get(*key), Some(*value), "key {key}");
    }
    let all: Vec<(i64, u64)> = tree.range(Bound::Unbounded, Bound::Unbounded).collect();
    let expected: Vec<(i64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    assert_eq!(all, expected);
}

#[test]
fn sequential_appends_grow_the_root() {
    let mut tree = Alex::with_config(AlexConfig::tiny());
    let mut model = BTreeMap::new();
    for key in 0..3_000i64 {
        assert!(tree.insert(key * 10, key as u64));
        model.insert(key * 10, key as u64);
    }
    check_against(&tree, &model);
    assert!(tree.stats().depth_max <= 6, "{:?}", tree.stats());
}

#[test]
fn reverse_appends_grow_the_root_leftwards() {
    let mut tree = Alex::with_config(AlexConfig::tiny());
    let mut model = BTreeMap::new();
    for key in (0..3_000i64).rev() {
        assert!(tree.insert(key * 10, key as u64));
        model.insert(key * 10, key as u64);
    }
    check_against(&tree, &model);
}

#[test]
fn edge_keys_work_everywhere() {
    let edges = [
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 2,
        -1,
        0,
        1,
        i64::MAX - 2,
        i64::MAX - 1,
        i64::MAX,
    ];
    for config in [AlexConfig::tiny(), AlexConfig::default()] {
        let mut tree = Alex::with_config(config);
        let mut model = BTreeMap::new();
        for (i, key) in edges.iter().enumerate() {
            assert!(tree.insert(*key, i as u64));
            assert!(!tree.insert(*key, 99));
            model.insert(*key, i as u64);
            check_against(&tree, &model);
        }
        let above: Vec<i64> = tree
            .range(Bound::Excluded(i64::MAX - 1), Bound::Unbounded)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(above, vec![i64::MAX]);
        let from_max: Vec<i64> = tree
            .range(Bound::Included(i64::MAX), Bound::Included(i64::MAX))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(from_max, vec![i64::MAX]);
        assert_eq!(
            tree.range(Bound::Excluded(i64::MAX), Bound::Unbounded)
                .count(),
            0
        );
        assert_eq!(
            tree.range(Bound::Included(5), Bound::Included(-5)).count(),
            0
        );
        for key in edges {
            assert_eq!(tree.remove(key), model.remove(&key));
            check_against(&tree, &model);
        }
        assert!(tree.is_empty());
    }
}

#[test]
fn bulk_load_rejects_unsorted_input_and_builds_sorted() {
    assert!(Alex::<i64, u64>::bulk_load(&[(1, 1), (1, 2)]).is_err());
    assert!(Alex::<i64, u64>::bulk_load(&[(2, 1), (1, 2)]).is_err());
    let pairs: Vec<(i64, u64)> = (0..5_000).map(|i| (i * i, i as u64)).collect();
    for config in [AlexConfig::tiny(), AlexConfig::default()] {
        let tree = Alex::bulk_load_with_config(&pairs, config).unwrap();
        let model: BTreeMap<i64, u64> = pairs.iter().copied().collect();
        check_against(&tree, &model);
        // From two slices (a checkpoint's restore): the same tree.
        let (keys, payloads): (Vec<i64>, Vec<u64>) = pairs.iter().copied().unzip();
        let split = Alex::bulk_load_split(&keys, &payloads, config).unwrap();
        check_against(&split, &model);
        assert_eq!(split.bytes_used(), tree.bytes_used());
        assert!(Alex::bulk_load_split(&keys, &payloads[1..], config).is_err());
        assert!(Alex::<i64, u64>::bulk_load_split(&[2, 1], &[0, 0], config).is_err());
    }
}

/// Data nodes built in two halves on two threads (the OS Env's join) make the same tree
/// as one after the other, for dense, skewed, tiny and one-key loads, and the tree takes
/// inserts and removals after.
#[test]
fn bulk_load_on_two_threads_builds_the_same_tree() {
    use crate::env::{OsEnv, Spawn};
    let os = OsEnv::new();
    let key_sets: Vec<Vec<i64>> = vec![
        (0..200_000).map(|i| i * 3).collect(),
        (0..50_000i64).map(|i| i * i * i).collect(),
        (0..300).map(|i| i * 7 - 1_000).collect(),
        vec![42],
        vec![],
    ];
    for keys in key_sets {
        let payloads: Vec<u64> = keys.iter().map(|&k| k as u64 ^ 0x5555).collect();
        for config in [AlexConfig::tiny(), AlexConfig::default()] {
            let one = Alex::bulk_load_split(&keys, &payloads, config).unwrap();
            let two = Alex::bulk_load_split_with(&keys, &payloads, config, &|a, b| os.join(a, b))
                .unwrap();
            let model: BTreeMap<i64, u64> = keys.iter().copied().zip(payloads.clone()).collect();
            check_against(&two, &model);
            assert_eq!(two.bytes_used(), one.bytes_used());
            assert_eq!(two.stats(), one.stats());
            let mut two = two;
            let mut model = model;
            for i in 0..2_000i64 {
                let key = i.wrapping_mul(0x9E37_79B9) % 700_000;
                if i % 3 == 0 {
                    assert_eq!(two.remove(key), model.remove(&key));
                } else {
                    let fresh = !model.contains_key(&key);
                    assert_eq!(two.insert(key, i as u64), fresh);
                    if fresh {
                        model.insert(key, i as u64);
                    }
                }
            }
            check_against(&two, &model);
        }
    }
}

#[test]
fn removals_contract_nodes() {
    let mut tree = Alex::with_config(AlexConfig::default());
    let mut model = BTreeMap::new();
    for key in 0..20_000i64 {
        tree.insert(key.wrapping_mul(0x9E37_79B9), key as u64);
        model.insert(key.wrapping_mul(0x9E37_79B9), key as u64);
    }
    let full_bytes = tree.bytes_used();
    for key in 0..19_000i64 {
        assert_eq!(tree.remove(key.wrapping_mul(0x9E37_79B9)), Some(key as u64));
        model.remove(&key.wrapping_mul(0x9E37_79B9));
    }
    check_against(&tree, &model);
    assert!(
        tree.bytes_used() < full_bytes / 4,
        "{} vs {full_bytes}",
        tree.bytes_used()
    );
}

#[test]
fn u128_keys_work() {
    let mut tree: Alex<u128, u32> = Alex::with_config(AlexConfig::tiny());
    for i in 0..2_000u128 {
        let key = i.wrapping_mul(0x1234_5678_9ABC_DEF0_1234_5678_9ABC_DEF1);
        assert!(tree.insert(key, i as u32));
    }
    assert!(tree.insert(u128::MAX, 7));
    assert!(tree.insert(0, 8) || tree.get(0).is_some());
    tree.check_invariants().unwrap();
    assert_eq!(tree.get(u128::MAX), Some(7));
}

/// Insert and delete churn over a fixed key set (what `omendb-stress` does to its table) must
/// not make the tree grow: at a steady fill its shape settles, and after swings of the fill
/// (to 90% of the key set and down to 30%) the nodes contract again, so the tree holding 30% is
/// no larger than it was holding 50%.
#[test]
fn churn_over_a_fixed_key_set_stays_bounded() {
    const KEYS: u64 = 20_000;
    for config in [AlexConfig::default(), AlexConfig::tiny()] {
        let mut tree: Alex<i64, u64> = Alex::with_config(config);
        let mut model = BTreeMap::new();
        for key in (0..KEYS as i64).step_by(2) {
            assert!(tree.insert(key, key as u64));
            model.insert(key, key as u64);
        }
        let mut rng = omendb_keygen::SplitMix64::new(7);
        // Flip random keys: the fill stays near half.
        let mut settled = None;
        for round in 0..5 {
            for _ in 0..200_000 {
                let key = (rng.next_u64() % KEYS) as i64;
                if tree.remove(key).is_some() {
                    model.remove(&key);
                } else {
                    assert!(tree.insert(key, key as u64));
                    model.insert(key, key as u64);
                }
            }
            let (bytes, nodes) = (tree.bytes_used(), tree.stats().data_nodes);
            match settled {
                None => settled = Some((bytes, nodes)),
                Some((bytes_first, nodes_first)) => {
                    assert!(
                        bytes <= bytes_first + bytes_first / 10,
                        "{config:?} round {round}: {bytes} bytes, {bytes_first} after round 0"
                    );
                    assert!(
                        nodes <= nodes_first + nodes_first / 20,
                        "{config:?} round {round}: {nodes} data nodes, {nodes_first} after round 0"
                    );
                }
            }
        }
        let half_bytes = tree.bytes_used();
        for swing in 0..3 {
            while model.len() < (KEYS * 9 / 10) as usize {
                let key = (rng.next_u64() % KEYS) as i64;
                if let std::collections::btree_map::Entry::Vacant(entry) = model.entry(key) {
                    assert!(tree.insert(key, key as u64));
                    entry.insert(key as u64);
                }
            }
            while model.len() > (KEYS * 3 / 10) as usize {
                let key = (rng.next_u64() % KEYS) as i64;
                if model.remove(&key).is_some() {
                    assert_eq!(tree.remove(key), Some(key as u64));
                }
            }
            let bytes = tree.bytes_used();
            assert!(
                bytes <= half_bytes,
                "{config:?} swing {swing}: {bytes} bytes at 30% full, {half_bytes} at 50%"
            );
        }
        check_against(&tree, &model);
    }
}

/// A sliding window (insert the newest key, remove the oldest), the shape of a time-series
/// table with a retention limit: the nodes the window leaves behind are given back, so the
/// tree's size follows the live keys, not every key ever inserted.
#[test]
fn a_sliding_window_leaves_no_empty_nodes_behind() {
    let mut tree = Alex::with_config(AlexConfig::tiny());
    let mut model = BTreeMap::new();
    let window = 500i64;
    let keys = 200_000i64;
    let mut settled_bytes = None;
    for key in 0..keys {
        assert!(tree.insert(key * 7, key as u64));
        model.insert(key * 7, key as u64);
        if key >= window {
            assert_eq!(tree.remove((key - window) * 7), Some((key - window) as u64));
            model.remove(&((key - window) * 7));
        }
        if key % 10_000 == 9_999 {
            check_against(&tree, &model);
            let stats = tree.stats();
            // 500 live keys fit in a few dozen nodes of at most 64 slots. Without reclaiming
            // emptied nodes it had 558 data nodes and 12 levels (the limit) after 10,000 keys.
            assert!(stats.data_nodes <= 64, "after {key}: {stats:?}");
            assert!(stats.depth_max <= 5, "after {key}: {stats:?}");
            let bytes = tree.bytes_used();
            let settled = *settled_bytes.get_or_insert(bytes);
            assert!(
                bytes <= settled * 3 / 2,
                "after {key}: {bytes} bytes, {settled} at first"
            );
        }
    }
    // Emptying the tree entirely leaves one usable node.
    for key in keys - window..keys {
        assert_eq!(tree.remove(key * 7), Some(key as u64));
        model.remove(&(key * 7));
    }
    check_against(&tree, &model);
    assert!(tree.stats().data_nodes <= 2, "{:?}", tree.stats());
    assert!(tree.insert(3, 3));
    model.insert(3, 3);
    check_against(&tree, &model);
}

/// Removing every key in a random order from a tree of many nodes and levels keeps every
/// invariant, and the tree shrinks back to a handful of nodes.
#[test]
fn removing_everything_collapses_the_tree() {
    let mut tree = Alex::with_config(AlexConfig::tiny());
    let mut model = BTreeMap::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let key = (next() % 1_000_000) as i64;
        tree.insert(key, key as u64);
        model.insert(key, key as u64);
    }
    let before = tree.stats();
    let mut keys: Vec<i64> = model.keys().copied().collect();
    for i in (1..keys.len()).rev() {
        keys.swap(i, (next() % (i as u64 + 1)) as usize);
    }
    for (done, key) in keys.iter().enumerate() {
        assert_eq!(tree.remove(*key), Some(*key as u64));
        model.remove(key);
        if done % 997 == 0 {
            check_against(&tree, &model);
        }
    }
    check_against(&tree, &model);
    let after = tree.stats();
    assert!(before.data_nodes > 100, "{before:?}");
    assert!(after.data_nodes <= 4, "{after:?}");
}

/// Appends into a node whose parent's model spreads a wide key domain (a few keys near
/// both ends of `i64`), with runs of appends taken back at once (a batch that hit a
/// duplicate key). A node filled by appends then reaches its size limit while its last key
/// and the next key route to one parent slot, even after the parent doubles up to its
/// fan-out limit, so sealing it for appends fails and the node splits instead. Sealing used
/// to double the parent before giving up, leaving the split with a stale slot: it replaced
/// the neighbour's block and freed the node while its own slots still named it, and the
/// next insert there read a freed node (simulator seed 2098, schedule generation 5).
#[test]
fn appends_after_a_failed_seal_split_the_right_node() {
    use rand::{Rng, SeedableRng};
    for seed in 0..24u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let config = AlexConfig {
            data_node_slots_max: [128, 256][rng.random_range(0..2)],
            inner_fanout_max: [4, 8, 16][rng.random_range(0..3)],
            ..AlexConfig::default()
        };
        let mut tree: Alex<i64, u64> = Alex::with_config(config);
        let mut model = BTreeMap::new();
        let mut next = 0i64;
        for step in 0..1500u64 {
            match rng.random_range(0..100) {
                0 => {
                    let key = rng.random_range(i64::MIN..i64::MIN / 2);
                    assert_eq!(tree.insert(key, step), model.insert(key, step).is_none());
                }
                1 => {
                    let key = rng.random_range(i64::MAX / 2..i64::MAX);
                    assert_eq!(tree.insert(key, step), model.insert(key, step).is_none());
                }
                2..=5 => {
                    let run = rng.random_range(1..24);
                    for key in next + 1..=next + run {
                        assert!(tree.insert(key, step), "seed {seed} step {step}");
                    }
                    for key in next + 1..=next + run {
                        assert_eq!(tree.remove(key), Some(step), "seed {seed} step {step}");
                    }
                    next += run;
                }
                _ => {
                    next += rng.random_range(1..4);
                    assert!(tree.insert(next, step), "seed {seed} step {step}");
                    model.insert(next, step);
                }
            }
            if step % 100 == 0 {
                tree.check_invariants()
                    .unwrap_or_else(|e| panic!("seed {seed} {config:?} step {step}: {e}"));
            }
        }
        check_against(&tree, &model);
    }
}

/// `Range::fill` hands out what `next` does, in chunks of any size, from any start and to
/// any bound: over small nodes (many node hops), gaps left by removals, and the edge keys.
#[test]
fn fill_yields_what_next_yields_in_chunks_of_any_size() {
    use rand::{Rng, SeedableRng};
    for seed in 0..8u64 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let config = AlexConfig {
            data_node_slots_max: [128, 256, 4096][rng.random_range(0..3)],
            ..AlexConfig::default()
        };
        let mut tree: Alex<i64, u64> = Alex::with_config(config);
        for step in 0..6_000u64 {
            let key = match rng.random_range(0..10) {
                0 => rng.random_range(i64::MIN..i64::MIN + 100),
                1 => rng.random_range(i64::MAX - 100..=i64::MAX),
                _ => rng.random_range(-50_000..50_000),
            };
            if rng.random_range(0..4) == 0 {
                tree.remove(key);
            } else {
                tree.insert(key, step);
            }
        }
        let bounds = |rng: &mut rand_chacha::ChaCha8Rng| match rng.random_range(0..3) {
            0 => Bound::Unbounded,
            1 => Bound::Included(rng.random_range(-60_000..60_000)),
            _ => Bound::Excluded(rng.random_range(-60_000..60_000)),
        };
        for _ in 0..40 {
            let (lower, upper) = (bounds(&mut rng), bounds(&mut rng));
            let want: Vec<(i64, u64)> = tree.range(lower, upper).collect();
            let max = [1, 7, 64, 65, 1_000, usize::MAX][rng.random_range(0..6)];
            let mut range = tree.range(lower, upper);
            let (mut keys, mut payloads) = (Vec::new(), Vec::new());
            loop {
                let before = keys.len();
                let got = range.fill(&mut keys, &mut payloads, max);
                assert_eq!(got, keys.len() - before);
                assert!(got <= max);
                if got == 0 {
                    break;
                }
            }
            let got: Vec<(i64, u64)> = keys.into_iter().zip(payloads).collect();
            assert_eq!(
                got, want,
                "seed {seed}, {lower:?}..{upper:?}, chunks of {max}"
            );
        }
    }
}
