//! Key distributions shared by the ALEX tests: each maps a step number and 64 random bits to a
//! key, so a shrunk proptest case or a seed reproduces the same keys.

#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // each test binary uses its own subset
pub enum Dist {
    Sequential,
    Reverse,
    Uniform,
    Zipf,
    SkewedLow,
    SkewedHigh,
    Clustered,
    TimeSeries,
    Exponential,
    Edges,
}

/// Unit interval value from the top 53 bits.
fn unit(raw: u64) -> f64 {
    (raw >> 11) as f64 / (1u64 << 53) as f64
}

/// The key a step draws: `step` orders the sequential kinds, `raw` is the randomness.
pub fn key_of(dist: Dist, step: usize, raw: u64) -> i64 {
    let step = step as i64;
    match dist {
        Dist::Sequential => step * 8 + (raw % 4) as i64,
        Dist::Reverse => -step * 8 - (raw % 4) as i64,
        Dist::Uniform => raw as i64,
        // Zipf(1) over a million ranks: P(rank) ~ 1/rank, so rank = N^u.
        Dist::Zipf => (1e6f64.powf(unit(raw)) as i64) * 1009,
        Dist::SkewedLow => (unit(raw).powi(4) * (1u64 << 50) as f64) as i64,
        Dist::SkewedHigh => i64::MAX - (unit(raw).powi(4) * (1u64 << 50) as f64) as i64,
        Dist::Clustered => {
            let cluster = (raw % 6) as i64;
            cluster * 1_500_000_000_000_000_000 - 4_000_000_000_000_000_000
                + ((raw >> 8) % 2_000) as i64 * 3
        }
        Dist::TimeSeries => {
            // One point per 1000 ticks, an outage every 64 points, some late arrivals.
            let late = if raw.is_multiple_of(16) {
                ((raw >> 8) % 50) as i64
            } else {
                0
            };
            let tick = (step - late).max(0);
            tick * 1000 + (tick / 64) * (1 << 30) + ((raw >> 20) % 997) as i64
        }
        Dist::Exponential => 2f64.powf(unit(raw) * 62.0) as i64,
        Dist::Edges => match raw % 4 {
            0 => i64::MIN + ((raw >> 8) % 32) as i64,
            1 => i64::MAX - ((raw >> 8) % 32) as i64,
            2 => ((raw >> 8) % 32) as i64 - 16,
            _ => {
                [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX][(raw >> 8) as usize % 7]
            }
        },
    }
}

/// All distributions, for tests that loop over them.
#[allow(dead_code)]
pub const ALL: [Dist; 10] = [
    Dist::Sequential,
    Dist::Reverse,
    Dist::Uniform,
    Dist::Zipf,
    Dist::SkewedLow,
    Dist::SkewedHigh,
    Dist::Clustered,
    Dist::TimeSeries,
    Dist::Exponential,
    Dist::Edges,
];

/// A small deterministic generator (SplitMix64) for the deterministic tests.
#[allow(dead_code)]
pub struct SplitMix(pub u64);

#[allow(dead_code)]
impl SplitMix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
