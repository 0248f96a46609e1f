"""What every ducklake-infra subcommand shares: the bundle layout and runner of a
parsed command line."""

from __future__ import annotations

from ducklake_infra.provision.bundle import layout as L
from ducklake_infra.provision.runner import Runner


def layout_of(args) -> L.Layout:
    """The bundle layout of ``--cache-dir`` (else $DUCKLAKE_INFRA_CACHE, else the default)."""
    return L.layout(getattr(args, "cache_dir", None))


def make_runner(args, log_name: str, *, readonly: bool = False, dry_run: bool = False) -> Runner:
    return L.bundle_runner(layout_of(args), log_name, readonly=readonly, dry_run=dry_run)
