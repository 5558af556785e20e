//! SQLite as a second system under test of the simulated disk.
//!
//! Nobody here wrote SQLite, which makes it the check of the simulator's fault model and
//! checker: a failure is either a bug of ours (the disk's crash semantics, this VFS, the
//! checker) or a finding in SQLite. SQLite runs on [`vfs`], whose files live on
//! `omendb_faults::SimFs`, in WAL mode with one connection; a seeded workload of small
//! transactions runs while the disk is crashed at seeded I/O calls (power loss: unsynced
//! writes, sizes and directory entries kept, torn or lost as the disk's crash model draws);
//! after each crash SQLite reopens and the checker compares its rows with a model.
//!
//! The promises checked ([`Promise`]), from SQLite's documentation of `PRAGMA synchronous`
//! in WAL mode:
//! - **`FULL`**: a transaction whose `COMMIT` returned is durable: after a power loss the
//!   database holds exactly the last acknowledged state, or the state of a commit that was
//!   in flight when the power went;
//! - **`NORMAL`**: a committed transaction may roll back after a power loss, but the
//!   database stays consistent: it holds the state after some prefix of the acknowledged
//!   transactions (the in-flight one included), along the lineage the earlier recoveries
//!   left. A commit that one recovery found may be rolled back by a later power loss: in
//!   NORMAL mode nothing syncs it until a checkpoint, and the documentation promises no
//!   more (seed 690 shows it);
//! - both: `PRAGMA integrity_check` says `ok`, and opening never fails.
//!
//! `synchronous=OFF` promises neither; checked against `FULL` it must fail (the planted-bug
//! check of the checker: a checker that passes it cannot see a lost commit).
//!
//! Determinism: one run is a function of its seed. SQLite's PRNG (WAL salts, temporary
//! names) is process-global, so runs hold a global lock and reseed it
//! (`SQLITE_TESTCTRL_PRNG_SEED`) at the start; the VFS's time is a virtual clock per run
//! (the generic core's `SimClock`), which only SQLite's own sleeps advance.

pub mod vfs;

use omendb_env::Fs;
use omendb_faults::{CrashModel, FaultPlan, SimFs};
use omendb_simcore::env::SimClock;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rusqlite::{ffi, Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// SQLite's `PRAGMA synchronous` in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Sync the WAL at every commit.
    Full,
    /// Sync the WAL only at checkpoints.
    Normal,
    /// Never sync.
    Off,
}

impl Synchronous {
    /// Parses `full`, `normal` or `off`.
    pub fn parse(text: &str) -> Result<Synchronous, String> {
        match text {
            "full" => Ok(Synchronous::Full),
            "normal" => Ok(Synchronous::Normal),
            "off" => Ok(Synchronous::Off),
            other => Err(format!(
                "synchronous must be full, normal or off, not {other:?}"
            )),
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
            Synchronous::Off => "OFF",
        }
    }
}

/// The durability promise a run is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Promise {
    /// Every acknowledged commit survives (synchronous=FULL's).
    Durable,
    /// A prefix of the commits survives, consistently (synchronous=NORMAL's).
    Prefix,
}

/// What one run does.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// SQLite's setting.
    pub synchronous: Synchronous,
    /// What the checker requires.
    pub promise: Promise,
    /// Transactions per run.
    pub transactions: u32,
}

impl RunConfig {
    /// `synchronous` checked against its own promise (`OFF` against `Prefix`, which it may
    /// still break: it promises nothing).
    pub fn new(synchronous: Synchronous) -> RunConfig {
        RunConfig {
            synchronous,
            promise: match synchronous {
                Synchronous::Full => Promise::Durable,
                _ => Promise::Prefix,
            },
            transactions: 150,
        }
    }
}

