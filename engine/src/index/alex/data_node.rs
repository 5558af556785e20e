//! Data nodes: a gapped array of keys and payloads, an occupancy bitmap and a linear model.
//!
//! Layout: `slots[cap]` of `(key, payload)` side by side, so a lookup that lands on its key finds
//! the payload in the same cache line, and `bitmap[ceil(cap / 64)]`. A key is placed near the
//! slot its model predicts, leaving gaps so that most inserts need no shifting.
//!
//! Invariants (checked by [`DataNode::check`]):
//! - the occupied keys are strictly increasing from left to right;
//! - a gap holds a copy of the next occupied key to its right, or [`Key::MAX`] if there is none,
//!   so the keys of all slots are non-decreasing and a search needs no test for emptiness;
//! - `num_keys` equals the number of set bits, `num_keys < cap` before any insert that respects
//!   the limits (so a gap always exists), and `last_occupied` is the last set bit;
//!
//! `Key::MAX` is a legal key, so the value alone cannot mark a gap: the bitmap decides. A lookup
//! needs it only for `Key::MAX` (the last slot holding any smaller key is that key itself), and
//! the one ambiguous case, `Key::MAX` landing on a trailing gap, is settled by `last_occupied`.
//!
//! Lookup: predict a slot, then exponential search for the last slot holding a value `<= key`;
//! the key is present iff that slot holds it and is occupied. Insert: the same search gives the
//! insertion point; a gap there takes the key (at the predicted slot if the gap run reaches it),
//! otherwise the keys between the insertion point and the nearest gap shift by one.
//!
//! Each node keeps the statistics the cost model needs (search distance and shifts per insert,
//! inserts past either end) next to the costs it expected when it was built.

use super::bitmap;
use super::fanout::{SEARCH_BIT_COST, SHIFT_COST};
use super::key::{Key, Payload};
use super::model::{clamp_slot, LinearModel};

/// A full node (this fraction of its slots occupied) is expanded or split.
pub(crate) const DENSITY_MAX: f64 = 0.8;
/// Density of nodes built by bulk load, splits and contraction.
pub(crate) const DENSITY_INIT: f64 = 0.7;
/// Density after an expansion; below it a node contracts.
pub(crate) const DENSITY_MIN: f64 = 0.6;
/// Smallest capacity of any node, empty ones included.
pub(crate) const DATA_NODE_SLOTS_MIN: usize = 16;
/// The statistic checks for catastrophic cost run once per this many inserts.
const CATASTROPHE_CHECK_INSERTS: u64 = 64;
/// Shifts per insert (observed or expected) beyond which a node is restructured at once.
const CATASTROPHE_SHIFTS_PER_INSERT: f64 = 100.0;
/// Inserts a node must see before its observed cost is compared with the expected one.
const DEVIATION_INSERTS_MIN: u64 = 64;
/// Observed cost above `expected * factor + slack` is a significant deviation.
const DEVIATION_FACTOR: f64 = 1.5;
const DEVIATION_SLACK: f64 = SEARCH_BIT_COST;
/// A node whose inserts land past one end at least this often is "append-mostly" there.
const APPEND_MOSTLY_FRACTION: f64 = 0.9;
/// Marks "no neighbour" in the leaf chain.
pub(crate) const NO_NODE: u32 = u32::MAX;

/// How a rebuilt node lays its keys out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placement {
    /// Spread over the whole array.
    Spread,
    /// Packed at `DENSITY_MAX` into the left part, the rest left free for appends on the right.
    KeepLeft,
    /// Mirror image of `KeepLeft`, for inserts below the smallest key.
    KeepRight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FullReason {
    /// At the density limit.
    Density,
    /// Observed shifts are catastrophic.
    Catastrophe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InsertOutcome {
    Inserted,
    Duplicate,
    Full(FullReason),
}

/// Observed and expected costs of a node since it was (re)built.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeStats {
    pub inserts: u64,
    /// Sum over inserts of the bit length of |predicted slot - final slot|.
    pub search_bits: u64,
    /// Keys moved by inserts.
    pub shifts: u64,
    /// Inserts above every key of the node.
    pub appends_right: u64,
    /// Inserts below every key of the node.
    pub appends_left: u64,
    /// Per key, as measured when the node was built.
    pub expected_search_bits: f64,
    pub expected_shifts: f64,
}

