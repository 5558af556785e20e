//! One cold segment: an immutable, key-sorted Parquet file, and how its bytes are made,
//! checked and read.
//!
//! Bytes are encoded in memory by the parquet crate's `ArrowWriter` and written through the
//! `Env` file (parquet never opens a file itself). Reads go through [`VerifiedReader`], a
//! `ChunkReader` over `File::read_at` that checks every byte range it hands to parquet
//! against the CRC-32C of the regions (pages and dictionary prefixes) that cover it, taken
//! when the segment was written and kept in its sidecar index (crate::cold::index): a
//! damaged page is a `Corruption` error naming the file, never a wrong row, and opening a
//! segment reads only its sidecar and its tail (page index and footer), never its data.
//!
//! Layout choices (docs/FORMAT.md): one column per table column, Arrow types mapped 1:1
//! (Timestamp as microseconds UTC), the key column sorted ascending and unique,
//! `DELTA_BINARY_PACKED` and uncompressed (a point read unpacks one page of keys); row
//! groups of [`ROW_GROUP_ROWS`] rows with min/max statistics; data pages of [`PAGE_ROWS`]
//! rows with the page index written, so a point read touches one small page per column.
//! Each other column's encoding is chosen from a sample of its values: a dictionary (LZ4 on
//! its indices) only where the sample has few distinct values; integers and timestamps
//! delta-packed unless neighbours differ by nearly the whole range (then plain); strings
//! and bytes `DELTA_LENGTH_BYTE_ARRAY`, with LZ4 where it shrinks the sample by a fifth,
//! else zstd where that does, else uncompressed; floats and booleans plain, LZ4 where it
//! pays.

use crate::cold::index::{self, KeyPage, SegmentIndex};
use crate::cold::pages::{ChunkPages, PageSource};
use crate::env::{File, Spawn};
use crate::error::{Error, Result};
use crate::rowstore::{RowValues, ValueRef};
use crate::schema::{DataType, Row, TableDef, Value};
use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection,
};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::column::page::PageReader;
use parquet::column::reader::ColumnReaderImpl;
use parquet::data_type::{BoolType, ByteArrayType, DoubleType, Int64Type};
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::serialized_reader::SerializedPageReader;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

/// Rows per Parquet row group: the unit of statistics pruning and of a scan's reads.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page: the unit a point read decodes (8 KiB of an Int64 column).
pub(crate) const PAGE_ROWS: usize = 1024;
/// Rows the writer adds at a time: the granularity of page boundaries.
const WRITE_BATCH_ROWS: usize = 256;
/// Data page size (before compression) past which a zstd column starts a new page.
const COMPRESSED_PAGE_BYTES: usize = 2048;
/// Largest dictionary page; past it a column chunk falls back to plain encoding.
pub(crate) const DICTIONARY_BYTES_MAX: usize = 64 * 1024;
/// Rows per Arrow batch when reading.
pub(crate) const BATCH_ROWS: usize = 8192;

/// Reads of at least this many bytes (a scan's column chunks) are mapped ([`File::map`])
/// instead of copied: over 100M rows the copy out of the page cache and the zeroing of its
/// buffer were a fifth of a full scan. Smaller reads (a point read's page) are copied, as
/// a mapping costs two system calls and a page-table update.
const MAP_READ_BYTES_MIN: u64 = 64 << 10;
/// Rows a column's encoding choice is drawn from.
const SAMPLE_ROWS: usize = 4096;
/// A dictionary is used when the sample has at most one distinct value in this many.
const DICTIONARY_DISTINCT_RATIO: usize = 4;
/// A column is compressed when that shrinks the sample to at most this fraction (in
/// percent).
const COMPRESSED_PERCENT_MAX: usize = 80;
/// Integers whose neighbours differ by more bits than this are stored plain.
const DELTA_BITS_MAX: u32 = 56;
/// zstd's level for string columns: its fastest, which decodes as fast as any.
const ZSTD_LEVEL: i32 = 1;

/// The Arrow schema of a table's segments.
pub(crate) fn arrow_schema(def: &TableDef) -> SchemaRef {
    let fields: Vec<Field> = def
        .columns()
        .iter()
        .map(|c| Field::new(c.name.clone(), arrow_type(c.data_type), c.nullable))
        .collect();
    Arc::new(Schema::new(fields))
}

