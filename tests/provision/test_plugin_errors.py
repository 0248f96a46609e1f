"""The pytest plugin refuses bad input with one clear line and a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import layout as L

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args):
    env = {"PATH": L.layout().path_env(), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pytest", "ducklake_infra/suites", "-q", "-p",
                           "no:cacheprovider", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)


def test_unknown_context(tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    res = run_pytest("--cluster=prod", f"--kubeconfig={kc}", "--readonly")
    assert res.returncode == 2
    assert "unknown kube context 'prod'" in res.stdout + res.stderr


def test_unreachable_api_server(tmp_path):
    kc = tmp_path / "kubeconfig"
    kc.write_text("""apiVersion: v1
kind: Config
current-context: dead
clusters: [{name: c, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: u, user: {token: s3cr3t-t0ken}}]
contexts: [{name: dead, context: {cluster: c, user: u}}]
""")
    res = run_pytest("--cluster=dead", f"--kubeconfig={kc}", "--readonly")
    assert res.returncode == 2
    out = res.stdout + res.stderr
    assert "unreachable" in out and "s3cr3t-t0ken" not in out
    assert "Traceback" not in out


@pytest.mark.parametrize("args,needle", [
    (["--readonly"], "--readonly audits an existing cluster"),
    (["--cluster=prod", "--keep-cluster"], "--keep-cluster only applies"),
    (["--kubeconfig=/nonexistent"], "--kubeconfig only applies"),
])
def test_conflicting_options_are_usage_errors(args, needle):
    res = run_pytest(*args)
    assert res.returncode == 4, res.stdout + res.stderr
    assert needle in res.stdout + res.stderr


def _pytest_raw(*args):
    env = {"PATH": L.layout().path_env(), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("target", ["tests", "tests/cluster/test_bringup.py", ".", "ducklake_infra/suites/../../tests"])
def test_readonly_refuses_targets_outside_the_suites(target):
    """Finding 6: under --readonly nothing outside the conformance suites may run."""
    res = _pytest_raw(target, "--cluster=prod", "--readonly", "--collect-only")
    assert res.returncode == 4, res.stdout + res.stderr
    assert "--readonly runs the conformance suites only" in res.stdout + res.stderr


def test_readonly_without_paths_collects_only_the_suites():
    res = _pytest_raw("--cluster=prod", "--readonly", "--collect-only")
    ids = [line for line in res.stdout.splitlines() if "::" in line]
    assert ids and all(i.startswith("ducklake_infra/suites/") for i in ids), res.stdout[-2000:]
    res_all = _pytest_raw("--cluster=prod", "--collect-only")  # control: tests/ exists
    assert any(line.startswith("tests/") for line in res_all.stdout.splitlines())


def test_the_plugin_runs_without_pytest_html():
    """`-p no:html` used to end in INTERNALERROR (a pytest-html hook not marked optional)."""
    res = _pytest_raw("ducklake_infra/suites", "--cluster=prod", "--readonly", "--collect-only", "-p", "no:html")
    assert res.returncode == 0 and "INTERNALERROR" not in res.stdout + res.stderr, res.stdout[-800:]
