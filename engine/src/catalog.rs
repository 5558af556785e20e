//! The catalog and the in-memory state it names: which tables exist, their definitions,
//! their rows; and the one path by which every change reaches that state.
//!
//! A change is a [`LoggedOp`]: what the log stores (tables by id, since names can be
//! reused after a drop). [`Catalog::check`] validates it against the current state and turns
//! it into a [`CheckedOp`]; [`Catalog::apply`] applies a checked op and cannot fail. Live
//! writes go check, log, apply (inserts, the hot path, go validate, insert, log, and undo the
//! insert if a key turns out present or logging fails: one index descent per key instead of
//! a probe and then an insert); recovery goes decode, check, apply, so a logged record that
//! does not apply is found and reported as corruption, never half-applied.
//!
//! Catalog changes (create and drop table) are log records like any other, and checkpoints
//! store the whole catalog, so a crash leaves the old catalog or the new one, never a mix.

use crate::codec::{DecodeResult, Decoder, Encoder};
use crate::error::{Error, Result};
use crate::index::alex::AlexConfig;
use crate::limits;
use crate::schema::{Row, TableDef};
use crate::table::{Table, TableId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Log record kinds (the `kind` byte of a frame; docs/FORMAT.md).
pub(crate) mod kind {
    pub const CREATE_TABLE: u8 = 1;
    pub const DROP_TABLE: u8 = 2;
    pub const INSERT: u8 = 3;
    pub const UPDATE: u8 = 4;
    pub const DELETE: u8 = 5;
}

/// A change as the log stores it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum LoggedOp {
    CreateTable { id: TableId, def: TableDef },
    DropTable { id: TableId },
    Insert { id: TableId, rows: Vec<Row> },
    Update { id: TableId, key: i64, row: Row },
    Delete { id: TableId, key: i64 },
}

/// A change validated against the current state.
pub(crate) enum CheckedOp {
    CreateTable {
        id: TableId,
        def: TableDef,
    },
    DropTable {
        id: TableId,
    },
    Insert {
        id: TableId,
        keys: Vec<i64>,
        rows: Vec<Row>,
    },
    /// `located`: where the current version is (found by the check, under the same lock).
    Update {
        id: TableId,
        key: i64,
        row: Row,
        located: crate::table::Located,
    },
    Delete {
        id: TableId,
        key: i64,
        located: crate::table::Located,
    },
}

impl LoggedOp {
    /// Encodes the op into `out` (cleared first) and returns its record kind. Live writes
    /// pass the catalog's reused buffer, so a write allocates nothing to be logged.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> u8 {
        out.clear();
        let mut enc = Encoder {
            bytes: std::mem::take(out),
        };
        let kind = match self {
            LoggedOp::CreateTable { id, def } => {
                enc.u32(*id);
                enc.table_def(def);
                kind::CREATE_TABLE
            }
            LoggedOp::DropTable { id } => {
                enc.u32(*id);
                kind::DROP_TABLE
            }
            LoggedOp::Insert { id, rows } => {
                enc.u32(*id);
                enc.u32(rows.len() as u32);
                for row in rows {
                    enc.row(row);
                }
                kind::INSERT
            }
            LoggedOp::Update { id, key, row } => {
                enc.u32(*id);
                enc.i64(*key);
                enc.row(row);
                kind::UPDATE
            }
            LoggedOp::Delete { id, key } => {
                enc.u32(*id);
                enc.i64(*key);
                kind::DELETE
            }
        };
        *out = enc.bytes;
        kind
    }

    pub fn decode(kind: u8, payload: &[u8]) -> DecodeResult<LoggedOp> {
        let mut dec = Decoder::new(payload);
        let id = dec.u32()?;
        let op = match kind {
            kind::CREATE_TABLE => LoggedOp::CreateTable {
                id,
                def: dec.table_def()?,
            },
            kind::DROP_TABLE => LoggedOp::DropTable { id },
            kind::INSERT => {
                let count = dec.u32()? as usize;
                if count == 0 || count > limits::BATCH_ROWS_MAX {
                    return Err(dec.error(format!("insert of {count} rows")));
                }
                let mut rows = Vec::with_capacity(count.min(1 << 16));
                for _ in 0..count {
                    rows.push(dec.row()?);
                }
                LoggedOp::Insert { id, rows }
            }
            kind::UPDATE => LoggedOp::Update {
                id,
                key: dec.i64()?,
                row: dec.row()?,
            },
            kind::DELETE => LoggedOp::Delete {
                id,
                key: dec.i64()?,
            },
            other => return Err(dec.error(format!("unknown record kind {other}"))),
        };
        if !dec.is_empty() {
            return Err(dec.error("trailing bytes after the record"));
        }
        Ok(op)
    }
}

