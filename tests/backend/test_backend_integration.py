"""The backend against a real PostgreSQL 15 (catalog) and a real MinIO (data),
both started as processes; the FastAPI app runs in-process (TestClient)."""

from __future__ import annotations

import csv
import io
import json
import threading

import duckdb
import psycopg
import pytest
from fastapi.testclient import TestClient

from ducklake_backend.app import create_app
from ducklake_backend.config import Settings
from ducklake_backend.logs import configure_logging

from backend_testlib import (API_TOKEN, AUTH, LAKE_BUCKET, PG_PASSWORD, RAW_BUCKET, S3_ACCESS_KEY,
                             S3_SECRET_KEY, backend_env)

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

SECRETS = (PG_PASSWORD, S3_SECRET_KEY, S3_ACCESS_KEY, API_TOKEN)


def make_rows(start: int, count: int) -> list[list]:
    return [[i, f"name-{i}", round(i * 1.25, 2), f"2024-01-{(i % 28) + 1:02d}"] for i in range(start, start + count)]


def to_csv(rows: list[list]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "amount", "day"])
    w.writerows(rows)
    return buf.getvalue().encode()


def parquet_bytes(tmp_path, rows: int) -> bytes:
    path = tmp_path / "data.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS id, 'p' || range AS label FROM range({rows})) TO '{path}' (FORMAT parquet)")
    return path.read_bytes()


def lake_parquet_objects(minio_server) -> set[str]:
    client = minio_server.client()
    return {o.object_name for o in client.list_objects(LAKE_BUCKET, recursive=True) if o.object_name.endswith(".parquet")}


def catalog(pg_server, sql: str, params=()) -> list[tuple]:
    with psycopg.connect(pg_server.conninfo()) as con:
        return con.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def logs() -> io.StringIO:
    return io.StringIO()


@pytest.fixture(scope="module")
def client(pg_server, minio_server, logs):
    settings = Settings.from_env(backend_env(pg_server, minio_server))
    app = create_app(settings, configure_logs=False)
    handler = configure_logging("INFO", stream=logs)
    try:
        with TestClient(app, headers=AUTH) as c:
            wait_ready(c)  # the catalog is initialised at start-up, in the background
            yield c
    finally:
        import logging

        logging.getLogger().removeHandler(handler)


def wait_ready(c, timeout: float = 60.0) -> None:
    import time
    deadline = time.monotonic() + timeout
    while True:
        r = c.get("/readyz")
        if r.status_code == 200 or time.monotonic() > deadline:
            assert r.status_code == 200, r.text
            return
        time.sleep(0.5)


def upload(client, name: str, body: bytes, content_type: str = "text/csv"):
    return client.post(f"/datasets/{name}", content=body, headers={"content-type": content_type})


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ready", "checks": {"catalog": "ok", "storage": "ok"}}
    spec = client.get("/openapi.json").json()
    for path in ("/datasets/{name}", "/tables/{table}/ingest", "/tables", "/tables/{table}/rows",
                 "/tables/{table}/snapshots", "/query", "/readyz", "/healthz"):
        assert path in spec["paths"]


