//! Key distributions: one meaning per name, whoever draws the keys.
//!
//! Each benchmark, the simulator and the tests draw keys their own way (some by step, some
//! from a seeded stream, some as a pure function of an insert index), so this module gives
//! them building blocks, not one generator: the names ([`Dist`]) and the shapes whose
//! definition is easy to get subtly different ([`Zipf`], [`log_uniform`], [`pareto`],
//! [`skewed_low`], [`Permutation`], [`KeyOrder`]). A caller that uses a name below uses it
//! in this sense and draws it with these functions, so "zipf" in a benchmark's output and
//! in a test name mean the same thing.
//!
//! The functions take their randomness as an argument (`unit`, a uniform value in [0, 1),
//! or raw bits), so a caller keeps its own random stream: the simulator's seeds replay bit
//! for bit because it still draws from its own generator, in the same order.

use crate::splitmix::mix64;

/// The names of key distributions. Each caller supports a subset (its `--dist` help lists
/// which); a name never means two things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dist {
    /// Keys ascending in insert order (appends).
    Sequential,
    /// Keys descending in insert order: every insert lands before every key present.
    Descending,
    /// Every key of the key space equally likely (a random draw), or, where keys are a
    /// function of an insert index, a bijection of the index that looks random.
    Uniform,
    /// The keys `0..n`, each once, in [`KeyOrder`]'s golden-ratio stride order: every batch
    /// of consecutive inserts spreads over the whole key space.
    Shuffled,
    /// Popularity: rank r (0 the most popular) drawn with probability proportional to
    /// 1/(r+1)^theta by YCSB's generator ([`Zipf`], theta 0.99 unless a caller says
    /// otherwise), and the ranks scattered over the key space so that hot keys are not
    /// neighbours.
    Zipf,
    /// n^u for u uniform in [0, 1) ([`log_uniform`]): values in [1, n) whose logarithm is
    /// uniform, so P(v) is proportional to 1/v; small values dominate and repeat. The
    /// continuous form of Zipf's law with exponent 1 over the values themselves, not
    /// scattered: it is not [`Dist::Zipf`].
    LogUniform,
    /// scale / u for u uniform in (0, 1] ([`pareto`]): a Pareto law with shape 1, dense just
    /// above `scale` with a long tail up to the top of the key space.
    Pareto,
    /// u^power scaled to a span ([`skewed_low`]): keys crowd the low end of the span, the
    /// more the higher the power.
    Skewed,
    /// Keys in dense runs (consecutive or nearly) with wide gaps between the runs.
    Clustered,
    /// Timestamps: ascending at a steady rate with small jitter, some arriving a little late.
    Timeseries,
}

impl Dist {
    /// Every name, in the order of the list above.
    pub const ALL: [Dist; 10] = [
        Dist::Sequential,
        Dist::Descending,
        Dist::Uniform,
        Dist::Shuffled,
        Dist::Zipf,
        Dist::LogUniform,
        Dist::Pareto,
        Dist::Skewed,
        Dist::Clustered,
        Dist::Timeseries,
    ];

    /// The name on command lines and in results.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Sequential => "sequential",
            Dist::Descending => "descending",
            Dist::Uniform => "uniform",
            Dist::Shuffled => "shuffled",
            Dist::Zipf => "zipf",
            Dist::LogUniform => "log-uniform",
            Dist::Pareto => "pareto",
            Dist::Skewed => "skewed",
            Dist::Clustered => "clustered",
            Dist::Timeseries => "timeseries",
        }
    }

    /// The distribution named `text`, if `supported` holds it; the error names the ones a
    /// caller supports.
    pub fn parse(text: &str, supported: &[Dist]) -> Result<Dist, String> {
        match supported.iter().find(|d| d.name() == text) {
            Some(&dist) => Ok(dist),
            None => Err(format!(
                "unknown --dist {text:?}: {}",
                Dist::names(supported)
            )),
        }
    }

    /// `supported`'s names joined by `|`, for usage lines.
    pub fn names(supported: &[Dist]) -> String {
        supported
            .iter()
            .map(|d| d.name())
            .collect::<Vec<_>>()
            .join("|")
    }
}

/// Keys a workload mixes in on purpose: the edges of i64 and their neighbours.
pub const EDGE_KEYS: [i64; 7] = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];

/// [`Dist::Zipf`]'s ranks: Gray et al.'s generator ("Quickly generating billion-record
/// synthetic databases", SIGMOD 1994) as YCSB's `ZipfianGenerator` draws them, over `n`
/// ranks with exponent `theta`. Building it sums `n` terms (about 1 s per 100M ranks);
/// drawing is a few floating-point operations.
#[derive(Debug, Clone)]
pub struct Zipf {
    n: u64,
    theta: f64,
    zeta_n: f64,
    alpha: f64,
    eta: f64,
}

impl Zipf {
    /// YCSB's default exponent.
    pub const THETA_YCSB: f64 = 0.99;

