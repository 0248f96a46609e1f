"""High-availability checks of the distributed profile's PostgreSQL (Patroni, issue 16),
read-only: what Patroni's ConfigMaps (Kubernetes DCS in ConfigMap mode: ``<scope>-leader``,
``-sync``, ``-config``), the members' ``role`` labels and ``status`` annotations, the
Service and its EndpointSlices, and the PodDisruptionBudget say. No network path to the
database and no credential: usable on a real cluster with the auditor's read rights."""

from __future__ import annotations

import json

from ducklake_infra.provision import kube
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import Result, result
from ducklake_infra.suites.checks.core import _pg_statefulset, _ready, check
from ducklake_infra.suites.checks.ha import _distributed, _selects
from ducklake_infra.suites.objects import Objects, name_of


def _annotations(objs: Objects, name: str, ns: str) -> dict | None:
    cm = objs.get("ConfigMap", name, ns)
    return None if cm is None else (cm.get("metadata") or {}).get("annotations") or {}


def _members(objs: Objects, spec: StackSpec) -> tuple[dict | None, list[dict]]:
    sts = _pg_statefulset(objs, spec)
    pods = [p for p in objs.pods_of(sts) if not p["metadata"].get("deletionTimestamp")] \
        if sts else []
    return sts, pods


def _role(pod: dict) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get("role")


def _status(pod: dict) -> dict:
    try:
        return json.loads(((pod.get("metadata") or {}).get("annotations") or {}).get("status")
                          or "{}")
    except ValueError:
        return {}


@check("HA-PG-001")
def check_pg_primary_and_sync_standbys(objs: Objects, spec: StackSpec) -> Result:
    """One primary, the planned number of in-sync standbys streaming from it, synchronous
    strict mode as planned, and the Service routing to the primary alone."""
    d, pg = _distributed(spec), spec.postgresql
    ns, scope = pg.namespace, pg.release
    sts, pods = _members(objs, spec)
    if sts is None:
        return result([f"no StatefulSet {ns}/{pg.fullname}"])
    problems, good, warnings = [], [], []
    primaries = [p for p in pods if _role(p) == "primary"]
    if len(primaries) != 1:
        problems.append(f"{len(primaries)} members labelled role=primary "
                        f"({', '.join(p['metadata']['name'] for p in primaries) or 'none'}); "
                        "expected exactly one")
    primary = primaries[0]["metadata"]["name"] if len(primaries) == 1 else None
    leader = _annotations(objs, f"{scope}-leader", ns)
    if leader is None:
        problems.append(f"no ConfigMap {ns}/{scope}-leader: Patroni holds no leader lock")
    elif primary and leader.get("leader") != primary:
        problems.append(f"ConfigMap {scope}-leader names {leader.get('leader')!r}, the pod "
                        f"labelled primary is {primary}")
    elif primary:
        good.append(f"primary {primary} holds the leader lock ({leader.get('transitions', '?')} "
                    "transitions)")
    sync_cm = objs.get("ConfigMap", f"{scope}-sync", ns)
    sync = None if sync_cm is None else (sync_cm.get("metadata") or {}).get("annotations") or {}
    standbys = kube.sync_standbys(sync_cm)
    if sync is None:
        problems.append(f"no ConfigMap {ns}/{scope}-sync: synchronous replication is not on")
    elif primary and sync.get("leader") != primary:
        problems.append(f"ConfigMap {scope}-sync names leader {sync.get('leader')!r}, not {primary}")
    if sync is not None and len(standbys) < d.pg_sync_count:
        problems.append(f"{len(standbys)} in-sync standby(s) ({', '.join(standbys) or 'none'}), "
                        f"the plan says {d.pg_sync_count}: an acknowledged commit may exist on "
                        "the primary alone")
    by_name = {p["metadata"]["name"]: p for p in pods}
    for s in standbys:
        pod = by_name.get(s)
        st = _status(pod) if pod else {}
        if pod is None:
            problems.append(f"in-sync standby {s} is not a running member")
        elif st.get("state") != "running" or st.get("replication_state") not in (None, "streaming"):
            problems.append(f"in-sync standby {s} is {st.get('state')!r}, replication "
                            f"{st.get('replication_state')!r} (expected running, streaming)")
        elif not _ready(pod):
            problems.append(f"in-sync standby {s} is not Ready")
        else:
            good.append(f"in-sync standby {s} streaming")
    conf_ann = _annotations(objs, f"{scope}-config", ns)
    try:
        conf = json.loads((conf_ann or {}).get("config") or "{}")
    except ValueError:
        conf = {}
    off_plan = [f"Patroni's live configuration has {key} {conf.get(key)!r}, the plan says "
                f"{want!r}" for key, want in (("synchronous_mode", True),
                                              ("synchronous_mode_strict", d.pg_strict),
                                              ("synchronous_node_count", d.pg_sync_count))
                if conf.get(key) != want]
    problems += off_plan
    if not off_plan:
        good.append(f"synchronous_mode on, strict {d.pg_strict}, "
                    f"{d.pg_sync_count} synchronous standby(s)")
    if conf and not conf.get("failsafe_mode"):
        warnings.append("failsafe_mode is off: a primary cut off from the API server demotes "
                        "even when every member still reaches it")
    problems += _service_routes_to(objs, spec, primaries[0] if len(primaries) == 1 else None,
                                   good)
    return result(problems, good, warnings)