def test_upload_ingest_read_append_time_travel(client, pg_server, minio_server):
    first = make_rows(0, 1000)
    r = upload(client, "trips-1.csv", to_csv(first))
    assert r.status_code == 201, r.text
    assert r.json()["uri"] == f"s3://{RAW_BUCKET}/trips-1.csv"
    stat = minio_server.client().stat_object(RAW_BUCKET, "trips-1.csv")
    assert stat.size == len(to_csv(first)) and stat.content_type == "text/csv"

    before_objects = lake_parquet_objects(minio_server)
    before_snapshot = catalog(pg_server, "SELECT max(snapshot_id) FROM ducklake_snapshot")[0][0]

    r = client.post("/tables/trips/ingest", json={"dataset": "trips-1.csv", "mode": "create"})
    assert r.status_code == 200, r.text
    created = r.json()
    assert created["rows_ingested"] == 1000
    snap1 = created["snapshot_id"]

    # 1000 rows is far above the inlining limit: new Parquet files in the lake bucket.
    new_objects = lake_parquet_objects(minio_server) - before_objects
    assert new_objects, "ingest wrote no Parquet object to the lake bucket"
    # The Postgres catalog holds the new snapshot and the table.
    assert snap1 > before_snapshot
    assert catalog(pg_server, "SELECT count(*) FROM ducklake_snapshot WHERE snapshot_id = %s", (snap1,)) == [(1,)]
    assert catalog(pg_server, "SELECT count(*) FROM ducklake_table WHERE table_name = 'trips' AND end_snapshot IS NULL") == [(1,)]
    files = catalog(pg_server, "SELECT path FROM ducklake_data_file WHERE begin_snapshot = %s", (snap1,))
    assert files and all(any(obj.endswith(p[0]) for obj in new_objects) for p in files)

    tables = client.get("/tables").json()["tables"]
    assert {"name": "trips", "row_count": 1000} in tables

    r = client.get("/tables/trips/rows", params={"limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["name"] for c in body["columns"]] == ["id", "name", "amount", "day"]
    assert body["rows"] == first
    assert body["truncated"] is False and body["snapshot_id"] == snap1

    # Append a second dataset: a new snapshot, old one still readable.
    second = make_rows(1000, 500)
    assert upload(client, "trips-2.csv", to_csv(second)).status_code == 201
    r = client.post("/tables/trips/ingest", json={"dataset": "trips-2.csv", "mode": "append"})
    assert r.status_code == 200, r.text
    appended = r.json()
    snap2 = appended["snapshot_id"]
    assert appended["rows_ingested"] == 500 and snap2 > snap1
    assert {"name": "trips", "row_count": 1500} in client.get("/tables").json()["tables"]

    now = client.get("/tables/trips/rows", params={"limit": 2000}).json()
    assert sorted(now["rows"]) == sorted(first + second)
    past = client.get("/tables/trips/rows", params={"limit": 2000, "snapshot": snap1}).json()
    assert past["snapshot_id"] == snap1 and past["rows"] == first

    snaps = client.get("/tables/trips/snapshots").json()["snapshots"]
    ids = [s["snapshot_id"] for s in snaps]
    assert snap1 in ids and snap2 in ids
    assert catalog(pg_server, "SELECT max(snapshot_id) FROM ducklake_snapshot")[0][0] >= snap2

    # Read-only SQL over the lake.
    r = client.post("/query", json={"sql": "SELECT count(*) AS n, sum(id) AS s FROM trips"})
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[1500, sum(range(1500))]]
    r = client.post("/query", json={"sql": "SELECT id FROM trips ORDER BY id"})
    assert r.json()["row_count"] == 1500 and r.json()["truncated"] is False

    # The same data is visible to an independent DuckDB attaching the same lake.
    from ducklake_backend import extensions

    con = duckdb.connect(config=extensions.connection_config())
    extensions.install_and_load(con)
    con.execute(f"CREATE SECRET (TYPE s3, KEY_ID '{minio_server.access_key}', SECRET '{minio_server.secret_key}', "
                f"ENDPOINT '{minio_server.endpoint}', URL_STYLE 'path', USE_SSL false, REGION 'us-east-1')")
    con.execute(f"ATTACH 'ducklake:postgres:{pg_server.conninfo()}' AS other (DATA_PATH 's3://{LAKE_BUCKET}/', READ_ONLY)")
    assert con.execute("SELECT count(*) FROM other.trips").fetchone() == (1500,)
    con.close()


def test_parquet_upload_and_ingest(client, tmp_path):
    body = parquet_bytes(tmp_path, 250)
    r = upload(client, "labels.parquet", body, "application/octet-stream")
    assert r.status_code == 201, r.text and r.json()["format"] == "parquet"
    r = client.post("/tables/labels/ingest", json={"dataset": "labels.parquet", "mode": "create"})
    assert r.status_code == 200, r.text
    assert r.json()["rows_ingested"] == 250
    rows = client.get("/tables/labels/rows", params={"limit": 3}).json()
    assert rows["rows"] == [[0, "p0"], [1, "p1"], [2, "p2"]] and rows["truncated"] is True


def test_client_errors(client, pg_server, minio_server):
    def status(resp, code):
        assert resp.status_code == code, resp.text
        body = resp.json()
        assert body["error"] and body["detail"]
        return body["detail"]

    # 404: unknown table, dataset, snapshot.
    status(client.get("/tables/nope/rows"), 404)
    status(client.get("/tables/nope/snapshots"), 404)
    status(client.post("/tables/nope/ingest", json={"dataset": "trips-1.csv", "mode": "append"}), 404)
    status(client.post("/tables/fresh/ingest", json={"dataset": "missing.csv", "mode": "create"}), 404)
    status(client.get("/tables/trips/rows", params={"snapshot": 999999}), 404)
    # 409: create over an existing table.
    status(client.post("/tables/trips/ingest", json={"dataset": "trips-1.csv", "mode": "create"}), 409)
    # 400: bad identifiers, bad bodies, invalid or non-read-only SQL.
    status(client.get("/tables/bad-name/rows"), 400)
    status(client.post("/tables/1abc/ingest", json={"dataset": "trips-1.csv"}), 400)
    status(client.post("/tables/x/ingest", json={"dataset": "trips-1.csv", "mode": "replace"}), 400)
    status(client.post("/tables/x/ingest", json={"dataset": "../etc"}), 400)
    status(upload(client, "bad name.csv", b"a\n1\n"), 400)
    status(upload(client, "empty.csv", b""), 400)
    status(upload(client, "fake.parquet", b"not parquet at all", "application/vnd.apache.parquet"), 400)
    status(client.post("/query", json={"sql": "SELEC 1"}), 400)
    status(client.post("/query", json={"sql": "DROP TABLE trips"}), 400)
    status(client.post("/query", json={"sql": "DELETE FROM trips"}), 400)
    status(client.post("/query", json={"sql": "SELECT 1; DROP TABLE trips"}), 400)
    status(client.post("/query", json={"sql": "SELECT * FROM no_such_table"}), 404)
    # User SQL sees no credentials, files or URLs: refused by the allowlist, named.
    assert "duckdb_secrets" in status(client.post("/query", json={"sql": "SELECT * FROM duckdb_secrets()"}), 400)
    assert "read_csv" in status(client.post("/query", json={"sql": "SELECT * FROM read_csv('/etc/passwd')"}), 400)
    assert "read_csv" in status(client.post("/query", json={"sql": "SELECT * FROM read_csv('http://127.0.0.1:9/x.csv')"}), 400)
    # 413 / 415.
    status(upload(client, "big.csv", b"x" * 2_000_001), 413)
    status(upload(client, "data.json", b"{}", "application/json"), 415)
    status(upload(client, "data.csv", b"a\n1\n", "application/octet-stream"), 415)
    # Nothing was changed by the refused requests.
    assert {"name": "trips", "row_count": 1500} in client.get("/tables").json()["tables"]
    assert catalog(pg_server, "SELECT count(*) FROM ducklake_table WHERE table_name IN ('fresh', 'x', 'nope')") == [(0,)]


def test_concurrent_appends(client, pg_server, minio_server):
    """Parallel appends through one process and through a second 'replica' all land."""
    body = to_csv(make_rows(5000, 100))
    assert upload(client, "small.csv", body).status_code == 201
    assert client.post("/tables/conc/ingest", json={"dataset": "small.csv", "mode": "create"}).status_code == 200

    other = create_app(Settings.from_env(backend_env(pg_server, minio_server)), configure_logs=False)
    results: list[int] = []
    lock = threading.Lock()

    def worker(c):
        r = c.post("/tables/conc/ingest", json={"dataset": "small.csv", "mode": "append"})
        with lock:
            results.append(r.status_code)

    with TestClient(other, headers=AUTH) as second:
        threads = [threading.Thread(target=worker, args=(c,)) for c in (client, second) * 3]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert results == [200] * 6, results
    assert {"name": "conc", "row_count": 700} in client.get("/tables").json()["tables"]


def test_readyz_reports_catalog_failure_without_leaking_secrets(pg_server, minio_server):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_PORT=str(dead_port), DUCKLAKE_PG_CONNECT_TIMEOUT_S="2")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert body["checks"]["storage"] == "ok"
        assert body["checks"]["catalog"] == "failed"
        assert str(dead_port) not in r.text and "127.0.0.1" not in r.text  # no names
        assert c.get("/tables").status_code == 503
        for secret in SECRETS:
            assert secret not in r.text


