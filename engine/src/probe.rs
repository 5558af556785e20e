//! Coverage probes (FoundationDB's `CODE_PROBE`): named counters on rare paths, so that a
//! simulation sweep can show that it reached them and fail when a path stops being reached.
//!
//! A probe is a variant of [`Probe`]; [`probe!`](crate::probe!) marks a place in the code:
//!
//! ```ignore
//! crate::probe!(WalTornTailTruncated);
//! ```
//!
//! [`Probe`] is the engine's list of its probes ([`Probe::ALL`]); adding one is adding a
//! variant and its line in [`Probe::name`]. The counting is `omendb-env`'s
//! ([`omendb_env::probe`]): by name, per thread, read by a simulator at the end of a run;
//! the simulated disk (`omendb_faults::PROBES`) and the simulator list their own probes
//! the same way. Probes sit on rare paths (a torn tail, a failed fsync, a node split),
//! never on the per-row fast path.

/// Every probe of the project. The name (see [`Probe::name`]) is what reports print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(usize)]
pub enum Probe {
    // ---- the log (engine/src/wal) ----
    /// An open after a clean close found the log ending before the LSN the close recorded.
    WalLogEndLost,
    /// Recovery cut a torn tail off the last segment.
    WalTornTailTruncated,
    /// Recovery removed a last segment whose creation was torn (header torn, rest zeros).
    WalTornCreationRemoved,
    /// Recovery found damage in the middle of the log and reported it as corruption.
    WalMidLogCorruption,
    /// A failed fsync of a segment poisoned the log.
    WalSyncFailurePoisons,
    /// A failed log write was undone (truncated back and synced); the log went on.
    WalWriteUndone,
    /// A failed log write could not be undone, which poisoned the log.
    WalUndoFailurePoisons,
    /// The disk filled up in the middle of a log write (a short write, then ENOSPC).
    WalDiskFullInRecord,
    /// The log writer started a new segment (a checkpoint's roll, or a full segment).
    WalSegmentRoll,
    /// A new segment could not be created; the old one stayed current.
    WalSegmentCreateFailed,
    /// The log writer started a new segment because the buffer would not fit in the
    /// current one (its size target).
    WalSegmentRollBySize,
    // ---- the primary index (engine/src/index/alex) ----
    /// A data node grew in place toward its appends, keeping its model.
    AlexExpand,
    /// A data node was rebuilt with a retrained model.
    AlexRetrain,
    /// A data node was split (sideways into its parent's slots, or down under a new node).
    AlexSplit,
    /// The root's key domain grew (in place, or under a new root).
    AlexRootGrowth,
    /// Emptied nodes were reclaimed (their slots given to a neighbour, a parent collapsed).
    AlexNodeReclaim,
    // ---- checkpoints and open (engine/src/db.rs) ----
    /// A flush moved hot rows into a new cold segment.
    ColdFlush,
    /// A row updated or deleted while its flush wrote it was hidden in the new segment.
    ColdWrittenDuringFlush,
    /// A compaction step merged segments of one tier (or the small ones) into one.
    ColdMerge,
    /// A compaction step rewrote a segment to drop the rows its deletion vector hides.
    ColdRewriteDead,
    /// A row hidden while its segment was being merged was hidden in the merged segment.
    ColdHiddenDuringMerge,
    /// A flush built (or rebuilt) a table's filter of all its cold keys.
    ColdKeyFilterBuilt,
    /// A scan read the hot rows column by column (crate::hot_columns), not through the index.
    HotColumnarExport,
    /// A running checkpoint copied the state into memory before writing it.
    CheckpointCopied,
    /// A running checkpoint streamed the state to its file under the read lock.
    CheckpointStreamed,
    /// An open replayed log records after the checkpoint it loaded.
    OpenReplayedRecords,
}

impl Probe {
    /// How many probes there are.
    pub const COUNT: usize = Probe::ALL.len();

