//! Workloads drawn from the seed: schemas, key distributions, value sizes, the operation
//! mix and the durability mode. Swarm testing: the mix itself is drawn per seed, so some
//! seeds hammer one table with batches, others churn the catalog, others mostly read.

use omendb::{Column, DataType, Durability, Row, TableDef, Value};
use omendb_keygen::{log_uniform, skewed_low};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

/// How keys of new rows are drawn. The names mean what [`omendb_keygen::Dist`] says; the
/// shapes come from there, drawn from the run's own stream so that every seed replays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyDist {
    /// 1, 2, 3, ... from a random start.
    Sequential,
    /// Uniform over a range (narrow ranges make duplicates likely).
    Uniform,
    /// Log-uniform ([`omendb_keygen::log_uniform`]) multiples of 7: small values dominate
    /// and repeat.
    LogUniform,
    /// Most keys crowd the low end of the range ([`omendb_keygen::skewed_low`], cubed).
    SkewedLow,
    /// Most keys crowd the high end.
    SkewedHigh,
    /// Tight clusters with wide gaps between them.
    Clustered,
    /// Microsecond timestamps moving forward, with outages (large gaps).
    TimeSeries,
    /// UUIDv7-like: a millisecond time prefix and random low bits, as an i64.
    UuidV7Like,
    /// ..., 3, 2, 1 from a random start: every insert lands before every key (schedule
    /// generation 2).
    Descending,
    /// A frontier moving up by 2 leaves a hole behind each key; half the inserts fill the
    /// holes, walking down from the frontier: inserts land among keys already there
    /// (schedule generation 2).
    BackFill,
}

/// The distributions schedule generation 2 adds, drawn from a stream of their own
/// ([`KeyGen::redraw_v2`]).
pub const DISTS_V2: [KeyDist; 2] = [KeyDist::Descending, KeyDist::BackFill];

const DISTS: [KeyDist; 8] = [
    KeyDist::Sequential,
    KeyDist::Uniform,
    KeyDist::LogUniform,
    KeyDist::SkewedLow,
    KeyDist::SkewedHigh,
    KeyDist::Clustered,
    KeyDist::TimeSeries,
    KeyDist::UuidV7Like,
];

pub use omendb_keygen::EDGE_KEYS;

/// State of one key generator.
#[derive(Debug, Clone)]
pub struct KeyGen {
    /// The distribution.
    pub dist: KeyDist,
    next: i64,
    span: i64,
    centers: Vec<i64>,
    /// `BackFill`: the next hole to fill, walking down from the frontier (`next`) to
    /// `fill_floor` (excluded); `fill_top` is the frontier when the next run of holes began.
    fill: i64,
    fill_floor: i64,
    fill_top: i64,
}

impl KeyGen {
    fn new(dist: KeyDist, rng: &mut ChaCha8Rng) -> KeyGen {
        let span = [64i64, 1_000, 1 << 20, 1 << 40][rng.random_range(0..4)];
        let centers = (0..rng.random_range(1..6))
            .map(|_| rng.random_range(-(1i64 << 50)..(1i64 << 50)))
            .collect();
        KeyGen {
            dist,
            next: rng.random_range(-1000..1000),
            span,
            centers,
            fill: 0,
            fill_floor: 0,
            fill_top: 0,
        }
    }

    /// With probability 1/4, switches to a distribution of schedule generation 2, drawn
    /// from `rng` (a stream apart from the run's, so that the other tables keep their keys).
    pub fn redraw_v2(&mut self, rng: &mut ChaCha8Rng) {
        if !rng.random_bool(0.25) {
            return;
        }
        self.dist = DISTS_V2[rng.random_range(0..DISTS_V2.len())];
        self.next = rng.random_range(-(1i64 << 40)..(1i64 << 40));
        self.fill = self.next - 1;
        self.fill_floor = self.next - 1;
        self.fill_top = self.next;
    }