def _service_routes_to(objs: Objects, spec: StackSpec, primary: dict | None,
                       good: list[str]) -> list[str]:
    """The catalog Service selects role=primary and its endpoints hold the primary's IP
    only (a replica behind it would take writes it must refuse)."""
    pg = spec.postgresql
    problems = []
    for want in pg.services:
        svc = objs.get("Service", want.name, want.namespace)
        if svc is None or (svc.get("spec") or {}).get("clusterIP") == "None":
            continue
        sel = (svc.get("spec") or {}).get("selector") or {}
        if sel.get("role") != "primary":
            problems.append(f"{name_of(svc)} selects {sel}: without role=primary it routes to "
                            "replicas too")
            continue
        ips = {a for es in objs.all("EndpointSlice", want.namespace)
               if ((es.get("metadata") or {}).get("labels") or {}).get(
                   "kubernetes.io/service-name") == want.name
               for e in es.get("endpoints") or [] for a in e.get("addresses") or []}
        primary_ip = ((primary or {}).get("status") or {}).get("podIP")
        if primary_ip and ips != {primary_ip}:
            problems.append(f"{name_of(svc)} endpoints {sorted(ips) or 'none'}, the primary is "
                            f"{primary_ip}")
        elif primary_ip:
            good.append(f"{name_of(svc)} routes to the primary only ({primary_ip})")
    return problems


@check("HA-PG-002")
def check_pg_members_spread(objs: Objects, spec: StackSpec) -> Result:
    """The planned members, each on a node of its own, and a PodDisruptionBudget that lets
    a drain take one member at a time."""
    d, pg = _distributed(spec), spec.postgresql
    sts, pods = _members(objs, spec)
    if sts is None:
        return result([f"no StatefulSet {pg.namespace}/{pg.fullname}"])
    problems, good = [], []
    if len(pods) != d.pg_members:
        problems.append(f"{len(pods)} members, the plan says {d.pg_members}")
    nodes: dict[str, list[str]] = {}
    for p in pods:
        nodes.setdefault((p.get("spec") or {}).get("nodeName") or "?", []).append(
            p["metadata"]["name"])
    for n, ps in sorted(nodes.items()):
        if len(ps) > 1:
            problems.append(f"members {', '.join(sorted(ps))} share node {n}: losing it loses "
                            "the primary and a standby at once")
    if pods and all(len(ps) == 1 for ps in nodes.values()):
        good.append(f"{len(pods)} members on {len(nodes)} distinct nodes")
    labels = (((sts.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels") or {}
    pdbs = [p for p in objs.all("PodDisruptionBudget", pg.namespace) if _selects(p, labels)]
    if not pdbs:
        problems.append(f"no PodDisruptionBudget selects {name_of(sts)}'s pods: a drain may "
                        "stop every member at once")
    for pdb in pdbs:
        s, st = pdb.get("spec") or {}, pdb.get("status") or {}
        if s.get("maxUnavailable") != 1:
            problems.append(f"{name_of(pdb)} has {s}; expected maxUnavailable 1 (strict "
                            "synchronous mode stops writes with no standby left)")
        elif st and st.get("disruptionsAllowed", 0) < 1:
            problems.append(f"{name_of(pdb)} allows no disruption now "
                            f"({st.get('currentHealthy', '?')} healthy of "
                            f"{st.get('expectedPods', '?')}): a drain would wait")
        else:
            good.append(f"{name_of(pdb)}: one member at a time")
    return result(problems, good)
