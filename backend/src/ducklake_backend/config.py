"""Configuration, read only from environment variables (see backend/README.md)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from typing import Mapping


class ConfigError(ValueError):
    """A required variable is missing or a value cannot be parsed."""


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _get(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is required but not set")
        return default
    return value


def _int(env: Mapping[str, str], name: str, default: int | None, minimum: int = 0) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false), got {raw!r}")


def _token(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name).strip()
    if len(value) < 16:
        raise ConfigError(f"{name} must be at least 16 characters")
    return value


def _endpoint(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name).strip()
    if "://" in value or "/" in value:
        raise ConfigError(f"{name} must be host:port without scheme or path, got {value!r}")
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"{name} must be host:port, got {value!r}")
    return value


def _servers(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list of host:port (DNS names or addresses, nothing else)."""
    out = []
    for item in (v.strip() for v in env.get(name, "").split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})", host) \
                or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name} must be host:port[,host:port...], got {item!r}")
        out.append(item)
    return tuple(out)


@dataclass(frozen=True)
class Settings:
    pg_host: str
    pg_port: int
    pg_db: str
    pg_user: str
    pg_password: str = field(repr=False)
    s3_endpoint: str
    s3_access_key: str = field(repr=False)
    s3_secret_key: str = field(repr=False)
    api_token: str = field(default="", repr=False)   # required by from_env
    # the query path's read-only identities (a SELECT-only role, a list+get S3 user);
    # unset: the query path uses the read-write ones (local development)
    query_pg_user: str = ""
    query_pg_password: str = field(default="", repr=False)
    query_s3_access_key: str = field(default="", repr=False)
    query_s3_secret_key: str = field(default="", repr=False)
    # maintenance's S3 identity, the only one that may delete in the lake bucket (its
    # cleanup of unreferenced files). The writer's identity (s3_*) must not: DuckLake's
    # rollback deletes the files of a transaction whose COMMIT failed, and a COMMIT cut by
    # a failover may have committed (issue 16's ambiguous commit); a writer that cannot
    # delete keeps them. Unset: maintenance uses the writer's identity (local development)
    maintenance_s3_access_key: str = field(default="", repr=False)
    maintenance_s3_secret_key: str = field(default="", repr=False)
    s3_region: str = "us-east-1"
    s3_use_ssl: bool = False
    raw_bucket: str = "raw"
    lake_bucket: str = "lake"
    data_inlining_row_limit: int | None = None
    query_row_limit: int = 1000
    query_timeout_s: float = 30.0
    max_upload_bytes: int = 100 * 1024 * 1024
    commit_retries: int = 3
    pg_connect_timeout_s: int = 5
    log_level: str = "INFO"
    # create the catalog tables at start-up when the catalog is empty (reads never do)
    init_catalog: bool = True
    # private dir (0700) for the PostgreSQL password file; memory-backed in the Deployment
    runtime_dir: str = ""
    # resource bounds: memory for DuckDB (default: from the container's cgroup limit),
    # spill space, concurrent queries (429 beyond), bytes of one query response
    memory_limit_bytes: int | None = None
    max_temp_bytes: int = 512 * 1024 * 1024
    query_concurrency: int = 4
    query_max_response_bytes: int = 8 * 1024 * 1024
    # maintenance (compaction, snapshot expiry, deletion of unreferenced files): every
    # interval seconds (0: only on POST /maintenance); snapshots and files younger than
    # keep seconds are kept, so readers of recent snapshots are never cut off
    maintenance_interval_s: int = 0
    maintenance_keep_s: int = 86400
    # one maintenance runner among the backends sharing a catalog: a lease in the catalog
    # database, held for lease seconds and renewed while a run lasts (a crashed holder's
    # lease runs out by itself); the replica's name is recorded with the lease and the run
    maintenance_lease_s: int = 60
    replica_name: str = field(default_factory=socket.gethostname)
    # MinIO's servers by name (host:port each), asked one by one by GET /storage/health;
    # empty: only the Service (standalone MinIO is one server)
    minio_servers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        for a, b in (("DUCKLAKE_QUERY_PG_USER", "DUCKLAKE_QUERY_PG_PASSWORD"),
                     ("DUCKLAKE_QUERY_S3_ACCESS_KEY", "DUCKLAKE_QUERY_S3_SECRET_KEY"),
                     ("DUCKLAKE_MAINTENANCE_S3_ACCESS_KEY", "DUCKLAKE_MAINTENANCE_S3_SECRET_KEY")):
            if bool(env.get(a, "").strip()) != bool(env.get(b, "")):
                raise ConfigError(f"{a} and {b} are set together or not at all")
        return cls(
            pg_host=_get(env, "DUCKLAKE_PG_HOST"),
            pg_port=_int(env, "DUCKLAKE_PG_PORT", 5432, minimum=1),
            pg_db=_get(env, "DUCKLAKE_PG_DB", "ducklake"),
            pg_user=_get(env, "DUCKLAKE_PG_USER"),
            pg_password=_get(env, "DUCKLAKE_PG_PASSWORD"),
            s3_endpoint=_endpoint(env, "DUCKLAKE_S3_ENDPOINT"),
            s3_access_key=_get(env, "DUCKLAKE_S3_ACCESS_KEY"),
            s3_secret_key=_get(env, "DUCKLAKE_S3_SECRET_KEY"),
            api_token=_token(env, "DUCKLAKE_API_TOKEN"),
            query_pg_user=env.get("DUCKLAKE_QUERY_PG_USER", "").strip(),
            query_pg_password=env.get("DUCKLAKE_QUERY_PG_PASSWORD", ""),
            query_s3_access_key=env.get("DUCKLAKE_QUERY_S3_ACCESS_KEY", "").strip(),
            query_s3_secret_key=env.get("DUCKLAKE_QUERY_S3_SECRET_KEY", ""),
            maintenance_s3_access_key=env.get("DUCKLAKE_MAINTENANCE_S3_ACCESS_KEY", "").strip(),
            maintenance_s3_secret_key=env.get("DUCKLAKE_MAINTENANCE_S3_SECRET_KEY", ""),
            s3_region=_get(env, "DUCKLAKE_S3_REGION", "us-east-1"),
            s3_use_ssl=_bool(env, "DUCKLAKE_S3_USE_SSL", False),
            raw_bucket=_get(env, "DUCKLAKE_RAW_BUCKET", "raw"),
            lake_bucket=_get(env, "DUCKLAKE_LAKE_BUCKET", "lake"),
            data_inlining_row_limit=_int(env, "DUCKLAKE_DATA_INLINING_ROW_LIMIT", None),
            query_row_limit=_int(env, "DUCKLAKE_QUERY_ROW_LIMIT", 1000, minimum=1),
            query_timeout_s=_float(env, "DUCKLAKE_QUERY_TIMEOUT_S", 30.0),
            max_upload_bytes=_int(env, "DUCKLAKE_MAX_UPLOAD_BYTES", 100 * 1024 * 1024, minimum=1),
            commit_retries=_int(env, "DUCKLAKE_COMMIT_RETRIES", 3),
            pg_connect_timeout_s=_int(env, "DUCKLAKE_PG_CONNECT_TIMEOUT_S", 5, minimum=1),
            log_level=_get(env, "DUCKLAKE_LOG_LEVEL", "INFO").upper(),
            init_catalog=_bool(env, "DUCKLAKE_INIT_CATALOG", True),
            runtime_dir=env.get("DUCKLAKE_RUNTIME_DIR", "").strip(),
            memory_limit_bytes=_int(env, "DUCKLAKE_MEMORY_LIMIT_BYTES", None, minimum=64 * 1024 * 1024),
            max_temp_bytes=_int(env, "DUCKLAKE_MAX_TEMP_BYTES", 512 * 1024 * 1024, minimum=0),
            query_concurrency=_int(env, "DUCKLAKE_QUERY_CONCURRENCY", 4, minimum=1),
            maintenance_interval_s=_int(env, "DUCKLAKE_MAINTENANCE_INTERVAL_S", 0, minimum=0),
            maintenance_keep_s=_int(env, "DUCKLAKE_MAINTENANCE_KEEP_S", 86400, minimum=0),
            maintenance_lease_s=_int(env, "DUCKLAKE_MAINTENANCE_LEASE_S", 60, minimum=3),
            replica_name=_replica_name(env),
            minio_servers=_servers(env, "DUCKLAKE_MINIO_SERVERS"),
            query_max_response_bytes=_int(env, "DUCKLAKE_QUERY_MAX_RESPONSE_BYTES", 8 * 1024 * 1024,
                                          minimum=1024),
        )

    def secret_values(self) -> list[str]:
        """Values that must never appear in logs or error responses."""
        return [v for v in (self.pg_password, self.s3_secret_key, self.s3_access_key,
                            self.api_token, self.query_pg_password, self.query_s3_secret_key,
                            self.query_s3_access_key, self.maintenance_s3_access_key,
                            self.maintenance_s3_secret_key) if v]

    def reader_pg(self) -> tuple[str, str]:
        """(user, password) of the query path's PostgreSQL identity."""
        return (self.query_pg_user, self.query_pg_password) if self.query_pg_user \
            else (self.pg_user, self.pg_password)

    def maintenance_s3(self) -> tuple[str, str]:
        """(access key, secret key) of maintenance's S3 identity (deletes in the lake)."""
        return (self.maintenance_s3_access_key, self.maintenance_s3_secret_key) \
            if self.maintenance_s3_access_key else (self.s3_access_key, self.s3_secret_key)

    def reader_s3(self) -> tuple[str, str]:
        """(access key, secret key) of the query path's S3 identity."""
        return (self.query_s3_access_key, self.query_s3_secret_key) if self.query_s3_access_key \
            else (self.s3_access_key, self.s3_secret_key)

    def pg_conninfo(self, passfile: str, user: str | None = None) -> str:
        """libpq key/value string without the password: libpq reads it from ``passfile``
        (see :meth:`pgpass`), so no string DuckDB can show holds a credential."""
        parts = {
            "dbname": self.pg_db,
            "host": self.pg_host,
            "port": str(self.pg_port),
            "user": user or self.pg_user,
            "passfile": passfile,
            "connect_timeout": str(self.pg_connect_timeout_s),
            # a catalog that vanished without a reset (a node lost) is noticed in about
            # 20 s, not the kernel's 15 min: a COMMIT's outcome is asked within 30 s
            "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "3",
            "keepalives_count": "3", "tcp_user_timeout": "20000",
        }
        return " ".join(f"{k}={_libpq_quote(v)}" for k, v in parts.items())

    def pgpass(self) -> str:
        """The password file: a line per identity for this host, port and database (secret)."""
        out = []
        for user, password in {(self.pg_user, self.pg_password), self.reader_pg()}:
            fields = (self.pg_host, str(self.pg_port), self.pg_db, user, password)
            out.append(":".join(f.replace("\\", "\\\\").replace(":", "\\:") for f in fields))
        return "\n".join(sorted(out)) + "\n"