fn arrow_type(data_type: DataType) -> arrow_schema::DataType {
    use arrow_schema::DataType as A;
    match data_type {
        DataType::Int64 => A::Int64,
        DataType::Float64 => A::Float64,
        DataType::Utf8 => A::Utf8,
        DataType::Binary => A::Binary,
        DataType::Bool => A::Boolean,
        DataType::Timestamp => A::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// Rows looked ahead of the one being exported: their bytes are asked for early, so the
/// cache misses of rows scattered in memory (the hot tier in key order) overlap.
const PREFETCH_AHEAD: usize = 16;

/// Rows (validated for `def`) as one Arrow batch with `schema`'s columns, which are
/// `columns` of the table, in that order. One pass over the rows fills every column.
pub(crate) fn rows_to_batch<'r, R: RowValues<'r>>(
    def: &TableDef,
    schema: SchemaRef,
    columns: &[usize],
    rows: &[R],
) -> Result<RecordBatch> {
    let mut builders: Vec<ColumnBuilder> = columns
        .iter()
        .map(|&i| ColumnBuilder::new(def.columns()[i].data_type, rows.len()))
        .collect();
    for (at, row) in rows.iter().enumerate() {
        if let Some(ahead) = rows.get(at + PREFETCH_AHEAD) {
            ahead.prefetch();
        }
        for (builder, &i) in builders.iter_mut().zip(columns) {
            builder.push(row.value(i));
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(ColumnBuilder::finish).collect();
    RecordBatch::try_new_with_options(
        schema,
        arrays,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| Error::InvalidSchema {
        table: def.name().to_string(),
        reason: format!("rows do not form an Arrow batch: {e}"),
    })
}

/// An Arrow array under construction, one per exported column. A value of the wrong type
/// (never, for validated rows) is exported as NULL.
enum ColumnBuilder {
    Int64(Int64Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Bool(BooleanBuilder),
}

impl ColumnBuilder {
    fn new(data_type: DataType, rows: usize) -> ColumnBuilder {
        match data_type {
            DataType::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(rows)),
            DataType::Timestamp => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            ),
            DataType::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(rows)),
            DataType::Utf8 => ColumnBuilder::Utf8(StringBuilder::with_capacity(rows, rows * 16)),
            DataType::Binary => {
                ColumnBuilder::Binary(BinaryBuilder::with_capacity(rows, rows * 16))
            }
            DataType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(rows)),
        }
    }

    #[inline]
    fn push(&mut self, value: ValueRef<'_>) {
        match (self, value) {
            (ColumnBuilder::Int64(b), ValueRef::Int64(v)) => b.append_value(v),
            (ColumnBuilder::Int64(b), _) => b.append_null(),
            (ColumnBuilder::Timestamp(b), ValueRef::Timestamp(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), _) => b.append_null(),
            (ColumnBuilder::Float64(b), v) => b.append_option(v.as_f64()),
            (ColumnBuilder::Utf8(b), v) => b.append_option(v.as_str()),
            (ColumnBuilder::Binary(b), v) => b.append_option(v.as_bytes()),
            (ColumnBuilder::Bool(b), v) => b.append_option(v.as_bool()),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            ColumnBuilder::Int64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Utf8(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Binary(mut b) => Arc::new(b.finish()),
            ColumnBuilder::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// The value at `row` of an array of a column of type `data_type`; `None` if the array is
/// not of that type (a damaged or foreign file).
pub(crate) fn value_at(array: &dyn Array, data_type: DataType, row: usize) -> Option<Value> {
    if array.is_null(row) {
        return Some(Value::Null);
    }
    let any = array.as_any();
    Some(match data_type {
        DataType::Int64 => Value::Int64(any.downcast_ref::<Int64Array>()?.value(row)),
        DataType::Float64 => Value::Float64(any.downcast_ref::<Float64Array>()?.value(row)),
        DataType::Utf8 => Value::Utf8(any.downcast_ref::<StringArray>()?.value(row).to_string()),
        DataType::Binary => Value::Binary(any.downcast_ref::<BinaryArray>()?.value(row).to_vec()),
        DataType::Bool => Value::Bool(any.downcast_ref::<BooleanArray>()?.value(row)),
        DataType::Timestamp => {
            Value::Timestamp(any.downcast_ref::<TimestampMicrosecondArray>()?.value(row))
        }
    })
}

/// The values of a key column (Int64 or Timestamp).
pub(crate) fn key_values(array: &dyn Array) -> Option<&[i64]> {
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<Int64Array>() {
        return Some(a.values());
    }
    any.downcast_ref::<TimestampMicrosecondArray>()
        .map(|a| &a.values()[..])
}

/// How one column is stored, drawn from a sample of its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ColumnChoice {
    dictionary: bool,
    /// The encoding of the values when no dictionary is used.
    encoding: Encoding,
    compression: Compression,
}

/// The plain bytes of a value, as a sample for the encoding choice.
fn sample_bytes(value: ValueRef<'_>, out: &mut Vec<u8>) {
    match value {
        ValueRef::Null => {}
        ValueRef::Int64(v) | ValueRef::Timestamp(v) => out.extend_from_slice(&v.to_le_bytes()),
        ValueRef::Float64(v) => out.extend_from_slice(&v.to_bits().to_le_bytes()),
        ValueRef::Bool(v) => out.push(u8::from(v)),
        ValueRef::Utf8(s) => out.extend_from_slice(s.as_bytes()),
        ValueRef::Binary(b) => out.extend_from_slice(b),
    }
}

/// Bits the widest difference between neighbouring non-null integers of the sample needs:
/// what `DELTA_BINARY_PACKED` stores per value.
fn delta_bits<'r, R: RowValues<'r>>(sample: &[R], column: usize) -> u32 {
    let mut previous: Option<i64> = None;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    for row in sample {
        let v = match row.value(column) {
            ValueRef::Int64(v) | ValueRef::Timestamp(v) => v,
            _ => continue,
        };
        if let Some(p) = previous {
            let d = v.wrapping_sub(p);
            lo = lo.min(d);
            hi = hi.max(d);
        }
        previous = Some(v);
    }
    if lo > hi {
        return 0;
    }
    64 - (hi.wrapping_sub(lo) as u64).leading_zeros()
}

/// Chooses dictionary, encoding and compression for column `column` (of type `data_type`)
/// from the first rows. Every choice is one DuckDB, DataFusion and Spark read.
fn choose<'r, R: RowValues<'r>>(
    rows: &[R],
    column: usize,
    data_type: DataType,
    is_key: bool,
) -> ColumnChoice {
    let sample = &rows[..rows.len().min(SAMPLE_ROWS)];
    if is_key {
        // Sorted unique keys: deltas are small, and a point read decodes one page of them.
        return ColumnChoice {
            dictionary: false,
            encoding: Encoding::DELTA_BINARY_PACKED,
            compression: Compression::UNCOMPRESSED,
        };
    }
    let mut plain = Vec::new();
    let mut distinct = BTreeSet::new();
    for row in sample {
        let start = plain.len();
        sample_bytes(row.value(column), &mut plain);
        if distinct.len() * DICTIONARY_DISTINCT_RATIO <= sample.len() {
            distinct.insert(plain[start..].to_vec());
        }
    }
    if distinct.len() * DICTIONARY_DISTINCT_RATIO <= sample.len() {
        // Dictionary indices are small already; LZ4 on them is a cheap extra.
        return ColumnChoice {
            dictionary: true,
            encoding: Encoding::PLAIN,
            compression: Compression::LZ4_RAW,
        };
    }
    let pays = |compressed: usize| compressed * 100 <= plain.len() * COMPRESSED_PERCENT_MAX;
    match data_type {
        // Bit-packed deltas decode at memory speed and need no compression; a column whose
        // neighbours differ by nearly the whole range stays plain.
        DataType::Int64 | DataType::Timestamp => ColumnChoice {
            dictionary: false,
            encoding: if delta_bits(sample, column) <= DELTA_BITS_MAX {
                Encoding::DELTA_BINARY_PACKED
            } else {
                Encoding::PLAIN
            },
            compression: Compression::UNCOMPRESSED,
        },
        // Lengths bit-packed apart from the bytes, which an entropy coder shrinks when
        // their alphabet is small (zstd) or they repeat (LZ4 only finds repeats).
        DataType::Utf8 | DataType::Binary => ColumnChoice {
            dictionary: false,
            encoding: Encoding::DELTA_LENGTH_BYTE_ARRAY,
            compression: if pays(lz4_flex::block::compress(&plain).len()) {
                Compression::LZ4_RAW
            } else if zstd::bulk::compress(&plain, ZSTD_LEVEL).is_ok_and(|c| pays(c.len())) {
                Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL).unwrap_or_default())
            } else {
                Compression::UNCOMPRESSED
            },
        },
        DataType::Float64 | DataType::Bool => ColumnChoice {
            dictionary: false,
            encoding: Encoding::PLAIN,
            compression: if pays(lz4_flex::block::compress(&plain).len()) {
                Compression::LZ4_RAW
            } else {
                Compression::UNCOMPRESSED
            },
        },
    }
}

/// A freshly encoded segment: the Parquet bytes and their sidecar index.
pub(crate) struct Encoded {
    pub bytes: Bytes,
    pub index: SegmentIndex,
}

/// The writer settings for a segment of `def` whose first rows are `sample`.
fn writer_properties<'r, R: RowValues<'r>>(def: &TableDef, sample: &[R]) -> WriterProperties {
    let pk = def.primary_key_index();
    let mut builder = WriterProperties::builder()
        .set_dictionary_page_size_limit(DICTIONARY_BYTES_MAX)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(WRITE_BATCH_ROWS)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("omendb {}", env!("CARGO_PKG_VERSION")));
    for (i, column) in def.columns().iter().enumerate() {
        let path = ColumnPath::from(column.name.as_str());
        let choice = choose(sample, i, column.data_type, i == pk);
        builder = builder
            .set_column_dictionary_enabled(path.clone(), choice.dictionary)
            .set_column_compression(path.clone(), choice.compression);
        if !choice.dictionary {
            builder = builder.set_column_encoding(path.clone(), choice.encoding);
        }
        if matches!(column.data_type, DataType::Utf8 | DataType::Binary) {
            // Per-page min/max strings would cost about 35 bytes a page (12 MB over 90M
            // rows of 8-16 byte strings in 2 KiB pages) and prune nothing the engine asks:
            // byte columns keep their row-group statistics only.
            builder = builder.set_column_statistics_enabled(path.clone(), EnabledStatistics::Chunk);
        }
        if matches!(choice.compression, Compression::ZSTD(_)) {
            // A point read decompresses the whole page: keep compressed pages small.
            builder = builder.set_column_data_page_size_limit(path, COMPRESSED_PAGE_BYTES);
        }
    }
    builder.build()
}

fn encode_error(def: &TableDef, e: ParquetError) -> Error {
    Error::InvalidSchema {
        table: def.name().to_string(),
        reason: format!("parquet encoding failed: {e}"),
    }
}

/// Encodes `rows` (valid for `def`, strictly ascending by key, at least one) as a Parquet
/// file and its sidecar index.
pub(crate) fn encode<'r, R: RowValues<'r> + Sync>(
    def: &TableDef,
    rows: &[R],
    spawn: &dyn Spawn,
) -> Result<Encoded> {
    let pk = def.primary_key_index();
    let keys: Vec<i64> = rows.iter().filter_map(|r| r.value(pk).as_i64()).collect();
    let schema = arrow_schema(def);
    let props = writer_properties(def, &rows[..rows.len().min(SAMPLE_ROWS)]);
    let fail = |e: ParquetError| encode_error(def, e);
    let (mut file, factory) = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
        .and_then(ArrowWriter::into_serialized_writer)
        .map_err(fail)?;
    // Each row group's column writers, taken by the half that encodes the column.
    let mut writers: Vec<Vec<Option<ArrowColumnWriter>>> = (0..rows.len().div_ceil(ROW_GROUP_ROWS))
        .map(|group| {
            let created = factory.create_column_writers(group).map_err(fail)?;
            Ok(created.into_iter().map(Some).collect())
        })
        .collect::<Result<_>>()?;
    let mut take = |columns: &[usize]| -> Vec<Vec<(usize, ArrowColumnWriter)>> {
        writers
            .iter_mut()
            .map(|group| {
                columns
                    .iter()
                    .filter_map(|&i| Some((i, group.get_mut(i)?.take()?)))
                    .collect()
            })
            .collect()
    };
    // The halves run on two threads where there are two (encoding is most of a flush's
    // time); the membership filter needs only the keys and goes with the second half.
    let (left, right) = column_halves(def);
    let (mut left_writers, mut right_writers) = (take(&left), take(&right));
    let (mut left_chunks, mut right_chunks, mut filter) = (None, None, None);
    spawn.join(
        &mut || {
            let writers = std::mem::take(&mut left_writers);
            left_chunks = Some(encode_columns(def, &schema, writers, rows));
        },
        &mut || {
            let writers = std::mem::take(&mut right_writers);
            right_chunks = Some(encode_columns(def, &schema, writers, rows));
            filter = Some(index::build_filter(&keys));
        },
    );
    let missing = || {
        encode_error(
            def,
            ParquetError::General("a column half did not run".into()),
        )
    };
    let left_chunks = left_chunks.ok_or_else(missing)??;
    let right_chunks = right_chunks.ok_or_else(missing)??;
    for (left, right) in left_chunks.into_iter().zip(right_chunks) {
        let mut chunks: Vec<(usize, ArrowColumnChunk)> = left.into_iter().chain(right).collect();
        chunks.sort_by_key(|&(i, _)| i);
        if chunks.len() != def.columns().len() {
            return Err(missing());
        }
        let mut row_group = file.next_row_group().map_err(fail)?;
        for (_, chunk) in chunks {
            chunk.append_to_row_group(&mut row_group).map_err(fail)?;
        }
        row_group.close().map_err(fail)?;
    }
    let bytes = Bytes::from(file.into_inner().map_err(fail)?);
    let filter = filter.unwrap_or_else(|| index::build_filter(&keys));
    let index = index_with_filter(def, &bytes, &keys, filter)
        .map_err(|reason| Error::corruption(Path::new("<new segment>"), 0, reason))?;
    Ok(Encoded { bytes, index })
}

/// The table's columns in two halves of about equal encoding work (a variable-width column
/// weighs as much as four fixed-width ones), each in column order.
fn column_halves(def: &TableDef) -> (Vec<usize>, Vec<usize>) {
    let weight = |i: usize| match def.columns()[i].data_type {
        DataType::Utf8 | DataType::Binary => 4,
        _ => 1,
    };
    let mut order: Vec<usize> = (0..def.columns().len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(i)));
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let (mut left_weight, mut right_weight) = (0, 0);
    for i in order {
        if left_weight <= right_weight {
            left.push(i);
            left_weight += weight(i);
        } else {
            right.push(i);
            right_weight += weight(i);
        }
    }
    left.sort_unstable();
    right.sort_unstable();
    (left, right)
}

/// Encodes, for each row group of `rows` ([`ROW_GROUP_ROWS`] rows), the columns of its
/// `writers` (table column index, writer) in batches of [`BATCH_ROWS`], as `ArrowWriter`
/// feeds them; returns each row group's column chunks.
fn encode_columns<'r, R: RowValues<'r>>(
    def: &TableDef,
    schema: &SchemaRef,
    writers: Vec<Vec<(usize, ArrowColumnWriter)>>,
    rows: &[R],
) -> Result<Vec<Vec<(usize, ArrowColumnChunk)>>> {
    let fail = |e: ParquetError| encode_error(def, e);
    let Some(columns) = writers
        .first()
        .map(|group| group.iter().map(|&(i, _)| i).collect::<Vec<usize>>())
    else {
        return Ok(Vec::new());
    };
    if columns.is_empty() {
        return Ok(writers.into_iter().map(|_| Vec::new()).collect());
    }
    let projected = Arc::new(schema.project(&columns).map_err(|e| Error::InvalidSchema {
        table: def.name().to_string(),
        reason: format!("projecting the segment schema: {e}"),
    })?);
    let mut out = Vec::with_capacity(writers.len());
    for (mut group, group_rows) in writers.into_iter().zip(rows.chunks(ROW_GROUP_ROWS)) {
        for chunk in group_rows.chunks(BATCH_ROWS) {
            let batch = rows_to_batch(def, projected.clone(), &columns, chunk)?;
            for ((i, writer), array) in group.iter_mut().zip(batch.columns()) {
                for leaf in compute_leaves(schema.field(*i), array).map_err(fail)? {
                    writer.write(&leaf).map_err(fail)?;
                }
            }
        }
        out.push(
            group
                .into_iter()
                .map(|(i, writer)| Ok((i, writer.close().map_err(fail)?)))
                .collect::<Result<Vec<_>>>()?,
        );
    }
    Ok(out)
}

