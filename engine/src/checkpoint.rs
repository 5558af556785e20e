//! Checkpoints: the whole state (catalog and rows) as of one LSN, in one checksummed file,
//! so that recovery replays only the log after it and older log segments can be removed.
//!
//! ```text
//! checkpoint-<lsn, 20 digits>.ckpt
//!   0  magic          b"OMENCKPT"
//!   8  version        u32 = 1
//!  12  reserved       u32 = 0
//!  16  lsn            u64   every record with LSN <= this is in the file
//!  24  next_table_id  u32
//!  28  table_count    u32
//!  32  tables: table_count x { id u32, table definition, row_count u64, rows in key order }
//!  end-12  crc32c     u32 of every byte before it
//!  end-8   magic      b"OMENCEND"
//! ```
//!
//! Written as `checkpoint.tmp`, synced, renamed into place, directory synced: a crash leaves
//! the old checkpoint or the new one. Only then are older checkpoints and log segments
//! removed. A damaged checkpoint is reported as corruption, never skipped for an older one
//! (the log that older one needs may be gone).

use crate::catalog::Catalog;
use crate::codec::{Decoder, Encoder};
use crate::env::{Fs, OpenMode};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"OMENCKPT";
const END_MAGIC: [u8; 8] = *b"OMENCEND";
const VERSION: u32 = 1;
const HEADER_BYTES: usize = 32;
const TRAILER_BYTES: usize = 12;
const TEMP_NAME: &str = "checkpoint.tmp";
/// Bytes buffered before each write to the file.
const WRITE_CHUNK_BYTES: usize = 1 << 20;

fn file_name(lsn: u64) -> String {
    format!("checkpoint-{lsn:020}.ckpt")
}

fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checkpoint files in `root`, by LSN ascending.
pub(crate) fn list(fs: &dyn Fs, root: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let names = fs
        .list(root)
        .map_err(|e| Error::io("list database directory", root, e))?;
    let mut found: Vec<(u64, PathBuf)> = names
        .iter()
        .filter_map(|name| Some((parse_file_name(name)?, root.join(name))))
        .collect();
    found.sort();
    Ok(found)
}

/// Removes a leftover temporary checkpoint (from a crash during a checkpoint).
pub(crate) fn remove_temp(fs: &dyn Fs, root: &Path) -> Result<()> {
    let temp = root.join(TEMP_NAME);
    if fs.exists(&temp).map_err(|e| Error::io("stat", &temp, e))? {
        fs.remove(&temp)
            .map_err(|e| Error::io("remove temporary checkpoint", &temp, e))?;
    }
    Ok(())
}

/// Removes the checkpoints older than `lsn` (the one at `lsn` is durable), durably.
pub(crate) fn remove_older(fs: &dyn Fs, root: &Path, lsn: u64) -> Result<()> {
    let mut removed = false;
    for (old_lsn, path) in list(fs, root)? {
        if old_lsn < lsn {
            fs.remove(&path)
                .map_err(|e| Error::io("remove old checkpoint", &path, e))?;
            removed = true;
        }
    }
    if removed {
        fs.sync_dir(root)
            .map_err(|e| Error::io("sync database directory", root, e))?;
    }
    Ok(())
}

/// Writes a checkpoint of `catalog` at `lsn` and makes it durable. Returns its path.
pub(crate) fn write(fs: &dyn Fs, root: &Path, lsn: u64, catalog: &Catalog) -> Result<PathBuf> {
    let temp = root.join(TEMP_NAME);
    let file = fs
        .open(&temp, OpenMode::Create)
        .map_err(|e| Error::io("create checkpoint", &temp, e))?;
    file.set_len(0)
        .map_err(|e| Error::io("truncate checkpoint", &temp, e))?;
    let mut offset = 0u64;
    let mut crc = 0u32;
    let mut flush = |enc: &mut Encoder, crc: &mut u32| -> Result<()> {
        *crc = crc32c::crc32c_append(*crc, &enc.bytes);
        file.write_at(&enc.bytes, offset)
            .map_err(|e| Error::io("write checkpoint", &temp, e))?;
        offset += enc.bytes.len() as u64;
        enc.bytes.clear();
        Ok(())
    };
    let mut enc = Encoder::new();
    enc.bytes.extend_from_slice(&MAGIC);
    enc.u32(VERSION);
    enc.u32(0);
    enc.u64(lsn);
    enc.u32(catalog.next_table_id());
    enc.u32(catalog.tables().count() as u32);
    for table in catalog.tables() {
        enc.u32(table.id);
        enc.table_def(&table.def);
        enc.u64(table.len() as u64);
        for (_, row) in table.iter() {
            enc.row(row);
            if enc.bytes.len() >= WRITE_CHUNK_BYTES {
                flush(&mut enc, &mut crc)?;
            }
        }
    }
    flush(&mut enc, &mut crc)?;
    enc.u32(crc);
    enc.bytes.extend_from_slice(&END_MAGIC);
    let trailer = std::mem::take(&mut enc.bytes);
    file.write_at(&trailer, offset)
        .and_then(|()| file.sync())
        .map_err(|e| Error::io("write checkpoint", &temp, e))?;
    // Read it back before it replaces anything: a device that acknowledged a torn or
    // misdirected write is caught here, while the previous checkpoint and log still exist.
    let written = file
        .read_all()
        .map_err(|e| Error::io("read back checkpoint", &temp, e))?;
    verify(&written, &temp)?;
    drop(file);
    let path = root.join(file_name(lsn));
    fs.rename(&temp, &path)
        .map_err(|e| Error::io("rename checkpoint", &path, e))?;
    fs.sync_dir(root)
        .map_err(|e| Error::io("sync database directory", root, e))?;
    Ok(path)
}

