//! The hot tier's fixed-width columns, kept column by column beside the row store, so that
//! a scan of them reads contiguous values instead of walking the index and a row a key.
//!
//! The row store ([`crate::rowstore::RowArena`]) keeps each row packed in one place, which
//! a point read wants. A full scan of one column wants the opposite: over 10M hot rows the
//! walk of the index in key order and the load of each row's line took 6-8 ns a row, three
//! quarters of a 100M-row `sum(v)` with 90M rows cold. So each live row also has a *slot*
//! (a dense `u32`, stored in the 4 bytes before the row's packed bytes), and for every
//! Int64, Float64, Timestamp and Bool column this keeps the value of each slot in one
//! array, its null bit in a bitmap, and which slots are live in another.
//!
//! Writes keep it exact: an insert takes a slot (the most recently freed, else the next
//! past the end) and writes its values; an update in place rewrites them; a delete frees
//! the slot. A store rebuilt in key order numbers its rows afresh, densely. A scan whose
//! range holds every hot key and whose columns are all kept here reads the live slots in
//! slot order ([`HotColumns::export`]): rows then come in no particular key order, which
//! the scan's contract allows. The invariant check compares every live row's bytes with
//! its slot.
//!
//! Values are kept in chunks of [`CHUNK_SLOTS`] slots, each behind an `Arc`: a chunk whose
//! slots are all live is exported as an Arrow buffer over the chunk itself, with no copy,
//! and the next write to a chunk a scan still holds copies it first (64 KiB), so a scan's
//! batches never change under it.

use crate::rowstore::FixedColumn;
use crate::schema::DataType;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, ScalarBuffer};
use std::collections::VecDeque;
use std::sync::Arc;

/// Slots a chunk of values holds: a scan's batch (`cold::segment::BATCH_ROWS`).
pub(crate) const CHUNK_SLOTS: usize = 8192;

/// Words of the live bitmap a chunk covers.
const CHUNK_WORDS: usize = CHUNK_SLOTS / 64;

/// One kept column: its packed-row position and its values by slot.
#[derive(Debug, Clone)]
struct Kept {
    spec: FixedColumn,
    /// The column's 8 bytes (a Bool's one byte, widened) for each slot, [`CHUNK_SLOTS`] a
    /// chunk (the last may be shorter); shared with the scans that exported a chunk whole.
    chunks: Vec<Arc<Vec<u64>>>,
    /// Bit `slot` set: the value is null. Empty for a NOT NULL column.
    nulls: Vec<u64>,
}

impl Kept {
    #[inline]
    fn value(&self, slot: u32) -> Option<u64> {
        let at = slot as usize;
        self.chunks
            .get(at / CHUNK_SLOTS)?
            .get(at % CHUNK_SLOTS)
            .copied()
    }
}

/// A chunk of values as bytes, for an Arrow buffer that shares it.
struct ChunkBytes(Arc<Vec<u64>>);

impl AsRef<[u8]> for ChunkBytes {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(self.0.as_slice())
    }
}

/// The fixed-width columns of a table's hot rows, by slot. See the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct HotColumns {
    kept: Vec<Kept>,
    /// Bit `slot` set: the slot holds a live row.
    live: Vec<u64>,
    /// Slots handed out so far (live or freed): the arrays' length.
    slots: u32,
    /// Freed slots, the next to reuse last.
    free: Vec<u32>,
    live_count: usize,
}

impl HotColumns {
    /// Columns kept for `fixed` (from [`crate::rowstore::RowLayout::fixed_columns`]).
    pub fn new(fixed: Vec<FixedColumn>) -> HotColumns {
        HotColumns {
            kept: fixed
                .into_iter()
                .map(|spec| Kept {
                    spec,
                    chunks: Vec::new(),
                    nulls: Vec::new(),
                })
                .collect(),
            ..HotColumns::default()
        }
    }

    /// Live slots.
    pub fn live_count(&self) -> usize {
        self.live_count
    }

