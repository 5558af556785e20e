//! A real-process crash loop (after RocksDB's `db_crashtest`): the real OS, real threads and
//! the real page cache, where the simulator has its own.
//!
//! The parent spawns a writer process (this binary, `child`) on a real directory, lets it
//! run for a random time (0 to `--max-ms`; short times kill it during recovery, at open),
//! kills it with SIGKILL, reopens the database itself and checks it against a model:
//!
//! - the writer logs `s i` before it submits operation `i`, `a i` once it is acknowledged,
//!   and `c i` once a checkpoint taken after it returned;
//! - operation `i` is a pure function of the seed, `i` and the table's state (insert a key
//!   that is absent, else update or delete it), so the parent replays the same history on
//!   its model;
//! - the recovered table must equal the model after some prefix of the history that ends
//!   between the last operation the mode promises (under `Durability::Always` every acknowledged
//!   one; under `Durability::Batch` every one before the last completed checkpoint) and the last
//!   submitted one. A lost acknowledged write, a hole, a wrong or phantom row fails the
//!   loop, with the iteration and the difference.
//!
//! Modes: `always` (`Durability::Always`), `batch` (`Durability::Batch` with a 10 ms delay), `cold`
//! (`Durability::Always`, a 64-row hot tier flushed by frequent checkpoints and by the flush
//! worker on its own thread while the writer goes on, and the compaction worker merging
//! segments, so kills land in flushes and compactions too). `unsafe` checks
//! the checker: `Durability::None` held to `Durability::Always`'s promise, which the loop must refuse.
//!
//! ```text
//! cargo run --release --bin omendb-crash-loop -- --mode always --iterations 1000
//! ```
//!
//! The database persists across iterations, so each run recovers what the last one left.
//! Exit code 0 when every iteration checked, 1 on the first failure.

use omendb::{Column, DataType, Database, Durability, Error, Options, Row, TableDef, Value};
use omendb_keygen::splitmix64;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const TABLE: &str = "t";
/// Keys drawn from 0..KEYS, so updates and deletes are frequent.
const KEYS: u64 = 4096;
/// The writer checkpoints every this many operations.
const CHECKPOINT_EVERY: u64 = 300;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name).map_or(default, |v| {
        v.parse().unwrap_or_else(|_| {
            eprintln!("{name} wants a number, got {v:?}");
            std::process::exit(2)
        })
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Always,
    Batch,
    Cold,
    /// The checker's own check: `Durability::None` (the log buffer lost with the process) checked
    /// as if it were `Durability::Always`. The loop must fail.
    Unsafe,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        match s {
            "always" => Some(Mode::Always),
            "batch" => Some(Mode::Batch),
            "cold" => Some(Mode::Cold),
            "unsafe" => Some(Mode::Unsafe),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Always => "always",
            Mode::Batch => "batch",
            Mode::Cold => "cold",
            Mode::Unsafe => "unsafe",
        }
    }

    fn options(self) -> Options {
        match self {
            Mode::Always => Options::with_sync(Durability::Always),
            Mode::Batch => Options::with_sync(Durability::Batch {
                max_delay: Duration::from_millis(10),
            }),
            Mode::Cold => Options {
                hot_rows_max: Some(64),
                flush_worker: true,
                compaction_worker: true,
                compaction_base_rows: 256,
                ..Options::with_sync(Durability::Always)
            },
            Mode::Unsafe => Options::with_sync(Durability::None),
        }
    }
}

fn table_def() -> omendb::Result<TableDef> {
    TableDef::new(
        TABLE,
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("op", DataType::Int64),
            Column::new("s", DataType::Utf8).nullable(),
        ],
    )
}

fn row_of(key: i64, op: u64) -> Row {
    let len = (splitmix64(op ^ 0xabcd) % 200) as usize;
    let s = if len.is_multiple_of(7) {
        Value::Null
    } else {
        Value::Utf8(
            std::iter::repeat_n(char::from(b'a' + (op % 26) as u8), len).collect::<String>(),
        )
    };
    vec![Value::Int64(key), Value::Int64(op as i64), s]
}

/// What operation `i` does to a table in state `exists(key)`.
enum Op {
    Insert(Row),
    Update(i64, Row),
    Delete(i64),
}

