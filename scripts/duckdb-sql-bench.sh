#!/usr/bin/env bash
# DuckDB on the rows of bench_sql: installs DuckDB for Python into its own venv
# (target/duckdb-venv, made on first use), loads EXPORT (one Parquet file of every row)
# into a table t with k as PRIMARY KEY (inserted in key order), and runs bench_sql's
# queries with DuckDB's default threads (one per core):
#   SELECT sum(v) FROM t;  the same over each LO:HI range;  SELECT v, s FROM t WHERE k = c
#   for each key of KEYS_FILE (parameterised; p50 after the first tenth);  a GROUP BY g.
# Medians of REPEAT runs after one warm-up; the last line printed is one JSON object.
# Usage: scripts/duckdb-sql-bench.sh EXPORT RANGES(LO:HI,...) KEYS_FILE [REPEAT]
set -euo pipefail
export_file=${1:?usage: duckdb-sql-bench.sh EXPORT RANGES KEYS_FILE [REPEAT]}
ranges=${2:?ranges}
keys=${3:?keys file}
repeat=${4:-5}
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/duckdb-venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet "duckdb>=1.1" >&2
fi
exec "$venv/bin/python" - "$export_file" "$ranges" "$keys" "$repeat" <<'PY'
import json, statistics, sys, time
import duckdb
export, ranges, keys_file, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
ranges = [tuple(int(x) for x in r.split(":")) for r in ranges.split(",")]
keys = [int(line) for line in open(keys_file) if line.strip()]
con = duckdb.connect()
t = time.perf_counter()
con.execute("CREATE TABLE t (k BIGINT PRIMARY KEY, v BIGINT, g BIGINT, s VARCHAR)")
con.execute(f"INSERT INTO t SELECT k, v, g, s FROM read_parquet('{export}') ORDER BY k")
load_s = time.perf_counter() - t
rows = con.execute("SELECT count(*) FROM t").fetchone()[0]

def timed(make_sql):
    con.execute(make_sql(0)).fetchall()
    times = []
    for i in range(repeat):
        sql = make_sql(i + 1)
        t = time.perf_counter()
        con.execute(sql).fetchall()
        times.append(time.perf_counter() - t)
    return statistics.median(times)

sum_s = timed(lambda i: "SELECT sum(v) FROM t")
range_s = timed(lambda i: "SELECT sum(v) FROM t WHERE k BETWEEN %d AND %d" % ranges[i % len(ranges)])
group_s = timed(lambda i: "SELECT g, count(*), sum(v) FROM t GROUP BY g")
point = []
for n, k in enumerate(keys):
    t = time.perf_counter()
    con.execute("SELECT v, s FROM t WHERE k = ?", [k]).fetchall()
    if n >= len(keys) // 10:
        point.append(time.perf_counter() - t)
print(json.dumps({
    "duckdb_version": duckdb.__version__,
    "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
    "rows": rows,
    "load_s": round(load_s, 2),
    "sum_s": round(sum_s, 4),
    "range_ms": round(range_s * 1e3, 3),
    "point_p50_us": round(statistics.median(point) * 1e6, 2),
    "group_by_s": round(group_s, 4),
}))
PY
