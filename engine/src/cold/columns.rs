//! The scan of one segment: Arrow batches of some of its columns over a range of its
//! rows, minus the rows its deletion vector hides.
//!
//! Each row group's column chunk is read in one call (the pages the range needs and the
//! dictionary) and checked against its page CRCs, then decoded page by page by parquet's
//! own value decoders (`ColumnReaderImpl`) into vectors that become the Arrow arrays
//! without a copy. This is the path of `sum(v)`: parquet's generic Arrow reader issued one
//! read per page and built each array through its record reader, which cost about a third
//! of a full scan. Rows a deletion vector hides are dropped per batch with a filter; an
//! insert-only segment never builds one.

use crate::cold::segment::{ReadFailure, SegmentReader, BATCH_ROWS};
use crate::error::{Error, Result};
use crate::schema::{DataType, TableDef};
use arrow_array::{
    ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, RecordBatchOptions,
    StringArray, TimestampMicrosecondArray,
};
use arrow_buffer::{BooleanBuffer, Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::SchemaRef;
use parquet::basic::Encoding;
use parquet::column::page::{Page, PageReader};
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int64Type};
use roaring::RoaringBitmap;
use std::ops::Range;
use std::sync::Arc;

/// One column's decoder over the current row group.
enum Decoder {
    /// A NOT NULL integer column of `DELTA_BINARY_PACKED` or `PLAIN` pages (how the engine
    /// writes every integer column without a dictionary), decoded by the engine's own
    /// decoders: parquet's column reader decoded such a column at about half the speed.
    Ints(IntPages),
    Int64(ColumnReaderImpl<Int64Type>),
    Float64(ColumnReaderImpl<DoubleType>),
    Bool(ColumnReaderImpl<BoolType>),
    Bytes(ColumnReaderImpl<ByteArrayType>),
}

/// A streaming reader of `columns` of rows `rows` of one segment.
pub(crate) struct SegmentColumns {
    reader: SegmentReader,
    def: Arc<TableDef>,
    schema: SchemaRef,
    columns: Vec<usize>,
    rows: Range<u64>,
    deleted: Arc<RoaringBitmap>,
    /// The next segment row to produce.
    at: u64,
    /// The row group being decoded and its columns' decoders.
    current: Option<(usize, Vec<Decoder>)>,
    failure: ReadFailure,
}

impl SegmentColumns {
    /// Reads `columns` (table column indices, in output order; `schema` is their Arrow
    /// schema) of segment rows `rows`, skipping those set in `deleted`.
    pub fn new(
        reader: SegmentReader,
        def: Arc<TableDef>,
        schema: SchemaRef,
        columns: Vec<usize>,
        rows: Range<u64>,
        deleted: Arc<RoaringBitmap>,
    ) -> SegmentColumns {
        let failure = ReadFailure::new(&reader.path);
        SegmentColumns {
            at: rows.start,
            reader,
            def,
            schema,
            columns,
            rows,
            deleted,
            current: None,
            failure,
        }
    }

    fn corrupt(&self, reason: String) -> Error {
        Error::corruption(&*self.reader.path, 0, reason)
    }

    /// Decoders of every output column for row group `rg`, positioned at `self.at`.
    fn open(&self, rg: usize) -> Result<Vec<Decoder>> {
        let rg_rows = self.reader.row_group_rows(rg);
        let from = (self.at - rg_rows.start) as usize;
        let to = (self.rows.end.min(rg_rows.end) - rg_rows.start) as usize;
        let mut decoders = Vec::with_capacity(self.columns.len());
        for &c in &self.columns {
            let wanted = from..to;
            let f = &self.failure;
            let (decoder, start) = match self.def.columns()[c].data_type {
                DataType::Int64 | DataType::Timestamp
                    if self.reader.plain_or_delta_required(rg, c) =>
                {
                    let (pages, s) = self.reader.column_pages(rg, c, wanted, true, f)?;
                    (Decoder::Ints(IntPages::new(pages)), s)
                }
                DataType::Int64 | DataType::Timestamp => {
                    let (r, s) = self.reader.column_reader(rg, c, wanted, true, f)?;
                    (Decoder::Int64(r), s)
                }
                DataType::Float64 => {
                    let (r, s) = self.reader.column_reader(rg, c, wanted, true, f)?;
                    (Decoder::Float64(r), s)
                }
                DataType::Bool => {
                    let (r, s) = self.reader.column_reader(rg, c, wanted, true, f)?;
                    (Decoder::Bool(r), s)
                }
                DataType::Utf8 | DataType::Binary => {
                    let (r, s) = self.reader.column_reader(rg, c, wanted, true, f)?;
                    (Decoder::Bytes(r), s)
                }
            };
            let mut decoder = decoder;
            let skip = from.saturating_sub(start);
            let skipped = match &mut decoder {
                Decoder::Ints(pages) => Ok(pages
                    .skip(skip)
                    .map_err(|reason| self.int_page_error(rg, c, reason))?),
                Decoder::Int64(r) => r.skip_records(skip),
                Decoder::Float64(r) => r.skip_records(skip),
                Decoder::Bool(r) => r.skip_records(skip),
                Decoder::Bytes(r) => r.skip_records(skip),
            }
            .map_err(|e| self.failure.parquet(e))?;
            if skipped != skip {
                return Err(self.corrupt(format!("row group {rg} column {c} ends early")));
            }
            decoders.push(decoder);
        }
        Ok(decoders)
    }

