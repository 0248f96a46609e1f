"""Controls as data: load and validate ``controls.yaml`` and ``exemptions.yaml``.

Statuses are kept distinct (kube-bench style):

* ``PASS``  the control holds;
* ``FAIL``  it does not (an ``AssertionError`` in the test, or a FAIL result);
* ``WARN``  it holds with a caveat (:func:`warn`), the test does not fail;
* ``ERROR`` it could not be evaluated (any other exception, or a setup error),
  with the reason;
* ``NOT_EVALUATED`` the check was not run, e.g. a mutating control under
  ``--readonly`` ("not evaluated (read-only)").

Check functions are pure (``check_x(objects, spec) -> Result``); tests call
them on live objects and hand the result to :func:`verdict`.
"""

from __future__ import annotations

from contextvars import ContextVar

import dataclasses
import datetime as _dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ducklake_infra import yamlio
from ducklake_infra.provision.spec import PROFILES

HERE = Path(__file__).resolve().parent
CONTROLS_FILE = HERE / "controls.yaml"
EXEMPTIONS_FILE = HERE / "exemptions.yaml"

PASS, FAIL, WARN, ERROR, NOT_EVALUATED, NOT_RUN = (
    "PASS", "FAIL", "WARN", "ERROR", "NOT_EVALUATED", "NOT_RUN")
STATUSES = (PASS, FAIL, WARN, ERROR, NOT_EVALUATED, NOT_RUN)
# worst first: how several tests of one control combine
_RANK = {ERROR: 0, FAIL: 1, WARN: 2, NOT_EVALUATED: 3, PASS: 4, NOT_RUN: 5}
SEVERITIES = ("critical", "high", "medium", "low")
COMPONENTS = ("minio", "postgresql", "backend", "dataplane", "secrets")
# the boxes of the stack picture (svg.py draws them): a control colours those it names
BOXES = ("minio-release", "minio-deploy", "minio-svc", "minio-pvc", "minio-secret",
         "pg-release", "pg-sts", "pg-svc", "pg-pvc", "pg-secret",
         "be-deploy", "be-svc", "be-cm", "be-secret", "dataplane", "hygiene", "nodes")
_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{3}$")


class ControlsError(ValueError):
    """controls.yaml or exemptions.yaml is malformed."""


class CheckError(Exception):
    """A check could not be evaluated (reported as ERROR, never as FAIL)."""


@dataclass(frozen=True)
class Control:
    id: str
    title: str
    section: str
    severity: str
    component: str
    remediation: str
    mutating: bool = False
    boxes: tuple[str, ...] = ()     # the picture's boxes it colours (svg.py)
    # the stack profiles it applies to (empty: every profile); outside them a control is
    # not part of the run at all, neither run nor counted (issue 16)
    profiles: tuple[str, ...] = ()

    def applies_to(self, profile: str | None) -> bool:
        return not self.profiles or profile is None or profile in self.profiles


@dataclass(frozen=True)
class Exemption:
    control: str
    reason: str
    clusters: tuple[str, ...] = ()
    expires: _dt.date | None = None

    def applies(self, cluster: str | None, today: _dt.date | None = None) -> bool:
        today = today or _dt.date.today()
        if self.expires and today > self.expires:
            return False
        return not self.clusters or cluster in self.clusters


@dataclass
class Result:
    """The outcome of one pure check: status plus evidence lines (no secret values)."""

    status: str
    evidence: list[str] = field(default_factory=list)
    remediation: str = ""
    control: str = ""

    def __post_init__(self):
        if self.status not in (PASS, FAIL, WARN, ERROR):
            raise ValueError(f"a check returns PASS, FAIL, WARN or ERROR, not {self.status!r}")
        if isinstance(self.evidence, str):
            self.evidence = [self.evidence]

    @property
    def ok(self) -> bool:
        return self.status in (PASS, WARN)

    def text(self) -> str:
        return "\n".join(self.evidence)


def result(problems: Iterable[str], good: Iterable[str] = (), warnings: Iterable[str] = ()) -> Result:
    """FAIL with the problems if any, else WARN with the warnings, else PASS."""
    problems, good, warnings = list(problems), list(good), list(warnings)
    if problems:
        return Result(FAIL, problems + [f"ok: {g}" for g in good])
    if warnings:
        return Result(WARN, [f"warning: {w}" for w in warnings] + good)
    return Result(PASS, good)


def rank(status: str) -> int:
    """0 for the worst status (ERROR) up to NOT_RUN: the order of :func:`worst`."""
    return _RANK[status]


