//! A reader of Parquet's `DELTA_BINARY_PACKED` integers for the point-read path: a key page
//! searched straight from its bytes, with no column reader built and no page-sized vector
//! filled.
//!
//! The encoding (Parquet format, "Delta encoding"): a header of ULEB128 `block_size`,
//! `miniblocks` per block and `total` value count, then the first value (zigzag ULEB128);
//! then blocks, each a zigzag ULEB128 `min_delta`, one bit-width byte per miniblock, and the
//! miniblocks, each `block_size / miniblocks` deltas bit-packed least significant bit first
//! at its width. Value `i` is value `i - 1` plus `min_delta` plus the packed delta, in
//! wrapping arithmetic. The last block stops after the miniblock holding the last value.
//!
//! The bytes were checked against their CRC before they reach here, but they are still
//! read as untrusted: every length is checked, and a malformed page is an `Err` naming what
//! is wrong, never a panic. The engine's writer (the parquet crate) is the oracle in the
//! tests: every page of real segments decodes to what parquet's own reader returns.

use std::mem::MaybeUninit;

/// Largest block the reader accepts (the parquet crate writes 128 values a block).
const BLOCK_VALUES_MAX: usize = 1 << 16;

/// The values of one `DELTA_BINARY_PACKED` page, decoded one at a time or skipped a
/// miniblock at a time.
#[derive(Clone)]
pub(crate) struct DeltaValues<'a> {
    bytes: &'a [u8],
    at: usize,
    /// Values not yet returned.
    remaining: usize,
    /// The last value returned (or the first value, before it is returned).
    last: i64,
    first_pending: bool,
    miniblocks: usize,
    per_miniblock: usize,
    /// The current block's `min_delta`, the offset of its bit widths, and the miniblock.
    min_delta: i64,
    widths_at: usize,
    miniblock: usize,
    /// The current miniblock's bytes start, width, and the next delta's index in it.
    body_at: usize,
    width: usize,
    in_miniblock: usize,
}

impl<'a> DeltaValues<'a> {
    /// Starts reading `bytes`, which must hold exactly `count` values.
    pub fn new(bytes: &'a [u8], count: usize) -> Result<DeltaValues<'a>, String> {
        let mut at = 0;
        let block = uleb(bytes, &mut at)? as usize;
        let miniblocks = uleb(bytes, &mut at)? as usize;
        let total = uleb(bytes, &mut at)? as usize;
        let first = zigzag(uleb(bytes, &mut at)?);
        if total != count {
            return Err(format!("page holds {total} values, expected {count}"));
        }
        if block == 0
            || block > BLOCK_VALUES_MAX
            || miniblocks == 0
            || !block.is_multiple_of(miniblocks)
            || !(block / miniblocks).is_multiple_of(8)
        {
            return Err(format!(
                "invalid block shape: {block} values in {miniblocks} miniblocks"
            ));
        }
        Ok(DeltaValues {
            bytes,
            at,
            remaining: total,
            last: first,
            first_pending: true,
            miniblocks,
            per_miniblock: block / miniblocks,
            min_delta: 0,
            widths_at: 0,
            // No block started: the first delta starts one.
            miniblock: miniblocks,
            body_at: 0,
            width: 0,
            in_miniblock: 0,
        })
    }

    /// Moves to the next miniblock (and block) holding a delta.
    fn next_miniblock(&mut self) -> Result<(), String> {
        if self.in_miniblock < self.per_miniblock && self.miniblock < self.miniblocks {
            return Ok(());
        }
        self.miniblock += 1;
        if self.miniblock >= self.miniblocks {
            self.min_delta = zigzag(uleb(self.bytes, &mut self.at)?);
            self.widths_at = self.at;
            self.at = self
                .at
                .checked_add(self.miniblocks)
                .filter(|&end| end <= self.bytes.len())
                .ok_or("bit widths past the end of the page")?;
            self.miniblock = 0;
        }
        self.width = usize::from(self.bytes[self.widths_at + self.miniblock]);
        if self.width > 64 {
            return Err(format!("miniblock bit width {}", self.width));
        }
        self.body_at = self.at;
        // Every miniblock that holds a value is whole (the last one padded).
        let full = self.width * self.per_miniblock / 8;
        if self.body_at + full > self.bytes.len() {
            return Err("miniblock past the end of the page".into());
        }
        self.at = self.body_at + full;
        self.in_miniblock = 0;
        Ok(())
    }

    /// The next value, `None` after the last.
    #[inline]
    pub fn next_value(&mut self) -> Result<Option<i64>, String> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        if self.first_pending {
            self.first_pending = false;
            return Ok(Some(self.last));
        }
        self.next_miniblock()?;
        let delta = unpack(
            &self.bytes[self.body_at..],
            self.in_miniblock * self.width,
            self.width,
        );
        self.in_miniblock += 1;
        self.last = self
            .last
            .wrapping_add(self.min_delta)
            .wrapping_add(delta as i64);
        Ok(Some(self.last))
    }
}

