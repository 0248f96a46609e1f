"""Pure check functions: ``check_x(objects, spec) -> Result``.

No cluster access here: tests feed live objects (``suites.live.gather``), the
negative test feeds ``helm template`` output, unit tests feed hand-written
dicts. Every name comes from the stack spec. Evidence never contains secret
values (only names, keys and verdicts).
"""

from __future__ import annotations

import re
import shlex
from typing import Any, Callable, Mapping

from provision.spec import PvcSpec, ReleaseSpec, ServiceSpec, StackSpec

from suites.objects import Objects, containers, decode_secret, name_of, pod_spec, secret_forms, \
    WORKLOAD_KINDS
from suites.registry import ERROR, FAIL, PASS, WARN, CheckError, Result, registry, result

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


def check(cid: str):
    """Register a pure check for a control; the returned Result carries the ID
    and (unless PASS) the control's remediation."""
    def deco(fn):
        def wrapper(objs: Objects, spec: StackSpec) -> Result:
            try:
                res = fn(objs, spec)
            except CheckInputMissing as exc:
                res = Result(ERROR, [f"could not evaluate: {exc}"])
            res.control = cid
            if res.status != PASS and not res.remediation:
                res.remediation = registry()[cid].remediation
            return res
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


def run(cid: str, objs: Objects, spec: StackSpec) -> Result:
    return CHECKS[cid](objs, spec)


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


def _quantity_equal(a: str | None, b: str) -> bool:
    return (a or "").strip() == b.strip()


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
    if not _quantity_equal(size, pvc.size):
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


def _minio_data_path(container: Mapping) -> str | None:
    cmd = " ".join(list(container.get("command") or []) + list(container.get("args") or []))
    m = re.search(r"\bminio\s+server\s+(\S+)", cmd)
    return m.group(1) if m else None


def _env_value(container: Mapping, name: str) -> Any:
    for e in container.get("env") or []:
        if e.get("name") == name:
            return e
    return None


def _minio_deployment(objs: Objects, spec: StackSpec) -> dict | None:
    return objs.get("Deployment", spec.minio.fullname, spec.minio.namespace)


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


# ---- 2.1 MinIO --------------------------------------------------------------------------
@check("MINIO-REL-001")
def check_minio_release(objs: Objects, spec: StackSpec) -> Result:
    return _release_check(objs, spec.releases[spec.minio.release])


@check("MINIO-MODE-001")
def check_minio_standalone(objs: Objects, spec: StackSpec) -> Result:
    m = spec.minio
    problems, good = [], []
    dep = _minio_deployment(objs, spec)
    sts = objs.get("StatefulSet", m.fullname, m.namespace) or \
        next(iter(_release_objects(objs, "StatefulSet", m.namespace, m.release)), None)
    if sts is not None:
        problems.append(f"{name_of(sts)} exists: MinIO runs in distributed mode")
    if dep is None:
        problems.append(f"no Deployment {m.namespace}/{m.fullname} (standalone mode runs one)")
    else:
        replicas = dep.get("spec", {}).get("replicas", 1)
        if replicas != 1:
            problems.append(f"{name_of(dep)} has replicas {replicas}, expected 1")
        else:
            good.append(f"{name_of(dep)} with 1 replica")
        for c in containers(pod_spec(dep)):
            path = _minio_data_path(c)
            if path and "{" in path:
                problems.append(f"container {c.get('name')} serves an erasure set {path} (distributed)")
    values = objs.helm_values.get(m.release)
    if values is not None and "mode" in values:
        if values["mode"] != "standalone":
            problems.append(f"chart value mode is {values['mode']!r}, expected 'standalone'")
        else:
            good.append("chart value mode: standalone")
    return result(problems, good)


@check("MINIO-SVC-001")
def check_minio_services(objs: Objects, spec: StackSpec) -> Result:
    return _services_check(objs, spec.minio.services, spec.minio.release)


@check("MINIO-PVC-001")
def check_minio_pvc(objs: Objects, spec: StackSpec) -> Result:
    problems, good = [], []
    dep = _minio_deployment(objs, spec)
    for pvc in spec.minio.pvcs:
        p, g = _pvc_check(objs, pvc, dep, _minio_data_path)
        problems += p
        good += g
    return result(problems, good)


def _minio_root_ref(dep: Mapping) -> dict[str, tuple[str, str] | str | None]:
    """MINIO_ROOT_USER/PASSWORD -> (secret, key), 'literal' or None."""
    out: dict[str, Any] = {}
    for c in containers(pod_spec(dep)):
        for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
            e = _env_value(c, var)
            if e is None:
                out.setdefault(var, None)
            elif "value" in e:
                out[var] = "literal"
            else:
                ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                out[var] = (ref.get("name"), ref.get("key")) if ref else "other"
    return out


