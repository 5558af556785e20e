//! One test per semantic of the simulated disk: crash, directory durability, failed sync,
//! disk full, corruption at rest, latent errors, misdirected and torn writes, dead
//! handles, exact crash points, determinism, and std-like error kinds.

use omendb_env::{File, Fs, OpenMode};
use omendb_faults::{
    is_crash, is_crash_error, is_injected, CrashModel, FaultKind, FaultPlan, SimFs,
};
use std::collections::BTreeSet;
use std::io;
use std::path::Path;

fn p(path: &str) -> &Path {
    Path::new(path)
}

fn plan(seed: u64, crash: CrashModel) -> FaultPlan {
    FaultPlan::none().with_seed(seed).with_crash_model(crash)
}

/// Creates `path` (parent dirs included) with `bytes`, synced, with durable entries.
fn durable_file(fs: &SimFs, path: &str, bytes: &[u8]) {
    let parent = Path::new(path).parent().unwrap();
    fs.create_dir(parent).unwrap();
    let file = fs.open(p(path), OpenMode::Create).unwrap();
    file.write_at(bytes, 0).unwrap();
    file.sync().unwrap();
    let mut dir = parent.to_path_buf();
    loop {
        fs.sync_dir(&dir).unwrap();
        if !dir.pop() {
            break;
        }
    }
}

fn read(fs: &SimFs, path: &str) -> Vec<u8> {
    fs.open(p(path), OpenMode::Read)
        .unwrap()
        .read_all()
        .unwrap()
}

#[test]
fn synced_data_survives_every_crash() {
    for seed in 0..64 {
        let fs = SimFs::calm(seed);
        durable_file(&fs, "/db/wal", &[1u8; 3000]);
        let wal = fs.open(p("/db/wal"), OpenMode::ReadWrite).unwrap();
        wal.write_at(&[2u8; 1000], 3000).unwrap(); // appended, synced below
        wal.sync().unwrap();
        wal.write_at(&[3u8; 5000], 4000).unwrap(); // unsynced tail
        wal.write_at(&[4u8; 100], 10).unwrap(); // unsynced overwrite
        fs.restart();
        let got = read(&fs, "/db/wal");
        assert!(
            got.len() >= 4000,
            "seed {seed}: synced length lost: {}",
            got.len()
        );
        assert!(got[..10].iter().all(|b| *b == 1), "seed {seed}");
        assert!(got[110..3000].iter().all(|b| *b == 1), "seed {seed}");
        assert!(got[3000..4000].iter().all(|b| *b == 2), "seed {seed}");
        fs.check_invariants().unwrap();
    }
}

#[test]
fn unsynced_data_may_vanish_partly_or_wholly_and_seeds_differ() {
    let mut outcomes = BTreeSet::new();
    let (mut whole, mut partly, mut none) = (0, 0, 0);
    for seed in 0..48 {
        let fs = SimFs::calm(seed);
        durable_file(&fs, "/f", &[0u8; 8192]);
        let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
        file.write_at(&[9u8; 8192], 0).unwrap();
        fs.restart();
        let got = read(&fs, "/f");
        assert_eq!(got.len(), 8192);
        match got.iter().filter(|b| **b == 9).count() {
            0 => none += 1,
            8192 => whole += 1,
            _ => partly += 1,
        }
        outcomes.insert(got);
    }
    assert!(
        outcomes.len() > 2,
        "seeds give different outcomes: {}",
        outcomes.len()
    );
    assert!(
        whole > 0 && partly > 0 && none > 0,
        "{whole} whole, {partly} partly, {none} none"
    );
}

#[test]
fn later_writes_may_persist_while_earlier_ones_do_not() {
    let found = (0..200).any(|seed| {
        let fs = SimFs::new(
            FaultPlan::none()
                .with_seed(seed)
                .with_crash_model(CrashModel {
                    len_persist: 1.0,
                    ..CrashModel::coin_flip()
                }),
        );
        durable_file(&fs, "/f", &[]);
        let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
        file.write_at(&[1u8; 4096], 0).unwrap();
        file.write_at(&[2u8; 4096], 4096).unwrap();
        fs.restart();
        let got = read(&fs, "/f");
        got.len() == 8192
            && got[..4096].iter().all(|b| *b == 0)
            && got[4096..].iter().all(|b| *b == 2)
    });
    assert!(
        found,
        "some seed keeps the second write and loses the first"
    );
}

#[test]
fn torn_sectors_read_as_old_new_or_zeros() {
    let model = CrashModel {
        sector_persist: 0.0,
        sector_zeroed: 0.5,
        sector_torn: 0.5,
        len_persist: 1.0,
        dir_op_persist: 1.0,
        len_mid_write: 0.0,
    };
    let fs = SimFs::new(FaultPlan {
        sector_bytes: 512,
        ..plan(7, model)
    });
    durable_file(&fs, "/f", &[5u8; 512 * 16]);
    let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
    file.write_at(&[6u8; 512 * 16], 0).unwrap();
    fs.restart();
    let got = read(&fs, "/f");
    assert!(got.contains(&0) && got.contains(&5) && got.contains(&6));
    assert_eq!(
        fs.stats().faults.get(&FaultKind::UnsyncedWriteLost),
        Some(&1)
    );
}

