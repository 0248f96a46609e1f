"""Container images built from Debian packages (debootstrap) and our Go builds.

Every image carries a ``ducklake-infra.stamp`` label that lists its inputs, each with a
digest: ``base=<image id>,dockerfile=<digest>,file:kube-apiserver=<digest>,...`` (the
binaries it contains, the image it is built on, its Dockerfile text; for a debootstrapped
image its recipe: suite, mirror, packages, changes, post-commands). An image whose
recorded inputs equal the wanted ones is current; otherwise ``bundle status`` names the
inputs that changed and ``bundle build`` rebuilds it (``imagegraph``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ducklake_infra.provision.bundle import integrity
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.bundle import pywheel
from ducklake_infra.provision.host import DOCKER
from ducklake_infra.provision.runner import CommandError, Runner

STAMP_LABEL = "ducklake-infra.stamp"


def stamp_of(*parts) -> str:
    """A short digest of ``parts``; a Path counts by its bytes (sha256, remembered)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, Path):
            h.update(integrity.sha256(p).encode() if p.is_file() else str(p).encode())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    return integrity.sha256(path)[:16] if path.is_file() else "missing"


def short_id(image_id: str | None) -> str:
    return image_id.removeprefix("sha256:")[:16] if image_id else "missing"


def format_inputs(inputs: dict[str, str]) -> str:
    """The stamp label's value: ``name=digest`` pairs, sorted, comma-separated (a
    Dockerfile LABEL word: no spaces, quotes or ``$``)."""
    for k, v in inputs.items():
        if not k or any(c in k + v for c in ",= \"'$\\"):
            raise ValueError(f"image input {k}={v} cannot go in a label")
    return ",".join(f"{k}={v}" for k, v in sorted(inputs.items()))


def parse_inputs(label: str | None) -> dict[str, str]:
    """Inverse of format_inputs. A label without ``=`` is a stamp from before inputs were
    itemized: the one digest it holds was the recipe of a debootstrapped image (still
    computed the same way), and matches nothing else."""
    if not label:
        return {}
    if "=" not in label:
        return {"recipe": label}
    return dict(part.split("=", 1) for part in label.split(",") if "=" in part)


def changed_inputs(recorded: dict[str, str], wanted: dict[str, str]) -> list[str]:
    """Names of the inputs that differ (added, removed or changed)."""
    return sorted(k for k in recorded.keys() | wanted.keys() if recorded.get(k) != wanted.get(k))


@dataclass(frozen=True)
class LocalImage:
    """What the Docker engine holds under a reference."""
    id: str
    size: int
    labels: dict

    @property
    def inputs(self) -> dict[str, str]:
        return parse_inputs(self.labels.get(STAMP_LABEL))


def inspect_image(runner: Runner, ref: str) -> LocalImage | None:
    res = runner.run([DOCKER, "image", "inspect", "--format",
                      "{{.Id}} {{.Size}} {{json .Config.Labels}}", ref], timeout=60,
                     check=False, mutating=False)
    parts = res.stdout.strip().split(" ", 2) if res.returncode == 0 else []
    if len(parts) != 3:
        return None
    return LocalImage(parts[0], int(parts[1]), json.loads(parts[2] or "null") or {})


# --------------------------------------------------------------------------
# Debian root filesystems
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class RootfsImage:
    ref: str
    packages: tuple[str, ...]
    changes: tuple[str, ...] = ()  # docker import --change lines
    post: tuple[tuple[str, ...], ...] = ()  # commands run with chroot <rootfs> ...
    why: str = ""
    # pinned wheels put in the rootfs's /tmp before ``post`` runs (pywheel.install_commands)
    wheels: tuple[pins.Wheel, ...] = ()

    def inputs(self) -> dict[str, str]:
        # the recipe digest is what the stamp label held before inputs were itemized;
        # an image without wheels digests exactly what it did before wheels existed
        parts = [pins.DEBIAN_SUITE, pins.DEBIAN_MIRROR, self.packages, self.changes,
                 self.post, "rootfs-v2"]
        if self.wheels:
            parts.append([[w.filename, w.sha256] for w in self.wheels])
        return {"recipe": stamp_of(*parts)}


