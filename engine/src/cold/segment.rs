//! One cold segment: an immutable, key-sorted Parquet file, and how its bytes are made,
//! checked and read.
//!
//! Bytes are encoded in memory by the parquet crate's `ArrowWriter` and written through the
//! `Env` file (parquet never opens a file itself). Reads go through [`VerifiedReader`], a
//! `ChunkReader` over `File::read_at` that checks every byte range it hands to parquet
//! against a CRC-32C computed when the segment was written or loaded (whose whole-file
//! checksum is in the manifest): a damaged page is a `Corruption` error naming the file,
//! never a wrong row. The footer is parsed once, from verified bytes, and kept in memory.
//!
//! Layout choices (docs/FORMAT.md): one column per table column, Arrow types mapped 1:1
//! (Timestamp as microseconds UTC), the key column sorted ascending and unique; row groups of
//! [`ROW_GROUP_ROWS`] rows with min/max statistics for pruning; data pages of at most
//! [`PAGE_ROWS`] rows with the page index (offset index) written, so a point read decodes
//! one page per column; Snappy compression (pure Rust, fast to decode, no C build).

use crate::env::File;
use crate::error::{Error, Result};
use crate::rowstore::{RowValues, ValueRef};
use crate::schema::{DataType, Row, TableDef, Value};
use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection,
    RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::reader::{ChunkReader, Length};
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnPath;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Rows per Parquet row group: the unit of statistics pruning in scans.
pub(crate) const ROW_GROUP_ROWS: usize = 128 * 1024;
/// Rows per data page at most: the unit a point read decodes.
pub(crate) const PAGE_ROWS: usize = 4096;
/// Largest dictionary page; past it a column chunk falls back to plain encoding.
pub(crate) const DICTIONARY_BYTES_MAX: usize = 64 * 1024;
/// Rows per Arrow batch when reading.
pub(crate) const BATCH_ROWS: usize = 8192;

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

/// Rows (validated for `def`) as one Arrow batch with `schema`'s columns, which are
/// `columns` of the table, in that order.
pub(crate) fn rows_to_batch<'r, R: RowValues<'r>>(
    def: &TableDef,
    schema: SchemaRef,
    columns: &[usize],
    rows: impl Iterator<Item = R> + Clone,
) -> Result<RecordBatch> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .map(|&i| column_array(def.columns()[i].data_type, i, rows.clone()))
        .collect();
    RecordBatch::try_new(schema, arrays).map_err(|e| Error::InvalidSchema {
        table: def.name().to_string(),
        reason: format!("rows do not form an Arrow batch: {e}"),
    })
}

