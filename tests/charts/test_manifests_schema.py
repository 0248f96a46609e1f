"""k8s/*.yaml and what the provisioner applies validate against Kubernetes 1.34 schemas
(offline: kubernetes-validate ships them); no secret values in ConfigMaps."""

from __future__ import annotations

import kubernetes_validate
import pytest
import yaml


from ducklake_infra.provision import render

from .conftest import K8S_SCHEMA_VERSION


def test_schemas_for_the_pinned_minor_are_shipped():
    from kubernetes_validate.utils import all_versions
    assert K8S_SCHEMA_VERSION in all_versions()


def _committed(spec):
    return [(f.name, d) for f in spec.backend.manifests for d in yaml.safe_load_all(f.read_text())
            if d]


def test_k8s_manifests_validate_strictly(spec):
    for fname, obj in _committed(spec):
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_network_policies_validate_strictly(spec):
    from ducklake_infra.provision import netpol
    for obj in netpol.network_policies(spec):
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_applied_backend_objects_validate_strictly(spec):
    for obj in render.backend_objects(spec, "ducklake-infra/backend:abc123"):
        kubernetes_validate.validate(obj, K8S_SCHEMA_VERSION, strict=True)


def test_schema_validation_catches_mistakes():
    bad = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
           "spec": {"type": "ClusterIP", "ports": [{"port": "eighty"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_SCHEMA_VERSION, strict=True)


def test_backend_deployment_shape(spec):
    objs = {o["kind"]: o for o in render.backend_objects(spec, "img:1")}
    d = objs["Deployment"]
    pod = d["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["resources"]["requests"] and c["resources"]["limits"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["ports"][0]["containerPort"] == 8000
    assert c["envFrom"] == [{"configMapRef": {"name": "ducklake-backend-config"}}]
    env = {e["name"]: e for e in c["env"]}
    for name in ("DUCKLAKE_PG_USER", "DUCKLAKE_PG_PASSWORD", "DUCKLAKE_S3_ACCESS_KEY",
                 "DUCKLAKE_S3_SECRET_KEY"):
        assert "secretKeyRef" in env[name]["valueFrom"], name
        assert "value" not in env[name]
    cm_keys = set(objs["ConfigMap"]["data"])
    assert cm_keys == {"DUCKLAKE_PG_HOST", "DUCKLAKE_PG_PORT", "DUCKLAKE_PG_DB",
                       "DUCKLAKE_S3_ENDPOINT", "DUCKLAKE_S3_REGION", "DUCKLAKE_S3_USE_SSL",
                       "DUCKLAKE_RAW_BUCKET", "DUCKLAKE_LAKE_BUCKET",
                       "DUCKLAKE_MAINTENANCE_INTERVAL_S", "DUCKLAKE_MAINTENANCE_KEEP_S"}
    svc = objs["Service"]["spec"]
    assert svc["type"] == "ClusterIP"
    assert svc["ports"][0]["port"] == 80 and svc["ports"][0]["targetPort"] == "http"
    assert not any(o["kind"] == "Secret" for o in objs.values())
