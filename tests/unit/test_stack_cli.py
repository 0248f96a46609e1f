"""The stack subcommands plug into the product CLI with one register() call."""

from __future__ import annotations

import argparse

import pytest

from ducklake_infra.provision import stack_cli
from ducklake_infra.provision.errors import DucklakeInfraError


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
