#!/usr/bin/env python3
"""Ingest throughput: the backend beside DuckDB writing the same rows directly, from a
pod in the cluster, in one run.

One Pod in the backend's namespace, made from the backend Deployment's own pod template
(same image, ConfigMap, Secrets, volumes, memory limit; its own labels, so the Service
never routes to it), does, in order:

  0. writes ``--rows`` rows (id, name, amount, at) to a local Parquet file with DuckDB;
  A. the backend, one call: ``POST /tables/<t>/rows`` through the Service;
  A1. the same with ``?dataset=``: the raw copy is stored meanwhile, the snapshot commits
     once both are done;
  A2. the backend, two calls: ``POST /datasets/<file>`` then ``POST /tables/<t>/ingest``;
  B. DuckDB directly: the same ATTACH as the backend (its own code, its Secrets), then
     ``CREATE TABLE <t> AS SELECT * FROM read_parquet(<the local file>)``: no HTTP, no
     upload, no second read from the bucket;
  repeated --runs times (default 3), interleaved; then counts every table and drops it (the lake is left as found; the dataset object
  stays in the raw bucket, as every upload does).

Prints rows/s and MB/s (Parquet bytes) of each and the ratio A/B of their throughputs
(the issue's target: 0.8 or better). For the run, two NetworkPolicies admit the bench
pod to PostgreSQL and MinIO (the stack's own admit the backend only); both are deleted
at the end. Use a bench or development cluster, not production.

    .venv/bin/python scripts/bench_ingest.py [--context kind-ducklake] [--kubeconfig F] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ducklake_infra.provision import netpol, spec_file  # noqa: E402
from ducklake_infra.provision.bundle import layout  # noqa: E402
from ducklake_infra.provision.spec import StackSpec  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import bench_args  # noqa: E402

RESULT_PREFIX = "RESULT "
LABELS = {"app.kubernetes.io/name": "ducklake-ingest-bench",
          "app.kubernetes.io/part-of": "ducklake-bench"}

SCRIPT = r'''
import json, os, time, urllib.request
import duckdb
from ducklake_backend.config import Settings
from ducklake_backend.lake import CATALOG, Lake
E = os.environ
n, tag = int(E["ROWS"]), E["TAG"]
src = "/tmp/%s.parquet" % tag
duckdb.sql("COPY (SELECT i::BIGINT AS id, 'name-' || i AS name, (i %% 1000) * 0.25 AS amount, "
           "TIMESTAMP '2026-01-01' + to_seconds(i) AS at FROM range(%d) t(i)) TO '%s' "
           "(FORMAT parquet)" % (n, src))
size = os.path.getsize(src)

def call(method, path, body, ctype):
    req = urllib.request.Request(E["BASE_URL"] + path, data=body, method=method, headers={
        "X-DuckLake-Token": E["DUCKLAKE_API_TOKEN"], "content-type": ctype})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())

with open(src, "rb") as f:
    body = f.read()
lake = Lake(Settings.from_env(E))
for attempt in range(30):     # the NetworkPolicy admitting this pod may land after it starts
    try:
        con = lake._open(read_only=False)
        break
    except duckdb.Error:
        if attempt == 29:
            raise
        time.sleep(1)
runs, tables = [], []
for k in range(int(E["RUNS"])):     # interleaved: the machine's noise hits both alike
    t0 = time.monotonic()
    call("POST", "/datasets/%s_%d.parquet" % (tag, k), body, "application/vnd.apache.parquet")
    upload_s = time.monotonic() - t0
    got = call("POST", "/tables/%s_backend_%d/ingest" % (tag, k),
               json.dumps({"dataset": "%s_%d.parquet" % (tag, k), "mode": "create"}).encode(),
               "application/json")
    backend_s = time.monotonic() - t0
    t0 = time.monotonic()
    got1 = call("POST", "/tables/%s_onecall_%d/rows?mode=create" % (tag, k),
                body, "application/vnd.apache.parquet")
    onecall_s = time.monotonic() - t0
    t0 = time.monotonic()
    got2 = call("POST", "/tables/%s_copy_%d/rows?mode=create&dataset=%s_%d_1.parquet" % (tag, k, tag, k),
                body, "application/vnd.apache.parquet")
    copy_s = time.monotonic() - t0
    t0 = time.monotonic()
    con.execute("CREATE TABLE %s.main.%s_direct_%d AS SELECT * FROM read_parquet('%s')"
                % (CATALOG, tag, k, src))
    direct_s = time.monotonic() - t0
    tables += ["%s_%s_%d" % (tag, w, k) for w in ("backend", "onecall", "copy", "direct")]
    runs.append({"backend_s": backend_s, "upload_s": upload_s, "onecall_s": onecall_s,
                 "copy_s": copy_s, "direct_s": direct_s,
                 "backend_rows_ingested": [got.get("rows_ingested"), got1.get("rows_ingested"),
                                           got2.get("rows_ingested")]})
counts = [list(con.execute("SELECT count(*), count(DISTINCT id) FROM %s.main.%s" % (CATALOG, t)).fetchone())
          for t in tables]
for t in tables:
    con.execute("DROP TABLE %s.main.%s" % (CATALOG, t))
print("RESULT " + json.dumps({"rows": n, "bytes": size, "runs": runs, "counts": counts}), flush=True)
'''


def kubectl_for(kubeconfig: str, context: str):
    env = {"PATH": layout.layout().path_env(), "HOME": str(Path.home())}

    def kubectl(*args: str, input: str | None = None, check: bool = True) -> str:
        res = subprocess.run(["kubectl", "--kubeconfig", kubeconfig, "--context", context, *args],
                             input=input, capture_output=True, text=True, env=env, timeout=900)
        if check and res.returncode != 0:
            sys.exit(f"error: kubectl {' '.join(args[:3])}: {res.stderr.strip()[-300:]}")
        return res.stdout
    return kubectl


def bench_pod(deployment: dict, spec: StackSpec, name: str, rows: int, tag: str,
              runs: int) -> dict:
    """The backend's pod template, as a one-shot Pod running :data:`SCRIPT`."""
    tmpl = copy.deepcopy(deployment["spec"]["template"])
    pod_spec = tmpl["spec"]
    pod_spec["restartPolicy"] = "Never"
    c = pod_spec["containers"][0]
    for k in ("ports", "lifecycle", "startupProbe", "livenessProbe", "readinessProbe", "args"):
        c.pop(k, None)
    b = spec.backend
    c["command"] = ["python3", "-c", SCRIPT]
    c["env"] = [*c.get("env", []),
                {"name": "ROWS", "value": str(rows)}, {"name": "TAG", "value": tag},
                {"name": "RUNS", "value": str(runs)},
                {"name": "BASE_URL",
                 "value": f"http://{b.service.name}.{b.namespace}.svc:{b.service.ports[0]}"}]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": b.namespace, "labels": dict(LABELS)},
            "spec": pod_spec}