@check("MINIO-SEC-001")
def check_minio_root_secret(objs: Objects, spec: StackSpec) -> Result:
    m = spec.minio
    want = m.root_secret
    problems, good = [], []
    dep = _minio_deployment(objs, spec)
    if dep is None:
        return Result(FAIL, [f"no Deployment {m.namespace}/{m.fullname}"])
    refs = _minio_root_ref(dep)
    for var, key in zip(("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"), want.keys):
        ref = refs.get(var)
        if ref is None:
            problems.append(f"{var} is not set from a Secret (not in the container env)")
        elif ref == "literal":
            problems.append(f"{var} is an inline literal value in {name_of(dep)}")
        elif ref == "other" or ref[0] != want.name:
            problems.append(f"{var} comes from {ref}, expected Secret {want.name} key {key}")
        else:
            good.append(f"{var} from secretKeyRef {ref[0]}/{ref[1]}")
    values = objs.helm_values.get(m.release)
    if values is not None:
        for k in ("rootUser", "rootPassword", "accessKey", "secretKey"):
            if values.get(k):
                problems.append(f"chart value {k} is set inline in the release values")
        if values.get("existingSecret") != want.name:
            problems.append(f"chart value existingSecret is {values.get('existingSecret')!r}, "
                            f"expected {want.name!r}")
        else:
            good.append(f"chart value existingSecret: {want.name}")
    data = objs.secret_data(want.name, want.namespace)
    if data is None:
        problems.append(f"Secret {want.namespace}/{want.name} does not exist")
    else:
        empty = [k for k in want.keys if not data.get(k)]
        if empty:
            problems.append(f"Secret {want.namespace}/{want.name} lacks or has empty key(s) {empty}")
        else:
            good.append(f"Secret {want.namespace}/{want.name} has keys {list(want.keys)}")
    return result(problems, good)


@check("MINIO-SEC-002")
def check_minio_not_default_credentials(objs: Objects, spec: StackSpec) -> Result:
    m = spec.minio
    dep = _minio_deployment(objs, spec)
    creds: dict[str, str] = {}
    where = []
    if dep is not None:
        for c in containers(pod_spec(dep)):
            for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
                e = _env_value(c, var)
                if e is None:
                    continue
                if "value" in e:
                    creds[var] = str(e["value"])
                    where.append(f"{var} literal")
                    continue
                ref = (e.get("valueFrom") or {}).get("secretKeyRef") or {}
                data = objs.secret_data(ref.get("name", ""), m.namespace)
                if data is None:
                    raise CheckInputMissing(f"Secret {m.namespace}/{ref.get('name')} "
                                            f"referenced by {var} is not readable")
                creds[var] = data.get(ref.get("key", ""), "")
                where.append(f"{var} from Secret {ref.get('name')}/{ref.get('key')}")
    else:
        data = objs.secret_data(m.root_secret.name, m.namespace)
        if data is None:
            raise CheckInputMissing(f"neither Deployment {m.fullname} nor Secret "
                                    f"{m.root_secret.name} in {m.namespace}")
        creds = {"MINIO_ROOT_USER": data.get("rootUser", ""),
                 "MINIO_ROOT_PASSWORD": data.get("rootPassword", "")}
        where.append(f"Secret {m.root_secret.name}")
    user, pw = creds.get("MINIO_ROOT_USER", ""), creds.get("MINIO_ROOT_PASSWORD", "")
    problems, warnings = [], []
    if (user, pw) in DEFAULT_MINIO_CREDENTIALS:
        problems.append("root user and password are a well-known default pair; "
                        f"read from {', '.join(where)}")
    elif pw in DEFAULT_MINIO_PASSWORDS:
        problems.append(f"root password is a well-known default; read from {', '.join(where)}")
    elif not user or not pw:
        problems.append(f"root user or password is empty; read from {', '.join(where)}")
    elif len(pw) < 16:
        warnings.append(f"root password has only {len(pw)} characters (want >= 16)")
    return result(problems, [f"root credentials are not a known default ({', '.join(where)})"],
                  warnings)


@check("MINIO-IAM-001")
def check_backend_s3_user_not_root(objs: Objects, spec: StackSpec) -> Result:
    m, b = spec.minio, spec.backend
    root = objs.secret_data(m.root_secret.name, m.root_secret.namespace)
    s3 = objs.secret_data(b.s3_secret.name, b.s3_secret.namespace)
    if root is None or s3 is None:
        raise CheckInputMissing(f"Secrets {m.root_secret.namespace}/{m.root_secret.name} and "
                                f"{b.s3_secret.namespace}/{b.s3_secret.name} are needed")
    akey, skey = b.s3_secret.keys
    problems, good = [], []
    if s3.get(akey) and s3.get(akey) == root.get("rootUser"):
        problems.append(f"Secret {b.s3_secret.name} key {akey} is the MinIO root user")
    elif s3.get(akey) != m.backend_user.access_key:
        problems.append(f"Secret {b.s3_secret.name} key {akey} is not the backend user "
                        f"{m.backend_user.access_key!r}")
    else:
        good.append(f"backend access key is the dedicated user {m.backend_user.access_key!r}")
    if s3.get(skey) and s3.get(skey) == root.get("rootPassword"):
        problems.append(f"Secret {b.s3_secret.name} key {skey} is the MinIO root password")
    elif not s3.get(skey):
        problems.append(f"Secret {b.s3_secret.name} key {skey} is empty")
    else:
        good.append("backend secret key differs from the root password")
    return result(problems, good)


@check("MINIO-POD-001")
def check_minio_pods_ready(objs: Objects, spec: StackSpec) -> Result:
    return result(*_pods_ready(objs, _minio_deployment(objs, spec), "MinIO"))


@check("MINIO-POD-002")
def check_minio_pod_security(objs: Objects, spec: StackSpec) -> Result:
    return result(*_security_and_resources(_minio_deployment(objs, spec), "MinIO"))


# ---- 2.2 PostgreSQL ----------------------------------------------------------------------
@check("PG-REL-001")
def check_pg_release(objs: Objects, spec: StackSpec) -> Result:
    return _release_check(objs, spec.releases[spec.postgresql.release])


