"""Where the bundle lives, and the names of everything it produces.

The cache directory defaults to ``~/.cache/ducklake-infra`` and is overridden by
``--cache-dir`` or the ``DUCKLAKE_INFRA_CACHE`` environment variable.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.runner import Runner

CACHE_ENV = "DUCKLAKE_INFRA_CACHE"


def cache_dir(override: str | Path | None = None, env: dict | None = None) -> Path:
    env = os.environ if env is None else env
    if override:
        return Path(override).expanduser().resolve()
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV]).expanduser().resolve()
    return Path("~/.cache/ducklake-infra").expanduser()


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def bin(self) -> Path:
        """Host tools: kind, helm, kubectl, crictl, minio, mc (put first on PATH)."""
        return self.root / "bin"

    @property
    def node_bin(self) -> Path:
        """Binaries that go into images (kube-*, etcd, coredns, ...)."""
        return self.root / "build" / "bin"

    @property
    def gowork(self) -> Path:
        return self.root / "build" / "gomod"

    @property
    def rootfs(self) -> Path:
        return self.root / "build" / "rootfs"

    @property
    def charts(self) -> Path:
        return self.root / "charts"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def sbom(self) -> Path:
        """One CycloneDX SBOM per artifact (``bundle sbom``)."""
        return self.root / "sbom"

    @property
    def manifest(self) -> Path:
        return self.root / "bundle.json"

    @property
    def hash_store(self) -> Path:
        """Digests of the bundle's files, remembered by stat (integrity.use_hash_store)."""
        return self.root / "build" / "sha256-cache.json"

    def chart(self, name: str) -> Path:
        """Path of a chart directory the bundle provides (``minio``)."""
        return self.charts / name

    def chart_record(self, name: str) -> Path:
        """What the chart's copy holds: each file's size and sha256 (beside it, since
        helm packages every file inside a chart directory)."""
        return self.charts / f".{name}.files.json"

    def tool(self, name: str) -> Path:
        return self.bin / name

    def path_env(self, base_path: str | None = None) -> str:
        base = base_path if base_path is not None else os.environ.get("PATH", "")
        return f"{self.bin}{os.pathsep}{base}"


def layout(override: str | Path | None = None) -> Layout:
    return Layout(cache_dir(override))


def bundle_runner(lay: Layout, log_name: str | None = None, *, readonly: bool = False,
                  dry_run: bool = False) -> Runner:
    """The Runner every entry point uses: the bundle's ``bin/`` leads PATH, Go never
    fetches another toolchain, and the log goes to ``logs/<log_name>-<time>.log``
    (no log without a name)."""
    log = lay.logs / f"{log_name}-{time.strftime('%Y%m%d-%H%M%S')}.log" if log_name else None
    runner = Runner(log_path=log, readonly=readonly, dry_run=dry_run)
    runner.base_env["PATH"] = lay.path_env(runner.base_env.get("PATH", ""))
    runner.base_env.setdefault("GOTOOLCHAIN", "local")
    return runner


# ---- image references the bundle builds (host Docker) -----------------------
IMAGE_PREFIX = "ducklake-infra"
NODE_IMAGE = f"{IMAGE_PREFIX}/kind-node:{pins.K8S_VERSION}"
DEBIAN_BASE_IMAGE = f"{IMAGE_PREFIX}/debian-base:{pins.DEBIAN_SUITE}"
PYTHON_BASE_IMAGE = f"{IMAGE_PREFIX}/python:{pins.PYTHON_VERSION}-{pins.DEBIAN_SUITE}"
MINIO_IMAGE = f"{IMAGE_PREFIX}/minio:{pins.MINIO_RELEASE_TAG}"
MC_IMAGE = f"{IMAGE_PREFIX}/mc:{pins.MC_RELEASE_TAG}"
POSTGRES_IMAGE = f"{IMAGE_PREFIX}/postgresql:{pins.POSTGRES_MAJOR}-{pins.DEBIAN_SUITE}"
# The same PostgreSQL with Patroni (distributed profile): built only on request
# (`bundle build --with postgresql-ha`), never baked into the node image.
POSTGRES_HA_IMAGE = (f"{IMAGE_PREFIX}/postgresql-ha:{pins.POSTGRES_MAJOR}-patroni"
                     f"{pins.PATRONI.version}-{pins.DEBIAN_SUITE}")

# Images that live only inside the node image's containerd.
NODE_NET_BASE_IMAGE = f"{IMAGE_PREFIX}/debian-net:{pins.DEBIAN_SUITE}"
CNI_IMAGE = f"{IMAGE_PREFIX}/node-cni:{pins.K8S_VERSION}"
KUBE_ROUTER_IMAGE = f"{IMAGE_PREFIX}/kube-router:{pins.KUBE_ROUTER_VERSION}"
LOCAL_PATH_PROVISIONER_IMAGE = f"{IMAGE_PREFIX}/local-path-provisioner:{pins.LOCAL_PATH_PROVISIONER_VERSION}"
LOCAL_PATH_HELPER_IMAGE = f"{IMAGE_PREFIX}/local-path-helper:{pins.DEBIAN_SUITE}"


def k8s_image(component: str) -> str:
    return f"{pins.REGISTRY_K8S}/{component}:{pins.K8S_VERSION}"


ETCD_IMAGE = f"{pins.REGISTRY_K8S}/etcd:{pins.ETCD_IMAGE_TAG}"
COREDNS_IMAGE = f"{pins.REGISTRY_K8S}/coredns/coredns:{pins.COREDNS_VERSION}"
PAUSE_IMAGE = f"{pins.REGISTRY_K8S}/pause:{pins.PAUSE_VERSION}"

STACK_IMAGES = {"minio": MINIO_IMAGE, "mc": MC_IMAGE, "postgresql": POSTGRES_IMAGE,
                "postgresql-ha": POSTGRES_HA_IMAGE, "python-base": PYTHON_BASE_IMAGE}
