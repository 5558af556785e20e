//! The segment index: a small sidecar file (`<segment>.idx`) beside each Parquet segment,
//! written with it and never changed, that lets a segment open without reading its data.
//!
//! It holds what the cold tier keeps in memory per segment, so that open reads only this
//! file and the Parquet file's tail (page index and footer), never the data pages:
//! - the **key page directory**: the first key and first row of every data page of the key
//!   column, so a point read binary-searches in memory and decodes one key page;
//! - a **membership filter** (binary fuse, 8-bit fingerprints: about 9 bits a key, a false
//!   positive rate near 0.4%, no false negatives), so an insert or a miss of a key the
//!   segment does not hold never touches the disk;
//! - the CRC-32C of every byte **region** a reader may ask for (each column chunk's
//!   dictionary prefix, if any, and each data page, in file order), and of the tail, so each
//!   page is checked when it is read instead of the whole file at open;
//! - the data file's length and whole-file CRC-32C, which `verify` checks.
//!
//! Layout (docs/FORMAT.md, "Segment index"), version 1: magic `OMENSIDX`, version u32,
//! reserved u32, then the fields in the order of [`SegmentIndex`], then the CRC-32C of every
//! byte before it and the end magic `OMENSEND`. Memory: about 1.13 bytes a key for the
//! filter, 16 bytes a key page, 4 bytes a region.

use crate::codec::{DecodeResult, Decoder, Encoder};
use xorf::{BinaryFuse8, DmaSerializable, Filter};

const MAGIC: [u8; 8] = *b"OMENSIDX";
const END_MAGIC: [u8; 8] = *b"OMENSEND";
const VERSION: u32 = 1;

/// Filter kinds on disk.
const FILTER_NONE: u8 = 0;
const FILTER_BINARY_FUSE8: u8 = 1;

/// Bytes of a binary fuse filter's descriptor (seed, segment length and mask, segment count
/// length), as `xorf` serialises it.
const FUSE_DESCRIPTOR_BYTES: usize = <BinaryFuse8 as DmaSerializable>::DESCRIPTOR_LEN;

/// One data page of the key column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyPage {
    /// The smallest (first) key of the page.
    pub first_key: i64,
    /// The segment-wide index of the page's first row.
    pub first_row: u64,
}

/// What a segment's sidecar holds.
#[derive(Debug, Clone)]
pub(crate) struct SegmentIndex {
    /// Length of the Parquet file.
    pub data_size_bytes: u64,
    /// CRC-32C of the whole Parquet file (checked by `verify`, not at open).
    pub data_crc32c: u32,
    /// Offset where the Parquet file's tail (page index and footer) starts: everything from
    /// here to the end is read at open.
    pub tail_offset: u64,
    /// CRC-32C of the tail.
    pub tail_crc32c: u32,
    /// Rows in the segment.
    pub row_count: u64,
    /// The key column's pages, ascending by key and by row.
    pub key_pages: Vec<KeyPage>,
    /// CRC-32C of each region, in the order [`crate::cold::segment::regions`] lists them.
    pub region_crcs: Vec<u32>,
    /// `None` only for a segment whose filter could not be built (every probe then says
    /// "maybe").
    pub filter: Option<BinaryFuse8>,
}

/// Maps a key into the filter's domain (a bijection, so distinct keys stay distinct).
pub(crate) fn filter_key(key: i64) -> u64 {
    key as u64
}

/// Builds the membership filter of `keys` (distinct). `None` if construction fails, which
/// the binary fuse algorithm allows with vanishing probability.
pub(crate) fn build_filter(keys: &[i64]) -> Option<BinaryFuse8> {
    BinaryFuse8::try_from_iterator(keys.iter().map(|&k| filter_key(k))).ok()
}

/// The three fingerprint slots `BinaryFuse8::contains` reads for `key`, computed as xorf
/// 0.13 computes them (its hashing is not public). Only a prefetch hint uses them: were a
/// new xorf to hash otherwise, prefetches would miss and nothing else would change (the
/// test below compares against `contains`).
fn filter_slots(filter: &BinaryFuse8, key: u64) -> [usize; 3] {
    let d = &filter.descriptor;
    let mut hash = key.wrapping_add(d.seed);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    let h0 = ((u128::from(hash) * u128::from(d.segment_count_length)) >> 64) as u32;
    let h1 = h0.wrapping_add(d.segment_length) ^ (((hash >> 18) as u32) & d.segment_length_mask);
    let h2 = h0
        .wrapping_add(d.segment_length)
        .wrapping_add(d.segment_length)
        ^ ((hash as u32) & d.segment_length_mask);
    [h0 as usize, h1 as usize, h2 as usize]
}

