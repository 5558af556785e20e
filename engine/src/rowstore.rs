//! The hot tier's row storage: rows packed into byte pages, read in place through
//! [`RowRef`].
//!
//! A `Vec<Value>` row costs a heap block per row plus one per string, and a read follows
//! three pointers into three cache lines. Here a row is one contiguous run of bytes in a
//! page (64 KiB for a table's first, doubling to 16 MiB), and the primary index maps the key
//! to its [`RowLocation`]
//! (page number in the high 32 bits, byte offset in the low 32). A point read is then the
//! index lookup plus one or two cache lines.
//!
//! Packed row layout (per table, from [`RowLayout`]); the primary key is not stored, the
//! index has it:
//!
//! ```text
//! [null bitmap: one bit per nullable non-key column, ceil(n / 8) bytes]
//! [fixed slots, column order, key skipped: Int64/Float64/Timestamp 8 B, Bool 1 B,
//!  Utf8/Binary a u32 end offset into the variable section]
//! [variable section: the Utf8/Binary bytes, column order]
//! ```
//!
//! All little-endian and unaligned. A row's length follows from its bytes (the fixed part
//! plus the last variable column's end offset), so pages need no per-row header.
//!
//! Space from deleted rows and from updates that changed a row's length is kept on free
//! lists by exact length and reused by the next row of that length. When free space passes
//! both [`REBUILD_DEAD_BYTES_MIN`] and the live bytes, the table rebuilds its store (copies
//! the live rows into fresh pages, in key order), so the store never holds more than about
//! twice its live rows. The rebuild is O(live rows) under the state's write lock, amortised
//! over at least as many bytes of writes.
//!
//! These bytes are produced by the engine from validated rows ([`RowLayout::pack`]) or from a
//! checkpoint's encoded rows after checking each value ([`RowLayout::pack_encoded`]), so they
//! are trusted: a malformed packed row is an engine bug, caught by `debug_assert` and by
//! [`RowArena::check_location`] in the invariant checks.

use crate::codec::{DecodeResult, Decoder};
use crate::hot_columns::HotColumns;
use crate::index::RowLocation;
use crate::limits;
use crate::schema::{DataType, Row, TableDef, Value};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, StringArray,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes of a table's first page; each new page doubles the last, up to
/// [`PAGE_BYTES_MAX`], so a small table stays small and a large one gets pages the kernel can
/// back with huge pages (crate::mem).
pub(crate) const PAGE_BYTES_MIN: usize = 64 << 10;

/// Bytes of the largest page. A row longer than this gets a page of its own.
pub(crate) const PAGE_BYTES_MAX: usize = 16 << 20;

/// The store is rebuilt only once free space passes this many bytes (and the live bytes).
pub(crate) const REBUILD_DEAD_BYTES_MIN: u64 = 4 << 20;

/// Where column `i`'s value lives in a packed row.
#[derive(Debug, Clone, Copy)]
enum Slot {
    /// The primary key: not stored.
    Key,
    /// A fixed-width value at `offset`.
    Fixed {
        offset: u32,
        data_type: DataType,
        null_bit: Option<u32>,
    },
    /// A variable-width value: its end offset (u32) is at `offset`; it starts where the
    /// previous variable column ends (`previous`: that column's end-offset position).
    Var {
        offset: u32,
        previous: Option<u32>,
        data_type: DataType,
        null_bit: Option<u32>,
    },
}

/// How a table's rows are packed: computed once from its definition.
#[derive(Debug, Clone)]
pub(crate) struct RowLayout {
    slots: Vec<Slot>,
    key_type: DataType,
    /// Bytes of the null bitmap and the fixed slots: where the variable section starts.
    fixed_bytes: u32,
    /// Position of the last variable column's end offset, if there is one.
    last_var: Option<u32>,
}

impl RowLayout {
    pub fn new(def: &TableDef) -> RowLayout {
        let key = def.primary_key_index();
        let nullable = def
            .columns()
            .iter()
            .enumerate()
            .filter(|&(i, c)| i != key && c.nullable)
            .count();
        let null_bytes = nullable.div_ceil(8) as u32;
        let mut offset = null_bytes;
        let mut next_bit = 0u32;
        let mut last_var = None;
        let mut slots = Vec::with_capacity(def.columns().len());
        for (i, column) in def.columns().iter().enumerate() {
            if i == key {
                slots.push(Slot::Key);
                continue;
            }
            let null_bit = column.nullable.then(|| {
                next_bit += 1;
                next_bit - 1
            });
            let data_type = column.data_type;
            match data_type {
                DataType::Utf8 | DataType::Binary => {
                    slots.push(Slot::Var {
                        offset,
                        previous: last_var,
                        data_type,
                        null_bit,
                    });
                    last_var = Some(offset);
                    offset += 4;
                }
                DataType::Bool => {
                    slots.push(Slot::Fixed {
                        offset,
                        data_type,
                        null_bit,
                    });
                    offset += 1;
                }
                DataType::Int64 | DataType::Float64 | DataType::Timestamp => {
                    slots.push(Slot::Fixed {
                        offset,
                        data_type,
                        null_bit,
                    });
                    offset += 8;
                }
            }
        }
        RowLayout {
            slots,
            key_type: def.columns()[key].data_type,
            fixed_bytes: offset,
            last_var,
        }
    }

    /// Bytes `row` (valid for the table) takes packed.
    pub fn packed_len(&self, row: &[Value]) -> u64 {
        let var: u64 = self
            .slots
            .iter()
            .zip(row)
            .map(|(slot, value)| match (slot, value) {
                (Slot::Var { .. }, Value::Utf8(s)) => s.len() as u64,
                (Slot::Var { .. }, Value::Binary(b)) => b.len() as u64,
                _ => 0,
            })
            .sum();
        u64::from(self.fixed_bytes) + var
    }