/// Bytes written through this go to an `Env` file at increasing offsets, 1 MiB at a time,
/// with a running CRC-32C of all of them.
struct FileSink {
    file: Arc<dyn File>,
    buffer: Vec<u8>,
    offset: u64,
    crc32c: u32,
    /// The disk's error, if a write failed (parquet only passes on its text).
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

const SINK_BYTES: usize = 1 << 20;

impl FileSink {
    fn drain(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_at(&self.buffer, self.offset) {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            if let Ok(mut slot) = self.failure.lock() {
                *slot = Some(e);
            }
            return Err(copy);
        }
        self.crc32c = crc32c::crc32c_append(self.crc32c, &self.buffer);
        self.offset += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

impl std::io::Write for FileSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= SINK_BYTES {
            self.drain()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.drain()
    }
}

/// A segment written batch by batch straight to its (temporary) file, for compaction's
/// merges, whose output need not fit in memory: only a row group's pages and the keys (8
/// bytes a row, for the filter) are held.
pub(crate) struct StreamEncoder {
    writer: ArrowWriter<FileSink>,
    keys: Vec<i64>,
    def: Arc<TableDef>,
    path: PathBuf,
    failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl StreamEncoder {
    /// Starts a segment of `def` in `file` (empty, at `path`), its encodings chosen from
    /// `sample` (its first rows).
    pub fn new(
        def: &Arc<TableDef>,
        sample: &[&Row],
        file: Arc<dyn File>,
        path: &Path,
    ) -> Result<StreamEncoder> {
        let failure = Arc::new(Mutex::new(None));
        let sink = FileSink {
            file,
            buffer: Vec::with_capacity(SINK_BYTES),
            offset: 0,
            crc32c: 0,
            failure: failure.clone(),
        };
        let props = writer_properties(def, sample);
        let writer = ArrowWriter::try_new(sink, arrow_schema(def), Some(props))
            .map_err(|e| encode_error(def, e))?;
        Ok(StreamEncoder {
            writer,
            keys: Vec::new(),
            def: def.clone(),
            path: path.to_path_buf(),
            failure,
        })
    }

    fn error(&self, e: ParquetError) -> Error {
        match self.failure.lock().ok().and_then(|mut slot| slot.take()) {
            Some(io) => Error::io("write segment", &self.path, io),
            None => encode_error(&self.def, e),
        }
    }

    /// Appends `batch` (every column of the table, keys ascending past the last batch's).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        let pk = self.def.primary_key_index();
        let keys = key_values(batch.column(pk).as_ref())
            .ok_or_else(|| Error::corruption(&self.path, 0, "merged key column is not Int64"))?;
        self.keys.extend_from_slice(keys);
        self.writer.write(batch).map_err(|e| self.error(e))
    }

    /// Rows written so far.
    pub fn rows(&self) -> usize {
        self.keys.len()
    }

    /// Ends the file and syncs it; then reads it back whole, a chunk at a time, checking
    /// it against what was written, and builds its sidecar index from what is on disk.
    pub fn finish(self) -> Result<SegmentIndex> {
        let StreamEncoder {
            writer,
            keys,
            def,
            path,
            failure,
        } = self;
        let result = writer.into_inner();
        let taken = failure.lock().ok().and_then(|mut slot| slot.take());
        let mut sink = match (result, taken) {
            (Ok(sink), _) => sink,
            (Err(_), Some(io)) => return Err(Error::io("write segment", &path, io)),
            (Err(e), None) => return Err(encode_error(&def, e)),
        };
        sink.drain()
            .and_then(|()| sink.file.sync())
            .map_err(|e| Error::io("write segment", &path, e))?;
        index_of_file(
            &def,
            &path,
            sink.file.as_ref(),
            sink.offset,
            sink.crc32c,
            &keys,
        )
    }
}

/// The sidecar index of the file `file` (at `path`) of `len` bytes whose CRC-32C when
/// written was `crc`, and whose key column holds `keys`: reads the file back in chunks,
/// so a torn or misdirected write shows before the file is named.
fn index_of_file(
    def: &TableDef,
    path: &Path,
    file: &dyn File,
    len: u64,
    crc: u32,
    keys: &[i64],
) -> Result<SegmentIndex> {
    let corrupt = |reason: String| Error::corruption(path, 0, reason);
    let size = file.len().map_err(|e| Error::io("size segment", path, e))?;
    if size != len {
        return Err(corrupt(format!(
            "segment is {size} bytes, {len} were written"
        )));
    }
    // The footer's last 8 bytes hold its length.
    let mut end = [0u8; 8];
    if len < 12 {
        return Err(corrupt("segment shorter than a Parquet file".into()));
    }
    file.read_exact_at(&mut end, len - 8)
        .map_err(|e| Error::io("read back segment", path, e))?;
    let footer = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
    let footer_start = len
        .checked_sub(footer + 8)
        .ok_or_else(|| corrupt("footer longer than the file".into()))?;
    let mut footer_bytes = vec![0u8; (len - footer_start) as usize];
    file.read_exact_at(&mut footer_bytes, footer_start)
        .map_err(|e| Error::io("read back segment", path, e))?;
    let plain_meta = parquet::file::metadata::ParquetMetaDataReader::decode_metadata(
        &footer_bytes[..footer_bytes.len() - 8],
    )
    .map_err(|e| corrupt(format!("unreadable Parquet footer: {e}")))?;
    let tail_offset = data_end(&plain_meta);
    let mut tail = vec![0u8; (len - tail_offset) as usize];
    file.read_exact_at(&mut tail, tail_offset)
        .map_err(|e| Error::io("read back segment", path, e))?;
    let reader = TailReader {
        tail: Bytes::from(tail),
        tail_offset,
    };
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let metadata = ArrowReaderMetadata::load(&reader, options)
        .map_err(|e| corrupt(format!("unreadable Parquet footer: {e}")))?;
    let meta = metadata.metadata();
    let spans = regions(meta, len).map_err(corrupt)?;
    // One pass over the file: the whole CRC and each region's.
    let mut region_crcs = Vec::with_capacity(spans.len());
    let mut whole = 0u32;
    let mut region = 0usize;
    let mut region_crc = 0u32;
    let mut at = 0u64;
    // No bigger than the file: the simulator's segments are a few KiB, and zeroing a whole
    // read-back chunk for each was 4% of a sweep.
    let mut chunk = vec![0u8; (len as usize).min(READ_BACK_BYTES)];
    while at < len {
        let n = ((len - at) as usize).min(READ_BACK_BYTES);
        file.read_exact_at(&mut chunk[..n], at)
            .map_err(|e| Error::io("read back segment", path, e))?;
        let bytes = &chunk[..n];
        whole = crc32c::crc32c_append(whole, bytes);
        let mut pos = at;
        while let Some(&(offset, rlen)) = spans.get(region) {
            let chunk_end = at + n as u64;
            if offset >= chunk_end {
                break;
            }
            let from = offset.max(pos);
            let to = (offset + rlen).min(chunk_end);
            if from < to {
                region_crc = crc32c::crc32c_append(
                    region_crc,
                    &bytes[(from - at) as usize..(to - at) as usize],
                );
            }
            if offset + rlen <= chunk_end {
                region_crcs.push(region_crc);
                region_crc = 0;
                region += 1;
                pos = offset + rlen;
            } else {
                break;
            }
        }
        at += n as u64;
    }
    if whole != crc {
        return Err(corrupt(
            "segment read back differs from what was written".into(),
        ));
    }
    if region_crcs.len() != spans.len() {
        return Err(corrupt("regions run past the end of the file".into()));
    }
    Ok(SegmentIndex {
        data_size_bytes: len,
        data_crc32c: whole,
        tail_offset,
        tail_crc32c: crc32c::crc32c(&reader.tail),
        row_count: keys.len() as u64,
        key_pages: key_pages(def, meta, keys).map_err(corrupt)?,
        region_crcs,
        filter: index::build_filter(keys),
    })
}

/// Bytes read at a time when a written segment is read back.
const READ_BACK_BYTES: usize = 8 << 20;

/// The key page directory of a file with metadata `meta` whose key column holds `keys`.
fn key_pages(
    def: &TableDef,
    meta: &ParquetMetaData,
    keys: &[i64],
) -> std::result::Result<Vec<KeyPage>, String> {
    let pk = def.primary_key_index();
    let mut key_pages = Vec::new();
    let mut rg_start = 0u64;
    for (rg_index, rg) in meta.row_groups().iter().enumerate() {
        let pages = meta
            .offset_index()
            .and_then(|index| index.get(rg_index)?.get(pk))
            .ok_or("no offset index for the key column")?;
        for page in pages.page_locations() {
            let first_row = rg_start + page.first_row_index as u64;
            let first_key = *keys
                .get(first_row as usize)
                .ok_or("a key page starts past the last key")?;
            key_pages.push(KeyPage {
                first_key,
                first_row,
            });
        }
        rg_start += rg.num_rows() as u64;
    }
    if rg_start != keys.len() as u64 {
        return Err(format!("{rg_start} rows in the file, {} keys", keys.len()));
    }
    Ok(key_pages)
}

/// The sidecar index of a whole Parquet file `bytes` whose key column holds `keys`.
pub(crate) fn index_of(
    def: &TableDef,
    bytes: &Bytes,
    keys: &[i64],
) -> std::result::Result<SegmentIndex, String> {
    index_with_filter(def, bytes, keys, index::build_filter(keys))
}

/// [`index_of`] with the membership filter of `keys` already built.
fn index_with_filter(
    def: &TableDef,
    bytes: &Bytes,
    keys: &[i64],
    filter: Option<xorf::BinaryFuse8>,
) -> std::result::Result<SegmentIndex, String> {
    let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
    let metadata = ArrowReaderMetadata::load(bytes, options)
        .map_err(|e| format!("unreadable Parquet footer: {e}"))?;
    let meta = metadata.metadata();
    let regions = regions(meta, bytes.len() as u64)?;
    let tail_offset = data_end(meta);
    let region_crcs = regions
        .iter()
        .map(|&(offset, len)| crc32c::crc32c(&bytes[offset as usize..(offset + len) as usize]))
        .collect();
    Ok(SegmentIndex {
        data_size_bytes: bytes.len() as u64,
        data_crc32c: crc32c::crc32c(bytes),
        tail_offset,
        tail_crc32c: crc32c::crc32c(&bytes[tail_offset as usize..]),
        row_count: keys.len() as u64,
        key_pages: key_pages(def, meta, keys)?,
        region_crcs,
        filter,
    })
}

/// Where the data pages end: everything after is the tail (page index and footer).
fn data_end(meta: &ParquetMetaData) -> u64 {
    meta.row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .map(|c| {
            let (start, len) = c.byte_range();
            start + len
        })
        .max()
        .unwrap_or(4)
}

/// Every byte region a reader asks for, in file order: per row group and column, the bytes
/// before the first data page (a dictionary page) if any, then each data page.
pub(crate) fn regions(
    meta: &ParquetMetaData,
    len_bytes: u64,
) -> std::result::Result<Vec<(u64, u64)>, String> {
    let mut regions = Vec::new();
    for (rg_index, rg) in meta.row_groups().iter().enumerate() {
        for (col_index, column) in rg.columns().iter().enumerate() {
            let (start, len) = column.byte_range();
            let end = start
                .checked_add(len)
                .filter(|&e| e <= len_bytes)
                .ok_or_else(|| format!("column chunk {start}+{len} past the end"))?;
            let pages = meta
                .offset_index()
                .and_then(|index| index.get(rg_index)?.get(col_index))
                .ok_or_else(|| format!("no offset index for row group {rg_index}"))?;
            let mut at = start;
            for page in pages.page_locations() {
                let (offset, size) = (page.offset as u64, page.compressed_page_size as u64);
                if offset < at || page.compressed_page_size <= 0 {
                    return Err(format!("page at {offset} overlaps the one before"));
                }
                if offset > at {
                    regions.push((at, offset - at));
                }
                regions.push((offset, size));
                at = offset + size;
            }
            if at != end {
                return Err(format!(
                    "pages of row group {rg_index} column {col_index} end at {at}, the chunk at {end}"
                ));
            }
        }
    }
    regions.sort_unstable();
    if regions.windows(2).any(|w| w[0].0 + w[0].1 > w[1].0) {
        return Err("regions overlap".into());
    }
    Ok(regions)
}

/// A checked byte region of the file.
#[derive(Debug, Clone, Copy)]
struct Region {
    offset: u64,
    len: u64,
    crc32c: u32,
}

/// A segment open for reading: its file, its parsed footer and page index, and the CRC of
/// every region a reader may ask for.
#[derive(Clone)]
pub(crate) struct SegmentReader {
    pub path: Arc<Path>,
    file: Arc<dyn File>,
    len_bytes: u64,
    pub metadata: ArrowReaderMetadata,
    /// Sorted by offset, not overlapping.
    regions: Arc<Vec<Region>>,
    /// `regions[a..b]` of each column chunk, at `rg * columns + column`.
    chunk_regions: Vec<(usize, usize)>,
    /// Leaf columns in the file.
    columns: usize,
    /// The first row of each row group, and the row count at the end.
    rg_starts: Vec<u64>,
    /// The whole file mapped ([`File::map_whole`]), made by the first read of at least
    /// [`MAP_READ_BYTES_MIN`]; `None` inside if the Env would not map it.
    whole: Arc<OnceLock<Option<Bytes>>>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::corruption(path, 0, reason)
}

/// A `ChunkReader` over the verified tail of a file: only the footer and page index are in
/// it, which is all that loading the metadata reads.
struct TailReader {
    tail: Bytes,
    tail_offset: u64,
}

impl Length for TailReader {
    fn len(&self) -> u64 {
        self.tail_offset + self.tail.len() as u64
    }
}

impl ChunkReader for TailReader {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        Ok(self
            .get_bytes(start, (self.len() - start) as usize)?
            .reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let from = start
            .checked_sub(self.tail_offset)
            .filter(|&f| f + length as u64 <= self.tail.len() as u64)
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "metadata asks for bytes {start}+{length} outside the tail"
                ))
            })? as usize;
        Ok(self.tail.slice(from..from + length))
    }
}

