//! Key distributions shared by the ALEX tests: each maps a step number and 64 random bits to a
//! key, so a shrunk proptest case or a seed reproduces the same keys. The names mean what
//! [`omendb_keygen::Dist`] says, and the shapes are keygen's; the spans and the edge cases
//! are these tests' own.

use omendb_keygen::{log_uniform, skewed_low, unit_f64, EDGE_KEYS};

#[derive(Debug, Clone, Copy)]
#[allow(dead_code)] // each test binary uses its own subset
pub enum Dist {
    Sequential,
    Descending,
    Uniform,
    /// Log-uniform over a million values, times 1009: few distinct keys, many repeats.
    LogUniformNarrow,
    SkewedLow,
    SkewedHigh,
    Clustered,
    TimeSeries,
    /// Log-uniform over [1, 2^62): every order of magnitude equally likely.
    LogUniformWide,
    /// The edges of i64 and keys near 0.
    Edges,
}

/// The key a step draws: `step` orders the sequential kinds, `raw` is the randomness.
pub fn key_of(dist: Dist, step: usize, raw: u64) -> i64 {
    let step = step as i64;
    match dist {
        Dist::Sequential => step * 8 + (raw % 4) as i64,
        Dist::Descending => -step * 8 - (raw % 4) as i64,
        Dist::Uniform => raw as i64,
        Dist::LogUniformNarrow => log_uniform(1_000_000, unit_f64(raw)) as i64 * 1009,
        Dist::SkewedLow => skewed_low(unit_f64(raw), 4, 1 << 50) as i64,
        Dist::SkewedHigh => i64::MAX - skewed_low(unit_f64(raw), 4, 1 << 50) as i64,
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
        Dist::LogUniformWide => log_uniform(1 << 62, unit_f64(raw)) as i64,
        Dist::Edges => match raw % 4 {
            0 => i64::MIN + ((raw >> 8) % 32) as i64,
            1 => i64::MAX - ((raw >> 8) % 32) as i64,
            2 => ((raw >> 8) % 32) as i64 - 16,
            _ => EDGE_KEYS[(raw >> 8) as usize % EDGE_KEYS.len()],
        },
    }
}

/// All distributions, for tests that loop over them.
#[allow(dead_code)]
pub const ALL: [Dist; 10] = [
    Dist::Sequential,
    Dist::Descending,
    Dist::Uniform,
    Dist::LogUniformNarrow,
    Dist::SkewedLow,
    Dist::SkewedHigh,
    Dist::Clustered,
    Dist::TimeSeries,
    Dist::LogUniformWide,
    Dist::Edges,
];