@check("PG-REP-001")
def check_pg_single_node(objs: Objects, spec: StackSpec) -> Result:
    pg = spec.postgresql
    sts = _pg_statefulset(objs, spec)
    if sts is None:
        return Result(FAIL, [f"no StatefulSet {pg.namespace}/{pg.fullname}"])
    problems, good = [], []
    replicas = sts.get("spec", {}).get("replicas", 1)
    if replicas != 1:
        problems.append(f"{name_of(sts)} has replicas {replicas}, expected 1")
    else:
        good.append(f"{name_of(sts)} replicas 1")
    others = [o for kind in ("StatefulSet", "Deployment")
              for o in _release_objects(objs, kind, pg.namespace, pg.release) if o is not sts
              and o["metadata"]["name"] != pg.fullname]
    if others:
        problems.append(f"release {pg.release} runs more workloads: {[name_of(o) for o in others]}")
    pods = objs.pods_of(sts)
    if objs.all("Pod", pg.namespace) or (sts.get("status") or {}):
        if len(pods) != 1:
            problems.append(f"{len(pods)} PostgreSQL pods, expected 1")
        else:
            good.append(f"one pod {pods[0]['metadata']['name']}")
    return result(problems, good)


def _pg_data_path(container: Mapping) -> str | None:
    e = _env_value(container, "PGDATA")
    return e.get("value") if e and "value" in e else None


@check("PG-PVC-001")
def check_pg_pvc(objs: Objects, spec: StackSpec) -> Result:
    problems, good = [], []
    sts = _pg_statefulset(objs, spec)
    for pvc in spec.postgresql.pvcs:
        p, g = _pvc_check(objs, pvc, sts, _pg_data_path)
        problems += p
        good += g
    return result(problems, good)


def _secret_refs(ps: Mapping) -> set[str]:
    names = set()
    for v in ps.get("volumes") or []:
        if v.get("secret"):
            names.add(v["secret"].get("secretName"))
        for src in (v.get("projected") or {}).get("sources") or []:
            if src.get("secret"):
                names.add(src["secret"].get("name"))
    for c in containers(ps, init=True):
        for e in c.get("env") or []:
            ref = (e.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref.get("name"))
        for ef in c.get("envFrom") or []:
            if ef.get("secretRef"):
                names.add(ef["secretRef"].get("name"))
    return names


def _literal_credential_env(ps: Mapping) -> list[str]:
    out = []
    for c in containers(ps, init=True):
        for e in c.get("env") or []:
            n = e.get("name", "")
            if "value" in e and e.get("value") not in (None, "") and CREDENTIAL_NAME.search(n) \
                    and not _NOT_A_CREDENTIAL.search(n):
                out.append(f"container {c.get('name')} env {n} is a literal value")
    return out


@check("PG-SEC-001")
def check_pg_secrets(objs: Objects, spec: StackSpec) -> Result:
    pg = spec.postgresql
    problems, good = [], []
    for s in (pg.superuser_secret, pg.catalog.secret):
        data = objs.secret_data(s.name, s.namespace)
        if data is None:
            problems.append(f"Secret {s.namespace}/{s.name} does not exist")
            continue
        empty = [k for k in s.keys if not data.get(k)]
        if empty:
            problems.append(f"Secret {s.namespace}/{s.name} lacks or has empty key(s) {empty}")
        else:
            good.append(f"Secret {s.namespace}/{s.name} has keys {list(s.keys)}")
    sts = _pg_statefulset(objs, spec)
    if sts is None:
        problems.append(f"no StatefulSet {pg.namespace}/{pg.fullname}")
    else:
        refs = _secret_refs(pod_spec(sts))
        for s in (pg.superuser_secret, pg.catalog.secret):
            if s.name not in refs:
                problems.append(f"{name_of(sts)} does not use Secret {s.name} (uses {sorted(refs)})")
            else:
                good.append(f"{name_of(sts)} mounts/references Secret {s.name}")
        problems += _literal_credential_env(pod_spec(sts))
    return result(problems, good)


@check("PG-SVC-001")
def check_pg_services(objs: Objects, spec: StackSpec) -> Result:
    return _services_check(objs, spec.postgresql.services, spec.postgresql.release)


LC_ENGLISH = re.compile(r"^(C|POSIX|C\.UTF-?8|en_[A-Z]{2}(\.[A-Za-z0-9-]+)?)$", re.I)


def lc_messages_is_english(value: str | None) -> bool:
    return bool(value) and bool(LC_ENGLISH.match(value.strip().strip("'\"")))


@check("PG-CFG-001")
def check_pg_lc_messages(objs: Objects, spec: StackSpec) -> Result:
    """lc_messages in the server configuration the chart renders (ConfigMap)."""
    pg = spec.postgresql
    cm = objs.get("ConfigMap", pg.fullname, pg.namespace)
    if cm is None:
        raise CheckInputMissing(f"ConfigMap {pg.namespace}/{pg.fullname} (postgresql.conf) not found")
    conf = (cm.get("data") or {}).get("postgresql.conf", "")
    m = None
    for line in conf.splitlines():
        mm = re.match(r"^\s*lc_messages\s*=\s*(\S+)", line)
        if mm:
            m = mm.group(1)
    if m is None:
        return Result(FAIL, [f"postgresql.conf in ConfigMap {pg.fullname} does not set lc_messages "
                             "(the server would inherit the OS locale)"])
    if not lc_messages_is_english(m):
        return Result(FAIL, [f"postgresql.conf sets lc_messages = {m}, not English"])
    return Result(PASS, [f"postgresql.conf: lc_messages = {m}"])


@check("PG-POD-001")
def check_pg_pod(objs: Objects, spec: StackSpec) -> Result:
    sts = _pg_statefulset(objs, spec)
    p1, g1 = _pods_ready(objs, sts, "PostgreSQL")
    p2, g2 = _security_and_resources(sts, "PostgreSQL")
    return result(p1 + p2, g1 + g2)


