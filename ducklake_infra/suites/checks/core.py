"""The check registry (``@check``, ``run``, ``CHECKS``) and the helpers the area modules share."""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from ducklake_infra.provision.spec import PvcSpec, ReleaseSpec, ServiceSpec, StackSpec

from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec, \
    same_quantity, secret_forms
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, Result, catalog, result

CHECKS: dict[str, Callable[[Objects, StackSpec], Result]] = {}

# well-known MinIO defaults (chart docs, quickstarts, docker-compose examples)
DEFAULT_MINIO_CREDENTIALS = (("minioadmin", "minioadmin"), ("minio", "minio123"),
                             ("minio", "minio12345"), ("admin", "password"))
DEFAULT_MINIO_PASSWORDS = {p for _, p in DEFAULT_MINIO_CREDENTIALS}
CREDENTIAL_NAME = re.compile(r"(?i)(passw(or)?d|passwd|secret|token|access[_-]?key|private[_-]?key|"
                             r"credential|api[_-]?key|root[_-]?user)")
_NOT_A_CREDENTIAL = re.compile(r"(?i)(_FILE|_PATH|_DIR|_REF|_NAME)$")
CREDENTIAL_ASSIGNMENT = re.compile(
    r"(?i)\b(password|passwd|secret[_-]?key|access[_-]?key|secret|token)\s*[=:]\s*['\"]?([^\s'\"$`{}<>]{6,})")
SKIP_CONFIGMAPS = {"kube-root-ca.crt"}


def as_control(res: Result, cid: str) -> Result:
    """``res`` as the verdict of control ``cid``: its ID, and (unless PASS) its remediation."""
    res.control = cid
    if res.status != PASS and not res.remediation:
        res.remediation = catalog()[cid].remediation
    return res


def check(cid: str):
    """Register a pure check for a control; the returned Result carries the ID
    and (unless PASS) the control's remediation. Keyword arguments (facts about the
    cluster that are not objects, e.g. whether its images were loaded) pass through."""
    def deco(fn):
        def wrapper(objs: Objects, spec: StackSpec, **kw) -> Result:
            try:
                res = fn(objs, spec, **kw)
            except CheckInputMissing as exc:
                res = Result(ERROR, [f"could not evaluate: {exc}"])
            return as_control(res, cid)
        wrapper.__name__ = fn.__name__
        wrapper.__doc__ = fn.__doc__
        wrapper.control_id = cid
        if cid in CHECKS:
            raise ValueError(f"two checks for {cid}")
        CHECKS[cid] = wrapper
        return wrapper
    return deco


class CheckInputMissing(Exception):
    """The objects a check needs are not available (-> ERROR, not FAIL)."""


def run(cid: str, objs: Objects, spec: StackSpec, **facts) -> Result:
    return CHECKS[cid](objs, spec, **facts)


# ---- shared helpers -----------------------------------------------------------------------
def _release_check(objs: Objects, rel: ReleaseSpec) -> Result:
    if objs.helm_releases is None:
        raise CheckInputMissing(objs.helm_error
                                or "no Helm release metadata (helm list) was collected")
    rows = [r for r in objs.helm_releases if r.get("name") == rel.name]
    want_chart = f"{rel.chart.name}-{rel.chart.version}"
    if not rows:
        return Result(FAIL, [f"no Helm release {rel.name!r} in namespace {rel.namespace!r}"])
    problems, good = [], []
    r = rows[0]
    if r.get("namespace") != rel.namespace:
        problems.append(f"release {rel.name!r} is in namespace {r.get('namespace')!r}, "
                        f"expected {rel.namespace!r}")
    if r.get("chart") != want_chart:
        problems.append(f"release {rel.name!r} runs chart {r.get('chart')!r}, expected {want_chart!r}")
    else:
        good.append(f"release {rel.name!r} chart {want_chart} in namespace {rel.namespace}")
    if r.get("status") != "deployed":
        problems.append(f"release {rel.name!r} status is {r.get('status')!r}, expected 'deployed'")
    else:
        good.append(f"status deployed (revision {r.get('revision')}, app {r.get('app_version')})")
    return result(problems, good)


def _release_objects(objs: Objects, kind: str, namespace: str, release: str) -> list[dict]:
    out = []
    for o in objs.all(kind, namespace):
        labels = o.get("metadata", {}).get("labels") or {}
        if labels.get("release") == release or labels.get("app.kubernetes.io/instance") == release:
            out.append(o)
    return out