/// Checks a checkpoint's length, magics and checksum; returns where its body ends.
fn verify(bytes: &[u8], path: &Path) -> Result<usize> {
    let corrupt = |offset: usize, reason: String| Error::corruption(path, offset as u64, reason);
    if bytes.len() < HEADER_BYTES + TRAILER_BYTES {
        return Err(corrupt(
            0,
            format!("checkpoint of {} bytes is too short", bytes.len()),
        ));
    }
    let body_end = bytes.len() - TRAILER_BYTES;
    if bytes[body_end + 4..] != END_MAGIC {
        return Err(corrupt(
            body_end + 4,
            "missing end marker (truncated checkpoint)".into(),
        ));
    }
    let mut trailer = Decoder::new(&bytes[body_end..body_end + 4]);
    let stored_crc = trailer.u32().map_err(|e| corrupt(body_end, e.reason))?;
    let crc = crc32c::crc32c(&bytes[..body_end]);
    if crc != stored_crc {
        return Err(corrupt(
            body_end,
            format!("checksum {stored_crc:#010x} != computed {crc:#010x}"),
        ));
    }
    if bytes[0..8] != MAGIC {
        return Err(corrupt(0, "bad checkpoint magic".into()));
    }
    Ok(body_end)
}

/// Loads the checkpoint at `path` (whose name says `lsn`) into a new catalog.
pub(crate) fn load(fs: &dyn Fs, path: &Path, lsn_named: u64) -> Result<Catalog> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open checkpoint", path, e))?;
    let bytes = file
        .read_all()
        .map_err(|e| Error::io("read checkpoint", path, e))?;
    let corrupt = |offset: usize, reason: String| Error::corruption(path, offset as u64, reason);
    let body_end = verify(&bytes, path)?;
    let mut dec = Decoder::new(&bytes[8..body_end]);
    let at = |dec: &Decoder<'_>| 8 + dec.offset();
    let fail = |dec: &Decoder<'_>, reason: String| corrupt(at(dec), reason);
    let version = dec.u32().map_err(|e| fail(&dec, e.reason))?;
    if version != VERSION {
        return Err(fail(
            &dec,
            format!("unsupported checkpoint version {version}"),
        ));
    }
    let _reserved = dec.u32().map_err(|e| fail(&dec, e.reason))?;
    let lsn = dec.u64().map_err(|e| fail(&dec, e.reason))?;
    if lsn != lsn_named {
        return Err(fail(
            &dec,
            format!("checkpoint holds LSN {lsn} but is named {lsn_named}"),
        ));
    }
    let next_table_id = dec.u32().map_err(|e| fail(&dec, e.reason))?;
    let table_count = dec.u32().map_err(|e| fail(&dec, e.reason))?;
    let mut catalog = Catalog::new();
    for _ in 0..table_count {
        let table_at = at(&dec);
        let id = dec.u32().map_err(|e| fail(&dec, e.reason))?;
        let def = dec
            .table_def()
            .map_err(|e| corrupt(8 + e.offset, e.reason))?;
        catalog
            .restore_table(id, def.clone())
            .map_err(|e| corrupt(table_at, format!("table cannot be restored: {e}")))?;
        let row_count = dec.u64().map_err(|e| fail(&dec, e.reason))?;
        // Each row needs at least 2 bytes, which bounds the count before allocating.
        let remaining = body_end.saturating_sub(at(&dec)) as u64;
        if row_count > remaining / 2 {
            return Err(fail(
                &dec,
                format!("row count {row_count} exceeds what the file holds"),
            ));
        }
        let mut rows = Vec::with_capacity(row_count as usize);
        let rows_at = at(&dec);
        for _ in 0..row_count {
            rows.push(dec.row().map_err(|e| corrupt(8 + e.offset, e.reason))?);
        }
        catalog
            .restore_rows(id, rows)
            .map_err(|e| corrupt(rows_at, format!("rows of table {:?}: {e}", def.name())))?;
    }
    if !dec.is_empty() {
        return Err(fail(&dec, "trailing bytes after the last table".into()));
    }
    catalog.set_next_table_id(next_table_id);
    Ok(catalog)
}
