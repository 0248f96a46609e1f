"""A fake Runner for unit tests: records every command, returns canned Results."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ducklake_infra.provision.runner import CommandError, Redactor, Result, Runner


@dataclass
class Call:
    argv: list[str]
    input: str | None
    mutating: bool | None
    env: dict | None = None
    executed: bool = True

    @property
    def line(self) -> str:
        return " ".join(self.argv)


@dataclass
class Canned:
    pattern: re.Pattern
    returncode: int = 0
    stdout: str = ""
    stderr: str = ""
    times: int | None = None      # None: forever


class FakeRunner(Runner):
    """Records argv (and stdin) of every call. ``on(regex, ...)`` cans an answer for
    commands whose joined argv matches; the newest matching rule wins; default rc 0."""

    def __init__(self, *, dry_run: bool = False, readonly: bool = False):
        super().__init__(dry_run=dry_run, readonly=readonly, redactor=Redactor(), env={})
        self.calls: list[Call] = []
        self.rules: list[Canned] = []

    def on(self, pattern: str, *, rc: int = 0, stdout: str = "", stderr: str = "",
           times: int | None = None) -> "FakeRunner":
        self.rules.append(Canned(re.compile(pattern), rc, stdout, stderr, times))
        return self

    def which(self, tool: str) -> str | None:
        return f"/usr/bin/{tool}"

    def _answer(self, argv: list[str]) -> Canned | None:
        line = " ".join(argv)
        for rule in reversed(self.rules):
            if rule.times == 0:
                continue
            if rule.pattern.search(line):
                if rule.times is not None:
                    rule.times -= 1
                return rule
        return None

    def run(self, argv, *, timeout=300, input=None, env=None, cwd=None, check=True,
            mutating=None, stream=False, sensitive=False) -> Result:
        argv = [str(a) for a in argv]
        self.check_allowed(argv)
        if self.dry_run and mutating is not False:
            self.calls.append(Call(argv, input, mutating, env, executed=False))
            return self.record(argv, input=input)
        self.calls.append(Call(argv, input, mutating, env))
        rule = self._answer(argv)
        rc, out, err = (rule.returncode, rule.stdout, rule.stderr) if rule else (0, "", "")
        if check and rc != 0:
            raise CommandError(argv, rc, self.redactor(err))
        return Result(argv, rc, out, err, 0.0)

    def run_logged(self, argv, *, timeout=300, env=None, cwd=None) -> Result:
        argv = [str(a) for a in argv]
        if self.dry_run:
            self.calls.append(Call(argv, None, True, env, executed=False))
            return self.record(argv)
        self.calls.append(Call(argv, None, True, env))
        return Result(argv, 0, "", "", 0.0)

    # -- queries ---------------------------------------------------------------
    def executed(self, pattern: str = "") -> list[Call]:
        rx = re.compile(pattern)
        return [c for c in self.calls if c.executed and rx.search(c.line)]

    def find(self, pattern: str) -> list[Call]:
        rx = re.compile(pattern)
        return [c for c in self.calls if rx.search(c.line)]


def minio_only_runner(context: str = "prod") -> FakeRunner:
    """A read-only FakeRunner for status: ``context`` exists; release minio deployed
    with its one pod ready, postgresql not installed, the backend 1/1 ready (image i)."""
    r = FakeRunner(readonly=True)
    r.on(r"config get-contexts", stdout=f"{context}\n")
    r.on(r"^helm .* list --namespace storage --filter \^minio\$",
         stdout=json.dumps([{"name": "minio", "status": "deployed", "chart": "minio-5.4.0",
                             "app_version": "x", "revision": 1}]))
    r.on(r"get pods --namespace storage", stdout=json.dumps({"items": [
        {"metadata": {"name": "minio-1"},
         "status": {"phase": "Running", "containerStatuses": [{"ready": True}]}}]}))
    r.on(r"get pods --namespace ducklake", stdout=json.dumps({"items": []}))
    r.on(r"get deployment ducklake-backend", stdout=json.dumps(
        {"spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "i"}]}}},
         "status": {"readyReplicas": 1}}))
    return r
