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
//!
//! **The exact recovery oracle** ([`LogImage::explain_loss`]). Before each open the runner
//! reads the log as recovery will read it ([`LogImage::read`]); when the recovery then loses
//! a write the engine had claimed durable, the loss is excused only if the image and the
//! fault log explain it: the first lost LSN's frame is the first bad frame of the *last*
//! segment, a silent fault ([`silent_damage`]) touched that frame's bytes, and no intact
//! later frame vouches for it (its `lsn_durable` covering the lost LSN). Then the damage
//! looks exactly like a torn tail and recovery must truncate it (docs/FORMAT.md). In every
//! other case, a bad frame in a segment that is not the last, a vouched-for bad frame, a
//! bad header, a gap, an intact frame that recovery dropped, a frame with no damage on it,
//! the log format obliges recovery to report corruption or to keep the write, so the loss
//! is a bug and the reason says which rule it broke.

use omendb_faults::{FaultKind, SimFs};
use std::path::Path;

const SEGMENT_MAGIC: &[u8; 8] = b"OMENWAL\0";
const SEGMENT_VERSION: u32 = 1;
pub(crate) const SEGMENT_HEADER_BYTES: usize = 32;
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

/// Where one intact frame lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAt {
    /// The segment's sequence number.
    pub seq: u64,
    /// The frame's LSN.
    pub lsn: u64,
    /// Its offset in the segment.
    pub offset_bytes: u64,
    /// Header and payload.
    pub size_bytes: u64,
}

/// What the durable view of a database directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableImage {
    /// LSN of the newest durable checkpoint (0 if none).
    pub checkpoint_lsn: u64,
    /// Durable segments with at least one intact frame, by sequence number.
    pub segments: Vec<SegmentFrames>,
    /// Every intact frame of those segments, by segment then offset.
    pub frames: Vec<FrameAt>,
}

impl DurableImage {
    /// Reads the durable view of the database in `root` (no I/O call of the disk).
    pub fn read(disk: &SimFs, root: &str) -> DurableImage {
        let mut image = DurableImage::default();
        for path in disk.durable_files() {
            if let Some(DbFile::Checkpoint(lsn)) = classify(&path, root) {
                image.checkpoint_lsn = image.checkpoint_lsn.max(lsn);
            } else if let Some(DbFile::Segment(seq)) = classify(&path, root) {
                let Ok(bytes) = disk.read_durable(Path::new(&path)) else {
                    continue;
                };
                let scan = scan_frames(seq, &bytes);
                if let Some(frames) = scan.summary(seq) {
                    image.segments.push(frames);
                    image.frames.extend(scan.frames);
                }
            }
        }
        image.segments.sort_by_key(|s| s.seq);
        image.frames.sort_by_key(|f| (f.seq, f.offset_bytes));
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

/// A file of the database in `root` the oracles read.
enum DbFile {
    /// `checkpoint-<lsn>.ckpt`.
    Checkpoint(u64),
    /// `wal/<seq>.wal`.
    Segment(u64),
}

/// What `path` is, if it is a checkpoint or a log segment of the database in `root`.
fn classify(path: &str, root: &str) -> Option<DbFile> {
    let rest = path.strip_prefix(root)?.strip_prefix('/')?;
    if let Some(lsn) = rest
        .strip_prefix("checkpoint-")
        .and_then(|r| r.strip_suffix(".ckpt"))
        .and_then(parse_digits)
    {
        return Some(DbFile::Checkpoint(lsn));
    }
    rest.strip_prefix("wal/")
        .and_then(|r| r.strip_suffix(".wal"))
        .and_then(parse_digits)
        .map(DbFile::Segment)
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
    scan_frames(seq, bytes).summary(seq)
}

/// One segment as recovery reads it: its header, its chain of intact frames from the start,
/// and where and why the chain stops before the end of the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentScan {
    /// The header's first LSN; `None` if the header is bad or names another segment.
    pub lsn_first: Option<u64>,
    /// Whether every byte after the header is zero (a torn creation, if the header is bad).
    pub rest_zero: bool,
    /// The intact frames from the start, in order.
    pub frames: Vec<FrameAt>,
    /// Offset of the first bad frame, if the chain stops before the end of the file.
    pub break_offset: Option<u64>,
}

impl SegmentScan {
    fn summary(&self, seq: u64) -> Option<SegmentFrames> {
        let (first, last) = (self.frames.first()?, self.frames.last()?);
        Some(SegmentFrames {
            seq,
            lsn_first: first.lsn,
            lsn_last: last.lsn,
        })
    }

