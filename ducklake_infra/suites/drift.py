"""Drift: the live stack compared with what the provisioner would install now.

Pure functions ``check_x(objects, spec, component, ...) -> Result``; the
expected side is never written here: :mod:`ducklake_infra.suites.drift_expected`
computes it from the same code the provisioner installs with.
Every difference is one evidence line ``drift: <what>: live X, expected Y``
with how to reconcile it. Read-only: objects in, a Result out.

Components: ``minio``, ``postgresql`` (Helm releases) and ``backend``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from ducklake_infra.provision.oci import ImageRef, familiar
from ducklake_infra.provision.spec import ServiceSpec, StackSpec

from ducklake_infra.suites.checks.core import CheckInputMissing, as_control, check
from ducklake_infra.suites.objects import Objects, containers, pod_spec, quantity, same_quantity
from ducklake_infra.suites.catalog import ERROR, Result, result
from ducklake_infra.suites.drift_expected import (
    component_images, expected_backend, expected_images, expected_replicas, expected_resources,
    replicas_source,
    release_of)

COMPONENTS = ("minio", "postgresql", "backend")
UP = "`ducklake-infra up --cluster <ctx>`"

# control IDs: one per (topic, component); tests in ducklake_infra/suites/test_drift.py
CONTROL_IDS = {
    ("chart", "minio"): "DRIFT-CHART-001", ("chart", "postgresql"): "DRIFT-CHART-002",
    ("image", "minio"): "DRIFT-IMG-001", ("image", "postgresql"): "DRIFT-IMG-002",
    ("image", "backend"): "DRIFT-IMG-003",
    ("replicas", "minio"): "DRIFT-REPL-001", ("replicas", "postgresql"): "DRIFT-REPL-002",
    ("replicas", "backend"): "DRIFT-REPL-003",
    ("service", "minio"): "DRIFT-SVC-001", ("service", "postgresql"): "DRIFT-SVC-002",
    ("service", "backend"): "DRIFT-SVC-003",
    ("resources", "minio"): "DRIFT-RES-001", ("resources", "postgresql"): "DRIFT-RES-002",
    ("resources", "backend"): "DRIFT-RES-003",
    ("pvc", "minio"): "DRIFT-PVC-001", ("pvc", "postgresql"): "DRIFT-PVC-002",
}


# what a drift check needs was not collected (-> ERROR, never FAIL): the checks' own
DriftInputMissing = CheckInputMissing


# ---- helpers -----------------------------------------------------------------------------
def _guard(topic: str, component: str, fn, *args, **kw) -> Result:
    if (topic, component) not in CONTROL_IDS:
        raise ValueError(f"no drift control for {topic} of {component!r}")
    try:
        res = fn(*args, **kw)
    except CheckInputMissing as exc:
        res = Result(ERROR, [f"could not evaluate: {exc}"])
    return as_control(res, CONTROL_IDS[(topic, component)])


def _fullname(spec: StackSpec, component: str) -> str:
    return {"minio": spec.minio.fullname, "postgresql": spec.postgresql.fullname,
            "backend": spec.backend.deployment}[component]


def _namespace(spec: StackSpec, component: str) -> str:
    return {"minio": spec.minio.namespace, "postgresql": spec.postgresql.namespace,
            "backend": spec.backend.namespace}[component]


def _workload(objs: Objects, spec: StackSpec, component: str) -> dict | None:
    """The component's main workload: the Deployment or StatefulSet of its name."""
    ns, name = _namespace(spec, component), _fullname(spec, component)
    kinds = ("Deployment",) if component == "backend" else ("Deployment", "StatefulSet")
    for kind in kinds:
        w = objs.get(kind, name, ns)
        if w is not None:
            return w
    return None


def _wname(w: Mapping) -> str:
    md = w.get("metadata", {})
    return f"{w.get('kind')} {md.get('namespace')}/{md.get('name')}"


