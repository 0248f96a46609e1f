"""helm lint + helm template of charts/postgresql and the bundle's MinIO chart with
the stack's values and the provisioner's own overrides; rendered objects validated
against Kubernetes 1.34 schemas and checked against stack.yaml."""

from __future__ import annotations

import base64

import kubernetes_validate
import pytest

from .conftest import K8S_SCHEMA_VERSION, helm_args, run_helm

pytestmark = pytest.mark.bundle   # renders the charts with the bundle's helm

WORKLOADS = ("Deployment", "StatefulSet", "Job", "Pod")


def by_kind(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, got {[o['metadata']['name'] for o in objs if o['kind'] == kind]}"
    return found[0]


def pod_spec(o):
    return o["spec"] if o["kind"] == "Pod" else o["spec"]["template"]["spec"]


@pytest.mark.parametrize("key", ["postgresql", "minio"])
def test_helm_lint(helm, spec, opts, key, request):
    if key == "minio":
        request.getfixturevalue("minio_chart")
    name, chart, args = helm_args(spec, opts, key)
    args = [a for a in args if a not in ("--namespace", spec.releases[key].namespace)]
    res = run_helm(helm, "lint", chart, *args, *(["--strict"] if key == "postgresql" else []))
    assert "0 chart(s) failed" in res.stdout


@pytest.mark.parametrize("objs_fixture", ["postgres_objects", "minio_objects"])
def test_rendered_objects_validate(objs_fixture, request):
    objs = request.getfixturevalue(objs_fixture)
    assert objs
    for o in objs:
        kubernetes_validate.validate(o, K8S_SCHEMA_VERSION, strict=True)


@pytest.mark.parametrize("objs_fixture,component", [("postgres_objects", "postgresql"),
                                                    ("minio_objects", "minio")])
def test_services_and_pvcs_match_the_spec(objs_fixture, component, request, spec):
    objs = request.getfixturevalue(objs_fixture)
    comp = getattr(spec, component)
    for svc in comp.services:
        o = one(objs, "Service", svc.name)
        assert o["spec"]["type"] == svc.type == "ClusterIP"
        assert [p["port"] for p in o["spec"]["ports"]] == list(svc.ports)
    pvc_names = {}
    for o in by_kind(objs, "PersistentVolumeClaim"):
        pvc_names[o["metadata"]["name"]] = o["spec"]
    for sts in by_kind(objs, "StatefulSet"):
        for t in sts["spec"].get("volumeClaimTemplates", []):
            pvc_names[f"{t['metadata']['name']}-{sts['metadata']['name']}-0"] = t["spec"]
    for pvc in comp.pvcs:
        assert pvc.name in pvc_names, f"PVC {pvc.name} not rendered (have {list(pvc_names)})"
        s = pvc_names[pvc.name]
        assert s["resources"]["requests"]["storage"] == pvc.size
        assert s["storageClassName"] == pvc.storage_class
        assert s["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("objs_fixture", ["postgres_objects", "minio_objects"])
def test_workloads_are_non_root_with_resources(objs_fixture, request):
    objs = request.getfixturevalue(objs_fixture)
    workloads = [o for o in objs if o["kind"] in WORKLOADS]
    assert workloads
    for o in workloads:
        ps = pod_spec(o)
        pod_sc = ps.get("securityContext") or {}
        for c in ps.get("initContainers", []) + ps["containers"]:
            sc = c.get("securityContext") or {}
            where = f"{o['kind']} {o['metadata']['name']} container {c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert (sc.get("runAsUser") or pod_sc.get("runAsUser") or 0) != 0, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert c.get("resources", {}).get("requests"), where
            assert c.get("resources", {}).get("limits", {}).get("memory"), where


@pytest.mark.parametrize("objs_fixture", ["postgres_objects", "minio_objects"])
def test_images_come_from_the_spec(objs_fixture, request, spec, opts):
    from ducklake_infra.provision import render
    refs = render.image_refs(spec, opts)
    allowed = {refs[k] for k in ("minio", "mc", "postgresql")}
    for o in request.getfixturevalue(objs_fixture):
        if o["kind"] in WORKLOADS:
            for c in pod_spec(o)["containers"]:
                assert c["image"] in allowed, c["image"]
                assert c["imagePullPolicy"] == "IfNotPresent"


def test_minio_uses_existing_secret_and_the_spec(minio_objects, spec):
    m = spec.minio
    assert not by_kind(minio_objects, "Secret"), "root credentials must come from existingSecret"
    dep = one(minio_objects, "Deployment", m.fullname)
    c = pod_spec(dep)["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    for var, key in (("MINIO_ROOT_USER", "rootUser"), ("MINIO_ROOT_PASSWORD", "rootPassword")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": m.root_secret.name, "key": key}
    assert c["resources"]["requests"]["memory"] == "256Mi"
    assert dep["spec"]["replicas"] == 1          # standalone
    cm = one(minio_objects, "ConfigMap", m.fullname)["data"]
    for bucket in (spec.raw_bucket, spec.lake_bucket):
        assert f"createBucket {bucket} " in cm["initialize"]
    assert m.backend_user.access_key in cm["add-user"]
    assert f"/config/secrets/{m.backend_user.secret.name}/" in cm["add-user"]
    policy = cm["policy_0.json"]
    assert "arn:aws:s3:::raw/*" in policy and "arn:aws:s3:::lake/*" in policy
    assert "s3:*" not in policy
    job = by_kind(minio_objects, "Job")[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"


def test_minio_never_runs_twice_on_its_volume(minio_objects, spec):
    """STORE-RWO-001 on the rendered chart: Recreate, so an update or a deleted pod never
    starts a second server on the same ReadWriteOnce volume."""
    from ducklake_infra.suites.objects import Objects
    from ducklake_infra.suites.catalog import PASS
    from ducklake_infra.suites.resilience import check_single_volume_workloads_never_run_twice
    dep = one(minio_objects, "Deployment", spec.minio.fullname)
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    installed = [{**o, "metadata": {**o["metadata"], "namespace": spec.minio.namespace}}
                 for o in minio_objects]            # as helm install --namespace places them
    res = check_single_volume_workloads_never_run_twice(Objects(installed), spec)
    assert res.status == PASS and any("strategy Recreate" in e for e in res.evidence), res


@pytest.mark.parametrize("objs_fixture", ["postgres_objects", "minio_objects"])
def test_no_secret_values_in_configmaps(objs_fixture, request):
    objs = request.getfixturevalue(objs_fixture)
    secret_values = {base64.b64decode(v).decode() for s in by_kind(objs, "Secret")
                     for v in (s.get("data") or {}).values()}
    secret_values |= {"minioadmin", "console123"}
    for cm in by_kind(objs, "ConfigMap"):
        for key, text in (cm.get("data") or {}).items():
            for v in secret_values:
                assert v not in text, f"ConfigMap {cm['metadata']['name']} key {key} holds a secret"


def test_postgres_chart_details(postgres_objects, spec):
    p = spec.postgresql
    sts = one(postgres_objects, "StatefulSet", p.fullname)
    c = pod_spec(sts)["containers"][0]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert c[probe]["exec"]["command"][0] == "/usr/lib/postgresql/15/bin/pg_isready"
    assert c["command"] == ["/bin/sh", "/opt/postgresql-chart/entrypoint.sh"]
    cm = one(postgres_objects, "ConfigMap", p.fullname)["data"]
    assert "lc_messages = 'C'" in cm["postgresql.conf"]
    assert "listen_addresses = '0.0.0.0'" in cm["postgresql.conf"]
    assert "scram-sha-256" in cm["pg_hba.conf"]
    assert "/usr/lib/postgresql/15/bin/initdb" in cm["entrypoint.sh"].replace("'", "").replace(
        "$BIN", "/usr/lib/postgresql/15/bin")
    assert f"catalog_db='{p.catalog.database}'" in cm["entrypoint.sh"]
    assert f"catalog_owner='{p.catalog.owner}'" in cm["entrypoint.sh"]
    sec = one(postgres_objects, "Secret", p.superuser_secret.name)
    assert sec["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert set(sec["data"]) == set(p.superuser_secret.keys)
    vols = {v["name"]: v for v in pod_spec(sts)["volumes"]}
    assert vols["catalog-password"]["secret"]["secretName"] == p.catalog.secret.name
    tests = [o for o in postgres_objects if o["kind"] == "Pod"
             and o["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]
    assert len(tests) == 1


def test_network_policies_select_the_charts_pods(minio_objects, postgres_objects, spec):
    """ducklake_infra/provision/netpol.py names the charts' pod labels: they must be the labels the
    charts really render, or a policy would select nothing (and isolate nothing)."""
    from ducklake_infra.provision import netpol

    def pod_labels(objs, kind):
        return [o["spec"]["template"]["metadata"]["labels"] for o in objs if o["kind"] == kind]

    def covers(labels, selector):
        return all(labels.get(k) == v for k, v in selector.items())
    assert any(covers(lb, netpol.minio_pod_labels(spec)) for lb in pod_labels(minio_objects, "Deployment"))
    job = {"app": netpol.MINIO_JOB_APP, "release": spec.minio.release}
    assert any(covers(lb, job) for lb in pod_labels(minio_objects, "Job"))
    assert any(covers(lb, netpol.postgres_pod_labels(spec))
               for lb in pod_labels(postgres_objects, "StatefulSet"))
    pols = {p["metadata"]["name"]: p for p in netpol.network_policies(spec)}
    assert {"ducklake-default-deny-ingress", "ducklake-postgresql-from-backend",
            "ducklake-minio-from-backend", "ducklake-backend-egress"} <= set(pols)


def test_every_rendered_pod_passes_the_restricted_profile(minio_objects, postgres_objects, spec):
    """up labels the stack's namespaces enforce=restricted (SEC-PSS-001): a chart pod that
    does not pass would be refused by the API server."""
    from ducklake_infra.provision import render
    from ducklake_infra.suites.security import restricted_violations
    from ducklake_infra.suites.objects import pod_spec
    objs = [*minio_objects, *postgres_objects, *render.backend_objects(spec, "x/backend:1")]
    pods = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet", "Job", "Pod")]
    assert len(pods) >= 4
    bad = {o["metadata"]["name"]: restricted_violations(pod_spec(o)) for o in pods}
    assert not {k: v for k, v in bad.items() if v}
