"""Unit tests of the backend's pure pieces: no services, no network."""

from __future__ import annotations

import io
import json
import logging

import duckdb
import pytest

from ducklake_backend import extensions
from ducklake_backend.config import ConfigError, Settings
from ducklake_backend.errors import ApiError, BadRequest, Conflict, NotFound, QueryTimeout
from ducklake_backend.lake import fetch_limited, is_commit_conflict, retry_on_conflict, to_jsonable
from ducklake_backend.logs import JsonFormatter, RedactingFilter, Redactor
from ducklake_backend.sqlallow import check_query
from ducklake_backend.sqlsafety import (
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
    "DUCKLAKE_API_TOKEN": "api-t0ken-0123456789",
}


# ----------------------------------------------------------------- SQL allowlist

LAKE_TABLES = ["trips", "events"]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT 1",
        "select * from trips where id > 3 order by id;",
        "WITH a AS (SELECT 1 AS x) SELECT x FROM a",
        "FROM trips",
        "(SELECT 1) UNION ALL (SELECT 2)",
        "SELECT 'DROP TABLE x; DELETE' AS s",
        "SELECT * FROM lake.main.trips AT (VERSION => 3)",
        "SELECT * FROM main.trips",
        "SELECT * FROM lake.trips",
        "SELECT snapshot_id, snapshot_time FROM lake.snapshots() ORDER BY 1",
        "SELECT t.id, e.kind FROM trips t JOIN events e USING (id) WHERE e.kind LIKE 'a%'",
        "SELECT day, count(*), sum(amount), avg(amount) FROM trips GROUP BY ALL HAVING count(*) > 1",
        "SELECT id, row_number() OVER (PARTITION BY day ORDER BY id) FROM trips QUALIFY id > 1",
        "SELECT upper(name), date_trunc('month', day::DATE), coalesce(amount, 0) FROM trips",
        "SELECT * FROM (SELECT id FROM trips) s WHERE id IN (SELECT id FROM events)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r",
        "WITH a AS (SELECT id FROM trips), b AS (SELECT id FROM a) SELECT * FROM b",
        "WITH a AS (SELECT 1 AS x) SELECT (WITH c AS (SELECT x FROM a) SELECT max(x) FROM c)",
        "SELECT * FROM range(10)",
        "SELECT list_transform([1, 2], x -> x + 1)",
    ],
)
def test_allowlist_accepts_reads_of_the_lake(sql):
    assert check_query(sql, LAKE_TABLES) == sql


