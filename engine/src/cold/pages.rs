//! A page reader for the engine's own segments: each page located by the offset index,
//! its bytes already checked by the caller's CRC, its header parsed here and its values
//! decompressed with a per-thread codec.
//!
//! The parquet crate's `SerializedPageReader` builds a codec per column chunk it reads,
//! and its zstd codec allocates a compression and a decompression context (hundreds of KB
//! zeroed) each time: for a point read that touches one page of each column, that was 40%
//! of the time. This reader reuses one decompressor per thread and reads only the pages it
//! is asked for; it hands parquet's own value decoders (`ColumnReaderImpl`) the pages, so
//! every encoding parquet knows still decodes. Compressions the engine never writes make
//! [`ChunkPages::new`] return `None`, and the caller falls back to parquet's reader.
//!
//! Page headers are Thrift compact protocol structs (the Parquet format's `PageHeader`);
//! [`parse_header`] reads the fields a reader needs and skips the rest, and refuses
//! anything malformed with a reason, never a panic.

use bytes::Bytes;
use parquet::basic::{Compression, Encoding};
use parquet::column::page::{Page, PageMetadata, PageReader};
use parquet::errors::{ParquetError, Result};
use parquet::file::page_index::offset_index::PageLocation;
use std::cell::RefCell;

/// Where a page's bytes come from: `read(offset, len)` returns exactly those bytes of the
/// file, checked.
pub(crate) trait PageSource: Send {
    fn read(&self, offset: u64, len: usize) -> Result<Bytes>;
}

/// The pages of one column chunk, in order, starting with its dictionary if it has one.
pub(crate) struct ChunkPages<S: PageSource> {
    source: S,
    compression: Compression,
    dictionary: Option<(u64, usize)>,
    locations: Vec<PageLocation>,
    rows: usize,
    next: usize,
}

impl<S: PageSource> ChunkPages<S> {
    /// The pages of a chunk of `rows` rows compressed with `compression`, its dictionary page
    /// (if any) at `dictionary`, its data pages at `locations`. `None` when the compression
    /// is not one this reader decodes.
    pub fn new(
        source: S,
        compression: Compression,
        dictionary: Option<(u64, usize)>,
        locations: Vec<PageLocation>,
        rows: usize,
    ) -> Option<ChunkPages<S>> {
        matches!(
            compression,
            Compression::UNCOMPRESSED | Compression::LZ4_RAW | Compression::ZSTD(_)
        )
        .then_some(ChunkPages {
            source,
            compression,
            dictionary,
            locations,
            rows,
            next: 0,
        })
    }

    fn page_rows(&self, i: usize) -> usize {
        let first = self.locations[i].first_row_index as usize;
        let end = self
            .locations
            .get(i + 1)
            .map_or(self.rows, |l| l.first_row_index as usize);
        end.saturating_sub(first)
    }

    fn decode(&self, offset: u64, len: usize) -> Result<Page> {
        let bytes = self.source.read(offset, len)?;
        let (header, header_len) = parse_header(&bytes)?;
        let body = bytes.slice(header_len..);
        if body.len() != header.compressed_size {
            return Err(general(format!(
                "page at {offset} holds {} bytes, its header says {}",
                body.len(),
                header.compressed_size
            )));
        }
        match header.kind {
            Kind::Dictionary {
                num_values,
                encoding,
                is_sorted,
            } => Ok(Page::DictionaryPage {
                buf: self.decompress(body, header.uncompressed_size)?,
                num_values,
                encoding,
                is_sorted,
            }),
            Kind::V1 {
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
            } => Ok(Page::DataPage {
                buf: self.decompress(body, header.uncompressed_size)?,
                num_values,
                encoding,
                def_level_encoding,
                rep_level_encoding,
                statistics: None,
            }),
            Kind::V2 {
                num_values,
                num_nulls,
                num_rows,
                encoding,
                def_levels_byte_len,
                rep_levels_byte_len,
                is_compressed,
            } => {
                let levels = (def_levels_byte_len as usize)
                    .checked_add(rep_levels_byte_len as usize)
                    .filter(|&l| l <= body.len() && l <= header.uncompressed_size)
                    .ok_or_else(|| general(format!("page at {offset}: levels past its end")))?;
                let buf = if is_compressed {
                    let values =
                        self.decompress(body.slice(levels..), header.uncompressed_size - levels)?;
                    let mut all = Vec::with_capacity(header.uncompressed_size);
                    all.extend_from_slice(&body[..levels]);
                    all.extend_from_slice(&values);
                    Bytes::from(all)
                } else {
                    body
                };
                Ok(Page::DataPageV2 {
                    buf,
                    num_values,
                    encoding,
                    num_nulls,
                    num_rows,
                    def_levels_byte_len,
                    rep_levels_byte_len,
                    is_compressed: false,
                    statistics: None,
                })
            }
        }
    }