/// How one run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    /// The broken promise, if any.
    pub failure: Option<String>,
    pub commits: u64,
    pub crashes: u64,
    /// Transactions started (the failing one included): the step count the shrinker
    /// bisects.
    pub transactions_run: u64,
    /// Crashes after which a commit in flight was found applied.
    pub in_flight_applied: u64,
    /// Crashes after which acknowledged commits were found rolled back (allowed by
    /// `Prefix`).
    pub rolled_back: u64,
    /// A hash of the whole trace: equal for two runs of one seed.
    pub trace_hash: u64,
    /// The trace's last lines.
    pub trace_tail: Vec<String>,
}

type Rows = BTreeMap<i64, i64>;

const DB_PATH: &str = "/db/test.db";
const KEYS: i64 = 200;
const TRACE_TAIL: usize = 40;

/// Runs `seed`.
pub fn run(seed: u64, config: &RunConfig) -> Outcome {
    // SQLite's PRNG is process-global: one run at a time, each from its own seed.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    // A PRNG seed of 0 would make SQLite seed itself from the default VFS (the OS's
    // randomness), so every seed maps to a nonzero one.
    let prng_seed = match (seed ^ (seed >> 32)) as u32 {
        0 => 0x5eed,
        x => x,
    };
    // SAFETY: a documented test-control call with its documented arguments.
    unsafe {
        ffi::sqlite3_test_control(
            ffi::SQLITE_TESTCTRL_PRNG_SEED,
            prng_seed as std::ffi::c_int,
            std::ptr::null_mut::<ffi::sqlite3>(),
        );
    }
    let mut run = Run::new(seed, *config);
    // Time runs on across power losses: one clock for the whole run.
    vfs::set_clock(Some(Arc::new(SimClock::default())));
    let result = run.go();
    vfs::set_disk(None);
    vfs::set_clock(None);
    let tail_from = run.trace.len().saturating_sub(TRACE_TAIL);
    Outcome {
        seed,
        failure: result.err(),
        commits: run.commits,
        crashes: run.crashes,
        transactions_run: run.transactions_run,
        in_flight_applied: run.in_flight_applied,
        rolled_back: run.rolled_back,
        trace_hash: run.trace_hash,
        trace_tail: run.trace[tail_from..].to_vec(),
    }
}

struct Run {
    config: RunConfig,
    rng: ChaCha8Rng,
    disk: Arc<SimFs>,
    /// The acknowledged state.
    model: Rows,
    /// The lineage: the state after each acknowledged commit, in order, from the empty
    /// table (under `Durable`, from the last recovery). A recovery to one of them rolls back
    /// the ones after it for good.
    history: Vec<Rows>,
    /// Every state the database was ever acknowledged or recovered in, with what made it,
    /// to name a broken promise's state.
    all_states: Vec<(String, Rows)>,
    commits: u64,
    crashes: u64,
    transactions_run: u64,
    in_flight_applied: u64,
    rolled_back: u64,
    trace: Vec<String>,
    trace_hash: u64,
}

/// One statement of a transaction.
#[derive(Debug, Clone, Copy)]
enum Op {
    Upsert(i64, i64),
    Delete(i64),
    Bump(i64),
}

impl Run {
    fn new(seed: u64, config: RunConfig) -> Run {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let crash = match rng.random_range(0..4) {
            0 => CrashModel::lose_all(),
            1 => CrashModel::keep_all(),
            _ => CrashModel::coin_flip(),
        };
        let mut plan = FaultPlan::none().with_seed(seed).with_crash_model(crash);
        plan.sector_bytes = if rng.random_bool(0.5) { 512 } else { 4096 };
        Run {
            config,
            rng,
            disk: Arc::new(SimFs::new(plan)),
            model: Rows::new(),
            history: vec![Rows::new()],
            all_states: vec![("the empty table".to_string(), Rows::new())],
            commits: 0,
            crashes: 0,
            transactions_run: 0,
            in_flight_applied: 0,
            rolled_back: 0,
            trace: Vec::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
        }
    }

