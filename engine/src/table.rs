//! The hot tier of one table: rows in memory, addressed through the primary index.
//!
//! Rows live in a slab (`rows`); the index maps each primary key to the row's slot, so an
//! index entry is a key and a `u64`, never a boxed value. Freed slots are reused.
//!
//! Every mutation comes in two halves: `check_*` validates against the current state and
//! changes nothing; `apply_*` mutates and must not fail after a successful check. The
//! database logs a write between the two, so the log never holds a write that was refused,
//! and replay calls `check_*` again to detect records that do not apply (corruption).
//!
//! Invariants (`check_invariants`): every index entry points at an occupied slot whose row
//! has that key; every occupied slot is indexed once; free slots are empty.

use crate::cold::ColdTier;
use crate::env::Fs;
use crate::error::{Error, Result};
use crate::index::{PrimaryIndex, RowLocation};
use crate::schema::{Row, TableDef};
use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

/// The primary index every table uses.
pub(crate) type Index = crate::index::alex::AlexIndex;

/// Stable identity of a table in the log (names can be reused after a drop).
pub(crate) type TableId = u32;

pub(crate) struct Table {
    pub id: TableId,
    pub def: Arc<TableDef>,
    index: Index,
    rows: Vec<Option<Row>>,
    free: Vec<RowLocation>,
    /// Rows flushed to Parquet segments (crate::cold).
    pub cold: ColdTier,
}

impl Table {
    pub fn new(id: TableId, def: Arc<TableDef>) -> Table {
        Table {
            id,
            def,
            index: <Index as PrimaryIndex>::new(),
            rows: Vec::new(),
            free: Vec::new(),
            cold: ColdTier::default(),
        }
    }

    /// Rows in the table, hot and cold.
    pub fn len(&self) -> usize {
        self.hot_len() + self.cold.visible_rows()
    }

    /// Rows in the hot tier.
    pub fn hot_len(&self) -> usize {
        PrimaryIndex::len(&self.index)
    }

    /// The hot version of `key`.
    pub fn get_hot(&self, key: i64) -> Option<&Row> {
        let location = PrimaryIndex::get(&self.index, key)?;
        self.rows.get(location as usize)?.as_ref()
    }

    fn hot_contains(&self, key: i64) -> bool {
        PrimaryIndex::get(&self.index, key).is_some()
    }

    /// Whether the hot tier holds any key in `lo..=hi`.
    fn hot_any_in(&self, lo: i64, hi: i64) -> bool {
        self.scan_hot(Bound::Included(lo), Bound::Included(hi))
            .next()
            .is_some()
    }

    /// Whether the table has a row with `key` (never reads the disk).
    pub fn contains(&self, key: i64) -> bool {
        self.hot_contains(key) || self.cold.contains(key)
    }

    /// The row with `key`: the hot tier first, then the cold segments.
    pub fn get(&self, key: i64) -> Result<Option<Row>> {
        if let Some(row) = self.get_hot(key) {
            return Ok(Some(row.clone()));
        }
        if self.cold.is_empty() {
            return Ok(None);
        }
        self.cold.get(&self.def, key)
    }