fn op(seed: u64, i: u64, exists: impl Fn(i64) -> bool) -> Op {
    let r = splitmix64(seed ^ i.wrapping_mul(0x9E37_79B9));
    let key = (r % KEYS) as i64;
    if !exists(key) {
        Op::Insert(row_of(key, i))
    } else if (r >> 32).is_multiple_of(4) {
        Op::Delete(key)
    } else {
        Op::Update(key, row_of(key, i))
    }
}

fn apply(model: &mut BTreeMap<i64, Row>, seed: u64, i: u64) {
    match op(seed, i, |k| model.contains_key(&k)) {
        Op::Insert(row) | Op::Update(_, row) => {
            if let Value::Int64(k) = row[0] {
                model.insert(k, row);
            }
        }
        Op::Delete(k) => {
            model.remove(&k);
        }
    }
}

/// The writer: runs operations from `start` until killed, logging each to `ack`.
fn child(args: &[String]) -> omendb::Result<()> {
    let dir = PathBuf::from(arg(args, "--dir").unwrap_or_default());
    let mode = arg(args, "--mode")
        .and_then(|m| Mode::parse(&m))
        .unwrap_or(Mode::Always);
    let seed = num(args, "--seed", 1);
    let start = num(args, "--start", 0);
    let ack_path = PathBuf::from(arg(args, "--ack").unwrap_or_default());
    let mut ack = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ack_path)
        .map_err(|source| Error::Io {
            op: "open ack log",
            path: ack_path.clone(),
            source,
        })?;
    let mut log = |line: String| {
        // One write per line: a kill cuts between lines or leaves a partial last line,
        // which the parent ignores.
        let _ = ack.write_all(line.as_bytes());
    };
    let db = Database::open(&dir, mode.options())?;
    if db.table_names()?.is_empty() {
        db.create_table(table_def()?)?;
    }
    let mut i = start;
    loop {
        let next = op(seed, i, |k| matches!(db.get(TABLE, k), Ok(Some(_))));
        log(format!("s {i}\n"));
        match next {
            Op::Insert(row) => db.insert(TABLE, row)?,
            Op::Update(k, row) => db.update(TABLE, k, row)?,
            Op::Delete(k) => {
                db.delete(TABLE, k)?;
            }
        }
        log(format!("a {i}\n"));
        if (i + 1).is_multiple_of(CHECKPOINT_EVERY) {
            db.checkpoint()?;
            log(format!("c {i}\n"));
        }
        i += 1;
    }
}

/// What the writer's log says: the last operation submitted, acknowledged, and covered by
/// a completed checkpoint (each as "operations 0..n", so 0 means none).
#[derive(Debug, Default)]
struct AckLog {
    submitted: u64,
    acknowledged: u64,
    checkpointed: u64,
}

fn read_ack(path: &Path, start: u64) -> AckLog {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut log = AckLog {
        submitted: start,
        acknowledged: start,
        checkpointed: start,
    };
    for line in text.lines() {
        let mut parts = line.split(' ');
        let (Some(kind), Some(Ok(i))) = (parts.next(), parts.next().map(str::parse::<u64>)) else {
            continue;
        };
        match kind {
            "s" => log.submitted = log.submitted.max(i + 1),
            "a" => log.acknowledged = log.acknowledged.max(i + 1),
            "c" => log.checkpointed = log.checkpointed.max(i + 1),
            _ => {}
        }
    }
    log
}

fn first_difference(actual: &BTreeMap<i64, Row>, expected: &BTreeMap<i64, Row>) -> String {
    for (k, row) in expected {
        match actual.get(k) {
            None => return format!("key {k} missing (model has op {:?})", row[1]),
            Some(a) if a != row => {
                return format!("key {k}: engine has op {:?}, model op {:?}", a[1], row[1])
            }
            _ => {}
        }
    }
    for (k, row) in actual {
        if !expected.contains_key(k) {
            return format!("key {k} is a phantom (engine has op {:?})", row[1]);
        }
    }
    "no difference".into()
}

