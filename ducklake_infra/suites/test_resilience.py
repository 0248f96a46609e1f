"""Faults while data flows (issue 13): the load generator (``loadgen``: a Pod, several
writers through the backend's Service) appends known rows and keeps a ledger of what was
acknowledged; mid-stream a pod of the stack is deleted; afterwards every acknowledged
row must be in the lake exactly once, nothing in part, and the backend Ready again (as
seen from inside the cluster). Mutating: never under --readonly."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ducklake_infra.suites import loadgen
from ducklake_infra.suites.catalog import CheckError, verdict
from ducklake_infra.suites.live import PortForward, backend_token
from ducklake_infra.suites.loadgen import Load
from ducklake_infra.suites.resilience import judge_ledger

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]


@pytest.mark.control("RES-MINIO-001")
def test_minio_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    m = spec.minio
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "Deployment", m.fullname, m.namespace,
                      Load(_table()))


@pytest.mark.control("RES-PG-001")
def test_postgresql_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    p = spec.postgresql
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "StatefulSet", p.fullname, p.namespace,
                      Load(_table()))


@pytest.mark.control("RES-BE-001")
def test_backend_pod_deleted_mid_upload(objs, spec, runner, cluster, kubectl):
    """Uploads of about 4 MB each (1,000 rows of 4 kB) are in flight when the backend's
    only pod is deleted: the writers reach the new pod through the same Service."""
    b = spec.backend
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "Deployment", b.deployment,
                      b.namespace, Load(_table(), batch_rows=1000, row_pad=4000, writers=2,
                                        fault_at_s=8))


def _table() -> str:
    return f"resilience_{uuid.uuid4().hex[:8]}"


def _fault_mid_stream(objs, spec, runner, cluster, kubectl, kind: str, name: str, ns: str,
                      load: Load) -> None:
    workload = objs.get(kind, name, ns)
    if workload is None:
        raise CheckError(f"{kind} {ns}/{name} does not exist")
    selector = ",".join(f"{k}={v}" for k, v in workload["spec"]["selector"]["matchLabels"].items())

    def delete_pods():
        kubectl("-n", ns, "delete", "pod", "-l", selector, "--wait=false")

    ledger, fault = run_load(objs, spec, kubectl, load, delete_pods)
    kubectl("-n", ns, "rollout", "status", f"{kind.lower()}/{name}", "--timeout=180s", timeout=200)
    judge(objs, spec, runner, cluster, kubectl, load, ledger, fault)


def run_load(objs, spec, kubectl, load: Load, fault_fn) -> tuple[loadgen.Ledger, float]:
    """Run the load generator; ``fault_fn`` at ``load.fault_at_s`` after it starts writing.
    The ledger and the fault's epoch."""
    b = spec.backend
    dep = objs.get("Deployment", b.deployment, b.namespace)
    if dep is None:
        raise CheckError(f"Deployment {b.namespace}/{b.deployment} does not exist")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    pod = f"ducklake-loadgen-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=json.dumps(loadgen.pod(spec, image, pod, load)))
    try:
        def log() -> str:
            return kubectl("-n", b.namespace, "logs", pod, check=False, timeout=30).stdout
        started = loadgen.wait_started(log)
        time.sleep(max(0.0, started + load.fault_at_s - time.time()))
        fault = time.time()
        fault_fn()
        limit = load.write_s + load.max_recovery_s + 90
        kubectl("-n", b.namespace, "wait", f"pod/{pod}", "--for=jsonpath={.status.phase}=Succeeded",
                f"--timeout={int(limit)}s", timeout=limit + 30, check=False)
        return loadgen.parse_ledger(log()), fault
    except ValueError as exc:
        raise CheckError(str(exc)) from None
    finally:
        kubectl("-n", b.namespace, "delete", "pod", pod, "--wait=false", "--ignore-not-found",
                check=False)


def read_back(objs, spec, runner, cluster, table: str, batch_rows: int) -> tuple[dict, int]:
    """Rows per batch and duplicate ids, read through the backend (retried while it comes
    back: a fault may leave it starting)."""
    import httpx
    b = spec.backend
    deadline = time.monotonic() + 120
    last = ""
    while time.monotonic() < deadline:
        try:
            with PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}",
                             b.service.ports[0]) as pf, \
                    httpx.Client(base_url=f"http://127.0.0.1:{pf.local_port}", timeout=60, headers={
                        "Authorization": f"Bearer {backend_token(objs, spec)}"}) as http:
                counts = http.post("/query", json={"sql": f"SELECT id // {batch_rows} AS b, "
                                                          f"count(*) AS n FROM {table} GROUP BY 1"})
                dups = http.post("/query", json={"sql": f"SELECT count(*) - count(DISTINCT id) "
                                                        f"AS d FROM {table}"})
                if counts.status_code == 200 and dups.status_code == 200:
                    return ({int(r[0]): int(r[1]) for r in counts.json()["rows"]},
                            int(dups.json()["rows"][0][0]))
                last = f"{counts.status_code} {counts.text[:200]}"
        except Exception as exc:           # the port-forward or the backend not back yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(3)
    raise CheckError(f"could not read table {table} back: {last}")


def judge(objs, spec, runner, cluster, kubectl, load: Load, ledger: loadgen.Ledger,
          fault: float) -> None:
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    verdict(judge_ledger(load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
                         ledger.recovery_s(fault), ledger.errors, load.max_recovery_s))
