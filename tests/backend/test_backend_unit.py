"""Unit tests of the backend's pure pieces: no services, no network."""

from __future__ import annotations

import io
import json
import logging

import duckdb
import pytest

from ducklake_backend import extensions
from ducklake_backend.config import ConfigError, Settings
from ducklake_backend.errors import BadRequest, Conflict, QueryTimeout
from ducklake_backend.lake import fetch_limited, is_commit_conflict, retry_on_conflict, to_jsonable
from ducklake_backend.logs import JsonFormatter, RedactingFilter, Redactor
from ducklake_backend.sqlsafety import (
    ensure_read_only_select,
    quote_identifier,
    validate_dataset_name,
    validate_identifier,
)

BASE_ENV = {
    "DUCKLAKE_PG_HOST": "pg.storage.svc",
    "DUCKLAKE_PG_USER": "ducklake",
    "DUCKLAKE_PG_PASSWORD": "pg-s3cret-pw",
    "DUCKLAKE_S3_ENDPOINT": "minio.storage.svc:9000",
    "DUCKLAKE_S3_ACCESS_KEY": "minio-access",
    "DUCKLAKE_S3_SECRET_KEY": "minio-s3cret-key",
}


# ----------------------------------------------------------------- SQL guard


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select * from trips where id > 3 order by id;",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "FROM trips",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'DROP TABLE x; DELETE' AS s",
    ],
)
def test_read_only_guard_accepts_single_select(sql):
    assert ensure_read_only_select(sql).strip().rstrip(";").strip()


@pytest.mark.parametrize(
    "sql, reason",
    [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t", "DELETE"),
        ("CREATE TABLE t (a INT)", "CREATE"),
        ("DROP TABLE t", "DROP"),
        ("ALTER TABLE t ADD COLUMN b INT", "ALTER"),
        ("COPY t TO '/tmp/x.csv'", "COPY"),
        ("ATTACH 'x.db' AS x", "ATTACH"),
        ("SET threads = 1", "SET"),
        ("CALL ducklake_expire_snapshots('lake')", "CALL"),
        ("EXPLAIN SELECT 1", "EXPLAIN"),
        ("INSTALL httpfs", "LOAD"),
        ("SELECT 1; DROP TABLE t", "exactly one statement"),
        ("SELECT 1; SELECT 2", "exactly one statement"),
    ],
)
def test_read_only_guard_rejects_writes_and_ddl(sql, reason):
    with pytest.raises(BadRequest) as info:
        ensure_read_only_select(sql)
    assert reason in info.value.message


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT FROM WHERE (", "", "   "])
def test_read_only_guard_rejects_invalid_sql(sql):
    with pytest.raises(BadRequest):
        ensure_read_only_select(sql)


def test_fetch_limited_applies_row_limit_and_keeps_order():
    con = duckdb.connect()
    result = fetch_limited(con, "SELECT range AS i FROM range(50) ORDER BY i DESC;", None, 5, 10)
    assert result.rows == [[49], [48], [47], [46], [45]]
    assert result.truncated is True
    assert result.columns == [{"name": "i", "type": "BIGINT"}]
    small = fetch_limited(con, "SELECT 1 AS x -- trailing comment", None, 5, 10)
    assert small.rows == [[1]] and small.truncated is False


def test_fetch_limited_times_out():
    con = duckdb.connect()
    with pytest.raises(QueryTimeout):
        fetch_limited(con, "SELECT count(*) FROM range(1000000000000) a", None, 5, 0.5)
    # The connection is usable afterwards.
    assert fetch_limited(con, "SELECT 7 AS x", None, 5, 5).rows == [[7]]


def test_to_jsonable_types():
    import datetime as dt
    import decimal
    import uuid

    value = {
        "d": dt.date(2024, 1, 2),
        "ts": dt.datetime(2024, 1, 2, 3, 4, 5),
        "dec": decimal.Decimal("1.50"),
        "u": uuid.UUID(int=1),
        "b": b"\x00\x01",
        "l": (1, 2.5, None),
        "nan": float("nan"),
    }
    out = to_jsonable(value)
    json.dumps(out)  # serialisable
    assert out["d"] == "2024-01-02" and out["dec"] == "1.50" and out["l"] == [1, 2.5, None]


# ----------------------------------------------------------------- identifiers


@pytest.mark.parametrize("name", ["trips", "Trips_2024", "_x", "a" * 63])
def test_valid_identifiers(name):
    assert validate_identifier(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "1trips", "trips;drop", 'a"b', "a b", "a-b", "a" * 64, "é", "ducklake_snapshot", "t.x", "../x"],
)
def test_invalid_identifiers(name):
    with pytest.raises(BadRequest):
        validate_identifier(name)


