//! The cost model and the fan-out tree.
//!
//! Cost is an abstract per-operation figure: a search costs `SEARCH_BIT_COST` per bit of
//! distance between predicted and true slot (one exponential-search doubling each), an insert
//! `SHIFT_COST` per key it shifts, each inner level `TRAVERSE_COST`, and structure
//! `BYTE_PER_KEY_COST` per byte of child pointers and node headers per key. Only differences
//! between alternatives matter.
//!
//! A fan-out tree decides how many children a set of keys should be split into. Level `d` cuts
//! the keys into `2^d` equal slices of a unit model's range, prices each slice as one data node
//! (by placing its keys exactly as a build would), and adds the level and structure costs. The
//! cheapest level wins; then sibling slices are merged bottom-up wherever one node over both is
//! no dearer than two, so dense regions keep fine children and sparse ones share a coarse
//! child (the repeated child pointers of an inner node). Levels stop two past the best one
//! once that one fits every slice in a data node.
//! Above `SAMPLE_KEYS` keys the costs are measured on an evenly strided sample.

use std::borrow::Cow;

use super::data_node::{model_for, place_by_model, slots_for, Placement};
use super::key::Key;
use super::model::{floor_slot, LinearModel};

/// Cost of one bit of search distance (one exponential-search doubling).
pub(crate) const SEARCH_BIT_COST: f64 = 20.0;
/// Cost of shifting one key during an insert.
pub(crate) const SHIFT_COST: f64 = 0.5;
/// Cost of one more inner level on every lookup.
pub(crate) const TRAVERSE_COST: f64 = 20.0;
/// Cost of one byte of structure per key.
const BYTE_PER_KEY_COST: f64 = 1.0;
/// Bytes a child slot costs in an inner node.
const CHILD_SLOT_BYTES: f64 = 4.0;
/// Bytes of a data node's header and smallest arrays.
const DATA_NODE_OVERHEAD_BYTES: f64 = 512.0;
/// A slice too big for one data node will need more levels below it: this much per level,
/// counting one level per halving needed to fit.
const OVERSIZE_LEVEL_COST: f64 = TRAVERSE_COST;
/// Costs of bigger key sets are measured on a strided sample of about this many keys.
const SAMPLE_KEYS: usize = 1 << 20;

/// What a fan-out tree may choose from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PlanLimits {
    pub depth_min: u32,
    pub depth_max: u32,
    /// A slice with more keys than this cannot be one data node.
    pub leaf_keys_max: usize,
    /// Cost of the inner level a split adds (zero when splitting sideways adds none).
    pub level_cost: f64,
}

/// The chosen fan-out: `2^depth` slices, grouped into children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FanoutPlan {
    pub depth: u32,
    /// `(first slice, slice count)` of each child, in order, covering all `2^depth` slices.
    pub children: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, Copy, Default)]
struct SliceCost {
    keys: usize,
    cost_per_key: f64,
}

impl SliceCost {
    fn total(&self) -> f64 {
        self.keys as f64 * self.cost_per_key
    }
}

/// The slices of one level that hold keys, as `(slice, cost)` in ascending slice order. A
/// level has `2^depth` slices but at most as many non-empty ones as sampled keys, so a deep
/// level over a few keys (a small table whose keys include `i64::MIN` or `MAX` stretches
/// the unit model until its keys share one slice at every depth) costs its keys, not
/// `2^depth` (with 2^20-slot inner nodes that was 32 MiB allocated and summed per plan).
type SparseLevel = Vec<(usize, SliceCost)>;

/// The cost of `slice` in `level`: an empty slice's is the default (no keys, no cost).
fn slice_cost(level: &SparseLevel, slice: usize) -> SliceCost {
    level
        .binary_search_by_key(&slice, |(index, _)| *index)
        .map_or(SliceCost::default(), |found| level[found].1)
}

/// Cost per key of one data node over sorted `keys` at `density`.
pub(crate) fn data_node_cost<K: Key>(keys: &[K], density: f64) -> f64 {
    if keys.is_empty() {
        return 0.0;
    }
    let slots = slots_for(keys.len(), density);
    let model = model_for(keys, slots, Placement::Spread);
    let placed = place_by_model(keys, &model, slots, |_, _| {});
    let (search_bits, shifts) = placed.per_key(keys.len());
    SEARCH_BIT_COST * search_bits + SHIFT_COST * shifts
}

/// The slice of `key` at `depth` under `unit` (a model onto `[0, 1)`). Scaling by a power of
/// two is exact, so this equals the routing of an inner node with model `unit * 2^depth`.
#[inline]
pub(crate) fn slice_of<K: Key>(unit: &LinearModel<K>, key: K, depth: u32) -> usize {
    let slices = 1i64 << depth;
    floor_slot(unit.predict(key) * slices as f64).clamp(0, slices - 1) as usize
}

