//! The example: a key-value service on madsim that embeds OmenDB, its clients, the
//! supervisor that cuts the server's power, and the checker.
//!
//! - **Server** (node `server`, 10.0.0.1): at every boot opens OmenDB on the node's `SimFs`
//!   (`Durability::Always`, the commit worker on), and answers `Put { key, value }` over
//!   madsim's RPC (`Endpoint::add_rpc_handler`): it submits the upsert and, under
//!   [`Ack::Durable`], awaits the ticket (`MadsimEnv::wait_until` on
//!   `Database::is_acknowledged`, so concurrent puts share an fsync) before it answers `Ok`.
//!   [`Ack::Applied`] is the **planted bug**: it answers `Ok` as soon as the write is
//!   applied, before it is durable. A log poisoned by a failed fsync makes the server ask
//!   for a power cycle (reopening is the only way on; the supervisor does it).
//! - **Network**: madsim's, with its latency (1-10 ms) and 2% of messages lost.
//! - **Clients** (`client-N`, 10.0.1.N): each runs sessions (tasks) that put concurrently,
//!   each to keys of its own, one request at a time, with a timeout; a value is unique per
//!   session and put (`session << 32 | sequence`). Each put ends acknowledged, refused (an
//!   error reply) or unknown (timed out).
//! - **Supervisor** (the test's main task): cuts the server's power at seeded times and
//!   whenever its disk froze (a crash planned at a seeded I/O call) or it asked; keeps it
//!   down a seeded while; powers it on (`power_loss`, `power_on`). At the end it cuts the
//!   power once more, restarts the disk with its faults off and opens the database itself.
//! - **Checker**: for every key, the value found is one some session put (nothing phantom),
//!   and it is not older than the key's last acknowledged put (nothing acknowledged lost;
//!   a refused or unknown put may or may not be there). A key with an acknowledged put is
//!   present.
//!
//! The disk's fault plan is `FaultPlan::from_seed` (swarm: calm, light and stormy seeds;
//! read, write, torn-write, fsync and sync_dir errors; a planned crash; sometimes a space
//! limit) with the faults that corrupt acknowledged data silently switched off (torn writes
//! reported as written, misdirected writes, bit flips, latent sectors): under those the
//! engine's promise is to report corruption, not to return every acknowledged write, which
//! is not what this checker checks.

use madsim::net::rpc::{Deserialize, Request, Serialize};
use madsim::net::Endpoint;
use madsim::rand::{thread_rng, Rng};
use madsim::runtime::{Handle, Runtime};
use madsim::time::sleep;
use madsim::Config;
use omendb::{Column, DataType, Database, Durability, Options, TableDef, Value, Write};
use omendb_faults::FaultKind;
use omendb_madsim::{power_loss, power_on, FaultPlan, MadsimEnv, SimFs};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where the server listens.
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const SERVER_PORT: u16 = 7000;
/// The database directory on the server's disk.
const DB_DIR: &str = "/kv";
const TABLE: &str = "kv";

/// Client nodes, and sessions (tasks, one put at a time each) per client.
pub const CLIENTS: u32 = 3;
const SESSIONS_PER_CLIENT: u32 = 4;
/// Keys per session (session `s` owns keys `s * KEYS_PER_SESSION ..`).
const KEYS_PER_SESSION: i64 = 8;
/// Virtual time the clients run and the supervisor cuts power.
pub const RUN: Duration = Duration::from_secs(10);
/// A put unanswered this long is unknown.
const CALL_TIMEOUT: Duration = Duration::from_millis(500);
/// Longest pause of a client between two puts.
const THINK_MS_MAX: u64 = 20;
/// Seeded gap between two power cuts, and how long the server stays down.
const UP_MS: std::ops::Range<u64> = 300..3_000;
const DOWN_MS: std::ops::Range<u64> = 10..500;
/// The share of messages (requests and replies) madsim's network drops: a lost request
/// is a put never applied, a lost reply one applied and maybe durable; both time out.
const PACKET_LOSS_RATE: f64 = 0.02;
/// How often the supervisor looks at the server's disk and its request for a power cycle.
const SUPERVISOR_POLL: Duration = Duration::from_millis(5);
/// A boot retries its open this often (a read error, a full disk), this many times, then
/// asks for a power cycle.
const OPEN_RETRY: Duration = Duration::from_millis(50);
const OPEN_ATTEMPTS_MAX: u32 = 20;
/// After a power-on, the chance that a crash is planned within the next I/O calls, and how
/// far ahead.
const PLANNED_CRASH_CHANCE: f64 = 0.3;
const PLANNED_CRASH_OPS_MAX: u64 = 3_000;

