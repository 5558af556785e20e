//! The tree: inner nodes over data nodes, and every operation that changes its shape.
//!
//! Nodes live in two arenas (`inners`, `datas`) and refer to each other by [`NodeRef`], so a
//! child can be referenced from several adjacent slots of its parent. Data nodes are also
//! chained in key order (`prev`/`next`, `head`/`tail`) for range scans.
//!
//! When a data node reports it is full, [`Alex::make_room`] picks one restructuring, then the
//! insert is retried (at most `RESTRUCTURE_ATTEMPTS_MAX` times, then the node is grown
//! regardless of size limits, so an insert never fails):
//! 1. grow the root, if the node is at an edge of the key space and a good share of its keys
//!    lie outside the root's domain (sequential and time-series appends);
//! 2. on catastrophic cost, split in two;
//! 3. if the node is within size limits and its observed cost matches what was expected,
//!    expand and retrain it; if it is at its size limit and being appended to, leave it as it
//!    is and start a new node for the slots past its last key;
//! 4. otherwise ask a fan-out tree over its keys: expand and retrain (fan-out 1) or split into
//!    the chosen number of children: sideways into the slots the node owns in its parent
//!    (doubling the parent if needed) when the parent's model separates its keys well, else
//!    down, under a new inner node with its own model.

use std::ops::Bound;

use super::data_node::{
    slots_for, DataNode, FullReason, InsertOutcome, Placement, DENSITY_INIT, DENSITY_MIN, NO_NODE,
};
use super::fanout::{self, FanoutPlan, PlanLimits, TRAVERSE_COST};
use super::inner_node::{InnerNode, NodeRef, NODE_INDEX_MAX};
use super::key::{Key, Payload};
use super::model::LinearModel;
use super::range::Range;

/// Restructurings tried for one insert before its node is grown regardless of limits.
const RESTRUCTURE_ATTEMPTS_MAX: usize = 16;
/// Largest fan-out of one split, as a power of two.
const SPLIT_DEPTH_MAX: u32 = 5;
/// A split may double the parent this many times to find slots that separate the keys.
const SPLIT_DOUBLINGS_MAX: usize = 4;
/// A sideways split is used only if no part keeps more than this share of the keys.
const SIDEWAYS_PART_SHARE_MAX: f64 = 0.9;
/// The root grows when at least 1/N of an edge node's keys lie outside its domain.
const OUT_OF_DOMAIN_SHARE_MIN_INV: usize = 8;
/// At most this many new data nodes are made by one root growth.
const ROOT_GROWTH_NODES_MAX: usize = 1024;
/// Bulk load makes a single data node, without pricing a split, below this many keys.
const PLAN_KEYS_MIN: usize = 64;

/// Size limits of the tree. The defaults suit production; tests use tiny ones so that every
/// structural path runs on a few hundred keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlexConfig {
    /// A data node never grows past this many slots by ordinary expansion (16 bytes each for
    /// `i64` keys and `u64` payloads); a full node at this size splits.
    pub data_node_slots_max: usize,
    /// Most child slots of an inner node (a power of two).
    pub inner_fanout_max: usize,
    /// Most inner levels between the root and a data node.
    pub tree_depth_max: usize,
}

impl Default for AlexConfig {
    fn default() -> Self {
        AlexConfig {
            data_node_slots_max: 1 << 20,
            inner_fanout_max: 1 << 20,
            tree_depth_max: 32,
        }
    }
}

impl AlexConfig {
    /// Limits small enough that splits, parent doubling, splits down and root growth all
    /// happen within a few hundred keys.
    pub fn tiny() -> Self {
        AlexConfig {
            data_node_slots_max: 64,
            inner_fanout_max: 16,
            tree_depth_max: 12,
        }
    }

    /// The same limits brought into their legal ranges.
    fn sanitized(self) -> Self {
        let fanout = self.inner_fanout_max.clamp(2, 1 << 24);
        AlexConfig {
            data_node_slots_max: self.data_node_slots_max.clamp(64, 1 << 30),
            inner_fanout_max: if fanout.is_power_of_two() {
                fanout
            } else {
                fanout.next_power_of_two() >> 1
            },
            tree_depth_max: self.tree_depth_max.clamp(1, 64),
        }
    }

    /// Keys one data node may hold when built.
    fn leaf_keys_max(&self) -> usize {
        (self.data_node_slots_max as f64 * DENSITY_INIT) as usize
    }
}

/// Runs two closures and returns when both have: maybe at once (the engine passes its
/// Env's `Spawn::join`), maybe one after the other.
pub type Join<'a> = &'a (dyn Fn(&mut (dyn FnMut() + Send), &mut (dyn FnMut() + Send)) + Sync);

/// The ALEX learned index: keys `K` mapped to payloads `P`.
#[derive(Debug, Clone)]
pub struct Alex<K: Key, P: Payload> {
    pub(super) config: AlexConfig,
    pub(super) inners: Vec<InnerNode<K>>,
    pub(super) free_inners: Vec<u32>,
    pub(super) datas: Vec<DataNode<K, P>>,
    pub(super) free_datas: Vec<u32>,
    pub(super) root: NodeRef,
    pub(super) head: u32,
    pub(super) tail: u32,
    pub(super) len: usize,
}

impl<K: Key, P: Payload> Default for Alex<K, P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, P: Payload> Alex<K, P> {
    /// An empty index with the default limits.
    pub fn new() -> Self {
        Self::with_config(AlexConfig::default())
    }

    /// An empty index with the given limits (brought into their legal ranges).
    pub fn with_config(config: AlexConfig) -> Self {
        let mut tree = Alex {
            config: config.sanitized(),
            inners: Vec::new(),
            free_inners: Vec::new(),
            datas: Vec::new(),
            free_datas: Vec::new(),
            root: NodeRef::UNSET,
            head: NO_NODE,
            tail: NO_NODE,
            len: 0,
        };
        let only = tree.alloc_data(DataNode::empty());
        tree.root = NodeRef::data(only);
        tree.head = only;
        tree.tail = only;
        tree
    }

