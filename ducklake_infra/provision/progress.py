"""Progress output for long steps: one line per step with its duration."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.timings: list[tuple[str, float, str]] = []

    def say(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        """Print ``==> name`` then ``ok name (12.3s)``; failures print ``FAILED``."""
        info: dict = {"note": ""}
        self.say(f"==> {name}")
        start = time.monotonic()
        try:
            yield info
        except BaseException:
            took = time.monotonic() - start
            self.timings.append((name, took, "failed"))
            self.say(f"FAILED {name} ({took:.1f}s)")
            raise
        took = time.monotonic() - start
        self.timings.append((name, took, info["note"] or "ok"))
        note = f" [{info['note']}]" if info["note"] else ""
        self.say(f"    ok {name} ({took:.1f}s){note}")
