"""CLI surface: help text, one-line errors, exit codes."""

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("flag", [["--json"], ["-o", "json"]])
def test_status_json_shape(tmp_path, flag):
    import json
    import os
    env = dict(os.environ, DUCKLAKE_INFRA_CACHE=str(tmp_path / "empty-cache"))
    res = run_cli("bundle", "status", *flag, env=env)
    data = json.loads(res.stdout)
    assert res.returncode == 1  # an empty cache has missing artifacts
    names = [a["name"] for a in data["artifacts"]]
    assert "bin/kind" in names and "chart/minio" in names
    assert any(n.startswith("image/ducklake-infra/kind-node:") for n in names)
    for a in data["artifacts"]:
        assert set(a) == {"name", "version", "source", "id", "present", "state", "detail", "sbom"}
    assert not any(a["present"] for a in data["artifacts"] if a["name"].startswith("bin/"))


def test_parser_builds():
    assert cli.build_parser().prog == "ducklake-infra"


def test_a_broken_import_shows_itself():
    """A subcommand module that fails to import is a bug: its ImportError shows, not
    argparse's "invalid choice" for every command it registers."""
    code = ("import sys; sys.modules['ducklake_infra.provision.stack'] = None\n"
            "from ducklake_infra.provision import cli\n"
            "sys.exit(cli.main(['plan', '--cluster', 'kind']))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode != 0
    assert "invalid choice" not in res.stderr
    assert "Error: import of ducklake_infra.provision.stack halted" in res.stderr


def _all_parsers(parser):
    """The parser and every subcommand's parser, depth first."""
    import argparse
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_help_is_plain_text():
    """--help of every command: no reStructuredText from docstrings (``x``, `x`, :func:)."""
    import re
    helps = [p.format_help() for p in _all_parsers(cli.build_parser())]
    assert len(helps) >= 10
    for text in helps:
        assert "`" not in text and not re.search(r":\w+:`|\*\*", text), text


@pytest.mark.parametrize("argv", [
    ["--cache-dir", "/c", "plan", "--cluster", "kind"],
    ["plan", "--cluster", "kind", "--cache-dir", "/c"],
    ["plan", "--cache-dir", "/c", "--cluster", "kind"],
    ["--cache-dir", "/c", "bundle", "status"],
    ["bundle", "status", "--cache-dir", "/c"],
    ["bundle", "--cache-dir", "/c", "status"],
    ["images", "push", "--registry", "r.example/x", "--cache-dir", "/c"],
])
def test_global_options_before_or_after_the_command(argv):
    assert cli.build_parser().parse_args(argv).cache_dir == "/c"


@pytest.mark.parametrize("argv", [["plan", "--cluster", "kind"], ["bundle", "status"]])
def test_global_option_default_when_not_given(argv):
    assert cli.build_parser().parse_args(argv).cache_dir is None


def _closed_pipe_run(*args, env=None):
    """Run the CLI with stdout a pipe whose reader is already gone (``| head`` done)."""
    import os
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "ducklake_infra.provision.cli", *args],
                              stdout=w, stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    finally:
        os.close(w)


@pytest.mark.parametrize("args", [["--help"], ["plan", "--cluster", "kind"]])
def test_closed_pipe_exits_quietly(args, tmp_path):
    """`ducklake-infra plan --cluster kind | head -1`: no BrokenPipeError traceback, exit
    141 (128 + SIGPIPE, as for any tool a closed pipe stops)."""
    fake = tmp_path / "bin"          # plan reads the local base image ID: docker answers
    fake.mkdir()                     # "no such image"; kind is absent, so plan lists all
    (fake / "docker").write_text("#!/bin/sh\nexit 1\n")
    (fake / "docker").chmod(0o755)
    env = {"PATH": str(fake), "HOME": str(tmp_path), "DUCKLAKE_INFRA_CACHE": str(tmp_path / "c")}
    res = _closed_pipe_run(*args, env=env)
    assert res.returncode == 141, res.stderr
    assert "Traceback" not in res.stderr and "BrokenPipe" not in res.stderr, res.stderr
    assert not [ln for ln in res.stderr.splitlines() if not ln.startswith(("stack spec: ",
                                                                            "note: "))]


def test_version():
    import ducklake_infra
    res = run_cli("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"ducklake-infra {ducklake_infra.__version__}"


pytest_plugins = ["pytester"]


@pytest.mark.parametrize("cache", ["cache-a", None])
def test_cli_and_plugin_use_the_same_kind_kubeconfig(pytester, tmp_path, monkeypatch, cache):
    """Issue 12: with --cache-dir, pytest and `ducklake-infra up` looked for the kind
    cluster's kubeconfig in different folders. Both now go through select_cluster."""
    import argparse
    from pathlib import Path

    from ducklake_infra.provision import spec_file
    from ducklake_infra.provision import stack_cli
    from ducklake_infra.provision.bundle import layout
    from ducklake_infra.provision.cluster import KindCluster
    from ducklake_infra.provision.runner import Runner

    root = Path(__file__).resolve().parents[2]
    if cache is None:                        # the default cache, moved by the environment
        monkeypatch.setenv("DUCKLAKE_INFRA_CACHE", str(tmp_path / "env-cache"))
    cache_dir = str(tmp_path / cache) if cache else None
    seen = {}
    monkeypatch.setattr(KindCluster, "ensure", lambda self: seen.setdefault("plugin", self.kubeconfig))
    monkeypatch.setattr(Runner, "which", lambda self, name: f"/fake/{name}")
    test = pytester.makepyfile("def test_x(cluster):\n    pass\n")
    opts = [f"--cache-dir={cache_dir}"] if cache_dir else []
    res = pytester.runpytest_inprocess(str(test), "--cluster=kind", *opts, f"--stack={root / 'stack.yaml'}",
                                       "-p", "no:cacheprovider", "-p", "no:html")
    res.assert_outcomes(passed=1)
    args = argparse.Namespace(cluster="kind", cache_dir=cache_dir, kubeconfig=None)
    cli_cluster = stack_cli.make_cluster(args, spec_file.load(root / "stack.yaml"), Runner())
    assert seen["plugin"] == cli_cluster.kubeconfig == \
        layout.layout(cache_dir).root / "kubeconfig" / "kind-ducklake.yaml"
