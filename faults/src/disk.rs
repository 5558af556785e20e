//! `SimFs`: the simulated disk, in memory, deterministic, with the fault plan wired in.
//!
//! One `Disk` sits behind a mutex shared by the [`SimFs`] (cheap to clone: all clones are
//! the same disk) and every [`File`] handle it opened. The directory tree lives in
//! [`Namespace`](crate::namespace), each file's bytes in [`FileData`](crate::file_data).
//!
//! **Counting calls.** Every `Fs` and `File` method call on a live disk is one I/O call
//! and gets the next number (1-based, never reset, not even by a restart); the default
//! methods `read_exact_at` and `read_all` count as the calls they make. Two exceptions,
//! neither a disk operation, are not counted, so adding them moved no seed's crash point:
//! `File::drop_cached`, a page-cache hint left to the trait's no-op, and `Fs::lock_dir`,
//! the one-writer lock of a directory, held by the (simulated) process and released by a
//! restart. Calls on a frozen
//! disk, and calls through a dead handle, are not counted: they never reach the disk.
//!
//! **Crash.** At the planned call ([`SimFs::crash_at_op`]), or on [`SimFs::freeze`], the
//! disk freezes: that call and all later ones fail with [`Crashed`](crate::Crashed). If
//! the crashing call is a write, a random prefix of its sectors reaches the page cache
//! first (the process died inside `pwrite`). [`SimFs::restart`] then applies crash
//! semantics (only durable state plus a seeded choice of the unsynced state survives),
//! unfreezes the disk and kills every handle opened before it.
//!
//! **Faults** are drawn per call from the plan, in a fixed order, from one ChaCha8 stream
//! seeded by the plan's seed, and each one is recorded in the fault log. A fault whose
//! rate is zero draws nothing, so a calm plan spends no randomness on faults.
//!
//! What each fault does, and what the call returns:
//! - read error: EIO, nothing read; transient.
//! - latent sector: a read of a sector in the latent set fails with EIO every time; the
//!   plan's `read_latent` adds the sector a read touches to the set (and fails that read).
//!   A write to the sector clears it (the drive remaps it), as does truncating it away.
//! - write error: EIO, nothing written.
//! - torn write: a prefix of the write's sectors (possibly none) is written, then EIO: what
//!   a kernel reports when the device fails mid-request; the trait allows it.
//! - acknowledged torn write: some sectors are written, at least one is not, the file's
//!   size covers the whole write, and the call returns `Ok`: a device that lies. Only
//!   checksums can catch it.
//! - misdirected write: the bytes land at a sector-aligned offset of the same or another
//!   file, the intended range keeps its old bytes (the size still grows), `Ok`.
//! - sync error: EIO, and the pending writes of the file are settled at once as a crash
//!   would settle them; the lost ones are gone for good (later syncs succeed but cannot
//!   bring them back) while reads still return the new bytes, as Linux's page cache
//!   does after a failed fsync.
//! - sync_dir error: EIO; the entries it covered stay pending (lost or kept by a crash,
//!   durable after a later successful sync_dir, as a journal retry would make them).
//! - disk full: a write that would push the total of file sizes past the limit writes the
//!   prefix that fits, then fails with `StorageFull` (a short write followed by ENOSPC, as
//!   `write_all` sees it); a growing `set_len` fails whole. Writes inside a file's current
//!   size never fail for space. Raising or removing the limit makes the disk work again.
//!   Space is counted over files the disk still holds: a removed file's bytes count until
//!   its removal is durable (sync_dir or crash) and no handle holds it open.
//! - bit flip: one random bit of a random file's durable bytes flips, at any call.
//!
//! **Damage at rest** ([`SimFs::truncate_at_rest`], [`SimFs::remove_at_rest`],
//! [`SimFs::zero_at_rest`]) is not drawn from the plan: the simulator asks for it while
//! the process is down (after a clean close, or after a crash and before the restart's
//! open). It changes the durable and the current view alike, draws nothing from the
//! disk's streams, is no I/O call, and is recorded in the fault log.

use crate::error::crashed;
use crate::file_data::{sector_pieces, FileData, FILE_BYTES_MAX};
use crate::hash::Hash64;
use crate::inject::Injector;
use crate::log::{FaultKind, FaultRecord, Stats};
use crate::namespace::{components, path_text, Found, Ino, Namespace, ROOT};
use crate::plan::{CrashModel, FaultPlan};
use omendb_env::{DirLock, File, Fs, OpenMode};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

/// `EBADF`: a write through a handle opened read-only.
const EBADF: i32 = 9;
/// `EINVAL`: `set_len` through a handle opened read-only.
const EINVAL: i32 = 22;

/// One file inode.
#[derive(Debug)]
struct FileNode {
    data: FileData,
    /// Its path when last named (for the fault log).
    path: String,
    /// Live handles (of the current epoch) on it.
    open_handles: u32,
}

/// Mixed into the plan's seed for [`Disk::len_rng`].
const LEN_RNG_SALT: u64 = 0x1e57_0b17_e5ee_d001;