impl SegmentIndex {
    /// Starts loading the filter's cache lines that [`SegmentIndex::may_contain`] of `key`
    /// will read: a batch of probes into a filter larger than the caches overlaps its misses
    /// this way instead of taking them one after another.
    #[inline]
    pub fn prefetch_filter(&self, key: i64) {
        if let Some(filter) = &self.filter {
            for slot in filter_slots(filter, filter_key(key)) {
                if let Some(byte) = filter.fingerprints.get(slot) {
                    crate::mem::prefetch(byte);
                }
            }
        }
    }

    /// Whether the segment may hold `key` (no false negatives).
    #[inline]
    pub fn may_contain(&self, key: i64) -> bool {
        self.filter
            .as_ref()
            .is_none_or(|f| f.contains(&filter_key(key)))
    }

    /// The key page that holds `key` if any page does: the last page whose first key is at
    /// most `key`.
    pub fn page_of(&self, key: i64) -> Option<usize> {
        count_at_most(&self.key_pages, key, |p| p.first_key).checked_sub(1)
    }

    /// Rows of key page `page`: `first_row..end`.
    pub fn page_rows(&self, page: usize) -> std::ops::Range<u64> {
        let start = self.key_pages[page].first_row;
        let end = self
            .key_pages
            .get(page + 1)
            .map_or(self.row_count, |p| p.first_row);
        start..end
    }

    /// Heap bytes this index keeps in memory.
    pub fn memory_bytes(&self) -> usize {
        self.key_pages.capacity() * std::mem::size_of::<KeyPage>()
            + self.region_crcs.capacity() * 4
            + self.filter.as_ref().map_or(0, |f| f.fingerprints.len())
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut enc = Encoder::new();
        enc.bytes.extend_from_slice(&MAGIC);
        enc.u32(VERSION);
        enc.u32(0);
        enc.u64(self.data_size_bytes);
        enc.u32(self.data_crc32c);
        enc.u64(self.tail_offset);
        enc.u32(self.tail_crc32c);
        enc.u64(self.row_count);
        enc.u32(self.key_pages.len() as u32);
        for page in &self.key_pages {
            enc.i64(page.first_key);
            enc.u64(page.first_row);
        }
        enc.u32(self.region_crcs.len() as u32);
        for &crc in &self.region_crcs {
            enc.u32(crc);
        }
        match &self.filter {
            None => enc.u8(FILTER_NONE),
            Some(filter) => {
                enc.u8(FILTER_BINARY_FUSE8);
                let mut descriptor = [0u8; FUSE_DESCRIPTOR_BYTES];
                filter.dma_copy_descriptor_to(&mut descriptor);
                enc.bytes.extend_from_slice(&descriptor);
                enc.u64(filter.fingerprints.len() as u64);
                enc.bytes.extend_from_slice(&filter.fingerprints);
            }
        }
        let crc = crc32c::crc32c(&enc.bytes);
        enc.u32(crc);
        enc.bytes.extend_from_slice(&END_MAGIC);
        enc.bytes
    }

