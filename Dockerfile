# The DuckLake backend image (backend/ in this repository).
#
#   DOCKER_BUILDKIT=1 docker build \
#     --secret id=cacert,src=/etc/ssl/certs/ca-certificates.crt \
#     [--build-arg PYTHON_BASE=ducklake-infra/python:3.11-bookworm] \
#     -t ducklake-infra/backend:dev .
#
# PYTHON_BASE is any image with python3 (3.11) and the venv module: the
# default python:3.11-slim, or the offline bundle's Debian bookworm base. The
# CA bundle secret is mounted only for the steps that reach PyPI; it is never
# stored in a layer. Without the secret the base image's own bundle is used.

ARG PYTHON_BASE=python:3.11-slim

FROM ${PYTHON_BASE} AS builder
ARG UV_VERSION=0.13.9
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# uv itself, from PyPI, in a throwaway venv (Debian's python3 has no pip).
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    python3 -m venv /opt/uvenv \
 && /opt/uvenv/bin/pip install "uv==${UV_VERSION}"

WORKDIR /app
# Dependencies first (cached layer), then the project itself, from the lock file.
COPY backend/pyproject.toml backend/uv.lock ./
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uvenv/bin/uv sync --frozen --no-dev --no-install-project --python python3
COPY backend/README.md ./
COPY backend/src ./src
RUN --mount=type=secret,id=cacert,target=/etc/ssl/certs/ca-certificates.crt \
    /opt/uvenv/bin/uv sync --frozen --no-dev --no-editable --python python3 \
 && rm -rf /app/src

# Stage the offline extensions (postgres as postgres_scanner) and check that
# they install and load with no network at all.
ENV DUCKLAKE_EXTENSION_CACHE=/app/ext
RUN /app/.venv/bin/python -c "import duckdb; from ducklake_backend import extensions as e; c = duckdb.connect(config=e.connection_config()); e.install_and_load(c); print(c.execute(\"select extension_name from duckdb_extensions() where loaded order by 1\").fetchall())"


FROM ${PYTHON_BASE}
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/app \
    DUCKLAKE_EXTENSION_CACHE=/app/ext
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder --chown=0:0 /app/.venv /app/.venv
COPY --from=builder --chown=10001:10001 /app/ext /app/ext
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python3", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]
CMD ["uvicorn", "ducklake_backend.app:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
