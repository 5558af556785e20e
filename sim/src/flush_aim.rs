//! Writes aimed at a flush in flight (schedule generation 9).
//!
//! A flush copies a table's lowest hot rows, writes them as a segment with no lock held,
//! then installs it; an update or delete of a copied key in between must leave the new
//! segment's copy hidden, or a stale version stays visible beside the new one
//! (`Table::flush_install`). With the flush worker stepped like any worker (generation 7),
//! writes land in that window only by chance: `cold.written_during_flush` fired in 14 of
//! 1,000 seeds, and a planted install that walked the written keys unsorted failed none. So
//! after a worker step that leaves a flush of a table in flight, half the time the schedule
//! updates or deletes two to six of the table's keys at or below the flush's last copied
//! key, in descending key order (the order that an unsorted walk gets wrong), each from a
//! free client, while the segment is still being written.

use crate::checker::Checked;
use crate::runner::Sim;
use crate::workload::draw_row;
use omendb::Write;
use rand::Rng;

/// Most writes in one aimed burst.
const BURST_WRITES_MAX: usize = 6;

impl Sim {
    /// After a worker step: aims a burst of writes at each table's flush in flight, if any
    /// (see the module doc). Draws from the schedule's stream only when a flush is in flight.
    pub(crate) fn aim_writes_at_flushes(&mut self) -> Checked {
        if !self.config.aims_writes_at_flushes() || !self.workload.flush_worker {
            return Ok(());
        }
        let tables: Vec<String> = self.model.tables.keys().cloned().collect();
        for table in tables {
            if self.detected_damage.is_some() {
                return Ok(());
            }
            self.engine_ops += 1;
            let Ok(Some(last)) = self.db()?.flush_in_flight(&table) else {
                continue;
            };
            if !self.rng.random_bool(0.5) {
                continue;
            }
            let candidates: Vec<i64> = match self.model.tables.get(&table) {
                Some(t) => t.rows.range(..=last).map(|(&k, _)| k).collect(),
                None => continue,
            };
            if candidates.len() < 2 {
                continue;
            }
            let count = self
                .rng
                .random_range(2..=BURST_WRITES_MAX.min(candidates.len()));
            let mut keys: Vec<i64> = Vec::with_capacity(count);
            while keys.len() < count {
                let key = candidates[self.rng.random_range(0..candidates.len())];
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
            keys.sort_unstable_by(|a, b| b.cmp(a));
            self.log(format!(
                "aim {} writes at the flush of {table} in flight (last copied key {last})",
                keys.len()
            ));
            for key in keys {
                let write = if self.rng.random_bool(0.5) {
                    let Some(def) = self.model.tables.get(&table).map(|t| t.def.clone()) else {
                        break;
                    };
                    let row = draw_row(&mut self.rng, &def, key, self.workload.value_bytes_max);
                    Write::Update {
                        table: table.clone(),
                        key,
                        row,
                    }
                } else {
                    Write::Delete {
                        table: table.clone(),
                        key,
                    }
                };
                self.submit_from_free_client(write)?;
                if self.detected_damage.is_some() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
