"""YAML reading for the whole package: PyYAML's C loader when libyaml is there (about
ten times faster on charts' values and rendered manifests), the same safe semantics."""

from __future__ import annotations

from typing import Any, Iterator

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAMLError = yaml.YAMLError


def load(text: str) -> Any:
    return yaml.load(text, Loader=_LOADER)


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=_LOADER)
