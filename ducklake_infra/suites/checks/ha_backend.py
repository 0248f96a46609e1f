"""High-availability check of the distributed profile's backend (issue 16), read-only:
what the objects say about its replicas, where they run, what keeps them apart and what
keeps one serving through a drain. Control BE-HA-001 (``profiles: [distributed]``)."""

from __future__ import annotations

from typing import Mapping

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import Result, result
from ducklake_infra.suites.checks.core import _backend_deployment, _ready, check
from ducklake_infra.suites.checks.ha import _distributed, _selects
from ducklake_infra.suites.objects import Objects, name_of, pod_spec

HOSTNAME = "kubernetes.io/hostname"


def _kept_apart(pod: Mapping, selector: Mapping) -> str | None:
    """What keeps the replicas on distinct nodes, or None: a hostname spread constraint
    that refuses to place against it, or a required anti-affinity on hostname, either one
    selecting the backend's own pods."""
    def own(term: Mapping) -> bool:
        sel = (term.get("labelSelector") or {}).get("matchLabels") or {}
        return bool(sel) and all(selector.get(k) == v for k, v in sel.items())
    for c in pod.get("topologySpreadConstraints") or []:
        if c.get("topologyKey") == HOSTNAME and c.get("whenUnsatisfiable") == "DoNotSchedule" \
                and own(c):
            return f"a hostname spread constraint (maxSkew {c.get('maxSkew')}, DoNotSchedule)"
    anti = ((pod.get("affinity") or {}).get("podAntiAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or []
    if any(t.get("topologyKey") == HOSTNAME and own(t) for t in anti):
        return "a required pod anti-affinity on hostname"
    return None


def _budget_problems(objs: Objects, dep: Mapping, labels: Mapping, replicas: int
                     ) -> tuple[list[str], list[str]]:
    ns = dep["metadata"].get("namespace")
    pdbs = [p for p in objs.all("PodDisruptionBudget", ns) if _selects(p, labels)]
    if not pdbs:
        return [f"no PodDisruptionBudget selects {name_of(dep)}'s pods: a drain may evict "
                "every replica at once"], []
    if len(pdbs) > 1:
        return [f"{len(pdbs)} PodDisruptionBudgets select {name_of(dep)}'s pods "
                f"({', '.join(name_of(p) for p in pdbs)}): the eviction API then refuses "
                "every eviction, and a drain never ends"], []
    pdb = pdbs[0]
    s, st = pdb.get("spec") or {}, pdb.get("status") or {}
    keep = s.get("minAvailable") if "minAvailable" in s else (
        replicas - s["maxUnavailable"] if isinstance(s.get("maxUnavailable"), int) else None)
    if not isinstance(keep, int):
        return [f"{name_of(pdb)}: {s} is a percentage or no budget; expected minAvailable 1"], []
    if keep < 1:
        return [f"{name_of(pdb)} keeps {keep} replicas through a drain: the Service may be "
                "left with none"], []
    if keep >= replicas:
        return [f"{name_of(pdb)} keeps {keep} of {replicas} replicas: no eviction is ever "
                "allowed and a drain never ends"], []
    if st and st.get("disruptionsAllowed", 0) < 1:
        return [f"{name_of(pdb)} allows no disruption now ({st.get('currentHealthy', '?')} "
                f"healthy of {st.get('expectedPods', '?')}): a drain would wait"], []
    return [], [f"{name_of(pdb)} keeps {keep} of {replicas} serving through a drain"]


@check("BE-HA-001")
def check_backend_replicas_spread(objs: Objects, spec: StackSpec) -> Result:
    """At least 2 available replicas as planned, Ready on distinct nodes, kept apart by the
    scheduler (not by luck), and a PodDisruptionBudget that keeps one through a drain."""
    want, b = _distributed(spec).backend_replicas, spec.backend
    dep = _backend_deployment(objs, spec)
    if dep is None:
        return result([f"no Deployment {b.namespace}/{b.deployment}"])
    problems, good = [], []
    replicas = (dep.get("spec") or {}).get("replicas", 1)
    if replicas < 2 or replicas != want:
        problems.append(f"{name_of(dep)} has {replicas} replica(s), the plan says {want}"
                        + (": one pod's loss stops the API" if replicas < 2 else ""))
    avail = (dep.get("status") or {}).get("availableReplicas", 0) or 0
    if avail < min(2, want):
        problems.append(f"{name_of(dep)}: {avail} available")
    nodes: dict[str, list[str]] = {}
    for p in objs.pods_of(dep):
        if _ready(p) and not (p.get("metadata") or {}).get("deletionTimestamp"):
            nodes.setdefault((p.get("spec") or {}).get("nodeName") or "?", []).append(
                p["metadata"]["name"])
    for n, ps in sorted(nodes.items()):
        if len(ps) > 1:
            problems.append(f"replicas {', '.join(sorted(ps))} share node {n}: losing it "
                            "stops the API")
    if len(nodes) >= 2 and all(len(ps) == 1 for ps in nodes.values()):
        good.append(f"{len(nodes)} Ready replicas on distinct nodes ({', '.join(sorted(nodes))})")
    labels = (dep.get("spec") or {}).get("selector", {}).get("matchLabels") or {}
    apart = _kept_apart(pod_spec(dep), labels)
    if apart is None:
        problems.append(f"{name_of(dep)} has no hostname spread constraint with DoNotSchedule "
                        "(nor a required anti-affinity): distinct nodes only by luck")
    else:
        good.append(f"kept apart by {apart}")
    bp, bg = _budget_problems(objs, dep, labels, replicas)
    return result(problems + bp, good + bg)
