"""The ``up``, ``down``, ``status`` and ``plan`` subcommands of ``ducklake-infra``.

``ducklake_infra/provision/cli.py`` calls :func:`register` once with its subparsers; each
subcommand sets ``func`` (called with the parsed args, returns the exit code).
"""

from __future__ import annotations

import argparse
import sys

from ducklake_infra.provision import oci, spec_file, stack, status
from ducklake_infra.provision import render
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.cluster import select_cluster
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.cli_common import layout_of, make_runner, output_option, print_json
from ducklake_infra.provision.runner import PlannedCommand, Runner, require_tools
from ducklake_infra.provision.spec import StackSpec


def _common(p: argparse.ArgumentParser, real_needs_yes: bool = False) -> None:
    p.add_argument("--cluster", required=True, metavar="kind|CONTEXT",
                   help="'kind': the spec's kind cluster (created if absent); any other value "
                        "is an existing kube context (never created or deleted)")
    p.add_argument("--kubeconfig", default=None,
                   help="kubeconfig file for --cluster CONTEXT (default: kubectl's)")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help=f"stack spec (default: ${spec_file.SPEC_ENV}, else ./stack.yaml, else the "
                        "packaged default)")


def _image_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", action="append", default=[], metavar="KEY=REF",
                   help="override an image of the spec (keys: minio, mc, postgresql, "
                        "python-base, backend); repeatable")
    p.add_argument("--online", action="store_true",
                   help="install charts from their online repositories, not the bundle")
    _registry_opts(p)


def _registry_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", default=None, metavar="HOST[:PORT]/PREFIX",
                   help="push the stack images there (skipping those already present by "
                        "digest) and install them by digest; needed for a cluster that is "
                        "not kind. Credentials: your Docker configuration (docker login)")
    p.add_argument("--plain-http", action="store_true",
                   help="the registry speaks plain http (automatic for localhost/127.x)")


