#!/usr/bin/env python3
"""What the /query allowlist costs: typical queries run with and without the check
(DuckDB's json_serialize_sql parse + the tree walk), in the same process, same data.

    .venv/bin/python scripts/bench_query_allowlist.py [--rows 200000] [--repeat 30]

Prints the median latency of each query both ways and the ratio, then the process's
peak RSS after the refused probes and a DuckDB bounded by memory_limit.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend" / "src"))
from ducklake_backend.errors import ApiError  # noqa: E402
from ducklake_backend.sqlallow import check_query  # noqa: E402

QUERIES = [
    "SELECT count(*) FROM trips",
    "SELECT day, count(*), sum(amount), avg(amount) FROM trips GROUP BY day ORDER BY day",
    "SELECT id, name FROM trips WHERE id BETWEEN 1000 AND 1100 ORDER BY id",
    "WITH t AS (SELECT day, sum(amount) s FROM trips GROUP BY day) SELECT max(s) FROM t",
    "SELECT id, row_number() OVER (PARTITION BY day ORDER BY amount) r FROM trips LIMIT 100",
]
PROBES = ["SELECT path FROM duckdb_databases()", "SELECT * FROM duckdb_secrets()",
          "SELECT getenv('HOME')", "SELECT * FROM read_text('/etc/passwd')",
          "SELECT repeat('x', 1000000000)", "SELECT * FROM 's3://lake/x.parquet'"]


def median_ms(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    con = duckdb.connect(config={"memory_limit": "256MiB", "threads": 2})
    con.execute(f"CREATE TABLE trips AS SELECT range AS id, 'n' || range AS name, "
                f"(range % 97) * 1.5 AS amount, DATE '2024-01-01' + (range % 365)::INT AS day "
                f"FROM range({args.rows})")
    tables = ["trips"]
    print(f"{'query':<60} {'plain ms':>9} {'checked ms':>11} {'ratio':>6}")
    ratios = []
    for sql in QUERIES:
        plain = median_ms(lambda: con.execute(sql).fetchall(), args.repeat)
        checked = median_ms(lambda: (check_query(sql, tables), con.execute(sql).fetchall()),
                            args.repeat)
        ratios.append(checked / plain)
        print(f"{sql[:60]:<60} {plain:9.2f} {checked:11.2f} {checked / plain:6.2f}")
    check_only = median_ms(lambda: [check_query(q, tables) for q in QUERIES], args.repeat)
    print(f"allowlist check alone: {check_only / len(QUERIES):.3f} ms per query; "
          f"median ratio checked/plain {statistics.median(ratios):.2f}")
    refused = 0
    for sql in PROBES * 20:
        try:
            check_query(sql, tables)
        except ApiError:
            refused += 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{refused}/{len(PROBES) * 20} probes refused; peak RSS {peak:.0f} MiB "
          f"(DuckDB memory_limit 256 MiB, {args.rows} rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
