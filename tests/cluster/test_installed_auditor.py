"""The auditor as its users get it: the wheel, installed into a fresh venv, run from an
empty directory (no repository, no conftest, no stack.yaml) against the kind stack.

`pytest --cluster=CONTEXT --readonly` with no test paths must find the packaged suites,
the packaged stack spec (and say so), and write every report; `ducklake-infra plan`
must work from there too. Dependencies are installed at the versions of uv.lock.
"""

from __future__ import annotations

import json
import re
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import ducklake_infra
from ducklake_infra.provision.bundle import layout
from ducklake_infra.suites import catalog

pytestmark = [pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the built wheel and its runtime dependencies."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("auditor_venv", ROOT / "scripts" / "auditor_venv.py")
    auditor_venv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(auditor_venv)
    try:
        return auditor_venv.build(tmp_path_factory.mktemp("wheel"))
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _env(venv: Path) -> dict:
    path = layout.layout().path_env(f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin")
    return {"PATH": path, "HOME": str(Path.home()), "LANG": "C.UTF-8"}


def test_the_installed_package_audits_from_an_empty_directory(installed, cluster, stack,
                                                                tmp_path):
    empty = tmp_path / "audit"
    empty.mkdir()
    res = _run([str(installed / "bin" / "pytest"), f"--cluster={cluster.context}",
                f"--kubeconfig={cluster.kubeconfig}", "--readonly",
                "--junitxml=reports/junit.xml", "-p", "no:cacheprovider"],
               cwd=empty, env=_env(installed), timeout=900)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    packaged = installed / "lib"
    assert "(the packaged default)" in out and str(packaged) in out, out[:2000]
    assert "unrecognized arguments" not in out and "fixture 'cluster' not found" not in out
    assert "PytestUnknownMarkWarning" not in out, out[-3000:]   # the plugin registers them
    reports = empty / "reports"
    doc = json.loads((reports / "results.json").read_text())
    ids = {c["id"] for c in doc["controls"]}
    standalone = {c for c, ctl in catalog.catalog().controls.items() if ctl.applies_to("standalone")}
    assert ids == standalone, ids ^ standalone          # the packaged default stack's profile
    assert doc["verdict"] == "partial"       # mutating controls are not evaluated read-only
    assert (reports / "report.html").is_file() and (reports / "junit.xml").is_file()
    # every format, read back: results.json against the schema the wheel ships
    from jsonschema import Draft202012Validator
    schema = next(installed.glob("lib/python*/site-packages/ducklake_infra/suites/schemas/"
                                 "results.schema.json"))
    Draft202012Validator(json.loads(schema.read_text())).validate(doc)
    policy = [d for d in yaml.safe_load_all((reports / "policyreport.yaml").read_text()) if d]
    assert {d["kind"] for d in policy} <= {"PolicyReport", "ClusterPolicyReport"} and policy
    assert sum(len(d.get("results", [])) for d in policy) == len(ids)
    sarif = json.loads((reports / "results.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert {r["id"] for r in sarif["runs"][0]["tool"]["driver"]["rules"]} == ids
    # nothing from the repository ran: every node id is a packaged suite
    junit = (reports / "junit.xml").read_text()
    packaged = ROOT / "ducklake_infra" / "suites"
    suites = {n for p in packaged.rglob("test_*.py")
              for n in (p.stem, ".".join(p.relative_to(packaged).with_suffix("").parts))}
    ran = set(re.findall(r'classname="([^"]+)"', junit))
    assert ran and ran <= suites, ran - suites
    assert sorted(p.name for p in empty.iterdir()) == ["reports"]
    # the images that run are the bundle's own builds, each matched to its SBOM
    sbom = next(c for c in doc["controls"] if c["id"] == "SUPPLY-SBOM-001")
    assert sbom["status"] == "PASS", sbom["evidence"]


def test_the_installed_cli_plans_from_an_empty_directory(installed, tmp_path):
    cli = installed / "bin" / "ducklake-infra"
    res = _run([str(cli), "--version"], env=_env(installed), timeout=60)
    assert res.returncode == 0 and res.stdout.strip() == f"ducklake-infra {ducklake_infra.__version__}"
    res = _run([str(cli), "plan", "--cluster", "kind"], cwd=tmp_path, env=_env(installed),
               timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "(the packaged default)" in res.stderr
    assert "would run" in res.stdout and str(ROOT) not in res.stdout, res.stdout[:3000]


def test_the_packaged_backend_builds_the_same_image_as_the_repository(installed):
    """The backend image tag is a content hash of its sources: the packaged copy must
    hash the same, or `up` from the wheel would deploy a different image."""
    code = ("from ducklake_infra.provision import render, spec_file; "
            "print(render.backend_image_tag(spec_file.load(spec_file.DEFAULT_SPEC)))")
    res = _run([str(installed / "bin" / "python"), "-c", code], cwd="/", env=_env(installed),
               timeout=60)
    assert res.returncode == 0, res.stderr[-2000:]
    from ducklake_infra.provision import render, spec_file
    assert res.stdout.strip() == render.backend_image_tag(spec_file.load(ROOT / "stack.yaml"))
    assert os.sep + "site-packages" + os.sep not in str(spec_file.DEFAULT_SPEC)  # repo copy here