    /// The next `n` rows of every column, as one batch.
    fn read(&mut self, n: usize) -> Result<RecordBatch> {
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        let Some((rg, mut decoders)) = self.current.take() else {
            return Err(Error::corruption(
                &*self.reader.path,
                0,
                "no row group open",
            ));
        };
        for (decoder, &c) in decoders.iter_mut().zip(&self.columns) {
            let column = &self.def.columns()[c];
            let nullable = column.nullable;
            let mut levels = Vec::new();
            let fail = |e| self.failure.parquet(e);
            let array: ArrayRef = match decoder {
                Decoder::Ints(pages) => {
                    let mut values = Vec::with_capacity(n);
                    let read = pages
                        .take(n, &mut values)
                        .map_err(|reason| self.int_page_error(rg, c, reason))?;
                    if read != n {
                        return Err(self.short(c, n));
                    }
                    int_array(column.data_type, values, None)
                }
                Decoder::Int64(r) => {
                    let (values, nulls) = primitive(r, n, nullable, &mut levels)
                        .map_err(fail)?
                        .ok_or_else(|| self.short(c, n))?;
                    int_array(column.data_type, values, nulls)
                }
                Decoder::Float64(r) => {
                    let (values, nulls) = primitive(r, n, nullable, &mut levels)
                        .map_err(fail)?
                        .ok_or_else(|| self.short(c, n))?;
                    Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls))
                }
                Decoder::Bool(r) => {
                    let (values, nulls) = primitive(r, n, nullable, &mut levels)
                        .map_err(fail)?
                        .ok_or_else(|| self.short(c, n))?;
                    Arc::new(BooleanArray::new(BooleanBuffer::from(values), nulls))
                }
                Decoder::Bytes(r) => {
                    let mut values: Vec<ByteArray> = Vec::with_capacity(n);
                    read_all(r, n, &mut levels, &mut values).map_err(fail)?;
                    self.bytes_array(column.data_type, c, values, &levels, n, nullable)?
                }
            };
            arrays.push(array);
        }
        self.current = Some((rg, decoders));
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| self.corrupt(format!("columns do not form a batch: {e}")))
    }

    fn int_page_error(&self, rg: usize, c: usize, reason: IntPageError) -> Error {
        match reason {
            IntPageError::Read(e) => self.failure.parquet(e),
            IntPageError::Page(reason) => self.corrupt(format!(
                "column {:?} of row group {rg}: {reason}",
                self.def.columns()[c].name
            )),
        }
    }

    fn short(&self, c: usize, n: usize) -> Error {
        self.corrupt(format!(
            "column {:?} has fewer than {n} values where its row group needs them",
            self.def.columns()[c].name
        ))
    }

    fn bytes_array(
        &self,
        data_type: DataType,
        c: usize,
        values: Vec<ByteArray>,
        levels: &[i16],
        n: usize,
        nullable: bool,
    ) -> Result<ArrayRef> {
        let total: usize = values.iter().map(|v| v.len()).sum();
        let mut data = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(n + 1);
        offsets.push(0i32);
        let nulls = if nullable && values.len() < n {
            if levels.len() != n {
                return Err(self.short(c, n));
            }
            let mut it = values.iter();
            for &l in levels {
                if l > 0 {
                    let v = it.next().ok_or_else(|| self.short(c, n))?;
                    data.extend_from_slice(v.data());
                }
                offsets.push(offset(data.len()).ok_or_else(|| self.short(c, n))?);
            }
            Some(NullBuffer::from(
                levels.iter().map(|&l| l > 0).collect::<Vec<_>>(),
            ))
        } else {
            if values.len() != n {
                return Err(self.short(c, n));
            }
            for v in &values {
                data.extend_from_slice(v.data());
                offsets.push(offset(data.len()).ok_or_else(|| self.short(c, n))?);
            }
            None
        };
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let data = Buffer::from_vec(data);
        let name = &self.def.columns()[c].name;
        Ok(match data_type {
            DataType::Utf8 => Arc::new(
                StringArray::try_new(offsets, data, nulls)
                    .map_err(|e| self.corrupt(format!("column {name:?}: {e}")))?,
            ),
            _ => Arc::new(
                BinaryArray::try_new(offsets, data, nulls)
                    .map_err(|e| self.corrupt(format!("column {name:?}: {e}")))?,
            ),
        })
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>> {
        while self.at < self.rows.end {
            let rg = self
                .reader
                .row_group_of(self.at)
                .ok_or_else(|| self.corrupt(format!("row {} is in no row group", self.at)))?;
            let rg_end = self.reader.row_group_rows(rg).end.min(self.rows.end);
            if self.current.as_ref().map(|(r, _)| *r) != Some(rg) {
                let decoders = self.open(rg)?;
                self.current = Some((rg, decoders));
            }
            let n = (rg_end - self.at).min(BATCH_ROWS as u64);
            let start = self.at;
            let batch = if self.columns.is_empty() {
                RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    vec![],
                    &RecordBatchOptions::new().with_row_count(Some(n as usize)),
                )
                .map_err(|e| self.corrupt(e.to_string()))?
            } else {
                self.read(n as usize)?
            };
            self.at += n;
            if self.at == rg_end {
                self.current = None;
            }
            let hidden = self.deleted.range_cardinality(start as u32..self.at as u32);
            if hidden == 0 {
                return Ok(Some(batch));
            }
            if hidden == n {
                continue;
            }
            let keep: BooleanArray = (start..self.at)
                .map(|row| Some(!self.deleted.contains(row as u32)))
                .collect();
            let kept = arrow_select::filter::filter_record_batch(&batch, &keep)
                .map_err(|e| self.corrupt(format!("filter failed: {e}")))?;
            return Ok(Some(kept));
        }
        Ok(None)
    }
}

