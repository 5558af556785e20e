//! The occupancy bitmap of a data node: bit `i` set means slot `i` holds a key, clear means it
//! is a gap. Bits at or past the node's capacity are always clear, and every scan takes an
//! explicit end so it never reports one of them.

/// Words needed for `slots` bits.
#[inline]
pub(crate) fn words_for(slots: usize) -> usize {
    slots.div_ceil(64)
}

#[inline]
pub(crate) fn get(bits: &[u64], slot: usize) -> bool {
    (bits[slot >> 6] >> (slot & 63)) & 1 == 1
}

#[inline]
pub(crate) fn set(bits: &mut [u64], slot: usize) {
    bits[slot >> 6] |= 1 << (slot & 63);
}

#[inline]
pub(crate) fn clear(bits: &mut [u64], slot: usize) {
    bits[slot >> 6] &= !(1 << (slot & 63));
}

/// First slot in `[from, end)` whose bit equals `want_set`.
#[inline]
fn next_with(bits: &[u64], from: usize, end: usize, want_set: bool) -> Option<usize> {
    if from >= end {
        return None;
    }
    let flip = if want_set { 0 } else { u64::MAX };
    let mut word_index = from >> 6;
    let mut word = (bits[word_index] ^ flip) & (u64::MAX << (from & 63));
    loop {
        if word != 0 {
            let slot = (word_index << 6) + word.trailing_zeros() as usize;
            return (slot < end).then_some(slot);
        }
        word_index += 1;
        if word_index << 6 >= end {
            return None;
        }
        word = bits[word_index] ^ flip;
    }
}

/// Last slot in `[0, before)` whose bit equals `want_set`.
#[inline]
fn prev_with(bits: &[u64], before: usize, want_set: bool) -> Option<usize> {
    if before == 0 {
        return None;
    }
    let flip = if want_set { 0 } else { u64::MAX };
    let last = before - 1;
    let mut word_index = last >> 6;
    let mut word = (bits[word_index] ^ flip) & (u64::MAX >> (63 - (last & 63)));
    loop {
        if word != 0 {
            return Some((word_index << 6) + 63 - word.leading_zeros() as usize);
        }
        if word_index == 0 {
            return None;
        }
        word_index -= 1;
        word = bits[word_index] ^ flip;
    }
}

/// First occupied slot in `[from, end)`.
#[inline]
pub(crate) fn next_set(bits: &[u64], from: usize, end: usize) -> Option<usize> {
    next_with(bits, from, end, true)
}

/// First gap in `[from, end)`.
#[inline]
pub(crate) fn next_clear(bits: &[u64], from: usize, end: usize) -> Option<usize> {
    next_with(bits, from, end, false)
}

/// Last occupied slot before `before`.
#[inline]
pub(crate) fn prev_set(bits: &[u64], before: usize) -> Option<usize> {
    prev_with(bits, before, true)
}

/// Last gap before `before`.
#[inline]
pub(crate) fn prev_clear(bits: &[u64], before: usize) -> Option<usize> {
    prev_with(bits, before, false)
}

/// Number of occupied slots.
pub(crate) fn count(bits: &[u64]) -> usize {
    bits.iter().map(|word| word.count_ones() as usize).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_respect_their_bounds() {
        let slots = 130;
        let mut bits = vec![0u64; words_for(slots)];
        for slot in [0, 5, 63, 64, 65, 129] {
            set(&mut bits, slot);
        }
        assert_eq!(next_set(&bits, 0, slots), Some(0));
        assert_eq!(next_set(&bits, 1, slots), Some(5));
        assert_eq!(next_set(&bits, 6, slots), Some(63));
        assert_eq!(next_set(&bits, 66, slots), Some(129));
        assert_eq!(next_set(&bits, 66, 129), None);
        assert_eq!(next_clear(&bits, 63, slots), Some(66));
        assert_eq!(next_clear(&bits, 129, slots), None);
        assert_eq!(prev_set(&bits, 129), Some(65));
        assert_eq!(prev_set(&bits, 0), None);
        assert_eq!(prev_clear(&bits, 66), Some(62));
        assert_eq!(prev_clear(&bits, 1), None);
        clear(&mut bits, 0);
        assert_eq!(prev_clear(&bits, 1), Some(0));
        assert_eq!(count(&bits), 5);
    }
}
