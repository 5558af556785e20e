//! `check_invariants`: walks the whole tree and reports the first broken invariant.
//!
//! Checked: every data node's own invariants (sorted keys, bitmap count, gap values, see
//! [`super::data_node`]); inner nodes have a power-of-two slot count within the limit, finite
//! models with non-negative slope, and children in contiguous blocks; every node is
//! referenced by exactly one block; depth within the limit; the leaf chain lists the data nodes
//! in tree order with consistent back links; keys increase across nodes; the key count matches;
//! every key is found by routing from the root to its own node; free arena entries are
//! unreachable and every live entry is reachable.

use super::data_node::NO_NODE;
use super::inner_node::NodeRef;
use super::key::{Key, Payload};
use super::tree::Alex;

impl<K: Key, P: Payload> Alex<K, P> {
    /// Checks every structural invariant; `Err` describes the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut seen_data = vec![false; self.datas.len()];
        let mut seen_inner = vec![false; self.inners.len()];
        let mut leaves_in_order = Vec::new();
        // Depth-first, children pushed right to left so data nodes come out in key order.
        let mut stack = vec![(self.root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            if let Some(index) = node.data_index() {
                let seen = seen_data
                    .get_mut(index)
                    .ok_or_else(|| format!("reference to data node {index} past the arena"))?;
                if std::mem::replace(seen, true) {
                    return Err(format!("data node {index} referenced twice"));
                }
                leaves_in_order.push(index);
                continue;
            }
            let Some(index) = node.inner_index() else {
                return Err("unset child reference".into());
            };
            if depth >= self.config.tree_depth_max {
                return Err(format!("inner node {index} at depth {depth}"));
            }
            let seen = seen_inner
                .get_mut(index)
                .ok_or_else(|| format!("reference to inner node {index} past the arena"))?;
            if std::mem::replace(seen, true) {
                return Err(format!("inner node {index} referenced twice"));
            }
            let inner = &self.inners[index];
            let slots = inner.children.len();
            if !slots.is_power_of_two() || slots < 2 || slots > self.config.inner_fanout_max {
                return Err(format!("inner node {index} has {slots} slots"));
            }
            let model = &inner.model;
            if !(model.slope.is_finite() && model.slope >= 0.0 && model.intercept.is_finite()) {
                return Err(format!("inner node {index} has model {model:?}"));
            }
            let mut blocks: Vec<NodeRef> = Vec::new();
            let mut start = 0;
            while start < slots {
                let child = inner.children[start];
                let width = inner.children[start..]
                    .iter()
                    .position(|other| *other != child)
                    .unwrap_or(slots - start);
                if child == NodeRef::UNSET {
                    return Err(format!("inner node {index}: unset slot {start}"));
                }
                blocks.push(child);
                start += width;
            }
            for child in blocks.into_iter().rev() {
                stack.push((child, depth + 1));
            }
        }

        // The chain lists the same data nodes in the same order.
        let mut chained = Vec::new();
        let mut node = self.head;
        let mut prev = NO_NODE;
        while node != NO_NODE {
            if chained.len() > self.datas.len() {
                return Err("leaf chain has a cycle".into());
            }
            let data = self
                .datas
                .get(node as usize)
                .ok_or_else(|| format!("chain names data node {node} past the arena"))?;
            if data.prev != prev {
                return Err(format!("data node {node} links back to {}", data.prev));
            }
            chained.push(node as usize);
            prev = node;
            node = data.next;
        }
        if prev != self.tail {
            return Err(format!("chain ends at {prev}, tail is {}", self.tail));
        }
        if chained != leaves_in_order {
            return Err("leaf chain order differs from tree order".into());
        }

        // Free lists name exactly the unreachable entries.
        let mut free_data = vec![false; self.datas.len()];
        for &index in &self.free_datas {
            if seen_data.get(index as usize) != Some(&false) {
                return Err(format!(
                    "free data node {index} is reachable or past the arena"
                ));
            }
            free_data[index as usize] = true;
        }
        if let Some(lost) = (0..self.datas.len()).find(|i| !seen_data[*i] && !free_data[*i]) {
            return Err(format!("data node {lost} is neither reachable nor free"));
        }
        let mut free_inner = vec![false; self.inners.len()];
        for &index in &self.free_inners {
            if seen_inner.get(index as usize) != Some(&false) {
                return Err(format!(
                    "free inner node {index} is reachable or past the arena"
                ));
            }
            free_inner[index as usize] = true;
        }
        if let Some(lost) = (0..self.inners.len()).find(|i| !seen_inner[*i] && !free_inner[*i]) {
            return Err(format!("inner node {lost} is neither reachable nor free"));
        }

        // Node contents, order across nodes, reachability.
        let mut total = 0;
        let mut previous_key: Option<K> = None;
        for &index in &leaves_in_order {
            let data = &self.datas[index];
            data.check()
                .map_err(|problem| format!("data node {index}: {problem}"))?;
            total += data.num_keys;
            for slot in data.occupied_slots() {
                let key = data.key_at(slot);
                if previous_key.is_some_and(|previous| previous >= key) {
                    return Err(format!("key {key:?} in data node {index} out of order"));
                }
                previous_key = Some(key);
                let routed = self.leaf_for(key);
                if routed != index {
                    return Err(format!(
                        "key {key:?} lives in data node {index} but routes to {routed}"
                    ));
                }
                if data.find(key) != Some(slot) {
                    return Err(format!("key {key:?} not found at its slot {slot}"));
                }
            }
        }
        if total != self.len {
            return Err(format!("nodes hold {total} keys, length is {}", self.len));
        }
        Ok(())
    }
}