    /// A key for a new row (it may collide with an existing one: that is tested too).
    pub fn next_key(&mut self, rng: &mut ChaCha8Rng) -> i64 {
        if rng.random_bool(0.02) {
            return EDGE_KEYS[rng.random_range(0..EDGE_KEYS.len())];
        }
        match self.dist {
            KeyDist::Sequential => {
                self.next = self.next.wrapping_add(1);
                self.next
            }
            KeyDist::Uniform => rng.random_range(-self.span..=self.span),
            KeyDist::LogUniform => {
                log_uniform(self.span as u64, rng.random_range(0.0..1.0)) as i64 * 7
            }
            KeyDist::SkewedLow => {
                skewed_low(rng.random_range(0.0..1.0), 3, self.span as u64) as i64
            }
            KeyDist::SkewedHigh => {
                self.span - skewed_low(rng.random_range(0.0..1.0), 3, self.span as u64) as i64
            }
            KeyDist::Clustered => {
                let center = self.centers[rng.random_range(0..self.centers.len())];
                center.saturating_add(rng.random_range(-50..50))
            }
            KeyDist::TimeSeries => {
                let step = if rng.random_bool(0.02) {
                    rng.random_range(1_000_000..3_600_000_000) // an outage
                } else {
                    rng.random_range(1..2_000)
                };
                self.next = self.next.saturating_add(step);
                1_700_000_000_000_000i64.saturating_add(self.next)
            }
            KeyDist::UuidV7Like => {
                self.next = self.next.saturating_add(rng.random_range(0..3));
                let millis = (self.next & 0xff_ffff) << 38;
                millis | rng.random_range(0..(1i64 << 38))
            }
            KeyDist::Descending => {
                self.next = self.next.wrapping_sub(1);
                self.next
            }
            KeyDist::BackFill => {
                if self.fill <= self.fill_floor {
                    // This run of holes is filled: the next run is the holes the frontier
                    // left since it began, filled from the top down.
                    self.fill_floor = self.fill_top;
                    self.fill_top = self.next;
                    self.fill = self.next.saturating_sub(1);
                }
                if self.fill > self.fill_floor && rng.random_bool(0.5) {
                    let key = self.fill;
                    self.fill = self.fill.saturating_sub(2);
                    key
                } else {
                    self.next = self.next.saturating_add(2);
                    self.next
                }
            }
        }
    }
}

/// A table the workload may create: its definition and key generator.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The definition.
    pub def: TableDef,
    /// How its keys are drawn.
    pub keys: KeyGen,
}

/// Relative weights of the scheduler's actions, drawn per seed (the generic swarm mix).
pub type Mix = omendb_simcore::swarm::Mix<Action>;

/// What the scheduler can do at a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// A client submits an insert of one row.
    Insert,
    /// A client submits an insert of a batch.
    InsertBatch,
    /// A client submits an update.
    Update,
    /// A client submits a delete.
    Delete,
    /// A point read.
    Get,
    /// A range scan.
    Scan,
    /// Create a table.
    CreateTable,
    /// Drop a table.
    DropTable,
    /// Checkpoint.
    Checkpoint,
    /// Step the background workers (group commit).
    StepWorkers,
    /// A client with a write in flight waits for it (syncing as group-commit leader).
    Wait,
    /// Move virtual time forward.
    AdvanceClock,
    /// The process dies between operations.
    Crash,
    /// Close and reopen cleanly.
    Restart,
    /// One step of cold-tier compaction.
    Compact,
    /// Submit a row that breaks the schema (must be refused, changing nothing).
    BadRow,
}

/// Everything about a run that the seed decides besides the disk's faults.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The durability mode.
    pub sync: Durability,
    /// Simulated clients (each has at most one write in flight).
    pub clients: usize,
    /// The action mix.
    pub mix: Mix,
    /// Tables the run may create, by name.
    pub tables: Vec<TableSpec>,
    /// Largest Utf8/Binary value.
    pub value_bytes_max: usize,
    /// Largest batch.
    pub batch_rows_max: usize,
    /// The hot tier's row cap per table (checkpoints flush past it to Parquet segments);
    /// `None` keeps every row hot.
    pub hot_rows_max: Option<usize>,
    /// `Options::checkpoint_copy_bytes_max`: 0 makes every running checkpoint stream to its
    /// file under the read lock, the default copies (simulated tables are small).
    pub checkpoint_copy_bytes_max: usize,
    /// `Options::compaction_base_rows`: small values make simulated tables reach the tiers
    /// above 0 (four segments of a size merged), the default keeps every merge a merge of
    /// all the small segments.
    pub compaction_base_rows: u64,
    /// The engine's size settings (BUGGIFY knobs).
    pub knobs: Knobs,
    /// `Options::flush_worker` (schedule generation 7 on, with `hot_rows_max`).
    pub flush_worker: bool,
}

/// Engine settings that production keeps at their defaults and the simulator draws per
/// seed (FoundationDB's BUGGIFY), so that paths gated by a size are reached in short runs:
/// segment rolls, a writer flushing a full buffer, back-pressure, checkpoints that copy
/// some states and stream others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// `Options::log_segment_bytes_target`.
    pub log_segment_bytes_target: u64,
    /// `Options::log_buffer_bytes_flush`.
    pub log_buffer_bytes_flush: usize,
    /// `Options::log_buffer_bytes_max`.
    pub log_buffer_bytes_max: usize,
    /// `Options::index_data_node_slots_max` (ALEX node capacity).
    pub index_data_node_slots_max: usize,
    /// `Options::index_inner_fanout_max`.
    pub index_inner_fanout_max: usize,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            log_segment_bytes_target: omendb::limits::WAL_SEGMENT_BYTES_TARGET,
            log_buffer_bytes_flush: omendb::limits::LOG_BUFFER_BYTES_FLUSH,
            log_buffer_bytes_max: omendb::limits::LOG_BUFFER_BYTES_MAX,
            index_data_node_slots_max: omendb::Options::default().index_data_node_slots_max,
            index_inner_fanout_max: omendb::Options::default().index_inner_fanout_max,
        }
    }
}

