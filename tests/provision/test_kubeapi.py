"""The read-only Kubernetes API wrapper refuses writes before sending them."""

import pytest

from provision.kubeapi import check_request
from provision.runner import ReadOnlyViolation


@pytest.mark.parametrize("method,path", [
    ("GET", "/api/v1/namespaces/storage/pods"),
    ("HEAD", "/version"),
    ("GET", "/api/v1/namespaces/ducklake/services/ducklake-backend:80/proxy/readyz"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/"),
])
def test_reads_and_self_reviews_pass(method, path):
    check_request(method, path)


@pytest.mark.parametrize("method,path", [
    ("POST", "/api/v1/namespaces/storage/configmaps"),
    ("PUT", "/api/v1/namespaces/storage/secrets/minio-root"),
    ("PATCH", "/apis/apps/v1/namespaces/ducklake/deployments/ducklake-backend"),
    ("DELETE", "/api/v1/namespaces/storage"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/exec?command=sh"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/portforward"),
    ("POST", "/api/v1/namespaces/storage/pods/minio-0/attach"),
    ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
    ("POST", "/api/v1/namespaces/ducklake/services/ducklake-backend:80/proxy/query"),
])
def test_writes_exec_and_port_forward_are_refused(method, path):
    with pytest.raises(ReadOnlyViolation):
        check_request(method, path)


def test_wrapper_refuses_before_any_network(tmp_path):
    """A read-only client pointed at an address nobody listens on: a write is
    refused by the wrapper (ReadOnlyViolation), not by a connection error."""
    from kubernetes import client
    from provision.kubeapi import api_client
    kc = tmp_path / "kubeconfig"
    kc.write_text("""apiVersion: v1
kind: Config
current-context: c
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: t0k3n-value}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
""")
    api = api_client(kc, "c", readonly=True)
    with pytest.raises(ReadOnlyViolation):
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "x"}})
    with pytest.raises(ReadOnlyViolation):
        client.CoreV1Api(api).delete_namespace("storage")
