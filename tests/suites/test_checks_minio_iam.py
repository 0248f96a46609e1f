"""MINIO-IAM-003 (checks/minio_iam.py): only maintenance's identity may delete lake files.
The objects `up` renders (the policies and users of render.py, the backend's Secrets)
pass; every way of giving the writer a delete, widening maintenance, or wiring the wrong
identity FAILs; IAM's own rule (an explicit Deny wins) is honoured."""

from __future__ import annotations

import base64

import pytest

from ducklake_infra.suites import checks
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, catalog
from ducklake_infra.suites.checks.minio_iam import allows


def _policy(objs, spec, user):
    return next(p for p in objs.helm_values[spec.minio.release]["policies"] if p["name"] == user.policy)


def _writer(objs, spec):
    return _policy(objs, spec, spec.minio.backend_user)


def _maintenance(objs, spec):
    return _policy(objs, spec, spec.minio.maintenance_user)


def test_the_rendered_identities_pass(good, spec):
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == PASS, res.evidence
    assert any("cannot delete" in e for e in res.evidence)
    assert catalog()["MINIO-IAM-003"].remediation


def _lake_objects(spec):
    return f"arn:aws:s3:::{spec.lake_bucket}/*"


WRITER_GRANTS = {
    "delete": (["s3:DeleteObject"], None),
    "delete a version": (["s3:DeleteObjectVersion"], None),
    "s3 wildcard": (["s3:*"], None),
    "delete wildcard": (["s3:Delete*"], None),
    "every action": (["*"], None),
    "a string action": ("s3:DeleteObject", None),
    "every bucket": (["s3:DeleteObject"], ["arn:aws:s3:::*"]),
    "every resource": (["s3:DeleteObject"], ["*"]),
    "lowercase effect": (["s3:DeleteObject"], "allow"),
}


@pytest.mark.parametrize("case", sorted(WRITER_GRANTS))
def test_a_writer_that_may_delete_in_the_lake_fails(good, spec, case):
    actions, extra = WRITER_GRANTS[case]
    st = {"effect": "Allow", "actions": actions, "resources": [_lake_objects(spec)]}
    if extra == "allow":
        st["effect"] = "allow"
    elif extra:
        st["resources"] = extra
    _writer(good, spec)["statements"].append(st)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("rollback delete" in e for e in res.evidence), (case, res.evidence)


def test_a_deny_on_delete_keeps_a_wide_writer_passing(good, spec):
    pol = _writer(good, spec)
    pol["statements"].append({"effect": "Allow", "actions": ["s3:*"], "resources": [_lake_objects(spec)]})
    pol["statements"].append({"effect": "Deny", "actions": ["s3:Delete*"], "resources": ["*"]})
    assert not allows(pol, "s3:DeleteObject", f"arn:aws:s3:::{spec.lake_bucket}/x.parquet")
    assert checks.check_only_maintenance_deletes(good, spec).status == PASS


MAINTENANCE_WIDENED = {
    "put": ({"effect": "Allow", "actions": ["s3:PutObject"], "resources": ["LAKE/*"]}, "s3:PutObject"),
    "get": ({"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["LAKE/*"]}, "s3:GetObject"),
    "wildcard": ({"effect": "Allow", "actions": ["s3:*"], "resources": ["LAKE/*"]}, "s3:*"),
    "raw bucket": ({"effect": "Allow", "actions": ["s3:DeleteObject"],
                    "resources": ["arn:aws:s3:::raw/*"]}, "raw"),
    "every resource": ({"effect": "Allow", "actions": ["s3:ListBucket"], "resources": ["*"]}, "*"),
}


@pytest.mark.parametrize("case", sorted(MAINTENANCE_WIDENED))
def test_a_maintenance_identity_beyond_list_and_delete_fails(good, spec, case):
    st, needle = MAINTENANCE_WIDENED[case]
    st = {**st, "resources": [r.replace("LAKE", f"arn:aws:s3:::{spec.lake_bucket}") for r in st["resources"]]}
    _maintenance(good, spec)["statements"].append(st)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("beyond list + delete" in e and needle in e
                                      for e in res.evidence), (case, res.evidence)


def test_a_maintenance_identity_that_cannot_delete_fails(good, spec):
    for st in _maintenance(good, spec)["statements"]:
        st["actions"] = [a for a in st["actions"] if a != "s3:DeleteObject"]
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("cannot delete in the lake" in e for e in res.evidence)


def test_a_missing_maintenance_user_or_writer_policy_fails(good, spec):
    values = good.helm_values[spec.minio.release]
    values["users"] = [u for u in values["users"]
                       if u["accessKey"] not in (spec.minio.maintenance_user.access_key,
                                                 spec.minio.backend_user.access_key)]
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL
    assert sum("has no policy" in e for e in res.evidence) == 2, res.evidence


def _set_maintenance_secret(objs, spec, access_key):
    b = spec.backend
    for o in objs.items:
        if o["kind"] == "Secret" and o["metadata"]["name"] == b.maintenance_s3_secret.name:
            o["data"]["access-key"] = base64.b64encode(access_key.encode()).decode()
            return
    raise AssertionError("no maintenance Secret in the fixture")


def test_maintenance_wired_to_the_writer_fails(good, spec):
    _set_maintenance_secret(good, spec, spec.minio.backend_user.access_key)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("not the maintenance user" in e for e in res.evidence)


def test_no_maintenance_secret_is_an_error_not_a_pass(good, spec):
    good.items[:] = [o for o in good.items if not (
        o["kind"] == "Secret" and o["metadata"]["name"] == spec.backend.maintenance_s3_secret.name)]
    from ducklake_infra.suites.checks import run
    assert run("MINIO-IAM-003", good, spec).status == ERROR
