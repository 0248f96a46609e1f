"""Proof, from outside, that `pytest --readonly` changes nothing.

The kind cluster we create has API server audit logging (provision/cluster.py).
The audit suite runs as a subprocess with --readonly against the deployed stack,
first as a ServiceAccount bound to a read-only ClusterRole, then with the
cluster's admin credentials. For each run the API server's audit log must show
zero create/update/patch/delete/deletecollection requests from that identity
(self access reviews excepted), and it must show that identity's reads, so the
check cannot pass by logging nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

ROOT = Path(__file__).resolve().parents[2]
MUTATING_VERBS = {"create", "update", "patch", "delete", "deletecollection"}
SELF_REVIEWS = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
AUDITOR_NS = "ducklake-audit"
AUDITOR_SA = "auditor"


@pytest.fixture(scope="module")
def stack_up(stack):
    """The audited stack must be deployed (by the suites' session fixture)."""
    return stack


def audit_events(cluster) -> list[dict]:
    events = []
    for line in cluster.audit_log().splitlines():
        line = line.strip()
        if line:
            events.append(json.loads(line))
    return events


def events_of(events: list[dict], user: str, since: float, until: float) -> list[dict]:
    def ts(e):
        t = e.get("requestReceivedTimestamp") or e.get("stageTimestamp")
        return time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return [e for e in events if e.get("user", {}).get("username") == user
            and since - 1 <= ts(e) <= until + 1]


def mutations(events: list[dict]) -> list[str]:
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        if e.get("verb") in MUTATING_VERBS and ref.get("resource") not in SELF_REVIEWS:
            out.append(f"{e['verb']} {ref.get('resource')} {ref.get('namespace', '')}/"
                       f"{ref.get('name', '')} ({e.get('requestURI')})")
    return out


def run_audit(context: str, kubeconfig: Path, report_dir: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    argv = [sys.executable, "-m", "pytest", str(ROOT / "suites"), f"--cluster={context}",
            f"--kubeconfig={kubeconfig}", "--readonly", f"--report-dir={report_dir}",
            "-p", "no:cacheprovider", "-q", "--no-header"]
    start = time.time()
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return res, start, time.time()


READ_ALL_RULES = """
  - apiGroups: ["*"]
    resources: ["*"]
    verbs: [get, list, watch]
  - nonResourceURLs: ["*"]
    verbs: [get]"""

# everything the audit reads except Secrets (and so Helm's release records)
READ_NO_SECRETS_RULES = """
  - apiGroups: ["", "apps", "batch", "discovery.k8s.io", "storage.k8s.io", "rbac.authorization.k8s.io"]
    resources: [namespaces, nodes, pods, pods/log, services, services/proxy, endpoints,
                endpointslices, persistentvolumeclaims, persistentvolumes, configmaps,
                serviceaccounts, events, deployments, statefulsets, replicasets, daemonsets,
                jobs, storageclasses]
    verbs: [get, list, watch]
  - nonResourceURLs: ["*"]
    verbs: [get]"""


def make_auditor(cluster, kubectl, directory: Path, sa: str, rules: str) -> tuple[Path, str]:
    """A kubeconfig for ServiceAccount ``sa`` bound to a ClusterRole with ``rules``."""
    kubectl.apply(f"""
apiVersion: v1
kind: Namespace
metadata: {{name: {AUDITOR_NS}}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: {sa}, namespace: {AUDITOR_NS}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {{name: ducklake-{sa}}}
rules:{rules}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {{name: ducklake-{sa}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: ducklake-{sa}}}
subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {AUDITOR_NS}}}]
""")
    token = kubectl("-n", AUDITOR_NS, "create", "token", sa, "--duration=1h").stdout.strip()
    cluster.runner.redactor.add(token)
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    server = admin["clusters"][0]["cluster"]
    ctx = f"ducklake-{sa}"
    cfg = {"apiVersion": "v1", "kind": "Config", "current-context": ctx,
           "clusters": [{"name": "audited", "cluster": server}],
           "users": [{"name": sa, "user": {"token": token}}],
           "contexts": [{"name": ctx, "context": {"cluster": "audited", "user": sa}}]}
    path = directory / f"kubeconfig-{sa}"
    path.write_text(yaml.safe_dump(cfg))
    path.chmod(0o600)
    return path, ctx


@pytest.fixture(scope="module")
def auditor_kubeconfig(cluster, kubectl, tmp_path_factory) -> tuple[Path, str]:
    """A ServiceAccount that may only get/list/watch (everything)."""
    yield make_auditor(cluster, kubectl, tmp_path_factory.mktemp("auditor"), AUDITOR_SA,
                       READ_ALL_RULES)
    kubectl("delete", "namespace", AUDITOR_NS, "--wait=false", check=False)
    kubectl("delete", "clusterrolebinding,clusterrole", f"ducklake-{AUDITOR_SA}", check=False)


def test_readonly_serviceaccount_audit_changes_nothing(cluster, stack_up, auditor_kubeconfig,
                                                       tmp_path):
    kubeconfig, ctx = auditor_kubeconfig
    res, start, end = run_audit(ctx, kubeconfig, tmp_path / "reports")
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 0, out
    assert "not evaluated (read-only)" in res.stdout + res.stderr or "NOT_EVALUATED" in \
        (tmp_path / "reports" / "results.json").read_text(), out
    user = f"system:serviceaccount:{AUDITOR_NS}:{AUDITOR_SA}"
    mine = events_of(audit_events(cluster), user, start, end)
    reads = [e for e in mine if e.get("verb") in ("get", "list", "watch")]
    assert len(reads) >= 20, f"the audit log shows only {len(reads)} reads by {user}"
    assert mutations(mine) == []
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    rows = results if isinstance(results, list) else results.get("controls", [])
    priv = [r for r in rows if r.get("id") == "AUDIT-PRIV-001"]
    assert priv and priv[0]["status"] == "PASS", priv


def test_admin_credentials_with_readonly_change_nothing(cluster, stack_up, tmp_path):
    res, start, end = run_audit(cluster.context, Path(cluster.kubeconfig), tmp_path / "reports")
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 0, out
    mine = events_of(audit_events(cluster), "kubernetes-admin", start, end)
    assert len([e for e in mine if e.get("verb") in ("get", "list")]) >= 20
    assert mutations(mine) == []
    results = json.loads((tmp_path / "reports" / "results.json").read_text())
    rows = results if isinstance(results, list) else results.get("controls", [])
    priv = [r for r in rows if r.get("id") == "AUDIT-PRIV-001"]
    assert priv and priv[0]["status"] == "WARN", priv  # admin credentials can write


def test_the_audit_log_does_show_mutations(cluster, kubectl):
    """The detector is not blind: a real write by the admin shows up in the log."""
    start = time.time()
    kubectl("-n", "default", "create", "configmap", "audit-canary", "--from-literal=k=v")
    kubectl("-n", "default", "delete", "configmap", "audit-canary")
    end = time.time()
    deadline = time.time() + 30
    while True:  # the API server writes its audit log asynchronously
        found = mutations(events_of(audit_events(cluster), "kubernetes-admin", start, end))
        if any("configmaps default/audit-canary" in m for m in found) or time.time() > deadline:
            break
        time.sleep(1)
    assert any(m.startswith("create configmaps default/") for m in found), found
    assert any(m.startswith("delete configmaps default/audit-canary") for m in found), found


def test_forbidden_reads_are_errors_and_the_audit_goes_on(cluster, kubectl, stack_up,
                                                           auditor_kubeconfig, tmp_path):
    """An auditor who may not read Secrets: those controls are ERROR "could not
    evaluate: forbidden (needs list on secrets ...)"; every other control still runs."""
    sa = "auditor-nosecrets"
    kubeconfig, ctx = make_auditor(cluster, kubectl, tmp_path, sa, READ_NO_SECRETS_RULES)
    try:
        res, _, _ = run_audit(ctx, kubeconfig, tmp_path / "reports")
    finally:
        kubectl("delete", "clusterrolebinding,clusterrole", f"ducklake-{sa}", check=False)
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 1, out  # ERRORs fail the run, nothing crashed
    rows = json.loads((tmp_path / "reports" / "results.json").read_text())["controls"]
    by = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r)
    assert set(by) <= {"PASS", "WARN", "ERROR", "NOT_EVALUATED"}, sorted(by)
    errors = by.get("ERROR", [])
    text = {r["id"]: " ".join(map(str, r["evidence"])) for r in errors}
    assert text and all("could not evaluate" in t for t in text.values()), text
    assert "needs list on secrets" in text.get("MINIO-SEC-001", ""), text
    assert "helm list needs list on secrets" in text.get("MINIO-REL-001", ""), text
    assert len(by.get("PASS", [])) >= 20, "the rest of the audit must still be evaluated"
