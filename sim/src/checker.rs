//! The checker: every judgement of a run, and the name of each ([`Check`]).
//!
//! After each operation the engine's answer is compared with the reference model
//! ([`crate::model`]); at each durability claim the acknowledgement oracle
//! ([`crate::oracle`]) checks the disk's durable image; after each recovery the recovered
//! state must be the model's state after a prefix of the logged writes that holds
//! everything the engine acknowledged or claimed durable. Errors are judged too: an I/O
//! error or a crash is a legal answer, a corruption error only when a silent fault damaged
//! the file it names. A failed judgement is a [`Check`] and a detail; the shrinker compares
//! checks, and seed files and reports print their stable names.

use crate::at_rest::Moment;
use crate::config::FaultMask;
use crate::model::{error_class, ModelState};
use crate::oracle::{at_rest_damage, silent_damage, DurableImage, LogImage};
use crate::runner::{Sim, DB_PATH, OPEN_ATTEMPTS_MAX};
use omendb::{Error, Row, Value};
use omendb_faults::{is_crash_error, FaultKind, SimFs};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A check a run can fail. Each has a stable snake_case name ([`Check::name`]) that
/// reports, seed files and the shrinker use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Check {
    /// The run panicked (the engine must never panic).
    Panic,
    /// The simulator itself lost track (no open database where one must be).
    Harness,
    /// An open failed for a reason other than a crash, an I/O error or explained damage.
    Open,
    /// A clean close failed for a reason other than a crash or an I/O error.
    Close,
    /// A write's outcome (accepted, no-op, which error) differs from the model's.
    WriteOutcome,
    /// The engine handed out an LSN not after the last one.
    LsnOrder,
    /// Waiting on a ticket failed with an error that is no legal answer.
    Wait,
    /// A read (get, scan, the recovered state) differs from the model.
    Read,
    /// A checkpoint failed with an error that is no legal answer.
    Checkpoint,
    /// A compaction step failed with an error that is no legal answer.
    Compact,
    /// The engine claimed an LSN durable that the disk's durable image does not prove.
    AckOracle,
    /// `Database::check_invariants` failed.
    EngineInvariants,
    /// `SimFs::check_invariants` failed.
    DiskInvariants,
    /// A corruption error named a file no silent fault damaged.
    FalseCorruption,
    /// Recovery reached an LSN no write ever reached the log with.
    RecoveredUnwritten,
    /// The recovered state is not the model's state at the recovered LSN.
    RecoveredState,
    /// Recovery lost a write the engine had acknowledged or claimed durable, and no silent
    /// fault touched the log.
    LostDurable,
    /// Recovery lost a write the engine had claimed durable after silent damage to the log,
    /// and the damage does not explain the loss (see [`crate::oracle::LogImage::explain_loss`]).
    UnexplainedLoss,
    /// After the fault phase, on a healed disk, the database did not make progress within
    /// the bound (see [`crate::liveness`]).
    Liveness,
    /// Two read paths of the engine disagree (see [`crate::metamorphic`]).
    Metamorphic,
}

impl Check {
    /// Every check, in declaration order.
    pub const ALL: [Check; 20] = [
        Check::Panic,
        Check::Harness,
        Check::Open,
        Check::Close,
        Check::WriteOutcome,
        Check::LsnOrder,
        Check::Wait,
        Check::Read,
        Check::Checkpoint,
        Check::Compact,
        Check::AckOracle,
        Check::EngineInvariants,
        Check::DiskInvariants,
        Check::FalseCorruption,
        Check::RecoveredUnwritten,
        Check::RecoveredState,
        Check::LostDurable,
        Check::UnexplainedLoss,
        Check::Liveness,
        Check::Metamorphic,
    ];

