//! Compaction: which segments to merge, and the merge itself.
//!
//! **Policy (size-tiered).** A segment's tier is 0 while its visible rows are at most
//! `base` (`Options::compaction_base_rows`), else `1 + log4(visible / base)`: each tier
//! holds segments about four times the size of the one below. A step merges the lowest
//! tier with work: in tier 0, two or more segments (small ones, cheap to rewrite) or one
//! with deleted rows; above it, the four oldest segments of a tier that has four; and any
//! segment whose deletion vector hides half its rows is rewritten alone. A row is therefore
//! rewritten about `log4(rows / base)` times in its life, not once per step as when every
//! step merged the whole tier. A merge whose output would pass `SEGMENT_ROWS_MAX` is not
//! planned (such segments only shed deleted rows).
//!
//! **Merge.** The inputs' visible rows are read through the same scan as queries
//! (`columns.rs`, a snapshot of each input's deletion vector), merged by key (visible
//! versions are unique across segments, so the merge never chooses between two) and
//! written batch by batch to the new segment's file (`segment::StreamEncoder`): memory is
//! a row group of pages plus eight bytes per output row for the filter. No lock is held
//! while merging; the caller installs the result under the write lock, carrying over rows
//! hidden since the snapshot (see `ColdTier::install_merged`).

use crate::cold::columns::SegmentColumns;
use crate::cold::segment::{self, StreamEncoder, BATCH_ROWS};
use crate::cold::Segment;
use crate::error::{Error, Result};
use crate::schema::{Row, TableDef};
use arrow_array::{Array, RecordBatch};
use roaring::RoaringBitmap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Segments merged together at a tier above 0.
pub(crate) const TIER_FANIN: usize = 4;
/// A merge is not planned if its output would hold more rows than this.
pub(crate) const SEGMENT_ROWS_MAX: u64 = 1 << 28;

/// The tier of a segment with `visible` rows, for base size `base`.
fn tier(visible: u64, base: u64) -> u32 {
    let base = base.max(1);
    if visible <= base {
        return 0;
    }
    let mut t = 1;
    let mut size = base.saturating_mul(TIER_FANIN as u64);
    while visible > size {
        size = size.saturating_mul(TIER_FANIN as u64);
        t += 1;
    }
    t
}

/// What to merge, as indices into `segments` (each `(rows, deleted rows)`, oldest first),
/// or `None` if the tier has no work.
pub(crate) fn plan(segments: &[(u64, u64)], base: u64) -> Option<Vec<usize>> {
    let visible = |&(rows, deleted): &(u64, u64)| rows - deleted.min(rows);
    // A segment mostly dead is rewritten alone.
    if let Some(i) = segments
        .iter()
        .position(|&(rows, deleted)| deleted > 0 && deleted * 2 >= rows)
    {
        return Some(vec![i]);
    }
    let tiers: Vec<u32> = segments.iter().map(|s| tier(visible(s), base)).collect();
    let max = tiers.iter().copied().max()?;
    for t in 0..=max {
        let members: Vec<usize> = (0..segments.len()).filter(|&i| tiers[i] == t).collect();
        let picked: Vec<usize> = if t == 0 {
            match members.len() {
                0 => continue,
                1 if segments[members[0]].1 == 0 => continue,
                _ => members,
            }
        } else if members.len() >= TIER_FANIN {
            members[..TIER_FANIN].to_vec()
        } else {
            continue;
        };
        let rows: u64 = picked.iter().map(|&i| visible(&segments[i])).sum();
        if rows <= SEGMENT_ROWS_MAX {
            return Some(picked);
        }
    }
    None
}

/// One input of a merge: its stream and the batch being consumed.
struct Input {
    stream: SegmentColumns,
    batch: Option<RecordBatch>,
    /// The row of `batch` next in line.
    row: usize,
    /// Where `batch` is in the output's source list.
    source: usize,
}

/// Merges the visible rows of `inputs` (segments with the deletion vectors to apply) into
/// a new segment file `<temp>` of `def`, written and read back durably. Returns its index
/// and the rows written, or `None` if no row was visible.
pub(crate) fn merge(
    def: &Arc<TableDef>,
    inputs: &[(Arc<Segment>, Arc<RoaringBitmap>)],
    file: Arc<dyn crate::env::File>,
    temp: &Path,
) -> Result<Option<(crate::cold::index::SegmentIndex, i64, i64)>> {
    let pk = def.primary_key_index();
    let schema = segment::arrow_schema(def);
    let all: Vec<usize> = (0..def.columns().len()).collect();
    let mut streams: Vec<Input> = inputs
        .iter()
        .map(|(segment, deleted)| Input {
            stream: SegmentColumns::new(
                segment.reader.clone(),
                def.clone(),
                schema.clone(),
                all.clone(),
                0..segment.meta.row_count,
                deleted.clone(),
            ),
            batch: None,
            row: 0,
            source: 0,
        })
        .collect();
    let mut sources: Vec<RecordBatch> = Vec::new();
    let mut heap = BinaryHeap::new();
    for (i, input) in streams.iter_mut().enumerate() {
        if let Some(key) = advance(input, pk, &mut sources)? {
            heap.push(Reverse((key, i)));
        }
    }
    let mut out = Output {
        schema,
        picks: Vec::with_capacity(BATCH_ROWS),
        encoder: None,
        file,
        temp: temp.to_path_buf(),
    };
    let mut last: Option<i64> = None;
    let mut first: Option<i64> = None;
    while let Some(Reverse((key, i))) = heap.pop() {
        if last.is_some_and(|l| l >= key) {
            return Err(Error::corruption(
                temp,
                0,
                format!("key {key} visible in two merged segments"),
            ));
        }
        last = Some(key);
        first.get_or_insert(key);
        let input = &mut streams[i];
        out.picks.push((input.source, input.row));
        input.row += 1;
        if out.picks.len() == BATCH_ROWS {
            out.emit(def, &sources)?;
            rebase(&mut streams, &mut sources);
        }
        let input = &mut streams[i];
        if let Some(key) = advance(input, pk, &mut sources)? {
            heap.push(Reverse((key, i)));
        }
    }
    if !out.picks.is_empty() {
        out.emit(def, &sources)?;
    }
    let (Some(encoder), Some(first), Some(last)) = (out.encoder, first, last) else {
        return Ok(None);
    };
    if encoder.rows() as u64 > u64::from(u32::MAX) {
        return Err(Error::LimitExceeded {
            what: "rows in one cold segment",
            size: encoder.rows(),
            limit: u32::MAX as usize,
        });
    }
    Ok(Some((encoder.finish()?, first, last)))
}

