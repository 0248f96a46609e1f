"""The HTTP API (FastAPI). Run with ``uvicorn ducklake_backend.app:create_app --factory``."""

from __future__ import annotations

import asyncio
import hmac
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from . import __version__
from .config import Settings
from .commits import KEY_PATTERN
from .errors import ApiError, BadRequest, PayloadTooLarge, TooManyRequests, UnsupportedMediaType
from .lake import CSV, PARQUET, Lake, body_is_parquet
from .maintenance import Maintenance
from .logs import configure_logging, redact, redactor
from .sqlsafety import validate_dataset_name, validate_identifier
from .storage_health import probe as storage_health_probe

log = logging.getLogger("ducklake_backend")

_SPOOL_IN_MEMORY = 8 * 1024 * 1024


class IngestRequest(BaseModel):
    dataset: str = Field(description="name of a dataset uploaded with POST /datasets/{name}",
                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    mode: Literal["create", "append"] = Field(default="create")


# The path parameters' rules, in the OpenAPI document too (sqlsafety checks the same)
_RESERVED = {"pattern": "^([dD][uU][cC][kK][lL][aA][kK][eE]_|__)"}
TableName = Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$", json_schema_extra={"not": _RESERVED},
                 description="a plain identifier; the ducklake_ prefix is reserved")
IdempotencyKey = Header(None, alias="Idempotency-Key", pattern=KEY_PATTERN, description=(
    "names the ingest: a retry with the same key answers the ingest that landed instead of "
    "running it again (after a 503 whose outcome is unknown, or a lost answer)"))
DatasetName = Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                   description="an object name in the raw bucket")


class ErrorBody(BaseModel):
    error: str = Field(description="machine-readable code, e.g. bad_request")
    detail: str = Field(description="what went wrong (never a credential)")


