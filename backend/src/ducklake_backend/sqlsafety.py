"""Pure helpers: identifier and dataset-name validation, the read-only SQL guard."""

from __future__ import annotations

import re

import duckdb

from .errors import BadRequest

__all__ = [
    "BadRequest",
    "ensure_read_only_select",
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
    if not isinstance(name, str) or not _DATASET.fullmatch(name) or ".." in name:
        raise BadRequest(
            f"invalid dataset name {name!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..'"
        )
    return name


def ensure_read_only_select(sql: str) -> str:
    """Return the single SELECT statement in ``sql`` or raise :class:`BadRequest`.

    The statement type comes from DuckDB's own parser
    (:func:`duckdb.extract_statements`): anything but exactly one SELECT
    (INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, COPY, ATTACH, SET, CALL,
    PRAGMA, EXPLAIN, several statements...) is refused.
    """
    if not isinstance(sql, str) or not sql.strip():
        raise BadRequest("sql must be a non-empty string")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise BadRequest(f"invalid SQL: {exc}") from None
    if len(statements) != 1:
        raise BadRequest(f"exactly one statement is allowed, got {len(statements)}")
    stmt = statements[0]
    if stmt.type != duckdb.StatementType.SELECT:
        raise BadRequest(f"only read-only SELECT queries are allowed, got {stmt.type.name}")
    return stmt.query