/// The whole simulated disk.
struct Disk {
    /// The plan, its stream (`faults.rng`), the call count, the space count (the total
    /// size of the files the disk holds), the fault log and the counters.
    faults: Injector,
    /// The stream of the crash draws added after the first (`len_mid_write`), so that
    /// adding them moved no draw of `faults.rng`.
    len_rng: ChaCha8Rng,
    /// The call at which the disk froze, while it is frozen.
    frozen_at: Option<u64>,
    /// Bumped by every restart; handles of an older epoch are dead.
    epoch: u64,
    /// The call of the last freeze, reported by dead handles.
    last_crash_op: u64,
    ns: Namespace,
    files: BTreeMap<Ino, FileNode>,
    next_ino: Ino,
    /// Unreadable sectors: (inode, sector index).
    latent: BTreeSet<(Ino, u64)>,
    /// Set when some inode may have become unreferenced; the next sweep clears it.
    garbage_possible: bool,
    /// Directories locked with `Fs::lock_dir` (path components), and the lock's number.
    /// Held by the process, not stored on the disk: a restart clears them.
    dir_locks: BTreeMap<Vec<String>, u64>,
    next_dir_lock: u64,
}

/// A held [`Fs::lock_dir`] lock of a simulated disk.
struct SimDirLock {
    disk: Arc<Mutex<Disk>>,
    dir: Vec<String>,
    /// Unique over the disk's life (restarts included), so a guard dropped after a restart
    /// cannot release a lock taken since.
    id: u64,
}

impl Drop for SimDirLock {
    fn drop(&mut self) {
        let mut disk = lock(&self.disk);
        // A lock from before a restart died with its process; never release a newer one.
        if disk.dir_locks.get(&self.dir) == Some(&self.id) {
            disk.dir_locks.remove(&self.dir);
        }
    }
}

/// The simulated disk: an in-memory, deterministic [`Fs`] with a seeded fault model.
///
/// Clones share one disk: give one to the engine (as `Arc<dyn Fs>`) and keep one to
/// crash, restart and inspect it.
#[derive(Clone)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

/// A handle on a simulated file.
struct SimFile {
    disk: Arc<Mutex<Disk>>,
    ino: Ino,
    epoch: u64,
    writable: bool,
}

fn lock(disk: &Mutex<Disk>) -> MutexGuard<'_, Disk> {
    // A panic while holding the lock (a failed assertion in a test) leaves a disk that is
    // still structurally whole: every mutation completes before anything can panic.
    disk.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn too_large(offset_end: Option<u64>) -> io::Result<u64> {
    match offset_end {
        Some(end) if end <= FILE_BYTES_MAX => Ok(end),
        _ => Err(io::Error::new(
            io::ErrorKind::FileTooLarge,
            format!("the simulated disk holds files up to {FILE_BYTES_MAX} bytes"),
        )),
    }
}

impl Disk {
    fn new(plan: FaultPlan) -> Disk {
        let faults = Injector::new(plan);
        Disk {
            len_rng: ChaCha8Rng::seed_from_u64(faults.plan.seed ^ LEN_RNG_SALT),
            faults,
            frozen_at: None,
            epoch: 0,
            last_crash_op: 0,
            ns: Namespace::new(),
            files: BTreeMap::new(),
            next_ino: ROOT + 1,
            latent: BTreeSet::new(),
            garbage_possible: false,
            dir_locks: BTreeMap::new(),
            next_dir_lock: 0,
        }
    }

    fn crash_due(&self) -> bool {
        self.frozen_at.is_none() && self.faults.plan.crash_at_op == Some(self.faults.op_count + 1)
    }

    /// Starts an I/O call: fails if frozen, counts it, freezes if it is the planned crash.
    fn begin(&mut self) -> io::Result<u64> {
        if let Some(op) = self.frozen_at {
            return Err(crashed(op));
        }
        let op = self.faults.count_op();
        if self.faults.plan.crash_at_op == Some(op) {
            self.freeze(op, "planned crash".to_owned());
            return Err(crashed(op));
        }
        if self.faults.coin(|plan| plan.bit_flip) {
            self.random_bit_flip(op);
        }
        Ok(op)
    }

    fn freeze(&mut self, op: u64, detail: String) {
        self.frozen_at = Some(op);
        self.last_crash_op = op;
        self.faults
            .record_at(FaultKind::Crash, op, "/", 0, 0, detail);
    }

    fn check_handle(&self, epoch: u64) -> io::Result<()> {
        if epoch == self.epoch {
            Ok(())
        } else {
            Err(crashed(self.last_crash_op))
        }
    }

    fn node(&self, ino: Ino) -> io::Result<&FileNode> {
        self.files
            .get(&ino)
            .ok_or_else(|| io::Error::other(format!("simulated disk: inode {ino} vanished")))
    }

