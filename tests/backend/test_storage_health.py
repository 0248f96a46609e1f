"""GET /storage/health against a real MinIO erasure set (one server, 4 drives, EC:2, the
distributed profile's parity) and a server that is not there: MinIO's own statuses and
quorum headers come back, a dead server is named as unreachable, the endpoint needs the
token, and DUCKLAKE_MINIO_SERVERS takes host:port names only."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from unittest import mock

import pytest
from fastapi.testclient import TestClient

from backend_testlib import (API_TOKEN, AUTH, PG_PASSWORD, S3_ACCESS_KEY, S3_SECRET_KEY,
                             backend_env, free_port)
from conftest import running_minio
from ducklake_backend.app import create_app
from ducklake_backend.config import ConfigError, Settings

pytestmark = [pytest.mark.integration, pytest.mark.bundle]


@pytest.fixture(scope="module")
def erasure_minio(tmp_path_factory):
    base = tmp_path_factory.mktemp("minio-ec")
    for i in range(1, 5):
        (base / f"d{i}").mkdir()
    with mock.patch.dict(os.environ, {"MINIO_STORAGE_CLASS_STANDARD": "EC:2"}), \
            running_minio(Path(f"{base}/d{{1...4}}"), base / "minio.log") as server:
        yield server


@pytest.fixture(scope="module")
def client(pg_server, erasure_minio):
    dead = f"127.0.0.1:{free_port()}"          # nothing listens there
    env = backend_env(pg_server, erasure_minio,
                      DUCKLAKE_MINIO_SERVERS=f"{erasure_minio.endpoint}, {dead}")
    with TestClient(create_app(Settings.from_env(env), configure_logs=False)) as c:
        yield c, erasure_minio.endpoint, dead


def test_the_erasure_set_s_quorums_and_each_server_come_back(client):
    c, live, dead = client
    r = c.get("/storage/health", headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    # EC:2 on 4 drives: 2 data drives, write quorum 3 (data == parity: one more)
    assert body["cluster"]["write"] == {"status": 200, "write_quorum": 3}
    assert body["cluster"]["read"]["status"] == 200
    assert body["cluster"]["read"]["read_quorum"] == 2
    first, gone = body["servers"]
    assert first["host"] == live and first["live"]["status"] == 200
    # the only server: taking it down costs every drive, so MinIO says 412
    assert first["maintenance"]["status"] == 412
    assert first["access"] == "ok"            # it serves the backend's identity
    assert gone["host"] == dead
    assert gone["live"] == {"status": None, "error": "ConnectionRefusedError"}
    assert gone["maintenance"] == {"status": None, "error": "ConnectionRefusedError"}
    assert gone["access"] not in ("ok", "") and "Error" in gone["access"], gone


def test_it_needs_the_token_and_never_shows_a_credential(client):
    c, _, _ = client
    assert c.get("/storage/health").status_code == 401
    text = c.get("/storage/health", headers=AUTH).text
    for secret in (S3_ACCESS_KEY, S3_SECRET_KEY, API_TOKEN, PG_PASSWORD):
        for form in (secret, base64.b64encode(secret.encode()).decode(), json.dumps(secret)[1:-1]):
            assert form not in text


def test_without_servers_only_the_service_is_asked(pg_server, erasure_minio):
    env = backend_env(pg_server, erasure_minio)
    with TestClient(create_app(Settings.from_env(env), configure_logs=False)) as c:
        body = c.get("/storage/health", headers=AUTH).json()
    assert body["servers"] == [] and body["cluster"]["write"]["status"] == 200


@pytest.mark.parametrize("value", ["http://minio-0:9000", "minio-0", "minio-0:0",
                                   "minio-0:65536", "minio 0:9000", "minio-0:9000/x",
                                   "-minio:9000", "minio-0:90a0", "a:1,:9000"])
def test_bad_server_lists_are_refused_in_one_line(value):
    env = {"DUCKLAKE_PG_HOST": "h", "DUCKLAKE_PG_USER": "u", "DUCKLAKE_PG_PASSWORD": "p",
           "DUCKLAKE_S3_ENDPOINT": "m:9000", "DUCKLAKE_S3_ACCESS_KEY": "a",
           "DUCKLAKE_S3_SECRET_KEY": "s", "DUCKLAKE_API_TOKEN": "t" * 32,
           "DUCKLAKE_MINIO_SERVERS": value}
    with pytest.raises(ConfigError, match="DUCKLAKE_MINIO_SERVERS must be host:port"):
        Settings.from_env(env)


def test_a_good_server_list_is_kept_in_order():
    env = {"DUCKLAKE_PG_HOST": "h", "DUCKLAKE_PG_USER": "u", "DUCKLAKE_PG_PASSWORD": "p",
           "DUCKLAKE_S3_ENDPOINT": "m:9000", "DUCKLAKE_S3_ACCESS_KEY": "a",
           "DUCKLAKE_S3_SECRET_KEY": "s", "DUCKLAKE_API_TOKEN": "t" * 32,
           "DUCKLAKE_MINIO_SERVERS": "minio-1.minio-svc.storage.svc:9000,10.0.0.7:9000,"}
    assert Settings.from_env(env).minio_servers == ("minio-1.minio-svc.storage.svc:9000",
                                                    "10.0.0.7:9000")
