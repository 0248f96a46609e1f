"""Assemble a kind node image by hand, as ``kind build node-image`` does, offline.

``kind build node-image`` fetches images over the network, so we do its work:
a Debian rootfs with kind's base packages and static files (taken from the kind
Go module in the module cache at build time), the Kubernetes binaries, kind's
manifests, and every image the node needs imported into its containerd.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from ducklake_infra.provision.bundle import integrity
from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.host import DOCKER
from ducklake_infra.provision.runner import Runner

FILES = Path(__file__).parent / "files"
NODE_BASE_IMAGE = f"{layout.IMAGE_PREFIX}/kind-node-base:{pins.DEBIAN_SUITE}"


def storage_manifest(kind_dir: Path) -> str:
    """kind's default storage manifest, pointed at our local-path images."""
    src = (kind_dir / "pkg/build/nodeimage/const_storage.go").read_text()
    m = re.search(r"const defaultStorageManifest = `(.*?)`\s*$", src, re.S)
    if not m:
        raise DucklakeInfraError("cannot find defaultStorageManifest in kind's const_storage.go")
    text = m.group(1)
    text = text.replace("` + storageProvisionerImage + `", layout.LOCAL_PATH_PROVISIONER_IMAGE)
    text = text.replace("` + storageHelperImage + `", layout.LOCAL_PATH_HELPER_IMAGE)
    if "` +" in text:
        raise DucklakeInfraError("unexpected template in kind's storage manifest")
    return text


def cni_manifest() -> str:
    return (FILES / "cni.yaml").read_text().replace("@CNI_IMAGE@", layout.CNI_IMAGE) \
        .replace("@KUBE_ROUTER_IMAGE@", layout.KUBE_ROUTER_IMAGE)


def prepare_node_rootfs(runner: Runner, root: Path, kind_dir: Path) -> None:
    """Apply kind's images/base steps to a debootstrapped rootfs (chroot, no network)."""
    base = kind_dir / "images/base/files"
    for sub in ("usr/local/bin", "kind", "etc"):
        src = base / sub
        dst = root / sub
        shutil.copytree(src, dst, dirs_exist_ok=True)
    # module zips drop file modes
    for p in list((root / "usr/local/bin").iterdir()) + list((root / "kind/bin").iterdir()):
        p.chmod(0o755)
    for p in (root / "etc/systemd/system").rglob("*"):
        if p.is_file():
            p.chmod(0o644)
    # kind installs containerd under /usr/local/bin; Debian under /usr/bin
    for b in ("containerd", "ctr", "containerd-shim-runc-v2"):
        link = root / "usr/local/bin" / b
        if not link.exists():
            link.symlink_to(f"/usr/bin/{b}")
    cni = root / "opt/cni/bin"
    cni.mkdir(parents=True, exist_ok=True)
    for plugin in ("host-local", "loopback", "ptp", "portmap", "bridge"):
        link = cni / plugin
        if not link.exists():
            link.symlink_to(f"/usr/lib/cni/{plugin}")
    script = (
        "set -e; "
        "find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete; "
        "rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* "
        "/lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* "
        "/lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*; "
        "echo ReadKMsg=no >> /etc/systemd/journald.conf; "
        "ln -sf \"$(command -v systemd || echo /lib/systemd/systemd)\" /sbin/init; "
        "systemctl enable kubelet.service containerd.service undo-mount-hacks.service; "
        "systemctl mask systemd-binfmt.service; "
        "mkdir -p /etc/kubernetes/manifests /kind/manifests")
    runner.run(["chroot", str(root), "/bin/bash", "-c", script], timeout=300)


def node_base_inputs() -> dict[str, str]:
    # the recipe digest is what the stamp label held before inputs were itemized
    return {"recipe": images.stamp_of(pins.DEBIAN_SUITE, images.NODE_PACKAGES, pins.KIND_VERSION,
                                 "node-base-v2")}


def build_node_base(runner: Runner, lay: layout.Layout, kind_dir: Path,
                    inputs: dict[str, str]) -> None:
    root = images.debootstrap(runner, lay, "kind-node-base", images.NODE_PACKAGES)
    prepare_node_rootfs(runner, root, kind_dir)
    images.import_rootfs(runner, root, NODE_BASE_IMAGE,
                    ("ENV container=docker",
                     'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'), inputs)
    shutil.rmtree(root)


def component_refs() -> list[str]:
    """Every image baked into the node's containerd: the cluster's own components, and the
    stack images that do not change with the project's code (MinIO, mc, PostgreSQL), so
    a new cluster starts with them and `up` loads only what the node lacks (by image ID):
    the backend image (issue 14: image loads were 43% of a cold `up`)."""
    return [img.ref for img in images.node_component_images()] + \
        [img.ref for img in images.stack_images()] + [layout.POSTGRES_IMAGE]


NODE_BINARIES = {"kubeadm": "/usr/bin/kubeadm", "kubelet": "/usr/bin/kubelet",
                 "kubectl": "/usr/bin/kubectl", "crictl": "/usr/local/bin/crictl"}

