"""MINIO-IAM-003: only maintenance's identity may delete lake files (issue 16's ambiguous
commit). DuckLake's rollback deletes the data files of a transaction whose COMMIT failed;
a COMMIT cut by a failover of the catalog may have committed, and the committed snapshot
then names deleted files (a table that can no longer be read). The writer's identity
therefore must not be able to delete in the lake bucket; one separate identity, the
maintenance user, lists and deletes there and does nothing else.

Judged from the MinIO release's values and the backend's Secrets, read-only, usable on
any cluster, as an allowlist: the two users and their policies must be exactly what `up`
renders (render.py). A semantic reading of IAM was tried first and an adversarial review
got past it (a Deny with a condition, a grant scoped to another prefix, an empty effect
the chart turns into Allow, a second users[] entry for the same key, a name the chart's
shell reads differently); the reading stays only to say why a difference matters. Grant
paths outside users/policies (customCommands, the jobs' exitCommand, service accounts)
cannot be judged and FAIL. What MinIO holds live is MINIO-IAM-002's probe (mutating).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping
import re

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import Result, result
from ducklake_infra.suites.checks.core import CheckInputMissing, check
from ducklake_infra.suites.objects import Objects

MAINTENANCE_S3_ACTIONS = {"s3:GetBucketLocation", "s3:ListBucket", "s3:DeleteObject"}
DELETE_ACTIONS = ("s3:DeleteObject", "s3:DeleteObjectVersion")


def release_policy(objs: Objects, spec: StackSpec, access_key: str) -> Mapping | None:
    """The policy the MinIO release attaches to user ``access_key`` (None: no such user
    or policy in the release's values)."""
    m = spec.minio
    values = objs.helm_values.get(m.release)
    if values is None:
        raise CheckInputMissing(f"Helm values of release {m.release} were not read")
    users = {u.get("accessKey"): u.get("policy") for u in values.get("users") or []}
    policies = {p.get("name"): p for p in values.get("policies") or []}
    return policies.get(users.get(access_key))


def _listed(x) -> list[str]:
    return [x] if isinstance(x, str) else list(x or [])


def _matches(statement: Mapping, action: str, resource: str) -> bool:
    return (any(fnmatchcase(action, a) for a in _listed(statement.get("actions")))
            and any(fnmatchcase(resource, r) for r in _listed(statement.get("resources"))))


def allows(policy: Mapping, action: str, resource: str) -> bool:
    """IAM's rule for one request, read cautiously: some Allow statement matches (wildcards
    included; an empty effect is the chart's default, Allow) and no unconditional Deny
    does (a Deny with a condition may not apply to the request)."""
    sts = policy.get("statements") or []
    effect = [str(st.get("effect") or "Allow") for st in sts]    # the chart: default "Allow"
    if any(e == "Deny" and not st.get("conditions") and _matches(st, action, resource)
           for e, st in zip(effect, sts)):
        return False
    return any(e == "Allow" and _matches(st, action, resource) for e, st in zip(effect, sts))


PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+=,-]*$")     # what the chart's shell reads as typed
# values of the chart that run commands or make identities this check cannot judge
UNJUDGED = ("customCommands", "svcaccts")
JOBS = ("makePolicyJob", "makeUserJob", "makeServiceAccountJob", "makeBucketJob",
        "customCommandJob", "postJob")


def _canonical(policy: Mapping) -> list[str]:
    """A policy's statements, each with its keys as written and lists sorted, in order:
    two policies are the same when these are (an empty effect, a condition, an extra key
    all differ)."""
    import json
    out = []
    for st in policy.get("statements") or []:
        out.append(json.dumps({k: sorted(map(str, v)) if isinstance(v, list) else v
                               for k, v in dict(st).items()}, sort_keys=True))
    return sorted(out)


def _sample_objects(spec: StackSpec) -> list[str]:
    lake = f"arn:aws:s3:::{spec.lake_bucket}"
    return [f"{lake}/main/t/ducklake-0.parquet", f"{lake}/main/events/ducklake-1.parquet",
            f"{lake}/conformance/probe.txt", f"{lake}/x"]