    /// The LSN the chain expected at its break (the header's first LSN if no frame is intact).
    fn lsn_expected(&self) -> Option<u64> {
        match self.frames.last() {
            Some(frame) => Some(frame.lsn + 1),
            None => self.lsn_first,
        }
    }
}

/// The frame at `offset` if it is intact (length in bounds, checksum matches): its LSN, its
/// durable mark and its size.
fn frame_at(bytes: &[u8], offset: usize) -> Option<(u64, u64, usize)> {
    let len = u32_at(bytes, offset)? as usize;
    if len > omendb::limits::RECORD_BYTES_MAX {
        return None;
    }
    let end = offset
        .checked_add(FRAME_HEADER_BYTES)
        .and_then(|e| e.checked_add(len))?;
    let frame = bytes.get(offset..end)?;
    let crc = crc32c::crc32c_append(crc32c::crc32c(&frame[0..4]), &frame[8..]);
    if crc != u32_at(frame, 4)? {
        return None;
    }
    Some((u64_at(frame, 8)?, u64_at(frame, 16)?, frame.len()))
}

/// Scans segment `seq`'s bytes as recovery does (docs/FORMAT.md).
pub fn scan_frames(seq: u64, bytes: &[u8]) -> SegmentScan {
    let mut scan = SegmentScan {
        rest_zero: bytes
            .get(SEGMENT_HEADER_BYTES..)
            .is_none_or(|rest| rest.iter().all(|&b| b == 0)),
        ..SegmentScan::default()
    };
    let Some(header) = bytes.get(..SEGMENT_HEADER_BYTES) else {
        return scan;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[0..12]), &header[16..32]);
    let header_ok = &header[0..8] == SEGMENT_MAGIC
        && u32_at(header, 8) == Some(SEGMENT_VERSION)
        && u32_at(header, 12) == Some(crc)
        && u64_at(header, 16) == Some(seq);
    if !header_ok {
        return scan;
    }
    let Some(lsn_first) = u64_at(header, 24) else {
        return scan;
    };
    scan.lsn_first = Some(lsn_first);
    let mut lsn_expected = lsn_first;
    let mut offset = SEGMENT_HEADER_BYTES;
    while offset < bytes.len() {
        match frame_at(bytes, offset) {
            Some((lsn, lsn_durable, size)) if lsn == lsn_expected && lsn_durable < lsn => {
                scan.frames.push(FrameAt {
                    seq,
                    lsn,
                    offset_bytes: offset as u64,
                    size_bytes: size as u64,
                });
                offset += size;
                lsn_expected += 1;
            }
            _ => {
                scan.break_offset = Some(offset as u64);
                break;
            }
        }
    }
    scan
}

/// An intact frame at or after `from` whose durable mark covers `lsn_damaged`: its LSN and
/// offset. Any byte offset may start one (the bad frame's length cannot be trusted); LSNs are
/// bounded by how many frames the bytes can hold.
fn vouching_frame(bytes: &[u8], from: usize, lsn_damaged: u64) -> Option<(u64, u64)> {
    let lsn_bound = lsn_damaged.saturating_add((bytes.len() / FRAME_HEADER_BYTES) as u64 + 1);
    let last_start = bytes.len().checked_sub(FRAME_HEADER_BYTES)?;
    (from..=last_start).find_map(|at| {
        let lsn = u64_at(bytes, at + 8)?;
        let lsn_durable = u64_at(bytes, at + 16)?;
        if lsn <= lsn_damaged || lsn > lsn_bound || lsn_durable < lsn_damaged || lsn_durable >= lsn
        {
            return None;
        }
        frame_at(bytes, at).map(|(lsn, _, _)| (lsn, at as u64))
    })
}

/// Bytes of a file that a silent fault changed (or left stale) after they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// What did it, as a reason key: `bit_flip`, `torn_write_acked` (sectors of a write
    /// never written), `misdirected_write` (the intended range kept its old bytes),
    /// `misdirected_write_landed` (another write's bytes landed here).
    pub reason: &'static str,
    /// The file.
    pub path: String,
    /// First byte touched.
    pub offset_bytes: u64,
    /// Bytes touched.
    pub len_bytes: u64,
    /// The fault's I/O call.
    pub op: u64,
    /// For a bit flip, which bit of the byte (0-7).
    pub bit: Option<u8>,
}