def admit_policies(spec: StackSpec) -> list[dict]:
    """Ingress to PostgreSQL and MinIO from the bench pod, for the run only."""
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    source = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": b.namespace}},
               "podSelector": {"matchLabels": dict(LABELS)}}]
    return [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": f"ducklake-bench-ingest-{what}", "namespace": ns,
                          "labels": dict(LABELS)},
             "spec": {"podSelector": {"matchLabels": pods}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": source, "ports": [{"protocol": "TCP", "port": port}]}]}}
            for what, ns, pods, port in (
                ("postgresql", pg.namespace, netpol.postgres_pod_labels(spec), pg.port),
                ("minio", m.namespace, netpol.minio_pod_labels(spec), m.api_port))]


def run(kubectl, spec: StackSpec, rows: int, runs: int = 3) -> dict:
    """``runs`` measurements on a running stack: the pod's RESULT with the medians and
    throughputs added."""
    b = spec.backend
    tag = f"bench_{time.strftime('%H%M%S')}"
    name = f"ingest-bench-{tag[6:]}"
    deployment = json.loads(kubectl("-n", b.namespace, "get", f"deployment/{b.deployment}",
                                    "-o", "json"))
    policies = admit_policies(spec)
    objects = {"apiVersion": "v1", "kind": "List",
               "items": [*policies, bench_pod(deployment, spec, name, rows, tag, runs)]}
    try:
        kubectl("apply", "-f", "-", input=json.dumps(objects))
        deadline = time.monotonic() + 900
        phase = ""
        while time.monotonic() < deadline and phase not in ("Succeeded", "Failed"):
            time.sleep(2)
            phase = kubectl("-n", b.namespace, "get", f"pod/{name}", "-o",
                            "jsonpath={.status.phase}", check=False).strip()
        log = kubectl("-n", b.namespace, "logs", name, check=False)
    finally:
        kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-",
                input=json.dumps(objects), check=False)
    line = next((ln for ln in reversed(log.splitlines()) if ln.startswith(RESULT_PREFIX)), None)
    if line is None:
        sys.exit(f"error: the bench pod ended {phase or 'nowhere'} with no result: "
                 f"{log.strip()[-400:]}")
    r = json.loads(line[len(RESULT_PREFIX):])
    if any(x["backend_rows_ingested"] != [rows] * 3 for x in r["runs"]) or \
            any(c != [rows, rows] for c in r["counts"]):
        sys.exit(f"error: rows went missing: asked {rows} a table, got "
                 f"{[x['backend_rows_ingested'] for x in r['runs']]} ingested and "
                 f"(count, distinct ids) {r['counts']}")
    mb = r["bytes"] / 1e6
    for key in ("backend_s", "upload_s", "onecall_s", "copy_s", "direct_s"):
        r[key] = statistics.median(x[key] for x in r["runs"])
    for w in ("backend", "onecall", "copy", "direct"):
        r[f"{w}_rows_s"] = rows / r[f"{w}_s"]
        r[f"{w}_mb_s"] = mb / r[f"{w}_s"]
    r["ratio"] = r["onecall_rows_s"] / r["direct_rows_s"]
    r["ratio_two_calls"] = r["backend_rows_s"] / r["direct_rows_s"]
    r["ratio_copy"] = r["copy_rows_s"] / r["direct_rows_s"]
    return r