    /// Takes a slot for the row `packed` and records its values.
    pub fn add(&mut self, packed: &[u8]) -> u32 {
        self.live_count += 1;
        if let Some(slot) = self.free.pop() {
            set_bit(&mut self.live, slot, true);
            self.set(slot, packed);
            return slot;
        }
        // A slot past the end: its values are pushed, with no second pass to set them.
        let slot = self.slots;
        self.slots += 1;
        let new_word = slot.is_multiple_of(64);
        let new_chunk = (slot as usize).is_multiple_of(CHUNK_SLOTS);
        if new_word {
            self.live.push(0);
        }
        set_bit(&mut self.live, slot, true);
        for kept in &mut self.kept {
            let (value, null) = kept.spec.read(packed);
            if new_chunk {
                kept.chunks.push(Arc::new(Vec::with_capacity(CHUNK_SLOTS)));
            }
            if let Some(chunk) = kept.chunks.last_mut() {
                Arc::make_mut(chunk).push(value);
            }
            if kept.spec.null_bit.is_some() {
                if new_word {
                    kept.nulls.push(0);
                }
                if null {
                    set_bit(&mut kept.nulls, slot, true);
                }
            }
        }
        slot
    }

    /// Records the values of `packed`, the new bytes of the live row in `slot`.
    pub fn set(&mut self, slot: u32, packed: &[u8]) {
        let at = slot as usize;
        for kept in &mut self.kept {
            let (value, null) = kept.spec.read(packed);
            if let Some(chunk) = kept.chunks.get_mut(at / CHUNK_SLOTS) {
                if let Some(v) = Arc::make_mut(chunk).get_mut(at % CHUNK_SLOTS) {
                    *v = value;
                }
            }
            if kept.spec.null_bit.is_some() {
                set_bit(&mut kept.nulls, slot, null);
            }
        }
    }

    /// Frees `slot` (its row was deleted or moved).
    pub fn remove(&mut self, slot: u32) {
        if !get_bit(&self.live, slot) {
            debug_assert!(false, "slot {slot} is not live");
            return;
        }
        set_bit(&mut self.live, slot, false);
        self.live_count -= 1;
        self.free.push(slot);
    }

    /// Frees `slots` at once (a flush's rows), then remakes the free list from the live
    /// bitmap, highest slot first, so that the next inserts fill the lowest slots first and
    /// write the arrays in order, not at random (one pass over the bitmap, no sort).
    pub fn remove_many(&mut self, slots: impl IntoIterator<Item = u32>) {
        for slot in slots {
            if get_bit(&self.live, slot) {
                set_bit(&mut self.live, slot, false);
                self.live_count -= 1;
            } else {
                debug_assert!(false, "slot {slot} is not live");
            }
        }
        self.free.clear();
        for (w, &bits) in self.live.iter().enumerate().rev() {
            let mut free = !bits;
            if (w + 1) * 64 > self.slots as usize {
                // Bits past the last slot are not slots.
                let valid = self.slots as usize - w * 64;
                free &= u64::MAX >> (64 - valid);
            }
            while free != 0 {
                let top = 63 - free.leading_zeros();
                self.free.push((w * 64) as u32 + top);
                free &= !(1u64 << top);
            }
        }
    }

    /// Whether every column of `columns` (table column numbers) is kept here.
    pub fn covers(&self, columns: &[usize]) -> bool {
        columns
            .iter()
            .all(|c| self.kept.iter().any(|k| k.spec.column == *c))
    }

    /// The live rows' `columns` (all kept: [`HotColumns::covers`]) as batches of `schema`,
    /// a chunk of [`CHUNK_SLOTS`] slots a batch, in slot order. A chunk whose slots are all
    /// live is handed out as it is (shared, no copy); others are gathered a live bit at a
    /// time.
    pub fn export(
        &self,
        columns: &[usize],
        schema: &arrow_schema::SchemaRef,
    ) -> Result<VecDeque<RecordBatch>, String> {
        let kept: Vec<&Kept> = columns
            .iter()
            .map(|c| {
                self.kept
                    .iter()
                    .find(|k| k.spec.column == *c)
                    .ok_or_else(|| format!("column {c} is not kept by slot"))
            })
            .collect::<Result<_, _>>()?;
        let mut batches = VecDeque::new();
        let chunks = (self.slots as usize).div_ceil(CHUNK_SLOTS);
        let mut slots: Vec<u32> = Vec::with_capacity(CHUNK_SLOTS);
        for chunk in 0..chunks {
            let words = self
                .live
                .get(chunk * CHUNK_WORDS..((chunk + 1) * CHUNK_WORDS).min(self.live.len()))
                .unwrap_or(&[]);
            let rows: usize = words.iter().map(|w| w.count_ones() as usize).sum();
            if rows == 0 {
                continue;
            }
            let whole = rows == CHUNK_SLOTS;
            slots.clear();
            if !whole {
                for (w, &bits) in words.iter().enumerate() {
                    let mut bits = bits;
                    while bits != 0 {
                        slots.push(((chunk * CHUNK_WORDS + w) * 64) as u32 + bits.trailing_zeros());
                        bits &= bits - 1;
                    }
                }
            }
            let first = (chunk * CHUNK_SLOTS) as u32;
            let arrays = kept
                .iter()
                .map(|k| {
                    let values = match (whole, k.chunks.get(chunk)) {
                        (true, Some(shared)) if shared.len() == CHUNK_SLOTS => {
                            Buffer::from(bytes::Bytes::from_owner(ChunkBytes(shared.clone())))
                        }
                        (true, _) => Buffer::from_vec(
                            (first..first + rows as u32)
                                .map(|s| k.value(s).unwrap_or(0))
                                .collect::<Vec<u64>>(),
                        ),
                        (false, _) => Buffer::from_vec(
                            slots
                                .iter()
                                .map(|&s| k.value(s).unwrap_or(0))
                                .collect::<Vec<u64>>(),
                        ),
                    };
                    let nulls = k
                        .spec
                        .null_bit
                        .map(|_| {
                            NullBuffer::new(BooleanBuffer::collect_bool(rows, |i| {
                                let slot = if whole { first + i as u32 } else { slots[i] };
                                !get_bit(&k.nulls, slot)
                            }))
                        })
                        .filter(|n| n.null_count() > 0);
                    array_of(k.spec.data_type, values, rows, nulls)
                })
                .collect::<Vec<_>>();
            let batch = RecordBatch::try_new_with_options(
                schema.clone(),
                arrays,
                &RecordBatchOptions::new().with_row_count(Some(rows)),
            )
            .map_err(|e| e.to_string())?;
            batches.push_back(batch);
        }
        Ok(batches)
    }