# Every class of attack from the review of POST /query: each names what it refuses.
ATTACKS = [
    # writes, DDL, settings, extensions, several statements
    ("INSERT INTO trips VALUES (1)", "only one read-only SELECT"),
    ("UPDATE trips SET id = 1", "only one read-only SELECT"),
    ("DELETE FROM trips", "only one read-only SELECT"),
    ("CREATE TABLE t (a INT)", "only one read-only SELECT"),
    ("DROP TABLE trips", "only one read-only SELECT"),
    ("COPY trips TO '/tmp/x.csv'", "only one read-only SELECT"),
    ("ATTACH 'x.db' AS x", "only one read-only SELECT"),
    ("SET threads = 1", "only one read-only SELECT"),
    ("CALL ducklake_expire_snapshots('lake')", "only one read-only SELECT"),
    ("PRAGMA version", "only one read-only SELECT"),
    ("INSTALL httpfs", "only one read-only SELECT"),
    ("EXPLAIN SELECT 1", "only one read-only SELECT"),
    ("SELECT 1; DROP TABLE t", "only one read-only SELECT"),
    ("SELECT 1; SELECT 2", "exactly one statement"),
    # credential disclosure: attached databases, settings, secrets, environment
    ("SELECT path FROM duckdb_databases()", "duckdb_databases"),
    ("SELECT reverse(path) FROM duckdb_databases()", "duckdb_databases"),
    ("SELECT * FROM duckdb_secrets()", "duckdb_secrets"),
    ("SELECT * FROM which_secret('s3://lake/x', 's3')", "which_secret"),
    ("SELECT current_setting('s3_access_key_id')", "current_setting"),
    ("SELECT * FROM duckdb_settings()", "duckdb_settings"),
    ("SELECT getenv('DUCKLAKE_PG_PASSWORD')", "getenv"),
    ("SELECT to_base64(encode(current_setting('s3_secret_access_key')))", "to_base64"),
    ("SELECT * FROM duckdb_settings", "duckdb_settings"),
    ("SELECT * FROM system.main.duckdb_settings", "system.main.duckdb_settings"),
    ("SELECT * FROM pragma_database_list", "pragma_database_list"),
    ("SELECT * FROM information_schema.tables", "information_schema.tables"),
    ("SELECT * FROM pg_catalog.pg_settings", "pg_catalog.pg_settings"),
    ("SELECT * FROM __ducklake_metadata_lake.public.ducklake_data_file",
     "__ducklake_metadata_lake.public.ducklake_data_file"),
    ("SELECT * FROM __ducklake_metadata_lake.ducklake_snapshot", "__ducklake_metadata_lake"),
    # SQL on the catalog database, TCP to any host
    ("SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT * FROM pg_stat_activity')",
     "postgres_query"),
    ("SELECT * FROM postgres_scan('host=10.0.0.1 port=5432', 'public', 't')", "postgres_scan"),
    ("SELECT postgres_execute('__ducklake_metadata_lake', 'SELECT pg_terminate_backend(1)')",
     "postgres_execute"),
    # SSRF, files, replacement scans
    ("SELECT * FROM 's3://lake/x.parquet'", "s3://lake/x.parquet"),
    ("SELECT * FROM '/etc/passwd'", "/etc/passwd"),
    ("SELECT * FROM read_parquet('s3://lake/x.parquet?s3_endpoint=169.254.169.254')", "read_parquet"),
    ("SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')", "read_csv"),
    ("SELECT * FROM read_text('/etc/passwd')", "read_text"),
    ("SELECT * FROM glob('s3://lake/*')", "glob"),
    ("SELECT * FROM (SELECT * FROM read_json_auto('x'))", "read_json_auto"),
    ("SELECT * FROM query('SELECT * FROM duckdb_secrets()')", "query"),
    ("SELECT * FROM query_table('duckdb_settings')", "query_table"),
    # side effects from the read path
    ("SELECT * FROM ducklake_merge_adjacent_files('lake')", "ducklake_merge_adjacent_files"),
    ("SELECT * FROM lake.ducklake_cleanup_old_files()", "ducklake_cleanup_old_files"),
    ("SELECT nextval('seq')", "nextval"),
    ("SELECT setseed(0.5)", "setseed"),
    ("SELECT enable_logging()", "enable_logging"),
    ("SELECT * FROM duckdb_logs", "duckdb_logs"),
    ("SELECT lake.main.upper('x')", "lake.main.upper"),
    ("SHOW ALL TABLES", "SHOW_REF"),
    ("DESCRIBE trips", "SHOW_REF"),
    ("SELECT $1", "parameter"),
    # resource exhaustion through string building (the memory limit bounds the rest)
    ("SELECT repeat('x', 1000000000)", "repeat"),
    ("SELECT lpad('x', 1000000000, 'y')", "lpad"),
    # found by the allowlist's own review: CTE names out of scope, builders outside the
    # memory accounting, quadratic work the interrupt cannot stop, indirect calls
    ("WITH a AS (SELECT path FROM duckdb_databases), duckdb_databases AS (SELECT 1) SELECT * FROM a",
     "duckdb_databases"),
    ("SELECT * FROM duckdb_databases WHERE (WITH duckdb_databases AS (SELECT 1) SELECT true)",
     "duckdb_databases"),
    ("SELECT * FROM (WITH duckdb_tables AS (SELECT 1) SELECT 1) x, duckdb_tables", "duckdb_tables"),
    ("SELECT count(*) FROM pg_settings UNION ALL (WITH pg_settings AS (SELECT 1) SELECT 1 FROM pg_settings)",
     "pg_settings"),
    ("WITH duckdb_settings AS (SELECT * FROM duckdb_settings) SELECT * FROM duckdb_settings",
     "duckdb_settings"),
    ("SELECT len(range(60000000))", "range"),
    ("SELECT length(format('{:>400000000}', 'a'))", "format"),
    ("SELECT length(printf('%500000000d', 1))", "printf"),
    ("SELECT list_reduce(list_transform([1, 2], x -> 'ab'), (a, b) -> a || a)", "list_reduce"),
    ("SELECT levenshtein('a', 'b')", "levenshtein"),
    ("SELECT list_aggregate([1, 2, 3], 'bitstring_agg', 0, 5)", "list_aggregate"),
    ("SELECT * FROM range(3 ORDER BY getenv('HOME'))", "range"),
    ("SELECT * FROM memory.lake.snapshots()", "snapshots"),
]


@pytest.mark.parametrize("sql, named", ATTACKS, ids=[a[0][:60] for a in ATTACKS])
def test_allowlist_refuses_and_names_what(sql, named):
    # 400 naming it; a plain name that is no lake table is a 404 naming it (never run)
    with pytest.raises((BadRequest, NotFound)) as info:
        check_query(sql, LAKE_TABLES)
    assert named in info.value.message


def test_a_table_not_in_the_lake_is_not_found():
    with pytest.raises(NotFound):
        check_query("SELECT * FROM no_such_table", LAKE_TABLES)


