"""DuckDB/DuckLake access: one writer database and one read-only query database.

Concurrency model
-----------------
* Two in-memory DuckDB database instances per process, created lazily:
  the *writer* (DuckLake attached read-write: ingest, compaction, and the catalog's
  initialisation at start-up) and the *reader* (the same DuckLake attached
  ``READ_ONLY``, local and plain-HTTP file systems disabled) used by every read:
  readiness, ``GET`` handlers and user SQL from ``POST /query``. A read never
  writes, not even the catalog tables of an empty catalog. A third, the *cleaner*,
  lives for one maintenance run: the only one whose S3 identity may delete in the
  lake bucket (see "Ambiguous commits").
* Ambiguous commits (issue 16): a COMMIT cut by a failover of the catalog's
  PostgreSQL may have committed although the client saw an error, and DuckLake's
  rollback then deletes the transaction's data files, which the committed snapshot
  names. So the writer's S3 identity cannot delete (its rollback keeps the files:
  orphans if the commit did not land, which maintenance deletes after a while), and
  every ingest carries a marker in its snapshot's commit info: after a failed COMMIT
  the backend asks the catalog whether the marker's snapshot exists, answers success
  if it does and retries only if it does not (no lost file, no duplicate).
* Every request works on its own ``cursor()`` (a separate DuckDB connection to
  the shared database instance), so requests never share a connection.
* Writes (ingest) are serialised inside the process by a lock; commit
  conflicts with other processes (other replicas) are retried with backoff.
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json

import logging
import os
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, TypeVar

import duckdb
import urllib3
from minio import Minio
from minio.error import S3Error

from . import commits, extensions
from .commits import CATALOG_GONE, CommitNotApplied, is_commit_conflict, retry_on_conflict
from .config import Settings, duckdb_memory_limit
from .errors import ApiError, BadRequest, Conflict, NotFound, PayloadTooLarge, QueryTimeout, Unavailable
from .logs import redact, redactor
from .sqlallow import check_tree, parse
from .sqlsafety import (
    quote_identifier,
    sql_literal,
    validate_dataset_name,
    validate_identifier,
)

log = logging.getLogger("ducklake_backend.lake")

CATALOG = "lake"
# the catalog's PostgreSQL database as DuckLake attaches it (postgres extension)
CATALOG_DB = f"__ducklake_metadata_{CATALOG}"
SCHEMA = "main"
CSV = "text/csv"
PARQUET = "application/vnd.apache.parquet"

T = TypeVar("T")

MIB = 1024 * 1024

# Maintenance memory (issue 13). DuckLake's compaction writes each merged file with
# insertion order preserved, and DuckDB's Parquet writer holds a whole row group in
# memory, several times over (the rows, then pages of up to ~100 MB in buffers rounded up
# to a power of two: the "128 MiB" allocations); by default a row group is 122,880 rows
# whatever their width, 480 MB of 4 kB rows. parquet_row_group_size_bytes cannot bound
# it: DuckDB honours it only without insertion order, which compaction always keeps
# (measured: the same 128 MiB allocation). So each table gets a row count sized to its
# rows' width: a row group may take 1 / (ROW_GROUP_SHARE_PER_THREAD x threads) of DuckDB's
# memory limit, as every thread of a later scan holds one. Measured on 4 kB rows: a scan
# holds about 4 times a row group per thread (2 threads over 16 MB row groups ran out at
# 128 MiB, over 8 MB did not); compaction, with one thread, about as much (64 MB fit in
# 358 MiB, 128 MB did not). 8 leaves a factor 2 for the width estimate.
ROW_GROUP_SHARE_PER_THREAD = 8
DEFAULT_ROW_GROUP_ROWS = 122_880   # DuckDB's and DuckLake's default
MIN_ROW_GROUP_ROWS = 2_048         # one vector; rows wider than budget/2048 stay unbounded
WIDTH_SAMPLE_FILES = 8             # the newest files of a table whose footers give its width

# Files in the lake that no snapshot names (a failed transaction's: the writer cannot
# delete them) are deleted by maintenance once this old at least, whatever keep_s: a
# file of an ingest still running is never that old (requests end within minutes).
ORPHAN_MIN_AGE_S = 3600
CLEANER_MEMORY = 128 * MIB         # the cleaner's memory_limit: it holds file lists only
# how long a client's Idempotency-Key stays claimed by the replica running its ingest
# (and after an unknown outcome): a retry meanwhile gets 409
KEY_CLAIM_S = 300


# --------------------------------------------------------------------------- pure helpers




def to_jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    return str(value)


@dataclass
class QueryResult:
    columns: list[dict[str, str]]
    rows: list[list[Any]]
    truncated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "rows": self.rows,
            "row_count": len(self.rows),
            "truncated": self.truncated,
        }


def fetch_limited(
    cur: duckdb.DuckDBPyConnection,
    sql: str,
    params: list[Any] | None,
    limit: int,
    timeout_s: float | None,
    max_bytes: int | None = None,
) -> QueryResult:
    """Run a SELECT on ``cur`` with at most ``limit`` rows, at most ``max_bytes`` of JSON
    rows (truncated there; a first row alone over it is a 413) and a timeout (interrupt)."""
    timed_out = threading.Event()

    def _interrupt() -> None:
        timed_out.set()
        cur.interrupt()

    timer = threading.Timer(timeout_s, _interrupt) if timeout_s else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        # The relation API applies the limit without pasting SQL text together.
        rel = cur.sql(sql, params=params or None)
        if rel is None:
            raise BadRequest("the statement returns no rows")
        rel = rel.limit(int(limit) + 1)
        columns = [{"name": n, "type": str(t)} for n, t in zip(rel.columns, rel.types)]
        # Python has no infinite dates: DuckDB hands out 9999-12-31 / 0001-01-01 for
        # +-infinity. Fetch an isinf() flag per temporal column (by position: names may
        # repeat) and answer "infinity" / "-infinity", as DuckDB and PostgreSQL write them.
        temporal = [i for i, c in enumerate(columns) if c["type"].startswith(_TEMPORAL)]
        if temporal:
            n = len(columns)
            rel = rel.project(", ".join(f"#{i + 1}" for i in range(n)) +
                              "".join(f", isinf(#{i + 1})" for i in temporal))
        raw = rel.fetchall()
        if temporal:
            raw = [_non_finite(row, n, temporal) for row in raw]
    except duckdb.InterruptException:
        if timed_out.is_set():
            raise QueryTimeout(f"query exceeded the time limit of {timeout_s:g}s and was cancelled") from None
        raise
    finally:
        if timer:
            timer.cancel()
    if timed_out.is_set():
        raise QueryTimeout(f"query exceeded the time limit of {timeout_s:g}s and was cancelled")
    truncated = len(raw) > limit
    rows, size = [], 0
    for row in raw[:limit]:
        out = [to_jsonable(v) for v in row]
        if max_bytes is not None:
            size += len(json.dumps(out, default=str)) + 1
            if size > max_bytes:
                if not rows:
                    raise PayloadTooLarge(f"one row of the result exceeds the response limit of "
                                          f"{max_bytes} bytes")
                truncated = True
                break
        rows.append(out)
    return QueryResult(columns, rows, truncated)


_TEMPORAL = ("DATE", "TIMESTAMP")


def _non_finite(row: tuple, n: int, temporal: list[int]) -> tuple:
    values = list(row[:n])
    for flag, i in zip(row[n:], temporal):
        if flag and values[i] is not None:
            values[i] = "infinity" if values[i].year > 5000 else "-infinity"
    return tuple(values)




# what MinIO (and S3) answer when the volume under the bucket is full: HTTP 507
STORAGE_FULL = ("xminiostoragefull", "insufficient storage", "http code 507")


def storage_full(text: str) -> bool:
    return any(m in text.lower() for m in STORAGE_FULL)


def source_sql(uri: str, parquet: bool) -> str:
    """The table function that reads a dataset at ``uri`` (the raw bucket, or a local file)."""
    if parquet:
        return f"read_parquet({sql_literal(uri)})"
    # RFC 4180, strictly: an explicit dialect, so the sniffer cannot pick a later
    # "consistent" region of a ragged file (it took data values for column names)
    return (f"read_csv({sql_literal(uri)}, header = true, delim = ',', quote = '\"', escape = '\"', "
            "skip = 0, strict_mode = true, null_padding = false)")


def client_error_from_duckdb(exc: duckdb.Error) -> ApiError:
    """Map a DuckDB error raised while running client-supplied input to an HTTP error."""
    message = redact(str(exc))
    if storage_full(message):
        # a write refused by a full volume: retryable once space is freed; the
        # transaction was rolled back, so nothing of it is visible
        return Unavailable("object storage is full: the data files could not be written and "
                           "nothing was committed; free space (delete objects, grow the volume) "
                           f"and retry. {message}")
    if isinstance(exc, duckdb.CatalogException):
        return NotFound(message)
    if isinstance(exc, duckdb.IOException | duckdb.HTTPException):
        return Unavailable(message)
    if any(m in str(exc).lower() for m in CATALOG_GONE):
        # the catalog's PostgreSQL went away mid-request (a restart, a failover): the
        # client may retry, as for any 503; the next request connects again
        return Unavailable(message)
    if isinstance(
        exc,
        duckdb.ParserException
        | duckdb.BinderException
        | duckdb.ConversionException
        | duckdb.InvalidInputException
        | duckdb.ConstraintException
        | duckdb.OutOfRangeException
        | duckdb.TypeMismatchException
        | duckdb.NotImplementedException
        | duckdb.PermissionException,
    ):
        return BadRequest(message)
    return ApiError(message)


# --------------------------------------------------------------------------- the service


def write_passfile(settings: Settings) -> str:
    """Write the PostgreSQL password to a private file (dir 0700, file 0600) and return its
    path: the ATTACH string names the file, never the password, so nothing DuckDB can
    show (attached databases, errors, settings) holds it."""
    # a directory of our own inside the runtime dir (a volume's mount point belongs to
    # root: its mode is not ours to set)
    base = os.path.join(settings.runtime_dir or tempfile.gettempdir(), f"ducklake-pg-{os.getuid()}")
    os.makedirs(base, mode=0o700, exist_ok=True)
    os.chmod(base, 0o700)
    path = os.path.join(base, f"pgpass-{os.getpid()}")
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(settings.pgpass())
    os.replace(path + ".tmp", path)
    return path


class Lake:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._init_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._writer: duckdb.DuckDBPyConnection | None = None
        self._reader: duckdb.DuckDBPyConnection | None = None
        self._passfile = write_passfile(settings)
        # DuckDB's memory_limit of each database (None: DuckDB's default, 80% of the host)
        mem = duckdb_memory_limit(settings)
        self.memory_limit = max(mem // MIB, 64) * MIB if mem else None
        self.s3 = self._make_s3(timeout=60.0, retries=2)
        self.s3_probe = self._make_s3(timeout=5.0, retries=0)

    # ---- setup

    def _make_s3(self, timeout: float, retries: int, endpoint: str | None = None) -> Minio:
        s = self.settings
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 5.0), read=timeout),
            retries=urllib3.Retry(total=retries, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            maxsize=10,
        )
        return Minio(
            endpoint or s.s3_endpoint,
            access_key=s.s3_access_key,
            secret_key=s.s3_secret_key,
            secure=s.s3_use_ssl,
            region=s.s3_region,
            http_client=http,
        )

    def _secret_sql(self, read_only: bool, cleaner: bool = False) -> str:
        """The S3 secret of a database: the query path's (reader), maintenance's (cleaner:
        may delete in the lake bucket) or the writer's (may not: see "Ambiguous commits")."""
        s = self.settings
        key_id, secret = s.reader_s3() if read_only else s.maintenance_s3() if cleaner \
            else (s.s3_access_key, s.s3_secret_key)
        return (
            "CREATE OR REPLACE SECRET lake_s3 (TYPE s3, "
            f"KEY_ID {sql_literal(key_id)}, SECRET {sql_literal(secret)}, "
            f"ENDPOINT {sql_literal(s.s3_endpoint)}, URL_STYLE 'path', "
            f"USE_SSL {'true' if s.s3_use_ssl else 'false'}, REGION {sql_literal(s.s3_region)})"
        )

    def _attach_sql(self, read_only: bool) -> str:
        s = self.settings
        options = [f"DATA_PATH {sql_literal(f's3://{s.lake_bucket}/')}"]
        if read_only:
            options.append("READ_ONLY")
        elif s.data_inlining_row_limit is not None:
            options.append(f"DATA_INLINING_ROW_LIMIT {int(s.data_inlining_row_limit)}")
        user = s.reader_pg()[0] if read_only else s.pg_user
        conninfo = s.pg_conninfo(passfile=self._passfile, user=user)  # no password: write_passfile
        return f"ATTACH {sql_literal('ducklake:postgres:' + conninfo)} AS {CATALOG} ({', '.join(options)})"

    def _open(self, read_only: bool, cleaner: bool = False) -> duckdb.DuckDBPyConnection:
        config = extensions.connection_config()
        # Spill files go to the (writable) temp dir, not ./.tmp: the root file
        # system is read-only in the Deployment.
        config["temp_directory"] = os.path.join(tempfile.gettempdir(), "ducklake-backend-spill")
        # bounded by the container, not the host (DuckDB's default is 80% of the host)
        if self.memory_limit:
            config["memory_limit"] = f"{self.memory_limit // MIB}MiB"
        if cleaner:     # lists and deletes files, reads no data: a third database stays small
            config["memory_limit"] = f"{min(self.memory_limit or CLEANER_MEMORY, CLEANER_MEMORY) // MIB}MiB"
        config["max_temp_directory_size"] = f"{self.settings.max_temp_bytes // MIB}MiB"
        con = duckdb.connect(":memory:", config=config)
        try:
            extensions.install_and_load(con)
            con.execute(self._secret_sql(read_only, cleaner))
            con.execute(self._attach_sql(read_only))
            if not read_only:
                # Every file written to S3 is a multipart upload whose part buffer is
                # s3_uploader_max_filesize / 10,000 parts: 80 MB by default (800GB), a
                # 76.5 MiB block per file being written, a fifth of a 358 MiB limit (at
                # 128 MiB, with row groups bounded, compaction still failed allocating
                # it). 50GB, the least DuckDB accepts, makes the parts 5 MiB (S3's
                # minimum); a lake file is at most target_file_size (512 MB) anyway.
                con.execute("SET GLOBAL s3_uploader_max_filesize = '50GB'")
            if read_only:
                # User SQL may read the lake, never the container's files or
                # arbitrary URLs; the settings cannot be changed afterwards.
                con.execute("SET disabled_filesystems = 'LocalFileSystem,HTTPFileSystem'")
                con.execute("SET lock_configuration = true")
        except Exception:
            con.close()
            raise
        return con

    def _writer_db(self) -> duckdb.DuckDBPyConnection:
        """The read-write attach: ingest and catalog initialisation only."""
        with self._init_lock:
            if self._writer is None:
                try:
                    # initialises the catalog schema on a fresh database
                    self._writer = self._open(read_only=False)
                except duckdb.Error as exc:
                    raise Unavailable(f"cannot attach the DuckLake catalog: {redact(str(exc))}") from None
                log.info("attached DuckLake catalog (read-write)")
            return self._writer

    def _reader_db(self) -> duckdb.DuckDBPyConnection:
        """The READ_ONLY attach: every GET and every query. It never creates or changes
        anything, not even the catalog tables of an empty catalog (it then fails)."""
        with self._init_lock:
            if self._reader is None:
                try:
                    self._reader = self._open(read_only=True)
                except duckdb.Error as exc:
                    raise Unavailable(f"cannot attach the DuckLake catalog read-only (not initialised "
                                      f"yet?): {redact(str(exc))}") from None
                log.info("attached DuckLake catalog (read-only)")
            return self._reader

    def initialize_catalog(self) -> None:
        """Create the catalog tables if the catalog is empty (the read-write attach does):
        the backend's own start-up step, never a side effect of a read."""
        self._writer_db()

    def reset(self) -> None:
        """Forget the attached databases (e.g. after Postgres restarted); in-flight
        cursors keep their instance alive until they finish."""
        with self._init_lock:
            self._writer = None
            self._reader = None

    def _cursor(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        cur = (self._reader_db() if read_only else self._writer_db()).cursor()
        cur.execute(f"USE {CATALOG}.{SCHEMA}")
        return cur

    def catalog_db_cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of the read-write database, whose attach reaches the catalog's
        PostgreSQL database as ``CATALOG_DB`` (postgres_execute / postgres_query): the
        backend's own tables there (catalog_state.py), as the catalog owner."""
        return self._writer_db().cursor()

    def close(self) -> None:
        with self._init_lock:
            for con in (self._writer, self._reader):
                if con is not None:
                    try:
                        con.close()
                    except Exception:  # noqa: BLE001
                        pass
            self._writer = self._reader = None

    # ---- readiness

    def check_catalog(self) -> None:
        try:
            cur = self._cursor(read_only=True)
            try:
                cur.execute(f"SELECT count(*) FROM {CATALOG}.snapshots()").fetchone()
            finally:
                cur.close()
        except duckdb.Error as exc:
            self.reset()
            raise Unavailable(f"catalog query failed: {redact(str(exc))}") from None

    def storage_access(self, server: str) -> str:
        """Does ``server`` (host:port of one MinIO server) serve the backend's identity?
        "ok", or MinIO's error code (AccessDenied: that server does not know the user or
        its policy), or the transport error's type. Never the credentials."""
        try:
            found = self._make_s3(timeout=3.0, retries=0, endpoint=server).bucket_exists(
                self.settings.raw_bucket)
        except S3Error as exc:
            return exc.code or "S3Error"
        except Exception as exc:  # noqa: BLE001 - refused, reset, timed out
            return type(exc).__name__
        return "ok" if found else "NoSuchBucket"

    def check_storage(self) -> None:
        for bucket in (self.settings.raw_bucket, self.settings.lake_bucket):
            try:
                exists = self.s3_probe.bucket_exists(bucket)
            except Exception as exc:  # noqa: BLE001 - any transport error means not ready
                raise Unavailable(f"object storage unreachable: {redact(str(exc))}") from None
            if not exists:
                raise Unavailable(f"bucket {bucket!r} does not exist")

    # ---- datasets

    def upload(self, name: str, data: BinaryIO, length: int, content_type: str) -> dict[str, Any]:
        validate_dataset_name(name)
        try:
            result = self.s3.put_object(self.settings.raw_bucket, name, data, length, content_type=content_type)
        except S3Error as exc:
            if storage_full(exc.code or ""):
                raise Unavailable(f"object storage is full ({exc.code}): upload to s3://"
                                  f"{self.settings.raw_bucket}/{name} refused; free space (delete "
                                  "objects, grow the volume) and retry") from None
            raise Unavailable(f"upload to s3://{self.settings.raw_bucket}/{name} failed: {exc.code}") from None
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f"upload to object storage failed: {redact(str(exc))}") from None
        return {
            "dataset": name,
            "uri": f"s3://{self.settings.raw_bucket}/{name}",
            "bytes": length,
            "format": "parquet" if content_type == PARQUET else "csv",
            "etag": result.etag,
        }

    def _dataset_source(self, name: str) -> str:
        validate_dataset_name(name)
        try:
            stat = self.s3.stat_object(self.settings.raw_bucket, name)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "ResourceNotFound"):
                raise NotFound(f"dataset {name!r} not found in bucket {self.settings.raw_bucket!r}") from None
            raise Unavailable(f"object storage error: {exc.code}") from None
        except Exception as exc:  # noqa: BLE001
            raise Unavailable(f"object storage unreachable: {redact(str(exc))}") from None
        ctype = (stat.content_type or "").split(";")[0].strip().lower()
        parquet = ctype == PARQUET or (ctype != CSV and name.lower().endswith(".parquet"))
        return source_sql(f"s3://{self.settings.raw_bucket}/{name}", parquet)

    # ---- tables

    def _table_name(self, cur: duckdb.DuckDBPyConnection, table: str) -> str | None:
        """The lake's own spelling of ``table`` (names are case-insensitive, as in DuckDB)."""
        row = cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? "
            "AND lower(table_name) = lower(?) ORDER BY table_name LIMIT 1",
            [CATALOG, SCHEMA, table],
        ).fetchone()
        return row[0] if row else None

    def _current_snapshot(self, cur: duckdb.DuckDBPyConnection) -> int:
        return int(cur.execute(f"SELECT id FROM {CATALOG}.current_snapshot()").fetchone()[0])

    def ingest(self, table: str, dataset: str, mode: str, key: str | None = None) -> dict[str, Any]:
        """Ingest dataset ``dataset`` of the raw bucket into ``table``: one snapshot."""
        validate_identifier(table)
        if mode not in ("create", "append"):
            raise BadRequest(f"mode must be 'create' or 'append', got {mode!r}")
        request = {"mode": mode, "dataset": dataset, "bytes": None}
        return self._keyed(key, table, request, lambda k: self._ingest(
            table, dataset, mode, self._dataset_source(dataset), key=k, request=request))

    def ingest_file(self, table: str, dataset: str | None, mode: str, path: str, length: int,
                    content_type: str, key: str | None = None) -> dict[str, Any]:
        """Ingest the local file at ``path`` (a request's body) into ``table``: one snapshot.
        With ``dataset``, its copy goes to ``s3://<raw bucket>/<dataset>`` meanwhile and the
        snapshot commits only once the copy is stored (no row without its raw dataset; a
        failed copy rolls the ingest back); without, the rows go to the table only."""
        validate_identifier(table)
        if dataset is not None:
            validate_dataset_name(dataset)
        if mode not in ("create", "append"):
            raise BadRequest(f"mode must be 'create' or 'append', got {mode!r}")
        source = source_sql(path, content_type == PARQUET)
        request = {"mode": mode, "dataset": dataset, "bytes": length}

        def run(k: str) -> dict[str, Any]:
            if dataset is None:
                return {**self._ingest(table, None, mode, source, key=k, request=request),
                        "uri": None, "bytes": length}

            def copy() -> dict[str, Any]:
                with open(path, "rb") as f:
                    return self.upload(dataset, f, length, content_type)

            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="raw-copy") as pool:
                stored = pool.submit(copy)
                try:
                    result = self._ingest(table, dataset, mode, source, before_commit=stored.result,
                                          key=k, request=request)
                finally:
                    stored.exception()          # the copy ends before the file goes
            return {**result, "uri": stored.result()["uri"], "bytes": length}

        return self._keyed(key, table, request, run)

    def _ingest(self, table: str, dataset: str | None, mode: str, source: str,
                before_commit: Callable[[], Any] | None = None,
                key: str | None = None, request: dict[str, Any] | None = None) -> dict[str, Any]:
        """One snapshot; ``key`` (the client's Idempotency-Key) names the ingest: an ingest
        of that key that landed before is answered, not run again (commits.py)."""
        target = f"{CATALOG}.{SCHEMA}.{quote_identifier(table)}"

        ingest_key = key or uuid.uuid4().hex
        attempts = []
        # one budget for every outcome lookup of this request (each retry's included): a
        # client waits COMMIT_OUTCOME_S at most for them, not that per attempt (CI: a
        # rolling upgrade of Patroni cut several attempts of one ingest, which outlived the
        # client's 60 s)
        lookup_until: list[float] = []

        def once() -> dict[str, Any]:
            cur = self._cursor(read_only=False)
            try:
                if attempts:    # a retry: an earlier attempt may have landed after all
                    done = commits.landed(cur.execute(commits.find_marker_sql(CATALOG),
                                                      [ingest_key]).fetchone())
                    if done is not None:
                        return {**done["answer"], "snapshot_id": done["snapshot_id"], "key": ingest_key}
                attempts.append(1)
                existing = self._table_name(cur, table)
                if mode == "create" and existing:
                    raise Conflict(f"table {existing!r} already exists (table names are "
                                   "case-insensitive); use mode 'append'")
                if mode == "append" and not existing:
                    raise NotFound(f"table {table!r} does not exist; use mode 'create'")
                committing = False
                cur.begin()
                try:
                    if mode == "create":
                        cur.execute(f"CREATE TABLE {target} AS SELECT * FROM {source}")
                    else:
                        cur.execute(f"INSERT INTO {target} BY NAME SELECT * FROM {source}")
                    inserted = cur.fetchone()
                    if not inserted:    # CREATE TABLE AS and INSERT both answer with the count
                        raise ApiError("the ingest did not report its row count")
                    rows = int(inserted[0])
                    answer = {"table": table, "dataset": dataset, "mode": mode, "rows_ingested": rows}
                    cur.execute(f"CALL {CATALOG}.set_commit_message(?, ?, extra_info => ?)",
                                [self.settings.replica_name, f"ingest into {table}",
                                 commits.marker(ingest_key, {"table": table.lower(), **(request or {})},
                                                answer)])
                    if before_commit is not None:
                        before_commit()
                    committing = True
                    cur.commit()
                except BaseException as exc:
                    try:
                        cur.rollback()      # the writer cannot delete: its files stay
                    except duckdb.Error:
                        pass
                    if not (committing and isinstance(exc, duckdb.Error) and commits.may_have_landed(exc)):
                        raise       # the server refused the COMMIT: nothing landed
                    now = time.monotonic()
                    lookup_until.append(lookup_until[0] if lookup_until else now + commits.COMMIT_OUTCOME_S)
                    done = self._commit_outcome(ingest_key, failed_at=now,
                                                outcome_s=max(lookup_until[0] - now, commits.SETTLE_S * 2))
                    if done is None:
                        raise CommitNotApplied(exc) from exc
                    log.warning("commit answered with an error but landed",
                                extra={"ctx_snapshot_id": done["snapshot_id"],
                                       "ctx_detail": redact(str(exc)).splitlines()[0]})
                    snapshot = done["snapshot_id"]
                else:
                    # the snapshot this connection committed (another replica may have
                    # committed since: the catalog's current snapshot is not ours)
                    snapshot = int(cur.execute(
                        f"SELECT id FROM {CATALOG}.last_committed_snapshot()").fetchone()[0])
                return {**answer, "snapshot_id": snapshot, "key": ingest_key}
            finally:
                cur.close()

        with self._write_lock:
            try:
                result = retry_on_conflict(once, self.settings.commit_retries, what=f"ingest into {table!r}")
            except duckdb.Error as exc:
                raise client_error_from_duckdb(exc) from None
        log.info("ingested dataset", extra={f"ctx_{k}": v for k, v in result.items()})
        return result

    def _keyed(self, key: str | None, table: str, request: dict[str, Any],
               run: Callable[[str | None], dict[str, Any]]) -> dict[str, Any]:
        """An ingest named by the client's Idempotency-Key ``key`` (None: a fresh one).
        Landed before (its marker is in a kept snapshot): its answer, not a second run
        (409 if that ingest was another request: table, mode, dataset, size). Else the key
        is claimed in the catalog database (a lease, catalog_state.py: one claim among
        every replica; 409 while another holds it) and the ingest runs; a claim whose
        outcome is unknown is kept until it runs out (KEY_CLAIM_S), so a retry with the
        key meanwhile gets 409, and later the answer of what landed, or a run."""
        from .catalog_state import CatalogState, LeaseHeld
        fresh = key is None
        key = key or uuid.uuid4().hex
        state = CatalogState(self.catalog_db_cursor)
        want = {"table": table.lower(), **request}

        def landed() -> dict[str, Any] | None:
            cur = self._cursor(read_only=False)
            try:
                done = commits.landed(cur.execute(commits.find_marker_sql(CATALOG), [key]).fetchone())
            finally:
                cur.close()
            if done is None:
                return None
            if done["request"] != want:
                raise Conflict(f"Idempotency-Key {key} named another ingest ({done['request']}); "
                               "use a new key for a new request")
            return {**done["answer"], "snapshot_id": done["snapshot_id"], "key": key, "replayed": True}

        try:
            done = None if fresh else landed()
            if done is not None:
                return done
            try:
                claim = state.acquire(f"ingest:{key}", self.settings.replica_name, KEY_CLAIM_S)
            except LeaseHeld:
                raise Conflict(f"an ingest with Idempotency-Key {key} is in progress (or its outcome "
                               f"is being settled); retry within {KEY_CLAIM_S}s") from None
        except duckdb.Error as exc:
            raise client_error_from_duckdb(exc) from None
        keep = False
        try:
            done = None if fresh else landed()   # it may have landed between the look and the claim
            if done is not None:
                return done
            return run(key)
        except Unavailable as exc:
            keep = "outcome is unknown" in exc.message
            raise
        finally:
            if not keep:
                try:
                    state.forget(claim)
                except (ApiError, duckdb.Error) as exc:     # it runs out by itself
                    log.warning("ingest key not released", extra={
                        "ctx_key": key, "ctx_detail": redact(str(getattr(exc, "message", exc)))})

    def _commit_outcome(self, key: str, failed_at: float, outcome_s: float | None = None) -> dict | None:
        """After a failed COMMIT: commits.await_outcome on this catalog. The marker is
        looked for on the read-only attach; the sessions still in COMMIT through the
        writer's catalog database (its role sees its own sessions whole)."""
        def find(deadline: float) -> dict | None:
            return commits.landed(self._bounded(deadline, lambda cur: cur.execute(
                commits.find_marker_sql(CATALOG), [key]).fetchone(), read_only=True))

        def waiting(deadline: float) -> int:
            # the failure's time on the server's clock: now() less the time since (+1 s)
            pending = commits.PENDING_COMMITS.format(ago=time.monotonic() - failed_at - 1.0)
            return int(self._bounded(deadline, lambda cur: cur.execute(
                "SELECT * FROM postgres_query(?, ?)", [CATALOG_DB, pending]).fetchone()[0],
                read_only=False))

        return commits.await_outcome(find, waiting, self.reset, key, outcome_s=outcome_s)

    def _bounded(self, deadline: float, fn: Callable[[duckdb.DuckDBPyConnection], T],
                 read_only: bool) -> T:
        """``fn`` on a new cursor, interrupted at ``deadline`` (a query on a connection
        whose peer vanished would otherwise wait for the kernel)."""
        cur = self._cursor(read_only=read_only) if read_only else self.catalog_db_cursor()
        timer = threading.Timer(max(deadline - time.monotonic(), 0.5), cur.interrupt)
        timer.daemon = True
        timer.start()
        try:
            return fn(cur)
        finally:
            timer.cancel()
            cur.close()

    def maintain(self, keep_s: int) -> dict[str, Any]:
        """Compact small files, expire snapshots older than ``keep_s`` seconds and delete
        the files no kept snapshot needs once they have been unreferenced for ``keep_s``,
        and the files no snapshot names (failed transactions') once ORPHAN_MIN_AGE_S old.
        Each step is a DuckLake transaction: writers in other processes may commit while
        it runs (a conflict is retried); ingests of this process wait for it. Compaction
        writes with the writer's identity (a cut COMMIT keeps its files); only the two
        deleting steps run in the cleaner, whose identity may delete."""
        keep = f"now() - INTERVAL '{int(keep_s)} seconds'"
        orphan_age = f"now() - INTERVAL '{max(int(keep_s), ORPHAN_MIN_AGE_S)} seconds'"

        def once() -> dict[str, Any]:
            cur = self._cursor(read_only=False)
            try:
                # One thread while maintenance runs (threads is the database's, and the
                # write lock keeps this process's ingests out meanwhile): every thread
                # of the compaction reads a source row group of its own (80 MB in the
                # cluster's files) and, insertion order being kept, what one reads ahead
                # waits in memory. Measured at 358 MiB on 80 MB files of 4 kB rows, with
                # row groups bounded: 2 threads ran out of memory, 1 did not.
                threads = int(cur.execute("SELECT current_setting('threads')").fetchone()[0])
                cur.execute("SET threads = 1")
                try:
                    self._size_row_groups(cur, threads)
                    merged = cur.execute(f"CALL ducklake_merge_adjacent_files('{CATALOG}')").fetchall()
                    expired = cur.execute(f"CALL ducklake_expire_snapshots('{CATALOG}', "
                                          f"older_than => {keep})").fetchall()
                finally:
                    try:
                        cur.execute("RESET threads")
                    except duckdb.Error as exc:  # keep the error that brought us here
                        log.warning("threads not reset", extra={"ctx_detail": redact(str(exc))})
            finally:
                cur.close()
            deleted, orphans = self._clean(keep, orphan_age)
            return {"files_merged": sum(int(r[2]) for r in merged),
                    "files_written": sum(int(r[3]) for r in merged),
                    "snapshots_expired": len(expired), "files_deleted": len(deleted),
                    "orphans_deleted": len(orphans)}

        start = time.monotonic()
        with self._write_lock:
            try:
                result = retry_on_conflict(once, self.settings.commit_retries, what="maintenance")
            except duckdb.Error as exc:
                raise client_error_from_duckdb(exc) from None
        result["seconds"] = round(time.monotonic() - start, 3)
        log.info("maintenance done", extra={f"ctx_{k}": v for k, v in result.items()})
        return result

    def _clean(self, keep: str, orphan_age: str) -> tuple[list, list]:
        """Delete what no kept snapshot needs and the orphans, in a database of its own
        (the cleaner) opened for this and closed after: the only one with the identity
        that may delete in the lake bucket."""
        try:
            con = self._open(read_only=False, cleaner=True)
        except duckdb.Error as exc:
            raise Unavailable(f"cannot attach the DuckLake catalog for cleanup: {redact(str(exc))}") from None
        try:
            deleted = con.execute(f"CALL ducklake_cleanup_old_files('{CATALOG}', "
                                  f"older_than => {keep})").fetchall()
            orphans = con.execute(f"CALL ducklake_delete_orphaned_files('{CATALOG}', "
                                  f"older_than => {orphan_age})").fetchall()
        finally:
            con.close()
        return deleted, orphans

    def _size_row_groups(self, cur: duckdb.DuckDBPyConnection, threads: int) -> None:
        """Give every table of several files a Parquet row group that ``threads`` scans
        at once fit in the memory limit (see ROW_GROUP_SHARE_PER_THREAD): a table-scoped
        DuckLake option, which the compaction that follows and later ingests into the
        table write with. Only a changed value is written (no snapshot: an option is not
        a change of data)."""
        if not self.memory_limit:
            return
        budget = self.memory_limit // (ROW_GROUP_SHARE_PER_THREAD * max(threads, 1))
        tables = [r[0] for r in cur.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
            [CATALOG, SCHEMA]).fetchall()]
        current = dict(cur.execute(
            f"SELECT scope_entry, value FROM {CATALOG}.options() "
            "WHERE option_name = 'parquet_row_group_size' AND scope = 'TABLE'").fetchall())
        for table in tables:
            width = self._row_width(cur, table)
            if not width:
                continue
            rows = budget // width
            # a power of two, so that small changes of the estimate change nothing
            rows = (DEFAULT_ROW_GROUP_ROWS if rows >= DEFAULT_ROW_GROUP_ROWS
                    else max(MIN_ROW_GROUP_ROWS, 1 << (max(rows, 1).bit_length() - 1)))
            if int(current.get(f"{SCHEMA}.{table}", DEFAULT_ROW_GROUP_ROWS)) == rows:
                continue
            cur.execute(f"CALL {CATALOG}.set_option('parquet_row_group_size', {rows}, "
                        f"table_name => {sql_literal(table)}, schema => {sql_literal(SCHEMA)})")
            log.info("row group size set", extra={"ctx_table": table, "ctx_row_bytes": width,
                                                  "ctx_rows": rows})

    def _row_width(self, cur: duckdb.DuckDBPyConnection, table: str) -> int | None:
        """Bytes per row of ``table`` (None: fewer than two files, nothing to merge): the
        widest row group of its newest files, from their Parquet footers (uncompressed
        size; dictionary-encoded columns count less than they take in memory)."""
        # newest first: DuckLake names its files ducklake-<UUIDv7>, which sort by time
        files = [r[0] for r in cur.execute(
            "SELECT data_file FROM ducklake_list_files(?, ?, schema => ?) "
            "ORDER BY data_file DESC", [CATALOG, table, SCHEMA]).fetchall()]
        if len(files) < 2:
            return None
        try:
            row = cur.execute(
                "SELECT max(bytes / rows) FROM (SELECT sum(total_uncompressed_size) AS bytes, "
                "any_value(row_group_num_rows) AS rows FROM parquet_metadata(?) "
                "GROUP BY file_name, row_group_id HAVING rows > 0)",
                [files[:WIDTH_SAMPLE_FILES]]).fetchone()
        except duckdb.Error as exc:
            # an estimate, not a reason to skip maintenance: the defaults apply
            log.warning("row width unknown", extra={"ctx_table": table, "ctx_detail": redact(str(exc))})
            return None
        return max(1, int(row[0])) if row and row[0] else None

    def list_tables(self) -> list[dict[str, Any]]:
        cur = self._cursor(read_only=True)
        try:
            names = [
                r[0]
                for r in cur.execute(
                    "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? ORDER BY 1",
                    [CATALOG, SCHEMA],
                ).fetchall()
            ]
            out = []
            for name in names:
                count = cur.execute(f"SELECT count(*) FROM {CATALOG}.{SCHEMA}.{quote_identifier(name)}").fetchone()[0]
                out.append({"name": name, "row_count": int(count)})
            return out
        except duckdb.Error as exc:
            raise client_error_from_duckdb(exc) from None
        finally:
            cur.close()

    def rows(self, table: str, limit: int, snapshot: int | None) -> dict[str, Any]:
        validate_identifier(table)
        limit = max(1, min(int(limit), self.settings.query_row_limit))
        cur = self._cursor(read_only=True)
        try:
            at = ""
            if snapshot is not None:
                known = cur.execute(
                    f"SELECT count(*) FROM {CATALOG}.snapshots() WHERE snapshot_id = ?", [int(snapshot)]
                ).fetchone()[0]
                if not known:
                    raise NotFound(f"snapshot {snapshot} does not exist")
                at = f" AT (VERSION => {int(snapshot)})"
            elif not self._table_name(cur, table):
                raise NotFound(f"table {table!r} does not exist")
            sql = f"SELECT * FROM {CATALOG}.{SCHEMA}.{quote_identifier(table)}{at}"
            try:
                result = fetch_limited(cur, sql, None, limit, self.settings.query_timeout_s,
                                       self.settings.query_max_response_bytes)
            except duckdb.CatalogException:
                raise NotFound(f"table {table!r} does not exist at snapshot {snapshot}") from None
            out = {"table": table, "snapshot_id": snapshot if snapshot is not None else self._current_snapshot(cur)}
            out.update(result.as_dict())
            return out
        except duckdb.Error as exc:
            raise client_error_from_duckdb(exc) from None
        finally:
            cur.close()

    def snapshots(self, table: str) -> dict[str, Any]:
        validate_identifier(table)
        cur = self._cursor(read_only=True)
        try:
            ids = {
                str(r[0])
                for r in cur.execute(
                    f"SELECT table_id FROM __ducklake_metadata_{CATALOG}.ducklake_table "
                    "WHERE lower(table_name) = lower(?)", [table]
                ).fetchall()
            }
            if not ids:
                raise NotFound(f"table {table!r} does not exist")
            names = {n.lower() for n in (f"{SCHEMA}.{table}", f"{SCHEMA}.{quote_identifier(table)}", table)}
            out = []
            for snapshot_id, snapshot_time, schema_version, changes, extra in cur.execute(
                f"SELECT snapshot_id, snapshot_time, schema_version, changes, commit_extra_info "
                f"FROM {CATALOG}.snapshots() ORDER BY snapshot_id"
            ).fetchall():
                changes = changes or {}
                touched = any(
                    (str(v).lower() in names) if "created" in k or "dropped" in k
                    else (str(v) in ids or str(v).lower() in names)
                    for k, values in changes.items()
                    for v in (values or [])
                )
                if touched:
                    out.append(
                        {
                            "snapshot_id": int(snapshot_id),
                            "snapshot_time": to_jsonable(snapshot_time),
                            "schema_version": int(schema_version),
                            "changes": to_jsonable(changes),
                            # the ingest's marker: after a 503 "outcome unknown" it shows
                            # whether that ingest landed
                            "commit_extra_info": extra,
                        }
                    )
            return {"table": table, "snapshots": out}
        except duckdb.Error as exc:
            raise client_error_from_duckdb(exc) from None
        finally:
            cur.close()

    def query(self, sql: str) -> dict[str, Any]:
        tree = parse(sql)  # refuse what is not one SELECT before touching the catalog
        cur = self._cursor(read_only=True)
        try:
            tables = [r[0] for r in cur.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ? AND schema_name = ?",
                [CATALOG, SCHEMA]).fetchall()]
            check_tree(tree, tables)
            result = fetch_limited(cur, sql, None, self.settings.query_row_limit,
                                   self.settings.query_timeout_s, self.settings.query_max_response_bytes)
            # System functions (duckdb_secrets(), ...) must not hand out credentials.
            result.rows = [[_hide_secrets(v) for v in row] for row in result.rows]
            return result.as_dict()
        except duckdb.Error as exc:
            raise client_error_from_duckdb(exc) from None
        finally:
            cur.close()


def _hide_secrets(value: Any) -> Any:
    if isinstance(value, str):
        return redactor.secrets_only(value)
    if isinstance(value, list):
        return [_hide_secrets(v) for v in value]
    if isinstance(value, dict):
        return {k: _hide_secrets(v) for k, v in value.items()}
    return value


def body_is_parquet(head: bytes, tail: bytes) -> bool:
    return head[:4] == b"PAR1" and tail[-4:] == b"PAR1"


__all__ = ["Lake", "QueryResult", "fetch_limited", "retry_on_conflict", "is_commit_conflict", "to_jsonable"]
