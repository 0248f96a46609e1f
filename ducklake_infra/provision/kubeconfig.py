"""Kubeconfig files as kubectl finds them, their credentials (to redact), and the
reason a kube tool gives on stderr, as one line."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, Mapping

DEFAULT = Path("~/.kube/config")

# credential values in a kubeconfig, block or flow style: `token: x`, `{token: "x"}`
_CREDENTIAL = re.compile(r"""(?:token|password|client-key-data|client-secret)["']?\s*:\s*"""
                         r"""["']?([^\s"',}\]]+)""")
# klog's prefix: E0101 12:00:00.000000   1234 file.go:12] message
_KLOG = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]*\] ?")


def files(explicit: str | Path | None, env: Mapping[str, str]) -> list[Path]:
    """The kubeconfig files kubectl reads: ``--kubeconfig``, else $KUBECONFIG, else
    ~/.kube/config."""
    if explicit:
        return [Path(explicit).expanduser()]
    if env.get("KUBECONFIG"):
        return [Path(p).expanduser() for p in env["KUBECONFIG"].split(os.pathsep) if p]
    return [DEFAULT.expanduser()]


def credentials(paths: Iterable[Path]) -> list[str]:
    """Every credential value written in these files (unreadable ones skipped)."""
    out: list[str] = []
    for p in paths:
        try:
            out += _CREDENTIAL.findall(Path(p).read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    return out


def reason(stderr: str, default: str = "no answer") -> str:
    """The first meaningful line of a kube tool's stderr: not a klog line (unless there
    is nothing else), without the ``error:`` prefix."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    plain = [ln for ln in lines if not _KLOG.match(ln)]
    line = plain[0] if plain else _KLOG.sub("", lines[-1]) if lines else default
    return line.removeprefix("error: ")