@pytest.mark.parametrize("sql", ["SELEC 1", "SELECT FROM WHERE (", "", "   "])
def test_allowlist_rejects_invalid_sql(sql):
    with pytest.raises(BadRequest):
        check_query(sql, LAKE_TABLES)


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


@pytest.mark.parametrize("name", ["", ".hidden", "a/b", "../etc/passwd", "a b", "x" * 129, "a\\b"])
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
    assert "pg-s3cret-pw" not in s.pg_conninfo(passfile="/run/x")


def test_conninfo_names_the_passfile_never_the_password(tmp_path):
    from ducklake_backend.lake import write_passfile
    s = Settings.from_env(dict(BASE_ENV, DUCKLAKE_PG_PASSWORD="a b'c:d\\e",
                               DUCKLAKE_RUNTIME_DIR=str(tmp_path / "run")))
    path = write_passfile(s)
    info = s.pg_conninfo(passfile=path)
    assert "password" not in info and f"passfile={path}" in info
    import os as _os
    (tmp_path / "run").mkdir(exist_ok=True)
    assert (tmp_path / "run" / f"ducklake-pg-{_os.getuid()}").stat().st_mode & 0o777 == 0o700
    import os
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert open(path).read() == "pg.storage.svc:5432:ducklake:ducklake:a b'c\\:d\\\\e\n"


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
        'IO Error: Unable to connect to Postgres at "password=pg-s3cret-pw host=x": connection refused'
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


@pytest.mark.parametrize("cause,status,needle", [
    # a COMMIT cut by a failover (the writer cannot delete, so DuckLake's rollback error is
    # what the commit raises): nothing landed (the marker is not in the catalog) -> 503
    (duckdb.TransactionException('Failed to commit: Could not remove file "s3://lake/x.parquet": '
                                 "Forbidden"), 503, "did not commit"),
    (duckdb.TransactionException('Failed to execute query "COMMIT": server closed the connection '
                                 "unexpectedly"), 503, "did not commit"),
    (duckdb.TransactionException("Transaction conflict: table was altered"), 409, "conflicted"),
])
def test_a_commit_that_did_not_land_is_retried_then_answered(cause, status, needle):
    from ducklake_backend.lake import CommitNotApplied
    calls, sleeps = [], []

    def fn():
        calls.append(1)
        raise CommitNotApplied(cause)

    with pytest.raises(ApiError) as info:
        retry_on_conflict(fn, 2, sleep=sleeps.append)
    assert info.value.status_code == status and needle in info.value.message, info.value.message
    assert len(calls) == 3 and len(sleeps) == 2


def test_a_commit_that_did_not_land_once_then_succeeds():
    from ducklake_backend.lake import CommitNotApplied
    calls = []

    def fn():
        calls.append(1)
        if len(calls) == 1:
            raise CommitNotApplied(duckdb.TransactionException("Failed to commit: Forbidden"))
        return "ok"

    assert retry_on_conflict(fn, 3, sleep=lambda s: None) == "ok" and len(calls) == 2


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


# ----------------------------------------------------------------- resource bounds


def test_container_memory_limit_from_cgroup_v2_and_v1(tmp_path):
    from ducklake_backend.config import container_memory_limit, duckdb_memory_limit
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("1073741824\n")
    assert container_memory_limit(str(v2)) == 1024**3
    (v2 / "memory.max").write_text("max\n")
    assert container_memory_limit(str(v2)) is None
    v1 = tmp_path / "v1" / "memory"
    v1.mkdir(parents=True)
    (v1 / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1: unlimited
    assert container_memory_limit(str(tmp_path / "v1")) is None
    (v1 / "memory.limit_in_bytes").write_text("536870912\n")
    assert container_memory_limit(str(tmp_path / "v1")) == 512 * 1024**2
    s = Settings.from_env(BASE_ENV)
    assert duckdb_memory_limit(s, str(tmp_path / "v1")) == int(512 * 1024**2 * 0.35)
    s2 = Settings.from_env(dict(BASE_ENV, DUCKLAKE_MEMORY_LIMIT_BYTES=str(2 * 1024**3)))
    assert duckdb_memory_limit(s2, str(tmp_path / "none")) == int(2 * 1024**3 * 0.35)


def test_fetch_limited_caps_response_bytes():
    from ducklake_backend.errors import PayloadTooLarge
    con = duckdb.connect()
    r = fetch_limited(con, "SELECT repeat('x', 1000) AS s FROM range(100)", None, 1000, 10, max_bytes=10_000)
    assert 5 <= len(r.rows) < 10 and r.truncated is True
    with pytest.raises(PayloadTooLarge):
        fetch_limited(con, "SELECT repeat('x', 100000) AS s", None, 10, 10, max_bytes=10_000)


@pytest.mark.parametrize("message", [
    'Failed to query most recent snapshot for DuckLake: Failed to execute query "BEGIN": '
    "server closed the connection unexpectedly\n\tThis probably means the server terminated",
    "FATAL:  terminating connection due to administrator command",
    "FATAL:  the database system is shutting down",
    "connection to server at \"postgresql\" (10.96.0.5), port 5432 failed: Connection refused",
])
def test_a_catalog_restart_is_a_retryable_503_not_a_500(message):
    """Issue 13: deleting PostgreSQL's pod mid-stream gave one ingest a 500."""
    import duckdb
    from ducklake_backend.errors import Unavailable
    from ducklake_backend.lake import client_error_from_duckdb
    err = client_error_from_duckdb(duckdb.Error(message))
    assert isinstance(err, Unavailable) and err.status_code == 503


def test_other_internal_errors_stay_500():
    import duckdb
    from ducklake_backend.lake import client_error_from_duckdb
    assert client_error_from_duckdb(duckdb.Error("INTERNAL Error: something else")).status_code == 500


# ----------------------------------------------------------------- a failed COMMIT's outcome


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, s):
        self.t += s