    /// Ranks `0..n` with exponent `theta`; `n` at least 1, `theta` in (0, 1) (the generator
    /// divides by 1 - theta).
    pub fn new(n: u64, theta: f64) -> Result<Zipf, String> {
        if n == 0 {
            return Err("zipf over 0 keys".to_string());
        }
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!("zipf theta {theta} is not in (0, 1)"));
        }
        let zeta = |count: u64| -> f64 { (1..=count).map(|i| 1.0 / (i as f64).powf(theta)).sum() };
        let zeta_n = zeta(n);
        let zeta_2 = zeta(2);
        Ok(Zipf {
            n,
            theta,
            zeta_n,
            alpha: 1.0 / (1.0 - theta),
            eta: (1.0 - (2.0 / n as f64).powf(1.0 - theta)) / (1.0 - zeta_2 / zeta_n),
        })
    }

    /// The number of ranks.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The rank `unit` (uniform in [0, 1)) draws: 0 is the most popular, then 1, ...
    pub fn rank(&self, unit: f64) -> u64 {
        let uz = unit * self.zeta_n;
        let rank = if uz < 1.0 {
            0
        } else if uz < 1.0 + 0.5f64.powf(self.theta) {
            1
        } else {
            ((self.n as f64 * (self.eta * unit - self.eta + 1.0).powf(self.alpha)) as u64)
                .min(self.n - 1)
        };
        debug_assert!(rank < self.n);
        rank
    }

    /// A key in `0..n` for the rank `unit` draws, scattered as YCSB's
    /// `ScrambledZipfianGenerator` does: FNV-1a of the rank's eight little-endian bytes,
    /// modulo `n`. Not a permutation: two ranks may share a key.
    pub fn scrambled(&self, unit: f64) -> u64 {
        fnv1a64(self.rank(unit)) % self.n
    }
}

/// FNV-1a, 64-bit, over the eight little-endian bytes of `x`.
fn fnv1a64(x: u64) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in x.to_le_bytes() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// [`Dist::LogUniform`]: `n^unit`, in [1, n) for `unit` in [0, 1) and `n` > 1.
pub fn log_uniform(n: u64, unit: f64) -> u64 {
    (n as f64).powf(unit) as u64
}

/// [`Dist::Pareto`]: `scale / unit`, with `unit` kept above 1e-18 and the result below 9e18
/// (inside i64).
pub fn pareto(scale: f64, unit: f64) -> u64 {
    (scale / unit.max(1e-18)).min(9e18) as u64
}

/// [`Dist::Skewed`]: `unit^power * span`, in [0, span) for `unit` in [0, 1). The power is
/// taken by repeated multiplication from the left, `((u * u) * u) ...`, so the bits are
/// the same on every platform and as the simulator's older `u * u * u * span`.
pub fn skewed_low(unit: f64, power: u32, span: u64) -> u64 {
    let mut product = 1.0;
    for _ in 0..power {
        product *= unit;
    }
    (product * span as f64) as u64
}

/// A seeded pseudo-random permutation of `0..n`: a four-round Feistel network on the
/// smallest even number of bits that covers `n`, with cycle walking (fewer than four steps
/// expected). For an order that must look random; [`KeyOrder`] is the cheap, evenly spread
/// one.
#[derive(Debug, Clone)]
pub struct Permutation {
    n: u64,
    half_bits: u32,
    round_keys: [u64; 4],
}

impl Permutation {
    /// The permutation of `0..n` that `seed` picks.
    pub fn new(n: u64, seed: u64) -> Permutation {
        let bits = (64 - n.saturating_sub(1).leading_zeros()).max(2);
        let half_bits = bits.div_ceil(2);
        let mut round_keys = [0u64; 4];
        for (round, key) in round_keys.iter_mut().enumerate() {
            *key = mix64(seed ^ (0x5851_f42d_4c95_7f2d_u64.wrapping_mul(round as u64 + 1)));
        }
        Permutation {
            n,
            half_bits,
            round_keys,
        }
    }

    /// The image of `x`, which must be below `n`.
    pub fn apply(&self, mut x: u64) -> u64 {
        debug_assert!(
            x < self.n,
            "{x} is outside the permutation of 0..{}",
            self.n
        );
        let mask = (1u64 << self.half_bits) - 1;
        loop {
            let (mut left, mut right) = (x >> self.half_bits, x & mask);
            for key in self.round_keys {
                let f = mix64(right ^ key) & mask;
                (left, right) = (right, left ^ f);
            }
            x = (left << self.half_bits) | right;
            if x < self.n {
                return x;
            }
        }
    }
}

/// The key of the `i`-th insert of [`Dist::Shuffled`] (`i -> i * step mod rows`, with `step`
/// near `rows` / golden ratio and coprime to `rows`: a permutation of `0..rows` whose every
/// batch of consecutive inserts lands all over the key space) or of [`Dist::Sequential`]
/// (`i` itself, the easy case).
#[derive(Debug, Clone)]
pub struct KeyOrder {
    rows: u64,
    step: u64,
    shuffled: bool,
}

