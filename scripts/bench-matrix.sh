#!/usr/bin/env bash
# The benchmark_table_vs_sqlite matrix: every scale x key distribution, RUNS runs each, one
# JSON line per run appended to $OUT; then the medians as a markdown table ($TABLE) and the
# plot of get latency and insert throughput versus scale ($SVG).
#
#   scripts/bench-matrix.sh                                  # the full matrix (hours; 100M needs ~25 GiB, see below)
#   SCALES="10000 100000 1000000" RUNS=3 scripts/bench-matrix.sh
#   SCALES=10000000 DISTS=uniform scripts/bench-matrix.sh    # the 10M target row
#   REPORT_ONLY=1 scripts/bench-matrix.sh                    # redo table and plot from $OUT
#
# A scale whose estimated memory (BYTES_PER_ROW per row for the larger side, measured at
# 1M and 10M rows; see docs/BENCHMARKS.md) exceeds MemAvailable is skipped with a message,
# not run into the OOM killer. Timed runs are not niced; the build is.
set -euo pipefail
cd "$(dirname "$0")/.."

SCALES=${SCALES:-"10000 100000 1000000 10000000 100000000"}
DISTS=${DISTS:-"sequential uniform zipf skewed clustered timeseries"}
SYNC=${SYNC:-batch}
RUNS=${RUNS:-3}
SEED=${SEED:-1}
BYTES_PER_ROW=${BYTES_PER_ROW:-80}
OUT=${OUT:-docs/bench/results.jsonl}
TABLE=${TABLE:-docs/bench/results.md}
SVG=${SVG:-docs/bench/scale.svg}
EXTRA=${EXTRA:-}
BIN=target/release/benchmark_table_vs_sqlite

nice -n 10 cargo build --release -p omendb-bench --bin benchmark_table_vs_sqlite
mkdir -p "$(dirname "$OUT")"

if [[ -z "${REPORT_ONLY:-}" ]]; then
  for rows in $SCALES; do
    available_kib=$(awk '/MemAvailable/ {print $2}' /proc/meminfo)
    needed_kib=$(( rows * BYTES_PER_ROW / 1024 ))
    if (( needed_kib > available_kib )); then
      echo "skip $rows rows: needs ~$(( needed_kib / 1048576 )) GiB, $(( available_kib / 1048576 )) GiB available" >&2
      continue
    fi
    for dist in $DISTS; do
      for run in $(seq 1 "$RUNS"); do
        echo "== $rows rows, $dist, sync $SYNC, run $run/$RUNS, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        # shellcheck disable=SC2086
        "$BIN" --rows "$rows" --dist "$dist" --sync "$SYNC" --seed "$SEED" $EXTRA | tail -n 1 >> "$OUT"
      done
    done
  done
fi

"$BIN" --report "$OUT" --svg "$SVG" > "$TABLE"
echo "table: $TABLE, plot: $SVG" >&2