    /// Every probe, in declaration order.
    pub const ALL: [Probe; 26] = [
        Probe::WalLogEndLost,
        Probe::WalTornTailTruncated,
        Probe::WalTornCreationRemoved,
        Probe::WalMidLogCorruption,
        Probe::WalSyncFailurePoisons,
        Probe::WalWriteUndone,
        Probe::WalUndoFailurePoisons,
        Probe::WalDiskFullInRecord,
        Probe::WalSegmentRoll,
        Probe::WalSegmentCreateFailed,
        Probe::WalSegmentRollBySize,
        Probe::AlexExpand,
        Probe::AlexRetrain,
        Probe::AlexSplit,
        Probe::AlexRootGrowth,
        Probe::AlexNodeReclaim,
        Probe::ColdFlush,
        Probe::ColdWrittenDuringFlush,
        Probe::ColdMerge,
        Probe::ColdRewriteDead,
        Probe::ColdHiddenDuringMerge,
        Probe::ColdKeyFilterBuilt,
        Probe::HotColumnarExport,
        Probe::CheckpointCopied,
        Probe::CheckpointStreamed,
        Probe::OpenReplayedRecords,
    ];

    /// The probe's stable name: `layer.what`, as reports and docs/TESTING.md spell it.
    pub const fn name(self) -> &'static str {
        match self {
            Probe::WalLogEndLost => "wal.log_end_lost",
            Probe::WalTornTailTruncated => "wal.torn_tail_truncated",
            Probe::WalTornCreationRemoved => "wal.torn_creation_removed",
            Probe::WalMidLogCorruption => "wal.mid_log_corruption",
            Probe::WalSyncFailurePoisons => "wal.sync_failure_poisons",
            Probe::WalWriteUndone => "wal.write_undone",
            Probe::WalUndoFailurePoisons => "wal.undo_failure_poisons",
            Probe::WalDiskFullInRecord => "wal.disk_full_in_record",
            Probe::WalSegmentRoll => "wal.segment_roll",
            Probe::WalSegmentCreateFailed => "wal.segment_create_failed",
            Probe::WalSegmentRollBySize => "wal.segment_roll_by_size",
            Probe::AlexExpand => "alex.expand",
            Probe::AlexRetrain => "alex.retrain",
            Probe::AlexSplit => "alex.split",
            Probe::AlexRootGrowth => "alex.root_growth",
            Probe::AlexNodeReclaim => "alex.node_reclaim",
            Probe::ColdFlush => "cold.flush",
            Probe::ColdWrittenDuringFlush => "cold.written_during_flush",
            Probe::ColdMerge => "cold.merge",
            Probe::ColdRewriteDead => "cold.rewrite_dead",
            Probe::ColdHiddenDuringMerge => "cold.hidden_during_merge",
            Probe::ColdKeyFilterBuilt => "cold.key_filter_built",
            Probe::HotColumnarExport => "hot.columnar_export",
            Probe::CheckpointCopied => "checkpoint.copied",
            Probe::CheckpointStreamed => "checkpoint.streamed",
            Probe::OpenReplayedRecords => "open.replayed_records",
        }
    }
}

/// Counts one hit of `probe` on this thread. Use [`probe!`](crate::probe!).
#[inline]
pub fn hit(probe: Probe) {
    omendb_env::probe::hit(probe.name());
}

pub use omendb_env::probe::reset;

/// This thread's hits of `probe` since the last [`reset`].
pub fn count(probe: Probe) -> u64 {
    omendb_env::probe::counts()
        .into_iter()
        .find(|&(name, _)| name == probe.name())
        .map_or(0, |(_, hits)| hits)
}

/// Marks a rare path: `probe!(WalTornTailTruncated)` counts one hit of
/// [`Probe::WalTornTailTruncated`](crate::probe::Probe) on this thread.
#[macro_export]
macro_rules! probe {
    ($name:ident) => {
        $crate::probe::hit($crate::probe::Probe::$name)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_complete_and_names_are_unique() {
        for (i, probe) in Probe::ALL.iter().enumerate() {
            assert_eq!(*probe as usize, i, "{probe:?} out of order in Probe::ALL");
        }
        let mut names: Vec<&str> = Probe::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Probe::COUNT);
    }

    #[test]
    fn a_hit_counts_under_the_probes_name() {
        omendb_env::probe::reset();
        crate::probe!(AlexSplit);
        crate::probe!(AlexSplit);
        assert_eq!(omendb_env::probe::counts(), vec![("alex.split", 2)]);
    }
}