    fn decompress(&self, body: Bytes, size: usize) -> Result<Bytes> {
        decompress(self.compression, body, size)
    }
}

/// `body` decompressed with `compression` (one the engine writes: none, LZ4 or zstd),
/// checked to be `size` bytes. Uncompressed bodies are returned as they are.
pub(crate) fn decompress(compression: Compression, body: Bytes, size: usize) -> Result<Bytes> {
    let out = match compression {
        Compression::UNCOMPRESSED => return Ok(body),
        Compression::LZ4_RAW => lz4_flex::block::decompress(&body, size)
            .map_err(|e| general(format!("LZ4 page: {e}")))?,
        Compression::ZSTD(_) => ZSTD.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(
                    zstd::bulk::Decompressor::new()
                        .map_err(|e| general(format!("zstd decompressor: {e}")))?,
                );
            }
            let decompressor = slot
                .as_mut()
                .ok_or_else(|| general("zstd decompressor missing".into()))?;
            decompressor
                .decompress(&body, size)
                .map_err(|e| general(format!("zstd page: {e}")))
        })?,
        other => return Err(general(format!("compression {other} is not read here"))),
    };
    if out.len() != size {
        return Err(general(format!(
            "page decompresses to {} bytes, its header says {size}",
            out.len()
        )));
    }
    Ok(Bytes::from(out))
}

thread_local! {
    /// One zstd decompression context per thread, made on first use.
    static ZSTD: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

impl<S: PageSource> Iterator for ChunkPages<S> {
    type Item = Result<Page>;

    fn next(&mut self) -> Option<Result<Page>> {
        self.get_next_page().transpose()
    }
}

impl<S: PageSource> PageReader for ChunkPages<S> {
    fn get_next_page(&mut self) -> Result<Option<Page>> {
        if let Some((offset, len)) = self.dictionary.take() {
            return self.decode(offset, len).map(Some);
        }
        let Some(location) = self.locations.get(self.next) else {
            return Ok(None);
        };
        let (offset, len) = (location.offset, location.compressed_page_size);
        self.next += 1;
        let offset = u64::try_from(offset).map_err(|_| general("negative page offset".into()))?;
        let len = usize::try_from(len).map_err(|_| general("negative page size".into()))?;
        self.decode(offset, len).map(Some)
    }

    fn peek_next_page(&mut self) -> Result<Option<PageMetadata>> {
        if self.dictionary.is_some() {
            return Ok(Some(PageMetadata {
                num_rows: None,
                num_levels: None,
                is_dict: true,
            }));
        }
        if self.next >= self.locations.len() {
            return Ok(None);
        }
        let rows = self.page_rows(self.next);
        Ok(Some(PageMetadata {
            num_rows: Some(rows),
            num_levels: Some(rows),
            is_dict: false,
        }))
    }

    fn skip_next_page(&mut self) -> Result<()> {
        if self.dictionary.take().is_none() {
            self.next += 1;
        }
        Ok(())
    }

    fn at_record_boundary(&mut self) -> Result<bool> {
        // No repeated columns: every page boundary is a row boundary.
        Ok(true)
    }
}

fn general(reason: String) -> ParquetError {
    ParquetError::General(reason)
}

/// What a page header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Header {
    pub uncompressed_size: usize,
    pub compressed_size: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Dictionary {
        num_values: u32,
        encoding: Encoding,
        is_sorted: bool,
    },
    V1 {
        num_values: u32,
        encoding: Encoding,
        def_level_encoding: Encoding,
        rep_level_encoding: Encoding,
    },
    V2 {
        num_values: u32,
        num_nulls: u32,
        num_rows: u32,
        encoding: Encoding,
        def_levels_byte_len: u32,
        rep_levels_byte_len: u32,
        is_compressed: bool,
    },
}