impl Iterator for SegmentColumns {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        match self.next_batch() {
            Ok(batch) => batch.map(Ok),
            Err(e) => {
                self.at = self.rows.end;
                self.current = None;
                Some(Err(e))
            }
        }
    }
}

/// Why [`IntPages`] stopped: a page could not be read, or it is malformed.
enum IntPageError {
    Read(parquet::errors::ParquetError),
    Page(String),
}

impl From<parquet::errors::ParquetError> for IntPageError {
    fn from(e: parquet::errors::ParquetError) -> IntPageError {
        IntPageError::Read(e)
    }
}

impl From<String> for IntPageError {
    fn from(reason: String) -> IntPageError {
        IntPageError::Page(reason)
    }
}

/// The values of a NOT NULL integer column chunk, decoded a page at a time.
struct IntPages {
    pages: Box<dyn PageReader>,
    /// The current page's values, and how many of them were handed out.
    values: Vec<i64>,
    at: usize,
}

impl IntPages {
    fn new(pages: Box<dyn PageReader>) -> IntPages {
        IntPages {
            pages,
            values: Vec::new(),
            at: 0,
        }
    }

    /// Decodes the next data page into `self.values`, or straight onto `out` when it holds
    /// at most `room` values; `None` after the last page, else how many went onto `out`.
    fn next_page(
        &mut self,
        out: &mut Vec<i64>,
        room: usize,
    ) -> Result<Option<usize>, IntPageError> {
        let (buf, count, encoding) = match self.pages.get_next_page()? {
            None => return Ok(None),
            Some(Page::DataPage {
                buf,
                num_values,
                encoding,
                ..
            }) => (buf, num_values as usize, encoding),
            Some(Page::DataPageV2 {
                buf,
                num_values,
                num_nulls,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            }) => {
                if num_nulls != 0 || def_levels_byte_len != 0 || rep_levels_byte_len != 0 {
                    return Err(format!(
                        "a page of a NOT NULL column has {num_nulls} nulls and \
                         {def_levels_byte_len} + {rep_levels_byte_len} bytes of levels"
                    )
                    .into());
                }
                (buf, num_values as usize, encoding)
            }
            Some(Page::DictionaryPage { .. }) => {
                return Err("a dictionary page in a chunk listed without one"
                    .to_string()
                    .into())
            }
        };
        self.values.clear();
        self.at = 0;
        let (into, direct) = if count <= room {
            (out, count)
        } else {
            (&mut self.values, 0)
        };
        match encoding {
            Encoding::DELTA_BINARY_PACKED => {
                crate::cold::delta::decode_into(&buf, count, into)?;
            }
            Encoding::PLAIN => {
                if buf.len() != count.saturating_mul(8) {
                    return Err(format!(
                        "a PLAIN page of {count} integers holds {} bytes",
                        buf.len()
                    )
                    .into());
                }
                into.extend(
                    buf.chunks_exact(8)
                        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or_default())),
                );
            }
            other => return Err(format!("a page encoded {other}").into()),
        }
        Ok(Some(direct))
    }

    /// Appends up to `n` values to `out`: how many (fewer only at the chunk's end).
    fn take(&mut self, n: usize, out: &mut Vec<i64>) -> Result<usize, IntPageError> {
        let mut read = 0;
        while read < n {
            if self.at == self.values.len() {
                match self.next_page(out, n - read)? {
                    None => break,
                    Some(direct) => read += direct,
                }
                continue;
            }
            let k = (n - read).min(self.values.len() - self.at);
            out.extend_from_slice(&self.values[self.at..self.at + k]);
            self.at += k;
            read += k;
        }
        Ok(read)
    }

    /// Passes over up to `n` values: how many.
    fn skip(&mut self, n: usize) -> Result<usize, IntPageError> {
        let mut skipped = 0;
        while skipped < n {
            if self.at == self.values.len() && self.next_page(&mut Vec::new(), 0)?.is_none() {
                break;
            }
            let k = (n - skipped).min(self.values.len() - self.at);
            self.at += k;
            skipped += k;
        }
        Ok(skipped)
    }
}