impl DeltaValues<'_> {
    /// Values not yet returned or skipped.
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Skips `n` values (at most [`DeltaValues::remaining`]): the next value returned is
    /// the one `n` places on. Deltas are summed a miniblock at a time, without building
    /// values.
    pub fn skip(&mut self, mut n: usize) -> Result<(), String> {
        if n > self.remaining {
            return Err(format!("skip of {n} past the page's last value"));
        }
        if n > 0 && self.first_pending {
            self.first_pending = false;
            self.remaining -= 1;
            n -= 1;
        }
        while n > 0 {
            let k = self.run(n)?;
            n -= k;
        }
        Ok(())
    }

    /// Applies up to `n` deltas of the current miniblock (moving to the next one first if
    /// it is spent): how many it applied. The first value must have been returned.
    fn run(&mut self, n: usize) -> Result<usize, String> {
        self.next_miniblock()?;
        let k = n
            .min(self.per_miniblock - self.in_miniblock)
            .min(self.remaining);
        let body = &self.bytes[self.body_at..];
        let width = self.width;
        let mut sum = 0u64;
        for j in self.in_miniblock..self.in_miniblock + k {
            sum = sum.wrapping_add(unpack(body, j * width, width));
        }
        self.in_miniblock += k;
        self.remaining -= k;
        self.last = self
            .last
            .wrapping_add(self.min_delta.wrapping_mul(k as i64))
            .wrapping_add(sum as i64);
        Ok(k)
    }
}