def _release_workloads(objs: Objects, ns: str, release: str) -> list[dict]:
    out = []
    for kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"):
        for o in objs.all(kind, ns):
            labels = o.get("metadata", {}).get("labels") or {}
            if labels.get("release") == release or \
                    labels.get("app.kubernetes.io/instance") == release:
                if kind == "Job" and (o.get("metadata", {}).get("ownerReferences")):
                    continue  # a CronJob's run: the CronJob itself is checked
                out.append(o)
    return out


def _norm_resources(r: Mapping | None) -> dict[str, dict[str, Any]]:
    """requests/limits with the API server's defaulting: a limit without a request
    makes the request equal to the limit."""
    r = r or {}
    req = dict(r.get("requests") or {})
    lim = dict(r.get("limits") or {})
    for k, v in lim.items():
        req.setdefault(k, v)
    return {"requests": req, "limits": lim}


def resource_diff(live: Mapping | None, want: Mapping | None) -> list[str]:
    """Differences as ``requests.memory: live X, expected Y`` (no difference: [])."""
    lv, wv = _norm_resources(live), _norm_resources(want)
    out = []
    for part in ("requests", "limits"):
        for k in sorted(set(lv[part]) | set(wv[part])):
            a, b = lv[part].get(k), wv[part].get(k)
            if a is None or b is None or not same_quantity(a, b):
                out.append(f"{part}.{k}: live {a if a is not None else '(unset)'}, "
                           f"expected {b if b is not None else '(unset)'}")
    return out


# ---- the checks ----------------------------------------------------------------------------------
def check_chart_drift(objs: Objects, spec: StackSpec, component: str, *,
                      spec_hash: str | None = None) -> Result:
    """Helm release chart name/version (helm list) vs stack.yaml; with ``spec_hash``
    (what ``up`` would store now) also the values/overrides fingerprint."""
    def run() -> Result:
        rel = release_of(spec, component)
        if objs.helm_releases is None:
            raise CheckInputMissing(objs.helm_error
                                    or "no Helm release metadata (helm list) was collected")
        row = next((r for r in objs.helm_releases if r.get("name") == rel.name
                    and r.get("namespace") == rel.namespace), None)
        want = f"{rel.chart.name}-{rel.chart.version}"
        if row is None:
            return result([f"drift: Helm release {rel.namespace}/{rel.name}: live (not installed), "
                           f"expected chart {want}; reconcile: {UP}"])
        problems, good, warnings = [], [], []
        if row.get("chart") != want:
            problems.append(f"drift: Helm release {rel.namespace}/{rel.name} chart: live "
                            f"{row.get('chart')}, expected {want} (stack.yaml releases.{rel.key}"
                            f".chart); reconcile: {UP}, or pin the live version in stack.yaml")
        else:
            good.append(f"Helm release {rel.namespace}/{rel.name} chart {want} "
                        f"(revision {row.get('revision')}, app {row.get('app_version')})")
        if row.get("status") != "deployed":
            warnings.append(f"drift: Helm release {rel.namespace}/{rel.name} status: live "
                            f"{row.get('status')}, expected deployed; reconcile: {UP}")
        live_hash = ((objs.helm_values.get(rel.name) or {}).get("ducklakeInfra") or {}) \
            .get("specHash")
        if spec_hash is not None:
            if live_hash is None:
                warnings.append(f"drift: Helm release {rel.namespace}/{rel.name} has no "
                                "ducklakeInfra.specHash: not installed by ducklake-infra up "
                                f"(or values not readable); reconcile: {UP}")
            elif live_hash != spec_hash:
                warnings.append(f"drift: Helm release {rel.namespace}/{rel.name} values: live "
                                f"specHash {live_hash}, expected {spec_hash} (values files, chart "
                                f"or overrides changed since the last install); reconcile: {UP}")
            else:
                good.append(f"values fingerprint specHash {live_hash} matches values "
                            + ", ".join(Path(f).name for f in rel.values))
        return result(problems, good, warnings)
    return _guard("chart", component, run)


