"""End to end through the backend's Service: upload, ingest above the DuckLake
inlining limit, read back; Parquet files in the lake bucket, snapshots in the
Postgres catalog, time travel, and DuckDB here reading the same lake."""

from __future__ import annotations

import json
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field

import pytest

from ducklake_infra.suites.live import PortForward, backend_token, service_get
from ducklake_infra.suites.catalog import CheckError, evidence

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

ROWS = 1000            # far above DuckLake's default inlining limit (10 rows)


def dataset(start: int, n: int) -> tuple[str, list[list]]:
    rows = [[i, f"name-{i}", i * 0.5] for i in range(start, start + n)]
    return "id,name,value\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows), rows


@dataclass
class Run:
    table: str
    rows1: list = field(default_factory=list)
    rows2: list = field(default_factory=list)
    snap1: int | None = None
    snap2: int | None = None
    read_back: list | None = None
    lake_before: set = field(default_factory=set)
    lake_after: set = field(default_factory=set)
    catalog_before: int | None = None
    catalog_snapshots: set = field(default_factory=set)
    steps: list = field(default_factory=list)
    error: str = ""
    token: str = ""


def _secret(objs, s, ns):
    data = objs.secret_data(s.name, ns)
    if not data:
        raise CheckError(f"Secret {ns}/{s.name} is not readable")
    return [data.get(k) for k in s.keys]


def _lake_objects(mc, bucket):
    return {o.object_name for o in mc.list_objects(bucket, recursive=True)}


def _snapshot_table(conn):
    row = conn.execute("SELECT table_schema FROM information_schema.tables "
                       "WHERE table_name = 'ducklake_snapshot'").fetchone()
    if not row:
        raise CheckError("no ducklake_snapshot table in the catalog database")
    return f'"{row[0]}".ducklake_snapshot'


@pytest.fixture(scope="module")
def lake_run(objs, spec, runner, cluster, kubectl):
    """Runs the data-plane scenario once; failures are kept in ``run.error`` so
    DP-ING-001 FAILs and the others report ERROR (could not evaluate)."""
    import httpx
    import psycopg
    from minio import Minio
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    run = Run(table=f"conformance_{uuid.uuid4().hex[:8]}")
    akey, skey = _secret(objs, b.s3_secret, b.namespace)
    pg_user, pg_pw = _secret(objs, b.postgres_secret, b.namespace)
    s3svc = next(s for s in m.services if m.api_port in s.ports)
    with ExitStack() as es:
        s3pf = es.enter_context(PortForward(runner, cluster, m.namespace, f"svc/{s3svc.name}", m.api_port))
        pgpf = es.enter_context(PortForward(runner, cluster, pg.namespace,
                                            f"svc/{pg.services[0].name}", pg.port))
        bepf = es.enter_context(PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}",
                                            b.service.ports[0]))
        mc = Minio(f"127.0.0.1:{s3pf.local_port}", access_key=akey, secret_key=skey, secure=False,
                   region=m.region)
        conn = es.enter_context(psycopg.connect(host="127.0.0.1", port=pgpf.local_port,
                                                dbname=pg.catalog.database, user=pg_user,
                                                password=pg_pw, connect_timeout=10, autocommit=True))
        run.token = backend_token(objs, spec)
        http = es.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{bepf.local_port}", timeout=120,
                                             headers={"Authorization": f"Bearer {run.token}"}))
        run.lake_before = _lake_objects(mc, spec.lake_bucket)
        snap_table = _snapshot_table(conn)
        run.catalog_before = conn.execute(f"SELECT coalesce(max(snapshot_id), -1) FROM {snap_table}").fetchone()[0]
        try:
            csv1, run.rows1 = dataset(0, ROWS)
            csv2, run.rows2 = dataset(ROWS, ROWS)
            for name, body in ((f"{run.table}-1.csv", csv1), (f"{run.table}-2.csv", csv2)):
                r = http.post(f"/datasets/{name}", content=body, headers={"content-type": "text/csv"})
                assert r.status_code == 201, f"POST /datasets/{name}: {r.status_code} {r.text}"
                run.steps.append(f"uploaded dataset {name} ({ROWS} rows)")
            r = http.post(f"/tables/{run.table}/ingest", json={"dataset": f"{run.table}-1.csv", "mode": "create"})
            assert r.status_code == 200, f"ingest create: {r.status_code} {r.text}"
            run.snap1 = r.json()["snapshot_id"]
            assert r.json()["rows_ingested"] == ROWS, r.json()
            run.steps.append(f"ingested {ROWS} rows into {run.table} (snapshot {run.snap1})")
            ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0],
                                   f"/tables/{run.table}/rows?limit={ROWS}", token=run.token)
            assert ok, f"GET rows through the service proxy: {body[-500:]}"
            run.read_back = json.loads(body)["rows"]
            r = http.post(f"/tables/{run.table}/ingest", json={"dataset": f"{run.table}-2.csv", "mode": "append"})
            assert r.status_code == 200, f"ingest append: {r.status_code} {r.text}"
            run.snap2 = r.json()["snapshot_id"]
            run.steps.append(f"appended {ROWS} rows (snapshot {run.snap2})")
        except Exception as exc:  # kept for DP-ING-001's verdict
            run.error = f"{type(exc).__name__}: {exc}"
        run.lake_after = _lake_objects(mc, spec.lake_bucket)
        run.catalog_snapshots = {r[0] for r in conn.execute(
            f"SELECT snapshot_id FROM {snap_table} WHERE snapshot_id > %s", (run.catalog_before,))}
        run.pg_port, run.s3_port = pgpf.local_port, s3pf.local_port
        run.creds = (pg_user, pg_pw, akey, skey)
        # one maintenance run after the writes (BE-MAINT-001 reads its outcome; the reads
        # below check that compaction kept every row and time travel). With replicas, a
        # scheduled run on another one holds the lease (409 lease_held) for a while: wait it out
        deadline = time.monotonic() + 90
        while True:
            r = http.post("/maintenance")
            run.steps.append(f"POST /maintenance: {r.status_code} {r.text[:300]}")
            if r.status_code != 409 or "lease_held" not in r.text or time.monotonic() > deadline:
                break
            time.sleep(2)
        yield run
        # read-only DuckDB (DP-DUCK-001) runs while the port-forwards are still open


