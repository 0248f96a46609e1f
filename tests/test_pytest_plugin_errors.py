"""The pytest plugin refuses bad input with one clear line and a non-zero exit."""

import subprocess
import sys
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from ducklake_infra.provision.bundle import layout
from ducklake_infra.suites.report import SCHEMA_FILE

ROOT = Path(__file__).resolve().parents[1]


def run_pytest(*args):
    env = {"PATH": layout.layout().path_env(), "HOME": str(Path.home())}
    return subprocess.run([sys.executable, "-m", "pytest", "ducklake_infra/suites", "-q", "-p",
                           "no:cacheprovider", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=120)


TOKEN = "s3cr3t-t0ken"
UNREACHABLE = f"""apiVersion: v1
kind: Config
current-context: dead
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:9"}}}}]
users: [{{name: u, user: {{token: {TOKEN}}}}}]
contexts: [{{name: dead, context: {{cluster: c, user: u}}}}]
"""


def _run_unusable(tmp_path, context, kubeconfig_text):
    """pytest against an unusable context, asking for every report."""
    kc = tmp_path / "kubeconfig"
    kc.write_text(kubeconfig_text)
    return run_pytest(f"--cluster={context}", f"--kubeconfig={kc}", "--readonly",
                      f"--report-dir={tmp_path / 'reports'}",
                      f"--junitxml={tmp_path / 'junit.xml'}")


def _said_once_and_reported(res, tmp_path, needle) -> str:
    """The reason: printed once (no _pytest.outcomes.Exit echo), exit 2, no traceback, in
    results.json (verdict error) and the JUnit file (one error testcase); no token anywhere."""
    import json
    import xml.etree.ElementTree as ET
    out = res.stdout + res.stderr
    assert res.returncode == 2, out
    assert out.count(needle) == 1 and "Exit" not in out and "Traceback" not in out, out
    [line] = [ln for ln in res.stderr.splitlines() if needle in ln]
    assert line.startswith("error: ")
    reason = line.removeprefix("error: ")
    doc = json.loads((tmp_path / "reports" / "results.json").read_text())
    assert doc["error"] == reason and doc["verdict"] == "error" and not doc["conformant"]
    schema = json.loads(SCHEMA_FILE.read_text())
    assert not list(Draft202012Validator(schema).iter_errors(doc))
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("tests") == "1"
    [case] = suite.findall("testcase")
    assert case.find("error").get("message") == reason
    html = (tmp_path / "reports" / "report.html").read_text()
    for text in (out, json.dumps(doc), (tmp_path / "junit.xml").read_text(), html):
        assert TOKEN not in text
    return reason


def test_unknown_context(tmp_path):
    res = _run_unusable(tmp_path, "prod",
                        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    reason = _said_once_and_reported(res, tmp_path, "unknown kube context 'prod'")
    assert "(it has no contexts)" in reason


def test_unreachable_api_server(tmp_path):
    res = _run_unusable(tmp_path, "dead", UNREACHABLE)
    reason = _said_once_and_reported(res, tmp_path, "is unreachable or refused us")
    assert reason.startswith("API server of context 'dead' is unreachable or refused us: ")


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
    env = {"PATH": layout.layout().path_env(), "HOME": str(Path.home())}
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


def test_the_plugin_stays_quiet_in_another_projects_tests(tmp_path):
    """Installed in a shared venv, the plugin loads for every pytest run: without
    --cluster it adds no header line, collects nothing of ours, writes no report."""
    (tmp_path / "test_theirs.py").write_text("def test_x():\n    assert True\n")
    env = {"PATH": layout.layout().path_env(), "HOME": str(Path.home())}
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
                         cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stdout[-2000:]
    # (pytest itself lists the plugin among "plugins:"; our header line is absent)
    assert "1 passed" in res.stdout and "stack spec" not in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "__pycache__") == ["test_theirs.py"]
