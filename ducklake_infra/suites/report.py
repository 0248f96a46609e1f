"""Per-control results: aggregation, results.json, HTML fragments, terminal lines.

Everything that leaves the process goes through the Redactor first.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Callable, Iterable

from ducklake_infra.provision.guard import redact_tree
from ducklake_infra.suites.catalog import (ERROR, FAIL, NOT_EVALUATED, NOT_RUN, PASS, WARN, Control, Catalog,
                             TestRecord, worst)

STATUS_LABEL = {PASS: "PASS", FAIL: "FAIL", WARN: "WARN", ERROR: "ERROR",
                NOT_EVALUATED: "NOT EVALUATED", NOT_RUN: "NOT RUN"}
STATUS_CSS = {PASS: "#2e7d32", FAIL: "#c62828", WARN: "#f9a825", ERROR: "#6a1b9a",
              NOT_EVALUATED: "#78909c", NOT_RUN: "#9e9e9e"}
SEVERITY_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
# results.json names its format; the JSON Schema of that format ships with the package
SCHEMA_VERSION = "ducklake-infra/results/v1"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "results.schema.json"


@dataclass
class ControlResult:
    control: Control
    status: str
    tests: list[TestRecord] = field(default_factory=list)
    exempt_reason: str = ""

    @property
    def counts_as_failure(self) -> bool:
        return self.status in (FAIL, ERROR) and not self.exempt_reason

    def figures(self) -> dict:
        """The tests' measured numbers (one test: its own; several: by test name)."""
        got = [(t.nodeid.split("::")[-1], t.figures) for t in self.tests if t.figures]
        return got[0][1] if len(got) == 1 else {name: f for name, f in got}

    def evidence(self) -> list[str]:
        out = []
        for t in self.tests:
            prefix = f"[{t.nodeid.split('::')[-1]}] " if len(self.tests) > 1 else ""
            out += [prefix + e for e in t.evidence]
            out += [prefix + "WARN: " + w for w in t.warnings]
            if t.reason:
                out.append(prefix + ("reason: " if t.status != FAIL else "failure: ") + t.reason)
        return out


def aggregate(reg: Catalog, records: Iterable[TestRecord], cluster: str | None = None,
              only_run: bool = False, profile: str | None = None) -> list[ControlResult]:
    """One result per control (with ``profile``: per control that applies to it)."""
    by: dict[str, list[TestRecord]] = {}
    for r in records:
        by.setdefault(r.control.id, []).append(r)
    out = []
    for c in reg:
        tests = by.get(c.id, [])
        if only_run and not tests or not c.applies_to(profile):
            continue
        status = worst(t.status for t in tests) if tests else NOT_RUN
        ex = reg.exemption(c.id, cluster)
        out.append(ControlResult(c, status, tests, ex.reason if ex else ""))
    out.sort(key=lambda r: (r.control.section, r.control.id))
    return out


def totals(results: Iterable[ControlResult]) -> dict[str, int]:
    t = {s: 0 for s in STATUS_LABEL}
    for r in results:
        t[r.status] += 1
    return t


def verdict(results: list[ControlResult]) -> tuple[str, int]:
    """("conformant" | "partial" | "not conformant", controls not run or not evaluated).
    A run that left any control out is never called conformant."""
    missing = sum(1 for r in results if r.status in (NOT_RUN, NOT_EVALUATED))
    if any(r.counts_as_failure for r in results):
        return "not conformant", missing
    return ("partial" if missing else "conformant"), missing


def to_json(results: list[ControlResult], meta: dict, redact: Callable[[str], str],
            error: str | None = None) -> str:
    """results.json; ``error``: why the run could not start (verdict "error")."""
    word, missing = verdict(results)
    doc = {
        "schemaVersion": SCHEMA_VERSION,
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **meta,
        **({"error": error} if error else {}),
        "totals": totals(results),
        "conformant": word == "conformant" and not error,
        "verdict": "error" if error else word,
        "not_run": missing,
        "controls": [{
            "id": r.control.id,
            "title": r.control.title,
            "section": r.control.section,
            "severity": r.control.severity,
            "component": r.control.component,
            "mutating": r.control.mutating,
            "status": r.status,
            "exempt": bool(r.exempt_reason),
            "exempt_reason": r.exempt_reason or None,
            "evidence": r.evidence(),
            **({"figures": r.figures()} if r.figures() else {}),
            "remediation": r.control.remediation,
            "tests": [{"nodeid": t.nodeid, "status": t.status, "reason": t.reason or None,
                       "diagnostics": t.diagnostics or None} for t in r.tests],
        } for r in results],
    }
    # redacted value by value before encoding: JSON escapes would hide a value from a
    # redaction of the encoded text
    return json.dumps(redact_tree(doc, redact), indent=2)


def write_json(path: Path, results, meta, redact, error: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(results, meta, redact, error), encoding="utf-8")
    return path


def write_junit_error(path: Path, error: str, suite: str = "pytest") -> Path:
    """A JUnit file for a run that could not start: one testcase in error, naming why."""
    root = ET.Element("testsuites")
    ts = ET.SubElement(root, "testsuite", name=suite, errors="1", failures="0", skipped="0",
                       tests="1", time="0.000", hostname=platform.node(),
                       timestamp=_dt.datetime.now().astimezone().isoformat())
    case = ET.SubElement(ts, "testcase", classname="ducklake_infra", name="cluster", time="0.000")
    ET.SubElement(case, "error", message=error).text = error
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, "unicode"),
                    encoding="utf-8")
    return path


