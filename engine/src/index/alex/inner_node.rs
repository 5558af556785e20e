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
