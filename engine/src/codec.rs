//! Byte encoding of values, rows and table definitions, shared by the log and checkpoints.
//!
//! Little-endian, length-prefixed, no padding. The layouts are in docs/FORMAT.md. Decoding
//! treats its input as untrusted: every length is checked against what remains and against
//! the engine's limits, and every failure is a [`DecodeError`] naming the offset, which the
//! caller turns into [`crate::Error::Corruption`] with the file.

use crate::limits;
use crate::rowstore::ValueRef;
use crate::schema::{Column, DataType, Row, TableDef, Value};

/// Why bytes could not be decoded, and where (offset from the start of the decoded slice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Offset of the field that failed.
    pub offset: usize,
    /// What was wrong.
    pub reason: String,
}

pub(crate) type DecodeResult<T> = std::result::Result<T, DecodeError>;

/// Appends encoded fields to a byte buffer.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    pub bytes: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    pub fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }

    pub fn u16(&mut self, v: u16) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u32(&mut self, v: u32) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn u64(&mut self, v: u64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    pub fn i64(&mut self, v: i64) {
        self.bytes.extend_from_slice(&v.to_le_bytes());
    }

    /// A u32 length then the bytes. Callers have checked the length against the limits.
    pub fn blob(&mut self, v: &[u8]) {
        self.u32(v.len() as u32);
        self.bytes.extend_from_slice(v);
    }

    pub fn value(&mut self, value: &Value) {
        self.value_ref(ValueRef::from(value));
    }

    pub fn value_ref(&mut self, value: ValueRef<'_>) {
        match value {
            ValueRef::Null => self.u8(0),
            ValueRef::Int64(v) => {
                self.u8(DataType::Int64.code());
                self.i64(v);
            }
            ValueRef::Float64(v) => {
                self.u8(DataType::Float64.code());
                self.u64(v.to_bits());
            }
            ValueRef::Utf8(v) => {
                self.u8(DataType::Utf8.code());
                self.blob(v.as_bytes());
            }
            ValueRef::Binary(v) => {
                self.u8(DataType::Binary.code());
                self.blob(v);
            }
            ValueRef::Bool(v) => {
                self.u8(DataType::Bool.code());
                self.u8(u8::from(v));
            }
            ValueRef::Timestamp(v) => {
                self.u8(DataType::Timestamp.code());
                self.i64(v);
            }
        }
    }

    pub fn row(&mut self, row: &[Value]) {
        self.u16(row.len() as u16);
        for value in row {
            self.value(value);
        }
    }

    pub fn table_def(&mut self, def: &TableDef) {
        self.blob(def.name().as_bytes());
        self.u16(def.columns().len() as u16);
        for column in def.columns() {
            self.blob(column.name.as_bytes());
            self.u8(column.data_type.code());
            let flags = u8::from(column.nullable) | (u8::from(column.primary_key) << 1);
            self.u8(flags);
        }
    }
}