    /// Builds an index from pairs sorted by key without duplicates; `Err` names the first
    /// position out of order.
    pub fn bulk_load(pairs: &[(K, P)]) -> Result<Self, String> {
        Self::bulk_load_with_config(pairs, AlexConfig::default())
    }

    pub fn bulk_load_with_config(pairs: &[(K, P)], config: AlexConfig) -> Result<Self, String> {
        let keys: Vec<K> = pairs.iter().map(|pair| pair.0).collect();
        let payloads: Vec<P> = pairs.iter().map(|pair| pair.1).collect();
        Self::bulk_load_split(&keys, &payloads, config)
    }

    /// [`Alex::bulk_load_with_config`] from the keys and their payloads in two slices of
    /// the same length (no pairs to copy apart: a table restored from a checkpoint collects
    /// them so).
    pub fn bulk_load_split(keys: &[K], payloads: &[P], config: AlexConfig) -> Result<Self, String> {
        Self::bulk_load_split_with(keys, payloads, config, &|a, b| {
            a();
            b();
        })
    }

    /// [`Alex::bulk_load_split`], with the data nodes built in two halves of about equal key
    /// counts handed to `join`, which may run them at once (the engine passes its Env's
    /// `Spawn::join`; the simulator's runs one after the other). The tree's shape is planned
    /// first, on this thread; the data nodes, where most of the bytes are written (and, in a
    /// fresh process, faulted in), are built after. The tree is the same either way.
    pub fn bulk_load_split_with(
        keys: &[K],
        payloads: &[P],
        config: AlexConfig,
        join: Join<'_>,
    ) -> Result<Self, String> {
        if keys.len() != payloads.len() {
            return Err(format!(
                "bulk load of {} keys with {} payloads",
                keys.len(),
                payloads.len()
            ));
        }
        if let Some(position) = keys.windows(2).position(|pair| pair[0] >= pair[1]) {
            return Err(format!(
                "bulk load input not strictly ascending at position {}",
                position + 1
            ));
        }
        let mut tree = Self::with_config(config);
        if keys.is_empty() {
            return Ok(tree);
        }
        tree.datas.clear();
        tree.head = NO_NODE;
        tree.tail = NO_NODE;
        let mut last_leaf = NO_NODE;
        let mut leaves = Vec::new();
        tree.root = tree.build_subtree(keys, 0, 0, &mut last_leaf, &mut leaves);
        tree.build_leaves(keys, payloads, &leaves, join);
        tree.len = keys.len();
        Ok(tree)
    }

    /// Builds the data node of each of `leaves` (its index, and its keys' range in
    /// `keys`), placed vacant by [`Alex::build_subtree`]: the two halves through `join`,
    /// each node keeping its place in the leaf chain.
    fn build_leaves(
        &mut self,
        keys: &[K],
        payloads: &[P],
        leaves: &[(u32, std::ops::Range<usize>)],
        join: Join<'_>,
    ) {
        let half = keys.len() / 2;
        let (left, right) = leaves.split_at(leaves.partition_point(|(_, r)| r.start < half));
        let build = |part: &[(u32, std::ops::Range<usize>)]| -> Vec<DataNode<K, P>> {
            part.iter()
                .map(|(_, r)| {
                    DataNode::from_sorted(
                        &keys[r.clone()],
                        &payloads[r.clone()],
                        DENSITY_INIT,
                        Placement::Spread,
                    )
                })
                .collect()
        };
        let (mut built_left, mut built_right) = (Vec::new(), Vec::new());
        join(&mut || built_left = build(left), &mut || {
            built_right = build(right)
        });
        for ((index, _), mut node) in leaves.iter().zip(built_left.into_iter().chain(built_right)) {
            let vacant = &mut self.datas[*index as usize];
            node.prev = vacant.prev;
            node.next = vacant.next;
            *vacant = node;
        }
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The payload of `key`.
    #[inline]
    pub fn get(&self, key: K) -> Option<P> {
        self.datas[self.leaf_for(key)].get(key)
    }

    /// Starts loading what an insert of `key` a little later reads first (see
    /// [`DataNode::prefetch`]); the inner nodes on the way are read now.
    #[inline]
    pub fn prefetch(&self, key: K) {
        self.datas[self.leaf_for(key)].prefetch(key);
    }

    /// Starts loading what a lookup of `key` a little later reads (see
    /// [`DataNode::prefetch_lookup`]); the inner nodes on the way are read now.
    #[inline]
    pub fn prefetch_lookup(&self, key: K) {
        self.datas[self.leaf_for(key)].prefetch_lookup(key);
    }

    /// Sets the payload of `key`; returns the old one, or `None` (no change) if it is absent.
    /// The structure does not change, so this never restructures.
    pub fn replace(&mut self, key: K, payload: P) -> Option<P> {
        let leaf = self.leaf_for(key);
        self.datas[leaf].replace(key, payload)
    }

    /// Inserts `key`; `false` (and no change) if it is already present.
    pub fn insert(&mut self, key: K, payload: P) -> bool {
        self.insert_with(key, || payload)
    }

    /// Inserts `key` with the payload `payload` makes, called once and only if the key was
    /// absent; `false` (no change, `payload` not called) if it is already present. One
    /// descent both checks for the key and inserts it.
    pub fn insert_with(&mut self, key: K, mut payload: impl FnMut() -> P) -> bool {
        for _ in 0..RESTRUCTURE_ATTEMPTS_MAX {
            let leaf = self.leaf_for(key);
            match self.datas[leaf].insert_with(key, &mut payload, true) {
                InsertOutcome::Inserted => {
                    self.len += 1;
                    return true;
                }
                InsertOutcome::Duplicate => return false,
                InsertOutcome::Full(reason) => self.make_room(key, reason),
            }
        }
        // The restructurings did not make room where the key goes: grow that node regardless
        // of its size limit. An expanded node always has a gap, so this insert succeeds.
        let leaf = self.leaf_for(key);
        self.expand_data(leaf);
        match self.datas[leaf].insert_with(key, &mut payload, false) {
            InsertOutcome::Inserted => {
                self.len += 1;
                true
            }
            InsertOutcome::Duplicate | InsertOutcome::Full(_) => false,
        }
    }

    /// Removes `key`, returning its payload.
    pub fn remove(&mut self, key: K) -> Option<P> {
        let leaf = self.leaf_for(key);
        let payload = self.datas[leaf].remove(key)?;
        self.len -= 1;
        let node = &self.datas[leaf];
        if node.num_keys == 0 && self.reclaim_empty(key, leaf) {
            return Some(payload);
        }
        let node = &self.datas[leaf];
        if node.num_keys < node.contract_threshold
            && slots_for(node.num_keys, DENSITY_INIT) < node.capacity()
        {
            self.rebuild_data(leaf, DENSITY_INIT, Placement::Spread, None);
        }
        Some(payload)
    }

    /// The pairs with keys within the bounds, in key order. Inverted or empty bounds yield
    /// nothing.
    pub fn range(&self, lower: Bound<K>, upper: Bound<K>) -> Range<'_, K, P> {
        let (node, slot) = match lower {
            Bound::Unbounded => (self.head, 0),
            Bound::Included(key) | Bound::Excluded(key) => {
                let leaf = self.leaf_for(key);
                let excluded = matches!(lower, Bound::Excluded(_));
                (leaf as u32, self.datas[leaf].scan_start(key, excluded))
            }
        };
        Range::new(self, node, slot, upper)
    }

