//! Checkpoints: the whole state (catalog, hot rows and each table's cold manifest) as of one
//! LSN, in one checksummed file, so that recovery replays only the log after it and older
//! log segments can be removed.
//!
//! ```text
//! checkpoint-<lsn, 20 digits>.ckpt
//!   0  magic          b"OMENCKPT"
//!   8  version        u32 = 3
//!  12  reserved       u32 = 0
//!  16  lsn            u64   every record with LSN <= this is in the file
//!  24  next_table_id  u32
//!  28  table_count    u32
//!  32  tables: table_count x { id u32, table definition, row_count u64, hot rows in key
//!        order, cold manifest: next_segment_id u64, segment_count u32, then per segment
//!        its entry (id, key range, rows, LSN, size and CRC-32C of the Parquet file and of
//!        its .idx) and its deletion vector }
//!  end-12  crc32c     u32 of every byte before it
//!  end-8   magic      b"OMENCEND"
//! ```
//!
//! The manifest of the cold tier lives here and nowhere else (docs/FORMAT.md has the bytes).
//! Version 1 files (no cold manifest) and version 2 files (tombstones, segments without a
//! sidecar index; migrated at load by crate::cold::migrate_legacy) are still read.
//!
//! **Writing.** `Database::checkpoint` (crate::db) flushes tables over the hot-tier cap,
//! then runs [`take`], the protocol: roll the log, [`start`] under the state's read lock,
//! [`Pending::finish`] after releasing it, then [`remove_older`] and the log's removal of
//! the segments it covers. [`start`] copies the
//! encoding into memory when the hot rows take at most `Options::checkpoint_copy_bytes_max`
//! bytes, else streams it into the temporary file (no fsync), so a large table is not held
//! twice; the bytes are the same either way. The file is written as `checkpoint.tmp`,
//! synced, read back and compared with what was written (a device that acknowledged a torn
//! or misdirected write is caught while the previous checkpoint still exists), renamed into
//! place, directory synced: a crash leaves the old checkpoint or the new one. Only then are
//! older checkpoints and log segments removed.
//!
//! **Loading.** Only the newest checkpoint is loaded; a damaged one is reported as
//! corruption, never skipped for an older one (the log that older one needs may be gone).
//! The segment files a checkpoint lists live in `cold/` (crate::cold); at open, any file
//! there that the loaded checkpoint does not list (a flush or compaction that crashed before
//! its checkpoint landed, a compaction's replaced inputs, a dropped table's segments,
//! temporary files) is removed ([`remove_unlisted_segments`]).

use crate::catalog::Catalog;
use crate::codec::{DecodeResult, Decoder, Encoder};
use crate::cold::{self, Segment, SegmentMeta};
use crate::env::{remove_durably, Env, Fs, OpenMode, Spawn};
use crate::error::{Error, Result};
use crate::table::HotImage;
use crate::wal::Wal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAGIC: [u8; 8] = *b"OMENCKPT";
const END_MAGIC: [u8; 8] = *b"OMENCEND";
const VERSION: u32 = 3;
/// The version whose cold manifest had tombstones and no segment indexes or deletion
/// vectors; read, and migrated at load (docs/FORMAT.md).
const VERSION_TOMBSTONES: u32 = 2;
/// The version before the cold manifest.
const VERSION_NO_COLD: u32 = 1;
const HEADER_BYTES: usize = 32;
const TRAILER_BYTES: usize = 12;
const TEMP_NAME: &str = "checkpoint.tmp";
/// Bytes of each write to the file.
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
    let older: Vec<PathBuf> = list(fs, root)?
        .into_iter()
        .filter(|(old_lsn, _)| *old_lsn < lsn)
        .map(|(_, path)| path)
        .collect();
    remove_durably(
        fs,
        root,
        &older,
        "remove old checkpoint",
        "sync database directory",
    )
}

/// Writes a checkpoint of `catalog` at `lsn` and makes it durable. Returns its path.
pub(crate) fn write(
    fs: &dyn Fs,
    spawn: &dyn Spawn,
    root: &Path,
    lsn: u64,
    catalog: &Catalog,
) -> Result<PathBuf> {
    let image = CatalogImage::capture(catalog);
    let mut out = Unsynced::create(fs, root)?;
    encode_into(lsn, &image, spawn, &mut |chunk| out.append(chunk))?;
    out.finish(fs, root, lsn)
}

