//! How SQL's types map onto the engine's, and Arrow batches back into engine rows.
//!
//! | SQL (DataFusion's Arrow type) | engine |
//! |---|---|
//! | `BIGINT`, `INT`, `SMALLINT`, `TINYINT` (Int64, Int32, Int16, Int8) | Int64 (narrower integers widen losslessly) |
//! | `DOUBLE`, `REAL`, `FLOAT` (Float64, Float32) | Float64 |
//! | `VARCHAR`, `TEXT`, `STRING` (Utf8, Utf8View, LargeUtf8) | Utf8 |
//! | `BYTEA`, `BLOB` (Binary, BinaryView, LargeBinary) | Binary |
//! | `BOOLEAN` | Bool |
//! | `TIMESTAMP` (any unit) | Timestamp: microseconds since the epoch, UTC |
//!
//! Unsigned integers (whose top half does not fit), decimals, dates, times, intervals and
//! nested types are refused with [`Error::Unsupported`] naming the column.

use crate::error::{Error, Result};
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType as ArrowType, Field, TimeUnit};
use omendb::{DataType, Row, TableDef, Value};

/// The engine type a SQL column of `field`'s Arrow type is stored as.
pub fn engine_type(field: &Field) -> Result<DataType> {
    Ok(match field.data_type() {
        ArrowType::Int8 | ArrowType::Int16 | ArrowType::Int32 | ArrowType::Int64 => DataType::Int64,
        ArrowType::Float16 | ArrowType::Float32 | ArrowType::Float64 => DataType::Float64,
        ArrowType::Utf8 | ArrowType::Utf8View | ArrowType::LargeUtf8 => DataType::Utf8,
        ArrowType::Binary | ArrowType::BinaryView | ArrowType::LargeBinary => DataType::Binary,
        ArrowType::Boolean => DataType::Bool,
        ArrowType::Timestamp(_, _) => DataType::Timestamp,
        other => {
            return Err(Error::Unsupported(format!(
                "column {:?} has SQL type {other}, which OmenDB does not store; use BIGINT, \
                 DOUBLE, VARCHAR, BYTEA, BOOLEAN or TIMESTAMP",
                field.name()
            )))
        }
    })
}

/// The Arrow type the engine yields for a column of `data_type` (as
/// [`omendb::Database::arrow_schema`] has it).
pub fn arrow_type(data_type: DataType) -> ArrowType {
    match data_type {
        DataType::Int64 => ArrowType::Int64,
        DataType::Float64 => ArrowType::Float64,
        DataType::Utf8 => ArrowType::Utf8,
        DataType::Binary => ArrowType::Binary,
        DataType::Bool => ArrowType::Boolean,
        DataType::Timestamp => ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    }
}

/// The rows of `batch`, whose columns are `def`'s columns in order (cast to the engine's
/// Arrow types where they differ, as DataFusion's literals may be), as engine rows. The
/// engine validates them again when they are written (NULLs, sizes).
pub fn batch_to_rows(def: &TableDef, batch: &RecordBatch) -> Result<Vec<Row>> {
    if batch.num_columns() != def.columns().len() {
        return Err(Error::Unsupported(format!(
            "table {:?} has {} columns, the statement gave {}",
            def.name(),
            def.columns().len(),
            batch.num_columns()
        )));
    }
    let mut rows: Vec<Row> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(def.columns().len()))
        .collect();
    for (column, array) in def.columns().iter().zip(batch.columns()) {
        let wanted = arrow_type(column.data_type);
        let array: ArrayRef = if array.data_type() == &wanted {
            array.clone()
        } else {
            cast(array, &wanted).map_err(|e| {
                Error::Unsupported(format!(
                    "column {:?} of table {:?}: a value of type {} does not convert to {}: {e}",
                    column.name,
                    def.name(),
                    array.data_type(),
                    wanted
                ))
            })?
        };
        push_column(column.data_type, &array, &mut rows)?;
    }
    Ok(rows)
}

fn push_column(data_type: DataType, array: &ArrayRef, rows: &mut [Row]) -> Result<()> {
    fn each<A: Array + 'static>(
        array: &ArrayRef,
        rows: &mut [Row],
        value: impl Fn(&A, usize) -> Value,
    ) -> Result<()> {
        let typed = array.as_any().downcast_ref::<A>().ok_or_else(|| {
            Error::Unsupported(format!("unexpected Arrow array type {}", array.data_type()))
        })?;
        for (i, row) in rows.iter_mut().enumerate() {
            row.push(if typed.is_null(i) {
                Value::Null
            } else {
                value(typed, i)
            });
        }
        Ok(())
    }
    match data_type {
        DataType::Int64 => each::<Int64Array>(array, rows, |a, i| Value::Int64(a.value(i))),
        DataType::Float64 => each::<Float64Array>(array, rows, |a, i| Value::Float64(a.value(i))),
        DataType::Utf8 => each::<StringArray>(array, rows, |a, i| Value::Utf8(a.value(i).into())),
        DataType::Binary => {
            each::<BinaryArray>(array, rows, |a, i| Value::Binary(a.value(i).to_vec()))
        }
        DataType::Bool => each::<BooleanArray>(array, rows, |a, i| Value::Bool(a.value(i))),
        DataType::Timestamp => {
            each::<TimestampMicrosecondArray>(array, rows, |a, i| Value::Timestamp(a.value(i)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::IntervalUnit;

    #[test]
    fn every_engine_type_round_trips_through_its_arrow_type() {
        for data_type in [
            DataType::Int64,
            DataType::Float64,
            DataType::Utf8,
            DataType::Binary,
            DataType::Bool,
            DataType::Timestamp,
        ] {
            let field = Field::new("c", arrow_type(data_type), true);
            assert_eq!(engine_type(&field).unwrap(), data_type);
        }
    }

    #[test]
    fn types_without_an_engine_type_are_refused_naming_the_column() {
        for arrow in [
            ArrowType::UInt64,
            ArrowType::Decimal128(10, 2),
            ArrowType::Date32,
            ArrowType::Interval(IntervalUnit::DayTime),
        ] {
            let err = engine_type(&Field::new("price", arrow, true)).unwrap_err();
            assert!(err.to_string().contains("\"price\""), "{err}");
        }
    }
}
