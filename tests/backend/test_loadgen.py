"""The resilience suite's load generator (ducklake_infra/suites/faults/loadgen.py), its script run
for real as the cluster runs it (``python3 -c``, settings in the environment) against a
real backend served by uvicorn over HTTP, on real PostgreSQL and MinIO: its ledger
matches what the lake holds, and when the backend goes away and comes back on the same
address the writers see refused connections (clear, not hangs), acknowledge nothing
twice, and the outage is measured."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import httpx
import psycopg
import pytest

from ducklake_infra.suites.faults import loadgen
from ducklake_infra.suites.resilience import judge_ledger

from backend_testlib import API_TOKEN, AUTH, ServedBackend, backend_env, free_port

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB = "ducklake_loadgen"


@pytest.fixture(scope="module")
def served(pg_server, minio_server):
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {DB}")
        con.execute(f"CREATE DATABASE {DB}")
    s = ServedBackend(backend_env(pg_server, minio_server, DUCKLAKE_PG_DB=DB), free_port())
    s.start()
    yield s
    s.stop()


def run_script(load: loadgen.Load, port: int, during=None) -> tuple[loadgen.Ledger, float | None]:
    env = {**loadgen.environment(load, f"http://127.0.0.1:{port}"), "TOKEN": API_TOKEN,
           "PATH": os.environ["PATH"]}
    proc = subprocess.Popen(["python3", "-c", loadgen.SCRIPT], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    fault = None
    if during is not None:
        started = loadgen.wait_started(lambda: "".join(out), timeout=60)
        time.sleep(max(0.0, started + load.fault_at_s - time.time()))
        fault = time.time()
        during()
    assert proc.wait(timeout=120) == 0, "".join(out)[-2000:]
    reader.join(timeout=5)
    return loadgen.parse_ledger("".join(out)), fault


def rows_per_batch(port: int, table: str, batch_rows: int) -> tuple[dict[int, int], int]:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=60) as c:
        n = c.post("/query", json={"sql": f"SELECT id // {batch_rows}, count(*) FROM {table} "
                                          "GROUP BY 1"}).json()["rows"]
        d = c.post("/query", json={"sql": f"SELECT count(*) - count(DISTINCT id) FROM {table}"})
    return {int(b): int(k) for b, k in n}, int(d.json()["rows"][0][0])


def test_the_ledger_is_what_the_lake_holds(served):
    load = loadgen.Load("lg_steady", batch_rows=10, writers=3, write_s=4, fault_at_s=0.5,
                        steady_s=1, min_watch_s=1, max_recovery_s=10)
    ledger, _ = run_script(load, served.port)
    found, dups = rows_per_batch(served.port, load.table, load.batch_rows)
    assert ledger.errors == {} and ledger.ready and ledger.last_not_ready is None
    assert len(ledger.acked) >= 6 and 0 in ledger.acked
    # three writers, disjoint batches; no error: every batch sent was acknowledged and is there
    assert set(found) == set(ledger.acked) and all(n == 10 for n in found.values()), found
    assert ledger.sent == len(ledger.acked), ledger
    res = judge_ledger(10, set(ledger.acked), ledger.sent, found, dups, 0.0, ledger.errors, 10)
    assert res.status == "PASS", res.evidence


def test_an_outage_is_counted_and_measured_and_loses_nothing(served):
    load = loadgen.Load("lg_outage", batch_rows=10, writers=2, write_s=6, fault_at_s=1.5,
                        steady_s=1, min_watch_s=2, max_recovery_s=20)

    def outage():
        served.stop()              # connections refused from here on
        time.sleep(2)
        served.start()

    ledger, fault = run_script(load, served.port, outage)
    found, dups = rows_per_batch(served.port, load.table, load.batch_rows)
    recovery = ledger.recovery_s(fault)
    assert recovery is not None and 1.5 <= recovery <= 15, (recovery, ledger)
    assert ledger.errors and set(ledger.errors) <= {"ConnectionRefusedError",
                                                    "ConnectionResetError", "RemoteDisconnected",
                                                    "503"}, ledger.errors
    res = judge_ledger(10, set(ledger.acked), ledger.sent, found, dups, recovery, ledger.errors, 20)
    assert res.status == "PASS", res.evidence
    assert json.dumps(sorted(ledger.errors))     # the evidence names them