/// The key of `input`'s next row, reading its next non-empty batch (and listing it in
/// `sources`) when the current one is used up; `None` at its end.
fn advance(input: &mut Input, pk: usize, sources: &mut Vec<RecordBatch>) -> Result<Option<i64>> {
    loop {
        if let Some(batch) = &input.batch {
            if input.row < batch.num_rows() {
                let keys = segment::key_values(batch.column(pk).as_ref()).ok_or_else(|| {
                    Error::corruption(Path::new("<merge>"), 0, "key column is not Int64")
                })?;
                return Ok(Some(keys[input.row]));
            }
        }
        match input.stream.next() {
            None => {
                input.batch = None;
                return Ok(None);
            }
            Some(batch) => {
                let batch = batch?;
                input.row = 0;
                input.source = sources.len();
                sources.push(batch.clone());
                input.batch = Some(batch);
            }
        }
    }
}

/// After an output batch: keeps only the inputs' current batches as sources.
fn rebase(streams: &mut [Input], sources: &mut Vec<RecordBatch>) {
    sources.clear();
    for input in streams.iter_mut() {
        if let Some(batch) = &input.batch {
            input.source = sources.len();
            sources.push(batch.clone());
        }
    }
}

/// The merge's output: the rows picked for the next batch and the file being written.
struct Output {
    schema: arrow_schema::SchemaRef,
    /// (source batch, row) of each row of the next output batch, in key order.
    picks: Vec<(usize, usize)>,
    /// Made with the first batch, whose rows choose the encodings.
    encoder: Option<StreamEncoder>,
    file: Arc<dyn crate::env::File>,
    temp: PathBuf,
}

impl Output {
    /// Writes the picked rows of `sources` as one batch.
    fn emit(&mut self, def: &Arc<TableDef>, sources: &[RecordBatch]) -> Result<()> {
        let temp = &self.temp;
        let failed =
            |e: arrow_schema::ArrowError| Error::corruption(temp, 0, format!("merge failed: {e}"));
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for c in 0..self.schema.fields().len() {
            let arrays: Vec<&dyn Array> = sources.iter().map(|b| b.column(c).as_ref()).collect();
            columns
                .push(arrow_select::interleave::interleave(&arrays, &self.picks).map_err(failed)?);
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(failed)?;
        self.picks.clear();
        if self.encoder.is_none() {
            let sample: Vec<Row> = (0..batch.num_rows().min(4096))
                .map(|i| segment::batch_row(def, &batch, i, temp))
                .collect::<Result<_>>()?;
            let sample: Vec<&Row> = sample.iter().collect();
            self.encoder = Some(StreamEncoder::new(def, &sample, self.file.clone(), temp)?);
        }
        match &mut self.encoder {
            Some(encoder) => encoder.write(&batch),
            None => Err(Error::corruption(temp, 0, "no encoder")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_grow_by_four() {
        assert_eq!(tier(0, 100), 0);
        assert_eq!(tier(100, 100), 0);
        assert_eq!(tier(101, 100), 1);
        assert_eq!(tier(400, 100), 1);
        assert_eq!(tier(401, 100), 2);
        // No overflow at the top: the size saturates.
        assert!(tier(u64::MAX, 100) < 32);
    }

    #[test]
    fn small_segments_merge_together_and_large_ones_by_four() {
        // Two small segments: merged.
        assert_eq!(plan(&[(10, 0), (20, 0)], 100), Some(vec![0, 1]));
        // One small segment without deletions: nothing.
        assert_eq!(plan(&[(10, 0)], 100), None);
        // One small segment with a deleted row: rewritten.
        assert_eq!(plan(&[(10, 1)], 100), Some(vec![0]));
        // Three of tier 1: nothing; four: the four oldest.
        let three = [(200, 0), (300, 0), (250, 0)];
        assert_eq!(plan(&three, 100), None);
        let five = [(200, 0), (300, 0), (250, 0), (390, 0), (310, 0)];
        assert_eq!(plan(&five, 100), Some(vec![0, 1, 2, 3]));
        // A segment half dead: rewritten alone, whatever its tier.
        assert_eq!(plan(&[(1000, 0), (800, 400)], 100), Some(vec![1]));
        // The lowest tier with work goes first.
        let mixed = [(2000, 0), (2000, 0), (2000, 0), (2000, 0), (50, 0), (60, 0)];
        assert_eq!(plan(&mixed, 100), Some(vec![4, 5]));
    }
}
