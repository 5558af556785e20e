//! The stress table's rows and the record of what was acknowledged: each thread owns a set of
//! keys (no other thread changes them), so its record is exact, and the database must equal
//! the union of the records. The key distributions of reads and inserts are here too.

use omendb::{Column, DataType, Database, Row, TableDef, Value};
use omendb_keygen::{Dist, SplitMix64, Zipf};
use std::collections::HashMap;

/// The table every thread works on.
pub const TABLE: &str = "stress";

/// The `--dist` values: meanings as in `omendb_keygen::Dist`.
pub const DISTS: [Dist; 2] = [Dist::Uniform, Dist::Zipf];

/// Keys in `0..n` for reads and inserts: uniform, or zipf (`omendb_keygen::Zipf`, theta
/// 0.99, ranks scrambled by a hash so that the hot keys spread over the key space).
#[derive(Clone)]
pub enum KeyDraw {
    Uniform { n: u64 },
    Zipf(Zipf),
}

impl KeyDraw {
    /// The distribution `name` names over `0..n` (`n` at least 1).
    pub fn new(name: &str, n: u64) -> Result<KeyDraw, String> {
        match Dist::parse(name, &DISTS)? {
            Dist::Uniform => Ok(KeyDraw::Uniform { n }),
            Dist::Zipf => Ok(KeyDraw::Zipf(Zipf::new(n, Zipf::THETA_YCSB)?)),
            other => Err(format!("--dist {} is not supported here", other.name())),
        }
    }

    /// The next key.
    pub fn sample(&self, rng: &mut SplitMix64) -> i64 {
        match self {
            KeyDraw::Uniform { n } => rng.below(*n) as i64,
            KeyDraw::Zipf(zipf) => zipf.scrambled(rng.unit()) as i64,
        }
    }
}

/// The stress table: `(k Int64 pk, v Int64, payload Binary)`.
pub fn table_def() -> Result<TableDef, String> {
    TableDef::new(
        TABLE,
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Int64),
            Column::new("payload", DataType::Binary),
        ],
    )
    .map_err(|e| format!("table definition: {e}"))
}

/// The row for key `k` whose version is `v`: the payload is derived from both, so a row read
/// back is checked whole.
pub fn make_row(k: i64, v: i64, value_bytes: usize) -> Row {
    let mut payload = vec![0u8; value_bytes];
    let stamp = (v ^ k.rotate_left(17)).to_le_bytes();
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte = stamp[i % 8].wrapping_add(i as u8);
    }
    vec![Value::Int64(k), Value::Int64(v), Value::Binary(payload)]
}

/// What one thread has had acknowledged: the keys it owns and the version of each.
#[derive(Default)]
pub struct Owned {
    pub keys: Vec<i64>,
    /// Key -> (its slot in `keys`, the acknowledged version).
    pub versions: HashMap<i64, (usize, i64)>,
}

/// Most keys one thread owns: its inserts turn into deletes at this count.
pub fn owned_max(keys: u64, threads: usize) -> usize {
    (keys as usize / threads.max(1)).max(16)
}

impl Owned {
    /// A record that never reallocates while it holds at most `max` keys, so the harness's
    /// own memory is fixed from the start and does not show as growth during a soak. Without
    /// this the map doubles whenever a thread's count first wanders past 7/8 of the map's
    /// capacity, which at half the key space happens at random times for minutes. Twice
    /// `max`: the map also reallocates to a larger size when deleted-entry markers use up its
    /// spare room while it is over half full; at most half full it rehashes in place.
    pub fn with_capacity(max: usize) -> Owned {
        Owned {
            keys: Vec::with_capacity(max),
            versions: HashMap::with_capacity(max.saturating_mul(2)),
        }
    }

    pub fn insert(&mut self, key: i64, version: i64) {
        match self.versions.get_mut(&key) {
            Some(entry) => entry.1 = version,
            None => {
                self.versions.insert(key, (self.keys.len(), version));
                self.keys.push(key);
            }
        }
    }

    pub fn remove(&mut self, key: i64) {
        if let Some((slot, _)) = self.versions.remove(&key) {
            let last = self.keys.pop().expect("keys and versions agree");
            if last != key {
                self.keys[slot] = last;
                self.versions.get_mut(&last).expect("indexed").0 = slot;
            }
        }
    }

    pub fn pick(&self, rng: &mut SplitMix64) -> Option<(i64, i64)> {
        if self.keys.is_empty() {
            return None;
        }
        let key = self.keys[rng.below(self.keys.len() as u64) as usize];
        Some((key, self.versions[&key].1))
    }
}

/// Compares the whole table with the model: returns (acknowledged rows missing or wrong,
/// rows the model does not have).
pub fn check_state(
    db: &Database,
    model: &HashMap<i64, i64>,
    value_bytes: usize,
) -> Result<(u64, u64), String> {
    let rows = db.scan(TABLE, ..).map_err(|e| format!("scan: {e}"))?;
    let mut lost = 0u64;
    let mut unexpected = 0u64;
    let mut found = 0usize;
    for row in &rows {
        let key = match row.first() {
            Some(Value::Int64(k)) => *k,
            _ => return Err(format!("row without an Int64 key: {row:?}")),
        };
        match model.get(&key) {
            Some(&version) => {
                found += 1;
                if *row != make_row(key, version, value_bytes) {
                    lost += 1;
                }
            }
            None => unexpected += 1,
        }
    }
    lost += (model.len() - found) as u64;
    Ok((lost, unexpected))
}
