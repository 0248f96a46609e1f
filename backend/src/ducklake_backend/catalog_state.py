"""The backend's own state in the catalog's PostgreSQL database, shared by every replica
on one catalog: leases (one holder at a time, e.g. the maintenance runner) and the last
run of a job (what GET /maintenance reports, the same on every replica).

Schema ``ducklake_backend``, created by the backend (the catalog owner) on first use. The
read-only role gets nothing on it: the chart grants it SELECT on the owner's tables in
``public`` only (present and future), and a new schema grants no USAGE to anyone else.

PostgreSQL is reached through the DuckLake attach's own connection (DuckDB's postgres
extension): statements with ``postgres_execute(..., use_transaction := false)`` (one
implicit transaction per call, READ COMMITTED: a conditional UPDATE waits for a
concurrent one on the same row, then checks its condition again on the committed row),
rows with ``postgres_query``. Times are PostgreSQL's ``now()``: one clock for every
replica.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import duckdb

from .errors import Conflict, Unavailable
from .lake import CATALOG_DB
from .logs import redact
from .sqlsafety import sql_literal

log = logging.getLogger("ducklake_backend.catalog_state")

SCHEMA = "ducklake_backend"
LEASE_TABLE = f"{SCHEMA}.lease"
RUN_TABLE = f"{SCHEMA}.last_run"

_SETUP = (
    # CREATE ... IF NOT EXISTS still collides when two replicas create at once: one at a time
    "SELECT pg_advisory_xact_lock(hashtext('ducklake_backend.setup'));"
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
    f"CREATE TABLE IF NOT EXISTS {LEASE_TABLE} (name text PRIMARY KEY, holder text, token text, "
    "expires_at timestamptz NOT NULL);"
    f"CREATE TABLE IF NOT EXISTS {RUN_TABLE} (name text PRIMARY KEY, replica text NOT NULL, "
    "started_at timestamptz NOT NULL, run jsonb NOT NULL);"
)


class LeaseHeld(Conflict):
    """Another holder has the lease (HTTP 409)."""

    code = "lease_held"


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    token: str                  # this acquisition's own: renew and release match it
    taken_at: _dt.datetime      # PostgreSQL's clock


def _utc(epoch: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(float(epoch), _dt.timezone.utc)


def _pg_error(exc: duckdb.Error) -> str:
    """PostgreSQL's own message (the extension's text around it repeats the statement)."""
    lines = redact(str(exc)).strip().splitlines()
    return next((line.strip() for line in lines if "ERROR:" in line), lines[0] if lines
                else type(exc).__name__)


class CatalogState:
    """Leases and last runs in the catalog database; ``cursor`` gives a DuckDB connection
    whose database attaches the catalog (``Lake.catalog_db_cursor``)."""

    def __init__(self, cursor: Callable[[], duckdb.DuckDBPyConnection]) -> None:
        self._cursor = cursor
        self._ready = False
        self._setup_lock = threading.Lock()

    # ---- plumbing

    def _call(self, what: str, fn: Callable[[duckdb.DuckDBPyConnection], Any]) -> Any:
        try:
            cur = self._cursor()
            try:
                return fn(cur)
            finally:
                cur.close()
        except duckdb.Error as exc:
            raise Unavailable(f"the catalog database failed to {what}: {_pg_error(exc)}") from None

    def _execute(self, what: str, sql: str) -> None:
        self._ensure()
        self._call(what, lambda cur: cur.execute(
            "CALL postgres_execute(?, ?, use_transaction := false)", [CATALOG_DB, sql]))

    def _query(self, what: str, sql: str) -> list[tuple]:
        self._ensure()
        return self._call(what, lambda cur: cur.execute(
            "SELECT * FROM postgres_query(?, ?)", [CATALOG_DB, sql]).fetchall())

    def _ensure(self) -> None:
        with self._setup_lock:
            if not self._ready:
                self._call(f"create schema {SCHEMA}", lambda cur: cur.execute(
                    "CALL postgres_execute(?, ?, use_transaction := false)", [CATALOG_DB, _SETUP]))
                self._ready = True

    # ---- leases

    def acquire(self, name: str, holder: str, seconds: int) -> Lease:
        """Take lease ``name`` for ``seconds`` if it is free or has run out; else raise
        :class:`LeaseHeld` naming the holder."""
        token = uuid.uuid4().hex
        n = sql_literal(name)
        self._execute("take the lease",
                      f"INSERT INTO {LEASE_TABLE} (name, expires_at) VALUES ({n}, now()) "
                      "ON CONFLICT (name) DO NOTHING;"
                      f"UPDATE {LEASE_TABLE} SET holder = {sql_literal(holder)}, "
                      f"token = {sql_literal(token)}, "
                      f"expires_at = now() + make_interval(secs => {int(seconds)}) "
                      f"WHERE name = {n} AND expires_at <= now()")
        rows = self._query("read the lease",
                           "SELECT holder, token, extract(epoch FROM now()) AS now_s, "
                           f"extract(epoch FROM expires_at) AS expires_s FROM {LEASE_TABLE} WHERE name = {n}")
        if not rows:
            raise Unavailable(f"lease {name!r} has no row in {LEASE_TABLE}")
        current, current_token, now, until = rows[0]
        if current_token != token:
            raise LeaseHeld(f"{name} runs on another replica ({current}, its lease runs until "
                            f"{_utc(until).isoformat(timespec='seconds')}); retry later")
        return Lease(name, holder, token, _utc(now))

    def renew(self, lease: Lease, seconds: int) -> bool:
        """Extend the lease by ``seconds`` from now; False if it is no longer ours."""
        self._execute("renew the lease",
                      f"UPDATE {LEASE_TABLE} SET expires_at = now() + make_interval(secs => "
                      f"{int(seconds)}) WHERE name = {sql_literal(lease.name)} "
                      f"AND token = {sql_literal(lease.token)}")
        return self._holds(lease)

    def release(self, lease: Lease) -> None:
        """Free the lease now (if still ours): the next holder need not wait for it to run out."""
        self._execute("release the lease",
                      f"UPDATE {LEASE_TABLE} SET holder = NULL, token = NULL, expires_at = now() "
                      f"WHERE name = {sql_literal(lease.name)} AND token = {sql_literal(lease.token)}")

    def forget(self, lease: Lease) -> None:
        """Delete the lease's row (if still ours): for leases named once, such as an
        ingest's key, which would otherwise leave a row each."""
        self._execute("forget the lease",
                      f"DELETE FROM {LEASE_TABLE} WHERE name = {sql_literal(lease.name)} "
                      f"AND token = {sql_literal(lease.token)}")

    def _holds(self, lease: Lease) -> bool:
        return bool(self._query("read the lease",
                                f"SELECT 1 AS held FROM {LEASE_TABLE} WHERE name = {sql_literal(lease.name)} "
                                f"AND token = {sql_literal(lease.token)} AND expires_at > now()"))

    # ---- last runs

    def record_run(self, name: str, replica: str, started_at: _dt.datetime, run: dict[str, Any]) -> None:
        """Store ``run`` as job ``name``'s last run (replacing the one before)."""
        doc = json.dumps(run, default=str).replace("\\u0000", "")   # jsonb refuses NUL
        self._execute("record the run",
                      f"INSERT INTO {RUN_TABLE} (name, replica, started_at, run) VALUES "
                      f"({sql_literal(name)}, {sql_literal(replica)}, "
                      f"to_timestamp({started_at.timestamp()!r}), {sql_literal(doc)}::jsonb) "
                      "ON CONFLICT (name) DO UPDATE SET replica = excluded.replica, "
                      "started_at = excluded.started_at, run = excluded.run")

    def last_run(self, name: str) -> tuple[dict[str, Any], float] | None:
        """Job ``name``'s last run and how many seconds ago it started (None: never ran)."""
        rows = self._query("read the last run",
                           "SELECT run::text AS run, extract(epoch FROM now() - started_at) AS age_s "
                           f"FROM {RUN_TABLE} WHERE name = {sql_literal(name)}")
        if not rows:
            return None
        return json.loads(rows[0][0]), float(rows[0][1])
