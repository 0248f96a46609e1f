"""Issue 16's ambiguous commit, for real: a real PostgreSQL behind a proxy that cuts a
COMMIT (pg_cut_proxy.py) and a real MinIO with the identities `up` installs (the policies
of render.py). When a failover cuts a COMMIT after the server committed it, the client
sees an error and DuckLake's rollback deletes the transaction's files, which the
committed snapshot names: the table can no longer be read. The backend's defence:

* its writer's identity cannot delete in the lake (the rollback keeps the files);
* every ingest carries a marker: after a failed COMMIT the backend asks the catalog, and
  answers success if the marker's snapshot is there (no lost file) or runs the ingest
  again if it is not (no duplicate);
* maintenance's own identity deletes the orphans a failed transaction leaves.

The last test shows the hazard itself with a writer that may delete: the scenario is the
real one, and the policy is what saves the lake."""

from __future__ import annotations

import io
import json

import pytest
from fastapi.testclient import TestClient
from minio import Minio
from minio.error import S3Error

from ducklake_backend import commits, lake as lake_module
from ducklake_backend.app import create_app
from ducklake_backend.config import Settings
from ducklake_infra.provision import render, spec_file

from backend_testlib import AUTH, LAKE_BUCKET, RAW_BUCKET, add_minio_user, backend_env
from conftest import running_minio
from pg_cut_proxy import CommitCutProxy
from test_backend_integration import wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

WRITER, WRITER_SK = "amb-writer", "amb-Writer-Secret-4410ab"
MAINT, MAINT_SK = "amb-maintenance", "amb-Maint-Secret-9902cd"
ROWS = b"id\n" + b"".join(f"{i}\n".encode() for i in range(10))     # sum 45


@pytest.fixture(scope="module")
def minio(tmp_path_factory):
    """A MinIO of this module's own: maintenance deletes every orphan under the lake
    bucket, other modules' files included."""
    with running_minio(tmp_path_factory.mktemp("amb-data"),
                       tmp_path_factory.mktemp("amb-log") / "minio.log") as server:
        spec = spec_file.load()
        assert (spec.raw_bucket, spec.lake_bucket) == (RAW_BUCKET, LAKE_BUCKET)
        work = tmp_path_factory.mktemp("amb-policies")
        add_minio_user(server, WRITER, WRITER_SK, render.minio_backend_policy(spec), work)
        add_minio_user(server, MAINT, MAINT_SK, render.minio_maintenance_policy(spec), work)
        yield server


def _database(pg, name: str):
    import psycopg
    with psycopg.connect(pg.conninfo(), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name}")
        con.execute(f"CREATE DATABASE {name}")


@pytest.fixture(scope="module")
def backend(pg_server, minio):
    """The backend with the identities `up` gives it, its catalog behind the proxy."""
    _database(pg_server, "amb_catalog")
    proxy = CommitCutProxy((pg_server.host, pg_server.port))
    env = backend_env(pg_server, minio, DUCKLAKE_PG_PORT=str(proxy.port), DUCKLAKE_PG_DB="amb_catalog",
                      DUCKLAKE_S3_ACCESS_KEY=WRITER, DUCKLAKE_S3_SECRET_KEY=WRITER_SK,
                      DUCKLAKE_MAINTENANCE_S3_ACCESS_KEY=MAINT, DUCKLAKE_MAINTENANCE_S3_SECRET_KEY=MAINT_SK,
                      DUCKLAKE_MAINTENANCE_KEEP_S="0", DUCKLAKE_DATA_INLINING_ROW_LIMIT="0")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        r = c.post("/datasets/amb.csv", content=ROWS, headers={"content-type": "text/csv"})
        assert r.status_code == 201, r.text
        r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "create"})
        assert r.status_code == 200, r.text
        yield c, proxy
    proxy.close()


def _count_and_sum(c, table="amb"):
    r = c.post("/query", json={"sql": f"SELECT count(*), sum(id) FROM {table}"})
    assert r.status_code == 200, r.text
    return tuple(r.json()["rows"][0])


def _files(c, bucket=LAKE_BUCKET):
    """(the files the catalog names, the objects in the lake bucket)."""
    cur = c.app.state.lake._cursor(read_only=True)
    try:
        named = {r[0] for r in cur.execute(
            "SELECT data_file FROM ducklake_list_files('lake', 'amb', schema => 'main')").fetchall()}
    finally:
        cur.close()
    s3 = c.app.state.lake.settings
    root = Minio(s3.s3_endpoint, access_key="ducklake-test-access", secret_key="s3-Test-Secret-91be2d",
                 secure=False)
    stored = {f"s3://{bucket}/{o.object_name}" for o in root.list_objects(bucket, recursive=True)}
    return named, stored