impl KeyOrder {
    /// The order of `rows` keys.
    pub fn new(rows: u64, shuffled: bool) -> KeyOrder {
        // A multiplier coprime to `rows` makes i -> i * step mod rows a permutation.
        let mut step = (rows as f64 * 0.618_033_988_75) as u64 | 1;
        while gcd(step, rows.max(1)) != 1 {
            step += 2;
        }
        KeyOrder {
            rows: rows.max(1),
            step,
            shuffled,
        }
    }

    /// The `i`-th key.
    pub fn key(&self, i: u64) -> u64 {
        if self.shuffled {
            ((u128::from(i) * u128::from(self.step)) % u128::from(self.rows)) as u64
        } else {
            i
        }
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitmix::SplitMix64;

    #[test]
    fn every_name_parses_back_to_itself() {
        for dist in Dist::ALL {
            assert_eq!(Dist::parse(dist.name(), &Dist::ALL), Ok(dist));
        }
        let error = Dist::parse("zipf", &[Dist::Uniform, Dist::Sequential]);
        assert_eq!(
            error,
            Err("unknown --dist \"zipf\": uniform|sequential".to_string())
        );
    }

    #[test]
    fn zipf_ranks_fall_off_as_a_power_law() {
        let zipf = Zipf::new(1000, Zipf::THETA_YCSB).expect("valid");
        let mut rng = SplitMix64::new(11);
        let mut counts = vec![0u64; 1000];
        let draws = 1_000_000;
        for _ in 0..draws {
            counts[zipf.rank(rng.unit()) as usize] += 1;
        }
        // P(rank 0) = 1 / zeta(1000) at theta 0.99, about 0.133; rank 1 about half that.
        let p0 = counts[0] as f64 / draws as f64;
        assert!((0.12..0.15).contains(&p0), "P(rank 0) = {p0}");
        assert!(counts[0] > counts[1] && counts[1] > counts[2] && counts[2] > counts[9]);
        assert!(counts[999] < counts[0] / 500, "{counts:?}");
        assert!(Zipf::new(0, 0.99).is_err() && Zipf::new(10, 1.0).is_err());
        let one = Zipf::new(1, 0.5).expect("valid");
        assert_eq!(
            (one.rank(0.0), one.rank(0.999), one.scrambled(0.5)),
            (0, 0, 0)
        );
    }

    #[test]
    fn scrambled_zipf_keys_stay_in_range_and_scatter_the_hot_ranks() {
        let zipf = Zipf::new(10_000, Zipf::THETA_YCSB).expect("valid");
        let mut rng = SplitMix64::new(5);
        for _ in 0..100_000 {
            assert!(zipf.scrambled(rng.unit()) < 10_000);
        }
        let hot: Vec<u64> = (0..4).map(|r| fnv1a64(r) % 10_000).collect();
        assert!(hot.windows(2).all(|w| w[0].abs_diff(w[1]) > 1), "{hot:?}");
    }

    #[test]
    fn the_simulators_shapes_keep_their_bits() {
        // The simulator draws u from its own stream and used to compute these inline; a
        // seed replays only if the shared functions give the very same values.
        let mut rng = SplitMix64::new(1);
        for _ in 0..100_000 {
            let u = rng.unit();
            for span in [64i64, 1_000, 1 << 20, 1 << 40] {
                assert_eq!(
                    log_uniform(span as u64, u) as i64,
                    (span as f64).powf(u) as i64
                );
                assert_eq!(
                    skewed_low(u, 3, span as u64) as i64,
                    (u * u * u * span as f64) as i64
                );
            }
        }
    }

    #[test]
    fn shapes_stay_in_their_ranges() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((1..1_000_000).contains(&log_uniform(1_000_000, u)));
            assert!(skewed_low(u, 4, 1 << 50) < 1 << 50);
            assert!((1_000_000_000..=9_000_000_000_000_000_000).contains(&pareto(1e9, 1.0 - u)));
        }
        assert_eq!(pareto(1e9, 0.0), 9_000_000_000_000_000_000);
    }

    #[test]
    fn permutations_and_key_orders_are_permutations() {
        for rows in [1u64, 2, 3, 10, 997, 1000, 4096] {
            for seed in [0, 1, 2] {
                let p = Permutation::new(rows, seed);
                let mut image: Vec<u64> = (0..rows).map(|i| p.apply(i)).collect();
                image.sort_unstable();
                assert_eq!(image, (0..rows).collect::<Vec<_>>(), "{rows} {seed}");
            }
            let order = KeyOrder::new(rows, true);
            let mut keys: Vec<u64> = (0..rows).map(|i| order.key(i)).collect();
            keys.sort_unstable();
            assert_eq!(keys, (0..rows).collect::<Vec<_>>(), "{rows}");
            assert_eq!(KeyOrder::new(rows, false).key(rows - 1), rows - 1);
        }
    }
}
