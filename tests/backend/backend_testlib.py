"""Constants and helpers shared by the backend fixtures and tests."""

from __future__ import annotations

import os
import socket

PG_USER = "ducklake"
PG_PASSWORD = "pg-Test-Pw-7f3a9c"  # unique strings: the tests grep logs for them
PG_DB = "ducklake"
S3_ACCESS_KEY = "ducklake-test-access"
S3_SECRET_KEY = "s3-Test-Secret-91be2d"
API_TOKEN = "api-Test-Token-4c1d7e0b9a"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
RAW_BUCKET = "raw"
LAKE_BUCKET = "lake"
BACKEND_IMAGE = os.environ.get("DUCKLAKE_BACKEND_TEST_IMAGE", "ducklake-infra/backend:test")
PYTHON_BASE = os.environ.get("DUCKLAKE_PYTHON_BASE", "ducklake-infra/python:3.11-bookworm")



def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_env(pg, s3, **overrides: str) -> dict[str, str]:
    env = {
        "DUCKLAKE_PG_HOST": pg.host,
        "DUCKLAKE_PG_PORT": str(pg.port),
        "DUCKLAKE_PG_DB": pg.dbname,
        "DUCKLAKE_PG_USER": pg.user,
        "DUCKLAKE_PG_PASSWORD": pg.password,
        "DUCKLAKE_S3_ENDPOINT": s3.endpoint,
        "DUCKLAKE_S3_ACCESS_KEY": s3.access_key,
        "DUCKLAKE_S3_SECRET_KEY": s3.secret_key,
        "DUCKLAKE_API_TOKEN": API_TOKEN,
        "DUCKLAKE_S3_REGION": "us-east-1",
        "DUCKLAKE_S3_USE_SSL": "false",
        "DUCKLAKE_RAW_BUCKET": RAW_BUCKET,
        "DUCKLAKE_LAKE_BUCKET": LAKE_BUCKET,
        "DUCKLAKE_QUERY_ROW_LIMIT": "5000",
        "DUCKLAKE_QUERY_TIMEOUT_S": "20",
        "DUCKLAKE_MAX_UPLOAD_BYTES": "2000000",
        "DUCKLAKE_COMMIT_RETRIES": "5",
    }
    env.update(overrides)
    return env
