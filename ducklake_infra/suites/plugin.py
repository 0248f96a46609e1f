"""The conformance pytest plugin: control markers, selection, statuses and what each
test's outcome means for its control. Its session fixtures are in suites.session, its
reports in suites.report_hooks (both registered below).

Loaded by ducklake_infra.pytest_plugin (``pytest_plugins``), or by a conftest alone.

* ``@pytest.mark.control("MINIO-SVC-001")`` ties a test to a control from
  ``ducklake_infra/suites/controls.yaml``; the node id carries the ID (``test_x[MINIO-SVC-001]``),
  and so do the JUnit properties, ``<report-dir>/results.json``, ``policyreport.yaml``,
  ``results.sarif`` (suites.formats) and the HTML report.
* Statuses PASS / FAIL / WARN / ERROR / NOT_EVALUATED (see suites.catalog).
* Controls with ``mutating: true`` are marked ``mutating``; under ``--readonly``
  they are reported "not evaluated (read-only)", never as passed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ducklake_infra.provision.guard import Redactor
from ducklake_infra.suites import catalog

pytest_plugins = ["ducklake_infra.suites.session", "ducklake_infra.suites.report_hooks"]

SUITES_DIR = Path(__file__).resolve().parent
READONLY_REASON = "not evaluated (read-only)"


@dataclass
class State:
    reg: catalog.Catalog
    records: dict[str, catalog.TestRecord] = field(default_factory=dict)
    redactor: Redactor = field(default_factory=Redactor)
    kubectl: object = None
    spec: object = None
    results: list | None = None
    written: list[Path] = field(default_factory=list)
    evidence: object = None   # suites.evidence.Recorder: every object inspected
    objects: object = None    # the session's gathered objects (the picture places pods on nodes)
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
    g.addoption("--min-severity", default=None, choices=catalog.SEVERITIES,
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
    def from_config(cls, config, reg: catalog.Catalog) -> "Selection":
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

    def wants(self, c: catalog.Control) -> bool:
        order = catalog.SEVERITIES.index
        return ((not self.ids or c.id in self.ids)
                and (not self.min_severity or order(c.severity) <= order(self.min_severity))
                and (not self.sections or c.section in self.sections)
                and (not self.components or c.component in self.components))

    def as_dict(self) -> dict:
        return {"controls": sorted(self.ids), "min_severity": self.min_severity,
                "sections": sorted(self.sections), "components": sorted(self.components)}


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    # the markers the packaged suites use, registered here so that an installed auditor
    # (no pyproject.toml of ours) runs without unknown-mark warnings
    for line in ("control(id): the conformance control (ducklake_infra/suites/controls.yaml) "
                 "this test evaluates",
                 "cluster: needs a real kind cluster built from the bundle (CI runs these)",
                 "mutating: changes the cluster; refused under --readonly",
                 "disruptive: restarts the cluster or reinstalls the stack; runs after every "
                 "other test of the session"):
        config.addinivalue_line("markers", line)
    try:
        reg = catalog.load()
    except catalog.ControlsError as exc:
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


def control_of(item) -> catalog.Control | None:
    cs = getattr(item, "callspec", None)
    if cs is not None and isinstance(cs.params.get("control"), catalog.Control):
        return cs.params["control"]
    return None


@pytest.hookimpl(tryfirst=True)
def _spec_or_none(config):
    """The run's stack spec (None when it cannot be read: the run reports why elsewhere)."""
    st = _state(config)
    if st.spec is None:
        try:
            from ducklake_infra.provision import spec_file
            st.spec = spec_file.load(config.getoption("--stack", default=None))
        except Exception:
            return None
    return st.spec


def pytest_collection_modifyitems(config, items):
    st = _state(config)
    spec = _spec_or_none(config)
    profile = spec.profile if spec is not None else None
    # a control of another profile is not part of this run (e.g. the distributed profile's
    # HA controls on a standalone stack): deselected, and left out of the results
    dropped = [i for i in items if control_of(i) and (
        st.selection and not st.selection.wants(control_of(i))
        or not control_of(i).applies_to(profile))]
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
        st.records[item.nodeid] = catalog.TestRecord(item.nodeid, c)
        for k, v in (("control_id", c.id), ("control_title", c.title), ("seed_section", c.section),
                     ("severity", c.severity)):
            item.user_properties.append((k, v))


# ---- running -----------------------------------------------------------------------------------
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    rec = _state(item.config).records.get(item.nodeid)
    catalog.set_current(rec)
    try:
        yield
    finally:
        catalog.set_current(None)


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
    _record_status(report, call, rec, config, redact)
    _attach_diagnostics(report, rec, st, redact)
    _mark_report(item, report, rec, st, config)


def _record_status(report, call, rec, config, redact) -> None:
    """The control's status and reason from one phase's report."""
    c = rec.control
    if report.when == "setup":
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            reason = reason.removeprefix("Skipped: ")
            rec.status = catalog.NOT_EVALUATED
            rec.reason = READONLY_REASON if (c.mutating and config.getoption("--readonly", False)) \
                else reason
        elif report.failed:
            rec.status = catalog.ERROR
            rec.reason = redact("could not evaluate: setup failed: " + _short(call.excinfo))
    elif report.when == "call":
        if report.passed:
            rec.status = catalog.WARN if rec.warnings else catalog.PASS
        elif report.skipped:
            rec.status = catalog.NOT_EVALUATED
            rec.reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        elif call.excinfo is not None and _is_failure(call.excinfo):
            rec.status = catalog.FAIL
            rec.reason = redact(str(call.excinfo.value).strip().splitlines()[0][:500]
                                if str(call.excinfo.value).strip() else "assertion failed")
        else:
            rec.status = catalog.ERROR
            rec.reason = redact("could not evaluate: " + _short(call.excinfo)[:1000])
    elif report.when == "teardown" and report.failed and rec.status in (catalog.PASS, catalog.WARN):
        rec.status = catalog.ERROR
        rec.reason = redact("teardown failed: " + _short(call.excinfo))


def _attach_diagnostics(report, rec, st: State, redact) -> None:
    """A control that failed or errored gets the stack's diagnostics, once."""
    c = rec.control
    if report.when in ("setup", "call") and rec.status in (catalog.FAIL, catalog.ERROR) and not rec.diagnostics:
        rec.diagnostics = redact(_collect_diagnostics(st, c))
        if rec.diagnostics:
            report.sections.append(("diagnostics (events, pods, logs)", rec.diagnostics))
            try:
                from pytest_html import extras
                report.extras = getattr(report, "extras", []) + [
                    extras.text(rec.diagnostics, name=f"{c.id} diagnostics")]
            except ImportError:
                pass


def _mark_report(item, report, rec, st: State, config) -> None:
    """Status, remediation, reason and exemption as report properties; an exempted
    failure passes the run."""
    c = rec.control
    if report.when == "call" or (report.when == "setup" and not report.passed):
        props = [("status", rec.status)]
        if rec.status != catalog.PASS:
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


def _collect_diagnostics(st: State, c: catalog.Control) -> str:
    if st.kubectl is None or st.spec is None:
        return ""
    try:
        from ducklake_infra.suites.live import diagnostics
        return diagnostics(st.kubectl, st.spec, c.component)
    except Exception as exc:  # diagnostics must never hide the failure
        return f"(could not collect diagnostics: {type(exc).__name__}: {exc})"
