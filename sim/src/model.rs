//! The reference model: plain ordered maps with the engine's API semantics, and the
//! history that says which states the engine may legally recover to.
//!
//! The model predicts the outcome of every write (`Ok` and whether it changes anything, or
//! which class of error) independently of the engine's code, except for per-row schema
//! validation, where it asks the table definition (checked by the engine's own tests).
//!
//! **Legal recovered states.** The log is a sequence, so the engine may only recover to
//! the state after a *prefix* of the writes that reached the log, in LSN order: the
//! [`History`] keeps the chain of writes from the empty database, each with its
//! LSN. A recovery to LSN `r` is legal iff `r >= durable` (everything the engine claimed
//! durable, and so everything acknowledged under `Durability::Always`, is there), `r` is at most
//! the last LSN that reached the log (nothing never written appears), and the recovered
//! tables equal the writes with LSN `<= r` applied to the empty database, exactly.

use omendb::{Error, Row, TableDef, Write};
use std::collections::BTreeMap;

/// A table of the model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelTable {
    /// Its definition.
    pub def: TableDef,
    /// Its rows by key.
    pub rows: BTreeMap<i64, Row>,
}

/// The state of the database, as the model sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelState {
    /// Tables by name.
    pub tables: BTreeMap<String, ModelTable>,
}

/// The class of an engine error, for comparing outcomes.
pub fn error_class(error: &Error) -> &'static str {
    match error {
        Error::TableNotFound { .. } => "table_not_found",
        Error::TableExists { .. } => "table_exists",
        Error::ColumnNotFound { .. } => "column_not_found",
        Error::InvalidSchema { .. } => "invalid_schema",
        Error::InvalidName { .. } => "invalid_name",
        Error::RowArity { .. } => "row_arity",
        Error::TypeMismatch { .. } => "type_mismatch",
        Error::NullNotAllowed { .. } => "null_not_allowed",
        Error::ValueTooLarge { .. } => "value_too_large",
        Error::DuplicateKey { .. } => "duplicate_key",
        Error::KeyNotFound { .. } => "key_not_found",
        Error::KeyChanged { .. } => "key_changed",
        Error::EmptyBatch { .. } => "empty_batch",
        Error::LimitExceeded { .. } => "limit_exceeded",
        Error::Io { .. } => "io",
        Error::Corruption { .. } => "corruption",
        Error::Poisoned { .. } => "poisoned",
        Error::Closed => "closed",
        Error::InvalidTicket { .. } => "invalid_ticket",
        Error::Locked { .. } => "locked",
        _ => "other",
    }
}

impl ModelState {
    /// Predicts `write`: `Ok(true)` if it succeeds and changes the state, `Ok(false)` if it
    /// succeeds and changes nothing, `Err(class)` if it must be refused.
    pub fn predict(&self, write: &Write) -> Result<bool, &'static str> {
        let table = |name: &str| self.tables.get(name).ok_or("table_not_found");
        match write {
            Write::CreateTable(def) => {
                if self.tables.contains_key(def.name()) {
                    return Err("table_exists");
                }
                Ok(true)
            }
            Write::DropTable { table: name } => table(name).map(|_| true),
            Write::Insert { table: name, rows } => {
                let table = table(name)?;
                if rows.is_empty() {
                    return Err("empty_batch");
                }
                let mut keys = Vec::with_capacity(rows.len());
                for row in rows {
                    let key = table.def.validate_row(row).map_err(|e| error_class(&e))?;
                    if table.rows.contains_key(&key) {
                        return Err("duplicate_key");
                    }
                    keys.push(key);
                }
                keys.sort_unstable();
                if keys.windows(2).any(|w| w[0] == w[1]) {
                    return Err("duplicate_key");
                }
                Ok(true)
            }
            Write::Update {
                table: name,
                key,
                row,
            } => {
                let table = table(name)?;
                let new_key = table.def.validate_row(row).map_err(|e| error_class(&e))?;
                if new_key != *key {
                    return Err("key_changed");
                }
                if !table.rows.contains_key(key) {
                    return Err("key_not_found");
                }
                Ok(true)
            }
            Write::Delete { table: name, key } => Ok(table(name)?.rows.contains_key(key)),
        }
    }

    /// Applies a write that [`ModelState::predict`] accepted.
    pub fn apply(&mut self, write: &Write) {
        match write {
            Write::CreateTable(def) => {
                self.tables.insert(
                    def.name().to_string(),
                    ModelTable {
                        def: def.clone(),
                        rows: BTreeMap::new(),
                    },
                );
            }
            Write::DropTable { table } => {
                self.tables.remove(table);
            }
            Write::Insert { table, rows } => {
                if let Some(t) = self.tables.get_mut(table) {
                    for row in rows {
                        if let Ok(key) = t.def.validate_row(row) {
                            t.rows.insert(key, row.clone());
                        }
                    }
                }
            }
            Write::Update { table, key, row } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.rows.insert(*key, row.clone());
                }
            }
            Write::Delete { table, key } => {
                if let Some(t) = self.tables.get_mut(table) {
                    t.rows.remove(key);
                }
            }
        }
    }

    /// Total rows over all tables.
    pub fn row_count(&self) -> usize {
        self.tables.values().map(|t| t.rows.len()).sum()
    }
}

