"""The distributed profile's high-availability controls (issue 16), read-only: usable on
real clusters. Deselected on a standalone stack (controls with profiles: [distributed])."""

from __future__ import annotations

import pytest

from ducklake_infra.suites import checks
from ducklake_infra.suites.catalog import verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("HA-MINIO-001")
def test_minio_servers_spread_over_nodes(objs, spec):
    verdict(checks.check_minio_servers_spread(objs, spec))


@pytest.mark.control("HA-MINIO-002")
def test_minio_parity_as_planned(objs, spec):
    verdict(checks.check_minio_parity(objs, spec))


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
