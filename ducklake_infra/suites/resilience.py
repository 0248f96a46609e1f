"""Checks that the stack survives its own pods being replaced (issue 13). Pure functions
on objects, registered like ducklake_infra/suites/checks.py's."""

from __future__ import annotations

import datetime as _dt

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.checks.core import CheckInputMissing, _stack_namespaces, check
from ducklake_infra.suites.objects import Objects, name_of, pod_spec
from ducklake_infra.suites.catalog import FAIL, PASS, WARN, Result, result

SINGLE_NODE_MODES = {"ReadWriteOnce", "ReadWriteOncePod"}


def _single_writer_claims(objs: Objects, dep: dict, ns: str) -> list[str]:
    """The claims a Deployment in ``ns`` mounts whose volume only one node (or pod) may
    write."""
    out = []
    for v in pod_spec(dep).get("volumes") or []:
        claim = (v.get("persistentVolumeClaim") or {}).get("claimName")
        pvc = objs.get("PersistentVolumeClaim", claim, ns) if claim else None
        if pvc is not None and SINGLE_NODE_MODES & set(pvc.get("spec", {}).get("accessModes") or []):
            out.append(claim)
    return out


@check("STORE-RWO-001")
def check_single_volume_workloads_never_run_twice(objs: Objects, spec: StackSpec) -> Result:
    """A Deployment on a ReadWriteOnce volume must never run two pods at once: RWO only
    binds the volume to one node, and on one node a rolling update (maxSurge > 0) starts
    the new server on the same data while the old one still writes."""
    problems, good = [], []
    for ns in sorted(_stack_namespaces(spec)):
        for dep in objs.all("Deployment", ns):
            claims = _single_writer_claims(objs, dep, ns)
            if not claims:
                continue
            s = dep.get("spec", {})
            strategy = s.get("strategy") or {}
            kind = strategy.get("type", "RollingUpdate")
            surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
            what = f"{name_of(dep)} (volume {', '.join(claims)})"
            if s.get("replicas", 1) > 1:
                problems.append(f"{what} has {s['replicas']} replicas on one ReadWriteOnce volume")
            elif kind == "Recreate":
                good.append(f"{what}: strategy Recreate")
            elif kind == "RollingUpdate" and str(surge) in ("0", "0%"):
                good.append(f"{what}: RollingUpdate with maxSurge 0")
            else:
                problems.append(f"{what}: strategy {kind} with maxSurge {surge} starts a second "
                                "pod on the same volume during every update or restart")
    if not good and not problems:
        good.append("no Deployment of the stack mounts a ReadWriteOnce volume")
    return result(problems, good)


@check("BE-MAINT-001")
def check_lake_maintenance(objs: Objects, spec: StackSpec,
                           status: dict | None = None) -> Result:
    """The backend compacts small files, expires old snapshots and deletes unreferenced
    files on a schedule (its ConfigMap), and the last run did not fail. ``status`` is the
    backend's GET /maintenance answer when it could be read (a live stack)."""
    b = spec.backend
    cm = objs.get("ConfigMap", b.configmap, b.namespace)
    if cm is None:
        raise CheckInputMissing(f"ConfigMap {b.namespace}/{b.configmap} does not exist")
    data = cm.get("data") or {}
    raw = data.get("DUCKLAKE_MAINTENANCE_INTERVAL_S", "0")
    interval = int(raw) if str(raw).isdigit() else 0
    if interval <= 0:
        return Result(FAIL, [f"ConfigMap {b.configmap}: DUCKLAKE_MAINTENANCE_INTERVAL_S is "
                             f"{raw!r}: small files pile up and old snapshots are never expired"])
    good = [f"scheduled every {interval}s, snapshots kept "
            f"{data.get('DUCKLAKE_MAINTENANCE_KEEP_S', '86400')}s"]
    if status is None:
        return Result(PASS, good)
    last = status.get("last")
    if last is None:
        return Result(WARN, [f"warning: maintenance has not run yet since the backend started "
                             f"(every {status.get('interval_s')}s)", *good])
    if not last.get("ok"):
        return Result(FAIL, [f"the last maintenance run ({last.get('started_at')}) failed: "
                             f"{last.get('error', '?')}", *good])
    return Result(PASS, [*good, f"last run {last.get('started_at')}: {last.get('files_merged')} "
                                f"file(s) merged, {last.get('snapshots_expired')} snapshot(s) "
                                f"expired, {last.get('files_deleted')} file(s) deleted"])