    /// Heap and inline bytes of the whole structure: arrays, nodes, arenas, free lists.
    pub fn bytes_used(&self) -> usize {
        let data_arrays: usize = self.datas.iter().map(DataNode::heap_bytes).sum();
        let inner_arrays: usize = self.inners.iter().map(InnerNode::heap_bytes).sum();
        std::mem::size_of::<Self>()
            + self.datas.capacity() * std::mem::size_of::<DataNode<K, P>>()
            + self.inners.capacity() * std::mem::size_of::<InnerNode<K>>()
            + (self.free_datas.capacity() + self.free_inners.capacity())
                * std::mem::size_of::<u32>()
            + data_arrays
            + inner_arrays
    }

    /// Shape figures for benchmarks and debugging.
    pub fn stats(&self) -> AlexStats {
        let mut depth_max = 0;
        let mut stack = vec![(self.root, 0usize)];
        while let Some((node, depth)) = stack.pop() {
            depth_max = depth_max.max(depth);
            if let Some(inner) = node.inner_index() {
                let children = &self.inners[inner].children;
                for (slot, child) in children.iter().enumerate() {
                    if slot == 0 || children[slot - 1] != *child {
                        stack.push((*child, depth + 1));
                    }
                }
            }
        }
        AlexStats {
            data_nodes: self.datas.len() - self.free_datas.len(),
            inner_nodes: self.inners.len() - self.free_inners.len(),
            depth_max,
        }
    }

    // ---- routing -------------------------------------------------------------------------

    /// The data node `key` belongs to.
    #[inline]
    pub(super) fn leaf_for(&self, key: K) -> usize {
        let mut node = self.root;
        loop {
            match node.inner_index() {
                Some(inner) => {
                    let inner = &self.inners[inner];
                    node = inner.children[inner.route(key)];
                }
                None => return node.data_index().unwrap_or(0),
            }
        }
    }

    /// The inner nodes (with the slot taken) from the root down to `key`'s data node.
    fn path_to(&self, key: K) -> (Vec<(usize, usize)>, usize) {
        let mut path = Vec::new();
        let mut node = self.root;
        while let Some(inner_index) = node.inner_index() {
            let inner = &self.inners[inner_index];
            let slot = inner.route(key);
            path.push((inner_index, slot));
            node = inner.children[slot];
        }
        (path, node.data_index().unwrap_or(0))
    }

    // ---- arenas and the leaf chain -------------------------------------------------------

    fn alloc_data(&mut self, node: DataNode<K, P>) -> u32 {
        if let Some(index) = self.free_datas.pop() {
            self.datas[index as usize] = node;
            return index;
        }
        debug_assert!(self.datas.len() <= NODE_INDEX_MAX);
        self.datas.push(node);
        (self.datas.len() - 1) as u32
    }

    fn free_data(&mut self, index: usize) {
        self.datas[index] = DataNode::vacant();
        self.free_datas.push(index as u32);
    }

    fn free_inner(&mut self, index: usize) {
        self.inners[index] = InnerNode::vacant();
        self.free_inners.push(index as u32);
    }

    fn alloc_inner(&mut self, node: InnerNode<K>) -> u32 {
        if let Some(index) = self.free_inners.pop() {
            self.inners[index as usize] = node;
            return index;
        }
        debug_assert!(self.inners.len() <= NODE_INDEX_MAX);
        self.inners.push(node);
        (self.inners.len() - 1) as u32
    }

    /// Links `prev -> nodes... -> next` in the leaf chain (`NO_NODE` at either end moves the
    /// head or the tail).
    fn splice(&mut self, prev: u32, nodes: &[u32], next: u32) {
        let mut before = prev;
        for &node in nodes.iter().chain(std::iter::once(&next)) {
            if node != NO_NODE {
                self.datas[node as usize].prev = before;
            }
            if before == NO_NODE {
                self.head = node;
            } else {
                self.datas[before as usize].next = node;
            }
            if node == NO_NODE {
                self.tail = before;
            }
            before = node;
        }
    }

    /// Replaces data node `index` by a node rebuilt from its own keys (or from `keys` if
    /// given), keeping its place in the chain.
    fn rebuild_data(
        &mut self,
        index: usize,
        density: f64,
        placement: Placement,
        keys: Option<(&[K], &[P])>,
    ) {
        let collected;
        let (keys, payloads) = match keys {
            Some(pair) => pair,
            None => {
                collected = self.datas[index].collect();
                (&collected.0[..], &collected.1[..])
            }
        };
        let mut node = DataNode::from_sorted(keys, payloads, density, placement);
        node.prev = self.datas[index].prev;
        node.next = self.datas[index].next;
        self.datas[index] = node;
    }