    /// Appends `row` packed to `out`. The row has been validated against the table and its
    /// packed length checked against [`crate::limits::ROW_BYTES_MAX`].
    pub fn pack(&self, row: &[Value], out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.fixed_bytes as usize, 0);
        let mut var_end = 0u32;
        for (slot, value) in self.slots.iter().zip(row) {
            match *slot {
                Slot::Key => {}
                Slot::Fixed {
                    offset, null_bit, ..
                } => {
                    let at = start + offset as usize;
                    match value {
                        Value::Int64(v) | Value::Timestamp(v) => {
                            out[at..at + 8].copy_from_slice(&v.to_le_bytes());
                        }
                        Value::Float64(v) => {
                            out[at..at + 8].copy_from_slice(&v.to_bits().to_le_bytes());
                        }
                        Value::Bool(v) => out[at] = u8::from(*v),
                        _ => set_null(out, start, null_bit),
                    }
                }
                Slot::Var {
                    offset, null_bit, ..
                } => {
                    let bytes: &[u8] = match value {
                        Value::Utf8(s) => s.as_bytes(),
                        Value::Binary(b) => b,
                        _ => {
                            set_null(out, start, null_bit);
                            &[]
                        }
                    };
                    out.extend_from_slice(bytes);
                    var_end = var_end.wrapping_add(bytes.len() as u32);
                    let at = start + offset as usize;
                    out[at..at + 4].copy_from_slice(&var_end.to_le_bytes());
                }
            }
        }
    }

    /// Decodes one row in the value encoding of crate::codec (the rows of a checkpoint)
    /// straight into its packed form, appended to `out`: no `Vec<Value>`, no `String` per
    /// value. The bytes are untrusted, so this checks what [`TableDef::validate_row`] and the
    /// row-size limit check for an owned row: the arity, each value's type and nullability,
    /// UTF-8, the value and row size limits. Returns the key, or (inner `Err`) why the row is
    /// not valid for the table. A [`DecodeError`] means the bytes ran out or are malformed;
    /// `out` may then hold a partial row, which the caller truncates.
    pub fn pack_encoded(
        &self,
        def: &TableDef,
        dec: &mut Decoder<'_>,
        out: &mut Vec<u8>,
    ) -> DecodeResult<Result<i64, String>> {
        let columns = def.columns();
        let count = dec.u16()? as usize;
        if count != columns.len() {
            return Ok(Err(format!(
                "row of {count} values for {} columns",
                columns.len()
            )));
        }
        let start = out.len();
        out.resize(start + self.fixed_bytes as usize, 0);
        let mut var_end = 0u32;
        let mut key = None;
        for (slot, column) in self.slots.iter().zip(columns) {
            let code = dec.u8()?;
            if code == 0 {
                let null_bit = match *slot {
                    Slot::Key => None,
                    Slot::Fixed { null_bit, .. } | Slot::Var { null_bit, .. } => null_bit,
                };
                let Some(bit) = null_bit else {
                    return Ok(Err(format!(
                        "NULL in non-nullable column {:?}",
                        column.name
                    )));
                };
                out[start + (bit / 8) as usize] |= 1 << (bit % 8);
                if let Slot::Var { offset, .. } = *slot {
                    let at = start + offset as usize;
                    out[at..at + 4].copy_from_slice(&var_end.to_le_bytes());
                }
                continue;
            }
            if DataType::from_code(code) != Some(column.data_type) {
                return Ok(Err(format!(
                    "value of type code {code} in column {:?} of type {:?}",
                    column.name, column.data_type
                )));
            }
            match *slot {
                Slot::Key => key = Some(dec.i64()?),
                Slot::Fixed { offset, .. } => {
                    let at = start + offset as usize;
                    if column.data_type == DataType::Bool {
                        let byte = dec.u8()?;
                        if byte > 1 {
                            return Err(dec.error(format!("invalid Bool byte {byte}")));
                        }
                        out[at] = byte;
                    } else {
                        out[at..at + 8].copy_from_slice(dec.take(8)?);
                    }
                }
                Slot::Var { offset, .. } => {
                    let bytes = dec.blob(limits::VALUE_BYTES_MAX)?;
                    if column.data_type == DataType::Utf8 && std::str::from_utf8(bytes).is_err() {
                        return Ok(Err(format!("invalid UTF-8 in column {:?}", column.name)));
                    }
                    out.extend_from_slice(bytes);
                    var_end = var_end.wrapping_add(bytes.len() as u32);
                    let at = start + offset as usize;
                    out[at..at + 4].copy_from_slice(&var_end.to_le_bytes());
                }
            }
        }
        let size_bytes = out.len() - start;
        if size_bytes > limits::ROW_BYTES_MAX {
            return Ok(Err(format!(
                "packed row of {size_bytes} bytes exceeds the limit {}",
                limits::ROW_BYTES_MAX
            )));
        }
        Ok(key.ok_or_else(|| "the row has no key".to_string()))
    }

    /// Appends the row of key `key` packed at the start of `bytes` in the value encoding of
    /// crate::codec: byte for byte what `Encoder::row` writes for the row's owned copy, with no
    /// [`ValueRef`] per value and no second UTF-8 check (the row was checked when packed).
    /// The checkpoint's hot rows are written this way.
    pub fn encode_packed(&self, key: i64, bytes: &[u8], out: &mut Vec<u8>) {
        let is_null = |null_bit: Option<u32>| {
            null_bit.is_some_and(|bit| {
                bytes
                    .get((bit / 8) as usize)
                    .is_some_and(|b| b & (1 << (bit % 8)) != 0)
            })
        };
        out.extend_from_slice(&(self.slots.len() as u16).to_le_bytes());
        for &slot in &self.slots {
            match slot {
                Slot::Key => {
                    let key_type = match self.key_type {
                        DataType::Timestamp => DataType::Timestamp,
                        _ => DataType::Int64,
                    };
                    out.push(key_type.code());
                    out.extend_from_slice(&key.to_le_bytes());
                }
                Slot::Fixed {
                    offset,
                    data_type,
                    null_bit,
                } => {
                    if is_null(null_bit) {
                        out.push(0);
                        continue;
                    }
                    out.push(data_type.code());
                    let at = offset as usize;
                    if data_type == DataType::Bool {
                        out.push(u8::from(bytes.get(at).is_some_and(|&b| b != 0)));
                    } else {
                        out.extend_from_slice(&read_u64(bytes, at).to_le_bytes());
                    }
                }
                Slot::Var {
                    offset,
                    previous,
                    data_type,
                    null_bit,
                } => {
                    if is_null(null_bit) {
                        out.push(0);
                        continue;
                    }
                    let value = self.var_bytes(bytes, offset, previous);
                    out.push(data_type.code());
                    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                    out.extend_from_slice(value);
                }
            }
        }
    }

    /// The bytes of a variable-width value of the packed row `row`: its slot's end offset is
    /// at `offset`, and it starts where the previous variable column (whose end offset is at
    /// `previous`) ends.
    fn var_bytes<'r>(&self, row: &'r [u8], offset: u32, previous: Option<u32>) -> &'r [u8] {
        let base = self.fixed_bytes as usize;
        let start = previous.map_or(0, |p| read_u32(row, p as usize)) as usize;
        let end = read_u32(row, offset as usize) as usize;
        row.get(base + start..base + end).unwrap_or_else(|| {
            debug_assert!(false, "packed row's variable section is out of bounds");
            &[]
        })
    }

    /// Whether column `column` lives in the variable section (Utf8 or Binary).
    pub(crate) fn is_variable(&self, column: usize) -> bool {
        matches!(self.slots.get(column), Some(Slot::Var { .. }))
    }

    /// Length of the packed row that starts `bytes`.
    pub(crate) fn len_of(&self, bytes: &[u8]) -> usize {
        let var = self.last_var.map_or(0, |at| read_u32(bytes, at as usize));
        self.fixed_bytes as usize + var as usize
    }
}