def badge(status: str, exempt: bool = False) -> str:
    label = STATUS_LABEL[status] + (" (EXEMPT)" if exempt else "")
    return (f'<span class="ctl-status" data-status="{status}" style="color:#fff;background:'
            f'{STATUS_CSS[status]};padding:1px 6px;border-radius:3px;white-space:nowrap">'
            f'{escape(label)}</span>')


def summary_html(results: list[ControlResult], redact: Callable[[str], str]) -> str:
    t = totals(results)
    rows = "".join(f"<tr><td>{badge(s)}</td><td>{n}</td></tr>" for s, n in t.items() if n)
    by_sev = {}
    for r in results:
        by_sev.setdefault(r.control.severity, []).append(r)
    sev_rows = "".join(
        f"<tr><td>{escape(sev)}</td>" + "".join(
            f"<td>{sum(1 for r in by_sev.get(sev, []) if r.status == s)}</td>" for s in STATUS_LABEL)
        + "</tr>" for sev in SEVERITY_ORDER)
    word, missing = verdict(results)
    text = {"conformant": "<p><b>Conformant</b>: every control ran; none failed or could not "
                          "be evaluated (exemptions applied).</p>",
            "partial": f"<p><b>Partial</b>: nothing failed, but {missing} control(s) did not run "
                       "or were not evaluated: this run certifies only what it ran.</p>",
            "not conformant": "<p><b>Not conformant</b>: see the FAIL and ERROR controls "
                              "below.</p>"}[word]
    return redact(
        '<h3>Conformance summary</h3>' + text +
        '<table class="ctl-summary" style="border-collapse:collapse" border="1" cellpadding="4">'
        f'<tr><th>status</th><th>controls</th></tr>{rows}</table>'
        '<h4>By severity</h4><table class="ctl-severity" style="border-collapse:collapse" '
        'border="1" cellpadding="4"><tr><th>severity</th>'
        + "".join(f"<th>{escape(STATUS_LABEL[s])}</th>" for s in STATUS_LABEL) + f"</tr>{sev_rows}</table>")


FAULT_COLUMNS = (("sent", "batches sent"), ("acknowledged", "acknowledged"),
                 ("found_whole", "found whole"), ("lost", "lost"), ("duplicates", "duplicates"),
                 ("partial", "in part"), ("client_errors", "errors clients saw"),
                 ("ready_again_s", "Ready again (s)"))


def faults_html(results: list[ControlResult], redact: Callable[[str], str]) -> str:
    """One row per fault the run injected (controls whose tests recorded a ledger)."""
    rows = []
    for r in results:
        f = r.figures()
        if "acknowledged" not in f:
            continue
        cells = []
        for key, _ in FAULT_COLUMNS:
            v = f.get(key)
            if isinstance(v, dict):
                v = ", ".join(f"{k} x{n}" for k, n in sorted(v.items())) or "none"
            cells.append(f"<td>{escape(str('-' if v is None else v))}</td>")
        rows.append(f'<tr><td><a href="#control-{r.control.id}"><code>{r.control.id}</code></a>'
                    f"</td><td>{escape(str(f.get('fault', '')))}</td><td>{badge(r.status)}</td>"
                    + "".join(cells) + "</tr>")
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for _, h in FAULT_COLUMNS)
    return redact('<h3>Faults injected</h3><table class="ctl-faults" style="border-collapse:'
                  'collapse" border="1" cellpadding="4"><tr><th>control</th><th>fault</th>'
                  f'<th>status</th>{head}</tr>' + "".join(rows) + "</table>")


def controls_html(results: list[ControlResult], redact: Callable[[str], str]) -> str:
    rows = []
    for r in results:
        c = r.control
        # redacted before escaping: an escaped value would no longer match its secret
        ev = "<br>".join(escape(redact(e)) for e in r.evidence()) or "&mdash;"
        rem = escape(c.remediation) if r.status in (FAIL, ERROR, WARN) else \
            f'<span style="color:#777">{escape(c.remediation)}</span>'
        ex = f"<br><i>exempt: {escape(redact(r.exempt_reason))}</i>" if r.exempt_reason else ""
        mut = " <small>(mutating)</small>" if c.mutating else ""
        rows.append(
            f'<tr id="control-{c.id}"><td><code>{c.id}</code></td><td>{escape(c.title)}{mut}</td>'
            f"<td>{c.section}</td><td>{c.severity}</td><td>{badge(r.status, bool(r.exempt_reason))}{ex}</td>"
            f'<td style="font-size:90%">{ev}</td><td style="font-size:90%">{rem}</td></tr>')
    return redact(
        '<h3>Controls</h3><table class="ctl-controls" style="border-collapse:collapse" border="1" '
        'cellpadding="4"><tr><th>control</th><th>title</th><th>seed section</th><th>severity</th>'
        '<th>status</th><th>evidence</th><th>remediation</th></tr>' + "".join(rows) + "</table>")


def terminal_lines(results: list[ControlResult]) -> list[str]:
    lines = []
    for r in results:
        if r.status == NOT_RUN:
            continue
        ex = " [EXEMPT]" if r.exempt_reason else ""
        lines.append(f"{STATUS_LABEL[r.status]:<14} {r.control.id:<15} {r.control.severity:<8} "
                     f"{r.control.title}{ex}")
        if r.status in (FAIL, ERROR):
            lines.append(f"{'':<14} remediation: {r.control.remediation}")
    return lines
