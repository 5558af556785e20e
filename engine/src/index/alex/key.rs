//! What the index needs from a key and a payload.
//!
//! Models work on `f64`, but keys are integers wider than an `f64` mantissa, so a key is never
//! converted on its own: a model stores a base key and asks for the signed distance
//! `key - base` as an `f64` ([`Key::offset_from`]). The distance is computed exactly and rounded
//! once, which keeps two properties the index depends on:
//! - it never overflows (the distance between `i64::MIN` and `i64::MAX` is fine), and
//! - it is monotone in `key` for a fixed base, so a model with a non-negative slope routes keys
//!   in key order (the inner nodes' correctness rests on this).

use std::fmt::Debug;

/// A key of the learned index: totally ordered, fixed size, no heap.
pub trait Key: Copy + Ord + Debug + Send + Sync + 'static {
    /// The smallest key. A legal key.
    const MIN: Self;
    /// The largest key. A legal key; gaps past the last key also hold it, and the data node's
    /// bitmap tells the two apart.
    const MAX: Self;
    /// `self - base` as an `f64`: exact difference, rounded once. Monotone non-decreasing in
    /// `self` for a fixed `base`; never overflows or panics.
    fn offset_from(self, base: Self) -> f64;
}

/// A payload stored beside each key (the table stores a row location). `Default` fills gaps.
pub trait Payload: Copy + Default + Send + Sync + 'static {}

impl<T: Copy + Default + Send + Sync + 'static> Payload for T {}

impl Key for i64 {
    const MIN: i64 = i64::MIN;
    const MAX: i64 = i64::MAX;

    #[inline]
    fn offset_from(self, base: i64) -> f64 {
        match self.checked_sub(base) {
            Some(distance) => distance as f64,
            None => wide_offset_i64(self, base),
        }
    }
}

/// The distance when it does not fit an `i64`: both values mapped order-preserving onto `u64`,
/// where the magnitude of the difference always fits. Rounds the exact difference once, as the
/// fast path does, so the two paths agree at their border and the result stays monotone.
#[cold]
fn wide_offset_i64(key: i64, base: i64) -> f64 {
    const SIGN: u64 = 1 << 63;
    let key_ordered = (key as u64) ^ SIGN;
    let base_ordered = (base as u64) ^ SIGN;
    if key_ordered >= base_ordered {
        (key_ordered - base_ordered) as f64
    } else {
        -((base_ordered - key_ordered) as f64)
    }
}

impl Key for u128 {
    const MIN: u128 = u128::MIN;
    const MAX: u128 = u128::MAX;

    #[inline]
    fn offset_from(self, base: u128) -> f64 {
        if self >= base {
            (self - base) as f64
        } else {
            -((base - self) as f64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Key;

    #[test]
    fn offsets_are_exact_near_zero_and_never_overflow() {
        assert_eq!(5i64.offset_from(3), 2.0);
        assert_eq!(3i64.offset_from(5), -2.0);
        assert_eq!(i64::MAX.offset_from(i64::MIN), u64::MAX as f64);
        assert_eq!(i64::MIN.offset_from(i64::MAX), -(u64::MAX as f64));
        assert_eq!(0u128.offset_from(u128::MAX), -(u128::MAX as f64));
    }

    #[test]
    fn offsets_are_monotone_across_the_overflow_border() {
        let bases = [
            i64::MIN,
            i64::MIN + 1,
            -1_000_000_007,
            -1,
            0,
            1,
            i64::MAX - 3,
            i64::MAX,
        ];
        for &base in &bases {
            let mut keys: Vec<i64> = vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
            for shift in [0i64, 1, 511, 512, 513, 1023, 1024, 1025, 1535, 2047] {
                keys.push(base.wrapping_add(i64::MAX).wrapping_sub(shift));
                keys.push(base.wrapping_add(i64::MAX).wrapping_add(shift));
                keys.push(base.wrapping_sub(i64::MAX).wrapping_add(shift));
                keys.push(base.wrapping_sub(i64::MAX).wrapping_sub(shift));
            }
            keys.sort_unstable();
            for pair in keys.windows(2) {
                assert!(
                    pair[0].offset_from(base) <= pair[1].offset_from(base),
                    "base {base}: {} -> {}, {} -> {}",
                    pair[0],
                    pair[0].offset_from(base),
                    pair[1],
                    pair[1].offset_from(base)
                );
            }
        }
    }
}