/// The tables of a database.
pub(crate) struct Catalog {
    names: BTreeMap<String, TableId>,
    tables: BTreeMap<TableId, Table>,
    next_table_id: TableId,
    /// The buffer live writes encode their log record into, kept between writes.
    pub log_scratch: Vec<u8>,
    /// The index limits of new tables ([`Catalog::set_index_config`]).
    index_config: AlexConfig,
}

/// A log scratch buffer grown past this by one large write is dropped afterwards.
const LOG_SCRATCH_BYTES_KEEP: usize = 1 << 20;

impl Catalog {
    pub fn new() -> Catalog {
        Catalog {
            names: BTreeMap::new(),
            tables: BTreeMap::new(),
            next_table_id: 1,
            log_scratch: Vec::new(),
            index_config: AlexConfig::default(),
        }
    }

    /// Gives every table's index, and every table created from now on, the size limits
    /// `config` (rebuilding the indexes that had others).
    pub fn set_index_config(&mut self, config: AlexConfig) -> std::result::Result<(), String> {
        self.index_config = config;
        for table in self.tables.values_mut() {
            table.set_index_config(config)?;
        }
        Ok(())
    }

    /// Keeps the log scratch buffer from holding on to the size of one huge write.
    pub fn shrink_log_scratch(&mut self) {
        if self.log_scratch.capacity() > LOG_SCRATCH_BYTES_KEEP {
            self.log_scratch = Vec::new();
        }
    }

    pub fn next_table_id(&self) -> TableId {
        self.next_table_id
    }

    /// Restores the id counter from a checkpoint.
    pub fn set_next_table_id(&mut self, next: TableId) {
        self.next_table_id = self.next_table_id.max(next);
    }

    pub fn table(&self, name: &str) -> Result<&Table> {
        self.names
            .get(name)
            .and_then(|id| self.tables.get(id))
            .ok_or_else(|| Error::TableNotFound {
                table: name.to_string(),
            })
    }

    pub fn table_id(&self, name: &str) -> Result<TableId> {
        Ok(self.table(name)?.id)
    }