/// Chooses the fan-out for sorted, distinct `keys` under `unit`.
pub(crate) fn plan<K: Key>(keys: &[K], unit: &LinearModel<K>, limits: &PlanLimits) -> FanoutPlan {
    let depth_max = limits.depth_max.max(limits.depth_min);
    let stride = keys.len().div_ceil(SAMPLE_KEYS).max(1);
    let sample: Cow<'_, [K]> = if stride == 1 {
        Cow::Borrowed(keys)
    } else {
        Cow::Owned(keys.iter().step_by(stride).copied().collect())
    };
    let total_keys = keys.len().max(1) as f64;

    let mut levels: Vec<SparseLevel> = Vec::new();
    let mut best_depth = limits.depth_min;
    let mut best_cost = f64::INFINITY;
    let mut best_fits = false;
    for depth in limits.depth_min..=depth_max {
        let mut slices: SparseLevel = Vec::new();
        let mut start = 0;
        let mut children = 0usize;
        let mut oversize_slices = 0usize;
        while start < sample.len() {
            let slice = slice_of(unit, sample[start], depth);
            let end =
                start + sample[start..].partition_point(|key| slice_of(unit, *key, depth) <= slice);
            let estimated_keys = (end - start) * stride;
            let oversize = if estimated_keys > limits.leaf_keys_max {
                oversize_slices += 1;
                let halvings = (estimated_keys as f64 / limits.leaf_keys_max.max(1) as f64).log2();
                OVERSIZE_LEVEL_COST * (1.0 + halvings.ceil())
            } else {
                0.0
            };
            debug_assert!(slices.last().is_none_or(|(last, _)| *last < slice));
            slices.push((
                slice,
                SliceCost {
                    keys: estimated_keys,
                    cost_per_key: data_node_cost(
                        &sample[start..end],
                        super::data_node::DENSITY_INIT,
                    ) + oversize,
                },
            ));
            children += 1;
            start = end;
        }
        // Empty slices add exactly 0.0, so summing only the others gives the same figure.
        let data_cost: f64 = slices.iter().map(|(_, cost)| cost.total()).sum::<f64>() / total_keys;
        let structure_bytes = if depth == 0 {
            0.0
        } else {
            (1u64 << depth) as f64 * CHILD_SLOT_BYTES + children as f64 * DATA_NODE_OVERHEAD_BYTES
        };
        let level_cost = if depth == 0 { 0.0 } else { limits.level_cost };
        let cost = data_cost + level_cost + BYTE_PER_KEY_COST * structure_bytes / total_keys;
        levels.push(slices);
        if cost < best_cost {
            best_cost = cost;
            best_depth = depth;
            best_fits = oversize_slices == 0;
        } else if best_fits && depth >= best_depth + 2 {
            break;
        }
    }

    if best_depth == 0 {
        return FanoutPlan {
            depth: 0,
            children: vec![(0, 1)],
        };
    }
    // Merge sibling slices bottom-up while one node over both is no dearer; never above
    // level 1, so there are always at least two children.
    let mut groups: Vec<(u32, usize)> =
        (0..1usize << best_depth).map(|i| (best_depth, i)).collect();
    let merge_floor = limits.depth_min.max(1);
    for level in (merge_floor + 1..=best_depth).rev() {
        let parents = &levels[(level - 1 - limits.depth_min) as usize];
        let children_costs = &levels[(level - limits.depth_min) as usize];
        let mut merged = Vec::with_capacity(groups.len());
        let mut i = 0;
        while i < groups.len() {
            let (group_level, index) = groups[i];
            if group_level == level
                && index % 2 == 0
                && i + 1 < groups.len()
                && groups[i + 1] == (level, index + 1)
            {
                let parent = slice_cost(parents, index / 2);
                let apart = slice_cost(children_costs, index).total()
                    + slice_cost(children_costs, index + 1).total();
                if parent.keys <= limits.leaf_keys_max && parent.total() <= apart {
                    merged.push((level - 1, index / 2));
                    i += 2;
                    continue;
                }
            }
            merged.push(groups[i]);
            i += 1;
        }
        groups = merged;
    }
    FanoutPlan {
        depth: best_depth,
        children: groups
            .into_iter()
            .map(|(level, index)| {
                let width = 1usize << (best_depth - level);
                (index * width, width)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_keys_take_the_shallowest_feasible_level() {
        let keys: Vec<i64> = (0..10_000).map(|i| i * 7).collect();
        let unit = LinearModel::fit_unit(&keys);
        let limits = PlanLimits {
            depth_min: 0,
            depth_max: 10,
            leaf_keys_max: 3_000,
            level_cost: TRAVERSE_COST,
        };
        let chosen = plan(&keys, &unit, &limits);
        assert_eq!(chosen.depth, 2);
        assert_eq!(chosen.children.len(), 4);
    }

    #[test]
    fn children_cover_all_slices_and_small_sets_stay_whole() {
        let mut keys: Vec<i64> = (0..2_000).map(|i| i * i * i).collect();
        keys.extend((0..2_000).map(|i| 10_000_000_000 + i));
        let unit = LinearModel::fit_unit(&keys);
        let limits = PlanLimits {
            depth_min: 1,
            depth_max: 8,
            leaf_keys_max: 100_000,
            level_cost: 0.0,
        };
        let chosen = plan(&keys, &unit, &limits);
        let mut next = 0;
        for &(first, count) in &chosen.children {
            assert_eq!(first, next);
            next += count;
        }
        assert_eq!(next, 1 << chosen.depth);
        assert!(chosen.children.len() >= 2);
    }
}
