"""The stack's NetworkPolicies, rendered from the spec (pure: spec -> objects).

Only the backend reaches PostgreSQL and MinIO's API; the backend reaches only them
and the cluster DNS. In the storage namespace every other ingress is denied (MinIO's
own post-install job may still reach MinIO). The backend's own ingress stays open:
the API token guards it, and the API server's service proxy and the kubelet reach it.

A policy is only as good as the network plugin that enforces it: NET-ENF-001 probes
enforcement, NET-CNI-001 names the plugin (ducklake_infra/suites/test_network.py).
"""

from __future__ import annotations

from ducklake_infra import yamlio

from ducklake_infra.provision.spec import StackSpec

MANAGED = {"app.kubernetes.io/part-of": "ducklake", "app.kubernetes.io/managed-by": "ducklake-infra"}
# selector labels of the charts' pods (tests/charts checks them against the rendered charts)
MINIO_JOB_APP = "minio-job"
# Patroni's REST API: the chart's ha.restapiPort (tests/charts checks the two agree)
PATRONI_API_PORT = 8008


def minio_pod_labels(spec: StackSpec) -> dict[str, str]:
    return {"app": "minio", "release": spec.minio.release}


def postgres_pod_labels(spec: StackSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": "postgresql",
            "app.kubernetes.io/instance": spec.postgresql.release}


def backend_pod_labels(spec: StackSpec) -> dict[str, str]:
    """The selector of the backend Deployment in the repository's manifest."""
    for f in spec.backend.manifests:
        for doc in yamlio.load_all(f.read_text()):
            if doc and doc.get("kind") == "Deployment":
                return dict(doc["spec"]["selector"]["matchLabels"])
    raise ValueError("no Deployment among backend.manifests")


def _ns(name: str) -> dict:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def _policy(name: str, ns: str, pods: dict, types: list[str], **rules) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": dict(MANAGED)},
            "spec": {"podSelector": {"matchLabels": pods} if pods else {},
                     "policyTypes": types, **rules}}


def network_policies(spec: StackSpec) -> list[dict]:
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    backend = {"namespaceSelector": _ns(b.namespace),
               "podSelector": {"matchLabels": backend_pod_labels(spec)}}

    def tcp(port: int) -> list[dict]:
        return [{"protocol": "TCP", "port": port}]

    storage = sorted({m.namespace, pg.namespace})
    out = [_policy("ducklake-default-deny-ingress", ns, {}, ["Ingress"]) for ns in storage]
    out.append(_policy("ducklake-postgresql-from-backend", pg.namespace, postgres_pod_labels(spec),
                       ["Ingress"], ingress=[{"from": [backend], "ports": tcp(pg.port)}]))
    out.append(_policy("ducklake-minio-from-backend", m.namespace, minio_pod_labels(spec),
                       ["Ingress"], ingress=[
                           {"from": [backend], "ports": tcp(m.api_port)},
                           {"from": [{"podSelector": {"matchLabels": {
                               "app": MINIO_JOB_APP, "release": m.release}}}],
                            "ports": tcp(m.api_port)}]))
    if spec.profile == "distributed":
        # the servers of one erasure set talk to each other on the API port: without this
        # the default deny keeps them from ever forming the cluster
        out.append(_policy("ducklake-minio-internode", m.namespace, minio_pod_labels(spec),
                           ["Ingress"], ingress=[{"from": [{"podSelector": {"matchLabels":
                                                                              minio_pod_labels(spec)}}],
                                                  "ports": tcp(m.api_port)}]))
        # Patroni's members: streaming replication, pg_basebackup and pg_rewind on the
        # PostgreSQL port, the REST API (failsafe, member status) on Patroni's
        out.append(_policy("ducklake-postgresql-replication", pg.namespace,
                           postgres_pod_labels(spec), ["Ingress"],
                           ingress=[{"from": [{"podSelector": {"matchLabels":
                                                               postgres_pod_labels(spec)}}],
                                     "ports": [*tcp(pg.port), *tcp(PATRONI_API_PORT)]}]))
    dns = [{"namespaceSelector": _ns("kube-system"),
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}]
    out.append(_policy("ducklake-backend-egress", b.namespace, backend_pod_labels(spec),
                       ["Egress"], egress=[
                           {"to": [{"namespaceSelector": _ns(pg.namespace),
                                    "podSelector": {"matchLabels": postgres_pod_labels(spec)}}],
                            "ports": tcp(pg.port)},
                           {"to": [{"namespaceSelector": _ns(m.namespace),
                                    "podSelector": {"matchLabels": minio_pod_labels(spec)}}],
                            "ports": tcp(m.api_port)},
                           {"to": dns, "ports": [{"protocol": "UDP", "port": 53},
                                                 {"protocol": "TCP", "port": 53}]}]))
    return out