def test_quote_identifier_escapes_quotes():
    assert quote_identifier('a"b') == '"a""b"'


@pytest.mark.parametrize("name", ["trips.csv", "2024-01_trips.parquet", "x"])
def test_valid_dataset_names(name):
    assert validate_dataset_name(name) == name


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../etc/passwd", "a..b", "a b", "x" * 129, "a\\b"])
def test_invalid_dataset_names(name):
    with pytest.raises(BadRequest):
        validate_dataset_name(name)


# ----------------------------------------------------------------- config


def test_config_defaults():
    s = Settings.from_env(BASE_ENV)
    assert s.pg_port == 5432 and s.pg_db == "ducklake"
    assert s.s3_region == "us-east-1" and s.s3_use_ssl is False
    assert (s.raw_bucket, s.lake_bucket) == ("raw", "lake")
    assert s.data_inlining_row_limit is None
    assert s.query_row_limit == 1000 and s.query_timeout_s == 30.0
    assert s.max_upload_bytes == 100 * 1024 * 1024 and s.commit_retries == 3


def test_config_overrides():
    env = dict(
        BASE_ENV,
        DUCKLAKE_PG_PORT="6543",
        DUCKLAKE_S3_USE_SSL="true",
        DUCKLAKE_S3_REGION="eu-west-1",
        DUCKLAKE_RAW_BUCKET="r",
        DUCKLAKE_LAKE_BUCKET="l",
        DUCKLAKE_DATA_INLINING_ROW_LIMIT="0",
        DUCKLAKE_QUERY_ROW_LIMIT="10",
        DUCKLAKE_QUERY_TIMEOUT_S="2.5",
        DUCKLAKE_MAX_UPLOAD_BYTES="2048",
        DUCKLAKE_COMMIT_RETRIES="0",
    )
    s = Settings.from_env(env)
    assert s.pg_port == 6543 and s.s3_use_ssl is True and s.s3_region == "eu-west-1"
    assert (s.raw_bucket, s.lake_bucket) == ("r", "l")
    assert s.data_inlining_row_limit == 0 and s.query_row_limit == 10
    assert s.query_timeout_s == 2.5 and s.max_upload_bytes == 2048 and s.commit_retries == 0


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"DUCKLAKE_PG_HOST": ""}, "DUCKLAKE_PG_HOST is required"),
        ({"DUCKLAKE_PG_PORT": "abc"}, "DUCKLAKE_PG_PORT must be an integer"),
        ({"DUCKLAKE_S3_ENDPOINT": "http://minio:9000"}, "host:port"),
        ({"DUCKLAKE_S3_ENDPOINT": "minio"}, "host:port"),
        ({"DUCKLAKE_S3_USE_SSL": "maybe"}, "boolean"),
        ({"DUCKLAKE_QUERY_TIMEOUT_S": "0"}, "> 0"),
        ({"DUCKLAKE_QUERY_ROW_LIMIT": "0"}, ">= 1"),
        ({"DUCKLAKE_COMMIT_RETRIES": "-1"}, ">= 0"),
    ],
)
def test_config_errors(override, fragment):
    with pytest.raises(ConfigError) as info:
        Settings.from_env(dict(BASE_ENV, **override))
    assert fragment in str(info.value)


def test_settings_repr_hides_secrets():
    s = Settings.from_env(BASE_ENV)
    assert "pg-s3cret-pw" not in repr(s) and "minio-s3cret-key" not in repr(s)
    assert "password=pg-s3cret-pw" in s.pg_conninfo()