impl SegmentReader {
    /// Opens a segment through `file` with its sidecar `index` (already checked against the
    /// manifest): reads the tail (page index and footer) and checks it against the index.
    pub fn open(path: &Path, file: Arc<dyn File>, index: &SegmentIndex) -> Result<SegmentReader> {
        let len_bytes = file.len().map_err(|e| Error::io("size segment", path, e))?;
        if len_bytes != index.data_size_bytes {
            return Err(corrupt(
                path,
                format!(
                    "segment is {len_bytes} bytes, its index says {}",
                    index.data_size_bytes
                ),
            ));
        }
        if index.tail_offset >= len_bytes {
            return Err(corrupt(path, "the index's tail offset is past the end"));
        }
        let mut tail = vec![0u8; (len_bytes - index.tail_offset) as usize];
        file.read_exact_at(&mut tail, index.tail_offset)
            .map_err(|e| Error::io("read segment footer", path, e))?;
        let crc = crc32c::crc32c(&tail);
        if crc != index.tail_crc32c {
            return Err(Error::corruption(
                path,
                index.tail_offset,
                format!(
                    "footer checksum {crc:#010x} != the index's {:#010x}",
                    index.tail_crc32c
                ),
            ));
        }
        let reader = TailReader {
            tail: Bytes::from(tail),
            tail_offset: index.tail_offset,
        };
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ArrowReaderMetadata::load(&reader, options)
            .map_err(|e| corrupt(path, format!("unreadable Parquet footer: {e}")))?;
        let meta = metadata.metadata().clone();
        let spans = regions(&meta, len_bytes).map_err(|e| corrupt(path, e))?;
        if spans.len() != index.region_crcs.len() {
            return Err(corrupt(
                path,
                format!(
                    "{} regions in the file, {} checksums in its index",
                    spans.len(),
                    index.region_crcs.len()
                ),
            ));
        }
        if data_end(&meta) != index.tail_offset {
            return Err(corrupt(path, "data pages do not end where the index says"));
        }
        let regions = spans
            .iter()
            .zip(&index.region_crcs)
            .map(|(&(offset, len), &crc32c)| Region {
                offset,
                len,
                crc32c,
            })
            .collect();
        // Each column chunk's regions, so that a page read searches only its chunk's.
        let mut chunk_regions = Vec::new();
        let mut at = 0usize;
        for rg in meta.row_groups() {
            for column in rg.columns() {
                let (start, len) = column.byte_range();
                while at < spans.len() && spans[at].0 < start {
                    at += 1;
                }
                let first = at;
                while at < spans.len() && spans[at].0 < start.saturating_add(len) {
                    at += 1;
                }
                chunk_regions.push((first, at));
            }
        }
        let columns = meta.file_metadata().schema_descr().num_columns();
        let mut rg_starts = Vec::with_capacity(meta.num_row_groups() + 1);
        let mut start = 0u64;
        for rg in meta.row_groups() {
            rg_starts.push(start);
            start += rg.num_rows() as u64;
        }
        rg_starts.push(start);
        if start != index.row_count {
            return Err(corrupt(
                path,
                format!("{start} rows, the index says {}", index.row_count),
            ));
        }
        Ok(SegmentReader {
            path: Arc::from(path),
            file,
            len_bytes,
            metadata,
            regions: Arc::new(regions),
            chunk_regions,
            columns,
            rg_starts,
            whole: Arc::new(OnceLock::new()),
        })
    }

    fn chunk_reader(&self) -> VerifiedReader {
        VerifiedReader {
            io_failure: Arc::new(Mutex::new(None)),
            path: self.path.clone(),
            file: self.file.clone(),
            len_bytes: self.len_bytes,
            regions: self.regions.clone(),
            window: (0, self.regions.len()),
            hint: 0,
            whole: self.whole.clone(),
        }
    }

    /// A reader of column `column` of row group `rg` only: it searches that chunk's
    /// regions, not the whole file's.
    fn column_chunk_reader(&self, rg: usize, column: usize) -> VerifiedReader {
        let mut reader = self.chunk_reader();
        if let Some(&window) = self.chunk_regions.get(rg * self.columns + column) {
            reader.window = window;
        }
        reader
    }

    /// Number of row groups.
    pub fn row_groups(&self) -> usize {
        self.rg_starts.len() - 1
    }

    /// Rows of row group `rg`: `start..end`, segment-wide.
    pub fn row_group_rows(&self, rg: usize) -> std::ops::Range<u64> {
        self.rg_starts[rg]..self.rg_starts[rg + 1]
    }

    /// The row group holding segment row `row`.
    pub fn row_group_of(&self, row: u64) -> Option<usize> {
        let rg = self
            .rg_starts
            .partition_point(|&s| s <= row)
            .checked_sub(1)?;
        (rg < self.row_groups()).then_some(rg)
    }

