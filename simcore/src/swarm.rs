//! Swarm testing's action mix, for any target: each seed draws its own weight for every
//! action a scheduler can take (some near zero, so a seed may hardly ever crash, or never
//! scan), and every step picks an action by those weights. Diverse mixes find bugs a single
//! tuned mix misses (Groce et al., "Swarm Testing", ISSTA 2012).
//!
//! Both draws go through the caller's seeded generator, in a fixed order (the order of the
//! ranges given, then one draw a pick), so a seed's mix and its schedule replay exactly.

use rand::Rng;
use std::collections::BTreeMap;

/// Relative weights of a scheduler's actions, drawn per seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix<A> {
    weights: BTreeMap<A, u32>,
}

impl<A: Ord + Copy> Mix<A> {
    /// Draws a weight in `lo..=hi` for each `(action, lo, hi)`, in the order given (a later
    /// entry for the same action replaces the earlier).
    pub fn draw<R: Rng + ?Sized>(rng: &mut R, ranges: &[(A, u32, u32)]) -> Mix<A> {
        let mut weights = BTreeMap::new();
        for &(action, lo, hi) in ranges {
            weights.insert(action, rng.random_range(lo..=hi.max(lo)));
        }
        Mix { weights }
    }

    /// The weights, by action.
    pub fn weights(&self) -> &BTreeMap<A, u32> {
        &self.weights
    }

    /// Picks an action by weight with one draw; `fallback` when every weight is zero.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R, fallback: A) -> A {
        let total: u32 = self.weights.values().sum();
        let mut x = rng.random_range(0..total.max(1));
        for (&action, &weight) in &self.weights {
            if x < weight {
                return action;
            }
            x -= weight;
        }
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_seed_replays_its_mix_and_picks_and_zero_weights_are_never_picked() {
        let ranges = [(1u8, 0, 0), (2, 5, 10), (3, 1, 1)];
        let run = |seed: u64| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mix = Mix::draw(&mut rng, &ranges);
            let picks: Vec<u8> = (0..1000).map(|_| mix.pick(&mut rng, 0)).collect();
            (mix, picks)
        };
        let (mix, picks) = run(7);
        assert_eq!(run(7), (mix.clone(), picks.clone()));
        assert_eq!(mix.weights()[&1], 0);
        assert!((5..=10).contains(&mix.weights()[&2]));
        assert!(!picks.contains(&1) && picks.contains(&2) && picks.contains(&3));
        let empty: Mix<u8> = Mix::draw(&mut ChaCha8Rng::seed_from_u64(1), &[(1, 0, 0)]);
        assert_eq!(empty.pick(&mut ChaCha8Rng::seed_from_u64(2), 9), 9);
    }
}
