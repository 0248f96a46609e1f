"""ducklake_infra/suites/drift.py on hand-written objects: a stack exactly as `up` would install it
passes every drift control; a deliberately drifted copy fails (or warns) each one,
with the difference and how to reconcile it in the evidence."""

from __future__ import annotations

import copy

import pytest

from ducklake_infra.provision.oci import ImageRef, helm_image_parts
from ducklake_infra.provision.render import BACKEND_IMAGE_KEY
from ducklake_infra.suites import drift, drift_expected, objects
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, WARN, catalog

IDS = sorted(drift.CONTROL_IDS.items(), key=lambda kv: kv[1])


@pytest.fixture(scope="module")
def refs(spec):
    return drift_expected.expected_images(spec)


def aligned(objs: Objects, spec, refs) -> Objects:
    """The conftest's conforming stack, with what the provisioner sets exactly."""
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    # backend: the provisioner's own rendering replaces k8s/*.yaml as written
    rendered = drift_expected.expected_backend(spec, refs[BACKEND_IMAGE_KEY])
    items = [o for o in objs.items if not (o["metadata"].get("namespace") == b.namespace
                                           and o["kind"] in rendered)]
    for o in rendered.values():
        o = copy.deepcopy(o)
        if o["kind"] == "Deployment":
            o["status"] = {"readyReplicas": b.replicas, "availableReplicas": b.replicas}
        items.append(o)
    objs = Objects(items, helm_releases=objs.helm_releases, helm_values=objs.helm_values,
                   logs=objs.logs)
    for comp, kind in (("minio", "Deployment"), ("postgresql", "StatefulSet")):
        rel = spec.releases[getattr(spec, comp).release]
        w = objs.get(kind, getattr(spec, comp).fullname, rel.namespace)
        c = w["spec"]["template"]["spec"]["containers"][0]
        c["image"] = refs[rel.images["image"]]
        c["resources"] = copy.deepcopy(drift_expected.release_values(spec, rel)["resources"])
        vals = objs.helm_values.setdefault(rel.name, {})
        for prefix, key in rel.images.items():
            repo, tag = helm_image_parts(refs[key])
            vals[prefix] = {"repository": repo, "tag": tag}
        vals["ducklakeInfra"] = {"specHash": "h-" + rel.name}
    # the kubelet's view: docker.io prefix on a Job that still exists (mc)
    mrel = spec.releases[m.release]
    items.append({"apiVersion": "batch/v1", "kind": "Job",
                  "metadata": {"name": "minio-post-job", "namespace": m.namespace,
                               "labels": {"release": m.release}},
                  "spec": {"template": {"spec": {"containers": [
                      {"name": "minio-mc", "image": "docker.io/" + refs[mrel.images["mcImage"]]}]}}}})
    objs.items = items
    assert pg.pvcs and m.pvcs
    return objs


def run(objs, spec, topic, component, **kw):
    return drift.TOPICS[topic](objs, spec, component, **kw)


