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
//! contains everything the engine acknowledged or claimed durable.
//!
//! Everything is a function of the seed: the workload and schedule come from one ChaCha8
//! stream, the disk's faults from another seeded from the same seed; the clock is virtual;
//! iteration is over ordered maps. A run's trace hash is therefore the same every time.

use crate::env::SimMachine;
use crate::model::{error_class, History, ModelState};
use crate::oracle::DurableImage;
use crate::trace::{fnv64, Trace};
use crate::workload::{draw_bad_row, draw_row, Action, Workload};
use omendb::{Database, Error, Options, Row, Ticket, Value, Write};
use omendb_faults::{is_crash_error, FaultKind, FaultPlan, SimFs};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

/// Where the database lives on the simulated disk.
const DB_PATH: &str = "/db";
/// Attempts to open before the run gives transient faults a rest.
const OPEN_ATTEMPTS_MAX: u32 = 16;
/// Steps between full invariant checks of the engine.
const INVARIANT_CHECK_EVERY: u64 = 64;

/// Which fault classes a run may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FaultMask {
    /// Crashes: at seeded I/O calls and between operations.
    pub crash: bool,
    /// Transient I/O errors: read, write, torn write, sync, sync_dir.
    pub io: bool,
    /// A space limit (disk full).
    pub disk_full: bool,
    /// Silent corruption: bit flips, acknowledged torn writes, misdirected writes, latent
    /// sector errors.
    pub corruption: bool,
}

impl FaultMask {
    /// Every fault class.
    pub const ALL: FaultMask = FaultMask {
        crash: true,
        io: true,
        disk_full: true,
        corruption: true,
    };
    /// No faults at all.
    pub const NONE: FaultMask = FaultMask {
        crash: false,
        io: false,
        disk_full: false,
        corruption: false,
    };

    const NAMES: [&'static str; 4] = ["crash", "io", "disk_full", "corruption"];

    fn flags(&self) -> [bool; 4] {
        [self.crash, self.io, self.disk_full, self.corruption]
    }

    fn from_flags(flags: [bool; 4]) -> FaultMask {
        FaultMask {
            crash: flags[0],
            io: flags[1],
            disk_full: flags[2],
            corruption: flags[3],
        }
    }

    /// The mask without class `i` (0..4), for shrinking.
    pub fn without(&self, i: usize) -> FaultMask {
        let mut flags = self.flags();
        if let Some(flag) = flags.get_mut(i) {
            *flag = false;
        }
        FaultMask::from_flags(flags)
    }

    /// Parses `all`, `none`, or a comma-separated list of class names.
    pub fn parse(text: &str) -> Result<FaultMask, String> {
        match text.trim() {
            "all" => return Ok(FaultMask::ALL),
            "none" | "" => return Ok(FaultMask::NONE),
            _ => {}
        }
        let mut flags = [false; 4];
        for name in text.split(',').map(str::trim) {
            let i = FaultMask::NAMES
                .iter()
                .position(|n| *n == name)
                .ok_or_else(|| {
                    format!(
                        "unknown fault class {name:?}; expected one of {:?}",
                        FaultMask::NAMES
                    )
                })?;
            flags[i] = true;
        }
        Ok(FaultMask::from_flags(flags))
    }

    fn apply(&self, mut plan: FaultPlan) -> FaultPlan {
        if !self.crash {
            plan.crash_at_op = None;
        }
        if !self.io {
            plan.read_error = 0.0;
            plan.write_error = 0.0;
            plan.write_torn = 0.0;
            plan.sync_error = 0.0;
            plan.sync_dir_error = 0.0;
        }
        if !self.disk_full {
            plan.space_limit_bytes = None;
        }
        if !self.corruption {
            plan.read_latent = 0.0;
            plan.write_torn_acked = 0.0;
            plan.write_misdirected = 0.0;
            plan.bit_flip = 0.0;
        }
        plan
    }
}

impl fmt::Display for FaultMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on: Vec<&str> = FaultMask::NAMES
            .iter()
            .zip(self.flags())
            .filter_map(|(name, on)| on.then_some(*name))
            .collect();
        match on.len() {
            0 => f.write_str("none"),
            4 => f.write_str("all"),
            _ => f.write_str(&on.join(",")),
        }
    }
}