def check_image_drift(objs: Objects, spec: StackSpec, component: str, *,
                      refs: Mapping[str, str] | None = None, overridable: bool = False,
                      backend_tag: str | None = None) -> Result:
    """Images in the live workloads (and the release's Helm values) vs the
    provisioner's references. ``overridable`` (a non-kind context, where
    ``--image`` overrides are legitimate): a different repository/tag is a WARN;
    on kind it is a FAIL. The backend at the spec's repository with another tag
    than the content hash of its source is drift either way (stale build)."""
    def run() -> Result:
        want = dict(refs) if refs is not None else expected_images(spec)
        exp = component_images(spec, component, want)
        d = _ImageDiff(spec, component, exp, overridable, backend_tag)
        if component == "backend":
            _backend_images(objs, spec, d, next(iter(exp.values())))
        else:
            _release_images(objs, spec, component, d, exp)
        return d.result()
    return _guard("image", component, run)


class _ImageDiff:
    """The evidence of one image check: each live image compared with what is expected."""

    def __init__(self, spec: StackSpec, component: str, exp: Mapping[str, str],
                 overridable: bool, backend_tag: str | None):
        self.spec, self.component = spec, component
        self.overridable, self.backend_tag = overridable, backend_tag
        self.allowed = {familiar(r) for r in exp.values()}
        self.problems: list[str] = []
        self.good: list[str] = []
        self.warnings: list[str] = []

    def result(self) -> Result:
        return result(self.problems, self.good, self.warnings)

    def __call__(self, where: str, live: str, expected: str | None) -> None:
        """``live`` against ``expected`` (None: any of the component's images)."""
        lv = familiar(live)
        if expected is not None and lv == familiar(expected):
            self.good.append(f"{where}: {live}")
            return
        if expected is None and lv in self.allowed:
            self.good.append(f"{where}: {live}")
            return
        shown = expected if expected is not None else " or ".join(sorted(self.allowed))
        lref = ImageRef.parse(lv)
        what = f"drift: {where}: live {live}, expected {shown}"
        if self.component == "backend":
            eref = ImageRef.parse(familiar(expected or next(iter(self.allowed))))
            tag = self.backend_tag or eref.version
            if lref.repo == eref.repo:
                paths = ", ".join(p.name for p in self.spec.backend.image.hash_paths)
                self.problems.append(
                    f"{what} ({'digest' if lref.digest else 'tag'} {lref.version} is "
                    f"not the content hash {tag} of {paths}:"
                    f" the backend source changed since it was deployed); "
                    f"reconcile: {UP} (rebuilds and rolls out the backend)")
                return
        if self.overridable:
            self.warnings.append(f"{what} (an --image override on this context?); reconcile: "
                                 f"{UP} --image ... with the intended reference, or record it")
        else:
            self.problems.append(f"{what}; reconcile: {UP}")


def _backend_images(objs: Objects, spec: StackSpec, diff: _ImageDiff, expected: str) -> None:
    w = _workload(objs, spec, "backend")
    if w is None:
        diff.problems.append(f"drift: Deployment {spec.backend.namespace}/"
                             f"{spec.backend.deployment}: live (missing); reconcile: {UP}")
        return
    for c in containers(pod_spec(w)):
        if c.get("name") == spec.backend.container:
            diff(f"{_wname(w)} container {c['name']} image", c.get("image", ""), expected)
            break
    else:
        diff.problems.append(f"drift: {_wname(w)}: no container {spec.backend.container!r}; "
                             f"reconcile: {UP}")


def _release_images(objs: Objects, spec: StackSpec, component: str, diff: _ImageDiff,
                    exp: Mapping[str, str]) -> None:
    rel = release_of(spec, component)
    # what Helm was told (covers hook Jobs that are gone, e.g. MinIO's mc jobs)
    vals = objs.helm_values.get(rel.name)
    if vals is None:
        diff.warnings.append(f"Helm values of release {rel.name} not collected: only running "
                             "workloads compared")
    else:
        for prefix, ref in exp.items():
            v = vals
            for part in prefix.split("."):
                v = (v or {}).get(part) if isinstance(v, dict) else None
            if not isinstance(v, dict) or not v.get("repository"):
                diff.problems.append(f"drift: Helm release {rel.name} value {prefix}: live "
                                     f"(unset: chart default image), expected {ref}; "
                                     f"reconcile: {UP}")
                continue
            live = f"{v['repository']}:{v.get('tag') or 'latest'}"
            diff(f"Helm release {rel.name} value {prefix}", live, ref)
    workloads = _release_workloads(objs, rel.namespace, rel.name)
    if _workload(objs, spec, component) is None:
        diff.problems.append(f"drift: {component} workload {rel.namespace}/"
                             f"{_fullname(spec, component)}: live (missing); reconcile: {UP}")
    for w in workloads:
        for c in containers(pod_spec(w), init=True):
            diff(f"{_wname(w)} container {c.get('name')} image", c.get("image", ""), None)


