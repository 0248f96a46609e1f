"""Fixtures for chart tests: the bundle's helm and MinIO chart, rendered manifests.

These tests FAIL (not skip) when helm or the bundle's MinIO chart is missing:
the bundle is a prerequisite of the project, built by `ducklake-infra bundle build`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.provision import render
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins

K8S_SCHEMA_VERSION = "1.34.0"       # kubernetes-validate's schemas for the pinned minor


def _helm_path() -> Path | None:
    p = layout.layout().tool("helm")
    if p.is_file():
        return p
    found = shutil.which("helm")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def helm() -> Path:
    p = _helm_path()
    if p is None:
        pytest.fail(f"helm not found at {layout.layout().tool('helm')} nor on PATH: run "
                    f"`ducklake-infra bundle build` (builds helm {pins.HELM_VERSION})",
                    pytrace=False)
    return p


@pytest.fixture(scope="session")
def spec() -> StackSpec:
    return spec_file.load()


@pytest.fixture(scope="session")
def opts() -> render.Options:
    return render.Options(layout=layout.layout())


@pytest.fixture(scope="session")
def minio_chart(opts) -> Path:
    p = opts.layout.chart("minio")
    if not (p / "Chart.yaml").is_file():
        pytest.fail(f"MinIO chart missing at {p}: run `ducklake-infra bundle build`",
                    pytrace=False)
    return p


def helm_args(spec: StackSpec, opts: render.Options, key: str) -> tuple[str, str, list[str]]:
    """(release, chart dir, values+override args) exactly as `up` passes them."""
    rel = spec.releases[key]
    argv, _ = render.helm_upgrade_argv(["helm"], spec, rel, render.image_refs(spec, opts), opts)
    i = argv.index("--namespace")
    tail = argv[i:]
    for flag in ("--wait",):
        if flag in tail:
            tail.remove(flag)
    if "--timeout" in tail:
        j = tail.index("--timeout")
        del tail[j:j + 2]
    return rel.name, argv[argv.index("--install") + 2], tail


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess:
    res = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.fail(f"helm {' '.join(args[:3])} failed (exit {res.returncode}):\n"
                    f"{res.stderr.strip() or res.stdout.strip()}", pytrace=False)
    return res


def render_chart(helm: Path, spec, opts, key: str, *extra: str) -> list[dict]:
    """The release's objects as `up` would install them (``extra``: more helm arguments)."""
    name, chart, args = helm_args(spec, opts, key)
    kube_version = pins.K8S_VERSION.lstrip("v")
    res = run_helm(helm, "template", name, chart, *args, *extra, "--kube-version", kube_version)
    return [d for d in yaml.safe_load_all(res.stdout) if d]


@pytest.fixture(scope="session")
def minio_objects(helm, spec, opts, minio_chart) -> list[dict]:
    return render_chart(helm, spec, opts, "minio")


@pytest.fixture(scope="session")
def postgres_objects(helm, spec, opts) -> list[dict]:
    return render_chart(helm, spec, opts, "postgresql")