/// An Int64 column's values as its Arrow array: Timestamp (microseconds, UTC) or Int64.
fn int_array(data_type: DataType, values: Vec<i64>, nulls: Option<NullBuffer>) -> ArrayRef {
    let values = ScalarBuffer::from(values);
    if data_type == DataType::Timestamp {
        Arc::new(TimestampMicrosecondArray::new(values, nulls).with_timezone("UTC"))
    } else {
        Arc::new(Int64Array::new(values, nulls))
    }
}

fn offset(len: usize) -> Option<i32> {
    i32::try_from(len).ok()
}

/// Reads `n` records into `values` (and `levels`), however many page reads it takes.
fn read_all<T: parquet::data_type::DataType>(
    reader: &mut ColumnReaderImpl<T>,
    n: usize,
    levels: &mut Vec<i16>,
    values: &mut Vec<T::T>,
) -> parquet::errors::Result<()> {
    let mut read = 0;
    while read < n {
        let (records, _, _) = reader.read_records(n - read, Some(levels), None, values)?;
        if records == 0 {
            return Err(parquet::errors::ParquetError::General(format!(
                "column ends after {read} of {n} rows"
            )));
        }
        read += records;
    }
    Ok(())
}

/// The next `n` values of a fixed-width column and their nulls; `Ok(None)` if the counts
/// do not fit together.
#[allow(clippy::type_complexity)]
fn primitive<T>(
    reader: &mut ColumnReaderImpl<T>,
    n: usize,
    nullable: bool,
    levels: &mut Vec<i16>,
) -> parquet::errors::Result<Option<(Vec<T::T>, Option<NullBuffer>)>>
where
    T: parquet::data_type::DataType,
    T::T: Default + Copy,
{
    let mut values = Vec::with_capacity(n);
    read_all(reader, n, levels, &mut values)?;
    Ok(spread(values, levels, n, nullable))
}

/// The `n` values of a column from its non-null `values` and definition `levels`: nulls
/// take the default value and are marked in the null buffer. `None` if the counts do not
/// fit together.
fn spread<T: Default + Copy>(
    values: Vec<T>,
    levels: &[i16],
    n: usize,
    nullable: bool,
) -> Option<(Vec<T>, Option<NullBuffer>)> {
    if values.len() == n {
        return Some((values, None));
    }
    if !nullable || levels.len() != n || values.len() > n {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut it = values.into_iter();
    for &l in levels {
        out.push(if l > 0 { it.next()? } else { T::default() });
    }
    let valid: Vec<bool> = levels.iter().map(|&l| l > 0).collect();
    Some((out, Some(NullBuffer::from(valid))))
}
