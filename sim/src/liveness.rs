//! The liveness phase (as TigerBeetle's VOPR): after the fault phase of a run, the disk is
//! healed and the database must make progress again within a bound.
//!
//! Safety checks say nothing wrong happened; they pass just as well when the database
//! wedges: a log that stays poisoned, a checkpoint that keeps failing, a flush or a
//! compaction that never completes once the disk is good again. So at the end of every run
//! that did not stop on damage, after the final power loss and its recovery check, the
//! phase turns every fault off and gives the space back, cuts the power once more, and then
//! requires, each within a bound and in this order:
//!
//! 1. recovery: the open succeeds and recovers a legal state (the usual recovery check);
//! 2. writes: [`LIVENESS_ACKS_MIN`] writes acknowledged within [`LIVENESS_ROUNDS_MAX`]
//!    rounds of submit and wait;
//! 3. a checkpoint completes;
//! 4. with a hot-tier cap, [`LIVENESS_FLUSHES`] checkpoints each flush rows over the cap to
//!    a new cold segment;
//! 5. a compaction step completes (with a hot cap it must find the flushed segments to
//!    merge: the phase reopens with the default compaction tiers, where every simulated
//!    segment is small), and the visible contents afterwards equal the model's;
//! 6. the metamorphic checks ([`crate::metamorphic`]) hold over every whole table.
//!
//! Any error on the healed disk fails check `liveness`, except damage still at rest from
//! the fault phase (a latent sector or a flipped bit in a live file), which the engine must
//! report and which ends the phase unchecked, as it ends the run elsewhere. The phase draws
//! from the run's stream only after the fault phase, so it changes no earlier step.

use crate::checker::{fail, has_latent_sectors, Check, Checked};
use crate::config::FaultMask;
use crate::model::error_class;
use crate::runner::{Reopen, Sim};
use crate::workload::draw_row;
use omendb::{Error, Write};

/// Writes the phase must see acknowledged.
pub const LIVENESS_ACKS_MIN: u64 = 4;
/// Rounds (submit, then wait on every client) the phase may spend getting them.
pub const LIVENESS_ROUNDS_MAX: u32 = 32;
/// Hot-tier flushes the phase requires (two, so that compaction has segments to merge).
pub const LIVENESS_FLUSHES: usize = 2;
/// Where the phase's fresh keys start.
const FRESH_KEYS_FROM: i64 = 3 << 52;
/// Rows per insert batch of the phase.
const LIVENESS_BATCH_ROWS: usize = 32;

impl Sim {
    /// Heals the disk, reopens, and requires progress (module doc).
    pub(crate) fn liveness_phase(&mut self) -> Checked {
        self.healed = true;
        let plan = FaultMask::NONE.apply(self.machine.disk.plan());
        self.machine.disk.set_plan(plan);
        self.machine.disk.cancel_crash();
        self.machine.disk.set_space_limit(None);
        // The default compaction tiers: every simulated segment is then small (tier 0), so
        // two flushed segments are work a compaction step must do. (A seed's smaller base
        // puts segments of different sizes in different tiers, where two need not merge.)
        self.workload.compaction_base_rows = omendb::limits::COMPACTION_BASE_ROWS;
        self.log("liveness: disk healed (faults off, space back), power loss".into());
        self.machine.disk.freeze();
        self.open_checked(Reopen::Crash)?;
        if self.stopped() {
            return Ok(());
        }
        let table = self.liveness_table()?;
        if self.stopped() {
            return Ok(());
        }
        let acked_before = self.acknowledged;
        let mut rounds = 0u32;
        while self.acknowledged - acked_before < LIVENESS_ACKS_MIN {
            rounds += 1;
            if rounds > LIVENESS_ROUNDS_MAX {
                return fail(
                    Check::Liveness,
                    format!(
                        "{} of {LIVENESS_ACKS_MIN} writes acknowledged in {LIVENESS_ROUNDS_MAX} rounds on a healed disk",
                        self.acknowledged - acked_before
                    ),
                );
            }
            self.insert_fresh(&table, 1)?;
            if self.stopped() {
                return Ok(());
            }
        }
        self.liveness_checkpoint()?;
        if self.stopped() {
            return Ok(());
        }
        if let Some(cap) = self.workload.hot_rows_max {
            for flush in 1..=LIVENESS_FLUSHES {
                let before = self.cold_segments(&table)?;
                self.insert_fresh(&table, cap + 1)?;
                self.liveness_checkpoint()?;
                if self.stopped() {
                    return Ok(());
                }
                let after = self.cold_segments(&table)?;
                self.log(format!(
                    "liveness: flush {flush}: {table} has {after} cold segments (was {before})"
                ));
                if after <= before {
                    return fail(
                        Check::Liveness,
                        format!(
                            "a checkpoint after {} new rows in {table} (hot cap {cap}) flushed nothing: {after} cold segments, {before} before",
                            cap + 1
                        ),
                    );
                }
            }
        }
        self.liveness_compact()?;
        if self.stopped() {
            return Ok(());
        }
        // The read paths agree over every table, hot and cold (module crate::metamorphic).
        let names: Vec<String> = self.model.tables.keys().cloned().collect();
        for name in names {
            let rows: Vec<omendb::Row> = self
                .model
                .tables
                .get(&name)
                .map(|t| t.rows.values().cloned().collect())
                .unwrap_or_default();
            self.check_metamorphic(&name, i64::MIN, i64::MAX, &rows)?;
            if self.stopped() {
                return Ok(());
            }
        }
        self.check_engine_invariants()?;
        self.log("liveness: progress on the healed disk".into());
        self.liveness_checked = true;
        Ok(())
    }

