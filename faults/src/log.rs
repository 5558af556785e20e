//! The fault log and the disk's counters.
//!
//! Every fault the disk injects, and every loss a crash or a failed sync decides, becomes a
//! [`FaultRecord`]: what, where (path, offset, length) and at which I/O call. A failing
//! simulator run prints the log (one record per line, [`fmt::Display`]) next to its seed,
//! so the reader sees what happened to the disk. The log keeps the newest
//! [`FAULT_LOG_RECORDS_MAX`] records and counts the ones it dropped.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The most records the log keeps; older ones are dropped (and counted).
pub const FAULT_LOG_RECORDS_MAX: usize = 1 << 16;

/// What kind of fault was injected or decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// The disk froze: the simulated process died at this I/O call.
    Crash,
    /// At a restart (or a failed sync), an unsynced write persisted only partly or not at
    /// all.
    UnsyncedWriteLost,
    /// At a restart (or a failed sync), unsynced size changes (set_len, extending writes)
    /// were lost.
    UnsyncedLenLost,
    /// At a restart, a pending create, rename or remove was lost.
    DirOpLost,
    /// A read failed with EIO.
    ReadError,
    /// A write failed with EIO before writing anything.
    WriteError,
    /// A write wrote a prefix of its sectors, then failed with EIO.
    TornWrite,
    /// A write wrote only some of its sectors and reported success.
    TornWriteAcked,
    /// A write landed at another offset or in another file, and reported success.
    MisdirectedWrite,
    /// A sync failed with EIO; the writes it covered were settled as a crash settles them.
    SyncError,
    /// A sync_dir failed with EIO; the entries it covered stay pending.
    SyncDirError,
    /// A write or an extension hit the space limit (ENOSPC).
    DiskFull,
    /// A bit of durable data was flipped at rest.
    BitFlip,
    /// A sector became unreadable (latent sector error).
    LatentSector,
    /// A read touched an unreadable sector and failed.
    LatentRead,
    /// While the process was down, a file was cut short (`offset` is the new length,
    /// `len_bytes` how many bytes went).
    TruncatedAtRest,
    /// While the process was down, a file was removed (`len_bytes` its length).
    RemovedAtRest,
    /// While the process was down, a range of a file was zeroed.
    ZeroedAtRest,
}

impl FaultKind {
    /// A short, stable, snake_case name, used in the log's text.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Crash => "crash",
            FaultKind::UnsyncedWriteLost => "unsynced_write_lost",
            FaultKind::UnsyncedLenLost => "unsynced_len_lost",
            FaultKind::DirOpLost => "dir_op_lost",
            FaultKind::ReadError => "read_error",
            FaultKind::WriteError => "write_error",
            FaultKind::TornWrite => "torn_write",
            FaultKind::TornWriteAcked => "torn_write_acked",
            FaultKind::MisdirectedWrite => "misdirected_write",
            FaultKind::SyncError => "sync_error",
            FaultKind::SyncDirError => "sync_dir_error",
            FaultKind::DiskFull => "disk_full",
            FaultKind::BitFlip => "bit_flip",
            FaultKind::LatentSector => "latent_sector",
            FaultKind::LatentRead => "latent_read",
            FaultKind::TruncatedAtRest => "truncated_at_rest",
            FaultKind::RemovedAtRest => "removed_at_rest",
            FaultKind::ZeroedAtRest => "zeroed_at_rest",
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One injected or decided fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// The I/O call at which it happened (for restart decisions: the call of the write or
    /// directory operation that was lost).
    pub op: u64,
    /// What happened.
    pub kind: FaultKind,
    /// The file or directory.
    pub path: String,
    /// Byte offset in the file (0 when it does not apply).
    pub offset: u64,
    /// Length in bytes (0 when it does not apply).
    pub len_bytes: u64,
    /// Details a reader needs: which sectors, where a misdirected write went, ...
    pub detail: String,
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "op {:>8} {:<20} {} offset={} len={}",
            self.op, self.kind, self.path, self.offset, self.len_bytes
        )?;
        if !self.detail.is_empty() {
            write!(f, " {}", self.detail)?;
        }
        Ok(())
    }
}

/// The bounded log of fault records, oldest first.
#[derive(Debug, Default, Clone)]
pub(crate) struct FaultLog {
    records: VecDeque<FaultRecord>,
    dropped: u64,
}

impl FaultLog {
    pub(crate) fn push(&mut self, record: FaultRecord) {
        if self.records.len() == FAULT_LOG_RECORDS_MAX {
            self.records.pop_front();
            self.dropped += 1;
        }
        self.records.push_back(record);
    }

    pub(crate) fn records(&self) -> Vec<FaultRecord> {
        self.records.iter().cloned().collect()
    }

    /// One record per line, preceded by a line saying how many were dropped, if any.
    pub(crate) fn text(&self) -> String {
        let mut out = String::new();
        if self.dropped > 0 {
            out.push_str(&format!("({} older records dropped)\n", self.dropped));
        }
        for record in &self.records {
            out.push_str(&record.to_string());
            out.push('\n');
        }
        out
    }
}

/// Counters over the disk's whole life (they survive restarts).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// I/O calls counted (the same number as `op_count()`).
    pub ops: u64,
    /// `read_at` calls that returned data.
    pub reads: u64,
    /// Bytes returned by reads.
    pub bytes_read: u64,
    /// `write_at` calls that succeeded.
    pub writes: u64,
    /// Bytes written by successful writes.
    pub bytes_written: u64,
    /// Successful `sync` calls.
    pub syncs: u64,
    /// Successful `sync_dir` calls.
    pub sync_dirs: u64,
    /// Restarts (crash semantics applied).
    pub restarts: u64,
    /// Fault records by kind (including records the bounded log dropped).
    pub faults: BTreeMap<FaultKind, u64>,
}

impl Stats {
    /// The total number of fault records of every kind.
    pub fn faults_total(&self) -> u64 {
        self.faults.values().sum()
    }
}
