"""Faults of the distributed profile (issue 16) while data flows, on the spec's kind
cluster: one MinIO server deleted (the erasure set keeps its write quorum), the PostgreSQL
primary deleted (Patroni promotes the in-sync standby), the worker holding the primary
drained (every budget asked, then uncordoned). Same load generator and ledger as
test_resilience.py; controls with ``profiles: [distributed]``. Mutating."""

from __future__ import annotations

import json
import time

import pytest

from ducklake_infra.suites.catalog import PASS, WARN, CheckError, figures, verdict
from ducklake_infra.suites.faults import drain, failover
from ducklake_infra.suites.faults.loadgen import Load
from ducklake_infra.suites.faults.test_resilience import (RESTART_LIMIT_S, _check_statuses,
                                                          _only_on_the_suites_kind_cluster,
                                                          _table, _wait_stack_ready, read_back,
                                                          run_load)
from ducklake_infra.suites.live import backend_token, gather, service_get
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


def _the_primary(objs, spec, kubectl, before: str) -> tuple[str, str]:
    """The members' selector and the one live member labelled primary now; CheckError
    ("could not evaluate") when there is not exactly one."""
    p = spec.postgresql
    selector = _selector(objs, "StatefulSet", p.fullname, p.namespace)
    now = failover.primaries(kubectl, p.namespace, selector)
    if len(now) != 1:
        raise CheckError(f"could not evaluate: {len(now)} members labelled primary before "
                         f"{before} (HA-PG-001 says why)")
    return selector, now[0]


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
    selector, old = _the_primary(objs, spec, kubectl, "the fault")
    sync = failover.sync_standbys(kubectl, p.namespace, p.release)
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
    objs = gather(kubectl, runner, cluster, spec)   # now: earlier faults moved pods and roles
    p = spec.postgresql
    selector, primary = _the_primary(objs, spec, kubectl, "the drain")
    node = drain.node_of(objs, p.namespace, primary)
    if node is None:
        raise CheckError(f"could not evaluate: {primary} has no node")
    before = _check_statuses(objs, spec, sbom_index, _storage_health(objs, spec, kubectl))
    on_node = drain.stack_pods_on(objs, spec, node)
    watch: list[failover.Watch] = []
    drainer = drain.Drain(kubectl, node, DRAIN_LIMIT_S)

    def start_drain():
        drainer.start()
        watch.append(failover.Watch(kubectl, p.namespace, selector, primary).start(time.time()))

    load = Load(_table(), write_s=45, avoid_node=node)
    try:
        ledger, fault = run_load(objs, spec, kubectl, load, start_drain)
        drainer.join()
        during = _storage_now(objs, spec, kubectl)   # the node still cordoned, its server gone
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
                  f"(it held the PostgreSQL primary {primary})", writers=load.writers,
            **ledger_figures(*args), node=node, evicted=on_node,
            drain_s=None if drainer.seconds is None else round(drainer.seconds, 1),
            new_primary=w.new if w else None,
            failover_s=None if not w or w.after_s is None else round(w.after_s, 1),
            ready_after_uncordon_s={k: round(v, 1) for k, v in phases.items()},
            minio_during_drain=during, checks_worse=len(worse))
    verdict(judge_drain(judge_ledger(*args, load.max_recovery_s), node, drainer.seconds,
                        drainer.error, DRAIN_LIMIT_S, on_node, worse, not_ready, during))


def _storage_health(objs, spec, kubectl) -> dict | None:
    """The backend's GET /storage/health (MinIO as it reports itself), or None."""
    b = spec.backend
    ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0],
                           "/storage/health", token=backend_token(objs, spec))
    return json.loads(body) if ok else None


def _storage_now(objs, spec, kubectl) -> dict:
    """MinIO's write quorum and live servers now: {"write": status, "live": "n of m"}."""
    h = _storage_health(objs, spec, kubectl)
    if h is None:
        return {"error": "GET /storage/health through the service proxy failed"}
    live = sum(1 for s in h.get("servers") or [] if (s.get("live") or {}).get("status") == 200)
    return {"write": ((h.get("cluster") or {}).get("write") or {}).get("status"),
            "live": f"{live} of {len(h.get('servers') or [])}"}


def _worse_after(before: dict[str, str], spec, runner, cluster, kubectl, sbom_index
                 ) -> list[str]:
    """Checks that passed (or warned) before and do not now, asked again for up to
    SETTLE_S: Patroni names a new sync standby and the budgets recount on their loops."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        now = gather(kubectl, runner, cluster, spec)
        after = _check_statuses(now, spec, sbom_index, _storage_health(now, spec, kubectl))
        worse = [f"{cid}: {before[cid]} before the drain, {after.get(cid)} after"
                 for cid in before if before[cid] in (PASS, WARN)
                 and after.get(cid) not in (PASS, WARN)]
        if not worse or time.monotonic() > deadline:
            return worse
        time.sleep(5)
