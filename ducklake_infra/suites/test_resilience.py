"""Faults while data flows (issue 13): a writer appends known rows through the backend's
Service and keeps a ledger of what was acknowledged; mid-stream a pod of the stack is
deleted; afterwards every acknowledged row must be in the lake exactly once, nothing in
part, and the backend Ready again. Mutating: never under --readonly."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest

from ducklake_infra.suites.catalog import CheckError, verdict
from ducklake_infra.suites.live import PortForward, backend_token
from ducklake_infra.suites.resilience import judge_ledger

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

BATCH = 20              # rows per append (ids batch*BATCH .. +BATCH-1)
WRITE_S = 30            # how long the writer writes
FAULT_AT_S = 5          # when the pod is deleted
MAX_RECOVERY_S = 180


def _csv(batch: int) -> str:
    return "id,name\n" + "".join(f"{i},row-{i}\n" for i in range(batch * BATCH, (batch + 1) * BATCH))


def _write_until(http, table: str, stop_at: float, ledger: dict, errors: Counter) -> None:
    batch = 1                            # batch 0 created the table
    while time.monotonic() < stop_at:
        name = f"{table}-{batch}.csv"
        try:
            r = http.post(f"/datasets/{name}", content=_csv(batch),
                          headers={"content-type": "text/csv"})
            if r.status_code == 201:
                r = http.post(f"/tables/{table}/ingest", json={"dataset": name, "mode": "append"})
            if r.status_code == 200:
                ledger["acked"].add(batch)
            else:
                errors[str(r.status_code)] += 1
        except Exception as exc:         # a hang or a reset is an error the client saw
            errors[type(exc).__name__] += 1
        ledger["sent"] = batch + 1
        batch += 1


def _watch_ready(http, fault: float, out: dict) -> None:
    """/readyz every half second from the fault on: the time it was last not ready (the
    recovery time; 0 when it never was), until ready for 10 s in a row or the limit."""
    import httpx
    last_bad, ready_since = None, None
    while time.monotonic() - fault < MAX_RECOVERY_S + 30:
        try:
            ok = http.get("/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            ok = False
        now = time.monotonic()
        if ok:
            ready_since = ready_since or now
            if now - ready_since >= 10 and now - fault >= 15:
                out["recovered_s"] = 0.0 if last_bad is None else last_bad + 0.5 - fault
                return
        else:
            last_bad, ready_since = now, None
        time.sleep(0.5)


@pytest.mark.control("RES-MINIO-001")
def test_minio_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    m = spec.minio
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "Deployment", m.fullname, m.namespace)


@pytest.mark.control("RES-PG-001")
def test_postgresql_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    p = spec.postgresql
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "StatefulSet", p.fullname, p.namespace)


def _fault_mid_stream(objs, spec, runner, cluster, kubectl, kind: str, name: str, ns: str) -> None:
    import httpx
    b = spec.backend
    workload = objs.get(kind, name, ns)
    if workload is None:
        raise CheckError(f"{kind} {ns}/{name} does not exist")
    selector = ",".join(f"{k}={v}" for k, v in workload["spec"]["selector"]["matchLabels"].items())
    table = f"resilience_{uuid.uuid4().hex[:8]}"
    ledger, errors, watched = {"acked": set(), "sent": 1}, Counter(), {}
    with PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}", b.service.ports[0]) as pf, \
            httpx.Client(base_url=f"http://127.0.0.1:{pf.local_port}", timeout=30,
                         headers={"Authorization": f"Bearer {backend_token(objs, spec)}"}) as http:
        r = http.post(f"/datasets/{table}-0.csv", content=_csv(0), headers={"content-type": "text/csv"})
        r = http.post(f"/tables/{table}/ingest", json={"dataset": f"{table}-0.csv", "mode": "create"})
        if r.status_code != 200:
            raise CheckError(f"could not create the ledger table: {r.status_code} {r.text[:200]}")
        ledger["acked"].add(0)
        start = time.monotonic()
        writer = threading.Thread(target=_write_until,
                                  args=(http, table, start + WRITE_S, ledger, errors))
        writer.start()
        time.sleep(FAULT_AT_S)
        kubectl("-n", ns, "delete", "pod", "-l", selector, "--wait=false")
        fault = time.monotonic()
        watch = threading.Thread(target=_watch_ready, args=(http, fault, watched))
        watch.start()
        writer.join()
        kubectl("-n", ns, "rollout", "status", f"{kind.lower()}/{name}", "--timeout=180s",
                timeout=200)
        watch.join()
        recovery = watched.get("recovered_s")
        counts = http.post("/query", json={"sql": f"SELECT id // {BATCH} AS b, count(*) AS n "
                                                  f"FROM {table} GROUP BY 1 ORDER BY 1"})
        dups = http.post("/query", json={"sql": f"SELECT count(*) - count(DISTINCT id) AS d "
                                                f"FROM {table}"})
        if counts.status_code != 200 or dups.status_code != 200:
            raise CheckError(f"could not read the table back: {counts.status_code} {counts.text[:200]}")
    found = {int(row[0]): int(row[1]) for row in counts.json()["rows"]}
    verdict(judge_ledger(BATCH, ledger["acked"], ledger["sent"], found,
                         int(dups.json()["rows"][0][0]), recovery, dict(errors), MAX_RECOVERY_S))