/// When the server answers a put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// After the write is durable (the ticket is acknowledged under `Durability::Always`).
    Durable,
    /// The planted bug: as soon as the write is applied, before it is durable.
    Applied,
}

/// Put `value` at `key`; `Ok` once the server acknowledges it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Put {
    key: i64,
    value: i64,
}

impl Request for Put {
    type Response = Result<(), String>;
    const ID: u64 = 1;
}

fn server_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(SERVER_IP), SERVER_PORT)
}

fn options() -> Options {
    // Durability::Always and the commit worker (the defaults): a put is acknowledged once
    // fsynced, and the worker's task shares one fsync among concurrent puts.
    Options::with_sync(Durability::Always)
}

fn table_def() -> omendb::Result<TableDef> {
    TableDef::new(
        TABLE,
        vec![
            Column::new("key", DataType::Int64).primary_key(),
            Column::new("value", DataType::Int64),
        ],
    )
}

/// Opens the database on the node's disk and makes sure the table exists.
fn open_store(env: &MadsimEnv) -> omendb::Result<Database> {
    let db = Database::open_with_env(env.env(), DB_DIR, options())?;
    if !db.table_names()?.iter().any(|name| name == TABLE) {
        // A blocking write: on madsim's one thread it finds no log writer busy and fsyncs
        // inline (see the crate docs).
        db.create_table(table_def()?)?;
    }
    Ok(db)
}

/// The server's boot: open (retrying), then serve puts until the power goes. A boot that
/// cannot serve asks for a power cycle.
async fn serve(disk: SimFs, ack: Ack, wants_power_cycle: Arc<AtomicBool>) {
    if boot(disk, ack, wants_power_cycle.clone()).await.is_err() {
        wants_power_cycle.store(true, Ordering::Relaxed);
    }
}

async fn boot(disk: SimFs, ack: Ack, wants_power_cycle: Arc<AtomicBool>) -> Result<(), String> {
    let env = MadsimEnv::new(disk).map_err(|e| e.to_string())?;
    let mut attempts = 1;
    let db = loop {
        match open_store(&env) {
            Ok(db) => break Arc::new(db),
            // A read error or a full disk may pass; a frozen disk waits for the power cut.
            Err(_) if attempts < OPEN_ATTEMPTS_MAX => {
                attempts += 1;
                sleep(OPEN_RETRY).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    };
    let net = Endpoint::bind(server_addr())
        .await
        .map_err(|e| e.to_string())?;
    net.add_rpc_handler(move |put: Put| {
        let db = db.clone();
        let env = env.clone();
        let wants_power_cycle = wants_power_cycle.clone();
        async move {
            let answer = handle_put(&db, &env, ack, &put).await;
            if db.poisoned().is_some() {
                // Nothing is acknowledged until a reopen: ask for one.
                wants_power_cycle.store(true, Ordering::Relaxed);
            }
            answer.map_err(|e| e.to_string())
        }
    });
    std::future::pending::<()>().await;
    Ok(())
}

async fn handle_put(db: &Database, env: &MadsimEnv, ack: Ack, put: &Put) -> omendb::Result<()> {
    let row = vec![Value::Int64(put.key), Value::Int64(put.value)];
    let write = match db.get(TABLE, put.key)? {
        Some(_) => Write::Update {
            table: TABLE.to_owned(),
            key: put.key,
            row,
        },
        None => Write::Insert {
            table: TABLE.to_owned(),
            rows: vec![row],
        },
    };
    let ticket = db.submit(write)?;
    match ack {
        Ack::Durable => env.wait_until(|| db.is_acknowledged(ticket)).await,
        // THE PLANTED BUG: the write is applied and in the log buffer, not yet durable.
        Ack::Applied => Ok(()),
    }
}

/// How a put ended, as its client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Acked,
    Refused,
    Unknown,
}

/// One put of one client.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub key: i64,
    pub value: i64,
    pub answer: Answer,
    pub sent_at: Duration,
}

