//! The real-process crash loop (`src/bin/omendb-crash-loop.rs`), short: SIGKILL at random
//! moments of a writer process, then every acknowledged write checked after reopen. The
//! long runs (1,000 iterations a mode) are in docs/TESTING.md and `.ci/run`.

use std::process::Command;

fn crash_loop(mode: &str, iterations: u32, seed: u32) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_omendb-crash-loop"))
        .args(["--mode", mode, "--iterations", &iterations.to_string()])
        .args(["--seed", &seed.to_string(), "--max-ms", "150"])
        .args(["--dir", &dir.path().join("run").to_string_lossy()])
        .output()
        .unwrap()
}

#[test]
fn killed_writers_lose_nothing_the_mode_promises() {
    for mode in ["always", "batch", "cold"] {
        let out = crash_loop(mode, 12, 7);
        assert!(
            out.status.success(),
            "mode {mode}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_loop_catches_acknowledgements_the_mode_does_not_keep() {
    // `Durability::None` loses the log buffer with the process; held to `Durability::Always`'s promise,
    // some iteration recovers less than was acknowledged.
    let out = crash_loop("unsafe", 200, 3);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the loop accepted lost acknowledged writes: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("no prefix of the history"));
}