def test_logs_are_json_lines_without_secrets(client, logs):
    client.get("/tables/nope/rows")  # at least one request log line
    text = logs.getvalue()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "no log output"
    for line in lines:
        record = json.loads(line)
        assert {"ts", "level", "logger", "msg"} <= set(record)
    for secret in SECRETS:
        assert secret not in text
    assert any(json.loads(line)["msg"] == "ingested dataset" for line in lines)


def _tables_in(pg_server, dbname: str) -> list[str]:
    info = pg_server.conninfo().replace(f"dbname={pg_server.dbname}", f"dbname={dbname}")
    with psycopg.connect(info) as con:
        return [r[0] for r in con.execute(
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()]


def _fresh_database(pg_server, name: str) -> None:
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {name}")
        con.execute(f"CREATE DATABASE {name}")


def test_reads_on_an_empty_catalog_create_nothing(pg_server, minio_server):
    """Finding 5 of the read-only review: the audit's GETs (readiness, tables,
    snapshots, rows) and a query must not create the catalog tables of an empty
    catalog (they used the read-write attach, which does)."""
    _fresh_database(pg_server, "empty_catalog")
    before = lake_parquet_objects(minio_server)
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB="empty_catalog",
                      DUCKLAKE_INIT_CATALOG="false")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        r = c.get("/readyz")
        assert r.status_code == 503 and r.json()["checks"]["storage"] == "ok", r.text
        for path in ("/tables", "/tables/t/rows", "/tables/t/snapshots", "/tables/t/rows?snapshot=1"):
            assert c.get(path).status_code == 503, path
        assert c.post("/query", json={"sql": "SELECT 1"}).status_code == 503
    assert _tables_in(pg_server, "empty_catalog") == []
    assert lake_parquet_objects(minio_server) == before


