"""The conformance pytest plugin: control markers, statuses, session fixtures, reports.

Loaded by the root conftest (``pytest_plugins = ["ducklake_infra.suites.plugin"]``).

* ``@pytest.mark.control("MINIO-SVC-001")`` ties a test to a control from
  ``ducklake_infra/suites/controls.yaml``; the node id carries the ID (``test_x[MINIO-SVC-001]``),
  and so do the JUnit properties, ``<report-dir>/results.json``, ``policyreport.yaml``,
  ``results.sarif`` (suites.formats) and the HTML report.
* Statuses PASS / FAIL / WARN / ERROR / NOT_EVALUATED (see suites.registry).
* Controls with ``mutating: true`` are marked ``mutating``; under ``--readonly``
  they are reported "not evaluated (read-only)", never as passed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import pytest

from ducklake_infra.provision.guard import Redactor, find_leaks
from ducklake_infra.suites import formats
from ducklake_infra.suites import registry as R
from ducklake_infra.suites import report as rep
from ducklake_infra.suites import svg

SUITES_DIR = Path(__file__).resolve().parent
READONLY_REASON = "not evaluated (read-only)"


@dataclass
class State:
    reg: R.Registry
    records: dict[str, R.TestRecord] = field(default_factory=dict)
    redactor: Redactor = field(default_factory=Redactor)
    kubectl: object = None
    spec: object = None
    results: list | None = None
    written: list[Path] = field(default_factory=list)
    evidence: object = None   # suites.evidence.Recorder: every object inspected
    # time to green: (phase, seconds, note) for cluster, each up phase, suites
    phases: list = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    selection: "Selection | None" = None
    error: str | None = None   # why the run could not start (see stop_run)


STATE = pytest.StashKey[State]()


def _state(config) -> State:
    return config.stash[STATE]


def _redact(config, text: str) -> str:
    return _state(config).redactor(text) if STATE in config.stash else text


# ---- configuration and collection ---------------------------------------------------------
def _targets_suites(config) -> bool:
    args = [a.split("::")[0] for a in config.args if not a.startswith("-")]
    if not args:
        return True
    for a in args:
        p = (Path(config.invocation_params.dir) / a).resolve()
        if p == SUITES_DIR or SUITES_DIR in p.parents or p in SUITES_DIR.parents:
            return True
    return False


def pytest_addoption(parser):
    g = parser.getgroup("ducklake-infra", "DuckLake stack conformance")
    g.addoption("--control", action="append", default=[], metavar="ID[,ID]",
                help="run only these controls (repeatable)")
    g.addoption("--min-severity", default=None, choices=R.SEVERITIES,
                help="run only controls of at least this severity")
    g.addoption("--section", action="append", default=[], metavar="N",
                help="run only controls of this seed plan section, e.g. 2.1 (repeatable)")
    g.addoption("--component", action="append", default=[], metavar="NAME",
                help="run only controls of this component, e.g. minio (repeatable)")


@dataclass(frozen=True)
class Selection:
    """Which controls a run asked for; controls left out are NOT RUN, and the verdict
    of a run that left any out is partial (exemptions apply as always)."""
    ids: frozenset = frozenset()
    min_severity: str | None = None
    sections: frozenset = frozenset()
    components: frozenset = frozenset()

    @classmethod
    def from_config(cls, config, reg: R.Registry) -> "Selection":
        ids = frozenset(i.strip() for a in config.getoption("--control", default=[]) or []
                        for i in a.split(",") if i.strip())
        sections = frozenset(config.getoption("--section", default=[]) or [])
        components = frozenset(config.getoption("--component", default=[]) or [])
        for what, asked, known in (("--control", ids, {c.id for c in reg}),
                                   ("--section", sections, {c.section for c in reg}),
                                   ("--component", components, {c.component for c in reg})):
            unknown = sorted(asked - known)
            if unknown:
                raise pytest.UsageError(f"{what} {', '.join(unknown)}: unknown (known: "
                                        f"{', '.join(sorted(known))})")
        return cls(ids, config.getoption("--min-severity", default=None), sections, components)

    def __bool__(self) -> bool:
        return bool(self.ids or self.min_severity or self.sections or self.components)

    def wants(self, c: R.Control) -> bool:
        order = R.SEVERITIES.index
        return ((not self.ids or c.id in self.ids)
                and (not self.min_severity or order(c.severity) <= order(self.min_severity))
                and (not self.sections or c.section in self.sections)
                and (not self.components or c.component in self.components))

    def as_dict(self) -> dict:
        return {"controls": sorted(self.ids), "min_severity": self.min_severity,
                "sections": sorted(self.sections), "components": sorted(self.components)}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    config.addinivalue_line("markers", "control(id): the conformance control (ducklake_infra/suites/controls.yaml) "
                                       "this test evaluates")
    try:
        reg = R.load()
    except R.ControlsError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[STATE] = State(reg, selection=Selection.from_config(config, reg))
    # the HTML report goes to <report-dir>/report.html unless --html says otherwise
    if hasattr(config.option, "htmlpath") and not config.option.htmlpath and \
            _targets_suites(config) and not config.option.collectonly:
        rd = Path(config.getoption("--report-dir", default="reports"))
        config.option.htmlpath = str(rd / "report.html")
        config.option.self_contained_html = True


def pytest_generate_tests(metafunc):
    marker = metafunc.definition.get_closest_marker("control")
    if marker is None:
        return
    if len(marker.args) != 1 or not isinstance(marker.args[0], str):
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: use @pytest.mark.control(\"ID\")")
    cid = marker.args[0]
    reg = _state(metafunc.config).reg
    if cid not in reg:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: unknown control ID {cid!r} "
                                f"(not in ducklake_infra/suites/controls.yaml)")
    metafunc.parametrize("control", [reg[cid]], ids=[cid], indirect=True)


@pytest.fixture(autouse=True)
def control(request):
    """The Control of a control test (None for other tests)."""
    return getattr(request, "param", None)


def control_of(item) -> R.Control | None:
    cs = getattr(item, "callspec", None)
    if cs is not None and isinstance(cs.params.get("control"), R.Control):
        return cs.params["control"]
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    st = _state(config)
    if st.selection:
        dropped = [i for i in items if control_of(i) and not st.selection.wants(control_of(i))]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if i not in set(dropped)]
    for item in items:
        c = control_of(item)
        if c is None:
            continue
        if c.mutating and not item.get_closest_marker("mutating"):
            item.add_marker(pytest.mark.mutating)
        elif item.get_closest_marker("mutating") and not c.mutating:
            raise pytest.UsageError(f"{item.nodeid} is marked mutating but control {c.id} is not "
                                    "(set mutating: true in ducklake_infra/suites/controls.yaml)")
        st.records[item.nodeid] = R.TestRecord(item.nodeid, c)
        for k, v in (("control_id", c.id), ("control_title", c.title), ("seed_section", c.section),
                     ("severity", c.severity)):
            item.user_properties.append((k, v))


# ---- running -----------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    rec = _state(item.config).records.get(item.nodeid)
    R.set_current(rec)
    try:
        yield
    finally:
        R.set_current(None)


def _short(excinfo) -> str:
    msg = str(excinfo.value).strip()
    return f"{excinfo.typename}: {msg}" if msg else excinfo.typename


def _is_failure(excinfo) -> bool:
    return excinfo.errisinstance(AssertionError) or excinfo.errisinstance(pytest.fail.Exception)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    config = item.config
    st = _state(config)
    rec = st.records.get(item.nodeid)
    redact = st.redactor
    # secrets never reach the terminal, JUnit or HTML through a failure text or a
    # test's captured output
    if st.redactor.secrets:
        if report.longrepr is not None:
            text = str(report.longrepr)
            if redact(text) != text:
                report.longrepr = redact(text)
        report.sections = [(title, redact(content)) for title, content in report.sections]
    if rec is None:
        return
    c = rec.control
    if report.when == "setup":
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            rec.status = R.NOT_EVALUATED
            rec.reason = READONLY_REASON if (c.mutating and config.getoption("--readonly", False)) \
                else reason
        elif report.failed:
            rec.status = R.ERROR
            rec.reason = redact("could not evaluate: setup failed: " + _short(call.excinfo))
    elif report.when == "call":
        if report.passed:
            rec.status = R.WARN if rec.warnings else R.PASS
        elif report.skipped:
            rec.status = R.NOT_EVALUATED
            rec.reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        elif call.excinfo is not None and _is_failure(call.excinfo):
            rec.status = R.FAIL
            rec.reason = redact(str(call.excinfo.value).strip().splitlines()[0][:500]
                                if str(call.excinfo.value).strip() else "assertion failed")
        else:
            rec.status = R.ERROR
            rec.reason = redact("could not evaluate: " + _short(call.excinfo)[:1000])
    elif report.when == "teardown" and report.failed and rec.status in (R.PASS, R.WARN):
        rec.status = R.ERROR
        rec.reason = redact("teardown failed: " + _short(call.excinfo))
    if report.when in ("setup", "call") and rec.status in (R.FAIL, R.ERROR) and not rec.diagnostics:
        rec.diagnostics = redact(_collect_diagnostics(st, c))
        if rec.diagnostics:
            report.sections.append(("diagnostics (events, pods, logs)", rec.diagnostics))
            try:
                from pytest_html import extras
                report.extras = getattr(report, "extras", []) + [
                    extras.text(rec.diagnostics, name=f"{c.id} diagnostics")]
            except ImportError:
                pass
    if report.when == "call" or (report.when == "setup" and not report.passed):
        props = [("status", rec.status)]
        if rec.status != R.PASS:
            props.append(("remediation", c.remediation))
        if rec.reason:
            props.append(("reason", rec.reason))
        ex = st.reg.exemption(c.id, config.getoption("--cluster", default=None))
        if ex is not None:
            props.append(("exempt", ex.reason))
        # JUnit writes the teardown report's properties: they are copied from the item
        item.user_properties.extend(props)
        report.user_properties.extend(props)
        if ex is not None:
            if report.failed:
                # still shown with its real status in every report; does not fail the run
                report.sections.append(("exempted", f"{c.id} is exempted: {ex.reason}"))
                report.outcome = "passed"
                report.longrepr = None


def _collect_diagnostics(st: State, c: R.Control) -> str:
    if st.kubectl is None or st.spec is None:
        return ""
    try:
        from ducklake_infra.suites.live import diagnostics
        return diagnostics(st.kubectl, st.spec, c.component)
    except Exception as exc:  # diagnostics must never hide the failure
        return f"(could not collect diagnostics: {type(exc).__name__}: {exc})"


# ---- session fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def spec(pytestconfig):
    """The stack spec from --stack (every name of the stack comes from here)."""
    from ducklake_infra.provision.spec import SpecError, load
    try:
        s = load(pytestconfig.getoption("--stack"))
    except SpecError as exc:
        pytest.fail(str(exc), pytrace=False)
    _state(pytestconfig).spec = s
    return s


@pytest.fixture(scope="session")
def stack(pytestconfig, cluster, spec, runner, kubectl):
    """The stack under test. --cluster=kind: installed (idempotently) once per
    session; an existing context is audited as it is; --readonly never installs."""
    st = _state(pytestconfig)
    st.kubectl = kubectl
    st.redactor = runner.redactor  # one Redactor: the runner's, fed with the cluster's Secrets
    if cluster.is_kind and not pytestconfig.getoption("--readonly"):
        from ducklake_infra.provision.errors import DucklakeInfraError
        from ducklake_infra.provision.progress import Progress
        from ducklake_infra.provision.stack import up
        start = time.monotonic()
        # shown as it happens (helm waits and rollouts take minutes), not captured
        capman = pytestconfig.pluginmanager.getplugin("capturemanager")
        live = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        try:
            with live:
                progress = Progress(log_path=runner.log_path)
                up(cluster, spec, runner, progress)
        except DucklakeInfraError as exc:
            pytest.fail(f"the stack could not be installed: {runner.redactor(str(exc))}",
                        pytrace=False)
        cluster.stack_seconds = time.monotonic() - start
        if getattr(cluster, "ready_seconds", None) is not None:
            st.phases.append(("cluster create/reuse", cluster.ready_seconds, cluster.context))
        st.phases += [(f"up: {n}", t, note) for n, t, note in progress.timings]
    return spec


@pytest.fixture(scope="session")
def objs(pytestconfig, stack, kubectl, runner, cluster, spec):
    """The live objects of the stack (one consistent snapshot per session); every
    Secret value read is registered with the runner's Redactor."""
    from ducklake_infra.suites.live import gather
    o = gather(kubectl, runner, cluster, spec)
    _evidence_start(pytestconfig, cluster, kubectl)  # evidence bundle
    record_inspected(pytestconfig, o)                # evidence bundle
    return o


