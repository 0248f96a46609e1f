"""The pytest plugin refuses bad input with one clear line and a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest

from provision.bundle import layout as L

ROOT = Path(__file__).resolve().parents[2]


def run_pytest(*args):
    env = {"PATH": L.layout().path_env(), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pytest", "suites", "-q", "-p",
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