/// The checkpoint protocol, with the database's `checkpoint_lock` held and any flush done
/// (crate::db): rolls the log (no database lock held), so that every older segment holds
/// only records the snapshot covers; under the state's read lock (`read`), takes the LSN
/// (appends and applies happen under the write lock, so the last LSN appended is the
/// state's) and [`start`]s the checkpoint, which captures the state's image; with the lock
/// released, [`Pending::finish`]es it (encode if not done, write, sync, read back, rename,
/// directory sync); then removes the older checkpoints and the log segments it covers.
/// Returns its LSN. A crash at any call leaves the old checkpoint and its log, or the new
/// one.
pub(crate) fn take<G: std::ops::Deref<Target = Catalog>>(
    env: &Env,
    root: &Path,
    wal: &Wal,
    copy_bytes_max: usize,
    read: impl FnOnce() -> Result<G>,
) -> Result<u64> {
    let fs = env.fs.clone();
    // Every segment before the new one holds only records the snapshot covers.
    wal.roll()?;
    let (lsn, pending) = {
        let state = read()?;
        // Append and apply happen under the write lock: the last LSN is the state's.
        let lsn = wal.lsns().appended;
        let _span = tracing::info_span!("checkpoint_copy", lsn).entered();
        (
            lsn,
            start(lsn, &state, env.spawner.as_ref(), copy_bytes_max)?,
        )
    };
    match &pending {
        Pending::Copied(_) => crate::probe!(CheckpointCopied),
        Pending::Image(_) => crate::probe!(CheckpointStreamed),
    }
    // Writers wait only while the state is captured (or, for a small state, encoded into
    // memory), never for the encoding of a large one or an fsync.
    let _span = tracing::info_span!("checkpoint", lsn).entered();
    pending.finish(fs.as_ref(), env.spawner.as_ref(), root, lsn)?;
    remove_older(fs.as_ref(), root, lsn)?;
    wal.remove_segments_through(lsn)?;
    Ok(lsn)
}

/// A checkpoint in the making: encoded into memory (`Copied`), or the state's image, to be
/// encoded straight into the temporary file with no lock held (`Image`).
pub(crate) enum Pending {
    Copied(Vec<Vec<u8>>),
    Image(Box<CatalogImage>),
}

/// Starts a checkpoint of `catalog` at `lsn`, under the state's lock: captures its image
/// ([`CatalogImage::capture`]: the index walked, the pages shared, no row read); if its hot
/// rows take at most `copy_bytes_max` (see [`crate::Options::checkpoint_copy_bytes_max`])
/// encodes it into memory at once, since for a small state that costs less than the page
/// copies that sharing makes writers pay. Either way [`Pending::finish`] completes it and
/// needs no access to the state.
pub(crate) fn start(
    lsn: u64,
    catalog: &Catalog,
    spawn: &dyn Spawn,
    copy_bytes_max: usize,
) -> Result<Pending> {
    let hot_bytes: usize = catalog.tables().map(|t| t.row_bytes()).sum();
    let image = CatalogImage::capture(catalog);
    if hot_bytes <= copy_bytes_max {
        let mut chunks = Vec::new();
        encode_into(lsn, &image, spawn, &mut |chunk| {
            chunks.push(chunk.to_vec());
            Ok(())
        })?;
        return Ok(Pending::Copied(chunks));
    }
    Ok(Pending::Image(Box::new(image)))
}

impl Pending {
    /// Writes (encoding the image first, if that is what it holds), syncs, verifies and
    /// installs the checkpoint.
    pub fn finish(self, fs: &dyn Fs, spawn: &dyn Spawn, root: &Path, lsn: u64) -> Result<PathBuf> {
        let mut out = Unsynced::create(fs, root)?;
        match self {
            Pending::Image(image) => {
                encode_into(lsn, &image, spawn, &mut |chunk| out.append(chunk))?;
            }
            Pending::Copied(chunks) => {
                for chunk in &chunks {
                    out.append(chunk)?;
                }
            }
        }
        out.finish(fs, root, lsn)
    }
}

/// What a checkpoint holds, captured under the state's lock and read with none held:
/// the catalog, each table's hot rows ([`HotImage`]) and cold manifest.
pub(crate) struct CatalogImage {
    next_table_id: u32,
    tables: Vec<TableImage>,
}