# ---- evidence bundle (ducklake_infra/suites/evidence.py) -------------------------------------------------------
def _evidence_start(config, cluster, kubectl) -> None:
    from ducklake_infra.suites import evidence as ev
    st = _state(config)
    if st.evidence is None:
        st.evidence = ev.Recorder()
    if st.evidence.context is None:
        st.evidence.context = getattr(cluster, "context", None)
        st.evidence.server_version = ev.server_version(kubectl)


def record_inspected(config, *objects) -> None:
    """Record objects a check read (dicts, Lists, Objects) for the evidence bundle."""
    from ducklake_infra.suites import evidence as ev
    st = _state(config)
    if st.evidence is None:
        st.evidence = ev.Recorder()
    st.evidence.record(*objects)


@pytest.fixture(scope="session")
def inspected(pytestconfig):
    """``inspected(obj, ...)``: add objects a test read itself to the evidence bundle."""
    return lambda *objects: record_inspected(pytestconfig, *objects)


def _write_evidence(config, st: State, results, rd: Path) -> None:
    if st.evidence is None or st.evidence.empty:
        return  # no cluster was inspected
    from ducklake_infra.suites import evidence as ev
    bundle = ev.build(st.evidence, readonly=bool(config.getoption("--readonly", default=False)),
                      run_id=ev.run_id_now(), cluster_option=config.getoption("--cluster",
                                                                              default=None),
                      stack=str(config.getoption("--stack", default="")),
                      controls=ev.controls_of(results), redact=st.redactor)
    st.written.append(ev.write(rd, bundle))