    fn node_mut(&mut self, ino: Ino) -> io::Result<&mut FileNode> {
        self.files
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other(format!("simulated disk: inode {ino} vanished")))
    }

    fn sector_bytes(&self) -> u64 {
        self.faults.plan.sector_bytes
    }

    /// Writes into the page cache; keeps the space count and the latent set right.
    fn apply_write(&mut self, ino: Ino, offset: u64, bytes: &[u8], op: u64) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let sector = self.sector_bytes();
        let node = self
            .files
            .get_mut(&ino)
            .ok_or_else(|| io::Error::other("inode vanished"))?;
        let len_before = node.data.len();
        node.data.write(offset, bytes, op);
        self.faults.used_bytes += node.data.len() - len_before;
        if !self.latent.is_empty() {
            let first = offset / sector;
            let last = (offset + bytes.len() as u64 - 1) / sector;
            let remapped: Vec<(Ino, u64)> = self
                .latent
                .range((ino, first)..=(ino, last))
                .copied()
                .collect();
            for key in remapped {
                omendb_env::probe!(crate::PROBE_LATENT_HEALED_BY_WRITE);
                self.latent.remove(&key);
            }
        }
        Ok(())
    }

    fn apply_set_len(&mut self, ino: Ino, len_bytes: u64, op: u64) -> io::Result<()> {
        let sector = self.sector_bytes();
        let node = self.node_mut(ino)?;
        let len_before = node.data.len();
        node.data.set_len(len_bytes, op);
        self.faults.used_bytes = self.faults.used_bytes - len_before + len_bytes;
        if len_bytes < len_before && !self.latent.is_empty() {
            let first_gone = len_bytes.div_ceil(sector);
            let gone: Vec<(Ino, u64)> = self
                .latent
                .range((ino, first_gone)..=(ino, u64::MAX))
                .copied()
                .collect();
            for key in gone {
                self.latent.remove(&key);
            }
        }
        Ok(())
    }

    fn random_bit_flip(&mut self, op: u64) {
        let candidates: Vec<Ino> = self
            .files
            .iter()
            .filter(|(_, node)| !node.data.durable_bytes().is_empty())
            .map(|(ino, _)| *ino)
            .collect();
        if candidates.is_empty() {
            return;
        }
        let ino = candidates[self.faults.rng.random_range(0..candidates.len())];
        let Some(node) = self.files.get_mut(&ino) else {
            return;
        };
        let bits = node.data.durable_bytes().len() as u64 * 8;
        let bit = self.faults.rng.random_range(0..bits);
        node.data.flip_durable_bit(bit);
        let path = node.path.clone();
        self.faults.record_at(
            FaultKind::BitFlip,
            op,
            &path,
            bit / 8,
            1,
            format!("bit {} of the byte", bit % 8),
        );
    }

    // ---- File calls ----

    fn read_at(&mut self, ino: Ino, epoch: u64, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.check_handle(epoch)?;
        let op = self.begin()?;
        if self.faults.coin(|plan| plan.read_error) {
            let path = self.node(ino)?.path.clone();
            return Err(self.faults.fail(
                FaultKind::ReadError,
                op,
                &path,
                offset,
                buf.len() as u64,
                String::new(),
            ));
        }
        let len = self.node(ino)?.data.len();
        if offset >= len || buf.is_empty() {
            return Ok(0);
        }
        let n = (buf.len() as u64).min(len - offset);
        let sector = self.sector_bytes();
        let (first, last) = (offset / sector, (offset + n - 1) / sector);
        let latent_hit = self
            .latent
            .range((ino, first)..=(ino, last))
            .next()
            .copied();
        if let Some((_, bad)) = latent_hit {
            let path = self.node(ino)?.path.clone();
            return Err(self.faults.fail(
                FaultKind::LatentRead,
                op,
                &path,
                bad * sector,
                sector,
                String::new(),
            ));
        }
        if self.faults.coin(|plan| plan.read_latent) {
            let bad = self.faults.rng.random_range(first..=last);
            self.latent.insert((ino, bad));
            let path = self.node(ino)?.path.clone();
            return Err(self.faults.fail(
                FaultKind::LatentSector,
                op,
                &path,
                bad * sector,
                sector,
                String::new(),
            ));
        }
        let read = self.node(ino)?.data.read(buf, offset);
        self.faults.count_read(read);
        Ok(read)
    }

    fn write_at(
        &mut self,
        ino: Ino,
        epoch: u64,
        writable: bool,
        buf: &[u8],
        offset: u64,
    ) -> io::Result<()> {
        self.check_handle(epoch)?;
        let end = too_large(offset.checked_add(buf.len() as u64))?;
        if self.crash_due() && writable {
            // The process dies inside the write: a prefix of its sectors got copied.
            let pieces: Vec<u64> = sector_pieces(offset, buf, self.sector_bytes())
                .map(|(o, _)| o)
                .collect();
            let kept = self.faults.rng.random_range(0..=pieces.len());
            let prefix_end = pieces.get(kept).copied().unwrap_or(end);
            let prefix = &buf[..(prefix_end - offset) as usize];
            let growth = prefix_end.saturating_sub(self.node(ino)?.data.len());
            if growth <= self.faults.space_left() {
                self.apply_write(ino, offset, prefix, self.faults.op_count + 1)?;
            }
        }
        let op = self.begin()?;
        if buf.is_empty() {
            // std's write_all_at makes no system call for an empty buffer.
            return Ok(());
        }
        if !writable {
            return Err(io::Error::from_raw_os_error(EBADF));
        }
        let (path, len_before) = {
            let node = self.node(ino)?;
            (node.path.clone(), node.data.len())
        };
        if self.faults.coin(|plan| plan.write_error) {
            return Err(self.faults.fail(
                FaultKind::WriteError,
                op,
                &path,
                offset,
                buf.len() as u64,
                String::new(),
            ));
        }
        let growth = end.saturating_sub(len_before);
        if growth > self.faults.space_left() {
            let prefix_len = self
                .faults
                .full_prefix_len(len_before, offset, buf.len() as u64);
            self.apply_write(ino, offset, &buf[..prefix_len as usize], op)?;
            let detail = format!(
                "wrote {prefix_len} of {} bytes, used {}",
                buf.len(),
                self.faults.used_bytes
            );
            return Err(self.faults.fail(
                FaultKind::DiskFull,
                op,
                &path,
                offset,
                buf.len() as u64,
                detail,
            ));
        }
        let sector = self.sector_bytes();
        if self.faults.coin(|plan| plan.write_torn) {
            let (prefix_len, detail) = self.faults.torn_prefix(offset, buf);
            self.apply_write(ino, offset, &buf[..prefix_len], op)?;
            return Err(self.faults.fail(
                FaultKind::TornWrite,
                op,
                &path,
                offset,
                buf.len() as u64,
                detail,
            ));
        }
        if self.faults.coin(|plan| plan.write_torn_acked) {
            let pieces: Vec<(u64, usize)> = sector_pieces(offset, buf, sector)
                .map(|(o, p)| (o, p.len()))
                .collect();
            let missing_for_sure = self.faults.rng.random_range(0..pieces.len());
            if end > len_before {
                self.apply_set_len(ino, end, op)?;
            }
            let mut written = 0;
            for (i, (piece_offset, piece_len)) in pieces.iter().enumerate() {
                if i != missing_for_sure && self.faults.rng.random_bool(0.5) {
                    let start = (piece_offset - offset) as usize;
                    self.apply_write(ino, *piece_offset, &buf[start..start + piece_len], op)?;
                    written += 1;
                }
            }
            let detail = format!(
                "wrote {written} of {} sector pieces, reported success",
                pieces.len()
            );
            self.faults.record_at(
                FaultKind::TornWriteAcked,
                op,
                &path,
                offset,
                buf.len() as u64,
                detail,
            );
            self.faults.count_write(buf.len());
            return Ok(());
        }
        if self.faults.coin(|plan| plan.write_misdirected)
            && self.misdirect(ino, buf, offset, op, &path)?
        {
            self.faults.count_write(buf.len());
            return Ok(());
        }
        self.apply_write(ino, offset, buf, op)?;
        self.faults.count_write(buf.len());
        Ok(())
    }

    /// Lands `buf` somewhere else: half the time in another file (when there is one), at a
    /// sector-aligned offset within its current size. Returns false (nothing done) when
    /// the misdirected write would not fit in the space left.
    fn misdirect(
        &mut self,
        ino: Ino,
        buf: &[u8],
        offset: u64,
        op: u64,
        path: &str,
    ) -> io::Result<bool> {
        let others: Vec<Ino> = self
            .files
            .keys()
            .copied()
            .filter(|other| *other != ino)
            .collect();
        let target = if !others.is_empty() && self.faults.rng.random_bool(0.5) {
            others[self.faults.rng.random_range(0..others.len())]
        } else {
            ino
        };
        let sector = self.sector_bytes();
        let target_len = self.node(target)?.data.len();
        let target_offset = self.faults.rng.random_range(0..=target_len / sector) * sector;
        let len_before = self.node(ino)?.data.len();
        let intended_end = offset + buf.len() as u64;
        let target_end = too_large(target_offset.checked_add(buf.len() as u64))?;
        let growth =
            intended_end.saturating_sub(len_before) + target_end.saturating_sub(target_len);
        if growth > self.faults.space_left() || (target == ino && target_offset == offset) {
            return Ok(false);
        }
        if intended_end > len_before {
            self.apply_set_len(ino, intended_end, op)?;
        }
        self.apply_write(target, target_offset, buf, op)?;
        let target_path = self.node(target)?.path.clone();
        let detail = format!("landed in {target_path} at offset {target_offset}");
        self.faults.record_at(
            FaultKind::MisdirectedWrite,
            op,
            path,
            offset,
            buf.len() as u64,
            detail,
        );
        Ok(true)
    }

    fn sync(&mut self, ino: Ino, epoch: u64) -> io::Result<()> {
        self.check_handle(epoch)?;
        let op = self.begin()?;
        self.sync_file(ino, op)
    }

    fn sync_file(&mut self, ino: Ino, op: u64) -> io::Result<()> {
        if self.faults.coin(|plan| plan.sync_error) {
            // A failed fsync settles the writes, but the process keeps running and keeps
            // its view of the size: sizes stop inside a write only at a power loss.
            let model = CrashModel {
                len_mid_write: 0.0,
                ..self.faults.plan.crash
            };
            let sector = self.sector_bytes();
            let mut records = Vec::new();
            let node = self
                .files
                .get_mut(&ino)
                .ok_or_else(|| io::Error::other("inode vanished"))?;
            let path = node.path.clone();
            node.data.fail_sync(
                &mut self.faults.rng,
                &mut self.len_rng,
                &model,
                sector,
                &path,
                &mut records,
            );
            let detail = format!(
                "pending writes settled as by a crash: {} losses",
                records.len()
            );
            let error = self
                .faults
                .fail(FaultKind::SyncError, op, &path, 0, 0, detail);
            for record in records {
                self.faults.record(record);
            }
            return Err(error);
        }
        self.node_mut(ino)?.data.sync();
        self.faults.stats.syncs += 1;
        Ok(())
    }

    fn set_len(&mut self, ino: Ino, epoch: u64, writable: bool, len_bytes: u64) -> io::Result<()> {
        self.check_handle(epoch)?;
        let op = self.begin()?;
        if !writable {
            return Err(io::Error::from_raw_os_error(EINVAL));
        }
        too_large(Some(len_bytes))?;
        let (path, len_before) = {
            let node = self.node(ino)?;
            (node.path.clone(), node.data.len())
        };
        if len_bytes.saturating_sub(len_before) > self.faults.space_left() {
            let detail = format!("extend from {len_before}, used {}", self.faults.used_bytes);
            return Err(self.faults.fail(
                FaultKind::DiskFull,
                op,
                &path,
                len_before,
                len_bytes - len_before,
                detail,
            ));
        }
        self.apply_set_len(ino, len_bytes, op)
    }

    fn len(&mut self, ino: Ino, epoch: u64) -> io::Result<u64> {
        self.check_handle(epoch)?;
        self.begin()?;
        Ok(self.node(ino)?.data.len())
    }

    fn handle_dropped(&mut self, ino: Ino, epoch: u64) {
        if epoch != self.epoch {
            return;
        }
        if let Some(node) = self.files.get_mut(&ino) {
            node.open_handles = node.open_handles.saturating_sub(1);
            if node.open_handles == 0 {
                self.garbage_possible = true;
            }
        }
    }

    // ---- Fs calls ----

    fn open(
        &mut self,
        disk: &Arc<Mutex<Disk>>,
        path: &Path,
        mode: OpenMode,
    ) -> io::Result<Box<dyn File>> {
        let op = self.begin()?;
        let parts = components(path)?;
        let exists_error = || {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{}: file exists", path_text(&parts)),
            )
        };
        if parts.is_empty() {
            return Err(if mode == OpenMode::CreateNew {
                exists_error()
            } else {
                io::Error::new(io::ErrorKind::IsADirectory, "/: is a directory")
            });
        }
        let (parent, name) = self.ns.parent(&parts)?;
        let ino = match self.ns.child(parent, name) {
            Some(_) if mode == OpenMode::CreateNew => return Err(exists_error()),
            Some(Found::Dir(_)) => {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    format!("{}: is a directory", path_text(&parts)),
                ))
            }
            Some(Found::File(ino)) => ino,
            None if matches!(mode, OpenMode::Read | OpenMode::ReadWrite) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{}: no such file", path_text(&parts)),
                ))
            }
            None => {
                let ino = self.next_ino;
                self.next_ino += 1;
                self.files.insert(
                    ino,
                    FileNode {
                        data: FileData::default(),
                        path: path_text(&parts),
                        open_handles: 0,
                    },
                );
                self.ns.link(parent, name, ino, op, &parts);
                ino
            }
        };
        self.node_mut(ino)?.open_handles += 1;
        Ok(Box::new(SimFile {
            disk: disk.clone(),
            ino,
            epoch: self.epoch,
            writable: mode != OpenMode::Read,
        }))
    }

    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let op = self.begin()?;
        let from = components(from)?;
        let to = components(to)?;
        let replaced = self.ns.rename(&from, &to, op)?;
        if let Ok(Found::File(ino)) = self.ns.lookup(&to) {
            if let Some(node) = self.files.get_mut(&ino) {
                node.path = path_text(&to);
            }
        }
        if replaced.is_some() {
            self.garbage_possible = true;
            self.collect_garbage();
        }
        Ok(())
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        let op = self.begin()?;
        let parts = components(path)?;
        let (parent, name) = self.ns.parent(&parts)?;
        match self.ns.child(parent, name) {
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: no such file", path_text(&parts)),
            )),
            Some(Found::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path_text(&parts)),
            )),
            Some(Found::File(_)) => {
                self.ns.unlink(parent, name, op, &parts);
                self.garbage_possible = true;
                self.collect_garbage();
                Ok(())
            }
        }
    }

    fn list(&mut self, dir: &Path) -> io::Result<Vec<String>> {
        self.begin()?;
        let parts = components(dir)?;
        match self.ns.lookup(&parts)? {
            Found::Dir(ino) => Ok(self.ns.names(ino)),
            Found::File(_) => Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{}: not a directory", path_text(&parts)),
            )),
        }
    }

    fn create_dir(&mut self, dir: &Path) -> io::Result<()> {
        let op = self.begin()?;
        let parts = components(dir)?;
        let mut at = ROOT;
        for (i, name) in parts.iter().enumerate() {
            match self.ns.child(at, name) {
                Some(Found::Dir(child)) => at = child,
                Some(Found::File(_)) => {
                    let kind = if i + 1 == parts.len() {
                        io::ErrorKind::AlreadyExists
                    } else {
                        io::ErrorKind::NotADirectory
                    };
                    return Err(io::Error::new(
                        kind,
                        format!("{}: a file is in the way", path_text(&parts[..=i])),
                    ));
                }
                None => {
                    let ino = self.next_ino;
                    self.next_ino += 1;
                    self.ns.add_dir(ino);
                    self.ns.link(at, name, ino, op, &parts[..=i]);
                    at = ino;
                }
            }
        }
        Ok(())
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let op = self.begin()?;
        let parts = components(dir)?;
        let ino = match self.ns.lookup(&parts)? {
            // fsync on a file opened by its path syncs the file, as on Linux.
            Found::File(ino) => return self.sync_file(ino, op),
            Found::Dir(ino) => ino,
        };
        if self.faults.coin(|plan| plan.sync_dir_error) {
            // The entries stay pending: a crash may lose them, a later sync_dir (a journal
            // retry) may make them durable. Settling them now would let later ops that
            // build on a lost one become durable alone, and give an inode two names.
            let path = path_text(&parts);
            let detail = "pending entries stay pending".to_owned();
            return Err(self
                .faults
                .fail(FaultKind::SyncDirError, op, &path, 0, 0, detail));
        }
        if self.ns.has_pending_in(ino) {
            self.ns.sync_dir(ino);
            self.garbage_possible = true;
        }
        self.collect_garbage();
        self.faults.stats.sync_dirs += 1;
        Ok(())
    }

    fn exists(&mut self, path: &Path) -> io::Result<bool> {
        self.begin()?;
        let parts = components(path)?;
        match self.ns.lookup(&parts) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees inodes nothing refers to (no name in either view, no pending op, no handle).
    fn collect_garbage(&mut self) {
        if !self.garbage_possible {
            return;
        }
        self.garbage_possible = false;
        let referenced = self.ns.referenced();
        let mut freed_bytes = 0;
        self.files.retain(|ino, node| {
            let keep = node.open_handles > 0 || referenced.contains(ino);
            if !keep {
                freed_bytes += node.data.len();
            }
            keep
        });
        self.faults.used_bytes -= freed_bytes;
        let files = &self.files;
        self.latent.retain(|(ino, _)| files.contains_key(ino));
        self.ns.retain_dirs(&referenced);
    }

    // ---- Crash ----

    fn restart(&mut self) {
        if self.frozen_at.is_none() {
            let op = self.faults.op_count;
            self.freeze(op, "power cut between calls".to_owned());
        }
        let mut records = Vec::new();
        let keep = self.faults.plan.crash.dir_op_persist;
        let alive = self.ns.crash(&mut self.faults.rng, keep, &mut records);
        self.files.retain(|ino, _| alive.contains(ino));
        for (path, found) in self.ns.walk(false) {
            if let Some(node) = self.files.get_mut(&found.ino()) {
                node.path = path;
            }
        }
        let (model, sector) = (self.faults.plan.crash, self.sector_bytes());
        for node in self.files.values_mut() {
            node.data.crash(
                &mut self.faults.rng,
                &mut self.len_rng,
                &model,
                sector,
                &node.path,
                &mut records,
            );
            node.open_handles = 0;
        }
        let files = &self.files;
        self.latent.retain(|(ino, _)| files.contains_key(ino));
        self.faults.used_bytes = self.files.values().map(|node| node.data.len()).sum();
        for record in records {
            self.faults.record(record);
        }
        self.epoch += 1;
        self.dir_locks.clear();
        self.frozen_at = None;
        if self
            .faults
            .plan
            .crash_at_op
            .is_some_and(|op| op <= self.faults.op_count)
        {
            self.faults.plan.crash_at_op = None;
        }
        self.garbage_possible = false;
        self.faults.stats.restarts += 1;
    }

    fn image_hash(&self) -> u64 {
        let mut hash = Hash64::new();
        for (durable, tag) in [
            (true, b"durable".as_slice()),
            (false, b"current".as_slice()),
        ] {
            hash.bytes(tag);
            for (path, found) in self.ns.walk(durable) {
                hash.bytes(path.as_bytes());
                match found {
                    Found::Dir(_) => hash.bytes(b"/"),
                    Found::File(ino) => {
                        if let Some(node) = self.files.get(&ino) {
                            let data = &node.data;
                            hash.bytes(if durable {
                                data.durable_bytes()
                            } else {
                                data.current_bytes()
                            });
                        }
                    }
                }
            }
        }
        for (ino, sector) in &self.latent {
            if let Some(node) = self.files.get(ino) {
                hash.bytes(node.path.as_bytes());
                hash.bytes(&sector.to_le_bytes());
            }
        }
        hash.finish()
    }

    fn check_invariants(&self) -> Result<(), String> {
        let used: u64 = self.files.values().map(|node| node.data.len()).sum();
        if used != self.faults.used_bytes {
            return Err(format!(
                "used_bytes {} but files hold {used}",
                self.faults.used_bytes
            ));
        }
        self.ns
            .check_invariants(|ino| self.files.contains_key(&ino))?;
        for (ino, node) in &self.files {
            node.data
                .check_invariants()
                .map_err(|e| format!("file {} (inode {ino}): {e}", node.path))?;
        }
        if self.frozen_at.is_some_and(|op| op > self.faults.op_count) {
            return Err("frozen at a call not yet made".to_owned());
        }
        Ok(())
    }
}

