"""The formats other tools read (ducklake_infra/suites/formats.py, issue 11 item 3):
results.json against its packaged schema, the PolicyReport against the upstream CRD,
SARIF against the OASIS schema, run-level JUnit properties, the HTML report's sortable
control columns and Environment facts; secrets in none of them."""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

import ducklake_infra
from ducklake_infra.provision import spec_file
from ducklake_infra.provision.guard import find_leaks
from ducklake_infra.suites import formats
from ducklake_infra.suites import catalog
from ducklake_infra.suites import report as rep
from .report_schemas import (check_written_reports, policy_report_errors, report_crd,
                            results_errors, sarif_errors)
from .test_plugin import CONFTEST, ROOT, TESTS

pytest_plugins = ["pytester"]
SECRET = "hunter2-secret-value"        # what CONFTEST registers with the Redactor
STACK = ROOT / "stack.yaml"
# the cluster facts a session that read the cluster holds (plugin State.evidence)
WITH_EVIDENCE = CONFTEST + '''

@pytest.fixture(autouse=True, scope="session")
def _evidence(pytestconfig):
    from ducklake_infra.suites import evidence as ev
    from ducklake_infra.suites.plugin import STATE
    rec = ev.Recorder(context="prod-ctx", server_version={"gitVersion": "v1.31.2"})
    rec.record(*({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n, "uid": n}}
                 for n in ("node-a", "node-b")))
    pytestconfig.stash[STATE].evidence = rec
'''

# the controls of a run on the repository's (standalone) stack: every one but the
# distributed profile's
STANDALONE = [c for c, ctl in catalog.catalog().controls.items() if ctl.applies_to("standalone")]


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


def policy_docs(pytester) -> list[dict]:
    return list(yaml.safe_load_all(out(pytester, "policyreport.yaml").read_text()))


def policy_results(docs) -> dict[str, tuple[dict, dict]]:
    """control ID -> (its result, the report holding it)"""
    return {res["policy"]: (res, d) for d in docs for res in d["results"]}


def sarif_run(pytester) -> dict:
    doc = json.loads(out(pytester, "results.sarif").read_text())
    assert doc["version"] == "2.1.0" and len(doc["runs"]) == 1
    return doc["runs"][0]


def a_results_doc() -> dict:
    """A results.json document of two controls that ran, as the plugin writes it."""
    recs = [catalog.TestRecord(f"t.py::test_{i}", c, status=s, evidence=["seen"])
            for i, (c, s) in enumerate(zip(catalog.catalog(), (catalog.PASS, catalog.FAIL)))]
    meta = {"cluster": "kind", "readonly": False, "stack": str(STACK),
            "selection": {"controls": [], "min_severity": "high", "sections": ["2.1"],
                          "components": []},
            "phases": [{"phase": "session total", "seconds": 1.5, "note": ""}]}
    return json.loads(rep.to_json(rep.aggregate(catalog.catalog(), recs, only_run=True), meta,
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
    (_set(["selection", "min_severity"], "urgent"), "selection"),
    (_drop(["selection"]), "(document): 'selection' is a required property"),
])
def test_results_schema_rejects_a_broken_document(mutate, where):
    assert_rejected(results_errors, a_results_doc(), mutate, where)


def test_results_schema_enums_are_the_registrys():
    defs = json.loads(rep.SCHEMA_FILE.read_text())["$defs"]
    assert defs["status"]["enum"] == list(catalog.STATUSES)
    assert defs["severity"]["enum"] == list(catalog.SEVERITIES)
    assert defs["component"]["enum"] == list(catalog.COMPONENTS)
    totals = json.loads(rep.SCHEMA_FILE.read_text())["properties"]["totals"]
    assert totals["required"] == list(rep.STATUS_LABEL)


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


