"""Fixtures for the backend tests: a throwaway PostgreSQL 15 cluster and a MinIO
server, both real processes on free loopback ports, and the backend image.

MinIO comes from the bundle (``$DUCKLAKE_INFRA_CACHE/bin/minio``, default
``~/.cache/ducklake-infra/bin/minio``) or ``$MINIO_BINARY``. When it is missing
the integration tests FAIL (they never skip): CI runs them after the bundle build.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

PG_BIN = Path(os.environ.get("DUCKLAKE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
from backend_testlib import (  # noqa: E402
    BACKEND_IMAGE,
    PYTHON_BASE,
    LAKE_BUCKET,
    PG_DB,
    PG_PASSWORD,
    PG_USER,
    RAW_BUCKET,
    S3_ACCESS_KEY,
    S3_SECRET_KEY,
    free_port,
)

def wait_for(predicate, timeout: float, what: str, diagnostics=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last error
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout:.0f}s (last error: {last}) {diagnostics()}")


def minio_binary() -> Path:
    explicit = os.environ.get("MINIO_BINARY")
    if explicit:
        path = Path(explicit)
    else:
        cache = Path(os.environ.get("DUCKLAKE_INFRA_CACHE") or Path.home() / ".cache" / "ducklake-infra")
        path = cache / "bin" / "minio"
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"MinIO binary not found at {path}. Build the bundle first (ducklake-infra bundle build, which "
            "go-installs minio into $DUCKLAKE_INFRA_CACHE/bin), or set MINIO_BINARY to a minio server binary.",
            pytrace=False,
        )
    return path


# --------------------------------------------------------------------------- PostgreSQL


@dataclass
class PgServer:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def conninfo(self) -> str:
        return f"host={self.host} port={self.port} user={self.user} password={self.password} dbname={self.dbname}"


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root and there is no 'postgres' user to run PostgreSQL as", pytrace=False)
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    initdb = PG_BIN / "initdb"
    pg_ctl = PG_BIN / "pg_ctl"
    if not initdb.exists():
        pytest.fail(f"PostgreSQL 15 server binaries not found in {PG_BIN} (apt-get install postgresql-15)", pytrace=False)
    # Not under pytest's tmp dir: it is private to root and postgres must run as non-root.
    base = Path(tempfile.mkdtemp(prefix="ducklake-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres")
    data, sock, log = base / "data", base, base / "postgres.log"
    pwfile = base / "pw"
    pwfile.write_text(PG_PASSWORD + "\n")
    if os.geteuid() == 0:
        shutil.chown(pwfile, user="postgres")
    port = free_port()
    subprocess.run(
        _as_pg_user([str(initdb), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth-local=trust",
                     "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"]),
        check=True, capture_output=True, timeout=120,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c lc_messages=C -c fsync=off"
    subprocess.run(
        _as_pg_user([str(pg_ctl), "-D", str(data), "-o", opts, "-l", str(log), "-w", "-t", "60", "start"]),
        check=True, capture_output=True, timeout=90,
    )
    server = PgServer("127.0.0.1", port, PG_USER, PG_PASSWORD, "postgres")
    try:
        import psycopg

        with psycopg.connect(server.conninfo(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {PG_DB}")
        server.dbname = PG_DB
        yield server
    finally:
        subprocess.run(_as_pg_user([str(pg_ctl), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


# --------------------------------------------------------------------------- MinIO


@dataclass
class MinioServer:
    endpoint: str
    access_key: str
    secret_key: str

    def client(self):
        from minio import Minio

        return Minio(self.endpoint, access_key=self.access_key, secret_key=self.secret_key, secure=False)


@contextmanager
def running_minio(data: Path, log_path: Path) -> Iterator[MinioServer]:
    """A MinIO server on ``data`` with the raw and lake buckets, stopped on exit."""
    binary = minio_binary()
    port, console = free_port(), free_port()
    env = dict(os.environ, MINIO_ROOT_USER=S3_ACCESS_KEY, MINIO_ROOT_PASSWORD=S3_SECRET_KEY,
               MINIO_BROWSER="off", MINIO_UPDATE="off", CI="true")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(binary), "server", str(data), "--address", f"127.0.0.1:{port}", "--console-address",
             f"127.0.0.1:{console}"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )
    server = MinioServer(f"127.0.0.1:{port}", S3_ACCESS_KEY, S3_SECRET_KEY)
    try:
        client = server.client()

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"minio exited with {proc.returncode}: {log_path.read_text()[-2000:]}")
            client.list_buckets()
            return True

        wait_for(up, 60, "MinIO", lambda: log_path.read_text()[-2000:])
        for bucket in (RAW_BUCKET, LAKE_BUCKET):
            if not client.bucket_exists(bucket):
                client.make_bucket(bucket)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def minio_server(tmp_path_factory) -> Iterator[MinioServer]:
    with running_minio(tmp_path_factory.mktemp("minio-data"),
                       tmp_path_factory.mktemp("minio-log") / "minio.log") as server:
        yield server


SMALL_VOLUME_MIB = 64


@dataclass
class SmallVolume:
    path: Path
    server: MinioServer

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize


@pytest.fixture(scope="module")
def small_minio(tmp_path_factory) -> Iterator[SmallVolume]:
    """MinIO on a size-limited filesystem of its own (a 64 MiB tmpfs, mounted here): a
    volume that fills up without ever filling the machine's disk. Needs root (CI is);
    without it the test FAILS, it does not skip."""
    mnt = tmp_path_factory.mktemp("minio-small")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_VOLUME_MIB}m,mode=0700",
                          "ducklake-test-small", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        raise AssertionError(f"cannot mount a {SMALL_VOLUME_MIB} MiB tmpfs for MinIO "
                             f"(the full-volume test needs root): {res.stderr.strip()}")
    try:
        with running_minio(mnt, tmp_path_factory.mktemp("minio-small-log") / "minio.log") as server:
            yield SmallVolume(mnt, server)
    finally:
        subprocess.run(["umount", "--lazy", str(mnt)], capture_output=True)


# --------------------------------------------------------------------------- the backend


# --------------------------------------------------------------------------- the image

REPO_ROOT = Path(__file__).resolve().parents[2]


def _docker() -> str:
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail("docker client not found (apt-get install docker.io)", pytrace=False)


@pytest.fixture(scope="session")
def backend_image() -> str:
    docker = _docker()
    info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.fail(f"the Docker engine is not reachable: {info.stderr.strip()[-500:]}", pytrace=False)
    base = subprocess.run([docker, "image", "inspect", PYTHON_BASE], capture_output=True, text=True, timeout=60)
    if base.returncode != 0:
        pytest.fail(f"python base image {PYTHON_BASE} is missing: build the bundle first (its Debian bookworm "
                    "python image), or set DUCKLAKE_PYTHON_BASE", pytrace=False)
    cmd = [docker, "build", "--build-arg", f"PYTHON_BASE={PYTHON_BASE}", "-t", BACKEND_IMAGE, "-f",
           str(REPO_ROOT / "Dockerfile")]
    cacert = Path("/etc/ssl/certs/ca-certificates.crt")
    if cacert.exists():
        cmd += ["--secret", f"id=cacert,src={cacert}"]
    cmd.append(str(REPO_ROOT))
    build = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, env=dict(os.environ, DOCKER_BUILDKIT="1"))
    if build.returncode != 0:
        pytest.fail(f"docker build failed (exit {build.returncode}):\n{(build.stdout + build.stderr)[-4000:]}",
                    pytrace=False)
    return BACKEND_IMAGE


@pytest.fixture(scope="session")
def backend_container(backend_image) -> Iterator[str]:
    """A container of the image kept alive with a no-op command, for testinfra."""
    docker = _docker()
    name = f"ducklake-backend-test-{os.getpid()}"
    run = subprocess.run(
        [docker, "run", "-d", "--rm", "--name", name, "--network", "none", backend_image,
         "python3", "-c", "import time; time.sleep(600)"],
        capture_output=True, text=True, timeout=120,
    )
    if run.returncode != 0:
        pytest.fail(f"docker run failed: {run.stderr.strip()}", pytrace=False)
    try:
        yield name
    finally:
        subprocess.run([docker, "rm", "-f", name], capture_output=True, timeout=60)