    /// A streaming reader of `columns` (table column indices; Parquet yields them in file
    /// order) of row groups `row_groups`, with `selection` (relative to those row groups)
    /// if given. Its errors go through [`BatchReader::next`].
    pub fn batches(
        &self,
        columns: &[usize],
        row_groups: Vec<usize>,
        selection: Option<RowSelection>,
    ) -> Result<BatchReader> {
        let mask = ProjectionMask::roots(
            self.metadata.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let chunk_reader = self.chunk_reader();
        let io_failure = chunk_reader.io_failure.clone();
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(chunk_reader, self.metadata.clone())
                .with_projection(mask)
                .with_row_groups(row_groups)
                .with_batch_size(BATCH_ROWS);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let failure = ReadFailure {
            path: self.path.clone(),
            io_failure,
        };
        let inner = builder.build().map_err(|e| failure.error(e.to_string()))?;
        Ok(BatchReader { inner, failure })
    }

    /// A decoder of the pages of column `column` of row group `rg` that hold rows `wanted`
    /// (and of the chunk's dictionary, if any), each page checked against its CRC as it is
    /// read; and the row (of the row group) the decoder starts at.
    ///
    /// With `prefetch`, the pages (and dictionary) are read and checked in one call up
    /// front, as a scan wants; otherwise each page is read when it is decoded.
    pub(crate) fn column_reader<T: parquet::data_type::DataType>(
        &self,
        rg: usize,
        column: usize,
        wanted: std::ops::Range<usize>,
        prefetch: bool,
        failure: &ReadFailure,
    ) -> Result<(ColumnReaderImpl<T>, usize)> {
        let (pages, start) = self.column_pages(rg, column, wanted, prefetch, failure)?;
        let descr = self
            .metadata
            .metadata()
            .file_metadata()
            .schema_descr()
            .column(column);
        Ok((ColumnReaderImpl::new(descr, pages), start))
    }

    /// The pages [`SegmentReader::column_reader`] decodes, and the row (of the row group)
    /// the first starts at: for a caller with its own value decoder.
    pub(crate) fn column_pages(
        &self,
        rg: usize,
        column: usize,
        wanted: std::ops::Range<usize>,
        prefetch: bool,
        failure: &ReadFailure,
    ) -> Result<(Box<dyn PageReader>, usize)> {
        let meta = self.metadata.metadata();
        let all = meta
            .offset_index()
            .and_then(|i| i.get(rg)?.get(column))
            .map(|i| i.page_locations())
            .ok_or_else(|| corrupt(&self.path, format!("no offset index for column {column}")))?;
        let chunk = meta.row_group(rg).column(column);
        let rg_rows = self.row_group_rows(rg);
        let rg_len = (rg_rows.end - rg_rows.start) as usize;
        // The page of a row: pages hold PAGE_ROWS rows unless their bytes filled first, so
        // the rows where pages start are spread about evenly and a prediction finds it.
        let pages_through =
            |row: usize| super::index::count_at_most(all, row as i64, |l| l.first_row_index);
        let first = pages_through(wanted.start).saturating_sub(1);
        let last = pages_through(wanted.end.saturating_sub(1)).max(first + 1);
        let locations: Vec<_> = all.get(first..last.max(first + 1)).unwrap_or(all).to_vec();
        let start_row = locations.first().map_or(0, |l| l.first_row_index as usize);
        let rows = all.get(last).map_or(rg_len, |l| l.first_row_index as usize);
        let mut chunk_reader = self.column_chunk_reader(rg, column);
        chunk_reader.io_failure = failure.io_failure.clone();
        let dictionary = match chunk.dictionary_page_offset() {
            Some(at) => Some((
                u64::try_from(at).map_err(|_| corrupt(&self.path, "negative dictionary offset"))?,
                usize::try_from(chunk.data_page_offset() - at)
                    .map_err(|_| corrupt(&self.path, "dictionary after its data pages"))?,
            )),
            None => None,
        };
        chunk_reader.hint = usize::from(dictionary.is_some()) + first;
        let prefetched = match (prefetch, locations.last()) {
            (true, Some(tail)) => {
                let from = dictionary.map_or(locations[0].offset as u64, |(at, _)| at);
                let to = (tail.offset as u64).saturating_add(tail.compressed_page_size as u64);
                let (bytes, base, regions) = chunk_reader
                    .read_regions(from, to.saturating_sub(from))
                    .map_err(|e| failure.error(e.to_string()))?;
                Some(Prefetched {
                    bytes,
                    base,
                    regions: regions.to_vec(),
                    path: self.path.clone(),
                })
            }
            _ => None,
        };
        let compression = chunk.compression();
        let pages: Option<Box<dyn PageReader>> = match prefetched {
            Some(source) => ChunkPages::new(source, compression, dictionary, locations, rows)
                .map(|p| Box::new(p) as Box<dyn PageReader>),
            None => ChunkPages::new(chunk_reader, compression, dictionary, locations, rows)
                .map(|p| Box::new(p) as Box<dyn PageReader>),
        };
        let pages = match pages {
            Some(pages) => pages,
            None => {
                let mut chunk_reader = self.column_chunk_reader(rg, column);
                chunk_reader.io_failure = failure.io_failure.clone();
                let pages = SerializedPageReader::new(
                    Arc::new(chunk_reader),
                    chunk,
                    rg_len,
                    Some(all.clone()),
                )
                .map_err(|e| failure.error(e.to_string()))?;
                return Ok((Box::new(pages), 0));
            }
        };
        Ok((pages, start_row))
    }

    /// Whether column `column` of row group `rg` is NOT NULL, has no dictionary, and its
    /// pages are `DELTA_BINARY_PACKED` or `PLAIN`: the shape whose integers the scan
    /// decodes itself ([`crate::cold::delta::decode_into`]) rather than through parquet's
    /// column reader.
    pub(crate) fn plain_or_delta_required(&self, rg: usize, column: usize) -> bool {
        let chunk = self.metadata.metadata().row_group(rg).column(column);
        chunk.column_descr().max_def_level() == 0
            && chunk.column_descr().max_rep_level() == 0
            && chunk.dictionary_page_offset().is_none()
            && chunk.encodings().all(|e| {
                matches!(
                    e,
                    Encoding::DELTA_BINARY_PACKED | Encoding::PLAIN | Encoding::RLE
                )
            })
    }

    /// Values of rows `within..within + count` of row group `rg` of column `column`: the
    /// non-null values and, for a nullable column, the definition level of each row (0 is
    /// null). Pages before `within` are skipped by the offset index, unread.
    fn column_values<T: parquet::data_type::DataType>(
        &self,
        rg: usize,
        column: usize,
        within: usize,
        count: usize,
    ) -> Result<(Vec<T::T>, Vec<i16>)> {
        let failure = ReadFailure {
            path: self.path.clone(),
            io_failure: Arc::new(Mutex::new(None)),
        };
        let fail = |e: ParquetError| failure.error(e.to_string());
        let (mut reader, start) =
            self.column_reader::<T>(rg, column, within..within + count, false, &failure)?;
        let skip = within - start.min(within);
        let skipped = reader.skip_records(skip).map_err(fail)?;
        let mut values = Vec::with_capacity(count);
        let mut levels = Vec::with_capacity(count);
        let mut read = 0;
        while skipped == skip && read < count {
            let (records, _, _) = reader
                .read_records(count - read, Some(&mut levels), None, &mut values)
                .map_err(fail)?;
            if records == 0 {
                break;
            }
            read += records;
        }
        if skipped != skip || read != count {
            return Err(corrupt(
                &self.path,
                format!(
                    "column {column} of row group {rg} ends before row {}",
                    within + count
                ),
            ));
        }
        Ok((values, levels))
    }

    /// Where key page `page` of `index`'s directory lies: its row group, its first row within
    /// it, and its key count.
    fn key_page_place(&self, index: &SegmentIndex, page: usize) -> Result<(usize, usize, usize)> {
        let rows = index.page_rows(page);
        let rg = self
            .row_group_of(rows.start)
            .ok_or_else(|| corrupt(&self.path, format!("key page {page} is in no row group")))?;
        let within = (rows.start - self.row_group_rows(rg).start) as usize;
        Ok((rg, within, (rows.end - rows.start) as usize))
    }

    /// Decodes key page `page` (of `index`'s directory) of key column `pk`: its keys, in
    /// order, decoded straight from the one page (whatever its encoding).
    pub fn read_key_page(&self, index: &SegmentIndex, pk: usize, page: usize) -> Result<Vec<i64>> {
        let (rg, within, want) = self.key_page_place(index, page)?;
        let (keys, levels) = self.column_values::<Int64Type>(rg, pk, within, want)?;
        if keys.len() != want || levels.contains(&0) {
            return Err(corrupt(
                &self.path,
                format!("key page {page} has {} keys, expected {want}", keys.len()),
            ));
        }
        Ok(keys)
    }

    /// The values of key page `page` as their raw bytes, when they can be searched without
    /// parquet's column reader (crate::cold::delta): see [`SegmentReader::value_page`].
    /// `None` for any other shape; the caller then decodes with
    /// [`SegmentReader::read_key_page`].
    pub fn key_page_values(
        &self,
        index: &SegmentIndex,
        pk: usize,
        page: usize,
    ) -> Result<Option<Bytes>> {
        let (rg, within, want) = self.key_page_place(index, page)?;
        Ok(self
            .value_page(rg, pk, within)?
            .filter(|page| {
                page.encoding == Encoding::DELTA_BINARY_PACKED
                    && page.first_row == within
                    && page.count == want
            })
            .map(|page| page.values))
    }

    /// The data page of column `column` in row group `rg` that holds row `within` (of the
    /// row group), read in one checked call and decompressed, when its values can be decoded
    /// without parquet's column reader: a v1 or v2 data page without levels (a NOT NULL
    /// column), compressed as the engine compresses (none, LZ4 or zstd). `None`, before any
    /// read, for any other chunk: a nullable column, or one with a dictionary (its pages
    /// need the dictionary page too, which parquet's column reader reads).
    fn value_page(&self, rg: usize, column: usize, within: usize) -> Result<Option<ValuePage>> {
        let meta = self.metadata.metadata();
        let chunk = meta.row_group(rg).column(column);
        let compression = chunk.compression();
        if !matches!(
            compression,
            Compression::UNCOMPRESSED | Compression::LZ4_RAW | Compression::ZSTD(_)
        ) || chunk.column_descr().max_def_level() != 0
            || chunk.dictionary_page_offset().is_some()
        {
            return Ok(None);
        }
        let Some(all) = meta
            .offset_index()
            .and_then(|i| i.get(rg)?.get(column))
            .map(|i| i.page_locations())
        else {
            return Ok(None);
        };
        let at = index::count_at_most(all, within as i64, |l| l.first_row_index);
        let Some(location) = at.checked_sub(1).and_then(|at| all.get(at)) else {
            return Ok(None);
        };
        let failure = ReadFailure::new(&self.path);
        let mut reader = self.column_chunk_reader(rg, column);
        reader.io_failure = failure.io_failure.clone();
        let bytes = reader
            .read_verified(
                u64::try_from(location.offset).unwrap_or(u64::MAX),
                u64::try_from(location.compressed_page_size).unwrap_or(u64::MAX),
            )
            .map_err(|e| failure.parquet(e))?;
        let (header, header_len) =
            crate::cold::pages::parse_header(&bytes).map_err(|e| failure.parquet(e))?;
        let body = bytes.slice(header_len.min(bytes.len())..);
        if body.len() != header.compressed_size {
            return Ok(None);
        }
        let (count, encoding, compressed) = match header.kind {
            crate::cold::pages::Kind::V1 {
                num_values,
                encoding,
                ..
            } => (num_values, encoding, true),
            crate::cold::pages::Kind::V2 {
                num_values,
                num_nulls: 0,
                encoding,
                def_levels_byte_len: 0,
                rep_levels_byte_len: 0,
                is_compressed,
                ..
            } => (num_values, encoding, is_compressed),
            _ => return Ok(None),
        };
        let values = match compressed {
            true => crate::cold::pages::decompress(compression, body, header.uncompressed_size)
                .map_err(|e| {
                    corrupt(
                        &self.path,
                        format!(
                            "column {column} of row group {rg}, page at row {}: {e}",
                            location.first_row_index
                        ),
                    )
                })?,
            false => body,
        };
        Ok(Some(ValuePage {
            values,
            encoding,
            first_row: location.first_row_index as usize,
            count: count as usize,
        }))
    }

    /// The value at row `within` of row group `rg` of NOT NULL column `column` (of type
    /// `data_type`), decoded straight from the one page that holds it: integers
    /// `DELTA_BINARY_PACKED` or plain, floats and booleans plain, strings and bytes
    /// `DELTA_LENGTH_BYTE_ARRAY` or plain, which covers every choice the engine's writer
    /// makes but a dictionary. `None` if the page has another shape (the caller then reads
    /// it with parquet's column reader).
    fn one_direct(
        &self,
        rg: usize,
        column: usize,
        within: usize,
        data_type: DataType,
    ) -> Result<Option<Value>> {
        let Some(page) = self.value_page(rg, column, within)? else {
            return Ok(None);
        };
        let corrupt_page = |reason: String| {
            corrupt(
                &self.path,
                format!(
                    "column {column} of row group {rg}, page at row {}: {reason}",
                    page.first_row
                ),
            )
        };
        let skip = within
            .checked_sub(page.first_row)
            .filter(|&skip| skip < page.count)
            .ok_or_else(|| corrupt_page(format!("does not hold row {within}")))?;
        let bytes = &page.values[..];
        let plain = |width: usize| -> Result<&[u8]> {
            if page.count.checked_mul(width) != Some(bytes.len()) {
                return Err(corrupt_page(format!(
                    "{} bytes hold no {} plain values of {width} bytes",
                    bytes.len(),
                    page.count
                )));
            }
            Ok(&bytes[skip * width..(skip + 1) * width])
        };
        let eight = |b: &[u8]| -> [u8; 8] {
            let mut out = [0u8; 8];
            out.copy_from_slice(b);
            out
        };
        let value = match (data_type, page.encoding) {
            (DataType::Int64 | DataType::Timestamp, Encoding::DELTA_BINARY_PACKED) => {
                let mut values = crate::cold::delta::DeltaValues::new(bytes, page.count)
                    .map_err(corrupt_page)?;
                values.skip(skip).map_err(corrupt_page)?;
                match values.next_value().map_err(corrupt_page)? {
                    Some(value) => value,
                    None => return Err(corrupt_page(format!("ends before row {within}"))),
                }
            }
            (DataType::Int64 | DataType::Timestamp, Encoding::PLAIN) => {
                i64::from_le_bytes(eight(plain(8)?))
            }
            (DataType::Float64, Encoding::PLAIN) => {
                return Ok(Some(Value::Float64(f64::from_le_bytes(eight(plain(8)?)))))
            }
            (DataType::Bool, Encoding::PLAIN) => {
                let byte = bytes
                    .get(skip / 8)
                    .filter(|_| bytes.len() == page.count.div_ceil(8))
                    .ok_or_else(|| {
                        corrupt_page(format!(
                            "{} bytes hold no {} booleans",
                            bytes.len(),
                            page.count
                        ))
                    })?;
                return Ok(Some(Value::Bool(byte >> (skip % 8) & 1 == 1)));
            }
            (
                DataType::Utf8 | DataType::Binary,
                Encoding::DELTA_LENGTH_BYTE_ARRAY | Encoding::PLAIN,
            ) => {
                let value = match page.encoding {
                    Encoding::PLAIN => plain_bytes_at(bytes, page.count, skip),
                    _ => delta_length_bytes_at(bytes, page.count, skip),
                }
                .map_err(corrupt_page)?;
                return match data_type {
                    DataType::Binary => Ok(Some(Value::Binary(value.to_vec()))),
                    _ => match std::str::from_utf8(value) {
                        Ok(text) => Ok(Some(Value::Utf8(text.to_string()))),
                        Err(_) => Err(corrupt_page(format!("row {within} is not UTF-8"))),
                    },
                };
            }
            _ => return Ok(None),
        };
        Ok(Some(match data_type {
            DataType::Timestamp => Value::Timestamp(value),
            _ => Value::Int64(value),
        }))
    }

    /// Reads the row at segment row `row` whose key is `key`: every column but the key
    /// decoded from the one page of each that holds the row.
    pub fn read_row(&self, def: &TableDef, row: u64, key: i64) -> Result<Row> {
        let rg = self
            .row_group_of(row)
            .ok_or_else(|| corrupt(&self.path, format!("row {row} is in no row group")))?;
        let within = (row - self.row_group_rows(rg).start) as usize;
        let pk = def.primary_key_index();
        let mut values = Vec::with_capacity(def.columns().len());
        for (c, column) in def.columns().iter().enumerate() {
            if c == pk {
                values.push(key_value(def, key));
                continue;
            }
            if let Some(value) = self.one_direct(rg, c, within, column.data_type)? {
                values.push(value);
                continue;
            }
            let value = match column.data_type {
                DataType::Int64 => self.one::<Int64Type>(rg, c, within)?.map(Value::Int64),
                DataType::Timestamp => self.one::<Int64Type>(rg, c, within)?.map(Value::Timestamp),
                DataType::Float64 => self.one::<DoubleType>(rg, c, within)?.map(Value::Float64),
                DataType::Bool => self.one::<BoolType>(rg, c, within)?.map(Value::Bool),
                DataType::Binary => self
                    .one::<ByteArrayType>(rg, c, within)?
                    .map(|b| Value::Binary(b.data().to_vec())),
                DataType::Utf8 => match self.one::<ByteArrayType>(rg, c, within)? {
                    None => None,
                    Some(b) => Some(Value::Utf8(
                        std::str::from_utf8(b.data())
                            .map_err(|_| {
                                corrupt(
                                    &self.path,
                                    format!("column {:?} row {row} is not UTF-8", column.name),
                                )
                            })?
                            .to_string(),
                    )),
                },
            };
            match value {
                Some(v) => values.push(v),
                None if column.nullable => values.push(Value::Null),
                None => {
                    return Err(corrupt(
                        &self.path,
                        format!("row {row} of NOT NULL column {:?} is null", column.name),
                    ))
                }
            }
        }
        Ok(values)
    }

    /// The value of row `within` of row group `rg` of column `column`; `None` if null.
    fn one<T: parquet::data_type::DataType>(
        &self,
        rg: usize,
        column: usize,
        within: usize,
    ) -> Result<Option<T::T>> {
        let (mut values, _) = self.column_values::<T>(rg, column, within, 1)?;
        Ok(values.pop())
    }

    /// Reads the whole file and checks it against the index's length and CRC-32C.
    pub fn verify_bytes(&self, index: &SegmentIndex) -> Result<Bytes> {
        let bytes = self
            .file
            .read_all()
            .map_err(|e| Error::io("read segment", &*self.path, e))?;
        if bytes.len() as u64 != index.data_size_bytes {
            return Err(corrupt(
                &self.path,
                format!(
                    "segment is {} bytes, its index says {}",
                    bytes.len(),
                    index.data_size_bytes
                ),
            ));
        }
        let crc = crc32c::crc32c(&bytes);
        if crc != index.data_crc32c {
            return Err(corrupt(
                &self.path,
                format!(
                    "checksum {crc:#010x} != its index's {:#010x}",
                    index.data_crc32c
                ),
            ));
        }
        Ok(Bytes::from(bytes))
    }
}

/// A data page of a NOT NULL column, decompressed: its values' bytes and their encoding.
struct ValuePage {
    values: Bytes,
    encoding: Encoding,
    /// Row (of the row group) of its first value.
    first_row: usize,
    count: usize,
}

/// Value `at` of a `PLAIN` page of `count` byte arrays (each a 4-byte little-endian length
/// and its bytes); every length up to it is checked against the page's end.
fn plain_bytes_at(bytes: &[u8], count: usize, at: usize) -> std::result::Result<&[u8], String> {
    if at >= count {
        return Err(format!("value {at} of a page of {count}"));
    }
    let mut pos = 0usize;
    for i in 0..=at {
        let len = bytes
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| format!("length of value {i} past the end of the page"))?;
        let end = (pos + 4)
            .checked_add(len)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| format!("value {i} of {len} bytes past the end of the page"))?;
        if i == at {
            return Ok(&bytes[pos + 4..end]);
        }
        pos = end;
    }
    Err(format!("value {at} of a page of {count}"))
}

