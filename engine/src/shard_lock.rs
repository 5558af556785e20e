//! A reader-writer lock whose readers do not write a shared cache line: the lock of the
//! database's state.
//!
//! A `std::sync::RwLock` counts its readers in one word, so every read lock and unlock
//! writes that word's cache line, and two readers on two cores pass the line back and forth
//! on every operation (measured: a `get` went from 351 ns to 543 ns p50 with a second reader
//! thread; docs/BENCHMARKS.md). Here the lock is [`SHARDS`] `RwLock<()>`s, each on its own
//! cache line. A reader takes the read lock of one shard, chosen once per thread; a writer
//! takes the write locks of all shards, in index order. So readers on different shards touch
//! different lines, and a writer excludes every reader (each holds one shard) and every
//! other writer (both need shard 0 first, so no deadlock either). The price is on writes:
//! [`SHARDS`] lock and unlock pairs instead of one.
//!
//! A panic while a guard is held poisons the shards it holds, as `RwLock` does; the caller
//! turns a poisoned lock into an error.

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Number of shards: enough that two readers seldom share one on a small machine, few
/// enough that a writer's pass over all of them stays cheap.
pub(crate) const SHARDS: usize = 8;

/// One shard on its own cache line (128 bytes: adjacent-line prefetch pairs lines).
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<()>);

/// A reader-writer lock over `T` with per-shard reader locks.
pub(crate) struct ShardedRwLock<T> {
    shards: [Shard; SHARDS],
    value: UnsafeCell<T>,
}

// SAFETY: `value` is reached only through a `ReadGuard` (holding a shard's read lock, so no
// `WriteGuard` exists: it would hold that shard's write lock) or a `WriteGuard` (holding
// every shard's write lock, so no other guard of either kind exists). That is `RwLock`'s
// discipline, so the same bounds apply: shared reads need `T: Sync`, moving the value
// across threads through a writer needs `T: Send`.
unsafe impl<T: Send> Send for ShardedRwLock<T> {}
unsafe impl<T: Send + Sync> Sync for ShardedRwLock<T> {}

static NEXT_READER_SLOT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// The shard this thread reads through, assigned round-robin on first use.
    static READER_SHARD: Cell<usize> =
        Cell::new(NEXT_READER_SLOT.fetch_add(1, Ordering::Relaxed) % SHARDS);
}

/// The lock was poisoned by a panic while a guard was held.
#[derive(Debug)]
pub(crate) struct Poisoned;

impl<T> ShardedRwLock<T> {
    pub(crate) fn new(value: T) -> ShardedRwLock<T> {
        ShardedRwLock {
            shards: Default::default(),
            value: UnsafeCell::new(value),
        }
    }

    /// Shared access, through this thread's shard.
    pub(crate) fn read(&self) -> Result<ReadGuard<'_, T>, Poisoned> {
        let shard = READER_SHARD.with(Cell::get);
        let guard = self.shards[shard].0.read().map_err(|_| Poisoned)?;
        Ok(ReadGuard {
            _shard: guard,
            // SAFETY: see the `Sync` impl; the shard's read lock is held for `'_`.
            value: unsafe { &*self.value.get() },
        })
    }

    /// Exclusive access: every shard's write lock, taken in index order.
    pub(crate) fn write(&self) -> Result<WriteGuard<'_, T>, Poisoned> {
        let mut poisoned = false;
        let shards: [RwLockWriteGuard<'_, ()>; SHARDS] = std::array::from_fn(|i| {
            self.shards[i].0.write().unwrap_or_else(|p| {
                poisoned = true;
                p.into_inner()
            })
        });
        if poisoned {
            return Err(Poisoned);
        }
        Ok(WriteGuard {
            _shards: shards,
            // SAFETY: see the `Sync` impl; every shard's write lock is held for `'_`.
            value: unsafe { &mut *self.value.get() },
        })
    }
}

/// Shared access to the value; holds one shard's read lock.
pub(crate) struct ReadGuard<'a, T> {
    _shard: RwLockReadGuard<'a, ()>,
    value: &'a T,
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

/// Exclusive access to the value; holds every shard's write lock.
pub(crate) struct WriteGuard<'a, T> {
    _shards: [RwLockWriteGuard<'a, ()>; SHARDS],
    value: &'a mut T,
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readers_share_writers_exclude() {
        let lock = ShardedRwLock::new(vec![1]);
        {
            let a = lock.read().unwrap();
            let b = lock.read().unwrap();
            assert_eq!(*a, *b);
            // A writer cannot get in while this thread's shard is read-locked.
            assert!(lock.shards[READER_SHARD.with(Cell::get)]
                .0
                .try_write()
                .is_err());
        }
        lock.write().unwrap().push(2);
        assert_eq!(*lock.read().unwrap(), vec![1, 2]);
        let writer = lock.write().unwrap();
        assert!(lock.shards.iter().all(|s| s.0.try_read().is_err()));
        drop(writer);
        assert!(lock.shards.iter().all(|s| s.0.try_read().is_ok()));
    }

    #[test]
    fn a_panic_under_the_write_lock_poisons_it() {
        let lock = ShardedRwLock::new(0u32);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut guard = lock.write().unwrap();
            *guard += 1;
            panic!("in apply");
        }));
        assert!(caught.is_err());
        assert!(lock.read().is_err());
        assert!(lock.write().is_err());
    }
}