def test_the_writer_cannot_delete_and_maintenance_only_lists_and_deletes(minio):
    writer = Minio(minio.endpoint, access_key=WRITER, secret_key=WRITER_SK, secure=False)
    maint = Minio(minio.endpoint, access_key=MAINT, secret_key=MAINT_SK, secure=False)
    for bucket in (RAW_BUCKET, LAKE_BUCKET):
        writer.put_object(bucket, "probe/x", io.BytesIO(b"x"), 1)
        assert writer.get_object(bucket, "probe/x").read() == b"x"
        with pytest.raises(S3Error) as ei:
            writer.remove_object(bucket, "probe/x")
        assert ei.value.code == "AccessDenied", (bucket, ei.value.code)
    assert [o.object_name for o in maint.list_objects(LAKE_BUCKET, prefix="probe/")] == ["probe/x"]
    for attempt in (lambda: maint.put_object(LAKE_BUCKET, "probe/y", io.BytesIO(b"y"), 1),
                    lambda: maint.get_object(LAKE_BUCKET, "probe/x"),
                    lambda: list(maint.list_objects(RAW_BUCKET)),
                    lambda: maint.remove_object(RAW_BUCKET, "probe/x")):
        with pytest.raises(S3Error) as ei:
            attempt()
        assert ei.value.code == "AccessDenied", ei.value.code
    maint.remove_object(LAKE_BUCKET, "probe/x")
    assert not list(maint.list_objects(LAKE_BUCKET, prefix="probe/"))
    Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key,
          secure=False).remove_object(RAW_BUCKET, "probe/x")


def test_an_ambiguous_commit_answers_success_and_keeps_its_files(backend):
    c, proxy = backend
    before = _count_and_sum(c)
    proxy.arm(land=True)
    r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"})
    assert proxy.cut.is_set(), "the proxy did not cut the COMMIT"
    assert r.status_code == 200, r.text
    assert r.json()["rows_ingested"] == 10
    # the snapshot answered is the one that carries this ingest (committed once)
    snaps = c.get("/tables/amb/snapshots").json()["snapshots"]
    assert r.json()["snapshot_id"] == snaps[-1]["snapshot_id"]
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45)     # every file reads
    named, stored = _files(c)
    assert named and named <= stored, f"files the catalog names are gone: {sorted(named - stored)}"


def test_a_commit_that_did_not_land_runs_again_once(backend):
    c, proxy = backend
    before = _count_and_sum(c)
    named_before, stored_before = _files(c)
    proxy.arm(land=False)
    r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"})
    assert proxy.cut.is_set(), "the proxy did not cut the COMMIT"
    assert r.status_code == 200, r.text
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45), "lost or duplicated"
    named, stored = _files(c)
    assert named <= stored
    orphans = stored - named
    assert len(orphans) > len(stored_before - named_before), \
        "the aborted transaction's file should stay (the writer cannot delete)"


def test_an_outcome_the_catalog_cannot_tell_is_a_503_that_says_so(backend, monkeypatch):
    c, proxy = backend
    monkeypatch.setattr(commits, "COMMIT_OUTCOME_S", 2)
    before = _count_and_sum(c)
    proxy.arm(land=True, sever=True)
    try:
        r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"})
    finally:
        proxy.restore()
    assert proxy.cut.is_set()
    assert r.status_code == 503 and "outcome is unknown" in r.json()["detail"], r.text
    # it did land: its key is in the table's snapshots, and a retry with the key answers
    # that ingest instead of running it again
    key = r.json()["detail"].split("the ingest's key is ", 1)[1].split(":", 1)[0]
    snaps = c.get("/tables/amb/snapshots").json()["snapshots"]
    assert json.loads(snaps[-1]["commit_extra_info"])["ingest"] == key, (key, snaps[-1])
    again = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"},
                   headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["replayed"] is True, again.text
    assert again.json()["snapshot_id"] == snaps[-1]["snapshot_id"] and again.json()["rows_ingested"] == 10
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45)


def test_an_idempotency_key_runs_an_ingest_once(backend):
    c, _ = backend
    before = _count_and_sum(c)
    key = "client-batch:0001"
    first = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"},
                   headers={"Idempotency-Key": key})
    assert first.status_code == 200 and "replayed" not in first.json(), first.text
    again = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"},
                   headers={"Idempotency-Key": key})
    assert again.status_code == 200 and again.json()["replayed"] is True, again.text
    assert again.json()["snapshot_id"] == first.json()["snapshot_id"]
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45)
    # the same key for another request: another table, endpoint (body size), mode
    for other in (lambda: c.post("/tables/amb2/ingest", json={"dataset": "amb.csv", "mode": "create"},
                                 headers={"Idempotency-Key": key}),
                  lambda: c.post("/tables/amb/rows", content=ROWS, headers={
                      "content-type": "text/csv", "Idempotency-Key": key}),
                  lambda: c.post("/tables/AMB/ingest", json={"dataset": "amb.csv", "mode": "create"},
                                 headers={"Idempotency-Key": key})):
        r = other()
        assert r.status_code == 409 and "named another ingest" in r.json()["detail"], r.text
    # a key another replica holds (its ingest running, or its outcome unknown): 409
    from ducklake_backend.catalog_state import CatalogState
    lake = c.app.state.lake
    held = CatalogState(lake.catalog_db_cursor).acquire("ingest:client-busy:1", "replica-b", 60)
    busy = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"},
                  headers={"Idempotency-Key": "client-busy:1"})
    assert busy.status_code == 409 and "in progress" in busy.json()["detail"], busy.text
    CatalogState(lake.catalog_db_cursor).forget(held)
    # a body ingest with a key: replayed, not run twice
    k2 = "client-rows:0001"
    one = c.post("/tables/amb/rows", content=ROWS, headers={"content-type": "text/csv", "Idempotency-Key": k2})
    two = c.post("/tables/amb/rows", content=ROWS, headers={"content-type": "text/csv", "Idempotency-Key": k2})
    assert one.status_code == 200 and two.status_code == 200 and two.json()["replayed"] is True, two.text
    assert _count_and_sum(c) == (before[0] + 20, before[1] + 90)
    for bad in ("", " x", "a" * 129, "x/y", "x'--", "{{x}}"):
        r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"},
                   headers={"Idempotency-Key": bad})
        assert r.status_code in (400, 422), (bad, r.status_code, r.text)
    assert _count_and_sum(c) == (before[0] + 20, before[1] + 90)
    named, stored = _files(c)
    assert named <= stored


