//! Skipping cold row groups by their statistics (zone maps): a scan given value ranges of
//! some Int64 or Timestamp columns reads no row group whose min/max for one of those columns
//! lies outside its range.
//!
//! Every segment's Parquet footer holds each column chunk's min, max and null count per row
//! group (131,072 rows), written by the parquet crate when the segment was encoded. A range
//! is a promise the caller makes, not a filter the scan applies: rows outside it may still
//! be returned (a kept row group returns all its visible rows, and the hot tier is never
//! pruned), so the caller filters again. That is how SQL uses it (`Inexact` pushdown). The
//! gain depends on the data: a column that rises with the key (a time stamp, an id) prunes
//! well; a column uniform over every row group prunes nothing.
//!
//! Floats are not pruned: Parquet statistics leave NaN out of min/max, and a comparison
//! engine that orders NaN above every number would find rows the statistics deny.

use crate::cold::segment::SegmentReader;
use crate::error::{Error, Result};
use crate::schema::{DataType, TableDef};
use parquet::file::statistics::Statistics;
use std::ops::Bound;

/// Values of one column a scan's caller needs: rows whose value lies outside `low..high`,
/// or is NULL, may be left out of the cold part of the scan. See
/// [`crate::Database::scan_stream_pruned`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnRange {
    /// An Int64 or Timestamp column of the table.
    pub column: String,
    pub low: Bound<i64>,
    pub high: Bound<i64>,
}

/// Column ranges resolved against a table: (column index, low, high).
#[derive(Debug, Clone, Default)]
pub(crate) struct Pruning {
    ranges: Vec<(usize, Bound<i64>, Bound<i64>)>,
}

impl Pruning {
    /// Resolves `ranges` against `def`: each names a column of the table
    /// (`ColumnNotFound`) of type Int64 or Timestamp (`TypeMismatch`).
    pub fn new(def: &TableDef, ranges: &[ColumnRange]) -> Result<Pruning> {
        let mut resolved = Vec::with_capacity(ranges.len());
        for range in ranges {
            let Some(i) = def.columns().iter().position(|c| c.name == range.column) else {
                return Err(Error::ColumnNotFound {
                    table: def.name().to_string(),
                    column: range.column.clone(),
                });
            };
            let data_type = def.columns()[i].data_type;
            if !matches!(data_type, DataType::Int64 | DataType::Timestamp) {
                return Err(Error::TypeMismatch {
                    table: def.name().to_string(),
                    column: range.column.clone(),
                    expected: data_type,
                    found: "Int64 range",
                });
            }
            resolved.push((i, range.low, range.high));
        }
        Ok(Pruning { ranges: resolved })
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Whether row group `rg` of the segment `reader` reads may hold a row inside every
    /// range. A chunk without statistics is kept; one whose values are all NULL is not.
    pub fn keeps(&self, reader: &SegmentReader, rg: usize) -> bool {
        let meta = reader.metadata.metadata();
        let Some(group) = meta.row_groups().get(rg) else {
            return true;
        };
        self.ranges.iter().all(|&(column, low, high)| {
            let Some(Statistics::Int64(stats)) =
                group.columns().get(column).and_then(|c| c.statistics())
            else {
                return true;
            };
            match (stats.min_opt(), stats.max_opt()) {
                (Some(&min), Some(&max)) => super::overlaps(low, high, min, max),
                _ => stats.null_count_opt() != Some(group.num_rows() as u64),
            }
        })
    }
}