PATH_ENV = "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEBIAN_BASE = RootfsImage(
    layout.DEBIAN_BASE_IMAGE, ("ca-certificates",), (PATH_ENV, 'CMD ["/bin/bash"]'),
    why="base of MinIO, mc and the local-path helper: sh, coreutils, CA bundle")
DEBIAN_NET = RootfsImage(
    layout.NODE_NET_BASE_IMAGE,
    ("ca-certificates", "iptables", "nftables", "conntrack", "ipset", "iproute2", "kmod",
     "curl", "jq"),
    (PATH_ENV, 'CMD ["/bin/bash"]'),
    why="kube-proxy and the node network daemon need iptables/nftables/conntrack/ipset")
PYTHON_BASE = RootfsImage(
    layout.PYTHON_BASE_IMAGE, ("ca-certificates", "python3", "python3-venv"),
    (PATH_ENV, "ENV LANG=C.UTF-8", 'CMD ["python3"]'),
    why="offline base for the backend Dockerfile (Debian's python3.11)")
POSTGRES = RootfsImage(
    layout.POSTGRES_IMAGE, ("ca-certificates", f"postgresql-{pins.POSTGRES_MAJOR}"),
    (f"ENV PATH=/usr/lib/postgresql/{pins.POSTGRES_MAJOR}/bin:/usr/local/bin:/usr/bin:/bin",
     "ENV LANG=C.UTF-8", "USER 999:999",
     'CMD ["postgres", "--version"]'),
    # Fixed uid/gid 999 (as in the official postgres image) so charts can rely on it.
    # The package's postinst creates a "main" cluster we never use: drop it.
    post=(("rm", "-rf", f"/var/lib/postgresql/{pins.POSTGRES_MAJOR}/main",
           f"/etc/postgresql/{pins.POSTGRES_MAJOR}/main"),
          ("groupmod", "-g", "999", "postgres"), ("usermod", "-u", "999", "postgres"),
          ("chown", "-R", "999:999", "/var/lib/postgresql", "/var/run/postgresql",
           "/var/log/postgresql", "/etc/postgresql")),
    why="PostgreSQL server from Debian's postgresql-15 (user postgres = 999:999)")

POSTGRES_HA = dataclasses.replace(
    POSTGRES, ref=layout.POSTGRES_HA_IMAGE,
    packages=(*POSTGRES.packages, *pins.PATRONI_DEBIAN_PACKAGES),
    post=(*POSTGRES.post,
          *pywheel.install_commands(pins.PATRONI, "patroni.__main__", "patroni.dcs.kubernetes")),
    wheels=(pins.PATRONI,),
    why=f"the PostgreSQL image plus Patroni {pins.PATRONI.version} (PyPI wheel, pinned sha256) "
        "on Debian's Python: the distributed profile's replicated catalog")

NODE_PACKAGES = (
    # kind images/base/Dockerfile's apt list (without nfs/iscsi, which we do not use)
    "systemd", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux",
    "mount", "kmod", "libseccomp2", "pigz", "fuse-overlayfs", "bash", "ca-certificates",
    "curl", "jq", "procps",
    # kind builds these from source; we take Debian's packages
    "containerd", "runc", "containernetworking-plugins",
)

ROOTFS_IMAGES = (DEBIAN_BASE, DEBIAN_NET, PYTHON_BASE, POSTGRES)
# Built only when asked (`bundle build --with NAME`, NAME a key of layout.STACK_IMAGES):
# the standalone stack and the node image never need them, so a plain `bundle build`
# (CI's) neither builds nor lists them; `bundle status` lists the ones Docker holds.
OPTIONAL_ROOTFS_IMAGES = {"postgresql-ha": POSTGRES_HA}


def debootstrap(runner: Runner, lay: layout.Layout, name: str, packages: tuple[str, ...],
                timeout: float = 1800) -> Path:
    """debootstrap --variant=minbase into a fresh directory; debs cached across runs."""
    target = lay.rootfs / name
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    debs = lay.root / "build" / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    runner.run_logged(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                       f"--cache-dir={debs}", pins.DEBIAN_SUITE, str(target), pins.DEBIAN_MIRROR],
                      timeout=timeout)
    slim(target)
    return target