struct TableImage {
    id: u32,
    def: std::sync::Arc<crate::schema::TableDef>,
    hot: HotImage,
    next_segment_id: u64,
    manifest: Vec<(SegmentMeta, std::sync::Arc<roaring::RoaringBitmap>)>,
}

impl CatalogImage {
    /// The image of `catalog` now: O(hot rows) for the index walks, O(pages) for the rows,
    /// O(segments) for the manifests.
    pub fn capture(catalog: &Catalog) -> CatalogImage {
        CatalogImage {
            next_table_id: catalog.next_table_id(),
            tables: catalog
                .tables()
                .map(|table| TableImage {
                    id: table.id,
                    def: table.def.clone(),
                    hot: table.hot_image(),
                    next_segment_id: table.cold.next_segment_id(),
                    manifest: table.cold.manifest_shared(),
                })
                .collect(),
        }
    }
}

/// The encoding of a checkpoint of `image` at `lsn`, handed to `sink` in chunks of about
/// [`WRITE_CHUNK_BYTES`], the CRC and end marker included.
fn encode_into(
    lsn: u64,
    image: &CatalogImage,
    spawn: &dyn Spawn,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut enc = Encoder::new();
    let mut crc = 0u32;
    // Hands `bytes` to the sink, in the running CRC.
    let mut emit = |crc: &mut u32, bytes: &[u8]| -> Result<()> {
        *crc = crc32c::crc32c_append(*crc, bytes);
        sink(bytes)
    };
    // Hands the encoder's bytes on once they reach `at_least`.
    let flush = |emit: &mut dyn FnMut(&mut u32, &[u8]) -> Result<()>,
                 enc: &mut Encoder,
                 crc: &mut u32,
                 at_least: usize|
     -> Result<()> {
        if enc.bytes.len() >= at_least && !enc.bytes.is_empty() {
            emit(crc, &enc.bytes)?;
            enc.bytes.clear();
        }
        Ok(())
    };
    enc.bytes.extend_from_slice(&MAGIC);
    enc.u32(VERSION);
    enc.u32(0);
    enc.u64(lsn);
    enc.u32(image.next_table_id);
    enc.u32(image.tables.len() as u32);
    for table in &image.tables {
        enc.u32(table.id);
        enc.table_def(&table.def);
        enc.u64(table.hot.len() as u64);
        // The hot rows, in runs of about equal length encoded two at a time, one on each
        // side of `Spawn::join`, each into its own buffer; the buffers go out in key order.
        flush(&mut emit, &mut enc, &mut crc, 0)?;
        let hot = &table.hot;
        let layout = hot.layout();
        let every = hot.len().div_ceil(HOT_ROW_RUNS).max(1);
        let runs: Vec<std::ops::Range<usize>> = (0..hot.len())
            .step_by(every)
            .map(|from| from..(from + every).min(hot.len()))
            .collect();
        let (mut first, mut second) = (Vec::new(), Vec::new());
        for pair in runs.chunks(2) {
            let encode_run = |run: Option<&std::ops::Range<usize>>, out: &mut Vec<u8>| {
                out.clear();
                if let Some(run) = run {
                    for (key, packed) in hot.packed_rows(run.clone()) {
                        layout.encode_packed(key, packed, out);
                    }
                }
            };
            spawn.join(&mut || encode_run(pair.first(), &mut first), &mut || {
                encode_run(pair.get(1), &mut second)
            });
            for bytes in [&first, &second] {
                for chunk in bytes.chunks(WRITE_CHUNK_BYTES) {
                    emit(&mut crc, chunk)?;
                }
            }
        }
        enc.u64(table.next_segment_id);
        enc.u32(table.manifest.len() as u32);
        for (meta, deleted) in &table.manifest {
            meta.encode(&mut enc);
            cold::encode_deleted(deleted, &mut enc)?;
            flush(&mut emit, &mut enc, &mut crc, WRITE_CHUNK_BYTES)?;
        }
    }
    flush(&mut emit, &mut enc, &mut crc, 0)?;
    enc.u32(crc);
    enc.bytes.extend_from_slice(&END_MAGIC);
    sink(&enc.bytes)
}

/// Runs the hot rows of a table are cut into for encoding (see [`encode_into`]): two are
/// encoded at a time, so about an eighth of the hot rows' encoding is in memory at once.
const HOT_ROW_RUNS: usize = 16;