/// A client node: its sessions share one endpoint and put concurrently.
async fn client(id: u32) -> Vec<Attempt> {
    let Ok(net) = Endpoint::bind("0.0.0.0:0").await else {
        return Vec::new();
    };
    let sessions: Vec<_> = (0..SESSIONS_PER_CLIENT)
        .map(|s| madsim::task::spawn(session(net.clone(), id * SESSIONS_PER_CLIENT + s)))
        .collect();
    let mut attempts = Vec::new();
    for join in sessions {
        // A session that panicked leaves its puts out: any of them found is then phantom.
        if let Ok(mine) = join.await {
            attempts.extend(mine);
        }
    }
    attempts
}

/// One session: puts to its own keys, one at a time, until the run ends.
async fn session(net: Endpoint, id: u32) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    let mut rng = thread_rng();
    let time = madsim::time::TimeHandle::current();
    let mut sequence: i64 = 0;
    while time.elapsed() < RUN {
        sequence += 1;
        let key = i64::from(id) * KEYS_PER_SESSION + rng.gen_range(0..KEYS_PER_SESSION);
        let value = (i64::from(id) << 32) | sequence;
        let sent_at = time.elapsed();
        let answer = match net
            .call_timeout(server_addr(), Put { key, value }, CALL_TIMEOUT)
            .await
        {
            Ok(Ok(())) => Answer::Acked,
            Ok(Err(_)) => Answer::Refused,
            Err(_) => Answer::Unknown,
        };
        attempts.push(Attempt {
            key,
            value,
            answer,
            sent_at,
        });
        sleep(Duration::from_millis(rng.gen_range(0..=THINK_MS_MAX))).await;
    }
    attempts
}

/// What one seed did and what the checker found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub seed: u64,
    pub puts: usize,
    pub acked: usize,
    /// Puts that timed out (server down, a message lost): unknown.
    pub timed_out: usize,
    pub power_cuts: usize,
    /// When each power cut during the run came, and why (the last one, at the end, aside).
    pub cuts: Vec<String>,
    /// Power cuts because the server asked (a poisoned log, an open that kept failing).
    pub cuts_asked: usize,
    /// Power cuts because the disk froze at a planned I/O call.
    pub cuts_frozen: usize,
    /// Successful fsyncs of the server's disk.
    pub syncs: u64,
    /// Faults the disk injected, crashes aside.
    pub faults: u64,
    /// Keys whose last acknowledged put is missing (or overwritten by an older value).
    pub lost: Vec<String>,
    /// Values found that no client put, or keys no client wrote.
    pub phantom: Vec<String>,
    /// The final open failed (the acknowledged writes are out of reach).
    pub open_error: Option<String>,
    /// FNV-1a over everything observable: the plan, every power cut (time, disk call), every
    /// put and its answer, the final rows, the disk image and the fault log.
    pub trace_hash: u64,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.lost.is_empty() && self.phantom.is_empty() && self.open_error.is_none()
    }

    /// One line for the test log.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} puts, {} acked, {} timed out, {} fsyncs, {} faults, {} power cuts ({} asked, {} \
             at a planned I/O call), {} lost, {} phantom{} (trace {:016x})",
            self.seed,
            self.puts,
            self.acked,
            self.timed_out,
            self.syncs,
            self.faults,
            self.power_cuts,
            self.cuts_asked,
            self.cuts_frozen,
            self.lost.len(),
            self.phantom.len(),
            self.open_error
                .as_ref()
                .map(|e| format!(", final open failed: {e}"))
                .unwrap_or_default(),
            self.trace_hash
        )
    }
}

