"""Secrets hygiene: no secret value in ConfigMaps, env, annotations or logs."""

from __future__ import annotations


from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec, \
    WORKLOAD_KINDS
from ducklake_infra.suites.catalog import CheckError, Result, result
from ducklake_infra.suites.checks.core import (_literal_credential_env, CREDENTIAL_ASSIGNMENT, CREDENTIAL_NAME, CheckInputMissing, SKIP_CONFIGMAPS, _NOT_A_CREDENTIAL, _known_secrets, _stack_namespaces, check)


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
