"""CLI surface: help text, one-line errors, exit codes."""

import subprocess
import sys

from ducklake_infra.provision import cli


def run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ducklake_infra.provision.cli", *args], capture_output=True,
                          text=True, env=env)


def test_help_explains_commands():
    res = run_cli("--help")
    assert res.returncode == 0
    for word in ("bundle", "DUCKLAKE_INFRA_CACHE", "examples"):
        assert word in res.stdout
    res = run_cli("bundle", "build", "--help")
    assert res.returncode == 0 and "--skip-host" in res.stdout


def test_unknown_command_is_a_usage_error():
    res = run_cli("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_status_json_shape(tmp_path):
    import json
    import os
    env = dict(os.environ, DUCKLAKE_INFRA_CACHE=str(tmp_path / "empty-cache"))
    res = run_cli("bundle", "status", "--json", env=env)
    data = json.loads(res.stdout)
    assert res.returncode == 1  # an empty cache has missing artifacts
    names = [a["name"] for a in data["artifacts"]]
    assert "bin/kind" in names and "chart/minio" in names
    assert any(n.startswith("image/ducklake-infra/kind-node:") for n in names)
    for a in data["artifacts"]:
        assert set(a) == {"name", "version", "source", "id", "present", "state", "detail"}
    assert not any(a["present"] for a in data["artifacts"] if a["name"].startswith("bin/"))


def test_parser_builds():
    assert cli.build_parser().prog == "ducklake-infra"