/// The temporary checkpoint file, written but not yet synced.
pub(crate) struct Unsynced {
    file: Box<dyn crate::env::File>,
    temp: PathBuf,
    len: u64,
    /// CRC-32C of everything written, to compare with the read-back.
    crc: u32,
}

impl Unsynced {
    fn create(fs: &dyn Fs, root: &Path) -> Result<Unsynced> {
        let temp = root.join(TEMP_NAME);
        let file = fs
            .open(&temp, OpenMode::Create)
            .map_err(|e| Error::io("create checkpoint", &temp, e))?;
        file.set_len(0)
            .map_err(|e| Error::io("truncate checkpoint", &temp, e))?;
        Ok(Unsynced {
            file,
            temp,
            len: 0,
            crc: 0,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_at(bytes, self.len)
            .map_err(|e| Error::io("write checkpoint", &self.temp, e))?;
        self.len += bytes.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, bytes);
        Ok(())
    }

    /// Syncs the file, reads it back and checks it, renames it into place and syncs the
    /// directory. Returns the checkpoint's path.
    fn finish(self, fs: &dyn Fs, root: &Path, lsn: u64) -> Result<PathBuf> {
        let Unsynced {
            file,
            temp,
            len,
            crc,
        } = self;
        file.sync()
            .map_err(|e| Error::io("write checkpoint", &temp, e))?;
        // Read it back before it replaces anything: a device that acknowledged a torn or
        // misdirected write is caught here, while the previous checkpoint and log still
        // exist. The read is chunked, so a large checkpoint is never in memory whole.
        verify_file(file.as_ref(), &temp, len, crc)?;
        drop(file);
        let path = root.join(file_name(lsn));
        fs.rename(&temp, &path)
            .map_err(|e| Error::io("rename checkpoint", &path, e))?;
        fs.sync_dir(root)
            .map_err(|e| Error::io("sync database directory", root, e))?;
        Ok(path)
    }
}

/// Checks a just-written checkpoint file by reading it back in chunks: its magics and
/// checksum, and that its length and the CRC of all its bytes are `written_len` and
/// `written_crc`, what was written.
fn verify_file(
    file: &dyn crate::env::File,
    path: &Path,
    written_len: u64,
    written_crc: u32,
) -> Result<()> {
    let corrupt = |offset: u64, reason: String| Error::corruption(path, offset, reason);
    let read = |buf: &mut [u8], offset: u64| {
        file.read_exact_at(buf, offset)
            .map_err(|e| Error::io("read back checkpoint", path, e))
    };
    let len = file
        .len()
        .map_err(|e| Error::io("read back checkpoint", path, e))?;
    if len != written_len {
        return Err(corrupt(
            len.min(written_len),
            format!("{written_len} bytes written but {len} read back"),
        ));
    }
    if len < (HEADER_BYTES + TRAILER_BYTES) as u64 {
        return Err(corrupt(
            0,
            format!("checkpoint of {len} bytes is too short"),
        ));
    }
    let body_end = len - TRAILER_BYTES as u64;
    let mut trailer = [0u8; TRAILER_BYTES];
    read(&mut trailer, body_end)?;
    if trailer[4..] != END_MAGIC {
        return Err(corrupt(
            body_end + 4,
            "missing end marker (truncated checkpoint)".into(),
        ));
    }
    let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    // No bigger than the body: zeroing a whole 1 MiB chunk to verify a few KiB was 4% of
    // a simulator sweep (a checkpoint at every open). The reads are the same.
    let mut buf = vec![0u8; (body_end as usize).min(WRITE_CHUNK_BYTES)];
    let mut crc = 0u32;
    let mut offset = 0u64;
    while offset < body_end {
        let n = (body_end - offset).min(WRITE_CHUNK_BYTES as u64) as usize;
        read(&mut buf[..n], offset)?;
        if offset == 0 && buf[0..8] != MAGIC {
            return Err(corrupt(0, "bad checkpoint magic".into()));
        }
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        offset += n as u64;
    }
    if crc != stored_crc {
        return Err(corrupt(
            body_end,
            format!("checksum {stored_crc:#010x} != computed {crc:#010x}"),
        ));
    }
    if crc32c::crc32c_append(crc, &trailer) != written_crc {
        return Err(corrupt(
            0,
            "the bytes read back differ from those written".into(),
        ));
    }
    Ok(())
}

/// Reads a checkpoint file front to back through a window of about [`WRITE_CHUNK_BYTES`], so
/// that loading never holds the whole file. A value cut by the window's end is decoded again
/// once the window holds more. Every byte is read once and goes into a running CRC, so the
/// checksum checked at the end covers exactly the bytes that were decoded (a second read
/// could see different bytes).
struct Reader<'f> {
    file: &'f dyn crate::env::File,
    path: &'f Path,
    /// Bytes `start..start + window.len()` of the file.
    window: Vec<u8>,
    start: u64,
    /// Position in `window` of the next value.
    pos: usize,
    /// Where the body ends (the trailer is not read).
    end: u64,
    /// CRC-32C of the bytes read so far (`0..start + window.len()`).
    crc: u32,
}