    fn log(&mut self, line: String) {
        for byte in line.bytes().chain([b'\n']) {
            self.trace_hash = (self.trace_hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
        self.trace.push(line);
    }

    fn open(&mut self) -> Result<Connection, String> {
        vfs::set_disk(Some(self.disk.clone()));
        let vfs_name = vfs::VFS_NAME.to_str().map_err(|e| e.to_string())?;
        let conn = Connection::open_with_flags_and_vfs(
            DB_PATH,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
            vfs_name,
        )
        .map_err(|e| format!("open: {e}"))?;
        let setup = format!(
            "PRAGMA page_size=1024; PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; \
             PRAGMA synchronous={}; PRAGMA temp_store=MEMORY; PRAGMA wal_autocheckpoint=16; \
             CREATE TABLE IF NOT EXISTS kv(k INTEGER PRIMARY KEY, v INTEGER NOT NULL);",
            self.config.synchronous.pragma()
        );
        conn.execute_batch(&setup)
            .map_err(|e| format!("setup: {e}"))?;
        Ok(conn)
    }

    fn go(&mut self) -> Result<(), String> {
        // The database's directory, made durable before anything is put in it.
        self.disk
            .create_dir(Path::new("/db"))
            .and_then(|()| self.disk.sync_dir(Path::new("/")))
            .map_err(|e| format!("create /db: {e}"))?;
        let mut conn = self.open_fresh()?;
        for step in 0..self.config.transactions {
            self.transactions_run += 1;
            // A crash at one of the next I/O calls (in this commit, a checkpoint, or later).
            if self.rng.random_bool(0.08) {
                let at = self.disk.op_count() + self.rng.random_range(1..=80);
                self.disk.crash_at_op(at);
            }
            let ops = self.transaction();
            let mut pending = self.model.clone();
            for &op in &ops {
                apply(&mut pending, op);
            }
            let checkpoint = self.rng.random_bool(0.05);
            let result = execute(&conn, &ops, checkpoint);
            match result {
                Ok(()) if !self.disk.is_frozen() => {
                    self.acknowledge(step, pending);
                    self.log(format!(
                        "{step} commit {} ops -> {} rows",
                        ops.len(),
                        self.model.len()
                    ));
                }
                Ok(()) => {
                    // Acknowledged, then the disk froze (in the checkpoint after it).
                    self.acknowledge(step, pending);
                    self.log(format!("{step} commit {} ops, then crash", ops.len()));
                    conn = self.recover(conn, None)?;
                }
                Err((Stage::After, e)) if self.disk.is_frozen() => {
                    self.acknowledge(step, pending);
                    self.log(format!("{step} commit {} ops, then crash ({e})", ops.len()));
                    conn = self.recover(conn, None)?;
                }
                Err((stage, e)) if self.disk.is_frozen() => {
                    self.log(format!("{step} crash ({e}), stage {stage:?}"));
                    let in_flight = (stage == Stage::Commit).then_some(pending);
                    conn = self.recover(conn, in_flight)?;
                }
                Err((_, e)) => return Err(format!("step {step}: error without a fault: {e}")),
            }
            if !self.disk.is_frozen() && self.rng.random_bool(0.03) {
                self.disk.cancel_crash();
                self.disk.freeze();
                self.log(format!("{step} power lost between transactions"));
                conn = self.recover(conn, None)?;
            }
        }
        self.disk.cancel_crash();
        drop(conn);
        Ok(())
    }

    /// The transaction of `step`, leaving the database in `state`, was acknowledged.
    fn acknowledge(&mut self, step: u32, state: Rows) {
        self.commits += 1;
        self.all_states
            .push((format!("commit of step {step}"), state.clone()));
        self.history.push(state.clone());
        self.model = state;
    }

    fn open_fresh(&mut self) -> Result<Connection, String> {
        let conn = self.open()?;
        self.log("open".to_string());
        Ok(conn)
    }

    fn transaction(&mut self) -> Vec<Op> {
        let big = self.rng.random_bool(0.05);
        let n = if big {
            self.rng.random_range(30..=120)
        } else {
            self.rng.random_range(1..=6)
        };
        (0..n)
            .map(|_| {
                let k = self.rng.random_range(0..KEYS);
                match self.rng.random_range(0..20) {
                    0..=11 => Op::Upsert(k, self.rng.random_range(0..1_000_000)),
                    12..=16 => Op::Delete(k),
                    _ => Op::Bump(k),
                }
            })
            .collect()
    }

    /// Power comes back: SQLite reopens, and its rows must keep the promise.
    fn recover(&mut self, conn: Connection, in_flight: Option<Rows>) -> Result<Connection, String> {
        // The process died: its connection goes without a word to the (frozen) disk.
        drop(conn);
        self.disk.cancel_crash();
        self.disk.restart();
        self.crashes += 1;
        if std::env::var_os("SQLITE_SIM_WAL_DUMP").is_some() {
            eprintln!("crash {}: {}", self.crashes, wal_summary(&self.disk));
        }
        let conn = self
            .open()
            .map_err(|e| format!("crash {}: reopen failed: {e}", self.crashes))?;
        let integrity: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| format!("crash {}: integrity_check: {e}", self.crashes))?;
        let recovered =
            read_rows(&conn).map_err(|e| format!("crash {}: read: {e}", self.crashes))?;
        self.log(format!(
            "recovered {} rows (acknowledged {}, in flight {:?}), integrity {integrity}",
            recovered.len(),
            self.model.len(),
            in_flight.as_ref().map(|r| r.len())
        ));
        if integrity != "ok" {
            return Err(format!(
                "crash {}: integrity_check says {integrity}",
                self.crashes
            ));
        }
        let is_in_flight = in_flight.as_ref() == Some(&recovered);
        let is_acknowledged = recovered == self.model;
        match self.config.promise {
            Promise::Durable => {
                if !is_acknowledged && !is_in_flight {
                    let lost = self.history.iter().rposition(|h| *h == recovered);
                    return Err(format!(
                        "crash {}: an acknowledged commit was lost: recovered {} rows, the last acknowledged state has {} ({})",
                        self.crashes,
                        recovered.len(),
                        self.model.len(),
                        match lost {
                            Some(i) => format!("the state of {} commits earlier", self.history.len() - 1 - i),
                            None => "no committed state matches".to_string(),
                        }
                    ));
                }
            }
            Promise::Prefix => {
                let prefix = self.history.iter().rposition(|h| *h == recovered);
                match prefix {
                    Some(i) => {
                        if i + 1 < self.history.len() {
                            self.rolled_back += 1;
                        }
                        // The commits after it are rolled back for good.
                        self.history.truncate(i + 1);
                    }
                    None if is_in_flight => self.history.push(recovered.clone()),
                    None => {
                        let known = self
                            .all_states
                            .iter()
                            .rev()
                            .find(|(_, state)| *state == recovered)
                            .map_or("no state the run ever had".to_string(), |(what, _)| {
                                format!("the state after the {what}")
                            });
                        return Err(format!(
                            "crash {}: recovered {} rows, which is the state of no prefix of the acknowledged commits: it is {known}",
                            self.crashes,
                            recovered.len()
                        ));
                    }
                }
            }
        }
        if is_in_flight && !is_acknowledged {
            self.in_flight_applied += 1;
        }
        self.all_states.push((
            format!("recovery from crash {}", self.crashes),
            recovered.clone(),
        ));
        self.model = recovered.clone();
        if self.config.promise == Promise::Durable {
            self.history = vec![recovered];
        }
        Ok(conn)
    }
}

/// The WAL as recovery will read it: its header's salts and checkpoint sequence, and per
/// frame its page, commit marker and salts (a debugging aid, `SQLITE_SIM_WAL_DUMP=1`).
fn wal_summary(disk: &SimFs) -> String {
    let Ok(wal) = disk.read_current(Path::new("/db/test.db-wal")) else {
        return "no WAL".to_string();
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if wal.len() < 32 {
        return format!("WAL of {} bytes", wal.len());
    }
    let page = be(&wal[8..12]) as usize;
    let mut out = format!(
        "WAL {} bytes, ckpt seq {}, salts {:08x} {:08x}; frames:",
        wal.len(),
        be(&wal[12..16]),
        be(&wal[16..20]),
        be(&wal[20..24])
    );
    let mut at = 32;
    while at + 24 + page <= wal.len() {
        let h = &wal[at..at + 24];
        out.push_str(&format!(
            " [{} pg{}{} {:08x}]",
            (at - 32) / (24 + page) + 1,
            be(&h[0..4]),
            if be(&h[4..8]) > 0 { " C" } else { "" },
            be(&h[8..12])
        ));
        at += 24 + page;
    }
    out
}

fn apply(rows: &mut Rows, op: Op) {
    match op {
        Op::Upsert(k, v) => {
            rows.insert(k, v);
        }
        Op::Delete(k) => {
            rows.remove(&k);
        }
        Op::Bump(k) => {
            if let Some(v) = rows.get_mut(&k) {
                *v += 1;
            }
        }
    }
}

/// Where a transaction failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before its `COMMIT`: it did not commit.
    Before,
    /// In its `COMMIT`: it may or may not have committed.
    Commit,
    /// After its `COMMIT` returned (in the explicit checkpoint): it is acknowledged.
    After,
}

/// Runs one transaction, then a checkpoint if `checkpoint`.
fn execute(conn: &Connection, ops: &[Op], checkpoint: bool) -> Result<(), (Stage, String)> {
    let err = |stage: Stage| move |e: rusqlite::Error| (stage, e.to_string());
    conn.execute_batch("BEGIN").map_err(err(Stage::Before))?;
    for &op in ops {
        let result = match op {
            Op::Upsert(k, v) => {
                conn.execute("INSERT OR REPLACE INTO kv(k, v) VALUES (?1, ?2)", [k, v])
            }
            Op::Delete(k) => conn.execute("DELETE FROM kv WHERE k = ?1", [k]),
            Op::Bump(k) => conn.execute("UPDATE kv SET v = v + 1 WHERE k = ?1", [k]),
        };
        if let Err(e) = result {
            let _ = conn.execute_batch("ROLLBACK");
            return Err((Stage::Before, e.to_string()));
        }
    }
    conn.execute_batch("COMMIT").map_err(err(Stage::Commit))?;
    if checkpoint {
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| (Stage::After, format!("checkpoint: {e}")))?;
    }
    Ok(())
}