/// Every range silent faults damaged, from the disk's fault log. Latent sectors are left
/// out: a read of one fails, which recovery reports as an I/O error and never as a loss.
pub fn silent_damage(disk: &SimFs) -> Vec<Damage> {
    let mut damage = Vec::new();
    for record in disk.fault_log() {
        let reason = match record.kind {
            FaultKind::BitFlip => "bit_flip",
            FaultKind::TornWriteAcked => "torn_write_acked",
            FaultKind::MisdirectedWrite => "misdirected_write",
            _ => continue,
        };
        let bit = (record.kind == FaultKind::BitFlip)
            .then(|| {
                record
                    .detail
                    .strip_prefix("bit ")
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|n| n.parse::<u8>().ok())
            })
            .flatten();
        damage.push(Damage {
            reason,
            path: record.path.clone(),
            offset_bytes: record.offset,
            len_bytes: record.len_bytes.max(1),
            op: record.op,
            bit,
        });
        if record.kind == FaultKind::MisdirectedWrite {
            let landed = record
                .detail
                .strip_prefix("landed in ")
                .and_then(|rest| rest.split_once(" at offset "))
                .and_then(|(path, at)| Some((path.to_string(), at.trim().parse::<u64>().ok()?)));
            if let Some((path, at)) = landed {
                damage.push(Damage {
                    reason: "misdirected_write_landed",
                    path,
                    offset_bytes: at,
                    len_bytes: record.len_bytes.max(1),
                    op: record.op,
                    bit: None,
                });
            }
        }
    }
    damage
}

/// A loss the oracle excuses: a reason key (counted in the sweep) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excuse {
    /// `<damage>_in_unvouched_tail`, from [`Damage::reason`].
    pub reason: String,
    /// The lost LSN, the frame, the fault.
    pub detail: String,
}

/// One log segment file as recovery will read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentImage {
    /// Its sequence number.
    pub seq: u64,
    /// Its path.
    pub path: String,
    /// Its length.
    pub len_bytes: u64,
    /// What the scan found.
    pub scan: SegmentScan,
    /// An intact frame after the break whose durable mark covers the LSN the chain
    /// expected there: `(lsn, offset)`.
    pub vouched_by: Option<(u64, u64)>,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl SegmentImage {
    fn new(seq: u64, path: String, bytes: Vec<u8>) -> SegmentImage {
        let scan = scan_frames(seq, &bytes);
        let vouched_by = match (scan.break_offset, scan.lsn_expected()) {
            (Some(at), Some(lsn)) => vouching_frame(&bytes, at as usize + 1, lsn),
            _ => None,
        };
        SegmentImage {
            seq,
            path,
            len_bytes: bytes.len() as u64,
            scan,
            vouched_by,
            bytes,
        }
    }
}

/// The checkpoint and the log segments as the next open will read them (the process's view
/// of the files: after a crash restart that is exactly the durable view).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogImage {
    /// LSN of the newest checkpoint (0 if none): recovery loads it.
    pub checkpoint_lsn: u64,
    /// Every log segment file, by sequence number.
    pub segments: Vec<SegmentImage>,
    /// The disk's I/O call count when it was read: damage from this call on came after.
    pub op_read: u64,
}

impl LogImage {
    /// Reads the files of the database in `root` as the process sees them (no I/O call).
    pub fn read(disk: &SimFs, root: &str) -> LogImage {
        let mut image = LogImage {
            op_read: disk.op_count(),
            ..LogImage::default()
        };
        for path in disk.files() {
            if let Some(DbFile::Checkpoint(lsn)) = classify(&path, root) {
                image.checkpoint_lsn = image.checkpoint_lsn.max(lsn);
            } else if let Some(DbFile::Segment(seq)) = classify(&path, root) {
                let Ok(bytes) = disk.read_current(Path::new(&path)) else {
                    continue;
                };
                image.segments.push(SegmentImage::new(seq, path, bytes));
            }
        }
        image.segments.sort_by_key(|s| s.seq);
        image
    }