    /// Expands data node `index` to `DENSITY_MIN`: an append-mostly node grows at the end its
    /// inserts land on, keeping its model; any other node is rebuilt with a retrained model.
    fn expand_data(&mut self, index: usize) {
        let node = &self.datas[index];
        let placement = node.append_placement();
        match placement {
            // Appended keys already sit where the model put them: add room, keep the rest.
            Placement::KeepLeft | Placement::KeepRight if node.num_keys > 0 => {
                crate::probe!(AlexExpand);
                let slots = slots_for(node.num_keys, DENSITY_MIN);
                self.datas[index].grow_toward(slots, placement);
            }
            _ => {
                crate::probe!(AlexRetrain);
                self.rebuild_data(index, DENSITY_MIN, placement, None);
            }
        }
    }

    // ---- restructuring -------------------------------------------------------------------

    /// Makes room for `key`, whose data node reported `Full(reason)`.
    fn make_room(&mut self, key: K, reason: FullReason) {
        let (path, leaf) = self.path_to(key);
        if self.try_grow_root(leaf) {
            return;
        }
        let node = &self.datas[leaf];
        let fits = slots_for(node.num_keys + 1, DENSITY_MIN) <= self.config.data_node_slots_max;
        if reason == FullReason::Catastrophe {
            if !self.split(leaf, &path, 1, None) {
                self.expand_data(leaf);
            }
            return;
        }
        if fits && !node.deviates() {
            self.expand_data(leaf);
            return;
        }
        if !fits && self.try_seal_for_appends(leaf, &path, key) {
            return;
        }
        let (keys, _) = self.datas[leaf].collect();
        if keys.len() < 2 {
            self.expand_data(leaf);
            return;
        }
        let unit = LinearModel::fit_unit(&keys);
        let depth_max = SPLIT_DEPTH_MAX
            .min(keys.len().ilog2())
            .min(self.config.inner_fanout_max.ilog2());
        let limits = PlanLimits {
            depth_min: u32::from(!fits),
            depth_max,
            leaf_keys_max: self.config.leaf_keys_max(),
            level_cost: if path.is_empty() { TRAVERSE_COST } else { 0.0 },
        };
        let plan = fanout::plan(&keys, &unit, &limits);
        if plan.depth == 0 || !self.split(leaf, &path, plan.depth, Some(&plan)) {
            self.expand_data(leaf);
        }
    }

    /// Frees data node `leaf`, just emptied by removing `key`, and what that leaves
    /// reclaimable above it. Without this, a sliding key window (the newest keys inserted,
    /// the oldest removed, as in a time-series table with retention) leaves an empty node, and
    /// in time empty inner nodes, behind for every node it passes: the tree grows with every
    /// key ever inserted instead of with the live ones.
    ///
    /// Level by level from `leaf`'s parent up: an empty node gives its parent slots to a data
    /// node beside it (an empty one if there is one, so a run of emptied nodes becomes one
    /// node; else the left one); a node with keys takes the slots of the empty data nodes
    /// beside it. A parent left with a single child is replaced by that child, and the walk
    /// goes on one level up. No key moves: a freed node holds none, and a node's model still
    /// places its own keys when it owns more slots. `false` if nothing changed (`leaf` is the
    /// root, or neither neighbour is a data node).
    fn reclaim_empty(&mut self, key: K, leaf: usize) -> bool {
        let (mut path, routed) = self.path_to(key);
        debug_assert_eq!(routed, leaf);
        let mut focus = leaf;
        let mut changed = false;
        while let Some(&(parent, slot)) = path.last() {
            let heir = if self.datas[focus].num_keys == 0 {
                match self.give_slots_away(parent, slot, focus) {
                    Some(heir) => heir,
                    None => break,
                }
            } else if self.take_empty_neighbours(parent, slot, focus) {
                focus
            } else {
                break;
            };
            changed = true;
            let heir_ref = NodeRef::data(heir as u32);
            if self.inners[parent]
                .children
                .iter()
                .any(|child| *child != heir_ref)
            {
                break;
            }
            path.pop();
            match path.last() {
                Some(&(grandparent, slot)) => {
                    let (start, end) = self.inners[grandparent].block_of(slot);
                    self.inners[grandparent].children[start..end].fill(heir_ref);
                }
                None => self.root = heir_ref,
            }
            self.free_inner(parent);
            focus = heir;
        }
        if changed {
            crate::probe!(AlexNodeReclaim);
            self.shrink_root();
        }
        changed
    }

    /// Halves the root while one half of its slots holds no key: a single data node whose
    /// keys (if any) all route to the other half. That is the key range a sliding window has
    /// left behind. The root grows its key domain toward new keys (doubling, or a new root
    /// above at the fan-out limit); without this it would also keep every range it ever
    /// covered, and a window sliding forever would lengthen the root, and then deepen the
    /// tree, without bound. Keys beyond the remaining slots route to the edge child, as keys
    /// beyond the root's domain always do.
    fn shrink_root(&mut self) {
        while let Some(root) = self.root.inner_index() {
            let inner = &self.inners[root];
            let slots = inner.children.len();
            if slots <= 2 {
                return;
            }
            let half = slots / 2;
            // The edge half's only child, if it has one whose keys all route past the half.
            let keyless = |range: &[NodeRef], left: bool| {
                let child = range[0];
                let node = &self.datas[child.data_index()?];
                let edge_key = if left {
                    node.first_key()
                } else {
                    node.last_key()
                };
                let outside = edge_key.is_none_or(|key| (inner.route(key) >= half) == left);
                (outside && range.iter().all(|other| *other == child)).then_some(child)
            };
            let (gone, left) = if let Some(child) = keyless(&inner.children[..half], true) {
                (child, true)
            } else if let Some(child) = keyless(&inner.children[half..], false) {
                (child, false)
            } else {
                return;
            };
            let inner = &mut self.inners[root];
            if left {
                inner.children.drain(..half);
                inner.slot_shift -= half as i64;
            } else {
                inner.children.truncate(half);
            }
            inner.children.shrink_to_fit();
            if !inner.children.contains(&gone) {
                if let Some(index) = gone.data_index() {
                    self.unlink_and_free(index);
                }
            }
        }
    }