# ---- PolicyReport ----------------------------------------------------------------------------
def test_policy_report_one_result_per_control_in_the_components_namespace(run, pytester):
    run()
    docs = policy_docs(pytester)
    spec = spec_file.load(STACK)
    by_kind = [(d["kind"], d["metadata"].get("namespace")) for d in docs]
    assert by_kind == sorted({("PolicyReport", spec.minio.namespace),
                              ("PolicyReport", spec.backend.namespace)}) + \
        [("ClusterPolicyReport", None)]
    results = policy_results(docs)
    assert sorted(results) == sorted(STANDALONE)          # every control of the run once
    assert sum(len(d["results"]) for d in docs) == len(STANDALONE)
    expect = {"MINIO-SVC-001": ("pass", "PASS", spec.minio.namespace),
              "MINIO-SEC-002": ("fail", "FAIL", spec.minio.namespace),
              "PG-CFG-001": ("warn", "WARN", spec.postgresql.namespace),
              "BE-RDY-001": ("error", "ERROR", spec.backend.namespace),
              "DP-ING-001": ("pass", "PASS", None),
              "MINIO-REL-001": ("skip", "NOT_RUN", spec.minio.namespace)}
    for cid, (result, status, ns) in expect.items():
        res, report = results[cid]
        c = catalog.catalog()[cid]
        assert (res["result"], res["properties"]["status"]) == (result, status), cid
        assert report["metadata"].get("namespace") == ns, cid
        assert res["rule"] == c.title and res["category"] == c.section
        assert res["severity"] == c.severity and res["source"] == "ducklake-infra"
        assert res["properties"]["component"] == c.component
        assert res["properties"]["exempt"] == "false"
    assert "***" in results["MINIO-SEC-002"][0]["message"]              # evidence, redacted
    assert "ConnectionError: API server unreachable" in results["BE-RDY-001"][0]["message"]
    for d in docs:
        counts = {k: sum(1 for r in d["results"] if r["result"] == k)
                  for k in ("pass", "fail", "warn", "error", "skip")}
        assert d["summary"] == counts


def test_policy_report_readonly_and_exempt(run, pytester, monkeypatch):
    reg = catalog.load()
    reg.exemptions.append(catalog.Exemption("MINIO-SEC-002", "accepted risk in the lab"))
    monkeypatch.setattr(catalog, "load", lambda *a, **k: reg)
    run("--readonly", "--cluster", "prod")
    results = policy_results(policy_docs(pytester))
    dp = results["DP-ING-001"][0]
    assert (dp["result"], dp["properties"]["status"]) == ("skip", "NOT_EVALUATED")
    assert "not evaluated (read-only)" in dp["message"]
    ex = results["MINIO-SEC-002"][0]
    assert ex["result"] == "fail"                       # shown with its real status
    assert ex["properties"]["exempt"] == "true"
    assert ex["properties"]["exemptReason"] == "accepted risk in the lab"


def test_without_a_spec_every_result_is_in_one_cluster_report():
    results = rep.aggregate(catalog.catalog(), [])
    docs = formats.policy_reports(results, None, now=0)
    assert [d["kind"] for d in docs] == ["ClusterPolicyReport"]
    assert len(docs[0]["results"]) == len(results)
    assert docs[0]["summary"]["skip"] == len(results)


def test_policy_mappings_cover_every_status_and_severity():
    assert set(formats.POLICY_RESULT) == set(catalog.STATUSES)
    assert set(formats.POLICY_SEVERITY) == set(catalog.SEVERITIES)
    assert formats.POLICY_RESULT[catalog.NOT_EVALUATED] == formats.POLICY_RESULT[catalog.NOT_RUN] == "skip"


@pytest.mark.upstream_schemas
def test_policy_report_matches_the_crd(run, pytester):
    run()
    docs = policy_docs(pytester)
    assert {d["kind"] for d in docs} == {"PolicyReport", "ClusterPolicyReport"}
    for d in docs:
        assert policy_report_errors(d) == [], d["kind"]
    crd_result = report_crd("PolicyReport")["spec"]["versions"]
    schema = next(v for v in crd_result if v["name"] == "v1alpha2")["schema"]["openAPIV3Schema"]
    item = schema["properties"]["results"]["items"]["properties"]
    assert set(formats.POLICY_RESULT.values()) <= set(item["result"]["enum"])
    assert set(formats.POLICY_SEVERITY.values()) <= set(item["severity"]["enum"])