def register(sub) -> None:
    """Add up, down, status and plan to the ``ducklake-infra`` subparsers."""
    p = sub.add_parser("up", help="install or update the stack (idempotent)")
    _common(p)
    _image_opts(p)
    p.add_argument("--yes", action="store_true",
                   help="confirm changing a cluster that is not kind (run plan first)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("plan", help="print every command 'up' would run; change nothing")
    _common(p)
    _image_opts(p)
    output_option(p)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("down", help="uninstall the stack (kind: delete the spec's cluster)")
    _common(p)
    p.add_argument("--keep-cluster", action="store_true",
                   help="kind: uninstall the releases and the backend but keep the cluster")
    p.add_argument("--yes", action="store_true",
                   help="confirm removing the stack from a cluster that is not kind")
    p.add_argument("--purge", action="store_true",
                   help="not kind: also delete the PVCs (the data), the Secrets we generated "
                        "and the namespaces we created")
    p.set_defaults(func=cmd_down)

    p = sub.add_parser("images", help="the stack images in a registry")
    isub = p.add_subparsers(dest="images_command", metavar="ACTION")
    isub.required = True
    p = isub.add_parser("push", help="build the backend if needed, push every stack image "
                        "the registry lacks (by digest), print the digest references")
    p.add_argument("--spec", default=None, metavar="FILE",
                   help=f"stack spec (default: ${spec_file.SPEC_ENV}, else ./stack.yaml, else the "
                        "packaged default)")
    p.add_argument("--image", action="append", default=[], metavar="KEY=REF",
                   help="override an image of the spec; repeatable")
    _registry_opts(p)
    p.set_defaults(func=cmd_images_push)

    p = sub.add_parser("status", help="releases, chart versions and pod readiness")
    _common(p)
    output_option(p)
    p.set_defaults(func=cmd_status)


# ---- helpers -----------------------------------------------------------------------
def load_spec(args) -> StackSpec:
    """The stack spec the command uses; which file and why go to stderr (stdout stays
    the command's own output)."""
    path, how = spec_file.locate(args.spec)
    print(f"stack spec: {path} ({how})", file=sys.stderr)
    return spec_file.load(path)


def make_cluster(args, spec: StackSpec, runner: Runner):
    return select_cluster(runner, layout_of(args).root, args.cluster,
                          kind_name=spec.kind_cluster, node_image=layout.NODE_IMAGE,
                          kubeconfig=args.kubeconfig, workers=spec.kind_workers)


def require_bundle(args, runner: Runner) -> None:
    """The tools a command runs against a cluster come from the bundle: a missing one
    is an error that says where we looked and which command builds them."""
    cache = f" --cache-dir {args.cache_dir}" if getattr(args, "cache_dir", None) else ""
    require_tools(runner, ["kind"] * (args.cluster == "kind") + ["kubectl", "helm"],
                  f"Looked in the bundle ({layout_of(args).bin}) and on PATH; build the "
                  f"bundle: ducklake-infra{cache} bundle build")


def image_keys(spec: StackSpec) -> list[str]:
    """What --image may override: the spec's images and the backend."""
    return sorted({*spec.images, render.BACKEND_IMAGE_KEY})


def parse_images(items: list[str], keys: list[str] | None = None) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, ref = item.partition("=")
        if not sep or not key or not ref:
            raise DucklakeInfraError(f"--image {item!r}: expected KEY=REF, e.g. "
                                     "--image backend=registry.example/ducklake-backend:1.0")
        if keys is not None and key not in keys:
            raise DucklakeInfraError(f"--image {item!r}: unknown image key {key!r} "
                                     f"(keys: {', '.join(keys)})")
        out[key] = ref
    return out


def _registry(args) -> "oci.Registry | None":
    if not getattr(args, "registry", None):
        return None
    return oci.parse_registry(args.registry, insecure=True if args.plain_http else None)


def _options(args, spec: StackSpec) -> render.Options:
    return render.Options(layout=layout_of(args), images=parse_images(args.image, image_keys(spec)),
                         online=getattr(args, "online", False), registry=_registry(args))


def check_real_context(args, opts: render.Options, verb: str = "up") -> None:
    """A cluster that is not kind: images must come from a registry, and changes need --yes."""
    if args.cluster == "kind":
        return
    if opts.registry is None and render.BACKEND_IMAGE_KEY not in opts.images:
        raise DucklakeInfraError(
            f"context {args.cluster!r} is not a kind cluster: images cannot be loaded into it. "
            "Pass --registry HOST[:PORT]/PREFIX (a registry the cluster pulls from, e.g. "
            "--registry registry.example.com/team/ducklake; up pushes the images there and "
            "installs them by digest), or --image backend=<ref> and "
            "--image minio=/mc=/postgresql=<ref>")
    if verb == "up" and not args.yes:
        reg = f" --registry {args.registry}" if opts.registry else ""
        kc = f" --kubeconfig {args.kubeconfig}" if args.kubeconfig else ""
        raise DucklakeInfraError(
            f"up on context {args.cluster!r} changes a cluster we do not own: review "
            f"`ducklake-infra plan --cluster {args.cluster}{kc}{reg}` (every push and install), "
            "then add --yes")


def plan_document(up_cmd: str, cmds: list[PlannedCommand]) -> dict:
    """``plan -o json``: every command (argv, shell line, read or not, the objects on its
    stdin) and the counts."""
    return {"command": up_cmd,
            "counts": {"commands": len(cmds), "reads": sum(c.read for c in cmds),
                       "with_stdin": sum(bool(c.stdin) for c in cmds),
                       "image_pushes": sum(c.argv[:2] == ["docker", "push"] for c in cmds)},
            "commands": [{"argv": c.argv, "line": c.shell, "read": c.read,
                          "stdin": list(c.stdin)} for c in cmds]}


# ---- commands ----------------------------------------------------------------------
def cmd_up(args) -> int:
    spec = load_spec(args)
    opts = _options(args, spec)
    check_real_context(args, opts, "up")
    runner = make_runner(args, "up")
    require_bundle(args, runner)
    progress = Progress(log_path=runner.log_path)
    progress.say(f"log: {runner.log_path}")
    cluster = make_cluster(args, spec, runner)
    stack.up(cluster, spec, runner, progress, opts)
    return 0


def cmd_plan(args) -> int:
    spec = load_spec(args)
    opts = _options(args, spec)
    check_real_context(args, opts, "plan")
    runner = make_runner(args, "plan", dry_run=True)
    progress = Progress(quiet=True)
    cluster = make_cluster(args, spec, runner)
    cmds = stack.plan_commands(cluster, spec, runner, progress, opts)
    opts_shown = (f" --kubeconfig {args.kubeconfig}" if args.kubeconfig else "") + \
        (f" --registry {args.registry}" if opts.registry else "")
    up_cmd = f"ducklake-infra up --cluster {args.cluster}{opts_shown}"
    doc = plan_document(up_cmd, cmds)
    if args.output == "json":
        print_json(doc)
        return 0
    n = doc["counts"]
    print(f"# `{up_cmd}` would run ({n['commands']} commands; secret values go on stdin, never "
          f"in arguments; {n['image_pushes']} image pushes):")
    for c in cmds:
        print(c.line)
    return 0


def cmd_down(args) -> int:
    spec = load_spec(args)
    if args.cluster != "kind" and not args.yes:
        raise DucklakeInfraError(f"down on context {args.cluster!r} removes the stack from a "
                                 "cluster we do not own: add --yes to confirm")
    runner = make_runner(args, "down")
    require_bundle(args, runner)
    progress = Progress(log_path=runner.log_path)
    cluster = make_cluster(args, spec, runner)
    if not cluster.is_kind:
        cluster.ensure()
    if args.purge and cluster.is_kind and not args.keep_cluster:
        raise DucklakeInfraError("--purge applies to a kept kind cluster (--keep-cluster) or a "
                                 "context; without --keep-cluster the kind cluster goes whole")
    print(stack.down(cluster, spec, runner, progress, keep_cluster=args.keep_cluster,
                     purge=args.purge))
    return 0


def cmd_images_push(args) -> int:
    spec = load_spec(args)
    opts = _options(args, spec)
    if opts.registry is None:
        raise DucklakeInfraError("images push needs --registry HOST[:PORT]/PREFIX")
    runner = make_runner(args, "images-push")
    progress = Progress(log_path=runner.log_path)
    progress.say(f"log: {runner.log_path}")
    pushed = stack.push_only(spec, runner, progress, opts)
    print(f"# {oci.push_summary(pushed)}")
    for p in pushed:
        print(f"{p.key}={p.ref}")
    return 0


def cmd_status(args) -> int:
    spec = load_spec(args)
    # kind itself is not a read-only tool: finding the cluster and exporting its own
    # kubeconfig file use a normal runner; every cluster query is read-only.
    runner = make_runner(args, "status-cluster")
    require_bundle(args, runner)
    cluster = make_cluster(args, spec, runner)
    if cluster.is_kind and not cluster.exists():
        f = {"cluster": cluster.context, "exists": False, "ok": False}
        text = f"kind cluster {cluster.name} does not exist"
    else:
        cluster.ensure()
        f = status.facts(cluster, spec, make_runner(args, "status", readonly=True))
        text = status.text(f)
    if args.output == "json":
        print_json(f)
    else:
        print(text)
    return 0 if f["ok"] else 1
