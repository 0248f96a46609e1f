"""High-availability checks of the distributed profile (issue 16), read-only: what the
objects say about where MinIO's servers run, its erasure parity, and whether a drain can
proceed without losing its write quorum. Controls with ``profiles: [distributed]``."""

from __future__ import annotations

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import Result, result
from ducklake_infra.suites.checks.core import _env_value, _pods_ready, check
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec

PARITY_ENV = "MINIO_STORAGE_CLASS_STANDARD"


def write_quorum(servers: int, parity: int) -> int:
    """MinIO's write quorum for one erasure set of ``servers`` drives: the data drives, one
    more when data and parity are as many (it then could not tell two halves apart)."""
    data = servers - parity
    return data + 1 if data == parity else data


def _minio_statefulset(objs: Objects, spec: StackSpec) -> dict | None:
    return objs.get("StatefulSet", spec.minio.fullname, spec.minio.namespace)


def _distributed(spec: StackSpec):
    if spec.distributed is None:
        raise ValueError("the distributed profile's checks need the spec's distributed section")
    return spec.distributed


@check("HA-MINIO-001")
def check_minio_servers_spread(objs: Objects, spec: StackSpec) -> Result:
    """Every MinIO server Ready, as many as planned, each on a node of its own."""
    d, m = _distributed(spec), spec.minio
    sts = _minio_statefulset(objs, spec)
    if sts is None:
        return result([f"no StatefulSet {m.namespace}/{m.fullname}: MinIO does not run "
                       "distributed"], [])
    problems, good = _pods_ready(objs, sts, f"MinIO {m.namespace}/{m.fullname}")
    replicas = (sts.get("spec") or {}).get("replicas", 1)
    if replicas != d.minio_servers:
        problems.append(f"{name_of(sts)} has {replicas} servers, the plan says {d.minio_servers}")
    nodes: dict[str, list[str]] = {}
    for p in objs.pods_of(sts):
        node = (p.get("spec") or {}).get("nodeName")
        if node:
            nodes.setdefault(node, []).append(p["metadata"]["name"])
    shared = {n: ps for n, ps in nodes.items() if len(ps) > 1}
    for n, ps in sorted(shared.items()):
        problems.append(f"servers {', '.join(sorted(ps))} share node {n}: losing it loses "
                        f"{len(ps)} drives at once")
    if not shared and nodes:
        good.append(f"{sum(len(p) for p in nodes.values())} servers on {len(nodes)} distinct "
                    "nodes")
    return result(problems, good)


@check("HA-MINIO-002")
def check_minio_parity(objs: Objects, spec: StackSpec) -> Result:
    """The erasure parity the plan chose, set explicitly on the servers."""
    d, m = _distributed(spec), spec.minio
    sts = _minio_statefulset(objs, spec)
    if sts is None:
        return result([f"no StatefulSet {m.namespace}/{m.fullname}"], [])
    want = f"EC:{d.minio_parity}"
    problems, good = [], []
    for c in containers(pod_spec(sts)):
        if c.get("name") != "minio":
            continue
        env = _env_value(c, PARITY_ENV)
        have = env.get("value") if env else None
        if have != want:
            problems.append(f"container minio: {PARITY_ENV} is {have!r}, the plan says {want!r} "
                            "(unset: MinIO's default for the set's size, invisible to drift)")
        else:
            good.append(f"{PARITY_ENV}={want}: reads survive {d.minio_parity} lost servers, "
                        f"writes {d.minio_servers - write_quorum(d.minio_servers, d.minio_parity)}")
    if not problems and not good:
        problems.append(f"{name_of(sts)} has no container named minio")
    return result(problems, good)


def _selects(pdb: dict, labels: dict) -> bool:
    sel = ((pdb.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


@check("HA-PDB-001")
def check_minio_disruption_budget(objs: Objects, spec: StackSpec) -> Result:
    """A PodDisruptionBudget covers MinIO's servers, lets a drain take one at a time, and
    never more than the write quorum can lose."""
    d, m = _distributed(spec), spec.minio
    sts = _minio_statefulset(objs, spec)
    if sts is None:
        return result([f"no StatefulSet {m.namespace}/{m.fullname}"], [])
    labels = (((sts.get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
        "labels") or {}
    pdbs = [p for p in objs.all("PodDisruptionBudget", m.namespace) if _selects(p, labels)]
    if not pdbs:
        return result([f"no PodDisruptionBudget selects {name_of(sts)}'s pods: a drain may "
                       "take every server at once"], [])
    spare = d.minio_servers - write_quorum(d.minio_servers, d.minio_parity)
    problems, good = [], []
    for pdb in pdbs:
        s, st = pdb.get("spec") or {}, pdb.get("status") or {}
        if "maxUnavailable" in s:
            allowed = s["maxUnavailable"]
        elif "minAvailable" in s:
            allowed = d.minio_servers - s["minAvailable"] if isinstance(s["minAvailable"], int) \
                else None
        else:
            allowed = None
        if not isinstance(allowed, int):
            problems.append(f"{name_of(pdb)}: a percentage or no budget; expected an absolute "
                            f"maxUnavailable of at most {spare}")
        elif allowed > spare:
            problems.append(f"{name_of(pdb)} lets {allowed} servers go at once; the write quorum "
                            f"({write_quorum(d.minio_servers, d.minio_parity)} of "
                            f"{d.minio_servers}) survives {spare}")
        elif allowed < 1:
            problems.append(f"{name_of(pdb)} lets no server go: a node drain never finishes")
        else:
            good.append(f"{name_of(pdb)}: at most {allowed} server(s) disrupted at once")
        if st and st.get("disruptionsAllowed", 0) < 1:
            problems.append(f"{name_of(pdb)} allows no disruption now "
                            f"({st.get('currentHealthy', '?')} healthy of "
                            f"{st.get('expectedPods', '?')}): a drain would wait")
    return result(problems, good)
