//! One membership filter over every key of a table's cold tier, so that an insert's
//! duplicate check probes one filter, not one per segment.
//!
//! With keys in random order every flush writes a segment whose key range spans the whole
//! key space, so the per-segment filters (`index.rs`) all cover every inserted key: a batch
//! insert probed each of them, three cache misses a probe, and at 9 segments that was a
//! fifth of the loader's time (at 1B rows and 100 segments it would be most of it). This
//! filter answers "no cold segment holds this key" with one probe of one cache line, which
//! the batch prefetches ahead; only the keys it passes, its false positives and the true
//! duplicates, take the per-segment path.
//!
//! **What it holds.** A superset of the keys with a visible cold row: every key of every
//! segment listed when it was built, plus every key flushed since (inserted while the
//! flush writes its segment, before the segment is listed, which only adds false
//! positives). A compaction's output holds a subset of its inputs' keys, and deletion
//! vectors only hide rows, so neither changes it. Stale keys (deleted, compacted away) are
//! false positives until the next rebuild.
//!
//! **Size and rebuilds.** A key that passes this filter without being cold (a false
//! positive) is then probed in every segment's filter, about 50 ns a segment with the filters
//! out of cache, so a filter whose false-positive rate is fixed costs an insert more with
//! every segment: at 1B shuffled rows and 96 segments, 6 bits a key (6.5% false positives on
//! average) would spend about 300 ns a row there, a third of the insert. A build therefore
//! picks its bits a key from the segment count it will serve ([`bits_per_key`]): the fewest,
//! from [`BITS_PER_KEY_MIN`], whose false-positive rate times that count stays under
//! [`SEGMENT_PROBES_MAX`], so the expected per-segment probes of a new key stay constant
//! as the tier grows, and the memory grows with the logarithm of the segment count (6 bits
//! a key up to 13 segments, 11 at 100). It is built for `capacity` keys, with
//! capacity = [`HEADROOM`] times the keys it starts with, so it holds between 1 and 1.25
//! times its bits a key per cold row. A flush whose keys would pass the capacity rebuilds
//! it instead, from the key pages of every listed segment and the flush's own keys, with no
//! lock held; with the capacity growing by a quarter each time, the keys read over a
//! table's life are about five times its cold rows. The flush removes the old filter from
//! the table before the build starts, so that the peak holds one filter, not two (at 1B
//! rows the two would be 3 GB); until the new one is installed with the segment, checks take
//! the per-segment path, which is sound, only slower. It is derived state: never written to
//! disk, absent after open until the first flush builds it (inserts take the per-segment
//! path meanwhile), and
//! built only once a table has [`SEGMENTS_MIN`] segments (below that the per-segment
//! probes cost no more than this one).

use crate::cold::segment::SegmentReader;
use crate::cold::{Segment, SegmentIndex};
use crate::error::Result;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Fewest bits per key at capacity (a false-positive rate of 9.9%).
pub(crate) const BITS_PER_KEY_MIN: u32 = 6;
/// Most bits per key at capacity (0.13%, enough for about 600 segments).
pub(crate) const BITS_PER_KEY_MAX: u32 = 16;
/// The expected per-segment filter probes of a key new to the table that a build aims for:
/// its false-positive rate at capacity times the segments it is sized for. 6 bits a key
/// meets it up to 13 segments (about 100M rows at a 10M hot cap), so smaller tiers stay as
/// small as they were; 11 bits serve 150.
pub(crate) const SEGMENT_PROBES_MAX: f64 = 1.3;
/// A build sizes the filter for this many times the keys it starts with (and the
/// segments: flushes of similar size add segments as fast as keys).
const HEADROOM: f64 = 1.25;
/// The filter is built once a table holds this many segments.
pub(crate) const SEGMENTS_MIN: usize = 3;
/// The smallest capacity built, so that tiny tables do not rebuild at every flush.
const CAPACITY_MIN: u64 = 1 << 12;