fn set_null(out: &mut [u8], start: usize, null_bit: Option<u32>) {
    debug_assert!(null_bit.is_some(), "NULL in a non-nullable column");
    if let Some(bit) = null_bit {
        out[start + (bit / 8) as usize] |= 1 << (bit % 8);
    }
}

/// A fixed-width column's place in a packed row, for [`crate::hot_columns::HotColumns`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct FixedColumn {
    /// The table's column number.
    pub column: usize,
    offset: u32,
    pub data_type: DataType,
    pub null_bit: Option<u32>,
}

impl FixedColumn {
    /// The column's value in `packed` as 8 raw bytes (a Bool's byte, widened), and whether
    /// it is null.
    #[inline]
    pub fn read(&self, packed: &[u8]) -> (u64, bool) {
        let null = self.null_bit.is_some_and(|bit| {
            packed
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        });
        let at = self.offset as usize;
        let value = match self.data_type {
            DataType::Bool => packed.get(at).map_or(0, |&b| u64::from(b != 0)),
            _ => read_u64(packed, at),
        };
        (value, null)
    }
}

/// Columnar export of packed rows: one Arrow array per column, each filled in its own pass
/// over the rows' bytes, reading the column's slot directly (no [`ValueRef`] per value);
/// and the fixed-width columns the hot columns keep.
impl RowLayout {
    /// The table's fixed-width non-key columns (Int64, Float64, Timestamp, Bool).
    pub(crate) fn fixed_columns(&self) -> Vec<FixedColumn> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(column, slot)| match *slot {
                Slot::Fixed {
                    offset,
                    data_type,
                    null_bit,
                } => Some(FixedColumn {
                    column,
                    offset,
                    data_type,
                    null_bit,
                }),
                _ => None,
            })
            .collect()
    }

    /// Column `column` of the packed rows `rows` (`rows[i]` starts the row whose key is
    /// `keys[i]`) as an Arrow array of the column's type (`DataType::Timestamp` in UTC
    /// microseconds, as the cold tier's schema has it). A string or binary column whose
    /// values together pass `i32::MAX` bytes (Arrow's offsets) is `Err` (the caller cuts its
    /// chunks well below), and so are packed strings that are not UTF-8 (never, for rows the
    /// engine packed: it is checked again rather than trusted).
    pub(crate) fn export_column(
        &self,
        column: usize,
        keys: &[i64],
        rows: &[&[u8]],
    ) -> Result<ArrayRef, String> {
        let nulls = |null_bit: Option<u32>| -> Option<NullBuffer> {
            let bit = null_bit?;
            let (byte, mask) = ((bit / 8) as usize, 1u8 << (bit % 8));
            let valid = BooleanBuffer::collect_bool(rows.len(), |i| {
                rows[i].get(byte).is_none_or(|b| b & mask == 0)
            });
            let nulls = NullBuffer::new(valid);
            (nulls.null_count() > 0).then_some(nulls)
        };
        let timestamp = |values: ScalarBuffer<i64>, nulls| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone("UTC"))
        };
        match self.slots.get(column).copied().unwrap_or(Slot::Key) {
            Slot::Key => {
                let values = ScalarBuffer::from(keys.to_vec());
                Ok(match self.key_type {
                    DataType::Timestamp => timestamp(values, None),
                    _ => Arc::new(Int64Array::new(values, None)),
                })
            }
            Slot::Fixed {
                offset,
                data_type,
                null_bit,
            } => {
                let at = offset as usize;
                let nulls = nulls(null_bit);
                if data_type == DataType::Bool {
                    let values = BooleanBuffer::collect_bool(rows.len(), |i| {
                        rows[i].get(at).is_some_and(|&b| b != 0)
                    });
                    return Ok(Arc::new(BooleanArray::new(values, nulls)));
                }
                // Hot rows in key order are scattered in memory: each is a cache miss, so
                // the slot of the row some places ahead is asked for early.
                let words: Vec<u64> = (0..rows.len())
                    .map(|i| {
                        if let Some(ahead) = rows.get(i + EXPORT_PREFETCH_AHEAD) {
                            if let Some(byte) = ahead.get(at) {
                                crate::mem::prefetch(byte);
                            }
                        }
                        read_u64(rows[i], at)
                    })
                    .collect();
                Ok(match data_type {
                    DataType::Float64 => Arc::new(Float64Array::new(
                        ScalarBuffer::from(
                            words.into_iter().map(f64::from_bits).collect::<Vec<_>>(),
                        ),
                        nulls,
                    )),
                    DataType::Timestamp => timestamp(ScalarBuffer::from(to_i64(words)), nulls),
                    _ => Arc::new(Int64Array::new(ScalarBuffer::from(to_i64(words)), nulls)),
                })
            }
            Slot::Var {
                offset,
                previous,
                data_type,
                null_bit,
            } => {
                let nulls = nulls(null_bit);
                let mut ends: Vec<i32> = Vec::with_capacity(rows.len() + 1);
                ends.push(0);
                let mut values: Vec<u8> = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    if nulls.as_ref().is_none_or(|n| n.is_valid(i)) {
                        values.extend_from_slice(self.var_bytes(row, offset, previous));
                    }
                    let end = i32::try_from(values.len()).map_err(|_| {
                        format!(
                            "{} bytes of column {column} in one batch pass Arrow's i32 offsets",
                            values.len()
                        )
                    })?;
                    ends.push(end);
                }
                let offsets = OffsetBuffer::new(ScalarBuffer::from(ends));
                let values = Buffer::from_vec(values);
                if data_type == DataType::Binary {
                    return Ok(Arc::new(BinaryArray::new(offsets, values, nulls)));
                }
                // Packed strings were checked as UTF-8 when packed; the array checks the
                // whole buffer again in one pass, so a bug here can never hand out bad UTF-8.
                StringArray::try_new(offsets, values, nulls)
                    .map(|array| Arc::new(array) as ArrayRef)
                    .map_err(|e| format!("packed strings of column {column} are not UTF-8: {e}"))
            }
        }
    }
}