    /// The image with the first `count` bit flips that struck its segments after it was
    /// read applied, in the order they came (recovery read each segment at some I/O call,
    /// so it saw a prefix of them); `None` if fewer than `count` flips struck.
    pub fn with_later_flips(&self, damage: &[Damage], count: usize) -> Option<LogImage> {
        let mut flips: Vec<&Damage> = damage
            .iter()
            .filter(|d| d.op >= self.op_read && d.bit.is_some())
            .filter(|d| self.segments.iter().any(|s| s.path == d.path))
            .collect();
        flips.sort_by_key(|d| d.op);
        if flips.len() < count {
            return None;
        }
        let mut flipped = self.clone();
        for d in flips.into_iter().take(count) {
            let bit = d.bit.unwrap_or(0) & 7;
            for segment in flipped.segments.iter_mut().filter(|s| s.path == d.path) {
                if let Some(byte) = segment.bytes.get_mut(d.offset_bytes as usize) {
                    *byte ^= 1 << bit;
                }
            }
        }
        for segment in &mut flipped.segments {
            let bytes = std::mem::take(&mut segment.bytes);
            *segment = SegmentImage::new(segment.seq, segment.path.clone(), bytes);
        }
        Some(flipped)
    }

    /// [`LogImage::explain_loss`] over the images read before each attempt of one open (a
    /// crash during recovery may have followed a removal of what the first attempt read),
    /// each also with every prefix of the flips that came after it: excused if any explains
    /// the loss.
    pub fn explain_loss_in_any(
        images: &[LogImage],
        lost: u64,
        damage: &[Damage],
        located: Option<&FrameAt>,
    ) -> Result<Excuse, String> {
        let mut why = Vec::new();
        for (i, image) in images.iter().enumerate() {
            match image.explain_loss(lost, damage, located) {
                Ok(excuse) => return Ok(excuse),
                Err(e) => why.push(format!("image {i} (op {}): {e}", image.op_read)),
            }
            let mut count = 1;
            while let Some(flipped) = image.with_later_flips(damage, count) {
                match flipped.explain_loss(lost, damage, located) {
                    Ok(excuse) => return Ok(excuse),
                    Err(e) => why.push(format!(
                        "image {i} (op {}) + {count} later flips: {e}",
                        image.op_read
                    )),
                }
                count += 1;
            }
        }
        if why.is_empty() {
            why.push(format!(
                "no image of the log was read before lsn {lost} was lost"
            ));
        }
        Err(why.join("; "))
    }