    /// Checks that `slot` is live and holds the values of `packed`.
    pub fn check(&self, slot: u32, packed: &[u8]) -> Result<(), String> {
        if slot >= self.slots || !get_bit(&self.live, slot) {
            return Err(format!("slot {slot} is not live"));
        }
        for kept in &self.kept {
            let (value, null) = kept.spec.read(packed);
            let held = kept.value(slot);
            let held_null = kept.spec.null_bit.is_some() && get_bit(&kept.nulls, slot);
            if held_null != null || (!null && held != Some(value)) {
                return Err(format!(
                    "slot {slot} holds {held:?} (null {held_null}) for column {}, the row {value} (null {null})",
                    kept.spec.column
                ));
            }
        }
        Ok(())
    }

    /// Checks the counts: `live` rows are live, and the free list holds exactly the other
    /// slots.
    pub fn check_counts(&self, live: usize) -> Result<(), String> {
        let counted: usize = self.live.iter().map(|w| w.count_ones() as usize).sum();
        if counted != live || self.live_count != live {
            return Err(format!(
                "{live} hot rows, {counted} live slots, {} counted",
                self.live_count
            ));
        }
        if self.free.len() + live != self.slots as usize {
            return Err(format!(
                "{} slots, {live} live and {} free",
                self.slots,
                self.free.len()
            ));
        }
        if let Some(&slot) = self
            .free
            .iter()
            .find(|&&s| s >= self.slots || get_bit(&self.live, s))
        {
            return Err(format!("free slot {slot} is live or past the end"));
        }
        Ok(())
    }

    /// Bytes the arrays take.
    pub fn capacity_bytes(&self) -> usize {
        let kept: usize = self
            .kept
            .iter()
            .map(|k| {
                k.chunks.iter().map(|c| c.capacity()).sum::<usize>() * 8 + k.nulls.capacity() * 8
            })
            .sum();
        kept + self.live.capacity() * 8 + self.free.capacity() * 4
    }
}

/// An Arrow array of `data_type` from `len` raw 8-byte values in `buffer`.
fn array_of(
    data_type: DataType,
    buffer: Buffer,
    len: usize,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    match data_type {
        DataType::Float64 => Arc::new(Float64Array::new(ScalarBuffer::new(buffer, 0, len), nulls)),
        DataType::Timestamp => Arc::new(
            TimestampMicrosecondArray::new(ScalarBuffer::new(buffer, 0, len), nulls)
                .with_timezone("UTC"),
        ),
        DataType::Bool => {
            let words: ScalarBuffer<u64> = ScalarBuffer::new(buffer, 0, len);
            Arc::new(BooleanArray::new(
                BooleanBuffer::collect_bool(len, |i| words[i] != 0),
                nulls,
            ))
        }
        _ => Arc::new(Int64Array::new(ScalarBuffer::new(buffer, 0, len), nulls)),
    }
}

