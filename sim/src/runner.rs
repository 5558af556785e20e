//! One simulated run: a seed in, an [`Outcome`] out.
//!
//! The scheduler is a loop on one thread. At each step it draws an action from the
//! workload's mix: a client submits a write (the engine's non-blocking `submit`), a client
//! waits on its ticket (syncing as group-commit leader), the background workers take a step,
//! a read is checked against the model, the clock moves, a checkpoint runs, the process
//! crashes or restarts. The disk may also freeze in the middle of any I/O call (the fault
//! plan's crash point), which is how crashes land inside a log append, a sync, a checkpoint
//! or a recovery. After a crash the database is dropped without close, the disk applies crash
//! semantics, the database is reopened on what survived, and the recovered state is checked
//! against the [`History`]: it must be the state after a prefix of the logged writes that
//! contains everything the engine acknowledged or claimed durable. The judgements live in
//! [`crate::checker`]; this file only drives the engine and records what it promised.
//!
//! Everything is a function of the seed: the workload and schedule come from one ChaCha8
//! stream, the disk's faults from another seeded from the same seed; the clock is virtual;
//! iteration is over ordered maps. A run's trace hash is therefore the same every time.

use crate::at_rest::{AtRest, Injected, Moment};
use crate::checker::{fail, has_latent_sectors, Check, Checked};
use crate::config::{FaultMask, RunConfig};
use crate::env::SimMachine;
use crate::model::{error_class, History, ModelState};
use crate::oracle::{FrameAt, LogImage};
use crate::outcome::{Failure, Outcome};
use crate::trace::{Trace, WordHash};
use crate::workload::{draw_bad_row, draw_row, Action, Knobs, Workload};
use omendb::{Database, Error, Options, Row, Ticket, Value, Write};
use omendb_faults::{is_crash_error, FaultPlan, SimFs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// Where the database lives on the simulated disk.
pub(crate) const DB_PATH: &str = "/db";
/// Attempts to open before the run gives transient faults a rest.
pub(crate) const OPEN_ATTEMPTS_MAX: u32 = 16;
/// Steps between full invariant checks of the engine.
const INVARIANT_CHECK_EVERY: u64 = 64;

/// Runs `seed` under `config`.
pub fn run(seed: u64, config: &RunConfig) -> Outcome {
    // Probe counters are per thread, and a run lives on one thread from here to its end.
    omendb_env::probe::reset();
    let mut sim = Sim::new(seed, config.clone());
    let result = sim.run_to_end();
    let probes = omendb_env::probe::counts().into_iter().collect();
    let stats = sim.machine.disk.stats();
    let faults = stats
        .faults
        .iter()
        .map(|(kind, count)| (kind.name().to_string(), *count))
        .collect();
    let failure = result.err().map(|(check, detail)| Failure {
        check,
        detail,
        step: sim.step,
        trace_tail: sim.trace.tail(),
        fault_log: sim.machine.disk.fault_log_text(),
    });
    Outcome {
        seed,
        config: config.clone(),
        steps: sim.step,
        engine_ops: sim.engine_ops,
        crashes: sim.crashes,
        recoveries: sim.recoveries,
        faults,
        trace_hash: sim.trace.hash(),
        disk_hash: sim.machine.disk.disk_hash(),
        stopped_on_detected_damage: sim.detected_damage.clone(),
        excused_losses: sim.excused_losses.clone(),
        liveness_checked: sim.liveness_checked,
        probes,
        oracle_checks: sim.oracle_checks,
        oracle_excused: sim.oracle_excused,
        at_rest_injected: sim.at_rest_injected.clone(),
        at_rest_outcomes: sim.at_rest_outcomes.clone(),
        failure,
    }
}

/// A client's write in flight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pending {
    pub(crate) ticket: Ticket,
}

pub(crate) enum Reopen {
    /// Power loss: the disk applies crash semantics first.
    Crash,
    /// The process restarts on an intact machine (after a poisoned log or a clean close).
    Process,
}