def test_the_backend_initialises_an_empty_catalog_at_start_up(pg_server, minio_server):
    """Control for the test above: the same probe does see catalog tables, created by
    the backend's own start-up step."""
    _fresh_database(pg_server, "init_catalog")
    env = backend_env(pg_server, minio_server, DUCKLAKE_PG_DB="init_catalog")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        assert c.get("/tables").json() == {"tables": []}
    assert any(t.startswith("public.ducklake_") for t in _tables_in(pg_server, "init_catalog"))


CREDENTIAL_PROBES = [
    "SELECT path FROM duckdb_databases()",
    "SELECT reverse(path) FROM duckdb_databases()",
    "SELECT to_base64(encode(path)) FROM duckdb_databases()",
    "SELECT * FROM duckdb_secrets()",
    "SELECT * FROM duckdb_settings()",
    "SELECT current_setting('s3_access_key_id')",
    "SELECT getenv('DUCKLAKE_PG_PASSWORD')",
    "SELECT * FROM postgres_query('__ducklake_metadata_lake', 'SELECT query FROM pg_stat_activity')",
    "SELECT * FROM __ducklake_metadata_lake.public.ducklake_data_file",
    "SELECT * FROM read_text('/proc/self/environ')",
    "SELECT * FROM 's3://lake/x.parquet'",
    "SELECT * FROM ducklake_merge_adjacent_files('lake')",
]


@pytest.mark.parametrize("sql", CREDENTIAL_PROBES)
def test_query_endpoint_hands_out_no_credential(client, sql):
    """Issue 10, classes 1-4 against the real stack: refused with a 4xx that names the
    function or table, and no credential in any form (raw, reversed, base64, JSON)."""
    from ducklake_infra.provision.guard import find_leaks
    r = client.post("/query", json={"sql": sql})
    assert r.status_code in (400, 404), r.text
    assert find_leaks(r.text, SECRETS) == [] and find_leaks(r.text[::-1], SECRETS) == [], sql


def test_no_attached_database_string_holds_the_password(client):
    """The ATTACH names a password file, never the password: even DuckDB itself (not
    only /query) cannot show it."""
    lake = client.app.state.lake
    for db in (lake._reader_db(), lake._writer_db()):
        paths = " ".join(str(r[0]) for r in db.execute("SELECT path FROM duckdb_databases()").fetchall())
        assert "passfile=" in paths
        for secret in SECRETS:
            assert secret not in paths