impl SimFs {
    /// A fresh, empty disk (just the root directory) following `plan`.
    pub fn new(plan: FaultPlan) -> SimFs {
        SimFs {
            disk: Arc::new(Mutex::new(Disk::new(plan))),
        }
    }

    /// A disk with every fault off; `seed` still drives what a crash keeps.
    pub fn calm(seed: u64) -> SimFs {
        SimFs::new(FaultPlan::none().with_seed(seed))
    }

    fn lock(&self) -> MutexGuard<'_, Disk> {
        lock(&self.disk)
    }

    /// The plan in force (normalized).
    pub fn plan(&self) -> FaultPlan {
        self.lock().faults.plan.clone()
    }

    /// Replaces the plan's rates, crash call, space limit, sector size and crash model.
    /// The random stream is not reseeded (the new plan's `seed` is ignored), so a run that
    /// changes plans midway stays a function of the first seed.
    pub fn set_plan(&self, plan: FaultPlan) {
        self.lock().faults.set_plan(plan);
    }

    /// Freezes the disk at I/O call `op` (1-based, counted over the disk's whole life):
    /// that call and every later one fail with [`Crashed`](crate::Crashed). A call number
    /// already passed never comes.
    pub fn crash_at_op(&self, op: u64) {
        self.lock().faults.plan.crash_at_op = Some(op);
    }

    /// Cancels a planned crash.
    pub fn cancel_crash(&self) {
        self.lock().faults.plan.crash_at_op = None;
    }

    /// Freezes the disk now, between calls (the process dies); a no-op if already frozen.
    pub fn freeze(&self) {
        let mut disk = self.lock();
        if disk.frozen_at.is_none() {
            let op = disk.faults.op_count;
            disk.freeze(op, "freeze requested".to_owned());
        }
    }

    /// Whether the disk is frozen (crashed and not yet restarted).
    pub fn is_frozen(&self) -> bool {
        self.lock().frozen_at.is_some()
    }

    /// Power comes back: applies crash semantics (freezing first if the disk is live),
    /// then lets calls through again. Only durable state survives, plus a seeded choice of
    /// the unsynced writes, size changes and directory operations (see
    /// [`CrashModel`](crate::CrashModel)). Every handle opened before is dead for good.
    /// Latent sector errors and flipped bits stay: they are on the medium.
    pub fn restart(&self) {
        self.lock().restart();
    }

    /// Sets (or removes) the space limit over the total size of all files.
    pub fn set_space_limit(&self, limit_bytes: Option<u64>) {
        self.lock().faults.plan.space_limit_bytes = limit_bytes;
    }

    /// The total size of the files the disk holds, as the space limit counts it.
    pub fn used_bytes(&self) -> u64 {
        self.lock().faults.used_bytes
    }

    /// I/O calls counted so far (the number of the last call made).
    pub fn op_count(&self) -> u64 {
        self.lock().faults.op_count
    }

    /// Counters over the disk's life.
    pub fn stats(&self) -> Stats {
        self.lock().faults.stats.clone()
    }

    /// Every fault injected or decided, oldest first (the newest
    /// [`FAULT_LOG_RECORDS_MAX`](crate::FAULT_LOG_RECORDS_MAX) of them).
    pub fn fault_log(&self) -> Vec<FaultRecord> {
        self.lock().faults.log.records()
    }

    /// The fault log as text, one record per line.
    pub fn fault_log_text(&self) -> String {
        self.lock().faults.log.text()
    }

    /// A stable hash of the whole image: every path and its bytes in the durable view,
    /// then in the current view, then the latent sectors. Equal across runs and
    /// processes for equal images.
    pub fn disk_hash(&self) -> u64 {
        self.lock().image_hash()
    }

    /// Flips bit `bit_offset` (counted from the file's first byte) of the durable bytes of
    /// `path` (a file in the current view): corruption at rest. Reads see it unless an
    /// unsynced write covers that byte. Recorded in the fault log; not an I/O call.
    pub fn flip_bit(&self, path: &Path, bit_offset: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.lookup_file(path)?;
        let node = disk.node_mut(ino)?;
        if !node.data.flip_durable_bit(bit_offset) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bit {bit_offset} lies past the durable bytes of {}",
                    node.path
                ),
            ));
        }
        let path = node.path.clone();
        let op = disk.faults.op_count;
        disk.faults.record_at(
            FaultKind::BitFlip,
            op,
            &path,
            bit_offset / 8,
            1,
            format!("bit {}", bit_offset % 8),
        );
        Ok(())
    }

    /// Makes the sector holding byte `offset` of `path` unreadable until it is written.
    pub fn add_latent_error(&self, path: &Path, offset: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.lookup_file(path)?;
        let sector = disk.sector_bytes();
        disk.latent.insert((ino, offset / sector));
        let path = disk.node(ino)?.path.clone();
        let op = disk.faults.op_count;
        disk.faults.record_at(
            FaultKind::LatentSector,
            op,
            &path,
            offset / sector * sector,
            sector,
            String::new(),
        );
        Ok(())
    }

    /// Cuts `path` to `len_bytes` (shorter than it is) while the process is down: damage at
    /// rest, as a file system that lost a file's tail after a power loss, or a copy or
    /// restore that stopped short. Both views change and nothing is pending, so a crash
    /// neither undoes nor repeats it. The file must be at rest (see
    /// [`SimFs::remove_at_rest`]). Recorded in the fault log; not an I/O call.
    pub fn truncate_at_rest(&self, path: &Path, len_bytes: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.file_at_rest(path)?;
        let sector = disk.sector_bytes();
        let node = disk.node_mut(ino)?;
        let len_before = node.data.len();
        if !node.data.truncate_at_rest(len_bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: cannot cut {len_before} bytes to {len_bytes}",
                    node.path
                ),
            ));
        }
        let path = node.path.clone();
        disk.faults.used_bytes -= len_before - len_bytes;
        let first_gone = len_bytes.div_ceil(sector);
        disk.latent
            .retain(|&(i, sector)| i != ino || sector < first_gone);
        let op = disk.faults.op_count;
        disk.faults.record_at(
            FaultKind::TruncatedAtRest,
            op,
            &path,
            len_bytes,
            len_before - len_bytes,
            format!("cut from {len_before} to {len_bytes} bytes"),
        );
        Ok(())
    }

    /// Zeroes `len_bytes` bytes of `path` from `offset` (clamped to its end) while the
    /// process is down: damage at rest, as a file system that replayed a journal over lost
    /// data blocks. Both views change. The file must be at rest (see
    /// [`SimFs::remove_at_rest`]). Recorded in the fault log; not an I/O call.
    pub fn zero_at_rest(&self, path: &Path, offset: u64, len_bytes: u64) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.file_at_rest(path)?;
        let node = disk.node_mut(ino)?;
        let len = node.data.len();
        if len_bytes == 0 || !node.data.zero_at_rest(offset, len_bytes) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{}: cannot zero {len_bytes} bytes at {offset} of {len}",
                    node.path
                ),
            ));
        }
        let path = node.path.clone();
        let zeroed = len_bytes.min(len - offset);
        let op = disk.faults.op_count;
        disk.faults.record_at(
            FaultKind::ZeroedAtRest,
            op,
            &path,
            offset,
            zeroed,
            format!("{zeroed} bytes zeroed"),
        );
        Ok(())
    }

    /// Removes `path` from both views while the process is down: damage at rest, as a file
    /// system check that dropped an inode, or an operator's `rm`. Nothing is pending, so a
    /// crash does not bring it back. The file must be at rest: the same inode in the
    /// current and the durable view, no pending write, size change or directory op on it,
    /// no live handle. Recorded in the fault log (`len_bytes` is the file's length); not an
    /// I/O call.
    pub fn remove_at_rest(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.lock();
        let ino = disk.file_at_rest(path)?;
        let parts = components(path)?;
        let (path, len) = {
            let node = disk.node(ino)?;
            (node.path.clone(), node.data.len())
        };
        if disk.ns.remove_at_rest(&parts) != Some(ino) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{path}: a pending directory op touches it"),
            ));
        }
        disk.garbage_possible = true;
        disk.collect_garbage();
        let op = disk.faults.op_count;
        disk.faults.record_at(
            FaultKind::RemovedAtRest,
            op,
            &path,
            0,
            len,
            "removed".to_owned(),
        );
        Ok(())
    }

    /// The durable bytes of `path`, looked up in the durable view: what a crash now would
    /// keep for sure.
    pub fn read_durable(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let parts = components(path)?;
        match disk.ns.lookup_durable(&parts) {
            Some(Found::File(ino)) => Ok(disk.node(ino)?.data.durable_bytes().to_vec()),
            Some(Found::Dir(_)) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                path_text(&parts),
            )),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{}: not in the durable view", path_text(&parts)),
            )),
        }
    }

    /// The bytes of `path` as the process sees them (no I/O call, no faults).
    pub fn read_current(&self, path: &Path) -> io::Result<Vec<u8>> {
        let disk = self.lock();
        let ino = disk.lookup_file(path)?;
        Ok(disk.node(ino)?.data.current_bytes().to_vec())
    }

    /// The paths of all files in the current view, sorted.
    pub fn files(&self) -> Vec<String> {
        self.lock().file_paths(false)
    }

    /// The paths of all files in the durable view, sorted.
    pub fn durable_files(&self) -> Vec<String> {
        self.lock().file_paths(true)
    }

    /// Whether anything is not yet durable: unsynced writes or pending directory ops.
    pub fn has_unsynced(&self) -> bool {
        let disk = self.lock();
        disk.ns.pending_len() > 0 || disk.files.values().any(|node| node.data.has_pending())
    }

    /// Checks the disk's structural invariants; the error says which one broke.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.lock().check_invariants()
    }
}