    /// Tables in id order (the order of creation).
    pub fn tables(&self) -> impl Iterator<Item = &Table> + '_ {
        self.tables.values()
    }

    /// Table names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }

    /// The table with id `id`, if any.
    pub fn table_by_id(&self, id: TableId) -> Option<&Table> {
        self.tables.get(&id)
    }

    /// The table with id `id`, if any, to change.
    pub fn table_by_id_mut(&mut self, id: TableId) -> Option<&mut Table> {
        self.tables.get_mut(&id)
    }

    fn by_id(&self, id: TableId) -> Result<&Table> {
        self.tables.get(&id).ok_or_else(|| id_not_found(id))
    }

    fn by_id_mut(&mut self, id: TableId) -> Result<&mut Table> {
        self.tables.get_mut(&id).ok_or_else(|| id_not_found(id))
    }

    /// A live insert: validates `rows`, inserts them into table `id` and calls `log` to log
    /// them, undoing the inserts if a key is present or `log` fails (see
    /// [`Table::insert_logged`]). The same outcome as check, log, apply, with one index
    /// descent per key instead of two.
    pub fn insert_logged(
        &mut self,
        id: TableId,
        rows: Vec<Row>,
        log: impl FnOnce() -> Result<u64>,
    ) -> Result<u64> {
        let table = self.by_id_mut(id)?;
        check_batch_len(table, &rows)?;
        table.insert_logged(rows, log)
    }

    /// Validates `op` against the current state. `Ok(None)`: valid but changes nothing.
    pub fn check(&self, op: LoggedOp) -> Result<Option<CheckedOp>> {
        Ok(Some(match op {
            LoggedOp::CreateTable { id, def } => {
                if self.names.contains_key(def.name()) {
                    return Err(Error::TableExists {
                        table: def.name().to_string(),
                    });
                }
                if self.tables.len() >= limits::TABLES_MAX {
                    return Err(Error::LimitExceeded {
                        what: "tables",
                        size: self.tables.len() + 1,
                        limit: limits::TABLES_MAX,
                    });
                }
                if id < self.next_table_id || self.tables.contains_key(&id) {
                    return Err(Error::InvalidSchema {
                        table: def.name().to_string(),
                        reason: format!("table id {id} was already used"),
                    });
                }
                CheckedOp::CreateTable { id, def }
            }
            LoggedOp::DropTable { id } => {
                self.by_id(id)?;
                CheckedOp::DropTable { id }
            }
            LoggedOp::Insert { id, rows } => {
                let table = self.by_id(id)?;
                check_batch_len(table, &rows)?;
                let keys = table.check_insert(&rows)?;
                CheckedOp::Insert { id, keys, rows }
            }
            LoggedOp::Update { id, key, row } => {
                let located = self.by_id(id)?.check_update(key, &row)?;
                CheckedOp::Update {
                    id,
                    key,
                    row,
                    located,
                }
            }
            LoggedOp::Delete { id, key } => {
                let Some(located) = self.by_id(id)?.locate(key)? else {
                    return Ok(None);
                };
                CheckedOp::Delete { id, key, located }
            }
        }))
    }

    /// Applies a checked op.
    pub fn apply(&mut self, op: CheckedOp) {
        match op {
            CheckedOp::CreateTable { id, def } => {
                self.names.insert(def.name().to_string(), id);
                let mut table = Table::new(id, Arc::new(def));
                // An empty index: rebuilding it cannot fail.
                let _ = table.set_index_config(self.index_config);
                self.tables.insert(id, table);
                self.next_table_id = self.next_table_id.max(id + 1);
            }
            CheckedOp::DropTable { id } => {
                if let Some(table) = self.tables.remove(&id) {
                    self.names.remove(table.def.name());
                }
            }
            CheckedOp::Insert { id, keys, rows } => {
                if let Some(table) = self.tables.get_mut(&id) {
                    table.apply_insert(&keys, rows);
                }
            }
            CheckedOp::Update {
                id,
                key,
                row,
                located,
            } => {
                if let Some(table) = self.tables.get_mut(&id) {
                    table.apply_update(key, row, located);
                }
            }
            CheckedOp::Delete { id, key, located } => {
                if let Some(table) = self.tables.get_mut(&id) {
                    table.apply_delete(key, located);
                }
            }
        }
    }

    /// Adds a table restored from a checkpoint (rows follow through `table_mut`).
    pub fn restore_table(&mut self, id: TableId, def: TableDef) -> Result<()> {
        match self.check(LoggedOp::CreateTable { id, def })? {
            Some(op) => {
                self.apply(op);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Builds the index of a table whose rows [`Table::restore_packed`] restored.
    pub fn restore_finish(
        &mut self,
        id: TableId,
        spawn: &dyn crate::env::Spawn,
    ) -> std::result::Result<(), String> {
        self.restoring(id)?.restore_finish(spawn)
    }

    /// The table being restored from a checkpoint (see [`Table::restore_packed`]).
    pub(crate) fn restoring(&mut self, id: TableId) -> std::result::Result<&mut Table, String> {
        self.tables
            .get_mut(&id)
            .ok_or_else(|| format!("table #{id} was not restored"))
    }

    /// Gives a table restored from a checkpoint its cold segments.
    pub fn restore_cold(
        &mut self,
        id: TableId,
        segments: Vec<(crate::cold::Segment, roaring::RoaringBitmap)>,
        next_segment_id: u64,
    ) {
        if let Some(table) = self.tables.get_mut(&id) {
            table.restore_cold(segments, next_segment_id);
        }
    }

    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        if self.names.len() != self.tables.len() {
            return Err(format!(
                "{} names for {} tables",
                self.names.len(),
                self.tables.len()
            ));
        }
        for (name, id) in &self.names {
            let table = self
                .tables
                .get(id)
                .ok_or_else(|| format!("name {name:?} points at missing table #{id}"))?;
            if table.def.name() != name {
                return Err(format!(
                    "name {name:?} points at table {:?}",
                    table.def.name()
                ));
            }
            if *id >= self.next_table_id {
                return Err(format!("table id {id} >= next id {}", self.next_table_id));
            }
            table.check_invariants()?;
        }
        Ok(())
    }
}

/// A table named by id (in the log) that does not exist.
fn id_not_found(id: TableId) -> Error {
    Error::TableNotFound {
        table: format!("#{id}"),
    }
}

/// An insert batch holds at least one row and at most [`limits::BATCH_ROWS_MAX`].
fn check_batch_len(table: &Table, rows: &[Row]) -> Result<()> {
    if rows.is_empty() {
        return Err(Error::EmptyBatch {
            table: table.def.name().to_string(),
        });
    }
    if rows.len() > limits::BATCH_ROWS_MAX {
        return Err(Error::LimitExceeded {
            what: "batch rows",
            size: rows.len(),
            limit: limits::BATCH_ROWS_MAX,
        });
    }
    Ok(())
}
