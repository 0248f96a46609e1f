"""DuckLake backend checks (seed plan 2.3)."""

from __future__ import annotations

from typing import Mapping

from ducklake_infra.provision.render import backend_config
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects, name_of, pod_spec
from ducklake_infra.suites.catalog import FAIL, PASS, Result, result
from ducklake_infra.suites.checks.core import (_literal_credential_env, _backend_container, _backend_deployment, _env_value, _security_and_resources, _services_check, check)


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
    want = spec.backend_replicas
    replicas = dep.get("spec", {}).get("replicas", 1)
    if replicas != want:
        problems.append(f"{name_of(dep)} has replicas {replicas}, spec says {want}")
    st = dep.get("status") or {}
    avail = st.get("availableReplicas", 0) or 0
    if avail < want or _condition(dep, "Available") != "True":
        problems.append(f"{name_of(dep)}: {avail}/{want} available, "
                        f"Available={_condition(dep, 'Available')}, "
                        f"Progressing={_condition(dep, 'Progressing')}")
    else:
        good.append(f"{name_of(dep)}: {avail}/{want} available")
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


DRAIN_MIN_S = 3      # time for the endpoint removal to reach every node's forwarding rules


def _pre_stop_pause(c: dict) -> int | None:
    """Seconds the container's preStop hook pauses: a ``sleep`` action, or an exec of
    ``sleep N``; None when it has none."""
    pre = (c.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre:
        return int((pre["sleep"] or {}).get("seconds", 0))
    cmd = (pre.get("exec") or {}).get("command") or []
    words = " ".join(map(str, cmd)).replace(";", " ").split()
    nums = [int(w) for i, w in enumerate(words) if w.isdigit() and i and words[i - 1].endswith("sleep")]
    return nums[0] if nums else None


@check("BE-STOP-001")
def check_backend_drains_before_stopping(objs: Objects, spec: StackSpec) -> Result:
    """A deleted backend pod keeps serving while its endpoint is removed everywhere: a
    preStop pause of at least DRAIN_MIN_S, inside the termination grace period."""
    b = spec.backend
    dep = objs.get("Deployment", b.deployment, b.namespace)
    c = _backend_container(objs, spec)
    if dep is None or c is None:
        return Result(FAIL, [f"no container {b.container} in {b.namespace}/{b.deployment}"])
    pause = _pre_stop_pause(c)
    grace = int(dep["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
    if pause is None:
        return Result(FAIL, [f"container {b.container} has no preStop pause: a deleted pod "
                             "stops serving while the Service still sends it requests (they "
                             "are refused, or hang when its address is already gone)"])
    if pause < DRAIN_MIN_S:
        return Result(FAIL, [f"preStop pauses {pause}s, less than the {DRAIN_MIN_S}s an "
                             "endpoint removal takes to reach every node"])
    if pause >= grace:
        return Result(FAIL, [f"preStop pauses {pause}s, not less than the "
                             f"{grace}s grace period: requests in flight are killed"])
    return Result(PASS, [f"preStop pauses {pause}s, then {grace - pause}s of the {grace}s grace "
                         "period for requests in flight"])


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
                  "DUCKLAKE_QUERY_S3_SECRET_KEY": ("query_s3", 1),
                  "DUCKLAKE_MAINTENANCE_S3_ACCESS_KEY": ("maintenance_s3", 0),
                  "DUCKLAKE_MAINTENANCE_S3_SECRET_KEY": ("maintenance_s3", 1)}


def expected_backend_config(spec: StackSpec) -> dict[str, str]:
    """The ConfigMap values BE-CFG-001 compares: what up renders (render.backend_config)."""
    rendered = backend_config(spec)
    return {k: rendered[k] for k in EXPECTED_CONFIG}


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
               "query_postgres": b.query_postgres_secret, "query_s3": b.query_s3_secret,
               "maintenance_s3": b.maintenance_s3_secret}
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
