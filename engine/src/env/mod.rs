//! The Env boundary: the only door from the engine to the operating system.
//!
//! The traits and their std implementation live in the `omendb-env` crate (`env/`), which
//! depends on std and libc only, so that the simulated disk and other simulators need not
//! take the engine; this module re-exports them, so the engine and its users keep writing
//! `omendb::env::Fs`. Everything nondeterministic the engine touches goes through them: the
//! file system ([`Fs`], [`File`]), time ([`Clock`]) and background work ([`Spawn`],
//! [`Worker`]). No module of the engine may call `std::fs`, `Instant::now`,
//! `SystemTime::now` or `std::thread` (a test in `tests/env_boundary.rs` greps for them).
//! The crash semantics the engine relies on are stated in `omendb-env`'s crate docs.

pub use omendb_env::{
    Clock, DirLock, Env, File, Fs, OpenMode, OsEnv, Spawn, StepResult, Worker, WorkerControl,
};

use std::path::Path;
#[cfg(test)]
use std::{io, sync::Arc};

/// Removes the files `paths`, all entries of `dir`, then syncs `dir` once, so that the
/// removals are durable when it returns `Ok` (see the crash semantics above); with nothing
/// to remove it makes no call. `remove_op` and `sync_op` name the two steps in an
/// [`Error::Io`](crate::Error::Io). A failure stops at once: the files removed so far stay
/// removed, but until a later `sync_dir` a crash may bring them back, so callers remove
/// only what is no longer needed (covered by a durable checkpoint, or never listed).
pub(crate) fn remove_durably<P: AsRef<Path>>(
    fs: &dyn Fs,
    dir: &Path,
    paths: &[P],
    remove_op: &'static str,
    sync_op: &'static str,
) -> crate::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    for path in paths {
        let path = path.as_ref();
        fs.remove(path)
            .map_err(|e| crate::Error::io(remove_op, path, e))?;
    }
    fs.sync_dir(dir)
        .map_err(|e| crate::Error::io(sync_op, dir, e))
}

/// A spawner with no workers whose `join` runs its closures in order, as the simulator's
/// does: for tests that compare a two-thread encoding with a one-thread one.
#[cfg(test)]
pub(crate) struct InOrder;

#[cfg(test)]
impl Spawn for InOrder {
    fn spawn(&self, _: Box<dyn Worker>) -> io::Result<Arc<dyn WorkerControl>> {
        Err(io::Error::other("no workers here"))
    }
}