impl<'f> Reader<'f> {
    /// The file offset of the next value.
    fn at(&self) -> u64 {
        self.start + self.pos as u64
    }

    fn remaining(&self) -> u64 {
        self.end - self.at()
    }

    fn corrupt(&self, offset: u64, reason: impl Into<String>) -> Error {
        Error::corruption(self.path, offset, reason)
    }

    /// Decodes one value with `f`; errors name the file offset.
    fn decode<T>(&mut self, mut f: impl FnMut(&mut Decoder<'_>) -> DecodeResult<T>) -> Result<T> {
        loop {
            let mut dec = Decoder::new(&self.window[self.pos..]);
            match f(&mut dec) {
                Ok(value) => {
                    self.pos += dec.offset();
                    return Ok(value);
                }
                Err(e) => {
                    let window_end = self.start + self.window.len() as u64;
                    if window_end >= self.end {
                        return Err(self.corrupt(self.at() + e.offset as u64, e.reason));
                    }
                    self.refill()?;
                }
            }
        }
    }

    /// Drops what was decoded and reads at least one more chunk (the window grows when a
    /// single value is larger than a chunk).
    fn refill(&mut self) -> Result<()> {
        self.window.drain(..self.pos);
        self.start += self.pos as u64;
        self.pos = 0;
        let window_end = self.start + self.window.len() as u64;
        let more = (self.end - window_end).min(WRITE_CHUNK_BYTES.max(self.window.len()) as u64);
        let old = self.window.len();
        self.window.resize(old + more as usize, 0);
        self.file
            .read_exact_at(&mut self.window[old..], window_end)
            .map_err(|e| Error::io("read checkpoint", self.path, e))?;
        self.crc = crc32c::crc32c_append(self.crc, &self.window[old..]);
        Ok(())
    }
}

/// Loads the checkpoint at `path` (whose name says `lsn`) into a new catalog. The length and
/// end magic are checked first; then the file is read once, front to back, through a window
/// ([`Reader`]) into a running CRC while it is decoded, rows going into their tables a chunk
/// at a time (memory holds the tables, not the file); the CRC is compared at the end, and
/// only then are the listed cold segments opened and the catalog returned.
pub(crate) fn load(fs: &dyn Fs, spawn: &dyn Spawn, path: &Path, lsn_named: u64) -> Result<Catalog> {
    let file = fs
        .open(path, OpenMode::Read)
        .map_err(|e| Error::io("open checkpoint", path, e))?;
    let len = file
        .len()
        .map_err(|e| Error::io("read checkpoint", path, e))?;
    if len < (HEADER_BYTES + TRAILER_BYTES) as u64 {
        return Err(Error::corruption(
            path,
            0,
            format!("checkpoint of {len} bytes is too short"),
        ));
    }
    let body_end = len - TRAILER_BYTES as u64;
    let mut trailer = [0u8; TRAILER_BYTES];
    file.read_exact_at(&mut trailer, body_end)
        .map_err(|e| Error::io("read checkpoint", path, e))?;
    if trailer[4..] != END_MAGIC {
        return Err(Error::corruption(
            path,
            body_end + 4,
            "missing end marker (truncated checkpoint)",
        ));
    }
    let stored_crc = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let mut r = Reader {
        file: file.as_ref(),
        path,
        window: Vec::new(),
        start: 0,
        pos: 0,
        end: body_end,
        crc: 0,
    };
    let magic = r.decode(|d| d.take(MAGIC.len()).map(<[u8]>::to_vec))?;
    if magic != MAGIC {
        return Err(r.corrupt(0, "bad checkpoint magic"));
    }
    let version = r.decode(|d| d.u32())?;
    if version != VERSION && version != VERSION_TOMBSTONES && version != VERSION_NO_COLD {
        return Err(r.corrupt(8, format!("unsupported checkpoint version {version}")));
    }
    let _reserved = r.decode(|d| d.u32())?;
    let lsn_at = r.at();
    let lsn = r.decode(|d| d.u64())?;
    if lsn != lsn_named {
        return Err(r.corrupt(
            lsn_at,
            format!("checkpoint holds LSN {lsn} but is named {lsn_named}"),
        ));
    }
    let next_table_id = r.decode(|d| d.u32())?;
    let table_count = r.decode(|d| d.u32())?;
    let mut catalog = Catalog::new();
    let mut cold_tables = Vec::new();
    for _ in 0..table_count {
        let table_at = r.at();
        let id = r.decode(|d| d.u32())?;
        let def = r.decode(|d| d.table_def())?;
        catalog
            .restore_table(id, def.clone())
            .map_err(|e| r.corrupt(table_at, format!("table cannot be restored: {e}")))?;
        let count_at = r.at();
        let row_count = r.decode(|d| d.u64())?;
        // Each row needs at least 2 bytes, which bounds the count before allocating.
        if row_count > r.remaining() / 2 {
            return Err(r.corrupt(
                count_at,
                format!("row count {row_count} exceeds what the file holds"),
            ));
        }
        // Each row is decoded straight into its packed form and stored: no owned row,
        // nothing held twice.
        let table = catalog.restoring(id).map_err(|e| r.corrupt(table_at, e))?;
        // Sized before the CRC has vouched for the count: no more rows than the bytes left
        // could hold at the smallest encoding (the value count, a type code a column and
        // the eight key bytes).
        let row_bytes_min = 2 + def.columns().len() as u64 + 8;
        table.restore_reserve(row_count.min(r.remaining() / row_bytes_min) as usize);
        let layout = table.layout().clone();
        let mut packed = Vec::new();
        let rows_span = tracing::info_span!("checkpoint_rows", table = def.name(), row_count);
        let rows_entered = rows_span.enter();
        for i in 0..row_count {
            let row_at = r.at();
            let key = r.decode(|d| {
                packed.clear();
                layout.pack_encoded(&def, d, &mut packed)
            })?;
            key.and_then(|key| table.restore_packed(key, &packed))
                .map_err(|e| {
                    r.corrupt(row_at, format!("row {i} of table {:?}: {e}", def.name()))
                })?;
        }
        drop(rows_entered);
        let rows_end = r.at();
        tracing::info_span!("hot_index", table = def.name()).in_scope(|| {
            catalog
                .restore_finish(id, spawn)
                .map_err(|e| r.corrupt(rows_end, format!("rows of table {:?}: {e}", def.name())))
        })?;
        if version == VERSION_NO_COLD {
            continue;
        }
        let next_segment_id = r.decode(|d| d.u64())?;
        let segment_count = r.decode(|d| d.u32())?;
        let cold_dir = path
            .parent()
            .unwrap_or_else(|| Path::new(""))
            .join(cold::COLD_DIR);
        let mut manifest = Vec::new();
        let mut legacy = Vec::new();
        let mut last_id: Option<u64> = None;
        for _ in 0..segment_count {
            let meta_at = r.at();
            let id = if version == VERSION_TOMBSTONES {
                let meta = r.decode(SegmentMeta::decode_v2)?;
                let id = meta.id;
                legacy.push(meta);
                id
            } else {
                let meta = r.decode(SegmentMeta::decode)?;
                let deleted = r.decode(|d| cold::decode_deleted(d, meta.row_count))?;
                let id = meta.id;
                manifest.push((meta, deleted));
                id
            };
            if id >= next_segment_id || last_id.is_some_and(|p| p >= id) {
                return Err(r.corrupt(meta_at, format!("segment id {id} out of order")));
            }
            last_id = Some(id);
        }
        let mut tombstones = BTreeMap::new();
        if version == VERSION_TOMBSTONES {
            let count_at = r.at();
            let tombstone_count = r.decode(|d| d.u64())?;
            if tombstone_count > r.remaining() / 16 {
                return Err(r.corrupt(
                    count_at,
                    format!("tombstone count {tombstone_count} exceeds what the file holds"),
                ));
            }
            for _ in 0..tombstone_count {
                let (key, segment_id) = r.decode(|d| Ok((d.i64()?, d.u64()?)))?;
                tombstones.insert(key, segment_id);
            }
        }
        // Segments are opened only once the checksum has vouched for their manifest.
        cold_tables.push(ColdToLoad {
            id,
            def,
            cold_dir,
            manifest,
            legacy,
            tombstones,
            next_segment_id,
        });
    }
    if r.remaining() > 0 {
        return Err(r.corrupt(r.at(), "trailing bytes after the last table"));
    }
    // Everything decoded was read once, into the running CRC: nothing loaded is trusted
    // until it matches.
    if r.crc != stored_crc {
        return Err(r.corrupt(
            body_end,
            format!("checksum {stored_crc:#010x} != computed {:#010x}", r.crc),
        ));
    }
    for table in cold_tables {
        if !table.legacy.is_empty() {
            let hot = catalog
                .table_by_id(table.id)
                .ok_or_else(|| r.corrupt(0, format!("table #{} was not restored", table.id)))?;
            let segments = cold::migrate_legacy(
                fs,
                &table.cold_dir,
                table.id,
                &table.def,
                table.legacy,
                &table.tombstones,
                |k| hot.hot_contains(k),
            )?;
            catalog.restore_cold(table.id, segments, table.next_segment_id);
            continue;
        }
        let _span = tracing::info_span!("cold_open", segments = table.manifest.len()).entered();
        let mut segments = Vec::with_capacity(table.manifest.len());
        for (meta, deleted) in table.manifest {
            let segment = Segment::load(fs, &table.cold_dir, table.id, meta, &table.def)?;
            segments.push((segment, deleted));
        }
        catalog.restore_cold(table.id, segments, table.next_segment_id);
    }
    catalog.set_next_table_id(next_table_id);
    Ok(catalog)
}

/// One table's cold manifest, decoded, waiting for the checksum before its files open.
struct ColdToLoad {
    id: u32,
    def: crate::schema::TableDef,
    cold_dir: PathBuf,
    manifest: Vec<(SegmentMeta, roaring::RoaringBitmap)>,
    /// Version 2 entries (no index, tombstones instead of deletion vectors).
    legacy: Vec<SegmentMeta>,
    tombstones: BTreeMap<i64, u64>,
    next_segment_id: u64,
}

/// Removes every file in `cold_dir` that no table of `catalog` lists (segments of a flush
/// or compaction that crashed before its checkpoint, temporary files, dropped tables'
/// segments), durably.
pub(crate) fn remove_unlisted_segments(
    fs: &dyn Fs,
    cold_dir: &Path,
    catalog: &Catalog,
) -> Result<()> {
    let listed: BTreeSet<String> = catalog
        .tables()
        .flat_map(|t| {
            t.cold.segments().flat_map(|m| {
                [
                    cold::file_name(t.id, m.id),
                    cold::index_file_name(t.id, m.id),
                ]
            })
        })
        .collect();
    let names = fs
        .list(cold_dir)
        .map_err(|e| Error::io("list cold directory", cold_dir, e))?;
    let unlisted: Vec<PathBuf> = names
        .iter()
        .filter(|name| !listed.contains(*name))
        .map(|name| cold_dir.join(name))
        .collect();
    for path in &unlisted {
        tracing::info!(path = %path.display(), "removing unlisted segment file");
    }
    remove_durably(
        fs,
        cold_dir,
        &unlisted,
        "remove unlisted segment",
        "sync cold directory",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::LoggedOp;
    use crate::env::{InOrder, OsEnv};
    use crate::schema::{Column, DataType, TableDef, Value};

    fn encoded(catalog: &Catalog, spawn: &dyn Spawn) -> Vec<u8> {
        let mut out = Vec::new();
        encode_into(7, &CatalogImage::capture(catalog), spawn, &mut |chunk| {
            out.extend_from_slice(chunk);
            Ok(())
        })
        .expect("encode");
        out
    }

    #[test]
    fn hot_rows_encoded_in_runs_on_two_threads_are_the_rows_in_key_order() {
        let mut catalog = Catalog::new();
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("s", DataType::Utf8).nullable(),
            ],
        )
        .expect("valid definition");
        for (id, name, rows) in [(1, "t", 5_003i64), (2, "one", 1), (3, "empty", 0)] {
            let def = TableDef::new(name, def.columns().to_vec()).expect("valid");
            let op = catalog
                .check(LoggedOp::CreateTable { id, def })
                .expect("create")
                .expect("changes");
            catalog.apply(op);
            // Keys inserted out of order, so runs are cut from the index, not insert order.
            let rows: Vec<Vec<Value>> = (0..rows)
                .map(|i| {
                    let k = (i * 7_919) % rows.max(1) - 2_000;
                    let s = (k % 3 != 0).then(|| Value::Utf8(format!("{k}")));
                    vec![Value::Int64(k), s.unwrap_or(Value::Null)]
                })
                .collect();
            if !rows.is_empty() {
                catalog.insert_logged(id, rows, || Ok(1)).expect("insert");
            }
        }
        let threads = encoded(&catalog, &OsEnv::new());
        assert_eq!(threads, encoded(&catalog, &InOrder));
        // The same file written row by row: header, then each table's rows in key order.
        let mut enc = Encoder::new();
        enc.bytes.extend_from_slice(&MAGIC);
        enc.u32(VERSION);
        enc.u32(0);
        enc.u64(7);
        enc.u32(catalog.next_table_id());
        enc.u32(3);
        for table in catalog.tables() {
            enc.u32(table.id);
            enc.table_def(&table.def);
            enc.u64(table.hot_len() as u64);
            let mut keys = Vec::new();
            let image = table.hot_image();
            for (key, packed) in image.packed_rows(0..image.len()) {
                keys.push(key);
                table.layout().encode_packed(key, packed, &mut enc.bytes);
            }
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "key order");
            enc.u64(table.cold.next_segment_id());
            enc.u32(0);
        }
        let crc = crc32c::crc32c(&enc.bytes);
        enc.u32(crc);
        enc.bytes.extend_from_slice(&END_MAGIC);
        assert!(threads == enc.bytes, "differs from the one-pass encoding");
    }

    #[test]
    fn an_image_is_unchanged_by_writes_after_its_capture() {
        let mut catalog = Catalog::new();
        let def = TableDef::new(
            "t",
            vec![
                Column::new("k", DataType::Int64).primary_key(),
                Column::new("s", DataType::Utf8),
            ],
        )
        .expect("valid definition");
        let op = catalog
            .check(LoggedOp::CreateTable { id: 1, def })
            .expect("create")
            .expect("changes");
        catalog.apply(op);
        let value = |k: i64, v: u64| Value::Utf8(format!("{k:06}-{v:04}"));
        let rows: Vec<Vec<Value>> = (0..3_000i64)
            .map(|i| {
                let k = (i * 7_919) % 3_000;
                vec![Value::Int64(k), value(k, 0)]
            })
            .collect();
        catalog.insert_logged(1, rows, || Ok(1)).expect("insert");
        let spawn = InOrder;
        let before = encoded(&catalog, &spawn);
        let image = CatalogImage::capture(&catalog);
        // Every kind of write to the store after the capture: updates in place (same
        // length), deletes, inserts into the runs they freed, inserts at the tail.
        let mut apply = |op: LoggedOp| {
            if let Some(op) = catalog.check(op).expect("valid op") {
                catalog.apply(op);
            }
        };
        for k in (0..3_000i64).step_by(3) {
            apply(LoggedOp::Update {
                id: 1,
                key: k,
                row: vec![Value::Int64(k), value(k, 1)],
            });
        }
        for k in (1..3_000i64).step_by(3) {
            apply(LoggedOp::Delete { id: 1, key: k });
        }
        for k in 3_000..9_000i64 {
            apply(LoggedOp::Insert {
                id: 1,
                rows: vec![vec![Value::Int64(k), value(k, 2)]],
            });
        }
        let mut after = Vec::new();
        encode_into(7, &image, &spawn, &mut |chunk| {
            after.extend_from_slice(chunk);
            Ok(())
        })
        .expect("encode");
        assert!(
            after == before,
            "the image changed with writes after its capture"
        );
        assert!(
            encoded(&catalog, &spawn) != before,
            "the writes changed the state"
        );
    }
}
