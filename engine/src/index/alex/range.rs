//! Range iteration: from a start slot in one data node, along the leaf chain, in key order.

use std::ops::Bound;

use super::bitmap;
use super::data_node::NO_NODE;
use super::key::{Key, Payload};
use super::tree::Alex;

/// Iterator over `(key, payload)` pairs in ascending key order, up to an upper bound.
#[derive(Debug, Clone)]
pub struct Range<'a, K: Key, P: Payload> {
    tree: &'a Alex<K, P>,
    /// Current data node, `NO_NODE` when finished.
    node: u32,
    /// Next slot to look at in `node`.
    slot: usize,
    upper: Bound<K>,
}

impl<'a, K: Key, P: Payload> Range<'a, K, P> {
    pub(super) fn new(tree: &'a Alex<K, P>, node: u32, slot: usize, upper: Bound<K>) -> Self {
        Range {
            tree,
            node,
            slot,
            upper,
        }
    }
}

impl<K: Key, P: Payload> Iterator for Range<'_, K, P> {
    type Item = (K, P);

    fn next(&mut self) -> Option<(K, P)> {
        while self.node != NO_NODE {
            let node = &self.tree.datas[self.node as usize];
            match bitmap::next_set(&node.bitmap, self.slot, node.capacity()) {
                Some(slot) => {
                    let key = node.key_at(slot);
                    let within = match self.upper {
                        Bound::Unbounded => true,
                        Bound::Included(upper) => key <= upper,
                        Bound::Excluded(upper) => key < upper,
                    };
                    if !within {
                        self.node = NO_NODE;
                        return None;
                    }
                    self.slot = slot + 1;
                    return Some((key, node.payload_at(slot)));
                }
                None => {
                    self.node = node.next;
                    self.slot = 0;
                }
            }
        }
        None
    }
}