/// What a run does besides its seed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Scheduler steps.
    pub ops: u64,
    /// Fault classes allowed.
    pub faults: FaultMask,
    /// Print every trace line (replay).
    pub echo: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            ops: 1000,
            faults: FaultMask::ALL,
            echo: false,
        }
    }
}

/// A failed check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The check that failed (stable name, compared by the shrinker).
    pub check: &'static str,
    /// What exactly was wrong.
    pub detail: String,
    /// The step at which it failed.
    pub step: u64,
    /// The newest trace lines.
    pub trace_tail: Vec<String>,
    /// The disk's fault log.
    pub fault_log: String,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The seed.
    pub seed: u64,
    /// The configuration.
    pub config: RunConfig,
    /// Steps run.
    pub steps: u64,
    /// Engine operations issued (writes, reads, checkpoints, opens).
    pub engine_ops: u64,
    /// Crashes (disk restarts).
    pub crashes: u64,
    /// Recoveries checked.
    pub recoveries: u64,
    /// Faults by kind, as the disk counted them.
    pub faults: BTreeMap<String, u64>,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Hash of the disk image at the end of the run.
    pub disk_hash: u64,
    /// The run stopped early because the engine correctly reported damage it cannot
    /// repair (corruption, unreadable sectors) after silent faults were injected.
    pub stopped_on_detected_damage: Option<String>,
    /// Recoveries that lost writes the engine had claimed durable, tolerated because silent
    /// corruption had damaged the log's last synced records (see docs/TESTING.md).
    pub tolerated_losses: u64,
    /// Hits of every coverage probe during the run, by name (every probe, zeros included).
    pub probes: BTreeMap<&'static str, u64>,
    /// Durability claims the acknowledgement oracle checked against the disk's durable
    /// image, and those it excused after silent damage to the log or a checkpoint.
    pub oracle_checks: u64,
    /// See `oracle_checks`.
    pub oracle_excused: u64,
    /// The failure, if any check failed.
    pub failure: Option<Failure>,
}

impl Outcome {
    /// The outcome of a run that panicked (the engine must never panic).
    pub fn panicked(seed: u64, config: &RunConfig, message: String) -> Outcome {
        Outcome {
            seed,
            config: config.clone(),
            steps: 0,
            engine_ops: 0,
            crashes: 0,
            recoveries: 0,
            faults: BTreeMap::new(),
            trace_hash: 0,
            disk_hash: 0,
            stopped_on_detected_damage: None,
            tolerated_losses: 0,
            probes: BTreeMap::new(),
            oracle_checks: 0,
            oracle_excused: 0,
            failure: Some(Failure {
                check: "panic",
                detail: message,
                step: 0,
                trace_tail: vec!["(replay the seed to see the trace up to the panic)".into()],
                fault_log: String::new(),
            }),
        }
    }

    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Runs `seed` under `config`.
pub fn run(seed: u64, config: &RunConfig) -> Outcome {
    // Probe counters are per thread, and a run lives on one thread from here to its end.
    omendb::probe::reset();
    let mut sim = Sim::new(seed, config.clone());
    let result = sim.run_to_end();
    let probes = omendb::probe::counts()
        .into_iter()
        .map(|(probe, hits)| (probe.name(), hits))
        .collect();
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
        tolerated_losses: sim.tolerated_losses,
        probes,
        oracle_checks: sim.oracle_checks,
        oracle_excused: sim.oracle_excused,
        failure,
    }
}

