"""The backend image (root Dockerfile), checked from inside with pytest-testinfra's docker backend.

The image is built in a session fixture from the repository's Dockerfile on the
offline python base ``ducklake-infra/python:3.11-bookworm``.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import testinfra
from backend_testlib import PYTHON_BASE

pytestmark = [pytest.mark.integration, pytest.mark.bundle]

EXTENSIONS = ("ducklake", "httpfs", "postgres_scanner")


@pytest.fixture(scope="module")
def image_host(backend_container):
    return testinfra.get_host(f"docker://{backend_container}")


def test_image_runs_as_non_root(image_host, backend_image):
    assert image_host.user().uid == 10001
    assert image_host.user().gid == 10001
    config = json.loads(subprocess.run(["/usr/bin/docker", "image", "inspect", backend_image],
                                       capture_output=True, text=True, check=True).stdout)[0]["Config"]
    assert config["User"] in ("10001:10001", "10001")
    assert "8000/tcp" in config["ExposedPorts"]
    assert config["Healthcheck"]["Test"][0] == "CMD" and "python3" in config["Healthcheck"]["Test"][1]
    assert config["Cmd"][0] == "uvicorn"


def test_backend_package_imports(image_host):
    cmd = image_host.run('python -c "import ducklake_backend, duckdb; print(duckdb.__version__)"')
    assert cmd.rc == 0, cmd.stderr
    assert cmd.stdout.strip() == "1.5.5"


def test_extension_files_present_and_load_offline(image_host):
    cmd = image_host.run(
        "python -c \"from ducklake_backend import extensions as e; import json; "
        "print(json.dumps({k: str(v) for k, v in e.prepared_files().items()}))\""
    )
    assert cmd.rc == 0, cmd.stderr
    files = json.loads(cmd.stdout)
    assert set(files) == set(EXTENSIONS)
    assert files["postgres_scanner"].endswith("/postgres_scanner.duckdb_extension")
    for path in files.values():
        f = image_host.file(path)
        assert f.is_file and f.size > 1_000_000, path
    # INSTALL + LOAD with autoinstall/autoload off: works with no network (the container has none).
    load = image_host.run(
        "python -c \"import duckdb; from ducklake_backend import extensions as e; "
        "c = duckdb.connect(config=e.connection_config()); e.install_and_load(c); "
        "print(sorted(r[0] for r in c.execute('select extension_name from duckdb_extensions() where loaded').fetchall()))\""
    )
    assert load.rc == 0, load.stderr
    for name in EXTENSIONS:
        assert f"'{name}'" in load.stdout


def test_no_build_tools_or_ca_secret_in_image(image_host, backend_image):
    for tool in ("gcc", "cc", "g++", "make", "clang", "ld", "uv", "pip", "curl", "wget"):
        assert not image_host.exists(tool), f"{tool} is in the image"
    assert not image_host.file("/opt/uvenv").exists
    # The build-time CA secret was only mounted, never stored: the image's
    # bundle is exactly the base image's own.
    bundle_path = "/etc/ssl/certs/ca-certificates.crt"
    base = subprocess.run(["/usr/bin/docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
                           PYTHON_BASE, bundle_path], capture_output=True, timeout=120)
    image = subprocess.run(["/usr/bin/docker", "run", "--rm", "--network", "none", "--entrypoint", "cat",
                            backend_image, bundle_path], capture_output=True, timeout=120)
    assert image.returncode == base.returncode
    assert image.stdout == base.stdout, "the CA bundle differs from the base image's: a build secret leaked"


def test_service_starts_and_serves(backend_image):
    """The default CMD serves /healthz; /readyz is 503 with a reason when the catalog is unreachable;
    logs are JSON lines without the secret values."""
    name = f"ducklake-backend-serve-{int(time.time())}"
    env = {
        "DUCKLAKE_PG_HOST": "127.0.0.1", "DUCKLAKE_PG_PORT": "1", "DUCKLAKE_PG_USER": "u",
        "DUCKLAKE_PG_PASSWORD": "img-Pg-Secret-5521", "DUCKLAKE_S3_ENDPOINT": "127.0.0.1:2",
        "DUCKLAKE_S3_ACCESS_KEY": "img-access-key", "DUCKLAKE_S3_SECRET_KEY": "img-S3-Secret-8812",
        "DUCKLAKE_PG_CONNECT_TIMEOUT_S": "2", "DUCKLAKE_API_TOKEN": "img-Api-Token-77123456",
    }
    # As in k8s/deployment.yaml: read-only root file system, writable /tmp, and a
    # memory-backed runtime dir whose mount point belongs to root.
    env["DUCKLAKE_RUNTIME_DIR"] = "/run/ducklake"
    args = ["/usr/bin/docker", "run", "-d", "--name", name, "--network", "none", "--read-only", "--tmpfs", "/tmp",
            "--tmpfs", "/run/ducklake:mode=1777"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    subprocess.run(args + [backend_image], check=True, capture_output=True, timeout=60)
    try:
        host = testinfra.get_host(f"docker://{name}")
        probe = ("python -c \"import urllib.request, urllib.error, sys\n"
                 "try:\n r = urllib.request.urlopen('http://127.0.0.1:8000{}', timeout=20); print(r.status, r.read().decode())\n"
                 "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\"")
        deadline = time.monotonic() + 60
        health = None
        while time.monotonic() < deadline:
            health = host.run(probe.format("/healthz"))
            if health.rc == 0 and health.stdout.startswith("200"):
                break
            time.sleep(1)
        assert health is not None and health.stdout.startswith("200"), (health.stdout, health.stderr)
        ready = host.run(probe.format("/readyz"))
        assert ready.stdout.startswith("503"), ready.stdout
        assert "catalog" in ready.stdout and "img-Pg-Secret-5521" not in ready.stdout
        assert "127.0.0.1" not in ready.stdout  # readiness names no host
        logs = subprocess.run(["/usr/bin/docker", "logs", name], capture_output=True, text=True, timeout=60)
        out = logs.stdout
        lines = [line for line in out.splitlines() if line.strip()]
        assert lines, logs.stderr
        for line in lines:
            json.loads(line)
        for secret in ("img-Pg-Secret-5521", "img-S3-Secret-8812", "img-access-key",
                       "img-Api-Token-77123456"):
            assert secret not in out + logs.stderr
    finally:
        subprocess.run(["/usr/bin/docker", "rm", "-f", name], capture_output=True, timeout=60)


def test_container_against_real_services(backend_image, pg_server, minio_server):
    """The image, on the host network, against the real PostgreSQL and MinIO processes (loopback only)."""
    import httpx

    from backend_testlib import AUTH, backend_env, free_port

    port = free_port()
    name = f"ducklake-backend-e2e-{port}"
    env = backend_env(pg_server, minio_server, DUCKLAKE_DATA_INLINING_ROW_LIMIT="0")
    args = ["/usr/bin/docker", "run", "-d", "--name", name, "--network", "host", "--read-only", "--tmpfs", "/tmp"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    args += [backend_image, "uvicorn", "ducklake_backend.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(port)]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = None
        while time.monotonic() < deadline:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=10)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        assert ready is not None and ready.status_code == 200, ready.text if ready else "no answer"
        body = b"k,v\n" + b"".join(f"{i},v{i}\n".encode() for i in range(20))
        assert httpx.get(f"{base}/tables", timeout=10).status_code == 401  # no token, no data
        r = httpx.post(f"{base}/datasets/e2e.csv", content=body, headers={"content-type": "text/csv", **AUTH},
                       timeout=30)
        assert r.status_code == 201, r.text
        r = httpx.post(f"{base}/tables/e2e_image/ingest", json={"dataset": "e2e.csv", "mode": "create"},
                       headers=AUTH, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["rows_ingested"] == 20
        r = httpx.post(f"{base}/query", json={"sql": "SELECT sum(k) AS s FROM e2e_image"}, headers=AUTH,
                       timeout=30)
        assert r.json()["rows"] == [[190]]
        objects = [o.object_name for o in minio_server.client().list_objects("lake", prefix="main/e2e_image/", recursive=True)]
        assert any(o.endswith(".parquet") for o in objects), objects
        logs = subprocess.run(["/usr/bin/docker", "logs", name], capture_output=True, text=True, timeout=60)
        for line in logs.stdout.splitlines():
            json.loads(line)
        assert pg_server.password not in logs.stdout + logs.stderr
        assert minio_server.secret_key not in logs.stdout + logs.stderr
    finally:
        subprocess.run(["/usr/bin/docker", "rm", "-f", name], capture_output=True, timeout=60)
