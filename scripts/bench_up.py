#!/usr/bin/env python3
"""Time to green: our ``up`` against its floor and a plain script, then the warm suite
run, the read-only audit beside a generic scanner, and ingest throughput, in one run.

Same machine, same bundle, fresh kind cluster for each cold measurement; its own kind
cluster name (``<spec name>-bench``), so it never touches the cluster of a test run:

  A. ``ducklake-infra up --cluster kind`` from nothing, with its phases
  C. a second ``up`` on that cluster (the idempotent no-op)
  W. the warm conformance run on it: ``pytest ducklake_infra/suites --cluster=kind
     --keep-cluster`` without the fault suite (which restarts pods and nodes by design)
  R. the read-only audit beside trivy (``scripts/bench_audit.py``; ``--trivy PATH``)
  I. ingest throughput, the backend beside DuckDB directly (``scripts/bench_ingest.py``)
  F. the floor, measured alone on a fresh cluster: ``kind create --wait`` of the same node
     image with no stack, then the Helm releases alone into that running cluster
  B. with ``--baseline``: the command list of ``ducklake-infra plan --cluster kind`` (made
     with no cluster, so it holds every step) as a bash script run line by line; stdin
     of each step (manifests, generated Secrets) goes through 0600 temp files

``--runs N`` repeats it all N times on fresh clusters; prints every figure of each run
and the ratios A/F (target 1.3 at most), A/B and C/A; the medians at the end.

    .venv/bin/python scripts/bench_up.py [--runs 3] [--trivy PATH] [--baseline] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ducklake_infra.provision.bundle import layout  # noqa: E402
from ducklake_infra.provision.cluster import KindCluster  # noqa: E402
from ducklake_infra.provision.progress import Progress  # noqa: E402
from ducklake_infra.provision.runner import Runner  # noqa: E402
from ducklake_infra.provision import netpol, spec_file, stack, stack_steps  # noqa: E402
from ducklake_infra.provision.render import Options, image_refs  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import bench_ingest  # noqa: E402


def bench_spec(tmp: Path) -> Path:
    raw = yaml.safe_load((ROOT / "stack.yaml").read_text())
    raw["cluster"]["kind_name"] = raw["cluster"]["kind_name"] + "-bench"
    out = ROOT / ".bench-stack.yaml"  # next to the real one: relative paths stay valid
    out.write_text(yaml.safe_dump(raw))
    return out


def runner_for(lay: layout.Layout, dry_run: bool = False) -> Runner:
    r = Runner(log_path=lay.logs / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.log", dry_run=dry_run)
    r.base_env["PATH"] = lay.path_env(r.base_env.get("PATH", ""))
    return r


def kind_cluster(lay: layout.Layout, spec, runner: Runner) -> KindCluster:
    return KindCluster(runner, name=spec.kind_cluster, node_image=layout.NODE_IMAGE,
                       kubeconfig_dir=lay.root / "kubeconfig", workers=spec.kind_workers)


def delete(lay: layout.Layout, spec) -> None:
    r = runner_for(lay)
    c = kind_cluster(lay, spec, r)
    if c.exists():
        c.delete()


def timed_up(lay: layout.Layout, spec) -> tuple[float, list[tuple[str, float, str]]]:
    r = runner_for(lay)
    c = kind_cluster(lay, spec, r)
    progress = Progress(quiet=True)
    start = time.monotonic()
    stack.up(c, spec, r, progress)
    return time.monotonic() - start, progress.timings


def floor(lay: layout.Layout, spec) -> tuple[float, float]:
    """(kind create --wait of the node image with no stack, the Helm releases alone into
    that running cluster): what any up must at least spend, measured apart."""
    r = runner_for(lay)
    c = kind_cluster(lay, spec, r)
    c.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    r.run(c.create_argv(wait=True), timeout=c.create_timeout + 120)
    create = time.monotonic() - start
    progress = Progress(quiet=True)
    ctx = stack_steps.Context(c, spec, r, progress, Options())
    stack_steps.ensure_namespaces(ctx)          # untimed: what the releases need first
    stack_steps.ensure_secrets(ctx)
    ctx.apply(netpol.network_policies(spec))
    start = time.monotonic()
    stack_steps.install_releases(ctx, image_refs(spec, Options()))
    return create, time.monotonic() - start


def warm_suites(spec_path: Path) -> float:
    argv = [str(ROOT / ".venv/bin/pytest"), "ducklake_infra/suites", "--cluster=kind",
            "--keep-cluster", f"--stack={spec_path}", "-q", "-p", "no:cacheprovider",
            "--ignore=ducklake_infra/suites/faults",
            f"--report-dir={tempfile.gettempdir()}/bench-up-reports"]
    start = time.monotonic()
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    took = time.monotonic() - start
    if res.returncode != 0:
        sys.exit(f"warm suite run failed (exit {res.returncode}): "
                 f"{res.stdout.strip().splitlines()[-1:]}")
    return took


def audit_beside_trivy(lay: layout.Layout, spec, trivy: str | None) -> list[str]:
    c = kind_cluster(lay, spec, runner_for(lay))
    argv = [sys.executable, str(ROOT / "scripts/bench_audit.py"), "--context", c.context,
            "--kubeconfig", str(c.kubeconfig), "--runs", "3"]
    if trivy:
        argv += ["--trivy", trivy]
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"bench_audit failed: {res.stderr.strip()[-300:]}")
    return res.stdout.strip().splitlines()


def ingest(lay: layout.Layout, spec) -> dict:
    c = kind_cluster(lay, spec, runner_for(lay))
    return bench_ingest.run(bench_ingest.kubectl_for(str(c.kubeconfig), c.context), spec,
                            rows=1_000_000, runs=3)


def shell_baseline(lay: layout.Layout, spec, tmp: Path) -> tuple[float, int]:
    r = runner_for(lay, dry_run=True)
    c = kind_cluster(lay, spec, r)
    stack.plan(c, spec, r, Progress(quiet=True))
    script = ["set -euo pipefail", "export DOCKER_BUILDKIT=1  # as our runner sets for docker build"]
    steps = 0
    for i, planned in enumerate(r.planned_commands):
        if planned.read:
            continue  # a plain script does not look before it leaps
        cmd = planned.shell
        if planned.input is not None:
            f = tmp / f"stdin-{i}"
            data = planned.input
            f.write_bytes(data if isinstance(data, bytes) else data.encode())
            f.chmod(0o600)
            cmd += f" < {shlex.quote(str(f))}"
        script.append(cmd)
        steps += 1
    path = tmp / "baseline.sh"
    path.write_text("\n".join(script) + "\n")
    env = dict(os.environ, PATH=lay.path_env())
    start = time.monotonic()
    res = subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True)
    took = time.monotonic() - start
    if res.returncode != 0:
        sys.exit(f"baseline script failed (exit {res.returncode}): "
                 f"{r.redactor(res.stderr.strip()[-500:])}")
    return took, steps


def one_run(lay: layout.Layout, spec, spec_path: Path, tmp: Path, args) -> dict:
    out: dict = {}
    delete(lay, spec)
    print("A: ducklake-infra up (fresh cluster) ...", flush=True)
    out["A"], out["phases"] = timed_up(lay, spec)
    print("C: second up (no-op) ...", flush=True)
    out["C"], _ = timed_up(lay, spec)
    print("W: warm suite run ...", flush=True)
    out["W"] = warm_suites(spec_path)
    print("R: read-only audit beside the generic scanner ...", flush=True)
    out["R"] = audit_beside_trivy(lay, spec, args.trivy)
    print("I: ingest throughput ...", flush=True)
    out["I"] = ingest(lay, spec)
    delete(lay, spec)
    print("F: floor: kind create --wait, then the Helm releases alone (fresh cluster) ...",
          flush=True)
    out["F_create"], out["F_helm"] = floor(lay, spec)
    out["F"] = out["F_create"] + out["F_helm"]
    delete(lay, spec)
    if args.baseline:
        print("B: sequential shell script of the same steps (fresh cluster) ...", flush=True)
        out["B"], out["steps"] = shell_baseline(lay, spec, tmp)
        if not args.keep:
            delete(lay, spec)
    return out


def report(n: int, r: dict) -> str:
    lines = [f"\nrun {n}", f"{'':2}{'measure':<52}{'seconds':>9}"]
    lines.append(f"  {'A  ducklake-infra up (fresh)':<52}{r['A']:>9.1f}")
    lines += [f"  {'     ' + name:<52}{took:>9.1f}  {note[:60]}" for name, took, note in r["phases"]]
    lines.append(f"  {'C  second up (no-op)':<52}{r['C']:>9.1f}")
    lines.append(f"  {'W  warm suites (no fault suite)':<52}{r['W']:>9.1f}")
    lines.append(f"  {'F  floor = kind create --wait + Helm alone':<52}{r['F']:>9.1f}"
                 f"  ({r['F_create']:.1f} + {r['F_helm']:.1f})")
    if "B" in r:
        lines.append(f"  {'B  sequential shell script, ' + str(r['steps']) + ' steps':<52}{r['B']:>9.1f}")
    lines.append(f"  A/F = {r['A'] / r['F']:.2f} (target 1.3 at most)   C/A = {r['C'] / r['A']:.3f}"
                 + (f"   A/B = {r['A'] / r['B']:.2f}" if "B" in r else ""))
    lines += ["  R  " + ln for ln in r["R"]]
    lines += ["  I  " + ln for ln in bench_ingest.report(r["I"]).splitlines()]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--trivy", default=None, help="a trivy binary to time beside the audit")
    ap.add_argument("--baseline", action="store_true",
                    help="also time the plan as a sequential shell script (B)")
    ap.add_argument("--keep", action="store_true", help="keep the bench cluster at the end")
    args = ap.parse_args()
    lay = layout.layout()
    results = []
    with tempfile.TemporaryDirectory(prefix="dli-bench-") as t:
        tmp = Path(t)
        spec_path = bench_spec(tmp)
        try:
            spec = spec_file.load(spec_path)
            for n in range(1, args.runs + 1):
                results.append(one_run(lay, spec, spec_path, tmp, args))
                print(report(n, results[-1]), flush=True)
        finally:
            spec_path.unlink(missing_ok=True)
    if len(results) > 1:
        med = {k: statistics.median(r[k] for r in results) for k in ("A", "F", "C", "W")}
        ratios = [r["A"] / r["F"] for r in results]
        ingest_ratios = [r["I"]["ratio"] for r in results]
        print(f"\nmedians of {len(results)} runs: A {med['A']:.1f} s, F {med['F']:.1f} s, "
              f"C {med['C']:.1f} s, W {med['W']:.1f} s; A/F per run "
              + ", ".join(f"{x:.2f}" for x in ratios)
              + "; ingest A/B per run " + ", ".join(f"{x:.2f}" for x in ingest_ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
