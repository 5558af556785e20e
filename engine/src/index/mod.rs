//! Primary-key indexes.
//!
//! A table maps each primary key to a [`RowLocation`] (a slot in the table's row store), never
//! to a boxed value, so an index entry is two machine words. The table reaches its index only
//! through [`PrimaryIndex`], so implementations are interchangeable: [`alex`] is the learned
//! index the engine uses; [`BTreeIndex`] is the ordered-map reference it is tested against
//! (`engine/tests/alex_props.rs` drives both through this trait and compares every answer).

pub mod alex;

use std::collections::BTreeMap;
use std::ops::Bound;

/// Where a row lives in its table's row store.
pub type RowLocation = u64;

/// The operations a table needs from its primary index.
pub trait PrimaryIndex: Send + Sync {
    /// Iterator over `(key, location)` pairs in ascending key order.
    type Range<'a>: Iterator<Item = (i64, RowLocation)> + 'a
    where
        Self: 'a;

    /// An empty index.
    fn new() -> Self
    where
        Self: Sized;
    /// An index built from pairs sorted by key with no duplicates (checked: unsorted or
    /// duplicate input is an `Err` naming the first offending position).
    fn bulk_load(sorted: &[(i64, RowLocation)]) -> Result<Self, String>
    where
        Self: Sized;
    /// The location of `key`, if present.
    fn get(&self, key: i64) -> Option<RowLocation>;
    /// Inserts `key`; returns `false` and changes nothing if it is already present.
    fn insert(&mut self, key: i64, location: RowLocation) -> bool;
    /// Inserts `key` at the location `location` returns, calling it once and only if the key
    /// was absent (one search both checks and inserts); `false`, without calling it, if the
    /// key is present.
    fn insert_with(&mut self, key: i64, location: impl FnMut() -> RowLocation) -> bool;
    /// A hint that `key` will be inserted soon: start loading where it goes.
    fn prefetch(&self, _key: i64) {}
    /// A hint that `key` will be looked up soon: start loading where it would be.
    fn prefetch_lookup(&self, _key: i64) {}
    /// Removes `key`; returns its location if it was present.
    fn remove(&mut self, key: i64) -> Option<RowLocation>;
    /// Points `key` at `location`; returns the old location, or `None` (and changes nothing)
    /// if `key` is absent.
    fn replace(&mut self, key: i64, location: RowLocation) -> Option<RowLocation>;
    /// The pairs with keys in `(lower, upper)`, ascending.
    fn range(&self, lower: Bound<i64>, upper: Bound<i64>) -> Self::Range<'_>;
    /// Number of keys.
    fn len(&self) -> usize;
    /// Whether there are no keys.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Heap bytes used by the index structure (keys, payloads, models, bitmaps, nodes).
    fn bytes_used(&self) -> usize;
    /// Checks every structural invariant; `Err` describes the first violation.
    fn check_invariants(&self) -> Result<(), String>;
}

/// `BTreeMap` behind [`PrimaryIndex`]: the reference model for the learned index, the oracle
/// of its property tests (`engine/tests/alex_props.rs`). Not used by tables.
#[derive(Debug, Default, Clone)]
pub struct BTreeIndex {
    map: BTreeMap<i64, RowLocation>,
}

impl PrimaryIndex for BTreeIndex {
    type Range<'a> = std::iter::Map<
        std::collections::btree_map::Range<'a, i64, RowLocation>,
        fn((&'a i64, &'a RowLocation)) -> (i64, RowLocation),
    >;

    fn new() -> Self {
        BTreeIndex::default()
    }

    fn bulk_load(sorted: &[(i64, RowLocation)]) -> Result<Self, String> {
        if let Some(position) = sorted.windows(2).position(|pair| pair[0].0 >= pair[1].0) {
            return Err(format!(
                "bulk load input not strictly ascending at position {}",
                position + 1
            ));
        }
        Ok(BTreeIndex {
            map: sorted.iter().copied().collect(),
        })
    }

    fn get(&self, key: i64) -> Option<RowLocation> {
        self.map.get(&key).copied()
    }

    fn insert(&mut self, key: i64, location: RowLocation) -> bool {
        self.insert_with(key, || location)
    }

    fn insert_with(&mut self, key: i64, mut location: impl FnMut() -> RowLocation) -> bool {
        match self.map.entry(key) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(location());
                true
            }
        }
    }

    fn remove(&mut self, key: i64) -> Option<RowLocation> {
        self.map.remove(&key)
    }

    fn replace(&mut self, key: i64, location: RowLocation) -> Option<RowLocation> {
        self.map
            .get_mut(&key)
            .map(|slot| std::mem::replace(slot, location))
    }

    fn range(&self, lower: Bound<i64>, upper: Bound<i64>) -> Self::Range<'_> {
        if let (
            Bound::Included(lo) | Bound::Excluded(lo),
            Bound::Included(hi) | Bound::Excluded(hi),
        ) = (lower, upper)
        {
            // BTreeMap::range panics on an inverted or empty-excluded range; an empty range is
            // the answer the caller means.
            let empty =
                lo > hi || (lo == hi && (lower != upper || matches!(lower, Bound::Excluded(_))));
            if empty {
                return self.map.range(1..1).map(|(k, v)| (*k, *v));
            }
        }
        self.map.range((lower, upper)).map(|(k, v)| (*k, *v))
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn bytes_used(&self) -> usize {
        // BTreeMap nodes hold up to 11 entries; with ~2/3 occupancy plus node overhead this is
        // an estimate, not a measurement.
        self.map.len() * (std::mem::size_of::<(i64, RowLocation)>() * 3 / 2 + 8)
    }

    fn check_invariants(&self) -> Result<(), String> {
        Ok(())
    }
}