# ---- 2.3 backend -------------------------------------------------------------------------
def _condition(obj: Mapping, ctype: str) -> str | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c.get("status")
    return None


@check("BE-DEP-001")
def check_backend_available(objs: Objects, spec: StackSpec) -> Result:
    b = spec.backend
    dep = _backend_deployment(objs, spec)
    if dep is None:
        return Result(FAIL, [f"no Deployment {b.namespace}/{b.deployment}"])
    problems, good = [], []
    replicas = dep.get("spec", {}).get("replicas", 1)
    if replicas != b.replicas:
        problems.append(f"{name_of(dep)} has replicas {replicas}, spec says {b.replicas}")
    st = dep.get("status") or {}
    avail = st.get("availableReplicas", 0) or 0
    if avail < b.replicas or _condition(dep, "Available") != "True":
        problems.append(f"{name_of(dep)}: {avail}/{b.replicas} available, "
                        f"Available={_condition(dep, 'Available')}, "
                        f"Progressing={_condition(dep, 'Progressing')}")
    else:
        good.append(f"{name_of(dep)}: {avail}/{b.replicas} available")
    if st.get("updatedReplicas", 0) != replicas:
        problems.append(f"{name_of(dep)}: rollout not finished "
                        f"({st.get('updatedReplicas', 0)}/{replicas} updated)")
    if _backend_container(objs, spec) is None:
        problems.append(f"{name_of(dep)} has no container named {b.container!r}")
    return result(problems, good)


@check("BE-RES-001")
def check_backend_resources(objs: Objects, spec: StackSpec) -> Result:
    c = _backend_container(objs, spec)
    if c is None:
        return Result(FAIL, [f"no container {spec.backend.container} in "
                             f"{spec.backend.namespace}/{spec.backend.deployment}"])
    res = c.get("resources") or {}
    req, lim = res.get("requests") or {}, res.get("limits") or {}
    problems = [f"missing resources.requests.{k}" for k in ("cpu", "memory") if k not in req]
    problems += [f"missing resources.limits.{k}" for k in ("memory",) if k not in lim]
    return result(problems, [f"requests {req}, limits {lim}"])


def _probe_ok(probe: Mapping | None, path: str, container: Mapping) -> str | None:
    if not probe:
        return "missing"
    hg = probe.get("httpGet")
    if not hg:
        return f"not an httpGet probe ({', '.join(k for k in probe if k in ('exec', 'tcpSocket', 'grpc'))})"
    if hg.get("path") != path:
        return f"path {hg.get('path')!r}, expected {path!r}"
    port = hg.get("port")
    ports = {p.get("name") for p in container.get("ports") or []} | \
        {p.get("containerPort") for p in container.get("ports") or []}
    if port not in ports:
        return f"port {port!r} is not a container port"
    return None


@check("BE-PRB-001")
def check_backend_probes(objs: Objects, spec: StackSpec) -> Result:
    b = spec.backend
    c = _backend_container(objs, spec)
    if c is None:
        return Result(FAIL, [f"no container {b.container} in {b.namespace}/{b.deployment}"])
    problems, good = [], []
    for kind, path in (("livenessProbe", b.liveness_path), ("readinessProbe", b.readiness_path)):
        err = _probe_ok(c.get(kind), path, c)
        if err:
            problems.append(f"{kind}: {err}")
        else:
            good.append(f"{kind}: httpGet {path}")
    return result(problems, good)


@check("BE-SVC-001")
def check_backend_service(objs: Objects, spec: StackSpec) -> Result:
    b = spec.backend
    res = _services_check(objs, (b.service,), None)
    problems = [e for e in res.evidence if not e.startswith("ok: ")] if res.status == FAIL else []
    good = [e.removeprefix("ok: ") for e in res.evidence if res.status != FAIL or e.startswith("ok: ")]
    svc = objs.get("Service", b.service.name, b.namespace)
    if svc is not None:
        ready = []
        for es in objs.all("EndpointSlice", b.namespace):
            if (es.get("metadata", {}).get("labels") or {}).get("kubernetes.io/service-name") != b.service.name:
                continue
            for ep in es.get("endpoints") or []:
                if (ep.get("conditions") or {}).get("ready", True):
                    ready += ep.get("addresses") or []
        ep = objs.get("Endpoints", b.service.name, b.namespace)
        if ep is not None and not ready:
            for ss in ep.get("subsets") or []:
                ready += [a.get("ip") for a in ss.get("addresses") or []]
        if not ready:
            problems.append(f"Service {b.namespace}/{b.service.name} has no ready endpoints")
        else:
            good.append(f"ready endpoints: {sorted(set(ready))}")
        sel = svc.get("spec", {}).get("selector") or {}
        dep = _backend_deployment(objs, spec)
        if dep is not None:
            labels = (dep.get("spec", {}).get("template", {}).get("metadata") or {}).get("labels") or {}
            if not sel or any(labels.get(k) != v for k, v in sel.items()):
                problems.append(f"Service selector {sel} does not select the backend pods ({labels})")
    return result(problems, good)


EXPECTED_CONFIG = ("DUCKLAKE_PG_HOST", "DUCKLAKE_PG_PORT", "DUCKLAKE_PG_DB", "DUCKLAKE_S3_ENDPOINT",
                   "DUCKLAKE_RAW_BUCKET", "DUCKLAKE_LAKE_BUCKET")
