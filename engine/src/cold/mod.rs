//! The cold tier of one table: immutable, key-sorted Parquet segments, and tombstones.
//!
//! **Flush** moves the hot tier's lowest-key rows into a new segment (lowest key, not
//! oldest insert: the index hands them over already sorted, and for the time-ordered keys an
//! HTAP table usually has, the lowest keys are the oldest rows). The file is written as
//! `<name>.tmp`, synced, read back and checked, renamed, and the `cold/` directory synced;
//! only then does the table forget those hot rows and list the segment. The manifest (the
//! segments' ids, key ranges, row counts, LSNs and CRC-32C of each file) is part of the
//! checkpoint, which is itself written atomically: a crash before the checkpoint lands
//! leaves an unlisted file that the next open removes, while the log still holds the rows.
//!
//! **Visibility.** A key may be in several segments (an update re-inserts the row in the
//! hot tier, which a later flush moves to a newer segment). The version that counts is the
//! hot one, else the one in the newest segment holding the key. A tombstone `key -> id`
//! hides the key in every segment with an id up to `id` (the newest segment when it was
//! deleted), so a key deleted and inserted again is visible once flushed again.
//!
//! **Memory.** Each segment keeps its key column in memory (8 bytes per cold row), so
//! existence checks (inserts, updates, deletes, log replay) never touch the disk and a point
//! read knows the row's position before reading; plus the footer and page index (a few
//! bytes per page) and a CRC per page. Tombstones cost 16 bytes each until compaction.
//!
//! Invariants (`check_invariants`): each segment's keys are strictly ascending, match its
//! listed range and row count; segment ids ascend; `visible_rows` is the number of keys
//! visible in the cold tier and absent from the hot tier.

pub(crate) mod segment;

use crate::codec::{DecodeResult, Decoder, Encoder};
use crate::env::{Fs, OpenMode};
use crate::error::{Error, Result};
use crate::rowstore::RowValues;
use crate::schema::{Row, TableDef};
use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, TimestampMicrosecondArray};
use bytes::Bytes;
use segment::SegmentReader;
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Directory of segment files, under the database root.
pub(crate) const COLD_DIR: &str = "cold";

/// What the manifest says of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentMeta {
    pub id: u64,
    pub key_min: i64,
    pub key_max: i64,
    pub row_count: u64,
    /// Every write to the rows of this segment has an LSN at most this.
    pub lsn: u64,
    pub size_bytes: u64,
    pub crc32c: u32,
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
    }

    pub fn decode(dec: &mut Decoder<'_>) -> DecodeResult<SegmentMeta> {
        Ok(SegmentMeta {
            id: dec.u64()?,
            key_min: dec.i64()?,
            key_max: dec.i64()?,
            row_count: dec.u64()?,
            lsn: dec.u64()?,
            size_bytes: dec.u64()?,
            crc32c: dec.u32()?,
        })
    }
}

/// The values of a key column (Int64 or Timestamp).
fn key_values(array: &dyn Array) -> Option<&[i64]> {
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(a.values());
    }
    any.downcast_ref::<TimestampMicrosecondArray>()
        .map(|a| &a.values()[..])
}

/// The file name of segment `segment_id` of table `table_id`.
pub(crate) fn file_name(table_id: u32, segment_id: u64) -> String {
    format!("{table_id:010}-{segment_id:020}.parquet")
}

pub(crate) struct Segment {
    pub meta: SegmentMeta,
    /// The key column, ascending.
    keys: Vec<i64>,
    reader: SegmentReader,
}

impl Segment {
    fn position(&self, key: i64) -> Option<usize> {
        if key < self.meta.key_min || key > self.meta.key_max {
            return None;
        }
        self.keys.binary_search(&key).ok()
    }

