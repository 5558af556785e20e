//! Larger deterministic runs: a million inserts of each key distribution (and a bulk load of
//! each followed by more inserts), through the `PrimaryIndex` trait, compared with a `BTreeMap`,
//! invariants checked at the end.

use std::collections::BTreeMap;
use std::ops::Bound;

use omendb::index::alex::AlexIndex;
use omendb::index::PrimaryIndex;

mod key_dist;
use key_dist::{key_of, Dist, ALL};
use omendb_keygen::SplitMix64;

const KEYS: usize = 1_000_000;

fn compare<I: PrimaryIndex>(
    index: &I,
    model: &BTreeMap<i64, u64>,
    rng: &mut SplitMix64,
    dist: Dist,
) {
    if let Err(problem) = index.check_invariants() {
        panic!("{dist:?}: {problem}");
    }
    assert_eq!(index.len(), model.len(), "{dist:?}");
    for (key, value) in model {
        assert_eq!(index.get(*key), Some(*value), "{dist:?}: get {key}");
    }
    for _ in 0..200 {
        let start = key_of(
            dist,
            (rng.next_u64() % KEYS as u64) as usize,
            rng.next_u64(),
        );
        let got: Vec<(i64, u64)> = index
            .range(Bound::Included(start), Bound::Unbounded)
            .take(100)
            .collect();
        let want: Vec<(i64, u64)> = model
            .range(start..)
            .take(100)
            .map(|(k, v)| (*k, *v))
            .collect();
        assert_eq!(got, want, "{dist:?}: range from {start}");
    }
    assert!(index
        .range(Bound::Unbounded, Bound::Unbounded)
        .map(|(k, _)| k)
        .eq(model.keys().copied()));
}

fn insert_built(dist: Dist) {
    let mut rng = SplitMix64::new(0xA1E8 ^ dist as u64);
    let mut index = <AlexIndex as PrimaryIndex>::new();
    let mut model = BTreeMap::new();
    for step in 0..KEYS {
        let raw = rng.next_u64();
        let key = key_of(dist, step, raw);
        let fresh = !model.contains_key(&key);
        assert_eq!(index.insert(key, raw), fresh, "{dist:?}: {key}");
        model.entry(key).or_insert(raw);
    }
    compare(&index, &model, &mut rng, dist);
    // Remove a third, then check again.
    let doomed: Vec<i64> = model.keys().copied().step_by(3).collect();
    for key in doomed {
        assert_eq!(
            index.remove(key),
            model.remove(&key),
            "{dist:?}: remove {key}"
        );
    }
    compare(&index, &model, &mut rng, dist);
    let bytes_per_key = index.bytes_used() as f64 / index.len().max(1) as f64;
    assert!(
        bytes_per_key < 64.0,
        "{dist:?}: {bytes_per_key} bytes per key"
    );
}

fn bulk_built(dist: Dist) {
    let mut rng = SplitMix64::new(0xB01C ^ dist as u64);
    let model: BTreeMap<i64, u64> = (0..KEYS)
        .map(|step| {
            let raw = rng.next_u64();
            (key_of(dist, step, raw), raw)
        })
        .collect();
    let pairs: Vec<(i64, u64)> = model.iter().map(|(k, v)| (*k, *v)).collect();
    let mut index = <AlexIndex as PrimaryIndex>::bulk_load(&pairs).expect("sorted input");
    let mut model = model;
    compare(&index, &model, &mut rng, dist);
    for step in KEYS..KEYS + KEYS / 5 {
        let raw = rng.next_u64();
        let key = key_of(dist, step, raw);
        let fresh = !model.contains_key(&key);
        assert_eq!(index.insert(key, raw), fresh, "{dist:?}: {key}");
        model.entry(key).or_insert(raw);
    }
    compare(&index, &model, &mut rng, dist);
}

#[test]
fn million_inserts_of_each_distribution() {
    for dist in ALL {
        insert_built(dist);
    }
}

#[test]
fn million_key_bulk_load_of_each_distribution() {
    for dist in ALL {
        bulk_built(dist);
    }
}
