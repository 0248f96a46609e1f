"""Network isolation: the stack's NetworkPolicies exist, the network plugin is known to
enforce them, and a probe outside the allowed set proves it (mutating)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ducklake_infra.suites import security
from ducklake_infra.suites.catalog import CheckError, evidence, verdict

pytestmark = [pytest.mark.cluster]

PROBE = """
import json, socket
out = {}
for name, host, port in TARGETS:
    s = socket.socket()
    s.settimeout(4)
    try:
        s.connect((host, port))
        out[name] = True
    except OSError:
        out[name] = False
    finally:
        s.close()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.control("NET-POL-001")
def test_network_policies_isolate_storage(objs, spec):
    verdict(security.check_network_policies(objs, spec))


@pytest.mark.control("NET-CNI-001")
def test_network_plugin_enforces_policies(kubectl, inspected):
    res = kubectl("-n", "kube-system", "get", "daemonsets", "-o", "json", check=False)
    if res.returncode != 0:
        raise CheckError(f"could not evaluate: kube-system DaemonSets are not readable: "
                         f"{res.stderr.strip()[-200:]}")
    doc = json.loads(res.stdout)
    inspected(doc)
    verdict(security.judge_network_plugin(doc.get("items") or []))


@pytest.mark.control("NET-ENF-001")
def test_policies_are_enforced(objs, spec, kubectl):
    """A pod in a namespace of its own (outside every allowed set) tries PostgreSQL and
    MinIO's API, which the policies close to it, and the backend's Service, which they
    leave open (so a refusal is the policies' doing, not a broken probe)."""
    b, m, pg = spec.backend, spec.minio, spec.postgresql
    dep = objs.get("Deployment", b.deployment, b.namespace)
    if dep is None:
        raise CheckError("the backend Deployment is missing: no image to run the probe with")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    targets = [(f"{pg.services[0].name}.{pg.namespace}:{pg.port}", pg.host, pg.port),
               (f"{m.services[0].name}.{m.namespace}:{m.api_port}", m.host, m.api_port),
               ("backend", f"{b.service.name}.{b.namespace}.svc.cluster.local", b.service.ports[0])]
    ns = f"ducklake-netprobe-{uuid.uuid4().hex[:6]}"
    code = f"TARGETS = {targets!r}\n{PROBE}"
    kubectl("create", "namespace", ns)
    try:
        kubectl.apply(json.dumps({
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
            "spec": {"restartPolicy": "Never", "automountServiceAccountToken": False,
                     "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                         "seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [{"name": "probe", "image": image,
                                     "imagePullPolicy": "IfNotPresent",
                                     "command": ["python3", "-c", code],
                                     "securityContext": {"allowPrivilegeEscalation": False,
                                                         "capabilities": {"drop": ["ALL"]}}}]}}),
            namespace=ns)
        deadline = time.monotonic() + 120
        phase = ""
        while time.monotonic() < deadline:
            phase = kubectl("-n", ns, "get", "pod", "probe", "-o", "jsonpath={.status.phase}",
                            check=False).stdout.strip()
            if phase in ("Succeeded", "Failed"):
                break
            time.sleep(1)
        log = kubectl("-n", ns, "logs", "probe", check=False).stdout
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
    line = next((x for x in log.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise CheckError(f"could not evaluate: the probe pod ended {phase or 'nowhere'} "
                         f"without a result: {log[-300:]}")
    reached = json.loads(line[len("RESULT "):])
    control = reached.pop("backend", False)
    evidence(f"probe pod in namespace {ns}: {reached} (backend Service: {control})")
    verdict(security.judge_enforcement(reached, control))
