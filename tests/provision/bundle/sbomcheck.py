"""Reading SBOMs back in tests: the official CycloneDX 1.6 schema (from
cyclonedx-python-lib), components by name, and what holds what."""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

VALIDATOR = JsonStrictValidator(SchemaVersion.V1_6)


def schema_errors(text: str) -> str | None:
    """None when ``text`` is a valid CycloneDX 1.6 JSON document, else the first error."""
    error = VALIDATOR.validate_str(text)
    return str(error) if error else None


def load_valid(path: Path) -> dict:
    text = path.read_text()
    assert schema_errors(text) is None, f"{path.name}: {schema_errors(text)}"
    return json.loads(text)


def named(doc: dict, name: str) -> list[dict]:
    return [c for c in doc["components"] if c["name"] == name]


def holders(doc: dict, ref: str) -> set[str]:
    """The refs whose ``dependsOn`` names ``ref``."""
    return {d["ref"] for d in doc["dependencies"] if ref in d.get("dependsOn", [])}


def held_by(doc: dict, ref: str) -> set[str]:
    return next((set(d.get("dependsOn", [])) for d in doc["dependencies"] if d["ref"] == ref),
                set())
