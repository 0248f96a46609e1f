"""Proof that the registry-free bundle gives a working Kubernetes cluster.

The cluster comes from the session ``cluster`` fixture (kind, node image from
the bundle). Nothing here may pull an image: every pod uses images that were
built by ``ducklake-infra bundle build`` and are already in the node, with
``imagePullPolicy: Never``.
"""

from __future__ import annotations

import datetime

import json
import time
import uuid

import pytest

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins

pytestmark = [pytest.mark.cluster]

# An image every node holds (the local-path helper: Debian minbase with sh).
TOOLBOX = layout.LOCAL_PATH_HELPER_IMAGE


def wait_until(fn, timeout: float, what: str, interval: float = 2.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def scratch_ns(kubectl):
    """A throwaway namespace for the bring-up probes; deleted afterwards."""
    ns = f"bringup-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", ns)
    yield ns
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


def pod_phase(kubectl, ns: str, name: str) -> str:
    res = kubectl("-n", ns, "get", "pod", name, "-o", "jsonpath={.status.phase}", check=False)
    return res.stdout.strip()


def test_kubernetes_version_is_the_pinned_one(kubectl):
    info = json.loads(kubectl("version", "-o", "json").stdout)
    assert info["serverVersion"]["gitVersion"] == pins.K8S_VERSION


def test_node_is_ready(kubectl):
    def ready():
        nodes = kubectl.json("get", "nodes")["items"]
        return nodes and all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in n["status"]["conditions"])
            for n in nodes)
    wait_until(ready, 180, "every node Ready")
    node = kubectl.json("get", "nodes")["items"][0]
    assert node["status"]["nodeInfo"]["kubeletVersion"] == pins.K8S_VERSION


def event_time(e: dict) -> float:
    """An event's last occurrence as a Unix time (0 when it has none)."""
    t = e.get("lastTimestamp") or e.get("eventTime") or \
        (e.get("series") or {}).get("lastObservedTime") or e["metadata"].get("creationTimestamp")
    if not t:
        return 0.0
    return datetime.datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp()


def test_no_image_was_pulled(kubectl, run_started):
    """Every event of this run about images says 'already present'; none says Pulling.
    Older events (a kept cluster reused after other work) are not this run's."""
    events = [e for e in kubectl.json("get", "events", "-A")["items"]
              if event_time(e) >= run_started - 2]
    pulls = [e for e in events if e.get("reason") in ("Pulling", "Pulled")
             and "already present" not in e.get("message", "")]
    failed = [e for e in events if e.get("reason") in ("Failed", "ErrImagePull", "BackOff")
              and "image" in e.get("message", "").lower()]
    assert not pulls, [e["message"] for e in pulls]
    assert not failed, [e["message"] for e in failed]


@pytest.mark.parametrize("selector,ns", [("k8s-app=kube-proxy", "kube-system"),
                                         ("k8s-app=ducklake-cni", "kube-system"),
                                         ("k8s-app=kube-router", "kube-system")])
def test_privileged_system_pods_run(kubectl, selector, ns):
    def running():
        pods = kubectl.json("-n", ns, "get", "pods", "-l", selector)["items"]
        return pods and all(
            p["status"].get("phase") == "Running" and all(
                cs.get("ready") for cs in p["status"].get("containerStatuses", []))
            for p in pods) and pods
    pods = wait_until(running, 180, f"pods {selector} Running")
    for p in pods:
        for c in p["spec"]["containers"]:
            assert c.get("securityContext", {}).get("privileged") is True, c["name"]


def test_system_deployments_available(kubectl):
    for ns, name in (("kube-system", "coredns"), ("local-path-storage", "local-path-provisioner")):
        kubectl("-n", ns, "rollout", "status", f"deployment/{name}", "--timeout=180s",
                timeout=200)


@pytest.mark.mutating
def test_clusterip_service_routes_and_dns_resolves(cluster, kubectl, scratch_ns):
    """Our own pod behind our own ClusterIP Service, reached by its DNS name."""
    ns = scratch_ns
    cluster.load_images([layout.PYTHON_BASE_IMAGE])
    kubectl.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, labels: {{app: web}}}}
spec:
  containers:
  - name: web
    image: {layout.PYTHON_BASE_IMAGE}
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "mkdir -p /tmp/www && echo served-by-web > /tmp/www/index.html && cd /tmp/www && exec python3 -m http.server 8080"]
    readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: ClusterIP
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
""", namespace=ns)
    kubectl("-n", ns, "wait", "--for=condition=Ready", "pod/web", "--timeout=180s", timeout=200)
    kubectl.apply(f"""
apiVersion: v1
kind: Pod
metadata: {{name: probe}}
spec:
  restartPolicy: Never
  containers:
  - name: probe
    image: {layout.PYTHON_BASE_IMAGE}
    imagePullPolicy: Never
    command: ["python3", "-c"]
    args:
    - |
      import socket, time, urllib.request
      print("dns", socket.gethostbyname("web.{ns}.svc.cluster.local"))
      print("dns", socket.gethostbyname("kubernetes.default.svc.cluster.local"))
      # kube-proxy programs a new Service's rules shortly after its endpoint is ready
      for attempt in range(30):
          try:
              body = urllib.request.urlopen("http://web.{ns}.svc.cluster.local/", timeout=10).read()
              break
          except OSError as exc:
              print("retry", attempt, exc)
              time.sleep(1)
      print("body", body.decode().strip())
""", namespace=ns)
    wait_until(lambda: pod_phase(kubectl, ns, "probe") in ("Succeeded", "Failed"), 180,
               "probe pod to finish")
    logs = kubectl("-n", ns, "logs", "probe").stdout
    assert pod_phase(kubectl, ns, "probe") == "Succeeded", logs
    svc = kubectl.json("-n", ns, "get", "svc", "web")
    assert svc["spec"]["type"] == "ClusterIP"
    assert f"dns {svc['spec']['clusterIP']}" in logs, logs
    api_ip = kubectl("get", "svc", "kubernetes", "-o", "jsonpath={.spec.clusterIP}").stdout
    assert f"dns {api_ip}" in logs, logs
    assert "body served-by-web" in logs, logs


@pytest.mark.mutating
def test_pvc_binds_on_default_storageclass_and_pod_writes(kubectl, scratch_ns):
    ns = scratch_ns
    classes = kubectl.json("get", "storageclass")["items"]
    default = [c["metadata"]["name"] for c in classes if c["metadata"].get("annotations", {})
               .get("storageclass.kubernetes.io/is-default-class") == "true"]
    assert default, "no default StorageClass"
    kubectl.apply(f"""
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {{name: data}}
spec:
  accessModes: [ReadWriteOnce]
  resources: {{requests: {{storage: 64Mi}}}}
---
apiVersion: v1
kind: Pod
metadata: {{name: writer}}
spec:
  restartPolicy: Never
  containers:
  - name: writer
    image: {TOOLBOX}
    imagePullPolicy: Never
    command: ["/bin/sh", "-c", "echo ducklake > /data/probe && cat /data/probe"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes: [{{name: data, persistentVolumeClaim: {{claimName: data}}}}]
""", namespace=ns)
    wait_until(lambda: pod_phase(kubectl, ns, "writer") in ("Succeeded", "Failed"), 180,
               "writer pod to finish")
    assert pod_phase(kubectl, ns, "writer") == "Succeeded", kubectl("-n", ns, "describe", "pod",
                                                                   "writer").stdout
    assert kubectl("-n", ns, "logs", "writer").stdout.strip() == "ducklake"
    pvc = kubectl.json("-n", ns, "get", "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == default[0]