    /// Decodes a sidecar's bytes; every length is checked against what remains before
    /// anything is allocated, and the checksum before anything is trusted.
    pub fn decode(bytes: &[u8]) -> DecodeResult<SegmentIndex> {
        let mut outer = Decoder::new(bytes);
        let body_len = bytes
            .len()
            .checked_sub(12)
            .ok_or_else(|| outer.error("shorter than its trailer"))?;
        let body = &bytes[..body_len];
        let mut trailer = Decoder::new(&bytes[body_len..]);
        let stored_crc = trailer.u32()?;
        if trailer.take(8)? != END_MAGIC {
            return Err(outer.error("bad end magic"));
        }
        let crc = crc32c::crc32c(body);
        if crc != stored_crc {
            outer.take(body_len)?;
            return Err(outer.error(format!(
                "checksum {stored_crc:#010x} != computed {crc:#010x}"
            )));
        }
        let mut dec = Decoder::new(body);
        if dec.take(8)? != MAGIC {
            return Err(dec.error("bad magic"));
        }
        let version = dec.u32()?;
        if version != VERSION {
            return Err(dec.error(format!("unsupported segment index version {version}")));
        }
        let _reserved = dec.u32()?;
        let data_size_bytes = dec.u64()?;
        let data_crc32c = dec.u32()?;
        let tail_offset = dec.u64()?;
        let tail_crc32c = dec.u32()?;
        let row_count = dec.u64()?;
        let page_count = dec.u32()? as usize;
        if page_count > (body.len() - dec.offset()) / 16 {
            return Err(dec.error(format!("{page_count} key pages exceed the file")));
        }
        let mut key_pages = Vec::with_capacity(page_count);
        for _ in 0..page_count {
            let page = KeyPage {
                first_key: dec.i64()?,
                first_row: dec.u64()?,
            };
            if key_pages.last().is_some_and(|p: &KeyPage| {
                p.first_key >= page.first_key || p.first_row >= page.first_row
            }) || page.first_row >= row_count
            {
                return Err(dec.error("key pages are not strictly ascending"));
            }
            key_pages.push(page);
        }
        if row_count > 0 && key_pages.first().map(|p| p.first_row) != Some(0) {
            return Err(dec.error("the first key page does not start at row 0"));
        }
        let region_count = dec.u32()? as usize;
        if region_count > (body.len() - dec.offset()) / 4 {
            return Err(dec.error(format!("{region_count} regions exceed the file")));
        }
        let mut region_crcs = Vec::with_capacity(region_count);
        for _ in 0..region_count {
            region_crcs.push(dec.u32()?);
        }
        let filter = match dec.u8()? {
            FILTER_NONE => None,
            FILTER_BINARY_FUSE8 => {
                let descriptor = dec.take(FUSE_DESCRIPTOR_BYTES)?;
                let len = dec.u64()?;
                if len > (body.len() - dec.offset()) as u64 {
                    return Err(dec.error(format!("filter of {len} bytes exceeds the file")));
                }
                let fingerprints = dec.take(len as usize)?;
                Some(fuse_from_parts(descriptor, fingerprints).ok_or_else(|| {
                    dec.error("filter descriptor does not match its fingerprints")
                })?)
            }
            kind => return Err(dec.error(format!("unknown filter kind {kind}"))),
        };
        if !dec.is_empty() {
            return Err(dec.error("trailing bytes"));
        }
        Ok(SegmentIndex {
            data_size_bytes,
            data_crc32c,
            tail_offset,
            tail_crc32c,
            row_count,
            key_pages,
            region_crcs,
            filter,
        })
    }
}

/// Rebuilds a binary fuse filter from its serialised descriptor and fingerprints, checking
/// that the descriptor cannot send a probe outside the fingerprints (a damaged descriptor
/// would otherwise index out of bounds).
fn fuse_from_parts(descriptor: &[u8], fingerprints: &[u8]) -> Option<BinaryFuse8> {
    let mut dec = Decoder::new(descriptor);
    let seed = dec.u64().ok()?;
    let segment_length = dec.u32().ok()?;
    let segment_length_mask = dec.u32().ok()?;
    let segment_count_length = dec.u32().ok()?;
    // A probe reads at most `segment_count_length + 2 * segment_length` (three positions,
    // each a segment apart, the first below `segment_count_length`).
    let reach = u64::from(segment_count_length) + 2 * u64::from(segment_length);
    if !segment_length.is_power_of_two()
        || segment_length_mask != segment_length - 1
        || reach > fingerprints.len() as u64
    {
        return None;
    }
    Some(BinaryFuse8 {
        descriptor: xorf::Descriptor {
            seed,
            segment_length,
            segment_length_mask,
            segment_count_length,
        },
        fingerprints: fingerprints.into(),
    })
}

/// How many of `items` (ascending by `key_of`) have a key at most `key`: what
/// `partition_point(|x| key_of(x) <= key)` returns, found the learned-index way. A straight
/// line through the first and last keys predicts the position, and a galloping search from
/// the prediction corrects it. A segment's key pages and a column chunk's pages start at keys
/// or rows spread about evenly, so this touches one or two entries where a binary search of
/// a directory of thousands takes a dozen cache misses; on skewed keys it costs at most
/// about twice the binary search (O(log distance) from the prediction).
pub(crate) fn count_at_most<T>(items: &[T], key: i64, key_of: impl Fn(&T) -> i64) -> usize {
    let n = items.len();
    let (Some(first), Some(last)) = (items.first(), items.last()) else {
        return 0;
    };
    let (low, high) = (key_of(first), key_of(last));
    if key < low {
        return 0;
    }
    if key >= high {
        return n;
    }
    // low <= key < high: at least two items, and the answer is in 1..n.
    let span = (i128::from(high) - i128::from(low)) as u128;
    let offset = (i128::from(key) - i128::from(low)) as u128;
    let guess = ((offset * (n as u128 - 1)) / span).min(n as u128 - 1) as usize;
    let at_most = |i: usize| key_of(&items[i]) <= key;
    // Bracket the answer in lo..=hi: every item below lo is at most key, every item from hi
    // on is above it.
    let (lo, hi) = if at_most(guess) {
        let (mut known, mut step) = (guess, 1);
        loop {
            let i = known + step;
            if i >= n {
                break (known + 1, n);
            }
            if !at_most(i) {
                break (known + 1, i);
            }
            known = i;
            step *= 2;
        }
    } else {
        let (mut known, mut step) = (guess, 1);
        loop {
            if known < step {
                break (0, known);
            }
            let i = known - step;
            if at_most(i) {
                break (i + 1, known);
            }
            known = i;
            step *= 2;
        }
    };
    lo + items[lo..hi].partition_point(|x| key_of(x) <= key)
}

