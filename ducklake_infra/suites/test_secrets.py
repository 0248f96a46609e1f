"""Secrets hygiene across the stack: ConfigMaps, env literals, annotations, logs, reports."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.provision.guard import find_leaks
from ducklake_infra.suites import checks, formats, security
from ducklake_infra.suites import report as rep
from ducklake_infra.suites.live import gather, pod_logs
from ducklake_infra.suites.catalog import CheckError, TestRecord, evidence, catalog, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("SEC-CM-001")
def test_no_secrets_in_configmaps(objs, spec):
    verdict(checks.check_configmaps_hold_no_secrets(objs, spec))


@pytest.mark.control("SEC-ENV-001")
def test_no_secrets_in_env_literals(objs, spec):
    verdict(checks.check_env_holds_no_secrets(objs, spec))


@pytest.mark.control("SEC-ANN-001")
def test_no_secrets_in_annotations(objs, spec):
    verdict(checks.check_annotations_hold_no_secrets(objs, spec))


@pytest.mark.control("SEC-LOG-001")
def test_no_secrets_in_pod_logs(pytestconfig, stack, objs, spec, kubectl, runner, cluster):
    if pytestconfig.getoption("--readonly"):
        # an audit changes nothing: the session's objects are current, read only the logs
        objs.logs = pod_logs(kubectl, objs)
        verdict(checks.check_logs_hold_no_secrets(objs, spec))
        return
    # fresh: after the data-plane tests have exercised (and restarted) every component
    verdict(checks.check_logs_hold_no_secrets(gather(kubectl, runner, cluster, spec, with_logs=True), spec))


@pytest.mark.control("SEC-RPT-001")
def test_reports_redact_secret_values(objs, spec, runner, control):
    values = checks.secret_values_of(objs, spec)
    if not values:
        raise CheckError("no Secret values were read from the cluster: nothing to prove")
    missing = [v for v in values if v not in runner.redactor.secrets]
    assert not missing, f"{len(missing)} Secret value(s) are not registered with the Redactor"
    # a result carrying every secret value, through the same report writers
    rec = TestRecord("probe", control, status="FAIL", evidence=sorted(values), reason=" ".join(values))
    results = rep.aggregate(catalog(), [rec], only_run=True)
    outputs = {"results.json": rep.to_json(results, {}, runner.redactor),
               "policyreport.yaml": formats.policy_report_text(results, spec, runner.redactor),
               "results.sarif": formats.sarif_text(results, spec, {}, runner.redactor),
               "html": rep.controls_html(results, runner.redactor),
               "terminal": runner.redactor("\n".join(rep.terminal_lines(results)))}
    for where, text in outputs.items():
        leaked = find_leaks(text, values)   # raw, base64, JSON- and HTML-escaped, decoded
        assert not leaked, f"{len(leaked)} Secret value(s) reach the {where} output"
    json.loads(outputs["results.json"])
    evidence(f"{len(values)} secret forms registered; results.json, policyreport.yaml, "
             "results.sarif, HTML and terminal output redact them in every encoding")


@pytest.mark.control("SEC-PSS-001")
def test_namespaces_enforce_restricted_pod_security(objs, spec, inspected):
    from ducklake_infra.suites.live import stack_namespaces
    missing = [ns for ns in stack_namespaces(spec) if ns not in (objs.namespace_objects or {})]
    if missing:
        raise CheckError(f"could not evaluate: namespace(s) {', '.join(missing)} not readable: "
                         f"{objs.namespace_error or 'not read'}")
    nss = [objs.namespace_objects[ns] for ns in stack_namespaces(spec)]
    inspected(*nss)
    verdict(security.judge_pod_security(nss, objs, spec))


@pytest.mark.control("SEC-ACC-001")
def test_data_access_surface_is_the_specs(objs, spec, runner, cluster):
    """MinIO's users, their policies and the buckets' anonymous policies (admin API, root
    credentials) and the PostgreSQL roles that can log in to the catalog (superuser), all
    through port-forwards: mutating only because --readonly refuses port-forwards."""
    import psycopg
    from minio import Minio, MinioAdmin
    from minio.credentials import StaticProvider
    from minio.error import S3Error

    from ducklake_infra.suites.live import PortForward
    from ducklake_infra.suites.test_minio import s3_service
    m, pg = spec.minio, spec.postgresql
    root = objs.secret_data(m.root_secret.name, m.namespace) or {}
    su = objs.secret_data(pg.superuser_secret.name, pg.namespace) or {}
    ruser, rpw = (root.get(k) for k in m.root_secret.keys)
    supw = su.get(pg.superuser_secret.keys[0])
    if not (ruser and rpw and supw):
        raise CheckError("the MinIO root or PostgreSQL superuser Secret is not readable")
    with PortForward(runner, cluster, m.namespace, f"svc/{s3_service(spec).name}", m.api_port) as pf:
        endpoint = f"127.0.0.1:{pf.local_port}"
        admin = MinioAdmin(endpoint=endpoint, credentials=StaticProvider(ruser, rpw), secure=False)
        listing = json.loads(admin.user_list() or "{}")
        users = {u: sorted(p for p in (v.get("policyName") or "").split(",") if p)
                 for u, v in listing.items()}
        s3 = Minio(endpoint, access_key=ruser, secret_key=rpw, secure=False)
        policies = {}
        for bucket in (spec.raw_bucket, spec.lake_bucket):
            try:
                policies[bucket] = s3.get_bucket_policy(bucket)
            except S3Error as exc:
                if exc.code != "NoSuchBucketPolicy":
                    raise
                policies[bucket] = None
    svc = pg.services[0]
    with PortForward(runner, cluster, pg.namespace, f"svc/{svc.name}", pg.port) as pf:
        info = (f"host=127.0.0.1 port={pf.local_port} dbname=postgres user=postgres "
                f"password={supw} connect_timeout=10")
        with psycopg.connect(info) as con:
            rows = con.execute(
                "SELECT rolname, rolsuper FROM pg_roles WHERE rolcanlogin "
                "AND has_database_privilege(rolname, %s, 'CONNECT')",
                (pg.catalog.database,)).fetchall()
    verdict(security.judge_access_surface(spec, users, policies, dict(rows)))