RETRYABLE = {"503", "429", "409"}


def lost_and_partial(batch_rows: int, acked: set[int], found: dict[int, int]
                     ) -> tuple[list[int], list[int]]:
    """Acknowledged batches not found whole; batches found in part."""
    return (sorted(b for b in acked if found.get(b, 0) != batch_rows),
            sorted(b for b, n in found.items() if n not in (0, batch_rows)))


def ledger_figures(batch_rows: int, acked: set[int], sent: int, found: dict[int, int],
                   duplicates: int, recovery_s: float | None, errors: dict[str, int]) -> dict:
    """The accounting of one fault as numbers (results.json ``figures``, the HTML report's
    fault table)."""
    lost, partial = lost_and_partial(batch_rows, acked, found)
    return {"batch_rows": batch_rows, "sent": sent, "acknowledged": len(acked),
            "found_whole": len(acked) - len(lost), "lost": len(lost), "duplicates": duplicates,
            "partial": len(partial),
            "client_errors": dict(sorted(errors.items())),
            "ready_again_s": None if recovery_s is None else round(recovery_s, 1)}


def judge_ledger(batch_rows: int, acked: set[int], sent: int, found: dict[int, int],
                 duplicates: int, recovery_s: float | None, errors: dict[str, int],
                 max_recovery_s: float) -> Result:
    """The accounting after a fault: every acknowledged batch present exactly once, no
    batch present in part (a commit is all or nothing), no row twice, and the backend
    Ready again in time. ``found``: batch number -> rows of it in the table."""
    problems = []
    lost, partial = lost_and_partial(batch_rows, acked, found)
    if lost:
        problems.append(f"{len(lost)} acknowledged batch(es) not found whole: {lost[:10]}")
    if partial:
        problems.append(f"{len(partial)} batch(es) present in part: {partial[:10]}")
    if duplicates:
        problems.append(f"{duplicates} row(s) present more than once")
    if recovery_s is None:
        problems.append("the backend did not become Ready again")
    elif recovery_s > max_recovery_s:
        problems.append(f"the backend took {recovery_s:.1f}s to be Ready again "
                        f"(limit {max_recovery_s:.0f}s)")
    # what a client may see while a dependency restarts: a clear, retryable answer
    unclear = {k: v for k, v in errors.items()
               if (k.isdigit() and k not in RETRYABLE) or "timeout" in k.lower()}
    if unclear:
        problems.append("clients saw answers that are neither clear nor retryable: " +
                        ", ".join(f"{k} x{v}" for k, v in sorted(unclear.items())) +
                        " (expected 503/429/409, never a 500 or a hang)")
    unacked_present = sorted(b for b, n in found.items() if b not in acked and n)
    good = [f"{sent} batch(es) of {batch_rows} rows sent, {len(acked)} acknowledged, "
            f"{len(acked) - len(lost)} acknowledged found whole, lost 0" if not lost else
            f"{sent} batch(es) sent, {len(acked)} acknowledged",
            f"duplicates {duplicates}, batches in part {len(partial)}",
            f"unacknowledged but committed (a timeout after the commit): {len(unacked_present)}",
            "errors the clients saw: " + (", ".join(f"{k} x{v}" for k, v in sorted(errors.items()))
                                          or "none"),
            ("the backend never answered not-ready (readyz every 0.5 s)" if recovery_s == 0
             else f"Ready again {recovery_s:.1f}s after the fault")
            if recovery_s is not None else ""]
    return result(problems, [g for g in good if g])


def judge_full_volume(ledger: Result, errors: dict[str, int], again_s: float,
                      before_again: dict[str, int], undo_errors: list[str]) -> Result:
    """RES-DISK-001: the ledger's verdict (:func:`judge_ledger`: nothing lost or in part,
    every refusal clear and retryable), plus: the full volume refused writes at all (else
    the fault did not bite), and the stack went back to its own volume and catalog."""
    problems = list(ledger.evidence) if ledger.status != PASS else []
    refused = errors.get("503", 0)
    if not refused:
        problems.append("no write was refused while the volume was full: the fault did not "
                        f"bite (errors: {errors or 'none'})")
    if undo_errors:
        problems.append("the stack could not be moved back to its own volume and catalog: "
                        + "; ".join(undo_errors))
    evidence = [f"{refused} write(s) refused with 503 while the volume was full",
                f"writes accepted again {again_s:.1f}s after space was freed (answers "
                f"before: {', '.join(f'{k} x{v}' for k, v in before_again.items()) or 'none'})",
                *([] if undo_errors else ["the stack moved back to its own volume and catalog"]),
                *([] if problems else ledger.evidence)]
    return Result(FAIL, problems + evidence) if problems else Result(PASS, evidence)