/// Reads encoded fields from a byte slice, checking every length.
#[derive(Debug)]
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes, offset: 0 }
    }

    pub fn offset(&self) -> usize {
        self.offset
    }

    pub fn is_empty(&self) -> bool {
        self.offset == self.bytes.len()
    }

    pub fn error(&self, reason: impl Into<String>) -> DecodeError {
        DecodeError {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    pub fn take(&mut self, len: usize) -> DecodeResult<&'a [u8]> {
        let remaining = self.bytes.len() - self.offset;
        if len > remaining {
            return Err(self.error(format!("needs {len} bytes, only {remaining} remain")));
        }
        let out = &self.bytes[self.offset..self.offset + len];
        self.offset += len;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> DecodeResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> DecodeResult<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u32 length (at most `limit`) then that many bytes.
    pub fn blob(&mut self, limit: usize) -> DecodeResult<&'a [u8]> {
        let start = self.offset;
        let len = self.u32()? as usize;
        if len > limit {
            self.offset = start;
            return Err(self.error(format!("length {len} exceeds the limit {limit}")));
        }
        self.take(len)
    }

    pub fn string(&mut self, limit: usize) -> DecodeResult<String> {
        let start = self.offset;
        let bytes = self.blob(limit)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => {
                self.offset = start;
                Err(self.error(format!("invalid UTF-8: {e}")))
            }
        }
    }

    pub fn value(&mut self) -> DecodeResult<Value> {
        let start = self.offset;
        let code = self.u8()?;
        if code == 0 {
            return Ok(Value::Null);
        }
        let Some(data_type) = DataType::from_code(code) else {
            self.offset = start;
            return Err(self.error(format!("unknown value type code {code}")));
        };
        Ok(match data_type {
            DataType::Int64 => Value::Int64(self.i64()?),
            DataType::Float64 => Value::Float64(f64::from_bits(self.u64()?)),
            DataType::Utf8 => Value::Utf8(self.string(limits::VALUE_BYTES_MAX)?),
            DataType::Binary => Value::Binary(self.blob(limits::VALUE_BYTES_MAX)?.to_vec()),
            DataType::Bool => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                other => {
                    self.offset -= 1;
                    return Err(self.error(format!("invalid Bool byte {other}")));
                }
            },
            DataType::Timestamp => Value::Timestamp(self.i64()?),
        })
    }

    pub fn row(&mut self) -> DecodeResult<Row> {
        let count = self.u16()? as usize;
        if count > limits::COLUMNS_MAX {
            return Err(self.error(format!("row of {count} values exceeds the column limit")));
        }
        let mut row = Vec::with_capacity(count);
        for _ in 0..count {
            row.push(self.value()?);
        }
        Ok(row)
    }

    pub fn table_def(&mut self) -> DecodeResult<TableDef> {
        let start = self.offset;
        let name = self.string(limits::NAME_BYTES_MAX)?;
        let count = self.u16()? as usize;
        if count > limits::COLUMNS_MAX {
            return Err(self.error(format!("{count} columns exceed the limit")));
        }
        let mut columns = Vec::with_capacity(count);
        for _ in 0..count {
            let column_name = self.string(limits::NAME_BYTES_MAX)?;
            let code = self.u8()?;
            let Some(data_type) = DataType::from_code(code) else {
                return Err(self.error(format!("unknown column type code {code}")));
            };
            let flags = self.u8()?;
            if flags & !0b11 != 0 {
                return Err(self.error(format!("unknown column flags {flags:#x}")));
            }
            columns.push(Column {
                name: column_name,
                data_type,
                nullable: flags & 1 != 0,
                primary_key: flags & 2 != 0,
            });
        }
        TableDef::new(name, columns).map_err(|e| DecodeError {
            offset: start,
            reason: format!("stored table definition is invalid: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let row = vec![
            Value::Null,
            Value::Int64(i64::MIN),
            Value::Float64(f64::NAN),
            Value::Utf8("héllo".into()),
            Value::Binary(vec![0, 255, 7]),
            Value::Bool(true),
            Value::Timestamp(-1),
        ];
        let mut enc = Encoder::new();
        enc.row(&row);
        let mut dec = Decoder::new(&enc.bytes);
        assert_eq!(dec.row().unwrap(), row);
        assert!(dec.is_empty());
    }

    #[test]
    fn truncated_input_is_an_error_at_every_length() {
        let mut enc = Encoder::new();
        enc.row(&[Value::Utf8("abcdef".into()), Value::Int64(3)]);
        for len in 0..enc.bytes.len() {
            let mut dec = Decoder::new(&enc.bytes[..len]);
            assert!(dec.row().is_err(), "prefix of {len} bytes decoded");
        }
    }

    #[test]
    fn oversized_length_is_refused_without_allocating() {
        let mut bytes = vec![DataType::Binary.code()];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        let err = Decoder::new(&bytes).value().unwrap_err();
        assert!(err.reason.contains("exceeds the limit"), "{err:?}");
    }
}
