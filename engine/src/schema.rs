//! Column types, values, rows and table definitions, and the validation of user input
//! against them.
//!
//! A row is a `Vec<Value>` in column order, the primary key included. Validation happens
//! before anything is logged or applied, so a rejected write changes nothing.

use crate::error::{Error, Result};
use crate::limits;
use std::fmt;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DataType {
    /// 64-bit signed integer.
    Int64,
    /// 64-bit IEEE float.
    Float64,
    /// UTF-8 text.
    Utf8,
    /// Bytes.
    Binary,
    /// Boolean.
    Bool,
    /// Microseconds since the Unix epoch (UTC).
    Timestamp,
}

impl DataType {
    pub(crate) fn code(self) -> u8 {
        match self {
            DataType::Int64 => 1,
            DataType::Float64 => 2,
            DataType::Utf8 => 3,
            DataType::Binary => 4,
            DataType::Bool => 5,
            DataType::Timestamp => 6,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<DataType> {
        Some(match code {
            1 => DataType::Int64,
            2 => DataType::Float64,
            3 => DataType::Utf8,
            4 => DataType::Binary,
            5 => DataType::Bool,
            6 => DataType::Timestamp,
            _ => return None,
        })
    }

    /// Whether a column of this type can be the primary key.
    pub fn can_be_primary_key(self) -> bool {
        matches!(self, DataType::Int64 | DataType::Timestamp)
    }
}

/// One value of a row.
///
/// Equality is exact: floats compare by bit pattern, so a NaN read back equals the NaN
/// written, and 0.0 differs from -0.0.
#[derive(Debug, Clone)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// An Int64 value.
    Int64(i64),
    /// A Float64 value.
    Float64(f64),
    /// A Utf8 value.
    Utf8(String),
    /// A Binary value.
    Binary(Vec<u8>),
    /// A Bool value.
    Bool(bool),
    /// A Timestamp value, microseconds since the Unix epoch.
    Timestamp(i64),
}

/// Exact equality (see [`Value`]), shared with [`crate::ValueRef`] by borrowing as one.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        crate::rowstore::ValueRef::from(self) == crate::rowstore::ValueRef::from(other)
    }
}

impl Eq for Value {}

impl Value {
    /// The name of this value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int64(_) => "Int64",
            Value::Float64(_) => "Float64",
            Value::Utf8(_) => "Utf8",
            Value::Binary(_) => "Binary",
            Value::Bool(_) => "Bool",
            Value::Timestamp(_) => "Timestamp",
        }
    }

    fn matches(&self, data_type: DataType) -> bool {
        matches!(
            (self, data_type),
            (Value::Int64(_), DataType::Int64)
                | (Value::Float64(_), DataType::Float64)
                | (Value::Utf8(_), DataType::Utf8)
                | (Value::Binary(_), DataType::Binary)
                | (Value::Bool(_), DataType::Bool)
                | (Value::Timestamp(_), DataType::Timestamp)
        )
    }

    fn size_bytes(&self) -> usize {
        match self {
            Value::Utf8(s) => s.len(),
            Value::Binary(b) => b.len(),
            _ => 8,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            Value::Int64(v) | Value::Timestamp(v) => write!(f, "{v}"),
            Value::Float64(v) => write!(f, "{v}"),
            Value::Utf8(v) => write!(f, "{v:?}"),
            Value::Binary(v) => write!(f, "<{} bytes>", v.len()),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

/// A row: one value per column, in column order.
pub type Row = Vec<Value>;

/// A column of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name, unique in the table.
    pub name: String,
    /// Its type.
    pub data_type: DataType,
    /// Whether it accepts NULL (never for the primary key).
    pub nullable: bool,
    /// Whether it is the primary key (exactly one column is).
    pub primary_key: bool,
}

impl Column {
    /// A non-null column.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Column {
        Column {
            name: name.into(),
            data_type,
            nullable: false,
            primary_key: false,
        }
    }

    /// This column, nullable.
    pub fn nullable(mut self) -> Column {
        self.nullable = true;
        self
    }

    /// This column, as the primary key.
    pub fn primary_key(mut self) -> Column {
        self.primary_key = true;
        self
    }
}

/// The definition of a table: its name and columns. Build with [`TableDef::new`], which
/// validates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDef {
    name: String,
    columns: Vec<Column>,
    primary_key_index: usize,
}

