"""Checks that the stack survives its own pods being replaced (issue 13). Pure functions
on objects, registered like ducklake_infra/suites/checks.py's."""

from __future__ import annotations

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.checks.core import _stack_namespaces, check
from ducklake_infra.suites.objects import Objects, name_of, pod_spec
from ducklake_infra.suites.catalog import Result, result

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