# ---- end evidence bundle ------------------------------------------------------------------------


# ---- reports -----------------------------------------------------------------------------------
def _results(config) -> list:
    st = _state(config)
    if st.results is None:
        st.results = rep.aggregate(st.reg, st.records.values(),
                                   config.getoption("--cluster", default=None))
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
                text = (f"report withheld: it held a Secret value in a form that could not "
                        f"be redacted (SEC-RPT-001); see the terminal output\n")
            p.write_text(text, encoding="utf-8")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            tr = config.pluginmanager.get_plugin("terminalreporter")
            if tr is not None:
                tr.write_line(f"SEC-RPT-001: {len(leaked)} secret value(s) reached {p}; "
                              "redacted there, and the run fails", red=True)


def _spec_or_none(config):
    st = _state(config)
    if st.spec is None:
        try:
            from ducklake_infra.provision.spec import load
            st.spec = load(config.getoption("--stack", default=None))
        except Exception:
            return None
    return st.spec


def _svg(config) -> str:
    spec = _spec_or_none(config)
    statuses = {r.control.id: r.status for r in _results(config)}
    return _redact(config, svg.render(spec, statuses, title=f"DuckLake stack on "
                                      f"{config.getoption('--cluster', default='?')}"))


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
    prefix.append(rep.controls_html(results, st.redactor))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_header(cells):
    # sortable: pytest-html sorts by the text of each row's <td class="col-<type>">
    cells[1:1] = [f'<th class="sortable" data-column-type="{col}">{title}</th>'
                  for col, title in (("control", "Control"), ("severity", "Severity"),
                                     ("status", "Status"))]


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_row(report, cells):
    config = _CONFIG[0]
    rec = _state(config).records.get(report.nodeid) if config else None
    if rec is None:
        cells[1:1] = ['<td class="col-control"></td>', '<td class="col-severity"></td>',
                      '<td class="col-status"></td>']
        return
    exempt = any(k == "exempt" for k, _ in report.user_properties)
    # a hidden rank first: severity sorts critical..low, status worst first
    cells[1:1] = [f'<td class="col-control">{rec.control.id}</td>',
                  f'<td class="col-severity">{_rank(rep.SEVERITY_ORDER[rec.control.severity])}'
                  f"{rec.control.severity}</td>",
                  f'<td class="col-status">{_rank(R.rank(rec.status))}'
                  f"{rep.badge(rec.status, exempt)}</td>"]


def _rank(n: int) -> str:
    return f'<span hidden class="sort-rank">{n}</span>'


_CONFIG: list = [None]


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _CONFIG[0] = session.config


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
