//! The cold tier of one table: immutable, key-sorted Parquet segments, each with a sidecar
//! index and a deletion vector.
//!
//! **Flush** moves the hot tier's lowest-key rows into a new segment (lowest key, not
//! oldest insert: the index hands them over already sorted, and for the time-ordered keys an
//! HTAP table usually has, the lowest keys are the oldest rows). The Parquet file and its
//! sidecar index (crate::cold::index) are written as `<name>.tmp`, synced, read back and
//! checked, renamed, and the `cold/` directory synced; only then does the table forget
//! those hot rows and list the segment. The manifest (the segments' ids, key ranges, row
//! counts, LSNs, the sizes and CRC-32C of both files, and each deletion vector) is part of
//! the checkpoint, which is itself written atomically: a crash before the checkpoint lands
//! leaves unlisted files that the next open removes, while the log still holds the rows.
//!
//! **Visibility.** A key may sit in several segments (an update re-inserts the row in the
//! hot tier, which a later flush moves to a newer segment), but at most one of its versions
//! is visible: each segment carries a **deletion vector**, a roaring bitmap of the row
//! positions hidden by an update (the new version lives in the hot tier, later in a newer
//! segment) or a delete. The bit is set when the write applies, so the rule "a version is
//! visible unless its bit is set" never needs the hot tier or the other segments: a scan of
//! an insert-only table reads its columns and nothing else. Invariant: for every key, at
//! most one visible version across the hot tier and all segments.
//!
//! **Membership and point reads.** Nothing per cold key is in memory but the segment's
//! membership filter (about 1.13 bytes a key): an insert of a key a segment does not hold
//! costs one filter probe per segment and no I/O, except for the filter's false positives
//! (about 0.4%), which read one key page. A point read probes the filters newest first,
//! binary-searches the key page directory in memory, decodes one key page (kept in a
//! byte-bounded cache of decoded key pages shared by the table's segments), and then reads
//! the row's page of each other column.
//!
//! **Scans** stream ([`ColdScan`]): they hold `Arc`s of the segments and a copy of each
//! deletion vector (copy on write: a snapshot costs a reference count until a write changes
//! the bitmap), not the table's lock. A range scan decodes the key column only at its two
//! edges (to find the first and last row) and reads only the projected columns of the row
//! groups in between, with the deleted rows deselected.
//!
//! Invariants (`check_invariants`): segment ids ascend and stay below `next_segment_id`;
//! each deletion vector lies inside its segment; `visible_rows` is the sum over segments of
//! rows minus deleted ones.

pub(crate) mod columns;
pub(crate) mod compact;
pub(crate) mod delta;
pub(crate) mod index;
pub(crate) mod keyfilter;
pub(crate) mod pages;
pub(crate) mod prune;
pub(crate) mod segment;

use crate::codec::{DecodeResult, Decoder, Encoder};
use crate::env::{Fs, OpenMode};
use crate::error::{Error, Result};
use crate::rowstore::RowValues;
use crate::schema::{Row, TableDef};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use columns::SegmentColumns;
use index::SegmentIndex;
use keyfilter::ColdKeyFilter;
use roaring::RoaringBitmap;
use segment::SegmentReader;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Directory of segment files, under the database root.
pub(crate) const COLD_DIR: &str = "cold";

/// Bytes of decoded key pages a table keeps cached (8 KiB each).
pub(crate) const KEY_PAGE_CACHE_BYTES_MAX: usize = 64 << 20;

/// Largest deletion vector the manifest accepts, serialised (a bitmap of every row of a
/// segment of `u32::MAX` rows is about 512 MiB; this bounds what a damaged length makes
/// the loader allocate).
const DELETION_VECTOR_BYTES_MAX: u64 = 1 << 30;

/// What the manifest says of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub id: u64,
    pub key_min: i64,
    pub key_max: i64,
    pub row_count: u64,
    /// Every write to the rows of this segment has an LSN at most this.
    pub lsn: u64,
    /// Length and CRC-32C of the Parquet file.
    pub size_bytes: u64,
    pub crc32c: u32,
    /// Length and CRC-32C of the sidecar index.
    pub index_size_bytes: u64,
    pub index_crc32c: u32,
}

impl SegmentMeta {
    pub fn encode(&self, enc: &mut Encoder) {
        enc.u64(self.id);
        enc.i64(self.key_min);
        enc.i64(self.key_max);
        enc.u64(self.row_count);
        enc.u64(self.lsn);
        enc.u64(self.size_bytes);
        enc.u32(self.crc32c);
        enc.u64(self.index_size_bytes);
        enc.u32(self.index_crc32c);
    }

    pub fn decode(dec: &mut Decoder<'_>) -> DecodeResult<SegmentMeta> {
        let mut meta = SegmentMeta::decode_v2(dec)?;
        meta.index_size_bytes = dec.u64()?;
        meta.index_crc32c = dec.u32()?;
        Ok(meta)
    }

    /// A version-2 checkpoint's entry: the fields before the index's (which stay 0 until
    /// [`migrate_legacy`] writes the index).
    pub fn decode_v2(dec: &mut Decoder<'_>) -> DecodeResult<SegmentMeta> {
        let meta = SegmentMeta {
            id: dec.u64()?,
            key_min: dec.i64()?,
            key_max: dec.i64()?,
            row_count: dec.u64()?,
            lsn: dec.u64()?,
            size_bytes: dec.u64()?,
            crc32c: dec.u32()?,
            index_size_bytes: 0,
            index_crc32c: 0,
        };
        if meta.key_min > meta.key_max || meta.row_count == 0 || meta.row_count > u32::MAX as u64 {
            return Err(dec.error(format!(
                "segment {}: key range {}..={} or row count {} is impossible",
                meta.id, meta.key_min, meta.key_max, meta.row_count
            )));
        }
        Ok(meta)
    }
}

/// Encodes a deletion vector for the manifest: `len u32` then roaring's portable format.
pub(crate) fn encode_deleted(deleted: &RoaringBitmap, enc: &mut Encoder) -> Result<()> {
    let mut bytes = Vec::with_capacity(deleted.serialized_size());
    deleted
        .serialize_into(&mut bytes)
        .map_err(|e| Error::io("encode deletion vector", COLD_DIR, e))?;
    enc.u32(bytes.len() as u32);
    enc.bytes.extend_from_slice(&bytes);
    Ok(())
}

/// Decodes a deletion vector of a segment of `row_count` rows.
pub(crate) fn decode_deleted(dec: &mut Decoder<'_>, row_count: u64) -> DecodeResult<RoaringBitmap> {
    let len = dec.u32()?;
    if u64::from(len) > DELETION_VECTOR_BYTES_MAX {
        return Err(dec.error(format!("deletion vector of {len} bytes")));
    }
    let bytes = dec.take(len as usize)?;
    let deleted = RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| dec.error(format!("unreadable deletion vector: {e}")))?;
    if deleted.max().is_some_and(|m| u64::from(m) >= row_count) {
        return Err(dec.error(format!(
            "deletion vector names a row past the segment's {row_count}"
        )));
    }
    Ok(deleted)
}