/// Value `at` of a `DELTA_LENGTH_BYTE_ARRAY` page of `count` byte arrays: the lengths,
/// `DELTA_BINARY_PACKED`, then every value's bytes one after the other, to the page's end.
/// The lengths are decoded at once (the scan's decoder) and checked: none negative, and
/// together exactly the bytes after them.
fn delta_length_bytes_at(
    bytes: &[u8],
    count: usize,
    at: usize,
) -> std::result::Result<&[u8], String> {
    if at >= count {
        return Err(format!("value {at} of a page of {count}"));
    }
    let mut lengths = Vec::new();
    let data = crate::cold::delta::decode_into(bytes, count, &mut lengths)?;
    if lengths.iter().any(|&l| l < 0) {
        return Err("a negative length".into());
    }
    // Saturating: lengths that add up past u64 are refused by the comparison below.
    let add = |sum: u64, &l: &i64| sum.saturating_add(l as u64);
    let offset = lengths[..at].iter().fold(0u64, add);
    let total = lengths[at..].iter().fold(offset, add);
    if total != (bytes.len() - data) as u64 {
        return Err(format!(
            "lengths add up to {total} bytes, the page holds {} after them",
            bytes.len() - data
        ));
    }
    let start = data + offset as usize;
    Ok(&bytes[start..start + lengths[at] as usize])
}

