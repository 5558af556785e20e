//! The acknowledgement oracle: what the durable image of the simulated disk proves durable,
//! read by a log reader of its own (not the engine's), so that every acknowledgement and
//! every durability claim is checked at the moment it is made, crash or not.
//!
//! A crash now would leave the disk's durable view ([`SimFs::durable_files`],
//! [`SimFs::read_durable`]); recovery loads the newest checkpoint there and replays the log
//! records after it, in LSN order, up to the first gap or damaged record. So LSN `l` is
//! durable iff `l <=` the newest durable checkpoint's LSN, or every LSN from that checkpoint's
//! up to `l` is an intact frame of a durable log segment. [`DurableImage::lsn_durable`] is
//! the largest such `l`.
//!
//! The reader follows docs/FORMAT.md's log segment layout (a 32-byte header, then frames of
//! a 25-byte header and a payload, each with a CRC32C) and the checkpoint file name
//! `checkpoint-<lsn:020>.ckpt`; it trusts a durable checkpoint name without reading the
//! file (checkpoints are renamed into place after their bytes are synced; the recovery
//! check catches a checkpoint that is named but damaged). It reads no I/O call of the
//! disk, draws nothing from any random stream, and so changes no seed's trajectory.

use omendb_faults::SimFs;
use std::path::Path;

const SEGMENT_MAGIC: &[u8; 8] = b"OMENWAL\0";
const SEGMENT_VERSION: u32 = 1;
const SEGMENT_HEADER_BYTES: usize = 32;
const FRAME_HEADER_BYTES: usize = 25;

/// The intact frames at the start of one durable log segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentFrames {
    /// The segment's sequence number (its file name).
    pub seq: u64,
    /// LSN of its first intact frame.
    pub lsn_first: u64,
    /// LSN of its last intact frame before the first bad one (or the end).
    pub lsn_last: u64,
}

/// What the durable view of a database directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableImage {
    /// LSN of the newest durable checkpoint (0 if none).
    pub checkpoint_lsn: u64,
    /// Durable segments with at least one intact frame, by sequence number.
    pub segments: Vec<SegmentFrames>,
}

impl DurableImage {
    /// Reads the durable view of the database in `root` (no I/O call of the disk).
    pub fn read(disk: &SimFs, root: &str) -> DurableImage {
        let mut image = DurableImage::default();
        let checkpoint_prefix = format!("{root}/checkpoint-");
        let wal_prefix = format!("{root}/wal/");
        for path in disk.durable_files() {
            if let Some(lsn) = path
                .strip_prefix(&checkpoint_prefix)
                .and_then(|rest| rest.strip_suffix(".ckpt"))
                .and_then(parse_digits)
            {
                image.checkpoint_lsn = image.checkpoint_lsn.max(lsn);
            } else if let Some(seq) = path
                .strip_prefix(&wal_prefix)
                .and_then(|rest| rest.strip_suffix(".wal"))
                .and_then(parse_digits)
            {
                let Ok(bytes) = disk.read_durable(Path::new(&path)) else {
                    continue;
                };
                if let Some(frames) = scan_segment(seq, &bytes) {
                    image.segments.push(frames);
                }
            }
        }
        image.segments.sort_by_key(|s| s.seq);
        image
    }

    /// The largest LSN `l` such that a recovery from this image reaches at least `l`: the
    /// checkpoint's LSN, extended by segments whose intact frames continue it without a gap.
    pub fn lsn_durable(&self) -> u64 {
        let mut through = self.checkpoint_lsn;
        for segment in &self.segments {
            if segment.lsn_first <= through.saturating_add(1) {
                through = through.max(segment.lsn_last);
            }
        }
        through
    }
}

fn parse_digits(text: &str) -> Option<u64> {
    if text.len() != 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let slice = bytes.get(at..at + 4)?;
    let mut b = [0u8; 4];
    b.copy_from_slice(slice);
    Some(u32::from_le_bytes(b))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at + 8)?;
    let mut b = [0u8; 8];
    b.copy_from_slice(slice);
    Some(u64::from_le_bytes(b))
}

/// The run of intact, consecutive frames at the start of segment `seq`'s bytes; `None` if the
/// header is bad, names another segment, or no frame is intact.
pub fn scan_segment(seq: u64, bytes: &[u8]) -> Option<SegmentFrames> {
    let header = bytes.get(..SEGMENT_HEADER_BYTES)?;
    if &header[0..8] != SEGMENT_MAGIC || u32_at(header, 8)? != SEGMENT_VERSION {
        return None;
    }
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..12]), &header[16..32]);
    if crc != u32_at(header, 12)? || u64_at(header, 16)? != seq {
        return None;
    }
    let lsn_first = u64_at(header, 24)?;
    let mut lsn_expected = lsn_first;
    let mut offset = SEGMENT_HEADER_BYTES;
    while let Some(len) = u32_at(bytes, offset) {
        let end = offset
            .checked_add(FRAME_HEADER_BYTES)
            .and_then(|e| e.checked_add(len as usize));
        let Some(frame) = end.and_then(|end| bytes.get(offset..end)) else {
            break;
        };
        let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..]);
        let (Some(stored), Some(lsn), Some(lsn_durable)) =
            (u32_at(frame, 4), u64_at(frame, 8), u64_at(frame, 16))
        else {
            break;
        };
        if crc != stored || lsn != lsn_expected || lsn_durable >= lsn {
            break;
        }
        offset += frame.len();
        lsn_expected += 1;
    }
    (lsn_expected > lsn_first).then(|| SegmentFrames {
        seq,
        lsn_first,
        lsn_last: lsn_expected - 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seq: u64, first_lsn: u64) -> Vec<u8> {
        let mut h = vec![0u8; SEGMENT_HEADER_BYTES];
        h[0..8].copy_from_slice(SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&seq.to_le_bytes());
        h[24..32].copy_from_slice(&first_lsn.to_le_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&h[0..12]), &h[16..32]);
        h[12..16].copy_from_slice(&crc.to_le_bytes());
        h
    }

    fn frame(out: &mut Vec<u8>, lsn: u64, payload: &[u8]) {
        let start = out.len();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&(lsn - 1).to_le_bytes());
        out.push(1);
        out.extend_from_slice(payload);
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn scan_stops_at_the_first_bad_frame() {
        let mut bytes = header(3, 10);
        frame(&mut bytes, 10, b"a");
        frame(&mut bytes, 11, b"bb");
        let intact = bytes.len();
        frame(&mut bytes, 12, b"ccc");
        let scanned = scan_segment(3, &bytes).unwrap();
        assert_eq!((scanned.lsn_first, scanned.lsn_last), (10, 12));
        bytes[intact + 26] ^= 1;
        assert_eq!(scan_segment(3, &bytes).unwrap().lsn_last, 11);
        bytes.truncate(intact - 1);
        assert_eq!(scan_segment(3, &bytes).unwrap().lsn_last, 10);
        assert_eq!(scan_segment(4, &bytes), None, "header names segment 3");
    }

    #[test]
    fn durable_lsn_needs_a_chain_without_gaps() {
        let seg = |seq, lsn_first, lsn_last| SegmentFrames {
            seq,
            lsn_first,
            lsn_last,
        };
        let image = DurableImage {
            checkpoint_lsn: 5,
            segments: vec![seg(1, 1, 7), seg(2, 8, 9), seg(3, 11, 20)],
        };
        assert_eq!(image.lsn_durable(), 9);
        let image = DurableImage {
            checkpoint_lsn: 12,
            segments: vec![seg(3, 11, 20)],
        };
        assert_eq!(image.lsn_durable(), 20);
    }
}
