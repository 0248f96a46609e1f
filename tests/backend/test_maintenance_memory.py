"""Maintenance within the backend's memory (issue 13): on a kept cluster compacting a table
of many small files of wide rows (20,000-row batches of ~4 kB rows) ran DuckDB out of
memory at its 358 MiB limit ("failed to allocate data of size 128.0 MiB"), so the small
files piled up and BE-MAINT-001 failed.

Two cases, each with an app, a memory limit and a catalog database of its own (real
PostgreSQL and MinIO); the rows compress well on disk (a few MB of Parquet), DuckDB's
buffers hold them uncompressed:

* scaled: the failure scaled down in memory rather than up in data, DuckDB's limit
  128 MiB (DUCKLAKE_MEMORY_LIMIT_BYTES, of which DuckDB gets DUCKDB_SHARE) and 30 files
  of 2,000 rows of 4,000 bytes (~240 MB in memory);
* cluster: the kept cluster's figures, a 1 GiB container (DuckDB 358 MiB) and 80 MB
  batches (20,000 rows of 4,000 bytes), 8 of them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient

import duckdb
from ducklake_backend.app import create_app
from ducklake_backend.config import DUCKDB_SHARE, Settings, duckdb_memory_limit

from backend_testlib import AUTH, backend_env
from test_backend_integration import upload, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

MIB = 1024 * 1024
WIDTH = 4000                            # bytes a row: md5 hex (32) x 125
PARQUET = "application/vnd.apache.parquet"


@dataclass(frozen=True)
class Case:
    db: str
    duckdb_mib: int                     # DuckDB's memory limit
    files: int
    rows: int                           # rows a file (an append)


CASES = {"scaled": Case("ducklake_maint_mem_scaled", 128, 30, 2000),
         "cluster": Case("ducklake_maint_mem_cluster", 358, 8, 20000)}


@pytest.fixture(scope="module", params=list(CASES))
def wide(request, pg_server, minio_server):
    case = CASES[request.param]
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {case.db}")
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=case.db, DUCKLAKE_MAINTENANCE_KEEP_S="0",
                      DUCKLAKE_DATA_INLINING_ROW_LIMIT="0", DUCKLAKE_MAX_UPLOAD_BYTES=str(16 * MIB),
                      DUCKLAKE_MEMORY_LIMIT_BYTES=str(math.ceil(case.duckdb_mib * MIB / DUCKDB_SHARE)))
    settings = Settings.from_env(env)
    assert duckdb_memory_limit(settings) // MIB == case.duckdb_mib
    app = create_app(settings, configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        yield c, case


def live_files(pg_server, db: str, table: str) -> int:
    with psycopg.connect(pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={db}")) as con:
        return con.execute(
            "SELECT count(*) FROM ducklake_data_file f JOIN ducklake_table t USING (table_id) "
            "WHERE t.table_name = %s AND f.end_snapshot IS NULL AND t.end_snapshot IS NULL",
            (table,)).fetchone()[0]


def wide_parquet(tmp_path, i: int, rows: int) -> bytes:
    path = tmp_path / f"wide-{i}.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT range AS id, repeat(md5(range::VARCHAR), {WIDTH // 32}) AS payload "
        f"FROM range({i * rows}, {(i + 1) * rows})) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def test_maintenance_compacts_wide_rows_within_the_memory_limit(wide, pg_server, tmp_path):
    c, case = wide
    for i in range(case.files):
        assert upload(c, f"wide-{i}.parquet", wide_parquet(tmp_path, i, case.rows), PARQUET).status_code == 201
        r = c.post("/tables/wide/ingest", json={"dataset": f"wide-{i}.parquet",
                                                "mode": "create" if i == 0 else "append"})
        assert r.status_code == 200, r.text
    before = live_files(pg_server, case.db, "wide")
    assert before == case.files                   # one file per append

    r = c.post("/maintenance")
    assert r.status_code == 200, r.text           # was: 500, DuckDB out of memory
    done = r.json()
    assert done["ok"] and done["files_merged"] == case.files and done["files_written"] >= 1, done
    after = live_files(pg_server, case.db, "wide")
    assert after < before, (before, after)

    total = case.files * case.rows
    res = c.post("/query", json={"sql": (
        "SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi, "
        "sum(length(payload)) AS bytes, "
        "sum(CASE WHEN starts_with(payload, md5(CAST(id AS VARCHAR))) THEN 0 ELSE 1 END) AS bad "
        "FROM wide")}).json()
    # every row exactly once, none lost, none altered
    assert res["rows"] == [[total, total, 0, total - 1, total * WIDTH, 0]], res
    status = c.get("/maintenance").json()
    assert status["last"]["ok"], status