/// Rows ahead of the one read whose slot a columnar export prefetches.
const EXPORT_PREFETCH_AHEAD: usize = 32;

fn to_i64(words: Vec<u64>) -> Vec<i64> {
    words.into_iter().map(|w| w as i64).collect()
}

#[inline]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    match bytes.get(at..at + 4) {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => {
            debug_assert!(false, "packed row too short for a u32 at {at}");
            0
        }
    }
}

#[inline]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(b) => u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
        None => {
            debug_assert!(false, "packed row too short for a u64 at {at}");
            0
        }
    }
}

/// One value of a row, borrowed from where the row is stored. Equality is [`Value`]'s:
/// floats compare by their bits, so a stored NaN equals itself and `0.0 != -0.0`.
#[derive(Debug, Clone, Copy)]
pub enum ValueRef<'a> {
    /// SQL NULL.
    Null,
    /// An Int64 value.
    Int64(i64),
    /// A Float64 value.
    Float64(f64),
    /// A Utf8 value.
    Utf8(&'a str),
    /// A Binary value.
    Binary(&'a [u8]),
    /// A Bool value.
    Bool(bool),
    /// A Timestamp value, microseconds since the Unix epoch.
    Timestamp(i64),
}

impl PartialEq for ValueRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ValueRef::Null, ValueRef::Null) => true,
            (ValueRef::Int64(a), ValueRef::Int64(b)) => a == b,
            (ValueRef::Float64(a), ValueRef::Float64(b)) => a.to_bits() == b.to_bits(),
            (ValueRef::Utf8(a), ValueRef::Utf8(b)) => a == b,
            (ValueRef::Binary(a), ValueRef::Binary(b)) => a == b,
            (ValueRef::Bool(a), ValueRef::Bool(b)) => a == b,
            (ValueRef::Timestamp(a), ValueRef::Timestamp(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for ValueRef<'_> {}

impl<'a> ValueRef<'a> {
    /// An owned copy.
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Null => Value::Null,
            ValueRef::Int64(v) => Value::Int64(v),
            ValueRef::Float64(v) => Value::Float64(v),
            ValueRef::Utf8(v) => Value::Utf8(v.to_string()),
            ValueRef::Binary(v) => Value::Binary(v.to_vec()),
            ValueRef::Bool(v) => Value::Bool(v),
            ValueRef::Timestamp(v) => Value::Timestamp(v),
        }
    }

    /// Whether this is NULL.
    #[inline]
    pub fn is_null(self) -> bool {
        matches!(self, ValueRef::Null)
    }

    /// The integer of an Int64 or Timestamp value.
    #[inline]
    pub fn as_i64(self) -> Option<i64> {
        match self {
            ValueRef::Int64(v) | ValueRef::Timestamp(v) => Some(v),
            _ => None,
        }
    }

    /// The float of a Float64 value.
    #[inline]
    pub fn as_f64(self) -> Option<f64> {
        match self {
            ValueRef::Float64(v) => Some(v),
            _ => None,
        }
    }

    /// The text of a Utf8 value.
    #[inline]
    pub fn as_str(self) -> Option<&'a str> {
        match self {
            ValueRef::Utf8(v) => Some(v),
            _ => None,
        }
    }

    /// The bytes of a Binary value.
    #[inline]
    pub fn as_bytes(self) -> Option<&'a [u8]> {
        match self {
            ValueRef::Binary(v) => Some(v),
            _ => None,
        }
    }

    /// The flag of a Bool value.
    pub fn as_bool(self) -> Option<bool> {
        match self {
            ValueRef::Bool(v) => Some(v),
            _ => None,
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(value: &'a Value) -> ValueRef<'a> {
        match value {
            Value::Null => ValueRef::Null,
            Value::Int64(v) => ValueRef::Int64(*v),
            Value::Float64(v) => ValueRef::Float64(*v),
            Value::Utf8(v) => ValueRef::Utf8(v),
            Value::Binary(v) => ValueRef::Binary(v),
            Value::Bool(v) => ValueRef::Bool(*v),
            Value::Timestamp(v) => ValueRef::Timestamp(*v),
        }
    }
}

/// A row read in place, without copying: valid while the read that produced it lasts
/// (for example inside [`crate::Database::get_with`] or [`crate::Database::for_each_row`]).
#[derive(Clone, Copy)]
pub struct RowRef<'a> {
    layout: &'a RowLayout,
    key: i64,
    bytes: &'a [u8],
}

impl std::fmt::Debug for RowRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries((0..self.len()).map(|i| self.value(i)))
            .finish()
    }
}

