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
}

impl Table {
    pub fn new(id: TableId, def: Arc<TableDef>) -> Table {
        Table {
            id,
            def,
            index: <Index as PrimaryIndex>::new(),
            rows: Vec::new(),
            free: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        PrimaryIndex::len(&self.index)
    }

    pub fn get(&self, key: i64) -> Option<&Row> {
        let location = PrimaryIndex::get(&self.index, key)?;
        self.rows.get(location as usize)?.as_ref()
    }

    /// Validates rows for insertion: schema, and keys new to the table and to the batch.
    /// Returns the keys in row order.
    pub fn check_insert(&self, rows: &[Row]) -> Result<Vec<i64>> {
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let key = self.def.validate_row(row)?;
            if PrimaryIndex::get(&self.index, key).is_some() {
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
        if PrimaryIndex::get(&self.index, key).is_none() {
            return Err(Error::KeyNotFound {
                table: self.def.name().to_string(),
                key,
            });
        }
        Ok(())
    }

    pub fn apply_update(&mut self, key: i64, row: Row) {
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
        match PrimaryIndex::remove(&mut self.index, key) {
            Some(location) => {
                self.rows[location as usize] = None;
                self.free.push(location);
                true
            }
            None => false,
        }
    }

    /// Rows with keys in the range, in key order.
    pub fn scan(&self, lower: Bound<i64>, upper: Bound<i64>) -> impl Iterator<Item = &Row> + '_ {
        PrimaryIndex::range(&self.index, lower, upper)
            .filter_map(move |(_, location)| self.rows.get(location as usize)?.as_ref())
    }

    /// All rows in key order, with their keys.
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
