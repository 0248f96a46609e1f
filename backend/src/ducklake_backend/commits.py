"""The lake's commits: conflicts retried, and the outcome of a COMMIT that failed.

A COMMIT that fails may still have committed (issue 16's ambiguous commit: a failover of
the catalog's PostgreSQL cuts it after the server committed, or while the server waits
for its synchronous standby). Every ingest therefore writes a *marker* in its snapshot's
``commit_extra_info``: a JSON object with the ingest's key (the client's
``Idempotency-Key``, or a fresh one), its table and its row count. After a failed COMMIT
the backend looks for the marker (:func:`await_outcome`): there, the ingest landed; not
there while no session of the backend's role is still in a COMMIT begun before the
failure (one waiting for its synchronous standby lands later), seen twice SETTLE_S apart,
it did not and never will, and may run again (:class:`CommitNotApplied`, which
:func:`retry_on_conflict` retries); no answer in time, the outcome is unknown (503 naming
the key, which a retry with the same ``Idempotency-Key`` resolves).
"""

from __future__ import annotations

import json
import logging
import random
import time
from typing import Any, Callable, TypeVar

import duckdb

from .errors import Conflict, Unavailable
from .logs import redact

log = logging.getLogger("ducklake_backend.lake")

T = TypeVar("T")

# After a failed COMMIT, how long the catalog is asked whether it landed (all of one
# request's lookups together): a Patroni failover took 1.6-3.8 s here (README, RES-PG-002
# / RES-DRAIN-001); a restarted standalone PostgreSQL about 10 s; clients (the load
# generator) give up after 60 s.
COMMIT_OUTCOME_S = 20
# an ingest's key: what a client may send as Idempotency-Key
KEY_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
# sessions of the backend's catalog role (any replica's) that began before a failed
# COMMIT and are still in one (waiting for a synchronous standby: a commit is visible
# only once the standby has it, and a session whose client went away keeps waiting):
# the outcome is not final while there are any. (The transaction's own session cannot be
# named: DuckDB's postgres_query runs on another connection than DuckLake's, and the
# server keeps only the first 1 kB of a query's text, before the marker.)
PENDING_COMMITS = ("SELECT count(*) FROM pg_stat_activity WHERE usename = current_user "
                   "AND pid <> pg_backend_pid() "
                   "AND xact_start <= now() - make_interval(secs => {ago:.3f}) "
                   "AND (wait_event = 'SyncRep' OR (state = 'active' AND query ILIKE 'COMMIT%'))")
# "not there, none pending" counts once seen twice this far apart: a COMMIT the server has
# not read yet (in its socket when the connection broke) is then being committed, or gone
SETTLE_S = 2.0


# how libpq (through DuckDB's postgres extension) says the catalog server is not there
CATALOG_GONE = ("server closed the connection unexpectedly", "terminating connection",
                "the database system is shutting down", "the database system is starting up",
                "could not connect to server", "connection refused", "no connection to the server")


def may_have_landed(exc: BaseException) -> bool:
    """Can the COMMIT that raised ``exc`` have committed? When the connection went away
    (the server may have committed before it could answer), or when the error hides the
    original one: a writer that may not delete makes DuckLake's rollback fail with "Could
    not remove file ...", whatever the COMMIT's own error was. An error the server
    answered (a conflict, a refused statement) did not commit: it is raised as before,
    so a deterministic failure stays fast."""
    text = str(exc).lower()
    return (any(m in text for m in CATALOG_GONE) or "could not remove file" in text
            or 'failed to execute query "commit"' in text)


def marker(key: str, request: dict[str, Any], answer: dict[str, Any]) -> str:
    """What an ingest writes in its snapshot's commit_extra_info: its key, the request it
    answers (a replay must be the same request) and its answer."""
    return json.dumps({"ingest": key, "request": request, "answer": answer}, sort_keys=True)


def find_marker_sql(catalog: str) -> str:
    """The snapshot (id, commit_extra_info) whose marker carries key ``?``; other commit
    infos (none, or text that is not JSON) never match."""
    return (f"SELECT snapshot_id, commit_extra_info FROM {catalog}.snapshots() WHERE CASE WHEN "
            "json_valid(commit_extra_info) AND json_type(commit_extra_info, '$.ingest') = 'VARCHAR' "
            "THEN json_extract_string(commit_extra_info, '$.ingest') END = ? "
            "ORDER BY snapshot_id LIMIT 1")