/// The file name of segment `segment_id` of table `table_id`.
pub(crate) fn file_name(table_id: u32, segment_id: u64) -> String {
    format!("{table_id:010}-{segment_id:020}.parquet")
}

/// The file name of the sidecar index of segment `segment_id` of table `table_id`.
pub(crate) fn index_file_name(table_id: u32, segment_id: u64) -> String {
    format!("{table_id:010}-{segment_id:020}.idx")
}

/// Opens a file of a segment the manifest lists, for reading. The manifest is durable only
/// once its files are, so a missing one is damage at rest (`Corruption` naming it), not an
/// I/O error to retry; every other failure is the I/O error it is.
fn open_listed(fs: &dyn Fs, path: &Path, op: &'static str) -> Result<Box<dyn crate::env::File>> {
    fs.open(path, OpenMode::Read).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::corruption(path, 0, "missing: the checkpoint's cold manifest lists it")
        } else {
            Error::io(op, path, e)
        }
    })
}

/// One listed segment: its manifest entry, its index and its open file.
pub(crate) struct Segment {
    pub meta: SegmentMeta,
    index: SegmentIndex,
    reader: SegmentReader,
    index_path: PathBuf,
}

impl Segment {
    /// Opens a segment listed in the manifest: reads its sidecar index whole and checks it
    /// against the manifest, then reads the Parquet file's tail (checked against the
    /// index). The data pages are not read; each is checked when a read needs it.
    pub fn load(
        fs: &dyn Fs,
        dir: &Path,
        table_id: u32,
        meta: SegmentMeta,
        def: &TableDef,
    ) -> Result<Segment> {
        let index_path = dir.join(index_file_name(table_id, meta.id));
        let file = open_listed(fs, &index_path, "open segment index")?;
        let bytes = file
            .read_all()
            .map_err(|e| Error::io("read segment index", &index_path, e))?;
        drop(file);
        let corrupt = |reason: String| Error::corruption(&index_path, 0, reason);
        if bytes.len() as u64 != meta.index_size_bytes {
            return Err(corrupt(format!(
                "segment index is {} bytes, the manifest says {}",
                bytes.len(),
                meta.index_size_bytes
            )));
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != meta.index_crc32c {
            return Err(corrupt(format!(
                "checksum {crc:#010x} != manifest's {:#010x}",
                meta.index_crc32c
            )));
        }
        let index = SegmentIndex::decode(&bytes)
            .map_err(|e| Error::corruption(&index_path, e.offset as u64, e.reason))?;
        Segment::open(fs, dir, table_id, meta, index, def)
    }

    fn open(
        fs: &dyn Fs,
        dir: &Path,
        table_id: u32,
        meta: SegmentMeta,
        index: SegmentIndex,
        def: &TableDef,
    ) -> Result<Segment> {
        let meta_id = meta.id;
        let path = dir.join(file_name(table_id, meta.id));
        // The index is what disagrees with the manifest here: name it.
        let index_path = dir.join(index_file_name(table_id, meta_id));
        let corrupt = |reason: String| Error::corruption(&index_path, 0, reason);
        if index.row_count != meta.row_count
            || index.data_size_bytes != meta.size_bytes
            || index.data_crc32c != meta.crc32c
        {
            return Err(corrupt(
                "the segment's index disagrees with the manifest on rows, size or checksum".into(),
            ));
        }
        if index.key_pages.first().map(|p| p.first_key) != Some(meta.key_min)
            || index
                .key_pages
                .last()
                .is_some_and(|p| p.first_key > meta.key_max)
        {
            return Err(corrupt(format!(
                "key pages do not fit the manifest's range {}..={}",
                meta.key_min, meta.key_max
            )));
        }
        let file = open_listed(fs, &path, "open segment")?;
        let reader = SegmentReader::open(&path, Arc::from(file), &index)?;
        let corrupt = |reason: String| Error::corruption(&path, 0, reason);
        let expected = segment::arrow_schema(def);
        let found = reader.metadata.schema();
        if found.fields().len() != expected.fields().len()
            || found
                .fields()
                .iter()
                .zip(expected.fields())
                .any(|(a, b)| a.name() != b.name() || a.data_type() != b.data_type())
        {
            return Err(corrupt(format!(
                "schema {found:?} is not the table's {expected:?}"
            )));
        }
        Ok(Segment {
            meta,
            index,
            reader,
            index_path,
        })
    }

    /// The path of the segment's sidecar index.
    pub fn index_path(&self) -> &Path {
        &self.index_path
    }

    pub fn path(&self) -> &Path {
        &self.reader.path
    }

    fn covers(&self, key: i64) -> bool {
        key >= self.meta.key_min && key <= self.meta.key_max
    }

    /// Reads the whole segment: its bytes against the index's CRC, its key column against
    /// the manifest (ascending, the listed range and count) and the filter (no false
    /// negative), every page through its region CRC. Returns the rows checked.
    fn verify(&self, def: &TableDef) -> Result<u64> {
        let bytes = self.reader.verify_bytes(&self.index)?;
        let corrupt = |reason: String| Error::corruption(self.path(), 0, reason);
        let pk = def.primary_key_index();
        let all: Vec<usize> = (0..def.columns().len()).collect();
        let groups = (0..self.reader.row_groups()).collect();
        let mut keys: Vec<i64> = Vec::with_capacity(self.meta.row_count as usize);
        for batch in self.reader.batches(&all, groups, None)? {
            let batch = batch?;
            let column = segment::key_values(batch.column(pk).as_ref())
                .ok_or_else(|| corrupt("key column is not Int64".into()))?;
            keys.extend_from_slice(column);
        }
        if keys.len() as u64 != self.meta.row_count {
            return Err(corrupt(format!(
                "{} rows, the manifest says {}",
                keys.len(),
                self.meta.row_count
            )));
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("keys are not strictly ascending".into()));
        }
        if keys.first() != Some(&self.meta.key_min) || keys.last() != Some(&self.meta.key_max) {
            return Err(corrupt(format!(
                "key range {:?}..{:?} is not the manifest's {}..{}",
                keys.first(),
                keys.last(),
                self.meta.key_min,
                self.meta.key_max
            )));
        }
        if let Some(&missing) = keys.iter().find(|&&k| !self.index.may_contain(k)) {
            return Err(corrupt(format!("the filter misses key {missing}")));
        }
        let rebuilt = segment::index_of(def, &bytes, &keys).map_err(corrupt)?;
        if rebuilt.key_pages != self.index.key_pages
            || rebuilt.region_crcs != self.index.region_crcs
        {
            return Err(corrupt(
                "the index's key pages or checksums do not match the file".into(),
            ));
        }
        Ok(keys.len() as u64)
    }
}

/// Where the visible cold version of a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ColdPosition {
    /// Index into the tier's segments (stable while the state lock is held).
    pub segment: usize,
    /// Row of the segment.
    pub row: u32,
}

/// A key page: (segment id, page number).
type PageId = (u64, u32);