pub(crate) struct Sim {
    pub(crate) seed: u64,
    pub(crate) config: RunConfig,
    pub(crate) rng: ChaCha8Rng,
    pub(crate) workload: Workload,
    pub(crate) machine: SimMachine,
    pub(crate) db: Option<Database>,
    pub(crate) model: ModelState,
    pub(crate) history: History,
    pub(crate) clients: Vec<Option<Pending>>,
    pub(crate) trace: Trace,
    pub(crate) step: u64,
    pub(crate) engine_ops: u64,
    pub(crate) crashes: u64,
    pub(crate) recoveries: u64,
    pub(crate) storage_full_seen: u32,
    pub(crate) detected_damage: Option<String>,
    /// Set by the liveness phase: the disk is healed, no crash is planned any more.
    pub(crate) healed: bool,
    /// Waits and polls that returned an acknowledgement.
    pub(crate) acknowledged: u64,
    /// Whether the liveness phase ran to its end (see [`crate::liveness`]).
    pub(crate) liveness_checked: bool,
    /// Losses the exact recovery oracle excused, by reason.
    pub(crate) excused_losses: BTreeMap<String, u64>,
    /// The log as each attempt of the current open found it, before recovery touched it.
    pub(crate) log_images: Vec<LogImage>,
    /// Where the acknowledgement oracle found each LSN's frame intact since the last open.
    pub(crate) frames_located: BTreeMap<u64, FrameAt>,
    /// Every LSN up to this one was found durable by the acknowledgement oracle since the
    /// last open (claims at or below it need no new look at the disk).
    pub(crate) oracle_verified_lsn: u64,
    pub(crate) oracle_checks: u64,
    pub(crate) oracle_excused: u64,
    /// The seed's damage-at-rest schedule (generation 6 on, [`crate::at_rest`]).
    pub(crate) at_rest: Option<AtRest>,
    /// The injection since the last open, until that open is judged.
    pub(crate) at_rest_pending: Option<Injected>,
    /// Injections by kind and moment.
    pub(crate) at_rest_injected: BTreeMap<String, u64>,
    /// Opens after an injection, by moment and outcome.
    pub(crate) at_rest_outcomes: BTreeMap<String, u64>,
    /// The disk's I/O call count when the last open succeeded: damage at rest from then on
    /// is what the next open meets.
    pub(crate) op_at_open: u64,
    /// What the last open reported of the clean close before it (`LOG_END`'s LSN).
    pub(crate) open_clean_close_lsn: Option<u64>,
}

/// The log segment size target of generation 8's tiny-segment seeds: most writes roll.
const LOG_SEGMENT_BYTES_TINY: u64 = 512;

/// A summary of a row's values for trace lines. Word-wise: hashing a 64 KiB value byte by
/// byte was 3% of a sweep.
fn describe_value_hash(row: &Row) -> u64 {
    let mut hash = WordHash::new();
    for value in row {
        match value {
            Value::Null => hash.feed(&[0]),
            Value::Int64(v) | Value::Timestamp(v) => hash.feed(&v.to_le_bytes()),
            Value::Float64(v) => hash.feed(&v.to_bits().to_le_bytes()),
            Value::Utf8(s) => hash.feed(s.as_bytes()),
            Value::Binary(b) => hash.feed(b),
            Value::Bool(b) => hash.feed(&[u8::from(*b) + 1]),
        }
        hash.feed(&[0xff]);
    }
    hash.finish()
}

fn describe(write: &Write) -> String {
    match write {
        Write::CreateTable(def) => {
            format!("create {} ({} columns)", def.name(), def.columns().len())
        }
        Write::DropTable { table } => format!("drop {table}"),
        Write::Insert { table, rows } => {
            let hash = rows
                .iter()
                .fold(0u64, |h, r| h.rotate_left(5) ^ describe_value_hash(r));
            if rows.len() == 1 {
                format!("insert {table} 1 row h={hash:016x}")
            } else {
                format!("insert {table} {} rows h={hash:016x}", rows.len())
            }
        }
        Write::Update { table, key, row } => {
            format!(
                "update {table} key={key} h={:016x}",
                describe_value_hash(row)
            )
        }
        Write::Delete { table, key } => format!("delete {table} key={key}"),
    }
}

