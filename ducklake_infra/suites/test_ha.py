"""The distributed profile's high-availability controls (issue 16), read-only: usable on
real clusters. Deselected on a standalone stack (controls with profiles: [distributed])."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.suites import checks
from ducklake_infra.suites.catalog import CheckError, verdict
from ducklake_infra.suites.live import backend_token, service_get

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("HA-MINIO-001")
def test_minio_servers_spread_over_nodes(objs, spec):
    verdict(checks.check_minio_servers_spread(objs, spec))


@pytest.mark.control("HA-MINIO-002")
def test_minio_parity_as_planned(objs, spec):
    verdict(checks.check_minio_parity(objs, spec))


@pytest.mark.control("HA-MINIO-003")
def test_minio_erasure_set_healthy(objs, spec, kubectl):
    """MinIO's own health endpoints, asked by the backend from inside the cluster and read
    through the API server's service proxy (a GET: read-only audits run it too)."""
    b = spec.backend
    ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0],
                           "/storage/health", token=backend_token(objs, spec))
    if not ok:
        raise CheckError(f"GET /storage/health through the service proxy failed: {body[-300:]}")
    verdict(checks.check_erasure_set_health(objs, spec, health=json.loads(body)))


@pytest.mark.control("HA-PDB-001")
def test_minio_disruption_budget(objs, spec):
    verdict(checks.check_minio_disruption_budget(objs, spec))


@pytest.mark.control("HA-PG-001")
def test_postgresql_primary_and_sync_standbys(objs, spec):
    verdict(checks.check_pg_primary_and_sync_standbys(objs, spec))


@pytest.mark.control("HA-PG-002")
def test_postgresql_members_spread(objs, spec):
    verdict(checks.check_pg_members_spread(objs, spec))


@pytest.mark.control("BE-HA-001")
def test_backend_replicas_spread(objs, spec):
    verdict(checks.check_backend_replicas_spread(objs, spec))