    /// Validates rows for insertion: schema, and keys new to the table and to the batch.
    /// Returns the keys in row order.
    pub fn check_insert(&self, rows: &[Row]) -> Result<Vec<i64>> {
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let key = self.def.validate_row(row)?;
            if self.contains(key) {
                return Err(self.duplicate(key));
            }
            keys.push(key);
        }
        if keys.len() > 1 {
            let mut seen = BTreeSet::new();
            if let Some(&key) = keys.iter().find(|&&k| !seen.insert(k)) {
                return Err(self.duplicate(key));
            }
        }
        Ok(keys)
    }

    pub fn apply_insert(&mut self, keys: &[i64], rows: Vec<Row>) {
        debug_assert_eq!(keys.len(), rows.len());
        for (&key, row) in keys.iter().zip(rows) {
            let location = match self.free.pop() {
                Some(location) => {
                    self.rows[location as usize] = Some(row);
                    location
                }
                None => {
                    self.rows.push(Some(row));
                    (self.rows.len() - 1) as RowLocation
                }
            };
            let inserted = PrimaryIndex::insert(&mut self.index, key, location);
            debug_assert!(
                inserted,
                "insert of key {key} passed its check but was a duplicate"
            );
        }
    }

    /// Replaces the contents of an empty table with `rows`, which must fit the schema and be
    /// in strictly ascending key order (a checkpoint's); builds the index by bulk load.
    pub fn restore_sorted(&mut self, rows: Vec<Row>) -> std::result::Result<(), String> {
        if !self.rows.is_empty() {
            return Err("restore into a table that has rows".into());
        }
        let mut pairs = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let key = self
                .def
                .validate_row(row)
                .map_err(|e| format!("row {i}: {e}"))?;
            if let Some(&(previous, _)) = pairs.last() {
                if previous >= key {
                    return Err(format!("row {i}: key {key} does not follow key {previous}"));
                }
            }
            pairs.push((key, i as RowLocation));
        }
        self.index = <Index as PrimaryIndex>::bulk_load(&pairs)?;
        self.rows = rows.into_iter().map(Some).collect();
        Ok(())
    }

    /// Validates an update of `key` to `row`: the row fits the schema, keeps its key, and
    /// the key exists.
    pub fn check_update(&self, key: i64, row: &Row) -> Result<()> {
        let new_key = self.def.validate_row(row)?;
        if new_key != key {
            return Err(Error::KeyChanged {
                table: self.def.name().to_string(),
                key,
                new_key,
            });
        }
        if !self.contains(key) {
            return Err(Error::KeyNotFound {
                table: self.def.name().to_string(),
                key,
            });
        }
        Ok(())
    }

    pub fn apply_update(&mut self, key: i64, row: Row) {
        if !self.hot_contains(key) {
            // A cold row: the new version goes to the hot tier and shadows it.
            self.cold.on_shadow(key);
            self.apply_insert(&[key], vec![row]);
            return;
        }
        let slot = PrimaryIndex::get(&self.index, key)
            .and_then(|location| self.rows.get_mut(location as usize));
        debug_assert!(
            slot.is_some(),
            "update of key {key} passed its check but is missing"
        );
        if let Some(slot) = slot {
            *slot = Some(row);
        }
    }

    /// Removes `key`; returns whether it was there.
    pub fn apply_delete(&mut self, key: i64) -> bool {
        let in_hot = self.remove_hot(key);
        let in_cold = self.cold.on_delete(key, in_hot);
        in_hot || in_cold
    }

    fn remove_hot(&mut self, key: i64) -> bool {
        match PrimaryIndex::remove(&mut self.index, key) {
            Some(location) => {
                self.rows[location as usize] = None;
                self.free.push(location);
                true
            }
            None => false,
        }
    }

    /// Hot rows with keys in the range, in key order.
    pub fn scan_hot(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
    ) -> impl Iterator<Item = &Row> + Clone + '_ {
        PrimaryIndex::range(&self.index, lower, upper)
            .filter_map(move |(_, location)| self.rows.get(location as usize)?.as_ref())
    }

    /// Rows (hot and cold) with keys in the range, in key order.
    pub fn scan(&self, lower: Bound<i64>, upper: Bound<i64>) -> Result<Vec<Row>> {
        if self.cold.is_empty() {
            return Ok(self.scan_hot(lower, upper).cloned().collect());
        }
        let mut rows = self.cold.rows(
            &self.def,
            lower,
            upper,
            |k| self.hot_contains(k),
            |lo, hi| self.hot_any_in(lo, hi),
        )?;
        for row in self.scan_hot(lower, upper) {
            if let Some(key) = self.def.key_of(row) {
                rows.insert(key, row.clone());
            }
        }
        Ok(rows.into_values().collect())
    }

    /// Rows (hot and cold) with keys in the range as Arrow batches of `columns`: the cold
    /// segments' visible rows segment by segment, then the hot rows, each part in key order.
    pub fn scan_batches(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
        columns: &[usize],
    ) -> Result<Vec<arrow_array::RecordBatch>> {
        let mut batches = self.cold.scan_batches(
            &self.def,
            lower,
            upper,
            columns,
            |k| self.hot_contains(k),
            |lo, hi| self.hot_any_in(lo, hi),
        )?;
        let schema = std::sync::Arc::new(
            crate::cold::segment::arrow_schema(&self.def)
                .project(columns)
                .map_err(|e| Error::InvalidSchema {
                    table: self.def.name().to_string(),
                    reason: e.to_string(),
                })?,
        );
        let hot: Vec<&Row> = self.scan_hot(lower, upper).collect();
        for chunk in hot.chunks(crate::cold::segment::BATCH_ROWS) {
            batches.push(crate::cold::segment::rows_to_batch(
                &self.def,
                schema.clone(),
                columns,
                chunk.iter().copied(),
            )?);
        }
        Ok(batches)
    }

    /// Moves the lowest-key hot rows into a new cold segment in `dir`, keeping `keep_rows`
    /// hot. Returns whether it flushed. On `Err` the table is unchanged (a file may be left
    /// behind, never listed).
    pub fn flush(
        &mut self,
        fs: &dyn Fs,
        dir: &std::path::Path,
        keep_rows: usize,
        lsn: u64,
    ) -> Result<bool> {
        let count = self.hot_len().saturating_sub(keep_rows);
        if count == 0 {
            return Ok(false);
        }
        let rows: Vec<Row> = self
            .scan_hot(Bound::Unbounded, Bound::Unbounded)
            .take(count)
            .cloned()
            .collect();
        let segment = self
            .cold
            .write_segment(fs, dir, self.id, &self.def, &rows, lsn)?;
        for row in &rows {
            if let Some(key) = self.def.key_of(row) {
                self.remove_hot(key);
            }
        }
        self.cold.add(segment);
        Ok(true)
    }

    /// Merges all cold segments into one, dropping deleted and superseded rows. Returns the
    /// replaced files, or `None` if there was nothing to do. On `Err` the table is unchanged.
    pub fn compact(
        &mut self,
        fs: &dyn Fs,
        dir: &std::path::Path,
    ) -> Result<Option<Vec<std::path::PathBuf>>> {
        if !self.cold.needs_compaction() {
            return Ok(None);
        }
        let merged = self.cold.write_compacted(fs, dir, self.id, &self.def)?;
        let index = &self.index;
        Ok(Some(self.cold.replace_all(merged, |k| {
            PrimaryIndex::get(index, k).is_some()
        })))
    }

    /// Gives this table (restored from a checkpoint) its cold tier.
    pub fn restore_cold(
        &mut self,
        segments: Vec<crate::cold::Segment>,
        tombstones: std::collections::BTreeMap<i64, u64>,
        next_segment_id: u64,
    ) {
        let index = &self.index;
        self.cold = ColdTier::restore(segments, tombstones, next_segment_id, |k| {
            PrimaryIndex::get(index, k).is_some()
        });
    }

    /// Hot rows in key order, with their keys (what a checkpoint stores as rows).
    pub fn iter(&self) -> impl Iterator<Item = (i64, &Row)> + '_ {
        PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded).filter_map(
            move |(key, location)| Some((key, self.rows.get(location as usize)?.as_ref()?)),
        )
    }

    pub fn index_bytes(&self) -> usize {
        PrimaryIndex::bytes_used(&self.index)
    }

    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let name = self.def.name();
        self.cold.check_invariants(name, |k| self.hot_contains(k))?;
        PrimaryIndex::check_invariants(&self.index)
            .map_err(|e| format!("table {name:?}: index: {e}"))?;
        let mut seen = 0usize;
        for (key, location) in PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded)
        {
            let row = self
                .rows
                .get(location as usize)
                .and_then(Option::as_ref)
                .ok_or_else(|| {
                    format!("table {name:?}: key {key} points at empty slot {location}")
                })?;
            let row_key = self.def.key_of(row);
            if row_key != Some(key) {
                return Err(format!(
                    "table {name:?}: key {key} points at a row with key {row_key:?}"
                ));
            }
            seen += 1;
        }
        let occupied = self.rows.iter().filter(|r| r.is_some()).count();
        if occupied != seen || seen != PrimaryIndex::len(&self.index) {
            return Err(format!(
                "table {name:?}: {occupied} occupied slots, {seen} indexed keys, len {}",
                PrimaryIndex::len(&self.index)
            ));
        }
        if occupied + self.free.len() != self.rows.len() {
            return Err(format!(
                "table {name:?}: {occupied} rows + {} free slots != {} slots",
                self.free.len(),
                self.rows.len()
            ));
        }
        Ok(())
    }

    fn duplicate(&self, key: i64) -> Error {
        Error::DuplicateKey {
            table: self.def.name().to_string(),
            key,
        }
    }
}