def pods_ready_since(pods: list[dict], since: float | None) -> bool:
    """Every pod Ready and (``since``: an epoch) every container started after it: right
    after a restart the API still shows the old pods' statuses as they were."""
    if not pods:
        return False
    for p in pods:
        st = p.get("status") or {}
        if not any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in st.get("conditions") or []):
            return False
        for cs in st.get("containerStatuses") or []:
            at = ((cs.get("state") or {}).get("running") or {}).get("startedAt")
            if not at or (since is not None and _dt.datetime.fromisoformat(
                    at.replace("Z", "+00:00")).timestamp() < since - 1):
                return False
    return True


def judge_failover(ledger: Result, old_primary: str, new_primary: str | None,
                   sync_standby: list[str], failover_s: float | None, limit_s: float,
                   most_primaries: int) -> Result:
    """The PostgreSQL primary was deleted under write load (distributed profile): the
    ledger holds (no acknowledged commit lost), a new primary took over within
    ``limit_s``, it was an in-sync standby (synchronous mode promotes no other), and never
    were two live members labelled primary at once (sampled every 0.5 s)."""
    problems = [e for e in ledger.evidence if not e.startswith("ok: ")] \
        if ledger.status == FAIL else []
    good = [e for e in ledger.evidence if ledger.status != FAIL or e.startswith("ok: ")]
    if new_primary is None or failover_s is None:
        problems.append(f"no member took over from {old_primary} (no other pod labelled "
                        "role=primary)")
    else:
        if failover_s > limit_s:
            problems.append(f"{new_primary} took over {failover_s:.1f}s after {old_primary} was "
                            f"deleted (limit {limit_s:.0f}s)")
        else:
            good.append(f"{new_primary} primary {failover_s:.1f}s after {old_primary} was deleted")
        if sync_standby and new_primary not in sync_standby:
            problems.append(f"{new_primary} was promoted, but the in-sync standby was "
                            f"{', '.join(sync_standby)}: commits acknowledged on the old "
                            "primary may be missing on it")
        elif sync_standby:
            good.append(f"{new_primary} was the in-sync standby")
    if most_primaries > 1:
        problems.append(f"{most_primaries} live members were labelled primary at once "
                        "(split brain: the Service could route writes to both)")
    return result(problems, good)


def judge_drain(ledger: Result, node: str, drain_s: float | None, drain_error: str | None,
                limit_s: float, evicted: list[str], worse: list[str],
                not_ready_again: str | None, storage_during: dict | None = None) -> Result:
    """RES-DRAIN-001: a worker drained under write load (distributed profile). The ledger
    holds (no acknowledged batch lost, every answer clear and retryable), the drain ended
    within ``limit_s`` (the budgets let each eviction through in turn) and evicted the
    stack's pods there, MinIO kept its write quorum with the node's server gone
    (``storage_during``: the backend's /storage/health then), the stack was Ready again
    after the uncordon, and no check that passed before the drain fails after it
    (``worse``)."""
    problems = [e for e in ledger.evidence if not e.startswith("ok: ")] \
        if ledger.status == FAIL else []
    good = [e for e in ledger.evidence if ledger.status != FAIL or e.startswith("ok: ")]
    if drain_error is not None or drain_s is None:
        problems.append(f"the drain of {node} did not finish: {drain_error or 'no answer'}")
    elif drain_s > limit_s:
        problems.append(f"the drain of {node} took {drain_s:.1f}s (limit {limit_s:.0f}s)")
    else:
        good.append(f"{node} drained in {drain_s:.1f}s")
    if not evicted:
        problems.append(f"no pod of the stack ran on {node}: the drain proved nothing")
    else:
        good.append(f"evicted: {', '.join(evicted)}")
    if storage_during is not None:
        if storage_during.get("write") != 200:
            problems.append("MinIO's write quorum was not held while the node was drained: "
                            f"{storage_during}")
        else:
            good.append(f"MinIO kept its write quorum during the drain ({storage_during['live']}"
                        " servers live)")
    if not_ready_again:
        problems.append(not_ready_again)
    if worse:
        problems.append("checks that passed before the drain and not after: " + "; ".join(worse))
    else:
        good.append("no check worse after the uncordon than before the drain")
    return result(problems, good)
