//! SQLite on the simulated disk keeps the promises its documentation makes, and the checker
//! is sharp enough to see a broken one (docs/TESTING.md, "SQLite on the simulated disk").

use omendb_sqlite_sim::{failure_kind, run, Promise, RunConfig, Sqlite, Summary, Synchronous};

fn sweep(seeds: std::ops::Range<u64>, config: &RunConfig) -> Summary {
    let mut summary = Summary::default();
    for seed in seeds {
        summary.add(run(seed, config));
    }
    summary
}

#[test]
fn synchronous_full_keeps_every_acknowledged_commit() {
    let summary = sweep(0..200, &RunConfig::new(Synchronous::Full));
    let failed: Vec<String> = summary
        .failed
        .iter()
        .map(|o| format!("seed {}: {:?}", o.seed, o.failure))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // The runs crashed, and some crashes caught a commit in flight that landed.
    assert!(summary.crashes > 1_000, "{summary:?}");
    assert!(summary.in_flight_applied > 0, "{summary:?}");
}

#[test]
fn synchronous_off_fails_the_durable_checker() {
    // The planted bug: SQLite told never to sync. A checker that passed it could not see a
    // lost commit.
    let mut config = RunConfig::new(Synchronous::Off);
    config.promise = Promise::Durable;
    let summary = sweep(0..50, &config);
    assert!(
        summary.failed.len() >= 10,
        "only {} of 50 seeds failed",
        summary.failed.len()
    );
    let why = summary.failed[0].failure.clone().unwrap_or_default();
    assert!(why.contains("acknowledged commit was lost"), "{why}");
}

#[test]
fn the_generic_shrinker_finds_fewer_transactions_that_lose_a_commit() {
    let mut config = RunConfig::new(Synchronous::Off);
    config.promise = Promise::Durable;
    let sqlite = Sqlite { config };
    let seed = sweep(0..50, &config).failed[0].seed;
    let shrunk = omendb_simcore::shrink::shrink(&sqlite, seed, 200).expect("the seed fails");
    assert!(shrunk.knobs.transactions <= config.transactions);
    assert_eq!(
        u64::from(shrunk.knobs.transactions),
        shrunk.outcome.transactions_run,
        "the shrunk run fails at its last transaction"
    );
    let why = shrunk.outcome.failure.clone().unwrap_or_default();
    assert_eq!(failure_kind(&why), "lost_commit", "{why}");
    // One transaction fewer keeps the promise or breaks it another way.
    let shorter = RunConfig {
        transactions: shrunk.knobs.transactions - 1,
        ..config
    };
    let failure = run(seed, &shorter).failure;
    assert_ne!(
        failure.as_deref().map(failure_kind),
        Some("lost_commit"),
        "{failure:?}"
    );
}

#[test]
fn synchronous_normal_rolls_back_but_stays_consistent() {
    let summary = sweep(0..200, &RunConfig::new(Synchronous::Normal));
    assert!(summary.failed.is_empty(), "{:?}", summary.failed);
    assert!(summary.rolled_back > 100, "{summary:?}");
}

#[test]
fn a_seed_replays_bit_for_bit() {
    let config = RunConfig::new(Synchronous::Normal);
    // Seed 0 included: a PRNG seed of 0 would hand SQLite's salts to the OS's randomness.
    for seed in [0, 3, 690] {
        let (a, b) = (run(seed, &config), run(seed, &config));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!(a.failure, b.failure, "seed {seed}");
        assert_eq!((a.commits, a.crashes), (b.commits, b.crashes));
    }
    assert_ne!(run(3, &config).trace_hash, run(4, &config).trace_hash);
}

#[test]
fn a_rolled_back_transaction_can_reappear_under_normal() {
    // The finding of seed 690 (docs/TESTING.md): a transaction that one recovery rolled
    // back is back after the next power loss.
    let outcome = run(690, &RunConfig::new(Synchronous::Normal));
    let why = outcome.failure.unwrap_or_default();
    assert!(
        why.contains("no prefix of the acknowledged commits"),
        "{why}"
    );
}
