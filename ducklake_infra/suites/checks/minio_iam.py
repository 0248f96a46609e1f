"""MINIO-IAM-003: only maintenance's identity may delete lake files (issue 16's ambiguous
commit). DuckLake's rollback deletes the data files of a transaction whose COMMIT failed;
a COMMIT cut by a failover of the catalog may have committed, and the committed snapshot
then names deleted files (a table that can no longer be read). The writer's identity
therefore must not be able to delete in the lake bucket; one separate identity, the
maintenance user, lists and deletes there and does nothing else.

Judged from the MinIO release's values (its users and their policies, as the chart
installs them) and the backend's Secrets: read-only, usable on any cluster.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Mapping

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
    """IAM's rule for one request: some Allow statement matches (wildcards included) and
    no Deny statement does."""
    sts = policy.get("statements") or []
    effect = [str(st.get("effect", "Allow")).lower() for st in sts]
    if any(e == "deny" and _matches(st, action, resource) for e, st in zip(effect, sts)):
        return False
    return any(e == "allow" and _matches(st, action, resource) for e, st in zip(effect, sts))


@check("MINIO-IAM-003")
def check_only_maintenance_deletes(objs: Objects, spec: StackSpec) -> Result:
    m, b = spec.minio, spec.backend
    lake_object = f"arn:aws:s3:::{spec.lake_bucket}/main/t/ducklake-0.parquet"
    problems, good = [], []
    writer = release_policy(objs, spec, m.backend_user.access_key)
    if writer is None:
        problems.append(f"MinIO user {m.backend_user.access_key} has no policy from the release's values")
    else:
        can = [a for a in DELETE_ACTIONS if allows(writer, a, lake_object)]
        if can:
            problems.append(f"the writer {m.backend_user.access_key} may {', '.join(can)} in the lake "
                            f"bucket (policy {writer.get('name')}): a COMMIT cut by a failover lets "
                            "DuckLake's rollback delete the files of a committed snapshot")
        else:
            good.append(f"the writer {m.backend_user.access_key} cannot delete in the lake bucket")
    mnt = release_policy(objs, spec, m.maintenance_user.access_key)
    lake = {f"arn:aws:s3:::{spec.lake_bucket}", f"arn:aws:s3:::{spec.lake_bucket}/*"}
    if mnt is None:
        problems.append(f"MinIO user {m.maintenance_user.access_key} has no policy from the release's "
                        "values: maintenance cannot delete what no snapshot needs")
    else:
        wide = []
        for st in mnt.get("statements") or []:
            if str(st.get("effect", "Allow")).lower() != "allow":
                continue
            extra = set(_listed(st.get("actions"))) - MAINTENANCE_S3_ACTIONS
            outside = set(_listed(st.get("resources"))) - lake
            if extra or outside:
                wide.append(f"{sorted(extra) or ''} {sorted(outside) or ''}".strip())
        if wide:
            problems.append(f"maintenance's policy {mnt.get('name')} allows {'; '.join(wide)} beyond "
                            "list + delete on the lake bucket")
        elif not allows(mnt, "s3:DeleteObject", lake_object):
            problems.append(f"maintenance's policy {mnt.get('name')} cannot delete in the lake bucket")
        else:
            good.append(f"maintenance {m.maintenance_user.access_key}: "
                        f"{sorted(MAINTENANCE_S3_ACTIONS)} on the lake bucket only")
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
