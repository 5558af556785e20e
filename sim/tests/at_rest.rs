//! Damage at rest against the engine and the exact recovery oracle, one test per kind and
//! moment (`sim/src/at_rest.rs` injects the same damage at random in schedule generation 6).
//!
//! A database on the simulated disk under `Durability::Always` takes a table and 24 inserts, one
//! log record each, over several small log segments, and is then closed cleanly or crashes.
//! A file is damaged at rest. After a clean close the engine knows where its log ended, so
//! every damage that takes an acknowledged record must be `Error::Corruption` at open.
//! After a crash a lost tail of the last segment is indistinguishable from the crash's own
//! torn tail: the open must recover a prefix of the writes, and the oracle must excuse the
//! loss with the reason that names the damage. Damage the engine can prove (a gap, a bad
//! frame a later record vouches for, a damaged checkpoint) is corruption at either moment.

use omendb::{Column, DataType, Database, Durability, Error, Options, TableDef, Value};
use omendb_faults::SimFs;
use omendb_sim::env::SimMachine;
use omendb_sim::oracle::{at_rest_damage, scan_frames, LogImage};
use std::path::Path;

const ROOT: &str = "/db";
const INSERTS: u64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    AfterClose,
    AfterCrash,
}

fn options() -> Options {
    Options {
        sync: Durability::Always,
        background_worker: false,
        log_segment_bytes_target: 4096,
        ..Options::default()
    }
}

fn open(machine: &SimMachine) -> omendb::Result<Database> {
    Database::open_with_env(machine.env(), Path::new(ROOT), options())
}

/// A database whose log holds LSN 1 (the table) and 2..=25 (inserts of keys 0..24), left
/// at `moment`.
fn written(moment: Moment) -> SimMachine {
    let machine = SimMachine::new(SimFs::calm(7));
    let db = open(&machine).expect("open");
    let def = TableDef::new(
        "t",
        vec![
            Column::new("k", DataType::Int64).primary_key(),
            Column::new("v", DataType::Utf8),
        ],
    )
    .expect("schema");
    db.create_table(def).expect("create");
    for k in 0..INSERTS as i64 {
        db.insert("t", vec![Value::Int64(k), Value::Utf8("v".repeat(700))])
            .expect("insert");
    }
    assert_eq!(
        db.lsns(),
        omendb::Lsns {
            appended: INSERTS + 1,
            durable: INSERTS + 1
        }
    );
    match moment {
        Moment::AfterClose => db.close().expect("close"),
        Moment::AfterCrash => {
            drop(db);
            machine.disk.freeze();
            machine.disk.restart();
        }
    }
    machine
}

fn segments(disk: &SimFs) -> Vec<String> {
    disk.files()
        .into_iter()
        .filter(|p| p.starts_with("/db/wal/") && p.ends_with(".wal"))
        .collect()
}

fn seq_of(path: &str) -> u64 {
    path.trim_start_matches("/db/wal/")
        .trim_end_matches(".wal")
        .parse()
        .expect("segment name")
}

/// The last segment's path and the offset and size of its last frame.
fn last_frame(disk: &SimFs) -> (String, u64, u64) {
    let path = segments(disk).pop().expect("a segment");
    let bytes = disk.read_current(Path::new(&path)).expect("read");
    let frame = *scan_frames(seq_of(&path), &bytes)
        .frames
        .last()
        .expect("a frame in the last segment");
    (path, frame.offset_bytes, frame.size_bytes)
}

/// Opens after the damage and judges it: after a clean close (or for damage the engine can
/// prove) `Corruption` naming a file the damage explains; after a crash a prefix, with the
/// loss excused as `reason`.
fn judge(machine: &SimMachine, moment: Moment, reason: &str) {
    let image = LogImage::read(&machine.disk, ROOT);
    let result = open(machine);
    if moment == Moment::AfterClose || reason == "corruption" {
        match result {
            Err(Error::Corruption { path, .. }) => {
                let path = path.to_string_lossy().into_owned();
                assert!(
                    path.starts_with("/db/wal/") || path.starts_with("/db/checkpoint-"),
                    "corruption names {path}"
                );
            }
            Err(e) => panic!("{moment:?}: expected corruption, got {e}"),
            Ok(db) => panic!(
                "{moment:?}: opened at lsn {} without reporting the damage",
                db.open_stats().recovery.lsn_last
            ),
        }
        return;
    }
    let db = result.expect("open after a crash");
    let stats = db.open_stats();
    assert_eq!(stats.clean_close_lsn, None);
    let recovered = stats.recovery.lsn_last.max(stats.checkpoint_lsn);
    assert!(recovered <= INSERTS, "nothing lost: lsn {recovered}");
    // A prefix: the table (LSN 1) and the inserts up to the recovered LSN.
    let rows = if recovered == 0 {
        assert!(db.table_names().expect("names").is_empty());
        0
    } else {
        db.row_count("t").expect("row count")
    };
    assert_eq!(rows as u64, recovered.saturating_sub(1));
    let damage = at_rest_damage(&machine.disk, 0);
    let excuse = LogImage::explain_loss_in_any(&[image], recovered + 1, &damage, None)
        .unwrap_or_else(|why| panic!("loss after lsn {recovered} not excused: {why}"));
    assert_eq!(excuse.reason, reason, "{}", excuse.detail);
}