/// Words of a block: 8 x 32 bits, one bit set in each word per key.
const WORDS: usize = 8;
/// The split block Bloom filter's salts, as the Parquet format specifies them.
const SALTS: [u32; WORDS] = [
    0x47b6_137b,
    0x4497_4d91,
    0x8824_ad5b,
    0xa2b7_289d,
    0x7054_95c7,
    0x2df1_424b,
    0x9efc_4947,
    0x5c6b_fb31,
];

/// One 256-bit block, aligned so that it never straddles a cache line.
#[repr(C, align(32))]
struct Block([AtomicU32; WORDS]);

/// The filter of a table's cold keys: a split block Bloom filter (Parquet's layout: each
/// key sets one bit in each of the 8 words of one 32-byte block, so a probe or an insert
/// touches one cache line, which a prefetch can fetch ahead). Shared (`Arc`) between the
/// tier, whose inserts probe it lock-free, and a flush in flight, which adds its keys with
/// no lock held.
///
/// Hand-written rather than a crate's: fastbloom's filters probe a cache line per hash
/// (four misses an insert, which made each flush's additions cost seconds), and parquet's
/// `Sbbf` takes `&mut self` to insert and hides its hashed entry points, where this one
/// needs inserts from one writer while readers probe, and the block of a key to prefetch.
pub(crate) struct ColdKeyFilter {
    blocks: Box<[Block]>,
    /// Keys it was sized for.
    capacity: u64,
    /// Keys inserted so far (with repeats, if a key was flushed twice).
    inserted: AtomicU64,
    /// Held while inserting: writers take turns, so each word's read-modify-write (plain
    /// relaxed loads and stores, cheaper than locked `fetch_or`s) loses no bit. Readers
    /// never take it: a probe that races an insert sees the key's bits or not, and a key
    /// being inserted is not listed in any segment yet.
    writer: Mutex<()>,
}

impl std::fmt::Debug for ColdKeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdKeyFilter")
            .field("capacity", &self.capacity)
            .field("inserted", &self.inserted.load(Ordering::Relaxed))
            .finish()
    }
}