def _services_check(objs: Objects, services: tuple[ServiceSpec, ...], release: str | None) -> Result:
    problems, good = [], []
    checked = set()
    for s in services:
        svc = objs.get("Service", s.name, s.namespace)
        if svc is None:
            problems.append(f"Service {s.namespace}/{s.name} does not exist")
            continue
        checked.add((s.namespace, s.name))
        st = svc.get("spec", {})
        stype = st.get("type", "ClusterIP")
        ports = {p.get("port") for p in st.get("ports") or []}
        if stype != s.type:
            node_ports = [p.get("nodePort") for p in st.get("ports") or [] if p.get("nodePort")]
            extra = f" (nodePorts {node_ports})" if node_ports else ""
            problems.append(f"Service {s.namespace}/{s.name} is type {stype}{extra}, expected {s.type}")
        elif st.get("externalIPs"):
            problems.append(f"Service {s.namespace}/{s.name} has externalIPs {st['externalIPs']}")
        else:
            good.append(f"Service {s.namespace}/{s.name} type {stype}")
        missing = [p for p in s.ports if p not in ports]
        if missing:
            problems.append(f"Service {s.namespace}/{s.name} lacks port(s) {missing} (has {sorted(ports)})")
    if release and services:
        ns = services[0].namespace
        for svc in _release_objects(objs, "Service", ns, release):
            key = (ns, svc["metadata"]["name"])
            if key in checked:
                continue
            stype = svc.get("spec", {}).get("type", "ClusterIP")
            if stype != "ClusterIP":
                problems.append(f"extra Service {ns}/{key[1]} of release {release} is type {stype}")
            else:
                good.append(f"extra Service {ns}/{key[1]} type ClusterIP")
    return result(problems, good)


def _mounts_of_claim(objs: Objects, workload: Mapping, pvc: PvcSpec) -> tuple[str | None, dict | None]:
    """(volume name, container) that mounts the PVC ``pvc`` in the workload's pods."""
    ps = pod_spec(workload)
    vol = None
    for v in ps.get("volumes") or []:
        if (v.get("persistentVolumeClaim") or {}).get("claimName") == pvc.name:
            vol = v["name"]
    if vol is None and workload.get("kind") == "StatefulSet":
        sts = workload["metadata"]["name"]
        for t in workload.get("spec", {}).get("volumeClaimTemplates") or []:
            tname = t.get("metadata", {}).get("name")
            if re.fullmatch(rf"{re.escape(tname)}-{re.escape(sts)}-\d+", pvc.name):
                vol = tname
    if vol is None:
        return None, None
    for c in containers(ps):
        for m in c.get("volumeMounts") or []:
            if m.get("name") == vol:
                return vol, {"container": c, "mount": m}
    return vol, None


def _pvc_check(objs: Objects, pvc: PvcSpec, workload: Mapping | None,
               data_path: Callable[[dict], str | None]) -> tuple[list[str], list[str]]:
    problems, good = [], []
    obj = objs.get("PersistentVolumeClaim", pvc.name, pvc.namespace)
    if obj is None and workload is not None and workload.get("kind") == "StatefulSet":
        # rendered objects: the claim comes from the volumeClaimTemplate
        for t in workload.get("spec", {}).get("volumeClaimTemplates") or []:
            if pvc.name.startswith(f"{t.get('metadata', {}).get('name')}-"):
                obj = {**t, "metadata": {**t.get("metadata", {}), "name": pvc.name}}
    if obj is None:
        return [f"PVC {pvc.namespace}/{pvc.name} does not exist"], good
    st = obj.get("spec", {})
    phase = (obj.get("status") or {}).get("phase")
    if phase != "Bound":
        problems.append(f"PVC {pvc.namespace}/{pvc.name} is {phase or 'not created (no status)'}, "
                        "expected Bound")
    else:
        good.append(f"PVC {pvc.namespace}/{pvc.name} Bound to {st.get('volumeName')}")
    cls = st.get("storageClassName")
    if cls != pvc.storage_class:
        problems.append(f"PVC {pvc.name} storage class {cls!r}, expected {pvc.storage_class!r}")
    size = (st.get("resources") or {}).get("requests", {}).get("storage")
    if not same_quantity(size, pvc.size):
        problems.append(f"PVC {pvc.name} requests {size!r}, expected {pvc.size!r}")
    else:
        good.append(f"class {cls}, size {size}")
    if workload is None:
        problems.append(f"no workload found that should mount PVC {pvc.name}")
        return problems, good
    vol, where = _mounts_of_claim(objs, workload, pvc)
    if where is None:
        problems.append(f"{name_of(workload)} does not mount PVC {pvc.name}"
                        + (f" (volume {vol} has no mount)" if vol else ""))
        return problems, good
    mpath = where["mount"].get("mountPath", "")
    dpath = data_path(where["container"])
    if dpath is None:
        problems.append(f"cannot tell the data path of container {where['container'].get('name')}")
    elif not (dpath == mpath or dpath.startswith(mpath.rstrip("/") + "/")):
        problems.append(f"PVC {pvc.name} is mounted at {mpath} but the data path is {dpath}")
    else:
        good.append(f"mounted at {mpath} (data path {dpath})")
    return problems, good


