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
}


@pytest.mark.parametrize("case", sorted(WRITER_GRANTS))
def test_a_writer_that_may_delete_in_the_lake_fails(good, spec, case):
    actions, extra = WRITER_GRANTS[case]
    st = {"effect": "Allow", "actions": actions, "resources": [_lake_objects(spec)]}
    if extra:
        st["resources"] = extra
    _writer(good, spec)["statements"].append(st)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("rollback delete" in e for e in res.evidence), (case, res.evidence)


def test_iam_reading_honours_only_an_unconditional_deny(good, spec):
    """allows() explains why a difference matters: an unconditional Deny wins, a Deny
    with a condition may not apply (MinIO applies it per request), an empty effect is the
    chart's default, Allow."""
    obj = f"arn:aws:s3:::{spec.lake_bucket}/x.parquet"
    grant = {"effect": "Allow", "actions": ["s3:*"], "resources": [_lake_objects(spec)]}
    deny = {"effect": "Deny", "actions": ["s3:Delete*"], "resources": ["*"]}
    assert not allows({"statements": [grant, deny]}, "s3:DeleteObject", obj)
    cond = {**deny, "conditions": [{"StringLike": '"aws:UserAgent": "MinIO (*"'}]}
    assert allows({"statements": [grant, cond]}, "s3:DeleteObject", obj)
    for empty in ("", None):
        assert allows({"statements": [{**grant, "effect": empty}]}, "s3:DeleteObject", obj)


# An adversarial review's ways past a semantic reading of the policies (2026-11-30): each
# is real for chart 5.4.0 and MinIO; the allowlist (the render, exactly) FAILs every one.
def _deny(spec, resources, **extra):
    return {"effect": "Deny", "actions": ["s3:DeleteObject"], "resources": resources, **extra}


BYPASSES = {
    "deny with a condition": lambda spec: [
        {"effect": "Allow", "actions": ["s3:DeleteObject"], "resources": [_lake_objects(spec)]},
        _deny(spec, ["arn:aws:s3:::*"], conditions=[{"StringLike": '"aws:UserAgent": "MinIO (*"'}])],
    "deny on one prefix": lambda spec: [
        {"effect": "Allow", "actions": ["s3:DeleteObject"], "resources": [_lake_objects(spec)]},
        _deny(spec, [f"arn:aws:s3:::{spec.lake_bucket}/main/t/*"])],
    "grant on another prefix": lambda spec: [
        {"effect": "Allow", "actions": ["s3:DeleteObject"],
         "resources": [f"arn:aws:s3:::{spec.lake_bucket}/main/events/*"]}],
    "grant by file name": lambda spec: [
        {"effect": "Allow", "actions": ["s3:DeleteObject"],
         "resources": [f"arn:aws:s3:::{spec.lake_bucket}/*-*-*.parquet"]}],
    "empty effect": lambda spec: [
        {"effect": "", "actions": ["s3:DeleteObject"], "resources": [_lake_objects(spec)]}],
    "null effect": lambda spec: [
        {"effect": None, "actions": ["s3:DeleteObject"], "resources": [_lake_objects(spec)]}],
    "a header-substituted bucket": lambda spec: [
        {"effect": "Allow", "actions": ["s3:DeleteObject"], "resources": ["arn:aws:s3:::${aws:Referer}/*"]}],
    "admin actions": lambda spec: [{"effect": "Allow", "actions": ["admin:*"]}],
    "force-delete the bucket": lambda spec: [
        {"effect": "Allow", "actions": ["s3:ForceDeleteBucket"], "resources": [f"arn:aws:s3:::{spec.lake_bucket}"]}],
    "a lifecycle rule": lambda spec: [
        {"effect": "Allow", "actions": ["s3:PutLifecycleConfiguration"],
         "resources": [f"arn:aws:s3:::{spec.lake_bucket}"]}],
    "a bucket policy": lambda spec: [
        {"effect": "Allow", "actions": ["s3:PutBucketPolicy"], "resources": [f"arn:aws:s3:::{spec.lake_bucket}"]}],
}


@pytest.mark.parametrize("case", sorted(BYPASSES))
def test_a_writer_policy_not_as_rendered_fails(good, spec, case):
    _writer(good, spec)["statements"] += BYPASSES[case](spec)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("differs from the one `up` renders" in e for e in res.evidence), \
        (case, res.evidence)


def test_a_maintenance_policy_with_an_empty_effect_fails(good, spec):
    _maintenance(good, spec)["statements"].append(
        {"effect": "", "actions": ["s3:*", "admin:*"], "resources": ["*"]})
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("beyond list + delete" in e for e in res.evidence), res.evidence


def _users(objs, spec):
    return objs.helm_values[spec.minio.release]["users"]


def _entry(objs, spec, user):
    return next(u for u in _users(objs, spec) if u["accessKey"] == user.access_key)


@pytest.mark.parametrize("case", ["a second entry", "a padded key", "a templated key"])
def test_the_writer_named_twice_fails(good, spec, case):
    wu = _entry(good, spec, spec.minio.backend_user)
    key = {"a second entry": wu["accessKey"], "a padded key": " " + wu["accessKey"],
           "a templated key": '{{ "%s" }}' % wu["accessKey"]}[case]
    _users(good, spec).insert(0, {**wu, "accessKey": key, "policy": "readwrite"})
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL, (case, res.evidence)


def test_a_padded_policy_name_that_overwrites_the_writer_s_fails(good, spec):
    import copy
    bad = copy.deepcopy(_writer(good, spec))
    bad["name"] = " " + bad["name"]
    bad["statements"].append({"effect": "Allow", "actions": ["s3:DeleteObject"], "resources": [_lake_objects(spec)]})
    good.helm_values[spec.minio.release]["policies"].append(bad)
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("not a plain name" in e for e in res.evidence), res.evidence


def test_the_maintenance_policy_given_to_another_user_fails(good, spec):
    _users(good, spec).append({"accessKey": "someone", "policy": spec.minio.maintenance_user.policy})
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("attached to" in e for e in res.evidence), res.evidence


@pytest.mark.parametrize("key,value", [
    ("customCommands", [{"command": "admin policy attach myminio readwrite --user ducklake-backend"}]),
    ("svcaccts", [{"accessKey": "sa", "secretKey": "x" * 20, "user": "ducklake-maintenance"}]),
    ("makeUserJob", {"exitCommand": "mc admin policy attach myminio readwrite --user ducklake-backend"}),
    ("postJob", {"exitCommand": "true"}),
])
def test_grant_paths_the_check_cannot_judge_fail(good, spec, key, value):
    good.helm_values[spec.minio.release][key] = value
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL and any("cannot judge" in e for e in res.evidence), res.evidence


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


def test_a_missing_maintenance_user_or_writer_fails(good, spec):
    values = good.helm_values[spec.minio.release]
    values["users"] = [u for u in values["users"]
                       if u["accessKey"] not in (spec.minio.maintenance_user.access_key,
                                                 spec.minio.backend_user.access_key)]
    res = checks.check_only_maintenance_deletes(good, spec)
    assert res.status == FAIL
    assert sum("users[] entries []" in e for e in res.evidence) == 2, res.evidence


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