impl Knobs {
    /// Draws the knobs (each at its default half the time) and, a third of the time, a
    /// checkpoint copy threshold in the range simulated tables span, from `rng`: a stream
    /// of its own, so that no other draw of a seed moves.
    /// With `alex` (schedule generation 5), the index limits too, drawn last so that the
    /// other knobs stay as generation 4 draws them.
    pub fn draw(rng: &mut ChaCha8Rng, checkpoint_copy_bytes_max: &mut usize, alex: bool) -> Knobs {
        let mut knobs = Knobs::default();
        if rng.random_bool(0.5) {
            knobs.log_segment_bytes_target =
                [4 << 10, 16 << 10, 64 << 10, 1 << 20][rng.random_range(0..4)];
        }
        if rng.random_bool(0.5) {
            knobs.log_buffer_bytes_flush = [256, 4 << 10, 64 << 10][rng.random_range(0..3)];
            knobs.log_buffer_bytes_max =
                knobs.log_buffer_bytes_flush * [1, 2, 16][rng.random_range(0..3)];
        }
        if rng.random_bool(1.0 / 3.0) {
            *checkpoint_copy_bytes_max = rng.random_range(1..=256 << 10);
        }
        if alex && rng.random_bool(0.5) {
            knobs.index_data_node_slots_max = [64, 256, 4096][rng.random_range(0..3)];
            knobs.index_inner_fanout_max = [4, 16, 1 << 20][rng.random_range(0..3)];
        }
        knobs
    }
}

impl Workload {
    /// Draws a workload.
    pub fn draw(rng: &mut ChaCha8Rng) -> Workload {
        let sync = match rng.random_range(0..10) {
            0..=4 => Durability::Always,
            5..=7 => Durability::Batch {
                max_delay: Duration::from_millis(rng.random_range(1..50)),
            },
            _ => Durability::None,
        };
        let mix = Mix::draw(
            rng,
            &[
                (Action::Insert, 10, 40),
                (Action::InsertBatch, 0, 15),
                (Action::Update, 0, 15),
                (Action::Delete, 0, 15),
                (Action::Get, 5, 30),
                (Action::Scan, 0, 8),
                (Action::CreateTable, 0, 2),
                (Action::DropTable, 0, 1),
                (Action::Checkpoint, 0, 3),
                (Action::StepWorkers, 2, 20),
                (Action::Wait, 2, 20),
                (Action::AdvanceClock, 1, 10),
                (Action::Crash, 0, 2),
                (Action::Restart, 0, 1),
                (Action::BadRow, 0, 2),
                (Action::Compact, 0, 3),
            ],
        );
        let table_count = rng.random_range(1..=4);
        let tables = (0..table_count)
            .map(|i| TableSpec {
                def: draw_table_def(rng, &format!("t{i}")),
                keys: KeyGen::new(DISTS[rng.random_range(0..DISTS.len())], rng),
            })
            .collect();
        let value_bytes_max = [0usize, 16, 256, 4096, 65_536][rng.random_range(0..5)];
        Workload {
            sync,
            clients: rng.random_range(1..=8),
            mix,
            tables,
            value_bytes_max,
            batch_rows_max: rng.random_range(2..=64),
            hot_rows_max: if rng.random_bool(0.5) {
                Some(rng.random_range(4..=64))
            } else {
                None
            },
            checkpoint_copy_bytes_max: omendb::limits::CHECKPOINT_COPY_BYTES_MAX,
            compaction_base_rows: omendb::limits::COMPACTION_BASE_ROWS,
            knobs: Knobs::default(),
            flush_worker: false,
        }
    }

    /// Picks the next action by weight.
    pub fn pick(&self, rng: &mut ChaCha8Rng) -> Action {
        self.mix.pick(rng, Action::Get)
    }
}