impl Disk {
    /// The inode of `path` if it is at rest: a file with the same inode in both views, no
    /// pending write or size change, no live handle.
    fn file_at_rest(&self, path: &Path) -> io::Result<Ino> {
        let ino = self.lookup_file(path)?;
        let parts = components(path)?;
        let node = self.node(ino)?;
        let busy = if self.ns.lookup_durable(&parts) != Some(Found::File(ino)) {
            Some("its directory entry is not durable")
        } else if node.data.has_pending() {
            Some("it has unsynced writes")
        } else if node.open_handles > 0 {
            Some("a live handle holds it open")
        } else {
            None
        };
        match busy {
            Some(why) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not at rest: {why}", node.path),
            )),
            None => Ok(ino),
        }
    }

    fn lookup_file(&self, path: &Path) -> io::Result<Ino> {
        let parts = components(path)?;
        match self.ns.lookup(&parts)? {
            Found::File(ino) => Ok(ino),
            Found::Dir(_) => Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{}: is a directory", path_text(&parts)),
            )),
        }
    }

    fn file_paths(&self, durable: bool) -> Vec<String> {
        self.ns
            .walk(durable)
            .into_iter()
            .filter(|(_, found)| matches!(found, Found::File(_)))
            .map(|(path, _)| path)
            .collect()
    }
}