impl Sim {
    fn new(seed: u64, config: RunConfig) -> Sim {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut workload = Workload::draw(&mut rng);
        // Drawn from its own stream, so that adding it changed no other draw of a seed.
        workload.checkpoint_copy_bytes_max =
            if ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0001).random_bool(0.5) {
                0
            } else {
                omendb::limits::CHECKPOINT_COPY_BYTES_MAX
            };
        if config.compaction_tiers_drawn() {
            // From a stream of its own (generation 2 on).
            workload.compaction_base_rows = [omendb::limits::COMPACTION_BASE_ROWS, 1, 4, 16]
                [ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0002).random_range(0..4usize)];
        }
        if config.key_dists_v2() {
            // Also from a stream of its own: a seed's other tables keep their keys.
            let mut dists = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0004);
            for table in &mut workload.tables {
                table.keys.redraw_v2(&mut dists);
            }
        }
        if config.buggify() {
            let mut knobs = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0003);
            workload.knobs = Knobs::draw(
                &mut knobs,
                &mut workload.checkpoint_copy_bytes_max,
                config.alex_knobs(),
            );
            // Generation 8: a quarter of the seeds log into tiny segments, so that a log at
            // rest often has interior segments for damage at rest to strike (drawn last
            // from the knobs' own stream: no earlier draw moves).
            if config.at_rest_interior() && knobs.random_bool(0.25) {
                workload.knobs.log_segment_bytes_target = LOG_SEGMENT_BYTES_TINY;
            }
        }
        if config.flush_worker_drawn() && workload.hot_rows_max.is_some() {
            // A stream of its own too (generation 7 on).
            workload.flush_worker =
                ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0007).random_bool(0.5);
        }
        let mut plan = config.faults.apply(FaultPlan::from_seed(seed));
        if plan.space_limit_bytes.is_some() {
            // The plan draws limits for large disks; a simulated database is small, so
            // scale the limit to it or the disk would never fill.
            let exponent = rng.random_range(13.0..20.0f64);
            plan.space_limit_bytes = Some(2f64.powf(exponent) as u64);
        }
        let machine = SimMachine::new(SimFs::new(plan));
        let at_rest = config
            .at_rest()
            .then(|| AtRest::draw(seed, config.at_rest_interior(), config.at_rest_gaps()));
        let clients = vec![None; workload.clients];
        let trace = Trace::new(config.echo);
        Sim {
            seed,
            config,
            rng,
            workload,
            machine,
            db: None,
            model: ModelState::default(),
            history: History::default(),
            clients,
            trace,
            step: 0,
            engine_ops: 0,
            crashes: 0,
            recoveries: 0,
            storage_full_seen: 0,
            detected_damage: None,
            healed: false,
            acknowledged: 0,
            liveness_checked: false,
            excused_losses: BTreeMap::new(),
            log_images: Vec::new(),
            frames_located: BTreeMap::new(),
            oracle_verified_lsn: 0,
            oracle_checks: 0,
            oracle_excused: 0,
            at_rest,
            at_rest_pending: None,
            at_rest_injected: BTreeMap::new(),
            at_rest_outcomes: BTreeMap::new(),
            op_at_open: 0,
            open_clean_close_lsn: None,
        }
    }

    pub(crate) fn log(&mut self, line: String) {
        let stamped = format!("{:>6} {line}", self.step);
        self.trace.line(stamped);
    }

    fn run_to_end(&mut self) -> Checked {
        self.log(format!(
            "seed={} sync={:?} clients={} tables={} plan: {}",
            self.seed,
            self.workload.sync,
            self.workload.clients,
            self.workload.tables.len(),
            self.machine.disk.plan()
        ));
        if self.config.buggify() {
            let knobs = self.workload.knobs;
            self.log(format!(
                "knobs: log_segment_bytes_target={} log_buffer_bytes_flush={} log_buffer_bytes_max={} checkpoint_copy_bytes_max={} index_data_node_slots_max={} index_inner_fanout_max={}",
                knobs.log_segment_bytes_target,
                knobs.log_buffer_bytes_flush,
                knobs.log_buffer_bytes_max,
                self.workload.checkpoint_copy_bytes_max,
                knobs.index_data_node_slots_max,
                knobs.index_inner_fanout_max
            ));
        }
        if let Some(at_rest) = &self.at_rest {
            let rate = at_rest.rate;
            self.log(format!("damage at rest: rate {rate} per close and crash"));
        }
        self.open_checked(Reopen::Process)?;
        for i in 0..self.workload.tables.len() {
            // Damage found by a reopen ends the run here too: there is no database to
            // create the next table in.
            if self.detected_damage.is_some() {
                break;
            }
            if i == 0 || self.rng.random_bool(0.5) {
                let def = self.workload.tables[i].def.clone();
                self.submit(Write::CreateTable(def))?;
                self.settle()?;
            }
        }
        while self.step < self.config.ops && self.detected_damage.is_none() {
            self.step += 1;
            let action = self.workload.pick(&mut self.rng);
            self.act(action)?;
            self.settle()?;
            if self.step.is_multiple_of(INVARIANT_CHECK_EVERY) && self.detected_damage.is_none() {
                self.check_engine_invariants()?;
            }
        }
        if self.detected_damage.is_none() {
            // The end of every run is a power loss: whatever was promised must be there.
            self.log("final crash".into());
            self.machine.disk.freeze();
            self.open_checked(Reopen::Crash)?;
        }
        if self.detected_damage.is_none() {
            self.liveness_phase()?;
        }
        if let Some(db) = self.db.take() {
            if self.detected_damage.is_none() {
                self.engine_ops += 1;
                if let Err(e) = db.close() {
                    if !is_crash_error(&e) && !matches!(error_class(&e), "io" | "poisoned") {
                        return fail(Check::Close, format!("close failed: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn db(&self) -> Checked<&Database> {
        match &self.db {
            Some(db) => Ok(db),
            None => fail(Check::Harness, "no open database"),
        }
    }

    /// After each action: a crash that froze the disk, or a poisoned log, leads to a
    /// reopen and a recovery check; durability claims are recorded.
    pub(crate) fn settle(&mut self) -> Checked {
        if self.detected_damage.is_some() {
            return Ok(());
        }
        if self.machine.disk.is_frozen() {
            return self.open_checked(Reopen::Crash);
        }
        let (durable, poisoned) = {
            let db = self.db()?;
            (db.lsns().durable, db.poisoned())
        };
        self.check_claim("lsn_durable", durable)?;
        self.history.durable_lsn = self.history.durable_lsn.max(durable);
        if let Some(reason) = poisoned {
            self.log(format!("log poisoned ({reason}); restarting the process"));
            return self.open_checked(Reopen::Process);
        }
        Ok(())
    }

    fn act(&mut self, action: Action) -> Checked {
        match action {
            Action::Insert | Action::InsertBatch | Action::BadRow => self.write_rows(action),
            Action::Update => {
                let Some((table, key)) = self.existing_key() else {
                    return Ok(());
                };
                let Some(def) = self.model.tables.get(&table).map(|t| t.def.clone()) else {
                    return Ok(());
                };
                let row = draw_row(&mut self.rng, &def, key, self.workload.value_bytes_max);
                self.submit(Write::Update { table, key, row })
            }
            Action::Delete => {
                let Some((table, key)) = self.existing_key() else {
                    return Ok(());
                };
                // Sometimes a key that is not there.
                let key = if self.rng.random_bool(0.2) {
                    key.wrapping_add(1)
                } else {
                    key
                };
                self.submit(Write::Delete { table, key })
            }
            Action::Get => self.check_get(),
            Action::Scan => self.check_scan(),
            Action::CreateTable => {
                let i = self.rng.random_range(0..self.workload.tables.len());
                let def = self.workload.tables[i].def.clone();
                self.submit(Write::CreateTable(def))
            }
            Action::DropTable => {
                let i = self.rng.random_range(0..self.workload.tables.len());
                let table = self.workload.tables[i].def.name().to_string();
                self.submit(Write::DropTable { table })
            }
            Action::Checkpoint => self.checkpoint(),
            Action::StepWorkers => {
                let steps = self.machine.spawner.step_all();
                self.log(format!("workers stepped {steps}"));
                self.poll_clients()?;
                self.aim_writes_at_flushes()
            }
            Action::Wait => self.wait_one(),
            Action::AdvanceClock => {
                let by = Duration::from_micros(self.rng.random_range(0..100_000));
                self.machine.clock.advance(by);
                self.log(format!("clock +{}us", by.as_micros()));
                Ok(())
            }
            Action::Crash => {
                if self.config.faults.crash {
                    self.log("crash between operations".into());
                    self.machine.disk.freeze();
                }
                Ok(())
            }
            Action::Restart => self.clean_restart(),
            Action::Compact => self.compact(),
        }
    }

    /// A random table of the model and a key in it, if there is one.
    pub(crate) fn existing_key(&mut self) -> Option<(String, i64)> {
        let names: Vec<&String> = self.model.tables.keys().collect();
        if names.is_empty() {
            return None;
        }
        let name = names[self.rng.random_range(0..names.len())].clone();
        let table = self.model.tables.get(&name)?;
        let probe: i64 = self.rng.random();
        let key = table
            .rows
            .range(probe..)
            .next()
            .or_else(|| table.rows.iter().next())
            .map(|(k, _)| *k)
            .unwrap_or(probe);
        Some((name, key))
    }

    /// A table spec to write to: mostly one that exists in the model, sometimes any.
    fn pick_table(&mut self) -> usize {
        let existing: Vec<usize> = (0..self.workload.tables.len())
            .filter(|&i| {
                self.model
                    .tables
                    .contains_key(self.workload.tables[i].def.name())
            })
            .collect();
        if !existing.is_empty() && self.rng.random_bool(0.95) {
            existing[self.rng.random_range(0..existing.len())]
        } else {
            self.rng.random_range(0..self.workload.tables.len())
        }
    }

    fn write_rows(&mut self, action: Action) -> Checked {
        let i = self.pick_table();
        let def = self.workload.tables[i].def.clone();
        let count = match action {
            Action::InsertBatch => self.rng.random_range(1..=self.workload.batch_rows_max),
            _ => 1,
        };
        let mut rows = Vec::with_capacity(count);
        for _ in 0..count {
            let key = if self.rng.random_bool(0.05) {
                // A key that probably exists: duplicates must be refused.
                self.existing_key().map_or(0, |(_, k)| k)
            } else {
                self.workload.tables[i].keys.next_key(&mut self.rng)
            };
            rows.push(if action == Action::BadRow {
                draw_bad_row(&mut self.rng, &def, key)
            } else {
                draw_row(&mut self.rng, &def, key, self.workload.value_bytes_max)
            });
        }
        self.submit(Write::Insert {
            table: def.name().to_string(),
            rows,
        })
    }

    pub(crate) fn submit(&mut self, write: Write) -> Checked {
        let client = self.rng.random_range(0..self.clients.len());
        if let Some(pending) = self.clients[client] {
            // A client has one write in flight; this one blocks on it first.
            return self.wait_client(client, pending);
        }
        let expected = self.model.predict(&write);
        let text = describe(&write);
        self.engine_ops += 1;
        let result = self.db()?.submit(write.clone());
        match result {
            Ok(ticket) => {
                self.log(format!("c{client} {text} -> lsn {}", ticket.lsn()));
                match expected {
                    Ok(changes) if changes == (ticket.lsn() > 0) => {}
                    other => {
                        return fail(
                            Check::WriteOutcome,
                            format!(
                                "{text}: engine accepted (lsn {}), model expected {other:?}",
                                ticket.lsn()
                            ),
                        )
                    }
                }
                if ticket.lsn() > 0 {
                    if ticket.lsn() <= self.history.last_lsn() {
                        return fail(
                            Check::LsnOrder,
                            format!(
                                "{text}: lsn {} not after {}",
                                ticket.lsn(),
                                self.history.last_lsn()
                            ),
                        );
                    }
                    self.model.apply(&write);
                    self.history.push(ticket.lsn(), write);
                    self.clients[client] = Some(Pending { ticket });
                }
                Ok(())
            }
            Err(e) => {
                let class = error_class(&e);
                self.log(format!("c{client} {text} -> error {class}: {e}"));
                if is_crash_error(&e) || class == "io" {
                    if e.is_storage_full() {
                        self.storage_full_seen += 1;
                        self.maybe_free_space();
                    }
                    // The record may have reached the log (a crash inside the append, or a
                    // failed undo that poisoned it): it is in flight, never acknowledged.
                    let crashed = self.machine.disk.is_frozen();
                    let poisoned = self.db()?.poisoned().is_some();
                    if expected == Ok(true) && (crashed || poisoned) {
                        let lsn = self.db()?.lsns().appended + 1;
                        self.history.push(lsn, write);
                    }
                    return Ok(());
                }
                if class == "poisoned" {
                    return Ok(());
                }
                // Checking a write may read a cold key page (is the key there, and where):
                // damage found there refuses the write, which changed nothing.
                if e.is_corruption() && self.corruption_explained(&e) {
                    self.detected_damage = Some(e.to_string());
                    return Ok(());
                }
                match expected {
                    Err(want) if want == class => Ok(()),
                    other => fail(
                        Check::WriteOutcome,
                        format!("{text}: engine refused ({class}: {e}), model expected {other:?}"),
                    ),
                }
            }
        }
    }

    fn maybe_free_space(&mut self) {
        if self.storage_full_seen >= 3 {
            let used = self.machine.disk.used_bytes();
            let limit = used.saturating_mul(2).saturating_add(1 << 20);
            self.machine.disk.set_space_limit(Some(limit));
            self.storage_full_seen = 0;
            self.log(format!("space returns: limit {limit} bytes"));
        }
    }

    /// Submits `write` from a client with nothing in flight, waiting for every client that
    /// has a write in flight first ([`Sim::submit`] instead waits for a busy client it drew
    /// and drops the write).
    pub(crate) fn submit_from_free_client(&mut self, write: Write) -> Checked {
        for client in 0..self.clients.len() {
            if let Some(pending) = self.clients[client] {
                self.wait_client(client, pending)?;
            }
        }
        if self.detected_damage.is_some() || self.db.is_none() {
            return Ok(());
        }
        self.submit(write)
    }

    pub(crate) fn wait_client(&mut self, client: usize, pending: Pending) -> Checked {
        self.engine_ops += 1;
        let result = self.db()?.wait(pending.ticket);
        match result {
            Ok(()) => {
                self.log(format!(
                    "c{client} wait lsn {} -> acknowledged",
                    pending.ticket.lsn()
                ));
                self.acknowledge(client, pending)
            }
            Err(e) => {
                self.log(format!(
                    "c{client} wait lsn {} -> error {}",
                    pending.ticket.lsn(),
                    error_class(&e)
                ));
                self.clients[client] = None;
                if !is_crash_error(&e) && !matches!(error_class(&e), "io" | "poisoned") {
                    return fail(
                        Check::Wait,
                        format!("unexpected error waiting on a ticket: {e}"),
                    );
                }
                Ok(())
            }
        }
    }

    fn acknowledge(&mut self, client: usize, pending: Pending) -> Checked {
        self.clients[client] = None;
        self.acknowledged += 1;
        if self.workload.sync == omendb::Durability::Always {
            self.check_claim(
                "acknowledged under Durability::Always",
                pending.ticket.lsn(),
            )?;
            self.history.durable_lsn = self.history.durable_lsn.max(pending.ticket.lsn());
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Checked {
        let busy: Vec<usize> = (0..self.clients.len())
            .filter(|&c| self.clients[c].is_some())
            .collect();
        if busy.is_empty() {
            return Ok(());
        }
        let client = busy[self.rng.random_range(0..busy.len())];
        match self.clients[client] {
            Some(pending) => self.wait_client(client, pending),
            None => Ok(()),
        }
    }

    fn poll_clients(&mut self) -> Checked {
        for client in 0..self.clients.len() {
            let Some(pending) = self.clients[client] else {
                continue;
            };
            match self.db()?.is_acknowledged(pending.ticket) {
                Ok(true) => {
                    self.log(format!(
                        "c{client} lsn {} acknowledged",
                        pending.ticket.lsn()
                    ));
                    self.acknowledge(client, pending)?;
                }
                Ok(false) => {}
                Err(e) => {
                    self.log(format!(
                        "c{client} lsn {} failed: {}",
                        pending.ticket.lsn(),
                        error_class(&e)
                    ));
                    self.clients[client] = None;
                }
            }
        }
        Ok(())
    }

    fn compact(&mut self) -> Checked {
        self.engine_ops += 1;
        let result = self.db()?.compact_step();
        match result {
            Ok(worked) => {
                self.log(format!(
                    "compact -> {}",
                    if worked { "merged" } else { "nothing to do" }
                ));
                if worked {
                    // A compaction ends with a checkpoint of everything applied.
                    let lsn = self.db()?.lsns().appended;
                    self.check_claim("compaction's checkpoint", lsn)?;
                    self.history.durable_lsn = self.history.durable_lsn.max(lsn);
                    if self.config.metamorphic() {
                        self.check_contents("compaction")?;
                    }
                }
                Ok(())
            }
            Err(e) => self.maintenance_error(Check::Compact, &e),
        }
    }

    /// A checkpoint or compaction that failed: legal if the disk crashed, failed an I/O
    /// call, or held damage a silent fault explains; disk full lets space come back.
    fn maintenance_error(&mut self, what: Check, e: &Error) -> Checked {
        let class = error_class(e);
        self.log(format!("{what} -> error {class}"));
        if e.is_storage_full() {
            self.storage_full_seen += 1;
            self.maybe_free_space();
        }
        match class {
            _ if is_crash_error(e) => Ok(()),
            "io" | "poisoned" => Ok(()),
            "corruption" if self.corruption_explained(e) => Ok(()),
            _ => fail(what, format!("unexpected {what} error: {e}")),
        }
    }

    fn checkpoint(&mut self) -> Checked {
        self.engine_ops += 1;
        let result = self.db()?.checkpoint();
        match result {
            Ok(lsn) => {
                self.log(format!("checkpoint -> lsn {lsn}"));
                self.check_claim("checkpoint", lsn)?;
                self.history.durable_lsn = self.history.durable_lsn.max(lsn);
                Ok(())
            }
            Err(e) => self.maintenance_error(Check::Checkpoint, &e),
        }
    }

    fn clean_restart(&mut self) -> Checked {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        self.engine_ops += 1;
        let lsn_written = db.lsns().appended;
        let closed = match db.close() {
            Ok(()) => {
                self.log(format!("close -> ok at lsn {lsn_written}"));
                self.check_claim("clean close", lsn_written)?;
                self.history.durable_lsn = self.history.durable_lsn.max(lsn_written);
                true
            }
            Err(e) => {
                self.log(format!("close -> error {}", error_class(&e)));
                false
            }
        };
        self.clients.iter_mut().for_each(|c| *c = None);
        if self.machine.disk.is_frozen() {
            return self.open_checked(Reopen::Crash);
        }
        if closed {
            self.inject_at_rest(Moment::AfterClose);
        }
        self.open_checked(Reopen::Process)
    }

    /// Reopens the database (after a crash, a poisoned log, or a clean close) and checks
    /// that what it recovered is a legal state.
    pub(crate) fn open_checked(&mut self, how: Reopen) -> Checked {
        if let Some(db) = self.db.take() {
            drop(db); // no close: nothing more reaches the disk
        }
        self.clients.iter_mut().for_each(|c| *c = None);
        if let Reopen::Crash = how {
            self.crash_restart();
            self.inject_at_rest(Moment::AfterCrash);
        }
        // What each attempt of recovery will read, before it changes anything: the exact
        // recovery oracle judges a loss against these images (recovery rewrites no segment
        // and removes none before its checkpoint covers them, so the first image still
        // explains a loss after a crash during recovery removed segments).
        self.log_images.clear();
        let mut attempts = 0u32;
        let db = loop {
            self.log_images
                .push(LogImage::read(&self.machine.disk, DB_PATH));
            attempts += 1;
            self.engine_ops += 1;
            let options = Options {
                sync: self.workload.sync,
                background_worker: true,
                hot_rows_max: self.workload.hot_rows_max,
                // The simulator steps compaction itself (Action::Compact); the flush
                // worker's phases are steps of Action::StepWorkers.
                compaction_worker: false,
                flush_worker: self.workload.flush_worker,
                checkpoint_copy_bytes_max: self.workload.checkpoint_copy_bytes_max,
                compaction_base_rows: self.workload.compaction_base_rows,
                log_segment_bytes_target: self.workload.knobs.log_segment_bytes_target,
                log_buffer_bytes_flush: self.workload.knobs.log_buffer_bytes_flush,
                log_buffer_bytes_max: self.workload.knobs.log_buffer_bytes_max,
                index_data_node_slots_max: self.workload.knobs.index_data_node_slots_max,
                index_inner_fanout_max: self.workload.knobs.index_inner_fanout_max,
            };
            match Database::open_with_env(self.machine.env(), Path::new(DB_PATH), options) {
                Ok(db) => break db,
                Err(e) if is_crash_error(&e) || self.machine.disk.is_frozen() => {
                    omendb_env::probe!(crate::sweep::PROBE_CRASH_DURING_RECOVERY);
                    self.log(format!("open -> crashed during recovery: {e}"));
                    self.crash_restart();
                }
                Err(e) if e.is_corruption() => {
                    self.log(format!("open -> corruption: {e}"));
                    self.check_cut_sealed_named(&e)?;
                    if self.corruption_explained(&e) {
                        self.detected_damage = Some(e.to_string());
                        self.judge_at_rest("corruption");
                        return Ok(());
                    }
                    return fail(
                        Check::FalseCorruption,
                        format!("corruption reported in a file no silent fault damaged: {e}"),
                    );
                }
                Err(e) if error_class(&e) == "io" => {
                    self.log(format!("open -> io error: {e}"));
                    if e.is_storage_full() {
                        self.storage_full_seen = 3;
                        self.maybe_free_space();
                    }
                    if attempts >= OPEN_ATTEMPTS_MAX {
                        if has_latent_sectors(&self.machine.disk) {
                            self.detected_damage = Some(e.to_string());
                            self.judge_at_rest("unreadable");
                            return Ok(());
                        }
                        // Transient faults that keep striking: let the disk calm down.
                        let plan = FaultMask::NONE.apply(self.machine.disk.plan());
                        self.machine.disk.set_plan(plan);
                        self.log("disk calms down".into());
                    }
                    if attempts >= OPEN_ATTEMPTS_MAX * 2 {
                        return fail(
                            Check::Open,
                            format!("open keeps failing on a calm disk: {e}"),
                        );
                    }
                }
                Err(e) => return fail(Check::Open, format!("open failed: {e}")),
            }
        };
        self.recoveries += 1;
        // LSNs after the recovered one are handed out again: what the oracle verified
        // before this open says nothing about them.
        self.oracle_verified_lsn = 0;
        let stats = db.open_stats().clone();
        let recovered = stats.recovery.lsn_last;
        self.log(format!(
            "open -> checkpoint {} replayed {} truncated {} lsn {}",
            stats.checkpoint_lsn,
            stats.recovery.records_replayed,
            stats.recovery.bytes_truncated,
            recovered
        ));
        self.db = Some(db);
        self.open_clean_close_lsn = stats.clean_close_lsn;
        let excused_at_rest = |sim: &Sim| -> u64 {
            sim.excused_losses
                .iter()
                .filter(|(reason, _)| reason.contains("at_rest"))
                .map(|(_, n)| n)
                .sum()
        };
        let excused_before = excused_at_rest(self);
        self.check_recovered(recovered)?;
        self.judge_at_rest(if self.detected_damage.is_some() {
            "corruption"
        } else if excused_at_rest(self) > excused_before {
            "excused_loss"
        } else {
            "intact"
        });
        self.op_at_open = self.machine.disk.op_count();
        self.frames_located.clear();
        if self.config.faults.crash && self.rng.random_bool(0.5) && !self.healed {
            let at = self.machine.disk.op_count() + self.rng.random_range(1..4000);
            self.machine.disk.crash_at_op(at);
        }
        Ok(())
    }

    fn crash_restart(&mut self) {
        self.machine.disk.restart();
        self.crashes += 1;
        self.log(format!("disk restarted after crash #{}", self.crashes));
    }
}
