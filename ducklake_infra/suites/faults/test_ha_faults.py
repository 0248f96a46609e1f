"""Faults of the distributed profile (issue 16) while data flows, on the spec's kind
cluster: one MinIO server deleted (the erasure set keeps its write quorum), the PostgreSQL
primary deleted (Patroni promotes the in-sync standby), the worker holding the primary
drained (every budget asked, then uncordoned). Same load generator and ledger as
test_resilience.py; controls with ``profiles: [distributed]``. Mutating."""

from __future__ import annotations

import time

import pytest

from ducklake_infra.suites.catalog import PASS, WARN, CheckError, figures, verdict
from ducklake_infra.suites.faults import drain, failover
from ducklake_infra.suites.faults.loadgen import Load
from ducklake_infra.suites.faults.test_resilience import (RESTART_LIMIT_S, _check_statuses,
                                                          _only_on_the_suites_kind_cluster,
                                                          _table, _wait_stack_ready, read_back,
                                                          run_load)
from ducklake_infra.suites.live import gather
from ducklake_infra.suites.resilience import (judge_drain, judge_failover, judge_ledger,
                                              ledger_figures)

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

FAILOVER_LIMIT_S = 30     # graceful deletion: Patroni hands over at once (design note 7)
DRAIN_LIMIT_S = 180       # design note 7: each budget lets one eviction through at a time
SETTLE_S = 90             # after Ready: Patroni names a new sync standby, budgets recount


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


@pytest.mark.disruptive
@pytest.mark.control("RES-DRAIN-001")
def test_the_primary_s_worker_drained_mid_stream(objs, spec, runner, cluster, kubectl,
                                                sbom_index):
    """The worker holding the PostgreSQL primary (with a MinIO server and perhaps a backend
    replica) is drained while data flows, the load generator kept off it; after the writes
    it is uncordoned. Its MinIO server and member wait Pending meanwhile (local-path
    volumes are pinned to their node: design note 5.3)."""
    _only_on_the_suites_kind_cluster(cluster, "drains a node of the cluster")
    p = spec.postgresql
    selector = _selector(objs, "StatefulSet", p.fullname, p.namespace)
    primary = failover.primaries(kubectl, p.namespace, selector)
    if len(primary) != 1:
        raise CheckError(f"could not evaluate: {len(primary)} members labelled primary before "
                         "the drain (HA-PG-001 says why)")
    node = drain.node_of(objs, p.namespace, primary[0])
    if node is None:
        raise CheckError(f"could not evaluate: {primary[0]} has no node")
    before = _check_statuses(objs, spec, sbom_index)
    on_node = drain.stack_pods_on(objs, spec, node)
    watch: list[failover.Watch] = []
    drainer = drain.Drain(kubectl, node, DRAIN_LIMIT_S)

    def start_drain():
        drainer.start()
        watch.append(failover.Watch(kubectl, p.namespace, selector, primary[0]).start(time.time()))

    load = Load(_table(), write_s=45, avoid_node=node)
    try:
        ledger, fault = run_load(objs, spec, kubectl, load, start_drain)
        drainer.join()
    finally:
        drainer.uncordon()
    uncordoned = time.time()
    not_ready = None
    try:
        phases = _wait_stack_ready(spec, kubectl, uncordoned + RESTART_LIMIT_S)
    except CheckError as exc:
        phases, not_ready = {}, f"after the uncordon: {exc}"
    worse = _worse_after(before, spec, runner, cluster, kubectl, sbom_index)
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
            ledger.recovery_s(fault), ledger.errors)
    w = watch[0] if watch else None
    if w:
        w.join()
    figures(fault=f"worker {node} drained {load.fault_at_s:.0f}s into the writes "
                  f"(it held the PostgreSQL primary {primary[0]})", writers=load.writers,
            **ledger_figures(*args), node=node, evicted=on_node,
            drain_s=None if drainer.seconds is None else round(drainer.seconds, 1),
            new_primary=w.new if w else None,
            failover_s=None if not w or w.after_s is None else round(w.after_s, 1),
            ready_after_uncordon_s={k: round(v, 1) for k, v in phases.items()},
            checks_worse=len(worse))
    verdict(judge_drain(judge_ledger(*args, load.max_recovery_s), node, drainer.seconds,
                        drainer.error, DRAIN_LIMIT_S, on_node, worse, not_ready))


def _worse_after(before: dict[str, str], spec, runner, cluster, kubectl, sbom_index
                 ) -> list[str]:
    """Checks that passed (or warned) before and do not now, asked again for up to
    SETTLE_S: Patroni names a new sync standby and the budgets recount on their loops."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        after = _check_statuses(gather(kubectl, runner, cluster, spec), spec, sbom_index)
        worse = [f"{cid}: {before[cid]} before the drain, {after.get(cid)} after"
                 for cid in before if before[cid] in (PASS, WARN)
                 and after.get(cid) not in (PASS, WARN)]
        if not worse or time.monotonic() > deadline:
            return worse
        time.sleep(5)
