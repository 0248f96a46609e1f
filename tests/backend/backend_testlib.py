"""Constants and helpers shared by the backend fixtures and tests."""

from __future__ import annotations

import os
import socket
import threading
import time

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


class ServedBackend:
    """The backend app served by uvicorn on 127.0.0.1:port in a thread (real HTTP);
    start() returns once /readyz answers 200; stop(), and start() again."""

    def __init__(self, env: dict, port: int):
        self.env, self.port, self.server, self.thread = env, port, None, None

    def start(self) -> None:
        import httpx
        import uvicorn
        from ducklake_backend.app import create_app
        from ducklake_backend.config import Settings
        app = create_app(Settings.from_env(self.env), configure_logs=False)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the backend did not become ready")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def add_minio_user(server, access_key: str, secret_key: str, policy: dict, workdir) -> None:
    """A MinIO user on ``server`` (a conftest MinioServer, root credentials) with
    ``policy`` in render.py's form (the chart's ``policies[]`` entry) attached: the
    identities `up` installs, on a real MinIO."""
    import json
    from pathlib import Path

    from minio import MinioAdmin
    from minio.credentials import StaticProvider
    admin = MinioAdmin(endpoint=server.endpoint, secure=False,
                       credentials=StaticProvider(server.access_key, server.secret_key))
    doc = {"Version": "2012-10-17", "Statement": [
        {"Effect": st["effect"], "Action": st["actions"], "Resource": st["resources"]}
        for st in policy["statements"]]}
    path = Path(workdir) / f"{policy['name']}.json"
    path.write_text(json.dumps(doc))
    admin.policy_add(policy["name"], str(path))
    admin.user_add(access_key, secret_key)
    admin.attach_policy([policy["name"]], user=access_key)