def _need(run):
    if run.error:
        raise CheckError(f"the ingest scenario did not complete: {run.error}")


def _sorted(rows):
    return sorted((list(r) for r in rows), key=lambda r: r[0])


@pytest.mark.control("DP-ING-001")
def test_ingest_reads_back_identical_rows(lake_run):
    evidence(*lake_run.steps)
    assert not lake_run.error, lake_run.error
    assert lake_run.read_back is not None
    assert len(lake_run.read_back) == ROWS, f"read back {len(lake_run.read_back)} rows, wrote {ROWS}"
    assert _sorted(lake_run.read_back) == _sorted(lake_run.rows1), "rows read back differ from the dataset"
    evidence(f"read back {ROWS} identical rows through the Service")


@pytest.mark.control("DP-S3-001")
def test_parquet_files_in_lake_bucket(lake_run, spec):
    _need(lake_run)
    new = sorted(lake_run.lake_after - lake_run.lake_before)
    parquet = [o for o in new if o.endswith(".parquet")]
    assert parquet, f"no new Parquet object under s3://{spec.lake_bucket}/ (new objects: {new[:10]})"
    evidence(f"{len(parquet)} new Parquet object(s) under s3://{spec.lake_bucket}/, e.g. {parquet[0]}")


@pytest.mark.control("DP-CAT-001")
def test_snapshots_in_postgres_catalog(lake_run, spec):
    _need(lake_run)
    want = {lake_run.snap1, lake_run.snap2}
    assert want <= lake_run.catalog_snapshots, \
        f"snapshots {sorted(want)} not in the catalog's ducklake_snapshot (new: {sorted(lake_run.catalog_snapshots)})"
    evidence(f"catalog {spec.postgresql.catalog.database}: new snapshots {sorted(lake_run.catalog_snapshots)}")


@pytest.mark.control("DP-TT-001")
def test_time_travel_returns_previous_snapshot(lake_run, spec, kubectl):
    _need(lake_run)
    b = spec.backend
    ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0],
                           f"/tables/{lake_run.table}/rows?limit={ROWS}&snapshot={lake_run.snap1}",
                           token=lake_run.token)
    assert ok, f"GET rows?snapshot={lake_run.snap1}: {body[-500:]}"
    rows = json.loads(body)["rows"]
    assert _sorted(rows) == _sorted(lake_run.rows1), \
        f"snapshot {lake_run.snap1} returned {len(rows)} rows, not the first dataset"
    ok, body = service_get(kubectl, b.namespace, b.service.name, b.service.ports[0], "/tables",
                           token=lake_run.token)
    assert ok, body[-500:]
    counts = {t["name"]: t["row_count"] for t in json.loads(body)["tables"]}
    assert counts.get(lake_run.table) == 2 * ROWS, f"current row count {counts.get(lake_run.table)}"
    evidence(f"snapshot {lake_run.snap1}: {ROWS} rows (first dataset); current: {2 * ROWS} rows")


@pytest.mark.control("DP-DUCK-001")
def test_duckdb_reads_the_same_lake(lake_run, spec, tmp_path):
    _need(lake_run)
    from ducklake_infra.suites import duck
    pg_user, pg_pw, akey, skey = lake_run.creds
    con = duck.connect(tmp_path)
    try:
        duck.attach_read_only(con, pg_host="127.0.0.1", pg_port=lake_run.pg_port,
                              database=spec.postgresql.catalog.database, user=pg_user, password=pg_pw,
                              s3_endpoint=f"127.0.0.1:{lake_run.s3_port}", access_key=akey,
                              secret_key=skey, region=spec.minio.region, lake_bucket=spec.lake_bucket)
        t = f'lake.main."{lake_run.table}"'
        count = con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        assert count == 2 * ROWS, f"DuckDB sees {count} rows"
        rows = con.execute(f"SELECT id, name, value FROM {t} AT (VERSION => {int(lake_run.snap1)}) ORDER BY id").fetchall()
        assert _sorted(rows) == _sorted(lake_run.rows1), "DuckDB reads different rows at the first snapshot"
        evidence(f"DuckDB {__import__('duckdb').__version__} attached the lake READ_ONLY: {count} rows; "
                 f"snapshot {lake_run.snap1} identical")
    finally:
        con.close()
