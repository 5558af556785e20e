//! A small, stable 64-bit hash for `SimFs::disk_hash`: the same on every platform, process
//! and run, unlike std's `DefaultHasher`, so determinism checks can compare hashes across
//! processes.

/// A small, stable 64-bit hash (FNV-1a over 8-byte words, then a final mix): the same on
/// every platform and process, unlike std's `DefaultHasher`.
pub(crate) struct Hash64(u64);

impl Hash64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    pub(crate) fn new() -> Hash64 {
        Hash64(0xcbf2_9ce4_8422_2325)
    }

    fn word(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(Self::PRIME);
    }

    /// Hashes the length, then the bytes, so that ("ab","c") and ("a","bc") differ.
    pub(crate) fn bytes(&mut self, bytes: &[u8]) {
        self.word(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let mut tail = [0u8; 8];
        tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.word(u64::from_le_bytes(tail));
    }

    pub(crate) fn finish(&self) -> u64 {
        let mut x = self.0;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        x
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(parts: &[&[u8]]) -> u64 {
        let mut h = Hash64::new();
        for part in parts {
            h.bytes(part);
        }
        h.finish()
    }

    #[test]
    fn stable_and_boundary_aware() {
        assert_eq!(hash(&[b"abc"]), hash(&[b"abc"]));
        assert_ne!(hash(&[b"ab", b"c"]), hash(&[b"a", b"bc"]));
        assert_ne!(hash(&[b"abc"]), hash(&[b"abd"]));
        assert_ne!(hash(&[&[0u8; 9]]), hash(&[&[0u8; 10]]));
        // Pinned, so a change of the function shows as a failing test, not as silently
        // different hashes across versions.
        assert_eq!(hash(&[b"omendb"]), PINNED);
    }

    const PINNED: u64 = 18_441_811_649_845_515_257;
}
