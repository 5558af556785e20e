//! The trace of a run: one line per event, hashed as it goes (the determinism check compares
//! hashes), with the newest lines kept for the failure report.

use std::collections::VecDeque;

/// Lines kept for a failure report.
pub const TRACE_TAIL_LINES: usize = 40;

/// A running trace.
#[derive(Debug, Clone)]
pub struct Trace {
    hash: u64,
    lines: u64,
    tail: VecDeque<String>,
    echo: bool,
}

impl Trace {
    /// A new trace; with `echo`, every line is also printed (replay).
    pub fn new(echo: bool) -> Trace {
        Trace {
            hash: 0xcbf2_9ce4_8422_2325,
            lines: 0,
            tail: VecDeque::with_capacity(TRACE_TAIL_LINES),
            echo,
        }
    }

    /// Adds one line.
    pub fn line(&mut self, line: String) {
        for byte in line.bytes().chain(std::iter::once(b'\n')) {
            self.hash ^= u64::from(byte);
            self.hash = self.hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.lines += 1;
        tracing::trace!(target: "omendb_sim::trace", "{line}");
        if self.echo {
            use std::io::Write;
            // A closed pipe (`| head`) must not end the run: the trace hash still counts.
            let _ = writeln!(std::io::stdout(), "{line}");
        }
        if self.tail.len() == TRACE_TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// The hash of every line so far.
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// Lines so far.
    pub fn len(&self) -> u64 {
        self.lines
    }

    /// Whether no line was added.
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }

    /// The newest lines, oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}

/// A stable 64-bit hash of bytes (FNV-1a), for summarising values in trace lines.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A stable 64-bit hash fed slice by slice: FNV-1a's step over each slice's 8-byte
/// little-endian words, then over its last bytes one by one. Eight times fewer multiplies
/// than [`fnv64`] on long values (not the same figure).
#[derive(Debug, Clone, Copy)]
pub struct WordHash(u64);

impl WordHash {
    /// The hash of nothing.
    pub fn new() -> WordHash {
        WordHash(0xcbf2_9ce4_8422_2325)
    }

    /// Adds `bytes`.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut le = [0u8; 8];
            le.copy_from_slice(word);
            self.0 ^= u64::from_le_bytes(le);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        for &byte in words.remainder() {
            self.0 ^= u64::from(byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

impl Default for WordHash {
    fn default() -> WordHash {
        WordHash::new()
    }
}
