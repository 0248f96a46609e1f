"""Progress output for long steps: a line when a step starts and ends, and while it runs
the time it has taken so far, so a cold build is never minutes of silence.

In a terminal the running step's elapsed time is redrawn in place every second; without
one (CI logs) a line is printed every ``interval`` seconds (30 by default), with the log
path so a reader knows where the detail is.
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, TextIO


def elapsed(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    def __init__(self, stream: TextIO | None = None, quiet: bool = False,
                 log_path: Path | None = None, interval: float | None = None):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.log_path = log_path
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval if interval is not None else (1.0 if self.live else 30.0)
        self.timings: list[tuple[str, float, str]] = []
        self._lock = threading.Lock()
        self._running: list[tuple[str, float]] = []     # open steps, innermost last
        self._drawn = False                             # a live line is on screen

    def say(self, msg: str) -> None:
        if self.quiet:
            return
        with self._lock:
            self._clear()
            print(msg, file=self.stream, flush=True)

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False

    def _tick(self, mine: tuple[str, float]) -> None:
        with self._lock:
            if not self._running or self._running[-1] != mine:
                return          # an inner step is running: it reports
            name, start = mine
            took = elapsed(time.monotonic() - start)
            if self.live:
                self.stream.write(f"\r\033[K    ... {name}: {took}")
                self._drawn = True
                self.stream.flush()
            else:
                log = f" (log: {self.log_path})" if self.log_path else ""
                print(f"    ... {name}: running for {took}{log}", file=self.stream, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[dict]:
        """Print ``==> name``, the elapsed time while it runs, then ``ok name (12.3s)``;
        failures print ``FAILED``."""
        info: dict = {"note": ""}
        self.say(f"==> {name}")
        start = time.monotonic()
        with self._lock:
            self._running.append((name, start))
        stop = threading.Event()
        ticker = None
        if not self.quiet:
            ticker = threading.Thread(target=self._ticker, args=(stop, (name, start)), daemon=True,
                                      name=f"progress {name}")
            ticker.start()
        try:
            yield info
        except BaseException:
            took = time.monotonic() - start
            self._end(stop, ticker, name, start)
            self.timings.append((name, took, "failed"))
            self.say(f"FAILED {name} ({took:.1f}s)")
            raise
        took = time.monotonic() - start
        self._end(stop, ticker, name, start)
        self.timings.append((name, took, info["note"] or "ok"))
        note = f" [{info['note']}]" if info["note"] else ""
        self.say(f"    ok {name} ({took:.1f}s){note}")

    def _ticker(self, stop: threading.Event, mine: tuple[str, float]) -> None:
        while not stop.wait(self.interval):
            self._tick(mine)

    def _end(self, stop, ticker, name, start) -> None:
        stop.set()
        if ticker is not None:
            ticker.join()
        with self._lock:
            if (name, start) in self._running:
                self._running.remove((name, start))