/// Reads a ULEB128 at `*at`.
fn uleb(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *bytes.get(*at).ok_or("varint past the end of the page")?;
        *at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint longer than 64 bits".into())
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The `width`-bit value at bit `bit` of `body` (least significant bit first); the caller
/// has checked that its bytes are in `body`.
#[inline]
fn unpack(body: &[u8], bit: usize, width: usize) -> u64 {
    if width == 0 {
        return 0;
    }
    let start = bit / 8;
    let shift = bit % 8;
    // One unaligned 8-byte load holds the value whenever it has 8 bytes to read from and
    // the value with its shift fits 64 bits: every value of a key page but the widest.
    if width <= 56 {
        if let Some(word) = body
            .get(start..start + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
        {
            return (u64::from_le_bytes(word) >> shift) & ((1u64 << width) - 1);
        }
    }
    let mut word = [0u8; 16];
    let end = (start + 16).min(body.len());
    word[..end - start].copy_from_slice(&body[start..end]);
    let value = u128::from_le_bytes(word) >> shift;
    let mask = if width == 64 {
        u128::from(u64::MAX)
    } else {
        (1u128 << width) - 1
    };
    (value & mask) as u64
}

/// Where `key` is among the `count` ascending values of the page `bytes`: `Ok(i)` if value
/// `i` is `key`, `Err(i)` if it would go at `i`. Whole miniblocks below `key` are summed,
/// not decoded value by value; only the miniblock that reaches `key` is. Checks that the
/// first value is `first_key` and that the values read ascend (each skipped miniblock ends
/// above where it began).
pub(crate) fn search(
    bytes: &[u8],
    count: usize,
    first_key: i64,
    key: i64,
) -> Result<std::result::Result<usize, usize>, String> {
    let mut values = DeltaValues::new(bytes, count)?;
    let Some(first) = values.next_value()? else {
        return Ok(Err(0));
    };
    if first != first_key {
        return Err(format!("first key {first}, the directory says {first_key}"));
    }
    if first >= key {
        return Ok(if first == key { Ok(0) } else { Err(0) });
    }
    let mut i = 1;
    while values.remaining() > 0 {
        let before = values.last;
        let mut ahead = values.clone();
        let k = ahead.run(usize::MAX)?;
        if ahead.last <= before {
            return Err(format!("keys fall from {before} to {} at {i}", ahead.last));
        }
        if ahead.last < key {
            values = ahead;
            i += k;
            continue;
        }
        // `key` is reached inside this miniblock: read it value by value.
        let mut previous = before;
        for _ in 0..k {
            let Some(value) = values.next_value()? else {
                break;
            };
            if value <= previous {
                return Err(format!("key {value} after {previous}"));
            }
            if value >= key {
                return Ok(if value == key { Ok(i) } else { Err(i) });
            }
            previous = value;
            i += 1;
        }
    }
    Ok(Err(i))
}

/// Every value of the page `bytes` (`count` of them).
pub(crate) fn decode_all(bytes: &[u8], count: usize) -> Result<Vec<i64>, String> {
    let mut out = Vec::with_capacity(count);
    decode_into(bytes, count, &mut out)?;
    Ok(out)
}

/// Appends the `count` values of the page `bytes` to `out`: the scan's decoder. A
/// miniblock of a multiple of 32 deltas (the parquet crate writes 64 for INT64) is
/// unpacked 32 at a time, straight into `out`, by a routine specialised to its bit width
/// (its shifts and byte offsets are constants) that sums the deltas into values as it
/// goes; other miniblock sizes go value by value. Returns where the values end in `bytes`
/// (what follows is another stream's, as in `DELTA_LENGTH_BYTE_ARRAY`). On an error `out`
/// holds what it held before.
pub(crate) fn decode_into(bytes: &[u8], count: usize, out: &mut Vec<i64>) -> Result<usize, String> {
    let values = DeltaValues::new(bytes, count)?;
    let (mut at, miniblocks, per) = (values.at, values.miniblocks, values.per_miniblock);
    let mut last = values.last;
    if count == 0 {
        return Ok(at);
    }
    // A block of `block` values takes at least its min delta and bit widths: a count the
    // bytes cannot hold is refused before it sizes an allocation.
    let blocks_max = bytes.len().saturating_sub(at) / (1 + miniblocks) + 1;
    if (count - 1).div_ceil(per * miniblocks) > blocks_max {
        return Err(format!(
            "{count} values cannot fit in a page of {} bytes",
            bytes.len()
        ));
    }
    // Written in place, not zeroed first (zeroing was 4% of a full scan).
    out.reserve(count);
    let spare = &mut out.spare_capacity_mut()[..count];
    decode_values(bytes, &mut at, miniblocks, per, &mut last, spare)?;
    // SAFETY: `decode_values` returned `Ok`, so it wrote every one of the `count` slots
    // after the initialized length (each branch of its loop writes each slot it takes,
    // and it takes slots until none is left).
    unsafe { out.set_len(out.len() + count) };
    Ok(at)
}

/// [`decode_into`]'s loop: fills `out` (one slot a value) with the first value `*last`
/// and the values its blocks, from `*at`, add to it. On `Ok` every slot of `out` is
/// written.
fn decode_values(
    bytes: &[u8],
    at: &mut usize,
    miniblocks: usize,
    per: usize,
    last: &mut i64,
    out: &mut [MaybeUninit<i64>],
) -> Result<(), String> {
    let Some((first, mut rest)) = out.split_first_mut() else {
        return Ok(());
    };
    first.write(*last);
    let mut run = [MaybeUninit::<i64>::uninit(); 32];
    while !rest.is_empty() {
        let min_delta = zigzag(uleb(bytes, at)?);
        let widths = bytes
            .get(*at..*at + miniblocks)
            .ok_or("bit widths past the end of the page")?;
        *at += miniblocks;
        for &width in widths {
            if rest.is_empty() {
                break;
            }
            let width = usize::from(width);
            if width > 64 {
                return Err(format!("miniblock bit width {width}"));
            }
            let full = width * per / 8;
            let body = bytes
                .get(*at..*at + full)
                .ok_or("miniblock past the end of the page")?;
            let k = per.min(rest.len());
            let (mine, after) = std::mem::take(&mut rest).split_at_mut(k);
            rest = after;
            if per.is_multiple_of(32) {
                // 32 deltas of `width` bits are `4 * width` whole bytes. The unpacker may
                // read past them into the rest of the page (never past the page).
                for (part, slots) in mine.chunks_mut(32).enumerate() {
                    let from = *at + part * 4 * width;
                    match <&mut [MaybeUninit<i64>; 32]>::try_from(&mut *slots) {
                        Ok(slots) => unpack32(&bytes[from..], width, min_delta, last, slots),
                        Err(_) => {
                            unpack32(&bytes[from..], width, min_delta, last, &mut run);
                            slots.copy_from_slice(&run[..slots.len()]);
                        }
                    }
                }
            } else {
                for (j, slot) in mine.iter_mut().enumerate() {
                    let delta = unpack(body, j * width, width);
                    *last = last.wrapping_add(min_delta).wrapping_add(delta as i64);
                    slot.write(*last);
                }
            }
            *at += full;
        }
    }
    Ok(())
}

/// Unpacks the 32 `width`-bit deltas of the miniblock `body` (`4 * width` bytes, then any
/// bytes that follow it in the page) and sums them into `out`, from `*last` by `min_delta`
/// plus each delta.
#[inline]
fn unpack32(
    body: &[u8],
    width: usize,
    min_delta: i64,
    last: &mut i64,
    out: &mut [MaybeUninit<i64>; 32],
) {
    macro_rules! widths {
        ($($w:literal)*) => {
            match width {
                $($w => unpack32_at::<$w>(body, min_delta, last, out),)*
                _ => {
                    for value in out.iter_mut() {
                        *last = last.wrapping_add(min_delta);
                        value.write(*last);
                    }
                }
            }
        };
    }
    widths!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30
        31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59
        60 61 62 63 64);
}

/// [`unpack32`] for a width known at compile time. Each delta is one unaligned load (two
/// words past 56 bits) at a constant offset of a window of constant length, so the loads
/// need no bounds checks; a miniblock too near the page's end for the window is copied
/// into a zeroed buffer first.
#[inline(always)]
fn unpack32_at<const W: usize>(
    body: &[u8],
    min_delta: i64,
    last: &mut i64,
    out: &mut [MaybeUninit<i64>; 32],
) {
    match body.get(..4 * W + 16) {
        Some(window) => unpack32_window::<W>(window, min_delta, last, out),
        None => unpack32_copied::<W>(body, min_delta, last, out),
    }
}

/// [`unpack32_at`] for a miniblock within 16 bytes of the page's end (once a page at most).
#[cold]
#[inline(never)]
fn unpack32_copied<const W: usize>(
    body: &[u8],
    min_delta: i64,
    last: &mut i64,
    out: &mut [MaybeUninit<i64>; 32],
) {
    let mut copy = [0u8; 32 * 8 + 16];
    let len = (4 * W).min(body.len());
    copy[..len].copy_from_slice(&body[..len]);
    unpack32_window::<W>(&copy[..4 * W + 16], min_delta, last, out);
}

/// [`unpack32_at`] over `window`, the miniblock and the 16 bytes after it.
#[inline(always)]
fn unpack32_window<const W: usize>(
    window: &[u8],
    min_delta: i64,
    last: &mut i64,
    out: &mut [MaybeUninit<i64>; 32],
) {
    let mask = u64::MAX >> (64 - W);
    let mut acc = *last;
    // Eight deltas are `W` whole bytes: within a group of eight every offset and shift is
    // a constant, which lets the compiler unroll the group into straight-line code.
    for (group, values) in out.chunks_exact_mut(8).enumerate() {
        let base = group * W;
        for (i, value) in values.iter_mut().enumerate() {
            let bit = i * W;
            let (start, shift) = (base + bit / 8, bit % 8);
            let delta = if W <= 56 {
                let mut word = [0u8; 8];
                word.copy_from_slice(&window[start..start + 8]);
                (u64::from_le_bytes(word) >> shift) & mask
            } else {
                let mut word = [0u8; 16];
                word.copy_from_slice(&window[start..start + 16]);
                ((u128::from_le_bytes(word) >> shift) as u64) & mask
            };
            acc = acc.wrapping_add(min_delta).wrapping_add(delta as i64);
            value.write(acc);
        }
    }
    *last = acc;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn put_zigzag(out: &mut Vec<u8>, v: i64) {
        put_uleb(out, ((v << 1) ^ (v >> 63)) as u64);
    }

    /// A page as the format describes it: blocks of 128, 4 miniblocks of 32.
    fn encode(values: &[i64]) -> Vec<u8> {
        encode_shaped(values, 32)
    }

    /// A page of blocks of 4 miniblocks of `per` values (the parquet crate writes 64 for
    /// INT64). Widths of miniblocks past the last value are written as 0xff: the format
    /// leaves them arbitrary.
    fn encode_shaped(values: &[i64], per: usize) -> Vec<u8> {
        let mut out = Vec::new();
        put_uleb(&mut out, 4 * per as u64);
        put_uleb(&mut out, 4);
        put_uleb(&mut out, values.len() as u64);
        put_zigzag(&mut out, values[0]);
        let deltas: Vec<i64> = values.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
        for block in deltas.chunks(4 * per) {
            let min = *block.iter().min().expect("non-empty");
            put_zigzag(&mut out, min);
            let minis: Vec<&[i64]> = block.chunks(per).collect();
            let widths: Vec<usize> = minis
                .iter()
                .map(|m| {
                    let max = m
                        .iter()
                        .map(|d| d.wrapping_sub(min) as u64)
                        .max()
                        .unwrap_or(0);
                    64 - max.leading_zeros() as usize
                })
                .collect();
            for i in 0..4 {
                out.push(widths.get(i).map_or(0xff, |&w| w as u8));
            }
            for (m, &w) in minis.iter().zip(&widths) {
                let mut bits = vec![0u8; w * per / 8];
                for (j, d) in m.iter().enumerate() {
                    let d = d.wrapping_sub(min) as u64;
                    for b in 0..w {
                        if d >> b & 1 == 1 {
                            let bit = j * w + b;
                            bits[bit / 8] |= 1 << (bit % 8);
                        }
                    }
                }
                out.extend_from_slice(&bits);
            }
        }
        out
    }

    fn keys() -> Vec<i64> {
        (0..300i64)
            .scan(-5_000i64, |k, i| {
                *k += 1 + (i * 7919) % 50_000;
                Some(*k)
            })
            .collect()
    }

    #[test]
    fn pages_decode_and_search_as_written() {
        for keys in [
            keys(),
            vec![i64::MIN, 0, i64::MAX],
            vec![7],
            (0..1024).collect(),
        ] {
            let bytes = encode(&keys);
            assert_eq!(decode_all(&bytes, keys.len()), Ok(keys.clone()));
            for (i, &k) in keys.iter().enumerate() {
                assert_eq!(search(&bytes, keys.len(), keys[0], k), Ok(Ok(i)));
                if k > i64::MIN && (i == 0 || keys[i - 1] != k - 1) {
                    assert_eq!(search(&bytes, keys.len(), keys[0], k - 1), Ok(Err(i)));
                }
            }
            if keys[keys.len() - 1] < i64::MAX {
                assert_eq!(
                    search(&bytes, keys.len(), keys[0], i64::MAX),
                    Ok(Err(keys.len()))
                );
            }
            assert!(decode_all(&bytes, keys.len() + 1).is_err());
            assert!(search(&bytes, keys.len(), keys[0].wrapping_add(1), keys[0]).is_err());
            for (i, &k) in keys.iter().enumerate() {
                let mut values = DeltaValues::new(&bytes, keys.len()).expect("page");
                values.skip(i).expect("skip");
                assert_eq!(values.next_value(), Ok(Some(k)), "value {i}");
                assert_eq!(values.remaining(), keys.len() - i - 1);
            }
            let mut values = DeltaValues::new(&bytes, keys.len()).expect("page");
            assert!(values.skip(keys.len() + 1).is_err());
        }
    }

    /// Deltas of every bit width from 0 to 64 (a block's widths mixed), through the
    /// width-specialised decoder and the value-by-value reader alike.
    #[test]
    fn every_miniblock_width_decodes_as_written() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for width in 0..=64u32 {
            for len in [1usize, 2, 31, 32, 33, 129, 1000] {
                let mask = if width == 64 {
                    u64::MAX
                } else {
                    (1u64 << width) - 1
                };
                let mut values = vec![next() as i64];
                for i in 1..len {
                    // Every fourth miniblock narrower, so a block mixes widths.
                    let d = if (i / 32) % 4 == 3 {
                        next() & 0xff & mask
                    } else {
                        next() & mask
                    };
                    values.push(values[i - 1].wrapping_add(d as i64));
                }
                // Miniblocks of 32 and 64 take the unrolled path, of 8 the general one.
                for per in [8, 32, 64] {
                    let bytes = encode_shaped(&values, per);
                    let mut slow = Vec::new();
                    let mut reader = DeltaValues::new(&bytes, len).expect("page");
                    while let Some(v) = reader.next_value().expect("value") {
                        slow.push(v);
                    }
                    assert_eq!(slow, values, "width {width}, {len} values of {per}");
                    let mut fast = vec![42];
                    decode_into(&bytes, len, &mut fast).expect("page");
                    assert_eq!(
                        fast[1..],
                        values[..],
                        "width {width}, {len} values of {per}"
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_or_damaged_pages_are_errors_or_values_never_panics() {
        // A header claiming more values than its bytes can hold is refused before anything
        // is sized by it.
        let mut huge = Vec::new();
        put_uleb(&mut huge, 256);
        put_uleb(&mut huge, 4);
        put_uleb(&mut huge, 1 << 40);
        put_zigzag(&mut huge, 7);
        huge.extend_from_slice(&[0, 0, 0, 0, 0]);
        let mut out = Vec::new();
        assert!(decode_into(&huge, 1 << 40, &mut out).is_err());
        assert!(out.capacity() < 1 << 20);
        let keys = keys();
        for per in [8, 32, 64] {
            let bytes = encode_shaped(&keys, per);
            for cut in 0..bytes.len() {
                let mut out = vec![1, 2];
                assert!(
                    decode_into(&bytes[..cut], keys.len(), &mut out).is_err(),
                    "cut at {cut} of miniblocks of {per}"
                );
                assert_eq!(out, [1, 2], "a failed decode leaves what was there");
            }
            for at in 0..bytes.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut damaged = bytes.clone();
                    damaged[at] ^= flip;
                    let _ = decode_all(&damaged, keys.len());
                    let _ = search(&damaged, keys.len(), keys[0], keys[150]);
                }
            }
        }
    }
}