/// The fault plan of a seed: the swarm plan, without the faults that corrupt acknowledged
/// data silently (see the module docs).
pub fn plan_for(seed: u64) -> FaultPlan {
    FaultPlan {
        write_torn_acked: 0.0,
        write_misdirected: 0.0,
        bit_flip: 0.0,
        read_latent: 0.0,
        ..FaultPlan::from_seed(seed)
    }
}

/// The whole run of one seed: nodes, clients, power cuts, the final check. Runs inside a
/// madsim runtime; the seed is the runtime's.
pub async fn scenario(ack: Ack) -> Outcome {
    let handle = Handle::current();
    let seed = handle.seed();
    let time = madsim::time::TimeHandle::current();
    let mut rng = thread_rng();
    let plan = plan_for(seed);
    let mut trace = String::new();
    let _ = writeln!(trace, "plan {plan}");
    let disk = SimFs::new(plan.clone());
    madsim::net::NetSim::current().update_config(|net| net.packet_loss_rate = PACKET_LOSS_RATE);
    let wants_power_cycle = Arc::new(AtomicBool::new(false));

    let server = {
        let disk = disk.clone();
        let wants = wants_power_cycle.clone();
        handle
            .create_node()
            .name("server")
            .ip(IpAddr::V4(SERVER_IP))
            .init(move || serve(disk.clone(), ack, wants.clone()))
            .build()
    };
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let node = handle
                .create_node()
                .name(format!("client-{id}"))
                .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 1, id as u8 + 1)))
                .build();
            node.spawn(client(id))
        })
        .collect();

    let mut power_cuts = 0;
    let mut cuts = Vec::new();
    let mut cuts_asked = 0;
    let mut cuts_frozen = 0;
    let mut next_cut = time.elapsed() + Duration::from_millis(rng.gen_range(UP_MS));
    while time.elapsed() < RUN {
        sleep(SUPERVISOR_POLL).await;
        let asked = wants_power_cycle.load(Ordering::Relaxed);
        let frozen = disk.is_frozen();
        if !(asked || frozen || time.elapsed() >= next_cut) {
            continue;
        }
        let cut = format!(
            "power cut at {:?}, disk call {} (asked {asked}, frozen {frozen})",
            time.elapsed(),
            disk.op_count()
        );
        let _ = writeln!(trace, "{cut}");
        cuts.push(cut);
        power_loss(&handle, server.id(), &disk).await;
        power_cuts += 1;
        cuts_asked += usize::from(asked);
        cuts_frozen += usize::from(frozen);
        sleep(Duration::from_millis(rng.gen_range(DOWN_MS))).await;
        wants_power_cycle.store(false, Ordering::Relaxed);
        if rng.gen_bool(PLANNED_CRASH_CHANCE) {
            let op = disk.op_count() + rng.gen_range(1..=PLANNED_CRASH_OPS_MAX);
            disk.crash_at_op(op);
            let _ = writeln!(trace, "crash planned at op {op}");
        }
        power_on(&handle, server.id(), &disk);
        next_cut = time.elapsed() + Duration::from_millis(rng.gen_range(UP_MS));
    }

    let mut attempts = Vec::new();
    for (id, join) in clients.into_iter().enumerate() {
        match join.await {
            Ok(mine) => attempts.push(mine),
            Err(e) => {
                let _ = writeln!(trace, "client {id} failed: {e}");
                attempts.push(Vec::new());
            }
        }
    }

    // The last power cut, then the check on what the disk kept, its faults off.
    power_loss(&handle, server.id(), &disk).await;
    power_cuts += 1;
    disk.restart();
    disk.set_plan(FaultPlan::none().with_crash_model(plan.crash));
    let (found, open_error) = read_back(&disk);
    let (lost, phantom) = check(&attempts, &found);

    for (id, mine) in attempts.iter().enumerate() {
        for a in mine {
            let _ = writeln!(
                trace,
                "client {id} put {}={} at {:?}: {:?}",
                a.key, a.value, a.sent_at, a.answer
            );
        }
    }
    for (key, value) in &found {
        let _ = writeln!(trace, "found {key}={value}");
    }
    let _ = writeln!(trace, "open error {open_error:?}");
    let _ = writeln!(trace, "disk {:016x}", disk.disk_hash());
    trace.push_str(&disk.fault_log_text());
    let stats = disk.stats();
    Outcome {
        seed,
        puts: attempts.iter().map(Vec::len).sum(),
        acked: attempts
            .iter()
            .flatten()
            .filter(|a| a.answer == Answer::Acked)
            .count(),
        timed_out: attempts
            .iter()
            .flatten()
            .filter(|a| a.answer == Answer::Unknown)
            .count(),
        power_cuts,
        cuts,
        cuts_asked,
        cuts_frozen,
        syncs: stats.syncs,
        faults: stats
            .faults
            .iter()
            .filter(|(kind, _)| **kind != FaultKind::Crash)
            .map(|(_, n)| n)
            .sum(),
        lost,
        phantom,
        open_error,
        trace_hash: fnv1a(trace.as_bytes()),
    }
}

