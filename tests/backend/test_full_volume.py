"""A full object-storage volume (issue 13): MinIO on a real size-limited filesystem (a
64 MiB tmpfs, see ``small_minio``) is filled almost to the brim; then

- an upload fails with a clear, retryable error (503 naming the full storage), quickly;
- an ingest fails the same way and nothing of it becomes visible: same row count, same
  snapshot, no table half-written;
- once space is freed, the same upload and ingest succeed, and every row is there once;
- the failed writes leave no object in the bucket, and the catalog and the bucket agree
  (every referenced file exists, no file is unreferenced).

Real MinIO, real PostgreSQL, the backend over real HTTP (uvicorn)."""

from __future__ import annotations

import base64
import io
import os
import random
import time

import httpx
import psycopg
import pytest
from minio.error import S3Error

from backend_testlib import AUTH, ServedBackend, backend_env, free_port

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_full_volume"
MIB = 1024 * 1024


def random_csv(start: int, rows: int, seed: int) -> bytes:
    """Rows that do not compress (random base64): their Parquet is about as big as they are."""
    rnd = random.Random(seed)
    buf = io.StringIO()
    buf.write("id,payload\n")
    for i in range(start, start + rows):
        buf.write(f"{i},{base64.b64encode(rnd.randbytes(72)).decode()}\n")
    return buf.getvalue().encode()


@pytest.fixture(scope="module")
def full(small_minio, pg_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {DB}")
    env = backend_env(pg_server, small_minio.server, DUCKLAKE_PG_DB=DB,
                      DUCKLAKE_DATA_INLINING_ROW_LIMIT="0", DUCKLAKE_MAINTENANCE_KEEP_S="0",
                      DUCKLAKE_MAX_UPLOAD_BYTES=str(32 * MIB))
    backend = ServedBackend(env, free_port())
    backend.start()
    try:
        with httpx.Client(base_url=backend.base, headers=AUTH, timeout=120) as c:
            yield c, small_minio
    finally:
        backend.stop()


def count(c, table: str) -> list:
    r = c.post("/query", json={"sql": f"SELECT count(*), count(DISTINCT id) FROM {table}"})
    assert r.status_code == 200, r.text
    return r.json()["rows"][0]


def lake_objects(vol) -> set[str]:
    return {o.object_name for o in vol.server.client().list_objects("lake", recursive=True)}


def catalog_files(pg_server) -> set[str]:
    """Every data file the catalog references (live or ended), as bucket object names."""
    info = pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={DB}")
    with psycopg.connect(info) as con:
        rows = con.execute(
            "SELECT s.path || t.path || f.path FROM ducklake_data_file f "
            "JOIN ducklake_table t USING (table_id) JOIN ducklake_schema s USING (schema_id) "
            "WHERE t.end_snapshot IS NULL").fetchall()
    return {r[0] for r in rows}


def fill(vol, leave: int) -> int:
    """An object in the raw bucket that leaves about ``leave`` bytes free; its size."""
    client = vol.server.client()
    size = vol.free_bytes() - leave
    client.put_object("raw", "ballast.bin", io.BytesIO(os.urandom(size)), size)
    # MinIO caches a drive's free space for a moment: until it sees the fill, a write
    # that runs out of room mid-stream is a 500, not the 507 this test is about
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:        # more than is left: refused one way or the other
            client.put_object("raw", "probe.bin", io.BytesIO(bytes(2 * leave)), 2 * leave)
            client.remove_object("raw", "probe.bin")
        except S3Error as exc:
            if exc.code == "XMinioStorageFull":
                return size
        except Exception:   # noqa: BLE001 - a 500 while MinIO's view is stale
            pass
        time.sleep(0.5)
    raise AssertionError("MinIO did not report its volume full within 15 s")


def test_a_full_volume_fails_writes_clearly_and_recovers(full, pg_server):
    c, vol = full
    assert c.post("/datasets/seed.csv", content=random_csv(0, 1000, 1),
                  headers={"content-type": "text/csv"}).status_code == 201
    r = c.post("/tables/vol/ingest", json={"dataset": "seed.csv", "mode": "create"})
    assert r.status_code == 200, r.text
    snap_before = r.json()["snapshot_id"]
    # uploaded while there is room; ingested when there is none (its Parquet is ~6 MB)
    big = random_csv(1000, 60_000, 2)
    assert c.post("/datasets/big.csv", content=big,
                  headers={"content-type": "text/csv"}).status_code == 201
    objects_before = lake_objects(vol)
    fill(vol, leave=2 * MIB)
    assert vol.free_bytes() < 3 * MIB

    # an upload bigger than the room left: a clear, retryable refusal, not a hang
    start = time.monotonic()
    r = c.post("/datasets/more.csv", content=random_csv(100_000, 30_000, 3),
               headers={"content-type": "text/csv"})
    took = time.monotonic() - start
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["detail"].startswith("object storage is full (XMinioStorageFull)"), r.text
    assert took < 30, took

    # an ingest that cannot write its data files: refused the same way, nothing visible
    start = time.monotonic()
    r = c.post("/tables/vol/ingest", json={"dataset": "big.csv", "mode": "append"})
    took = time.monotonic() - start
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["detail"].startswith("object storage is full: the data files could not be "
                                         "written and nothing was committed"), r.text
    assert took < 60, took
    assert count(c, "vol") == [1000, 1000]
    snaps = c.get("/tables/vol/snapshots").json()
    assert max(s["snapshot_id"] for s in snaps["snapshots"]) == snap_before, snaps
    # nothing half-written in the bucket either: the failed writes left no object
    assert lake_objects(vol) == objects_before

    # space freed: the same writes succeed again, as soon as MinIO sees the space (it
    # caches a drive's free space for a moment: a client retries a 503), every row once
    vol.server.client().remove_object("raw", "ballast.bin")
    deadline = time.monotonic() + 30
    while True:
        r = c.post("/tables/vol/ingest", json={"dataset": "big.csv", "mode": "append"})
        if r.status_code != 503 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert r.status_code == 200, r.text
    assert r.json()["rows_ingested"] == 60_000
    assert c.post("/datasets/more.csv", content=random_csv(100_000, 30_000, 3),
                  headers={"content-type": "text/csv"}).status_code == 201
    assert count(c, "vol") == [61_000, 61_000]

    # the catalog and the bucket agree: every file the catalog references exists, and the
    # bucket holds no file the catalog never referenced (no orphan from the failed writes)
    referenced = catalog_files(pg_server)
    objects = lake_objects(vol)
    assert referenced and referenced <= objects, sorted(referenced - objects)
    assert objects == referenced, sorted(objects - referenced)
    m = c.post("/maintenance")
    assert m.status_code == 200 and m.json()["ok"], m.text
