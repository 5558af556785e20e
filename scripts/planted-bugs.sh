#!/usr/bin/env bash
# The planted-bug experiment (docs/TESTING.md, "Does the simulator find bugs?"): for each
# patch in scripts/planted/ (or those named), apply it to the engine, build the simulator,
# sweep the default 1,000 seeds on one core, run the simulator's cargo tests, and revert.
# The bugs are never committed; only the patches are, so the experiment can be rerun.
#
#   scripts/planted-bugs.sh                          # every patch
#   scripts/planted-bugs.sh 03-wal-new-segment-dir-not-synced 16-log-end-off-by-one
#   SEEDS=0..2000 SKIP_TEST=1 scripts/planted-bugs.sh
#
# One line per bug is appended to $OUT (tab-separated): patch, first failing seed, seeds
# failing, checks that fired (check:seeds), the failing tests of the simulator's own tests
# in `cargo test --features sim` (tests/sim.rs: seed files, the bounded sweep, calm runs,
# determinism; sim/tests/at_rest.rs: each kind of damage at rest), or "PASSED" when they
# missed it, and seconds. Logs go to $LOGS/.
#
# The cargo tests run with --release: the same tests, built optimised (the bounded sweep of
# 300 seeds runs several times faster). Debug assertions are off there, so a bug they catch
# in release is caught by a debug build too (a run is deterministic; an assertion can only
# end a failing run earlier).
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-0..1000}
OUT=${OUT:-target/planted/results.tsv}
LOGS=${LOGS:-target/planted/logs}
JOBS=${JOBS:-1}
SKIP_TEST=${SKIP_TEST:-0}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$LOGS" "$(dirname "$OUT")"

if ! git diff --quiet -- engine/; then
    echo "engine/ has uncommitted changes: commit or stash them first" >&2
    exit 2
fi

if [ $# -gt 0 ]; then
    patches=()
    for name in "$@"; do patches+=("scripts/planted/${name%.patch}.patch"); done
else
    patches=(scripts/planted/*.patch)
fi

applied=""
revert() {
    if [ -n "$applied" ]; then
        git apply -R "$applied"
        applied=""
    fi
}
trap revert EXIT

for patch in "${patches[@]}"; do
    name=$(basename "$patch" .patch)
    started=$(date +%s)
    git apply "$patch"
    applied=$patch
    if ! cargo build -j 1 --release -p omendb-sim >"$LOGS/$name.build.log" 2>&1; then
        echo "$name: build failed (see $LOGS/$name.build.log)" >&2
        printf '%s\tbuild failed\t\t\t\t\n' "$name" >>"$OUT"
        revert
        continue
    fi
    "$CARGO_TARGET_DIR/release/omendb-sim" sweep --seeds "$SEEDS" --jobs "$JOBS" --json \
        >"$LOGS/$name.sweep.json" 2>"$LOGS/$name.sweep.log" || true
    # "FAILED seed N check C at step S", one per failing seed.
    failures=$(grep -E '^FAILED seed [0-9]+ check ' "$LOGS/$name.sweep.log" || true)
    count=$(printf '%s' "$failures" | grep -c . || true)
    first=$(printf '%s\n' "$failures" | awk 'NF {print $3}' | sort -n | head -1)
    checks=$(printf '%s\n' "$failures" | awk 'NF {print $5}' | sort | uniq -c |
        sort -rn | awk '{printf "%s%s:%s", sep, $2, $1; sep=" "}')
    tests="skipped"
    if [ "$SKIP_TEST" != 1 ]; then
        if cargo test -j 1 --release --features sim --test sim --test at_rest \
            >"$LOGS/$name.test.log" 2>&1; then
            tests="PASSED"
        else
            tests=$(grep -E '^test .* FAILED$' "$LOGS/$name.test.log" | awk '{print $2}' |
                paste -sd' ' -)
            tests=${tests:-"build failed"}
        fi
    fi
    revert
    seconds=$(($(date +%s) - started))
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "${first:--}" "$count" "${checks:--}" "$tests" \
        "$seconds" | tee -a "$OUT"
done