impl ColdKeyFilter {
    /// An empty filter for `keys` keys plus headroom, at `bits` bits a key of capacity.
    pub fn for_keys(keys: u64, bits: u32) -> ColdKeyFilter {
        let capacity = ((keys as f64 * HEADROOM) as u64).max(CAPACITY_MIN);
        let blocks = capacity.saturating_mul(u64::from(bits)).div_ceil(256);
        let blocks = usize::try_from(blocks).unwrap_or(usize::MAX >> 8).max(1);
        let mut buf: Vec<Block> = Vec::with_capacity(blocks);
        crate::mem::advise_huge_pages(&buf);
        buf.resize_with(blocks, || Block(std::array::from_fn(|_| AtomicU32::new(0))));
        ColdKeyFilter {
            blocks: buf.into_boxed_slice(),
            capacity,
            inserted: AtomicU64::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The filter's own hash of a key: a different mix from the segment filters', so that
    /// the two kinds of false positive are independent.
    #[inline]
    fn hash(key: i64) -> u64 {
        let mut z = (key as u64) ^ 0x6a09_e667_f3bc_c909;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The block of `hash` (the high half, reduced onto the block count) and the bit of each
    /// word (from the low half and the salts).
    #[inline]
    fn place(&self, hash: u64) -> (&Block, [u32; WORDS]) {
        let block = ((hash >> 32) * self.blocks.len() as u64) >> 32;
        let low = hash as u32;
        let masks = SALTS.map(|salt| 1u32 << (low.wrapping_mul(salt) >> 27));
        (&self.blocks[block as usize], masks)
    }

    /// Adds `keys`, prefetching ahead so that their misses overlap.
    pub fn insert_all(&self, keys: &[i64]) {
        let _writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        for (i, &key) in keys.iter().enumerate() {
            if let Some(&ahead) = keys.get(i + PREFETCH_AHEAD) {
                self.prefetch(ahead);
            }
            let (block, masks) = self.place(Self::hash(key));
            for (word, mask) in block.0.iter().zip(masks) {
                word.store(word.load(Ordering::Relaxed) | mask, Ordering::Relaxed);
            }
        }
        self.inserted
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
    }

    /// Starts loading the block `may_contain(key)` reads.
    #[inline]
    pub fn prefetch(&self, key: i64) {
        crate::mem::prefetch(self.place(Self::hash(key)).0);
    }

    /// Whether the cold tier may hold `key` (no false negatives for keys inserted).
    #[inline]
    pub fn may_contain(&self, key: i64) -> bool {
        let (block, masks) = self.place(Self::hash(key));
        block
            .0
            .iter()
            .zip(masks)
            .all(|(word, mask)| word.load(Ordering::Relaxed) & mask != 0)
    }

    /// Whether adding `more` keys would pass the capacity (the caller rebuilds instead).
    pub fn would_overflow(&self, more: u64) -> bool {
        self.inserted.load(Ordering::Relaxed).saturating_add(more) > self.capacity
    }

    pub fn memory_bytes(&self) -> usize {
        self.blocks.len() * std::mem::size_of::<Block>()
    }

    /// Builds a filter of every key of `segments` plus `extra` (the flush's keys), with no
    /// lock held: the segments are immutable and their files stay open while the `Arc`s
    /// live, even if a compaction unlists them meanwhile.
    /// It serves `segments` and the flush's own segment, and is sized for a quarter more
    /// segments than that (see [`bits_per_key`]).
    pub fn build(segments: &[Arc<Segment>], pk: usize, extra: &[i64]) -> Result<ColdKeyFilter> {
        let rows: u64 = segments.iter().map(|s| s.meta.row_count).sum::<u64>() + extra.len() as u64;
        let serves = ((segments.len() + 1) as f64 * HEADROOM).ceil() as usize;
        let filter = ColdKeyFilter::for_keys(rows, bits_per_key(serves));
        for segment in segments {
            add_segment_keys(&filter, &segment.reader, &segment.index, pk)?;
        }
        filter.insert_all(extra);
        crate::probe!(ColdKeyFilterBuilt);
        Ok(filter)
    }
}

/// Keys a prefetch runs ahead of the insert or probe that uses it.
pub(crate) const PREFETCH_AHEAD: usize = 16;

/// The false-positive rate of a filter at `bits` bits a key: a block holds a Poisson
/// number of keys (256 / `bits` on average), and a key absent from a block with `n` keys
/// finds each of its eight bits set with probability 1 - (31/32)^n.
pub(crate) fn false_positive_rate(bits: u32) -> f64 {
    let mean = 256.0 / f64::from(bits.max(1));
    let (mut p_n, mut rate) = ((-mean).exp(), 0.0);
    // Terms past eight times the mean add nothing a build's choice could notice.
    for n in 0..(mean * 8.0) as u32 + 16 {
        if n > 0 {
            p_n *= mean / f64::from(n);
        }
        rate += p_n * (1.0 - (31.0f64 / 32.0).powi(n as i32)).powi(WORDS as i32);
    }
    rate
}

/// Bits a key for a filter that serves `segments` segments: the fewest from
/// [`BITS_PER_KEY_MIN`] whose false positives send a new key to at most
/// [`SEGMENT_PROBES_MAX`] segment filters on average, capped at [`BITS_PER_KEY_MAX`].
pub(crate) fn bits_per_key(segments: usize) -> u32 {
    (BITS_PER_KEY_MIN..BITS_PER_KEY_MAX)
        .find(|&bits| false_positive_rate(bits) * segments as f64 <= SEGMENT_PROBES_MAX)
        .unwrap_or(BITS_PER_KEY_MAX)
}

/// Adds every key of one segment, page by page.
fn add_segment_keys(
    filter: &ColdKeyFilter,
    reader: &SegmentReader,
    index: &SegmentIndex,
    pk: usize,
) -> Result<()> {
    for page in 0..index.key_pages.len() {
        // Delta-packed key pages (how the engine writes keys) decode here without parquet's
        // column reader; any other shape goes through it.
        let keys = match reader.key_page_values(index, pk, page)? {
            Some(values) => {
                let rows = index.page_rows(page);
                crate::cold::delta::decode_all(&values, (rows.end - rows.start) as usize).map_err(
                    |reason| {
                        crate::error::Error::corruption(
                            reader.path.as_ref(),
                            0,
                            format!("key page {page}: {reason}"),
                        )
                    },
                )?
            }
            None => reader.read_key_page(index, pk, page)?,
        };
        filter.insert_all(&keys);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let filter = ColdKeyFilter::for_keys(100_000, 6);
        let keys: Vec<i64> = (0..100_000i64)
            .map(|i| i.wrapping_mul(0x9e37_79b9))
            .collect();
        filter.insert_all(&keys);
        assert!(keys.iter().all(|&k| filter.may_contain(k)));
        let false_positives = (0..100_000i64)
            .map(|i| i.wrapping_mul(0x9e37_79b9) + 1)
            .filter(|&k| filter.may_contain(k))
            .count();
        // 7.5 bits a key in 256-bit blocks: a few percent.
        assert!(false_positives < 6_000, "{false_positives} false positives");
        assert!(!filter.would_overflow(25_000) && filter.would_overflow(25_001));
    }

    #[test]
    fn the_modelled_false_positive_rate_is_the_measured_one() {
        for bits in [6, 8, 11, 14] {
            // Filled to capacity: the rate a build plans for is the rate at its end.
            let filter = ColdKeyFilter::for_keys(80_000, bits);
            let keys: Vec<i64> = (0..100_000i64).map(|i| i * 7 + 3).collect();
            filter.insert_all(&keys);
            assert!(keys.iter().all(|&k| filter.may_contain(k)));
            let probes = 400_000i64;
            let passed = (0..probes)
                .filter(|&i| filter.may_contain(i * 7 + 5))
                .count();
            let measured = passed as f64 / probes as f64;
            let modelled = false_positive_rate(bits);
            assert!(
                (measured - modelled).abs() <= modelled * 0.2 + 0.0003,
                "{bits} bits: measured {measured:.5}, modelled {modelled:.5}"
            );
        }
    }

    #[test]
    fn more_segments_get_more_bits_and_the_probes_stay_bounded() {
        assert_eq!(bits_per_key(1), BITS_PER_KEY_MIN);
        assert_eq!(bits_per_key(13), BITS_PER_KEY_MIN);
        assert_eq!(bits_per_key(150), 11);
        let mut last = 0;
        for segments in 1..=600 {
            let bits = bits_per_key(segments);
            assert!(
                bits >= last,
                "{segments} segments: {bits} bits after {last}"
            );
            assert!(
                false_positive_rate(bits) * segments as f64 <= SEGMENT_PROBES_MAX,
                "{segments} segments at {bits} bits"
            );
            last = bits;
        }
        assert_eq!(bits_per_key(100_000), BITS_PER_KEY_MAX);
    }

    #[test]
    fn a_key_touches_one_block() {
        let filter = ColdKeyFilter::for_keys(10_000, 6);
        for key in [0i64, 1, -1, 42, i64::MIN, i64::MAX, 123_456_789] {
            let before: Vec<u32> = words(&filter);
            filter.insert_all(&[key]);
            let after: Vec<u32> = words(&filter);
            let changed: Vec<usize> = (0..before.len())
                .filter(|&i| before[i] != after[i])
                .collect();
            assert!(
                changed.iter().all(|&w| w / WORDS == changed[0] / WORDS),
                "key {key}: {changed:?}"
            );
            assert!(filter.may_contain(key));
        }
    }

    fn words(filter: &ColdKeyFilter) -> Vec<u32> {
        filter
            .blocks
            .iter()
            .flat_map(|b| b.0.iter().map(|w| w.load(Ordering::Relaxed)))
            .collect()
    }
}