/// Parses the Thrift compact `PageHeader` at the start of `bytes`: the header and its
/// length in bytes.
pub(crate) fn parse_header(bytes: &[u8]) -> Result<(Header, usize)> {
    let mut r = Compact { bytes, at: 0 };
    let (mut page_type, mut uncompressed, mut compressed) = (None, None, None);
    let mut data: Option<[i64; 4]> = None;
    let mut dict: Option<(i64, i64, bool)> = None;
    let mut v2: Option<([i64; 6], bool)> = None;
    r.fields(|r, id, ty| {
        match (id, ty) {
            (1, I32) => page_type = Some(r.int()?),
            (2, I32) => uncompressed = Some(r.int()?),
            (3, I32) => compressed = Some(r.int()?),
            (5, STRUCT) => {
                let mut f = [0i64; 4];
                r.fields(|r, id, ty| match (id, ty) {
                    (1..=4, I32) => {
                        f[id as usize - 1] = r.int()?;
                        Ok(())
                    }
                    _ => r.skip(ty),
                })?;
                data = Some(f);
            }
            (7, STRUCT) => {
                let mut f = (0, 0, false);
                r.fields(|r, id, ty| match (id, ty) {
                    (1, I32) => {
                        f.0 = r.int()?;
                        Ok(())
                    }
                    (2, I32) => {
                        f.1 = r.int()?;
                        Ok(())
                    }
                    (3, TRUE | FALSE) => {
                        f.2 = ty == TRUE;
                        Ok(())
                    }
                    _ => r.skip(ty),
                })?;
                dict = Some(f);
            }
            (8, STRUCT) => {
                let mut f = ([0i64; 6], true);
                r.fields(|r, id, ty| match (id, ty) {
                    (1..=6, I32) => {
                        f.0[id as usize - 1] = r.int()?;
                        Ok(())
                    }
                    (7, TRUE | FALSE) => {
                        f.1 = ty == TRUE;
                        Ok(())
                    }
                    _ => r.skip(ty),
                })?;
                v2 = Some(f);
            }
            _ => r.skip(ty)?,
        }
        Ok(())
    })?;
    let size = |v: Option<i64>, what: &str| -> Result<usize> {
        v.and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| general(format!("page header without a valid {what}")))
    };
    let count = |v: i64, what: &str| -> Result<u32> {
        u32::try_from(v).map_err(|_| general(format!("page header: {what} {v} out of range")))
    };
    let kind = match (page_type, data, dict, v2) {
        (Some(0), Some(f), _, _) => Kind::V1 {
            num_values: count(f[0], "value count")?,
            encoding: encoding(f[1])?,
            def_level_encoding: encoding(f[2])?,
            rep_level_encoding: encoding(f[3])?,
        },
        (Some(2), _, Some(f), _) => Kind::Dictionary {
            num_values: count(f.0, "value count")?,
            encoding: encoding(f.1)?,
            is_sorted: f.2,
        },
        (Some(3), _, _, Some((f, is_compressed))) => Kind::V2 {
            num_values: count(f[0], "value count")?,
            num_nulls: count(f[1], "null count")?,
            num_rows: count(f[2], "row count")?,
            encoding: encoding(f[3])?,
            def_levels_byte_len: count(f[4], "definition level length")?,
            rep_levels_byte_len: count(f[5], "repetition level length")?,
            is_compressed,
        },
        (t, ..) => {
            return Err(general(format!(
                "page header of type {t:?} is not read here"
            )))
        }
    };
    Ok((
        Header {
            uncompressed_size: size(uncompressed, "uncompressed size")?,
            compressed_size: size(compressed, "compressed size")?,
            kind,
        },
        r.at,
    ))
}

fn encoding(v: i64) -> Result<Encoding> {
    Ok(match v {
        0 => Encoding::PLAIN,
        2 => Encoding::PLAIN_DICTIONARY,
        3 => Encoding::RLE,
        5 => Encoding::DELTA_BINARY_PACKED,
        6 => Encoding::DELTA_LENGTH_BYTE_ARRAY,
        7 => Encoding::DELTA_BYTE_ARRAY,
        8 => Encoding::RLE_DICTIONARY,
        9 => Encoding::BYTE_STREAM_SPLIT,
        other => return Err(general(format!("page encoding {other} is not read here"))),
    })
}

// Thrift compact protocol element types.
const TRUE: u8 = 1;
const FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I32: u8 = 5;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
/// Nesting a header may use; deeper is malformed (and would risk the stack).
const DEPTH_MAX: usize = 16;