def check_replicas_drift(objs: Objects, spec: StackSpec, component: str) -> Result:
    """spec.replicas of the component's workload vs the values / stack.yaml."""
    def run() -> Result:
        w = _workload(objs, spec, component)
        if w is None:
            return result([f"drift: {component} workload {_namespace(spec, component)}/"
                           f"{_fullname(spec, component)}: live (missing); reconcile: {UP}"])
        want = expected_replicas(spec, component)
        live = (w.get("spec") or {}).get("replicas", 1)
        src = replicas_source(spec, component)
        if live != want:
            ready = (w.get("status") or {}).get("readyReplicas", 0)
            return result([f"drift: {_wname(w)} replicas: live {live} ({ready} ready), expected "
                           f"{want} ({src}); reconcile: {UP} (or `kubectl scale` back), or "
                           "change the spec if the new count is intended"])
        return result([], [f"{_wname(w)} replicas {live} ({src})"])
    return _guard("replicas", component, run)


def _ports_of(svc: Mapping) -> dict[int, dict]:
    return {p.get("port"): p for p in (svc.get("spec") or {}).get("ports") or []}


def check_service_drift(objs: Objects, spec: StackSpec, component: str) -> Result:
    """Service types and ports vs stack.yaml (the backend's also vs k8s/service.yaml
    as the provisioner renders it: targetPort, protocol)."""
    def run() -> Result:
        if component == "backend":
            wanted: tuple[ServiceSpec, ...] = (spec.backend.service,)
            rendered = expected_backend(spec, "x").get("Service")
        else:
            wanted = {"minio": spec.minio.services,
                      "postgresql": spec.postgresql.services}[component]
            rendered = None
        problems, good = [], []
        for s in wanted:
            svc = objs.get("Service", s.name, s.namespace)
            where = f"Service {s.namespace}/{s.name}"
            if svc is None:
                problems.append(f"drift: {where}: live (missing), expected type {s.type} ports "
                                f"{list(s.ports)}; reconcile: {UP}")
                continue
            st = svc.get("spec") or {}
            stype = st.get("type", "ClusterIP")
            if stype != s.type:
                problems.append(f"drift: {where} type: live {stype}, expected {s.type} "
                                f"(stack.yaml); reconcile: {UP}, or change stack.yaml if intended")
            else:
                good.append(f"{where} type {stype}")
            live_ports = _ports_of(svc)
            missing = [p for p in s.ports if p not in live_ports]
            extra = sorted(p for p in live_ports if p not in s.ports)
            if missing or extra:
                problems.append(f"drift: {where} ports: live {sorted(live_ports)}, expected "
                                f"{list(s.ports)}; reconcile: {UP}")
            else:
                good.append(f"{where} ports {list(s.ports)}")
            if rendered is not None:
                for rp in rendered.get("spec", {}).get("ports") or []:
                    lp = live_ports.get(rp.get("port"))
                    if lp is None:
                        continue
                    for key, default in (("targetPort", rp.get("port")), ("protocol", "TCP")):
                        want = rp.get(key, default)
                        have = lp.get(key, default)
                        if str(have) != str(want):
                            problems.append(f"drift: {where} port {rp.get('port')} {key}: live "
                                            f"{have}, expected {want} (k8s/service.yaml); "
                                            f"reconcile: {UP}")
        return result(problems, good)
    return _guard("service", component, run)


