"""The one subprocess runner for kind, helm, kubectl, docker, go and friends.

Every external command goes through :class:`Runner`:

* argument lists only (never a shell), a timeout on every call;
* a copied environment (``os.environ`` is never mutated);
* output appended to a log file when one is set;
* one error type, :class:`CommandError`, carrying the command, exit code and
  the tail of stderr, with every registered secret redacted;
* read-only mode: only read subcommands of kubectl and helm may run, and no
  other tool at all (see :mod:`ducklake_infra.provision.guard`);
* log files are private (0600) and never hold the output of a ``sensitive``
  command (Secret reads), whatever its exit code.

Unit tests inject a fake (``FakeRunner`` in ``tests/``) to check command lines.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from ducklake_infra.provision.errors import DucklakeInfraError
# the guarantees live in provision.guard; re-exported for the runner's callers
from ducklake_infra.provision.guard import (REDACTED, ReadOnlyViolation, Redactor, check_command,  # noqa: F401
                             readonly_env)

DEFAULT_TIMEOUT = 300.0


class CommandError(DucklakeInfraError):
    """A command failed, timed out or could not be started."""

    def __init__(self, argv: Sequence[str], returncode: int | None, stderr_tail: str,
                 reason: str = "", log_path: Path | None = None):
        # callers pass argv already redacted (Runner does)
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr_tail = stderr_tail
        self.reason = reason
        self.log_path = log_path
        what = reason or f"exit code {returncode}"
        msg = f"command failed ({what}): {' '.join(self.argv)}"
        if stderr_tail.strip():
            msg += f"\n  stderr: {stderr_tail.strip()}"
        if log_path:
            msg += f"\n  log: {log_path}"
        super().__init__(msg)


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    duration: float


def tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@dataclass(frozen=True)
class PlannedCommand:
    """One command a dry run recorded instead of running (``plan``): its argv, what it
    would get on stdin (``input``: in memory only, it may hold Secret values), whether it
    only reads (listed because the cluster is absent), and the names of the objects on
    its stdin (what a plan may show of them)."""
    argv: list[str]
    input: str | bytes | None = None
    read: bool = False
    stdin: tuple[str, ...] = ()

    @property
    def shell(self) -> str:
        """The command as one shell-quoted line."""
        return " ".join(shlex.quote(a) for a in self.argv)

    @property
    def line(self) -> str:
        if self.read:
            return f"{self.shell}   # read"
        return f"{self.shell}   # stdin: {', '.join(self.stdin)}" if self.stdin else self.shell

    def redacted(self, redact: Callable[[str], str]) -> "PlannedCommand":
        """The same command as a plan shows it: values redacted, no stdin bytes."""
        return PlannedCommand([redact(a) for a in self.argv], None, self.read, self.stdin)


class Runner:
    def __init__(self, *, log_path: Path | None = None, readonly: bool = False,
                 redactor: Redactor | None = None, env: Mapping[str, str] | None = None,
                 dry_run: bool = False):
        self.log_path = Path(log_path) if log_path else None
        self.readonly = readonly
        self.redactor = redactor or Redactor()
        self.base_env = dict(os.environ if env is None else env)
        self.dry_run = dry_run
        self.planned_commands: list[PlannedCommand] = []   # dry run: what would run
        self._log_lock = threading.Lock()

    # -- a dry run's record ------------------------------------------------------
    def record(self, argv: Sequence[str], *, input: str | bytes | None = None,
               read: bool = False, stdin: Sequence[str] = ()) -> Result:
        """Record ``argv`` as planned, not run (an empty success)."""
        argv = [str(a) for a in argv]
        self.planned_commands.append(PlannedCommand(argv, input, read, tuple(stdin)))
        return Result(argv, 0, "", "", 0.0)

    @property
    def planned(self) -> list[list[str]]:
        """The argv of each planned command, in order (a view: append with record)."""
        return [c.argv for c in self.planned_commands]

    # -- helpers -----------------------------------------------------------
    def which(self, tool: str) -> str | None:
        return shutil.which(tool, path=self.base_env.get("PATH"))

    def _log(self, text: str) -> None:
        if not self.log_path:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._log_lock:
            # private from the first byte: os.open creates it 0600 (umask cannot widen it)
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(self.redactor(text))
                if not text.endswith("\n"):
                    fh.write("\n")

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        full = {**self.base_env, **(env or {})}
        return readonly_env(full) if self.readonly else full

    def _shown(self, argv: Sequence[str]) -> list[str]:
        return [self.redactor(a) for a in argv]

    def check_allowed(self, argv: Sequence[str]) -> None:
        if self.readonly:
            check_command(argv)

    # -- the one entry point -------------------------------------------------
    def run(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
            input: str | bytes | None = None, env: Mapping[str, str] | None = None,
            cwd: str | Path | None = None, check: bool = True,
            mutating: bool | None = None, stream: bool = False,
            sensitive: bool = False) -> Result:
        """Run ``argv``; raise :class:`CommandError` on failure when ``check``.

        ``mutating`` marks commands that change state; with ``dry_run`` they are
        only recorded (``plan``), and reads still run. ``sensitive`` output (Secret
        reads) is never logged nor put in an error, whatever the exit code: its
        values are not known to the Redactor until the caller has parsed them.
        """
        argv = [str(a) for a in argv]
        self.check_allowed(argv)
        shown = self.redactor(" ".join(argv))
        if self.dry_run and mutating is not False:
            return self.record(argv, input=input)
        full_env = self._env(env)
        self._log(f"$ {shown}" + (f"   (cwd={cwd})" if cwd else ""))
        start = time.monotonic()
        text = not isinstance(input, bytes)
        try:
            proc = subprocess.run(
                argv, input=input, capture_output=True, text=text, timeout=timeout,
                env=full_env, cwd=cwd, errors="replace" if text else None,
            )
        except FileNotFoundError:
            raise CommandError(self._shown(argv), None, "", reason=f"{argv[0]} not found on PATH",
                               log_path=self.log_path) from None
        except subprocess.TimeoutExpired as exc:
            out = exc.stderr or b""
            out = out.decode(errors="replace") if isinstance(out, bytes) else out
            self._log(out)
            raise CommandError(self._shown(argv), None, self.redactor(tail(out)),
                               reason=f"timed out after {timeout:.0f}s",
                               log_path=self.log_path) from None
        duration = time.monotonic() - start
        stdout = proc.stdout if text else proc.stdout.decode(errors="replace")
        stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
        if sensitive:
            self._log(f"# stdout not logged ({len(stdout)} characters): may hold Secret values")
        elif stream or proc.returncode != 0:
            self._log(stdout)
        self._log(stderr)
        self._log(f"# exit {proc.returncode} in {duration:.1f}s")
        if check and proc.returncode != 0:
            shown_tail = stderr if sensitive else (stderr or stdout)
            raise CommandError(self._shown(argv), proc.returncode, self.redactor(tail(shown_tail)),
                               log_path=self.log_path)
        return Result(argv, proc.returncode, stdout, stderr, duration)

    def run_logged(self, argv: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT,
                   env: Mapping[str, str] | None = None, cwd: str | Path | None = None) -> Result:
        """Run a long build step with all output going to the log file as it comes."""
        argv = [str(a) for a in argv]
        self.check_allowed(argv)
        if self.dry_run:
            return self.record(argv)
        full_env = self._env(env)
        self._log(f"$ {self.redactor(' '.join(argv))}" + (f"   (cwd={cwd})" if cwd else ""))
        start = time.monotonic()
        lines: list[str] = []
        try:
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", env=full_env, cwd=cwd)
        except FileNotFoundError:
            raise CommandError(self._shown(argv), None, "", reason=f"{argv[0]} not found on PATH",
                               log_path=self.log_path) from None
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if len(lines) > 200:
                    del lines[:100]
                self._log(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
        duration = time.monotonic() - start
        timed_out = duration >= timeout and proc.returncode != 0
        self._log(f"# exit {proc.returncode} in {duration:.1f}s")
        if proc.returncode != 0:
            raise CommandError(self._shown(argv), proc.returncode, self.redactor(tail("".join(lines))),
                               reason=f"timed out after {timeout:.0f}s" if timed_out else "",
                               log_path=self.log_path)
        return Result(argv, 0, "", "", duration)


def require_tools(runner: Runner, tools: Iterable[str], hint: str) -> None:
    missing = [t for t in tools if not runner.which(t)]
    if missing:
        raise DucklakeInfraError(f"missing tool(s): {', '.join(missing)}. {hint}")
