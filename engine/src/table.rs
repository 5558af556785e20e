//! One table: its hot tier (rows in memory, addressed through the primary index), its cold
//! tier (crate::cold: the Parquet segments flushed from the hot tier), and every read and
//! write, which spans the two.
//!
//! **Hot tier.** Rows live packed in a row store (`rows`, crate::rowstore); the index (ALEX,
//! crate::index::alex) maps each primary key to the row's location there, so an index entry
//! is a key and a `u64`, never a boxed value. Reads borrow the packed bytes through a
//! `RowRef`; nothing is copied unless the caller asks for an owned row. [`Table::get_many_with`]
//! pipelines its lookups so that their cache misses overlap.
//!
//! **Cold tier** (`cold`, a [`ColdTier`]). At a checkpoint with `Options::hot_rows_max`,
//! [`Table::flush`] writes the lowest-key hot rows as a new segment, then drops them from the
//! hot tier. Reads look in the hot tier first, then in the segments. An update of a cold row
//! puts the new version in the hot tier and sets the old version's bit in its segment's
//! deletion vector; a delete of a cold row sets the bit. So every key has at most one
//! visible version, hot or cold.
//!
//! **Inserts** (the hot path, [`Table::insert_logged`]) go validate, insert, log, undo: the
//! rows are checked against the schema and the size limit, their keys for repeats within the
//! batch and against the cold tier's visible rows; each row is then stored and its key
//! inserted with one index descent that both finds a hot duplicate and inserts; then `log`
//! appends the batch to the write-ahead log. A hot duplicate, or a failed `log`, undoes every
//! change of the batch, so a refused insert is in neither the table nor the log.
//!
//! **Updates and deletes** come in two halves: [`Table::check_update`] (for a delete,
//! [`Table::locate`]) validates against the current state, changes nothing and says where the
//! current version is ([`Located`]); `apply_*` mutates and must not fail after a successful
//! check. The database logs the write between the two.
//! Recovery replays inserts the same way ([`Table::check_insert`], then
//! [`Table::apply_insert`]), so a logged record that does not apply is found and reported as
//! corruption.
//!
//! Invariants (`check_invariants`): every index entry points at a whole packed row inside a
//! page, which reads back as a valid row with that key; no two rows overlap; the store's
//! live and free byte counts match its rows and free lists; the index's and the cold tier's
//! own invariants hold.

use crate::cold::{ColdPosition, ColdScan, ColdTier};
use crate::error::{Error, Result};
use crate::index::alex::AlexConfig;
use crate::index::{PrimaryIndex, RowLocation};
use crate::limits;
use crate::rowstore::{RowArena, RowLayout, RowRef, SharedPages, ValueRef};
use crate::schema::{Row, TableDef, Value};
use std::ops::Bound;
use std::sync::Arc;

/// The primary index every table uses.
pub(crate) type Index = crate::index::alex::AlexIndex;

/// The packing buffer is dropped after a row larger than this.
const SCRATCH_BYTES_KEEP: usize = 1 << 20;

/// How far ahead [`Table::get_many_with`] works: the slots of the keys this far ahead are
/// being searched and those twice as far requested. Eight keys of work (a few hundred ns)
/// covers one DRAM miss, and keeps about 16 misses in flight, within what a core tracks.
pub(crate) const GET_MANY_AHEAD: usize = 8;

/// How many rows ahead [`Table::iter`] and a flush's copy prefetch: about the misses a core keeps in flight.
const ITER_PREFETCH_AHEAD: usize = 16;

/// Packed bytes of hot rows past which an Arrow export starts a new batch (see
/// `Table::export_hot`).
const HOT_EXPORT_CHUNK_BYTES: usize = 64 << 20;

/// How many keys ahead a batch insert prefetches the index slot of.
const INSERT_PREFETCH_AHEAD: usize = 8;

/// Stable identity of a table in the log (names can be reused after a drop).
pub(crate) type TableId = u32;

pub(crate) struct Table {
    pub id: TableId,
    pub def: Arc<TableDef>,
    layout: RowLayout,
    index: Index,
    /// The index's size limits (defaults unless `Options` says otherwise; every rebuild of
    /// the index uses them).
    index_config: AlexConfig,
    rows: RowArena,
    /// Counts the stores `rows` has been replaced by (a rebuild, a flush's copy): a flush's
    /// slots, gathered from the store of its snapshot, hold only while this is unchanged.
    rows_generation: u64,
    /// Reused buffer for packing rows.
    scratch: Vec<u8>,
    /// Keys and locations of rows restored so far, until `restore_finish` bulk-loads them.
    restoring_keys: Vec<i64>,
    restoring_locations: Vec<RowLocation>,
    /// Rows flushed to Parquet segments (crate::cold).
    pub cold: ColdTier,
    /// Writes to the keys of a flush in flight (set under the read lock by
    /// [`Table::flush_snapshot`]; writers, who hold the write lock, reach it with `get_mut`).
    flush_watch: std::sync::Mutex<Option<FlushWatch>>,
}

/// The rows a flush takes out of the hot tier: keys ascending, and where each row lies in
/// the store's pages, shared copy on write ([`RowArena::share`]), so that the capture
/// under the lock reads no row. The rows are gathered and written as a segment with no
/// lock held ([`FlushSnapshot::write`]).
pub(crate) struct FlushSnapshot {
    layout: RowLayout,
    keys: Vec<i64>,
    locations: Vec<RowLocation>,
    /// The table's `rows_generation` when the rows were taken.
    rows_generation: u64,
    pages: SharedPages,
    /// The rows' bytes, estimated from the store's bytes a row.
    bytes_estimate: usize,
    /// Each row's length and slot (in the store's `HotColumns`), known once
    /// [`FlushSnapshot::write`] gathered the rows: the install frees the moved rows' runs
    /// without reading them again.
    lens: Vec<(u32, u32)>,
}

impl FlushSnapshot {
    /// Rows taken.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys taken, ascending.
    pub fn keys(&self) -> &[i64] {
        &self.keys
    }

    /// Writes the rows as segment `id` of table `table_id` in `dir`, durably (see
    /// [`ColdTier::write_segment`]); the table lists it at [`Table::flush_install`]. The rows
    /// lie scattered over the pages when keys came in random order, so they are first
    /// gathered into one buffer in key order, the row [`ITER_PREFETCH_AHEAD`] places ahead
    /// prefetched, and the encoder's column passes read that buffer in order.
    pub fn write(
        &mut self,
        env: &crate::env::Env,
        dir: &std::path::Path,
        table_id: TableId,
        def: &TableDef,
        id: u64,
        lsn: u64,
    ) -> Result<crate::cold::Segment> {
        let mut bytes = Vec::with_capacity(self.bytes_estimate);
        let mut ends = Vec::with_capacity(self.keys.len());
        self.lens.clear();
        self.lens.reserve(self.keys.len());
        for (i, &location) in self.locations.iter().enumerate() {
            if let Some(&ahead) = self.locations.get(i + ITER_PREFETCH_AHEAD) {
                self.pages.prefetch(ahead);
            }
            let row = self.pages.bytes(location);
            let len = self.layout.len_of(row).min(row.len());
            bytes.extend_from_slice(&row[..len]);
            ends.push(bytes.len());
            self.lens.push((len as u32, self.pages.slot_at(location)));
        }
        let mut start = 0;
        let rows: Vec<RowRef<'_>> = self
            .keys
            .iter()
            .zip(&ends)
            .map(|(&key, &end)| {
                let row = RowRef::new(&self.layout, key, &bytes[start..end]);
                start = end;
                row
            })
            .collect();
        ColdTier::write_segment(env, dir, table_id, def, &rows, lsn, id)
    }
}

