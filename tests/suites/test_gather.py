"""live.gather with a fake runner: every read of one batch lands where the checks look
for it (objects, namespaces, Helm releases and values, the rules review), a refused or
missing read is said, never mistaken for an empty cluster."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.pytest_plugin import Kubectl
from ducklake_infra.provision.cluster import ExistingCluster
from ducklake_infra.suites import live
from tests.provision.fakes import FakeRunner


def _list(*items) -> str:
    return json.dumps({"kind": "List", "items": list(items)})


def _ns(name: str) -> dict:
    return {"kind": "Namespace", "metadata": {"name": name,
                                             "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}


@pytest.fixture
def fake(spec):
    runner = FakeRunner(readonly=True)
    cluster = ExistingCluster(runner, "ctx")
    nss = live.stack_namespaces(spec)
    runner.on(r"get namespaces", stdout=_list(*[_ns(n) for n in nss]))
    runner.on(r"get secrets", stdout=_list())
    runner.on(r"get deployments,", stdout=_list())
    runner.on(rf"-n {nss[0]} get deployments,", stdout=_list({"kind": "Deployment", "metadata": {
        "name": "d", "namespace": nss[0]}}))
    rel = spec.releases[spec.minio.release]
    runner.on(r"helm .* list", stdout="[]")
    runner.on(rf"helm .* list -n {rel.namespace}", stdout=json.dumps(
        [{"name": rel.name, "namespace": rel.namespace, "status": "deployed"}]))
    runner.on(r"helm .* get values", rc=1, stderr="Error: release: not found")
    runner.on(rf"helm .* get values {rel.name} -n {rel.namespace} -o json",
              stdout=json.dumps({"replicas": 1}))
    runner.on(rf"helm .* get values {rel.name} -n {rel.namespace} -a -o json",
              stdout=json.dumps({"replicas": 1, "mode": "standalone", "existingSecret": "s"}))
    return runner, cluster, Kubectl(runner, cluster.kubectl(), cluster)


def test_one_batch_fills_objects_namespaces_and_the_installed_releases_values(fake, spec):
    runner, cluster, kubectl = fake
    objs = live.gather(kubectl, runner, cluster, spec)
    assert [o["metadata"]["name"] for o in objs.all("Deployment")] == ["d"]
    assert sorted(objs.namespace_objects) == live.stack_namespaces(spec)
    assert objs.namespace_error == ""
    rel = spec.releases[spec.minio.release]
    # only the installed release has values; the computed mode and Secret are kept
    assert objs.helm_values == {rel.name: {"replicas": 1, "mode": "standalone",
                                           "existingSecret": "s"}}
    assert [r["name"] for r in objs.helm_releases] == [rel.name]
    assert objs.write_rules is None            # not asked: not a read-only audit's gather


def test_a_namespace_not_read_is_said(fake, spec):
    runner, cluster, kubectl = fake
    nss = live.stack_namespaces(spec)
    runner.on(r"get namespaces", rc=1, stdout=_list(_ns(nss[0])),
              stderr=f'Error from server (Forbidden): namespaces "{nss[-1]}" is forbidden')
    objs = live.gather(kubectl, runner, cluster, spec)
    assert list(objs.namespace_objects) == [nss[0]]
    assert "forbidden" in objs.namespace_error


def test_a_refused_helm_list_leaves_releases_unknown(fake, spec):
    runner, cluster, kubectl = fake
    runner.on(r"helm .* list", rc=1, stderr="Error: secrets is forbidden")
    objs = live.gather(kubectl, runner, cluster, spec)
    assert objs.helm_releases is None and objs.helm_values == {}
    assert "forbidden" in objs.helm_error


def test_the_rules_review_runs_in_the_batch_and_its_error_is_kept(fake, spec, monkeypatch):
    runner, cluster, kubectl = fake
    from ducklake_infra.provision import kubeapi
    nss = live.stack_namespaces(spec)
    monkeypatch.setattr(kubeapi, "read_only_client", lambda c: object())

    def rules(api, ns):
        if ns == nss[0]:
            raise RuntimeError("the API server said no")
        return [f"create on pods (core) in {ns}"]
    monkeypatch.setattr(kubeapi, "write_rules", rules)
    objs = live.gather(kubectl, runner, cluster, spec, rules_review=True)
    assert isinstance(objs.write_rules[nss[0]], RuntimeError)
    assert objs.write_rules[nss[-1]] == [f"create on pods (core) in {nss[-1]}"]


def test_a_read_only_violation_in_the_review_is_raised_not_kept(fake, spec, monkeypatch):
    runner, cluster, kubectl = fake
    from ducklake_infra.provision import kubeapi
    from ducklake_infra.provision.runner import ReadOnlyViolation
    monkeypatch.setattr(kubeapi, "read_only_client", lambda c: object())

    def rules(api, ns):
        raise ReadOnlyViolation("POST /api/v1/namespaces is a write")
    monkeypatch.setattr(kubeapi, "write_rules", rules)
    with pytest.raises(ReadOnlyViolation):
        live.gather(kubectl, runner, cluster, spec, rules_review=True)