    /// Whether damage at rest stopped the run (the phase then ends unchecked).
    fn stopped(&mut self) -> bool {
        if let Some(damage) = &self.detected_damage {
            let line = format!("liveness: not checked, damage at rest: {damage}");
            self.log(line);
            return true;
        }
        false
    }

    /// A table of the model to write to; creates the first workload table if none exists.
    fn liveness_table(&mut self) -> Checked<String> {
        if let Some(name) = self.model.tables.keys().next() {
            return Ok(name.clone());
        }
        let def = self.workload.tables[0].def.clone();
        let name = def.name().to_string();
        self.liveness_write(Write::CreateTable(def))?;
        if !self.model.tables.contains_key(&name) && !self.stopped() {
            return fail(
                Check::Liveness,
                format!("create table {name} refused on a healed disk"),
            );
        }
        Ok(name)
    }

    /// Inserts `count` rows with keys no row of `table` has, in batches.
    fn insert_fresh(&mut self, table: &str, count: usize) -> Checked {
        let Some(model) = self.model.tables.get(table) else {
            return fail(Check::Liveness, format!("table {table} vanished"));
        };
        let def = model.def.clone();
        // Keys no row has, counting up from a point the workloads' edges and spans avoid
        // mostly (keys already there are skipped).
        let keys: Vec<i64> = (FRESH_KEYS_FROM..)
            .filter(|k| !model.rows.contains_key(k))
            .take(count)
            .collect();
        for chunk in keys.chunks(LIVENESS_BATCH_ROWS) {
            let rows = chunk
                .iter()
                .map(|&key| draw_row(&mut self.rng, &def, key, self.workload.value_bytes_max))
                .collect();
            self.liveness_write(Write::Insert {
                table: table.to_string(),
                rows,
            })?;
            if self.detected_damage.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Submits `write` with every client idle, then waits on every client.
    fn liveness_write(&mut self, write: Write) -> Checked {
        self.drain_clients()?;
        self.submit(write)?;
        self.settle()?;
        self.drain_clients()?;
        if let Some(reason) = self.db()?.poisoned() {
            return fail(
                Check::Liveness,
                format!("the log is poisoned on a healed disk: {reason}"),
            );
        }
        Ok(())
    }

    fn drain_clients(&mut self) -> Checked {
        for client in 0..self.clients.len() {
            if let Some(pending) = self.clients[client] {
                self.wait_client(client, pending)?;
                self.settle()?;
            }
        }
        Ok(())
    }

    fn cold_segments(&self, table: &str) -> Checked<usize> {
        self.db()?
            .cold_segment_count(table)
            .or_else(|e| fail(Check::Liveness, format!("cold_segment_count {table}: {e}")))
    }

    /// An error on the healed disk: damage still at rest ends the phase; anything else is a
    /// wedge.
    fn liveness_error(&mut self, what: &str, e: &Error) -> Checked {
        let at_rest = (error_class(e) == "io" && has_latent_sectors(&self.machine.disk))
            || (e.is_corruption() && self.corruption_explained(e));
        if at_rest {
            self.detected_damage = Some(e.to_string());
            return Ok(());
        }
        fail(
            Check::Liveness,
            format!("{what} failed on a healed disk: {e}"),
        )
    }

    fn liveness_checkpoint(&mut self) -> Checked {
        self.engine_ops += 1;
        let result = self.db()?.checkpoint();
        match result {
            Ok(lsn) => {
                self.log(format!("liveness: checkpoint -> lsn {lsn}"));
                self.check_claim("checkpoint", lsn)?;
                self.history.durable_lsn = self.history.durable_lsn.max(lsn);
                Ok(())
            }
            Err(e) => self.liveness_error("checkpoint", &e),
        }
    }

    /// A compaction step, which must merge the flushed segments when there are any, and
    /// must leave the visible contents as the model has them.
    fn liveness_compact(&mut self) -> Checked {
        self.engine_ops += 1;
        let result = self.db()?.compact_step();
        let worked = match result {
            Ok(worked) => worked,
            Err(e) => return self.liveness_error("compaction", &e),
        };
        self.log(format!(
            "liveness: compact -> {}",
            if worked { "merged" } else { "nothing to do" }
        ));
        if self.workload.hot_rows_max.is_some() && !worked {
            return fail(
                Check::Liveness,
                format!(
                    "compaction found nothing to merge after {LIVENESS_FLUSHES} flushes on a healed disk"
                ),
            );
        }
        if worked {
            let lsn = self.db()?.lsns().appended;
            self.check_claim("compaction's checkpoint", lsn)?;
            self.history.durable_lsn = self.history.durable_lsn.max(lsn);
        }
        let Some(state) = self.read_engine_state()? else {
            self.detected_damage = Some("damage reported while reading after compaction".into());
            return Ok(());
        };
        if state != self.model {
            return fail(
                Check::Liveness,
                format!(
                    "after compaction the engine holds {} rows, the model {}",
                    state.row_count(),
                    self.model.row_count()
                ),
            );
        }
        Ok(())
    }
}
