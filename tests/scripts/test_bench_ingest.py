"""The ingest benchmark's pod and its temporary NetworkPolicies (scripts/bench_ingest.py):
made from the backend's own pod template, never selected by the backend's Service."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from ducklake_infra.provision import netpol, spec_file

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import bench_ingest  # noqa: E402


def deployment() -> dict:
    return next(d for d in yaml.safe_load_all((ROOT / "k8s/deployment.yaml").read_text())
                if d and d.get("kind") == "Deployment")


def test_bench_pod_is_the_backend_template_outside_the_service():
    spec = spec_file.load(ROOT / "stack.yaml")
    dep = deployment()
    pod = bench_ingest.bench_pod(dep, spec, "ingest-bench-x", 1000, "bench_x", 2)
    selector = netpol.backend_pod_labels(spec)
    labels = pod["metadata"]["labels"]
    # the Service and the stack's NetworkPolicies select by these: the bench pod must not match
    assert not all(labels.get(k) == v for k, v in selector.items())
    c, orig = pod["spec"]["containers"][0], dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == orig["image"] and c["envFrom"] == orig["envFrom"]
    assert c["securityContext"] == orig["securityContext"]
    assert pod["spec"]["volumes"] == dep["spec"]["template"]["spec"]["volumes"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert not {"readinessProbe", "livenessProbe", "startupProbe", "ports", "lifecycle"} & set(c)
    env = {e["name"]: e for e in c["env"]}
    assert env["ROWS"]["value"] == "1000" and env["RUNS"]["value"] == "2"
    assert "secretKeyRef" in env["DUCKLAKE_API_TOKEN"]["valueFrom"]   # never a value
    assert dep["spec"]["template"]["metadata"]["labels"] != labels       # template untouched


def test_admit_policies_open_only_the_two_ports_to_the_bench_pod():
    spec = spec_file.load(ROOT / "stack.yaml")
    pols = {p["metadata"]["name"]: p for p in bench_ingest.admit_policies(spec)}
    pg = pols["ducklake-bench-ingest-postgresql"]
    assert pg["metadata"]["namespace"] == spec.postgresql.namespace
    assert pg["spec"]["podSelector"]["matchLabels"] == netpol.postgres_pod_labels(spec)
    assert pg["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": spec.postgresql.port}]
    m = pols["ducklake-bench-ingest-minio"]
    assert m["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": spec.minio.api_port}]
    for p in pols.values():
        (src,) = p["spec"]["ingress"][0]["from"]
        assert src["podSelector"]["matchLabels"] == bench_ingest.LABELS
        assert src["namespaceSelector"]["matchLabels"] == {
            "kubernetes.io/metadata.name": spec.backend.namespace}
