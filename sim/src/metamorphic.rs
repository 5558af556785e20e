//! Metamorphic checks: the engine's read paths must agree with one another, whatever the
//! model says (issue 17 item 6). After each checked scan of `[lo, hi]`:
//!
//! - the scan equals the ordered union of `get`s of its keys, and a `get` of a key just past
//!   each scanned key that the model lacks finds nothing;
//! - `get_many` over those keys (present and absent, in a shuffled order) equals the `get`s;
//! - `scan_batches` over the range, read back through Arrow by a reader of its own and
//!   sorted by key, equals the scan (batches come segment by segment, then the hot rows);
//! - `row_count` equals the length of a full scan.
//!
//! And after each compaction step that merged, every table's full scan equals the model's
//! (compaction must leave visible contents unchanged). At most [`METAMORPHIC_KEYS_MAX`]
//! keys are probed per scan. A legal read error (I/O, a crash, explained damage) ends the
//! checks of that step; any disagreement fails check `metamorphic`.

use crate::checker::{fail, Check, Checked};
use crate::model::error_class;
use crate::runner::Sim;
use arrow_array::{
    Array, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use omendb::{DataType, Error, Row, TableDef, Value};

/// Keys probed with `get` and `get_many` after one scan.
pub const METAMORPHIC_KEYS_MAX: usize = 64;

impl Sim {
    /// A read error during the checks: a legal one ends them (`Ok`, traced), others fail
    /// `read`.
    fn metamorphic_error(&mut self, what: &str, e: &Error) -> Checked {
        if self.read_error_is_legal(e) {
            self.log(format!("{what} -> error {}", error_class(e)));
            return Ok(());
        }
        fail(Check::Read, format!("{what}: {e}"))
    }

    /// The checks after a scan of `table` over `[lo, hi]` returned `scanned` (which already
    /// equals the model's rows there).
    pub(crate) fn check_metamorphic(
        &mut self,
        table: &str,
        lo: i64,
        hi: i64,
        scanned: &[Row],
    ) -> Checked {
        let Some(def) = self.model.tables.get(table).map(|t| t.def.clone()) else {
            return Ok(());
        };
        let pk = def.primary_key_index();
        let step = scanned.len().div_ceil(METAMORPHIC_KEYS_MAX).max(1);
        let probed: Vec<&Row> = scanned.iter().step_by(step).collect();
        let mut keys = Vec::with_capacity(2 * probed.len());
        for row in &probed {
            let Some(key) = key_of(row, pk) else {
                return fail(Check::Metamorphic, format!("a row of {table} has no key"));
            };
            self.engine_ops += 1;
            let got = self.db()?.get(table, key);
            match got {
                Ok(Some(found)) if found == **row => {}
                Ok(other) => {
                    return fail(
                        Check::Metamorphic,
                        format!("scan {table} [{lo},{hi}] has key {key} but get returns {other:?}"),
                    )
                }
                Err(e) => {
                    self.metamorphic_error(&format!("get {table} {key}"), &e)?;
                    return Ok(());
                }
            }
            keys.push(key);
            // A key just past it that the model lacks: the scan says nothing is there.
            if let Some(next) = key.checked_add(1) {
                let absent = self
                    .model
                    .tables
                    .get(table)
                    .is_some_and(|t| !t.rows.contains_key(&next));
                if absent && next <= hi {
                    keys.push(next);
                }
            }
        }
        // get_many over present and absent keys, reversed so that order is not assumed.
        keys.reverse();
        self.engine_ops += 1;
        let many = self.db()?.get_many(table, &keys);
        let many = match many {
            Ok(many) => many,
            Err(e) => {
                self.metamorphic_error(&format!("get_many {table}"), &e)?;
                return Ok(());
            }
        };
        if many.len() != keys.len() {
            return fail(
                Check::Metamorphic,
                format!(
                    "get_many {table}: {} answers for {} keys",
                    many.len(),
                    keys.len()
                ),
            );
        }
        for (key, answer) in keys.iter().zip(&many) {
            let expected = scanned.iter().find(|r| key_of(r, pk) == Some(*key));
            if answer.as_ref() != expected {
                return fail(
                    Check::Metamorphic,
                    format!(
                        "get_many {table} key {key}: {answer:?}, but the scan and get say {expected:?}"
                    ),
                );
            }
        }
        // scan_batches equals scan.
        self.engine_ops += 1;
        let batches = self.db()?.scan_batches(table, lo..=hi, None);
        let batches = match batches {
            Ok(batches) => batches,
            Err(e) => {
                self.metamorphic_error(&format!("scan_batches {table}"), &e)?;
                return Ok(());
            }
        };
        let mut rows = match batches_to_rows(&def, &batches) {
            Ok(rows) => rows,
            Err(why) => {
                return fail(
                    Check::Metamorphic,
                    format!("scan_batches {table} [{lo},{hi}]: {why}"),
                )
            }
        };
        rows.sort_by_key(|r| key_of(r, pk));
        if rows != scanned {
            return fail(
                Check::Metamorphic,
                format!(
                    "scan_batches {table} [{lo},{hi}]: {} rows, scan {} rows, or they differ",
                    rows.len(),
                    scanned.len()
                ),
            );
        }
        // row_count equals the length of a full scan.
        self.engine_ops += 2;
        let count = self.db()?.row_count(table);
        let full = self.db()?.scan(table, ..);
        match (count, full) {
            (Ok(count), Ok(full)) if count == full.len() => {
                self.check_fixed_projection(table, &def, &full)
            }
            (Ok(count), Ok(full)) => fail(
                Check::Metamorphic,
                format!(
                    "row_count {table} is {count}, a full scan has {} rows",
                    full.len()
                ),
            ),
            (Err(e), _) | (_, Err(e)) => {
                self.metamorphic_error(&format!("row_count/scan {table}"), &e)?;
                Ok(())
            }
        }
    }

    /// An unbounded `scan_batches` of `table`'s fixed-width non-key columns (whose hot rows
    /// may come column by column, in slot order, not key order) holds the same values as
    /// the full scan `full`, as a multiset of rows.
    fn check_fixed_projection(&mut self, table: &str, def: &TableDef, full: &[Row]) -> Checked {
        if !self.config.fixed_projection_check() {
            return Ok(());
        }
        let pk = def.primary_key_index();
        let fixed: Vec<usize> = def
            .columns()
            .iter()
            .enumerate()
            .filter(|&(i, c)| {
                i != pk
                    && matches!(
                        c.data_type,
                        DataType::Int64 | DataType::Float64 | DataType::Timestamp | DataType::Bool
                    )
            })
            .map(|(i, _)| i)
            .collect();
        if fixed.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = fixed
            .iter()
            .map(|&i| def.columns()[i].name.as_str())
            .collect();
        self.engine_ops += 1;
        let batches = match self.db()?.scan_batches(table, .., Some(&names)) {
            Ok(batches) => batches,
            Err(e) => return self.metamorphic_error(&format!("scan_batches {table} .."), &e),
        };
        let mut got = Vec::with_capacity(full.len());
        for batch in &batches {
            if batch.num_columns() != fixed.len() {
                return fail(
                    Check::Metamorphic,
                    format!(
                        "scan_batches {table} ..: a batch of {} columns",
                        batch.num_columns()
                    ),
                );
            }
            for i in 0..batch.num_rows() {
                let mut row = Vec::with_capacity(fixed.len());
                for (c, &column) in fixed.iter().enumerate() {
                    let data_type = def.columns()[column].data_type;
                    match value_at(batch.column(c).as_ref(), data_type, i) {
                        Some(value) => row.push(format!("{value:?}")),
                        None => {
                            return fail(
                                Check::Metamorphic,
                                format!(
                                    "scan_batches {table} ..: column {column} is not {data_type:?}"
                                ),
                            )
                        }
                    }
                }
                got.push(row);
            }
        }
        let mut want: Vec<Vec<String>> = full
            .iter()
            .map(|r| fixed.iter().map(|&i| format!("{:?}", r[i])).collect())
            .collect();
        got.sort_unstable();
        want.sort_unstable();
        if got != want {
            return fail(
                Check::Metamorphic,
                format!(
                    "scan_batches {table} .. of {names:?}: {} rows, the full scan {}, or they differ",
                    got.len(),
                    want.len()
                ),
            );
        }
        Ok(())
    }

    /// Every table's full scan equals the model's (after a compaction that merged).
    pub(crate) fn check_contents(&mut self, after: &str) -> Checked {
        let names: Vec<String> = self.model.tables.keys().cloned().collect();
        for name in names {
            self.engine_ops += 1;
            let got = self.db()?.scan(&name, ..);
            let rows = match got {
                Ok(rows) => rows,
                Err(e) => {
                    self.metamorphic_error(&format!("scan {name} after {after}"), &e)?;
                    return Ok(());
                }
            };
            let Some(table) = self.model.tables.get(&name) else {
                continue;
            };
            if rows.len() != table.rows.len()
                || rows.iter().zip(table.rows.values()).any(|(a, b)| a != b)
            {
                return fail(
                    Check::Metamorphic,
                    format!(
                        "after {after}, {name} holds {} rows, the model {}, or they differ",
                        rows.len(),
                        table.rows.len()
                    ),
                );
            }
        }
        Ok(())
    }
}

fn key_of(row: &Row, pk: usize) -> Option<i64> {
    match row.get(pk) {
        Some(Value::Int64(k)) | Some(Value::Timestamp(k)) => Some(*k),
        _ => None,
    }
}

/// The rows of Arrow batches of `def`'s columns (all of them, in order), read with a reader
/// of the simulator's own.
pub fn batches_to_rows(def: &TableDef, batches: &[RecordBatch]) -> Result<Vec<Row>, String> {
    let columns = def.columns();
    let mut rows = Vec::new();
    for batch in batches {
        if batch.num_columns() != columns.len() {
            return Err(format!(
                "a batch has {} columns, the table {}",
                batch.num_columns(),
                columns.len()
            ));
        }
        for i in 0..batch.num_rows() {
            let mut row = Vec::with_capacity(columns.len());
            for (c, column) in columns.iter().enumerate() {
                let array = batch.column(c);
                let value = value_at(array.as_ref(), column.data_type, i).ok_or_else(|| {
                    format!(
                        "column {} ({:?}) is an Arrow {:?}",
                        column.name,
                        column.data_type,
                        array.data_type()
                    )
                })?;
                row.push(value);
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

fn value_at(array: &dyn Array, data_type: DataType, i: usize) -> Option<Value> {
    if array.is_null(i) {
        return Some(Value::Null);
    }
    let any = array.as_any();
    Some(match data_type {
        DataType::Int64 => Value::Int64(any.downcast_ref::<Int64Array>()?.value(i)),
        DataType::Float64 => Value::Float64(any.downcast_ref::<Float64Array>()?.value(i)),
        DataType::Utf8 => Value::Utf8(any.downcast_ref::<StringArray>()?.value(i).to_string()),
        DataType::Binary => Value::Binary(any.downcast_ref::<BinaryArray>()?.value(i).to_vec()),
        DataType::Bool => Value::Bool(any.downcast_ref::<BooleanArray>()?.value(i)),
        DataType::Timestamp => {
            Value::Timestamp(any.downcast_ref::<TimestampMicrosecondArray>()?.value(i))
        }
    })
}