def _replica_name(env: Mapping[str, str]) -> str:
    """DUCKLAKE_REPLICA_NAME, else the host name (a pod's name in Kubernetes)."""
    value = env.get("DUCKLAKE_REPLICA_NAME", "").strip() or socket.gethostname()
    if not value or len(value) > 253 or not value.isprintable():
        raise ConfigError(f"DUCKLAKE_REPLICA_NAME must be 1-253 printable characters, got {value!r}")
    return value


def _libpq_quote(value: str) -> str:
    if value and all(c not in value for c in " '\\\t\n"):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


# the two DuckDB databases (writer, reader) each get this share of the container's memory;
# the rest is Python, FastAPI and response buffers
DUCKDB_SHARE = 0.35


def container_memory_limit(root: str = "/sys/fs/cgroup") -> int | None:
    """The container's memory limit in bytes from its cgroup (v2, then v1); None if unlimited."""
    for path in (f"{root}/memory.max", f"{root}/memory/memory.limit_in_bytes"):
        try:
            raw = open(path, encoding="ascii").read().strip()
        except OSError:
            continue
        if raw == "max" or not raw.isdigit():
            return None
        value = int(raw)
        return value if value < 2**60 else None   # v1 "unlimited" is a huge number
    return None


def duckdb_memory_limit(settings: Settings, cgroup_root: str = "/sys/fs/cgroup") -> int | None:
    """Bytes each DuckDB database may use: the configured total or the cgroup limit, shared."""
    total = settings.memory_limit_bytes or container_memory_limit(cgroup_root)
    return int(total * DUCKDB_SHARE) if total else None