    /// Opens a segment listed in the manifest: reads it whole once, checks its length and
    /// CRC against the manifest, and loads its key column.
    pub fn load(fs: &dyn Fs, path: &Path, meta: SegmentMeta, def: &TableDef) -> Result<Segment> {
        let file = fs
            .open(path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", path, e))?;
        let bytes = file
            .read_all()
            .map_err(|e| Error::io("read segment", path, e))?;
        Segment::from_bytes(path, Arc::from(file), bytes, meta, def)
    }

    fn from_bytes(
        path: &Path,
        file: Arc<dyn crate::env::File>,
        bytes: Vec<u8>,
        meta: SegmentMeta,
        def: &TableDef,
    ) -> Result<Segment> {
        let corrupt = |reason: String| Error::corruption(path, 0, reason);
        if bytes.len() as u64 != meta.size_bytes {
            return Err(corrupt(format!(
                "segment is {} bytes, the manifest says {}",
                bytes.len(),
                meta.size_bytes
            )));
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != meta.crc32c {
            return Err(corrupt(format!(
                "checksum {crc:#010x} != manifest's {:#010x}",
                meta.crc32c
            )));
        }
        let reader = SegmentReader::new(path, file, Bytes::from(bytes))?;
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
        let pk = def.primary_key_index();
        let groups = (0..reader.metadata.metadata().num_row_groups()).collect();
        let mut keys = Vec::with_capacity(meta.row_count as usize);
        for batch in reader.read(&[pk], groups, None)? {
            let column = key_values(batch.column(0).as_ref())
                .ok_or_else(|| corrupt("key column is not Int64".into()))?;
            keys.extend_from_slice(column);
        }
        if keys.len() as u64 != meta.row_count {
            return Err(corrupt(format!(
                "{} rows, the manifest says {}",
                keys.len(),
                meta.row_count
            )));
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(corrupt("keys are not strictly ascending".into()));
        }
        if keys.first() != Some(&meta.key_min) || keys.last() != Some(&meta.key_max) {
            return Err(corrupt(format!(
                "key range {:?}..{:?} is not the manifest's {}..{}",
                keys.first(),
                keys.last(),
                meta.key_min,
                meta.key_max
            )));
        }
        Ok(Segment { meta, keys, reader })
    }
}

/// The cold tier of one table.
#[derive(Default)]
pub(crate) struct ColdTier {
    /// By id ascending (oldest first).
    segments: Vec<Segment>,
    /// key -> the newest segment id it hides.
    tombstones: BTreeMap<i64, u64>,
    next_segment_id: u64,
    /// Keys visible in the cold tier and absent from the hot tier.
    visible_rows: usize,
}

impl ColdTier {
    pub fn segments(&self) -> impl Iterator<Item = &SegmentMeta> + '_ {
        self.segments.iter().map(|s| &s.meta)
    }

    pub fn tombstones(&self) -> &BTreeMap<i64, u64> {
        &self.tombstones
    }

    pub fn next_segment_id(&self) -> u64 {
        self.next_segment_id
    }

    pub fn visible_rows(&self) -> usize {
        self.visible_rows
    }

    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Bytes of memory per cold row: the key column.
    pub fn key_bytes(&self) -> usize {
        self.segments.iter().map(|s| s.keys.capacity() * 8).sum()
    }

    /// The segment index and row position of the visible cold version of `key`.
    pub fn find(&self, key: i64) -> Option<(usize, usize)> {
        for (i, segment) in self.segments.iter().enumerate().rev() {
            if let Some(position) = segment.position(key) {
                if self
                    .tombstones
                    .get(&key)
                    .is_some_and(|&hidden| hidden >= segment.meta.id)
                {
                    return None;
                }
                return Some((i, position));
            }
        }
        None
    }

    pub fn contains(&self, key: i64) -> bool {
        self.find(key).is_some()
    }

    /// Reads the visible cold version of `key`.
    pub fn get(&self, def: &TableDef, key: i64) -> Result<Option<Row>> {
        let Some((i, position)) = self.find(key) else {
            return Ok(None);
        };
        let segment = &self.segments[i];
        let row = segment.reader.read_row(def, position as u64)?;
        let found = def.key_of(&row);
        if found != Some(key) {
            return Err(Error::corruption(
                &segment.reader.path,
                0,
                format!("row {position} holds key {found:?}, the key column says {key}"),
            ));
        }
        Ok(Some(row))
    }

    /// The hot tier took `key` (update of a cold row): the cold version is shadowed.
    pub fn on_shadow(&mut self, key: i64) {
        if self.contains(key) {
            self.visible_rows -= 1;
        }
    }

    /// `key` was deleted; `in_hot` says whether the hot tier had it (and shadowed the cold
    /// version). Returns whether a cold version was visible.
    pub fn on_delete(&mut self, key: i64, in_hot: bool) -> bool {
        if !self.contains(key) {
            return false;
        }
        if !in_hot {
            self.visible_rows -= 1;
        }
        if let Some(newest) = self.segments.last() {
            self.tombstones.insert(key, newest.meta.id);
        }
        true
    }

    /// Writes `rows` (strictly ascending keys, valid for `def`) as a new segment file in
    /// `dir`, durably; the tier lists it only when [`ColdTier::add`] is called.
    pub fn write_segment<'r, R: RowValues<'r>>(
        &mut self,
        fs: &dyn Fs,
        dir: &Path,
        table_id: u32,
        def: &TableDef,
        rows: &[R],
        lsn: u64,
    ) -> Result<Segment> {
        let id = self.next_segment_id;
        let path = dir.join(file_name(table_id, id));
        let bytes = segment::encode(def, rows)?;
        let pk = def.primary_key_index();
        let key_of = |row: Option<&R>| row.and_then(|r| r.value(pk).as_i64());
        let (Some(key_min), Some(key_max)) = (key_of(rows.first()), key_of(rows.last())) else {
            return Err(Error::EmptyBatch {
                table: def.name().to_string(),
            });
        };
        let meta = SegmentMeta {
            id,
            key_min,
            key_max,
            row_count: rows.len() as u64,
            lsn,
            size_bytes: bytes.len() as u64,
            crc32c: crc32c::crc32c(&bytes),
        };
        let temp = dir.join(format!("{}.tmp", file_name(table_id, id)));
        let file = fs
            .open(&temp, OpenMode::Create)
            .map_err(|e| Error::io("create segment", &temp, e))?;
        file.set_len(0)
            .and_then(|()| file.write_at(&bytes, 0))
            .and_then(|()| file.sync())
            .map_err(|e| Error::io("write segment", &temp, e))?;
        // Read back before it is named: a torn or misdirected write shows here.
        let written = file
            .read_all()
            .map_err(|e| Error::io("read back segment", &temp, e))?;
        drop(file);
        if written != bytes {
            return Err(Error::corruption(
                &temp,
                0,
                "segment read back differs from what was written",
            ));
        }
        fs.rename(&temp, &path)
            .map_err(|e| Error::io("rename segment", &path, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("sync cold directory", dir, e))?;
        let file = fs
            .open(&path, OpenMode::Read)
            .map_err(|e| Error::io("open segment", &path, e))?;
        self.next_segment_id = id + 1;
        Segment::from_bytes(&path, Arc::from(file), bytes, meta, def)
    }

    /// Whether compaction has work: two or more segments, or tombstones to drop.
    pub fn needs_compaction(&self) -> bool {
        self.segments.len() >= 2 || (!self.segments.is_empty() && !self.tombstones.is_empty())
    }

    /// Compaction, first half: writes every visible cold row (the newest version of each
    /// key; deleted keys dropped) as one new segment file, durably. The tier is unchanged
    /// until [`ColdTier::replace_all`]. `None` if no cold row is visible.
    ///
    /// All segments merge into one, so the new segment (the newest id) can never wrongly
    /// shadow a newer one, and every tombstone becomes moot.
    pub fn write_compacted(
        &mut self,
        fs: &dyn Fs,
        dir: &Path,
        table_id: u32,
        def: &TableDef,
    ) -> Result<Option<Segment>> {
        let rows: Vec<Row> = self
            .rows(
                def,
                Bound::Unbounded,
                Bound::Unbounded,
                |_| false,
                |_, _| false,
            )?
            .into_values()
            .collect();
        if rows.is_empty() {
            return Ok(None);
        }
        let lsn = self.segments.iter().map(|s| s.meta.lsn).max().unwrap_or(0);
        let rows: Vec<&Row> = rows.iter().collect();
        self.write_segment(fs, dir, table_id, def, &rows, lsn)
            .map(Some)
    }

    /// Compaction, second half: `merged` replaces every segment and the tombstones go.
    /// Returns the paths of the replaced files (to remove once a checkpoint no longer lists
    /// them).
    pub fn replace_all(
        &mut self,
        merged: Option<Segment>,
        hot_contains: impl Fn(i64) -> bool,
    ) -> Vec<PathBuf> {
        let old: Vec<PathBuf> = self
            .segments
            .drain(..)
            .map(|s| s.reader.path.clone())
            .collect();
        self.tombstones.clear();
        self.segments.extend(merged);
        self.visible_rows = self.count_visible(hot_contains);
        old
    }

    /// Lists a segment whose rows just left the hot tier.
    pub fn add(&mut self, segment: Segment) {
        debug_assert!(self
            .segments
            .last()
            .is_none_or(|s| s.meta.id < segment.meta.id));
        self.visible_rows += segment.keys.len();
        self.segments.push(segment);
    }

    /// Restores from a checkpoint; `hot_contains` says which keys the hot tier holds.
    pub fn restore(
        segments: Vec<Segment>,
        tombstones: BTreeMap<i64, u64>,
        next_segment_id: u64,
        hot_contains: impl Fn(i64) -> bool,
    ) -> ColdTier {
        let mut tier = ColdTier {
            segments,
            tombstones,
            next_segment_id,
            visible_rows: 0,
        };
        tier.visible_rows = tier.count_visible(hot_contains);
        tier
    }

    fn count_visible(&self, hot_contains: impl Fn(i64) -> bool) -> usize {
        let mut keys: Vec<i64> = self
            .segments
            .iter()
            .flat_map(|s| s.keys.iter().copied())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
            .filter(|&k| !hot_contains(k) && self.contains(k))
            .count()
    }

    /// The cold rows visible with keys in the range, not shadowed by the hot tier, as
    /// Arrow batches of `columns` (table column indices), segment by segment (each in key
    /// order). Row groups whose key statistics miss the range are not read.
    pub fn scan_batches(
        &self,
        def: &TableDef,
        lower: Bound<i64>,
        upper: Bound<i64>,
        columns: &[usize],
        hot_contains: impl Fn(i64) -> bool,
        hot_any_in: impl Fn(i64, i64) -> bool,
    ) -> Result<Vec<RecordBatch>> {
        let pk = def.primary_key_index();
        let in_range = |k: i64| {
            (match lower {
                Bound::Included(l) => k >= l,
                Bound::Excluded(l) => k > l,
                Bound::Unbounded => true,
            }) && (match upper {
                Bound::Included(u) => k <= u,
                Bound::Excluded(u) => k < u,
                Bound::Unbounded => true,
            })
        };
        let overlaps = |min: i64, max: i64| {
            (match lower {
                Bound::Included(l) => max >= l,
                Bound::Excluded(l) => max > l,
                Bound::Unbounded => true,
            }) && (match upper {
                Bound::Included(u) => min <= u,
                Bound::Excluded(u) => min < u,
                Bound::Unbounded => true,
            })
        };
        // Read the key column too, to filter; project it away after.
        let mut read_columns: Vec<usize> = columns.to_vec();
        if !read_columns.contains(&pk) {
            read_columns.push(pk);
        }
        let mut sorted = read_columns.clone();
        sorted.sort_unstable();
        // Parquet returns projected columns in file order.
        let key_at = sorted.iter().position(|&c| c == pk).unwrap_or(0);
        let output: Vec<usize> = columns
            .iter()
            .filter_map(|c| sorted.iter().position(|s| s == c))
            .collect();
        let mut out = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            if !overlaps(segment.meta.key_min, segment.meta.key_max) {
                continue;
            }
            let newer = &self.segments[i + 1..];
            let groups: Vec<usize> = (0..segment.reader.metadata.metadata().num_row_groups())
                .filter(|&rg| {
                    segment
                        .reader
                        .int_stats(rg, pk)
                        .is_none_or(|(min, max)| overlaps(min, max))
                })
                .collect();
            if groups.is_empty() {
                continue;
            }
            let id = segment.meta.id;
            let simple = newer.iter().all(|n| {
                n.meta.key_min > segment.meta.key_max || n.meta.key_max < segment.meta.key_min
            });
            for batch in segment.reader.read(&sorted, groups, None)? {
                let keys = key_values(batch.column(key_at).as_ref()).ok_or_else(|| {
                    Error::corruption(&segment.reader.path, 0, "key column is not Int64")
                })?;
                // Keys ascend within a batch: when no hot key, tombstone or newer segment
                // falls in its key range and it lies inside the scan's range, every row is
                // visible and no per-row check is needed (the common case of an aggregate).
                let (Some(&first), Some(&last)) = (keys.first(), keys.last()) else {
                    continue;
                };
                if simple
                    && in_range(first)
                    && in_range(last)
                    && !hot_any_in(first, last)
                    && self.tombstones.range(first..=last).next().is_none()
                {
                    let projected = batch.project(&output).map_err(|e| {
                        Error::corruption(&segment.reader.path, 0, format!("project failed: {e}"))
                    })?;
                    out.push(projected);
                    continue;
                }
                let mask: BooleanArray = keys
                    .iter()
                    .map(|&k| {
                        Some(
                            in_range(k)
                                && !hot_contains(k)
                                && self.tombstones.get(&k).is_none_or(|&t| t < id)
                                && (simple || newer.iter().all(|n| n.position(k).is_none())),
                        )
                    })
                    .collect();
                let filtered = arrow_select::filter::filter_record_batch(&batch, &mask)
                    .and_then(|b| b.project(&output))
                    .map_err(|e| {
                        Error::corruption(&segment.reader.path, 0, format!("filter failed: {e}"))
                    })?;
                if filtered.num_rows() > 0 {
                    out.push(filtered);
                }
            }
        }
        Ok(out)
    }

    /// Every visible cold row with key in the range and not in the hot tier, keyed.
    pub fn rows(
        &self,
        def: &TableDef,
        lower: Bound<i64>,
        upper: Bound<i64>,
        hot_contains: impl Fn(i64) -> bool,
        hot_any_in: impl Fn(i64, i64) -> bool,
    ) -> Result<BTreeMap<i64, Row>> {
        let all: Vec<usize> = (0..def.columns().len()).collect();
        let mut rows = BTreeMap::new();
        let path = PathBuf::from(COLD_DIR);
        for batch in self.scan_batches(def, lower, upper, &all, hot_contains, hot_any_in)? {
            for i in 0..batch.num_rows() {
                let row = segment::batch_row(def, &batch, i, &path)?;
                if let Some(key) = def.key_of(&row) {
                    rows.insert(key, row);
                }
            }
        }
        Ok(rows)
    }

    pub fn check_invariants(
        &self,
        name: &str,
        hot_contains: impl Fn(i64) -> bool,
    ) -> std::result::Result<(), String> {
        for pair in self.segments.windows(2) {
            if pair[0].meta.id >= pair[1].meta.id {
                return Err(format!("table {name:?}: segment ids not ascending"));
            }
        }
        for s in &self.segments {
            if s.keys.windows(2).any(|w| w[0] >= w[1])
                || s.keys.len() as u64 != s.meta.row_count
                || s.keys.first() != Some(&s.meta.key_min)
                || s.keys.last() != Some(&s.meta.key_max)
            {
                return Err(format!(
                    "table {name:?}: segment {} keys disagree with its manifest entry",
                    s.meta.id
                ));
            }
            if s.meta.id >= self.next_segment_id {
                return Err(format!("table {name:?}: segment id {} >= next", s.meta.id));
            }
        }
        let visible = self.count_visible(hot_contains);
        if visible != self.visible_rows {
            return Err(format!(
                "table {name:?}: {} visible cold rows counted, {visible} found",
                self.visible_rows
            ));
        }
        Ok(())
    }
}