fn draw_table_def(rng: &mut ChaCha8Rng, name: &str) -> TableDef {
    const TYPES: [DataType; 6] = [
        DataType::Int64,
        DataType::Float64,
        DataType::Utf8,
        DataType::Binary,
        DataType::Bool,
        DataType::Timestamp,
    ];
    let key_type = if rng.random_bool(0.8) {
        DataType::Int64
    } else {
        DataType::Timestamp
    };
    let extra = rng.random_range(0..=5);
    let key_at = rng.random_range(0..=extra);
    let mut columns = Vec::new();
    for i in 0..=extra {
        if i == key_at {
            columns.push(Column::new("k", key_type).primary_key());
        } else {
            let mut column = Column::new(format!("c{i}"), TYPES[rng.random_range(0..TYPES.len())]);
            if rng.random_bool(0.4) {
                column = column.nullable();
            }
            columns.push(column);
        }
    }
    match TableDef::new(name, columns) {
        Ok(def) => def,
        // Unreachable by construction (one key, unique names); keep the run going with
        // the smallest valid table rather than panic.
        Err(_) => TableDef::new(name, vec![Column::new("k", DataType::Int64).primary_key()])
            .unwrap_or_else(|_| unreachable!("a one-column table is valid")),
    }
}

/// A row for `def` with key `key`, values drawn within `value_bytes_max`.
pub fn draw_row(rng: &mut ChaCha8Rng, def: &TableDef, key: i64, value_bytes_max: usize) -> Row {
    def.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            if i == def.primary_key_index() {
                return match column.data_type {
                    DataType::Timestamp => Value::Timestamp(key),
                    _ => Value::Int64(key),
                };
            }
            if column.nullable && rng.random_bool(0.15) {
                return Value::Null;
            }
            let len = if value_bytes_max == 0 {
                0
            } else {
                match rng.random_range(0..100) {
                    0..=59 => rng.random_range(0..=value_bytes_max.min(16)),
                    60..=94 => rng.random_range(0..=value_bytes_max.min(256)),
                    _ => rng.random_range(0..=value_bytes_max),
                }
            };
            match column.data_type {
                DataType::Int64 => Value::Int64(rng.random()),
                DataType::Timestamp => Value::Timestamp(rng.random()),
                DataType::Float64 => Value::Float64(f64::from_bits(rng.random())),
                DataType::Bool => Value::Bool(rng.random()),
                DataType::Utf8 => Value::Utf8(
                    (0..len)
                        .map(|_| rng.random_range(b'a'..=b'z') as char)
                        .collect(),
                ),
                DataType::Binary => {
                    let mut bytes = vec![0u8; len];
                    rng.fill(&mut bytes[..]);
                    Value::Binary(bytes)
                }
            }
        })
        .collect()
}

/// A row for `def` that breaks it: a wrong type, a NULL where none is allowed, or the
/// wrong number of values.
pub fn draw_bad_row(rng: &mut ChaCha8Rng, def: &TableDef, key: i64) -> Row {
    let mut row = draw_row(rng, def, key, 8);
    match rng.random_range(0..3) {
        0 => {
            row.push(Value::Bool(true));
        }
        1 => {
            let at = rng.random_range(0..row.len());
            if def.columns()[at].nullable {
                row.push(Value::Null); // arity instead
            } else {
                row[at] = Value::Null;
            }
        }
        _ => {
            let at = rng.random_range(0..row.len());
            row[at] = match def.columns()[at].data_type {
                DataType::Utf8 => Value::Int64(1),
                _ => Value::Utf8("wrong type".into()),
            };
        }
    }
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::collections::BTreeSet;

    fn keys(dist: KeyDist, n: usize) -> Vec<i64> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut gen = KeyGen::new(KeyDist::Sequential, &mut rng);
        while gen.dist != dist {
            gen.redraw_v2(&mut rng);
        }
        (0..n)
            .map(|_| gen.next_key(&mut rng))
            .filter(|k| !EDGE_KEYS.contains(k))
            .collect()
    }

    #[test]
    fn descending_keys_only_go_down() {
        let keys = keys(KeyDist::Descending, 500);
        assert!(keys.len() > 400);
        assert!(keys.windows(2).all(|w| w[1] < w[0]), "{keys:?}");
    }

    #[test]
    fn back_fill_fills_holes_below_the_frontier_once_each() {
        let keys = keys(KeyDist::BackFill, 2000);
        let unique: BTreeSet<i64> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "a hole filled twice");
        let mut frontier = i64::MIN;
        let mut below = 0;
        for &k in &keys {
            if k < frontier {
                below += 1;
            }
            frontier = frontier.max(k);
        }
        assert!(
            below > 300,
            "only {below} of {} keys back-filled",
            keys.len()
        );
        // Most of the span the frontier covered is filled in the end.
        let span = (unique.last().unwrap() - unique.first().unwrap()) as usize;
        assert!(
            unique.len() * 10 > span * 7,
            "{} keys over a span of {span}",
            unique.len()
        );
    }
}
