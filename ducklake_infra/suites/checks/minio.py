"""MinIO checks (seed plan 2.1)."""

from __future__ import annotations

from typing import Any, Mapping

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec
from ducklake_infra.suites.catalog import FAIL, Result, result
from ducklake_infra.suites.checks.core import (CheckInputMissing, DEFAULT_MINIO_CREDENTIALS, DEFAULT_MINIO_PASSWORDS, _env_value, _minio_data_path, _minio_server_arg, _minio_workload, minio_workload_kind, _pods_ready, _pvc_check, _release_check, _release_objects, _security_and_resources, _services_check, check)


# ---- 2.1 MinIO --------------------------------------------------------------------------
@check("MINIO-REL-001")
def check_minio_release(objs: Objects, spec: StackSpec) -> Result:
    return _release_check(objs, spec.releases[spec.minio.release])


@check("MINIO-MODE-001")
def check_minio_mode(objs: Objects, spec: StackSpec) -> Result:
    """The mode of the spec's profile: standalone (one Deployment of one server, one
    directory) or distributed (one StatefulSet of the planned servers, one erasure set)."""
    m = spec.minio
    want = "distributed" if spec.profile == "distributed" else "standalone"
    problems, good = [], []
    other = "Deployment" if want == "distributed" else "StatefulSet"
    stray = objs.get(other, m.fullname, m.namespace) or \
        next(iter(_release_objects(objs, other, m.namespace, m.release)), None)
    if stray is not None:
        problems.append(f"{name_of(stray)} exists: MinIO runs in "
                        f"{'standalone' if other == 'Deployment' else 'distributed'} mode, "
                        f"the plan says {want}")
    wl = _minio_workload(objs, spec)
    d = spec.active_distributed
    servers = d.minio_servers if d else 1
    if wl is None:
        problems.append(f"no {minio_workload_kind(spec)} {m.namespace}/{m.fullname} "
                        f"({want} mode runs one)")
    else:
        replicas = wl.get("spec", {}).get("replicas", 1)
        if replicas != servers:
            problems.append(f"{name_of(wl)} has replicas {replicas}, expected {servers}")
        else:
            good.append(f"{name_of(wl)} with {servers} replica{'s' if servers > 1 else ''}")
        for c in containers(pod_spec(wl)):
            arg = _minio_server_arg(c)
            if arg is None:
                continue
            erasure_set = "{0..." + str(servers - 1) + "}"
            if want == "standalone" and "{" in arg:
                problems.append(f"container {c.get('name')} serves an erasure set {arg} (distributed)")
            elif want == "distributed" and erasure_set not in arg:
                problems.append(f"container {c.get('name')} serves {arg}, not one erasure set "
                                f"of {servers} servers ({erasure_set})")
            elif want == "distributed":
                good.append(f"container {c.get('name')} serves the erasure set {arg}")
    values = objs.helm_values.get(m.release)
    if values is not None and "mode" in values:
        if values["mode"] != want:
            problems.append(f"chart value mode is {values['mode']!r}, expected {want!r}")
        else:
            good.append(f"chart value mode: {want}")
    return result(problems, good)


@check("MINIO-SVC-001")
def check_minio_services(objs: Objects, spec: StackSpec) -> Result:
    return _services_check(objs, spec.minio.services, spec.minio.release)


@check("MINIO-PVC-001")
def check_minio_pvc(objs: Objects, spec: StackSpec) -> Result:
    problems, good = [], []
    dep = _minio_workload(objs, spec)
    for pvc in spec.minio_claims:
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
    dep = _minio_workload(objs, spec)
    if dep is None:
        return Result(FAIL, [f"no {minio_workload_kind(spec)} {m.namespace}/{m.fullname}"])
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
    dep = _minio_workload(objs, spec)
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
            raise CheckInputMissing(f"neither {minio_workload_kind(spec)} {m.fullname} nor Secret "
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
    return result(*_pods_ready(objs, _minio_workload(objs, spec), "MinIO"))


@check("MINIO-POD-002")
def check_minio_pod_security(objs: Objects, spec: StackSpec) -> Result:
    return result(*_security_and_resources(_minio_workload(objs, spec), "MinIO"))