def test_time_travel_and_snapshot_listing_stay_possible(client):
    assert upload(client, "tt.csv", to_csv(make_rows(0, 3))).status_code == 201
    assert client.post("/tables/tt/ingest", json={"dataset": "tt.csv", "mode": "create"}).status_code == 200
    snaps = client.post("/query", json={"sql": "SELECT max(snapshot_id) AS s FROM lake.snapshots()"})
    assert snaps.status_code == 200, snaps.text
    v = snaps.json()["rows"][0][0]
    r = client.post("/query", json={"sql": f"SELECT count(*) FROM tt AT (VERSION => {v})"})
    assert r.status_code == 200 and r.json()["rows"] == [[3]], r.text


def test_duckdb_memory_is_bounded_by_the_container_not_the_host(pg_server, minio_server):
    env = backend_env(pg_server, minio_server, DUCKLAKE_MEMORY_LIMIT_BYTES=str(1024**3))
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        lake = c.app.state.lake
        for db in (lake._reader_db(), lake._writer_db()):
            limit = db.execute("SELECT current_setting('memory_limit')").fetchone()[0]
            assert limit.endswith(("MiB", "MB")) and float(limit[:-3].strip()) < 400, limit
            temp = db.execute("SELECT current_setting('max_temp_directory_size')").fetchone()[0]
            assert temp.startswith(("512", "536")), temp


def test_parallel_slow_queries_get_429_and_leave_health_fast(pg_server, minio_server):
    """Issue 10, resource exhaustion: 50 slow queries in parallel. At most the configured
    number run (the rest get 429 with Retry-After at once, the running ones stop at the
    timeout with 408), and /healthz answers in under a second throughout."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    env = backend_env(pg_server, minio_server, DUCKLAKE_QUERY_CONCURRENCY="4",
                      DUCKLAKE_QUERY_TIMEOUT_S="4")
    app = create_app(Settings.from_env(env), configure_logs=False)
    slow = {"sql": "SELECT count(*) FROM range(100000000000) a"}
    with TestClient(app, headers=AUTH) as c:
        wait_ready(c)
        with ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(c.post, "/query", json=slow) for _ in range(50)]
            time.sleep(0.5)
            health = []
            for _ in range(6):
                t0 = time.monotonic()
                assert c.get("/healthz").status_code == 200
                health.append(time.monotonic() - t0)
                time.sleep(0.4)
            results = [f.result(timeout=60) for f in futures]
    codes = sorted(r.status_code for r in results)
    assert set(codes) <= {408, 429}, codes
    assert codes.count(429) >= 40 and 1 <= codes.count(408) <= 4, codes
    assert all(r.headers.get("retry-after") for r in results if r.status_code == 429)
    assert max(health) < 1.0, health


def test_ragged_csv_is_a_400_not_an_empty_table(client):
    """Issue 10: the sniffer took a later 'consistent' region of a ragged file and made
    data values column names, ingesting an empty table."""
    body = b"id,name,amount\n1,a,2.5\n2,b\n3,c,4.5,extra\n"
    assert upload(client, "ragged.csv", body).status_code == 201
    r = client.post("/tables/ragged/ingest", json={"dataset": "ragged.csv", "mode": "create"})
    assert r.status_code == 400, r.text
    assert "ragged" not in [t["name"] for t in client.get("/tables").json()["tables"]]


def test_each_ingest_reports_the_snapshot_it_committed(pg_server, minio_server, client):
    """Two replicas appending at once: each response names its own commit's snapshot
    (it was read after commit as the catalog's current one, so two could report the same)."""
    from concurrent.futures import ThreadPoolExecutor
    assert upload(client, "snap.csv", to_csv(make_rows(0, 5))).status_code == 201
    assert client.post("/tables/snaps/ingest", json={"dataset": "snap.csv", "mode": "create"}).status_code == 200
    env = backend_env(pg_server, minio_server)
    other = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(other, headers=AUTH) as c2:
        wait_ready(c2)

        def append(c):
            r = c.post("/tables/snaps/ingest", json={"dataset": "snap.csv", "mode": "append"})
            assert r.status_code == 200, r.text
            return r.json()["snapshot_id"]
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(append, [client, c2] * 4))
    assert len(set(ids)) == len(ids), ids
    for sid in ids:  # each id is a snapshot that changed this table
        r = client.get("/tables/snaps/rows", params={"snapshot": sid, "limit": 1})
        assert r.status_code == 200, r.text