/// A cached key page.
#[derive(Clone)]
enum CachedKeys {
    /// The page's `DELTA_BINARY_PACKED` values (about a byte a key), checked against their
    /// CRC when read, searched in place by crate::cold::delta.
    Packed { values: bytes::Bytes, count: usize },
    /// Keys decoded by parquet's reader (a page of another shape), checked ascending.
    Decoded(Arc<[i64]>),
}

impl CachedKeys {
    fn size_bytes(&self) -> usize {
        match self {
            CachedKeys::Packed { values, .. } => values.len(),
            CachedKeys::Decoded(keys) => keys.len() * 8,
        }
    }
}

/// Key pages, by (segment id, page), evicted least recently used first once their bytes
/// pass the limit. Deterministic: ordered maps and a use counter, no clock. Pages are kept
/// packed, so 64 MiB holds the keys of about 60M cold rows.
#[derive(Default)]
struct KeyPageCache {
    /// (segment id, page) -> the page and its last use.
    pages: BTreeMap<PageId, (CachedKeys, u64)>,
    by_use: BTreeMap<u64, PageId>,
    uses: u64,
    bytes: usize,
}

impl KeyPageCache {
    fn get(&mut self, key: PageId) -> Option<CachedKeys> {
        let (page, used) = self.pages.get_mut(&key)?;
        self.by_use.remove(used);
        self.uses += 1;
        *used = self.uses;
        self.by_use.insert(self.uses, key);
        Some(page.clone())
    }

    fn insert(&mut self, key: PageId, page: CachedKeys) {
        self.uses += 1;
        self.bytes += page.size_bytes();
        if let Some((old, used)) = self.pages.insert(key, (page, self.uses)) {
            self.bytes -= old.size_bytes();
            self.by_use.remove(&used);
        }
        self.by_use.insert(self.uses, key);
        while self.bytes > KEY_PAGE_CACHE_BYTES_MAX {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((page, _)) = self.pages.remove(&oldest) {
                self.bytes -= page.size_bytes();
            }
        }
    }

    /// Drops the pages of segments no longer listed.
    fn retain(&mut self, live: impl Fn(u64) -> bool) {
        let dead: Vec<(u64, u32)> = self
            .pages
            .keys()
            .filter(|(segment, _)| !live(*segment))
            .copied()
            .collect();
        for key in dead {
            if let Some((page, used)) = self.pages.remove(&key) {
                self.bytes -= page.size_bytes();
                self.by_use.remove(&used);
            }
        }
    }
}

/// How many keys ahead [`ColdTier::smallest_present`] prefetches filter slots: three misses
/// a key, so about 24 lines in flight.
const FILTER_PREFETCH_AHEAD: usize = 8;

/// The cold tier of one table.
#[derive(Default)]
pub(crate) struct ColdTier {
    /// By id ascending (oldest first).
    segments: Vec<Arc<Segment>>,
    /// Each segment's deletion vector (same order). Shared with scans until changed.
    deleted: Vec<Arc<RoaringBitmap>>,
    /// Taken (under the read lock, by a compaction) with `fetch_add`: ids are unique even
    /// when a flush and a compaction write segments at once.
    next_segment_id: std::sync::atomic::AtomicU64,
    /// Rows visible in the cold tier: rows minus deleted ones.
    visible_rows: usize,
    key_pages: Mutex<KeyPageCache>,
    /// The filter of every cold key (`keyfilter.rs`): built by flushes once the tier has
    /// `keyfilter::SEGMENTS_MIN` segments, absent after open until a flush builds it.
    key_filter: Option<Arc<ColdKeyFilter>>,
}

/// What a flush does to its table's cold-key filter (`keyfilter.rs`), decided when it
/// copies its rows and carried out with no lock held.
pub(crate) enum KeyFilterPlan {
    /// The tier has too few segments for the filter to pay, and none is built.
    Skip,
    /// Add the flush's keys to the tier's filter (they fit its capacity).
    Add(Arc<ColdKeyFilter>),
    /// Build a new filter from these segments' keys and the flush's.
    Build(Vec<Arc<Segment>>),
}