fn read_rows(conn: &Connection) -> rusqlite::Result<Rows> {
    let mut stmt = conn.prepare("SELECT k, v FROM kv ORDER BY k")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?;
    rows.collect()
}

/// SQLite as a system under test of the generic core (`omendb-simcore`).
pub struct Sqlite {
    pub config: RunConfig,
}

impl omendb_simcore::Target for Sqlite {
    type Outcome = Outcome;

    fn run(&self, seed: u64) -> Outcome {
        run(seed, &self.config)
    }

    fn panicked(&self, seed: u64, message: String) -> Outcome {
        Outcome {
            seed,
            failure: Some(format!("panicked: {message}")),
            commits: 0,
            crashes: 0,
            transactions_run: 0,
            in_flight_applied: 0,
            rolled_back: 0,
            trace_hash: 0,
            trace_tail: Vec::new(),
        }
    }

    fn replay_command(&self, seed: u64) -> String {
        format!(
            "cargo run --release -p omendb-sqlite-sim -- run --seed {seed} --synchronous {} --promise {}",
            format!("{:?}", self.config.synchronous).to_lowercase(),
            if self.config.promise == Promise::Durable {
                "durable"
            } else {
                "prefix"
            }
        )
    }
}

impl omendb_simcore::Outcome for Outcome {
    fn seed(&self) -> u64 {
        self.seed
    }

