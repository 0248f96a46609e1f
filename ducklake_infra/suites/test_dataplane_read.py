"""Seed plan 2.3, read-only data plane: the backend serves the DuckLake catalog.

Only GETs through the API server's service proxy, so it runs under --readonly
too (the write-path controls in test_dataplane.py are mutating).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from ducklake_infra.suites.live import backend_token, service_get
from ducklake_infra.suites.catalog import CheckError, Result, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("DP-READ-001")
def test_backend_serves_catalog_reads(objs, spec, kubectl):
    b = spec.backend
    port = b.service.ports[0]
    token = backend_token(objs, spec)
    ok, body = service_get(kubectl, b.namespace, b.service.name, port, "/tables", token=token)
    if not ok:
        raise CheckError(f"GET /tables through the service proxy failed: {body[-300:]}")
    tables = json.loads(body)
    rows = tables.get("tables", tables) if isinstance(tables, dict) else tables
    evidence = [f"GET /tables: {len(rows)} table(s)"]
    problems = []
    for t in rows[:5]:
        name = t["name"] if isinstance(t, dict) else str(t)
        ok, snaps = service_get(kubectl, b.namespace, b.service.name, port,
                                f"/tables/{quote(name)}/snapshots", token=token)
        if not ok:
            problems.append(f"GET /tables/{name}/snapshots failed: {snaps[-200:]}")
            continue
        doc = json.loads(snaps)
        items = doc.get("snapshots", doc) if isinstance(doc, dict) else doc
        evidence.append(f"table {name}: rows {t.get('rows', t.get('row_count', '?')) if isinstance(t, dict) else '?'}, "
                        f"{len(items)} snapshot(s)")
        if not items:
            problems.append(f"table {name} has no snapshot in the catalog")
    verdict(Result("FAIL" if problems else "PASS", problems + evidence))


@pytest.mark.control("BE-MAINT-001")
def test_lake_is_maintained(objs, spec, kubectl):
    """Runs after test_dataplane.py, whose writes end with a maintenance run on kind; an
    audit sees what the schedule did."""
    from ducklake_infra.suites.resilience import check_lake_maintenance
    b = spec.backend
    ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0],
                           "/maintenance", token=backend_token(objs, spec))
    if not ok:
        raise CheckError(f"GET /maintenance through the service proxy failed: {body[-300:]}")
    verdict(check_lake_maintenance(objs, spec, status=json.loads(body)))
