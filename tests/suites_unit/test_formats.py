"""results.json against the JSON Schema that ships in the package (issue 11 item 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ducklake_infra.suites import registry as R
from ducklake_infra.suites import report as rep
from report_schemas import check_written_reports, results_errors
from test_suites_plugin import CONFTEST, ROOT, TESTS

pytest_plugins = ["pytester"]
STACK = ROOT / "stack.yaml"


@pytest.fixture
def run(pytester):
    def _run(*args, conftest=CONFTEST, tests=TESTS):
        pytester.makeconftest(conftest)
        pytester.makepyfile(test_ctl=tests)
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", "out",
                                            "--junitxml", "out/junit.xml", "--html",
                                            "out/report.html", "--self-contained-html", *args)
    return _run


def out(pytester, name: str) -> Path:
    return pytester.path / "out" / name

def a_results_doc() -> dict:
    """A results.json document of two controls that ran, as the plugin writes it."""
    recs = [R.TestRecord(f"t.py::test_{i}", c, status=s, evidence=["seen"])
            for i, (c, s) in enumerate(zip(R.registry(), (R.PASS, R.FAIL)))]
    meta = {"cluster": "kind", "readonly": False, "stack": str(STACK),
            "phases": [{"phase": "session total", "seconds": 1.5, "note": ""}]}
    return json.loads(rep.to_json(rep.aggregate(R.registry(), recs, only_run=True), meta,
                                  lambda s: s))


# ---- results.json --------------------------------------------------------------------------
def test_results_json_names_its_schema_version_and_matches_the_schema(run, pytester):
    run()
    doc = json.loads(out(pytester, "results.json").read_text())
    assert doc["schemaVersion"] == rep.SCHEMA_VERSION == "ducklake-infra/results/v1"
    assert results_errors(doc) == []
    assert json.loads(rep.SCHEMA_FILE.read_text())["properties"]["schemaVersion"]["const"] \
        == rep.SCHEMA_VERSION


def _parent(doc, path):
    for p in path[:-1]:
        doc = doc[p]
    return doc


def _drop(path):
    def mutate(doc):
        del _parent(doc, path)[path[-1]]
    return mutate


def _set(path, value):
    def mutate(doc):
        _parent(doc, path)[path[-1]] = value
    return mutate


def assert_rejected(errors_of, doc, mutate, where: str) -> None:
    """``doc`` is valid; once ``mutate`` breaks it, ``errors_of`` reports it at ``where``
    (the test fails if the valid document is rejected or the broken one accepted)."""
    assert errors_of(doc) == []
    mutate(doc)
    errors = errors_of(doc)
    assert any(e.startswith(where) for e in errors), errors


@pytest.mark.parametrize("mutate,where", [
    (_drop(["verdict"]), "(document): 'verdict' is a required property"),
    (_drop(["schemaVersion"]), "(document): 'schemaVersion' is a required property"),
    (_set(["schemaVersion"], "ducklake-infra/results/v2"), "schemaVersion"),
    (_set(["controls", 0, "status"], "MAYBE"), "controls/0/status"),
    (_set(["controls", 1, "tests", 0, "status"], "SKIPPED"), "controls/1/tests/0/status"),
    (_drop(["controls", 0, "remediation"]), "controls/0: 'remediation' is a required"),
    (_set(["controls", 0, "severity"], "urgent"), "controls/0/severity"),
    (_set(["totals", "MAYBE"], 1), "totals: Additional properties"),
    (_set(["surprise"], True), "(document): Additional properties"),
    (_set(["not_run"], -1), "not_run"),
])
def test_results_schema_rejects_a_broken_document(mutate, where):
    assert_rejected(results_errors, a_results_doc(), mutate, where)


def test_results_schema_enums_are_the_registrys():
    schema = json.loads(rep.SCHEMA_FILE.read_text())
    assert schema["$defs"]["status"]["enum"] == list(R.STATUSES)
    control = schema["$defs"]["control"]["properties"]
    assert control["severity"]["enum"] == list(R.SEVERITIES)
    assert control["component"]["enum"] == list(R.COMPONENTS)
    assert list(schema["properties"]["totals"]["required"]) == list(rep.STATUS_LABEL)


def test_every_pytester_run_has_its_reports_checked(run, pytester):
    """The pytester fixture checks what every plugin run of these tests wrote; here the
    check itself is shown to find the documents and to catch a broken one."""
    run()
    assert check_written_reports(pytester.path) >= 1
    path = out(pytester, "results.json")
    good = path.read_text()
    doc = json.loads(good)
    doc["controls"][0]["status"] = "MAYBE"
    path.write_text(json.dumps(doc))
    with pytest.raises(AssertionError):
        check_written_reports(pytester.path)
    path.write_text(good)