/// Checks a table or column name: 1 to [`limits::NAME_BYTES_MAX`] bytes, no control
/// characters.
pub(crate) fn validate_name(what: &'static str, name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "it is empty".to_string()
    } else if name.len() > limits::NAME_BYTES_MAX {
        format!(
            "it is {} bytes; the limit is {}",
            name.len(),
            limits::NAME_BYTES_MAX
        )
    } else if name.chars().any(char::is_control) {
        "it contains a control character".to_string()
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        what,
        name: name.to_string(),
        reason,
    })
}

impl TableDef {
    /// A table definition, validated: a valid name, 1 to [`limits::COLUMNS_MAX`] columns
    /// with valid, unique names, and exactly one non-nullable Int64 or Timestamp primary key.
    pub fn new(name: impl Into<String>, columns: Vec<Column>) -> Result<TableDef> {
        let name = name.into();
        validate_name("table", &name)?;
        let invalid = |reason: String| Error::InvalidSchema {
            table: name.clone(),
            reason,
        };
        if columns.is_empty() {
            return Err(invalid("a table needs at least one column".into()));
        }
        if columns.len() > limits::COLUMNS_MAX {
            return Err(invalid(format!(
                "{} columns; the limit is {}",
                columns.len(),
                limits::COLUMNS_MAX
            )));
        }
        for (i, column) in columns.iter().enumerate() {
            validate_name("column", &column.name)?;
            if columns[..i].iter().any(|c| c.name == column.name) {
                return Err(invalid(format!("column {:?} appears twice", column.name)));
            }
        }
        let keys: Vec<usize> = (0..columns.len())
            .filter(|&i| columns[i].primary_key)
            .collect();
        let primary_key_index = match keys.as_slice() {
            [] => return Err(invalid("no primary key column".into())),
            [one] => *one,
            _ => {
                return Err(invalid(format!(
                    "{} primary key columns; exactly one is allowed",
                    keys.len()
                )))
            }
        };
        let key_column = &columns[primary_key_index];
        if !key_column.data_type.can_be_primary_key() {
            return Err(invalid(format!(
                "primary key {:?} has type {:?}; it must be Int64 or Timestamp",
                key_column.name, key_column.data_type
            )));
        }
        if key_column.nullable {
            return Err(invalid(format!(
                "primary key {:?} cannot be nullable",
                key_column.name
            )));
        }
        Ok(TableDef {
            name,
            columns,
            primary_key_index,
        })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The columns, in row order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Position of the primary key column.
    pub fn primary_key_index(&self) -> usize {
        self.primary_key_index
    }

    /// Position of the column named `name`.
    pub fn column_index(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| Error::ColumnNotFound {
                table: self.name.clone(),
                column: name.to_string(),
            })
    }

    /// Checks `row` against this definition; returns its primary key.
    pub fn validate_row(&self, row: &[Value]) -> Result<i64> {
        if row.len() != self.columns.len() {
            return Err(Error::RowArity {
                table: self.name.clone(),
                expected: self.columns.len(),
                found: row.len(),
            });
        }
        for (value, column) in row.iter().zip(&self.columns) {
            if let Value::Null = value {
                if !column.nullable {
                    return Err(Error::NullNotAllowed {
                        table: self.name.clone(),
                        column: column.name.clone(),
                    });
                }
                continue;
            }
            if !value.matches(column.data_type) {
                return Err(Error::TypeMismatch {
                    table: self.name.clone(),
                    column: column.name.clone(),
                    expected: column.data_type,
                    found: value.type_name(),
                });
            }
            let size_bytes = value.size_bytes();
            if size_bytes > limits::VALUE_BYTES_MAX {
                return Err(Error::ValueTooLarge {
                    table: self.name.clone(),
                    column: column.name.clone(),
                    size_bytes,
                    limit_bytes: limits::VALUE_BYTES_MAX,
                });
            }
        }
        self.key_of(row).ok_or_else(|| Error::NullNotAllowed {
            table: self.name.clone(),
            column: self.columns[self.primary_key_index].name.clone(),
        })
    }

    /// The primary key of `row`, if it has one of a key type where the key belongs.
    pub(crate) fn key_of(&self, row: &[Value]) -> Option<i64> {
        match row.get(self.primary_key_index) {
            Some(Value::Int64(k)) | Some(Value::Timestamp(k)) => Some(*k),
            _ => None,
        }
    }
}
