//! Coverage probes (FoundationDB's `CODE_PROBE`): named counters on rare paths, so that a
//! simulation sweep can show that it reached them, and fail when a path stops being reached.
//!
//! A probe is a stable name, `layer.what` (`wal.torn_tail_truncated`,
//! `disk.len_mid_write`); [`probe!`](crate::probe!) marks a place in the code:
//!
//! ```
//! omendb_env::probe::reset();
//! omendb_env::probe!("disk.len_mid_write");
//! assert_eq!(omendb_env::probe::counts(), vec![("disk.len_mid_write", 1)]);
//! ```
//!
//! Each crate lists its own probes (the engine in `omendb::probe::Probe`, the simulated
//! disk in `omendb_faults::PROBES`, a simulator in its own list), so that a sweep can name
//! the ones never hit, and this module counts hits of any of them by name.
//!
//! **Per thread, read as totals.** Counters are per thread because a deterministic
//! simulator runs each seed start to end on one thread, and sweeps run seeds on several
//! threads at once: [`reset`] at the start of a run and [`counts`] at its end give that
//! run's hits, whatever other threads do. Counters never influence behaviour, and a run
//! reads them only at its end, so they cannot change a seed's trajectory. Threads nobody
//! reads (a production engine's background workers) count into the void.
//!
//! **Cost.** A hit is a lookup in a small thread-local ordered map (no lock, no atomic;
//! one allocation the first time a name is hit on a thread). Probes sit on rare paths,
//! never on a per-row fast path.

use std::cell::RefCell;
use std::collections::BTreeMap;

thread_local! {
    static HITS: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

/// Counts one hit of the probe `name` on this thread. Use [`probe!`](crate::probe!).
pub fn hit(name: &'static str) {
    HITS.with(|hits| {
        let mut hits = hits.borrow_mut();
        let count = hits.entry(name).or_insert(0);
        *count = count.wrapping_add(1);
    });
}

/// Sets this thread's counters to zero (a simulator, at the start of a run).
pub fn reset() {
    HITS.with(|hits| hits.borrow_mut().clear());
}

/// This thread's hits since the last [`reset`], by name in ascending order; a probe not
/// hit is absent (its crate's list says it exists).
pub fn counts() -> Vec<(&'static str, u64)> {
    HITS.with(|hits| hits.borrow().iter().map(|(&n, &c)| (n, c)).collect())
}

/// Marks a rare path: `probe!("wal.torn_tail_truncated")` counts one hit of that probe on
/// this thread.
#[macro_export]
macro_rules! probe {
    ($name:expr) => {
        $crate::probe::hit($name)
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_count_per_name_and_reset_clears_them() {
        reset();
        crate::probe!("a.two");
        crate::probe!("a.two");
        crate::probe!("a.one");
        assert_eq!(counts(), vec![("a.one", 1), ("a.two", 2)]);
        reset();
        assert!(counts().is_empty());
    }
}