impl<'a> RowRef<'a> {
    #[inline]
    pub(crate) fn new(layout: &'a RowLayout, key: i64, bytes: &'a [u8]) -> RowRef<'a> {
        RowRef { layout, key, bytes }
    }

    /// The primary key.
    #[inline]
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.layout.slots.len()
    }

    /// Whether the row has no columns (never: a table has its key column).
    pub fn is_empty(&self) -> bool {
        self.layout.slots.is_empty()
    }

    /// The value of column `i` (in the table's column order); `None` past the last column.
    #[inline]
    pub fn get(&self, i: usize) -> Option<ValueRef<'a>> {
        Some(self.value_at(*self.layout.slots.get(i)?))
    }

    /// The value of column `i`; NULL past the last column.
    #[inline]
    pub fn value(&self, i: usize) -> ValueRef<'a> {
        self.get(i).unwrap_or(ValueRef::Null)
    }

    #[inline]
    fn is_null(&self, null_bit: Option<u32>) -> bool {
        null_bit.is_some_and(|bit| {
            self.bytes
                .get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }

    #[inline]
    fn value_at(&self, slot: Slot) -> ValueRef<'a> {
        match slot {
            Slot::Key => match self.layout.key_type {
                DataType::Timestamp => ValueRef::Timestamp(self.key),
                _ => ValueRef::Int64(self.key),
            },
            Slot::Fixed {
                offset,
                data_type,
                null_bit,
            } => {
                if self.is_null(null_bit) {
                    return ValueRef::Null;
                }
                let at = offset as usize;
                match data_type {
                    DataType::Int64 => ValueRef::Int64(read_u64(self.bytes, at) as i64),
                    DataType::Timestamp => ValueRef::Timestamp(read_u64(self.bytes, at) as i64),
                    DataType::Float64 => {
                        ValueRef::Float64(f64::from_bits(read_u64(self.bytes, at)))
                    }
                    DataType::Bool => ValueRef::Bool(self.bytes.get(at).is_some_and(|&b| b != 0)),
                    DataType::Utf8 | DataType::Binary => ValueRef::Null,
                }
            }
            Slot::Var {
                offset,
                previous,
                data_type,
                null_bit,
            } => {
                if self.is_null(null_bit) {
                    return ValueRef::Null;
                }
                let bytes = self.layout.var_bytes(self.bytes, offset, previous);
                if data_type == DataType::Binary {
                    return ValueRef::Binary(bytes);
                }
                match std::str::from_utf8(bytes) {
                    Ok(s) => ValueRef::Utf8(s),
                    Err(_) => {
                        debug_assert!(false, "packed Utf8 value is not UTF-8");
                        ValueRef::Null
                    }
                }
            }
        }
    }

    /// The values, in column order.
    pub fn values(&self) -> impl Iterator<Item = ValueRef<'a>> + '_ {
        self.layout
            .slots
            .iter()
            .map(move |&slot| self.value_at(slot))
    }

    /// An owned copy of the row.
    pub fn to_row(&self) -> Row {
        self.values().map(ValueRef::to_value).collect()
    }
}

/// A row whose values can be read by column: an owned row or a [`RowRef`]. Lets the
/// Parquet and Arrow writers take either without copying.
pub(crate) trait RowValues<'a>: Copy {
    /// The value of column `i`; NULL past the last column.
    fn value(self, i: usize) -> ValueRef<'a>;

    /// Asks the CPU to start loading the row's bytes (a row about to be read soon).
    fn prefetch(self) {}
}

impl<'a> RowValues<'a> for &'a Row {
    fn value(self, i: usize) -> ValueRef<'a> {
        self.get(i).map_or(ValueRef::Null, ValueRef::from)
    }
}

impl<'a> RowValues<'a> for RowRef<'a> {
    fn value(self, i: usize) -> ValueRef<'a> {
        RowRef::value(&self, i)
    }

    fn prefetch(self) {
        if let Some(first) = self.bytes.first() {
            crate::mem::prefetch(first);
        }
    }
}

/// A row location made of a page number and an offset in it.
fn location(page: usize, offset: usize) -> RowLocation {
    ((page as u64) << 32) | offset as u64
}

fn split(location: RowLocation) -> (usize, usize) {
    ((location >> 32) as usize, (location & 0xffff_ffff) as usize)
}

/// Pages of packed rows, with free lists by row length.
///
/// Pages are shared, copy on write: [`RowArena::share`] hands out the pages as they are (a
/// checkpoint encodes its image from them with no lock held), and the first write to a
/// page still shared copies it first, so a shared page never changes under its reader.
///
/// Each row's packed bytes are preceded by its slot in [`HotColumns`] (a `u32`, little
/// endian; [`SLOT_BYTES`]): a location points past it, at the row, so readers never see
/// it. Run lengths and byte counts are of packed rows, without the slot.
#[derive(Debug, Default)]
pub(crate) struct RowArena {
    pages: Vec<Arc<Vec<u8>>>,
    /// Locations of free runs, by their length.
    free: BTreeMap<u32, Vec<RowLocation>>,
    live_bytes: u64,
    free_bytes: u64,
    columns: HotColumns,
}

/// Bytes before each row holding its slot in the arena's [`HotColumns`].
pub(crate) const SLOT_BYTES: usize = 4;

/// The pages of a [`RowArena`] as they were when [`RowArena::share`] was called: read-only,
/// and unchanged by later writes to the arena.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedPages {
    pages: Vec<Arc<Vec<u8>>>,
}

impl SharedPages {
    /// The packed row at `location` (live in the arena when the pages were shared); it
    /// runs on to the end of its page, as [`RowArena::bytes`].
    pub fn bytes(&self, location: RowLocation) -> &[u8] {
        page_bytes(&self.pages, location)
    }

    /// Asks the CPU to start loading the first line of the row at `location`.
    #[inline]
    pub fn prefetch(&self, location: RowLocation) {
        page_prefetch(&self.pages, location);
    }

    /// The slot of the row at `location` (see [`RowArena`]).
    pub fn slot_at(&self, location: RowLocation) -> u32 {
        page_slot(&self.pages, location)
    }
}

#[inline]
fn page_prefetch(pages: &[Arc<Vec<u8>>], location: RowLocation) {
    let (page, offset) = split(location);
    if let Some(byte) = pages.get(page).and_then(|p| p.get(offset)) {
        crate::mem::prefetch(byte);
    }
}

fn page_slot(pages: &[Arc<Vec<u8>>], location: RowLocation) -> u32 {
    let (page, offset) = split(location);
    match pages
        .get(page)
        .and_then(|p| p.get(offset.checked_sub(SLOT_BYTES)?..offset))
    {
        Some(b) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        None => {
            debug_assert!(false, "row location {location:#x} has no slot");
            u32::MAX
        }
    }
}

fn page_bytes(pages: &[Arc<Vec<u8>>], location: RowLocation) -> &[u8] {
    let (page, offset) = split(location);
    pages
        .get(page)
        .and_then(|p| p.get(offset..))
        .unwrap_or_else(|| {
            debug_assert!(false, "row location {location:#x} is out of the arena");
            &[]
        })
}

impl RowArena {
    /// An empty store for rows of `layout`.
    pub fn new(layout: &RowLayout) -> RowArena {
        RowArena {
            columns: HotColumns::new(layout.fixed_columns()),
            ..RowArena::default()
        }
    }

    /// The packed row at `location` (from [`RowArena::insert`], still live).
    pub fn bytes(&self, location: RowLocation) -> &[u8] {
        page_bytes(&self.pages, location)
    }

    /// The slot of the live row at `location` in [`RowArena::columns`].
    pub fn slot_at(&self, location: RowLocation) -> u32 {
        page_slot(&self.pages, location)
    }

