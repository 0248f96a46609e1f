#!/usr/bin/env python3
"""The auditor as its users get it: the wheel, built from this repository and installed
into a venv of its own with its runtime dependencies at the versions of uv.lock (no dev
plugins: no schemathesis, hypothesis or testinfra).

Used by tests/cluster/test_installed_auditor.py and scripts/bench_audit.py;
``python scripts/auditor_venv.py DIR`` builds one in DIR and prints the venv's path.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(argv: list[str], **kw) -> None:
    res = subprocess.run(argv, capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {res.returncode}: "
                           f"{(res.stderr or res.stdout)[-2000:]}")


def build(work: Path) -> Path:
    """A venv under ``work`` holding only the built wheel and its runtime dependencies."""
    uv = shutil.which("uv")
    if not uv:
        raise RuntimeError("uv is not on PATH (scripts/bootstrap.sh installs it)")
    work = Path(work)
    _run([uv, "build", "--wheel", "--out-dir", str(work / "dist"), str(ROOT)], timeout=300)
    wheels = list((work / "dist").glob("ducklake_infra-*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel, found {wheels}")
    _run([uv, "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project",
          "--no-emit-workspace", "-o", str(work / "constraints.txt")], cwd=ROOT, timeout=120)
    venv = work / "venv"
    _run([uv, "venv", "-q", str(venv), "--python", sys.executable], timeout=120)
    _run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
          "-c", str(work / "constraints.txt"), str(wheels[0])], timeout=900)
    return venv


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/auditor_venv.py DIR")
    print(build(Path(sys.argv[1])))