    /// Gives the slots of `empty` (a data node without keys, child of `parent` at `slot`) to
    /// a data node beside it and frees it; returns the heir, or `None` (nothing changed) if
    /// neither neighbour is a data node.
    fn give_slots_away(&mut self, parent: usize, slot: usize, empty: usize) -> Option<usize> {
        let (start, end) = self.inners[parent].block_of(slot);
        let children = &self.inners[parent].children;
        let left = start.checked_sub(1).and_then(|s| children[s].data_index());
        let right = children.get(end).and_then(|child| child.data_index());
        let heir = match (left, right) {
            (Some(left), Some(right))
                if self.datas[left].num_keys > 0 && self.datas[right].num_keys == 0 =>
            {
                right
            }
            (Some(left), _) => left,
            (None, Some(right)) => right,
            (None, None) => return None,
        };
        self.inners[parent].children[start..end].fill(NodeRef::data(heir as u32));
        self.unlink_and_free(empty);
        Some(heir)
    }

    /// Gives `node` (child of `parent` at `slot`) the slots of the empty data nodes beside
    /// it, freeing them; whether there were any.
    fn take_empty_neighbours(&mut self, parent: usize, slot: usize, node: usize) -> bool {
        let mut took = false;
        loop {
            let (start, end) = self.inners[parent].block_of(slot);
            let children = &self.inners[parent].children;
            let beside = [start.checked_sub(1), Some(end)];
            let Some((at, empty)) = beside.into_iter().flatten().find_map(|at| {
                let index = children.get(at)?.data_index()?;
                (self.datas[index].num_keys == 0).then_some((at, index))
            }) else {
                return took;
            };
            let (from, to) = self.inners[parent].block_of(at);
            self.inners[parent].children[from..to].fill(NodeRef::data(node as u32));
            self.unlink_and_free(empty);
            took = true;
        }
    }

    /// Takes data node `index` out of the leaf chain and frees it.
    fn unlink_and_free(&mut self, index: usize) {
        let (prev, next) = (self.datas[index].prev, self.datas[index].next);
        self.free_data(index);
        self.splice(prev, &[], next);
    }

    /// For a node at its size limit that is being appended to: leaves it as it is and gives
    /// the parent slots past its last key to a new, empty node, where the appends continue.
    /// Nothing is copied. `false` if the parent's slots (after a few doublings) cannot
    /// separate `key` from the node's last key; then nothing changed, so `path` still names
    /// `leaf`'s slots for the split that follows. (Doubling first and failing after left
    /// `path`'s slot pointing at a neighbour's block: the split then replaced that neighbour
    /// and freed `leaf` while its own slots still named it, and the next insert there read a
    /// freed node. Seed 2098 of schedule generation 5.)
    fn try_seal_for_appends(&mut self, leaf: usize, path: &[(usize, usize)], key: K) -> bool {
        let node = &self.datas[leaf];
        let Some(last_key) = node.last_key() else {
            return false;
        };
        if node.append_placement() != Placement::KeepLeft || key <= last_key {
            return false;
        }
        let Some(&(parent, slot)) = path.last() else {
            return false;
        };
        let routing = &self.inners[parent];
        let (_, end) = routing.block_of(slot);
        let slots = routing.children.len();
        // The fewest doublings (within the limits) after which the cut works, found
        // without doubling.
        let found = (0..=SPLIT_DOUBLINGS_MAX as u32)
            .take_while(|&doublings| slots << doublings <= self.config.inner_fanout_max)
            .find_map(|doublings| {
                let end = end << doublings;
                let cut = routing.route_doubled(last_key, doublings) + 1;
                (cut < end && routing.route_doubled(key, doublings) >= cut)
                    .then_some((doublings, cut, end))
            });
        let Some((doublings, cut, end)) = found else {
            return false;
        };
        for _ in 0..doublings {
            self.inners[parent].double();
        }
        debug_assert_eq!(self.inners[parent].route(last_key) + 1, cut);
        debug_assert!(self.inners[parent].route(key) >= cut);
        let fresh = self.alloc_data(DataNode::empty());
        self.inners[parent].children[cut..end].fill(NodeRef::data(fresh));
        let next = self.datas[leaf].next;
        self.splice(leaf as u32, &[fresh], next);
        true
    }

    /// Splits data node `leaf` into `2^depth` parts; `false` if no split is possible.
    fn split(
        &mut self,
        leaf: usize,
        path: &[(usize, usize)],
        depth: u32,
        plan: Option<&FanoutPlan>,
    ) -> bool {
        debug_assert!(
            path.last()
                .is_none_or(|&(parent, slot)| self.inners[parent].children[slot]
                    == NodeRef::data(leaf as u32)),
            "the path's last slot must name the node being split"
        );
        let (keys, payloads) = self.datas[leaf].collect();
        if keys.len() < 2 {
            return false;
        }
        let depth = depth.clamp(1, self.config.inner_fanout_max.ilog2());
        let fanout = 1usize << depth;
        let can_go_down = path.len() < self.config.tree_depth_max;
        let mut parent_slot = path.last().copied();
        if let Some((parent, slot)) = parent_slot {
            let (mut start, mut end) = self.inners[parent].block_of(slot);
            let mut doublings = 0;
            loop {
                if let Some(bounds) = self.sideways_parts(parent, start, end, fanout, &keys) {
                    let largest = bounds
                        .windows(2)
                        .map(|b| b[1].1 - b[0].1)
                        .max()
                        .unwrap_or(0);
                    let balanced = largest as f64 <= SIDEWAYS_PART_SHARE_MAX * keys.len() as f64;
                    if largest < keys.len() && (balanced || !can_go_down) {
                        self.split_sideways(leaf, parent, &bounds, &keys, &payloads);
                        return true;
                    }
                }
                // Finer slots may separate the keys: double the parent, within limits.
                let parent_slots = self.inners[parent].children.len();
                if doublings >= SPLIT_DOUBLINGS_MAX
                    || parent_slots * 2 > self.config.inner_fanout_max
                {
                    break;
                }
                self.inners[parent].double();
                start *= 2;
                end *= 2;
                doublings += 1;
            }
            // Doubling moved the node's slots; any slot of its block names it.
            parent_slot = Some((parent, start));
        }
        if !can_go_down {
            return false;
        }
        self.split_down(leaf, parent_slot, depth, plan, &keys, &payloads);
        true
    }

