"""PostgreSQL checks (seed plan 2.2)."""

from __future__ import annotations

import re
from typing import Mapping

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec
from ducklake_infra.suites.catalog import FAIL, PASS, Result, result
from ducklake_infra.suites.checks.core import (_literal_credential_env, CheckInputMissing, _env_value, _pg_statefulset, _pods_ready, _pvc_check, _release_check, _release_objects, _security_and_resources, _services_check, check)


# ---- 2.2 PostgreSQL ----------------------------------------------------------------------
@check("PG-REL-001")
def check_pg_release(objs: Objects, spec: StackSpec) -> Result:
    return _release_check(objs, spec.releases[spec.postgresql.release])


@check("PG-REP-001")
def check_pg_members(objs: Objects, spec: StackSpec) -> Result:
    pg = spec.postgresql
    d = spec.active_distributed
    want = d.pg_members if d else 1       # the distributed profile's members, or one
    sts = _pg_statefulset(objs, spec)
    if sts is None:
        return Result(FAIL, [f"no StatefulSet {pg.namespace}/{pg.fullname}"])
    problems, good = [], []
    replicas = sts.get("spec", {}).get("replicas", 1)
    if replicas != want:
        problems.append(f"{name_of(sts)} has replicas {replicas}, expected {want}")
    else:
        good.append(f"{name_of(sts)} replicas {want}")
    others = [o for kind in ("StatefulSet", "Deployment")
              for o in _release_objects(objs, kind, pg.namespace, pg.release) if o is not sts
              and o["metadata"]["name"] != pg.fullname]
    if others:
        problems.append(f"release {pg.release} runs more workloads: {[name_of(o) for o in others]}")
    pods = objs.pods_of(sts)
    if objs.all("Pod", pg.namespace) or (sts.get("status") or {}):
        if len(pods) != want:
            problems.append(f"{len(pods)} PostgreSQL pods, expected {want}")
        else:
            good.append(f"{want} pod(s) {', '.join(sorted(p['metadata']['name'] for p in pods))}")
    return result(problems, good)


def _pg_data_path(container: Mapping) -> str | None:
    e = _env_value(container, "PGDATA")
    return e.get("value") if e and "value" in e else None


@check("PG-PVC-001")
def check_pg_pvc(objs: Objects, spec: StackSpec) -> Result:
    problems, good = [], []
    sts = _pg_statefulset(objs, spec)
    for pvc in spec.postgresql_claims:
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
