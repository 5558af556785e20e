//! SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number generators",
//! OOPSLA 2014): a 64-bit state advanced by a constant, and an output function that mixes
//! it. Small, fast, seedable with any `u64`, and good enough to draw keys, orders and test
//! data; not for anything that must be unpredictable.
//!
//! The one copy in the tree: benchmarks, the crash loop and tests all use these, so a seed
//! means the same stream everywhere.

/// The increment of the state: 2^64 divided by the golden ratio, odd.
pub const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection on `u64` that mixes every input bit into
/// every output bit. A hash for keys that must stay distinct (`mix64(i ^ seed)` over
/// distinct `i` gives distinct keys).
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The first output of a [`SplitMix64`] seeded with `x`: a fixed, well-mixed hash of `x`,
/// for values that are a pure function of a key or an index.
pub fn splitmix64(x: u64) -> u64 {
    mix64(x.wrapping_add(GAMMA))
}

/// A uniform value in [0, 1) from the top 53 bits of `raw` (every value a multiple of
/// 2^-53).
pub fn unit_f64(raw: u64) -> f64 {
    (raw >> 11) as f64 / (1u64 << 53) as f64
}

/// A value in `0..n` from 64 random bits, by the high half of `raw * n` (Lemire): no
/// division, and no bias worth measuring for `n` far below 2^64. `n` must be positive.
pub fn below(raw: u64, n: u64) -> u64 {
    debug_assert!(n > 0, "below(_, 0)");
    ((u128::from(raw) * u128::from(n)) >> 64) as u64
}

/// The SplitMix64 generator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose first output is `splitmix64(seed)`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A value in `0..n` ([`below`]); `n` must be positive.
    pub fn below(&mut self, n: u64) -> u64 {
        below(self.next_u64(), n)
    }

    /// A value in `0..n` as an index; `n` must be positive.
    pub fn below_usize(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// A uniform value in [0, 1) ([`unit_f64`]).
    pub fn unit(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Shuffles `items` in place (Fisher-Yates, from the back), every order equally likely.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below_usize(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_matches_the_reference_outputs() {
        // The reference implementation (Vigna's splitmix64.c) seeded with 0.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(rng.next_u64(), 0x06C4_5D18_8009_454F);
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn below_stays_below_and_unit_stays_in_the_unit_interval() {
        let mut rng = SplitMix64::new(7);
        for n in [1u64, 2, 3, 10, 1 << 40, u64::MAX] {
            for _ in 0..1000 {
                assert!(rng.below(n) < n);
            }
        }
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
        assert_eq!(unit_f64(u64::MAX), 1.0 - 1.0 / (1u64 << 53) as f64);
        assert_eq!(below(u64::MAX, 10), 9);
    }

    #[test]
    fn a_shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..1000).collect();
        SplitMix64::new(3).shuffle(&mut items);
        assert_ne!(items, (0..1000).collect::<Vec<_>>());
        items.sort_unstable();
        assert_eq!(items, (0..1000).collect::<Vec<_>>());
    }
}