    /// The hot rows' fixed-width columns, by slot.
    pub fn columns(&self) -> &HotColumns {
        &self.columns
    }

    /// The pages as they are now, for a reader that holds no lock: O(pages). A page shared
    /// this way is copied by the next write to it (its capacity kept), so the reader's
    /// bytes never change; a write to a page nobody shares stays in place.
    pub fn share(&self) -> SharedPages {
        SharedPages {
            pages: self.pages.clone(),
        }
    }

    /// Page `page`, writable: copied first if a [`SharedPages`] still holds it.
    fn page_mut(&mut self, page: usize) -> Option<&mut Vec<u8>> {
        let slot = self.pages.get_mut(page)?;
        if Arc::get_mut(slot).is_none() {
            let mut copy = Vec::with_capacity(slot.capacity());
            crate::mem::advise_huge_pages(&copy);
            copy.extend_from_slice(slot);
            *slot = Arc::new(copy);
        }
        Arc::get_mut(slot)
    }

    /// Asks the CPU to start loading the first line of the row at `location`; reads nothing
    /// of the row itself, so a caller walking rows in key order (scattered in the pages) can
    /// overlap the misses of the rows ahead.
    #[inline]
    pub fn prefetch(&self, location: RowLocation) {
        page_prefetch(&self.pages, location);
    }

    /// Stores a packed row; returns its location.
    pub fn insert(&mut self, packed: &[u8]) -> RowLocation {
        let len = packed.len();
        self.live_bytes += len as u64;
        let slot = self.columns.add(packed).to_le_bytes();
        if let Some(list) = self.free.get_mut(&(len as u32)) {
            if let Some(location) = list.pop() {
                if list.is_empty() {
                    self.free.remove(&(len as u32));
                }
                self.free_bytes -= len as u64;
                let (page, offset) = split(location);
                if let Some(run) = self
                    .page_mut(page)
                    .and_then(|p| p.get_mut(offset.checked_sub(SLOT_BYTES)?..offset + len))
                {
                    run[..SLOT_BYTES].copy_from_slice(&slot);
                    run[SLOT_BYTES..].copy_from_slice(packed);
                    return location;
                }
                debug_assert!(false, "free run {location:#x} is out of the arena");
            }
        }
        let run = SLOT_BYTES + len;
        let fits = self
            .pages
            .last()
            .is_some_and(|p| p.capacity() - p.len() >= run);
        if !fits {
            let next = self
                .pages
                .last()
                .map_or(PAGE_BYTES_MIN, |p| (p.capacity() * 2).min(PAGE_BYTES_MAX));
            let page = Vec::with_capacity(run.max(next));
            crate::mem::advise_huge_pages(&page);
            self.pages.push(Arc::new(page));
        }
        let page = self.pages.len().saturating_sub(1);
        if let Some(current) = self.page_mut(page) {
            let offset = current.len() + SLOT_BYTES;
            current.extend_from_slice(&slot);
            current.extend_from_slice(packed);
            return location(page, offset);
        }
        // Not reached: a last page with room exists here. A page of its own is correct.
        debug_assert!(false, "the arena has no last page");
        let mut own = slot.to_vec();
        own.extend_from_slice(packed);
        self.pages.push(Arc::new(own));
        location(self.pages.len() - 1, SLOT_BYTES)
    }

    /// Overwrites the live row at `location` with `packed` if it has the same length;
    /// otherwise frees it and stores `packed` elsewhere. Returns the row's location.
    pub fn replace(
        &mut self,
        layout: &RowLayout,
        location: RowLocation,
        packed: &[u8],
    ) -> RowLocation {
        let old_len = layout.len_of(self.bytes(location));
        if old_len == packed.len() {
            let slot = self.slot_at(location);
            let (page, offset) = split(location);
            if let Some(run) = self
                .page_mut(page)
                .and_then(|p| p.get_mut(offset..offset + old_len))
            {
                run.copy_from_slice(packed);
                self.columns.set(slot, packed);
                return location;
            }
        }
        self.remove(layout, location);
        self.insert(packed)
    }

    /// Frees the live row at `location`.
    pub fn remove(&mut self, layout: &RowLayout, location: RowLocation) {
        let len = layout.len_of(self.bytes(location));
        let slot = self.slot_at(location);
        self.free_run(location, len);
        self.columns.remove(slot);
    }

    /// Frees the live rows `runs` (location, length and slot), each row's length and slot
    /// known to the caller: a flush's install knows them from its gather, and so reads no
    /// row.
    pub fn remove_runs(&mut self, layout: &RowLayout, runs: &[(RowLocation, u32, u32)]) {
        for &(location, len, slot) in runs {
            debug_assert_eq!(len as usize, self.len_at(layout, location), "run length");
            debug_assert_eq!(slot, self.slot_at(location), "run slot");
            self.free_run(location, len as usize);
        }
        self.columns
            .remove_many(runs.iter().map(|&(_, _, slot)| slot));
    }

    /// Puts the run of the row of `len` bytes at `location` on its free list.
    fn free_run(&mut self, location: RowLocation, len: usize) {
        self.live_bytes -= len as u64;
        self.free_bytes += len as u64;
        self.free.entry(len as u32).or_default().push(location);
    }

    /// Whether enough space is free that the table should rebuild its store.
    pub fn wants_rebuild(&self) -> bool {
        self.free_bytes > REBUILD_DEAD_BYTES_MIN && self.free_bytes > self.live_bytes
    }

    /// Bytes the pages hold (live, free, and the unused tail of each page).
    pub fn capacity_bytes(&self) -> usize {
        self.columns.capacity_bytes()
            + self.pages.iter().map(|p| p.capacity()).sum::<usize>()
            + self
                .free
                .values()
                .map(|l| l.capacity() * std::mem::size_of::<RowLocation>())
                .sum::<usize>()
    }

    /// Checks that `location` holds a whole row inside a page, and returns its length.
    pub fn check_location(
        &self,
        layout: &RowLayout,
        location: RowLocation,
    ) -> Result<usize, String> {
        let (page, offset) = split(location);
        if offset < SLOT_BYTES {
            return Err(format!(
                "location {location:#x} leaves no room for its slot"
            ));
        }
        let bytes = self
            .pages
            .get(page)
            .and_then(|p| p.get(offset..))
            .ok_or_else(|| format!("location {location:#x} is outside the pages"))?;
        if bytes.len() < layout.fixed_bytes as usize {
            return Err(format!(
                "location {location:#x} is too close to its page's end"
            ));
        }
        let len = layout.len_of(bytes);
        if len > bytes.len() {
            return Err(format!(
                "row at {location:#x} of {len} bytes runs past its page"
            ));
        }
        self.columns
            .check(self.slot_at(location), &bytes[..len])
            .map_err(|e| format!("row at {location:#x}: {e}"))?;
        Ok(len)
    }