def check_resources_drift(objs: Objects, spec: StackSpec, component: str) -> Result:
    """Container requests/limits vs values/*.yaml (charts) or k8s/deployment.yaml."""
    def run() -> Result:
        w = _workload(objs, spec, component)
        if w is None:
            return result([f"drift: {component} workload {_namespace(spec, component)}/"
                           f"{_fullname(spec, component)}: live (missing); reconcile: {UP}"])
        want = expected_resources(spec, component)
        live_cs = {c.get("name"): c for c in containers(pod_spec(w), init=True)}
        src = "k8s/deployment.yaml" if component == "backend" else \
            ", ".join(Path(f).name for f in release_of(spec, component).values)
        problems, good = [], []
        for cname, res in want.items():
            if cname == "*main*":
                cs = containers(pod_spec(w))
                c = cs[0] if cs else None
            else:
                c = live_cs.get(cname)
            if c is None:
                problems.append(f"drift: {_wname(w)} container {cname}: live (missing); "
                                f"reconcile: {UP}")
                continue
            where = f"{_wname(w)} container {c.get('name')}"
            diffs = resource_diff(c.get("resources"), res)
            for d in diffs:
                problems.append(f"drift: {where} resources.{d} ({src}); reconcile: {UP}, or "
                                f"put the live value in {src} if it is intended")
            if not diffs:
                r = _norm_resources(res)
                good.append(f"{where} requests {r['requests']} limits {r['limits']} ({src})")
        return result(problems, good)
    return _guard("resources", component, run)


def check_pvc_drift(objs: Objects, spec: StackSpec, component: str) -> Result:
    """PVC requested size and storage class vs stack.yaml."""
    def run() -> Result:
        pvcs = {"minio": spec.minio_claims, "postgresql": spec.postgresql_claims}[component]
        problems, good = [], []
        for p in pvcs:
            pvc = objs.get("PersistentVolumeClaim", p.name, p.namespace)
            where = f"PVC {p.namespace}/{p.name}"
            if pvc is None:
                problems.append(f"drift: {where}: live (missing), expected {p.size}; "
                                f"reconcile: {UP}")
                continue
            st = pvc.get("spec") or {}
            size = ((st.get("resources") or {}).get("requests") or {}).get("storage")
            cap = ((pvc.get("status") or {}).get("capacity") or {}).get("storage")
            if not same_quantity(size, p.size):
                bigger = (quantity(size) or 0) > (quantity(p.size) or 0)
                hint = (f"set its size in stack.yaml to {size} (a PVC cannot shrink)" if bigger
                        else f"{UP} or expand the PVC to {p.size}")
                problems.append(f"drift: {where} size: live {size} (capacity {cap}), expected "
                                f"{p.size} (stack.yaml); reconcile: {hint}")
            else:
                good.append(f"{where} size {size}" + (f" (capacity {cap})" if cap else ""))
            sc = st.get("storageClassName")
            if sc != p.storage_class:
                problems.append(f"drift: {where} storageClassName: live {sc}, expected "
                                f"{p.storage_class} (stack.yaml); reconcile: migrate the data to "
                                "a PVC of the spec's class, or change storage_class in stack.yaml")
        return result(problems, good)
    return _guard("pvc", component, run)


TOPICS = {"chart": check_chart_drift, "image": check_image_drift,
          "replicas": check_replicas_drift, "service": check_service_drift,
          "resources": check_resources_drift, "pvc": check_pvc_drift}


def _register() -> None:
    """Every drift control in the one check registry (checks.CHECKS), as a check of
    (objects, spec) for its component: one registry, one way to run a control."""
    for (topic, component), cid in CONTROL_IDS.items():
        def run(objs: Objects, spec: StackSpec, _t=topic, _c=component, **kw) -> Result:
            return TOPICS[_t](objs, spec, _c, **kw)
        run.__name__ = f"check_{topic}_drift_{component}"
        check(cid)(run)


_register()


def all_results(objs: Objects, spec: StackSpec, *, overridable: bool = False,
                refs: Mapping[str, str] | None = None) -> Iterable[Result]:
    for (topic, component) in CONTROL_IDS:
        kw: dict[str, Any] = {}
        if topic == "image":
            kw = {"refs": refs, "overridable": overridable}
        yield TOPICS[topic](objs, spec, component, **kw)