    /// Cuts the block `[start, end)` of `parent` into at most `fanout` parts at the slots of
    /// the key quantiles. Each part is `(first slot, first key index)`, followed by the end
    /// `(end, keys.len())`; `None` if the keys all route to one slot.
    fn sideways_parts(
        &self,
        parent: usize,
        start: usize,
        end: usize,
        fanout: usize,
        keys: &[K],
    ) -> Option<Vec<(usize, usize)>> {
        let routing = &self.inners[parent];
        let mut parts = vec![(start, 0)];
        for part in 1..fanout {
            let quantile_key = keys[part * keys.len() / fanout];
            let slot = routing.route(quantile_key).clamp(start, end);
            let last_slot = parts.last().map_or(start, |p| p.0);
            if slot > last_slot && slot < end {
                let first_key = keys.partition_point(|key| routing.route(*key) < slot);
                parts.push((slot, first_key));
            }
        }
        parts.push((end, keys.len()));
        (parts.len() > 2).then_some(parts)
    }

    /// Replaces `leaf` by one data node per part (see [`Self::sideways_parts`]).
    fn split_sideways(
        &mut self,
        leaf: usize,
        parent: usize,
        parts: &[(usize, usize)],
        keys: &[K],
        payloads: &[P],
    ) {
        crate::probe!(AlexSplit);
        let hint = self.datas[leaf].append_placement();
        let count = parts.len() - 1;
        let mut made = Vec::with_capacity(count);
        for (part, bounds) in parts.windows(2).enumerate() {
            let placement = match hint {
                Placement::KeepLeft if part + 1 == count => Placement::KeepLeft,
                Placement::KeepRight if part == 0 => Placement::KeepRight,
                _ => Placement::Spread,
            };
            let ((first_slot, low), (end_slot, high)) = (bounds[0], bounds[1]);
            made.push(self.place_leaf(
                parent,
                first_slot..end_slot,
                &keys[low..high],
                &payloads[low..high],
                placement,
            ));
        }
        let (prev, next) = (self.datas[leaf].prev, self.datas[leaf].next);
        self.free_data(leaf);
        self.splice(prev, &made, next);
    }

    /// Builds a data node over `keys` and their `payloads` and points `inner`'s child slots
    /// `slots` at it; returns the node's index.
    fn place_leaf(
        &mut self,
        inner: usize,
        slots: std::ops::Range<usize>,
        keys: &[K],
        payloads: &[P],
        placement: Placement,
    ) -> u32 {
        let node = DataNode::from_sorted(keys, payloads, DENSITY_INIT, placement);
        let index = self.alloc_data(node);
        self.inners[inner].children[slots].fill(NodeRef::data(index));
        index
    }

    /// Replaces `leaf` by a new inner node with `2^depth` slots over new data nodes.
    fn split_down(
        &mut self,
        leaf: usize,
        parent_slot: Option<(usize, usize)>,
        depth: u32,
        plan: Option<&FanoutPlan>,
        keys: &[K],
        payloads: &[P],
    ) {
        crate::probe!(AlexSplit);
        let fanout = 1usize << depth;
        // A node filled by appends keeps half of the new slots free past its last key, so the
        // appends that follow spread over children instead of piling into the last one.
        let unit = match self.datas[leaf].append_placement() {
            Placement::KeepLeft => LinearModel::fit_unit(keys).scaled(0.5),
            Placement::KeepRight => {
                let mut model = LinearModel::fit_unit(keys).scaled(0.5);
                model.intercept += 0.5;
                model
            }
            Placement::Spread => LinearModel::fit_unit(keys),
        };
        let plan = plan.filter(|_| self.datas[leaf].append_placement() == Placement::Spread);
        let groups: Vec<(usize, usize)> = match plan {
            Some(plan) if plan.depth == depth => plan.children.clone(),
            _ => (0..fanout).map(|slot| (slot, 1)).collect(),
        };
        let inner = InnerNode::new(unit.scaled(fanout as f64), fanout);
        let inner_index = self.alloc_inner(inner) as usize;
        let mut made = Vec::with_capacity(groups.len());
        for (first, count) in groups {
            let routing = &self.inners[inner_index];
            let low = keys.partition_point(|key| routing.route(*key) < first);
            let high = keys.partition_point(|key| routing.route(*key) < first + count);
            made.push(self.place_leaf(
                inner_index,
                first..first + count,
                &keys[low..high],
                &payloads[low..high],
                Placement::Spread,
            ));
        }
        let replacement = NodeRef::inner(inner_index as u32);
        match parent_slot {
            Some((parent, slot)) => {
                let (start, end) = self.inners[parent].block_of(slot);
                self.inners[parent].children[start..end].fill(replacement);
            }
            None => self.root = replacement,
        }
        let (prev, next) = (self.datas[leaf].prev, self.datas[leaf].next);
        self.free_data(leaf);
        self.splice(prev, &made, next);
    }

    /// Grows the root's key domain if `leaf` is an edge node holding a good share of keys
    /// outside it. Returns whether it grew.
    fn try_grow_root(&mut self, leaf: usize) -> bool {
        let Some(root) = self.root.inner_index() else {
            return false;
        };
        let node = &self.datas[leaf];
        if node.num_keys == 0 {
            return false;
        }
        let slots = self.inners[root].children.len();
        let needed = node.num_keys.div_ceil(OUT_OF_DOMAIN_SHARE_MIN_INV).max(1);
        let routing = &self.inners[root];
        let mut side = None;
        if leaf == self.tail as usize {
            let outside = node
                .occupied_slots_rev()
                .take(needed)
                .take_while(|slot| routing.route_raw(node.key_at(*slot)) >= slots as i64)
                .count();
            if outside == needed {
                side = Some(Side::Right);
            }
        }
        if side.is_none() && leaf == self.head as usize {
            let outside = node
                .occupied_slots()
                .take(needed)
                .take_while(|slot| routing.route_raw(node.key_at(*slot)) < 0)
                .count();
            if outside == needed {
                side = Some(Side::Left);
            }
        }
        match side {
            Some(side) => {
                let grew = self.grow_root(root, side);
                if grew {
                    crate::probe!(AlexRootGrowth);
                }
                grew
            }
            None => false,
        }
    }