impl NodeStats {
    fn expected_cost(&self) -> f64 {
        SEARCH_BIT_COST * self.expected_search_bits + SHIFT_COST * self.expected_shifts
    }

    fn observed_cost(&self) -> f64 {
        let inserts = self.inserts.max(1) as f64;
        SEARCH_BIT_COST * self.search_bits as f64 / inserts
            + SHIFT_COST * self.shifts as f64 / inserts
    }
}

/// Bit length of a slot distance: the number of doublings an exponential search needs.
#[inline]
pub(crate) fn search_bits(distance: usize) -> u32 {
    usize::BITS - distance.leading_zeros()
}

/// Capacity for `keys` keys at `density`, leaving room for at least one insert.
pub(crate) fn slots_for(keys: usize, density: f64) -> usize {
    let wanted = (keys as f64 / density).ceil() as usize;
    wanted.max(keys + 2).max(DATA_NODE_SLOTS_MIN)
}

/// What placing sorted keys by a model costs: the sum of search bits and the sum of squared run
/// lengths (a run is a stretch of consecutive occupied slots; an insert into a run of length
/// `L` shifts about `L / 4` keys, and lands in it with probability proportional to `L`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PlacementCost {
    pub search_bits: u64,
    pub run_length_squares: u64,
}

impl PlacementCost {
    pub fn per_key(&self, keys: usize) -> (f64, f64) {
        if keys == 0 {
            return (0.0, 0.0);
        }
        let keys = keys as f64;
        (
            self.search_bits as f64 / keys,
            self.run_length_squares as f64 / (4.0 * keys),
        )
    }
}

/// Places sorted `keys` into `slots` slots by `model`: each key at its predicted slot, pushed
/// right past the previous key and left so the remaining keys still fit. Calls `place(rank,
/// slot)` for each key, in order.
pub(crate) fn place_by_model<K: Key>(
    keys: &[K],
    model: &LinearModel<K>,
    slots: usize,
    mut place: impl FnMut(usize, usize),
) -> PlacementCost {
    debug_assert!(keys.len() <= slots);
    let mut cost = PlacementCost::default();
    let mut next_free = 0usize;
    let mut run = 0u64;
    for (rank, &key) in keys.iter().enumerate() {
        let predicted = clamp_slot(model.predict(key), slots);
        let latest = slots - (keys.len() - rank);
        let slot = predicted.max(next_free).min(latest);
        cost.search_bits += u64::from(search_bits(predicted.abs_diff(slot)));
        if rank > 0 && slot == next_free {
            run += 1;
        } else {
            cost.run_length_squares += run * run;
            run = 1;
        }
        place(rank, slot);
        next_free = slot + 1;
    }
    cost.run_length_squares += run * run;
    cost
}

/// The model a node of `slots` slots uses for sorted `keys` under `placement`.
pub(crate) fn model_for<K: Key>(keys: &[K], slots: usize, placement: Placement) -> LinearModel<K> {
    if keys.is_empty() {
        return LinearModel::flat();
    }
    let ranks = LinearModel::fit_ranks(keys);
    let count = keys.len() as f64;
    match placement {
        Placement::Spread => ranks.scaled(slots as f64 / count),
        Placement::KeepLeft | Placement::KeepRight => {
            let packed = (count / DENSITY_MAX).ceil().min(slots as f64);
            let mut model = ranks.scaled(packed / count);
            if placement == Placement::KeepRight {
                model.intercept += slots as f64 - packed;
            }
            model
        }
    }
}

/// One slot of a data node: a key (or, in a gap, the next key to the right) and its payload.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub(crate) struct Slot<K, P> {
    pub key: K,
    pub payload: P,
}

#[derive(Debug, Clone)]
pub(crate) struct DataNode<K, P> {
    pub model: LinearModel<K>,
    pub slots: Box<[Slot<K, P>]>,
    pub bitmap: Box<[u64]>,
    pub num_keys: usize,
    /// Last occupied slot; 0 when the node is empty.
    pub last_occupied: usize,
    /// An insert that would reach this many keys reports `Full`.
    pub expand_threshold: usize,
    /// A removal that leaves fewer keys than this contracts the node.
    pub contract_threshold: usize,
    pub prev: u32,
    pub next: u32,
    pub stats: NodeStats,
}