class ReadyBody(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(description="check name -> ok | failed")


_WHY = {400: "invalid input, or SQL outside the allowlist (the detail names it)",
        401: "no valid API token", 404: "no such table, dataset or snapshot",
        408: "the query ran past its time limit", 409: "the table exists, or commits conflicted",
        413: "the upload, or one row of a result, is too large",
        415: "unsupported content type", 429: "too many queries running; retry",
        503: "PostgreSQL or MinIO is unreachable"}


def _responses(*codes: int, why: dict[int, str] | None = None) -> dict[int, dict]:
    """OpenAPI entries for the error codes an endpoint returns (all as ErrorBody); ``why``
    says what a code means for this endpoint, where that is not _WHY's."""
    why = {**_WHY, **(why or {})}
    return {c: {"model": ErrorBody, "description": why[c]} for c in (401, *codes)}


class QueryRequest(BaseModel):
    sql: str = Field(description="one read-only SELECT statement")


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": redact(message)})


def _upload_format(name: str, content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media == CSV:
        return CSV
    if media in (PARQUET, "application/x-parquet"):
        return PARQUET
    if media == "application/octet-stream" and name.lower().endswith(".parquet"):
        return PARQUET
    raise UnsupportedMediaType(
        f"unsupported content type {media or '(none)'!r}: use text/csv, application/vnd.apache.parquet, "
        "or application/octet-stream with a .parquet dataset name"
    )


OPEN_PATHS = frozenset({"/healthz", "/readyz"})   # the kubelet's probes: no token


def token_ok(headers: dict[str, str], token: str) -> bool:
    """``Authorization: Bearer <token>``, or ``X-DuckLake-Token: <token>`` for callers
    behind the Kubernetes API server's service proxy (it consumes Authorization)."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    given = value.strip() if scheme.lower() == "bearer" else headers.get("x-ducklake-token", "")
    return bool(token) and hmac.compare_digest(given.encode(), token.encode())


class TokenAuth:
    """Every request but the health probes needs the API token (401 otherwise)."""

    def __init__(self, app, token: str) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            if not token_ok(headers, self.token):
                response = JSONResponse(
                    status_code=401, headers={"WWW-Authenticate": "Bearer"},
                    content={"error": "unauthorized", "detail": "a valid API token is required "
                             "(Authorization: Bearer <token>, or X-DuckLake-Token)"})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _initialize_until_done(lake: Lake, stop: threading.Event) -> None:
    """Attach read-write once at start-up (creating the catalog tables of an empty
    catalog), retrying while PostgreSQL is not reachable yet; /readyz stays 503 until then."""
    delay = 1.0
    while not stop.is_set():
        try:
            lake.initialize_catalog()
            return
        except ApiError as exc:
            log.warning("catalog not initialised yet, retrying", extra={"ctx_detail": exc.message,
                                                                        "ctx_retry_s": delay})
        stop.wait(delay)
        delay = min(delay * 2, 10.0)


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    settings = settings or Settings.from_env()
    redactor.add(*settings.secret_values())
    if configure_logs:
        configure_logging(settings.log_level)
    lake = Lake(settings)
    maintenance = Maintenance(lake, settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info(
            "starting",
            extra={
                "ctx_version": __version__,
                "ctx_pg_host": settings.pg_host,
                "ctx_s3_endpoint": settings.s3_endpoint,
                "ctx_raw_bucket": settings.raw_bucket,
                "ctx_lake_bucket": settings.lake_bucket,
            },
        )
        stop = threading.Event()
        if settings.init_catalog:
            threading.Thread(target=_initialize_until_done, args=(lake, stop), daemon=True,
                             name="catalog-init").start()
        if settings.maintenance_interval_s > 0:
            threading.Thread(target=maintenance.every, args=(stop,), daemon=True,
                             name="maintenance").start()
        yield
        stop.set()
        await run_in_threadpool(lake.close)
        app.state.health_pool.shutdown(wait=False)

    app = FastAPI(title="DuckLake backend", version=__version__, lifespan=lifespan)
    app.add_middleware(TokenAuth, token=settings.api_token)
    app.state.lake = lake
    app.state.settings = settings
    app.state.maintenance = maintenance

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        level = logging.ERROR if exc.status_code >= 500 else logging.INFO
        log.log(level, "request failed", extra={"ctx_path": request.url.path, "ctx_status": exc.status_code, "ctx_detail": exc.message})
        response = _error(exc.status_code, exc.code, exc.message)
        if exc.status_code == 429:
            response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(400, "bad_request", f"invalid request: {details}")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc, extra={"ctx_path": request.url.path})
        return _error(500, "internal_error", f"internal error: {type(exc).__name__}")

    # Health answers on the event loop, never behind the worker threads that queries and
    # ingests occupy; readiness checks run on threads of their own, with a deadline.
    health_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="readyz")
    app.state.health_pool = health_pool

    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process is up and serving."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], response_model=ReadyBody,
             responses={503: {"model": ReadyBody, "description": "a check failed"}})
    async def readyz() -> JSONResponse:
        """Readiness: a real catalog query (Postgres via DuckLake) and bucket access (S3)."""
        loop = asyncio.get_running_loop()
        checks: dict[str, str] = {}
        reasons: dict[str, str] = {}
        for name, check in (("catalog", lake.check_catalog), ("storage", lake.check_storage)):
            # unauthenticated: says which check failed, never a host, user or database
            # name (the reason goes to the log)
            try:
                await asyncio.wait_for(loop.run_in_executor(health_pool, check),
                                       timeout=settings.pg_connect_timeout_s + 1)
                checks[name] = "ok"
            except ApiError as exc:
                checks[name] = "failed"
                reasons[name] = redact(exc.message)
            except asyncio.TimeoutError:
                checks[name] = "failed"
                reasons[name] = "check timed out"
        ready = all(v == "ok" for v in checks.values())
        if not ready:
            log.warning("not ready", extra={"ctx_checks": reasons})
        return JSONResponse(status_code=200 if ready else 503, content={"status": "ready" if ready else "not ready", "checks": checks})

    @app.post("/datasets/{name}", status_code=201, tags=["datasets"],
              responses=_responses(400, 413, 415, 503),
              openapi_extra={"requestBody": {"required": True, "description": (
                  "the dataset's bytes: text/csv (RFC 4180, a header line); Parquet as "
                  "application/vnd.apache.parquet (or application/octet-stream with a .parquet "
                  "name) is accepted too"),
                  "content": {"text/csv": {"schema": {"type": "string", "minLength": 1}}}}})
    async def upload_dataset(request: Request, name: str = DatasetName) -> dict[str, Any]:
        """Upload a CSV or Parquet body to ``s3://<raw bucket>/<name>``."""
        validate_dataset_name(name)
        fmt = _upload_format(name, request.headers.get("content-type"))
        spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY)
        try:
            size = await _receive(request, spool, fmt)
            result = await run_in_threadpool(lake.upload, name, spool, size, fmt)
        finally:
            spool.close()
        log.info("dataset uploaded", extra={"ctx_dataset": name, "ctx_bytes": size, "ctx_format": result["format"]})
        return result

    async def _receive(request: Request, out, fmt: str) -> int:
        """The request's body into ``out`` (rewound), within the upload limit; its size."""
        limit = settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"upload of {declared} bytes exceeds the limit of {limit} bytes")
        size = 0
        head = b""
        tail = b""
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"upload exceeds the limit of {limit} bytes")
            if len(head) < 4:
                head += chunk[: 4 - len(head)]
            tail = (tail + chunk)[-4:]
            out.write(chunk)
        if size == 0:
            raise BadRequest("empty upload")
        if fmt == PARQUET and not body_is_parquet(head, tail):
            raise BadRequest("body is not a Parquet file (missing PAR1 magic)")
        out.flush()
        out.seek(0)
        return size

    @app.post("/tables/{table}/rows", tags=["tables"],
              responses=_responses(400, 404, 409, 413, 415, 503),
              openapi_extra={"requestBody": {"required": True, "description": (
                  "the rows: text/csv (RFC 4180, a header line) or Parquet "
                  "(application/vnd.apache.parquet, or application/octet-stream with a "
                  ".parquet dataset name)"),
                  "content": {"text/csv": {"schema": {"type": "string", "minLength": 1}}}}})
    async def add_rows(request: Request, table: str = TableName,
                       dataset: str | None = Query(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$",
                                                   description="keep a raw copy under this name in "
                                                               "the raw bucket (none: the rows go to "
                                                               "the table only)"),
                       mode: Literal["create", "append"] = Query("append"),
                       idempotency_key: str | None = IdempotencyKey) -> dict[str, Any]:
        """Ingest the body into the table in one call, one snapshot, as ``POST
        /tables/{table}/ingest`` does for an uploaded dataset. With ``dataset``, the raw
        copy goes to ``s3://<raw bucket>/<dataset>`` meanwhile and the snapshot commits only
        once it is stored."""
        validate_identifier(table)
        if dataset is not None:
            validate_dataset_name(dataset)
        fmt = _upload_format(dataset or "", request.headers.get("content-type"))
        with tempfile.NamedTemporaryFile(prefix="rows-", suffix=".parquet" if fmt == PARQUET else ".csv") as f:
            size = await _receive(request, f, fmt)
            return await run_in_threadpool(lake.ingest_file, table, dataset, mode, f.name, size, fmt,
                                           idempotency_key)

    @app.post("/tables/{table}/ingest", tags=["tables"], responses=_responses(400, 404, 409, 503))
    def ingest(body: IngestRequest, table: str = TableName,
               idempotency_key: str | None = IdempotencyKey) -> dict[str, Any]:
        """Ingest a raw dataset into a DuckLake table (create or append), one snapshot per call."""
        validate_identifier(table)
        return lake.ingest(table, body.dataset, body.mode, idempotency_key)

    @app.get("/tables", tags=["tables"], responses=_responses(503))
    def tables() -> dict[str, Any]:
        """Tables of the lake with their row counts."""
        return {"tables": lake.list_tables()}

    @app.get("/tables/{table}/rows", tags=["tables"], responses=_responses(400, 404, 408, 413, 503))
    def rows(
        table: str = TableName,
        limit: int = Query(100, ge=1, description="capped by DUCKLAKE_QUERY_ROW_LIMIT"),
        snapshot: int | None = Query(None, ge=0, description="time travel: read the table AT (VERSION => snapshot)"),
    ) -> dict[str, Any]:
        validate_identifier(table)
        return lake.rows(table, limit, snapshot)

    @app.get("/tables/{table}/snapshots", tags=["tables"], responses=_responses(400, 404, 503))
    def snapshots(table: str = TableName) -> dict[str, Any]:
        """DuckLake snapshots that created or changed the table."""
        validate_identifier(table)
        return lake.snapshots(table)

    @app.post("/maintenance", tags=["maintenance"], responses=_responses(409, 503, why={
        409: "maintenance runs on another replica (error lease_held), or its commits "
             "conflicted with other writers (error conflict)"}))
    def run_maintenance() -> dict[str, Any]:
        """Compact small files, expire old snapshots, delete files no kept snapshot needs
        (what the schedule runs every DUCKLAKE_MAINTENANCE_INTERVAL_S seconds). One run at
        a time among the backends sharing the catalog: a 409 while another replica runs."""
        return maintenance.run()

    @app.get("/maintenance", tags=["maintenance"], responses=_responses(503))
    def maintenance_status() -> dict[str, Any]:
        """The schedule (interval, how long snapshots are kept) and the last run of any
        replica on this catalog (``replica`` names which), from the catalog database."""
        return maintenance.status()

    @app.get("/storage/health", tags=["health"])
    def storage_health() -> dict[str, Any]:
        """What MinIO's own health endpoints say of the erasure set: the Service's write
        and read quorum (status, quorum and healing-drive headers) and, per server named
        in DUCKLAKE_MINIO_SERVERS, live, safe to take down (412: not), and serving the
        backend's identity (``access``: "ok" or MinIO's error code). Statuses only;
        the verdict is the auditor's (control HA-MINIO-003)."""
        return storage_health_probe(settings.s3_endpoint, settings.minio_servers,
                                    settings.s3_use_ssl, access=lake.storage_access)

    query_slots = threading.BoundedSemaphore(settings.query_concurrency)

    @app.post("/query", tags=["query"], responses=_responses(400, 404, 408, 413, 429, 503))
    def query(body: QueryRequest) -> dict[str, Any]:
        """Run one read-only SELECT over the lake's tables (allowlisted functions; row,
        byte, time and concurrency limits apply); anything else is refused with a 400."""
        if not query_slots.acquire(blocking=False):
            raise TooManyRequests(f"{settings.query_concurrency} queries are already running; "
                                  "retry shortly")
        try:
            return lake.query(body.sql)
        finally:
            query_slots.release()

    def openapi() -> dict[str, Any]:
        """FastAPI's document, less its default 422 (invalid input is a 400 here) and
        with the bearer token declared on every endpoint but the probes."""
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            doc.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            for path, ops in doc.get("paths", {}).items():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
                    if path not in OPEN_PATHS:
                        op["security"] = [{"bearer": []}]
            for name in ("HTTPValidationError", "ValidationError"):
                doc["components"].get("schemas", {}).pop(name, None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi
    return app
