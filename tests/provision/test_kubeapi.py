"""The read-only Python client, attacked through every transport it offers.

A recording HTTP server on loopback stands in for the API server: a refused request
must raise ReadOnlyViolation and never reach it; a read must reach it (the harness
is not blind).
"""

from __future__ import annotations

import ast
import http.server
import threading
from pathlib import Path

import pytest

from ducklake_infra.provision.guard import ReadOnlyViolation

ROOT = Path(__file__).resolve().parents[2]


class _Recorder(http.server.BaseHTTPRequestHandler):
    seen: list = []

    def _any(self):
        self.seen.append((self.command, self.path, self.headers.get("Upgrade")))
        body = b'{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    _Recorder.seen = []
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, _Recorder.seen
    srv.shutdown()


def _kubeconfig(tmp_path, srv):
    kc = tmp_path / "kubeconfig"
    kc.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{srv.server_address[1]}"}}}}]
users: [{{name: u, user: {{token: t0k3n-value}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
""")
    return kc


@pytest.fixture
def ro_api(server, tmp_path):
    from ducklake_infra.provision.kubeapi import api_client
    return api_client(_kubeconfig(tmp_path, server[0]), "c", readonly=True)


def _core(api):
    from kubernetes import client
    return client.CoreV1Api(api)


def _exec(api):
    from kubernetes.stream import stream
    return stream(_core(api).connect_get_namespaced_pod_exec, "minio-0", "storage",
                  command=["sh", "-c", "rm -rf /data"], stderr=True, stdin=False,
                  stdout=True, tty=False)


def _attach(api):
    from kubernetes.stream import stream
    return stream(_core(api).connect_get_namespaced_pod_attach, "minio-0", "storage",
                  stdin=True, stdout=True)


def _portforward(api):
    from kubernetes.stream import portforward
    return portforward(_core(api).connect_get_namespaced_pod_portforward, "minio-0",
                       "storage", ports="9000")


def _host(api):
    return api.configuration.host


ATTACKS = {
    "create namespace": lambda api: _core(api).create_namespace({"metadata": {"name": "x"}}),
    "delete namespace": lambda api: _core(api).delete_namespace("storage"),
    "stream exec": _exec,
    "stream attach": _attach,
    "portforward": _portforward,
    "exec through the node proxy": lambda api: _core(api).connect_get_node_proxy_with_path(
        "kind-control-plane", "exec/storage/minio-0/minio?command=sh"),
    "POST through a service proxy to a self-review-looking path":
        lambda api: _core(api).connect_post_namespaced_service_proxy_with_path(
            "ducklake-backend:80", "ducklake", "datasets/selfsubjectaccessreviews"),
    "call_api POST": lambda api: api.call_api(
        "POST", _host(api) + "/api/v1/namespaces/storage/configmaps"),
    "call_api %65xec": lambda api: api.call_api(
        "GET", _host(api) + "/api/v1/namespaces/storage/pods/minio-0/%65xec?command=sh"),
    "call_api portForward": lambda api: api.call_api(
        "GET", _host(api) + "/api/v1/namespaces/storage/pods/minio-0/portForward"),
    "rest_client DELETE": lambda api: api.rest_client.request(
        "DELETE", _host(api) + "/api/v1/namespaces/storage"),
    "pool_manager DELETE": lambda api: api.rest_client.pool_manager.request(
        "DELETE", _host(api) + "/api/v1/namespaces/storage"),
    "pool_manager urlopen": lambda api: api.rest_client.pool_manager.urlopen(
        "PATCH", _host(api) + "/api/v1/namespaces/storage"),
    "pool_manager request_encode_body": lambda api: api.rest_client.pool_manager
        .request_encode_body("DELETE", _host(api) + "/api/v1/namespaces/storage"),
    "pool_manager request_encode_url": lambda api: api.rest_client.pool_manager
        .request_encode_url("PUT", _host(api) + "/api/v1/namespaces/storage"),
    "connection pool urlopen": lambda api: api.rest_client.pool_manager
        .connection_from_url(_host(api)).urlopen("PATCH", "/api/v1/namespaces/storage"),
    "encoded ? hides a node proxy": lambda api: api.call_api(
        "GET", _host(api) + "/api/v1/nodes/n%3F/../n/proxy/pods"),
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_attack_is_refused_before_any_byte_is_sent(ro_api, server, attack):
    with pytest.raises(ReadOnlyViolation):
        ATTACKS[attack](ro_api)
    assert server[1] == []


def test_a_transport_swapped_in_later_is_guarded_too(ro_api, server):
    sent = []
    ro_api.call_api = lambda method, url, *a, **kw: sent.append((method, url))
    with pytest.raises(ReadOnlyViolation):
        ro_api.call_api("POST", _host(ro_api) + "/api/v1/namespaces/x/secrets")
    assert sent == []
    from kubernetes.client import rest
    ro_api.rest_client = rest.RESTClientObject(ro_api.configuration)
    with pytest.raises(ReadOnlyViolation):
        ro_api.rest_client.request("DELETE", _host(ro_api) + "/api/v1/namespaces/storage")
    assert server[1] == []


def test_reads_and_self_reviews_do_reach_the_server(ro_api, server):
    from kubernetes import client
    _core(ro_api).list_namespaced_pod("storage")
    with pytest.raises(Exception) as ei:  # our fake answers a PodList: sent, then unparsable
        client.AuthorizationV1Api(ro_api).create_self_subject_rules_review(
            client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(
                namespace="storage")))
    assert not isinstance(ei.value, ReadOnlyViolation)
    methods = [(m, p.split("?")[0]) for m, p, _ in server[1]]
    assert methods == [("GET", "/api/v1/namespaces/storage/pods"),
                       ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews")]


def test_without_readonly_the_same_client_writes(server, tmp_path):
    """Control: the refusals above come from the guard, not from the harness."""
    from ducklake_infra.provision.kubeapi import api_client
    srv, seen = server
    api = api_client(_kubeconfig(tmp_path, srv), "c", readonly=False)
    api.call_api("DELETE", api.configuration.host + "/api/v1/namespaces/storage")
    assert seen and seen[0][0] == "DELETE"


def test_no_module_reaches_below_the_guarded_client():
    """The one path the guard does not cover (ws_client functions called directly with
    the client's configuration) is used nowhere in the product."""
    offenders = []
    for py in ROOT.glob("ducklake_infra/**/*.py"):
        tree = ast.parse(py.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            if any(n.startswith(("kubernetes.stream", "websocket", "urllib3")) for n in names):
                offenders.append(f"{py.relative_to(ROOT)}: {names}")
    assert offenders == []


class _Redirector(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self):
        self.send_response(307)
        self.send_header("Location", self.target)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_redirects_are_never_followed(server, tmp_path):
    """Review finding 1: a service behind the API server's proxy answered 307 to another
    host's node proxy; kubectl followed it with the bearer token. The read-only client
    does not follow redirects: the redirect is the answer, the target sees nothing."""
    from ducklake_infra.provision.kubeapi import api_client
    target_srv, seen = server
    _Redirector.target = (f"http://127.0.0.1:{target_srv.server_address[1]}"
                          "/api/v1/nodes/n/proxy/configz")
    red = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Redirector)
    threading.Thread(target=red.serve_forever, daemon=True).start()
    try:
        api = api_client(_kubeconfig(tmp_path, red), "c", readonly=True)
        method, url, headers, _, _ = api.param_serialize(
            method="GET", resource_path="/api/v1/namespaces/x/services/s:80/proxy/go",
            auth_settings=["BearerToken"])
        resp = api.call_api(method, url, header_params=headers)
        assert resp.status == 307
    finally:
        red.shutdown()
    assert seen == []
