"""Seed plan 2.2: PostgreSQL (single node, PVC, credentials in Secrets, ClusterIP)."""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager

import pytest

from ducklake_infra.suites import checks
from ducklake_infra.suites.live import PortForward, service_get
from ducklake_infra.suites.catalog import CheckError, evidence, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("PG-REL-001")
def test_pg_release_pinned(objs, spec):
    verdict(checks.check_pg_release(objs, spec))


@pytest.mark.control("PG-REP-001")
def test_pg_members(objs, spec):
    verdict(checks.check_pg_members(objs, spec))


@pytest.mark.control("PG-PVC-001")
def test_pg_pvc(objs, spec):
    verdict(checks.check_pg_pvc(objs, spec))


@pytest.mark.control("PG-SEC-001")
def test_pg_credentials_in_secrets(objs, spec):
    verdict(checks.check_pg_secrets(objs, spec))


@pytest.mark.control("PG-SVC-001")
def test_pg_clusterip_only(objs, spec):
    verdict(checks.check_pg_services(objs, spec))


@pytest.mark.control("PG-POD-001")
def test_pg_pod(objs, spec):
    verdict(checks.check_pg_pod(objs, spec))


@contextmanager
def catalog_connection(objs, spec, runner, cluster):
    import psycopg
    pg = spec.postgresql
    sec = objs.secret_data(pg.catalog.secret.name, pg.namespace)
    if not sec:
        raise CheckError(f"Secret {pg.namespace}/{pg.catalog.secret.name} is not readable")
    user = sec.get(pg.catalog.secret.keys[0]) or pg.catalog.owner
    password = sec.get(pg.catalog.secret.keys[-1])
    with PortForward(runner, cluster, pg.namespace, f"svc/{pg.services[0].name}", pg.port) as pf:
        with psycopg.connect(host="127.0.0.1", port=pf.local_port, dbname=pg.catalog.database,
                             user=user, password=password, connect_timeout=10,
                             autocommit=True) as conn:
            yield conn


@pytest.mark.control("PG-DB-001")
def test_catalog_database_exists(objs, spec, runner, cluster, kubectl, pytestconfig):
    pg = spec.postgresql
    if pytestconfig.getoption("--readonly"):
        # no port-forward in read-only mode: the backend's /readyz runs a catalog query
        svc = spec.backend.service
        ok, body = service_get(kubectl, svc.namespace, svc.name, svc.ports[0],
                               spec.backend.readiness_path)
        if "{" not in body:
            raise CheckError(f"/readyz did not answer through the service proxy: {body[-300:]}")
        got = json.loads(body[body.index("{"):body.rindex("}") + 1]).get("checks", {})
        assert got.get("catalog") == "ok", f"backend catalog check: {got.get('catalog')}"
        evidence(f"backend /readyz: catalog query ok (database {pg.catalog.database})")
        return
    with catalog_connection(objs, spec, runner, cluster) as conn:
        db, user = conn.execute("SELECT current_database(), current_user").fetchone()
        assert db == pg.catalog.database
        owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                             (db,)).fetchone()[0]
        assert owner == pg.catalog.owner, f"database {db} is owned by {owner}, expected {pg.catalog.owner}"
        evidence(f"logged in to {db} as {user}; owner {owner}")


@pytest.mark.control("PG-CFG-001")
def test_lc_messages_english(objs, spec, runner, cluster, pytestconfig):
    verdict(checks.check_pg_lc_messages(objs, spec))
    if pytestconfig.getoption("--readonly"):
        return
    with catalog_connection(objs, spec, runner, cluster) as conn:
        value = conn.execute("SHOW lc_messages").fetchone()[0]
        assert checks.lc_messages_is_english(value), f"server lc_messages is {value!r}"
        evidence(f"server: SHOW lc_messages = {value}")


@pytest.mark.mutating
@pytest.mark.control("PG-PERSIST-001")
def test_catalog_data_survives_pod_restart(objs, spec, runner, cluster, kubectl):
    pg = spec.postgresql
    table = f"conformance_persist_{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    with catalog_connection(objs, spec, runner, cluster) as conn:
        conn.execute(f"CREATE TABLE {table} (token text)")
        conn.execute(f"INSERT INTO {table} VALUES (%s)", (token,))
    pod = f"{pg.fullname}-0"
    old_uid = kubectl.json("-n", pg.namespace, "get", "pod", pod)["metadata"]["uid"]
    import time
    t0 = time.monotonic()
    kubectl("-n", pg.namespace, "delete", "pod", pod, "--wait=true", timeout=180)
    stopped_in = time.monotonic() - t0
    # a fast shutdown (checkpoint, clients disconnected) well inside the grace period, not
    # a smart one waiting on the backend's pooled connections until it is killed
    assert stopped_in < 30, f"deleting {pod} took {stopped_in:.0f}s: PostgreSQL did not stop fast"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        res = kubectl("-n", pg.namespace, "get", "pod", pod, "-o", "json", check=False)
        if res.returncode == 0:
            p = json.loads(res.stdout)
            if p["metadata"]["uid"] != old_uid and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or []):
                break
        time.sleep(3)
    else:
        raise AssertionError(f"pod {pg.namespace}/{pod} did not come back Ready within 300s")
    evidence(f"pod {pod} stopped in {stopped_in:.1f}s, recreated (new uid)")
    log = kubectl("-n", pg.namespace, "logs", pod, check=False).stdout
    crash = [m for m in ("not properly shut down", "automatic recovery in progress",
                         "database system was interrupted") if m in log]
    assert not crash, f"the next start recovered from a crash: {crash}"
    evidence("the next start found a clean shutdown (no crash recovery in its log)")
    with catalog_connection(objs, spec, runner, cluster) as conn:
        try:
            got = conn.execute(f"SELECT token FROM {table}").fetchall()
            assert got == [(token,)], f"after the restart table {table} holds {len(got)} row(s), not the token"
            evidence(f"table {table} and its row survived the restart")
        finally:
            conn.execute(f"DROP TABLE IF EXISTS {table}")
