"""One maintenance runner among the backends sharing a catalog (distributed profile,
design step 7): two backends (replicas "replica-a" and "replica-b") on one catalog in a
real PostgreSQL, data in a real MinIO. The lease and the last run live in the catalog
database; each rule below has a test that fails without it."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

import psycopg
import pytest
from fastapi.testclient import TestClient

from ducklake_backend.app import create_app
from ducklake_backend.catalog_state import LEASE_TABLE, RUN_TABLE
from ducklake_backend.config import Settings

from backend_testlib import AUTH, backend_env
from test_backend_integration import make_rows, to_csv, upload, wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_lease"
LEASE_S = 3                     # the least the settings accept: renewed every second


@pytest.fixture(scope="module")
def replicas(pg_server, minio_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"CREATE DATABASE {DB}")
    clients = []
    try:
        for name in ("replica-a", "replica-b"):
            env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=DB, DUCKLAKE_MAINTENANCE_KEEP_S="0",
                              DUCKLAKE_DATA_INLINING_ROW_LIMIT="0", DUCKLAKE_REPLICA_NAME=name,
                              DUCKLAKE_MAINTENANCE_LEASE_S=str(LEASE_S))
            c = TestClient(create_app(Settings.from_env(env), configure_logs=False), headers=AUTH)
            c.__enter__()
            clients.append(c)
            wait_ready(c)                 # one after the other: the first creates the catalog
        a = clients[0]
        for i in range(3):
            assert upload(a, f"lease-{i}.csv", to_csv(make_rows(i * 10, 10))).status_code == 201
            r = a.post("/tables/lease/ingest", json={"dataset": f"lease-{i}.csv",
                                                      "mode": "create" if i == 0 else "append"})
            assert r.status_code == 200, r.text
        yield clients
    finally:
        for c in clients:
            c.__exit__(None, None, None)


@pytest.fixture
def catalog(pg_server):
    with psycopg.connect(pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={DB}"),
                         autocommit=True) as con:
        yield con


class Held:
    """Wraps a replica's Lake.maintain: each call is counted, then waits for ``go``
    (the real maintenance runs after), so a run lasts as long as a test needs."""

    def __init__(self, lake):
        self.lake, self.real = lake, lake.maintain
        self.calls, self.entered, self.go = 0, threading.Event(), threading.Event()

    def __call__(self, keep_s):
        self.calls += 1
        self.entered.set()
        assert self.go.wait(60), "the test never let maintenance go on"
        return self.real(keep_s)

    def __enter__(self):
        self.lake.maintain = self
        return self

    def __exit__(self, *exc):
        self.go.set()
        self.lake.maintain = self.real


def lake_of(c):
    return c.app.state.lake


def free_the_lease(catalog):
    catalog.execute(f"UPDATE {LEASE_TABLE} SET holder = NULL, token = NULL, expires_at = now()")


def test_two_replicas_at_once_run_maintenance_once(replicas):
    a, b = replicas
    with Held(lake_of(a)) as held_a, Held(lake_of(b)) as held_b:
        answers = {}

        def post(name, c):
            answers[name] = c.post("/maintenance")

        threads = [threading.Thread(target=post, args=(n, c)) for n, c in (("a", a), ("b", b))]
        for t in threads:
            t.start()
        # whichever took the lease waits inside maintenance until the other has its answer
        deadline = time.monotonic() + 30
        while len(answers) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        held_a.go.set()
        held_b.go.set()
        for t in threads:
            t.join(60)
    codes = sorted(r.status_code for r in answers.values())
    assert codes == [200, 409], {k: (r.status_code, r.text) for k, r in answers.items()}
    assert held_a.calls + held_b.calls == 1        # the work was done once
    ran = "a" if answers["a"].status_code == 200 else "b"
    refused = answers["b" if ran == "a" else "a"].json()
    assert refused["error"] == "lease_held"
    assert "another replica" in refused["detail"] and f"replica-{ran}" in refused["detail"], refused
    assert answers[ran].json()["ok"] and answers[ran].json()["replica"] == f"replica-{ran}"


def test_the_lease_is_released_after_a_run(replicas):
    a, b = replicas
    assert a.post("/maintenance").status_code == 200
    # right after: the other replica need not wait for the lease to run out
    r = b.post("/maintenance")
    assert r.status_code == 200, r.text


def test_the_lease_is_renewed_while_a_run_lasts(replicas):
    a, b = replicas
    with Held(lake_of(a)) as held:
        runner = threading.Thread(target=lambda: a.post("/maintenance"))
        runner.start()
        assert held.entered.wait(30)
        time.sleep(LEASE_S * 2)                    # longer than one lease: renewed meanwhile
        r = b.post("/maintenance")
        held.go.set()
        runner.join(60)
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "lease_held" and "replica-a" in r.json()["detail"]


def test_a_crashed_holders_lease_runs_out_and_is_taken(replicas, catalog):
    a, _ = replicas
    a.post("/maintenance")                         # the lease row exists
    catalog.execute(f"UPDATE {LEASE_TABLE} SET holder = 'crashed-pod', token = 'gone', "
                    "expires_at = now() + interval '2 seconds'")
    try:
        r = a.post("/maintenance")
        assert r.status_code == 409 and "crashed-pod" in r.json()["detail"], r.text
        time.sleep(2.5)                            # nobody releases it: it runs out
        r = a.post("/maintenance")
        assert r.status_code == 200, r.text
        assert r.json()["replica"] == "replica-a"
        holder = catalog.execute(f"SELECT holder FROM {LEASE_TABLE}").fetchone()[0]
        assert holder is None                      # released after the run
    finally:
        free_the_lease(catalog)


def test_every_replica_reports_the_same_last_run(replicas, catalog):
    a, b = replicas
    done = b.post("/maintenance")
    assert done.status_code == 200, done.text
    seen_a, seen_b = a.get("/maintenance"), b.get("/maintenance")
    assert seen_a.status_code == seen_b.status_code == 200
    assert seen_a.json() == seen_b.json()
    last = seen_a.json()["last"]
    assert last == done.json() and last["replica"] == "replica-b" and last["ok"]
    for key in ("started_at", "files_merged", "files_written", "snapshots_expired", "files_deleted",
                "seconds"):
        assert key in last, last
    assert set(seen_a.json()) >= {"interval_s", "keep_s", "last"}
    row = catalog.execute(f"SELECT replica FROM {RUN_TABLE} WHERE name = 'maintenance'").fetchone()
    assert row == ("replica-b",)


def test_a_failed_run_is_recorded_for_every_replica(replicas):
    a, b = replicas
    from ducklake_backend.errors import Unavailable

    def broken(keep_s):
        raise Unavailable("object storage unreachable (test)")

    real, lake_of(a).maintain = lake_of(a).maintain, broken
    try:
        assert a.post("/maintenance").status_code == 503
    finally:
        lake_of(a).maintain = real
    last = b.get("/maintenance").json()["last"]
    assert last["ok"] is False and last["replica"] == "replica-a"
    assert "object storage unreachable" in last["error"]
    assert b.post("/maintenance").status_code == 200      # the failed run released the lease


def test_the_schedule_skips_while_another_replica_runs(replicas, caplog):
    a, b = replicas
    scheduled_b = b.app.state.maintenance
    with Held(lake_of(a)) as held_a, Held(lake_of(b)) as held_b:
        runner = threading.Thread(target=lambda: a.post("/maintenance"))
        runner.start()
        assert held_a.entered.wait(30)
        with caplog.at_level(logging.INFO, logger="ducklake_backend.maintenance"):
            assert scheduled_b.run_if_due() is None
        held_a.go.set()
        runner.join(60)
    assert held_b.calls == 0
    skipped = [r for r in caplog.records if r.getMessage() == "scheduled maintenance skipped"]
    assert skipped and skipped[0].levelno == logging.INFO
    assert "replica-a" in skipped[0].ctx_detail


def test_the_schedule_skips_a_run_another_replica_just_made(replicas, caplog):
    a, b = replicas
    assert a.post("/maintenance").status_code == 200
    scheduled_b = b.app.state.maintenance
    # interval 0 in these settings: every run is due; an hour: a's run of just now is recent
    assert scheduled_b.settings.maintenance_interval_s == 0
    with Held(lake_of(b)) as held_b:
        held_b.go.set()
        scheduled_b.settings = replace(scheduled_b.settings, maintenance_interval_s=3600)
        try:
            with caplog.at_level(logging.INFO, logger="ducklake_backend.maintenance"):
                assert scheduled_b.run_if_due() is None
        finally:
            scheduled_b.settings = replace(scheduled_b.settings, maintenance_interval_s=0)
        assert held_b.calls == 0
        assert any(r.getMessage() == "scheduled maintenance not due" for r in caplog.records)
        ran = scheduled_b.run_if_due()                # due at interval 0
        assert ran is not None and ran["replica"] == "replica-b" and held_b.calls == 1

