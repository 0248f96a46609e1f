"""Maintenance of the lake (issue 13): small files compacted, old snapshots expired,
unreferenced files deleted, while another writer commits; every acknowledged row is
still there exactly once. Real PostgreSQL and MinIO, a catalog database of its own (the
other backend tests time-travel to old snapshots)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from fastapi.testclient import TestClient

from ducklake_backend.app import create_app
from ducklake_backend.config import Settings

from backend_testlib import AUTH, backend_env
from test_backend_integration import make_rows, to_csv, upload, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_maintenance"
BATCHES, ROWS = 12, 30          # small appends: one Parquet file each


@pytest.fixture(scope="module")
def maint(pg_server, minio_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {DB}")
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=DB, DUCKLAKE_MAINTENANCE_KEEP_S="0",
                      DUCKLAKE_DATA_INLINING_ROW_LIMIT="0")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        yield c, app


def live_files(pg_server, table: str) -> int:
    with psycopg.connect(pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={DB}")) as con:
        return con.execute(
            "SELECT count(*) FROM ducklake_data_file f JOIN ducklake_table t USING (table_id) "
            "WHERE t.table_name = %s AND f.end_snapshot IS NULL AND t.end_snapshot IS NULL",
            (table,)).fetchone()[0]


def ingest_batch(c, i: int, mode: str = "append") -> None:
    assert upload(c, f"maint-{i}.csv", to_csv(make_rows(i * ROWS, ROWS))).status_code == 201
    r = c.post("/tables/maint/ingest", json={"dataset": f"maint-{i}.csv", "mode": mode})
    assert r.status_code == 200, r.text


def test_maintenance_compacts_and_cleans_while_a_writer_writes(maint, pg_server):
    c, app = maint
    assert c.get("/maintenance").json() == {"interval_s": 0, "keep_s": 0, "last": None}
    ingest_batch(c, 0, "create")
    for i in range(1, BATCHES):
        ingest_batch(c, i)
    before = live_files(pg_server, "maint")
    assert before >= BATCHES                      # one small file per append
    # a second writer commits while maintenance runs (the backend's lock orders them in
    # this process; DuckLake's conflict retry covers writers elsewhere)
    writer = threading.Thread(target=lambda: [ingest_batch(c, i) for i in range(BATCHES, BATCHES + 4)])
    writer.start()
    r = c.post("/maintenance")
    writer.join()
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["ok"] and done["files_merged"] >= 2 and done["files_written"] >= 1
    # the files merged away are deleted once no kept snapshot needs them (keep 0 s)
    second = c.post("/maintenance").json()
    assert second["ok"] and done["files_deleted"] + second["files_deleted"] >= 2
    after = live_files(pg_server, "maint")
    assert after < before, (before, after)
    total = (BATCHES + 4) * ROWS
    res = c.post("/query", json={"sql": "SELECT count(*) AS n, count(DISTINCT id) AS d, "
                                        "min(id) AS lo, max(id) AS hi FROM maint"}).json()
    assert res["rows"] == [[total, total, 0, total - 1]], res  # every row once, none lost
    status = c.get("/maintenance").json()
    assert status["last"]["ok"] and status["last"]["started_at"]


def test_maintenance_needs_the_token(maint):
    c, _ = maint
    r = c.post("/maintenance", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = c.get("/maintenance", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