/// Updates and deletes, since a flush's snapshot, of hot keys up to the flush's last key.
struct FlushWatch {
    last: i64,
    written: Vec<i64>,
}

impl Table {
    pub fn new(id: TableId, def: Arc<TableDef>) -> Table {
        let layout = RowLayout::new(&def);
        Table {
            id,
            rows: RowArena::new(&layout),
            rows_generation: 0,
            layout,
            def,
            index: <Index as PrimaryIndex>::new(),
            index_config: AlexConfig::default(),
            scratch: Vec::new(),
            restoring_keys: Vec::new(),
            restoring_locations: Vec::new(),
            cold: ColdTier::default(),
            flush_watch: std::sync::Mutex::new(None),
        }
    }

    /// An index of `pairs` (strictly ascending) with this table's index limits.
    fn build_index(&self, pairs: &[(i64, RowLocation)]) -> std::result::Result<Index, String> {
        if pairs.is_empty() {
            return Ok(Index::with_config(self.index_config));
        }
        Index::bulk_load_with_config(pairs, self.index_config)
    }

    /// Gives the index other size limits, rebuilding it when they differ.
    pub fn set_index_config(&mut self, config: AlexConfig) -> std::result::Result<(), String> {
        if config == self.index_config {
            return Ok(());
        }
        self.index_config = config;
        let pairs: Vec<(i64, RowLocation)> =
            PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded).collect();
        let len_before = PrimaryIndex::len(&self.index);
        self.index = self.build_index(&pairs)?;
        debug_assert_eq!(PrimaryIndex::len(&self.index), len_before);
        Ok(())
    }

    /// Rows in the table, hot and cold.
    pub fn len(&self) -> usize {
        self.hot_len() + self.cold.visible_rows()
    }

    /// Rows in the hot tier.
    pub fn hot_len(&self) -> usize {
        PrimaryIndex::len(&self.index)
    }

    fn row_at(&self, key: i64, location: RowLocation) -> RowRef<'_> {
        RowRef::new(&self.layout, key, self.rows.bytes(location))
    }

    /// The hot version of `key`, read in place.
    pub fn get_hot(&self, key: i64) -> Option<RowRef<'_>> {
        let location = PrimaryIndex::get(&self.index, key)?;
        let bytes = self.rows.bytes(location);
        // A row starts anywhere in a cache line, so about half of the rows up to 64 bytes
        // spill into the next line; asking for it now overlaps its miss with the first one.
        // `bytes` runs to the end of the page and the row's length is only known once its
        // first line arrives, so the next line is asked for every row, spilling or not.
        if let Some(next_line) = bytes.get(63) {
            crate::mem::prefetch(next_line);
        }
        Some(RowRef::new(&self.layout, key, bytes))
    }

    pub fn hot_contains(&self, key: i64) -> bool {
        PrimaryIndex::get(&self.index, key).is_some()
    }

    /// Where the row with `key` is, if the table has one. A cold key costs a filter probe
    /// per segment whose range covers it, and a key page read (usually cached) for each
    /// segment that may hold it.
    pub fn locate(&self, key: i64) -> Result<Option<Located>> {
        if self.hot_contains(key) {
            return Ok(Some(Located::Hot));
        }
        if self.cold.is_empty() {
            return Ok(None);
        }
        Ok(self.cold.find(&self.def, key)?.map(Located::Cold))
    }

    /// Whether the table has a row with `key`.
    pub fn contains(&self, key: i64) -> Result<bool> {
        Ok(self.locate(key)?.is_some())
    }

    /// Whether the cold tier has a visible row with `key`.
    fn cold_contains(&self, key: i64) -> Result<bool> {
        if self.cold.is_empty() {
            return Ok(false);
        }
        Ok(self.cold.find(&self.def, key)?.is_some())
    }

    /// The row with `key`: the hot tier first, then the cold segments.
    pub fn get(&self, key: i64) -> Result<Option<Row>> {
        self.get_with(key, |row| row.to_row())
    }

    /// Calls `read` with the row with `key`, read in place if it is hot; a cold row is read
    /// from its segment first.
    pub fn get_with<T>(&self, key: i64, read: impl FnOnce(RowRef<'_>) -> T) -> Result<Option<T>> {
        if let Some(row) = self.get_hot(key) {
            return Ok(Some(read(row)));
        }
        if self.cold.is_empty() {
            return Ok(None);
        }
        Ok(self
            .cold
            .get(&self.def, key)?
            .map(|row| self.with_packed(key, &row, read)))
    }

    /// Calls `read(i, row)` for each `keys[i]` that has a row, in the order of `keys`
    /// (duplicates included); absent keys are skipped. Hot rows are read in place, cold ones
    /// from their segment.
    ///
    /// A single get waits for two dependent cache misses, the index slot and then the row.
    /// Here the lookups run as a pipeline [`GET_MANY_AHEAD`] keys deep: while key `i`'s row is
    /// read, key `i + AHEAD`'s slot is searched (its row then requested) and key
    /// `i + 2 * AHEAD`'s slot requested, so the misses of many keys are in flight at once
    /// instead of queueing one after another.
    pub fn get_many_with(
        &self,
        keys: &[i64],
        mut read: impl FnMut(usize, RowRef<'_>),
    ) -> Result<()> {
        const AHEAD: usize = GET_MANY_AHEAD;
        // Locations found but not yet read: key `j`'s at `j % RING`.
        const RING: usize = 2 * AHEAD;
        let mut located: [Option<RowLocation>; RING] = [None; RING];
        for step in 0..keys.len() + 2 * AHEAD {
            if let Some(&key) = keys.get(step) {
                PrimaryIndex::prefetch_lookup(&self.index, key);
            }
            if let Some(j) = step.checked_sub(AHEAD).filter(|j| *j < keys.len()) {
                let location = PrimaryIndex::get(&self.index, keys[j]);
                if let Some(location) = location {
                    let bytes = self.rows.bytes(location);
                    for line in [bytes.first(), bytes.get(63)].into_iter().flatten() {
                        crate::mem::prefetch(line);
                    }
                }
                located[j % RING] = location;
            }
            let Some(i) = step.checked_sub(2 * AHEAD).filter(|i| *i < keys.len()) else {
                continue;
            };
            let key = keys[i];
            match located[i % RING] {
                Some(location) => read(i, self.row_at(key, location)),
                None if self.cold.is_empty() => {}
                None => {
                    if let Some(row) = self.cold.get(&self.def, key)? {
                        self.with_packed(key, &row, |row| read(i, row));
                    }
                }
            }
        }
        Ok(())
    }

    /// Calls `read` with an owned row seen through a [`RowRef`].
    fn with_packed<T>(&self, key: i64, row: &[Value], read: impl FnOnce(RowRef<'_>) -> T) -> T {
        let mut packed = Vec::with_capacity(self.layout.packed_len(row) as usize);
        self.layout.pack(row, &mut packed);
        read(RowRef::new(&self.layout, key, &packed))
    }

    /// Checks that `row` (valid for the schema) fits the row store's per-row limit.
    fn check_row_size(&self, key: i64, row: &[Value]) -> Result<()> {
        let size_bytes = self.layout.packed_len(row);
        if size_bytes > limits::ROW_BYTES_MAX as u64 {
            tracing::debug!(table = self.def.name(), key, size_bytes, "row too large");
            return Err(Error::LimitExceeded {
                what: "packed row bytes",
                size: size_bytes as usize,
                limit: limits::ROW_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Validates rows for insertion: schema and size (errors in row order), keys new to the
    /// batch and to the table (the smallest offending key is named). Returns the keys in row
    /// order.
    pub fn check_insert(&self, rows: &[Row]) -> Result<Vec<i64>> {
        let keys = self.check_rows(rows)?;
        let order = key_order(&keys);
        self.check_distinct(&keys, &order)?;
        match self.smallest_present(&keys, &order)? {
            Some(key) => Err(self.duplicate(key)),
            None => Ok(keys),
        }
    }

    /// Schema and size (errors in row order); the table is not consulted. Returns the keys in
    /// row order.
    fn check_rows(&self, rows: &[Row]) -> Result<Vec<i64>> {
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            let key = self.def.validate_row(row)?;
            self.check_row_size(key, row)?;
            keys.push(key);
        }
        Ok(keys)
    }

    /// Keys distinct within the batch (the smallest repeated key is named); `order` is from
    /// [`key_order`].
    fn check_distinct(&self, keys: &[i64], order: &[usize]) -> Result<()> {
        match order.windows(2).find(|pair| keys[pair[0]] == keys[pair[1]]) {
            Some(pair) => Err(self.duplicate(keys[pair[0]])),
            None => Ok(()),
        }
    }

    /// The smallest of `keys` already in the table, probing in key order (consecutive probes
    /// walk the same nodes); `order` is from [`key_order`].
    fn smallest_present(&self, keys: &[i64], order: &[usize]) -> Result<Option<i64>> {
        for key in order.iter().map(|&i| keys[i]) {
            if self.contains(key)? {
                return Ok(Some(key));
            }
        }
        Ok(None)
    }

    /// A live insert of `rows` as one all-or-nothing batch: validates them, inserts them with
    /// one index descent per key that both finds a duplicate and inserts, then calls `log`
    /// (which appends the batch to the log). A key already in the table, or a failed `log`,
    /// undoes every change of the batch and returns the error; duplicates name the smallest
    /// such key, as [`Table::check_insert`] does. Returns what `log` returned.
    pub fn insert_logged(
        &mut self,
        rows: Vec<Row>,
        log: impl FnOnce() -> Result<u64>,
    ) -> Result<u64> {
        let keys = self.check_rows(&rows)?;
        if let ([key], [row]) = (&keys[..], &rows[..]) {
            if self.cold_contains(*key)? {
                return Err(self.duplicate(*key));
            }
            // The row is packed and stored only once the index has found the key absent.
            let (scratch, layout, store) = (&mut self.scratch, &self.layout, &mut self.rows);
            let inserted = PrimaryIndex::insert_with(&mut self.index, *key, || {
                pack_and_store(scratch, layout, store, row)
            });
            if !inserted {
                return Err(self.duplicate(*key));
            }
        } else {
            let order = key_order(&keys);
            self.check_distinct(&keys, &order)?;
            if !self.cold.is_empty() {
                let sorted: Vec<i64> = order.iter().map(|&i| keys[i]).collect();
                if self.cold.smallest_present(&self.def, &sorted)?.is_some() {
                    // The smallest key present in either tier names the error.
                    return Err(self.duplicate_among(&keys, &order));
                }
            }
            let locations = self.store_rows(&rows, &order);
            // Each insert's slot is usually a cache miss; asking for the slot of the key a few
            // places ahead overlaps those misses instead of taking them one after another.
            let index = &mut self.index;
            let inserted = (0..keys.len())
                .take_while(|&i| {
                    if let Some(&ahead) = keys.get(i + INSERT_PREFETCH_AHEAD) {
                        PrimaryIndex::prefetch(index, ahead);
                    }
                    PrimaryIndex::insert(index, keys[i], locations[i])
                })
                .count();
            if inserted < keys.len() {
                for &key in &keys[..inserted] {
                    PrimaryIndex::remove(&mut self.index, key);
                }
                for &location in &locations {
                    self.rows.remove(&self.layout, location);
                }
                self.maybe_rebuild();
                return Err(self.duplicate_among(&keys, &order));
            }
        }
        self.shrink_scratch();
        log().inspect_err(|_| {
            for &key in &keys {
                self.remove_hot(key);
            }
            self.maybe_rebuild();
        })
    }

    /// The duplicate-key error for a batch known to hold a key already in the table.
    fn duplicate_among(&self, keys: &[i64], order: &[usize]) -> Error {
        match self.smallest_present(keys, order) {
            Ok(key) => self.duplicate(key.or(keys.first().copied()).unwrap_or_default()),
            Err(e) => e,
        }
    }

    /// Applies an insert that passed [`Table::check_insert`] (recovery's path).
    pub fn apply_insert(&mut self, keys: &[i64], rows: Vec<Row>) {
        debug_assert_eq!(keys.len(), rows.len());
        let locations = self.store_rows(&rows, &key_order(keys));
        for (&key, location) in keys.iter().zip(locations) {
            let inserted = PrimaryIndex::insert(&mut self.index, key, location);
            debug_assert!(
                inserted,
                "insert of key {key} passed its check but was a duplicate"
            );
        }
        self.shrink_scratch();
    }

    /// Packs a batch's rows into the row store in key order (`order`, from [`key_order`]);
    /// returns their locations in row order. A scan in key order then reads each batch as
    /// one forward stream. The index takes the keys in the caller's order: a sorted run of
    /// keys with huge gaps between clusters sends ALEX's append handling into oversized
    /// nodes (docs/BENCHMARKS.md), and the caller's order is the one it is tuned and tested
    /// for. The state is the same either way.
    fn store_rows(&mut self, rows: &[Row], order: &[usize]) -> Vec<RowLocation> {
        let mut locations = vec![0; rows.len()];
        for &i in order {
            locations[i] = self.store_row(&rows[i]);
        }
        locations
    }

    /// Packs `row` into the row store and returns its location.
    fn store_row(&mut self, row: &Row) -> RowLocation {
        pack_and_store(&mut self.scratch, &self.layout, &mut self.rows, row)
    }

    /// Keeps the packing buffer from holding on to the size of one huge row.
    fn shrink_scratch(&mut self) {
        if self.scratch.capacity() > SCRATCH_BYTES_KEEP {
            self.scratch = Vec::new();
        }
    }

    /// Makes room for `rows` more rows to be restored by [`Table::restore_packed`], so the
    /// keys and locations are not copied as they grow (at 10M rows, 10% of an open).
    pub fn restore_reserve(&mut self, rows: usize) {
        self.restoring_keys.reserve(rows);
        self.restoring_locations.reserve(rows);
    }

    /// Appends one packed row (from [`RowLayout::pack_encoded`], which checked it against
    /// the schema) to a table being restored from a checkpoint; its key must follow the last
    /// one. [`Table::restore_finish`] builds the index once all are in.
    pub fn restore_packed(&mut self, key: i64, packed: &[u8]) -> std::result::Result<(), String> {
        if let Some(&previous) = self.restoring_keys.last() {
            if previous >= key {
                return Err(format!(
                    "row {}: key {key} does not follow key {previous}",
                    self.restoring_keys.len()
                ));
            }
        } else if self.hot_len() > 0 {
            return Err("restore into a table that has rows".into());
        }
        let location = self.rows.insert(packed);
        self.restoring_keys.push(key);
        self.restoring_locations.push(location);
        Ok(())
    }

    /// How this table packs rows (what [`Table::restore_packed`] takes).
    pub(crate) fn layout(&self) -> &RowLayout {
        &self.layout
    }

    /// Builds the index of the rows restored by [`Table::restore_packed`], its data nodes
    /// in two halves through `spawn`'s `join`.
    pub fn restore_finish(
        &mut self,
        spawn: &dyn crate::env::Spawn,
    ) -> std::result::Result<(), String> {
        let keys = std::mem::take(&mut self.restoring_keys);
        let locations = std::mem::take(&mut self.restoring_locations);
        if keys.is_empty() {
            return Ok(());
        }
        self.index = Index::bulk_load_split_with(&keys, &locations, self.index_config, &|a, b| {
            spawn.join(a, b)
        })?;
        Ok(())
    }

    /// Validates an update of `key` to `row`: the row fits the schema, keeps its key, and
    /// the key exists. Returns where the current version is.
    pub fn check_update(&self, key: i64, row: &Row) -> Result<Located> {
        let new_key = self.def.validate_row(row)?;
        if new_key != key {
            return Err(Error::KeyChanged {
                table: self.def.name().to_string(),
                key,
                new_key,
            });
        }
        self.check_row_size(key, row)?;
        self.locate(key)?.ok_or_else(|| Error::KeyNotFound {
            table: self.def.name().to_string(),
            key,
        })
    }

    /// Applies an update that passed [`Table::check_update`], which found the current
    /// version at `located` (under the same lock).
    pub fn apply_update(&mut self, key: i64, row: Row, located: Located) {
        let Some(location) = PrimaryIndex::get(&self.index, key) else {
            // A cold row: the new version goes to the hot tier and the cold one is hidden.
            debug_assert!(matches!(located, Located::Cold(_)));
            if let Located::Cold(position) = located {
                self.cold.hide(position);
            }
            self.apply_insert(&[key], vec![row]);
            return;
        };
        self.note_write(key);
        self.scratch.clear();
        self.layout.pack(&row, &mut self.scratch);
        let moved = self.rows.replace(&self.layout, location, &self.scratch);
        if moved != location {
            let replaced = PrimaryIndex::replace(&mut self.index, key, moved);
            debug_assert_eq!(replaced, Some(location));
        }
        self.shrink_scratch();
        self.maybe_rebuild();
    }

    /// Removes `key`, found at `located` (by [`Table::locate`], under the same lock).
    pub fn apply_delete(&mut self, key: i64, located: Located) {
        match located {
            Located::Hot => {
                self.note_write(key);
                let removed = self.remove_hot(key);
                debug_assert!(removed, "delete of hot key {key} found no row");
            }
            Located::Cold(position) => self.cold.hide(position),
        }
        self.maybe_rebuild();
    }

    fn remove_hot(&mut self, key: i64) -> bool {
        match PrimaryIndex::remove(&mut self.index, key) {
            Some(location) => {
                self.rows.remove(&self.layout, location);
                true
            }
            None => false,
        }
    }

    /// Rebuilds the row store once it is mostly free space (see [`Table::rebuild_rows`]).
    fn maybe_rebuild(&mut self) {
        drop(self.rebuild_rows());
    }

    /// Rebuilds the row store if it is mostly free space: copies the live rows, in key
    /// order, into fresh pages and bulk-loads the index over their new locations. Returns
    /// the old index and pages, if it rebuilt.
    fn rebuild_rows(&mut self) -> Option<Retired> {
        if !self.rows.wants_rebuild() {
            return None;
        }
        let _span = tracing::debug_span!(
            "rebuild_rows",
            table = self.def.name(),
            rows = self.hot_len()
        )
        .entered();
        let mut entries = Vec::with_capacity(self.hot_len());
        entries.extend(PrimaryIndex::range(
            &self.index,
            Bound::Unbounded,
            Bound::Unbounded,
        ));
        let (fresh, pairs) = self.copy_rows(&entries);
        match self.build_index(&pairs) {
            Ok(index) => Some(Retired {
                indexes: vec![std::mem::replace(&mut self.index, index)],
                stores: vec![self.replace_rows(fresh)],
            }),
            // The index yields sorted, distinct keys, so this cannot happen; keeping the old
            // store is correct, only larger.
            Err(e) => {
                debug_assert!(false, "rebuild of the row store failed: {e}");
                None
            }
        }
    }

    /// Hot rows with keys in the range, in key order, read in place.
    pub fn scan_hot(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
    ) -> impl Iterator<Item = RowRef<'_>> + Clone + '_ {
        PrimaryIndex::range(&self.index, lower, upper)
            .map(move |(key, location)| self.row_at(key, location))
    }

    /// Rows (hot and cold) with keys in the range, in key order.
    pub fn scan(&self, lower: Bound<i64>, upper: Bound<i64>) -> Result<Vec<Row>> {
        if self.cold.is_empty() {
            return Ok(self.scan_hot(lower, upper).map(|r| r.to_row()).collect());
        }
        let mut rows = self.cold.rows(&self.def, lower, upper)?;
        for row in self.scan_hot(lower, upper) {
            debug_assert!(
                !rows.contains_key(&row.key()),
                "key {} hot and cold",
                row.key()
            );
            rows.insert(row.key(), row.to_row());
        }
        Ok(rows.into_values().collect())
    }

    /// Calls `visit` with each row (hot and cold) with a key in the range, in key order; hot
    /// rows are read in place.
    pub fn for_each_row(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
        mut visit: impl FnMut(RowRef<'_>),
    ) -> Result<()> {
        if self.cold.is_empty() {
            self.scan_hot(lower, upper).for_each(visit);
            return Ok(());
        }
        let pk = self.def.primary_key_index();
        let mut packed = Vec::new();
        for row in self.scan(lower, upper)? {
            let key = row.get(pk).and_then(|v| ValueRef::from(v).as_i64());
            let Some(key) = key else { continue };
            packed.clear();
            self.layout.pack(&row, &mut packed);
            visit(RowRef::new(&self.layout, key, &packed));
        }
        Ok(())
    }

    /// The indices of the columns named in `projection`, in that order (all columns if
    /// `None`); `Error::ColumnNotFound` for a name the table lacks.
    pub fn projection_columns(&self, projection: Option<&[&str]>) -> Result<Vec<usize>> {
        match projection {
            Some(names) => names
                .iter()
                .map(|name| self.def.column_index(name))
                .collect(),
            None => Ok((0..self.def.columns().len()).collect()),
        }
    }

    /// The rows of `keys` (in that order, absent keys skipped) as one Arrow batch of
    /// `columns`.
    pub fn get_many_batch(
        &self,
        keys: &[i64],
        columns: &[usize],
    ) -> Result<arrow_array::RecordBatch> {
        let schema = self.projected_schema(columns)?;
        let mut rows: Vec<crate::Row> = Vec::new();
        self.get_many_with(keys, |_, row| rows.push(row.to_row()))?;
        let refs: Vec<&crate::Row> = rows.iter().collect();
        crate::cold::segment::rows_to_batch(&self.def, schema, columns, &refs)
    }

    fn projected_schema(&self, columns: &[usize]) -> Result<arrow_schema::SchemaRef> {
        Ok(std::sync::Arc::new(
            crate::cold::segment::arrow_schema(&self.def)
                .project(columns)
                .map_err(|e| Error::InvalidSchema {
                    table: self.def.name().to_string(),
                    reason: e.to_string(),
                })?,
        ))
    }

    /// Rows (hot and cold) with keys in the range as a stream of Arrow batches of
    /// `columns`: the cold segments' visible rows segment by segment, then the hot rows
    /// ([`Table::export_hot`] says in which order). The hot rows in the range are exported
    /// now (the caller holds the state's lock); the cold segments are read as the stream is
    /// consumed, from a snapshot that needs no lock.
    pub fn scan_stream(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
        columns: &[usize],
        ranges: &[crate::cold::prune::ColumnRange],
    ) -> Result<TableScan> {
        let pruning = crate::cold::prune::Pruning::new(&self.def, ranges)?;
        let schema = self.projected_schema(columns)?;
        let hot = self.export_hot(lower, upper, columns, &schema)?;
        Ok(TableScan {
            schema,
            cold: self.cold.scan(&self.def, lower, upper, columns, pruning),
            hot,
        })
    }

    /// The hot rows in the range as Arrow batches of `columns` (`schema`). When the range
    /// holds every hot key and the columns are all kept by slot, in slot order from the
    /// hot columns (crate::hot_columns). Otherwise in key order: the index yields each
    /// chunk's rows (prefetched ahead), then each column is filled in one pass over them
    /// ([`RowLayout::export_column`]). A chunk ends at
    /// [`BATCH_ROWS`](crate::cold::segment::BATCH_ROWS) rows or once its rows pass
    /// [`HOT_EXPORT_CHUNK_BYTES`], which keeps a string column under Arrow's `i32` offsets
    /// (a row is at most `limits::ROW_BYTES_MAX`).
    fn export_hot(
        &self,
        lower: Bound<i64>,
        upper: Bound<i64>,
        columns: &[usize],
        schema: &arrow_schema::SchemaRef,
    ) -> Result<std::collections::VecDeque<arrow_array::RecordBatch>> {
        let batch_rows = crate::cold::segment::BATCH_ROWS;
        // A scan of every hot row whose columns are all fixed-width reads them column by
        // column, in slot order, with no walk of the index (crate::hot_columns).
        let columnar = self.rows.columns();
        if !columns.is_empty() && columnar.covers(columns) && self.range_holds_all(lower, upper) {
            debug_assert_eq!(columnar.live_count(), self.hot_len());
            crate::probe!(HotColumnarExport);
            return columnar
                .export(columns, schema)
                .map_err(|reason| Error::InvalidSchema {
                    table: self.def.name().to_string(),
                    reason: format!("hot rows cannot be exported: {reason}"),
                });
        }
        // A chunk's bytes matter only for an exported Utf8 or Binary column.
        let variable = columns.iter().any(|&c| self.layout.is_variable(c));
        let mut batches = std::collections::VecDeque::new();
        let mut keys = Vec::with_capacity(batch_rows);
        let mut rows: Vec<&[u8]> = Vec::with_capacity(batch_rows);
        if !variable {
            // Fixed-width columns only: this pass touches only the index, a data node at a
            // time; the first column's pass prefetches the rows' bytes (`export_column`)
            // and later columns find them cached.
            let mut range = PrimaryIndex::range(&self.index, lower, upper);
            let mut locations = Vec::with_capacity(batch_rows);
            loop {
                keys.clear();
                locations.clear();
                rows.clear();
                if range.fill(&mut keys, &mut locations, batch_rows) == 0 {
                    return Ok(batches);
                }
                rows.extend(locations.iter().map(|&l| self.rows.bytes(l)));
                batches.push_back(self.hot_batch(columns, schema, &keys, &rows)?);
            }
        }
        // With a Utf8 or Binary column each row's length is read here, so rows are
        // prefetched ahead of it.
        let mut entries = PrimaryIndex::range(&self.index, lower, upper).peekable();
        let mut ahead = PrimaryIndex::range(&self.index, lower, upper).skip(ITER_PREFETCH_AHEAD);
        while entries.peek().is_some() {
            keys.clear();
            rows.clear();
            let mut bytes = 0;
            for (key, location) in entries.by_ref() {
                let row = self.rows.bytes(location);
                if let Some((_, next)) = ahead.next() {
                    self.rows.prefetch(next);
                }
                bytes += self.layout.len_of(row);
                keys.push(key);
                rows.push(row);
                if keys.len() == batch_rows || bytes >= HOT_EXPORT_CHUNK_BYTES {
                    break;
                }
            }
            batches.push_back(self.hot_batch(columns, schema, &keys, &rows)?);
        }
        Ok(batches)
    }

    /// Whether every hot key lies within `lower..upper`: no key below it, none above (two
    /// seeks of the index).
    fn range_holds_all(&self, lower: Bound<i64>, upper: Bound<i64>) -> bool {
        let none = |lower, upper| {
            PrimaryIndex::range(&self.index, lower, upper)
                .next()
                .is_none()
        };
        let none_below = match lower {
            Bound::Unbounded => true,
            Bound::Included(lo) => none(Bound::Unbounded, Bound::Excluded(lo)),
            Bound::Excluded(lo) => none(Bound::Unbounded, Bound::Included(lo)),
        };
        let none_above = match upper {
            Bound::Unbounded => true,
            Bound::Included(hi) => none(Bound::Excluded(hi), Bound::Unbounded),
            Bound::Excluded(hi) => none(Bound::Included(hi), Bound::Unbounded),
        };
        none_below && none_above
    }

    /// One batch of the hot export: `columns` of the rows `rows` (whose keys are `keys`).
    fn hot_batch(
        &self,
        columns: &[usize],
        schema: &arrow_schema::SchemaRef,
        keys: &[i64],
        rows: &[&[u8]],
    ) -> Result<arrow_array::RecordBatch> {
        let arrays = columns
            .iter()
            .map(|&column| {
                self.layout
                    .export_column(column, keys, rows)
                    .map_err(|reason| Error::InvalidSchema {
                        table: self.def.name().to_string(),
                        reason: format!("hot rows cannot be exported: {reason}"),
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        arrow_array::RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(keys.len())),
        )
        .map_err(|e| Error::InvalidSchema {
            table: self.def.name().to_string(),
            reason: format!("hot rows do not form an Arrow batch: {e}"),
        })
    }

    /// A flush, first phase (under the read lock; writers wait only for this walk of the
    /// index): takes the lowest-key hot rows, all but `keep_rows`, by location in the
    /// shared pages (no row is read), and from now on records every update
    /// and delete of their keys, until [`Table::flush_install`] or
    /// [`Table::flush_abandon`]. `None` if there is nothing to flush.
    pub fn flush_snapshot(&self, keep_rows: usize) -> Option<FlushSnapshot> {
        let count = self.hot_len().saturating_sub(keep_rows);
        if count == 0 {
            return None;
        }
        let mut snapshot = FlushSnapshot {
            layout: self.layout.clone(),
            keys: Vec::with_capacity(count),
            locations: Vec::with_capacity(count),
            rows_generation: self.rows_generation,
            pages: self.rows.share(),
            // Sized up front: grown by doubling, the gather of a multi-GB flush moved its
            // bytes several times (5% of a 1B-row load in memmove).
            bytes_estimate: self.row_bytes() / self.hot_len().max(1) * count,
            lens: Vec::new(),
        };
        for (key, location) in
            PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded).take(count)
        {
            snapshot.keys.push(key);
            snapshot.locations.push(location);
        }
        let last = *snapshot.keys.last()?;
        *self.flush_watch.lock().unwrap_or_else(|p| p.into_inner()) = Some(FlushWatch {
            last,
            written: Vec::new(),
        });
        Some(snapshot)
    }

    /// The last key copied by a flush that has not installed yet.
    pub fn flush_in_flight(&self) -> Option<i64> {
        self.flush_watch
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|w| w.last)
    }

    /// Ends a flush whose segment was not written: stops recording writes.
    pub fn flush_abandon(&self) {
        *self.flush_watch.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// A flush, last phase (under the write lock): lists `segment`, written from `snapshot`
    /// with no lock held, and drops from the hot tier the flushed rows that nobody wrote
    /// since the snapshot. A row updated or deleted meanwhile has its newer state in the
    /// hot tier (or none), so its copy in the segment is hidden at once in the segment's
    /// deletion vector: every key keeps one visible version.
    ///
    /// Returns the old index and pages the install replaced, for the caller to drop after
    /// it releases the write lock (freeing a 10M-row index and its pages is not free).
    #[must_use = "dropping the retired structures under the write lock stalls writers"]
    pub fn flush_install(
        &mut self,
        snapshot: &FlushSnapshot,
        segment: crate::cold::Segment,
    ) -> Retired {
        let watch = self
            .flush_watch
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let mut written = watch.map(|w| w.written).unwrap_or_default();
        written.sort_unstable();
        written.dedup();
        crate::probe!(ColdFlush);
        let at = self.cold.add(segment);
        let mut moved: Vec<(i64, Option<(u32, u32)>)> = Vec::with_capacity(snapshot.keys.len());
        let mut touched = written.iter().peekable();
        for (row, &key) in snapshot.keys.iter().enumerate() {
            while touched.next_if(|&&k| k < key).is_some() {}
            if touched.next_if(|&&k| k == key).is_some() {
                crate::probe!(ColdWrittenDuringFlush);
                self.cold.hide(crate::cold::ColdPosition {
                    segment: at,
                    row: row as u32,
                });
            } else {
                // The row is where the snapshot found it (nobody wrote it since), and its
                // length and slot are known from the gather.
                moved.push((key, snapshot.lens.get(row).copied()));
            }
        }
        // A store rebuilt since the snapshot numbered its rows afresh: the gathered slots
        // name the old store's, so each run's slot is read from the row where it is now.
        if snapshot.rows_generation != self.rows_generation {
            for (_, known) in &mut moved {
                *known = None;
            }
        }
        let mut retired = self.remove_flushed(&moved);
        // The flushed rows' space is free now; a large flush leaves mostly free pages.
        if let Some(more) = self.rebuild_rows() {
            retired.absorb(more);
        }
        retired
    }

    /// Removes the hot rows of `moved` (keys ascending, every one in the hot tier, with the
    /// row's length and slot when known). The index is rebuilt by one bulk load of the rest:
    /// removing a flush's keys one by one took 44% of a shuffled-key ingest (ALEX shifts
    /// each data node's slots per remove). Returns what it replaced, to drop off the lock.
    fn remove_flushed(&mut self, moved: &[(i64, Option<(u32, u32)>)]) -> Retired {
        let mut retired = Retired::default();
        let Some(&(last, _)) = moved.last() else {
            return retired;
        };
        let mut flushed = Vec::with_capacity(moved.len());
        let mut rest = Vec::with_capacity(self.hot_len().saturating_sub(moved.len()));
        let mut next = moved.iter().peekable();
        for (key, location) in PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded)
        {
            match next.next_if(|&&(k, _)| key <= last && k == key) {
                Some(&(_, len)) => flushed.push((location, len)),
                None => rest.push((key, location)),
            }
        }
        debug_assert_eq!(
            flushed.len(),
            moved.len(),
            "a flushed key left the hot tier"
        );
        if flushed.len() >= rest.len() {
            // Most of the store goes: copying the rest into fresh pages (in key order) costs
            // less than freeing each flushed row and then rebuilding a mostly free store.
            let (fresh, pairs) = self.copy_rows(&rest);
            if let Ok(index) = self.build_index(&pairs) {
                retired
                    .indexes
                    .push(std::mem::replace(&mut self.index, index));
                retired.stores.push(self.replace_rows(fresh));
                return retired;
            }
            debug_assert!(false, "bulk load after a flush failed");
        }
        match self.build_index(&rest) {
            Ok(index) => {
                retired
                    .indexes
                    .push(std::mem::replace(&mut self.index, index));
                let mut runs = Vec::with_capacity(flushed.len());
                for (location, known) in flushed {
                    match known {
                        Some((len, slot)) => runs.push((location, len, slot)),
                        None => self.rows.remove(&self.layout, location),
                    }
                }
                self.rows.remove_runs(&self.layout, &runs);
            }
            // The index yields sorted, distinct keys, so this cannot happen; removing key by
            // key is correct, only slower.
            Err(e) => {
                debug_assert!(false, "bulk load after a flush failed: {e}");
                for &(key, _) in moved {
                    self.remove_hot(key);
                }
            }
        }
        retired
    }

    /// Puts `fresh` in place of the row store, returning the old one.
    fn replace_rows(&mut self, fresh: RowArena) -> RowArena {
        self.rows_generation += 1;
        std::mem::replace(&mut self.rows, fresh)
    }

    /// The rows at `entries` (key order) copied into fresh pages: the new store and each
    /// key's new location. Rows of random-order keys lie scattered over the pages, so the
    /// row [`ITER_PREFETCH_AHEAD`] places ahead is prefetched.
    fn copy_rows(&self, entries: &[(i64, RowLocation)]) -> (RowArena, Vec<(i64, RowLocation)>) {
        let mut fresh = RowArena::new(&self.layout);
        let pairs = entries
            .iter()
            .enumerate()
            .map(|(i, &(key, location))| {
                if let Some(&(_, ahead)) = entries.get(i + ITER_PREFETCH_AHEAD) {
                    self.rows.prefetch(ahead);
                }
                let len = self.rows.len_at(&self.layout, location);
                (key, fresh.insert(&self.rows.bytes(location)[..len]))
            })
            .collect();
        (fresh, pairs)
    }

    /// Records a write of hot key `key` for a flush in flight (see [`Table::flush_snapshot`]).
    fn note_write(&mut self, key: i64) {
        if let Some(watch) = self
            .flush_watch
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
        {
            if key <= watch.last {
                watch.written.push(key);
            }
        }
    }

    /// Gives this table (restored from a checkpoint) its cold tier.
    pub fn restore_cold(
        &mut self,
        segments: Vec<(crate::cold::Segment, roaring::RoaringBitmap)>,
        next_segment_id: u64,
    ) {
        self.cold = ColdTier::restore(segments, next_segment_id);
    }

    /// The hot rows as they are now, readable with no lock held: every (key, location) in
    /// key order (one walk of the index, no row read) and the store's pages, shared copy on
    /// write ([`RowArena::share`]). What a checkpoint encodes after releasing the lock.
    pub(crate) fn hot_image(&self) -> HotImage {
        let mut entries = Vec::with_capacity(self.hot_len());
        entries.extend(PrimaryIndex::range(
            &self.index,
            Bound::Unbounded,
            Bound::Unbounded,
        ));
        HotImage {
            entries,
            pages: self.rows.share(),
            layout: self.layout.clone(),
        }
    }

    /// Bytes the hot rows take in the row store (pages and free lists).
    pub fn row_bytes(&self) -> usize {
        self.rows.capacity_bytes()
    }

    pub fn index_bytes(&self) -> usize {
        PrimaryIndex::bytes_used(&self.index)
    }

    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let name = self.def.name();
        self.cold.check_invariants(name)?;
        PrimaryIndex::check_invariants(&self.index)
            .map_err(|e| format!("table {name:?}: index: {e}"))?;
        if !self.restoring_keys.is_empty() {
            return Err(format!("table {name:?}: a restore was not finished"));
        }
        let mut live_bytes = 0u64;
        let mut runs: Vec<(RowLocation, usize, i64)> = Vec::with_capacity(self.hot_len());
        for (key, location) in PrimaryIndex::range(&self.index, Bound::Unbounded, Bound::Unbounded)
        {
            let len = self
                .rows
                .check_location(&self.layout, location)
                .map_err(|e| format!("table {name:?}: key {key}: {e}"))?;
            let row = self.row_at(key, location).to_row();
            self.def
                .validate_row(&row)
                .map_err(|e| format!("table {name:?}: key {key}: stored row is invalid: {e}"))?;
            if self.def.key_of(&row) != Some(key) {
                return Err(format!("table {name:?}: key {key} reads back another key"));
            }
            live_bytes += len as u64;
            runs.push((location, len, key));
        }
        runs.sort_unstable();
        for pair in runs.windows(2) {
            let ((a, a_len, a_key), (b, _, b_key)) = (pair[0], pair[1]);
            // Zero-length rows (key-only tables) may share a location.
            if a_len > 0 && a + a_len as u64 > b && (a >> 32) == (b >> 32) {
                return Err(format!(
                    "table {name:?}: rows of keys {a_key} and {b_key} overlap at {b:#x}"
                ));
            }
        }
        self.rows
            .check_accounting(live_bytes, runs.len())
            .map_err(|e| format!("table {name:?}: row store: {e}"))
    }

    fn duplicate(&self, key: i64) -> Error {
        Error::DuplicateKey {
            table: self.def.name().to_string(),
            key,
        }
    }
}

/// Where a table's row with some key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Located {
    /// In the hot tier.
    Hot,
    /// The visible cold version, at this position.
    Cold(ColdPosition),
}

/// A streaming scan of a table (see [`Table::scan_stream`]): the cold part, then the hot
/// rows exported when it started.
pub struct TableScan {
    schema: arrow_schema::SchemaRef,
    cold: ColdScan,
    hot: std::collections::VecDeque<arrow_array::RecordBatch>,
}

impl TableScan {
    /// The schema of every batch.
    pub fn schema(&self) -> arrow_schema::SchemaRef {
        self.schema.clone()
    }

    /// Cold row groups left unread so far because their statistics rule out a column range
    /// of [`crate::Database::scan_stream_pruned`].
    pub fn row_groups_skipped(&self) -> u64 {
        self.cold.row_groups_skipped()
    }
}

impl Iterator for TableScan {
    type Item = Result<arrow_array::RecordBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(batch) = self.cold.next() {
            return Some(batch);
        }
        self.hot.pop_front().map(Ok)
    }
}

/// The indices of `keys` in ascending key order (equal keys adjacent).
fn key_order(keys: &[i64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    if keys.len() > 1 {
        order.sort_unstable_by_key(|&i| keys[i]);
    }
    order
}

/// Packs `row` through `scratch` into `store`; returns its location. A free function over the
/// fields, so that it can run inside an index insert that holds the index borrowed.
fn pack_and_store(
    scratch: &mut Vec<u8>,
    layout: &RowLayout,
    store: &mut RowArena,
    row: &Row,
) -> RowLocation {
    scratch.clear();
    layout.pack(row, scratch);
    store.insert(scratch)
}

/// A hot tier's index and pages that a flush's install replaced: dropped by the caller once
/// it has released the write lock.
#[derive(Default)]
pub(crate) struct Retired {
    indexes: Vec<Index>,
    stores: Vec<RowArena>,
}

impl Retired {
    fn absorb(&mut self, more: Retired) {
        self.indexes.extend(more.indexes);
        self.stores.extend(more.stores);
    }
}

/// A table's hot rows as of one moment (see [`Table::hot_image`]): unchanged by later
/// writes, and read with no lock held.
pub(crate) struct HotImage {
    entries: Vec<(i64, RowLocation)>,
    pages: SharedPages,
    layout: RowLayout,
}

impl HotImage {
    /// Rows in the image.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// How the rows are packed.
    pub fn layout(&self) -> &RowLayout {
        &self.layout
    }

    /// Rows `range` of the image (by position in key order) as their key and packed bytes
    /// (which run on to the end of their page; [`RowLayout`] knows where a row ends). Rows
    /// loaded in random key order lie scattered over the pages, so the row
    /// [`ITER_PREFETCH_AHEAD`] places ahead is prefetched and the misses overlap.
    pub fn packed_rows(
        &self,
        range: std::ops::Range<usize>,
    ) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        let entries = self.entries.get(range).unwrap_or_default();
        entries
            .iter()
            .enumerate()
            .map(move |(i, &(key, location))| {
                if let Some(&(_, ahead)) = entries.get(i + ITER_PREFETCH_AHEAD) {
                    self.pages.prefetch(ahead);
                }
                (key, self.pages.bytes(location))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, DataType};

    fn table() -> Table {
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
            ],
        )
        .expect("valid definition");
        Table::new(1, Arc::new(def))
    }

    fn row(k: i64, v: i64) -> Row {
        vec![Value::Int64(k), Value::Int64(v)]
    }

    fn contents(t: &Table) -> Vec<(i64, i64)> {
        let mut rows: Vec<(i64, i64)> = t
            .scan(Bound::Unbounded, Bound::Unbounded)
            .expect("scan")
            .into_iter()
            .map(|r| match (&r[0], &r[1]) {
                (Value::Int64(k), Value::Int64(v)) => (*k, *v),
                other => panic!("unexpected row {other:?}"),
            })
            .collect();
        rows.sort_unstable();
        rows
    }

    /// Writers run between a flush's copy and its install (the segment is written with no
    /// lock held): what they wrote wins, and every key has one visible version after.
    #[test]
    fn writes_during_a_flush_survive_its_install() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = crate::env::Env::os();
        let mut t = table();
        let mut model = std::collections::BTreeMap::new();
        let keys: Vec<i64> = (0..100).map(|i| i * 10).collect();
        let rows: Vec<Row> = keys.iter().map(|&k| row(k, k)).collect();
        t.apply_insert(&keys, rows);
        keys.iter().for_each(|&k| {
            model.insert(k, k);
        });

        let mut snapshot = t.flush_snapshot(40).expect("60 rows to flush");
        assert_eq!(snapshot.len(), 60);
        // Within the flushed keys (0..=590): updates, deletes, a delete then re-insert;
        // above them, an update the flush must not see; and a new key inside the range.
        for (k, v) in [(0, 1), (100, 2), (590, 3), (600, 4)] {
            let located = t.check_update(k, &row(k, v)).expect("update");
            t.apply_update(k, row(k, v), located);
            model.insert(k, v);
        }
        for k in [10, 200, 250] {
            let located = t.locate(k).expect("locate").expect("present");
            t.apply_delete(k, located);
            model.remove(&k);
        }
        t.check_insert(&[row(250, 9), row(255, 8)])
            .expect("absent keys");
        t.apply_insert(&[250, 255], vec![row(250, 9), row(255, 8)]);
        model.insert(250, 9);
        model.insert(255, 8);
        assert_eq!(contents(&t), model.clone().into_iter().collect::<Vec<_>>());

        let id = t.cold.reserve_id();
        let segment = snapshot
            .write(&env, dir.path(), t.id, &t.def.clone(), id, 1)
            .expect("segment written");
        crate::probe::reset();
        drop(t.flush_install(&snapshot, segment));
        let hidden = crate::probe::count(crate::probe::Probe::ColdWrittenDuringFlush);
        // 0, 100, 590 updated; 10, 200, 250 deleted (250 then inserted again).
        assert_eq!(hidden, 6);
        t.check_invariants().expect("invariants");
        assert_eq!(contents(&t), model.clone().into_iter().collect::<Vec<_>>());
        assert_eq!(t.len(), model.len());
        // The 54 untouched flushed rows are cold; everything written since is hot.
        assert_eq!(t.cold.visible_rows(), 54);
        for k in [0, 100, 590, 250, 255, 600] {
            assert!(t.hot_contains(k), "key {k} was written during the flush");
        }
        assert!(!t.hot_contains(20) && t.contains(20).expect("lookup"));
        assert!(!t.contains(10).expect("lookup") && !t.contains(200).expect("lookup"));
    }

    /// A store rebuilt while a flush is in flight numbers its rows afresh: the install
    /// frees the flushed rows' slots in the new store, not the slots its gather saw.
    #[test]
    fn a_rebuild_during_a_flush_frees_the_right_slots() {
        let dir = tempfile::tempdir().expect("temp dir");
        let env = crate::env::Env::os();
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
                Column::new("s", DataType::Utf8),
            ],
        )
        .expect("valid definition");
        let mut t = Table::new(1, Arc::new(def));
        // Rows to be deleted carry 1,000 bytes; the others none.
        let doomed = |k: i64| k >= 1000 && k % 4 != 0;
        let row_of = |k: i64| {
            let s = if doomed(k) {
                "x".repeat(1000)
            } else {
                String::new()
            };
            vec![Value::Int64(k), Value::Int64(k * 3), Value::Utf8(s)]
        };
        // The keys to be flushed (0..1000) go in last, so their slots are 6000..7000.
        let later: Vec<i64> = (1000..7000).collect();
        t.apply_insert(&later, later.iter().map(|&k| row_of(k)).collect());
        let first: Vec<i64> = (0..1000).collect();
        t.apply_insert(&first, first.iter().map(|&k| row_of(k)).collect());
        let mut snapshot = t.flush_snapshot(6000).expect("1000 rows to flush");
        assert_eq!(snapshot.keys().last(), Some(&999));
        // Deleting three in four of the rest frees 4.5 MB, more than the live rows: the
        // store is rebuilt, in key order, so the flushed rows now sit in slots 0..1000.
        let generation = t.rows_generation;
        for k in (1000..7000).filter(|&k| doomed(k)) {
            let located = t.locate(k).expect("locate").expect("present");
            t.apply_delete(k, located);
        }
        assert_ne!(
            t.rows_generation, generation,
            "the deletes rebuilt the store"
        );
        let id = t.cold.reserve_id();
        let segment = snapshot
            .write(&env, dir.path(), t.id, &t.def.clone(), id, 1)
            .expect("segment written");
        // 1,500 rows stay hot against 1,000 flushed: the install frees the flushed rows'
        // runs and slots one by one rather than copying the rest.
        drop(t.flush_install(&snapshot, segment));
        t.check_invariants().expect("invariants");
        assert_eq!(t.hot_len(), 1500);
        let schema = Arc::new(
            crate::cold::segment::arrow_schema(&t.def)
                .project(&[1])
                .expect("projection"),
        );
        let mut hot: Vec<i64> = t
            .export_hot(Bound::Unbounded, Bound::Unbounded, &[1], &schema)
            .expect("export")
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .expect("Int64")
                    .values()
                    .to_vec()
            })
            .collect();
        hot.sort_unstable();
        let want: Vec<i64> = (1000..7000)
            .filter(|&k| !doomed(k))
            .map(|k| k * 3)
            .collect();
        assert_eq!(hot, want, "the hot columns hold exactly the rows left hot");
    }

    /// A flush abandoned (its write failed) leaves the table as the writers left it.
    #[test]
    fn an_abandoned_flush_changes_nothing() {
        let mut t = table();
        let keys: Vec<i64> = (0..10).collect();
        t.apply_insert(&keys, keys.iter().map(|&k| row(k, 0)).collect());
        let snapshot = t.flush_snapshot(2).expect("8 rows to flush");
        let located = t.check_update(3, &row(3, 7)).expect("update");
        t.apply_update(3, row(3, 7), located);
        t.flush_abandon();
        drop(snapshot);
        assert_eq!(t.hot_len(), 10);
        assert!(t.cold.is_empty());
        assert_eq!(contents(&t)[3], (3, 7));
        t.check_invariants().expect("invariants");
    }
}
