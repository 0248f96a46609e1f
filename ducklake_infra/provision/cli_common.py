"""What every ducklake-infra subcommand shares: global options, ``-o json``, and the
bundle layout and runner of a parsed command line."""

from __future__ import annotations

import argparse
import json

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.runner import Runner


def layout_of(args) -> layout.Layout:
    """The bundle layout of ``--cache-dir`` (else $DUCKLAKE_INFRA_CACHE, else the default)."""
    return layout.layout(getattr(args, "cache_dir", None))


def make_runner(args, log_name: str, *, readonly: bool = False, dry_run: bool = False) -> Runner:
    return layout.bundle_runner(layout_of(args), log_name, readonly=readonly, dry_run=dry_run)


def global_options(*, in_subcommand: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the subcommand, with the same meaning. A
    subcommand's copy has no default (SUPPRESS): it never overwrites a value given
    before the subcommand's name."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--cache-dir", metavar="DIR",
                   default=argparse.SUPPRESS if in_subcommand else None,
                   help="bundle cache directory (default: $DUCKLAKE_INFRA_CACHE or "
                        "~/.cache/ducklake-infra)")
    return p


class SubcommandParser(argparse.ArgumentParser):
    """The parser class of every subcommand (nested ones too): it takes the global
    options, so ``ducklake-infra plan ... --cache-dir X`` works."""

    def __init__(self, **kwargs):
        kwargs["parents"] = [*kwargs.get("parents", ()), global_options(in_subcommand=True)]
        super().__init__(**kwargs)


def output_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", choices=("text", "json"), default="text",
                   help="text (default), or json: one JSON document on stdout")


def print_json(doc) -> None:
    print(json.dumps(doc, indent=2))