def worst(statuses: Iterable[str]) -> str:
    statuses = list(statuses)
    return min(statuses, key=lambda s: _RANK[s]) if statuses else NOT_RUN


# ---- loading ---------------------------------------------------------------------
class Catalog:
    def __init__(self, controls: dict[str, Control], exemptions: list[Exemption] | None = None):
        self.controls = controls
        self.exemptions = exemptions or []

    def __getitem__(self, cid: str) -> Control:
        try:
            return self.controls[cid]
        except KeyError:
            raise ControlsError(f"unknown control ID {cid!r} (not in {CONTROLS_FILE.name})") from None

    def __contains__(self, cid: str) -> bool:
        return cid in self.controls

    def __iter__(self):
        return iter(self.controls.values())

    def exemption(self, cid: str, cluster: str | None,
                  today: _dt.date | None = None) -> Exemption | None:
        for e in self.exemptions:
            if e.control == cid and e.applies(cluster, today):
                return e
        return None


def _fail(fname: str, where: str, msg: str) -> ControlsError:
    return ControlsError(f"{fname}: {where}: {msg}")


def parse_controls(raw: Any, fname: str = "controls.yaml") -> dict[str, Control]:
    if not isinstance(raw, dict) or not isinstance(raw.get("controls"), list):
        raise ControlsError(f"{fname}: expected a mapping with a 'controls' list")
    out: dict[str, Control] = {}
    for i, c in enumerate(raw["controls"]):
        where = f"controls[{i}]"
        if not isinstance(c, dict):
            raise _fail(fname, where, "expected a mapping")
        unknown = set(c) - {"id", "title", "section", "severity", "component", "remediation",
                            "mutating", "retired", "boxes", "profiles"}
        if unknown:
            raise _fail(fname, where, f"unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("id", "title", "section", "severity", "component", "remediation"):
            if not isinstance(c.get(key), str) or not c[key].strip():
                raise _fail(fname, f"{where}.{key}", "missing or not a string")
        cid = c["id"]
        if not _ID.match(cid):
            raise _fail(fname, f"{where}.id", f"{cid!r} is not an ID like MINIO-SVC-001")
        if cid in out:
            raise _fail(fname, f"{where}.id", f"duplicate ID {cid}")
        if c["severity"] not in SEVERITIES:
            raise _fail(fname, f"{where}.severity", f"expected one of {', '.join(SEVERITIES)}")
        if c["component"] not in COMPONENTS:
            raise _fail(fname, f"{where}.component", f"expected one of {', '.join(COMPONENTS)}")
        if not re.match(r"^2\.[1-3]$", c["section"]):
            raise _fail(fname, f"{where}.section", "expected a seed plan section 2.1, 2.2 or 2.3")
        if not isinstance(c.get("mutating", False), bool):
            raise _fail(fname, f"{where}.mutating", "expected true or false")
        boxes = _boxes(c.get("boxes", []), fname, f"{where}.boxes")
        profiles = c.get("profiles", [])
        if not isinstance(profiles, list) or not profiles and "profiles" in c or \
                not set(profiles) <= set(PROFILES):
            raise _fail(fname, f"{where}.profiles",
                        f"expected a non-empty list of {', '.join(PROFILES)}")
        if c.get("retired"):
            continue
        out[cid] = Control(id=cid, title=c["title"].strip(), section=c["section"],
                           severity=c["severity"], component=c["component"],
                           remediation=" ".join(c["remediation"].split()),
                           mutating=bool(c.get("mutating", False)), boxes=boxes,
                           profiles=tuple(profiles))
    return out


def _boxes(raw: Any, fname: str, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(isinstance(b, str) for b in raw):
        raise _fail(fname, where, "expected a list of picture box names")
    for b in raw:
        if b not in BOXES:
            raise _fail(fname, where, f"unknown box {b!r} (known: {', '.join(BOXES)})")
    if len(set(raw)) != len(raw):
        raise _fail(fname, where, "a box is named twice")
    return tuple(raw)


def parse_exemptions(raw: Any, controls: dict[str, Control],
                     fname: str = "exemptions.yaml") -> tuple[list[Exemption], dict[str, str]]:
    raw = raw or {}
    if not isinstance(raw, dict):
        raise ControlsError(f"{fname}: expected a mapping")
    exemptions = []
    for i, e in enumerate(raw.get("exemptions") or []):
        where = f"exemptions[{i}]"
        if not isinstance(e, dict):
            raise _fail(fname, where, "expected a mapping")
        cid = e.get("control")
        if cid not in controls:
            raise _fail(fname, f"{where}.control", f"unknown control ID {cid!r}")
        if not isinstance(e.get("reason"), str) or not e["reason"].strip():
            raise _fail(fname, f"{where}.reason", "every exemption needs a reason")
        clusters = e.get("clusters") or []
        if not isinstance(clusters, list) or not all(isinstance(x, str) for x in clusters):
            raise _fail(fname, f"{where}.clusters", "expected a list of cluster names")
        expires = e.get("expires")
        if expires is not None and not isinstance(expires, _dt.date):
            try:
                expires = _dt.date.fromisoformat(str(expires))
            except ValueError:
                raise _fail(fname, f"{where}.expires", "expected a date YYYY-MM-DD") from None
        exemptions.append(Exemption(cid, e["reason"].strip(), tuple(clusters), expires))
    sev = raw.get("severity") or {}
    if not isinstance(sev, dict):
        raise _fail(fname, "severity", "expected a mapping control ID -> severity")
    for cid, s in sev.items():
        if cid not in controls:
            raise _fail(fname, f"severity.{cid}", "unknown control ID")
        if s not in SEVERITIES:
            raise _fail(fname, f"severity.{cid}", f"expected one of {', '.join(SEVERITIES)}")
    return exemptions, dict(sev)


def _read_yaml(path: Path) -> Any:
    try:
        return yamlio.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ControlsError(f"{path}: cannot read: {exc.strerror}") from None
    except yamlio.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ControlsError(f"{path.name}: not valid YAML{where}: "
                            f"{getattr(exc, 'problem', None) or exc}") from None


def load(controls_file: Path | None = None, exemptions_file: Path | None = None) -> Catalog:
    cfile = Path(controls_file or CONTROLS_FILE)
    controls = parse_controls(_read_yaml(cfile), cfile.name)
    efile = Path(exemptions_file or EXEMPTIONS_FILE)
    exemptions: list[Exemption] = []
    if efile.is_file():
        exemptions, sev = parse_exemptions(_read_yaml(efile), controls, efile.name)
        for cid, s in sev.items():
            c = controls[cid]
            controls[cid] = dataclasses.replace(c, severity=s)
    return Catalog(controls, exemptions)


_catalog: Catalog | None = None


def catalog() -> Catalog:
    """The repository's controls (loaded once)."""
    global _catalog
    if _catalog is None:
        _catalog = load()
    return _catalog


# ---- per-test recording (the plugin sets the current record around each test) ----
@dataclass
class TestRecord:
    __test__ = False  # not a pytest test class
    nodeid: str
    control: Control
    status: str = NOT_RUN
    evidence: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    reason: str = ""          # FAIL/ERROR/NOT_EVALUATED: why
    diagnostics: str = ""     # events, pod statuses, log tails (failures only)
    figures: dict = field(default_factory=dict)   # measured numbers (a fault's accounting)


# the control test running now (set by the plugin around each test): what evidence(),
# figures(), warn() and verdict() write to
_running: ContextVar[TestRecord | None] = ContextVar("ducklake_infra_running_test", default=None)


def set_current(rec: TestRecord | None) -> None:
    _running.set(rec)


def current() -> TestRecord | None:
    return _running.get()


def evidence(*lines: str) -> None:
    """Add evidence lines to the running control test (shown in every report)."""
    rec = current()
    if rec is not None:
        rec.evidence.extend(str(x) for x in lines)


def figures(**numbers) -> None:
    """Record measured numbers for the running control test (results.json ``figures``,
    the HTML report's fault table): numbers, strings, or a mapping of them."""
    rec = current()
    if rec is not None:
        rec.figures.update(numbers)


def warn(message: str) -> None:
    """Record a WARN for the running control test without failing it."""
    rec = current()
    if rec is None:
        raise RuntimeError("warn() called outside a control test")
    rec.warnings.append(str(message))


def verdict(res: Result) -> Result:
    """Turn a check's Result into the test outcome: PASS returns, WARN records a
    warning and returns, FAIL raises AssertionError, ERROR raises CheckError.
    A result of another control than the test's marker is an ERROR: reported under the
    marker's id, it would certify a control nobody checked."""
    rec = current()
    if rec is not None and res.control and res.control != rec.control.id:
        raise CheckError(f"this test is marked {rec.control.id} but evaluated check "
                         f"{res.control}: fix the test's marker or the check it calls")
    evidence(*res.evidence)
    if res.status == FAIL:
        raise AssertionError("\n".join(res.evidence) or "check failed")
    if res.status == ERROR:
        raise CheckError("\n".join(res.evidence) or "check could not be evaluated")
    if res.status == WARN:
        warn("; ".join(e for e in res.evidence if e.startswith("warning:")) or "warning")
    return res
