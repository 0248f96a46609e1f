"""Proof, from outside, that `pytest --readonly` changes nothing and leaks nothing.

The kind cluster we create has API server audit logging (ducklake_infra/provision/cluster.py).
The audit suite runs as a subprocess with --readonly against the deployed stack, as
a ServiceAccount bound to the ClusterRole we ship (k8s/audit/auditor-rbac.yaml), and
with the cluster's admin credentials. For each run the API server's audit log must
show, from that identity, no request other than get/list/watch (self access reviews
aside), no exec/attach/portforward (authorised and logged as ``get`` on a
subresource when they come over websockets), no node or pod proxy, and no proxied
request but a GET; and it must show that identity's reads, so the check cannot pass
by logging nothing. Attempts to exec, attach, port-forward and reach the node proxy
through our guards are made and must leave no trace; the same done for real by the
admin must be seen by the detector.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.guard import ReadOnlyViolation, find_leaks

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

ROOT = Path(__file__).resolve().parents[2]
AUDITOR_RBAC = ROOT / "k8s" / "audit" / "auditor-rbac.yaml"
READ_VERBS = {"get", "list", "watch"}
SELF_REVIEWS = {"selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews"}
STREAMING = {"exec", "attach", "portforward"}
AUDITOR_NS = "ducklake-audit"
ADMIN = "kubernetes-admin"


@pytest.fixture(scope="module")
def stack_up(stack):
    """The audited stack must be deployed (by the suites' session fixture)."""
    return stack


def audit_events(cluster) -> list[dict]:
    return [json.loads(line) for line in cluster.audit_log().splitlines() if line.strip()]


def events_of(events: list[dict], user: str, since: float, until: float) -> list[dict]:
    def ts(e):
        t = e.get("requestReceivedTimestamp") or e.get("stageTimestamp")
        return time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    return [e for e in events if e.get("user", {}).get("username") == user
            and since - 1 <= ts(e) <= until + 1]


def events_until(cluster, user, since, until, predicate, timeout: float = 30) -> list[dict]:
    """The API server writes its audit log asynchronously: wait for ``predicate``."""
    deadline = time.time() + timeout
    while True:
        mine = events_of(audit_events(cluster), user, since, until)
        if predicate(mine) or time.time() > deadline:
            return mine
        time.sleep(1)


def violations(events: list[dict]) -> list[str]:
    """Every request that is not a plain read: a non-read verb (self reviews aside),
    exec/attach/portforward (whatever the verb), node or pod proxies, proxied non-GETs."""
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        verb, res, sub = e.get("verb"), ref.get("resource"), ref.get("subresource")
        bad = (verb not in READ_VERBS and not (verb == "create" and res in SELF_REVIEWS)) \
            or sub in STREAMING or (sub == "proxy" and res in ("nodes", "pods"))
        if bad:
            out.append(f"{verb} {res}/{sub or ''} {ref.get('namespace', '')}/"
                       f"{ref.get('name', '')} ({e.get('requestURI')})")
    return out


def run_audit(context: str, kubeconfig: Path, report_dir: Path) -> tuple[subprocess.CompletedProcess, float, float]:
    argv = [sys.executable, "-m", "pytest", str(ROOT / "ducklake_infra" / "suites"), f"--cluster={context}",
            f"--kubeconfig={kubeconfig}", "--readonly", f"--report-dir={report_dir}",
            "-p", "no:cacheprovider", "-q", "--no-header"]
    start = time.time()
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return res, start, time.time()


def auditor_manifest(sa: str, drop: tuple[str, ...] = ()) -> str:
    """The shipped RBAC manifest for ServiceAccount ``sa``, less the resources ``drop``."""
    docs = [d for d in yaml.safe_load_all(AUDITOR_RBAC.read_text()) if d]
    out = []
    for d in copy.deepcopy(docs):
        kind = d["kind"]
        if kind == "ServiceAccount":
            d["metadata"]["name"] = sa
        elif kind in ("ClusterRole", "ClusterRoleBinding"):
            d["metadata"]["name"] = f"ducklake-{sa}"
            if kind == "ClusterRoleBinding":
                d["roleRef"]["name"] = f"ducklake-{sa}"
                d["subjects"][0]["name"] = sa
            else:
                for rule in d["rules"]:
                    if "resources" in rule:
                        rule["resources"] = [r for r in rule["resources"] if r not in drop]
        out.append(d)
    return yaml.safe_dump_all(out)


def make_auditor(cluster, kubectl, directory: Path, sa: str, drop: tuple[str, ...] = ()
                 ) -> tuple[Path, str]:
    """A kubeconfig for ServiceAccount ``sa`` bound to the shipped auditor role."""
    kubectl.apply(auditor_manifest(sa, drop))
    token = kubectl("-n", AUDITOR_NS, "create", "token", sa, "--duration=1h",
                    sensitive=True).stdout.strip()
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


def remove_auditor(kubectl, sa: str) -> None:
    kubectl("delete", "clusterrolebinding,clusterrole", f"ducklake-{sa}", check=False)
    kubectl("-n", AUDITOR_NS, "delete", "serviceaccount", sa, check=False)


@pytest.fixture(scope="module")
def auditor_kubeconfig(cluster, kubectl, tmp_path_factory) -> tuple[Path, str]:
    """The ServiceAccount of the shipped manifest, unchanged."""
    yield make_auditor(cluster, kubectl, tmp_path_factory.mktemp("auditor"), "auditor")
    remove_auditor(kubectl, "auditor")
    kubectl("delete", "namespace", AUDITOR_NS, "--wait=false", check=False)


def _controls(report_dir: Path) -> dict[str, dict]:
    rows = json.loads((report_dir / "results.json").read_text())["controls"]
    return {r["id"]: r for r in rows}


def test_shipped_auditor_role_audits_everything_and_changes_nothing(
        cluster, stack_up, auditor_kubeconfig, tmp_path):
    kubeconfig, ctx = auditor_kubeconfig
    res, start, end = run_audit(ctx, kubeconfig, tmp_path / "reports")
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 0, out
    c = _controls(tmp_path / "reports")
    assert not [i for i, r in c.items() if r["status"] == "ERROR"], out  # the role suffices
    assert c["AUDIT-PRIV-001"]["status"] == "PASS", c["AUDIT-PRIV-001"]
    assert any(r["status"] == "NOT_EVALUATED" for r in c.values())  # mutating ones
    user = f"system:serviceaccount:{AUDITOR_NS}:auditor"
    mine = events_until(cluster, user, start, end, lambda ev: len(ev) >= 20)
    reads = [e for e in mine if e.get("verb") in READ_VERBS]
    assert len(reads) >= 20, f"the audit log shows only {len(reads)} reads by {user}"
    proxied = [e for e in mine if (e.get("objectRef") or {}).get("subresource") == "proxy"]
    assert proxied, "the data-plane reads through the service proxy are not in the log"
    assert violations(mine) == []


def test_admin_credentials_with_readonly_change_nothing(cluster, stack_up, tmp_path):
    res, start, end = run_audit(cluster.context, Path(cluster.kubeconfig), tmp_path / "reports")
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 0, out
    mine = events_until(cluster, ADMIN, start, end, lambda ev: len(ev) >= 20)
    assert len([e for e in mine if e.get("verb") in READ_VERBS]) >= 20
    assert violations(mine) == []
    c = _controls(tmp_path / "reports")
    assert c["AUDIT-PRIV-001"]["status"] == "WARN", c["AUDIT-PRIV-001"]  # admin can write


def _pod(kubectl, ns: str, prefix: str) -> str:
    pods = kubectl.json("-n", ns, "get", "pods")["items"]
    return next(p["metadata"]["name"] for p in pods if p["metadata"]["name"].startswith(prefix)
                and p["status"].get("phase") == "Running")


def test_streaming_and_proxy_attempts_through_the_guards_leave_no_trace(cluster, stack_up,
                                                                          spec, kubectl):
    """Exec, attach, port-forward and the node proxy, tried with admin credentials
    through the read-only runner and the read-only API client: each refused in the
    process, and the audit log shows none of them."""
    from kubernetes import client
    from kubernetes.stream import portforward, stream

    from ducklake_infra.provision.kubeapi import api_client
    from ducklake_infra.provision.runner import Runner
    m = spec.minio
    pod = _pod(kubectl, m.namespace, m.fullname)
    ro = Runner(readonly=True, env=cluster.runner.base_env)
    k = cluster.kubectl()
    node = f"{cluster.name}-control-plane"
    time.sleep(2)  # the log has second resolution: keep the reads above out of the window
    attempts = [
        [*k, "-n", m.namespace, "exec", pod, "--", "true"],
        [*k, "-n", m.namespace, "attach", pod],
        [*k, "-n", m.namespace, "port-forward", pod, ":9000"],
        [*k, "get", "--raw", f"/api/v1/nodes/{node}/proxy/pods"],
        [*k, "get", "--raw", f"/api/v1/namespaces/{m.namespace}/pods/{pod}/%65xec?command=true"],
        [*k, "--cache-dir", "get", "delete", "pod", pod, "-n", m.namespace],
        [*k, "create", "--raw", f"/api/v1/namespaces/{m.namespace}/configmaps", "-f", "-"],
    ]
    start = time.time()
    for argv in attempts:
        with pytest.raises(ReadOnlyViolation):
            ro.run(argv, timeout=30)
    api = client.CoreV1Api(api_client(cluster.kubeconfig, cluster.context, readonly=True))
    for attack in (
            lambda: stream(api.connect_get_namespaced_pod_exec, pod, m.namespace,
                           command=["true"], stdout=True, stderr=True, stdin=False, tty=False),
            lambda: portforward(api.connect_get_namespaced_pod_portforward, pod, m.namespace,
                                ports="9000"),
            lambda: api.connect_get_node_proxy_with_path(node, "pods"),
            lambda: api.connect_post_namespaced_service_proxy_with_path(
                f"{spec.backend.service.name}:{spec.backend.service.ports[0]}",
                spec.backend.namespace, "query")):
        with pytest.raises(ReadOnlyViolation):
            attack()
    end = time.time()
    time.sleep(3)  # what was sent would be in the log by now
    mine = events_of(audit_events(cluster), ADMIN, start, end)
    assert mine == [], [e.get("requestURI") for e in mine]


def test_the_detector_sees_writes_streams_and_proxied_posts(cluster, stack_up, spec, kubectl):
    """The detector is not blind: real writes, an exec, a port-forward and a proxied
    POST by the admin all show up as violations."""
    m, b = spec.minio, spec.backend
    pod = _pod(kubectl, m.namespace, m.fullname)
    start = time.time()
    kubectl("-n", "default", "create", "configmap", "audit-canary", "--from-literal=k=v")
    kubectl("-n", "default", "delete", "configmap", "audit-canary")
    kubectl("-n", m.namespace, "exec", pod, "--", "true")
    pf = subprocess.Popen([*cluster.kubectl(), "-n", m.namespace, "port-forward", pod, ":9000"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=cluster.runner.base_env)
    try:
        line = pf.stdout.readline()  # "Forwarding from 127.0.0.1:NNNNN -> 9000"
        port = int(line.split("127.0.0.1:")[1].split()[0])
        import urllib.request
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/minio/health/live", timeout=10).read()
        except OSError:
            pass  # the stream was opened: that is what the log must show
    finally:
        pf.terminate()
        pf.wait(10)
    proxy = (f"/api/v1/namespaces/{b.namespace}/services/{b.service.name}:"
             f"{b.service.ports[0]}/proxy/query")
    kubectl("create", "--raw", proxy, "-f", "-", input='{"sql": "SELECT 1"}', check=False)
    end = time.time()

    def seen(ev):
        found = "\n".join(violations(ev))
        return all(s in found for s in ("create configmaps", "delete configmaps", "exec",
                                        "portforward", "services/proxy"))
    found = "\n".join(violations(events_until(cluster, ADMIN, start, end, seen)))
    for needle in ("create configmaps/ default/", "delete configmaps/ default/audit-canary",
                   f"pods/exec {m.namespace}/{pod}", f"pods/portforward {m.namespace}/{pod}",
                   "create services/proxy"):
        assert needle in found, found


def test_forbidden_reads_are_errors_and_the_audit_goes_on(cluster, kubectl, stack_up,
                                                           auditor_kubeconfig, tmp_path):
    """An auditor who may not read Secrets: those controls are ERROR "could not
    evaluate: forbidden (needs list on secrets ...)"; every other control still runs."""
    sa = "auditor-nosecrets"
    kubeconfig, ctx = make_auditor(cluster, kubectl, tmp_path, sa, drop=("secrets",))
    try:
        res, _, _ = run_audit(ctx, kubeconfig, tmp_path / "reports")
    finally:
        remove_auditor(kubectl, sa)
    out = cluster.runner.redactor(res.stdout[-3000:] + res.stderr[-2000:])
    assert res.returncode == 1, out  # ERRORs fail the run, nothing crashed
    rows = list(_controls(tmp_path / "reports").values())
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r["status"], []).append(r)
    assert set(by) <= {"PASS", "WARN", "ERROR", "NOT_EVALUATED"}, sorted(by)
    errors = by.get("ERROR", [])
    text = {r["id"]: " ".join(map(str, r["evidence"])) for r in errors}
    assert text and all("could not evaluate" in t for t in text.values()), text
    assert "needs list on secrets" in text.get("MINIO-SEC-001", ""), text
    assert "helm list needs list on secrets" in text.get("MINIO-REL-001", ""), text
    assert len(by.get("PASS", [])) >= 20, "the rest of the audit must still be evaluated"


def test_secrets_readable_but_serviceaccounts_forbidden_leaks_nothing(
        cluster, kubectl, stack_up, spec, auditor_kubeconfig, tmp_path):
    """Finding 1 on a real cluster: with Secrets readable and ServiceAccounts forbidden,
    kubectl's combined read used to print partial JSON (Secrets included) and exit 1,
    and the runner logged it before the values were known. The run's log file and
    every report hold no Secret value in any form, and the log is private."""
    from ducklake_infra.suites.live import stack_namespaces
    from ducklake_infra.suites.objects import Objects
    values: set[str] = set()
    for ns in stack_namespaces(spec):
        doc = json.loads(kubectl("-n", ns, "get", "secrets", "-o", "json",
                                 sensitive=True).stdout)
        values |= Objects([doc]).secret_values()
    values -= spec.public_names()   # names the spec writes (users, keys) are public
    assert len(values) >= 3, "the stack's Secrets hold no values to look for"
    sa = "auditor-nosa"
    kubeconfig, ctx = make_auditor(cluster, kubectl, tmp_path, sa, drop=("serviceaccounts",))
    logs = layout.layout().logs
    before = set(logs.glob("pytest-*.log")) if logs.is_dir() else set()
    try:
        res, _, _ = run_audit(ctx, kubeconfig, tmp_path / "reports")
    finally:
        remove_auditor(kubectl, sa)
    new_logs = sorted(set(logs.glob("pytest-*.log")) - before)
    assert new_logs, "the audit wrote no log file"
    text = "".join(p.read_text(errors="replace") for p in new_logs)
    assert "serviceaccounts" in text and "forbidden" in text.lower()  # the failing read ran
    assert "stdout not logged" in text                                # the Secret read ran
    for p in new_logs:
        assert p.stat().st_mode & 0o077 == 0, f"{p} is readable by others"
    outputs = {"log": text, "stdout": res.stdout + res.stderr}
    for f in (tmp_path / "reports").rglob("*"):
        if f.is_file():
            outputs[str(f)] = f.read_text(errors="replace")
    leaks = {where: find_leaks(t, values) for where, t in outputs.items()}
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
    c = _controls(tmp_path / "reports")
    assert c["MINIO-SEC-001"]["status"] != "ERROR"  # Secrets were read: checked