def landed(row: tuple | None) -> dict[str, Any] | None:
    """A find_marker_sql row as {"snapshot_id", "request", "answer"}. A marker this code did
    not write (DuckDB's JSON reading is laxer than Python's) is still a landed ingest of
    that key, of an unknown request: never run again, never replayed."""
    if not row:
        return None
    try:
        info = json.loads(row[1])
        request, answer = info["request"], info["answer"]
        if not (isinstance(request, dict) and isinstance(answer, dict)
                and isinstance(answer.get("rows_ingested"), int)):
            raise ValueError("not this backend's marker")
    except (ValueError, KeyError, TypeError):
        request, answer = {"unreadable marker": str(row[1])[:200]}, {}
    return {"snapshot_id": int(row[0]), "request": request, "answer": answer}


class CommitNotApplied(Exception):
    """A COMMIT failed and the catalog shows its marker is not there and cannot come:
    nothing of the transaction is visible, so it may run again (retry_on_conflict does)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def await_outcome(find: Callable[[float], dict | None], pending: Callable[[float], int],
                  reset: Callable[[], None], key: str, *, outcome_s: float | None = None,
                  clock: Callable[[], float] = time.monotonic,
                  sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """The failed COMMIT's outcome: ``find(deadline)`` the marker's snapshot (landed), or
    None once ``pending(deadline)`` has said twice, SETTLE_S apart, that no session is
    still in a COMMIT begun before the failure (not landed, never will). Errors (the catalog failing over) ``reset`` the
    connections and ask again, until ``outcome_s``; then Unavailable naming ``key``."""
    limit = COMMIT_OUTCOME_S if outcome_s is None else outcome_s
    deadline = clock() + limit
    why, settled = "no answer", None
    while True:
        try:
            found = find(deadline)
            if found is not None:
                return found
            waiting = pending(deadline)
            if not waiting:
                if settled is not None and clock() - settled >= SETTLE_S:
                    return None
                settled = clock() if settled is None else settled
                sleep(SETTLE_S / 4)
                continue
            settled = None
            why = f"{waiting} session(s) of the catalog role still in COMMIT"
        except (duckdb.Error, Unavailable) as exc:
            reset()
            settled = None
            why = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        if clock() >= deadline:
            raise Unavailable(
                f"the commit's outcome is unknown after {limit:g}s ({why}); the ingest's key is "
                f"{key}: retry with header Idempotency-Key: {key} (it answers 409 while the outcome "
                "may still change, then the ingest that landed, or runs it), or look for the key "
                "in the table's snapshots (commit_extra_info)")
        sleep(1.0)


def is_commit_conflict(exc: BaseException) -> bool:
    """DuckLake reports concurrent-commit conflicts as TransactionException / 'conflict' messages."""
    if isinstance(exc, duckdb.TransactionException):
        return True
    return isinstance(exc, duckdb.Error) and "conflict" in str(exc).lower()


def retry_on_conflict(
    fn: Callable[[], T],
    retries: int,
    *,
    base_delay: float = 0.1,
    max_delay: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    what: str = "commit",
) -> T:
    """Run ``fn``; on a commit conflict, or a COMMIT that did not land, retry up to
    ``retries`` times with exponential backoff and jitter, then raise :class:`Conflict`
    (HTTP 409) for a conflict, :class:`Unavailable` (503) otherwise."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered below
            not_applied = isinstance(exc, CommitNotApplied)
            if not (not_applied or is_commit_conflict(exc)):
                raise
            if attempt >= retries and not_applied and "conflict" not in str(exc).lower():
                raise Unavailable(
                    f"{what} did not commit and still failed after {retries} retries; nothing "
                    f"of it is visible, retry the request later ({redact(str(exc)).splitlines()[0]})"
                ) from exc
            if attempt >= retries:
                raise Conflict(
                    f"{what} conflicted with a concurrent DuckLake commit and still failed after "
                    f"{retries} retries; retry the request later ({redact(str(exc)).splitlines()[0]})"
                ) from exc
            delay = min(max_delay, base_delay * (2**attempt)) * (0.5 + random.random() / 2)
            attempt += 1
            log.warning(
                "commit not applied, retrying" if not_applied else "commit conflict, retrying",
                extra={"ctx_attempt": attempt, "ctx_retries": retries, "ctx_delay_s": round(delay, 3),
                       "ctx_detail": (redact(str(exc)).splitlines() or [""])[0][:300]},
            )
            sleep(delay)
