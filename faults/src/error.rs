//! The errors the simulated disk returns, and how a caller recognises them.
//!
//! Everything is an `io::Error`, since that is the type of the `Fs` and `File` traits. Two
//! kinds of inner error carry meaning for the simulator:
//! - [`Crashed`]: the disk is frozen (the simulated process died at an I/O call), or the
//!   handle belongs to a process that died. Find it with [`is_crash`] on an `io::Error`, or
//!   with [`is_crash_error`] anywhere in a `source()` chain (an engine error that wraps the
//!   `io::Error` still counts).
//! - [`InjectedFault`]: an error the fault plan injected (EIO, ENOSPC, ...), as opposed to
//!   an error the caller earned (NotFound on a missing file). Find it with [`is_injected`].

use crate::log::FaultKind;
use std::error::Error;
use std::fmt;
use std::io;

/// The simulated process died: the disk froze at I/O call number `op`.
///
/// Every call made after the freeze, and every call through a handle opened before the
/// last restart, fails with this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crashed {
    /// The I/O call (1-based, counted over the disk's whole life) at which the disk froze.
    pub op: u64,
}

impl fmt::Display for Crashed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "simulated crash: the disk froze at I/O call {}", self.op)
    }
}

impl Error for Crashed {}

/// A fault injected by the plan (not a crash): what it was, where, at which call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedFault {
    /// What was injected.
    pub kind: FaultKind,
    /// The I/O call at which it was injected.
    pub op: u64,
    /// The file or directory concerned.
    pub path: String,
    /// Byte offset in the file (0 for directory operations).
    pub offset: u64,
}

impl fmt::Display for InjectedFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            FaultKind::DiskFull => "no space left on device (ENOSPC)",
            _ => "input/output error (EIO)",
        };
        write!(
            f,
            "injected {}: {what} on {} at offset {}, I/O call {}",
            self.kind, self.path, self.offset, self.op
        )
    }
}

impl Error for InjectedFault {}

/// The error every call returns once the disk froze at call `op`.
pub(crate) fn crashed(op: u64) -> io::Error {
    io::Error::other(Crashed { op })
}

/// An injected fault as an `io::Error` of the kind a real system reports: `StorageFull` for
/// [`FaultKind::DiskFull`], `Other` (EIO) for everything else.
pub(crate) fn injected(kind: FaultKind, op: u64, path: &str, offset: u64) -> io::Error {
    let error_kind = match kind {
        FaultKind::DiskFull => io::ErrorKind::StorageFull,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(
        error_kind,
        InjectedFault {
            kind,
            op,
            path: path.to_owned(),
            offset,
        },
    )
}

/// Whether `err` is the simulated disk's "crashed" error.
pub fn is_crash(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Crashed>())
}

/// Whether `err` or anything in its `source()` chain is the "crashed" error.
///
/// `io::Error::source` skips its own inner error (it returns the inner error's source), so
/// the walk looks inside every `io::Error` it meets as well.
pub fn is_crash_error(err: &(dyn Error + 'static)) -> bool {
    find_in_chain(err, &|e| e.is::<Crashed>())
}

/// Whether `err` or anything in its `source()` chain is an [`InjectedFault`].
pub fn is_injected(err: &(dyn Error + 'static)) -> bool {
    find_in_chain(err, &|e| e.is::<InjectedFault>())
}

fn find_in_chain(
    err: &(dyn Error + 'static),
    wanted: &dyn Fn(&(dyn Error + 'static)) -> bool,
) -> bool {
    // Chains are short; the bound only guards against a cyclic `source()`.
    const CHAIN_DEPTH_MAX: usize = 64;
    let mut current = Some(err);
    for _ in 0..CHAIN_DEPTH_MAX {
        let Some(e) = current else { return false };
        if wanted(e) {
            return true;
        }
        if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            if find_in_chain(inner, wanted) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "engine error: {}", self.0)
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn crash_is_found_directly_and_through_a_chain() {
        let err = crashed(7);
        assert!(is_crash(&err));
        assert!(is_crash_error(&err));
        let wrapped = Wrapper(crashed(7));
        assert!(is_crash_error(&wrapped));
        let twice = Wrapper(io::Error::other(Wrapper(crashed(7))));
        assert!(is_crash_error(&twice));
        assert!(!is_injected(&twice));
    }

    #[test]
    fn other_errors_are_not_crashes() {
        let err = io::Error::from(io::ErrorKind::NotFound);
        assert!(!is_crash(&err));
        assert!(!is_crash_error(&Wrapper(err)));
        let eio = injected(FaultKind::ReadError, 3, "/a", 0);
        assert!(!is_crash(&eio));
        assert!(is_injected(&Wrapper(eio)));
        let full = injected(FaultKind::DiskFull, 3, "/a", 0);
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
    }
}
