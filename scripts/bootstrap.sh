#!/usr/bin/env bash
# Prepare a fresh Debian machine: Python env (uv), Debian packages the tests use,
# and the registry-free bundle (Docker engine, kind, helm, images). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# uv: pinned; it creates .venv from uv.lock (PyPI only).
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | awk '{print $2}')" != "$UV_VERSION" ]; then
  echo "==> installing uv $UV_VERSION from PyPI"
  python3 -m pip install -q "uv==$UV_VERSION"
fi
echo "==> python environment (uv sync --frozen)"
uv sync --frozen --quiet

# Debian packages used by the tests themselves (the local PostgreSQL for the
# backend's integration test); the bundle build installs its own (docker.io, ...).
need=()
for p in postgresql docker-registry; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "==> apt-get install ${need[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi

# --with postgresql-ha: the distributed profile's PostgreSQL + Patroni image (about 1 min
# cold, then cached); the chart tests run Patroni and on-role.sh in it.
echo "==> ducklake-infra bundle build --with postgresql-ha"
.venv/bin/ducklake-infra bundle build --with postgresql-ha

# The SBOMs the audit matches running images against (SUPPLY-SBOM-001); about 6 s.
echo "==> ducklake-infra bundle sbom"
.venv/bin/ducklake-infra bundle sbom | tail -1
