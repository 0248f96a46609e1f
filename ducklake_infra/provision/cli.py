"""``ducklake-infra``: build the registry-free bundle and provision the DuckLake stack.

Expected failures print one line (``error: ...``) and exit non-zero; only
unexpected bugs show a traceback (a broken import too: it is not hidden).

CLI library: argparse, kept on purpose. It is the standard library (no runtime
dependency added to an auditor people install), the subcommands already register
into it (``stack_cli.register``), and what we need is small: global options
accepted before or after the command (``cli_common.SubcommandParser``), ``-o json``
and plain help. Shell completion is left out: argparse has none, and argcomplete
(or click/typer) would be a new runtime dependency for a handful of commands.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import ducklake_infra
from ducklake_infra.provision import spec_file
from ducklake_infra.provision import stack_cli
from ducklake_infra.provision.cli_common import (SubcommandParser, global_options, layout_of,
                                                 make_runner, output_option, print_json)
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress

# --help is plain text: no reStructuredText (the module docstring is for developers)
DESCRIPTION = "Build the registry-free bundle and provision the DuckLake stack."
EPILOG = """\
examples:
  ducklake-infra bundle build            build or verify every image and tool (cached)
  ducklake-infra bundle build --with postgresql-ha   also PostgreSQL + Patroni (distributed)
  ducklake-infra bundle status -o json   list the bundle's artifacts
  ducklake-infra bundle sbom             one CycloneDX SBOM per artifact in <cache>/sbom
  ducklake-infra plan --cluster kind     show every command 'up' would run (-o json)
  ducklake-infra up --cluster kind       create the kind cluster and deploy the stack
  ducklake-infra up --cluster prod       deploy to an existing kube context
  ducklake-infra status --cluster kind   releases, pods and the backend (-o json)
  ducklake-infra down --cluster kind     uninstall (and delete the kind cluster we created)

The bundle cache lives in ~/.cache/ducklake-infra (or $DUCKLAKE_INFRA_CACHE, or --cache-dir).

exit status: 0 done (status: ready), 1 not ready or artifacts missing, 2 error or bad
usage, 130 interrupted, 141 the reader of the output went away (e.g. | head)
"""


def cmd_bundle_build(args) -> int:
    from ducklake_infra.provision.bundle import build
    lay = layout_of(args)
    runner = make_runner(args, "bundle-build")
    progress = Progress(log_path=runner.log_path)
    progress.say(f"bundle cache: {lay.root}   log: {runner.log_path}")
    start = time.monotonic()
    build.build(runner, progress, lay, skip_host=args.skip_host, optional=args.optional)
    progress.say(f"bundle ready in {time.monotonic() - start:.1f}s")
    return 0


def cmd_bundle_status(args) -> int:
    from ducklake_infra.provision.bundle import build
    from ducklake_infra.provision.bundle import sbom
    lay = layout_of(args)
    runner = make_runner(args, "bundle-status")
    arts = build.artifacts(runner, lay)
    sbom.mark_states(arts, lay)
    print(build.status_json(arts) if args.output == "json" else build.status_table(arts))
    return 0 if all(a.present for a in arts) else 1


def cmd_bundle_sbom(args) -> int:
    from ducklake_infra.provision.bundle import sbom
    lay = layout_of(args)
    out = Path(args.out).expanduser().resolve() if args.out else lay.sbom
    runner = make_runner(args, "bundle-sbom")
    spec = stack_cli.load_spec(args)
    start = time.monotonic()
    written = sbom.generate(runner, lay, out, spec)
    seconds = time.monotonic() - start
    if args.output == "json":
        print_json(sbom.summary_json(out, written, seconds))
    else:
        print(sbom.summary_table(written))
        print(f"{sum(1 for w in written if w.path)} SBOMs (CycloneDX 1.6) in {out} "
              f"in {seconds:.1f}s")
    return 0 if all(w.path for w in written) else 1


def build_parser() -> argparse.ArgumentParser:
    from ducklake_infra.provision.bundle import images
    p = argparse.ArgumentParser(
        prog="ducklake-infra", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[global_options(in_subcommand=False)])
    p.add_argument("--version", action="version",
                   version=f"%(prog)s {ducklake_infra.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=SubcommandParser)
    sub.required = True

    bundle = sub.add_parser("bundle", help="build or inspect the registry-free bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", metavar="ACTION")
    bsub.required = True
    b = bsub.add_parser("build", help="build kind, helm, Kubernetes, the node image and the "
                        "stack images from package registries (idempotent, cached)")
    b.add_argument("--skip-host", action="store_true",
                   help="do not install or start the Docker engine (it must already run)")
    b.add_argument("--with", dest="optional", action="append", default=[], metavar="IMAGE",
                   choices=sorted(images.OPTIONAL_ROOTFS_IMAGES),
                   help="also build an optional image: postgresql-ha (PostgreSQL with "
                        "Patroni, for the distributed profile); repeatable")
    b.set_defaults(func=cmd_bundle_build)
    s = bsub.add_parser("status", help="table of every artifact: version, source, id, present")
    output_option(s)
    s.add_argument("--json", dest="output", action="store_const", const="json",
                   help="same as -o json")
    s.set_defaults(func=cmd_bundle_status)
    m = bsub.add_parser("sbom", help="write one CycloneDX 1.6 SBOM per artifact (Go modules, "
                        "Debian and Python packages), offline")
    output_option(m)
    m.add_argument("--out", metavar="DIR", default=None,
                   help="directory for the .cdx.json files (default: <cache>/sbom)")
    m.add_argument("--spec", default=None, metavar="FILE",
                   help="stack spec whose backend image to describe (default: "
                        f"${spec_file.SPEC_ENV}, else ./stack.yaml, else the packaged default)")
    m.set_defaults(func=cmd_bundle_sbom)

    stack_cli.register(sub)
    return p


# 128 + SIGPIPE: what a shell reports for any tool stopped by a closed pipe, so
# `set -o pipefail` sees a truncated `ducklake-infra plan | head` as other tools do
EXIT_PIPE_CLOSED = 141


def main(argv: list[str] | None = None) -> int:
    try:
        try:
            return run(argv)
        finally:
            sys.stdout.flush()   # a closed pipe shows here (or in a print), not at exit
    except BrokenPipeError:
        # The reader went away (`ducklake-infra plan | head -1`): stop quietly. stdout
        # goes to /dev/null so the interpreter's last flush cannot fail again (the
        # recipe of https://docs.python.org/3/library/signal.html#note-on-sigpipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE_CLOSED


def run(argv: list[str] | None = None) -> int:
    """Parse and run one command; an expected failure is one ``error:`` line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DucklakeInfraError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

