"""The stack subcommands plug into the product CLI with one register() call."""

from __future__ import annotations

import argparse
import json

import pytest

from ducklake_infra.provision import stack_cli
from ducklake_infra.provision.errors import DucklakeInfraError

from .fakes import FakeRunner, minio_only_runner


def _parser():
    p = argparse.ArgumentParser()
    p.add_argument("--cache-dir")
    sub = p.add_subparsers(dest="command", required=True)
    stack_cli.register(sub)
    return p


@pytest.mark.parametrize("cmd", ["up", "down", "status", "plan"])
def test_subcommands_registered_and_cluster_required(cmd, capsys):
    p = _parser()
    with pytest.raises(SystemExit):
        p.parse_args([cmd])
    assert "--cluster" in capsys.readouterr().err
    args = p.parse_args([cmd, "--cluster", "kind"])
    assert callable(args.func)


def test_image_overrides_parse():
    assert stack_cli.parse_images(["backend=r/b:1", "minio=r/m:2"]) == {
        "backend": "r/b:1", "minio": "r/m:2"}
    with pytest.raises(DucklakeInfraError, match="expected KEY=REF"):
        stack_cli.parse_images(["backend"])


def test_down_on_real_context_needs_yes():
    args = _parser().parse_args(["down", "--cluster", "prod"])
    with pytest.raises(DucklakeInfraError, match="add --yes"):
        args.func(args)


def test_kind_rejects_kubeconfig(spec):
    args = _parser().parse_args(["up", "--cluster", "kind", "--kubeconfig", "/x"])
    with pytest.raises(DucklakeInfraError, match="--kubeconfig only applies"):
        stack_cli.make_cluster(args, spec, None)


def test_product_cli_has_the_stack_commands():
    from ducklake_infra.provision.cli import build_parser
    args = build_parser().parse_args(["plan", "--cluster", "kind"])
    assert args.func is stack_cli.cmd_plan


def test_up_on_real_context_needs_registry_then_yes():
    p = _parser()
    args = p.parse_args(["up", "--cluster", "prod"])
    with pytest.raises(DucklakeInfraError, match="Pass --registry HOST"):
        args.func(args)
    args = p.parse_args(["up", "--cluster", "prod", "--registry", "reg.example/team"])
    with pytest.raises(DucklakeInfraError, match=r"review `ducklake-infra plan --cluster prod "
                       r"--registry reg.example/team`.*add --yes"):
        args.func(args)
    args = p.parse_args(["plan", "--cluster", "prod"])
    with pytest.raises(DucklakeInfraError, match="Pass --registry HOST"):
        args.func(args)


def test_images_push_registered():
    args = _parser().parse_args(["images", "push", "--registry", "localhost:5000/x"])
    assert args.func is stack_cli.cmd_images_push
    assert stack_cli._registry(args).insecure


def test_one_runner_helper_for_every_command(tmp_path):
    """The bundle and stack commands make their runners with one function (bundle bin/
    first on PATH, GOTOOLCHAIN=local, a log per command)."""
    from ducklake_infra.provision import cli, cli_common
    assert stack_cli.make_runner is cli.make_runner is cli_common.make_runner
    args = cli.build_parser().parse_args(["--cache-dir", str(tmp_path), "plan", "--cluster",
                                          "kind"])
    r = stack_cli.make_runner(args, "plan", dry_run=True)
    assert r.base_env["PATH"].startswith(str(tmp_path / "bin")) and r.dry_run
    assert "GOTOOLCHAIN" in r.base_env and r.log_path.parent == tmp_path / "logs"


def _fake_runners(monkeypatch, make):
    """Every runner a stack command makes is ``make(dry_run=...)`` (a FakeRunner)."""
    monkeypatch.setattr(stack_cli, "make_runner",
                        lambda args, name, *, readonly=False, dry_run=False: make(dry_run))


def _no_cluster(dry_run):
    r = FakeRunner(dry_run=dry_run)
    r.on(r"^kind get clusters", stdout="")
    r.on(r"^docker image inspect", rc=1, stderr="No such image")
    return r


