"""Every version the bundle builds or installs, each with the reason for the pin.

Nothing here is downloaded from outside the package registries: Go modules come
from the Go module proxy, Debian packages from Debian's mirror, Python from PyPI
(a wheel by its pinned sha256).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Debian suite for every rootfs we build (node image, base images): the suite of
# these machines, whose containerd/runc/postgresql packages we rely on.
DEBIAN_SUITE = "bookworm"
# Plain http: works without the TLS-intercepting CA; packages are signed anyway.
DEBIAN_MIRROR = "http://deb.debian.org/debian"

# kind v0.30.0: the release whose node-image layout (images/base/files,
# /kind/manifests) this builder reproduces; newest kind known to handle 1.34.
KIND_VERSION = "v0.30.0"
# Kubernetes 1.34: the newest minor whose kubelet runs on cgroup v1 without extra
# config (1.35 sets failCgroupV1). v1.34.12: newest 1.34 patch whose staging
# modules (k8s.io/* v0.34.12) are all served by the Go module proxy here.
K8S_VERSION = "v1.34.12"
# kubeadm v1.34 constants: DefaultEtcdVersion 3.6.5-0, CoreDNSVersion v1.12.1,
# PauseVersion 3.10.1 (cmd/kubeadm/app/constants/constants.go).
ETCD_VERSION = "v3.6.5"
ETCD_IMAGE_TAG = "3.6.5-0"
COREDNS_VERSION = "v1.12.1"
PAUSE_VERSION = "3.10.1"
# crictl follows the Kubernetes minor (cri-tools v1.34.0 for 1.34).
CRICTL_VERSION = "v1.34.0"
# Helm 4 is the current major (4.3.2 newest served); the MinIO chart (apiVersion v1)
# and our own v2 chart install with it.
HELM_VERSION = "v4.3.2"
# kube-router, as a NetworkPolicy enforcer only (--run-firewall; no router, no service
# proxy): our ducklake-cni does not enforce policies, and kube-network-policies needs the
# nftables queue statement this kernel lacks (CONFIG_NFT_QUEUE unset). v2.1.0 is the only
# version the Go proxy serves here. Risk, recorded: advisories are reported for v2.1.0;
# GHSA-phqm-jgc3-qf8g (ExternalIPs/LoadBalancer IPs not validated) is in the proxy module,
# which we do not run. Enforcement is verified by NET-ENF-001 on every kind run.
KUBE_ROUTER_VERSION = "v2.1.0"
# local-path-provisioner v0.0.30: the release kind v0.30.0's storage manifest ships.
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"
# MinIO community edition is source-only since Oct 2025. The proxy does not serve
# the RELEASE.2025-10-15 pseudo-version; v0.0.0-20260212201848 is the newest
# commit it serves (the archived tree, which includes the 2025-10-15 CVE fix).
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_RELEASE_TAG = "RELEASE.2026-02-12T20-18-48Z"
# mc: newest commit the proxy serves (@latest).
MC_VERSION = "v0.0.0-20250313080218-cf909e1063a9"
MC_RELEASE_TAG = "RELEASE.2025-03-13T08-02-18Z"
# The official MinIO community chart, frozen at 5.4.0, shipped inside the minio module.
MINIO_CHART_VERSION = "5.4.0"

# Python for the backend image: Debian bookworm's python3.11 (offline base);
# users with a registry get python:3.11-slim (same minor).
PYTHON_VERSION = "3.11"
# PostgreSQL 15: Debian bookworm's server, the one the DuckLake catalog was verified on.
POSTGRES_MAJOR = "15"

REGISTRY_K8S = "registry.k8s.io"


@dataclass(frozen=True)
class Wheel:
    """A pure-Python wheel from PyPI, fetched by pip with ``--require-hashes`` and checked
    again against ``sha256`` (``bundle/pywheel.py``). Installed ``--no-deps``: what it
    imports comes from Debian packages, listed beside the pin."""

    name: str
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-py3-none-any.whl"

    def requirement(self) -> str:
        return f"{self.name}=={self.version} --hash=sha256:{self.sha256}\n"


# Patroni, for PostgreSQL in the distributed profile (docs/design/distributed-profile.md
# section 3.1): 4.1.5 is the newest release on PyPI; Debian bookworm's own patroni is
# 3.0.2 (2023, role label "master"), a fallback only. Its Kubernetes DCS speaks to the API
# server through urllib3 (the "kubernetes" extra is empty). Installed --no-deps:
# METADATA also requires py-consul with no extra marker, but dynamic_loader imports only
# the configured DCS, so py-consul is never imported (`pip check` in the image flags it:
# expected); ydiff is imported only by patronictl (patroni/ctl.py), not by the server.
PATRONI = Wheel("patroni", "4.1.5",
                "7aad8c1539e6c51c269a8005169dd54ddc7668437b7900fa6099d7894e224c84")
# What Patroni imports at run time, from Debian bookworm instead of PyPI: python3 3.11,
# urllib3 1.26, PyYAML, click, prettytable, dateutil, psutil, and psycopg2 2.9.5
# (Patroni takes psycopg2 >= 2.5.4).
PATRONI_DEBIAN_PACKAGES = ("python3", "python3-yaml", "python3-urllib3", "python3-click",
                           "python3-prettytable", "python3-dateutil", "python3-psutil",
                           "python3-psycopg2")


@dataclass(frozen=True)
class GoTool:
    """A Go main package built from a module at a pinned version.

    ``staging`` maps local replace directives of the module to module versions,
    so a wrapper module can build what ``go install`` refuses (kubernetes, etcd).
    """

    name: str
    module: str
    version: str
    packages: tuple[str, ...]
    ldflags: tuple[str, ...] = ()
    cgo: bool = False
    local_replace_version: str | None = None
    binaries: tuple[str, ...] = field(default=())

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.binaries or tuple(p.rstrip("/").rsplit("/", 1)[-1] for p in self.packages)


def _k8s_ldflags() -> tuple[str, ...]:
    v = K8S_VERSION
    major, minor = v.lstrip("v").split(".")[:2]
    out = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        out += [f"-X {pkg}.gitVersion={v}", f"-X {pkg}.gitMajor={major}",
                f"-X {pkg}.gitMinor={minor}", f"-X {pkg}.gitTreeState=clean",
                f"-X {pkg}.gitCommit=0000000000000000000000000000000000000000",
                f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    return tuple(out)


K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kube-proxy",
                "kubeadm", "kubelet", "kubectl")

GO_TOOLS: tuple[GoTool, ...] = (
    GoTool("kubernetes", "k8s.io/kubernetes", K8S_VERSION,
           tuple(f"k8s.io/kubernetes/cmd/{b}" for b in K8S_BINARIES),
           ldflags=_k8s_ldflags(), local_replace_version="v0." + K8S_VERSION.split(".", 1)[1]),
    GoTool("kind", "sigs.k8s.io/kind", KIND_VERSION, ("sigs.k8s.io/kind",)),
    GoTool("helm", "helm.sh/helm/v4", HELM_VERSION, ("helm.sh/helm/v4/cmd/helm",),
           ldflags=(f"-X helm.sh/helm/v4/internal/version.version={HELM_VERSION}",)),
    GoTool("crictl", "sigs.k8s.io/cri-tools", CRICTL_VERSION, ("sigs.k8s.io/cri-tools/cmd/crictl",),
           ldflags=(f"-X sigs.k8s.io/cri-tools/pkg/version.Version={CRICTL_VERSION}",)),
    GoTool("etcd", "go.etcd.io/etcd/server/v3", ETCD_VERSION, ("go.etcd.io/etcd/server/v3",),
           local_replace_version=ETCD_VERSION, binaries=("etcd",)),
    GoTool("coredns", "github.com/coredns/coredns", COREDNS_VERSION, ("github.com/coredns/coredns",)),
    GoTool("kube-router", "github.com/cloudnativelabs/kube-router/v2", KUBE_ROUTER_VERSION,
           ("github.com/cloudnativelabs/kube-router/v2/cmd/kube-router",),
           ldflags=(f"-X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version={KUBE_ROUTER_VERSION}",)),
    GoTool("local-path-provisioner", "github.com/rancher/local-path-provisioner",
           LOCAL_PATH_PROVISIONER_VERSION, ("github.com/rancher/local-path-provisioner",),
           ldflags=(f"-X main.VERSION={LOCAL_PATH_PROVISIONER_VERSION}",)),
    GoTool("minio", "github.com/minio/minio", MINIO_VERSION, ("github.com/minio/minio",),
           ldflags=(f"-X github.com/minio/minio/cmd.Version={MINIO_RELEASE_TAG.replace('RELEASE.', '')}",
                    f"-X github.com/minio/minio/cmd.ReleaseTag={MINIO_RELEASE_TAG}",
                    "-X github.com/minio/minio/cmd.CommitID=7aac2a2c5b7c")),
    GoTool("mc", "github.com/minio/mc", MC_VERSION, ("github.com/minio/mc",),
           ldflags=(f"-X github.com/minio/mc/cmd.Version={MC_RELEASE_TAG.replace('RELEASE.', '')}",
                    f"-X github.com/minio/mc/cmd.ReleaseTag={MC_RELEASE_TAG}")),
)


def go_tool(name: str) -> GoTool:
    for t in GO_TOOLS:
        if t.name == name:
            return t
    raise KeyError(name)