def test_a_commit_still_waiting_for_its_standby_is_waited_for_not_run_again(backend, pg_server):
    """The COMMIT reached the server, which waits for a synchronous standby (here one that
    does not exist) when the connection is cut: not visible yet, but it will be. The
    backend must wait for it (a session of its role still in COMMIT), not run the ingest
    again: a duplicate. The standby requirement is lifted after 3 s."""
    import threading

    import psycopg
    c, proxy = backend

    def sync_standbys(names: str) -> None:
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
            con.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
            con.execute("SELECT pg_reload_conf()")

    before = _count_and_sum(c)
    sync_standbys("ghost")
    lift = threading.Timer(3.0, sync_standbys, [""])
    try:
        proxy.arm(land="sent")
        lift.start()
        r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"})
    finally:
        lift.join()
        sync_standbys("")
    assert proxy.cut.is_set()
    assert r.status_code == 200, r.text
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45), "lost or duplicated"


def test_maintenance_deletes_the_orphans_and_nothing_the_lake_names(backend, monkeypatch):
    c, _ = backend
    monkeypatch.setattr(lake_module, "ORPHAN_MIN_AGE_S", 0)
    before = _count_and_sum(c)
    named, stored = _files(c)
    assert stored - named, "the earlier tests leave orphans"
    r = c.post("/maintenance")
    assert r.status_code == 200, r.text
    assert r.json()["orphans_deleted"] >= 1, r.json()
    assert _count_and_sum(c) == before
    named, stored = _files(c)
    assert named == stored, f"left: {sorted(stored - named)}, missing: {sorted(named - stored)}"


def test_with_a_writer_that_may_delete_the_hazard_is_real(pg_server, minio):
    """The negative: the same cut with the root identity as the writer (it may delete)
    loses a file of a committed snapshot. Its own catalog and bucket."""
    _database(pg_server, "amb_hazard")
    root = Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key, secure=False)
    root.make_bucket("lake-hazard")
    proxy = CommitCutProxy((pg_server.host, pg_server.port))
    env = backend_env(pg_server, minio, DUCKLAKE_PG_PORT=str(proxy.port), DUCKLAKE_PG_DB="amb_hazard",
                      DUCKLAKE_LAKE_BUCKET="lake-hazard", DUCKLAKE_DATA_INLINING_ROW_LIMIT="0")
    app = create_app(Settings.from_env(env), configure_logs=False)
    try:
        with TestClient(app, headers=AUTH) as c:
            wait_ready(c)
            assert c.post("/datasets/hz.csv", content=ROWS,
                          headers={"content-type": "text/csv"}).status_code == 201
            assert c.post("/tables/amb/ingest", json={"dataset": "hz.csv", "mode": "create"}).status_code == 200
            proxy.arm(land=True)
            c.post("/tables/amb/ingest", json={"dataset": "hz.csv", "mode": "append"})
            assert proxy.cut.is_set()
            named, stored = _files(c, bucket="lake-hazard")
            assert named - stored, "a writer that may delete was expected to lose a committed file"
            r = c.post("/query", json={"sql": "SELECT sum(id) FROM amb"})
            assert r.status_code != 200, r.text
    finally:
        proxy.close()


def test_a_claim_that_cannot_be_released_does_not_fail_a_landed_ingest(backend, monkeypatch):
    """The key's claim is released after the ingest; when the catalog is gone by then, the
    ingest still answers 200 (the claim runs out by itself)."""
    from ducklake_backend.catalog_state import CatalogState
    from ducklake_backend.errors import Unavailable
    c, _ = backend
    before = _count_and_sum(c)

    def gone(self, lease):
        raise Unavailable("the catalog database failed to forget the lease: gone")
    monkeypatch.setattr(CatalogState, "forget", gone)
    r = c.post("/tables/amb/ingest", json={"dataset": "amb.csv", "mode": "append"})
    assert r.status_code == 200, r.text
    assert _count_and_sum(c) == (before[0] + 10, before[1] + 45)
