"""The MinIO controls of both profiles on the real chart's distributed render (issue 16,
docs/design/distributed-profile.md step 9): MINIO-MODE-001, MINIO-PVC-001, MINIO-SEC-001/002
and MINIO-POD-001/002 judge the StatefulSet of a distributed spec as they judge the
Deployment of a standalone one; the render of one profile FAILs the other's mode."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from ducklake_infra.provision.spec import DistributedSpec
from ducklake_infra.suites import checks
from ducklake_infra.suites.catalog import FAIL, PASS
from ducklake_infra.suites.objects import Objects

from .conftest import render_chart

pytestmark = pytest.mark.bundle     # the bundle's helm and MinIO chart

MINIO_CONTROLS = ("MINIO-MODE-001", "MINIO-PVC-001", "MINIO-SEC-001", "MINIO-SEC-002",
                  "MINIO-POD-001", "MINIO-POD-002")


@pytest.fixture(scope="module")
def dspec(spec):
    return dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec())


def _secret(spec) -> dict:
    import base64
    m = spec.minio
    b64 = lambda s: base64.b64encode(s.encode()).decode()  # noqa: E731
    return {"kind": "Secret", "metadata": {"name": m.root_secret.name, "namespace": m.namespace},
            "data": {k: b64(v) for k, v in zip(m.root_secret.keys,
                                                ("ducklake-root", "a-long-random-root-password-1"))}}


def running(objs: list[dict], spec, servers: int) -> Objects:
    """The render as a running cluster shows it: the StatefulSet's pods Ready on distinct
    nodes, each claim Bound, the release values Helm reports, the root Secret."""
    m = spec.minio
    out = [o for o in copy.deepcopy(objs) if o.get("kind")]
    for o in out:
        o.setdefault("metadata", {}).setdefault("namespace", m.namespace)
    (sts,) = [o for o in out if o["kind"] == "StatefulSet"]
    tmpl = sts["spec"]["template"]
    for i in range(servers):
        out.append({"kind": "Pod", "metadata": {
            "name": f"{m.fullname}-{i}", "namespace": m.namespace,
            "labels": dict(tmpl["metadata"]["labels"]),
            "ownerReferences": [{"kind": "StatefulSet", "name": m.fullname}]},
            "spec": {**copy.deepcopy(tmpl["spec"]), "nodeName": f"node-{i}"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    for claim in spec.minio_claims:
        out.append({"kind": "PersistentVolumeClaim", "metadata": {
            "name": claim.name, "namespace": claim.namespace},
            "spec": {"storageClassName": claim.storage_class, "volumeName": f"pv-{claim.name}",
                     "resources": {"requests": {"storage": claim.size}}},
            "status": {"phase": "Bound"}})
    out.append(_secret(spec))
    return Objects(out, helm_values={m.release: {"mode": "distributed",
                                                 "existingSecret": m.root_secret.name}})


@pytest.fixture(scope="module")
def distributed_render(helm, dspec, opts, minio_chart) -> list[dict]:
    return render_chart(helm, dspec, opts, "minio")


def test_the_claims_are_the_statefulsets_one_per_server(dspec, spec):
    assert [c.name for c in dspec.minio_claims] == [f"export-{spec.minio.fullname}-{i}"
                                                     for i in range(4)]
    assert {c.size for c in dspec.minio_claims} == {spec.minio.pvcs[0].size}
    assert spec.minio_claims == spec.minio.pvcs          # standalone: as written
    assert [p.name for p in dspec.all_pvcs()][:4] == [c.name for c in dspec.minio_claims]


@pytest.mark.parametrize("cid", MINIO_CONTROLS)
def test_a_running_distributed_minio_passes_the_minio_controls(cid, distributed_render, dspec):
    res = checks.run(cid, running(distributed_render, dspec, 4), dspec)
    assert res.status == PASS, (cid, res.evidence)


def test_the_distributed_render_fails_a_standalone_spec(distributed_render, dspec, spec):
    res = checks.run("MINIO-MODE-001", running(distributed_render, dspec, 4), spec)
    assert res.status == FAIL
    assert any("runs in distributed mode, the plan says standalone" in e for e in res.evidence)
    assert any(f"no Deployment {spec.minio.namespace}/{spec.minio.fullname}" in e
               for e in res.evidence), res.evidence


def test_the_standalone_render_fails_a_distributed_spec(helm, spec, dspec, opts, minio_chart):
    rendered = render_chart(helm, spec, opts, "minio")
    for o in rendered:
        o.setdefault("metadata", {}).setdefault("namespace", spec.minio.namespace)
    objs = Objects(rendered, helm_values={spec.minio.release: {"mode": "standalone"}})
    res = checks.run("MINIO-MODE-001", objs, dspec)
    assert res.status == FAIL
    assert any("runs in standalone mode, the plan says distributed" in e for e in res.evidence)
    assert any("chart value mode is 'standalone', expected 'distributed'" in e
               for e in res.evidence), res.evidence


def _statefulset(objs: Objects) -> dict:
    (sts,) = objs.all("StatefulSet")
    return sts


@pytest.mark.parametrize("cid,breaks,needle", [
    ("MINIO-MODE-001", lambda o: _statefulset(o)["spec"].update(replicas=3),
     "has replicas 3, expected 4"),
    ("MINIO-MODE-001", lambda o: [c.update(command=["/bin/sh", "-ce", "minio server /export"])
                                  for c in _statefulset(o)["spec"]["template"]["spec"]["containers"]],
     "not one erasure set of 4 servers"),
    ("MINIO-PVC-001", lambda o: o.get("PersistentVolumeClaim", "export-minio-2", "storage")
     .update(status={"phase": "Pending"}), "export-minio-2 is Pending"),
    ("MINIO-PVC-001", lambda o: o.items.remove(o.get("PersistentVolumeClaim", "export-minio-3",
                                                     "storage")), None),
    ("MINIO-SEC-001", lambda o: [c.update(env=[{"name": "MINIO_ROOT_PASSWORD", "value": "x"}])
                                 for c in _statefulset(o)["spec"]["template"]["spec"]["containers"]],
     "inline literal"),
    ("MINIO-POD-001", lambda o: o.get("Pod", "minio-1", "storage")["status"].update(
        conditions=[{"type": "Ready", "status": "False"}]), "pod minio-1 not Ready"),
])
def test_each_way_of_breaking_the_distributed_minio_fails(cid, breaks, needle, distributed_render,
                                                          dspec):
    objs = running(distributed_render, dspec, 4)
    breaks(objs)
    res = checks.run(cid, objs, dspec)
    assert res.status == FAIL, (cid, res.evidence)
    if needle:
        assert any(needle in e for e in res.evidence), res.evidence


def test_drift_reads_the_distributed_plan(distributed_render, dspec):
    objs = running(distributed_render, dspec, 4)
    for cid in ("DRIFT-REPL-001", "DRIFT-PVC-001"):
        res = checks.run(cid, objs, dspec)
        assert res.status == PASS, (cid, res.evidence)
    assert any("stack.yaml distributed.minio.servers" in e
               for e in checks.run("DRIFT-REPL-001", objs, dspec).evidence)
    _statefulset(objs)["spec"]["replicas"] = 3
    res = checks.run("DRIFT-REPL-001", objs, dspec)
    assert res.status == FAIL and any("live 3" in e and "expected 4" in e for e in res.evidence)
    objs.get("PersistentVolumeClaim", "export-minio-1", "storage")["spec"]["resources"] = {
        "requests": {"storage": "1Gi"}}
    res = checks.run("DRIFT-PVC-001", objs, dspec)
    assert res.status == FAIL and any("export-minio-1 size: live 1Gi" in e for e in res.evidence)
