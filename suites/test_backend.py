"""Seed plan 2.3: the DuckLake backend (Deployment, Service, ConfigMap and Secrets)."""

from __future__ import annotations

import json
import re

import pytest

from suites import checks
from suites.live import backend_token, service_get
from suites.registry import CheckError, evidence, verdict

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


def _status(ok: bool, body: str) -> int | None:
    if ok:
        return 200
    m = re.match(r"HTTP (\d{3})", body)
    return int(m.group(1)) if m else None


@pytest.mark.control("BE-AUTH-001")
def test_backend_requires_its_token(objs, spec, kubectl):
    svc = spec.backend.service
    anon = service_get(kubectl, svc.namespace, svc.name, svc.ports[0], "/tables")
    token = backend_token(objs, spec)
    authed = service_get(kubectl, svc.namespace, svc.name, svc.ports[0], "/tables", token=token)
    verdict(checks.judge_backend_auth(_status(*anon), _status(*authed)))
