"""Structured JSON logs (one object per line on stdout) with secret redaction.

Two layers keep secrets out of logs and error responses:

* :class:`Redactor` replaces every registered secret value (the Postgres
  password, the S3 keys) and anything that looks like ``password=...``,
  ``SECRET '...'`` or ``KEY_ID '...'``, because DuckDB error messages echo the
  ATTACH connection string verbatim;
* :class:`RedactingFilter` applies it to every record (message, arguments,
  exception text) before any handler formats it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import datetime, timezone
from typing import Iterable

REDACTED = "***"

# key=value pairs in libpq strings (password=xyz or password='x y'), SQL
# options (SECRET 'xyz', KEY_ID 'xyz'), and JSON-ish "password": "xyz".
_PATTERNS = [
    (re.compile(r"(?i)(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)"), REDACTED),
    (re.compile(r"(?i)\b((?:secret|key_id|session_token|secret_key|access_key)\s+)'(?:[^']|'')*'"), f"'{REDACTED}'"),
    (re.compile(r"(?i)(\"(?:password|secret|secret_key|access_key)\"\s*:\s*)\"[^\"]*\""), f'"{REDACTED}"'),
]


class Redactor:
    """Replaces known secret values and secret-looking patterns in text."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: list[str] = []
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        with self._lock:
            for s in secrets:
                # Very short values would redact ordinary words; they are
                # still covered by the patterns.
                if s and len(s) >= 4 and s not in self._secrets:
                    self._secrets.append(s)
            # Longest first so that a secret containing another is fully hidden.
            self._secrets.sort(key=len, reverse=True)

    def secrets_only(self, text: str) -> str:
        """Replace only the registered secret values (for data, e.g. query results)."""
        for s in self._secrets:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def __call__(self, text: str) -> str:
        if not text:
            return text
        text = self.secrets_only(text)
        for pat, replacement in _PATTERNS:
            text = pat.sub(lambda m, rep=replacement: m.group(1) + rep, text)
        return text


# The process-wide redactor: settings register their secrets on startup.
redactor = Redactor()


def redact(text: str) -> str:
    return redactor(text)


class RedactingFilter(logging.Filter):
    """Redacts the message, its arguments and attached exception text."""

    def __init__(self, redactor_: Redactor | None = None) -> None:
        super().__init__()
        self._redactor = redactor_ or redactor

    def filter(self, record: logging.LogRecord) -> bool:
        r = self._redactor
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not lose the record
            message = str(record.msg)
        record.msg = r(message)
        record.args = None
        if record.exc_info:
            record.exc_text = r(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = r(record.exc_text)
        for key, value in list(vars(record).items()):
            if key.startswith("ctx_") and isinstance(value, str):
                setattr(record, key, r(value))
        return True


_STD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STD_FIELDS and not key.startswith("_"):
                payload[key.removeprefix("ctx_")] = value
        if record.exc_text:
            payload["exc"] = record.exc_text
        # The filter already ran, but formatted output is redacted once more:
        # a secret must never reach stdout even through an unexpected field.
        return redactor(json.dumps(payload, default=str, ensure_ascii=False))


def configure_logging(level: str = "INFO", stream=None) -> logging.Handler:
    """Route all logging (ours, uvicorn's) to one JSON handler on stdout."""
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_ducklake_json", False):
            root.removeHandler(h)
    handler._ducklake_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers.clear()
        lg.propagate = True
    return handler
