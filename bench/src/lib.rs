//! Pieces the benchmark binaries share: command-line arguments and durations, the one-line
//! JSON results ([`json`]), the rows of the benchmark table, timing statistics and process
//! memory. Keys, key orders and random streams come from `omendb-keygen`, shared with the
//! simulator and the tests.
//!
//! Benchmarks live outside the engine library and its Env boundary: they read the clock
//! and /proc directly.

pub mod json;

pub use json::{JsonLine, JsonValue};
pub use omendb_keygen::{parse_duration, KeyOrder};

use omendb_keygen::splitmix64;
use std::path::Path;

/// The value of `--name VALUE` on the command line.
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// The count `text` gives for `flag`: a whole number, `_` allowed as a separator
/// (`10_000_000`).
pub fn parse_count(flag: &str, text: &str) -> Result<u64, String> {
    text.replace('_', "")
        .parse()
        .map_err(|_| format!("{flag} wants a number, got {text:?}"))
}

/// `--name N` as a number ([`parse_count`]), or `default`; exits 2 on a value that is not a
/// number.
pub fn num(name: &str, default: u64) -> u64 {
    arg(name).map_or(default, |v| {
        parse_count(name, &v).unwrap_or_else(|problem| {
            eprintln!("{problem}");
            std::process::exit(2)
        })
    })
}

/// Whether `--name` is on the command line.
pub fn flag(name: &str) -> bool {
    std::env::args().any(|a| a == name)
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Column `v` of the benchmark tables for `key`: uniform in [0, 1e9).
pub fn v_of(key: u64) -> i64 {
    (splitmix64(key) % 1_000_000_000) as i64
}

/// Column `s` of the benchmark tables for `key`: 8-16 alphanumerics.
/// Each 64-bit draw yields ten base-62 digits (62^10 < 2^64), so a row costs three draws,
/// not seventeen: the generator is not what the benchmarks measure.
pub fn s_of(key: u64) -> String {
    let mut x = splitmix64(key ^ 0x5555_5555);
    let len = 8 + (x % 9) as usize;
    let mut s = String::with_capacity(len);
    let mut digits = 0;
    while s.len() < len {
        if digits == 0 {
            x = splitmix64(x);
            digits = 10;
        }
        let radix = ALPHABET.len() as u64;
        s.push(ALPHABET[(x % radix) as usize] as char);
        x /= radix;
        digits -= 1;
    }
    s
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
    fn counts_take_separators_and_name_their_flag() {
        assert_eq!(parse_count("--rows", "10_000_000"), Ok(10_000_000));
        assert_eq!(
            parse_count("--rows", "ten"),
            Err("--rows wants a number, got \"ten\"".to_string())
        );
    }
}