impl fmt::Debug for SimFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let disk = self.lock();
        f.debug_struct("SimFs")
            .field("plan", &disk.faults.plan.to_string())
            .field("op_count", &disk.faults.op_count)
            .field("frozen_at", &disk.frozen_at)
            .field("files", &disk.files.len())
            .field("used_bytes", &disk.faults.used_bytes)
            .finish()
    }
}

impl Fs for SimFs {
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn File>> {
        self.lock().open(&self.disk, path, mode)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.lock().rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.lock().remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.lock().list(dir)
    }

    fn create_dir(&self, dir: &Path) -> io::Result<()> {
        self.lock().create_dir(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.lock().sync_dir(dir)
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.lock().exists(path)
    }

    /// Not an I/O call: not counted, no fault drawn, so it moves no seed's crash point. A
    /// frozen disk refuses it as it refuses every call; a restart releases every lock.
    fn lock_dir(&self, dir: &Path) -> io::Result<Option<DirLock>> {
        let mut disk = self.lock();
        if let Some(op) = disk.frozen_at {
            return Err(crashed(op));
        }
        let parts = components(dir)?;
        match disk.ns.lookup(&parts)? {
            Found::Dir(_) => {}
            Found::File(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ))
            }
        }
        if disk.dir_locks.contains_key(&parts) {
            return Ok(None);
        }
        disk.next_dir_lock += 1;
        let id = disk.next_dir_lock;
        disk.dir_locks.insert(parts.clone(), id);
        Ok(Some(DirLock(Box::new(SimDirLock {
            disk: self.disk.clone(),
            dir: parts,
            id,
        }))))
    }
}

impl File for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        lock(&self.disk).read_at(self.ino, self.epoch, buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        lock(&self.disk).write_at(self.ino, self.epoch, self.writable, buf, offset)
    }

    fn sync(&self) -> io::Result<()> {
        lock(&self.disk).sync(self.ino, self.epoch)
    }

    fn set_len(&self, len_bytes: u64) -> io::Result<()> {
        lock(&self.disk).set_len(self.ino, self.epoch, self.writable, len_bytes)
    }

    fn len(&self) -> io::Result<u64> {
        lock(&self.disk).len(self.ino, self.epoch)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        lock(&self.disk).handle_dropped(self.ino, self.epoch);
    }
}