def _one_report():
    spec = spec_file.load(STACK)
    results = rep.aggregate(catalog.catalog(), [])
    return next(d for d in formats.policy_reports(results, spec, now=0)
                if d["kind"] == "PolicyReport")


@pytest.mark.upstream_schemas
@pytest.mark.parametrize("mutate,where", [
    (_set(["results", 0, "result"], "maybe"), "results/0/result"),
    (_set(["results", 0, "severity"], "urgent"), "results/0/severity"),
    (_set(["results", 0, "properties", "exempt"], False), "results/0/properties/exempt"),
    (_set(["results", 0, "timestamp"], "2025-01-01"), "results/0/timestamp"),
    (_set(["results", 0, "status"], "fail"), "results/0: Additional properties"),
    (_drop(["results", 0, "policy"]), "results/0: 'policy' is a required property"),
    (_set(["summary", "pass"], "3"), "summary/pass"),
    (_set(["kind"], "Report"), "kind 'Report' is not a policy report"),
    (_drop(["metadata", "namespace"]), "metadata.namespace"),
])
def test_the_crd_rejects_a_broken_policy_report(mutate, where):
    assert_rejected(policy_report_errors, _one_report(), mutate, where)


# ---- SARIF -----------------------------------------------------------------------------------
def test_sarif_rules_are_every_control_and_results_the_failing_ones(run, pytester):
    run()
    sr = sarif_run(pytester)
    driver = sr["tool"]["driver"]
    assert driver["name"] == "ducklake-infra" and driver["version"] == ducklake_infra.__version__
    rules = driver["rules"]
    assert sorted(r["id"] for r in rules) == sorted(STANDALONE)   # the run's profile's
    for rule in rules:
        c = catalog.catalog()[rule["id"]]
        assert rule["shortDescription"]["text"] == c.title
        assert rule["help"]["text"] == c.remediation
        assert rule["properties"]["security-severity"] == formats.SECURITY_SEVERITY[c.severity]
        assert c.component in rule["properties"]["tags"]
    got = {r["ruleId"]: r for r in sr["results"]}
    assert {k: r["level"] for k, r in got.items()} == {
        "MINIO-SEC-002": "error", "PG-CFG-001": "warning", "BE-RDY-001": "error"}
    for res in got.values():
        assert rules[res["ruleIndex"]]["id"] == res["ruleId"]
    assert "***" in got["MINIO-SEC-002"]["message"]["text"]
    assert sr["properties"]["stack_spec_sha256"] == hashlib.sha256(STACK.read_bytes()).hexdigest()


def _line(path: Path, line: int) -> str:
    return path.read_text().splitlines()[line - 1]


def test_sarif_results_point_at_the_line_the_remediation_changes(run, pytester):
    run()
    sr = sarif_run(pytester)
    root = sr["originalUriBaseIds"]["STACKROOT"]["uri"]
    assert root == STACK.parent.resolve().as_uri() + "/"
    where = {}
    for res in sr["results"]:
        (loc,) = res["locations"]
        art, region = loc["physicalLocation"]["artifactLocation"], loc["physicalLocation"]["region"]
        assert art["uriBaseId"] == "STACKROOT"
        where[res["ruleId"]] = (STACK.parent / art["uri"], region["startLine"])
    path, line = where["MINIO-SEC-002"]           # spec: minio.root_secret
    assert path == STACK and _line(path, line).startswith("  root_secret:")
    path, line = where["PG-CFG-001"]              # values: config.lcMessages
    assert path.name == "postgres-values.yaml"
    assert _line(path, line).strip().startswith("lcMessages:")
    path, line = where["BE-RDY-001"]              # no precise target: the component's section
    assert path == STACK and _line(path, line).startswith("backend:")


def test_every_control_has_a_location_in_the_packaged_stack():
    spec = spec_file.load()
    locate = formats.Locator(spec)
    assert set(formats.TARGETS) <= set(catalog.catalog().controls)
    for c in catalog.catalog():
        path, line = locate(c)
        assert path.is_file() and line >= 1, c.id
        if c.id in formats.TARGETS:     # a precise target, found as written (no fallback)
            dotted = formats.TARGETS[c.id][1]
            assert locate.line(path, dotted) == line, (c.id, path, dotted)
            key = next(p for p in reversed(dotted.split(".")) if not p.isdigit())
            assert _line(path, line).lstrip(" -").startswith(f"{key}:"), (c.id, line)


