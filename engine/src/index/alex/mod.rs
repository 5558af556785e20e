//! The ALEX learned index (Ding et al., SIGMOD 2020), generic over the key.
//!
//! # Design
//! A tree whose nodes hold linear models instead of separator keys.
//! - **Data nodes** ([`data_node`]) are gapped arrays of keys and payloads with an occupancy
//!   bitmap and a linear model. Lookup predicts a slot and finishes with an exponential search;
//!   insert puts the key at its predicted slot when the gap there allows, else shifts keys
//!   toward the nearest gap. Gaps hold a copy of the next key to the right, so the array is
//!   sorted as a whole and searching never tests for emptiness. Density stays between
//!   `DENSITY_MIN` (0.6) and `DENSITY_MAX` (0.8); nodes are built at `DENSITY_INIT` (0.7).
//! - **Inner nodes** ([`inner_node`]) route by model to a power-of-two array of child slots; a
//!   child may own a block of adjacent slots.
//! - **Cost model** ([`fanout`]): each data node records its expected search distance and
//!   shifts per insert when built, and counts the real ones. A full node whose cost behaves is
//!   expanded and retrained; one that deviates is priced by a fan-out tree that chooses between
//!   expansion and a split into 2, 4, ... children. Catastrophic shifting forces a split.
//!   Nodes whose inserts land past one end (appends) leave room at that end when rebuilt.
//! - **Growth** ([`tree`]): splits go sideways into the node's own parent slots (doubling the
//!   parent if needed) or down under a new inner node; the root grows its key domain left or
//!   right when keys arrive outside it, so sequential and time-series appends stay cheap.
//! - **Shrinking** ([`tree`]): removes contract a node that falls below `DENSITY_MIN`; a node
//!   emptied by removes gives its parent slots to a data node beside it, a parent left with
//!   one child is replaced by it, and the root drops a half of its slots that holds no key. A
//!   sliding key window (time-series retention) therefore keeps the tree the size of its live
//!   keys.
//! - **Bulk load** builds the tree top-down, each inner node's fan-out chosen by a fan-out tree.
//!
//! # Invariants
//! Keys are strictly increasing within and across data nodes; routing from the root is
//! monotone in the key and every stored key routes to the node that holds it; the data nodes
//! are chained in key order; per-node bitmap counts, gap values and thresholds hold.
//! [`Alex::check_invariants`] verifies all of it; hot paths carry `debug_assert!`s.
//!
//! # Keys and limits
//! Models compute on `f64` distances from a base key ([`Key::offset_from`]), never on a key
//! converted alone, so wide integers near the ends of their range keep their precision and
//! nothing overflows. `Key::MAX` is a legal key: gaps are told from keys by the bitmap. Size
//! limits are in [`AlexConfig`]; no operation panics or fails on any key.

mod bitmap;
mod data_node;
mod fanout;
mod inner_node;
mod invariants;
mod key;
mod model;
mod range;
mod tree;

#[cfg(test)]
mod tests;

use std::ops::Bound;

pub use key::{Key, Payload};
pub use range::Range;
pub use tree::{Alex, AlexConfig, AlexStats};

use super::{PrimaryIndex, RowLocation};

/// The primary-key index of a table: `i64` keys to row locations.
pub type AlexIndex = Alex<i64, RowLocation>;

impl PrimaryIndex for AlexIndex {
    type Range<'a> = Range<'a, i64, RowLocation>;

    fn new() -> Self {
        Alex::new()
    }

    fn bulk_load(sorted: &[(i64, RowLocation)]) -> Result<Self, String> {
        Alex::bulk_load(sorted)
    }

    fn get(&self, key: i64) -> Option<RowLocation> {
        Alex::get(self, key)
    }

    fn insert(&mut self, key: i64, location: RowLocation) -> bool {
        Alex::insert(self, key, location)
    }

    fn insert_with(&mut self, key: i64, location: impl FnMut() -> RowLocation) -> bool {
        Alex::insert_with(self, key, location)
    }

    fn prefetch(&self, key: i64) {
        Alex::prefetch(self, key)
    }

    fn prefetch_lookup(&self, key: i64) {
        Alex::prefetch_lookup(self, key)
    }

    fn remove(&mut self, key: i64) -> Option<RowLocation> {
        Alex::remove(self, key)
    }

    fn replace(&mut self, key: i64, location: RowLocation) -> Option<RowLocation> {
        Alex::replace(self, key, location)
    }

    fn range(&self, lower: Bound<i64>, upper: Bound<i64>) -> Self::Range<'_> {
        Alex::range(self, lower, upper)
    }

    fn len(&self) -> usize {
        Alex::len(self)
    }

    fn bytes_used(&self) -> usize {
        Alex::bytes_used(self)
    }

    fn check_invariants(&self) -> Result<(), String> {
        Alex::check_invariants(self)
    }
}
