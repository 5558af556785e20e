#!/usr/bin/env bash
# DuckDB over an OmenDB database directory, for bench_htap --duckdb: installs DuckDB for
# Python into its own venv (target/duckdb-venv, made on first use), then on one thread:
#   - sum(v) over the cold segment files as they are (read_parquet of cold/*.parquet);
#   - sum(v) over a range of RANGE keys of those files;
#   - sum(v) over a native DuckDB table of the same rows (loaded from the files, sorted
#     by key), and the same range on it.
# Medians of REPEAT runs after one warm-up; the last line printed is one JSON object.
# Usage: scripts/duckdb-bench.sh DB_DIR [RANGE] [REPEAT]
set -euo pipefail
dir=${1:?usage: duckdb-bench.sh DB_DIR [RANGE] [REPEAT]}
range=${2:-1000000}
repeat=${3:-5}
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "duckdb>=1.1" >&2
fi
exec "$venv/bin/python" - "$dir" "$range" "$repeat" <<'PY'
import json, statistics, sys, time, glob
import duckdb
dir, range_keys, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
files = sorted(glob.glob(f"{dir}/cold/*.parquet"))
if not files:
    sys.exit("no segment files under " + dir + "/cold")
con = duckdb.connect()
con.execute("PRAGMA threads=1")
src = "read_parquet([" + ",".join(f"'{f}'" for f in files) + "])"

def timed(sql):
    con.execute(sql).fetchall()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        result = con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result

rows = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
kmin, kmax = con.execute(f"SELECT min(k), max(k) FROM {src}").fetchone()
lo = kmin + (kmax - kmin - range_keys) // 3
hi = lo + range_keys - 1
files_sum_s, _ = timed(f"SELECT sum(v) FROM {src}")
files_range_s, _ = timed(f"SELECT sum(v) FROM {src} WHERE k BETWEEN {lo} AND {hi}")
t = time.perf_counter()
con.execute(f"CREATE TABLE t AS SELECT * FROM {src} ORDER BY k")
load_s = time.perf_counter() - t
native_sum_s, _ = timed("SELECT sum(v) FROM t")
native_range_s, _ = timed(f"SELECT sum(v) FROM t WHERE k BETWEEN {lo} AND {hi}")
print(json.dumps({
    "duckdb_version": duckdb.__version__,
    "files": len(files),
    "rows": rows,
    "files_sum_s": round(files_sum_s, 4),
    "files_sum_rows_per_s": round(rows / files_sum_s),
    "files_range_ms": round(files_range_s * 1e3, 2),
    "native_load_s": round(load_s, 2),
    "native_sum_s": round(native_sum_s, 4),
    "native_sum_rows_per_s": round(rows / native_sum_s),
    "native_range_ms": round(native_range_s * 1e3, 2),
}))
PY
