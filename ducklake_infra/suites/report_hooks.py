"""The conformance suites' reports: results.json, policyreport.yaml, results.sarif, the
picture, the evidence bundle, run-level JUnit/HTML facts, the HTML report's control
columns, the terminal summary, a run that could not start, and the leak probe that
scans every written report. Registered by ducklake_infra.suites.plugin."""

from __future__ import annotations

import sys
import time
from html import escape
from pathlib import Path

import pytest

from ducklake_infra.provision.guard import find_leaks
from ducklake_infra.suites import formats
from ducklake_infra.suites import catalog
from ducklake_infra.suites import report as rep
from ducklake_infra.suites import svg
from ducklake_infra.suites.plugin import _redact, _spec_or_none, _state
from ducklake_infra.suites.session import _write_evidence


# ---- reports -----------------------------------------------------------------------------------
def _results(config) -> list:
    st = _state(config)
    if st.results is None:
        spec = _spec_or_none(config)
        st.results = rep.aggregate(st.reg, st.records.values(),
                                   config.getoption("--cluster", default=None),
                                   profile=spec.profile if spec is not None else None)
    return st.results


def _meta(config) -> dict:
    st = _state(config)
    return {"cluster": config.getoption("--cluster", default=None),
            "readonly": bool(config.getoption("--readonly", default=False)),
            "stack": str(config.getoption("--stack", default="")),
            "selection": st.selection.as_dict() if st.selection else None,
            "phases": [{"phase": n, "seconds": round(t, 1), "note": note}
                       for n, t, note in st.phases + [("session total",
                                                       time.monotonic() - st.started, "")]]}


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    st = _state(config)
    if not st.records or config.option.collectonly:
        return
    st.results = None
    results = _results(config)
    rd = Path(config.getoption("--report-dir", default="reports"))
    st.written.append(rep.write_json(rd / "results.json", results, _meta(config), st.redactor))
    spec = _spec_or_none(config)
    st.written.append(formats.write_policy_report(rd / "policyreport.yaml", results, spec,
                                                  st.redactor))
    st.written.append(formats.write_sarif(rd / "results.sarif", results, spec,
                                          _run_facts(config), st.redactor))
    if spec is not None:
        (rd / "stack.svg").write_text(_svg(config), encoding="utf-8")
        st.written.append(rd / "stack.svg")
    _write_evidence(config, st, results, rd)  # evidence bundle


def _run_facts(config) -> dict[str, str]:
    stack = config.getoption("--stack", default=None)
    spec = _spec_or_none(config)
    return formats.run_facts(cluster=config.getoption("--cluster", default=None),
                             evidence=_state(config).evidence,
                             spec_path=Path(stack) if stack else getattr(spec, "path", None),
                             readonly=bool(config.getoption("--readonly", default=False)))


@pytest.hookimpl(tryfirst=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_run_facts(session, exitstatus):
    """Run-level facts, before JUnit and HTML are written: JUnit <properties> of the
    testsuite, and rows of the HTML report's Environment table (pytest-metadata)."""
    config = session.config
    st = _state(config)
    if not st.records or config.option.collectonly:
        return
    facts = {k: st.redactor(v) for k, v in _run_facts(config).items()}
    try:
        from _pytest.junitxml import xml_key   # the LogXML of --junitxml (no public handle)
        xml = config.stash.get(xml_key, None)
    except ImportError:
        xml = None
    if xml is not None:
        for name, value in facts.items():
            xml.add_global_property(name, value)
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:
        return
    if metadata_key in config.stash:   # pytest-html renders this dict at its sessionfinish
        config.stash[metadata_key].update(facts)


# ---- a run that cannot start ------------------------------------------------------------------
RUN_ERROR_EXIT = 2


def stop_run(config, reason: str, secrets=()) -> None:
    """The cluster is unusable (unknown context, unreachable API server): nothing is
    collected or run; at the end the reason is printed once, results.json and the JUnit
    file (when asked for) say it, and the run exits 2. ``secrets`` (the kubeconfig's
    credentials) are redacted from all of it, and the leak probe looks for them."""
    st = _state(config)
    st.redactor.add(*secrets)
    st.error = st.redactor(reason)


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session):
    if _state(session.config).error is not None:
        return True   # collected nothing: no test runs against an unusable cluster