fn column_array<'r, R: RowValues<'r>>(
    data_type: DataType,
    i: usize,
    rows: impl Iterator<Item = R>,
) -> ArrayRef {
    match data_type {
        DataType::Int64 => Arc::new(Int64Array::from_iter(rows.map(|r| match r.value(i) {
            ValueRef::Int64(v) => Some(v),
            _ => None,
        }))),
        DataType::Float64 => Arc::new(Float64Array::from_iter(rows.map(|r| r.value(i).as_f64()))),
        DataType::Utf8 => Arc::new(StringArray::from_iter(rows.map(|r| r.value(i).as_str()))),
        DataType::Binary => Arc::new(BinaryArray::from_iter(rows.map(|r| r.value(i).as_bytes()))),
        DataType::Bool => Arc::new(BooleanArray::from_iter(rows.map(|r| r.value(i).as_bool()))),
        DataType::Timestamp => Arc::new(
            TimestampMicrosecondArray::from_iter(rows.map(|r| match r.value(i) {
                ValueRef::Timestamp(v) => Some(v),
                _ => None,
            }))
            .with_timezone("UTC"),
        ),
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

/// Encodes `rows` (valid for `def`, strictly ascending by key) as a Parquet file.
pub(crate) fn encode<'r, R: RowValues<'r>>(def: &TableDef, rows: &[R]) -> Result<Vec<u8>> {
    let schema = arrow_schema(def);
    let all: Vec<usize> = (0..def.columns().len()).collect();
    // No dictionary for the key column (all distinct: its dictionary would grow to the
    // page-size limit and every point read would decompress it), and small dictionaries
    // elsewhere, so a point read decodes little more than its pages.
    let key_column = ColumnPath::from(def.columns()[def.primary_key_index()].name.as_str());
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_column_dictionary_enabled(key_column, false)
        .set_dictionary_page_size_limit(DICTIONARY_BYTES_MAX)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_write_batch_size(PAGE_ROWS.min(1024))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("omendb {}", env!("CARGO_PKG_VERSION")))
        .build();
    let fail = |e: ParquetError| Error::InvalidSchema {
        table: def.name().to_string(),
        reason: format!("parquet encoding failed: {e}"),
    };
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(fail)?;
    for chunk in rows.chunks(BATCH_ROWS) {
        let batch = rows_to_batch(def, schema.clone(), &all, chunk.iter().copied())?;
        writer.write(&batch).map_err(fail)?;
    }
    writer.into_inner().map_err(fail)
}

/// A segment open for reading: its file, its parsed footer and page index, and the CRC of
/// every byte range the reader may ask for.
pub(crate) struct SegmentReader {
    pub path: PathBuf,
    file: Arc<dyn File>,
    len_bytes: u64,
    pub metadata: ArrowReaderMetadata,
    /// (offset, length) of each column chunk, page and dictionary region -> CRC-32C.
    regions: Arc<BTreeMap<(u64, u64), u32>>,
    /// Column chunks (offset, length), for ranges that are no exact region.
    chunks: Arc<Vec<(u64, u64)>>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::corruption(path, 0, reason)
}

impl SegmentReader {
    /// Opens a segment whose whole content is `bytes` (already checked against the
    /// manifest's CRC) and which stays readable through `file`.
    pub fn new(path: &Path, file: Arc<dyn File>, bytes: Bytes) -> Result<SegmentReader> {
        let options = ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Required);
        let metadata = ArrowReaderMetadata::load(&bytes, options)
            .map_err(|e| corrupt(path, format!("unreadable Parquet footer: {e}")))?;
        let meta = metadata.metadata().clone();
        let mut regions = BTreeMap::new();
        let mut chunks = Vec::new();
        let len_bytes = bytes.len() as u64;
        let add = |offset: u64, len: u64, regions: &mut BTreeMap<(u64, u64), u32>| {
            let end = offset.checked_add(len).filter(|&e| e <= len_bytes);
            match end {
                Some(end) => {
                    regions.insert(
                        (offset, len),
                        crc32c::crc32c(&bytes[offset as usize..end as usize]),
                    );
                    Ok(())
                }
                None => Err(corrupt(
                    path,
                    format!("region {offset}+{len} past the end ({len_bytes} bytes)"),
                )),
            }
        };
        for (rg_index, rg) in meta.row_groups().iter().enumerate() {
            for (col_index, column) in rg.columns().iter().enumerate() {
                let (start, len) = column.byte_range();
                add(start, len, &mut regions)?;
                chunks.push((start, len));
                let pages = meta
                    .offset_index()
                    .and_then(|index| index.get(rg_index)?.get(col_index));
                if let Some(pages) = pages {
                    let locations = pages.page_locations();
                    if let Some(first) = locations.first() {
                        let first = first.offset as u64;
                        if first > start {
                            add(start, first - start, &mut regions)?;
                        }
                    }
                    for page in locations {
                        add(
                            page.offset as u64,
                            page.compressed_page_size as u64,
                            &mut regions,
                        )?;
                    }
                }
            }
        }
        chunks.sort_unstable();
        Ok(SegmentReader {
            path: path.to_path_buf(),
            file,
            len_bytes,
            metadata,
            regions: Arc::new(regions),
            chunks: Arc::new(chunks),
        })
    }

    fn chunk_reader(&self) -> VerifiedReader {
        VerifiedReader {
            io_failure: Arc::new(Mutex::new(None)),
            path: self.path.clone(),
            file: self.file.clone(),
            len_bytes: self.len_bytes,
            regions: self.regions.clone(),
            chunks: self.chunks.clone(),
        }
    }

    /// The first and last row index of each row group.
    pub fn row_group_rows(&self) -> Vec<(u64, u64)> {
        let mut start = 0u64;
        self.metadata
            .metadata()
            .row_groups()
            .iter()
            .map(|rg| {
                let rows = rg.num_rows() as u64;
                let range = (start, start + rows);
                start += rows;
                range
            })
            .collect()
    }

    /// The min and max of Int64 column `column` in row group `rg`, from the statistics.
    pub fn int_stats(&self, rg: usize, column: usize) -> Option<(i64, i64)> {
        let stats = self
            .metadata
            .metadata()
            .row_groups()
            .get(rg)?
            .columns()
            .get(column)?
            .statistics()?;
        match stats {
            Statistics::Int64(s) => Some((*s.min_opt()?, *s.max_opt()?)),
            _ => None,
        }
    }

    /// Reads `columns` (table column indices) of the rows of row groups `row_groups`, with
    /// `selection` (relative to those row groups) if given.
    pub fn read(
        &self,
        columns: &[usize],
        row_groups: Vec<usize>,
        selection: Option<RowSelection>,
    ) -> Result<Vec<RecordBatch>> {
        let mask = ProjectionMask::roots(
            self.metadata.metadata().file_metadata().schema_descr(),
            columns.iter().copied(),
        );
        let chunk_reader = self.chunk_reader();
        // Parquet flattens errors to text; an I/O failure of the disk is kept aside so it is
        // reported as I/O, and anything else as corruption.
        let io_failure = chunk_reader.io_failure.clone();
        let fail = |reason: String| {
            let taken = io_failure.lock().ok().and_then(|mut slot| slot.take());
            match taken {
                Some(e) => Error::io("read segment", &self.path, e),
                None => corrupt(&self.path, format!("unreadable Parquet: {reason}")),
            }
        };
        let mut builder =
            ParquetRecordBatchReaderBuilder::new_with_metadata(chunk_reader, self.metadata.clone())
                .with_projection(mask)
                .with_row_groups(row_groups)
                .with_batch_size(BATCH_ROWS);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        let reader = builder.build().map_err(|e| fail(e.to_string()))?;
        let mut batches = Vec::new();
        for batch in reader {
            batches.push(batch.map_err(|e| fail(e.to_string()))?);
        }
        Ok(batches)
    }

    /// Reads the one row at index `row` (of the whole segment), all columns.
    pub fn read_row(&self, def: &TableDef, row: u64) -> Result<Row> {
        let groups = self.row_group_rows();
        let rg = groups
            .iter()
            .position(|&(start, end)| row >= start && row < end)
            .ok_or_else(|| corrupt(&self.path, format!("row {row} is in no row group")))?;
        let within = (row - groups[rg].0) as usize;
        let rest = (groups[rg].1 - row - 1) as usize;
        let mut selectors = Vec::with_capacity(3);
        if within > 0 {
            selectors.push(RowSelector::skip(within));
        }
        selectors.push(RowSelector::select(1));
        if rest > 0 {
            selectors.push(RowSelector::skip(rest));
        }
        let all: Vec<usize> = (0..def.columns().len()).collect();
        let batches = self.read(&all, vec![rg], Some(RowSelection::from(selectors)))?;
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| corrupt(&self.path, format!("row {row} missing")))?;
        batch_row(def, batch, 0, &self.path)
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

/// A `ChunkReader` over an `Env` file that checks each range against the CRCs taken from
/// verified bytes.
struct VerifiedReader {
    /// The last I/O error of the file (not a checksum mismatch).
    io_failure: Arc<Mutex<Option<std::io::Error>>>,
    path: PathBuf,
    file: Arc<dyn File>,
    len_bytes: u64,
    regions: Arc<BTreeMap<(u64, u64), u32>>,
    chunks: Arc<Vec<(u64, u64)>>,
}

impl VerifiedReader {
    fn read_checked(&self, offset: u64, len: u64, crc: u32) -> parquet::errors::Result<Bytes> {
        let mut buf = vec![0u8; len as usize];
        if let Err(e) = self.file.read_exact_at(&mut buf, offset) {
            let text = e.to_string();
            if let Ok(mut slot) = self.io_failure.lock() {
                *slot = Some(e);
            }
            return Err(ParquetError::General(format!(
                "read of {} failed: {text}",
                self.path.display()
            )));
        }
        let actual = crc32c::crc32c(&buf);
        if actual != crc {
            return Err(ParquetError::General(format!(
                "checksum of bytes {offset}..{} of {} is {actual:#010x}, expected {crc:#010x}",
                offset + len,
                self.path.display()
            )));
        }
        Ok(Bytes::from(buf))
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
        // Only page readers without a page index use this; serve the rest of the column
        // chunk holding `start`.
        let &(chunk_start, chunk_len) = self
            .chunks
            .iter()
            .find(|&&(s, l)| start >= s && start < s + l)
            .ok_or_else(|| {
                ParquetError::General(format!("offset {start} is in no column chunk"))
            })?;
        let crc = self.regions[&(chunk_start, chunk_len)];
        let bytes = self.read_checked(chunk_start, chunk_len, crc)?;
        Ok(std::io::Cursor::new(
            bytes.slice((start - chunk_start) as usize..),
        ))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let len = length as u64;
        if let Some(&crc) = self.regions.get(&(start, len)) {
            return self.read_checked(start, len, crc);
        }
        let &(chunk_start, chunk_len) = self
            .chunks
            .iter()
            .find(|&&(s, l)| start >= s && start + len <= s + l)
            .ok_or_else(|| {
                ParquetError::General(format!("bytes {start}+{len} are in no column chunk"))
            })?;
        let crc = self.regions[&(chunk_start, chunk_len)];
        let bytes = self.read_checked(chunk_start, chunk_len, crc)?;
        let from = (start - chunk_start) as usize;
        Ok(bytes.slice(from..from + length))
    }
}