/// The key column's value `key` for a table.
fn key_value(def: &TableDef, key: i64) -> Value {
    match def.columns()[def.primary_key_index()].data_type {
        DataType::Timestamp => Value::Timestamp(key),
        _ => Value::Int64(key),
    }
}

/// Parquet flattens errors to text; an I/O failure of the disk is kept aside so it is
/// reported as I/O, and anything else as corruption.
pub(crate) struct ReadFailure {
    path: Arc<Path>,
    io_failure: Arc<Mutex<Option<std::io::Error>>>,
}

impl ReadFailure {
    /// A failure slot for reads of the file at `path`.
    pub fn new(path: &Arc<Path>) -> ReadFailure {
        ReadFailure {
            path: path.clone(),
            io_failure: Arc::new(Mutex::new(None)),
        }
    }

    /// The error for a parquet error `e`: the disk's I/O error if one was met, else
    /// corruption.
    pub fn parquet(&self, e: ParquetError) -> Error {
        self.error(e.to_string())
    }

    fn error(&self, reason: String) -> Error {
        let taken = self.io_failure.lock().ok().and_then(|mut slot| slot.take());
        match taken {
            Some(e) => Error::io("read segment", &*self.path, e),
            None => corrupt(&self.path, format!("unreadable Parquet: {reason}")),
        }
    }
}

/// Batches of one segment read as they are decoded.
pub(crate) struct BatchReader {
    inner: ParquetRecordBatchReader,
    failure: ReadFailure,
}

impl Iterator for BatchReader {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        let next = self.inner.next()?;
        Some(next.map_err(|e| self.failure.error(e.to_string())))
    }
}

/// Row `i` of `batch` (all the table's columns, in order).
pub(crate) fn batch_row(def: &TableDef, batch: &RecordBatch, i: usize, path: &Path) -> Result<Row> {
    def.columns()
        .iter()
        .enumerate()
        .map(|(c, column)| {
            let array = batch
                .columns()
                .get(c)
                .ok_or_else(|| corrupt(path, format!("missing column {:?}", column.name)))?;
            value_at(array.as_ref(), column.data_type, i).ok_or_else(|| {
                corrupt(
                    path,
                    format!(
                        "column {:?} is not of type {:?}",
                        column.name, column.data_type
                    ),
                )
            })
        })
        .collect()
}

/// A `ChunkReader` over an `Env` file that checks each range against the CRCs of the
/// regions covering it.
struct VerifiedReader {
    /// The last I/O error of the file (not a checksum mismatch).
    io_failure: Arc<Mutex<Option<std::io::Error>>>,
    path: Arc<Path>,
    file: Arc<dyn File>,
    len_bytes: u64,
    regions: Arc<Vec<Region>>,
    /// The part of `regions` reads may fall in.
    window: (usize, usize),
    /// The region (of the window) the next read most likely starts at.
    hint: usize,
    /// The segment's whole-file mapping, shared with its reader.
    whole: Arc<OnceLock<Option<Bytes>>>,
}

impl VerifiedReader {
    /// Reads `start..start + len`, which must lie inside consecutive regions: reads the
    /// whole regions, checks each, and returns the asked-for part.
    fn read_verified(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let (buf, from, regions) = self.read_regions(start, len)?;
        check_regions(&self.path, &buf, from, regions)?;
        Ok(buf.slice((start - from) as usize..(start + len - from) as usize))
    }

    /// Bytes `from..to` of the file, mapped: a slice of the segment's whole-file mapping
    /// (made now if this is the first large read), else a mapping of their own; `None` if
    /// the Env maps neither.
    fn mapped(&self, from: u64, to: u64) -> Option<Bytes> {
        let whole = self
            .whole
            .get_or_init(|| self.file.map_whole().ok().flatten().map(Bytes::from_owner));
        if let Some(whole) = whole {
            if let (Ok(from), Ok(to)) = (usize::try_from(from), usize::try_from(to)) {
                if from <= to && to <= whole.len() {
                    return Some(whole.slice(from..to));
                }
            }
        }
        self.file
            .map(from..to)
            .ok()
            .flatten()
            .map(Bytes::from_owner)
    }

    /// Reads the whole regions covering `start..start + len` (which must lie inside
    /// consecutive regions) without checking them: their bytes, where they start, and the
    /// regions. The caller checks each before it uses its bytes ([`check_regions`]).
    fn read_regions(
        &self,
        start: u64,
        len: u64,
    ) -> parquet::errors::Result<(Bytes, u64, &[Region])> {
        let end = start + len;
        let regions = self
            .regions
            .get(self.window.0..self.window.1)
            .unwrap_or(&self.regions[..]);
        // The caller's guess (a page's region, or a chunk's first), else a search.
        let first = [self.hint, 0]
            .into_iter()
            .find(|&i| regions.get(i).is_some_and(|r| r.offset == start))
            .unwrap_or_else(|| regions.partition_point(|r| r.offset + r.len <= start));
        let mut last = first;
        let outside = || {
            ParquetError::General(format!(
                "bytes {start}..{end} of {} are in no checked region",
                self.path.display()
            ))
        };
        let head = regions.get(first).ok_or_else(outside)?;
        if head.offset > start {
            return Err(outside());
        }
        while regions[last].offset + regions[last].len < end {
            let next = regions.get(last + 1).ok_or_else(outside)?;
            if next.offset != regions[last].offset + regions[last].len {
                return Err(outside());
            }
            last += 1;
        }
        let from = head.offset;
        let to = regions[last].offset + regions[last].len;
        // A scan's column chunk is mapped rather than copied (and zeroed first); a point
        // read's page is small enough that a copy costs less than a mapping. A mapping the
        // Env cannot make (or refuses) falls back to the copy.
        let mapped = match to - from >= MAP_READ_BYTES_MIN {
            true => self.mapped(from, to),
            false => None,
        };
        let buf = match mapped {
            Some(bytes) => bytes,
            None => {
                let mut buf = vec![0u8; (to - from) as usize];
                if let Err(e) = self.file.read_exact_at(&mut buf, from) {
                    let text = e.to_string();
                    if let Ok(mut slot) = self.io_failure.lock() {
                        *slot = Some(e);
                    }
                    return Err(ParquetError::General(format!(
                        "read of {} failed: {text}",
                        self.path.display()
                    )));
                }
                Bytes::from(buf)
            }
        };
        Ok((buf, from, &regions[first..=last]))
    }
}

/// Checks each of `regions` (consecutive, the first starting at file offset `from`)
/// against its CRC over `buf`, the bytes from `from` on.
fn check_regions(
    path: &Path,
    buf: &[u8],
    from: u64,
    regions: &[Region],
) -> parquet::errors::Result<()> {
    for region in regions {
        let at = usize::try_from(region.offset - from).unwrap_or(usize::MAX);
        let bytes = at
            .checked_add(region.len as usize)
            .and_then(|end| buf.get(at..end))
            .ok_or_else(|| {
                ParquetError::General(format!(
                    "bytes {}..{} of {} were not read",
                    region.offset,
                    region.offset + region.len,
                    path.display()
                ))
            })?;
        let actual = crc32c::crc32c(bytes);
        if actual != region.crc32c {
            return Err(ParquetError::General(format!(
                "checksum of bytes {}..{} of {} is {actual:#010x}, expected {:#010x}",
                region.offset,
                region.offset + region.len,
                path.display(),
                region.crc32c
            )));
        }
    }
    Ok(())
}

/// A column chunk's bytes from file offset `base` on, read ahead whole, with the regions
/// they cover. A page's regions are checked as the page is served, not when the chunk is
/// read: the check then brings the page into the cache just before its decode reads it,
/// where a check of the whole chunk up front had the decode read it again from further
/// out.
struct Prefetched {
    bytes: Bytes,
    base: u64,
    regions: Vec<Region>,
    path: Arc<Path>,
}

impl PageSource for Prefetched {
    fn read(&self, offset: u64, len: usize) -> parquet::errors::Result<Bytes> {
        let from = offset
            .checked_sub(self.base)
            .map(|f| f as usize)
            .filter(|&f| f.checked_add(len).is_some_and(|e| e <= self.bytes.len()))
            .ok_or_else(|| {
                ParquetError::General(format!("page {offset}+{len} outside the bytes read"))
            })?;
        // The regions overlapping the page, all of them (a page lies in whole regions).
        let end = offset + len as u64;
        let first = self.regions.partition_point(|r| r.offset + r.len <= offset);
        let last = self.regions.partition_point(|r| r.offset < end);
        let covering = self.regions.get(first..last).unwrap_or(&[]);
        let covered_from = covering.first().map_or(u64::MAX, |r| r.offset);
        let covered_to = covering.last().map_or(0, |r| r.offset + r.len);
        if len > 0 && (covered_from > offset || covered_to < end) {
            return Err(ParquetError::General(format!(
                "bytes {offset}..{end} of {} are in no checked region",
                self.path.display()
            )));
        }
        check_regions(&self.path, &self.bytes, self.base, covering)?;
        Ok(self.bytes.slice(from..from + len))
    }
}