def report(r: dict) -> str:
    def line(label: str, w: str, extra: str = "") -> str:
        return (f"  {label:<34}{r[w + '_s']:6.2f} s  {r[w + '_rows_s']:>12,.0f} rows/s"
                f"  {r[w + '_mb_s']:6.1f} MB/s{extra}")
    return "\n".join([
        f"ingest of {r['rows']:,} rows ({r['bytes'] / 1e6:.1f} MB of Parquet), from a pod in the cluster, "
        f"median of {len(r['runs'])} interleaved runs:",
        line("A  backend, POST /tables/t/rows", "onecall"),
        line("A1 the same, with a raw copy", "copy"),
        line("A2 backend, upload then ingest", "backend", f"  (upload {r['upload_s']:.2f} s)"),
        line("B  DuckDB directly", "direct"),
        f"  A/B throughput = {r['ratio']:.2f} (target: 0.8 or better; runs: "
        + ", ".join(f"{x['direct_s'] / x['onecall_s']:.2f}" for x in r["runs"])
        + f")   A1/B = {r['ratio_copy']:.2f}   A2/B = {r['ratio_two_calls']:.2f}"])


def main() -> int:
    spec = spec_file.load()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_args.add_cluster_args(p, spec)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    print(report(run(kubectl_for(args.kubeconfig, args.context), spec, args.rows, args.runs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
