"""Pure check functions: ``check_x(objects, spec) -> Result``.

No cluster access here: tests feed live objects (``ducklake_infra.suites.live.gather``), the
negative test feeds ``helm template`` output, unit tests feed hand-written
dicts. Every name comes from the stack spec. Evidence never contains secret
values (only names, keys and verdicts).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from ducklake_infra.provision.spec import PvcSpec, ReleaseSpec, ServiceSpec, StackSpec

from ducklake_infra.suites.objects import Objects, containers, decode_secret, name_of, pod_spec, \
    same_quantity, secret_forms, WORKLOAD_KINDS
from ducklake_infra.suites.registry import ERROR, FAIL, PASS, CheckError, Result, registry, result

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
        res.remediation = registry()[cid].remediation
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


# the security checks register with the same registry (kept in a module of their own)
import ducklake_infra.suites.security  # noqa: E402,F401
import ducklake_infra.suites.resilience  # noqa: E402,F401
import ducklake_infra.suites.supply_chain  # noqa: E402,F401