impl<K: Key, P: Payload> DataNode<K, P> {
    /// An empty node of the smallest capacity.
    pub fn empty() -> Self {
        Self::from_sorted(&[], &[], DENSITY_INIT, Placement::Spread)
    }

    /// A node holding nothing, not even slots: what a freed arena entry keeps.
    pub fn vacant() -> Self {
        DataNode {
            model: LinearModel::flat(),
            slots: Box::new([]),
            bitmap: Box::new([]),
            num_keys: 0,
            last_occupied: 0,
            expand_threshold: 0,
            contract_threshold: 0,
            prev: NO_NODE,
            next: NO_NODE,
            stats: NodeStats::default(),
        }
    }

    /// Builds a node from sorted, distinct keys and their payloads at `density`.
    pub fn from_sorted(keys: &[K], payloads: &[P], density: f64, placement: Placement) -> Self {
        debug_assert_eq!(keys.len(), payloads.len());
        debug_assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        let slots = slots_for(keys.len(), density);
        let model = model_for(keys, slots, placement);
        let gap = Slot {
            key: K::MAX,
            payload: P::default(),
        };
        let mut node_slots = Vec::with_capacity(slots);
        crate::mem::advise_huge_pages(&node_slots);
        node_slots.resize(slots, gap);
        let mut node_slots = node_slots.into_boxed_slice();
        let mut bits = vec![0u64; bitmap::words_for(slots)].into_boxed_slice();
        let mut last_occupied = 0;
        let cost = place_by_model(keys, &model, slots, |rank, slot| {
            node_slots[slot] = Slot {
                key: keys[rank],
                payload: payloads[rank],
            };
            bitmap::set(&mut bits, slot);
            last_occupied = slot;
        });
        // Gaps take the next key to their right; trailing gaps keep `K::MAX`.
        let mut next_key = K::MAX;
        for slot in (0..slots).rev() {
            if bitmap::get(&bits, slot) {
                next_key = node_slots[slot].key;
            } else {
                node_slots[slot].key = next_key;
            }
        }
        let (expected_search_bits, expected_shifts) = cost.per_key(keys.len());
        let mut node = DataNode {
            model,
            slots: node_slots,
            bitmap: bits,
            num_keys: keys.len(),
            last_occupied,
            expand_threshold: 0,
            contract_threshold: 0,
            prev: NO_NODE,
            next: NO_NODE,
            stats: NodeStats {
                expected_search_bits,
                expected_shifts,
                ..NodeStats::default()
            },
        };
        node.set_thresholds();
        node
    }

    fn set_thresholds(&mut self) {
        let slots = self.capacity();
        let at_max = (slots as f64 * DENSITY_MAX) as usize;
        self.expand_threshold = at_max.max(self.num_keys + 1).min(slots - 1);
        self.contract_threshold = if slots > DATA_NODE_SLOTS_MIN {
            (slots as f64 * DENSITY_MIN) as usize
        } else {
            0
        };
    }

    /// Grows the node to `slots` slots without moving or retraining: the new slots are gaps
    /// added past the last key (`Placement::KeepLeft`) or before the first one (`KeepRight`,
    /// the model shifted to match). Keys keep their slots relative to each other, so the model
    /// stays as accurate as it was; appends then continue into the new room. A plain copy,
    /// far cheaper than a rebuild.
    pub fn grow_toward(&mut self, slots: usize, placement: Placement) {
        let old_slots = self.capacity();
        if slots <= old_slots {
            return;
        }
        let added = slots - old_slots;
        let gap = Slot {
            key: K::MAX,
            payload: P::default(),
        };
        let mut grown = Vec::with_capacity(slots);
        crate::mem::advise_huge_pages(&grown);
        let mut bits = vec![0u64; bitmap::words_for(slots)];
        if placement == Placement::KeepRight {
            let first = self.first_key().unwrap_or(K::MAX);
            grown.resize(added, Slot { key: first, ..gap });
            grown.extend_from_slice(&self.slots);
            for slot in self.occupied_slots() {
                bitmap::set(&mut bits, slot + added);
            }
            self.model.intercept += added as f64;
            if self.num_keys > 0 {
                self.last_occupied += added;
            }
        } else {
            grown.extend_from_slice(&self.slots);
            grown.resize(slots, gap);
            bits[..self.bitmap.len()].copy_from_slice(&self.bitmap);
        }
        self.slots = grown.into_boxed_slice();
        self.bitmap = bits.into_boxed_slice();
        self.stats = NodeStats {
            expected_search_bits: self.stats.expected_search_bits,
            expected_shifts: self.stats.expected_shifts,
            ..NodeStats::default()
        };
        self.set_thresholds();
    }

