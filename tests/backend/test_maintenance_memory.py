"""Maintenance within the backend's memory (issue 13): on a kept cluster compacting a table
of many small files of wide rows (20,000-row batches of ~4 kB rows) ran DuckDB out of
memory at its 358 MiB limit ("failed to allocate data of size 128.0 MiB"), so the small
files piled up and BE-MAINT-001 failed.

The same failure, scaled down in memory rather than up in data: DuckDB's limit is
128 MiB (DUCKLAKE_MEMORY_LIMIT_BYTES, of which DuckDB gets DUCKDB_SHARE), and the table
holds 30 files of 2,000 rows of 4,000 bytes (~240 MB in memory, a few hundred kB each
on disk: the rows compress well, DuckDB's buffers hold them uncompressed). Real
PostgreSQL and MinIO, a catalog database of its own."""

from __future__ import annotations

import math

import psycopg
import pytest
from fastapi.testclient import TestClient

import duckdb
from ducklake_backend.app import create_app
from ducklake_backend.config import DUCKDB_SHARE, Settings, duckdb_memory_limit

from backend_testlib import AUTH, backend_env
from test_backend_integration import upload, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_maintenance_memory"
MIB = 1024 * 1024
DUCKDB_LIMIT = 128 * MIB
FILES, ROWS, WIDTH = 30, 2000, 4000     # 4,000 bytes a row: md5 hex (32) x 125
PARQUET = "application/vnd.apache.parquet"


@pytest.fixture(scope="module")
def wide(pg_server, minio_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {DB}")
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=DB, DUCKLAKE_MAINTENANCE_KEEP_S="0",
                      DUCKLAKE_DATA_INLINING_ROW_LIMIT="0",
                      DUCKLAKE_MEMORY_LIMIT_BYTES=str(math.ceil(DUCKDB_LIMIT / DUCKDB_SHARE)))
    settings = Settings.from_env(env)
    assert duckdb_memory_limit(settings) // MIB == DUCKDB_LIMIT // MIB
    app = create_app(settings, configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        yield c


def live_files(pg_server, table: str) -> int:
    with psycopg.connect(pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={DB}")) as con:
        return con.execute(
            "SELECT count(*) FROM ducklake_data_file f JOIN ducklake_table t USING (table_id) "
            "WHERE t.table_name = %s AND f.end_snapshot IS NULL AND t.end_snapshot IS NULL",
            (table,)).fetchone()[0]


def wide_parquet(tmp_path, i: int) -> bytes:
    path = tmp_path / f"wide-{i}.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT range AS id, repeat(md5(range::VARCHAR), {WIDTH // 32}) AS payload "
        f"FROM range({i * ROWS}, {(i + 1) * ROWS})) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def test_maintenance_compacts_wide_rows_within_the_memory_limit(wide, pg_server, tmp_path):
    c = wide
    for i in range(FILES):
        assert upload(c, f"wide-{i}.parquet", wide_parquet(tmp_path, i), PARQUET).status_code == 201
        r = c.post("/tables/wide/ingest", json={"dataset": f"wide-{i}.parquet",
                                                "mode": "create" if i == 0 else "append"})
        assert r.status_code == 200, r.text
    before = live_files(pg_server, "wide")
    assert before == FILES                        # one file per append

    r = c.post("/maintenance")
    assert r.status_code == 200, r.text           # was: 500, DuckDB out of memory
    done = r.json()
    assert done["ok"] and done["files_merged"] == FILES and done["files_written"] >= 1, done
    after = live_files(pg_server, "wide")
    assert after < before, (before, after)

    total = FILES * ROWS
    res = c.post("/query", json={"sql": (
        "SELECT count(*) AS n, count(DISTINCT id) AS d, min(id) AS lo, max(id) AS hi, "
        "sum(length(payload)) AS bytes, "
        "sum(CASE WHEN starts_with(payload, md5(CAST(id AS VARCHAR))) THEN 0 ELSE 1 END) AS bad "
        "FROM wide")}).json()
    # every row exactly once, none lost, none altered
    assert res["rows"] == [[total, total, 0, total - 1, total * WIDTH, 0]], res
    status = c.get("/maintenance").json()
    assert status["last"]["ok"], status
