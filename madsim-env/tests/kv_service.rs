//! The example service on madsim (tests/kv/mod.rs) under power cuts and disk faults: the
//! correct service keeps every acknowledged put on every seed; the planted bug (acknowledge
//! before durable) is found on some seed, and that seed replays bit for bit.
//!
//! Needs `RUSTFLAGS="--cfg madsim"` (docs/TESTING.md, "Async applications on madsim").
//! `OMENDB_MADSIM_SEEDS=N` sets how many seeds the sweeps run (default [`SEEDS_DEFAULT`]).

#![cfg(madsim)]

mod kv;

use kv::{run_seed, Ack, Answer, Attempt, Outcome};
use madsim::runtime::Runtime;
use madsim::Config;
use std::collections::BTreeMap;
use std::time::Duration;

/// Seeds per sweep unless `OMENDB_MADSIM_SEEDS` says otherwise.
const SEEDS_DEFAULT: u64 = 100;

fn seeds() -> std::ops::Range<u64> {
    let count = std::env::var("OMENDB_MADSIM_SEEDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(SEEDS_DEFAULT);
    0..count
}

fn sweep(ack: Ack) -> Vec<Outcome> {
    seeds()
        .map(|seed| {
            let outcome = run_seed(seed, ack);
            eprintln!("{ack:?} {}", outcome.summary());
            outcome
        })
        .collect()
}

#[test]
fn durable_service_keeps_every_acknowledged_put() {
    let outcomes = sweep(Ack::Durable);
    for outcome in &outcomes {
        assert!(
            outcome.passed(),
            "{}\nlost: {:#?}\nphantom: {:#?}\nreplay: OMENDB_MADSIM_SEED={} \
             OMENDB_MADSIM_ACK=durable RUSTFLAGS=\"--cfg madsim\" cargo test -p omendb-madsim \
             --test kv_service replay -- --ignored --nocapture",
            outcome.summary(),
            outcome.lost,
            outcome.phantom,
            outcome.seed
        );
    }
    // The sweep must have exercised something: acknowledged puts and power cuts mid-run.
    let acked: usize = outcomes.iter().map(|o| o.acked).sum();
    let cuts: usize = outcomes.iter().map(|o| o.power_cuts).sum();
    let frozen: usize = outcomes.iter().map(|o| o.cuts_frozen).sum();
    let faults: u64 = outcomes.iter().map(|o| o.faults).sum();
    let syncs: u64 = outcomes.iter().map(|o| o.syncs).sum();
    eprintln!(
        "{} seeds: {acked} puts acknowledged, {syncs} fsyncs, {cuts} power cuts ({frozen} at a \
         planned I/O call), {faults} faults injected",
        outcomes.len()
    );
    assert!(
        acked > 100 * outcomes.len(),
        "too few puts acknowledged: {acked}"
    );
    assert!(cuts > 2 * outcomes.len(), "too few power cuts: {cuts}");
    assert!(frozen > 0, "no crash at a planned I/O call");
    assert!(faults > 0, "no disk fault injected");
}

#[test]
fn planted_bug_is_found_and_its_seed_replays_bit_for_bit() {
    let outcomes = sweep(Ack::Applied);
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.passed()).collect();
    eprintln!(
        "planted bug: {} of {} seeds fail: {:?}",
        failed.len(),
        outcomes.len(),
        failed.iter().map(|o| o.seed).collect::<Vec<_>>()
    );
    let Some(first) = failed.first() else {
        panic!("the planted bug (acknowledge before durable) was not found");
    };
    assert!(
        first.phantom.is_empty(),
        "the planted bug loses puts, it does not invent them: {:?}",
        first.phantom
    );
    eprintln!("seed {} lost: {:#?}", first.seed, first.lost);

    // Replay: the same seed, run again in a fresh runtime, observes exactly the same.
    let again = run_seed(first.seed, Ack::Applied);
    assert_eq!(
        again.trace_hash, first.trace_hash,
        "seed {} replays",
        first.seed
    );
    assert_eq!(again.lost, first.lost);
    // madsim's own check: every random draw of a second run matches the first.
    let checked = Runtime::check_determinism(first.seed, Config::default(), kv::scenario_applied);
    assert_eq!(checked.trace_hash, first.trace_hash);
    assert!(!checked.passed());
}