def _ready(pod: Mapping) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _pods_ready(objs: Objects, workload: Mapping | None, what: str, expect: int | None = None
                ) -> tuple[list[str], list[str]]:
    if workload is None:
        return [f"{what}: workload does not exist"], []
    pods = objs.pods_of(workload)
    problems, good = [], []
    if not pods:
        return [f"{name_of(workload)}: no pods"], []
    for p in pods:
        name = p["metadata"]["name"]
        st = p.get("status") or {}
        if _ready(p):
            good.append(f"pod {name} Ready")
            continue
        waiting = [f"{cs.get('name')}: {next(iter((cs.get('state') or {}).keys()), '?')} "
                   f"{((cs.get('state') or {}).get('waiting') or {}).get('reason', '')}".strip()
                   for cs in st.get("containerStatuses") or []]
        problems.append(f"pod {name} not Ready (phase {st.get('phase')}; {'; '.join(waiting) or 'no container status'})")
    if expect is not None and len(pods) != expect:
        problems.append(f"{name_of(workload)} has {len(pods)} pods, expected {expect}")
    return problems, good


def _security_and_resources(workload: Mapping | None, what: str, require_cpu_limit: bool = False
                            ) -> tuple[list[str], list[str]]:
    if workload is None:
        return [f"{what}: workload does not exist"], []
    problems, good = [], []
    ps = pod_spec(workload)
    psc = ps.get("securityContext") or {}
    for c in containers(ps, init=True):
        csc = c.get("securityContext") or {}
        user = csc.get("runAsUser", psc.get("runAsUser"))
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        cname = f"{name_of(workload)} container {c.get('name')}"
        if user == 0:
            problems.append(f"{cname} runs as uid 0")
        elif not non_root and user is None:
            problems.append(f"{cname}: neither runAsNonRoot nor a non-zero runAsUser is set")
        else:
            good.append(f"{cname} non-root (runAsUser {user}, runAsNonRoot {non_root})")
        if csc.get("privileged"):
            problems.append(f"{cname} is privileged")
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        missing = [f"requests.{k}" for k in ("cpu", "memory") if k not in req]
        missing += [f"limits.{k}" for k in ("memory",) + (("cpu",) if require_cpu_limit else ())
                    if k not in lim]
        if missing:
            problems.append(f"{cname} lacks resources {', '.join(missing)}")
        else:
            good.append(f"{cname} requests {req} limits {lim}")
    return problems, good


def _workload(objs: Objects, kind: str, name: str, ns: str) -> dict | None:
    return objs.get(kind, name, ns)


def _minio_server_arg(container: Mapping) -> str | None:
    """What ``minio server`` serves: a directory (standalone) or the servers' URLs with
    an ellipsis (``http://minio-{0...3}.minio-svc.<ns>.svc/export``: one erasure set)."""
    cmd = " ".join(list(container.get("command") or []) + list(container.get("args") or []))
    m = re.search(r"\bminio\s+server\s+(\S+)", cmd)
    return m.group(1) if m else None


def _minio_data_path(container: Mapping) -> str | None:
    """The directory in the container where MinIO keeps its data (of a URL: its path)."""
    arg = _minio_server_arg(container)
    if arg is not None and re.match(r"https?://", arg):
        return "/" + arg.split("://", 1)[1].partition("/")[2]
    return arg


def _env_value(container: Mapping, name: str) -> Any:
    for e in container.get("env") or []:
        if e.get("name") == name:
            return e
    return None


def _minio_workload(objs: Objects, spec: StackSpec) -> dict | None:
    """MinIO's workload: the Deployment of the standalone profile, the StatefulSet of the
    distributed one (the chart renders one or the other, never both)."""
    return objs.get(minio_workload_kind(spec), spec.minio.fullname, spec.minio.namespace)


def minio_workload_kind(spec: StackSpec) -> str:
    return "StatefulSet" if spec.profile == "distributed" else "Deployment"


def _pg_statefulset(objs: Objects, spec: StackSpec) -> dict | None:
    return objs.get("StatefulSet", spec.postgresql.fullname, spec.postgresql.namespace)


def _backend_deployment(objs: Objects, spec: StackSpec) -> dict | None:
    b = spec.backend
    return objs.get("Deployment", b.deployment, b.namespace)


def _backend_container(objs: Objects, spec: StackSpec) -> dict | None:
    d = _backend_deployment(objs, spec)
    if d is None:
        return None
    for c in containers(pod_spec(d)):
        if c.get("name") == spec.backend.container:
            return c
    return None


def _stack_namespaces(spec: StackSpec) -> set[str]:
    return set(spec.namespaces.values())


def _public_strings(spec: StackSpec) -> set[str]:
    """Strings written in the stack spec (user names, access keys): not secret."""
    out: set[str] = set()

    def walk(x):
        if isinstance(x, str):
            out.add(x)
        elif isinstance(x, dict):
            for k, v in x.items():
                walk(k)
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
    walk(spec.raw)
    return out


def _known_secrets(objs: Objects, spec: StackSpec) -> set[str]:
    public = _public_strings(spec)
    return secret_forms(v for v in objs.secret_values(_stack_namespaces(spec)) if v not in public)


def _literal_credential_env(ps: Mapping) -> list[str]:
    out = []
    for c in containers(ps, init=True):
        for e in c.get("env") or []:
            n = e.get("name", "")
            if "value" in e and e.get("value") not in (None, "") and CREDENTIAL_NAME.search(n) \
                    and not _NOT_A_CREDENTIAL.search(n):
                out.append(f"container {c.get('name')} env {n} is a literal value")
    return out
