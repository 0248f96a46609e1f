"""High-availability checks of the distributed profile (issue 16), read-only: what the
objects say about where MinIO's servers run, its erasure parity, and whether a drain can
proceed without losing its write quorum. Controls with ``profiles: [distributed]``."""

from __future__ import annotations

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import Result, result
from ducklake_infra.suites.checks.core import CheckInputMissing, _env_value, _pods_ready, check
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


def _answer(a: dict) -> str:
    return str(a.get("status")) if a.get("status") is not None else \
        f"no answer ({a.get('error', '?')})"


@check("HA-MINIO-003")
def check_erasure_set_health(objs: Objects, spec: StackSpec, health: dict | None = None
                             ) -> Result:
    """The erasure set as MinIO itself reports it (``health``: the backend's GET
    /storage/health): write and read quorum held, the quorums the planned parity gives,
    every planned server live; WARN while drives heal or when a server may not be taken
    down now."""
    d = _distributed(spec)
    if health is None:
        raise CheckInputMissing("needs MinIO's health as the backend asks it from inside the "
                                "cluster (GET /storage/health)")
    cluster = health.get("cluster") or {}
    w, r = cluster.get("write") or {}, cluster.get("read") or {}
    wq, rq = write_quorum(d.minio_servers, d.minio_parity), d.minio_servers - d.minio_parity
    problems, good, warnings = [], [], []
    if w.get("status") != 200:
        problems.append(f"MinIO's cluster health answers {_answer(w)}: the erasure set lacks "
                        f"its write quorum ({wq} of {d.minio_servers} drives), writes are refused")
    elif w.get("write_quorum") != wq:
        problems.append(f"write quorum {w.get('write_quorum')}, EC:{d.minio_parity} on "
                        f"{d.minio_servers} drives gives {wq}: the set is not the planned one")
    else:
        good.append(f"write quorum held ({wq} of {d.minio_servers} drives)")
    if r.get("status") != 200:
        problems.append(f"MinIO's read health answers {_answer(r)}: fewer than {rq} drives "
                        "online, objects cannot be read")
    elif r.get("read_quorum") != rq:
        have = r.get("read_quorum")
        problems.append(f"read quorum {have}: the parity in force is "
                        f"{'EC:' + str(d.minio_servers - have) if isinstance(have, int) else 'unknown'}"
                        f", the plan says EC:{d.minio_parity}")
    else:
        good.append(f"read quorum held ({rq} data drives: EC:{d.minio_parity} in force)")
    healing = max(w.get("healing_drives", 0) or 0, r.get("healing_drives", 0) or 0)
    if healing:
        warnings.append(f"{healing} drive(s) healing: a further loss is not covered until done")
    asked = {s.get("host"): s for s in health.get("servers") or []}
    live = 0
    for host in spec.minio_server_hosts:
        s = asked.get(host)
        if s is None:
            problems.append(f"the backend does not ask {host} (DUCKLAKE_MINIO_SERVERS in its "
                            "ConfigMap: run `ducklake-infra up`)")
            continue
        if (s.get("live") or {}).get("status") != 200:
            problems.append(f"server {host} is not live: {_answer(s.get('live') or {})}")
            continue
        if s.get("access", "ok") != "ok":
            problems.append(f"server {host} refuses the stack's own identity ({s['access']}) "
                            "while its health endpoints answer: it cannot reach a peer or "
                            "load its users (restart that server: delete its pod)")
            continue
        live += 1
        m = s.get("maintenance") or {}
        if m.get("status") == 412:
            warnings.append(f"taking {host} down now would cost the write quorum: a drain "
                            "must wait")
        elif m.get("status") != 200:
            warnings.append(f"{host}'s maintenance probe answers {_answer(m)}")
    if live and live == len(spec.minio_server_hosts):
        good.append(f"all {live} servers live, serving the stack's identity, each one safe to "
                    "take down")
    return result(problems, good, warnings)
