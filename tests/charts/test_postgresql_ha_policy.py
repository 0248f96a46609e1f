"""The distributed profile's NetworkPolicy for Patroni's members (docs/design/distributed-
profile.md section 3.5): PostgreSQL pods reach each other on 5432 (streaming replication,
pg_basebackup, pg_rewind) and 8008 (Patroni's REST API), only in that profile."""

from __future__ import annotations

import dataclasses

from ducklake_infra.provision import netpol
from ducklake_infra.provision.spec import DistributedSpec


def test_members_reach_each_other_only_in_the_distributed_profile(spec):
    names = {p["metadata"]["name"] for p in netpol.network_policies(spec)}
    assert "ducklake-postgresql-replication" not in names         # standalone: one server
    distributed = dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec())
    pols = {p["metadata"]["name"]: p for p in netpol.network_policies(distributed)}
    rep = pols["ducklake-postgresql-replication"]
    labels = netpol.postgres_pod_labels(spec)
    assert rep["metadata"]["namespace"] == spec.postgresql.namespace
    assert rep["spec"]["podSelector"]["matchLabels"] == labels
    assert rep["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = rep["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": labels}}]      # PG pods only
    assert rule["ports"] == [{"protocol": "TCP", "port": spec.postgresql.port},
                             {"protocol": "TCP", "port": netpol.PATRONI_API_PORT}]
    # the backend's way in is unchanged
    assert pols["ducklake-postgresql-from-backend"] == \
        {p["metadata"]["name"]: p for p in netpol.network_policies(spec)}["ducklake-postgresql-from-backend"]