struct Compact<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> Result<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or_else(|| general("page header ends early".into()))?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift.min(63);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(general("page header varint too long".into()))
    }

    fn int(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// Calls `f(self, field id, type)` for each field of a struct, up to its stop byte; `f`
    /// must consume the field's value.
    fn fields(&mut self, mut f: impl FnMut(&mut Self, i16, u8) -> Result<()>) -> Result<()> {
        let mut last = 0i16;
        loop {
            let b = self.byte()?;
            if b == 0 {
                return Ok(());
            }
            let ty = b & 0x0f;
            let delta = (b >> 4) as i16;
            let id = if delta == 0 {
                i16::try_from(self.int()?).map_err(|_| general("field id".into()))?
            } else {
                last.saturating_add(delta)
            };
            last = id;
            f(self, id, ty)?;
        }
    }

    fn skip(&mut self, ty: u8) -> Result<()> {
        self.skip_at(ty, 0)
    }

    fn skip_at(&mut self, ty: u8, depth: usize) -> Result<()> {
        if depth > DEPTH_MAX {
            return Err(general("page header nested too deep".into()));
        }
        match ty {
            TRUE | FALSE => Ok(()),
            BYTE => self.byte().map(drop),
            I16 | I32 | I64 => self.varint().map(drop),
            DOUBLE => self.advance(8),
            BINARY => {
                let len = self.varint()?;
                self.advance(usize::try_from(len).map_err(|_| general("length".into()))?)
            }
            LIST | SET => {
                let b = self.byte()?;
                let elem = b & 0x0f;
                let n = if b >> 4 == 0x0f {
                    self.varint()?
                } else {
                    u64::from(b >> 4)
                };
                for _ in 0..n {
                    // A boolean element of a list is a whole byte.
                    if elem == TRUE || elem == FALSE {
                        self.byte()?;
                    } else {
                        self.skip_at(elem, depth + 1)?;
                    }
                }
                Ok(())
            }
            MAP => {
                let n = self.varint()?;
                if n == 0 {
                    return Ok(());
                }
                let kv = self.byte()?;
                for _ in 0..n {
                    self.skip_at(kv >> 4, depth + 1)?;
                    self.skip_at(kv & 0x0f, depth + 1)?;
                }
                Ok(())
            }
            STRUCT => {
                let mut last = 0i16;
                loop {
                    let b = self.byte()?;
                    if b == 0 {
                        return Ok(());
                    }
                    if b >> 4 == 0 {
                        last = i16::try_from(self.int()?).map_err(|_| general("field".into()))?;
                    } else {
                        last = last.saturating_add((b >> 4) as i16);
                    }
                    let _ = last;
                    self.skip_at(b & 0x0f, depth + 1)?;
                }
            }
            other => Err(general(format!("page header: unknown Thrift type {other}"))),
        }
    }

    fn advance(&mut self, n: usize) -> Result<()> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| general("page header ends early".into()))?;
        self.at = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A header encoded by hand: a v1 data page of 1024 values, PLAIN, RLE levels.
    fn v1_header() -> Vec<u8> {
        let zig = |v: i64| ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        let varint = |out: &mut Vec<u8>, mut v: u64| loop {
            if v < 0x80 {
                out.push(v as u8);
                break;
            }
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        };
        out.push(0x15); // field 1, i32: type
        varint(&mut out, zig(0));
        out.push(0x15); // field 2: uncompressed size
        varint(&mut out, zig(8192));
        out.push(0x15); // field 3: compressed size
        varint(&mut out, zig(4000));
        out.push(0x2c); // field 5, struct: data page header
        out.push(0x15);
        varint(&mut out, zig(1024));
        out.push(0x15);
        varint(&mut out, zig(0));
        out.push(0x15);
        varint(&mut out, zig(3));
        out.push(0x15);
        varint(&mut out, zig(3));
        out.push(0x1c); // field 5, struct: statistics, skipped
        out.push(0x18); // field 1, binary
        varint(&mut out, 3);
        out.extend_from_slice(b"abc");
        out.push(0x00);
        out.push(0x00);
        out.push(0x00);
        out
    }

    #[test]
    fn a_data_page_header_parses_and_its_statistics_are_skipped() {
        let bytes = v1_header();
        let (header, len) = parse_header(&bytes).unwrap();
        assert_eq!(len, bytes.len());
        assert_eq!(header.uncompressed_size, 8192);
        assert_eq!(header.compressed_size, 4000);
        assert_eq!(
            header.kind,
            Kind::V1 {
                num_values: 1024,
                encoding: Encoding::PLAIN,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
            }
        );
    }

    #[test]
    fn every_truncation_and_every_byte_value_of_a_header_is_an_error_or_a_header() {
        let bytes = v1_header();
        for cut in 0..bytes.len() {
            assert!(parse_header(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for at in 0..bytes.len() {
            for b in 0..=255u8 {
                let mut damaged = bytes.clone();
                damaged[at] = b;
                let _ = parse_header(&damaged);
            }
        }
    }
}