#[test]
fn durable_service_passes_madsims_determinism_check() {
    for seed in seeds().take(2) {
        let checked = Runtime::check_determinism(seed, Config::default(), kv::scenario_durable);
        assert!(checked.passed(), "{}", checked.summary());
        assert_eq!(checked.trace_hash, run_seed(seed, Ack::Durable).trace_hash);
    }
}

/// One seed through madsim's own test harness and its knobs: `MADSIM_TEST_SEED` (default:
/// the time, so every run tries a fresh seed; a failure prints the seed to replay),
/// `MADSIM_TEST_NUM` (that many seeds from it), `MADSIM_TEST_CHECK_DETERMINISM` (run the
/// seed twice and compare every random draw).
#[madsim::test]
async fn durable_service_on_a_fresh_seed() {
    let outcome = kv::scenario(Ack::Durable).await;
    eprintln!("{}", outcome.summary());
    assert!(
        outcome.passed(),
        "{}\nlost: {:#?}\nphantom: {:#?}",
        outcome.summary(),
        outcome.lost,
        outcome.phantom
    );
}

/// Different seeds take different paths (the trace hash is not a constant).
#[test]
fn seeds_differ() {
    let a = run_seed(1, Ack::Durable);
    let b = run_seed(2, Ack::Durable);
    assert_ne!(a.trace_hash, b.trace_hash);
}

/// One seed, run twice, with its findings printed:
/// `OMENDB_MADSIM_SEED=N OMENDB_MADSIM_ACK=applied|durable cargo test -p omendb-madsim
/// --test kv_service replay -- --ignored --nocapture` (with the cfg madsim RUSTFLAGS).
#[test]
#[ignore = "replays the seed in OMENDB_MADSIM_SEED on demand"]
fn replay() {
    let seed = std::env::var("OMENDB_MADSIM_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let ack = match std::env::var("OMENDB_MADSIM_ACK").as_deref() {
        Ok("applied") => Ack::Applied,
        _ => Ack::Durable,
    };
    let first = run_seed(seed, ack);
    let second = run_seed(seed, ack);
    eprintln!("{ack:?} {}", first.summary());
    eprintln!("{:#?}", first.cuts);
    eprintln!("lost: {:#?}\nphantom: {:#?}", first.lost, first.phantom);
    assert_eq!(first.trace_hash, second.trace_hash, "seed {seed} replays");
}

fn put(key: i64, value: i64, answer: Answer) -> Attempt {
    Attempt {
        key,
        value,
        answer,
        sent_at: Duration::ZERO,
    }
}

/// The checker itself: what it must flag and what it must let pass.
#[test]
fn checker_flags_lost_and_phantom_puts_only() {
    let attempts = vec![vec![
        put(1, 10, Answer::Acked),
        put(1, 11, Answer::Unknown),
        put(2, 20, Answer::Acked),
        put(2, 21, Answer::Acked),
        put(3, 30, Answer::Refused),
        put(4, 40, Answer::Acked),
    ]];
    let found = |rows: &[(i64, i64)]| rows.iter().copied().collect::<BTreeMap<i64, i64>>();
    // Allowed: the unknown put present or not, the refused one present or not.
    for rows in [
        &[(1, 10), (2, 21), (4, 40)][..],
        &[(1, 11), (2, 21), (3, 30), (4, 40)][..],
    ] {
        assert_eq!(kv::check(&attempts, &found(rows)), (vec![], vec![]));
    }
    // Lost: an acknowledged put overwritten by an older value, or missing.
    let (lost, phantom) = kv::check(&attempts, &found(&[(1, 10), (2, 20)]));
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(phantom.is_empty());
    // Phantom: a value nobody put, a key nobody wrote.
    let (lost, phantom) = kv::check(&attempts, &found(&[(1, 12), (2, 21), (4, 40), (9, 1)]));
    assert!(lost.is_empty(), "{lost:?}");
    assert_eq!(phantom.len(), 2, "{phantom:?}");
}