#[test]
fn a_create_without_sync_dir_is_undone_by_a_crash() {
    let fs = SimFs::new(plan(1, CrashModel::lose_all()));
    fs.create_dir(p("/db")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    let file = fs.open(p("/db/new"), OpenMode::CreateNew).unwrap();
    file.write_at(b"data", 0).unwrap();
    file.sync().unwrap(); // the data is durable, its name is not
    assert!(fs.exists(p("/db/new")).unwrap());
    fs.restart();
    assert!(!fs.exists(p("/db/new")).unwrap());
    assert_eq!(fs.list(p("/db")).unwrap(), Vec::<String>::new());

    let file = fs.open(p("/db/new"), OpenMode::CreateNew).unwrap();
    file.write_at(b"data", 0).unwrap();
    file.sync().unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.restart();
    assert_eq!(read(&fs, "/db/new"), b"data");
}

#[test]
fn a_create_dir_without_sync_of_its_parent_is_undone() {
    let fs = SimFs::new(plan(1, CrashModel::lose_all()));
    fs.create_dir(p("/a/b")).unwrap();
    let file = fs.open(p("/a/b/f"), OpenMode::Create).unwrap();
    file.sync().unwrap();
    fs.sync_dir(p("/a/b")).unwrap(); // the entry is durable in a directory that is not
    fs.restart();
    assert!(!fs.exists(p("/a")).unwrap());
    fs.check_invariants().unwrap();
}

#[test]
fn a_rename_without_sync_dir_is_undone_and_never_half_done() {
    let fs = SimFs::new(plan(1, CrashModel::lose_all()));
    durable_file(&fs, "/d/a", b"new");
    durable_file(&fs, "/d/b", b"old");
    fs.rename(p("/d/a"), p("/d/b")).unwrap();
    assert_eq!(fs.list(p("/d")).unwrap(), vec!["b"]);
    fs.restart();
    assert_eq!(read(&fs, "/d/a"), b"new");
    assert_eq!(read(&fs, "/d/b"), b"old");

    fs.rename(p("/d/a"), p("/d/b")).unwrap();
    fs.sync_dir(p("/d")).unwrap();
    fs.restart();
    assert_eq!(fs.list(p("/d")).unwrap(), vec!["b"]);
    assert_eq!(read(&fs, "/d/b"), b"new");

    // With random choices, the outcome is always one of the two.
    let mut seen = BTreeSet::new();
    for seed in 0..32 {
        let fs = SimFs::calm(seed);
        durable_file(&fs, "/d/a", b"new");
        durable_file(&fs, "/d/b", b"old");
        // The usual dance: write a temp file, sync it, rename over, (no sync_dir).
        let tmp = fs.open(p("/d/tmp"), OpenMode::CreateNew).unwrap();
        tmp.write_at(b"tmp", 0).unwrap();
        tmp.sync().unwrap();
        fs.rename(p("/d/tmp"), p("/d/a")).unwrap();
        fs.rename(p("/d/a"), p("/d/b")).unwrap();
        fs.restart();
        fs.check_invariants().unwrap();
        let names = fs.list(p("/d")).unwrap();
        let contents: Vec<Vec<u8>> = names
            .iter()
            .map(|n| read(&fs, &format!("/d/{n}")))
            .collect();
        let state = (names, contents);
        let legal = [
            (vec!["a", "b"], vec![&b"new"[..], b"old"]),
            (vec!["a", "b", "tmp"], vec![&b"new"[..], b"old", b"tmp"]),
            (vec!["a", "b"], vec![&b"tmp"[..], b"old"]),
            (vec!["b"], vec![&b"tmp"[..]]),
        ];
        assert!(
            legal.iter().any(|(n, c)| state.0 == *n && state.1 == *c),
            "seed {seed}: illegal namespace {state:?}"
        );
        seen.insert(state);
    }
    assert!(
        seen.len() >= 3,
        "seeds reach different legal states: {seen:?}"
    );
}

#[test]
fn a_remove_without_sync_dir_is_undone() {
    let fs = SimFs::new(plan(3, CrashModel::lose_all()));
    durable_file(&fs, "/x/f", b"keep me");
    fs.remove(p("/x/f")).unwrap();
    assert!(!fs.exists(p("/x/f")).unwrap());
    fs.restart();
    assert_eq!(read(&fs, "/x/f"), b"keep me");
    fs.remove(p("/x/f")).unwrap();
    fs.sync_dir(p("/x")).unwrap();
    fs.restart();
    assert!(!fs.exists(p("/x/f")).unwrap());
    assert_eq!(fs.used_bytes(), 0, "the removed file's space came back");
}

#[test]
fn after_a_failed_sync_the_data_is_lost_whatever_later_syncs_say() {
    let fs = SimFs::new(plan(5, CrashModel::lose_all()));
    durable_file(&fs, "/wal", b"AAAA");
    fs.set_plan(FaultPlan {
        sync_error: 1.0,
        ..plan(0, CrashModel::lose_all())
    });
    let wal = fs.open(p("/wal"), OpenMode::ReadWrite).unwrap();
    wal.write_at(b"BBBB", 4).unwrap();
    let err = wal.sync().unwrap_err();
    assert!(is_injected(&err) && !is_crash(&err), "{err}");
    assert_eq!(
        wal.read_all().unwrap(),
        b"AAAABBBB",
        "the page cache keeps the write"
    );
    fs.set_plan(plan(0, CrashModel::keep_all()));
    wal.sync().unwrap(); // succeeds, yet saves nothing
    assert_eq!(fs.read_durable(p("/wal")).unwrap(), b"AAAA");
    fs.restart();
    assert_eq!(read(&fs, "/wal"), b"AAAA");
    let log = fs.fault_log_text();
    assert!(
        log.contains("sync_error") && log.contains("unsynced_len_lost"),
        "{log}"
    );
}

#[test]
fn disk_full_fails_cleanly_then_works_when_space_returns() {
    let fs = SimFs::calm(0);
    fs.set_space_limit(Some(10_000));
    let file = fs.open(p("/f"), OpenMode::Create).unwrap();
    file.write_at(&[1u8; 8000], 0).unwrap();
    let err = file.write_at(&[2u8; 4000], 8000).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(
        file.len().unwrap(),
        10_000,
        "the prefix that fit was written"
    );
    assert_eq!(fs.used_bytes(), 10_000);
    file.write_at(&[3u8; 100], 0).unwrap(); // overwrites need no space
    let err = file.set_len(10_001).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let other = fs.open(p("/g"), OpenMode::Create).unwrap();
    assert_eq!(
        other.write_at(b"x", 0).unwrap_err().kind(),
        io::ErrorKind::StorageFull
    );
    file.sync().unwrap();

    fs.set_space_limit(Some(20_000));
    file.write_at(&[2u8; 4000], 8000).unwrap();
    other.write_at(b"x", 0).unwrap();
    assert_eq!(file.len().unwrap(), 12_000);
    fs.set_space_limit(None);
    file.set_len(1 << 20).unwrap();
    assert_eq!(fs.stats().faults.get(&FaultKind::DiskFull), Some(&3));
}

#[test]
fn flipped_bits_read_back_flipped_and_stay_flipped() {
    let fs = SimFs::calm(0);
    durable_file(&fs, "/seg", &[0u8; 64]);
    fs.flip_bit(p("/seg"), 10 * 8 + 3).unwrap();
    let got = read(&fs, "/seg");
    assert_eq!(got[10], 1 << 3);
    assert_eq!(got.iter().filter(|b| **b != 0).count(), 1);
    fs.restart();
    assert_eq!(read(&fs, "/seg")[10], 1 << 3);
    assert!(
        fs.flip_bit(p("/seg"), 64 * 8).is_err(),
        "past the durable bytes"
    );
    assert_eq!(fs.stats().faults.get(&FaultKind::BitFlip), Some(&1));
}

#[test]
fn damage_at_rest_truncates_zeroes_and_removes_for_good() {
    let fs = SimFs::calm(0);
    let bytes: Vec<u8> = (1..=200u8).collect();
    durable_file(&fs, "/db/a", &bytes);
    durable_file(&fs, "/db/b", &bytes);
    durable_file(&fs, "/db/c", &bytes);
    let ops = fs.op_count();
    fs.truncate_at_rest(p("/db/a"), 77).unwrap();
    fs.zero_at_rest(p("/db/b"), 190, 50).unwrap(); // clamped to the end
    fs.zero_at_rest(p("/db/b"), 3, 4).unwrap();
    fs.remove_at_rest(p("/db/c")).unwrap();
    assert_eq!(fs.op_count(), ops, "damage at rest is no I/O call");
    for _ in 0..2 {
        // Both views changed: a crash neither undoes nor repeats it.
        assert_eq!(read(&fs, "/db/a"), bytes[..77]);
        let b = read(&fs, "/db/b");
        assert_eq!(b.len(), 200);
        assert_eq!(b[..3], bytes[..3]);
        assert!(b[3..7].iter().all(|x| *x == 0));
        assert_eq!(b[7..190], bytes[7..190]);
        assert!(b[190..].iter().all(|x| *x == 0));
        assert!(!fs.exists(p("/db/c")).unwrap());
        assert_eq!(fs.read_durable(p("/db/a")).unwrap(), bytes[..77]);
        assert!(fs.read_durable(p("/db/c")).is_err());
        assert_eq!(fs.used_bytes(), 77 + 200);
        fs.check_invariants().unwrap();
        fs.restart();
    }
    let log = fs.fault_log();
    let kinds: Vec<(FaultKind, &str, u64, u64)> = log
        .iter()
        .filter(|r| r.kind != FaultKind::Crash)
        .map(|r| (r.kind, r.path.as_str(), r.offset, r.len_bytes))
        .collect();
    assert_eq!(
        kinds,
        [
            (FaultKind::TruncatedAtRest, "/db/a", 77, 123),
            (FaultKind::ZeroedAtRest, "/db/b", 190, 10),
            (FaultKind::ZeroedAtRest, "/db/b", 3, 4),
            (FaultKind::RemovedAtRest, "/db/c", 0, 200),
        ]
    );
}

#[test]
fn damage_at_rest_needs_a_file_at_rest() {
    let fs = SimFs::calm(0);
    durable_file(&fs, "/db/a", &[7u8; 100]);
    // Unsynced writes: refused, nothing changed.
    let file = fs.open(p("/db/a"), OpenMode::ReadWrite).unwrap();
    file.write_at(&[8u8; 10], 100).unwrap();
    assert!(fs.truncate_at_rest(p("/db/a"), 10).is_err());
    file.sync().unwrap();
    // A live handle: refused.
    assert!(fs.zero_at_rest(p("/db/a"), 0, 10).is_err());
    assert!(fs.remove_at_rest(p("/db/a")).is_err());
    drop(file);
    // Not shorter, past the end, empty: refused.
    assert!(fs.truncate_at_rest(p("/db/a"), 110).is_err());
    assert!(fs.zero_at_rest(p("/db/a"), 110, 1).is_err());
    assert!(fs.zero_at_rest(p("/db/a"), 0, 0).is_err());
    // A create not yet made durable by sync_dir: refused.
    let fresh = fs.open(p("/db/fresh"), OpenMode::Create).unwrap();
    fresh.write_at(&[1u8; 10], 0).unwrap();
    fresh.sync().unwrap();
    drop(fresh);
    assert!(fs.remove_at_rest(p("/db/fresh")).is_err());
    assert!(fs.truncate_at_rest(p("/db/fresh"), 1).is_err());
    assert_eq!(read(&fs, "/db/a"), [vec![7u8; 100], vec![8u8; 10]].concat());
    assert!(fs.fault_log().is_empty());
    assert!(fs.remove_at_rest(p("/db/missing")).is_err());
    fs.truncate_at_rest(p("/db/a"), 0).unwrap();
    assert!(read(&fs, "/db/a").is_empty());
    fs.check_invariants().unwrap();
}

#[test]
fn random_bit_flips_hit_durable_data() {
    let fs = SimFs::new(FaultPlan {
        bit_flip: 0.5,
        ..FaultPlan::none().with_seed(11)
    });
    durable_file(&fs, "/seg", &[0u8; 4096]);
    for _ in 0..20 {
        fs.exists(p("/seg")).unwrap();
    }
    let flips = fs
        .stats()
        .faults
        .get(&FaultKind::BitFlip)
        .copied()
        .unwrap_or(0);
    assert!(flips > 0);
    let ones: u32 = fs
        .read_durable(p("/seg"))
        .unwrap()
        .iter()
        .map(|b| b.count_ones())
        .sum();
    assert!(ones > 0 && u64::from(ones) <= flips);
}

#[test]
fn a_latent_sector_error_keeps_failing_until_rewritten() {
    let fs = SimFs::calm(0);
    durable_file(&fs, "/seg", &[7u8; 3 * 4096]);
    fs.add_latent_error(p("/seg"), 5000).unwrap();
    let file = fs.open(p("/seg"), OpenMode::ReadWrite).unwrap();
    let mut buf = [0u8; 100];
    for _ in 0..3 {
        let err = file.read_at(&mut buf, 4096 + 50).unwrap_err();
        assert!(is_injected(&err));
        assert!(file.read_exact_at(&mut [0u8; 8192], 0).is_err());
    }
    file.read_exact_at(&mut buf, 0).unwrap();
    file.read_exact_at(&mut buf, 8192).unwrap();
    fs.restart();
    let file = fs.open(p("/seg"), OpenMode::ReadWrite).unwrap();
    assert!(
        file.read_at(&mut buf, 4096).is_err(),
        "latent errors survive a restart"
    );
    file.write_at(&[8u8; 10], 4100).unwrap();
    file.read_exact_at(&mut buf, 4096).unwrap();
    assert_eq!(fs.stats().faults.get(&FaultKind::LatentRead), Some(&7));
}

#[test]
fn the_plan_can_make_sectors_latent() {
    let fs = SimFs::new(FaultPlan {
        read_latent: 1.0,
        ..FaultPlan::none()
    });
    durable_file(&fs, "/seg", &[7u8; 4096]);
    let file = fs.open(p("/seg"), OpenMode::Read).unwrap();
    assert!(file.read_at(&mut [0u8; 10], 0).is_err());
    fs.set_plan(FaultPlan::none());
    assert!(
        file.read_at(&mut [0u8; 10], 0).is_err(),
        "it stays unreadable"
    );
}

#[test]
fn a_misdirected_write_lands_elsewhere() {
    let mut landed_in_other_file = false;
    let mut landed_in_same_file = false;
    for seed in 0..16 {
        let fs = SimFs::new(FaultPlan::none().with_seed(seed));
        durable_file(&fs, "/a", &[0u8; 16 * 512]);
        durable_file(&fs, "/b", &[0u8; 16 * 512]);
        fs.set_plan(FaultPlan {
            write_misdirected: 1.0,
            ..FaultPlan::none()
        });
        let b = fs.open(p("/b"), OpenMode::ReadWrite).unwrap();
        b.write_at(&[0xAB; 100], 1000).unwrap(); // reports success
        let got_b = fs.read_current(p("/b")).unwrap();
        assert!(
            got_b[1000..1100] != [0xAB; 100],
            "seed {seed}: not at the intended place"
        );
        let got_a = fs.read_current(p("/a")).unwrap();
        landed_in_other_file |= got_a.windows(100).any(|w| w == [0xAB; 100]);
        landed_in_same_file |= got_b.windows(100).any(|w| w == [0xAB; 100]);
        let log = fs.fault_log();
        let record = log
            .iter()
            .find(|r| r.kind == FaultKind::MisdirectedWrite)
            .unwrap();
        assert_eq!((record.path.as_str(), record.offset), ("/b", 1000));
    }
    assert!(landed_in_other_file && landed_in_same_file);
}

#[test]
fn a_torn_write_writes_a_prefix_and_fails() {
    let fs = SimFs::new(FaultPlan {
        write_torn: 1.0,
        sector_bytes: 512,
        ..FaultPlan::none().with_seed(3)
    });
    let file = fs.open(p("/f"), OpenMode::Create).unwrap();
    let err = file.write_at(&[1u8; 4096], 0).unwrap_err();
    assert!(is_injected(&err));
    let got = fs.read_current(p("/f")).unwrap();
    assert!(got.len() < 4096 && got.len() % 512 == 0 && got.iter().all(|b| *b == 1));
}

#[test]
fn an_acknowledged_torn_write_misses_some_sectors() {
    let fs = SimFs::new(FaultPlan {
        write_torn_acked: 1.0,
        sector_bytes: 512,
        ..FaultPlan::none().with_seed(3)
    });
    let file = fs.open(p("/f"), OpenMode::Create).unwrap();
    file.write_at(&[1u8; 4096], 0).unwrap();
    let got = fs.read_current(p("/f")).unwrap();
    assert_eq!(got.len(), 4096);
    assert!(got.contains(&0), "at least one sector is missing");
}

#[test]
fn read_and_write_errors_are_injected_at_their_rates() {
    let fs = SimFs::new(FaultPlan {
        read_error: 1.0,
        write_error: 1.0,
        ..FaultPlan::none()
    });
    let file = fs.open(p("/f"), OpenMode::Create).unwrap();
    assert!(is_injected(&file.write_at(b"abc", 0).unwrap_err()));
    assert_eq!(file.len().unwrap(), 0, "a failed write wrote nothing");
    assert!(is_injected(&file.read_at(&mut [0u8; 3], 0).unwrap_err()));
    fs.set_plan(FaultPlan {
        read_error: 0.3,
        ..FaultPlan::none()
    });
    file.write_at(b"abc", 0).unwrap();
    let failures = (0..200)
        .filter(|_| file.read_at(&mut [0u8; 3], 0).is_err())
        .count();
    assert!(
        (30..=90).contains(&failures),
        "{failures} of 200 at rate 0.3"
    );
}

#[test]
fn a_failed_sync_dir_leaves_its_entries_pending() {
    let fs = SimFs::new(FaultPlan {
        sync_dir_error: 1.0,
        ..plan(1, CrashModel::lose_all())
    });
    fs.open(p("/f"), OpenMode::Create).unwrap().sync().unwrap();
    assert!(is_injected(&fs.sync_dir(p("/")).unwrap_err()));
    assert!(fs.has_unsynced());
    fs.restart();
    assert!(!fs.exists(p("/f")).unwrap(), "a crash may lose them");

    fs.open(p("/f"), OpenMode::Create).unwrap().sync().unwrap();
    assert!(fs.sync_dir(p("/")).is_err());
    fs.set_plan(plan(0, CrashModel::lose_all()));
    fs.sync_dir(p("/")).unwrap();
    fs.restart();
    assert!(
        fs.exists(p("/f")).unwrap(),
        "a later sync_dir makes them durable"
    );
}

#[test]
fn handles_from_before_a_crash_are_dead_forever() {
    let fs = SimFs::calm(0);
    durable_file(&fs, "/f", b"abc");
    let old = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
    fs.freeze();
    let err = old.write_at(b"x", 0).unwrap_err();
    assert!(is_crash(&err) && is_crash_error(&err));
    assert!(is_crash(&fs.exists(p("/f")).unwrap_err()));
    fs.restart();
    let ops = fs.op_count();
    assert!(is_crash(&old.write_at(b"x", 0).unwrap_err()));
    assert!(is_crash(&old.read_at(&mut [0u8; 1], 0).unwrap_err()));
    assert!(is_crash(&old.sync().unwrap_err()));
    assert!(is_crash(&old.len().unwrap_err()));
    assert_eq!(
        fs.op_count(),
        ops,
        "calls through dead handles never reach the disk"
    );
    let new = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
    new.write_at(b"x", 0).unwrap();
    drop(old);
    assert_eq!(new.read_all().unwrap(), b"xbc");
}

#[test]
fn crash_at_op_freezes_at_exactly_that_call() {
    let fs = SimFs::calm(0);
    let file = fs.open(p("/f"), OpenMode::Create).unwrap();
    let start = fs.op_count();
    assert_eq!(start, 1);
    fs.crash_at_op(start + 3);
    file.write_at(b"one", 0).unwrap(); // call start + 1
    file.sync().unwrap(); // call start + 2
    let err = file.write_at(b"two", 3).unwrap_err(); // call start + 3
    assert!(is_crash(&err));
    assert_eq!(fs.op_count(), start + 3);
    assert!(fs.is_frozen());
    assert!(is_crash(&fs.list(p("/")).unwrap_err()));
    assert!(is_crash(&fs.open(p("/g"), OpenMode::Create).err().unwrap()));
    assert_eq!(fs.op_count(), start + 3, "frozen calls are not counted");
    let log = fs.fault_log();
    assert_eq!((log[0].kind, log[0].op), (FaultKind::Crash, start + 3));
    fs.restart();
    assert!(!fs.is_frozen());
    assert!(fs.list(p("/")).is_ok(), "the disk works again");
    assert_eq!(fs.op_count(), start + 4);
}

#[test]
fn a_crash_inside_a_write_may_leave_a_prefix_in_the_page_cache() {
    let mut prefixes = BTreeSet::new();
    for seed in 0..32 {
        let fs = SimFs::new(plan(seed, CrashModel::keep_all()).with_seed(seed));
        let file = fs.open(p("/f"), OpenMode::Create).unwrap();
        fs.crash_at_op(fs.op_count() + 1);
        assert!(is_crash(&file.write_at(&[1u8; 4 * 4096], 0).unwrap_err()));
        fs.restart();
        prefixes.insert(read(&fs, "/f").len());
    }
    assert!(prefixes.iter().all(|len| len % 4096 == 0));
    assert!(prefixes.len() > 2, "{prefixes:?}");
}

/// A fixed workload with every fault on at moderate rates and two crashes.
fn workload(seed: u64) -> (u64, String) {
    let fs = SimFs::calm(seed);
    fs.create_dir(p("/db/wal")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    fs.sync_dir(p("/db")).unwrap();
    fs.set_plan(FaultPlan {
        read_error: 0.02,
        write_error: 0.02,
        write_torn: 0.02,
        write_torn_acked: 0.02,
        write_misdirected: 0.02,
        sync_error: 0.02,
        sync_dir_error: 0.02,
        read_latent: 0.01,
        bit_flip: 0.01,
        sector_bytes: 512,
        ..FaultPlan::none()
    });
    for round in 0..3u8 {
        for i in 0..40u64 {
            let name = format!("/db/wal/{}", i % 5);
            let Ok(file) = fs.open(p(&name), OpenMode::Create) else {
                continue;
            };
            let _ = file.write_at(&vec![round ^ i as u8; 700], i * 300);
            if i % 3 == 0 {
                let _ = file.sync();
            }
            let _ = file.read_at(&mut [0u8; 512], i * 100);
            if i % 7 == 0 {
                let _ = fs.rename(p(&name), p(&format!("/db/wal/r{i}")));
                let _ = fs.sync_dir(p("/db/wal"));
            }
        }
        fs.restart();
        fs.check_invariants().unwrap();
    }
    (fs.disk_hash(), fs.fault_log_text())
}

#[test]
fn the_same_seed_gives_the_same_image_and_different_seeds_differ() {
    let (hash_a, log_a) = workload(42);
    let (hash_b, log_b) = workload(42);
    assert_eq!(hash_a, hash_b);
    assert_eq!(log_a, log_b);
    assert!(!log_a.is_empty());
    let others: BTreeSet<u64> = (43..48).map(|seed| workload(seed).0).collect();
    assert!(!others.contains(&hash_a));
    assert_eq!(others.len(), 5);
}

#[test]
fn namespace_errors_match_std() {
    let fs = SimFs::calm(0);
    let kind = |r: io::Result<Box<dyn File>>| r.err().map(|e| e.kind());
    assert_eq!(
        kind(fs.open(p("/missing"), OpenMode::Read)),
        Some(io::ErrorKind::NotFound)
    );
    assert_eq!(
        kind(fs.open(p("/no/dir/f"), OpenMode::Create)),
        Some(io::ErrorKind::NotFound)
    );
    fs.open(p("/f"), OpenMode::CreateNew).unwrap();
    assert_eq!(
        kind(fs.open(p("/f"), OpenMode::CreateNew)),
        Some(io::ErrorKind::AlreadyExists)
    );
    assert_eq!(
        kind(fs.open(p("/f/x"), OpenMode::Create)),
        Some(io::ErrorKind::NotADirectory)
    );
    fs.create_dir(p("/d/e")).unwrap();
    fs.create_dir(p("/d/e")).unwrap();
    assert_eq!(
        kind(fs.open(p("/d"), OpenMode::ReadWrite)),
        Some(io::ErrorKind::IsADirectory)
    );
    assert_eq!(
        fs.create_dir(p("/f")).unwrap_err().kind(),
        io::ErrorKind::AlreadyExists
    );
    assert_eq!(
        fs.create_dir(p("/f/g")).unwrap_err().kind(),
        io::ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.remove(p("/d")).unwrap_err().kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.remove(p("/nope")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.list(p("/f")).unwrap_err().kind(),
        io::ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.list(p("/nope")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.rename(p("/nope"), p("/x")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    assert_eq!(
        fs.rename(p("/f"), p("/d")).unwrap_err().kind(),
        io::ErrorKind::IsADirectory
    );
    assert_eq!(
        fs.rename(p("/d"), p("/f")).unwrap_err().kind(),
        io::ErrorKind::NotADirectory
    );
    assert_eq!(
        fs.rename(p("/d"), p("/d/e/x")).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        fs.sync_dir(p("/nope")).unwrap_err().kind(),
        io::ErrorKind::NotFound
    );
    for name in ["b", "a", "c", "B"] {
        fs.open(&Path::new("/d").join(name), OpenMode::Create)
            .unwrap();
    }
    assert_eq!(fs.list(p("/d")).unwrap(), vec!["B", "a", "b", "c", "e"]);
    assert!(
        fs.exists(p("d/./e/../a")).unwrap(),
        "relative and dotted paths resolve"
    );
    let ro = fs.open(p("/f"), OpenMode::Read).unwrap();
    assert_eq!(ro.write_at(b"x", 0).unwrap_err().raw_os_error(), Some(9));
    assert_eq!(ro.set_len(3).unwrap_err().raw_os_error(), Some(22));
    assert_eq!(ro.read_at(&mut [0u8; 4], 100).unwrap(), 0);
    // A removed file stays usable through an open handle, as on POSIX.
    let w = fs.open(p("/d/a"), OpenMode::ReadWrite).unwrap();
    fs.remove(p("/d/a")).unwrap();
    w.write_at(b"still here", 0).unwrap();
    assert_eq!(w.read_all().unwrap(), b"still here");
    fs.check_invariants().unwrap();
}

#[test]
fn sim_fs_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SimFs>();
    assert_send_sync::<omendb_faults::FaultyFs>();
}

/// Plans drawn from seeds (calm to storm, planned crashes included), a mixed workload of
/// file and directory calls, a restart whenever the disk froze: the disk stays
/// consistent, every error is either injected, a crash, or one the call earned, and the
/// log and counters agree.
#[test]
fn swarm_plans_keep_the_disk_consistent() {
    use rand::{Rng, SeedableRng};
    let mut kinds_seen = BTreeSet::new();
    for seed in 0..48u64 {
        let mut plan = FaultPlan::from_seed(seed);
        plan.crash_at_op = plan.crash_at_op.map(|op| op % 600 + 1);
        let fs = SimFs::new(plan);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let names = ["/db/a", "/db/b", "/db/sub/c", "/db/tmp"];
        let mut handle: Option<Box<dyn File>> = None;
        for _ in 0..800 {
            let name = p(names[rng.random_range(0..names.len())]);
            let other = p(names[rng.random_range(0..names.len())]);
            let which = rng.random_range(0..10);
            let result: io::Result<()> = match which {
                0 => fs.create_dir(p("/db/sub")),
                1 => fs.open(name, OpenMode::Create).map(|f| handle = Some(f)),
                2 | 3 => match &handle {
                    Some(f) => f.write_at(&[rng.random(); 700], rng.random_range(0..9000)),
                    None => Ok(()),
                },
                4 => match &handle {
                    Some(f) => f.sync(),
                    None => Ok(()),
                },
                5 => match &handle {
                    Some(f) => f
                        .read_at(&mut [0u8; 600], rng.random_range(0..9000))
                        .map(|_| ()),
                    None => Ok(()),
                },
                6 => fs.rename(name, other),
                7 => fs.remove(name),
                8 => fs.sync_dir(p(if rng.random_bool(0.5) { "/db" } else { "/" })),
                _ => match &handle {
                    Some(f) => f.set_len(rng.random_range(0..9000)),
                    None => Ok(()),
                },
            };
            if let Err(e) = result {
                let earned = matches!(
                    e.kind(),
                    io::ErrorKind::NotFound
                        | io::ErrorKind::IsADirectory
                        | io::ErrorKind::DirectoryNotEmpty
                );
                assert!(
                    is_crash(&e) || is_injected(&e) || earned,
                    "seed {seed}: unexpected {e}"
                );
                if e.kind() == io::ErrorKind::StorageFull {
                    assert!(is_injected(&e));
                }
            }
            if fs.is_frozen() {
                fs.restart();
                handle = None;
            }
            if let Err(why) = fs.check_invariants() {
                panic!("seed {seed}: {why}\n{}", fs.fault_log_text());
            }
        }
        let stats = fs.stats();
        let logged = fs.fault_log().len() as u64;
        assert_eq!(
            stats.faults_total(),
            logged,
            "seed {seed}: every fault is logged"
        );
        kinds_seen.extend(fs.fault_log().iter().map(|r| r.kind));
    }
    for kind in [
        FaultKind::Crash,
        FaultKind::UnsyncedWriteLost,
        FaultKind::DirOpLost,
        FaultKind::WriteError,
    ] {
        assert!(
            kinds_seen.contains(&kind),
            "{kind} never happened: {kinds_seen:?}"
        );
    }
}

#[test]
fn a_directory_lock_is_exclusive_uncounted_and_released_by_drop_or_restart() {
    let fs = SimFs::new(FaultPlan::none());
    fs.create_dir(p("/db")).unwrap();
    fs.create_dir(p("/other")).unwrap();
    fs.sync_dir(p("/")).unwrap();
    let ops = fs.op_count();
    let held = fs.lock_dir(p("/db")).unwrap().expect("free at first");
    assert!(
        fs.lock_dir(p("/db")).unwrap().is_none(),
        "held once already"
    );
    assert!(
        fs.lock_dir(p("/db/../db")).unwrap().is_none(),
        "same directory"
    );
    let other = fs
        .lock_dir(p("/other"))
        .unwrap()
        .expect("another directory");
    drop(held);
    let again = fs.lock_dir(p("/db")).unwrap().expect("free after the drop");
    // Not I/O calls: the crash points of every saved seed stay where they were.
    assert_eq!(fs.op_count(), ops, "lock_dir is not counted");
    assert_eq!(
        fs.lock_dir(p("/missing")).err().map(|e| e.kind()),
        Some(io::ErrorKind::NotFound)
    );
    // A crash kills the process that held the locks.
    fs.freeze();
    assert!(fs.lock_dir(p("/db")).is_err_and(|e| is_crash(&e)));
    fs.restart();
    let after = fs
        .lock_dir(p("/db"))
        .unwrap()
        .expect("a restart releases it");
    // The dead process's guards, dropped late, must not release the new holder's lock.
    drop(again);
    drop(other);
    assert!(fs.lock_dir(p("/db")).unwrap().is_none());
    drop(after);
    assert!(fs.lock_dir(p("/db")).unwrap().is_some());
}

#[test]
fn a_crash_can_leave_the_size_at_any_byte_inside_an_extending_write() {
    let model = CrashModel {
        len_persist: 0.0,
        len_mid_write: 1.0,
        ..CrashModel::coin_flip()
    };
    let mut sizes = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let fs = SimFs::new(plan(seed, model));
        durable_file(&fs, "/f", b"0123");
        let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
        file.write_at(&[7u8; 1000], 4).unwrap();
        fs.restart();
        let got = read(&fs, "/f");
        assert!(
            got.len() > 4 && got.len() < 1004,
            "seed {seed}: size {} is not inside the write",
            got.len()
        );
        assert_eq!(&got[..4], b"0123", "durable bytes untouched");
        assert!(got[4..].iter().all(|b| *b == 7 || *b == 0));
        sizes.insert(got.len());
    }
    assert!(
        sizes.iter().any(|s| (s - 4) % 512 != 0),
        "sizes only at sector boundaries: {sizes:?}"
    );
    // A lose-all crash keeps only what was durable.
    let fs = SimFs::new(plan(1, CrashModel::lose_all()));
    durable_file(&fs, "/f", b"0123");
    let file = fs.open(p("/f"), OpenMode::ReadWrite).unwrap();
    file.write_at(&[7u8; 1000], 4).unwrap();
    fs.restart();
    assert_eq!(read(&fs, "/f"), b"0123");
}