type Check<T = ()> = Result<T, (&'static str, String)>;

fn fail<T>(check: &'static str, detail: impl Into<String>) -> Check<T> {
    Err((check, detail.into()))
}

/// A client's write in flight.
#[derive(Debug, Clone, Copy)]
struct Pending {
    ticket: Ticket,
}

enum Reopen {
    /// Power loss: the disk applies crash semantics first.
    Crash,
    /// The process restarts on an intact machine (after a poisoned log or a clean close).
    Process,
}

struct Sim {
    seed: u64,
    config: RunConfig,
    rng: ChaCha8Rng,
    workload: Workload,
    machine: SimMachine,
    db: Option<Database>,
    model: ModelState,
    history: History,
    clients: Vec<Option<Pending>>,
    trace: Trace,
    step: u64,
    engine_ops: u64,
    crashes: u64,
    recoveries: u64,
    storage_full_seen: u32,
    detected_damage: Option<String>,
    tolerated_losses: u64,
    /// Every LSN up to this one was found durable by the acknowledgement oracle since the
    /// last open (claims at or below it need no new look at the disk).
    oracle_verified_lsn: u64,
    oracle_checks: u64,
    oracle_excused: u64,
}

/// Files that silent faults have damaged at rest, at any time in the run: bit flips,
/// acknowledged torn writes, latent sectors, and both ends of misdirected writes.
fn damaged_paths(disk: &SimFs) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    for record in disk.fault_log() {
        match record.kind {
            FaultKind::BitFlip
            | FaultKind::TornWriteAcked
            | FaultKind::LatentSector
            | FaultKind::LatentRead => {
                paths.insert(record.path.clone());
            }
            FaultKind::MisdirectedWrite => {
                paths.insert(record.path.clone());
                if let Some(rest) = record.detail.strip_prefix("landed in ") {
                    if let Some((target, _)) = rest.split_once(" at offset") {
                        paths.insert(target.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    paths
}

/// Whether a latent (persistently unreadable) sector was ever injected.
fn has_latent_sectors(disk: &SimFs) -> bool {
    disk.fault_log()
        .iter()
        .any(|r| matches!(r.kind, FaultKind::LatentSector | FaultKind::LatentRead))
}

fn describe_value_hash(row: &Row) -> u64 {
    let mut bytes = Vec::new();
    for value in row {
        match value {
            Value::Null => bytes.push(0),
            Value::Int64(v) | Value::Timestamp(v) => bytes.extend_from_slice(&v.to_le_bytes()),
            Value::Float64(v) => bytes.extend_from_slice(&v.to_bits().to_le_bytes()),
            Value::Utf8(s) => bytes.extend_from_slice(s.as_bytes()),
            Value::Binary(b) => bytes.extend_from_slice(b),
            Value::Bool(b) => bytes.push(u8::from(*b) + 1),
        }
        bytes.push(0xff);
    }
    fnv64(&bytes)
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
        // Also from a stream of its own.
        workload.compaction_base_rows = [omendb::limits::COMPACTION_BASE_ROWS, 1, 4, 16]
            [ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_c0de_0c0f_0002).random_range(0..4usize)];
        let mut plan = config.faults.apply(FaultPlan::from_seed(seed));
        if plan.space_limit_bytes.is_some() {
            // The plan draws limits for large disks; a simulated database is small, so
            // scale the limit to it or the disk would never fill.
            let exponent = rng.random_range(13.0..20.0f64);
            plan.space_limit_bytes = Some(2f64.powf(exponent) as u64);
        }
        let machine = SimMachine::new(SimFs::new(plan));
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
            tolerated_losses: 0,
            oracle_verified_lsn: 0,
            oracle_checks: 0,
            oracle_excused: 0,
        }
    }

    fn log(&mut self, line: String) {
        let stamped = format!("{:>6} {line}", self.step);
        self.trace.line(stamped);
    }

    fn run_to_end(&mut self) -> Check {
        self.log(format!(
            "seed={} sync={:?} clients={} tables={} plan: {}",
            self.seed,
            self.workload.sync,
            self.workload.clients,
            self.workload.tables.len(),
            self.machine.disk.plan()
        ));
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
        if let Some(db) = self.db.take() {
            if self.detected_damage.is_none() {
                self.engine_ops += 1;
                if let Err(e) = db.close() {
                    if !is_crash_error(&e) && !matches!(error_class(&e), "io" | "poisoned") {
                        return fail("close", format!("close failed: {e}"));
                    }
                }
            }
        }
        Ok(())
    }

    fn db(&self) -> Check<&Database> {
        match &self.db {
            Some(db) => Ok(db),
            None => fail("harness", "no open database"),
        }
    }

    /// After each action: a crash that froze the disk, or a poisoned log, leads to a
    /// reopen and a recovery check; durability claims are recorded.
    fn settle(&mut self) -> Check {
        if self.detected_damage.is_some() {
            return Ok(());
        }
        if self.machine.disk.is_frozen() {
            return self.open_checked(Reopen::Crash);
        }
        let (durable, poisoned) = {
            let db = self.db()?;
            (db.lsns().1, db.poisoned())
        };
        self.check_claim("lsn_durable", durable)?;
        self.history.durable_lsn = self.history.durable_lsn.max(durable);
        if let Some(reason) = poisoned {
            self.log(format!("log poisoned ({reason}); restarting the process"));
            return self.open_checked(Reopen::Process);
        }
        Ok(())
    }

    fn act(&mut self, action: Action) -> Check {
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
                self.poll_clients()
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
    fn existing_key(&mut self) -> Option<(String, i64)> {
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

    fn write_rows(&mut self, action: Action) -> Check {
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

    fn submit(&mut self, write: Write) -> Check {
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
                            "write_outcome",
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
                            "lsn_order",
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
                        let lsn = self.db()?.lsns().0 + 1;
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
                        "write_outcome",
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

    fn wait_client(&mut self, client: usize, pending: Pending) -> Check {
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
                    return fail("wait", format!("unexpected error waiting on a ticket: {e}"));
                }
                Ok(())
            }
        }
    }

    fn acknowledge(&mut self, client: usize, pending: Pending) -> Check {
        self.clients[client] = None;
        if self.workload.sync == omendb::Sync::Always {
            self.check_claim("acknowledged under Sync::Always", pending.ticket.lsn())?;
            self.history.durable_lsn = self.history.durable_lsn.max(pending.ticket.lsn());
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Check {
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

    fn poll_clients(&mut self) -> Check {
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

    fn check_get(&mut self) -> Check {
        let (table, key) = match self.existing_key() {
            Some(found) if self.rng.random_bool(0.8) => found,
            _ => {
                let i = self.rng.random_range(0..self.workload.tables.len());
                let name = self.workload.tables[i].def.name().to_string();
                let key = self.workload.tables[i].keys.next_key(&mut self.rng);
                (name, key)
            }
        };
        self.engine_ops += 1;
        let got = self.db()?.get(&table, key);
        let expected = match self.model.tables.get(&table) {
            Some(t) => Ok(t.rows.get(&key).cloned()),
            None => Err("table_not_found"),
        };
        if let Err(e) = &got {
            if self.read_error_is_legal(e) {
                self.log(format!("get {table} key={key} -> error {}", error_class(e)));
                return Ok(());
            }
        }
        let same = match (&got, &expected) {
            (Ok(a), Ok(b)) => a == b,
            (Err(e), Err(class)) => error_class(e) == *class,
            _ => false,
        };
        self.log(format!(
            "get {table} key={key} -> {}",
            if same { "ok" } else { "MISMATCH" }
        ));
        if !same {
            return fail(
                "read",
                format!("get {table} {key}: engine {got:?}, model {expected:?}"),
            );
        }
        Ok(())
    }

    fn check_scan(&mut self) -> Check {
        let (Some((table, a)), Some((_, b))) = (self.existing_key(), self.existing_key()) else {
            return Ok(());
        };
        let (lo, hi) = (a.min(b), a.max(b));
        self.engine_ops += 1;
        let got = self.db()?.scan(&table, lo..=hi);
        let expected: Vec<Row> = self
            .model
            .tables
            .get(&table)
            .map(|t| t.rows.range(lo..=hi).map(|(_, r)| r.clone()).collect())
            .unwrap_or_default();
        if let Err(e) = &got {
            if self.read_error_is_legal(e) {
                self.log(format!(
                    "scan {table} [{lo}, {hi}] -> error {}",
                    error_class(e)
                ));
                return Ok(());
            }
        }
        let same = matches!(&got, Ok(rows) if *rows == expected);
        self.log(format!(
            "scan {table} [{lo}, {hi}] -> {} rows {}",
            expected.len(),
            if same { "ok" } else { "MISMATCH" }
        ));
        if !same {
            return fail(
                "read",
                format!(
                    "scan {table} [{lo},{hi}]: engine {:?} rows, model {} rows",
                    got.map(|r| r.len()),
                    expected.len()
                ),
            );
        }
        Ok(())
    }

    fn compact(&mut self) -> Check {
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
                    let lsn = self.db()?.lsns().0;
                    self.check_claim("compaction's checkpoint", lsn)?;
                    self.history.durable_lsn = self.history.durable_lsn.max(lsn);
                }
                Ok(())
            }
            Err(e) => self.maintenance_error("compact", &e),
        }
    }

    /// A checkpoint or compaction that failed: legal if the disk crashed, failed an I/O
    /// call, or held damage a silent fault explains; disk full lets space come back.
    fn maintenance_error(&mut self, what: &'static str, e: &Error) -> Check {
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

    fn checkpoint(&mut self) -> Check {
        self.engine_ops += 1;
        let result = self.db()?.checkpoint();
        match result {
            Ok(lsn) => {
                self.log(format!("checkpoint -> lsn {lsn}"));
                self.check_claim("checkpoint", lsn)?;
                self.history.durable_lsn = self.history.durable_lsn.max(lsn);
                Ok(())
            }
            Err(e) => self.maintenance_error("checkpoint", &e),
        }
    }

    /// Reads of cold rows touch the disk: an injected I/O error, a crash, or corruption in a
    /// damaged file are legal answers (wrong rows never are). Corruption stops the run.
    fn read_error_is_legal(&mut self, error: &Error) -> bool {
        if is_crash_error(error) || error_class(error) == "io" {
            return true;
        }
        if error.is_corruption() && self.corruption_explained(error) {
            self.detected_damage = Some(error.to_string());
            return true;
        }
        false
    }

    /// Whether a corruption error is explained by a silent fault in the file it names.
    fn corruption_explained(&self, error: &Error) -> bool {
        match error {
            Error::Corruption { path, .. } => {
                let damaged = damaged_paths(&self.machine.disk);
                let path = path.to_string_lossy();
                // Checkpoints and cold segments are written as temp files and renamed:
                // damage follows the rename.
                let renamed_checkpoint = path.starts_with(&format!("{DB_PATH}/checkpoint-"))
                    && damaged.contains(&format!("{DB_PATH}/checkpoint.tmp"));
                let renamed_segment = damaged.contains(&format!("{path}.tmp"));
                damaged.contains(path.as_ref()) || renamed_checkpoint || renamed_segment
            }
            _ => false,
        }
    }

    /// Whether silent faults ever damaged a log segment (the only place where damage can
    /// look like a torn tail and be truncated instead of reported).
    fn log_damaged(&self) -> bool {
        damaged_paths(&self.machine.disk)
            .iter()
            .any(|p| p.starts_with(&format!("{DB_PATH}/wal/")))
    }

    fn clean_restart(&mut self) -> Check {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        self.engine_ops += 1;
        let lsn_written = db.lsns().0;
        match db.close() {
            Ok(()) => {
                self.log(format!("close -> ok at lsn {lsn_written}"));
                self.check_claim("clean close", lsn_written)?;
                self.history.durable_lsn = self.history.durable_lsn.max(lsn_written);
            }
            Err(e) => self.log(format!("close -> error {}", error_class(&e))),
        }
        self.clients.iter_mut().for_each(|c| *c = None);
        if self.machine.disk.is_frozen() {
            return self.open_checked(Reopen::Crash);
        }
        self.open_checked(Reopen::Process)
    }

    /// The acknowledgement oracle: the engine just claimed `lsn` durable (`what`: an
    /// acknowledgement under `Sync::Always`, `lsn_durable`, a checkpoint, a clean close), so
    /// a crash now must keep it; the disk's durable image must prove it (see
    /// [`crate::oracle`]). Silent damage to a durable log segment or checkpoint (a bit flip,
    /// a misdirected or lying torn write) can take records away after they were synced,
    /// which the recovery check then judges: such a claim is excused here, and traced.
    fn check_claim(&mut self, what: &str, lsn: u64) -> Check {
        if lsn <= self.oracle_verified_lsn {
            return Ok(());
        }
        self.oracle_checks += 1;
        let image = DurableImage::read(&self.machine.disk, DB_PATH);
        let through = image.lsn_durable();
        if lsn <= through {
            self.oracle_verified_lsn = through;
            return Ok(());
        }
        let detail = format!(
            "{what}: lsn {lsn}, but the durable image proves only lsn {through} (checkpoint {}, segments {:?})",
            image.checkpoint_lsn, image.segments
        );
        if self.durable_image_damaged() {
            self.oracle_excused += 1;
            self.log(format!("ack oracle excused after silent damage: {detail}"));
            return Ok(());
        }
        fail("ack_oracle", detail)
    }

    /// Whether silent faults damaged a file of the durable image that recovery would read
    /// now: a log segment, or a checkpoint (damage to its temporary file follows the rename).
    fn durable_image_damaged(&self) -> bool {
        let damaged = damaged_paths(&self.machine.disk);
        let checkpoint_tmp = damaged.contains(&format!("{DB_PATH}/checkpoint.tmp"));
        self.machine.disk.durable_files().iter().any(|path| {
            let checkpoint = path.starts_with(&format!("{DB_PATH}/checkpoint-"));
            let segment = path.starts_with(&format!("{DB_PATH}/wal/"));
            (segment || checkpoint) && damaged.contains(path) || checkpoint && checkpoint_tmp
        })
    }

    fn check_engine_invariants(&mut self) -> Check {
        if let Err(e) = self.db()?.check_invariants() {
            return fail("engine_invariants", e);
        }
        if let Err(e) = self.machine.disk.check_invariants() {
            return fail("disk_invariants", e);
        }
        Ok(())
    }

    /// Reopens the database (after a crash, a poisoned log, or a clean close) and checks
    /// that what it recovered is a legal state.
    fn open_checked(&mut self, how: Reopen) -> Check {
        if let Some(db) = self.db.take() {
            drop(db); // no close: nothing more reaches the disk
        }
        self.clients.iter_mut().for_each(|c| *c = None);
        if let Reopen::Crash = how {
            self.crash_restart();
        }
        let mut attempts = 0u32;
        let db = loop {
            attempts += 1;
            self.engine_ops += 1;
            let options = Options {
                sync: self.workload.sync,
                background_worker: true,
                hot_rows_max: self.workload.hot_rows_max,
                // The simulator steps compaction itself (Action::Compact).
                compaction_worker: false,
                checkpoint_copy_bytes_max: self.workload.checkpoint_copy_bytes_max,
                compaction_base_rows: self.workload.compaction_base_rows,
            };
            match Database::open_with_env(self.machine.env(), Path::new(DB_PATH), options) {
                Ok(db) => break db,
                Err(e) if is_crash_error(&e) || self.machine.disk.is_frozen() => {
                    omendb::probe!(SimCrashDuringRecovery);
                    self.log(format!("open -> crashed during recovery: {e}"));
                    self.crash_restart();
                }
                Err(e) if e.is_corruption() => {
                    self.log(format!("open -> corruption: {e}"));
                    if self.corruption_explained(&e) {
                        self.detected_damage = Some(e.to_string());
                        return Ok(());
                    }
                    return fail(
                        "false_corruption",
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
                            return Ok(());
                        }
                        // Transient faults that keep striking: let the disk calm down.
                        let plan = FaultMask::NONE.apply(self.machine.disk.plan());
                        self.machine.disk.set_plan(plan);
                        self.log("disk calms down".into());
                    }
                    if attempts >= OPEN_ATTEMPTS_MAX * 2 {
                        return fail("open", format!("open keeps failing on a calm disk: {e}"));
                    }
                }
                Err(e) => return fail("open", format!("open failed: {e}")),
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
        self.check_recovered(recovered)?;
        if self.config.faults.crash && self.rng.random_bool(0.5) {
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

    fn check_recovered(&mut self, recovered: u64) -> Check {
        let durable = self.history.durable_lsn;
        let last = self.history.last_lsn();
        if recovered > last {
            return fail(
                "recovered_unwritten",
                format!("recovered to lsn {recovered}, but the last write that reached the log was {last}"),
            );
        }
        let previous = self.history.recovered_lsn;
        if recovered < previous && !self.log_damaged() {
            return fail(
                "lost_durable",
                format!("recovered to lsn {recovered}, before the previous recovery's {previous}"),
            );
        }
        let lost = recovered < durable.max(previous);
        let expected = self.history.state_at(recovered);
        // Verification reads must not be cut short by a planned crash; one is planned
        // again after the check.
        self.machine.disk.cancel_crash();
        let Some(actual) = self.read_engine_state()? else {
            self.detected_damage = Some("damage reported while reading the recovered state".into());
            self.log("recovered state unreadable: damage detected".into());
            return Ok(());
        };
        if actual != expected {
            return fail(
                "recovered_state",
                format!(
                    "recovered lsn {recovered}: engine state differs from the model at that lsn ({} vs {} rows){}",
                    actual.row_count(),
                    expected.row_count(),
                    first_difference(&actual, &expected)
                ),
            );
        }
        if lost {
            if self.log_damaged() {
                self.tolerated_losses += 1;
                self.log(format!("tolerated loss: recovered {recovered} < durable {durable} after silent corruption"));
            } else {
                return fail(
                    "lost_durable",
                    format!("recovered to lsn {recovered}, but lsn {durable} was acknowledged or claimed durable"),
                );
            }
        }
        self.model = expected.clone();
        self.history.recovered(recovered);
        self.check_engine_invariants()
    }

    /// The engine's whole state, or `None` when reading it met damage the engine rightly
    /// reported.
    fn read_engine_state(&self) -> Check<Option<ModelState>> {
        let db = self.db()?;
        let names = match db.table_names() {
            Ok(names) => names,
            Err(e) => return fail("read", format!("table_names: {e}")),
        };
        let mut state = ModelState::default();
        for name in names {
            let def = db
                .table_def(&name)
                .or_else(|e| fail("read", format!("table_def {name}: {e}")))?;
            // Cold rows come from disk: retry transient read errors; persistent ones
            // (latent sectors) and explained corruption are detected damage.
            let mut attempts = 0;
            let rows = loop {
                attempts += 1;
                match db.scan(&name, ..) {
                    Ok(rows) => break rows,
                    Err(e) if error_class(&e) == "io" && attempts < OPEN_ATTEMPTS_MAX => {}
                    Err(e)
                        if error_class(&e) == "io"
                            && attempts < 2 * OPEN_ATTEMPTS_MAX
                            && !has_latent_sectors(&self.machine.disk) =>
                    {
                        // A storm of transient read errors: let the disk calm down, as an
                        // operator would retry later.
                        let plan = FaultMask::NONE.apply(self.machine.disk.plan());
                        self.machine.disk.set_plan(plan);
                    }
                    Err(e)
                        if (error_class(&e) == "io" && has_latent_sectors(&self.machine.disk))
                            || (e.is_corruption() && self.corruption_explained(&e)) =>
                    {
                        return Ok(None);
                    }
                    Err(e) => return fail("read", format!("scan {name}: {e}")),
                }
            };
            let mut by_key = BTreeMap::new();
            for row in rows {
                let key = match row.get(def.primary_key_index()) {
                    Some(Value::Int64(k)) | Some(Value::Timestamp(k)) => *k,
                    other => {
                        return fail("read", format!("row of {name} without a key: {other:?}"))
                    }
                };
                if by_key.insert(key, row).is_some() {
                    return fail("read", format!("key {key} twice in a scan of {name}"));
                }
            }
            state
                .tables
                .insert(name, crate::model::ModelTable { def, rows: by_key });
        }
        Ok(Some(state))
    }
}

fn first_difference(actual: &ModelState, expected: &ModelState) -> String {
    for name in actual.tables.keys().chain(expected.tables.keys()) {
        match (actual.tables.get(name), expected.tables.get(name)) {
            (Some(_), None) => return format!("; table {name} should not exist"),
            (None, Some(_)) => return format!("; table {name} is missing"),
            (Some(a), Some(e)) => {
                if a.def != e.def {
                    return format!("; table {name} has another definition");
                }
                for key in a.rows.keys().chain(e.rows.keys()) {
                    if a.rows.get(key) != e.rows.get(key) {
                        return format!(
                            "; table {name} key {key}: engine {}, model {}",
                            if a.rows.contains_key(key) {
                                "has it"
                            } else {
                                "lacks it"
                            },
                            if e.rows.contains_key(key) {
                                "has it"
                            } else {
                                "lacks it"
                            },
                        );
                    }
                }
            }
            (None, None) => {}
        }
    }
    String::new()
}