    fn passed(&self) -> bool {
        self.failure.is_none()
    }

    fn trace_hash(&self) -> u64 {
        self.trace_hash
    }
}

/// The promise a failure broke, as a short name: two runs fail the same way when their
/// kinds are equal (what the shrinker keeps).
pub fn failure_kind(failure: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("an acknowledged commit was lost", "lost_commit"),
        ("state of no prefix", "not_a_prefix"),
        ("integrity_check", "integrity"),
        ("reopen failed", "reopen"),
        ("error without a fault", "error_without_fault"),
        ("panicked", "panic"),
    ];
    KINDS
        .iter()
        .find(|(text, _)| failure.contains(text))
        .map_or("other", |(_, kind)| kind)
}

/// The shrinker's view of SQLite: the same seed with fewer transactions (the workload and
/// the crash points are drawn transaction by transaction, so a shorter run is a prefix of
/// the longer one), failing the same way ([`failure_kind`]).
impl omendb_simcore::shrink::Shrink for Sqlite {
    type Knobs = RunConfig;
    type Check = &'static str;

    fn knobs(&self) -> RunConfig {
        self.config
    }

    fn run_with(&self, seed: u64, knobs: &RunConfig) -> Outcome {
        run(seed, knobs)
    }

    fn failed_check(&self, outcome: &Outcome) -> Option<&'static str> {
        outcome.failure.as_deref().map(failure_kind)
    }

    fn steps_run(&self, outcome: &Outcome) -> u64 {
        outcome.transactions_run
    }

    fn steps(&self, knobs: &RunConfig) -> u64 {
        u64::from(knobs.transactions)
    }

    fn with_steps(&self, knobs: &RunConfig, steps: u64) -> RunConfig {
        RunConfig {
            transactions: u32::try_from(steps).unwrap_or(u32::MAX),
            ..*knobs
        }
    }
}