    /// Checks the byte accounting against the live rows' total length, and the slots
    /// against their count.
    pub fn check_accounting(&self, live_bytes: u64, live_rows: usize) -> Result<(), String> {
        self.columns.check_counts(live_rows)?;
        if live_bytes != self.live_bytes {
            return Err(format!(
                "live rows hold {live_bytes} bytes, the arena counts {}",
                self.live_bytes
            ));
        }
        let free: u64 = self
            .free
            .iter()
            .map(|(&len, list)| u64::from(len) * list.len() as u64)
            .sum();
        if free != self.free_bytes {
            return Err(format!(
                "free lists hold {free} bytes, the arena counts {}",
                self.free_bytes
            ));
        }
        Ok(())
    }

    /// The length of the packed row at `location`.
    pub fn len_at(&self, layout: &RowLayout, location: RowLocation) -> usize {
        layout.len_of(self.bytes(location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Column;
    use proptest::prelude::*;

    fn def() -> TableDef {
        TableDef::new(
            "t",
            vec![
                Column::new("a", DataType::Utf8).nullable(),
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("b", DataType::Binary),
                Column::new("c", DataType::Float64).nullable(),
                Column::new("d", DataType::Bool).nullable(),
                Column::new("e", DataType::Timestamp),
                Column::new("f", DataType::Utf8),
                Column::new("g", DataType::Int64).nullable(),
            ],
        )
        .expect("valid definition")
    }

    fn value_strategy(data_type: DataType, nullable: bool) -> BoxedStrategy<Value> {
        let value = match data_type {
            DataType::Int64 => any::<i64>().prop_map(Value::Int64).boxed(),
            DataType::Timestamp => any::<i64>().prop_map(Value::Timestamp).boxed(),
            DataType::Float64 => any::<u64>()
                .prop_map(|b| Value::Float64(f64::from_bits(b)))
                .boxed(),
            DataType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
            DataType::Utf8 => ".{0,40}".prop_map(Value::Utf8).boxed(),
            DataType::Binary => proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(Value::Binary)
                .boxed(),
        };
        if nullable {
            prop_oneof![1 => Just(Value::Null), 3 => value].boxed()
        } else {
            value
        }
    }

    fn row_strategy() -> impl Strategy<Value = Row> {
        let def = def();
        def.columns()
            .iter()
            .map(|c| value_strategy(c.data_type, c.nullable))
            .collect::<Vec<_>>()
    }

    /// `pack_encoded` of `bytes` into a buffer that already holds 3 bytes, which it keeps.
    fn pack_encoded_of(bytes: &[u8]) -> DecodeResult<Result<(i64, Vec<u8>), String>> {
        let def = def();
        let mut out = vec![0xAA; 3];
        let key = RowLayout::new(&def).pack_encoded(&def, &mut Decoder::new(bytes), &mut out)?;
        assert_eq!(out[..3], [0xAA; 3]);
        Ok(key.map(|k| (k, out[3..].to_vec())))
    }

    fn encoded(row: &[Value]) -> Vec<u8> {
        let mut enc = crate::codec::Encoder::new();
        enc.row(row);
        enc.bytes
    }

    fn valid_row() -> Row {
        vec![
            Value::Null,
            Value::Int64(7),
            Value::Binary(vec![1, 2]),
            Value::Float64(1.5),
            Value::Bool(true),
            Value::Timestamp(-3),
            Value::Utf8("x".into()),
            Value::Int64(9),
        ]
    }

    #[test]
    fn pack_encoded_refuses_rows_that_do_not_fit_the_table() {
        let mut wrong_type = valid_row();
        wrong_type[2] = Value::Utf8("not binary".into());
        let mut null_key = valid_row();
        null_key[1] = Value::Null;
        let mut null_required = valid_row();
        null_required[6] = Value::Null;
        let mut short = valid_row();
        short.pop();
        for (row, why) in [
            (wrong_type, "type code 3 in column \"b\""),
            (null_key, "NULL in non-nullable column \"k\""),
            (null_required, "NULL in non-nullable column \"f\""),
            (short, "row of 7 values for 8 columns"),
        ] {
            let refused = pack_encoded_of(&encoded(&row)).expect("decodes");
            let reason = refused.expect_err("refused");
            assert!(reason.contains(why), "{reason:?} should say {why:?}");
        }
        // Invalid UTF-8 in a Utf8 column, and a Bool byte that is neither 0 nor 1.
        let mut bytes = encoded(&valid_row());
        let at = bytes.len() - (1 + 8) - 1; // the "x" of column f, before g
        bytes[at] = 0xFF;
        let reason = pack_encoded_of(&bytes)
            .expect("decodes")
            .expect_err("refused");
        assert!(reason.contains("UTF-8"), "{reason:?}");
        let mut bytes = encoded(&valid_row());
        let bool_at = bytes.len() - (1 + 8) - (1 + 4 + 1) - (1 + 8) - 1;
        bytes[bool_at] = 2;
        let e = pack_encoded_of(&bytes).expect_err("a Bool byte of 2 is malformed");
        assert!(e.reason.contains("Bool"), "{e:?}");
    }

    #[test]
    fn pack_encoded_of_a_truncated_row_is_a_decode_error_at_every_cut() {
        let bytes = encoded(&valid_row());
        for cut in 0..bytes.len() {
            assert!(pack_encoded_of(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(pack_encoded_of(&bytes).is_ok());
    }

    #[test]
    fn columnar_export_of_bad_packed_utf8_is_an_error_not_nulls() {
        let def = def();
        let layout = RowLayout::new(&def);
        let mut row = valid_row();
        row[6] = Value::Utf8("xyz".into());
        let mut packed = Vec::new();
        layout.pack(&row, &mut packed);
        let at = packed
            .windows(3)
            .position(|w| w == b"xyz")
            .expect("the string is in the packed row");
        packed[at] = 0xFF;
        let rows = [&packed[..]];
        let why = layout
            .export_column(6, &[7], &rows)
            .expect_err("bad UTF-8 is refused");
        assert!(why.contains("UTF-8"), "{why}");
        // The other columns of the row still export.
        assert!(layout.export_column(7, &[7], &rows).is_ok());
    }

    proptest! {
        #[test]
        fn columnar_export_equals_the_row_by_row_export(
            rows in proptest::collection::vec(row_strategy(), 0..40),
            projection in proptest::collection::vec(0usize..8, 1..10),
        ) {
            let def = def();
            let layout = RowLayout::new(&def);
            // Each row packed at its own place in one buffer, as rows sit in a page.
            let mut page = Vec::new();
            let mut starts = Vec::new();
            let mut keys = Vec::new();
            for row in &rows {
                keys.push(def.validate_row(row).expect("generated rows are valid"));
                starts.push(page.len());
                layout.pack(row, &mut page);
            }
            let packed: Vec<&[u8]> = starts.iter().map(|&at| &page[at..]).collect();
            let refs: Vec<RowRef<'_>> = keys
                .iter()
                .zip(&packed)
                .map(|(&key, bytes)| RowRef::new(&layout, key, bytes))
                .collect();
            let schema = Arc::new(
                crate::cold::segment::arrow_schema(&def)
                    .project(&projection)
                    .expect("projection of the table's columns"),
            );
            let expected =
                crate::cold::segment::rows_to_batch(&def, schema.clone(), &projection, &refs)
                    .expect("rows form a batch");
            let arrays: Vec<ArrayRef> = projection
                .iter()
                .map(|&column| layout.export_column(column, &keys, &packed).expect("exports"))
                .collect();
            let got = arrow_array::RecordBatch::try_new_with_options(
                schema,
                arrays,
                &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
            )
            .expect("exported arrays form a batch");
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn pack_encoded_equals_pack_of_the_decoded_row(row in row_strategy()) {
            let def = def();
            let key = def.validate_row(&row).expect("generated rows are valid");
            let mut packed = Vec::new();
            RowLayout::new(&def).pack(&row, &mut packed);
            let (decoded_key, decoded) = pack_encoded_of(&encoded(&row))
                .expect("decodes")
                .expect("valid");
            prop_assert_eq!(decoded_key, key);
            prop_assert_eq!(decoded, packed);
        }

        #[test]
        fn packed_rows_read_back_exactly(row in row_strategy()) {
            let def = def();
            let key = def.validate_row(&row).expect("generated rows are valid");
            let layout = RowLayout::new(&def);
            let mut packed = vec![0xAA; 3];
            layout.pack(&row, &mut packed);
            let bytes = &packed[3..];
            prop_assert_eq!(bytes.len() as u64, layout.packed_len(&row));
            prop_assert_eq!(layout.len_of(bytes), bytes.len());
            let read = RowRef::new(&layout, key, bytes);
            prop_assert_eq!(read.to_row(), row.clone());
            prop_assert_eq!(read.get(row.len()), None);
            for (i, value) in row.iter().enumerate() {
                prop_assert_eq!(read.value(i), ValueRef::from(value));
            }
        }

        #[test]
        fn encode_packed_writes_what_the_codec_writes(row in row_strategy()) {
            let def = def();
            let key = def.validate_row(&row).expect("generated rows are valid");
            let layout = RowLayout::new(&def);
            let mut packed = Vec::new();
            layout.pack(&row, &mut packed);
            // Page bytes after the row must not leak into its encoding.
            packed.extend_from_slice(&[0x5A; 16]);
            let mut out = vec![0xAA; 3];
            layout.encode_packed(key, &packed, &mut out);
            prop_assert_eq!(&out[..3], &[0xAA; 3]);
            prop_assert_eq!(&out[3..], &encoded(&row)[..]);
        }

        #[test]
        fn arena_keeps_every_live_row(ops in proptest::collection::vec((0u8..3, 0usize..64, row_strategy()), 1..300)) {
            let def = def();
            let layout = RowLayout::new(&def);
            let mut arena = RowArena::new(&layout);
            let mut live: BTreeMap<usize, (RowLocation, Row)> = BTreeMap::new();
            let mut packed = Vec::new();
            for (op, slot, row) in ops {
                packed.clear();
                layout.pack(&row, &mut packed);
                match (op, live.remove(&slot)) {
                    (0, None) | (1, None) => {
                        live.insert(slot, (arena.insert(&packed), row));
                    }
                    (0, Some((location, _))) | (1, Some((location, _))) => {
                        live.insert(slot, (arena.replace(&layout, location, &packed), row));
                    }
                    (_, Some((location, _))) => arena.remove(&layout, location),
                    (_, None) => {}
                }
                let mut total = 0u64;
                for (location, row) in live.values() {
                    let len = arena.check_location(&layout, *location).map_err(TestCaseError::fail)?;
                    total += len as u64;
                    let key = def.key_of(row).unwrap_or(0);
                    prop_assert_eq!(&RowRef::new(&layout, key, arena.bytes(*location)).to_row(), row);
                }
                arena.check_accounting(total, live.len()).map_err(TestCaseError::fail)?;
            }
        }
    }

    #[test]
    fn free_runs_are_reused_by_rows_of_their_length() {
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
            ],
        )
        .expect("valid definition");
        let layout = RowLayout::new(&def);
        let mut arena = RowArena::new(&layout);
        let mut packed = Vec::new();
        layout.pack(&[Value::Int64(1), Value::Int64(7)], &mut packed);
        assert_eq!(packed.len(), 8, "the key is not stored");
        let first = arena.insert(&packed);
        let second = arena.insert(&packed);
        arena.remove(&layout, first);
        assert_eq!(arena.insert(&packed), first);
        assert_ne!(first, second);
        arena
            .check_accounting(16, 2)
            .expect("two live rows of 8 bytes");
    }

    #[test]
    fn rows_larger_than_a_page_get_their_own() {
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Binary),
            ],
        )
        .expect("valid definition");
        let layout = RowLayout::new(&def);
        let mut arena = RowArena::new(&layout);
        let big = vec![Value::Int64(1), Value::Binary(vec![7; PAGE_BYTES_MAX * 3])];
        let mut packed = Vec::new();
        layout.pack(&big, &mut packed);
        let small = arena.insert(&packed[..4]);
        let location = arena.insert(&packed);
        assert_ne!(location >> 32, small >> 32);
        assert_eq!(RowRef::new(&layout, 1, arena.bytes(location)).to_row(), big);
    }
}
