#!/usr/bin/env python3
"""How long the read-only audit takes, against floors measured in the same run.

On a running stack (default: the kind cluster of the spec, context kind-<name>):

  A. ``pytest --cluster=CONTEXT --readonly`` from an empty directory (the audit, whole),
     run by the installed auditor (``scripts/auditor_venv.py``: the wheel in a venv of its
     own, as users get it) and, for comparison, by the development venv (whose dev
     plugins -- schemathesis, hypothesis, testinfra -- load at every pytest start)
  B. the read floor: one ``kubectl get <every kind the audit reads> -o json`` per stack
     namespace plus ``helm list``, sequentially (what any audit of these objects must read)
  C. the process floor: ``python -c "import pytest, ducklake_infra.pytest_plugin"``
  D. with ``--trivy PATH``: a generic scanner on the same namespaces, ``trivy k8s
     --scanners misconfig`` offline (no node collector, no check update); build it with
     the command in the README ("Time to green")

Each is run ``--runs`` times (default 3); prints the median wall time of each and the
ratios A/B and A/(B+C). These machines are noisy: only the ratios are comparable.

    .venv/bin/python scripts/bench_audit.py [--context kind-ducklake] [--kubeconfig F] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ducklake_infra.provision import spec_file  # noqa: E402
from ducklake_infra.provision.bundle import layout  # noqa: E402
from ducklake_infra.suites.live import GATHER_KINDS, stack_namespaces  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
import bench_args  # noqa: E402
import auditor_venv  # noqa: E402


def timed(argv: list[str], cwd: Path | None = None, env: dict | None = None) -> float:
    start = time.monotonic()
    res = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.monotonic() - start
    if res.returncode not in (0, 1):
        sys.exit(f"error: {' '.join(argv[:4])}... exited {res.returncode}: "
                 f"{(res.stderr or res.stdout).strip().splitlines()[-1:]}")
    return took


def main() -> int:
    spec = spec_file.load()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    bench_args.add_cluster_args(p, spec)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--trivy", default=None, help="a trivy binary to time beside the audit")
    args = p.parse_args()
    env = {"PATH": layout.layout().path_env(), "HOME": str(Path.home())}
    kc = ["--kubeconfig", args.kubeconfig, "--context", args.context]
    every = ",".join(r for r, _ in GATHER_KINDS) + ",secrets"
    floor_reads = [["kubectl", *kc, "-n", ns, "get", every, "-o", "json"]
                   for ns in stack_namespaces(spec)]
    floor_reads.append(["helm", "--kubeconfig", args.kubeconfig, "--kube-context", args.context,
                        "list", "-A", "-o", "json"])
    trivy = [args.trivy, "k8s", "--kubeconfig", args.kubeconfig, "--include-namespaces",
             ",".join(stack_namespaces(spec)), "--scanners", "misconfig", "--disable-node-collector",
             "--skip-check-update", "--disable-telemetry", "--report", "summary", args.context]
    audit, dev, reads, proc, scanner = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        venv = auditor_venv.build(Path(tmp) / "auditor")
        py = str(venv / "bin" / "python")
        empty = Path(tmp) / "empty"
        empty.mkdir()
        # one untimed run: a fresh venv compiles its bytecode on first use, users pay that once
        timed([str(venv / "bin" / "pytest"), f"--cluster={args.context}",
               f"--kubeconfig={args.kubeconfig}", "--readonly", "-q", "-p", "no:cacheprovider",
               f"--report-dir={tmp}/reports"], cwd=empty, env=env)
        for _ in range(args.runs):
            for bin_dir, out in ((venv / "bin", audit), (ROOT / ".venv" / "bin", dev)):
                out.append(timed([str(bin_dir / "pytest"), f"--cluster={args.context}",
                                  f"--kubeconfig={args.kubeconfig}", "--readonly", "-q",
                                  "-p", "no:cacheprovider", f"--report-dir={tmp}/reports"],
                                 cwd=empty, env=env))
            reads.append(sum(timed(a, env=env) for a in floor_reads))
            proc.append(timed([py, "-c", "import pytest, ducklake_infra.pytest_plugin"], env=env))
            if args.trivy:
                scanner.append(timed([*trivy, "--cache-dir", f"{tmp}/trivy-cache"], env=env))
    a, d, b, c = (statistics.median(x) for x in (audit, dev, reads, proc))
    print(f"A audit, installed (pytest --readonly) {a:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in audit)}")
    print(f"  the same from the dev venv           {d:6.2f} s   runs: {', '.join(f'{x:.2f}' for x in dev)}")
    print(f"B read floor (kubectl + helm)          {b:6.2f} s")
    print(f"C process floor (python + imports)     {c:6.2f} s")
    print(f"A/B = {a / b:.2f}   A/(B+C) = {a / (b + c):.2f}   dev/A = {d / a:.2f}")
    if scanner:
        t = statistics.median(scanner)
        print(f"D trivy k8s --scanners misconfig       {t:6.2f} s   runs: "
              f"{', '.join(f'{x:.2f}' for x in scanner)}")
        print(f"A/D = {a / t:.2f}   (the audit beside the generic scanner, same namespaces)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