def test_a_target_the_values_lack_falls_back_to_the_spec_line_naming_them(monkeypatch):
    spec = spec_file.load()
    monkeypatch.setitem(formats.TARGETS, "MINIO-MODE-001", ("values:minio", "no.such.key"))
    path, line = formats.Locator(spec)(catalog.catalog()["MINIO-MODE-001"])
    assert path == spec.path and _line(path, line).strip().startswith("values:")
    assert formats.Locator(spec).line(spec.path, "releases.minio.values") == line


KEYS = """\
# a comment
top:
  child: 1      # trailing comment
  list:
    - name: a
    - name: b
      deep: {x: 1}
other: [1, 2]
"""


@pytest.mark.parametrize("dotted,line", [
    ("top", 2), ("top.child", 3), ("top.list", 4), ("top.list.0", 5), ("top.list.1.name", 6),
    ("top.list.1.deep.x", 7), ("other.1", 8),
    ("missing", None), ("top.child.x", None), ("top.list.2", None), ("top.list.x", None),
])
def test_key_line_uses_the_parsers_marks(dotted, line):
    assert formats.key_line(yaml.compose(KEYS), dotted) == line


def test_key_line_of_an_empty_document_is_none():
    assert formats.key_line(yaml.compose(""), "a") is None


def test_exempt_results_are_suppressed_not_dropped(run, pytester, monkeypatch):
    reg = catalog.load()
    reg.exemptions.append(catalog.Exemption("MINIO-SEC-002", "accepted risk in the lab"))
    monkeypatch.setattr(catalog, "load", lambda *a, **k: reg)
    run()
    got = {r["ruleId"]: r for r in sarif_run(pytester)["results"]}
    assert got["MINIO-SEC-002"]["suppressions"] == [
        {"kind": "external", "justification": "accepted risk in the lab"}]
    assert "suppressions" not in got["BE-RDY-001"]


@pytest.mark.upstream_schemas
def test_sarif_matches_the_oasis_schema(run, pytester):
    run("--readonly", "--cluster", "prod")
    assert sarif_errors(json.loads(out(pytester, "results.sarif").read_text())) == []


def _a_sarif_doc() -> dict:
    spec = spec_file.load(STACK)
    c = catalog.catalog()["MINIO-SVC-001"]
    results = [rep.ControlResult(c, catalog.FAIL, [catalog.TestRecord("t", c, catalog.FAIL, ["seen"])])]
    return formats.sarif(results, spec, version="1.0", facts={"context": "kind"})


@pytest.mark.upstream_schemas
@pytest.mark.parametrize("mutate,where", [
    (_set(["runs", 0, "results", 0, "level"], "fatal"), "runs/0/results/0/level"),
    (_drop(["version"]), "(document): 'version' is a required property"),
    (_drop(["runs", 0, "tool", "driver", "name"]), "runs/0/tool/driver: 'name' is a required"),
    (_set(["runs", 0, "results", 0, "message"], "text"), "runs/0/results/0/message"),
    (_set(["runs", 0, "results", 0, "locations", 0, "physicalLocation", "region",
           "startLine"], 0), "runs/0/results/0/locations/0/physicalLocation/region/startLine"),
])
def test_the_oasis_schema_rejects_a_broken_sarif_log(mutate, where):
    assert_rejected(sarif_errors, _a_sarif_doc(), mutate, where)


# ---- run-level facts: JUnit and the HTML report ----------------------------------------------
def junit_properties(pytester) -> dict[str, str]:
    suite = ET.parse(out(pytester, "junit.xml")).getroot().find("testsuite")
    return {p.get("name"): p.get("value") for p in suite.find("properties")}


def test_junit_carries_run_level_properties(run, pytester):
    run()
    props = junit_properties(pytester)
    assert props == {"context": "kind", "stack_spec": str(STACK),
                     "stack_spec_sha256": hashlib.sha256(STACK.read_bytes()).hexdigest(),
                     "readonly": "false"}