CREDENTIAL_ENV = {"DUCKLAKE_PG_USER": ("postgres", 0), "DUCKLAKE_PG_PASSWORD": ("postgres", 1),
                  "DUCKLAKE_S3_ACCESS_KEY": ("s3", 0), "DUCKLAKE_S3_SECRET_KEY": ("s3", 1),
                  "DUCKLAKE_API_TOKEN": ("token", 0),
                  "DUCKLAKE_QUERY_PG_USER": ("query_postgres", 0),
                  "DUCKLAKE_QUERY_PG_PASSWORD": ("query_postgres", 1),
                  "DUCKLAKE_QUERY_S3_ACCESS_KEY": ("query_s3", 0),
                  "DUCKLAKE_QUERY_S3_SECRET_KEY": ("query_s3", 1)}


def expected_backend_config(spec: StackSpec) -> dict[str, str]:
    return {"DUCKLAKE_PG_HOST": spec.postgresql.host, "DUCKLAKE_PG_PORT": str(spec.postgresql.port),
            "DUCKLAKE_PG_DB": spec.postgresql.catalog.database,
            "DUCKLAKE_S3_ENDPOINT": spec.minio.endpoint,
            "DUCKLAKE_RAW_BUCKET": spec.raw_bucket, "DUCKLAKE_LAKE_BUCKET": spec.lake_bucket}


@check("BE-CFG-001")
def check_backend_config(objs: Objects, spec: StackSpec) -> Result:
    b = spec.backend
    c = _backend_container(objs, spec)
    if c is None:
        return Result(FAIL, [f"no container {b.container} in {b.namespace}/{b.deployment}"])
    problems, good = [], []
    cm_refs = {ef["configMapRef"].get("name") for ef in c.get("envFrom") or [] if ef.get("configMapRef")}
    cm_refs |= {(e.get("valueFrom") or {}).get("configMapKeyRef", {}).get("name")
                for e in c.get("env") or [] if (e.get("valueFrom") or {}).get("configMapKeyRef")}
    if b.configmap not in cm_refs:
        problems.append(f"container does not take its config from ConfigMap {b.configmap} "
                        f"(references {sorted(x for x in cm_refs if x)})")
    else:
        good.append(f"config from ConfigMap {b.configmap}")
    cm = objs.get("ConfigMap", b.configmap, b.namespace)
    if cm is None:
        problems.append(f"ConfigMap {b.namespace}/{b.configmap} does not exist")
    else:
        data = cm.get("data") or {}
        for k, want in expected_backend_config(spec).items():
            if data.get(k) != want:
                problems.append(f"ConfigMap {b.configmap}: {k} is {data.get(k)!r}, expected {want!r}")
        if not problems:
            good.append(f"ConfigMap {b.configmap} matches the stack spec ({', '.join(EXPECTED_CONFIG)})")
    secrets = {"postgres": b.postgres_secret, "s3": b.s3_secret, "token": b.token_secret,
               "query_postgres": b.query_postgres_secret, "query_s3": b.query_s3_secret}
    for var, (which, idx) in CREDENTIAL_ENV.items():
        s = secrets[which]
        e = _env_value(c, var)
        ref = ((e or {}).get("valueFrom") or {}).get("secretKeyRef") or {}
        if e is None:
            problems.append(f"{var} is not set")
        elif "value" in e:
            problems.append(f"{var} is an inline literal value")
        elif ref.get("name") != s.name or ref.get("key") != s.keys[idx]:
            problems.append(f"{var} comes from {ref or e.get('valueFrom')}, expected secretKeyRef "
                            f"{s.name}/{s.keys[idx]}")
        else:
            good.append(f"{var} from secretKeyRef {s.name}/{s.keys[idx]}")
    for s in secrets.values():
        data = objs.secret_data(s.name, s.namespace)
        if data is None:
            problems.append(f"Secret {s.namespace}/{s.name} does not exist")
        elif any(not data.get(k) for k in s.keys):
            problems.append(f"Secret {s.namespace}/{s.name} lacks or has empty keys of {list(s.keys)}")
    problems += _literal_credential_env(pod_spec(_backend_deployment(objs, spec)))
    return result(problems, good)


@check("BE-MEM-001")
def check_backend_memory_bound(objs: Objects, spec: StackSpec) -> Result:
    """DuckDB's memory_limit follows the container's limit (cgroup): so the container needs
    one, and an explicit DUCKLAKE_MEMORY_LIMIT_BYTES may not exceed it."""
    from suites.drift import quantity
    b = spec.backend
    dep = _backend_deployment(objs, spec)
    if dep is None:
        raise CheckInputMissing(f"Deployment {b.namespace}/{b.deployment} does not exist")
    c = next((x for x in containers(pod_spec(dep)) if x.get("name") == b.container), None)
    if c is None:
        raise CheckInputMissing(f"container {b.container} is not in the backend Deployment")
    limit = quantity(((c.get("resources") or {}).get("limits") or {}).get("memory"))
    if limit is None:
        return Result(FAIL, [f"container {b.container} has no memory limit: DuckDB would size "
                             "itself from the host (80% of its memory)"])
    explicit = None
    e = _env_value(c, "DUCKLAKE_MEMORY_LIMIT_BYTES")
    if e is not None and "value" in e:
        explicit = quantity(e["value"])
    cm = objs.get("ConfigMap", b.configmap, b.namespace)
    if explicit is None and cm is not None and (cm.get("data") or {}).get("DUCKLAKE_MEMORY_LIMIT_BYTES"):
        explicit = quantity(cm["data"]["DUCKLAKE_MEMORY_LIMIT_BYTES"])
    if explicit is not None and explicit > limit:
        return Result(FAIL, [f"DUCKLAKE_MEMORY_LIMIT_BYTES {explicit} exceeds the container's "
                             f"memory limit {limit}"])
    how = f"DUCKLAKE_MEMORY_LIMIT_BYTES {explicit}" if explicit is not None else "the cgroup limit"
    return Result(PASS, [f"container limit {limit} bytes; DuckDB sized from {how} "
                         "(35% per database)"])


