"""What the benchmarks that run on a running stack share: which cluster they read."""

from __future__ import annotations

import argparse

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.spec import StackSpec


def add_cluster_args(p: argparse.ArgumentParser, spec: StackSpec) -> None:
    """``--context`` and ``--kubeconfig``, by default the spec's kind cluster."""
    p.add_argument("--context", default=f"kind-{spec.kind_cluster}")
    p.add_argument("--kubeconfig", default=str(layout.layout().root / "kubeconfig" /
                                               f"kind-{spec.kind_cluster}.yaml"))