    /// Widens the root's key domain toward `side`: in place by adding slots while the root is
    /// below its size limit, else by putting a new root above it. The keys that now route to
    /// new slots are moved from the edge data nodes into new data nodes there. Returns
    /// whether the tree changed.
    fn grow_root(&mut self, root: usize, side: Side) -> bool {
        let edge_key = match side {
            Side::Right => self.datas[self.tail as usize].last_key(),
            Side::Left => self.datas[self.head as usize].first_key(),
        };
        let Some(edge_key) = edge_key else {
            return false;
        };
        let old_slots = self.inners[root].children.len();
        // New root, the old content's slot block in it, and the block of new slots.
        let (grown, kept, fresh) = if old_slots * 2 <= self.config.inner_fanout_max {
            let raw = self.inners[root].route_raw(edge_key);
            let mut new_slots = old_slots * 2;
            let covered = |new_slots: usize| match side {
                Side::Right => raw < new_slots as i64,
                Side::Left => raw + (new_slots - old_slots) as i64 >= 0,
            };
            while !covered(new_slots) && new_slots * 2 <= self.config.inner_fanout_max {
                new_slots *= 2;
            }
            let added = new_slots - old_slots;
            let inner = &mut self.inners[root];
            match side {
                Side::Right => {
                    inner.children.resize(new_slots, NodeRef::UNSET);
                    (root, (0, old_slots), (old_slots, new_slots))
                }
                Side::Left => {
                    inner.slot_shift += added as i64;
                    let mut children = vec![NodeRef::UNSET; added];
                    children.extend_from_slice(&inner.children);
                    inner.children = children;
                    (root, (added, new_slots), (0, added))
                }
            }
        } else {
            if self.stats().depth_max + 1 > self.config.tree_depth_max {
                return false;
            }
            // A new root of the same size whose slots each cover two of the old root's: the
            // old root takes one half, the other half doubles the key domain toward `side`.
            let old = &self.inners[root];
            let half = old_slots / 2;
            let model = LinearModel {
                base: old.model.base,
                slope: old.model.slope / 2.0,
                intercept: (old.model.intercept + old.slot_shift as f64) / 2.0,
            };
            let mut inner = InnerNode::new(model, old_slots);
            let (kept, fresh) = match side {
                Side::Right => ((0, half), (half, old_slots)),
                Side::Left => {
                    inner.slot_shift = half as i64;
                    ((half, old_slots), (0, half))
                }
            };
            inner.children[kept.0..kept.1].fill(self.root);
            let grown = self.alloc_inner(inner) as usize;
            self.root = NodeRef::inner(grown as u32);
            (grown, kept, fresh)
        };

        // Collect, walking inward from the edge, the keys that no longer route to `kept`.
        let mut moved: Vec<(Vec<K>, Vec<P>)> = Vec::new();
        let mut node = match side {
            Side::Right => self.tail,
            Side::Left => self.head,
        };
        while node != NO_NODE {
            let (keys, payloads) = self.datas[node as usize].collect();
            let routing = &self.inners[grown];
            let stays = keys.partition_point(|key| routing.route(*key) < kept.1);
            let leaves = keys.partition_point(|key| routing.route(*key) < kept.0);
            let (keep, go) = match side {
                Side::Right => (0..stays, stays..keys.len()),
                Side::Left => (leaves..keys.len(), 0..leaves),
            };
            if !go.is_empty() {
                let placement = self.datas[node as usize].append_placement();
                self.rebuild_data(
                    node as usize,
                    DENSITY_INIT,
                    placement,
                    Some((&keys[keep.clone()], &payloads[keep.clone()])),
                );
                moved.push((keys[go.clone()].to_vec(), payloads[go].to_vec()));
            }
            if !keep.is_empty() {
                break;
            }
            node = match side {
                Side::Right => self.datas[node as usize].prev,
                Side::Left => self.datas[node as usize].next,
            };
        }
        if side == Side::Right {
            moved.reverse();
        }
        let mut keys = Vec::new();
        let mut payloads = Vec::new();
        for (part_keys, part_payloads) in moved {
            keys.extend(part_keys);
            payloads.extend(part_payloads);
        }
        let blocks = root_growth_blocks(fresh.0, fresh.1);
        let made = self.fill_new_blocks(grown, &blocks, &keys, &payloads);
        match side {
            Side::Right => self.splice(self.tail, &made, NO_NODE),
            Side::Left => self.splice(NO_NODE, &made, self.head),
        }
        true
    }

    /// Fills the root's slot `blocks` (`(first slot, width)`, in order, tiling the new
    /// slots) with new data nodes, each holding the sorted `keys` that route into its block.
    /// Returns them in order.
    fn fill_new_blocks(
        &mut self,
        root: usize,
        blocks: &[(usize, usize)],
        keys: &[K],
        payloads: &[P],
    ) -> Vec<u32> {
        let mut made = Vec::with_capacity(blocks.len());
        self.datas
            .reserve(blocks.len().saturating_sub(self.free_datas.len()));
        let mut low = 0;
        for (i, &(block, width)) in blocks.iter().enumerate() {
            let routing = &self.inners[root];
            let high = if i + 1 == blocks.len() {
                keys.len()
            } else {
                keys.partition_point(|key| routing.route(*key) < block + width)
            };
            made.push(self.place_leaf(
                root,
                block..block + width,
                &keys[low..high],
                &payloads[low..high],
                Placement::Spread,
            ));
            low = high;
        }
        made
    }

    // ---- bulk load -----------------------------------------------------------------------