const MOMENTS: [Moment; 2] = [Moment::AfterClose, Moment::AfterCrash];

#[test]
fn the_last_segment_truncated_at_a_frame_boundary() {
    for moment in MOMENTS {
        let machine = written(moment);
        let (path, offset, _) = last_frame(&machine.disk);
        machine
            .disk
            .truncate_at_rest(Path::new(&path), offset)
            .expect("cut");
        judge(&machine, moment, "truncated_at_rest_at_a_frame_boundary");
    }
}

#[test]
fn the_last_segment_truncated_inside_its_last_frame() {
    for moment in MOMENTS {
        let machine = written(moment);
        let (path, offset, size) = last_frame(&machine.disk);
        machine
            .disk
            .truncate_at_rest(Path::new(&path), offset + size / 2)
            .expect("cut");
        judge(&machine, moment, "truncated_at_rest_in_unvouched_tail");
    }
}

#[test]
fn the_last_segment_truncated_inside_its_header() {
    for moment in MOMENTS {
        let machine = written(moment);
        let (path, _, _) = last_frame(&machine.disk);
        machine
            .disk
            .truncate_at_rest(Path::new(&path), 10)
            .expect("cut");
        judge(&machine, moment, "truncated_at_rest_into_a_torn_creation");
    }
}

#[test]
fn the_last_segment_removed() {
    for moment in MOMENTS {
        let machine = written(moment);
        assert!(segments(&machine.disk).len() >= 3, "small segments roll");
        let (path, _, _) = last_frame(&machine.disk);
        machine
            .disk
            .remove_at_rest(Path::new(&path))
            .expect("remove");
        judge(&machine, moment, "removed_at_rest_last_segment");
    }
}

#[test]
fn the_last_segment_zeroed_from_its_last_frame_to_the_end() {
    for moment in MOMENTS {
        let machine = written(moment);
        let (path, offset, size) = last_frame(&machine.disk);
        machine
            .disk
            .zero_at_rest(Path::new(&path), offset + 3, size)
            .expect("zero");
        judge(&machine, moment, "zeroed_at_rest_in_unvouched_tail");
    }
}

#[test]
fn damage_the_engine_can_prove_is_corruption_at_either_moment() {
    type Damage = fn(&SimFs);
    let cases: [(&str, Damage); 5] = [
        ("a middle segment removed", |disk| {
            let middle = segments(disk)[1].clone();
            disk.remove_at_rest(Path::new(&middle)).expect("remove");
        }),
        ("a middle segment cut", |disk| {
            let middle = segments(disk)[1].clone();
            disk.truncate_at_rest(Path::new(&middle), 100).expect("cut");
        }),
        (
            "a frame zeroed before intact frames that vouch for it",
            |disk| {
                let path = segments(disk).pop().expect("a segment");
                let bytes = disk.read_current(Path::new(&path)).expect("read");
                let frames = scan_frames(seq_of(&path), &bytes).frames;
                assert!(frames.len() >= 2, "two frames in the last segment");
                disk.zero_at_rest(Path::new(&path), frames[0].offset_bytes + 30, 8)
                    .expect("zero");
            },
        ),
        ("the first segment's header zeroed", |disk| {
            let first = segments(disk)[0].clone();
            disk.zero_at_rest(Path::new(&first), 0, 32).expect("zero");
        }),
        ("the first segment removed", |disk| {
            let first = segments(disk)[0].clone();
            disk.remove_at_rest(Path::new(&first)).expect("remove");
        }),
    ];
    for (what, damage) in cases {
        for moment in MOMENTS {
            let machine = written(moment);
            damage(&machine.disk);
            let image = LogImage::read(&machine.disk, ROOT);
            match open(&machine) {
                Err(Error::Corruption { .. }) => {}
                other => panic!(
                    "{what}, {moment:?}: expected corruption, got {:?}",
                    other.err()
                ),
            }
            // And the oracle never excuses a loss there.
            let damage = at_rest_damage(&machine.disk, 0);
            assert!(
                LogImage::explain_loss_in_any(&[image], 2, &damage, None).is_err(),
                "{what}: the oracle excused a loss the engine can prove"
            );
        }
    }
}

#[test]
fn a_damaged_or_removed_checkpoint_is_corruption() {
    for moment in MOMENTS {
        for kind in 0..3 {
            let machine = written(Moment::AfterClose);
            // Reopen once: the open checkpoints the state and starts a fresh log.
            let db = open(&machine).expect("reopen");
            match moment {
                Moment::AfterClose => db.close().expect("close"),
                Moment::AfterCrash => {
                    drop(db);
                    machine.disk.freeze();
                    machine.disk.restart();
                }
            }
            let checkpoint = machine
                .disk
                .files()
                .into_iter()
                .find(|p| p.starts_with("/db/checkpoint-"))
                .expect("a checkpoint");
            let path = Path::new(&checkpoint);
            match kind {
                0 => machine.disk.truncate_at_rest(path, 40).expect("cut"),
                1 => machine.disk.zero_at_rest(path, 20, 64).expect("zero"),
                _ => machine.disk.remove_at_rest(path).expect("remove"),
            }
            match open(&machine) {
                Err(Error::Corruption { .. }) => {}
                other => panic!(
                    "checkpoint damage {kind}, {moment:?}: expected corruption, got {:?}",
                    other.err()
                ),
            }
        }
    }
}