    /// The stable name, as printed and as written in seed files.
    pub fn name(self) -> &'static str {
        match self {
            Check::Panic => "panic",
            Check::Harness => "harness",
            Check::Open => "open",
            Check::Close => "close",
            Check::WriteOutcome => "write_outcome",
            Check::LsnOrder => "lsn_order",
            Check::Wait => "wait",
            Check::Read => "read",
            Check::Checkpoint => "checkpoint",
            Check::Compact => "compact",
            Check::AckOracle => "ack_oracle",
            Check::EngineInvariants => "engine_invariants",
            Check::DiskInvariants => "disk_invariants",
            Check::FalseCorruption => "false_corruption",
            Check::RecoveredUnwritten => "recovered_unwritten",
            Check::RecoveredState => "recovered_state",
            Check::LostDurable => "lost_durable",
            Check::UnexplainedLoss => "unexplained_loss",
            Check::Liveness => "liveness",
            Check::Metamorphic => "metamorphic",
        }
    }

    /// The check named `name`, if there is one.
    pub fn from_name(name: &str) -> Option<Check> {
        Check::ALL.into_iter().find(|c| c.name() == name)
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The result of a step of the run: `Err` is the failed check and what was wrong.
pub(crate) type Checked<T = ()> = Result<T, (Check, String)>;

/// A failed check.
pub(crate) fn fail<T>(check: Check, detail: impl Into<String>) -> Checked<T> {
    Err((check, detail.into()))
}

/// Files that silent faults have damaged at rest, at any time in the run: bit flips,
/// acknowledged torn writes, latent sectors, and both ends of misdirected writes.
pub(crate) fn damaged_paths(disk: &SimFs) -> BTreeSet<String> {
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
pub(crate) fn has_latent_sectors(disk: &SimFs) -> bool {
    disk.fault_log()
        .iter()
        .any(|r| matches!(r.kind, FaultKind::LatentSector | FaultKind::LatentRead))
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

impl Sim {
    pub(crate) fn check_get(&mut self) -> Checked {
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
                Check::Read,
                format!("get {table} {key}: engine {got:?}, model {expected:?}"),
            );
        }
        Ok(())
    }

    pub(crate) fn check_scan(&mut self) -> Checked {
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
                Check::Read,
                format!(
                    "scan {table} [{lo},{hi}]: engine {:?} rows, model {} rows",
                    got.map(|r| r.len()),
                    expected.len()
                ),
            );
        }
        if !self.config.metamorphic() {
            return Ok(());
        }
        self.check_metamorphic(&table, lo, hi, &expected)
    }

    /// Reads of cold rows touch the disk: an injected I/O error, a crash, or corruption in a
    /// damaged file are legal answers (wrong rows never are). Corruption stops the run.
    pub(crate) fn read_error_is_legal(&mut self, error: &Error) -> bool {
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
    pub(crate) fn corruption_explained(&self, error: &Error) -> bool {
        match error {
            Error::Corruption { path, .. } => {
                let damaged = damaged_paths(&self.machine.disk);
                let path = path.to_string_lossy();
                // Checkpoints and cold segments are written as temp files and renamed:
                // damage follows the rename.
                let renamed_checkpoint = path.starts_with(&format!("{DB_PATH}/checkpoint-"))
                    && damaged.contains(&format!("{DB_PATH}/checkpoint.tmp"));
                let renamed_segment = damaged.contains(&format!("{path}.tmp"));
                // A cold segment is a `.parquet` file and its `.idx` sidecar (key pages,
                // checksums): the engine names the segment when either disagrees.
                let sidecar = path.strip_suffix(".parquet").is_some_and(|stem| {
                    damaged.contains(&format!("{stem}.idx"))
                        || damaged.contains(&format!("{stem}.idx.tmp"))
                });
                damaged.contains(path.as_ref())
                    || renamed_checkpoint
                    || renamed_segment
                    || sidecar
                    || self.at_rest_explains(&path)
            }
            _ => false,
        }
    }

    /// Whether damage at rest (at any time in the run) explains corruption reported in
    /// `path`: the file itself was damaged, or its cold segment's other half; or the log,
    /// its end marker or a checkpoint was, and `path` is a file of the log or the marker
    /// (a cut or removed segment shows as a gap or a short log at the next one; a removed
    /// checkpoint as a gap at the first segment; LOG_END names the first segment it finds
    /// missing or short).
    fn at_rest_explains(&self, path: &str) -> bool {
        let damaged: BTreeSet<String> = at_rest_damage(&self.machine.disk, 0)
            .into_iter()
            .map(|d| d.path)
            .collect();
        if damaged.contains(path) {
            return true;
        }
        let pair = path
            .strip_suffix(".parquet")
            .map(|stem| format!("{stem}.idx"))
            .or_else(|| {
                path.strip_suffix(".idx")
                    .map(|stem| format!("{stem}.parquet"))
            });
        if pair.is_some_and(|other| damaged.contains(&other)) {
            return true;
        }
        let log_file = |p: &str| {
            p.starts_with(&format!("{DB_PATH}/wal/")) || p == format!("{DB_PATH}/LOG_END")
        };
        let log_or_checkpoint_damaged = damaged
            .iter()
            .any(|p| log_file(p) || p.starts_with(&format!("{DB_PATH}/checkpoint-")));
        log_or_checkpoint_damaged && (log_file(path) || path == format!("{DB_PATH}/wal"))
    }

    /// Whether silent faults ever damaged a log segment (the only place where damage can
    /// look like a torn tail and be truncated instead of reported).
    pub(crate) fn log_damaged(&self) -> bool {
        damaged_paths(&self.machine.disk)
            .iter()
            .any(|p| p.starts_with(&format!("{DB_PATH}/wal/")))
            || self.at_rest_pending.is_some_and(|injected| injected.log)
    }

    /// Damage at rest since the last open that may excuse a lost write: only after a
    /// crash, and only if the open found no clean close's record of the log end (with one,
    /// the engine knows where its log ends and must report a shorter one as corruption).
    fn at_rest_excusable(&self) -> bool {
        self.at_rest_pending
            .is_some_and(|injected| injected.log && injected.moment == Moment::AfterCrash)
            && self.open_clean_close_lsn.is_none()
    }

    /// The acknowledgement oracle: the engine just claimed `lsn` durable (`what`: an
    /// acknowledgement under `Durability::Always`, `lsn_durable`, a checkpoint, a clean close), so
    /// a crash now must keep it; the disk's durable image must prove it (see
    /// [`crate::oracle`]). Silent damage to a durable log segment or checkpoint (a bit flip,
    /// a misdirected or lying torn write) can take records away after they were synced,
    /// which the recovery check then judges: such a claim is excused here, and traced.
    pub(crate) fn check_claim(&mut self, what: &str, lsn: u64) -> Checked {
        if lsn <= self.oracle_verified_lsn {
            return Ok(());
        }
        self.oracle_checks += 1;
        let image = DurableImage::read(&self.machine.disk, DB_PATH);
        let through = image.lsn_durable();
        if lsn <= through {
            self.oracle_verified_lsn = through;
            // Where each frame was seen intact: the exact recovery oracle asks whether
            // damage touched exactly those bytes if recovery later loses the LSN.
            for frame in image.frames.iter().filter(|f| f.lsn <= through) {
                self.frames_located.insert(frame.lsn, *frame);
            }
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
        fail(Check::AckOracle, detail)
    }

    /// Whether silent faults damaged a file of the durable image that recovery would read
    /// now: a log segment, or a checkpoint (damage to its temporary file follows the rename).
    pub(crate) fn durable_image_damaged(&self) -> bool {
        let damaged = damaged_paths(&self.machine.disk);
        let checkpoint_tmp = damaged.contains(&format!("{DB_PATH}/checkpoint.tmp"));
        self.machine.disk.durable_files().iter().any(|path| {
            let checkpoint = path.starts_with(&format!("{DB_PATH}/checkpoint-"));
            let segment = path.starts_with(&format!("{DB_PATH}/wal/"));
            (segment || checkpoint) && damaged.contains(path) || checkpoint && checkpoint_tmp
        })
    }

    pub(crate) fn check_engine_invariants(&mut self) -> Checked {
        if let Err(e) = self.db()?.check_invariants() {
            return fail(Check::EngineInvariants, e);
        }
        if let Err(e) = self.machine.disk.check_invariants() {
            return fail(Check::DiskInvariants, e);
        }
        Ok(())
    }

    pub(crate) fn check_recovered(&mut self, recovered: u64) -> Checked {
        let durable = self.history.durable_lsn;
        let last = self.history.last_lsn();
        if recovered > last {
            return fail(
                Check::RecoveredUnwritten,
                format!("recovered to lsn {recovered}, but the last write that reached the log was {last}"),
            );
        }
        let previous = self.history.recovered_lsn;
        if recovered < previous && !self.log_damaged() {
            return fail(
                Check::LostDurable,
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
                Check::RecoveredState,
                format!(
                    "recovered lsn {recovered}: engine state differs from the model at that lsn ({} vs {} rows){}",
                    actual.row_count(),
                    expected.row_count(),
                    first_difference(&actual, &expected)
                ),
            );
        }
        if lost {
            if !self.log_damaged() {
                return fail(
                    Check::LostDurable,
                    format!("recovered to lsn {recovered}, but lsn {durable} was acknowledged or claimed durable"),
                );
            }
            // Silent damage touched the log: the exact recovery oracle decides whether it
            // explains this loss (sim/src/oracle.rs).
            let lost_lsn = recovered + 1;
            let mut damage = silent_damage(&self.machine.disk);
            if self.at_rest_excusable() {
                // After a crash a log cut at rest reads as the crash's torn tail: the
                // engine cannot know (docs/FORMAT.md), the oracle judges the damage.
                damage.extend(at_rest_damage(&self.machine.disk, self.op_at_open));
            } else if let Some(injected) = self.at_rest_pending.filter(|i| i.log) {
                if LogImage::explain_loss_in_any(
                    &self.log_images,
                    lost_lsn,
                    &damage,
                    self.frames_located.get(&lost_lsn),
                )
                .is_err()
                {
                    return fail(
                        Check::UnexplainedLoss,
                        format!(
                            "recovered to lsn {recovered}, but lsn {} was acknowledged or claimed durable: damage at rest to the log ({}) lost it silently where the engine can know: {}",
                            durable.max(previous),
                            injected.moment.name(),
                            match self.open_clean_close_lsn {
                                Some(lsn) => format!(
                                    "the open read LOG_END (lsn {lsn}) and must report a shorter log as corruption"
                                ),
                                None => "it struck after a clean close, whose log no crash cut".to_string(),
                            }
                        ),
                    );
                }
            }
            let located = self.frames_located.get(&lost_lsn).copied();
            match LogImage::explain_loss_in_any(
                &self.log_images,
                lost_lsn,
                &damage,
                located.as_ref(),
            ) {
                Ok(excuse) => {
                    *self
                        .excused_losses
                        .entry(excuse.reason.clone())
                        .or_default() += 1;
                    self.log(format!(
                        "excused loss ({}): recovered {recovered} < durable {} ; {}",
                        excuse.reason,
                        durable.max(previous),
                        excuse.detail
                    ));
                }
                Err(why) => {
                    return fail(
                        Check::UnexplainedLoss,
                        format!(
                            "recovered to lsn {recovered}, but lsn {} was acknowledged or claimed durable, and the damage does not explain it: {why}",
                            durable.max(previous)
                        ),
                    );
                }
            }
        }
        self.model = expected.clone();
        self.history.recovered(recovered);
        self.check_engine_invariants()
    }

    /// The engine's whole state, or `None` when reading it met damage the engine rightly
    /// reported.
    pub(crate) fn read_engine_state(&self) -> Checked<Option<ModelState>> {
        let db = self.db()?;
        let names = match db.table_names() {
            Ok(names) => names,
            Err(e) => return fail(Check::Read, format!("table_names: {e}")),
        };
        let mut state = ModelState::default();
        for name in names {
            let def = db
                .table_def(&name)
                .or_else(|e| fail(Check::Read, format!("table_def {name}: {e}")))?;
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
                    Err(e) => return fail(Check::Read, format!("scan {name}: {e}")),
                }
            };
            let mut by_key = BTreeMap::new();
            for row in rows {
                let key = match row.get(def.primary_key_index()) {
                    Some(Value::Int64(k)) | Some(Value::Timestamp(k)) => *k,
                    other => {
                        return fail(
                            Check::Read,
                            format!("row of {name} without a key: {other:?}"),
                        )
                    }
                };
                if by_key.insert(key, row).is_some() {
                    return fail(Check::Read, format!("key {key} twice in a scan of {name}"));
                }
            }
            state
                .tables
                .insert(name, crate::model::ModelTable { def, rows: by_key });
        }
        Ok(Some(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_check_has_a_unique_name_that_parses_back() {
        let names: BTreeSet<&str> = Check::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names.len(), Check::ALL.len(), "two checks share a name");
        for check in Check::ALL {
            assert_eq!(Check::from_name(check.name()), Some(check));
            assert_eq!(check.to_string(), check.name());
        }
        assert_eq!(Check::from_name("no_such_check"), None);
    }
}