# Pod Security Standards, restricted profile (Kubernetes 1.34): what a pod may not do
_PSS_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(ps: Mapping) -> list[str]:
    """Why a pod spec would be refused by the restricted profile (empty: it passes)."""
    out = []
    psc = ps.get("securityContext") or {}
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(f):
            out.append(f"{f} is set")
    for v in ps.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= _PSS_VOLUMES:
            out.append(f"volume {v.get('name')} is of type {sorted(kinds - _PSS_VOLUMES)}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in containers(ps, init=True):
        sc, name = c.get("securityContext") or {}, c.get("name")
        if sc.get("privileged"):
            out.append(f"container {name} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"container {name} does not set allowPrivilegeEscalation: false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"container {name} does not drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"container {name} adds capabilities {caps.get('add')}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"container {name} does not run as non-root (runAsNonRoot)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"container {name} runs as uid 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"container {name} has no RuntimeDefault/Localhost seccomp profile")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"container {name} uses a hostPort")
    return out


def judge_pod_security(namespaces: list[dict], objs: Objects, spec: StackSpec) -> Result:
    """SEC-PSS-001: each stack namespace enforces restricted, and every pod of the stack
    (the workloads' templates and the running pods) passes it."""
    problems, good = [], []
    for ns in namespaces:
        name = ns["metadata"]["name"]
        level = (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        if level != "restricted":
            problems.append(f"namespace {name} enforces {level or 'no'} Pod Security level, "
                            "not restricted")
        else:
            good.append(f"namespace {name}: enforce=restricted")
    n = 0
    for nsname in sorted(_stack_namespaces(spec)):
        for kind in ("Deployment", "StatefulSet", "Job", "Pod"):
            for o in objs.all(kind, nsname):
                if kind == "Pod" and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                n += 1
                problems += [f"{name_of(o)}: {v}" for v in restricted_violations(pod_spec(o))]
    good.append(f"{n} pod spec(s) checked against the restricted profile")
    res = result(problems, good)
    res.control = "SEC-PSS-001"
    if res.status != PASS:
        res.remediation = registry()["SEC-PSS-001"].remediation
    return res


def judge_access_surface(spec: StackSpec, minio_users: Mapping[str, list[str]],
                         bucket_policies: Mapping[str, str | None],
                         login_roles: Mapping[str, bool]) -> Result:
    """SEC-ACC-001 from what MinIO and PostgreSQL say: ``minio_users`` user -> attached
    policies; ``bucket_policies`` bucket -> its (anonymous) policy document or None;
    ``login_roles`` role that can log in to the catalog database -> is superuser."""
    m, cat = spec.minio, spec.postgresql.catalog
    want_users = {m.backend_user.access_key: m.backend_user.policy,
                  m.query_user.access_key: m.query_user.policy}
    problems, good = [], []
    for user, pols in sorted(minio_users.items()):
        if user not in want_users:
            problems.append(f"MinIO user {user!r} is not in the spec (policies {pols})")
        elif sorted(pols) != [want_users[user]]:
            problems.append(f"MinIO user {user!r} has policies {pols}, the spec says "
                            f"[{want_users[user]!r}]")
    for user in sorted(set(want_users) - set(minio_users)):
        problems.append(f"MinIO user {user!r} of the spec does not exist")
    for bucket, doc in sorted(bucket_policies.items()):
        if doc:
            problems.append(f"bucket {bucket!r} has a bucket policy (anonymous access): {doc[:120]}")
    if not problems:
        good.append(f"MinIO: users {sorted(minio_users)}, no bucket policy on "
                    f"{sorted(bucket_policies)}")
    want_roles = {cat.owner, cat.reader.role}
    for role, superuser in sorted(login_roles.items()):
        if role not in want_roles and not (superuser and role == "postgres"):
            problems.append(f"PostgreSQL role {role!r} can log in to {cat.database} but is not "
                            "in the spec" + (" (a superuser)" if superuser else ""))
    for role in sorted(want_roles - set(login_roles)):
        problems.append(f"PostgreSQL role {role!r} of the spec cannot log in to {cat.database}")
    good.append(f"PostgreSQL: roles that can log in to {cat.database}: {sorted(login_roles)}")
    res = result(problems, good)
    res.control = "SEC-ACC-001"
    if res.status != PASS:
        res.remediation = registry()["SEC-ACC-001"].remediation
    return res


def _policy_shape(p: Mapping) -> dict:
    spec = p.get("spec") or {}
    return {k: spec.get(k) or ([] if k != "podSelector" else {}) for k in
            ("podSelector", "policyTypes", "ingress", "egress")}


@check("NET-POL-001")
def check_network_policies(objs: Objects, spec: StackSpec) -> Result:
    """Every policy of provision/netpol.py exists as rendered (an edited or missing one
    opens a path)."""
    from provision import netpol
    problems, good = [], []
    for want in netpol.network_policies(spec):
        md = want["metadata"]
        have = objs.get("NetworkPolicy", md["name"], md["namespace"])
        if have is None:
            problems.append(f"NetworkPolicy {md['namespace']}/{md['name']} does not exist")
        elif _policy_shape(have) != _policy_shape(want):
            problems.append(f"NetworkPolicy {md['namespace']}/{md['name']} differs from the one "
                            "rendered from stack.yaml")
        else:
            good.append(f"NetworkPolicy {md['namespace']}/{md['name']}")
    return result(problems, good)


# DaemonSet names/images of network plugins, and whether they enforce NetworkPolicy
CNI_ENFORCING = ("calico-node", "cilium", "antrea-agent", "kube-router", "weave-net",
                 "kube-network-policies", "canal", "kindnet")
CNI_NOT_ENFORCING = ("ducklake-cni", "flannel", "kube-flannel")


def judge_network_plugin(daemonsets: list[dict]) -> Result:
    """NET-CNI-001 from kube-system's DaemonSets (names and images)."""
    def words(ds):
        c = [x.get("image", "") for x in containers(pod_spec(ds))]
        return [ds["metadata"]["name"], *c]
    found_yes = sorted({k for ds in daemonsets for k in CNI_ENFORCING
                        if any(k in w for w in words(ds))})
    found_no = sorted({k for ds in daemonsets for k in CNI_NOT_ENFORCING
                       if any(k in w for w in words(ds))})
    if found_yes:
        res = Result(PASS, [f"network plugin {', '.join(found_yes)}: enforces NetworkPolicy"])
    elif found_no:
        res = Result(FAIL, [f"network plugin {', '.join(found_no)} does not enforce "
                            "NetworkPolicy: the stack's policies are decoration"])
    else:
        names = sorted(ds["metadata"]["name"] for ds in daemonsets)
        res = Result(WARN, [f"no known network plugin among kube-system DaemonSets {names}: "
                            "enforcement unknown (NET-ENF-001 probes it)"])
    res.control = "NET-CNI-001"
    if res.status != PASS:
        res.remediation = registry()["NET-CNI-001"].remediation
    return res


def judge_enforcement(reached: dict[str, bool], control_reached: bool) -> Result:
    """NET-ENF-001 from a probe pod outside the allowed set: ``reached`` maps each closed
    target to whether it connected; ``control_reached``: an open target answered (so the
    probe itself works)."""
    problems = [f"a pod outside the allowed set connected to {t}" for t, ok in sorted(reached.items()) if ok]
    good = [f"{t}: refused" for t, ok in sorted(reached.items()) if not ok]
    if not control_reached:
        res = Result(ERROR, ["could not evaluate: the probe could not reach the open backend "
                             "Service either (the probe itself does not work)"])
    else:
        res = result(problems, good + ["the probe reached the backend Service (open)"])
    res.control = "NET-ENF-001"
    if res.status != PASS:
        res.remediation = registry()["NET-ENF-001"].remediation
    return res


QUERY_S3_ACTIONS = {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}


@check("BE-QRY-001")
def check_query_identities(objs: Objects, spec: StackSpec) -> Result:
    """The query path's identities are their own and read-only by configuration."""
    m, b, cat = spec.minio, spec.backend, spec.postgresql.catalog
    problems, good = [], []
    qs3 = objs.secret_data(b.query_s3_secret.name, b.namespace)
    qpg = objs.secret_data(b.query_postgres_secret.name, b.namespace)
    rw_s3 = objs.secret_data(b.s3_secret.name, b.namespace)
    for name, data in ((b.query_s3_secret.name, qs3), (b.query_postgres_secret.name, qpg)):
        if not data:
            raise CheckInputMissing(f"Secret {b.namespace}/{name} does not exist or is empty")
    qkey, qpg_user = qs3.get(b.query_s3_secret.keys[0]), qpg.get(b.query_postgres_secret.keys[0])
    if qkey != m.query_user.access_key:
        problems.append(f"the query S3 identity is {qkey!r}, not the query user "
                        f"{m.query_user.access_key!r}")
    if rw_s3 and qkey == rw_s3.get(b.s3_secret.keys[0]):
        problems.append("the query path uses the read-write S3 user")
    if qpg_user in (cat.owner, "postgres"):
        problems.append(f"the query path logs in to the catalog as {qpg_user!r}, a role that can write")
    elif qpg_user != cat.reader.role:
        problems.append(f"the query path logs in as {qpg_user!r}, not {cat.reader.role!r}")
    else:
        good.append(f"query identities: S3 user {qkey}, catalog role {qpg_user}")
    values = objs.helm_values.get(m.release)
    if values is None:
        raise CheckInputMissing(f"Helm values of release {m.release} were not read")
    users = {u.get("accessKey"): u.get("policy") for u in values.get("users") or []}
    policies = {p.get("name"): p for p in values.get("policies") or []}
    pol = policies.get(users.get(m.query_user.access_key))
    if pol is None:
        problems.append(f"MinIO user {m.query_user.access_key} has no policy from the release's "
                        "values")
    else:
        lake = {f"arn:aws:s3:::{spec.lake_bucket}", f"arn:aws:s3:::{spec.lake_bucket}/*"}
        for st in pol.get("statements") or []:
            extra = set(st.get("actions") or []) - QUERY_S3_ACTIONS
            wide = set(st.get("resources") or []) - lake
            if st.get("effect", "Allow") == "Allow" and (extra or wide):
                problems.append(f"policy {pol.get('name')} allows {sorted(extra) or ''} "
                                f"{sorted(wide) or ''} beyond list+get on the lake bucket".strip())
        if not problems:
            good.append(f"policy {pol.get('name')}: {sorted(QUERY_S3_ACTIONS)} on the lake bucket only")
    return result(problems, good)


def judge_backend_auth(anonymous: int | None, authorised: int | None) -> Result:
    """BE-AUTH-001 from two probes of GET /tables through the service: without the token
    (must be 401) and with it (must be 200, so the 401 is the token's doing)."""
    problems, good = [], []
    if anonymous == 401:
        good.append("GET /tables without the API token: 401")
    else:
        problems.append(f"GET /tables without the API token answered {anonymous}, not 401: "
                        "anyone who reaches the Service can read and query the lake")
    if authorised == 200:
        good.append("GET /tables with the API token: 200")
    else:
        problems.append(f"GET /tables with the API token answered {authorised}, not 200")
    res = result(problems, good)
    res.control = "BE-AUTH-001"
    if res.status != PASS:
        res.remediation = registry()["BE-AUTH-001"].remediation
    return res


@check("BE-SEC-001")
def check_backend_non_root(objs: Objects, spec: StackSpec) -> Result:
    dep = _backend_deployment(objs, spec)
    problems, good = _security_and_resources(dep, "backend")
    # resources belong to BE-RES-001
    problems = [p for p in problems if "lacks resources" not in p]
    good = [g for g in good if " requests " not in g]
    for p in objs.pods_of(dep) if dep else []:
        for cs in (p.get("status") or {}).get("containerStatuses") or []:
            if (cs.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerConfigError":
                problems.append(f"pod {p['metadata']['name']}: CreateContainerConfigError "
                                "(e.g. image runs as root while runAsNonRoot is set)")
    return result(problems, good)


# ---- secrets hygiene ----------------------------------------------------------------------
@check("SEC-CM-001")
def check_configmaps_hold_no_secrets(objs: Objects, spec: StackSpec) -> Result:
    known = _known_secrets(objs, spec)
    problems, warnings, good = [], [], []
    n = 0
    for ns in sorted(_stack_namespaces(spec)):
        for cm in objs.all("ConfigMap", ns):
            name = cm["metadata"]["name"]
            if name in SKIP_CONFIGMAPS:
                continue
            n += 1
            for k, v in {**(cm.get("data") or {}), **(cm.get("binaryData") or {})}.items():
                v = str(v)
                if CREDENTIAL_NAME.search(k) and not _NOT_A_CREDENTIAL.search(k):
                    problems.append(f"ConfigMap {ns}/{name} has a credential-looking key {k!r}")
                if any(s in v for s in known):
                    problems.append(f"ConfigMap {ns}/{name} key {k!r} contains a Secret value")
                for m in CREDENTIAL_ASSIGNMENT.finditer(v):
                    warnings.append(f"ConfigMap {ns}/{name} key {k!r} looks like it assigns a "
                                    f"{m.group(1)} literal")
    good.append(f"{n} ConfigMap(s) in {sorted(_stack_namespaces(spec))} hold no Secret values")
    return result(problems, good, warnings)


@check("SEC-ENV-001")
def check_env_holds_no_secrets(objs: Objects, spec: StackSpec) -> Result:
    known = _known_secrets(objs, spec)
    problems, good = [], []
    n = 0
    for ns in sorted(_stack_namespaces(spec)):
        for kind in WORKLOAD_KINDS:
            if kind in ("Pod", "ReplicaSet"):
                continue  # their templates are checked through the owners
            for w in objs.all(kind, ns):
                ps = pod_spec(w)
                n += 1
                for p in _literal_credential_env(ps):
                    problems.append(f"{name_of(w)}: {p}")
                for c in containers(ps, init=True):
                    for e in c.get("env") or []:
                        if "value" in e and any(s in str(e.get("value")) for s in known):
                            problems.append(f"{name_of(w)}: container {c.get('name')} env "
                                            f"{e.get('name')} holds a Secret value")
                    for a in list(c.get("args") or []) + list(c.get("command") or []):
                        if any(s in str(a) for s in known):
                            problems.append(f"{name_of(w)}: container {c.get('name')} command "
                                            "line holds a Secret value")
    good.append(f"{n} workload(s) take credentials only from Secrets")
    return result(problems, good)


@check("SEC-ANN-001")
def check_annotations_hold_no_secrets(objs: Objects, spec: StackSpec) -> Result:
    known = _known_secrets(objs, spec)
    problems, warnings = [], []
    n = 0
    for o in objs.items:
        md = o.get("metadata") or {}
        if md.get("namespace") not in _stack_namespaces(spec):
            continue
        for k, v in (md.get("annotations") or {}).items():
            n += 1
            if not any(s in str(v) for s in known):
                continue
            if o.get("kind") == "Secret":
                warnings.append(f"{name_of(o)} annotation {k} repeats its own data "
                                "(client-side apply)")
            else:
                problems.append(f"{name_of(o)} annotation {k} contains a Secret value")
    return result(problems, [f"{n} annotation(s) checked"], warnings)


@check("SEC-LOG-001")
def check_logs_hold_no_secrets(objs: Objects, spec: StackSpec) -> Result:
    if not objs.logs:
        raise CheckInputMissing("no pod logs were collected")
    known = _known_secrets(objs, spec)
    if not known:
        raise CheckInputMissing("no Secret values are known to look for")
    problems = [f"log of {where} contains a Secret value"
                for where, text in sorted(objs.logs.items()) if any(s in text for s in known)]
    return result(problems, [f"{len(objs.logs)} container log(s) checked against "
                             f"{len(known)} secret forms"])


def secret_values_of(objs: Objects, spec: StackSpec) -> set[str]:
    """Every value the Redactor must hide (raw and base64 forms); none when the
    audit may not read Secrets (it then cannot see, nor leak, their values)."""
    try:
        return _known_secrets(objs, spec)
    except CheckError:
        return set()


__all__ = ["CHECKS", "run", "check", "CheckInputMissing", "secret_values_of", "decode_secret",
           "lc_messages_is_english", "expected_backend_config"]