def test_conninfo_quotes_odd_passwords():
    s = Settings.from_env(dict(BASE_ENV, DUCKLAKE_PG_PASSWORD="a b'c"))
    assert "password='a b\\'c'" in s.pg_conninfo()


# ----------------------------------------------------------------- log redaction


def _json_logger(redactor: Redactor) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactingFilter(redactor))
    logger = logging.getLogger(f"test-redaction-{id(stream)}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_redaction_filter_removes_secrets_from_json_logs():
    settings = Settings.from_env(BASE_ENV)
    redactor = Redactor(settings.secret_values())
    logger, stream = _json_logger(redactor)
    attach_error = (
        'IO Error: Unable to connect to Postgres at "' + settings.pg_conninfo() + '": connection refused'
    )
    logger.error("attach failed: %s", attach_error, extra={"ctx_detail": "secret is minio-s3cret-key"})
    try:
        raise RuntimeError("CREATE SECRET (TYPE s3, KEY_ID 'minio-access', SECRET 'minio-s3cret-key')")
    except RuntimeError:
        logger.exception("secret creation failed")
    logger.info("password=other-unknown-pw user=x")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]  # one JSON object per line
    text = stream.getvalue()
    for secret in ("pg-s3cret-pw", "minio-s3cret-key", "minio-access", "other-unknown-pw"):
        assert secret not in text, secret
    assert records[0]["level"] == "ERROR" and "***" in records[0]["msg"]
    assert records[0]["detail"] == "secret is ***"
    assert "exc" in records[1] and "KEY_ID '***'" in records[1]["exc"]
    assert records[2]["msg"] == "password=*** user=x"


def test_redactor_patterns_without_registered_secrets():
    r = Redactor()
    assert r("host=h password='a b' user=u") == "host=h password=*** user=u"
    assert r("SECRET 'abc', KEY_ID 'def'") == "SECRET '***', KEY_ID '***'"
    assert r('{"password": "x"}') == '{"password": "***"}'
    assert r("nothing to hide") == "nothing to hide"


# ----------------------------------------------------------------- commit retries


def test_retry_on_conflict_retries_then_succeeds():
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise duckdb.TransactionException("Transaction conflict: another transaction committed")
        return "ok"

    assert retry_on_conflict(fn, 3, sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and len(sleeps) == 2 and sleeps[1] > 0


def test_retry_on_conflict_gives_409_after_retries():
    sleeps = []

    def fn():
        raise duckdb.TransactionException("Transaction conflict: table was altered")

    with pytest.raises(Conflict) as info:
        retry_on_conflict(fn, 2, sleep=sleeps.append)
    assert info.value.status_code == 409 and "after 2 retries" in info.value.message
    assert len(sleeps) == 2


def test_retry_on_conflict_does_not_retry_other_errors():
    calls = []

    def fn():
        calls.append(1)
        raise duckdb.BinderException("column x not found")

    with pytest.raises(duckdb.BinderException):
        retry_on_conflict(fn, 5, sleep=lambda s: None)
    assert len(calls) == 1
    assert is_commit_conflict(duckdb.IOException("write-write conflict on table")) is True


# ----------------------------------------------------------------- offline extensions


def test_extensions_install_and_load_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("DUCKLAKE_EXTENSION_CACHE", str(tmp_path))
    files = extensions.prepared_files()
    assert files["postgres_scanner"].name == "postgres_scanner.duckdb_extension"
    con = duckdb.connect(config=extensions.connection_config())
    extensions.install_and_load(con)
    loaded = {r[0] for r in con.execute("SELECT extension_name FROM duckdb_extensions() WHERE loaded").fetchall()}
    assert {"ducklake", "httpfs", "postgres_scanner"} <= loaded
    settings = dict(con.execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('autoinstall_known_extensions', 'autoload_known_extensions')"
    ).fetchall())
    assert settings == {"autoinstall_known_extensions": "false", "autoload_known_extensions": "false"}