    #[inline]
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    #[inline]
    pub fn key_at(&self, slot: usize) -> K {
        self.slots[slot].key
    }

    #[inline]
    pub fn payload_at(&self, slot: usize) -> P {
        self.slots[slot].payload
    }

    /// All pairs in key order.
    pub fn collect(&self) -> (Vec<K>, Vec<P>) {
        let mut keys = Vec::with_capacity(self.num_keys);
        let mut payloads = Vec::with_capacity(self.num_keys);
        for slot in self.occupied_slots() {
            keys.push(self.slots[slot].key);
            payloads.push(self.slots[slot].payload);
        }
        (keys, payloads)
    }

    pub fn occupied_slots(&self) -> impl Iterator<Item = usize> + '_ {
        let slots = self.capacity();
        let mut cursor = 0;
        std::iter::from_fn(move || {
            let slot = bitmap::next_set(&self.bitmap, cursor, slots)?;
            cursor = slot + 1;
            Some(slot)
        })
    }

    pub fn occupied_slots_rev(&self) -> impl Iterator<Item = usize> + '_ {
        let mut before = if self.num_keys > 0 {
            self.last_occupied + 1
        } else {
            0
        };
        std::iter::from_fn(move || {
            let slot = bitmap::prev_set(&self.bitmap, before)?;
            before = slot;
            Some(slot)
        })
    }

    pub fn first_key(&self) -> Option<K> {
        bitmap::next_set(&self.bitmap, 0, self.capacity()).map(|slot| self.slots[slot].key)
    }

    pub fn last_key(&self) -> Option<K> {
        (self.num_keys > 0).then(|| self.slots[self.last_occupied].key)
    }

    #[inline]
    fn predict_slot(&self, key: K) -> usize {
        clamp_slot(self.model.predict(key), self.capacity())
    }

    /// First slot whose key is `> key` (the capacity if none), by exponential search from
    /// `start`. Slot keys are non-decreasing as a whole, gaps included.
    #[inline]
    pub fn upper_bound_from(&self, key: K, start: usize) -> usize {
        let keys = &self.slots[..];
        let slots = keys.len();
        if keys[start].key <= key {
            let mut low = start; // keys[low] <= key
            let mut step = 1;
            let high = loop {
                let probe = low + step;
                if probe >= slots {
                    break slots;
                }
                if keys[probe].key > key {
                    break probe;
                }
                low = probe;
                step <<= 1;
            };
            low + 1 + keys[low + 1..high].partition_point(|s| s.key <= key)
        } else {
            let mut high = start; // keys[high] > key
            let mut step = 1;
            let low = loop {
                if step > high {
                    break 0;
                }
                let probe = high - step;
                if keys[probe].key <= key {
                    break probe + 1;
                }
                high = probe;
                step <<= 1;
            };
            low + keys[low..high].partition_point(|s| s.key <= key)
        }
    }

    /// The slot holding `key`, given `upper` = first slot with a value `> key`.
    #[inline]
    fn slot_at_upper(&self, key: K, upper: usize) -> Option<usize> {
        if upper == 0 {
            return None;
        }
        let slot = upper - 1;
        if self.slots[slot].key != key {
            return None;
        }
        // The last slot holding `key` is the key itself: a gap holding it would have the key
        // to its right. Only the trailing gaps' `Key::MAX` is not a key, so below it the
        // bitmap (another cache line) need not be read.
        if key < K::MAX {
            debug_assert!(bitmap::get(&self.bitmap, slot));
            return Some(slot);
        }
        if bitmap::get(&self.bitmap, slot) {
            return Some(slot);
        }
        self.max_key_slot(key)
    }

    /// Only `Key::MAX` can land on a gap holding it (the trailing sentinel run).
    #[cold]
    fn max_key_slot(&self, key: K) -> Option<usize> {
        (self.num_keys > 0 && self.slots[self.last_occupied].key == key)
            .then_some(self.last_occupied)
    }

    /// Starts loading what an insert of `key` reads first (see [`crate::mem::prefetch`]): the
    /// slot the model predicts, and the bitmap word saying whether the slot is a gap. The
    /// bitmap is a separate array of one bit per slot; in a 100M-key index it is 19 MB, no
    /// longer cache-resident, and without this its load was where inserts stalled. (A
    /// lookup reads the bitmap only for `Key::MAX`, so for lookups the second line is waste.)
    #[inline]
    pub fn prefetch(&self, key: K) {
        let predicted = self.predict_slot(key);
        if let Some(slot) = self.slots.get(predicted) {
            crate::mem::prefetch(slot);
        }
        if let Some(word) = self.bitmap.get(predicted >> 6) {
            crate::mem::prefetch(word);
        }
    }

    /// Starts loading what a lookup of `key` reads: the slot the model predicts and the one
    /// after it (the search's first two probes; the second is on the next cache line for one
    /// slot in four).
    #[inline]
    pub fn prefetch_lookup(&self, key: K) {
        let predicted = self.predict_slot(key);
        for slot in self.slots.iter().skip(predicted).take(2) {
            crate::mem::prefetch(slot);
        }
    }

    /// The slot holding `key`.
    #[inline]
    pub fn find(&self, key: K) -> Option<usize> {
        let upper = self.upper_bound_from(key, self.predict_slot(key));
        self.slot_at_upper(key, upper)
    }

    #[inline]
    pub fn get(&self, key: K) -> Option<P> {
        self.find(key).map(|slot| self.slots[slot].payload)
    }

    /// Sets the payload of `key` in its slot; gaps' payloads are never read, so only the
    /// key's own slot changes.
    pub fn replace(&mut self, key: K, payload: P) -> Option<P> {
        let slot = self.find(key)?;
        Some(std::mem::replace(&mut self.slots[slot].payload, payload))
    }

    /// The first slot from which a scan yields exactly the keys `>= key` (`excluded`: `> key`).
    pub fn scan_start(&self, key: K, excluded: bool) -> usize {
        let upper = self.upper_bound_from(key, self.predict_slot(key));
        if excluded {
            return upper;
        }
        self.slot_at_upper(key, upper).unwrap_or(upper)
    }

    /// Whether the observed cost is far above what the model promised when the node was built.
    pub fn deviates(&self) -> bool {
        self.stats.inserts >= DEVIATION_INSERTS_MIN
            && self.stats.observed_cost()
                > DEVIATION_FACTOR * self.stats.expected_cost() + DEVIATION_SLACK
    }

    /// Whether inserts shift so many keys that the node must be restructured now.
    pub fn catastrophic(&self) -> bool {
        let observed = self.stats.inserts >= CATASTROPHE_CHECK_INSERTS
            && self.stats.shifts as f64 / self.stats.inserts as f64 > CATASTROPHE_SHIFTS_PER_INSERT;
        observed || self.stats.expected_shifts > CATASTROPHE_SHIFTS_PER_INSERT
    }

    /// Where a rebuild should leave room, judged by where inserts have been landing.
    pub fn append_placement(&self) -> Placement {
        let inserts = self.stats.inserts as f64;
        if self.stats.inserts < CATASTROPHE_CHECK_INSERTS {
            Placement::Spread
        } else if self.stats.appends_right as f64 >= APPEND_MOSTLY_FRACTION * inserts {
            Placement::KeepLeft
        } else if self.stats.appends_left as f64 >= APPEND_MOSTLY_FRACTION * inserts {
            Placement::KeepRight
        } else {
            Placement::Spread
        }
    }

    /// [`DataNode::insert_with`] with a payload at hand.
    #[cfg(test)]
    pub fn insert(&mut self, key: K, payload: P, respect_limits: bool) -> InsertOutcome {
        self.insert_with(key, &mut || payload, respect_limits)
    }

    /// Inserts `key` with the payload `payload` makes, called once and only when the key goes
    /// in (not for a duplicate or a full node). With `respect_limits`, reports `Full` at the
    /// density threshold or when the node's cost is catastrophic; without, only when there is
    /// no gap at all.
    #[inline]
    pub fn insert_with(
        &mut self,
        key: K,
        payload: &mut impl FnMut() -> P,
        respect_limits: bool,
    ) -> InsertOutcome {
        let slots = self.capacity();
        let predicted_raw = self.model.predict(key);
        let predicted = clamp_slot(predicted_raw, slots);
        // Appends (past the last key) need no search: the insertion point is right after it.
        // This keeps sequential inserts cheap in a node whose free space is all at the end.
        let appending = self.num_keys > 0 && key > self.slots[self.last_occupied].key;
        let upper = if appending {
            self.last_occupied + 1
        } else {
            let upper = self.upper_bound_from(key, predicted);
            if self.slot_at_upper(key, upper).is_some() {
                return InsertOutcome::Duplicate;
            }
            upper
        };
        if respect_limits {
            if self.num_keys >= self.expand_threshold {
                return InsertOutcome::Full(FullReason::Density);
            }
            if self.stats.inserts.is_multiple_of(CATASTROPHE_CHECK_INSERTS) && self.catastrophic() {
                return InsertOutcome::Full(FullReason::Catastrophe);
            }
        } else if self.num_keys >= slots {
            return InsertOutcome::Full(FullReason::Density);
        }

        // `upper` is the insertion point: slot `upper - 1` holds the previous key (or upper is
        // 0). The exception is `Key::MAX`, for which every slot is `<= key`.
        let upper = if self.num_keys == 0 {
            0
        } else if upper == slots {
            self.last_occupied + 1
        } else {
            upper
        };
        let beyond_right = self.num_keys == 0 || upper > self.last_occupied;
        let beyond_left = self.num_keys > 0 && upper == 0;

        let slot;
        let mut shifted = 0;
        if upper < slots && !bitmap::get(&self.bitmap, upper) {
            // A gap run starts at `upper`: take the predicted slot if the run reaches it.
            slot = if predicted <= upper {
                upper
            } else if beyond_right {
                // Past the last key every slot is free; a prediction beyond the array would
                // park the key at the far end, so pack it next to the last key instead.
                if predicted_raw >= slots as f64 {
                    upper
                } else {
                    predicted
                }
            } else {
                match bitmap::next_set(&self.bitmap, upper + 1, predicted + 1) {
                    Some(next_occupied) => next_occupied - 1,
                    None => predicted,
                }
            };
            for gap in &mut self.slots[upper..slot] {
                gap.key = key;
            }
        } else {
            let right_gap = if upper < slots {
                bitmap::next_clear(&self.bitmap, upper + 1, slots)
            } else {
                None
            };
            let left_gap = bitmap::prev_clear(&self.bitmap, upper);
            let use_right = match (left_gap, right_gap) {
                (Some(left), Some(right)) => right - upper <= upper - 1 - left,
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (None, None) => {
                    debug_assert!(false, "no gap in a node with {} keys", self.num_keys);
                    return InsertOutcome::Full(FullReason::Density);
                }
            };
            if use_right {
                let right = right_gap.unwrap_or(upper);
                self.slots.copy_within(upper..right, upper + 1);
                bitmap::set(&mut self.bitmap, right);
                self.last_occupied = self.last_occupied.max(right);
                shifted = right - upper;
                slot = upper;
            } else {
                let left = left_gap.unwrap_or(0);
                self.slots.copy_within(left + 1..upper, left);
                bitmap::set(&mut self.bitmap, left);
                shifted = upper - 1 - left;
                slot = upper - 1;
            }
        }
        self.slots[slot] = Slot {
            key,
            payload: payload(),
        };
        if !bitmap::get(&self.bitmap, slot) {
            bitmap::set(&mut self.bitmap, slot);
        }
        if self.num_keys == 0 || slot > self.last_occupied {
            self.last_occupied = slot;
        }
        self.num_keys += 1;
        debug_assert!(slot == 0 || self.slots[slot - 1].key <= key);
        debug_assert!(slot + 1 == slots || self.slots[slot + 1].key >= key);
        debug_assert!(self.num_keys <= slots);

        let stats = &mut self.stats;
        stats.inserts += 1;
        stats.search_bits += u64::from(search_bits(predicted.abs_diff(slot)));
        stats.shifts += shifted as u64;
        if beyond_right {
            stats.appends_right += 1;
        } else if beyond_left {
            stats.appends_left += 1;
        }
        InsertOutcome::Inserted
    }

    /// Removes `key`, returning its payload.
    pub fn remove(&mut self, key: K) -> Option<P> {
        let slot = self.find(key)?;
        let payload = self.slots[slot].payload;
        bitmap::clear(&mut self.bitmap, slot);
        self.num_keys -= 1;
        let fill = if slot + 1 < self.capacity() {
            self.slots[slot + 1].key
        } else {
            K::MAX
        };
        let previous = bitmap::prev_set(&self.bitmap, slot);
        let run_start = previous.map_or(0, |occupied| occupied + 1);
        for gap in &mut self.slots[run_start..=slot] {
            gap.key = fill;
        }
        self.slots[slot].payload = P::default();
        if slot == self.last_occupied {
            self.last_occupied = previous.unwrap_or(0);
        }
        debug_assert_eq!(
            bitmap::get(&self.bitmap, self.last_occupied),
            self.num_keys > 0
        );
        Some(payload)
    }

    /// Heap bytes of the arrays.
    pub fn heap_bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot<K, P>>()
            + self.bitmap.len() * std::mem::size_of::<u64>()
    }

    /// Checks this node's invariants (see the module doc).
    pub fn check(&self) -> Result<(), String> {
        let slots = self.capacity();
        if slots < DATA_NODE_SLOTS_MIN {
            return Err(format!("capacity {slots} below the minimum"));
        }
        if self.bitmap.len() != bitmap::words_for(slots) {
            return Err("bitmap length disagrees with the capacity".into());
        }
        if bitmap::next_set(&self.bitmap, slots, self.bitmap.len() * 64).is_some() {
            return Err("bit set past the capacity".into());
        }
        let counted = bitmap::count(&self.bitmap);
        if counted != self.num_keys {
            return Err(format!(
                "bitmap counts {counted} keys, node says {}",
                self.num_keys
            ));
        }
        if self.num_keys > slots {
            return Err("more keys than slots".into());
        }
        let last = bitmap::prev_set(&self.bitmap, slots).unwrap_or(0);
        if last != self.last_occupied {
            return Err(format!(
                "last occupied is {last}, node says {}",
                self.last_occupied
            ));
        }
        let mut next_key = K::MAX;
        let mut seen_key = false;
        for slot in (0..slots).rev() {
            if bitmap::get(&self.bitmap, slot) {
                if seen_key && self.slots[slot].key >= next_key {
                    return Err(format!("keys not increasing at slot {slot}"));
                }
                next_key = self.slots[slot].key;
                seen_key = true;
            } else if self.slots[slot].key != next_key {
                return Err(format!(
                    "gap {slot} holds {:?}, expected {:?}",
                    self.slots[slot].key, next_key
                ));
            }
        }
        if !(self.model.slope.is_finite() && self.model.intercept.is_finite()) {
            return Err("model is not finite".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_with(keys: &[i64]) -> DataNode<i64, u64> {
        let payloads: Vec<u64> = keys.iter().map(|k| *k as u64).collect();
        DataNode::from_sorted(keys, &payloads, DENSITY_INIT, Placement::Spread)
    }

    #[test]
    fn max_key_is_a_key_not_a_gap() {
        let mut node = node_with(&[1, 5, 9]);
        assert_eq!(node.get(i64::MAX), None);
        assert_eq!(node.insert(i64::MAX, 7, true), InsertOutcome::Inserted);
        assert_eq!(node.get(i64::MAX), Some(7));
        assert_eq!(node.insert(i64::MAX, 8, true), InsertOutcome::Duplicate);
        node.check().unwrap();
        assert_eq!(node.remove(i64::MAX), Some(7));
        assert_eq!(node.get(i64::MAX), None);
        node.check().unwrap();
    }

    #[test]
    fn inserts_shift_and_removes_refill_gaps() {
        let mut node: DataNode<i64, u64> = DataNode::empty();
        for key in [50i64, 10, 30, 20, 40, 11, 12, 13, 14, 15, 16] {
            assert_eq!(
                node.insert(key, key as u64, false),
                InsertOutcome::Inserted,
                "{key}"
            );
            node.check().unwrap();
        }
        for key in [10i64, 16, 50, 30] {
            assert_eq!(node.remove(key), Some(key as u64));
            node.check().unwrap();
            assert_eq!(node.get(key), None);
        }
        assert_eq!(node.get(20), Some(20));
    }
}