    /// Whether recovery from this image may lose LSN `lost` (and everything after it), and
    /// why: `Ok` with the excuse when silent `damage` explains it, `Err` with the rule the
    /// loss breaks otherwise (module doc). `located` is where the oracle last saw `lost`'s
    /// frame intact, if it did; without it the frame is taken to run to the end of its file.
    pub fn explain_loss(
        &self,
        lost: u64,
        damage: &[Damage],
        located: Option<&FrameAt>,
    ) -> Result<Excuse, String> {
        if lost <= self.checkpoint_lsn {
            return Err(format!(
                "lsn {lost} is covered by the checkpoint at lsn {}, which recovery loads",
                self.checkpoint_lsn
            ));
        }
        let mut through = self.checkpoint_lsn;
        // A last segment that reads as a torn creation, which recovery removes.
        let mut torn_creation: Option<&SegmentImage> = None;
        for (i, segment) in self.segments.iter().enumerate() {
            let is_last = i + 1 == self.segments.len();
            let seq = segment.seq;
            let Some(lsn_first) = segment.scan.lsn_first else {
                if is_last && segment.scan.rest_zero {
                    // A torn creation: recovery removes it. It held nothing, unless damage
                    // at rest made it look like one (judged below).
                    torn_creation = Some(segment);
                    continue;
                }
                return Err(format!(
                    "segment {seq} has a bad header and holds data: recovery must report corruption"
                ));
            };
            if lsn_first > through.saturating_add(1) {
                return Err(format!(
                    "segment {seq} starts at lsn {lsn_first}, after the log's end {through}: recovery must report the gap as corruption"
                ));
            }
            if let Some(frame) = segment.scan.frames.last() {
                through = through.max(frame.lsn);
            }
            let Some(at) = segment.scan.break_offset else {
                continue;
            };
            if !is_last {
                return Err(format!(
                    "segment {seq} has a bad frame at offset {at} and a later segment exists: recovery must report corruption, not truncate"
                ));
            }
            if let Some((lsn, offset)) = segment.vouched_by {
                return Err(format!(
                    "segment {seq} has a bad frame at offset {at}, and the intact frame of lsn {lsn} at offset {offset} vouches for it: recovery must report corruption"
                ));
            }
            if through >= lost {
                return Err(format!(
                    "the log holds lsn {lost} intact (through lsn {through}); recovery lost it"
                ));
            }
            if through + 1 < lost {
                return Err(format!(
                    "recovery kept lsn {}, past the intact log's end at lsn {through}",
                    lost - 1
                ));
            }
            // The bad frame is `lost`'s: did a silent fault touch it?
            let (from, to, known) = match located {
                Some(f) if f.seq == seq && f.offset_bytes == at => {
                    (at, at + f.size_bytes, "its bytes")
                }
                _ => (
                    at,
                    segment.len_bytes.max(at + 1),
                    "the segment from there on",
                ),
            };
            let hit = damage.iter().find(|d| {
                d.path == segment.path
                    && if d.reason == TRUNCATED_AT_REST {
                        // A cut inside the frame leaves it incomplete at the end of the
                        // file; a frame not located may run past the cut.
                        let to = if known == "its bytes" { to } else { u64::MAX };
                        d.offset_bytes > from && d.offset_bytes < to
                    } else {
                        d.offset_bytes < to && d.offset_bytes + d.len_bytes > from
                    }
            });
            return match hit {
                Some(d) => Ok(Excuse {
                    reason: format!("{}_in_unvouched_tail", d.reason),
                    detail: format!(
                        "lsn {lost}: its frame at {} offset {at} is bad, {} at op {} touched bytes {}..{} ({known} {from}..{to}), no later frame vouches for it, so it is indistinguishable from a torn tail",
                        segment.path,
                        d.reason,
                        d.op,
                        d.offset_bytes,
                        d.offset_bytes + d.len_bytes
                    ),
                }),
                None => Err(format!(
                    "the frame of lsn {lost} at {} offset {at} is bad, but no silent fault touched {known} ({from}..{to})",
                    segment.path
                )),
            };
        }
        if through >= lost {
            return Err(format!(
                "the log holds lsn {lost} intact (through lsn {through}); recovery lost it"
            ));
        }
        if through + 1 == lost {
            if let Some(excuse) = self.explain_lost_tail(lost, damage, torn_creation) {
                return Ok(excuse);
            }
        }
        Err(format!(
            "lsn {lost} is in no segment (the log ends intact at lsn {through}): no damage explains its absence"
        ))
    }