impl PageSource for VerifiedReader {
    fn read(&self, offset: u64, len: usize) -> parquet::errors::Result<Bytes> {
        self.read_verified(offset, len as u64)
    }
}

impl Length for VerifiedReader {
    fn len(&self) -> u64 {
        self.len_bytes
    }
}

impl ChunkReader for VerifiedReader {
    type T = std::io::Cursor<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        // Page readers without a page index read a page header from here; serve the rest
        // of the region holding `start`.
        let region = self
            .regions
            .iter()
            .find(|r| start >= r.offset && start < r.offset + r.len)
            .ok_or_else(|| {
                ParquetError::General(format!("offset {start} is in no checked region"))
            })?;
        let bytes = self.read_verified(start, region.offset + region.len - start)?;
        Ok(std::io::Cursor::new(bytes))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.read_verified(start, length as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::{InOrder, OsEnv};
    use crate::schema::Column;

    /// The file `ArrowWriter` writes from the same rows, fed in batches of [`BATCH_ROWS`].
    fn written_by_arrow_writer(def: &TableDef, rows: &[&Row]) -> Vec<u8> {
        let schema = arrow_schema(def);
        let props = writer_properties(def, &rows[..rows.len().min(SAMPLE_ROWS)]);
        let mut writer =
            ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).expect("writer");
        let all: Vec<usize> = (0..def.columns().len()).collect();
        for chunk in rows.chunks(BATCH_ROWS) {
            let batch = rows_to_batch(def, schema.clone(), &all, chunk).expect("batch");
            writer.write(&batch).expect("write");
        }
        writer.into_inner().expect("close")
    }

    #[test]
    fn column_halves_write_the_bytes_arrow_writer_writes() {
        let def = TableDef::new(
            "t",
            vec![
                Column::new("s", DataType::Utf8),
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("v", DataType::Int64),
                Column::new("b", DataType::Binary).nullable(),
                Column::new("f", DataType::Float64).nullable(),
            ],
        )
        .expect("valid definition");
        // Three row groups, the last one partial, and a table of the key alone.
        let rows: Vec<Row> = (0..2 * ROW_GROUP_ROWS as i64 + 5_000)
            .map(|k| {
                vec![
                    Value::Utf8(format!("row {}", k * 7 % 1_000)),
                    Value::Int64(k * 3),
                    Value::Int64(k.wrapping_mul(0x9E37_79B9) % 1_000_000),
                    if k % 5 == 0 {
                        Value::Null
                    } else {
                        Value::Binary(k.to_le_bytes()[..(k % 8) as usize].to_vec())
                    },
                    if k % 3 == 0 {
                        Value::Null
                    } else {
                        Value::Float64(k as f64 / 7.0)
                    },
                ]
            })
            .collect();
        let key_only = TableDef::new("o", vec![Column::new("k", DataType::Int64).primary_key()])
            .expect("valid definition");
        let key_rows: Vec<Row> = (0..10_000).map(|k| vec![Value::Int64(k)]).collect();
        for (def, rows) in [(&def, &rows), (&key_only, &key_rows)] {
            let rows: Vec<&Row> = rows.iter().collect();
            let rows = &rows[..];
            let expected = written_by_arrow_writer(def, rows);
            for spawn in [&OsEnv::new() as &dyn Spawn, &InOrder] {
                let encoded = encode(def, rows, spawn).expect("encode");
                assert!(encoded.bytes[..] == expected[..], "bytes differ");
                assert_eq!(encoded.index.row_count, rows.len() as u64);
                assert!(encoded.index.filter.is_some());
            }
        }
    }

    /// A test value stream: splitmix64.
    fn mix(x: u64) -> u64 {
        let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A point read decodes each column's page itself when it can (integers delta-packed or
    /// plain, floats, booleans, strings and bytes compressed with zstd, LZ4 or not at all)
    /// and gives what parquet's column reader gives, at every page position; a dictionary
    /// or nullable column still goes through parquet's reader.
    #[test]
    fn point_reads_decode_every_page_shape_as_parquets_reader_does() {
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("wide", DataType::Int64),
                Column::new("ts", DataType::Timestamp),
                Column::new("f", DataType::Float64),
                Column::new("b", DataType::Bool),
                Column::new("s", DataType::Utf8),
                Column::new("rep", DataType::Utf8),
                Column::new("x", DataType::Binary),
                Column::new("few", DataType::Utf8),
                Column::new("n", DataType::Utf8).nullable(),
            ],
        )
        .expect("valid definition");
        let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let rows: Vec<Row> = (0..ROW_GROUP_ROWS as i64 + 3_000)
            .map(|k| {
                let r = mix(k as u64);
                let len = 1 + (r % 19) as usize;
                let text: String = (0..len)
                    .map(|i| alphabet[(mix(r ^ i as u64) % 36) as usize] as char)
                    .collect();
                vec![
                    Value::Int64(k * 5 - 1_000),
                    Value::Int64(r as i64),
                    Value::Timestamp(1_700_000_000_000_000 + k * 1_000 + (r % 7) as i64),
                    Value::Float64((r % 100_000) as f64 / 8.0),
                    Value::Bool(r.is_multiple_of(3)),
                    Value::Utf8(text),
                    Value::Utf8(format!("item-{:06}-item-{:06}", k % 100_000, k % 100_000)),
                    Value::Binary(r.to_le_bytes()[..(r % 9) as usize].to_vec()),
                    Value::Utf8(format!("kind {}", k % 5)),
                    match k % 4 {
                        0 => Value::Null,
                        _ => Value::Utf8(format!("n{k}")),
                    },
                ]
            })
            .collect();
        let refs: Vec<&Row> = rows.iter().collect();
        let encoded = encode(&def, &refs, &InOrder).expect("encode");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("segment.parquet");
        let fs = crate::env::Env::os().fs;
        let file: Arc<dyn File> = Arc::from(
            fs.open(&path, crate::env::OpenMode::Create)
                .expect("create"),
        );
        file.write_at(&encoded.bytes, 0).expect("write");
        let reader = SegmentReader::open(&path, file, &encoded.index).expect("reader");
        // The choices this test is about: s zstd, rep LZ4, x and the key uncompressed, wide
        // plain, few a dictionary.
        let meta = reader.metadata.metadata();
        let chunk = |c: usize| meta.row_group(0).column(c);
        assert!(matches!(chunk(5).compression(), Compression::ZSTD(_)));
        assert_eq!(chunk(6).compression(), Compression::LZ4_RAW);
        assert_eq!(chunk(7).compression(), Compression::UNCOMPRESSED);
        assert!(chunk(1).encodings().any(|e| e == Encoding::PLAIN));
        assert!(chunk(8).dictionary_page_offset().is_some());
        let direct = [1, 2, 3, 4, 5, 6, 7];
        let (mut seen, mut fell_back) = (0, 0);
        for row in (0..rows.len()).step_by(29).chain([rows.len() - 1]) {
            let key = row as i64 * 5 - 1_000;
            assert_eq!(
                reader.read_row(&def, row as u64, key).expect("read"),
                rows[row],
                "row {row}"
            );
            let rg = reader.row_group_of(row as u64).expect("row group");
            let within = (row as u64 - reader.row_group_rows(rg).start) as usize;
            for (c, column) in def.columns().iter().enumerate().skip(1) {
                match reader
                    .one_direct(rg, c, within, column.data_type)
                    .expect("direct")
                {
                    Some(value) => {
                        assert!(direct.contains(&c), "column {c} read directly");
                        assert_eq!(value, rows[row][c], "row {row} column {c}");
                        seen += 1;
                    }
                    None => {
                        assert!(!direct.contains(&c), "column {c} fell back");
                        fell_back += 1;
                    }
                }
            }
        }
        assert!(seen > 0 && fell_back > 0);
    }

    /// Malformed byte-array pages (bytes that passed a CRC but were written wrong) are
    /// errors, never panics or reads past the page.
    #[test]
    fn malformed_byte_array_pages_are_errors() {
        let mut lengths = Vec::new();
        let mut page = Vec::new();
        // A delta page of the lengths [3, 1, 2]: block 128 in 4 miniblocks, total 3,
        // first 3; then min delta -2, widths [2, 0, 0, 0] and one miniblock of 32 deltas.
        lengths.extend_from_slice(&[128, 1, 4, 3, 6, 3, 2, 0, 0, 0]);
        lengths.extend_from_slice(&[0b0000_1100, 0, 0, 0, 0, 0, 0, 0]);
        page.extend_from_slice(&lengths);
        page.extend_from_slice(b"abcdef");
        assert_eq!(delta_length_bytes_at(&page, 3, 0), Ok(&b"abc"[..]));
        assert_eq!(delta_length_bytes_at(&page, 3, 1), Ok(&b"d"[..]));
        assert_eq!(delta_length_bytes_at(&page, 3, 2), Ok(&b"ef"[..]));
        assert!(delta_length_bytes_at(&page, 3, 3).is_err());
        assert!(delta_length_bytes_at(&page, 4, 0).is_err());
        assert!(delta_length_bytes_at(&page[..page.len() - 1], 3, 2).is_err());
        assert!(plain_bytes_at(&[2, 0, 0, 0, b'a'], 1, 0).is_err());
        assert_eq!(
            plain_bytes_at(&[1, 0, 0, 0, b'a', 0, 0, 0, 0], 2, 1),
            Ok(&b""[..])
        );
        // Random bytes and random cuts: an error or a slice inside the page, never a panic.
        for seed in 0..20_000u64 {
            let r = mix(seed);
            let mut bytes: Vec<u8> = (0..(r % 64)).map(|i| mix(r ^ i) as u8).collect();
            if seed % 2 == 0 && !bytes.is_empty() {
                // Keep a plausible header so the decoder gets further.
                bytes[0] = 128;
            }
            let count = (r >> 8) as usize % 40;
            let at = (r >> 16) as usize % 41;
            for got in [
                delta_length_bytes_at(&bytes, count, at),
                plain_bytes_at(&bytes, count, at),
            ]
            .into_iter()
            .flatten()
            {
                assert!(got.len() <= bytes.len());
            }
        }
    }
}