def _outcome(finds, pendings, outcome_s=30):
    """commits.await_outcome over scripted answers (an Exception raises); the calls made."""
    from ducklake_backend import commits
    clock, calls = _Clock(), []

    def step(script, what):
        def fn(deadline):
            calls.append(what)
            answer = script.pop(0) if len(script) > 1 else script[0]
            if isinstance(answer, Exception):
                raise answer
            return answer
        return fn

    result = commits.await_outcome(step(finds, "find"), step(pendings, "pending"),
                                   lambda: calls.append("reset"), "key-1", outcome_s=outcome_s,
                                   clock=clock, sleep=clock.sleep)
    return result, calls, clock.t


def test_a_landed_commit_is_found_at_once():
    result, calls, _ = _outcome([{"snapshot_id": 7, "table": "t", "rows": 3}], [0])
    assert result["snapshot_id"] == 7 and calls == ["find"]


def test_not_landed_needs_two_answers_settle_s_apart():
    from ducklake_backend import commits
    result, calls, waited = _outcome([None], [0])
    assert result is None and calls.count("pending") >= 2 and waited >= commits.SETTLE_S


def test_a_commit_still_pending_is_waited_for_until_it_lands():
    landed = {"snapshot_id": 9, "table": "t", "rows": 1}
    result, calls, _ = _outcome([None, None, None, landed], [1, 1, 1])
    assert result == landed and "reset" not in calls


def test_pending_then_gone_starts_the_settling_again():
    from ducklake_backend import commits
    result, calls, waited = _outcome([None], [0, 1, 0, 0, 0, 0])
    assert result is None and waited >= commits.SETTLE_S + 1.0


def test_a_silent_catalog_is_a_503_naming_the_key_and_resets_the_connections():
    from ducklake_backend.errors import Unavailable
    err = duckdb.IOException("server closed the connection unexpectedly password=hunter2")
    with pytest.raises(Unavailable) as info:
        _outcome([err], [0], outcome_s=5)
    msg = info.value.message
    assert "outcome is unknown after 5s" in msg and "Idempotency-Key: key-1" in msg
    assert "hunter2" not in msg


def test_a_commit_pending_past_the_deadline_is_unknown_not_absent():
    from ducklake_backend.errors import Unavailable
    with pytest.raises(Unavailable) as info:
        _outcome([None], [2], outcome_s=3)
    assert "2 session(s) of the catalog role still in COMMIT" in info.value.message


@pytest.mark.parametrize("message,maybe", [
    ('Failed to commit: Failed to commit DuckLake transaction.\nFailed to execute query "COMMIT": '
     "server closed the connection unexpectedly", True),
    ('Failed to commit: Could not remove file "s3://lake/main/t/x.parquet": Forbidden', True),
    ("Failed to commit: terminating connection due to administrator command", True),
    ("Failed to commit: could not connect to server: Connection refused", True),
    ("Transaction conflict - attempting to insert into table with index 2 - but another "
     "transaction has altered this table", False),
    ('Failed to commit DuckLake transaction: ERROR:  duplicate key value violates unique '
     'constraint "ducklake_table_pkey"', False),
    ("Constraint Error: NOT NULL constraint failed", False),
])
def test_only_a_commit_that_may_have_landed_is_looked_up(message, maybe):
    """A COMMIT the server refused is raised as before (fast, a conflict retried); only a
    lost connection, or an error hidden by the rollback's refused delete, is looked up."""
    from ducklake_backend.commits import may_have_landed
    assert may_have_landed(duckdb.TransactionException(message)) is maybe