    /// The log is intact up to `lost - 1` and ends there: damage at rest explains the loss
    /// if it took the frames after that end away whole, which nothing left on disk can
    /// vouch for: the last segment cut where its intact frames end, a segment after the last
    /// one left removed, or the last segment made to look like a torn creation.
    fn explain_lost_tail(
        &self,
        lost: u64,
        damage: &[Damage],
        torn_creation: Option<&SegmentImage>,
    ) -> Option<Excuse> {
        let excuse = |reason: &str, d: &Damage, what: String| Excuse {
            reason: reason.to_string(),
            detail: format!("lsn {lost}: {what} ({} at op {})", d.reason, d.op),
        };
        // The checkpoint that held `lost` was removed at rest. The log segments it covered
        // were removed once it was durable, so when nothing of the log after it is left
        // either (here the log ends intact before `lost`), nothing on disk says it existed:
        // after a crash, recovery cannot tell this database from a new one (docs/FORMAT.md,
        // what stays undetectable). A log segment left after it would fail the gap check.
        if let Some(d) = damage.iter().find(|d| {
            d.reason == REMOVED_AT_REST && checkpoint_lsn(&d.path).is_some_and(|lsn| lsn >= lost)
        }) {
            return Some(excuse(
                "removed_at_rest_checkpoint",
                d,
                format!("{} held lsn {lost} and was removed", d.path),
            ));
        }
        let mut kept = self.segments.as_slice();
        if let Some(segment) = torn_creation {
            let hit = damage.iter().find(|d| {
                d.path == segment.path && matches!(d.reason, TRUNCATED_AT_REST | ZEROED_AT_REST)
            });
            if let Some(hit) = hit {
                return Some(excuse(
                    &format!("{}_into_a_torn_creation", hit.reason),
                    hit,
                    format!(
                        "{} lost its header and reads as a torn creation, which recovery removes",
                        segment.path
                    ),
                ));
            }
            // Writes that reported success and never landed (a torn or misdirected write
            // leaves the old bytes, zeros in a new file): when one took the header and one
            // took bytes past it, where the lost frames were, the segment reads exactly as a
            // creation torn by a crash. Nothing on disk vouches for its frames, so recovery
            // removes it (chaos seed 797442522). A header lost with its frames still
            // present does not read as a torn creation and never gets here.
            let header = SEGMENT_HEADER_BYTES as u64;
            let silent = |d: &&Damage| {
                d.path == segment.path
                    && matches!(d.reason, "torn_write_acked" | "misdirected_write")
            };
            let on_header = damage
                .iter()
                .filter(silent)
                .find(|d| d.offset_bytes < header);
            let past_header = damage
                .iter()
                .filter(silent)
                .any(|d| d.offset_bytes + d.len_bytes > header);
            if let (Some(hit), true) = (on_header, past_header) {
                return Some(excuse(
                    &format!("{}_into_a_torn_creation", hit.reason),
                    hit,
                    format!(
                        "{}: its header and frames were written, reported success and never landed, so it reads as a torn creation, which recovery removes",
                        segment.path
                    ),
                ));
            }
            // Its rest is zeros and nothing cut or zeroed it: it held no frame (a creation
            // torn by a crash, or an empty segment whose header a flip broke). Recovery
            // removes it, and the log is what comes before it.
            kept = &kept[..kept.len().saturating_sub(1)];
        }
        let seq_last = kept.last().map_or(0, |s| s.seq);
        if let Some(last) = kept.last() {
            let cut = damage.iter().find(|d| {
                d.reason == TRUNCATED_AT_REST
                    && d.path == last.path
                    && d.offset_bytes == last.len_bytes
            });
            if let Some(d) = cut {
                return Some(excuse(
                    "truncated_at_rest_at_a_frame_boundary",
                    d,
                    format!("{} was cut where its intact frames end", last.path),
                ));
            }
        }
        let removed = damage.iter().find(|d| {
            d.reason == REMOVED_AT_REST && segment_seq(&d.path).is_some_and(|seq| seq > seq_last)
        })?;
        Some(excuse(
            "removed_at_rest_last_segment",
            removed,
            match torn_creation {
                Some(after) => format!(
                    "{} was removed, and the only segment after it, {}, holds no frame and reads as a torn creation",
                    removed.path, after.path
                ),
                None => format!(
                    "{} was removed, and no segment after it is left",
                    removed.path
                ),
            },
        ))
    }
}

/// The LSN of a checkpoint's path (`.../checkpoint-<lsn:020>.ckpt`).
fn checkpoint_lsn(path: &str) -> Option<u64> {
    let (_, name) = path.rsplit_once("/checkpoint-")?;
    name.strip_suffix(".ckpt").and_then(parse_digits)
}

/// The sequence number of a log segment's path (`.../wal/<seq:020>.wal`).
pub(crate) fn segment_seq(path: &str) -> Option<u64> {
    let (_, name) = path.rsplit_once("/wal/")?;
    name.strip_suffix(".wal").and_then(parse_digits)
}

/// [`Damage::reason`] of a file cut at rest: `offset_bytes` is where the file now ends.
pub const TRUNCATED_AT_REST: &str = "truncated_at_rest";
/// [`Damage::reason`] of a range zeroed at rest.
pub const ZEROED_AT_REST: &str = "zeroed_at_rest";
/// [`Damage::reason`] of a file removed at rest (the whole file).
pub const REMOVED_AT_REST: &str = "removed_at_rest";

