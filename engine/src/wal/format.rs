//! The bytes of a log segment: header and record frames. The scan that recovery runs over
//! them, and its rule for a damaged frame, is in the sibling module `recover`.
//!
//! ```text
//! segment header (32 bytes)
//!   0  magic      b"OMENWAL\0"
//!   8  version    u32 = 1
//!  12  crc32c     u32 of bytes 0..12 and 16..32
//!  16  seq        u64   segment sequence number (also its file name)
//!  24  first_lsn  u64   LSN of the first record this segment may hold
//! record frame (25-byte header + payload)
//!   0  len          u32  payload length, at most RECORD_BYTES_MAX
//!   4  crc32c       u32  of bytes 0..4 and 8..25+len
//!   8  lsn          u64  previous record's LSN + 1
//!  16  lsn_durable  u64  every LSN <= this was synced when this frame was written
//!  24  kind         u8
//!  25  payload
//! ```

use crate::limits;

pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"OMENWAL\0";
pub(crate) const SEGMENT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
pub(crate) const FRAME_HEADER_BYTES: usize = 25;

/// File name of segment `seq`.
pub(crate) fn segment_file_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The sequence number in a segment file name, if it is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(crate) fn encode_segment_header(seq: u64, first_lsn: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut header = [0u8; SEGMENT_HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    header[16..24].copy_from_slice(&seq.to_le_bytes());
    header[24..32].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..12]), &header[16..32]);
    header[12..16].copy_from_slice(&crc.to_le_bytes());
    header
}

/// A segment header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seq: u64,
    pub first_lsn: u64,
}

pub(crate) fn decode_segment_header(bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Err(format!(
            "segment is {} bytes, shorter than its {SEGMENT_HEADER_BYTES}-byte header",
            bytes.len()
        ));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("bad segment magic".into());
    }
    let stored_crc = read_u32(bytes, 12);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes[0..12]), &bytes[16..32]);
    if stored_crc != crc {
        return Err(format!(
            "segment header checksum {stored_crc:#010x} != computed {crc:#010x}"
        ));
    }
    let version = read_u32(bytes, 8);
    if version != SEGMENT_VERSION {
        return Err(format!("unsupported segment version {version}"));
    }
    Ok(SegmentHeader {
        seq: read_u64(bytes, 16),
        first_lsn: read_u64(bytes, 24),
    })
}

/// Appends one frame to `out`.
pub(crate) fn encode_frame(
    out: &mut Vec<u8>,
    lsn: u64,
    lsn_durable: u64,
    kind: u8,
    payload: &[u8],
) {
    debug_assert!(payload.len() <= limits::RECORD_BYTES_MAX);
    debug_assert!(lsn_durable < lsn);
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&lsn_durable.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// An intact frame found in a segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub lsn: u64,
    pub lsn_durable: u64,
    pub kind: u8,
    pub payload: &'a [u8],
}

impl Frame<'_> {
    pub fn size_bytes(&self) -> usize {
        FRAME_HEADER_BYTES + self.payload.len()
    }
}

/// The frame at `offset`, if one is intact there (length in bounds, checksum matches).
pub(crate) fn parse_frame(bytes: &[u8], offset: usize) -> Option<Frame<'_>> {
    let header_end = offset.checked_add(FRAME_HEADER_BYTES)?;
    if header_end > bytes.len() {
        return None;
    }
    let len = read_u32(bytes, offset) as usize;
    if len > limits::RECORD_BYTES_MAX || len > bytes.len() - header_end {
        return None;
    }
    let end = header_end + len;
    let stored_crc = read_u32(bytes, offset + 4);
    let crc = crc32c::crc32c_append(
        crc32c::crc32c(&bytes[offset..offset + 4]),
        &bytes[offset + 8..end],
    );
    if crc != stored_crc {
        return None;
    }
    Some(Frame {
        lsn: read_u64(bytes, offset + 8),
        lsn_durable: read_u64(bytes, offset + 16),
        kind: bytes[offset + 24],
        payload: &bytes[header_end..end],
    })
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
    }
}