@pytest.hookimpl(trylast=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_run_error(session, exitstatus):
    """After pytest's JUnit writer (which would record an empty run)."""
    config = session.config
    st = _state(config)
    if st.error is None:
        return
    sys.stderr.write(f"error: {st.error}\n")
    rd = Path(config.getoption("--report-dir", default="reports"))
    st.written.append(rep.write_json(rd / "results.json", _results(config), _meta(config),
                                     st.redactor, error=st.error))
    if getattr(config.option, "xmlpath", None):
        rep.write_junit_error(Path(config.option.xmlpath), st.error,
                              suite=config.getini("junit_suite_name"))
    session.exitstatus = RUN_ERROR_EXIT


@pytest.hookimpl(hookwrapper=True, specname="pytest_sessionfinish")
def pytest_sessionfinish_leak_probe(session, exitstatus):
    """Proof for SEC-RPT-001, after every report is written (ours, JUnit, HTML): no
    registered secret in any of them, in any form (raw, base64, JSON- or HTML-escaped,
    or inside decoded JSON). A leak is redacted in place and fails the run."""
    yield
    config = session.config
    st = _state(config)
    if not st.redactor.secrets or config.option.collectonly:
        return
    paths = list(st.written)
    for opt in ("xmlpath", "htmlpath"):
        if getattr(config.option, opt, None):
            paths.append(Path(getattr(config.option, opt)))
    for p in paths:
        if not p.is_file():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        leaked = find_leaks(text, st.redactor.secrets)
        if leaked:
            text = st.redactor(text)
            if find_leaks(text, st.redactor.secrets):   # a form the redactor cannot remove
                text = ("report withheld: it held a Secret value in a form that could not "
                        "be redacted (SEC-RPT-001); see the terminal output\n")
            p.write_text(text, encoding="utf-8")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"SEC-RPT-001: {len(leaked)} secret value(s) reached {p}; "
                              "redacted there, and the run fails", red=True)




def _svg(config) -> str:
    spec = _spec_or_none(config)
    statuses = {r.control.id: r.status for r in _results(config)}
    objs = _state(config).objects
    nodes = svg.placement(objs, spec) if objs is not None else None
    return _redact(config, svg.render(spec, statuses, title=f"DuckLake stack on "
                                      f"{config.getoption('--cluster', default='?')}",
                                      nodes=nodes))


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report):
    report.title = "DuckLake stack conformance report"


@pytest.hookimpl(optionalhook=True)   # pytest-html may be absent or disabled (-p no:html)
def pytest_html_results_summary(prefix, summary, postfix, session):
    config = session.config
    st = _state(config)
    if st.error is not None:
        prefix.append(f'<p class="run-error"><b>The run could not start</b>: '
                      f'{escape(st.error)}</p>')
        return
    if not st.records:
        return
    results = _results(config)
    if _spec_or_none(config) is not None:
        prefix.append(f'<div class="stack-picture">{_svg(config)}</div>')
    prefix.append(rep.summary_html(results, st.redactor))
    prefix.append(rep.faults_html(results, st.redactor))
    prefix.append(rep.controls_html(results, st.redactor))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells):
    # sortable: pytest-html sorts by the text of each row's <td class="col-<type>">
    cells[1:1] = [f'<th class="sortable" data-column-type="{col}">{title}</th>'
                  for col, title in (("control", "Control"), ("severity", "Severity"),
                                     ("status", "Status"))]


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report, cells):
    # the control, its severity and status travel on the report (user properties the
    # plugin sets at collection and in makereport; the last "status" wins)
    props = dict(report.user_properties)
    cid, severity = props.get("control_id"), props.get("severity")
    if cid is None or severity not in rep.SEVERITY_ORDER:
        cells[1:1] = ['<td class="col-control"></td>', '<td class="col-severity"></td>',
                      '<td class="col-status"></td>']
        return
    status = props.get("status", catalog.NOT_RUN)
    # a hidden rank first: severity sorts critical..low, status worst first
    cells[1:1] = [f'<td class="col-control">{escape(cid)}</td>',
                  f'<td class="col-severity">{_rank(rep.SEVERITY_ORDER[severity])}'
                  f"{escape(severity)}</td>",
                  f'<td class="col-status">{_rank(catalog.rank(status))}'
                  f"{rep.badge(status, 'exempt' in props)}</td>"]


def _rank(n: int) -> str:
    return f'<span hidden class="sort-rank">{n}</span>'


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    st = _state(config)
    if st.error is None and (not st.records or config.option.collectonly):
        return
    lines = rep.terminal_lines(_results(config))
    if lines:
        terminalreporter.write_sep("=", "conformance controls")
        for line in lines:
            terminalreporter.write_line(_redact(config, line))
        word, missing = rep.verdict(_results(config))
        terminalreporter.write_line(f"verdict: {word}" + (f" ({missing} control(s) not run or "
                                                          "not evaluated)" if missing else ""))
    if st.phases:
        terminalreporter.write_sep("=", "time to green")
        for name, took, note in st.phases + [("session total", time.monotonic() - st.started,
                                              "")]:
            terminalreporter.write_line(f"{name:<36}{took:8.1f}s  {note}")
    for p in st.written:
        terminalreporter.write_line(f"report: {p}")