/// Damage at rest (a file cut, removed, a range zeroed while the process was down) from the
/// disk's fault log, injected at I/O call `op_from` or later.
pub fn at_rest_damage(disk: &SimFs, op_from: u64) -> Vec<Damage> {
    disk.fault_log()
        .into_iter()
        .filter(|record| record.op >= op_from)
        .filter_map(|record| {
            let reason = match record.kind {
                FaultKind::TruncatedAtRest => TRUNCATED_AT_REST,
                FaultKind::ZeroedAtRest => ZEROED_AT_REST,
                FaultKind::RemovedAtRest => REMOVED_AT_REST,
                _ => return None,
            };
            Some(Damage {
                reason,
                path: record.path,
                offset_bytes: record.offset,
                len_bytes: record.len_bytes.max(1),
                op: record.op,
                bit: None,
            })
        })
        .collect()
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
        frame_marked(out, lsn, lsn - 1, payload);
    }

    fn frame_marked(out: &mut Vec<u8>, lsn: u64, lsn_durable: u64, payload: &[u8]) {
        let start = out.len();
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&lsn.to_le_bytes());
        out.extend_from_slice(&lsn_durable.to_le_bytes());
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
            frames: Vec::new(),
        };
        assert_eq!(image.lsn_durable(), 9);
        let image = DurableImage {
            checkpoint_lsn: 12,
            segments: vec![seg(3, 11, 20)],
            frames: Vec::new(),
        };
        assert_eq!(image.lsn_durable(), 20);
    }

    const SEG1: &str = "/db/wal/00000000000000000001.wal";
    const SEG2: &str = "/db/wal/00000000000000000002.wal";

    fn image(segments: Vec<(u64, &str, Vec<u8>)>) -> LogImage {
        LogImage {
            checkpoint_lsn: 0,
            segments: segments
                .into_iter()
                .map(|(seq, path, bytes)| SegmentImage::new(seq, path.to_string(), bytes))
                .collect(),
            op_read: 100,
        }
    }

    fn flip(path: &str, offset_bytes: u64, op: u64) -> Damage {
        Damage {
            reason: "bit_flip",
            path: path.to_string(),
            offset_bytes,
            len_bytes: 1,
            op,
            bit: Some(0),
        }
    }

    /// Segment 1 with frames 1..=3; returns the bytes and the offset of frame 3.
    fn three_frames() -> (Vec<u8>, usize) {
        let mut bytes = header(1, 1);
        frame(&mut bytes, 1, b"a");
        frame(&mut bytes, 2, b"bb");
        let third = bytes.len();
        frame(&mut bytes, 3, b"ccc");
        (bytes, third)
    }

    #[test]
    fn a_flipped_last_frame_that_nothing_vouches_for_excuses_the_loss() {
        let (mut bytes, third) = three_frames();
        bytes[third + 26] ^= 1;
        let log = image(vec![(1, SEG1, bytes)]);
        let damage = [flip(SEG1, third as u64 + 26, 50)];
        let excuse = log.explain_loss(3, &damage, None).expect("excused");
        assert_eq!(excuse.reason, "bit_flip_in_unvouched_tail");
        // The same bad frame with no fault on it is no excuse (an acknowledgement that
        // came before its bytes were durable looks like this).
        let why = log.explain_loss(3, &[], None).unwrap_err();
        assert!(why.contains("no silent fault"), "{why}");
        // Nor is damage elsewhere in the file, when the oracle knows where the frame was.
        let located = FrameAt {
            seq: 1,
            lsn: 3,
            offset_bytes: third as u64,
            size_bytes: 28,
        };
        let elsewhere = [flip(SEG1, 5, 50)];
        assert!(log.explain_loss(3, &elsewhere, Some(&located)).is_err());
        assert!(log.explain_loss(3, &damage, Some(&located)).is_ok());
    }

    #[test]
    fn a_later_frame_that_vouches_for_the_damaged_one_makes_the_loss_a_bug() {
        let (mut bytes, third) = three_frames();
        frame_marked(&mut bytes, 4, 3, b"dddd");
        bytes[third + 26] ^= 1;
        let log = image(vec![(1, SEG1, bytes)]);
        let damage = [flip(SEG1, third as u64 + 26, 50)];
        let why = log.explain_loss(3, &damage, None).unwrap_err();
        assert!(why.contains("vouches"), "{why}");
    }

    #[test]
    fn damage_in_a_segment_that_is_not_the_last_makes_the_loss_a_bug() {
        let (mut bytes, third) = three_frames();
        bytes[third + 26] ^= 1;
        let mut next = header(2, 4);
        frame(&mut next, 4, b"e");
        let log = image(vec![(1, SEG1, bytes), (2, SEG2, next)]);
        let damage = [flip(SEG1, third as u64 + 26, 50)];
        let why = log.explain_loss(3, &damage, None).unwrap_err();
        assert!(why.contains("later segment"), "{why}");
    }

    #[test]
    fn losing_an_intact_or_checkpointed_lsn_is_never_excused() {
        let (bytes, _) = three_frames();
        let damage = [flip(SEG1, 40, 50)];
        let log = image(vec![(1, SEG1, bytes)]);
        let why = log.explain_loss(3, &damage, None).unwrap_err();
        assert!(why.contains("intact"), "{why}");
        let checkpointed = LogImage {
            checkpoint_lsn: 5,
            ..LogImage::default()
        };
        assert!(checkpointed.explain_loss(4, &damage, None).is_err());
    }

    #[test]
    fn a_flip_during_recovery_counts_if_recovery_may_have_read_after_it() {
        let (bytes, third) = three_frames();
        // Read intact at op 100; the flip came at op 120, while recovery ran.
        let log = image(vec![(1, SEG1, bytes)]);
        let damage = [flip(SEG1, third as u64 + 26, 120)];
        assert!(log.explain_loss(3, &damage, None).is_err());
        let excuse = LogImage::explain_loss_in_any(std::slice::from_ref(&log), 3, &damage, None);
        assert!(excuse.is_ok(), "{excuse:?}");
        // A flip before the image was read is in the image already: no second copy.
        let early = [flip(SEG1, third as u64 + 26, 10)];
        assert!(log.with_later_flips(&early, 1).is_none());
    }

    fn removed(path: &str, op: u64) -> Damage {
        Damage {
            reason: REMOVED_AT_REST,
            path: path.to_string(),
            offset_bytes: 0,
            len_bytes: 1,
            op,
            bit: None,
        }
    }

    fn lost_write(path: &str, offset_bytes: u64, len_bytes: u64, op: u64) -> Damage {
        Damage {
            reason: "torn_write_acked",
            path: path.to_string(),
            offset_bytes,
            len_bytes,
            op,
            bit: None,
        }
    }

    #[test]
    fn a_segment_whose_header_and_frames_never_landed_excuses_the_loss() {
        // Chaos seed 797442522: checkpoint 60, then segment 2's header write and its frame
        // write both reported success and landed nothing; the file is zeros.
        let mut log = image(vec![(2, SEG2, vec![0; 512])]);
        log.checkpoint_lsn = 60;
        let header_lost = lost_write(SEG2, 0, 32, 90);
        let frames_lost = lost_write(SEG2, 32, 216, 95);
        let excuse = log
            .explain_loss(61, &[header_lost.clone(), frames_lost.clone()], None)
            .expect("excused");
        assert_eq!(excuse.reason, "torn_write_acked_into_a_torn_creation");
        // The header alone is no excuse: the frames' bytes were zero with nothing that
        // lost them (an engine that acknowledged without writing looks like this).
        let why = log
            .explain_loss(61, std::slice::from_ref(&header_lost), None)
            .unwrap_err();
        assert!(why.contains("no damage explains"), "{why}");
        // Nor are lost frames with the header intact: then the segment is no torn creation.
        assert!(log
            .explain_loss(61, std::slice::from_ref(&frames_lost), None)
            .is_err());
        // Nor damage to another file.
        let elsewhere = [lost_write(SEG1, 0, 32, 90), lost_write(SEG1, 32, 216, 95)];
        assert!(log.explain_loss(61, &elsewhere, None).is_err());
    }

    #[test]
    fn a_removed_segment_is_excused_only_when_the_empty_one_after_it_lost_its_header() {
        // Chaos seed 797417167: segment 1 (lsns 1..=3) removed at rest; segment 2 empty,
        // its header naming lsn 4; a flip breaks that header while recovery reads it.
        let empty = header(2, 4);
        let mut rest = empty.clone();
        rest.resize(512, 0);
        let log = image(vec![(2, SEG2, rest)]);
        let damage = [removed(SEG1, 90), flip(SEG2, 9, 120)];
        let why = log.explain_loss(1, &damage, None).unwrap_err();
        assert!(why.contains("gap"), "the intact header vouches: {why}");
        let excuse = LogImage::explain_loss_in_any(std::slice::from_ref(&log), 1, &damage, None)
            .expect("excused once the flip broke the header");
        assert_eq!(excuse.reason, "removed_at_rest_last_segment");
        // Without the removal nothing explains the loss of lsn 1.
        let flipped = log.with_later_flips(&damage, 1).expect("one later flip");
        assert!(flipped.explain_loss(1, &damage[1..], None).is_err());
    }
}