#[inline]
fn get_bit(bits: &[u64], slot: u32) -> bool {
    bits.get(slot as usize / 64)
        .is_some_and(|w| w >> (slot % 64) & 1 == 1)
}

#[inline]
fn set_bit(bits: &mut [u64], slot: u32, on: bool) {
    if let Some(w) = bits.get_mut(slot as usize / 64) {
        let mask = 1u64 << (slot % 64);
        if on {
            *w |= mask;
        } else {
            *w &= !mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rowstore::RowLayout;
    use crate::schema::{Column, TableDef, Value};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;
    use std::collections::BTreeMap;

    fn def() -> TableDef {
        TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
                Column::new("s", DataType::Utf8),
                Column::new("f", DataType::Float64).nullable(),
            ],
        )
        .expect("valid definition")
    }

    fn packed(layout: &RowLayout, k: i64, v: i64) -> Vec<u8> {
        let f = if v % 5 == 0 {
            Value::Null
        } else {
            Value::Float64(v as f64 / 2.0)
        };
        let mut out = Vec::new();
        let row = [
            Value::Int64(k),
            Value::Int64(v),
            Value::Utf8(format!("s{v}")),
            f,
        ];
        layout.pack(&row, &mut out);
        out
    }

    /// `(v, f)` of every exported row, sorted.
    fn exported(columns: &HotColumns, schema: &arrow_schema::SchemaRef) -> Vec<(i64, Option<u64>)> {
        let mut rows = Vec::new();
        for batch in columns.export(&[1, 3], schema).expect("export") {
            let v = batch.column(0).as_primitive::<Int64Type>();
            let f = batch.column(1).as_primitive::<Float64Type>();
            for i in 0..batch.num_rows() {
                rows.push((v.value(i), f.is_valid(i).then(|| f.value(i).to_bits())));
            }
        }
        rows.sort_unstable();
        rows
    }

    #[test]
    fn export_holds_the_live_rows_and_a_held_batch_never_changes() {
        let def = def();
        let layout = RowLayout::new(&def);
        let schema = Arc::new(
            crate::cold::segment::arrow_schema(&def)
                .project(&[1, 3])
                .expect("projection"),
        );
        let mut columns = HotColumns::new(layout.fixed_columns());
        assert!(columns.covers(&[1, 3]));
        assert!(!columns.covers(&[0]), "the key is not kept");
        assert!(!columns.covers(&[2]), "a string is not kept");
        // Three whole chunks and part of a fourth.
        let mut live: BTreeMap<u32, i64> = BTreeMap::new();
        for k in 0..(3 * CHUNK_SLOTS as i64 + 100) {
            live.insert(columns.add(&packed(&layout, k, k * 7)), k * 7);
        }
        let want = |live: &BTreeMap<u32, i64>| {
            let mut rows: Vec<(i64, Option<u64>)> = live
                .values()
                .map(|&v| (v, (v % 5 != 0).then(|| (v as f64 / 2.0).to_bits())))
                .collect();
            rows.sort_unstable();
            rows
        };
        assert_eq!(exported(&columns, &schema), want(&live));
        // A batch exported whole shares its chunk: a later write copies the chunk first.
        let held = columns
            .export(&[1], &Arc::new(schema.project(&[0]).expect("v")))
            .expect("export");
        let before: Vec<i64> = held[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        columns.set(3, &packed(&layout, 3, -1));
        live.insert(3, -1);
        let after: Vec<i64> = held[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        assert_eq!(before, after, "a held batch changed under its reader");
        // Deletes leave holes that later inserts fill, lowest first after a bulk free.
        let freed: Vec<u32> = live.keys().copied().filter(|s| s % 3 == 0).collect();
        for s in &freed {
            live.remove(s);
        }
        columns.remove_many(freed.iter().copied());
        columns.remove(10);
        live.remove(&10);
        assert_eq!(exported(&columns, &schema), want(&live));
        let slot = columns.add(&packed(&layout, 1, 1));
        assert_eq!(slot, 10, "the most recently freed slot is reused first");
        live.insert(slot, 1);
        let slot = columns.add(&packed(&layout, 2, 2));
        assert_eq!(slot, 0, "then the lowest of a bulk free");
        live.insert(slot, 2);
        assert_eq!(exported(&columns, &schema), want(&live));
        columns.check_counts(live.len()).expect("counts");
        for (&slot, &v) in &live {
            columns
                .check(slot, &packed(&layout, 0, v))
                .expect("slot holds its row");
        }
        assert!(columns
            .check(3 * CHUNK_SLOTS as u32 + 100, &packed(&layout, 0, 0))
            .is_err());
    }
}
