"""``POST /tables/{table}/rows``: upload and ingest in one call (issue 14's ingest
throughput), with the same guarantees as the two calls: the raw copy is stored before
the snapshot commits, a failed copy rolls the ingest back, bad input is refused before
anything is written. Real PostgreSQL and MinIO, a catalog database of its own."""

from __future__ import annotations

import psycopg
import pytest
from fastapi.testclient import TestClient

from ducklake_backend.app import create_app
from ducklake_backend.config import Settings

from backend_testlib import AUTH, backend_env
from test_backend_integration import make_rows, parquet_bytes, to_csv, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_add_rows"


@pytest.fixture(scope="module")
def dbs(pg_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {DB}")
        con.execute(f"CREATE DATABASE {DB}_nocopy")
    return DB


def app_client(pg_server, minio_server, db: str, **env: str):
    app = create_app(Settings.from_env(backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=db,
                                                   **env)), configure_logs=False)
    return TestClient(app, headers=AUTH)


def add(c, table: str, dataset: str, body: bytes, mode: str = "append",
        content_type: str = "text/csv"):
    return c.post(f"/tables/{table}/rows", params={"dataset": dataset, "mode": mode},
                  content=body, headers={"content-type": content_type})


def count(c, table: str) -> list:
    r = c.post("/query", json={"sql": f"SELECT count(*), count(DISTINCT id) FROM {table}"})
    assert r.status_code == 200, r.text
    return r.json()["rows"][0]


def test_rows_go_in_with_their_raw_copy(dbs, pg_server, minio_server, tmp_path):
    with app_client(pg_server, minio_server, dbs) as c:
        wait_ready(c)
        r = add(c, "onecall", "onecall-0.csv", to_csv(make_rows(0, 300)), mode="create")
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["rows_ingested"] == 300 and got["uri"] == "s3://raw/onecall-0.csv"
        assert got["bytes"] == len(to_csv(make_rows(0, 300)))
        r = add(c, "onecall", "onecall-1.csv", to_csv(make_rows(300, 200)))
        assert r.status_code == 200, r.text
        assert r.json()["snapshot_id"] > got["snapshot_id"]
        assert count(c, "onecall") == [500, 500]
        r = add(c, "onecall_pq", "onecall-2.parquet", parquet_bytes(tmp_path, 200), mode="create",
                content_type="application/vnd.apache.parquet")
        assert r.status_code == 200 and r.json()["rows_ingested"] == 200, r.text
        # the raw copies are the datasets as sent: the two-call path can ingest them again
        stored = minio_server.client().get_object("raw", "onecall-0.csv").read()
        assert stored == to_csv(make_rows(0, 300))
        assert c.post("/tables/again/ingest", json={"dataset": "onecall-0.csv",
                                                    "mode": "create"}).status_code == 200


def test_without_a_dataset_the_rows_go_to_the_table_only(dbs, pg_server, minio_server):
    raw = {o.object_name for o in minio_server.client().list_objects("raw", recursive=True)}
    with app_client(pg_server, minio_server, dbs) as c:
        wait_ready(c)
        r = c.post("/tables/nocopy/rows", params={"mode": "create"},
                   content=to_csv(make_rows(0, 120)), headers={"content-type": "text/csv"})
        assert r.status_code == 200, r.text
        assert r.json()["rows_ingested"] == 120 and r.json()["uri"] is None
        assert count(c, "nocopy") == [120, 120]
    assert {o.object_name for o in minio_server.client().list_objects("raw", recursive=True)} == raw


@pytest.mark.parametrize("table,dataset,mode,body,ctype,status", [
    ("bad-name", "x.csv", "append", b"id\n1\n", "text/csv", 400),          # table name
    ("ok_t", "../x.csv", "append", b"id\n1\n", "text/csv", 400),           # dataset name
    ("ok_t", "x.csv", "merge", b"id\n1\n", "text/csv", 400),               # mode
    ("ok_t", "x.csv", "append", b"", "text/csv", 400),                     # empty
    ("ok_t", "x.parquet", "append", b"id\n1\n", "application/vnd.apache.parquet", 400),
    ("ok_t", "x.csv", "append", b"id\n1\n", "application/json", 415),
    ("nope", "x.csv", "append", b"id\n1\n", "text/csv", 404),              # no such table
    ("ducklake_x", "x.csv", "create", b"id\n1\n", "text/csv", 400),        # reserved
])
def test_bad_input_is_refused_and_changes_nothing(dbs, pg_server, minio_server, table, dataset,
                                                  mode, body, ctype, status):
    with app_client(pg_server, minio_server, dbs) as c:
        wait_ready(c)
        before = c.get("/tables").json()
        r = add(c, table, dataset, body, mode=mode, content_type=ctype)
        assert r.status_code == status, r.text
        assert r.json()["error"] and r.json()["detail"]
        assert c.get("/tables").json() == before


def test_a_failed_raw_copy_rolls_the_ingest_back(dbs, pg_server, minio_server):
    """No row without its raw dataset: the copy goes to a bucket that does not exist."""
    with app_client(pg_server, minio_server, f"{dbs}_nocopy",
                    DUCKLAKE_RAW_BUCKET="no-such-bucket") as c:
        r = c.post("/tables/t/ingest", json={"dataset": "x.csv", "mode": "create"})
        assert r.status_code in (404, 503)     # the bucket is missing for the two-call path too
        r = add(c, "lost", "lost-0.csv", to_csv(make_rows(0, 50)), mode="create")
        assert r.status_code == 503, r.text
        assert "no-such-bucket" in r.json()["detail"] or "NoSuchBucket" in r.json()["detail"]
        tables = c.get("/tables")
        assert tables.status_code == 200 and all(t["name"] != "lost" for t in tables.json()["tables"])