impl ColdTier {
    pub fn segments(&self) -> impl Iterator<Item = &SegmentMeta> + '_ {
        self.segments.iter().map(|s| &s.meta)
    }

    /// Each segment's manifest entry and deletion vector, owned (the vectors shared): what
    /// a checkpoint encodes with no lock held.
    pub fn manifest_shared(&self) -> Vec<(SegmentMeta, Arc<RoaringBitmap>)> {
        self.segments
            .iter()
            .zip(&self.deleted)
            .map(|(s, d)| (s.meta.clone(), Arc::clone(d)))
            .collect()
    }

    pub fn next_segment_id(&self) -> u64 {
        self.next_segment_id
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the next segment id.
    pub fn reserve_id(&self) -> u64 {
        self.next_segment_id
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel)
    }

    pub fn visible_rows(&self) -> usize {
        self.visible_rows
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes of memory the cold tier keeps for its rows: filters, key page directories,
    /// region checksums and deletion vectors (not the Parquet footers, nor the key page
    /// cache, which is bounded by [`KEY_PAGE_CACHE_BYTES_MAX`]).
    pub fn memory_bytes(&self) -> usize {
        self.segments
            .iter()
            .map(|s| s.index.memory_bytes())
            .sum::<usize>()
            + self.key_filter.as_ref().map_or(0, |f| f.memory_bytes())
            + self
                .deleted
                .iter()
                .map(|d| d.serialized_size())
                .sum::<usize>()
    }

    /// Key page `page` of segment `i`, from the cache or the file.
    fn cached_key_page(&self, i: usize, page: usize, pk: usize) -> Result<CachedKeys> {
        let segment = &self.segments[i];
        let cache_key = (segment.meta.id, page as u32);
        if let Some(keys) = self
            .key_pages
            .lock()
            .ok()
            .and_then(|mut c| c.get(cache_key))
        {
            return Ok(keys);
        }
        let index = &segment.index;
        let keys = match segment.reader.key_page_values(index, pk, page)? {
            Some(values) => CachedKeys::Packed {
                values,
                count: {
                    let rows = index.page_rows(page);
                    (rows.end - rows.start) as usize
                },
            },
            None => {
                let keys: Arc<[i64]> = segment.reader.read_key_page(index, pk, page)?.into();
                if keys.windows(2).any(|w| w[0] >= w[1])
                    || keys.first() != Some(&index.key_pages[page].first_key)
                {
                    return Err(Error::corruption(
                        segment.path(),
                        0,
                        format!("key page {page} is not ascending from its listed first key"),
                    ));
                }
                CachedKeys::Decoded(keys)
            }
        };
        if let Ok(mut cache) = self.key_pages.lock() {
            cache.insert(cache_key, keys.clone());
        }
        Ok(keys)
    }

    /// The keys of key page `page` of segment `i`, decoded.
    fn key_page(&self, i: usize, page: usize, pk: usize) -> Result<Arc<[i64]>> {
        match self.cached_key_page(i, page, pk)? {
            CachedKeys::Decoded(keys) => Ok(keys),
            CachedKeys::Packed { values, count } => {
                let segment = &self.segments[i];
                let corrupt = |reason: String| {
                    Error::corruption(segment.path(), 0, format!("key page {page}: {reason}"))
                };
                let keys = delta::decode_all(&values, count).map_err(corrupt)?;
                if keys.windows(2).any(|w| w[0] >= w[1])
                    || keys.first() != Some(&segment.index.key_pages[page].first_key)
                {
                    return Err(corrupt("not ascending from its listed first key".into()));
                }
                Ok(keys.into())
            }
        }
    }

    /// The row of `key` in segment `i`, if it holds it (visible or not).
    fn row_in(&self, i: usize, key: i64, pk: usize) -> Result<Option<u32>> {
        let segment = &self.segments[i];
        if !segment.covers(key) || !segment.index.may_contain(key) {
            return Ok(None);
        }
        let Some(page) = segment.index.page_of(key) else {
            return Ok(None);
        };
        let listed = &segment.index.key_pages[page];
        let at = match self.cached_key_page(i, page, pk)? {
            CachedKeys::Decoded(keys) => keys.binary_search(&key).ok(),
            CachedKeys::Packed { values, count } => {
                delta::search(&values, count, listed.first_key, key)
                    .map_err(|reason| {
                        Error::corruption(segment.path(), 0, format!("key page {page}: {reason}"))
                    })?
                    .ok()
            }
        };
        Ok(at.map(|at| (listed.first_row + at as u64) as u32))
    }

    /// The smallest of `sorted` (ascending keys) with a visible cold row, if any: the
    /// duplicate check of a batch insert. Segment by segment, only the keys in its range,
    /// with the filter slots of the keys a few places ahead prefetched, so that a batch's
    /// filter misses overlap (a filter per segment, each larger than the caches once
    /// segments hold millions of rows).
    pub fn smallest_present(&self, def: &TableDef, sorted: &[i64]) -> Result<Option<i64>> {
        let Some(filter) = &self.key_filter else {
            return self.smallest_present_in_segments(def, sorted);
        };
        // One probe of the tier's filter a key; the few keys it passes (false positives and
        // true duplicates) take the per-segment path.
        let mut passed = Vec::new();
        for (j, &key) in sorted.iter().enumerate() {
            if let Some(&ahead) = sorted.get(j + keyfilter::PREFETCH_AHEAD) {
                filter.prefetch(ahead);
            }
            if filter.may_contain(key) {
                passed.push(key);
            }
        }
        if passed.is_empty() {
            return Ok(None);
        }
        self.smallest_present_in_segments(def, &passed)
    }

    /// [`ColdTier::smallest_present`] through every segment's own filter.
    fn smallest_present_in_segments(&self, def: &TableDef, sorted: &[i64]) -> Result<Option<i64>> {
        let pk = def.primary_key_index();
        let mut smallest: Option<i64> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            let from = sorted.partition_point(|&k| k < segment.meta.key_min);
            let to = sorted.partition_point(|&k| k <= segment.meta.key_max);
            let keys = &sorted[from..to.max(from)];
            for (j, &key) in keys.iter().enumerate() {
                if smallest.is_some_and(|s| key >= s) {
                    break;
                }
                if let Some(&ahead) = keys.get(j + FILTER_PREFETCH_AHEAD) {
                    segment.index.prefetch_filter(ahead);
                }
                if !segment.index.may_contain(key) {
                    continue;
                }
                if let Some(row) = self.row_in(i, key, pk)? {
                    if !self.deleted[i].contains(row) {
                        smallest = Some(key);
                        break;
                    }
                }
            }
        }
        Ok(smallest)
    }

    /// Where the visible cold version of `key` is, if there is one.
    pub fn find(&self, def: &TableDef, key: i64) -> Result<Option<ColdPosition>> {
        if self
            .key_filter
            .as_ref()
            .is_some_and(|f| !f.may_contain(key))
        {
            return Ok(None);
        }
        let pk = def.primary_key_index();
        // With keys spread over every segment, a get probes the filters of most of them:
        // ask for all their slots first, so those misses overlap instead of queueing.
        for segment in self.segments.iter().filter(|s| s.covers(key)) {
            segment.index.prefetch_filter(key);
        }
        for i in (0..self.segments.len()).rev() {
            if let Some(row) = self.row_in(i, key, pk)? {
                if !self.deleted[i].contains(row) {
                    return Ok(Some(ColdPosition { segment: i, row }));
                }
            }
        }
        Ok(None)
    }

    /// Reads the visible cold version of `key`.
    pub fn get(&self, def: &TableDef, key: i64) -> Result<Option<Row>> {
        let Some(position) = self.find(def, key)? else {
            return Ok(None);
        };
        let segment = &self.segments[position.segment];
        segment
            .reader
            .read_row(def, u64::from(position.row), key)
            .map(Some)
    }

    /// Hides the cold version at `position` (found by [`ColdTier::find`] under the same
    /// lock): an update moved the key to the hot tier, or a delete removed it.
    pub fn hide(&mut self, position: ColdPosition) {
        let deleted = Arc::make_mut(&mut self.deleted[position.segment]);
        let inserted = deleted.insert(position.row);
        debug_assert!(inserted, "row {} hidden twice", position.row);
        if inserted {
            self.visible_rows -= 1;
        }
    }

    /// Writes `rows` (strictly ascending keys, valid for `def`) as a new segment in `dir`,
    /// durably: its Parquet file and its sidecar index; the tier lists it only when
    /// [`ColdTier::add`] is called.
    /// Segment `id` is reserved by the caller ([`ColdTier::reserve_id`]); the write needs no
    /// access to the tier, so a flush runs it with no lock held.
    pub fn write_segment<'r, R: RowValues<'r> + Sync>(
        env: &crate::env::Env,
        dir: &Path,
        table_id: u32,
        def: &TableDef,
        rows: &[R],
        lsn: u64,
        id: u64,
    ) -> Result<Segment> {
        let pk = def.primary_key_index();
        let key_of = |row: Option<&R>| row.and_then(|r| r.value(pk).as_i64());
        let (Some(key_min), Some(key_max)) = (key_of(rows.first()), key_of(rows.last())) else {
            return Err(Error::EmptyBatch {
                table: def.name().to_string(),
            });
        };
        if rows.len() as u64 > u64::from(u32::MAX) {
            return Err(Error::LimitExceeded {
                what: "rows in one cold segment",
                size: rows.len(),
                limit: u32::MAX as usize,
            });
        }
        let fs = env.fs.as_ref();
        let encoded = segment::encode(def, rows, env.spawner.as_ref())?;
        let index_bytes = encoded.index.encode();
        let meta = SegmentMeta {
            id,
            key_min,
            key_max,
            row_count: rows.len() as u64,
            lsn,
            size_bytes: encoded.bytes.len() as u64,
            crc32c: encoded.index.data_crc32c,
            index_size_bytes: index_bytes.len() as u64,
            index_crc32c: crc32c::crc32c(&index_bytes),
        };
        let data_path = dir.join(file_name(table_id, id));
        let index_path = dir.join(index_file_name(table_id, id));
        write_durable_temp(fs, &data_path, &encoded.bytes)?;
        write_durable_temp(fs, &index_path, &index_bytes)?;
        publish(fs, dir, &[&data_path, &index_path])?;
        Segment::open(fs, dir, table_id, meta, encoded.index, def)
    }

    /// The segments the next compaction step should merge, with snapshots of their
    /// deletion vectors (see `compact.rs` for the policy); `None` if there is no work.
    pub fn plan_compaction(
        &self,
        base_rows: u64,
    ) -> Option<Vec<(Arc<Segment>, Arc<RoaringBitmap>)>> {
        let sizes: Vec<(u64, u64)> = self
            .segments
            .iter()
            .zip(&self.deleted)
            .map(|(s, d)| (s.meta.row_count, d.len()))
            .collect();
        let picked = compact::plan(&sizes, base_rows)?;
        Some(
            picked
                .into_iter()
                .map(|i| (self.segments[i].clone(), self.deleted[i].clone()))
                .collect(),
        )
    }

    /// Compaction, first half (no lock held): merges the visible rows of `inputs` into a
    /// new segment `id` in `dir`, durably. `None` if no row was visible.
    pub fn write_merged(
        fs: &dyn Fs,
        dir: &Path,
        table_id: u32,
        def: &Arc<TableDef>,
        inputs: &[(Arc<Segment>, Arc<RoaringBitmap>)],
        id: u64,
    ) -> Result<Option<Segment>> {
        let data_path = dir.join(file_name(table_id, id));
        let index_path = dir.join(index_file_name(table_id, id));
        let temp = temp_path(&data_path);
        let file: Arc<dyn crate::env::File> = Arc::from(
            fs.open(&temp, OpenMode::Create)
                .map_err(|e| Error::io("create segment", &temp, e))?,
        );
        file.set_len(0)
            .map_err(|e| Error::io("write segment", &temp, e))?;
        let Some((index, key_min, key_max)) = compact::merge(def, inputs, file, &temp)? else {
            fs.remove(&temp)
                .map_err(|e| Error::io("remove segment", &temp, e))?;
            return Ok(None);
        };
        let index_bytes = index.encode();
        let meta = SegmentMeta {
            id,
            key_min,
            key_max,
            row_count: index.row_count,
            lsn: inputs.iter().map(|(s, _)| s.meta.lsn).max().unwrap_or(0),
            size_bytes: index.data_size_bytes,
            crc32c: index.data_crc32c,
            index_size_bytes: index_bytes.len() as u64,
            index_crc32c: crc32c::crc32c(&index_bytes),
        };
        write_durable_temp(fs, &index_path, &index_bytes)?;
        publish(fs, dir, &[&data_path, &index_path])?;
        Segment::open(fs, dir, table_id, meta, index, def).map(Some)
    }

    /// Compaction, second half (under the write lock): `merged` replaces `inputs` (as
    /// planned; each still listed, since only compaction removes segments and it runs one
    /// step at a time). A row hidden in an input after the plan's snapshot (an update or
    /// delete that ran during the merge) is hidden in `merged` too. Returns the paths of
    /// the replaced files, to remove once a checkpoint no longer lists them.
    pub fn install_merged(
        &mut self,
        def: &TableDef,
        inputs: &[(Arc<Segment>, Arc<RoaringBitmap>)],
        merged: Option<Segment>,
    ) -> Result<Vec<PathBuf>> {
        let pk = def.primary_key_index();
        let mut positions = Vec::with_capacity(inputs.len());
        for (segment, _) in inputs {
            let at = self
                .segments
                .iter()
                .position(|s| s.meta.id == segment.meta.id)
                .ok_or_else(|| {
                    Error::corruption(segment.path(), 0, "compaction input no longer listed")
                })?;
            positions.push(at);
        }
        // Keys hidden since the snapshot, to hide in the merged segment.
        let mut carried = Vec::new();
        for ((segment, before), &at) in inputs.iter().zip(&positions) {
            let now = &self.deleted[at];
            if now.len() == before.len() {
                continue;
            }
            for row in now.iter().filter(|r| !before.contains(*r)) {
                let page = segment
                    .index
                    .key_pages
                    .partition_point(|p| p.first_row <= u64::from(row))
                    .saturating_sub(1);
                let keys = self.key_page(at, page, pk)?;
                let within = (u64::from(row) - segment.index.key_pages[page].first_row) as usize;
                let key = *keys.get(within).ok_or_else(|| {
                    Error::corruption(segment.path(), 0, format!("row {row} past its key page"))
                })?;
                carried.push(key);
            }
        }
        let mut old = Vec::new();
        positions.sort_unstable();
        for &at in positions.iter().rev() {
            let segment = self.segments.remove(at);
            let deleted = self.deleted.remove(at);
            self.visible_rows -= (segment.meta.row_count - deleted.len()) as usize;
            old.push(segment.path().to_path_buf());
            old.push(segment.index_path.clone());
        }
        if let Some(segment) = merged {
            let id = segment.meta.id;
            let at = self.segments.partition_point(|s| s.meta.id < id);
            self.visible_rows += segment.meta.row_count as usize;
            self.segments.insert(at, Arc::new(segment));
            self.deleted.insert(at, Arc::new(RoaringBitmap::new()));
            for key in carried {
                crate::probe!(ColdHiddenDuringMerge);
                if let Some(row) = self.row_in(at, key, pk)? {
                    self.hide(ColdPosition { segment: at, row });
                }
            }
        }
        let live: Vec<u64> = self.segments.iter().map(|s| s.meta.id).collect();
        if let Ok(mut cache) = self.key_pages.lock() {
            cache.retain(|id| live.contains(&id));
        }
        Ok(old)
    }

    /// What a flush of `flushing` rows does to the cold-key filter (see [`KeyFilterPlan`]).
    pub fn key_filter_plan(&self, flushing: u64) -> KeyFilterPlan {
        match &self.key_filter {
            Some(filter) if !filter.would_overflow(flushing) => KeyFilterPlan::Add(filter.clone()),
            None if self.segments.len() + 1 < keyfilter::SEGMENTS_MIN => KeyFilterPlan::Skip,
            _ => KeyFilterPlan::Build(self.segments.clone()),
        }
    }

    /// Installs the outcome of a flush's [`KeyFilterPlan`], with its segment: a filter it
    /// built, or (`None`) none. A plan that added to the filter leaves it in place. Keeping a
    /// filter is only sound if it holds every listed key, so a built one replaces the old
    /// and a failed build drops the old one too.
    pub fn set_key_filter(&mut self, filter: Option<Arc<ColdKeyFilter>>) {
        self.key_filter = filter;
    }

    /// Removes the cold-key filter (checks take the per-segment path until one is set),
    /// returning it for the caller to drop after releasing the write lock.
    pub fn take_key_filter(&mut self) -> Option<Arc<ColdKeyFilter>> {
        self.key_filter.take()
    }

    /// Lists a segment whose rows just left the hot tier; returns its position. Segments
    /// stay in id order: a compaction that reserved a larger id may have installed its
    /// output while the flush wrote this one.
    pub fn add(&mut self, segment: Segment) -> usize {
        let id = segment.meta.id;
        debug_assert!(self.segments.iter().all(|s| s.meta.id != id));
        let at = self.segments.partition_point(|s| s.meta.id < id);
        self.visible_rows += segment.meta.row_count as usize;
        self.segments.insert(at, Arc::new(segment));
        self.deleted.insert(at, Arc::new(RoaringBitmap::new()));
        at
    }

    /// Restores from a checkpoint: the segments with their deletion vectors.
    pub fn restore(segments: Vec<(Segment, RoaringBitmap)>, next_segment_id: u64) -> ColdTier {
        let mut tier = ColdTier {
            next_segment_id: std::sync::atomic::AtomicU64::new(next_segment_id),
            ..ColdTier::default()
        };
        for (segment, deleted) in segments {
            tier.visible_rows += segment.meta.row_count as usize - deleted.len() as usize;
            tier.segments.push(Arc::new(segment));
            tier.deleted.push(Arc::new(deleted));
        }
        tier
    }

    /// A streaming scan of the visible cold rows with keys in the range, as Arrow batches of
    /// `columns` (table column indices), segment by segment (each in key order). It holds
    /// the segments and a snapshot of their deletion vectors, not the table.
    pub fn scan(
        &self,
        def: &Arc<TableDef>,
        lower: Bound<i64>,
        upper: Bound<i64>,
        columns: &[usize],
        pruning: prune::Pruning,
    ) -> ColdScan {
        let segments = self
            .segments
            .iter()
            .zip(&self.deleted)
            .filter(|(s, _)| overlaps(lower, upper, s.meta.key_min, s.meta.key_max))
            .map(|(s, d)| (s.clone(), d.clone()))
            .collect();
        let all = segment::arrow_schema(def);
        let schema = Arc::new(arrow_schema::Schema::new(
            columns
                .iter()
                .filter_map(|&c| all.fields().get(c).cloned())
                .collect::<Vec<_>>(),
        ));
        ColdScan {
            def: def.clone(),
            segments,
            next: 0,
            lower,
            upper,
            columns: columns.to_vec(),
            schema,
            current: None,
            pruning,
            pieces: std::collections::VecDeque::new(),
            row_groups_skipped: 0,
        }
    }

    /// Every visible cold row with key in the range, keyed.
    pub fn rows(
        &self,
        def: &Arc<TableDef>,
        lower: Bound<i64>,
        upper: Bound<i64>,
    ) -> Result<BTreeMap<i64, Row>> {
        let all: Vec<usize> = (0..def.columns().len()).collect();
        let mut rows = BTreeMap::new();
        let path = PathBuf::from(COLD_DIR);
        for batch in self.scan(def, lower, upper, &all, prune::Pruning::default()) {
            let batch = batch?;
            for i in 0..batch.num_rows() {
                let row = segment::batch_row(def, &batch, i, &path)?;
                if let Some(key) = def.key_of(&row) {
                    rows.insert(key, row);
                }
            }
        }
        Ok(rows)
    }

    /// Reads every listed segment whole and checks it (see `Segment::verify`). Returns the
    /// rows checked.
    pub fn verify(&self, def: &TableDef) -> Result<u64> {
        let mut rows = 0;
        for segment in &self.segments {
            rows += segment.verify(def)?;
        }
        Ok(rows)
    }

    pub fn check_invariants(&self, name: &str) -> std::result::Result<(), String> {
        for pair in self.segments.windows(2) {
            if pair[0].meta.id >= pair[1].meta.id {
                return Err(format!("table {name:?}: segment ids not ascending"));
            }
        }
        if self.segments.len() != self.deleted.len() {
            return Err(format!(
                "table {name:?}: a segment without a deletion vector"
            ));
        }
        let mut visible = 0usize;
        for (s, deleted) in self.segments.iter().zip(&self.deleted) {
            if s.meta.id >= self.next_segment_id() {
                return Err(format!("table {name:?}: segment id {} >= next", s.meta.id));
            }
            if deleted
                .max()
                .is_some_and(|m| u64::from(m) >= s.meta.row_count)
            {
                return Err(format!(
                    "table {name:?}: segment {} deletes a row past its end",
                    s.meta.id
                ));
            }
            if s.index.row_count != s.meta.row_count {
                return Err(format!(
                    "table {name:?}: segment {} index and manifest disagree on rows",
                    s.meta.id
                ));
            }
            visible += (s.meta.row_count - deleted.len()) as usize;
        }
        if visible != self.visible_rows {
            return Err(format!(
                "table {name:?}: {} visible cold rows counted, {visible} found",
                self.visible_rows
            ));
        }
        Ok(())
    }
}

