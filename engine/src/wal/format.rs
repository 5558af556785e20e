//! The bytes of a log segment: header, record frames, and the scan that recovery runs.
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
//!
//! **Torn tail versus corruption.** A crash can leave the unsynced end of the last segment
//! in any state: cut short, zero-filled, or with later sectors persisted and earlier ones
//! not. A bad frame there is a torn tail and is truncated. A bad frame that a later intact
//! frame proves was synced (its `lsn_durable` covers the bad frame's LSN) is corruption;
//! so is any bad frame in a segment that is not the last, because a segment is synced in
//! full before the next one is created. Corruption is reported, never skipped.

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

/// What the scan of one segment found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentScan {
    /// Bytes of the segment that hold intact records (header included).
    pub valid_end: u64,
    /// LSN of the last intact record, or `first_lsn - 1` if none.
    pub lsn_last: u64,
    /// Bytes after `valid_end` that are a torn tail (0 if none).
    pub torn_bytes: u64,
}

/// Scans the records of one segment in order, calling `visit` for each intact one; stops at
/// the first bad frame and classifies it (module doc). `Err((offset, reason))` is corruption.
pub(crate) fn scan_segment(
    bytes: &[u8],
    header: SegmentHeader,
    is_last: bool,
    mut visit: impl FnMut(Frame<'_>, u64) -> Result<(), (u64, String)>,
) -> Result<SegmentScan, (u64, String)> {
    let mut offset = SEGMENT_HEADER_BYTES;
    let mut lsn_expected = header.first_lsn;
    while offset < bytes.len() {
        match parse_frame(bytes, offset) {
            Some(frame) if frame.lsn == lsn_expected && frame.lsn_durable < frame.lsn => {
                visit(frame, offset as u64)?;
                offset += frame.size_bytes();
                lsn_expected += 1;
            }
            found => {
                let why = match found {
                    Some(frame) => format!(
                        "record has LSN {} (durable mark {}), expected LSN {lsn_expected}",
                        frame.lsn, frame.lsn_durable
                    ),
                    None => {
                        format!("damaged record header or checksum (expected LSN {lsn_expected})")
                    }
                };
                if !is_last {
                    return Err((
                        offset as u64,
                        format!("{why} in a segment that is not the last"),
                    ));
                }
                if let Some(proof) = later_synced_frame(bytes, offset + 1, lsn_expected) {
                    return Err((
                        offset as u64,
                        format!(
                            "{why}; the intact record with LSN {} at offset {proof} shows it was synced",
                            parse_frame(bytes, proof).map_or(0, |f| f.lsn)
                        ),
                    ));
                }
                return Ok(SegmentScan {
                    valid_end: offset as u64,
                    lsn_last: lsn_expected - 1,
                    torn_bytes: (bytes.len() - offset) as u64,
                });
            }
        }
    }
    Ok(SegmentScan {
        valid_end: offset as u64,
        lsn_last: lsn_expected - 1,
        torn_bytes: 0,
    })
}

/// Offset of an intact frame at or after `from` whose durable mark covers `lsn_damaged`.
fn later_synced_frame(bytes: &[u8], from: usize, lsn_damaged: u64) -> Option<usize> {
    // Each record takes at least FRAME_HEADER_BYTES, which bounds the LSNs a later frame
    // can plausibly carry; the cheap field checks skip most offsets before the checksum.
    let lsn_bound = lsn_damaged.saturating_add((bytes.len() / FRAME_HEADER_BYTES) as u64 + 1);
    let last_start = bytes.len().checked_sub(FRAME_HEADER_BYTES)?;
    (from..=last_start).find(|&at| {
        let lsn = read_u64(bytes, at + 8);
        let lsn_durable = read_u64(bytes, at + 16);
        lsn > lsn_damaged
            && lsn <= lsn_bound
            && lsn_durable >= lsn_damaged
            && lsn_durable < lsn
            && parse_frame(bytes, at).is_some()
    })
}

/// Whether every byte from `offset` on is zero.
pub(crate) fn is_zero_from(bytes: &[u8], offset: usize) -> bool {
    bytes
        .get(offset..)
        .is_none_or(|rest| rest.iter().all(|&b| b == 0))
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(records: &[(u64, u64, &[u8])]) -> Vec<u8> {
        let mut bytes = encode_segment_header(1, 1).to_vec();
        for (lsn, durable, payload) in records {
            encode_frame(&mut bytes, *lsn, *durable, 3, payload);
        }
        bytes
    }

    fn scan(bytes: &[u8], is_last: bool) -> Result<SegmentScan, (u64, String)> {
        let header = decode_segment_header(bytes).unwrap();
        scan_segment(bytes, header, is_last, |_, _| Ok(()))
    }

    #[test]
    fn intact_segment_scans_to_its_end() {
        let bytes = segment(&[(1, 0, b"a"), (2, 1, b"bb")]);
        let out = scan(&bytes, true).unwrap();
        assert_eq!(out.valid_end, bytes.len() as u64);
        assert_eq!(out.lsn_last, 2);
        assert_eq!(out.torn_bytes, 0);
    }

    #[test]
    fn unsynced_damage_is_a_torn_tail_and_synced_damage_is_corruption() {
        // Record 2 was written before record 1 was known durable: damage to 1 is torn.
        let mut torn = segment(&[(1, 0, b"aaaa"), (2, 0, b"bbbb")]);
        torn[SEGMENT_HEADER_BYTES + 26] ^= 1;
        assert_eq!(scan(&torn, true).unwrap().lsn_last, 0);
        // Record 2 says 1 was durable: damage to 1 is corruption.
        let mut corrupt = segment(&[(1, 0, b"aaaa"), (2, 1, b"bbbb")]);
        corrupt[SEGMENT_HEADER_BYTES + 26] ^= 1;
        let (offset, _) = scan(&corrupt, true).unwrap_err();
        assert_eq!(offset, SEGMENT_HEADER_BYTES as u64);
        // Any damage in a segment that is not the last is corruption.
        assert!(scan(&torn, false).is_err());
    }

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("42.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
    }
}