/// A sweep's totals.
#[derive(Debug, Default)]
pub struct Summary {
    pub seeds: u64,
    pub failed: Vec<Outcome>,
    pub commits: u64,
    pub crashes: u64,
    pub in_flight_applied: u64,
    pub rolled_back: u64,
}

impl Summary {
    /// Adds one run.
    pub fn add(&mut self, outcome: Outcome) {
        self.seeds += 1;
        self.commits += outcome.commits;
        self.crashes += outcome.crashes;
        self.in_flight_applied += outcome.in_flight_applied;
        self.rolled_back += outcome.rolled_back;
        if outcome.failure.is_some() {
            self.failed.push(outcome);
        }
    }

    /// Adds another summary (a chaos run's next batch).
    pub fn merge(&mut self, other: Summary) {
        self.seeds += other.seeds;
        self.commits += other.commits;
        self.crashes += other.crashes;
        self.in_flight_applied += other.in_flight_applied;
        self.rolled_back += other.rolled_back;
        self.failed.extend(other.failed);
    }

    /// One JSON line.
    pub fn to_json(&self, config: &RunConfig) -> String {
        let failed: Vec<String> = self.failed.iter().map(|o| o.seed.to_string()).collect();
        format!(
            "{{\"seeds\":{},\"synchronous\":\"{:?}\",\"promise\":\"{:?}\",\"failed\":[{}],\"commits\":{},\"crashes\":{},\"in_flight_applied\":{},\"rolled_back\":{}}}",
            self.seeds,
            config.synchronous,
            config.promise,
            failed.join(","),
            self.commits,
            self.crashes,
            self.in_flight_applied,
            self.rolled_back
        )
    }
}

/// The generic command line's view of a summary.
impl omendb_simcore::cli::Tally<Outcome> for Summary {
    fn add_run(&mut self, ran: omendb_simcore::Ran<Outcome>) {
        self.add(ran.outcome);
    }

    fn merge(&mut self, other: Summary) {
        Summary::merge(self, other);
    }

    fn seeds(&self) -> u64 {
        self.seeds
    }

    fn failed(&self) -> Vec<&Outcome> {
        self.failed.iter().collect()
    }
}
