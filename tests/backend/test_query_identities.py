"""The query path's own identities are read-only, for real: the PostgreSQL role made by
the chart's own SQL (rendered by helm, run by psql against a real PostgreSQL 15) and a
MinIO user with the policy the provisioner installs (against a real MinIO). The backend
answers queries with them, and they cannot write a catalog row or an object."""

from __future__ import annotations

import io
import os
import subprocess

import psycopg
import pytest
import yaml
from fastapi.testclient import TestClient
from minio import Minio
from minio.error import S3Error

from ducklake_backend.app import create_app
from ducklake_backend.config import Settings
from ducklake_infra.provision import spec_file
from ducklake_infra.provision import render
from ducklake_infra.provision.bundle import layout

from backend_testlib import AUTH, LAKE_BUCKET, RAW_BUCKET, add_minio_user, backend_env
from conftest import PG_BIN

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

DB, OWNER, READER = "qid_catalog", "qid_owner", "qid_reader"
OWNER_PW, READER_PW = "qid-Owner-Pw-5521aa", "qid-Reader-Pw-8813bb"
QUERY_KEY, QUERY_SECRET = "qid-query-user", "qid-Query-Secret-77aa10"


def _chart_sql(tmp_path) -> str:
    helm = layout.layout().tool("helm")
    if not helm.is_file():
        pytest.fail(f"helm not found at {helm}: run `ducklake-infra bundle build`", pytrace=False)
    root = spec_file.load().path.parent
    out = subprocess.run([str(helm), "template", "pg", str(root / "charts/postgresql"),
                          "--set-string", f"catalog.reader.role={READER}",
                          "--set-string", "catalog.reader.existingSecret=x"],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    cm = next(d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap")
    sql = cm["data"]["ensure-catalog.sql"]
    for who, pw in (("catalog", OWNER_PW), ("reader", READER_PW)):
        f = tmp_path / f"{who}-password"
        f.write_text(pw)
        sql = sql.replace(f"/opt/postgresql-secrets/{who}/password", str(f))
    return sql


@pytest.fixture(scope="module")
def identities(pg_server, minio_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qid")
    script = tmp / "ensure-catalog.sql"
    script.write_text(_chart_sql(tmp))
    env = dict(os.environ, PGPASSWORD=pg_server.password)
    with psycopg.connect(pg_server.conninfo(), autocommit=True) as con:
        con.execute(f"DROP DATABASE IF EXISTS {DB}")
    for _ in range(2):  # idempotent: a second run (every pod start) changes nothing
        subprocess.run([str(PG_BIN / "psql"), "--no-psqlrc", "-v", "ON_ERROR_STOP=1",
                        f"--host={pg_server.host}", f"--port={pg_server.port}",
                        f"--username={pg_server.user}", "--dbname=postgres",
                        "-v", f"catalog_db={DB}", "-v", f"catalog_owner={OWNER}",
                        "-v", f"reader_role={READER}", "-v", "reader_statement_timeout=5s",
                        "-f", str(script)], check=True, capture_output=True, text=True,
                       env=env, timeout=60)
    spec = spec_file.load()
    assert spec.lake_bucket == LAKE_BUCKET       # the rendered policy names the test's bucket
    add_minio_user(minio_server, QUERY_KEY, QUERY_SECRET,
                   {**render.minio_query_policy(spec), "name": "qid-query-ro"}, tmp)
    return pg_server, minio_server


@pytest.fixture(scope="module")
def backend(identities):
    pg, s3 = identities
    env = backend_env(pg, s3, DUCKLAKE_PG_DB=DB, DUCKLAKE_PG_USER=OWNER, DUCKLAKE_PG_PASSWORD=OWNER_PW,
                      DUCKLAKE_QUERY_PG_USER=READER, DUCKLAKE_QUERY_PG_PASSWORD=READER_PW,
                      DUCKLAKE_QUERY_S3_ACCESS_KEY=QUERY_KEY, DUCKLAKE_QUERY_S3_SECRET_KEY=QUERY_SECRET,
                      DUCKLAKE_DATA_INLINING_ROW_LIMIT="0")
    app = create_app(Settings.from_env(env), configure_logs=False)
    with TestClient(app, headers=AUTH) as c:
        from test_backend_integration import wait_ready
        wait_ready(c)
        body = b"id,name\n" + b"".join(f"{i},n{i}\n".encode() for i in range(50))
        assert c.post("/datasets/qid.csv", content=body, headers={"content-type": "text/csv"}).status_code == 201
        r = c.post("/tables/qid/ingest", json={"dataset": "qid.csv", "mode": "create"})
        assert r.status_code == 200, r.text
        yield c


def test_queries_run_as_the_read_only_identities(backend):
    r = backend.post("/query", json={"sql": "SELECT count(*), sum(id) FROM qid"})
    assert r.status_code == 200 and r.json()["rows"] == [[50, 1225]], r.text
    assert backend.get("/tables/qid/rows", params={"limit": 5}).status_code == 200
    lake = backend.app.state.lake
    reader_user = lake._reader_db().execute("SELECT path FROM duckdb_databases() WHERE database_name = 'lake'").fetchone()
    assert f"user={READER}" in str(reader_user)


def _reader_conn(pg):
    return psycopg.connect(f"host={pg.host} port={pg.port} dbname={DB} user={READER} password={READER_PW}",
                           autocommit=True)


@pytest.mark.parametrize("sql", [
    "INSERT INTO ducklake_snapshot (snapshot_id) VALUES (999999)",
    "UPDATE ducklake_snapshot SET snapshot_id = snapshot_id",
    "DELETE FROM ducklake_data_file",
    "CREATE TABLE x (a int)",
    "SET default_transaction_read_only = off; INSERT INTO ducklake_snapshot (snapshot_id) VALUES (1)",
])
def test_the_catalog_reader_cannot_write(identities, backend, sql):
    pg, _ = identities
    with _reader_conn(pg) as con:
        with pytest.raises(psycopg.Error) as ei:
            con.execute(sql)
    assert "permission denied" in str(ei.value) or "read-only" in str(ei.value), str(ei.value)


def test_the_catalog_reader_reads_with_a_statement_timeout(identities, backend):
    pg, _ = identities
    with _reader_conn(pg) as con:
        assert con.execute("SELECT count(*) FROM ducklake_snapshot").fetchone()[0] >= 1
        assert con.execute("SHOW statement_timeout").fetchone()[0] == "5s"
        with pytest.raises(psycopg.errors.QueryCanceled):
            con.execute("SELECT pg_sleep(10)")


def test_the_query_s3_user_can_only_list_and_read_the_lake(identities, backend):
    _, s3 = identities
    q = Minio(s3.endpoint, access_key=QUERY_KEY, secret_key=QUERY_SECRET, secure=False)
    names = [o.object_name for o in q.list_objects(LAKE_BUCKET, recursive=True)]
    assert any(n.endswith(".parquet") for n in names)
    q.get_object(LAKE_BUCKET, next(n for n in names if n.endswith(".parquet"))).read(4)
    for attempt in (lambda: q.put_object(LAKE_BUCKET, "x.parquet", io.BytesIO(b"x"), 1),
                    lambda: q.remove_object(LAKE_BUCKET, names[0]),
                    lambda: list(q.list_objects(RAW_BUCKET)),
                    lambda: q.put_object(RAW_BUCKET, "x.csv", io.BytesIO(b"x"), 1)):
        with pytest.raises(S3Error) as ei:
            attempt()
        assert ei.value.code == "AccessDenied", ei.value.code


def test_the_catalog_reader_cannot_read_the_maintenance_lease(identities, backend):
    """The backend (as the catalog owner, no superuser) makes its own schema in the catalog
    database on its first maintenance run; the chart's reader role, with SELECT on the
    owner's present and future tables in public, gets nothing there."""
    from ducklake_backend.catalog_state import LEASE_TABLE, RUN_TABLE, SCHEMA
    r = backend.post("/maintenance")
    assert r.status_code == 200, r.text
    assert backend.get("/maintenance").json()["last"]["ok"]
    pg, _ = identities
    with psycopg.connect(f"host={pg.host} port={pg.port} dbname={DB} user={OWNER} password={OWNER_PW}",
                         autocommit=True) as owner:
        assert owner.execute(f"SELECT count(*) FROM {RUN_TABLE}").fetchone() == (1,)
        assert owner.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                             (SCHEMA,)).fetchone() == (OWNER,)
    with _reader_conn(pg) as con:
        for table in (LEASE_TABLE, RUN_TABLE):
            with pytest.raises(psycopg.errors.InsufficientPrivilege) as ei:
                con.execute(f"SELECT * FROM {table}")
            assert "permission denied" in str(ei.value), str(ei.value)
        # not the table's privileges either (a later USAGE grant on the schema alone
        # would not open it)
        privileges = con.execute(
            "SELECT has_table_privilege(c.oid, 'SELECT'), has_table_privilege(c.oid, 'UPDATE') "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relkind = 'r'", (SCHEMA,)).fetchall()
        assert privileges == [(False, False), (False, False)], privileges
        assert con.execute("SELECT has_schema_privilege(%s, 'USAGE')", (SCHEMA,)).fetchone() == (False,)
    # the query path (the reader's attach) still answers with the schema there
    q = backend.post("/query", json={"sql": "SELECT count(*) FROM qid"})
    assert q.status_code == 200 and q.json()["rows"] == [[50]], q.text