fn parent(args: &[String]) -> std::result::Result<(), String> {
    let mode = arg(args, "--mode")
        .map(|m| Mode::parse(&m).ok_or(format!("--mode is always, batch or cold, not {m:?}")))
        .transpose()?
        .unwrap_or(Mode::Always);
    let iterations = num(args, "--iterations", 100);
    let seed = num(args, "--seed", 1);
    let max_ms = num(args, "--max-ms", 250).max(1);
    let dir = PathBuf::from(
        arg(args, "--dir")
            .unwrap_or_else(|| format!("/tmp/omendb-crash-loop-{}-{seed}", mode.name())),
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db_dir = dir.join("db");
    let ack_path = dir.join("ack.log");
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut model = BTreeMap::new();
    let mut next = 0u64;
    let (mut total_ops, mut killed_in_open, mut tail_lost) = (0u64, 0u64, 0u64);
    let started = std::time::Instant::now();
    for iteration in 0..iterations {
        let _ = std::fs::remove_file(&ack_path);
        let mut writer = Command::new(&exe)
            .arg("child")
            .args(["--dir", &db_dir.to_string_lossy()])
            .args(["--mode", mode.name()])
            .args(["--seed", &seed.to_string()])
            .args(["--start", &next.to_string()])
            .args(["--ack", &ack_path.to_string_lossy()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn the writer: {e}"))?;
        let delay = splitmix64(seed ^ iteration.wrapping_mul(31)) % max_ms;
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL on Unix: no destructor, no flush of the log buffer.
        let _ = writer.kill();
        let status = writer.wait().map_err(|e| e.to_string())?;
        if status.success() {
            return Err(format!(
                "iteration {iteration}: the writer exited on its own"
            ));
        }
        if !status.to_string().contains("signal") {
            let mut err = String::new();
            if let Some(mut e) = writer.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!(
                "iteration {iteration}: the writer failed: {status}: {err}"
            ));
        }
        let log = read_ack(&ack_path, next);
        if log.submitted == next {
            killed_in_open += 1;
        }
        let db = Database::open(&db_dir, mode.options())
            .map_err(|e| format!("iteration {iteration}: open after kill: {e}"))?;
        let mut actual = BTreeMap::new();
        if db
            .table_names()
            .map_err(|e| e.to_string())?
            .iter()
            .any(|n| n == TABLE)
        {
            for row in db.scan(TABLE, ..).map_err(|e| e.to_string())? {
                if let Value::Int64(k) = row[0] {
                    actual.insert(k, row);
                }
            }
        }
        db.check_invariants()
            .map_err(|e| format!("iteration {iteration}: invariants: {e}"))?;
        db.close().map_err(|e| e.to_string())?;
        // The prefix the mode promises, then every later one the writer may have reached.
        let floor = match mode {
            Mode::Always | Mode::Cold | Mode::Unsafe => log.acknowledged,
            Mode::Batch => log.checkpointed,
        };
        let mut candidate = model.clone();
        for i in next..floor {
            apply(&mut candidate, seed, i);
        }
        let mut found = None;
        let mut p = floor;
        loop {
            if candidate == actual {
                found = Some(p);
                break;
            }
            if p >= log.submitted {
                break;
            }
            apply(&mut candidate, seed, p);
            p += 1;
        }
        let Some(p) = found else {
            let mut at_floor = model.clone();
            for i in next..floor {
                apply(&mut at_floor, seed, i);
            }
            return Err(format!(
                "iteration {iteration} (mode {}, seed {seed}): the recovered table is no prefix of \
                 the history between operation {floor} (promised) and {} (submitted); against the \
                 promised prefix: {}",
                mode.name(),
                log.submitted,
                first_difference(&actual, &at_floor)
            ));
        };
        if p < log.acknowledged {
            tail_lost += 1;
        }
        total_ops += p - next;
        model = candidate;
        next = p;
    }
    println!(
        "{{\"mode\":\"{}\",\"seed\":{seed},\"iterations\":{iterations},\"operations_recovered\":{total_ops},\"killed_during_open\":{killed_in_open},\"acknowledged_tail_lost_allowed\":{tail_lost},\"lost_acknowledged\":0,\"wrong_or_phantom\":0,\"seconds\":{:.1}}}",
        mode.name(),
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("child") {
        if let Err(e) = child(&args) {
            eprintln!("writer: {e}");
            std::process::exit(3);
        }
        return;
    }
    if let Err(e) = parent(&args) {
        eprintln!("crash loop FAILED: {e}");
        std::process::exit(1);
    }
}
