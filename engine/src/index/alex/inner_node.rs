//! Inner nodes: a linear model routes a key to one of a power-of-two number of child slots.
//!
//! A child may fill several adjacent slots (a block of repeated references), so a child can be
//! split sideways into the slots it already owns without touching the model. Routing is `clamp(floor(model(key)) + slot_shift, 0, slots - 1)`: monotone in
//! the key, so every child holds a contiguous key range and children are in key order.
//!
//! The model changes only in ways that keep every stored key on its child:
//! - doubling: slope, intercept and shift times two, every slot duplicated (exact; see
//!   [`super::model`]);
//! - growing the root to the right: slots appended, model unchanged;
//! - growing the root to the left: slots prepended and `slot_shift` raised by as many.
//!
//! When growing, the keys that were clamped into an edge child and now route to a new slot are
//! moved there by the tree.

use super::key::Key;
use super::model::{floor_slot, LinearModel};

/// A reference to a node in one of the tree's two arenas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct NodeRef(u32);

const DATA_TAG: u32 = 1 << 31;
/// Largest arena index a reference can name.
pub(crate) const NODE_INDEX_MAX: usize = (DATA_TAG - 2) as usize;

impl NodeRef {
    /// A placeholder that names no node; never left in a finished tree.
    pub const UNSET: NodeRef = NodeRef(u32::MAX);

    #[inline]
    pub fn data(index: u32) -> Self {
        debug_assert!((index as usize) <= NODE_INDEX_MAX);
        NodeRef(index | DATA_TAG)
    }

    #[inline]
    pub fn inner(index: u32) -> Self {
        debug_assert!((index as usize) <= NODE_INDEX_MAX);
        NodeRef(index)
    }

    /// The data node index, if this is a data node.
    #[inline]
    pub fn data_index(self) -> Option<usize> {
        (self.0 & DATA_TAG != 0 && self != Self::UNSET).then_some((self.0 & !DATA_TAG) as usize)
    }

    /// The inner node index, if this is an inner node.
    #[inline]
    pub fn inner_index(self) -> Option<usize> {
        (self.0 & DATA_TAG == 0).then_some(self.0 as usize)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct InnerNode<K> {
    pub model: LinearModel<K>,
    pub slot_shift: i64,
    pub children: Vec<NodeRef>,
}

impl<K: Key> InnerNode<K> {
    /// A node with `slots` slots (a power of two), all unset.
    pub fn new(model: LinearModel<K>, slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        InnerNode {
            model,
            slot_shift: 0,
            children: vec![NodeRef::UNSET; slots],
        }
    }

    /// A node with no slots: what a freed arena entry keeps.
    pub fn vacant() -> Self {
        InnerNode {
            model: LinearModel::flat(),
            slot_shift: 0,
            children: Vec::new(),
        }
    }

    /// The slot before clamping: below 0 or at/after `children.len()` means outside the
    /// node's key domain.
    #[inline]
    pub fn route_raw(&self, key: K) -> i64 {
        floor_slot(self.model.predict(key)) + self.slot_shift
    }

    #[inline]
    pub fn route(&self, key: K) -> usize {
        let last = self.children.len() as i64 - 1;
        self.route_raw(key).clamp(0, last) as usize
    }

    /// The slot `key` would route to after `doublings` calls of [`InnerNode::double`], without
    /// doubling: scaling by a power of two is exact in floating point, so this is the slot
    /// the doubled node would give.
    pub fn route_doubled(&self, key: K, doublings: u32) -> usize {
        let factor = 1i64 << doublings;
        let model = self.model.scaled(factor as f64);
        let last = ((self.children.len() as i64) << doublings) - 1;
        (floor_slot(model.predict(key)) + self.slot_shift * factor).clamp(0, last) as usize
    }

    /// Doubles the slots without moving any key to another child.
    pub fn double(&mut self) {
        self.model = self.model.scaled(2.0);
        self.slot_shift *= 2;
        self.children = self
            .children
            .iter()
            .flat_map(|child| [*child, *child])
            .collect();
    }

    /// The block `[start, end)` of slots holding the same child as `slot`.
    pub fn block_of(&self, slot: usize) -> (usize, usize) {
        let child = self.children[slot];
        let start = self.children[..slot]
            .iter()
            .rposition(|other| *other != child)
            .map_or(0, |before| before + 1);
        let end = self.children[slot..]
            .iter()
            .position(|other| *other != child)
            .map_or(self.children.len(), |after| slot + after);
        (start, end)
    }

    pub fn heap_bytes(&self) -> usize {
        self.children.capacity() * std::mem::size_of::<NodeRef>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// `route_doubled(key, d)` is the slot `route(key)` gives after `d` real doublings, for
    /// models fitted to spread and clustered keys, shifted slots and keys outside the domain.
    #[test]
    fn route_doubled_predicts_route_after_doubling() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for case in 0..200 {
            let keys_count = rng.random_range(2..64);
            let mut keys: Vec<i64> = (0..keys_count)
                .map(|_| match case % 3 {
                    0 => rng.random::<i64>(),
                    1 => rng.random_range(-1000..1000),
                    _ => rng.random_range(i64::MAX - 4096..i64::MAX),
                })
                .collect();
            keys.sort_unstable();
            let slots = 1usize << rng.random_range(1..6);
            let mut node = InnerNode::new(LinearModel::fit_unit(&keys).scaled(slots as f64), slots);
            node.slot_shift = rng.random_range(0..3);
            for (slot, child) in node.children.iter_mut().enumerate() {
                *child = NodeRef::data(slot as u32);
            }
            let probes: Vec<i64> = (0..256)
                .map(|probe| match probe % 4 {
                    0 => keys[rng.random_range(0..keys.len())],
                    1 => keys[rng.random_range(0..keys.len())]
                        .saturating_add(rng.random_range(-3..4)),
                    2 => rng.random::<i64>(),
                    _ => [i64::MIN, i64::MAX, 0, -1][probe % 16 / 4],
                })
                .collect();
            let mut doubled = node.clone();
            for doublings in 0..=5u32 {
                for &key in &probes {
                    assert_eq!(
                        node.route_doubled(key, doublings),
                        doubled.route(key),
                        "case {case} key {key} doublings {doublings}"
                    );
                }
                doubled.double();
            }
        }
    }
}