# Run inside the build container: start containerd, import the node's images, set the
# sandbox image and the OOM clamp, stop containerd.
NODE_SETUP = (
    "set -e; chmod 0755 " + " ".join(NODE_BINARIES.values()) + "; "
    "(containerd > /var/log/containerd-build.log 2>&1 &); "
    "for i in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done; "
    "ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + "
    "{\"path\": \"/kind/bin/mount-product-files.sh\"}' | jq 'del(.process.rlimits)' "
    "> /etc/containerd/cri-base.json; "
    "ctr -n k8s.io images import --all-platforms --no-unpack /kind/images.tar; "
    "rm -f /kind/images.tar; "
    f"sed -i 's#sandbox_image = .*#sandbox_image = \"{layout.PAUSE_IMAGE}\"#' "
    "/etc/containerd/config.toml; "
    # Lowering oom_score_adj (kubelet asks -998 for static pods) needs
    # CAP_SYS_RESOURCE, which some hosts' bounding sets lack; clamp it instead
    # (what kind does for rootless nodes). Without this runc init dies with
    # "can't get final child's PID from pipe: EOF".
    "sed -i 's#restrict_oom_score_adj = false#restrict_oom_score_adj = true#' "
    "/etc/containerd/config.toml; grep -q 'restrict_oom_score_adj = true' "
    "/etc/containerd/config.toml; "
    "ctr -n k8s.io images ls -q; "
    "pkill containerd; for i in $(seq 30); do pgrep -x containerd >/dev/null || break; sleep 1; done; "
    "rm -rf /var/log/containerd-build.log")
# docker commit/import cannot set STOPSIGNAL (systemd stops on SIGRTMIN+3): one
# Dockerfile line on top of the committed container does, with the stamp label.
NODE_COMMIT_CHANGES = ('ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]', "CMD []",
                       "ENV container=docker")
NODE_DOCKERFILE = "FROM {committed}\nSTOPSIGNAL SIGRTMIN+3\n"


def node_inputs(image_ids: dict[str, str | None], kind_dir: Path,
                bins: Path) -> dict[str, str]:
    """What the node image is made of: the node base and every image in its containerd (by
    ID), the Kubernetes binaries, kind's storage manifest, our CNI manifest, and how it is
    assembled (setup script, commit changes, Dockerfile)."""
    out = {"base": images.short_id(image_ids.get(NODE_BASE_IMAGE)),
           "storage": images.stamp_of(storage_manifest(kind_dir)), "cni": images.stamp_of(cni_manifest()),
           "assembly": images.stamp_of(NODE_SETUP, NODE_COMMIT_CHANGES, NODE_DOCKERFILE, "node-v3")}
    out.update({f"image:{ref}": images.short_id(image_ids.get(ref)) for ref in component_refs()})
    out.update({f"file:{b}": images.file_digest(bins / b) for b in NODE_BINARIES})
    return out


def build_node_image(runner: Runner, lay: layout.Layout, kind_dir: Path, bins: Path,
                     inputs: dict[str, str]) -> None:
    """Node base + Kubernetes binaries + manifests + images in containerd."""
    node_images = component_refs()
    missing = [r for r in node_images if inputs.get(f"image:{r}") == "missing"]
    if missing:
        raise DucklakeInfraError(f"node images missing before node assembly: {missing}")
    work = lay.root / "build" / "node"
    shutil.rmtree(work, ignore_errors=True)
    integrity.atomic_write(work / "default-storage.yaml", storage_manifest(kind_dir))
    integrity.atomic_write(work / "default-cni.yaml", cni_manifest())
    integrity.atomic_write(work / "version", pins.K8S_VERSION + "\n")
    tar = work / "images.tar"
    images.save_images(runner, node_images, tar)
    name = f"dli-node-build-{int(time.time())}"
    runner.run([DOCKER, "run", "-d", "--name", name, "--privileged", "--entrypoint", "sleep",
                NODE_BASE_IMAGE, "infinity"], timeout=120)
    try:
        for b, dest in NODE_BINARIES.items():
            runner.run([DOCKER, "cp", str(bins / b), f"{name}:{dest}"], timeout=300)
        runner.run([DOCKER, "cp", str(work / "version"), f"{name}:/kind/version"], timeout=60)
        for f in ("default-storage.yaml", "default-cni.yaml"):
            runner.run([DOCKER, "cp", str(work / f), f"{name}:/kind/manifests/{f}"], timeout=60)
        runner.run([DOCKER, "cp", str(tar), f"{name}:/kind/images.tar"], timeout=900)
        res = runner.run([DOCKER, "exec", name, "bash", "-c", NODE_SETUP], timeout=1200)
        have = set(res.stdout.split())
        for ref in node_images:
            full = ref if "/" in ref.split(":")[0] and "." in ref.split("/")[0] else f"docker.io/{ref}"
            if full not in have:
                raise DucklakeInfraError(f"image {ref} did not land in the node's containerd "
                                         f"(have: {sorted(have)})")
        committed = f"{layout.NODE_IMAGE}-commit"
        commit = [DOCKER, "commit"]
        for c in NODE_COMMIT_CHANGES:
            commit += ["--change", c]
        runner.run([*commit, name, committed], timeout=900)
        integrity.atomic_write(work / "Dockerfile", NODE_DOCKERFILE.format(committed=committed)
                               + f"LABEL {images.STAMP_LABEL}={images.format_inputs(inputs)}\n")
        tar.unlink(missing_ok=True)
        runner.run([DOCKER, "build", "-q", "-t", layout.NODE_IMAGE, str(work)], timeout=600,
                   env={"DOCKER_BUILDKIT": "0"})
        runner.run([DOCKER, "rmi", committed], timeout=120, check=False)
    finally:
        runner.run([DOCKER, "rm", "-f", name], timeout=120, check=False)
        shutil.rmtree(work, ignore_errors=True)
