"""Schema checks of the written report formats, for the conftest's pytester fixture and
tests/suites_unit/test_formats.py: results.json against the package's own JSON Schema."""

from __future__ import annotations

import functools
import json
from pathlib import Path


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


def check_written_reports(root: Path) -> int:
    """Every results.json below ``root`` matches its schema; how many were checked."""
    checked = 0
    for p in root.rglob("results.json"):
        assert results_errors(json.loads(p.read_text(encoding="utf-8"))) == [], p
        checked += 1
    return checked