def test_junit_run_properties_with_cluster_facts(run, pytester):
    run("--readonly", "--cluster", "prod-ctx", conftest=WITH_EVIDENCE)
    props = junit_properties(pytester)
    assert props["context"] == "prod-ctx" and props["readonly"] == "true"
    assert props["server_version"] == "v1.31.2" and props["node_count"] == "2"


def html_data(pytester) -> dict:
    text = out(pytester, "report.html").read_text()
    return json.loads(html.unescape(re.search(r'data-jsonblob="([^"]*)"', text).group(1)))


def test_html_control_columns_sort_by_rank(run, pytester):
    run()
    text = out(pytester, "report.html").read_text()
    for col in ("control", "severity", "status"):
        assert f'<th class="sortable" data-column-type="{col}">' in text
    rows = {k.split("[")[-1].rstrip("]"): v[0] for k, v in html_data(pytester)["tests"].items()
            if "[" in k}
    # pytest-html sorts by the cell's HTML as text: the hidden rank decides
    by_severity = sorted(rows, key=lambda k: rows[k]["severity"])
    assert [catalog.catalog()[k].severity for k in by_severity] == \
        sorted((catalog.catalog()[k].severity for k in rows), key=rep.SEVERITY_ORDER.get)
    by_status = sorted(rows, key=lambda k: rows[k]["status"])
    assert by_status[:2] == ["BE-RDY-001", "MINIO-SEC-002"]          # ERROR, then FAIL
    assert rows["MINIO-SVC-001"]["control"] == "MINIO-SVC-001"


def test_html_environment_has_the_cluster_facts(run, pytester):
    run("--cluster", "prod-ctx", conftest=WITH_EVIDENCE)
    env = html_data(pytester)["environment"]
    assert env["context"] == "prod-ctx" and env["server_version"] == "v1.31.2"
    assert env["node_count"] == "2" and env["stack_spec"] == str(STACK)
    assert env["stack_spec_sha256"] == hashlib.sha256(STACK.read_bytes()).hexdigest()


def test_run_facts_leave_out_what_is_not_known(tmp_path):
    facts = formats.run_facts(cluster=None, evidence=None, spec_path=tmp_path / "gone.yaml",
                              readonly=True)
    assert facts == {"stack_spec": str(tmp_path / "gone.yaml"), "readonly": "true"}


# ---- secrets ---------------------------------------------------------------------------------
LEAKY_TESTS = f'''
import base64
import pytest
from ducklake_infra.suites.catalog import Result, verdict

@pytest.mark.control("MINIO-SEC-002")
def test_fail():
    verdict(Result("FAIL", ["raw {SECRET}", "b64 " + base64.b64encode(b"{SECRET}").decode()]))

@pytest.mark.control("PG-CFG-001")
def test_error():
    raise RuntimeError("connection string password={SECRET}")
'''


def test_a_registered_secret_reaches_neither_policy_report_nor_sarif(run, pytester):
    res = run(tests=LEAKY_TESTS)
    assert res.ret == 1 and "secret value(s) reached" not in res.stdout.str()
    b64 = base64.b64encode(SECRET.encode()).decode()
    for name in ("policyreport.yaml", "results.sarif"):
        text = out(pytester, name).read_text()
        assert SECRET not in text and b64 not in text, name
        assert find_leaks(text, [SECRET]) == [], name
        assert "***" in text, name            # the evidence is there, redacted


def test_the_leak_probe_covers_the_new_formats(run, pytester, monkeypatch):
    """A writer that skipped redaction: the probe finds the secret in both files,
    redacts them in place and fails the run."""
    monkeypatch.setattr(formats, "redact_tree", lambda obj, redact: copy.deepcopy(obj))
    res = run(tests=LEAKY_TESTS)
    text = res.stdout.str()
    assert res.ret == 1
    for name in ("policyreport.yaml", "results.sarif"):
        assert re.search(rf"SEC-RPT-001: \d+ secret value\(s\) reached \S*{name}", text), name
        assert find_leaks(out(pytester, name).read_text(), [SECRET]) == [], name