/// The chain of writes that the engine's log may hold, for computing legal recovered
/// states. It starts from the empty database; a recovery to LSN `r` cuts the chain after
/// `r` (the writes after it were lost, and their LSNs will be reused).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Every write that reached (or may have reached) the log, with its LSN, ascending.
    pub writes: Vec<(u64, Write)>,
    /// The LSN the last recovery reached.
    pub recovered_lsn: u64,
    /// Highest LSN the engine has claimed durable or acknowledged under `Durability::Always`.
    pub durable_lsn: u64,
    /// The last state [`History::state_at`] computed, where the next one starts replaying.
    base: Option<StateBase>,
}

/// The state after the first `count` writes of a history, all with LSN `<= lsn`.
#[derive(Debug, Clone)]
struct StateBase {
    lsn: u64,
    count: usize,
    state: ModelState,
}

impl History {
    /// The last LSN that may have reached the log.
    pub fn last_lsn(&self) -> u64 {
        self.writes.last().map_or(0, |(lsn, _)| *lsn)
    }

    /// Records a write that reached (or may have reached) the log at `lsn`.
    pub fn push(&mut self, lsn: u64, write: Write) {
        debug_assert!(lsn > self.last_lsn());
        self.writes.push((lsn, write));
    }

    /// The state after every write with LSN `<= lsn`. It replays from the last state it
    /// computed when that one's LSN is not past `lsn` (recoveries move forward, so each
    /// replays only the writes since the one before), else from the empty database: a
    /// replay from the start at every recovery was 5% of a sweep.
    pub fn state_at(&mut self, lsn: u64) -> ModelState {
        let (mut state, mut count) = match &self.base {
            Some(base) if base.lsn <= lsn && base.count <= self.writes.len() => {
                (base.state.clone(), base.count)
            }
            _ => (ModelState::default(), 0),
        };
        for (at, write) in &self.writes[count..] {
            if *at > lsn {
                break;
            }
            if state.predict(write).is_ok() {
                state.apply(write);
            }
            count += 1;
        }
        self.base = Some(StateBase {
            lsn,
            count,
            state: state.clone(),
        });
        state
    }

    /// A recovery reached `lsn`: the writes after it are gone.
    pub fn recovered(&mut self, lsn: u64) {
        self.writes.retain(|(at, _)| *at <= lsn);
        // The writes a base summarises are all `<= base.lsn`: they survive a cut at or
        // after it.
        if self.base.as_ref().is_some_and(|base| base.lsn > lsn) {
            self.base = None;
        }
        self.recovered_lsn = lsn;
        self.durable_lsn = lsn;
    }
}
