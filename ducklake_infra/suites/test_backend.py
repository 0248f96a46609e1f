"""Seed plan 2.3: the DuckLake backend (Deployment, Service, ConfigMap and Secrets)."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.suites import checks, security
from ducklake_infra.suites.live import backend_token, service_get, service_status
from ducklake_infra.suites.catalog import CheckError, evidence, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("BE-DEP-001")
def test_backend_available(objs, spec):
    verdict(checks.check_backend_available(objs, spec))


@pytest.mark.control("BE-RES-001")
def test_backend_resources(objs, spec):
    verdict(checks.check_backend_resources(objs, spec))


@pytest.mark.control("BE-PRB-001")
def test_backend_probes(objs, spec):
    verdict(checks.check_backend_probes(objs, spec))


@pytest.mark.control("BE-STOP-001")
def test_backend_drains_before_stopping(objs, spec):
    verdict(checks.check_backend_drains_before_stopping(objs, spec))


@pytest.mark.control("BE-SVC-001")
def test_backend_service(objs, spec):
    verdict(checks.check_backend_service(objs, spec))


@pytest.mark.control("BE-CFG-001")
def test_backend_config_and_credentials(objs, spec):
    verdict(checks.check_backend_config(objs, spec))


@pytest.mark.control("BE-SEC-001")
def test_backend_runs_as_non_root(objs, spec):
    verdict(checks.check_backend_non_root(objs, spec))


@pytest.mark.control("BE-RDY-001")
def test_backend_readyz_green(stack, spec, kubectl):
    svc = spec.backend.service
    ok, body = service_get(kubectl, svc.namespace, svc.name, svc.ports[0], spec.backend.readiness_path)
    if "{" not in body:
        if ok:
            raise CheckError(f"/readyz answered without JSON: {body[:300]}")
        raise AssertionError(f"/readyz through the Service failed: {body[-500:]}")
    doc = json.loads(body[body.index("{"):body.rindex("}") + 1])
    assert ok and doc.get("status") == "ready", f"/readyz: {doc}"
    evidence(f"/readyz through Service {svc.namespace}/{svc.name}: {doc}")


@pytest.mark.control("BE-AUTH-001")
def test_backend_requires_its_token(objs, spec, kubectl):
    svc = spec.backend.service
    anon, _ = service_status(kubectl, svc.namespace, svc.name, svc.ports[0], "/tables")
    token = backend_token(objs, spec)
    authed, _ = service_status(kubectl, svc.namespace, svc.name, svc.ports[0], "/tables",
                               token=token)
    verdict(security.judge_backend_auth(anon, authed))


@pytest.mark.control("BE-QRY-001")
def test_query_path_has_read_only_identities(objs, spec):
    verdict(security.check_query_identities(objs, spec))


@pytest.mark.control("BE-QRY-002")
def test_query_identities_cannot_write(objs, spec, runner, cluster):
    """Try, with the query path's own credentials, to write an object to the lake bucket
    and a row to the catalog: both must be refused (nothing is written when they are)."""
    import io
    import uuid

    import psycopg
    from minio.error import S3Error

    from ducklake_infra.suites.live import PortForward
    from ducklake_infra.suites.test_minio import minio_client, s3_service
    b, m, pg = spec.backend, spec.minio, spec.postgresql
    qs3 = objs.secret_data(b.query_s3_secret.name, b.namespace) or {}
    qpg = objs.secret_data(b.query_postgres_secret.name, b.namespace) or {}
    akey, skey = (qs3.get(k) for k in b.query_s3_secret.keys)
    user, pw = (qpg.get(k) for k in b.query_postgres_secret.keys)
    if not (akey and skey and user and pw):
        raise CheckError("the query identities' Secrets are not readable")
    with PortForward(runner, cluster, m.namespace, f"svc/{s3_service(spec).name}", m.api_port) as pf:
        mc = minio_client(pf.local_port, akey, skey, spec)
        key = f"conformance/query-probe-{uuid.uuid4().hex[:8]}"
        try:
            mc.put_object(spec.lake_bucket, key, io.BytesIO(b"x"), 1)
        except S3Error as exc:
            assert exc.code == "AccessDenied", f"put_object failed with {exc.code}, not AccessDenied"
            evidence(f"query S3 user may not write s3://{spec.lake_bucket}/ (AccessDenied)")
        else:
            mc.remove_object(spec.lake_bucket, key)
            raise AssertionError(f"the query S3 user {akey} could write to the lake bucket")
    svc = pg.services[0]
    with PortForward(runner, cluster, pg.namespace, f"svc/{svc.name}", pg.port) as pf:
        info = (f"host=127.0.0.1 port={pf.local_port} dbname={pg.catalog.database} user={user} "
                f"password={pw} connect_timeout=10")
        with psycopg.connect(info, autocommit=True) as con:
            for sql in ("CREATE TABLE conformance_probe (a int)",
                        "UPDATE ducklake_snapshot SET snapshot_id = snapshot_id WHERE false"):
                try:
                    con.execute(sql)
                except psycopg.Error as exc:
                    msg = str(exc).splitlines()[0]
                    assert "permission denied" in msg or "read-only" in msg, msg
                    evidence(f"catalog role {user}: {sql.split()[0]} refused ({msg})")
                else:
                    raise AssertionError(f"catalog role {user} could run: {sql}")


CREDENTIAL_PROBES = [   # each class of the review of POST /query (issue 10)
    "SELECT path FROM duckdb_databases()",
    "SELECT reverse(path) FROM duckdb_databases()",
    "SELECT to_base64(encode(path)) FROM duckdb_databases()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_settings()",
    "SELECT current_setting('s3_secret_access_key')",
    "SELECT getenv('DUCKLAKE_PG_PASSWORD')",
    "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT 1')",
    "SELECT * FROM read_text('/proc/self/environ')",
    "SELECT * FROM 's3://lake/x.parquet'",
]


@pytest.mark.control("BE-MEM-001")
def test_duckdb_memory_is_bounded(objs, spec):
    verdict(security.check_backend_memory_bound(objs, spec))


@pytest.mark.control("BE-CRED-001")
def test_no_credential_through_the_query_endpoint(objs, spec, runner, cluster):
    """POST /query (through a port-forward: the audit's API client sends only GETs) with a
    probe of every disclosure class: each is refused, and no answer holds a Secret value
    of the stack in any form (raw, reversed, base64, escaped)."""
    import httpx

    from ducklake_infra.provision.guard import find_leaks
    from ducklake_infra.suites.live import PortForward
    b = spec.backend
    values = checks.secret_values_of(objs, spec)
    if not values:
        raise CheckError("no Secret values were read: nothing to look for")
    token = backend_token(objs, spec)
    with PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}", b.service.ports[0]) as pf:
        with httpx.Client(base_url=f"http://127.0.0.1:{pf.local_port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            statuses = {}
            for sql in CREDENTIAL_PROBES:
                r = http.post("/query", json={"sql": sql})
                statuses[sql] = r.status_code
                leaked = find_leaks(r.text, values) + find_leaks(r.text[::-1], values)
                assert not leaked, f"{sql!r} returned {len(leaked)} Secret value(s)"
    allowed = {s: c for s, c in statuses.items() if c < 400}
    assert not allowed, f"accepted: {allowed}"
    evidence(f"{len(CREDENTIAL_PROBES)} disclosure probes refused ({sorted(set(statuses.values()))}); "
             f"no answer holds any of {len(values)} secret forms")
