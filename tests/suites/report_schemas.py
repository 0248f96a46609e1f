"""Schema checks of the written report formats (results.json, policyreport.yaml,
results.sarif), for the conftest's pytester fixture and tests/suites/test_formats.py.

results.json: the package's own JSON Schema. PolicyReport and SARIF: their upstream
schemas, found by file name in $DUCKLAKE_INFRA_UPSTREAM_SCHEMAS or tests/suites/data/
and pinned by sha256 (tests/suites/data/README.md says where each comes from).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

DATA = Path(__file__).resolve().parent / "data"
UPSTREAM_ENV = "DUCKLAKE_INFRA_UPSTREAM_SCHEMAS"
UPSTREAM = {
    "wgpolicyk8s.io_policyreports.yaml":
        "04cae1b4158ba59debed7c702e8dee4434d583cff9aa8ab00add54b6a63c56b5",
    "wgpolicyk8s.io_clusterpolicyreports.yaml":
        "8bb518a3f12e6cb199c8cc252970d9a8383f419e0b59e8312f4a2c1105710919",
    "sarif-schema-2.1.0.json":
        "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e",
}
POLICY_VERSION = "v1alpha2"
REPORT_CRDS = {"PolicyReport": "wgpolicyk8s.io_policyreports.yaml",
               "ClusterPolicyReport": "wgpolicyk8s.io_clusterpolicyreports.yaml"}


def upstream_file(name: str) -> Path | None:
    """The pinned upstream file, or None when it is not there; a file that is there
    but differs from the pin is an error, never silently used."""
    path = Path(os.environ.get(UPSTREAM_ENV) or DATA) / name
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest == UPSTREAM[name], f"{path} is not the pinned upstream file ({digest})"
    return path


def upstream_available() -> bool:
    return all(upstream_file(n) for n in UPSTREAM)


def require_upstream(name: str) -> Path:
    """Tests marked ``upstream_schemas`` run only when the files are there (the conftest
    deselects them otherwise, and says so): a missing file here is a failure."""
    path = upstream_file(name)
    if path is None:
        pytest.fail(f"upstream schema {name} not found in ${UPSTREAM_ENV} or {DATA} "
                    "(see tests/suites/data/README.md)")
    return path


def _messages(validator, doc) -> list[str]:
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
                  for e in validator.iter_errors(doc))


@functools.cache
def _results_validator():
    from jsonschema import Draft202012Validator
    from ducklake_infra.suites.report import SCHEMA_FILE
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def results_errors(doc) -> list[str]:
    """Why a results.json document does not match the packaged schema ([] when it does)."""
    return _messages(_results_validator(), doc)


def strict(schema):
    """A CRD schema as the API server applies it with strict field validation
    (kubectl apply --validate=strict): an object with declared properties takes no
    other field."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if out.get("type") == "object" and isinstance(out.get("properties"), dict) \
            and "additionalProperties" not in out \
            and not out.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


@functools.cache
def report_crd(kind: str) -> dict:
    return yaml.safe_load(require_upstream(REPORT_CRDS[kind]).read_text(encoding="utf-8"))


@functools.cache
def _crd_validator(kind: str):
    from jsonschema import Draft4Validator   # OpenAPI 3.0 schemas are draft 4 in substance
    version = next(v for v in report_crd(kind)["spec"]["versions"]
                   if v["name"] == POLICY_VERSION)
    assert version["served"], f"{kind} {POLICY_VERSION} is no longer served"
    return Draft4Validator(strict(version["schema"]["openAPIV3Schema"]))


def policy_report_errors(doc) -> list[str]:
    """Why a document is not a valid PolicyReport/ClusterPolicyReport of the pinned CRD
    (skips when the CRD is not present)."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in REPORT_CRDS:
        return [f"kind {kind!r} is not a policy report"]
    crd = report_crd(kind)
    errors = []
    if doc.get("apiVersion") != f"{crd['spec']['group']}/{POLICY_VERSION}":
        errors.append(f"apiVersion {doc.get('apiVersion')!r}")
    if crd["spec"]["names"]["kind"] != kind:
        errors.append(f"the CRD serves {crd['spec']['names']['kind']}, not {kind}")
    namespaced = crd["spec"]["scope"] == "Namespaced"
    if bool((doc.get("metadata") or {}).get("namespace")) != namespaced:
        errors.append(f"metadata.namespace: {kind} is {crd['spec']['scope']}")
    if not (doc.get("metadata") or {}).get("name"):
        errors.append("metadata.name is missing")
    return errors + _messages(_crd_validator(kind), doc)


@functools.cache
def _sarif_validator():
    from jsonschema import Draft4Validator   # the OASIS schema is draft-04
    schema = json.loads(require_upstream("sarif-schema-2.1.0.json").read_text(encoding="utf-8"))
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


def sarif_errors(doc) -> list[str]:
    """Why a document is not valid SARIF 2.1.0 (skips when the schema is not present)."""
    return _messages(_sarif_validator(), doc)


def _policy_file_errors(path: Path) -> list[str]:
    return [e for d in yaml.safe_load_all(path.read_text(encoding="utf-8"))
            for e in policy_report_errors(d)]


def _sarif_file_errors(path: Path) -> list[str]:
    return sarif_errors(json.loads(path.read_text(encoding="utf-8")))


def check_written_reports(root: Path) -> int:
    """Every results.json, policyreport.yaml and results.sarif below ``root`` matches
    its schema (the upstream ones when they are present); how many were checked."""
    checked = 0
    for p in root.rglob("results.json"):
        assert results_errors(json.loads(p.read_text(encoding="utf-8"))) == [], p
        checked += 1
    for name, needs, errors in (
            ("policyreport.yaml", REPORT_CRDS.values(), _policy_file_errors),
            ("results.sarif", ["sarif-schema-2.1.0.json"], _sarif_file_errors)):
        if all(upstream_file(n) for n in needs):
            for p in root.rglob(name):
                assert errors(p) == [], p
                checked += 1
    return checked