    /// Plans the subtree over sorted `keys` (which start at position `base` of the whole
    /// load): its inner nodes are made, and each data node is placed vacant in the leaf
    /// chain after `last_leaf` and listed in `leaves` with its keys' range, for
    /// [`Alex::build_leaves`].
    fn build_subtree(
        &mut self,
        keys: &[K],
        base: usize,
        level: usize,
        last_leaf: &mut u32,
        leaves: &mut Vec<(u32, std::ops::Range<usize>)>,
    ) -> NodeRef {
        let leaf_keys_max = self.config.leaf_keys_max();
        let must_split = keys.len() > leaf_keys_max;
        if level >= self.config.tree_depth_max
            || keys.len() < 2
            || (!must_split && keys.len() < PLAN_KEYS_MIN)
        {
            return self.push_leaf(base..base + keys.len(), last_leaf, leaves);
        }
        let unit = LinearModel::fit_unit(keys);
        let limits = PlanLimits {
            depth_min: u32::from(must_split),
            depth_max: self.config.inner_fanout_max.ilog2(),
            leaf_keys_max,
            level_cost: TRAVERSE_COST,
        };
        let plan = fanout::plan(keys, &unit, &limits);
        if plan.depth == 0 {
            return self.push_leaf(base..base + keys.len(), last_leaf, leaves);
        }
        let fanout = 1usize << plan.depth;
        let inner_index = self.alloc_inner(InnerNode::new(unit.scaled(fanout as f64), fanout));
        let inner_index = inner_index as usize;
        let mut low = 0;
        for (first, count) in plan.children {
            let routing = &self.inners[inner_index];
            let high = keys.partition_point(|key| routing.route(*key) < first + count);
            let child = if high - low > leaf_keys_max {
                self.build_subtree(&keys[low..high], base + low, level + 1, last_leaf, leaves)
            } else {
                self.push_leaf(base + low..base + high, last_leaf, leaves)
            };
            self.inners[inner_index].children[first..first + count].fill(child);
            low = high;
        }
        NodeRef::inner(inner_index as u32)
    }

    /// Places a vacant data node for the keys at `range` after `last_leaf` and lists it in
    /// `leaves`.
    fn push_leaf(
        &mut self,
        range: std::ops::Range<usize>,
        last_leaf: &mut u32,
        leaves: &mut Vec<(u32, std::ops::Range<usize>)>,
    ) -> NodeRef {
        let index = self.alloc_data(DataNode::vacant());
        self.splice(*last_leaf, &[index], NO_NODE);
        *last_leaf = index;
        leaves.push((index, range));
        NodeRef::data(index)
    }
}

/// Shape of the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlexStats {
    pub data_nodes: usize,
    pub inner_nodes: usize,
    /// Inner levels above the deepest data node.
    pub depth_max: usize,
}

/// Which end of the key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// Block width for `added` new root slots: a power of two dividing `added` (so blocks tile
/// the new slots), as small as possible while making at most `ROOT_GROWTH_NODES_MAX` nodes,
/// if `added`'s factors of two allow it.
fn block_width(added: usize) -> usize {
    let mut width = 1;
    while added / width > ROOT_GROWTH_NODES_MAX && (added / width).is_multiple_of(2) {
        width *= 2;
    }
    width
}

/// The blocks `(first slot, width)` tiling the new root slots `[first, end)`, in order:
/// all `block_width` wide when that makes at most `ROOT_GROWTH_NODES_MAX` of them. Otherwise
/// `end - first` is an odd multiple of that width (growing 4 slots in place to 2^20 adds
/// 2^20 - 4, and 4-wide blocks would be 262,143 empty data nodes, about 100 MB, for one
/// key near `i64::MAX`): then each block is the widest power of two aligned at its first
/// slot that fits, up to the narrowest cap that keeps the count within the limit.
fn root_growth_blocks(first: usize, end: usize) -> Vec<(usize, usize)> {
    let added = end - first;
    let width = block_width(added);
    if added / width <= ROOT_GROWTH_NODES_MAX {
        return (first..end)
            .step_by(width)
            .map(|slot| (slot, width))
            .collect();
    }
    let mut cap = width;
    loop {
        cap *= 2;
        let blocks = aligned_blocks(first, end, cap);
        if blocks.len() <= ROOT_GROWTH_NODES_MAX || cap >= added {
            return blocks;
        }
    }
}

/// Tiles `[first, end)` greedily with blocks of power-of-two width at most `cap`, each
/// aligned to its width.
fn aligned_blocks(first: usize, end: usize, cap: usize) -> Vec<(usize, usize)> {
    debug_assert!(cap.is_power_of_two());
    let mut blocks = Vec::new();
    let mut slot = first;
    while slot < end {
        let aligned = if slot == 0 {
            cap
        } else {
            (1usize << slot.trailing_zeros()).min(cap)
        };
        let mut width = aligned;
        while slot + width > end {
            width /= 2;
        }
        blocks.push((slot, width));
        slot += width;
    }
    blocks
}

#[cfg(test)]
mod growth_tests {
    use super::{root_growth_blocks, ROOT_GROWTH_NODES_MAX};

    fn assert_tiles(first: usize, end: usize, blocks: &[(usize, usize)]) {
        let mut next = first;
        for &(slot, width) in blocks {
            assert_eq!(slot, next);
            assert!(
                width.is_power_of_two() && slot % width == 0,
                "{slot} {width}"
            );
            next += width;
        }
        assert_eq!(next, end);
    }

    #[test]
    fn root_growth_makes_at_most_the_limit_of_nodes() {
        for (first, end) in [
            (4, 1 << 20),
            (0, (1 << 20) - 4),
            (1 << 10, 1 << 20),
            (2, 1 << 12),
            (1 << 19, 1 << 20),
            (8, 16),
        ] {
            let blocks = root_growth_blocks(first, end);
            assert_tiles(first, end, &blocks);
            assert!(blocks.len() <= ROOT_GROWTH_NODES_MAX, "{first}..{end}");
        }
        // Where uniform blocks stay within the limit they are kept (the shape before).
        assert_eq!(
            root_growth_blocks(8, 16),
            (8..16).map(|s| (s, 1)).collect::<Vec<_>>()
        );
        assert!(root_growth_blocks(1 << 19, 1 << 20)
            .iter()
            .all(|&(_, w)| w == 512));
    }
}
