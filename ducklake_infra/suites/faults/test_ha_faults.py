"""Faults of the distributed profile (issue 16) while data flows, on the spec's kind
cluster: one MinIO server deleted (the erasure set keeps its write quorum), the PostgreSQL
primary deleted (Patroni promotes the in-sync standby). Same load generator and ledger as
test_resilience.py; controls with ``profiles: [distributed]``. Mutating."""

from __future__ import annotations

import pytest

from ducklake_infra.suites.catalog import CheckError, figures, verdict
from ducklake_infra.suites.faults import failover
from ducklake_infra.suites.faults.loadgen import Load
from ducklake_infra.suites.faults.test_resilience import _table, read_back, run_load
from ducklake_infra.suites.resilience import judge_failover, judge_ledger, ledger_figures

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

FAILOVER_LIMIT_S = 30     # graceful deletion: Patroni hands over at once (design note 7)


def _selector(objs, kind: str, name: str, ns: str) -> str:
    w = objs.get(kind, name, ns)
    if w is None:
        raise CheckError(f"{kind} {ns}/{name} does not exist")
    return ",".join(f"{k}={v}" for k, v in w["spec"]["selector"]["matchLabels"].items())


@pytest.mark.control("RES-MINIO-002")
def test_one_minio_server_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    m, d = spec.minio, spec.distributed
    _selector(objs, "StatefulSet", m.fullname, m.namespace)
    victim = f"{m.fullname}-{d.minio_servers - 1}"
    load = Load(_table())
    ledger, fault = run_load(objs, spec, kubectl, load, lambda: kubectl(
        "-n", m.namespace, "delete", "pod", victim, "--wait=false"))
    kubectl("-n", m.namespace, "rollout", "status", f"statefulset/{m.fullname}",
            "--timeout=180s", timeout=200)
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
            ledger.recovery_s(fault), ledger.errors)
    figures(fault=f"MinIO server {victim} deleted {load.fault_at_s:.0f}s into the writes "
                  f"({d.minio_servers} servers, EC:{d.minio_parity})", writers=load.writers,
            **ledger_figures(*args))
    verdict(judge_ledger(*args, load.max_recovery_s))


@pytest.mark.control("RES-PG-002")
def test_postgresql_primary_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    p = spec.postgresql
    selector = _selector(objs, "StatefulSet", p.fullname, p.namespace)
    before = failover.primaries(kubectl, p.namespace, selector)
    if len(before) != 1:
        raise CheckError(f"could not evaluate: {len(before)} members labelled primary before "
                         "the fault (HA-PG-001 says why)")
    old, sync = before[0], failover.sync_standbys(kubectl, p.namespace, p.release)
    watch: list[failover.Watch] = []

    def delete_primary():
        import time
        kubectl("-n", p.namespace, "delete", "pod", old, "--wait=false")
        watch.append(failover.Watch(kubectl, p.namespace, selector, old).start(time.time()))

    load = Load(_table())
    ledger, fault = run_load(objs, spec, kubectl, load, delete_primary)
    watch[0].join()
    kubectl("-n", p.namespace, "rollout", "status", f"statefulset/{p.fullname}",
            "--timeout=180s", timeout=200)
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
            ledger.recovery_s(fault), ledger.errors)
    w = watch[0]
    figures(fault=f"PostgreSQL primary {old} deleted {load.fault_at_s:.0f}s into the writes",
            writers=load.writers, **ledger_figures(*args), old_primary=old,
            in_sync_standby=",".join(sync), new_primary=w.new,
            failover_s=None if w.after_s is None else round(w.after_s, 1),
            most_primaries_at_once=w.most)
    verdict(judge_failover(judge_ledger(*args, load.max_recovery_s), old, w.new, sync,
                           w.after_s, FAILOVER_LIMIT_S, w.most))