/// Renames each of `paths`' temporary files (written durably) to its name, then syncs
/// `dir`: the files exist under their names from here on, listed or not.
fn publish(fs: &dyn Fs, dir: &Path, paths: &[&Path]) -> Result<()> {
    for path in paths {
        fs.rename(&temp_path(path), path)
            .map_err(|e| Error::io("rename segment", path, e))?;
    }
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync cold directory", dir, e))
}

/// `path` with `.tmp` appended.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `bytes` to `<path>.tmp`, syncs it and reads it back (a torn or misdirected write
/// shows here, before the file is named).
fn write_durable_temp(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<()> {
    let temp = temp_path(path);
    let file = fs
        .open(&temp, OpenMode::Create)
        .map_err(|e| Error::io("create segment", &temp, e))?;
    file.set_len(0)
        .and_then(|()| file.write_at(bytes, 0))
        .and_then(|()| file.sync())
        .map_err(|e| Error::io("write segment", &temp, e))?;
    let written = file
        .read_all()
        .map_err(|e| Error::io("read back segment", &temp, e))?;
    if written != bytes {
        return Err(Error::corruption(
            &temp,
            0,
            "segment read back differs from what was written",
        ));
    }
    Ok(())
}

fn overlaps(lower: Bound<i64>, upper: Bound<i64>, min: i64, max: i64) -> bool {
    (match lower {
        Bound::Included(l) => max >= l,
        Bound::Excluded(l) => max > l,
        Bound::Unbounded => true,
    }) && (match upper {
        Bound::Included(u) => min <= u,
        Bound::Excluded(u) => min < u,
        Bound::Unbounded => true,
    })
}

/// A streaming scan of the cold tier (see [`ColdTier::scan`]).
pub(crate) struct ColdScan {
    def: Arc<TableDef>,
    segments: Vec<(Arc<Segment>, Arc<RoaringBitmap>)>,
    next: usize,
    lower: Bound<i64>,
    upper: Bound<i64>,
    columns: Vec<usize>,
    /// The Arrow schema of `columns`.
    schema: SchemaRef,
    current: Option<SegmentColumns>,
    /// Row groups whose statistics rule out the caller's column ranges are not read.
    pruning: prune::Pruning,
    /// The segment being read and its row ranges still to read (the row groups the
    /// pruning kept, adjacent ones merged).
    pieces: std::collections::VecDeque<std::ops::Range<u64>>,
    /// Row groups left unread by the pruning so far.
    row_groups_skipped: u64,
}

impl ColdScan {
    /// The first row of `segment` whose key is at least `key` (the key page of `key` is the
    /// only one decoded).
    fn first_row_at_least(&self, segment: &Segment, key: i64) -> Result<u64> {
        let index = &segment.index;
        let Some(page) = index.page_of(key) else {
            return Ok(0);
        };
        let pk = self.def.primary_key_index();
        let keys = segment.reader.read_key_page(index, pk, page)?;
        Ok(index.key_pages[page].first_row + keys.partition_point(|&k| k < key) as u64)
    }

    /// The rows of `segment` whose keys are in the scan's range: `start..end`.
    fn row_range(&self, segment: &Segment) -> Result<std::ops::Range<u64>> {
        let rows = segment.meta.row_count;
        let start = match self.lower {
            Bound::Included(l) if l > segment.meta.key_min => {
                self.first_row_at_least(segment, l)?
            }
            Bound::Excluded(l) if l >= segment.meta.key_min => match l.checked_add(1) {
                Some(l) => self.first_row_at_least(segment, l)?,
                None => rows,
            },
            _ => 0,
        };
        let end = match self.upper {
            Bound::Included(u) if u < segment.meta.key_max => match u.checked_add(1) {
                Some(u) => self.first_row_at_least(segment, u)?,
                None => rows,
            },
            Bound::Excluded(u) if u <= segment.meta.key_max => {
                self.first_row_at_least(segment, u)?
            }
            _ => rows,
        };
        Ok(start..end.max(start))
    }

    /// The row ranges of `segment` to read: the rows in the scan's key range, less the row
    /// groups the pruning rules out (counted in `row_groups_skipped`).
    fn pieces(
        &mut self,
        segment: &Segment,
    ) -> Result<std::collections::VecDeque<std::ops::Range<u64>>> {
        let rows = self.row_range(segment)?;
        let mut pieces = std::collections::VecDeque::new();
        if rows.is_empty() {
            return Ok(pieces);
        }
        if self.pruning.is_empty() {
            pieces.push_back(rows);
            return Ok(pieces);
        }
        let reader = &segment.reader;
        let (Some(first), Some(last)) = (
            reader.row_group_of(rows.start),
            reader.row_group_of(rows.end - 1),
        ) else {
            return Err(Error::corruption(
                segment.path(),
                0,
                format!("rows {rows:?} are in no row group"),
            ));
        };
        for rg in first..=last {
            if !self.pruning.keeps(reader, rg) {
                self.row_groups_skipped += 1;
                continue;
            }
            let group = reader.row_group_rows(rg);
            let piece = group.start.max(rows.start)..group.end.min(rows.end);
            match pieces.back_mut() {
                Some(previous) if previous.end == piece.start => previous.end = piece.end,
                _ => pieces.push_back(piece),
            }
        }
        Ok(pieces)
    }

    /// Row groups the scan has left unread because of its column ranges, so far.
    pub fn row_groups_skipped(&self) -> u64 {
        self.row_groups_skipped
    }
}

impl Iterator for ColdScan {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        loop {
            if let Some(current) = &mut self.current {
                match current.next() {
                    Some(Ok(batch)) if batch.num_rows() == 0 => continue,
                    Some(Ok(batch)) => return Some(Ok(batch)),
                    Some(Err(e)) => {
                        self.current = None;
                        self.pieces.clear();
                        self.next = self.segments.len();
                        return Some(Err(e));
                    }
                    None => self.current = None,
                }
            }
            if let Some(rows) = self.pieces.pop_front() {
                // The segment these pieces belong to is the last one taken.
                let (segment, deleted) = &self.segments[self.next - 1];
                self.current = Some(SegmentColumns::new(
                    segment.reader.clone(),
                    self.def.clone(),
                    self.schema.clone(),
                    self.columns.clone(),
                    rows,
                    deleted.clone(),
                ));
                continue;
            }
            let (segment, deleted) = self.segments.get(self.next)?.clone();
            self.next += 1;
            if deleted.len() == segment.meta.row_count {
                continue;
            }
            match self.pieces(&segment) {
                Ok(pieces) => self.pieces = pieces,
                Err(e) => {
                    self.next = self.segments.len();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Opens the segments of a version-2 manifest, once: reads each file whole (checked
/// against the manifest, as version 2 did), writes its sidecar index durably, and turns the
/// old visibility rule (a key's version counts unless the hot tier holds the key, a
/// tombstone `key -> id` covers the segment, or a newer segment holds the key) into
/// deletion vectors. The next checkpoint is a version-3 one listing the indexes.
pub(crate) fn migrate_legacy(
    fs: &dyn Fs,
    dir: &Path,
    table_id: u32,
    def: &TableDef,
    metas: Vec<SegmentMeta>,
    tombstones: &BTreeMap<i64, u64>,
    hot_contains: impl Fn(i64) -> bool,
) -> Result<Vec<(Segment, RoaringBitmap)>> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::arrow::ProjectionMask;
    let pk = def.primary_key_index();
    let mut loaded = Vec::with_capacity(metas.len());
    // Newest version of each key seen so far, scanning segments newest first.
    let mut seen = std::collections::BTreeSet::new();
    for old in metas.into_iter().rev() {
        let path = dir.join(file_name(table_id, old.id));
        let corrupt = |reason: String| Error::corruption(&path, 0, reason);
        let bytes = open_listed(fs, &path, "open segment")?
            .read_all()
            .map_err(|e| Error::io("read segment", &path, e))?;
        if bytes.len() as u64 != old.size_bytes || crc32c::crc32c(&bytes) != old.crc32c {
            return Err(corrupt(
                "segment's length or checksum is not the manifest's".into(),
            ));
        }
        let data = bytes::Bytes::from(bytes);
        let builder = ParquetRecordBatchReaderBuilder::try_new(data.clone())
            .map_err(|e| corrupt(format!("unreadable Parquet: {e}")))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [pk]);
        let mut keys = Vec::with_capacity(old.row_count as usize);
        for batch in builder
            .with_projection(mask)
            .build()
            .map_err(|e| corrupt(format!("unreadable Parquet: {e}")))?
        {
            let batch = batch.map_err(|e| corrupt(format!("unreadable Parquet: {e}")))?;
            let column = segment::key_values(batch.column(0).as_ref())
                .ok_or_else(|| corrupt("key column is not Int64".into()))?;
            keys.extend_from_slice(column);
        }
        if keys.len() as u64 != old.row_count
            || keys.windows(2).any(|w| w[0] >= w[1])
            || keys.first() != Some(&old.key_min)
            || keys.last() != Some(&old.key_max)
        {
            return Err(corrupt("keys disagree with the manifest".into()));
        }
        let index = segment::index_of(def, &data, &keys).map_err(corrupt)?;
        let index_bytes = index.encode();
        let index_path = dir.join(index_file_name(table_id, old.id));
        write_durable_temp(fs, &index_path, &index_bytes)?;
        fs.rename(&temp_path(&index_path), &index_path)
            .map_err(|e| Error::io("rename segment index", &index_path, e))?;
        let mut deleted = RoaringBitmap::new();
        for (row, &key) in keys.iter().enumerate() {
            let hidden = hot_contains(key)
                || tombstones.get(&key).is_some_and(|&t| t >= old.id)
                || !seen.insert(key);
            if hidden {
                deleted.insert(row as u32);
            }
        }
        let meta = SegmentMeta {
            index_size_bytes: index_bytes.len() as u64,
            index_crc32c: crc32c::crc32c(&index_bytes),
            ..old
        };
        loaded.push((Segment::open(fs, dir, table_id, meta, index, def)?, deleted));
    }
    fs.sync_dir(dir)
        .map_err(|e| Error::io("sync cold directory", dir, e))?;
    loaded.reverse();
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, DataType, Value};

    /// The scan's own integer decoders (delta-packed and plain pages, NOT NULL) and
    /// parquet's column reader (the nullable column) give what parquet's Arrow reader
    /// gives, for ranges that start and end inside pages and cross row groups.
    #[test]
    fn scans_decode_integers_as_parquets_reader_does() {
        use arrow_array::{Array, Int64Array, TimestampMicrosecondArray};
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let dir = tempfile::tempdir().expect("tempdir");
        let def = Arc::new(
            TableDef::new(
                "t",
                vec![
                    Column::new("k", DataType::Int64).primary_key(),
                    Column::new("v", DataType::Int64),
                    Column::new("wide", DataType::Int64),
                    Column::new("ts", DataType::Timestamp),
                    Column::new("n", DataType::Int64).nullable(),
                ],
            )
            .expect("def"),
        );
        let mut state = 7u64;
        let rows: Vec<Row> = (0..300_000i64)
            .map(|k| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1);
                vec![
                    Value::Int64(k * 3),
                    Value::Int64((state >> 34) as i64 - (1 << 29)),
                    Value::Int64(state as i64),
                    Value::Timestamp(1_000_000 + k * 10 + (state >> 60) as i64),
                    if k % 3 == 0 {
                        Value::Null
                    } else {
                        Value::Int64(k)
                    },
                ]
            })
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let env = crate::env::Env::os();
        let segment =
            ColdTier::write_segment(&env, dir.path(), 1, &def, &refs, 1, 0).expect("write");
        let bytes = env
            .fs
            .open(segment.path(), OpenMode::Read)
            .and_then(|f| f.read_all())
            .expect("read");
        // Each column's values, and column 4's nulls, of a batch appended to `values`.
        let gather = |batch: &arrow_array::RecordBatch,
                      values: &mut Vec<Vec<i64>>,
                      nulls: &mut Vec<bool>| {
            for (c, values) in values.iter_mut().enumerate() {
                let column = batch.column(c);
                if let Some(a) = column.as_any().downcast_ref::<Int64Array>() {
                    values.extend_from_slice(a.values());
                    if c == 4 {
                        nulls.extend((0..a.len()).map(|i| a.is_null(i)));
                    }
                } else if let Some(a) = column.as_any().downcast_ref::<TimestampMicrosecondArray>()
                {
                    values.extend_from_slice(a.values());
                }
            }
        };
        let mut want: Vec<Vec<i64>> = vec![Vec::new(); 5];
        let mut nulls = Vec::new();
        for batch in ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .expect("parquet")
            .build()
            .expect("reader")
        {
            gather(&batch.expect("batch"), &mut want, &mut nulls);
        }
        let tier = ColdTier::restore(vec![(segment, RoaringBitmap::new())], 1);
        for (from, to) in [(0, 299_999), (1_500, 1_700), (130_000, 270_001), (5, 5)] {
            let mut got: Vec<Vec<i64>> = vec![Vec::new(); 5];
            let mut got_nulls = Vec::new();
            let scan = tier.scan(
                &def,
                Bound::Included(from * 3),
                Bound::Included(to * 3),
                &[0, 1, 2, 3, 4],
                prune::Pruning::default(),
            );
            for batch in scan {
                gather(&batch.expect("batch"), &mut got, &mut got_nulls);
            }
            let (from, to) = (from as usize, to as usize + 1);
            for c in 0..4 {
                assert_eq!(got[c], want[c][from..to], "column {c}, rows {from}..{to}");
            }
            assert_eq!(got_nulls, nulls[from..to], "nulls, rows {from}..{to}");
            for (i, (g, w)) in got[4].iter().zip(&want[4][from..to]).enumerate() {
                if !got_nulls[i] {
                    assert_eq!(g, w, "column n, row {}", from + i);
                }
            }
        }
    }

    /// Every key page of real segments, read as packed values and searched in place, gives
    /// what parquet's own reader decodes: dense, sparse and extreme keys, one and several
    /// row groups.
    #[test]
    fn packed_key_pages_agree_with_parquets_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
            ],
        )
        .expect("def");
        let key_sets: Vec<Vec<i64>> = vec![
            (0..300_000).map(|k| k * 3 - 450_000).collect(),
            (0..5_000).map(|k| k * k * 7_919).collect(),
            vec![i64::MIN, -1, 0, 1, i64::MAX],
            vec![42],
        ];
        for (id, keys) in key_sets.into_iter().enumerate() {
            let rows: Vec<Row> = keys
                .iter()
                .map(|&k| vec![Value::Int64(k), Value::Int64(k / 2)])
                .collect();
            let refs: Vec<&Row> = rows.iter().collect();
            let segment = ColdTier::write_segment(
                &crate::env::Env::os(),
                dir.path(),
                1,
                &def,
                &refs,
                1,
                id as u64,
            )
            .expect("write");
            let tier = ColdTier::restore(vec![(segment, RoaringBitmap::new())], id as u64 + 1);
            let segment = &tier.segments[0];
            let index = &segment.index;
            let mut seen = 0;
            for page in 0..index.key_pages.len() {
                let parquet = segment
                    .reader
                    .read_key_page(index, 0, page)
                    .expect("parquet");
                let packed = segment
                    .reader
                    .key_page_values(index, 0, page)
                    .expect("read")
                    .expect("keys are written packed and uncompressed");
                assert_eq!(
                    delta::decode_all(&packed, parquet.len()),
                    Ok(parquet.clone())
                );
                assert_eq!(&*tier.key_page(0, page, 0).expect("page"), &parquet[..]);
                seen += parquet.len();
            }
            assert_eq!(seen, keys.len());
            for (row, &key) in keys.iter().enumerate().step_by(97) {
                assert_eq!(tier.row_in(0, key, 0).expect("find"), Some(row as u32));
                // v is read from its own page (delta-packed, or plain when its neighbours
                // differ too widely), every row group and page position included.
                assert_eq!(
                    segment.reader.read_row(&def, row as u64, key).expect("row"),
                    vec![Value::Int64(key), Value::Int64(key / 2)]
                );
                if key < i64::MAX && keys.binary_search(&(key + 1)).is_err() {
                    assert_eq!(tier.row_in(0, key + 1, 0).expect("find"), None);
                }
            }
        }
    }
}