#[cfg(test)]
mod tests {
    proptest::proptest! {
        #[test]
        fn count_at_most_equals_partition_point(
            mut keys in proptest::collection::vec(proptest::prelude::any::<i64>(), 0..200),
            probes in proptest::collection::vec(proptest::prelude::any::<i64>(), 1..20),
            spread in 0u32..3,
        ) {
            // Evenly spread, clustered and extreme keys: the prediction is good, poor or
            // useless, and the answer must not depend on it.
            if spread == 1 {
                keys.iter_mut().for_each(|k| *k = (*k % 1000).abs());
            }
            keys.sort_unstable();
            keys.dedup();
            if spread == 2 && keys.len() > 2 {
                let n = keys.len() as i64;
                keys = (0..n).map(|i| i * 7).collect();
            }
            let edges = keys.iter().flat_map(|&k| [k, k.wrapping_sub(1), k.wrapping_add(1)]);
            for key in probes.into_iter().chain(edges).chain([i64::MIN, i64::MAX]) {
                let expected = keys.partition_point(|&k| k <= key);
                proptest::prop_assert_eq!(count_at_most(&keys, key, |&k| k), expected, "key {}", key);
            }
        }
    }

    use xorf::Filter;

    /// The prefetch hint reads the slots `contains` reads: for keys in the filter, the three
    /// fingerprints XOR to the key's fingerprint, as `contains` requires.
    #[test]
    fn filter_slots_are_the_ones_contains_reads() {
        let keys: Vec<i64> = (0..50_000i64).map(|i| i * 7_919 - 1_000_000).collect();
        let filter = build_filter(&keys).expect("filter");
        let mut agree = 0;
        for &key in &keys {
            let slots = filter_slots(&filter, filter_key(key));
            let xor = slots
                .iter()
                .fold(0u8, |x, &slot| x ^ filter.fingerprints[slot]);
            let mut hash = filter_key(key).wrapping_add(filter.descriptor.seed);
            hash ^= hash >> 33;
            hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
            hash ^= hash >> 33;
            hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
            hash ^= hash >> 33;
            let fingerprint = (hash ^ (hash >> 32)) as u8;
            assert!(filter.contains(&filter_key(key)));
            if xor == fingerprint {
                agree += 1;
            }
        }
        assert_eq!(agree, keys.len(), "the slots differ from xorf's");
    }

    use super::*;

    fn sample(keys: &[i64]) -> SegmentIndex {
        SegmentIndex {
            data_size_bytes: 1000,
            data_crc32c: 7,
            tail_offset: 900,
            tail_crc32c: 9,
            row_count: keys.len() as u64,
            key_pages: vec![
                KeyPage {
                    first_key: keys[0],
                    first_row: 0,
                },
                KeyPage {
                    first_key: keys[keys.len() / 2],
                    first_row: keys.len() as u64 / 2,
                },
            ],
            region_crcs: vec![1, 2, 3],
            filter: build_filter(keys),
        }
    }

    #[test]
    fn an_index_round_trips_and_its_filter_has_no_false_negatives() {
        let keys: Vec<i64> = (0..10_000).map(|i| i * 7 - 30_000).collect();
        let index = sample(&keys);
        let decoded = SegmentIndex::decode(&index.encode()).unwrap();
        assert_eq!(decoded.key_pages, index.key_pages);
        assert_eq!(decoded.region_crcs, index.region_crcs);
        assert!(keys.iter().all(|&k| decoded.may_contain(k)));
        let misses = (0..10_000)
            .filter(|i| decoded.may_contain(i * 7 - 29_999))
            .count();
        assert!(misses < 200, "{misses} false positives of 10,000");
        assert_eq!(decoded.page_of(keys[0] - 1), None);
        assert_eq!(decoded.page_of(keys[5_000]), Some(1));
        assert_eq!(decoded.page_rows(0), 0..5_000);
    }

    #[test]
    fn every_flipped_bit_of_an_index_is_detected() {
        let keys: Vec<i64> = (0..300).collect();
        let bytes = sample(&keys).encode();
        for bit in 0..bytes.len() * 8 {
            let mut damaged = bytes.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentIndex::decode(&damaged).is_err(), "bit {bit}");
        }
        for len in 0..bytes.len() {
            assert!(SegmentIndex::decode(&bytes[..len]).is_err(), "length {len}");
        }
    }
}