# Half of a minbase rootfs is apt's package lists, docs, man pages and translations:
# nothing in our images runs apt or reads them, and every byte is paid again by
# `kind load` and by each node's containerd.
SLIM_DIRS = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man",
             "usr/share/info", "usr/share/locale", "usr/share/lintian")


def slim(root: Path) -> None:
    for sub in SLIM_DIRS:
        d = root / sub
        if not d.is_dir():
            continue
        for child in d.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            elif child.name != "lock":
                child.unlink()


def import_rootfs(runner: Runner, rootfs: Path, ref: str, changes: tuple[str, ...],
                  inputs: dict[str, str]) -> None:
    tar = rootfs.parent / f"{rootfs.name}.tar"
    runner.run_logged(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."],
                      timeout=900)
    argv = [DOCKER, "import"]
    for c in (*changes, f"LABEL {STAMP_LABEL}={format_inputs(inputs)}"):
        argv += ["--change", c]
    runner.run([*argv, str(tar), ref], timeout=900)
    tar.unlink()


def build_rootfs_image(runner: Runner, lay: layout.Layout, spec: RootfsImage,
                       inputs: dict[str, str]) -> None:
    name = spec.ref.split("/")[-1].replace(":", "-")
    wheels = [pywheel.fetch(runner, lay, w) for w in spec.wheels]   # before the long part
    root = debootstrap(runner, lay, name, spec.packages)
    for w, path in zip(spec.wheels, wheels):
        integrity.atomic_copy(path, root / "tmp" / w.filename, mode=0o644)
    for cmd in spec.post:
        runner.run(["chroot", str(root), *cmd], timeout=300)
    import_rootfs(runner, root, spec.ref, spec.changes, inputs)
    shutil.rmtree(root)


# --------------------------------------------------------------------------
# Images from Dockerfiles generated here (binaries copied into a base)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class BinaryImage:
    ref: str
    base: str  # "scratch" or an image ref built above
    files: tuple[tuple[str, str], ...]  # (source key, destination in image)
    instructions: tuple[str, ...] = ()
    why: str = ""
    extra: tuple = field(default=())

    def dockerfile(self) -> str:
        """The Dockerfile, but for its stamp label; the context holds file i as ``f<i>``."""
        lines = [f"FROM {self.base}"]
        lines += [f"COPY f{i} {dest}" for i, (_, dest) in enumerate(self.files)]
        return "\n".join([*lines, *self.instructions]) + "\n"

    def inputs(self, sources: dict[str, Path], base_id: str | None) -> dict[str, str]:
        """What the image is made of: its Dockerfile, the image it starts from (by ID) and
        every file it copies in (``sources`` maps each file key to a path on the host)."""
        out = {"dockerfile": stamp_of(self.dockerfile(), self.extra)}
        if self.base != "scratch":
            out["base"] = short_id(base_id)
        out.update({f"file:{key}": file_digest(sources[key]) for key, _ in self.files})
        return out


def build_binary_image(runner: Runner, lay: layout.Layout, img: BinaryImage,
                       sources: dict[str, Path], inputs: dict[str, str]) -> None:
    """``docker build`` of ``img`` with its inputs in the stamp label."""
    (lay.root / "build").mkdir(parents=True, exist_ok=True)
    # a partial name: what a killed build leaves is swept by the next one
    with tempfile.TemporaryDirectory(prefix=".image-context-", suffix=integrity.PARTIAL,
                                     dir=lay.root / "build") as tmp:
        ctx = Path(tmp)
        for i, (key, _) in enumerate(img.files):
            integrity.atomic_copy(sources[key], ctx / f"f{i}")  # every file we add is executable
        integrity.atomic_write(ctx / "Dockerfile", img.dockerfile()
                               + f"LABEL {STAMP_LABEL}={format_inputs(inputs)}\n")
        runner.run_logged([DOCKER, "build", "-q", "-t", img.ref, str(ctx)], timeout=900,
                          env={"DOCKER_BUILDKIT": "0"})


