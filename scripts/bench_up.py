#!/usr/bin/env python3
"""Time to green: our `up` against the same steps as a plain sequential shell script.

One run, same machine, same bundle, fresh kind cluster each time:

  A. ``ducklake-infra up --cluster kind`` (parallel Helm releases, skips what is current)
  B. the command list of ``ducklake-infra plan --cluster kind`` (made with no cluster, so
     it holds every step), written as a bash script and run line by line, sequentially;
     stdin of each step (manifests, generated Secrets) goes through 0600 temp files.
  C. a second ``up`` on the cluster B left (the idempotent no-op).

Prints each wall time and the ratios A/B and C/A. Uses its own kind cluster name
(``<spec name>-bench``) so it never touches the cluster of a test run.

    .venv/bin/python scripts/bench_up.py [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
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
from ducklake_infra.provision import spec_file  # noqa: E402
from ducklake_infra.provision import stack  # noqa: E402


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
                       kubeconfig_dir=lay.root / "kubeconfig")


def delete(lay: layout.Layout, spec) -> None:
    r = runner_for(lay)
    c = kind_cluster(lay, spec, r)
    if c.exists():
        c.delete()


def timed_up(lay: layout.Layout, spec) -> float:
    r = runner_for(lay)
    c = kind_cluster(lay, spec, r)
    start = time.monotonic()
    stack.up(c, spec, r, Progress(quiet=True))
    return time.monotonic() - start


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", action="store_true", help="keep the bench cluster at the end")
    args = ap.parse_args()
    lay = layout.layout()
    with tempfile.TemporaryDirectory(prefix="dli-bench-") as t:
        tmp = Path(t)
        spec_path = bench_spec(tmp)
        try:
            spec = spec_file.load(spec_path)
            delete(lay, spec)
            print("A: ducklake-infra up (fresh cluster) ...", flush=True)
            a = timed_up(lay, spec)
            delete(lay, spec)
            print("B: sequential shell script of the same steps (fresh cluster) ...", flush=True)
            b, steps = shell_baseline(lay, spec, tmp)
            print("C: second up (no-op) ...", flush=True)
            c = timed_up(lay, spec)
            if not args.keep:
                delete(lay, spec)
        finally:
            spec_path.unlink(missing_ok=True)
    print(f"\n{'run':<44}{'seconds':>10}")
    print(f"{'A  ducklake-infra up (fresh)':<44}{a:>10.1f}")
    print(f"{'B  sequential shell script, ' + str(steps) + ' steps (fresh)':<44}{b:>10.1f}")
    print(f"{'C  second up (no-op)':<44}{c:>10.1f}")
    print(f"\nA/B = {a / b:.2f}   (below 1: our up is faster than the plain script)")
    print(f"C/A = {c / a:.3f}   (the idempotent re-run as a share of a full up)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