def test_table_names_are_case_insensitive_with_409_on_conflict(client):
    """Issue 10: names collided case-insensitively in DuckDB but were looked up
    case-sensitively (a 404 for a table that exists, a 404 for a create that collides)."""
    assert upload(client, "ci.csv", to_csv(make_rows(0, 4))).status_code == 201
    assert client.post("/tables/CaseT/ingest", json={"dataset": "ci.csv"}).status_code == 200
    r = client.post("/tables/caset/ingest", json={"dataset": "ci.csv", "mode": "create"})
    assert r.status_code == 409 and "CaseT" in r.text, r.text
    assert client.post("/tables/CASET/ingest", json={"dataset": "ci.csv", "mode": "append"}).status_code == 200
    r = client.get("/tables/caset/rows", params={"limit": 100})
    assert r.status_code == 200 and r.json()["row_count"] == 8, r.text
    snaps = client.get("/tables/CASET/snapshots")
    assert snaps.status_code == 200 and len(snaps.json()["snapshots"]) == 2, snaps.text


def test_non_finite_dates_round_trip_exactly(client, tmp_path):
    """Issue 10: 'infinity' dates and timestamps came back as 9999-12-31 / 0001-01-01."""
    path = tmp_path / "inf.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT * FROM (VALUES
        (1, 'infinity'::DATE, '-infinity'::TIMESTAMP),
        (2, '2024-05-01'::DATE, '2024-05-01 12:00:00'::TIMESTAMP),
        (3, '9999-12-31'::DATE, '0001-01-01 00:00:00'::TIMESTAMP)) v(id, d, ts))
        TO '{path}' (FORMAT parquet)""")
    r = upload(client, "inf.parquet", path.read_bytes(), "application/vnd.apache.parquet")
    assert r.status_code == 201, r.text
    assert client.post("/tables/inf/ingest", json={"dataset": "inf.parquet"}).status_code == 200
    rows = client.get("/tables/inf/rows").json()["rows"]
    assert sorted(rows) == [[1, "infinity", "-infinity"], [2, "2024-05-01", "2024-05-01T12:00:00"],
                            [3, "9999-12-31", "0001-01-01T00:00:00"]], rows
    q = client.post("/query", json={"sql": "SELECT d, d AS d2 FROM inf WHERE id = 1"})
    assert q.json()["rows"] == [["infinity", "infinity"]], q.text


UNAUTHENTICATED = [("GET", "/tables"), ("GET", "/tables/x/rows"), ("GET", "/tables/x/snapshots"),
                   ("POST", "/query"), ("POST", "/tables/x/ingest"), ("POST", "/datasets/x.csv"),
                   ("GET", "/openapi.json"), ("GET", "/docs")]


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0000000000"}, {"Authorization": f"Basic {API_TOKEN}"},
    {"Authorization": f"Bearer {API_TOKEN}x"}, {"Authorization": "Bearer "},
    {"X-DuckLake-Token": API_TOKEN[:-1]}, {"Authorization": API_TOKEN},
], ids=["none", "wrong", "basic", "longer", "empty", "prefix", "no-scheme"])
def test_every_endpoint_but_health_needs_the_token(client, headers):
    """Issue 10: the query endpoint answered anyone in the cluster."""
    anon = TestClient(client.app)  # no `with`: the shared app's lifespan stays as it is
    for method, path in UNAUTHENTICATED:
        r = anon.request(method, path, headers=headers, json={"sql": "SELECT 1"})
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.headers.get("www-authenticate") == "Bearer"
    assert anon.get("/healthz", headers=headers).status_code == 200
    assert anon.get("/readyz", headers=headers).status_code == 200


def test_the_token_works_in_either_header(client):
    anon = TestClient(client.app)
    assert anon.get("/tables", headers={"X-DuckLake-Token": API_TOKEN}).status_code == 200
    assert anon.get("/tables", headers={"authorization": f"bearer {API_TOKEN}"}).status_code == 200
