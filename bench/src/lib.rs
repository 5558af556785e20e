//! Pieces the benchmark binaries share: command-line arguments, key orders, the rows of
//! the benchmark table, timing statistics and process memory.
//!
//! Benchmarks live outside the engine library and its Env boundary: they read the clock
//! and /proc directly.

use std::path::Path;

/// The value of `--name VALUE` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--name N` as a number (`_` allowed as a separator), or `default`; exits 2 on a value
/// that is not a number.
pub fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| {
        v.replace('_', "").parse().unwrap_or_else(|_| {
            eprintln!("{name} wants a number, got {v:?}");
            std::process::exit(2)
        })
    })
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

/// SplitMix64's output function of `x`: a fixed, well-mixed 64-bit hash.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Column `v` of the benchmark tables for `key`: uniform in [0, 1e9).
pub fn v_of(key: u64) -> i64 {
    (splitmix(key) % 1_000_000_000) as i64
}

/// Column `s` of the benchmark tables for `key`: 8-16 alphanumerics.
/// Each 64-bit draw yields ten base-62 digits (62^10 < 2^64), so a row costs three draws,
/// not seventeen: the generator is not what the benchmarks measure.
pub fn s_of(key: u64) -> String {
    let mut x = splitmix(key ^ 0x5555_5555);
    let len = 8 + (x % 9) as usize;
    let mut s = String::with_capacity(len);
    let mut digits = 0;
    while s.len() < len {
        if digits == 0 {
            x = splitmix(x);
            digits = 10;
        }
        let radix = ALPHABET.len() as u64;
        s.push(ALPHABET[(x % radix) as usize] as char);
        x /= radix;
        digits -= 1;
    }
    s
}

/// The key of the `i`-th insert: a permutation of `0..rows` (`shuffled`: every batch
/// lands all over the key space) or `i` itself (in order: the easy case).
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
            ((i as u128 * self.step as u128) % self.rows as u128) as u64
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

/// The median of `xs` (the upper one of an even count); 0 for none.
pub fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// The `q` quantile of `xs` (nearest rank below); 0 for none.
pub fn quantile(xs: &mut [u64], q: f64) -> u64 {
    if xs.is_empty() {
        return 0;
    }
    xs.sort_unstable();
    xs[((xs.len() - 1) as f64 * q) as usize]
}

/// A field of /proc/self/status in KiB (`VmHWM:` is the peak RSS); 0 where there is none.
pub fn status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// The load average over the last minute, from /proc/loadavg.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Bytes of the files under `path`, recursively.
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                dir_bytes(&p)
            } else {
                e.metadata().map(|m| m.len()).unwrap_or(0)
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffled_key_orders_are_permutations() {
        for rows in [1, 2, 10, 997, 1000, 4096] {
            let order = KeyOrder::new(rows, true);
            let mut keys: Vec<u64> = (0..rows).map(|i| order.key(i)).collect();
            keys.sort_unstable();
            assert_eq!(keys, (0..rows).collect::<Vec<_>>(), "{rows}");
        }
    }
}