def node_component_images() -> list[BinaryImage]:
    """The images kubeadm and kind's default manifests need inside the node."""
    sbin = 'ENV PATH=/usr/local/bin:/usr/bin:/bin'
    out = [BinaryImage(layout.k8s_image(c), "scratch", ((c, f"/usr/local/bin/{c}"),), (sbin,),
                       why=f"{c} (static Go binary)")
           for c in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")]
    out += [
        BinaryImage(layout.k8s_image("kube-proxy"), layout.NODE_NET_BASE_IMAGE,
                    (("kube-proxy", "/usr/local/bin/kube-proxy"),),
                    why="kube-proxy on Debian with iptables/nftables/conntrack/ipset"),
        BinaryImage(layout.ETCD_IMAGE, "scratch", (("etcd", "/usr/local/bin/etcd"),), (sbin,),
                    why="etcd at the version kubeadm 1.34 expects"),
        BinaryImage(layout.COREDNS_IMAGE, "scratch", (("coredns", "/coredns"),),
                    # Runs as uid 0: kubeadm's Deployment drops ALL capabilities but
                    # NET_BIND_SERVICE and forbids privilege escalation. Upstream runs
                    # non-root with a file capability, which legacy `docker build` COPY
                    # does not carry (tried: coredns then cannot bind :53).
                    ('ENTRYPOINT ["/coredns"]',), why="CoreDNS"),
        BinaryImage(layout.PAUSE_IMAGE, "scratch", (("pause", "/pause"),),
                    ('ENTRYPOINT ["/pause"]', "USER 65535:65535"), why="pause (static C)"),
        BinaryImage(layout.CNI_IMAGE, layout.NODE_NET_BASE_IMAGE,
                    (("ducklake-cni.sh", "/usr/local/bin/ducklake-cni"),),
                    ('ENTRYPOINT ["/usr/local/bin/ducklake-cni"]',),
                    why="node network daemon (CNI config, routes, masquerade)"),
        BinaryImage(layout.KUBE_ROUTER_IMAGE, layout.NODE_NET_BASE_IMAGE,
                    (("kube-router", "/usr/local/bin/kube-router"),),
                    ('ENTRYPOINT ["/usr/local/bin/kube-router"]',),
                    why="kube-router as the NetworkPolicy enforcer (iptables + ipset)"),
        BinaryImage(layout.LOCAL_PATH_PROVISIONER_IMAGE, layout.DEBIAN_BASE_IMAGE,
                    (("local-path-provisioner", "/usr/local/bin/local-path-provisioner"),),
                    why="rancher local-path-provisioner (default StorageClass)"),
        BinaryImage(layout.LOCAL_PATH_HELPER_IMAGE, layout.DEBIAN_BASE_IMAGE, (),
                    why="local-path helper pod: sh, mkdir, rm"),
    ]
    return out


def stack_images() -> list[BinaryImage]:
    return [
        BinaryImage(layout.MINIO_IMAGE, layout.DEBIAN_BASE_IMAGE,
                    (("minio", "/usr/bin/minio"),
                     ("docker-entrypoint.sh", "/usr/bin/docker-entrypoint.sh")),
                    # the chart passes -S /etc/minio/certs and runs as uid 1000
                    ("RUN mkdir -p /etc/minio/certs/CAs && chown -R 1000:1000 /etc/minio",
                     'ENTRYPOINT ["/usr/bin/docker-entrypoint.sh"]', 'CMD ["minio"]',
                     "EXPOSE 9000 9001", "USER 1000:1000"),
                    why="MinIO server, last community source, chart's entrypoint script"),
        BinaryImage(layout.MC_IMAGE, layout.DEBIAN_BASE_IMAGE, (("mc", "/usr/bin/mc"),),
                    ('ENTRYPOINT ["/usr/bin/mc"]',), why="MinIO client for the chart's jobs"),
    ]


def save_images(runner: Runner, refs: list[str], dest: Path) -> None:
    runner.run([DOCKER, "save", "-o", str(dest), *refs], timeout=900)


__all__ = ["CommandError"]