/// Opens the database on `disk` (in the supervisor's node) and reads every row.
fn read_back(disk: &SimFs) -> (BTreeMap<i64, i64>, Option<String>) {
    let mut found = BTreeMap::new();
    let result = MadsimEnv::new(disk.clone())
        .map_err(|e| e.to_string())
        .and_then(|env| {
            let db =
                Database::open_with_env(env.env(), DB_DIR, options()).map_err(|e| e.to_string())?;
            if !db
                .table_names()
                .map_err(|e| e.to_string())?
                .iter()
                .any(|name| name == TABLE)
            {
                return Ok(());
            }
            for row in db.scan(TABLE, ..).map_err(|e| e.to_string())? {
                match row.as_slice() {
                    [Value::Int64(key), Value::Int64(value)] => {
                        found.insert(*key, *value);
                    }
                    other => return Err(format!("unexpected row {other:?}")),
                }
            }
            db.close().map_err(|e| e.to_string())
        });
    (found, result.err())
}

/// The checker (see the module docs). Returns the lost and the phantom findings.
pub fn check(attempts: &[Vec<Attempt>], found: &BTreeMap<i64, i64>) -> (Vec<String>, Vec<String>) {
    let mut lost = Vec::new();
    let mut phantom = Vec::new();
    // Per key, its puts in order (one session per key, one put at a time).
    let mut by_key: BTreeMap<i64, Vec<&Attempt>> = BTreeMap::new();
    for a in attempts.iter().flatten() {
        by_key.entry(a.key).or_default().push(a);
    }
    for (key, puts) in &by_key {
        let last_acked = puts.iter().rposition(|a| a.answer == Answer::Acked);
        match (found.get(key), last_acked) {
            (None, None) => {}
            (None, Some(i)) => lost.push(format!(
                "key {key}: acknowledged put of {} (sent at {:?}) missing",
                puts[i].value, puts[i].sent_at
            )),
            (Some(value), _) => match puts.iter().position(|a| a.value == *value) {
                None => phantom.push(format!("key {key}: value {value} was never put")),
                Some(j) => {
                    if let Some(i) = last_acked.filter(|i| j < *i) {
                        lost.push(format!(
                            "key {key}: acknowledged put of {} (sent at {:?}) lost, found \
                             the older {value}",
                            puts[i].value, puts[i].sent_at
                        ));
                    }
                }
            },
        }
    }
    for (key, value) in found {
        if !by_key.contains_key(key) {
            phantom.push(format!("key {key}: found {value}, never written"));
        }
    }
    (lost, phantom)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Runs one seed in a fresh runtime.
pub fn run_seed(seed: u64, ack: Ack) -> Outcome {
    let mut runtime = Runtime::with_seed_and_config(seed, Config::default());
    // A hang (a task waiting for what never comes) fails the run instead of spinning.
    runtime.set_time_limit(RUN + Duration::from_secs(120));
    runtime.block_on(scenario(ack))
}

/// The correct service, as a `fn` for `Runtime::check_determinism`.
pub async fn scenario_durable() -> Outcome {
    scenario(Ack::Durable).await
}

/// The planted bug, as a `fn` for `Runtime::check_determinism`.
pub async fn scenario_applied() -> Outcome {
    scenario(Ack::Applied).await
}