@check("MINIO-IAM-003")
def check_only_maintenance_deletes(objs: Objects, spec: StackSpec) -> Result:
    from ducklake_infra.provision import render
    m, b = spec.minio, spec.backend
    values = objs.helm_values.get(m.release)
    if values is None:
        raise CheckInputMissing(f"Helm values of release {m.release} were not read")
    problems, good = [], []
    users = [u for u in values.get("users") or [] if isinstance(u, Mapping)]
    policies = [p for p in values.get("policies") or [] if isinstance(p, Mapping)]
    for what, names in (("users[].accessKey", [u.get("accessKey") for u in users]),
                        ("users[].policy", [u.get("policy") for u in users]),
                        ("policies[].name", [p.get("name") for p in policies])):
        odd = sorted({repr(n) for n in names if not (isinstance(n, str) and PLAIN.match(n))})
        if odd:
            problems.append(f"{what} {', '.join(odd)}: not a plain name (the chart's shell may read "
                            "another identity or policy than this check)")
    for key in UNJUDGED:
        if values.get(key):
            problems.append(f"values set {key}: grants this check cannot judge")
    for job in JOBS:
        if str((values.get(job) or {}).get("exitCommand") or "").strip():
            problems.append(f"values set {job}.exitCommand: a command this check cannot judge")
    rendered = {p["name"]: p for p in render.minio_policies(spec)}
    for user, role in ((m.backend_user, "the writer"), (m.maintenance_user, "maintenance")):
        entries = [u for u in users if u.get("accessKey") == user.access_key]
        if len(entries) != 1 or entries[0].get("policy") != user.policy:
            problems.append(f"{role} {user.access_key}: users[] entries {[u.get('policy') for u in entries]}, "
                            f"expected one with policy {user.policy!r}")
        holders = sorted(str(u.get("accessKey")) for u in users if u.get("policy") == user.policy)
        if holders != [user.access_key]:
            problems.append(f"policy {user.policy} is attached to {holders}, expected only {user.access_key}")
        found = [p for p in policies if p.get("name") == user.policy]
        if len(found) != 1:
            problems.append(f"{role}'s policy {user.policy}: {len(found)} in the release's values, expected 1")
            continue
        pol = found[0]
        if _canonical(pol) != _canonical(rendered[user.policy]):
            problems.append(f"{role}'s policy {user.policy} differs from the one `up` renders "
                            "(render.py): only that one is judged safe")
        if user is m.backend_user:
            can = sorted({a for o in _sample_objects(spec) for a in DELETE_ACTIONS if allows(pol, a, o)})
            if can:
                problems.append(f"the writer {user.access_key} may {', '.join(can)} in the lake bucket: a "
                                "COMMIT cut by a failover lets DuckLake's rollback delete the files of a "
                                "committed snapshot")
        else:
            lake = {f"arn:aws:s3:::{spec.lake_bucket}", f"arn:aws:s3:::{spec.lake_bucket}/*"}
            wide = []
            for st in pol.get("statements") or []:
                if str(st.get("effect") or "Allow") == "Deny":
                    continue
                extra = set(_listed(st.get("actions"))) - MAINTENANCE_S3_ACTIONS
                outside = set(_listed(st.get("resources"))) - lake
                if extra or outside:
                    wide.append(f"{sorted(extra) or ''} {sorted(outside) or ''}".strip())
            if wide:
                problems.append(f"maintenance's policy {user.policy} allows {'; '.join(wide)} beyond "
                                "list + delete on the lake bucket")
            if not allows(pol, "s3:DeleteObject", _sample_objects(spec)[0]):
                problems.append(f"maintenance's policy {user.policy} cannot delete in the lake bucket")
    if not problems:
        good.append(f"the writer {m.backend_user.access_key} cannot delete in the lake bucket; "
                    f"maintenance {m.maintenance_user.access_key}: {sorted(MAINTENANCE_S3_ACTIONS)} on "
                    "the lake bucket only (both policies as `up` renders them)")
    ms3 = objs.secret_data(b.maintenance_s3_secret.name, b.namespace)
    ws3 = objs.secret_data(b.s3_secret.name, b.namespace)
    if not ms3:
        raise CheckInputMissing(f"Secret {b.namespace}/{b.maintenance_s3_secret.name} does not exist "
                                "or is empty")
    mkey = ms3.get(b.maintenance_s3_secret.keys[0])
    if mkey != m.maintenance_user.access_key:
        problems.append(f"Secret {b.maintenance_s3_secret.name} holds {mkey!r}, not the maintenance "
                        f"user {m.maintenance_user.access_key!r}")
    elif ws3 and mkey == ws3.get(b.s3_secret.keys[0]):
        problems.append("maintenance and the writer share one S3 identity")
    else:
        good.append(f"Secret {b.maintenance_s3_secret.name}: the maintenance user")
    return result(problems, good)
