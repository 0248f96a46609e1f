"""Pure helpers: identifier and dataset-name validation (the query allowlist: sqlallow.py)."""

from __future__ import annotations

import re

from .errors import BadRequest

__all__ = [
    "BadRequest",
    "quote_identifier",
    "sql_literal",
    "validate_dataset_name",
    "validate_identifier",
]


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_DATASET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def validate_identifier(name: str, what: str = "table name") -> str:
    """A plain SQL identifier: letters, digits, underscore; not starting with a digit; <= 63 chars.

    The name is still quoted with :func:`quote_identifier` when used in SQL.
    """
    if not isinstance(name, str) or not _IDENT.fullmatch(name):
        raise BadRequest(
            f"invalid {what} {name!r}: use 1-63 letters, digits or underscores, not starting with a digit"
        )
    if name.lower().startswith("ducklake_") or name.lower().startswith("__ducklake"):
        raise BadRequest(f"invalid {what} {name!r}: the ducklake_ prefix is reserved")
    return name


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def validate_dataset_name(name: str) -> str:
    """An object key in the raw bucket: letters, digits, '_', '-', '.'; no path separators."""
    # no '/' can appear, so '..' is no path segment: an ordinary object name
    if not isinstance(name, str) or not _DATASET.fullmatch(name):
        raise BadRequest(
            f"invalid dataset name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name