def test_plan_json_lists_commands_with_stdin_and_counts(monkeypatch, capsys, fake_layout):
    from ducklake_infra.provision import cli
    _fake_runners(monkeypatch, _no_cluster)
    argv = ["--cache-dir", str(fake_layout.root), "plan", "--cluster", "kind"]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out.splitlines()
    assert cli.main([*argv, "-o", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)     # stdout is one JSON document
    cmds = doc["commands"]
    assert doc["command"] == "ducklake-infra up --cluster kind"
    assert doc["counts"] == {"commands": len(cmds), "reads": sum(c["read"] for c in cmds),
                             "with_stdin": sum(bool(c["stdin"]) for c in cmds),
                             "image_pushes": 0}
    assert doc["counts"]["reads"] and doc["counts"]["with_stdin"]
    assert cmds[0] == {"argv": ["kind", "get", "clusters"], "line": "kind get clusters",
                       "read": True, "stdin": []}
    assert any("Secret storage/minio-root" in c["stdin"] for c in cmds)
    # the text default is unchanged: a header, then the same commands one per line (the
    # releases are planned in parallel: their commands may come in another order)
    assert text[0].startswith(f"# `ducklake-infra up --cluster kind` would run ({len(cmds)} "
                              "commands;")
    assert sorted(ln.split("   # ")[0] for ln in text[1:]) == sorted(c["line"] for c in cmds)


def test_status_json_has_the_facts_status_prints(monkeypatch, capsys):
    from ducklake_infra.provision import cli
    _fake_runners(monkeypatch, lambda dry_run: minio_only_runner())
    assert cli.main(["status", "--cluster", "prod"]) == 1
    text = capsys.readouterr().out
    assert cli.main(["status", "--cluster", "prod", "-o", "json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["cluster"] == "prod" and doc["exists"] is True
    minio, pg = doc["releases"]
    assert minio == {"namespace": "storage", "name": "minio", "want": "minio-5.4.0",
                     "installed": True, "status": "deployed", "chart": "minio-5.4.0",
                     "app_version": "x", "revision": 1, "ok": True}
    assert pg["installed"] is False and pg["ok"] is False
    storage = next(n for n in doc["namespaces"] if n["name"] == "storage")
    assert storage["pods"] == [{"name": "minio-1", "phase": "Running", "ready": 1,
                                "containers": 1, "ok": True, "node": None, "role": None}]
    assert doc["nodes"] == {"error": None, "items": []}
    assert doc["backend"] == {"namespace": "ducklake", "deployment": "ducklake-backend",
                              "found": True, "replicas": 1, "ready": 1, "image": "i",
                              "ok": True}
    # the text default says the same
    assert "release storage/postgresql: NOT INSTALLED (want postgresql-0.1.0)" in text
    assert "pod storage/minio-1: Running 1/1 ready" in text and "status: NOT READY" in text


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if not ln.startswith("stack spec: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_unknown_image_key_is_refused(capsys, spec):
    from ducklake_infra.provision import cli
    assert cli.main(["plan", "--cluster", "kind", "--image", "nosuchkey=x:1"]) == 2
    keys = ", ".join(sorted([*spec.images, "backend"]))
    assert _one_error_line(capsys) == (f"error: --image 'nosuchkey=x:1': unknown image key "
                                       f"'nosuchkey' (keys: {keys})")
    assert stack_cli.parse_images(["minio=r/m:1", "backend=r/b:1"], keys.split(", ")) == {
        "minio": "r/m:1", "backend": "r/b:1"}


@pytest.mark.parametrize("argv", [["status", "--cluster", "kind"],
                                  ["down", "--cluster", "kind"],
                                  ["up", "--cluster", "kind"],
                                  ["status", "--cluster", "prod"]])
def test_missing_bundle_says_how_to_build_it(argv, tmp_path, monkeypatch, capsys):
    from ducklake_infra.provision import cli
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert cli.main([*argv, "--cache-dir", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "kubectl, helm" in line and ("kind" in line) == (argv[2] == "kind")
    assert f"Looked in the bundle ({tmp_path / 'bin'}) and on PATH" in line
    assert line.endswith(f"build the bundle: ducklake-infra --cache-dir {tmp_path} bundle build")