def drifted(res, status, needle):
    assert res.status == status, res.evidence
    lines = [e for e in res.evidence if needle in e]
    assert lines, res.evidence
    assert any("drift:" in e and "reconcile" in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()[res.control].remediation
    return lines


@pytest.fixture
def ok(good, spec, refs):
    return aligned(good, spec, refs)


def get(objs, kind, name):
    return next(o for o in objs.items if o["kind"] == kind and o["metadata"]["name"] == name)


# ---- the freshly provisioned stack: no drift ---------------------------------------------------
@pytest.mark.parametrize("key,cid", IDS, ids=[c for _, c in IDS])
def test_aligned_stack_has_no_drift(key, cid, ok, spec, refs):
    topic, comp = key
    kw = {"refs": refs} if topic == "image" else {}
    if topic == "chart":
        kw = {"spec_hash": f"h-{spec.releases[getattr(spec, comp).release].name}"}
    res = run(ok, spec, topic, comp, **kw)
    assert res.status == PASS, (cid, res.evidence)
    assert res.control == cid and res.evidence
    assert cid in catalog()


def test_every_drift_control_is_registered_with_a_section_per_component():
    reg = catalog()
    section = {"minio": "2.1", "postgresql": "2.2", "backend": "2.3"}
    for (topic, comp), cid in drift.CONTROL_IDS.items():
        assert reg[cid].component == comp and reg[cid].section == section[comp]
        assert "ducklake-infra up --cluster <ctx>" in reg[cid].remediation
        assert not reg[cid].mutating


def test_a_deliberately_drifted_copy_trips_every_drift_control(ok, spec, refs):
    d = copy.deepcopy(ok)
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    for row in d.helm_releases:
        row["chart"] = row["chart"].rsplit("-", 1)[0] + "-9.9.9"
    get(d, "Deployment", m.fullname)["spec"]["template"]["spec"]["containers"][0]["image"] = \
        "evil/minio:1"
    get(d, "StatefulSet", pg.fullname)["spec"]["template"]["spec"]["containers"][0]["image"] = \
        "evil/postgres:1"
    be = get(d, "Deployment", b.deployment)
    be["spec"]["template"]["spec"]["containers"][0]["image"] = f"{b.image.repository}:0ldc0ffee000"
    get(d, "Deployment", m.fullname)["spec"]["replicas"] = 2
    get(d, "StatefulSet", pg.fullname)["spec"]["replicas"] = 3
    be["spec"]["replicas"] = 5
    for s in (m.services[0], pg.services[0], b.service):
        get(d, "Service", s.name)["spec"]["type"] = "LoadBalancer"
    for w in (get(d, "Deployment", m.fullname), get(d, "StatefulSet", pg.fullname), be):
        w["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "requests": {"cpu": "4", "memory": "8Gi"}}
    for p in (m.pvcs[0], pg.pvcs[0]):
        get(d, "PersistentVolumeClaim", p.name)["spec"]["resources"]["requests"]["storage"] = "50Gi"
    results = list(drift.all_results(d, spec, refs=refs))
    assert {r.control for r in results} == set(drift.CONTROL_IDS.values())
    for r in results:
        assert r.status == FAIL, (r.control, r.evidence)
        assert any(e.startswith("drift:") for e in r.evidence), r.evidence


# ---- chart -------------------------------------------------------------------------------------
def test_chart_version_drift_fails(ok, spec):
    ok.helm_releases[0]["chart"] = "minio-5.3.0"
    lines = drifted(run(ok, spec, "chart", "minio"), FAIL, "live minio-5.3.0, expected minio-5.4.0")
    assert "stack.yaml" in lines[0]


def test_values_fingerprint_drift_warns(ok, spec):
    res = run(ok, spec, "chart", "postgresql", spec_hash="something-else")
    drifted(res, WARN, "specHash")


def test_not_deployed_release_warns_and_missing_release_fails(ok, spec):
    ok.helm_releases[1]["status"] = "pending-upgrade"
    drifted(run(ok, spec, "chart", "postgresql"), WARN, "pending-upgrade")
    ok.helm_releases = [r for r in ok.helm_releases if r["name"] != spec.minio.release]
    drifted(run(ok, spec, "chart", "minio"), FAIL, "not installed")


def test_no_helm_metadata_is_error(ok, spec):
    ok.helm_releases = None
    res = run(ok, spec, "chart", "minio")
    assert res.status == ERROR and "could not evaluate" in res.evidence[0]


# ---- images ------------------------------------------------------------------------------------
def test_image_repository_differs_fails_on_kind_warns_elsewhere(ok, spec, refs):
    c = get(ok, "Deployment", spec.minio.fullname)["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "registry.example.com/minio:RELEASE.x"
    drifted(run(ok, spec, "image", "minio", refs=refs), FAIL, "registry.example.com/minio")
    res = run(ok, spec, "image", "minio", refs=refs, overridable=True)
    drifted(res, WARN, "--image override")


def test_helm_value_of_a_hook_image_differs(ok, spec, refs):
    ok.helm_values[spec.minio.release]["mcImage"]["tag"] = "old"
    drifted(run(ok, spec, "image", "minio", refs=refs), FAIL, "value mcImage")


def test_backend_stale_source_is_drift_even_where_overrides_are_legitimate(ok, spec, refs):
    b = spec.backend
    c = get(ok, "Deployment", b.deployment)["spec"]["template"]["spec"]["containers"][0]
    c["image"] = f"{b.image.repository}:0123456789ab"
    want_tag = ImageRef.parse(refs[BACKEND_IMAGE_KEY]).version
    for overridable in (False, True):
        lines = drifted(run(ok, spec, "image", "backend", refs=refs, overridable=overridable),
                        FAIL, "backend source changed")
        assert want_tag in lines[0] and "0123456789ab" in lines[0]


def test_backend_pinned_by_another_digest_is_named_as_a_digest(ok, spec, refs):
    """Issue 12: a digest-pinned ref was split with the digest inside the repository, so
    the same repository at another digest was not recognised as the backend's."""
    b = spec.backend
    c = get(ok, "Deployment", b.deployment)["spec"]["template"]["spec"]["containers"][0]
    c["image"] = f"{b.image.repository}@sha256:{'0' * 64}"
    lines = drifted(run(ok, spec, "image", "backend", refs=refs, overridable=True), FAIL,
                    "backend source changed")
    assert f"digest sha256:{'0' * 64} is not the content hash" in lines[0]


def test_backend_pushed_elsewhere_warns_on_other_contexts(ok, spec, refs):
    c = get(ok, "Deployment", spec.backend.deployment)["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "registry.example.com/team/backend:v1"
    drifted(run(ok, spec, "image", "backend", refs=refs, overridable=True), WARN, "v1")


def test_expected_images_are_the_provisioners(spec):
    from ducklake_infra.provision.render import Options, backend_image_tag, image_refs
    refs = drift_expected.expected_images(spec)
    assert refs == image_refs(spec, Options())
    assert refs[BACKEND_IMAGE_KEY].endswith(":" + backend_image_tag(spec))


# ---- replicas, services, resources, PVCs -------------------------------------------------------
def test_replicas_drift(ok, spec):
    get(ok, "Deployment", spec.backend.deployment)["spec"]["replicas"] = 3
    drifted(run(ok, spec, "replicas", "backend"), FAIL, "replicas: live 3")
    get(ok, "StatefulSet", spec.postgresql.fullname)["spec"]["replicas"] = 0
    drifted(run(ok, spec, "replicas", "postgresql"), FAIL, "replicas: live 0")


def test_service_type_and_port_drift(ok, spec):
    s = spec.minio.services[1]
    svc = get(ok, "Service", s.name)
    svc["spec"]["type"] = "NodePort"
    svc["spec"]["ports"].append({"port": 9443})
    res = run(ok, spec, "service", "minio")
    drifted(res, FAIL, "type: live NodePort, expected ClusterIP")
    drifted(res, FAIL, "9443")


def test_backend_service_target_port_drift(ok, spec):
    get(ok, "Service", spec.backend.service.name)["spec"]["ports"][0]["targetPort"] = 9999
    drifted(run(ok, spec, "service", "backend"), FAIL, "targetPort: live 9999")


def test_missing_service_fails(ok, spec):
    s = spec.postgresql.services[0]
    ok.items = [o for o in ok.items if not (o["kind"] == "Service" and o["metadata"]["name"] == s.name)]
    drifted(run(ok, spec, "service", "postgresql"), FAIL, "live (missing)")


def test_resources_drift_and_equal_quantities(ok, spec):
    c = get(ok, "StatefulSet", spec.postgresql.fullname)["spec"]["template"]["spec"]["containers"][0]
    want = drift_expected.release_values(spec, spec.releases[spec.postgresql.release])["resources"]
    # same quantities, other spellings: no drift
    c["resources"] = {"requests": {"cpu": "0.1", "memory": str(256 * 2 ** 20)},
                      "limits": {"memory": "524288Ki"}}
    assert want["limits"]["memory"] == "512Mi"
    assert run(ok, spec, "resources", "postgresql").status == PASS
    c["resources"]["limits"]["memory"] = "2Gi"
    c["resources"]["limits"]["cpu"] = "2"
    res = run(ok, spec, "resources", "postgresql")
    drifted(res, FAIL, "limits.memory: live 2Gi, expected 512Mi")
    drifted(res, FAIL, "limits.cpu: live 2, expected (unset)")


def test_backend_resources_drift(ok, spec):
    c = get(ok, "Deployment", spec.backend.deployment)["spec"]["template"]["spec"]["containers"][0]
    del c["resources"]["limits"]
    drifted(run(ok, spec, "resources", "backend"), FAIL, "k8s/deployment.yaml")


def test_pvc_expanded_and_wrong_class(ok, spec):
    p = spec.minio.pvcs[0]
    pvc = get(ok, "PersistentVolumeClaim", p.name)
    pvc["spec"]["resources"]["requests"]["storage"] = "20Gi"
    pvc["spec"]["storageClassName"] = "fast"
    res = run(ok, spec, "pvc", "minio")
    lines = drifted(res, FAIL, "size: live 20Gi")
    assert "cannot shrink" in lines[0]
    drifted(res, FAIL, "storageClassName: live fast")
    pvc["spec"]["resources"]["requests"]["storage"] = str(5 * 2 ** 30)
    pvc["spec"]["storageClassName"] = p.storage_class
    assert p.size == "5Gi" and run(ok, spec, "pvc", "minio").status == PASS


def test_missing_workload_fails(ok, spec, refs):
    ok.items = [o for o in ok.items if o["kind"] != "StatefulSet"]
    for topic in ("replicas", "resources", "image"):
        kw = {"refs": refs} if topic == "image" else {}
        drifted(run(ok, spec, topic, "postgresql", **kw), FAIL, "missing")


@pytest.mark.parametrize("a,b,same", [("100m", "0.1", True), ("1Gi", "1024Mi", True),
                                      ("1G", "1000M", True), ("1e3", "1k", True),
                                      ("1Gi", "1G", False), ("500m", "1", False)])
def test_quantities(a, b, same):
    assert objects.same_quantity(a, b) is same


def test_deep_merge_is_helms():
    base = {"resources": {"requests": {"memory": "16Gi"}}, "replicas": 16, "x": [1, 2]}
    over = {"resources": {"requests": {"cpu": "100m"}}, "replicas": 1, "x": [3]}
    assert drift_expected.deep_merge(base, over) == {"resources": {"requests": {"memory": "16Gi",
                                                                       "cpu": "100m"}},
                                            "replicas": 1, "x": [3]}


def test_drift_controls_are_in_the_one_check_registry(ok, spec, refs):
    """Issue 12: drift kept a second registry (its own CHECKS, another signature). Every
    drift control now runs through checks.run like every other pure check."""
    from ducklake_infra.suites import checks
    for (topic, comp), cid in drift.CONTROL_IDS.items():
        assert cid in checks.CHECKS, cid
        kw = {"refs": refs} if topic == "image" else {}
        via_registry = checks.CHECKS[cid](ok, spec, **kw)
        direct = drift.TOPICS[topic](ok, spec, comp, **kw)
        assert (via_registry.control, via_registry.status) == (cid, direct.status) == (cid, PASS)
    assert drift.DriftInputMissing is checks.CheckInputMissing
