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

from ducklake_infra.provision.bundle import images as I
from ducklake_infra.provision.bundle import integrity
from ducklake_infra.provision.images import local_image_id
from ducklake_infra.provision.bundle import layout as L
from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.host import DOCKER
from ducklake_infra.provision.runner import Runner

FILES = Path(__file__).parent / "files"
NODE_BASE_IMAGE = f"{L.IMAGE_PREFIX}/kind-node-base:{pins.DEBIAN_SUITE}"


def storage_manifest(kind_dir: Path) -> str:
    """kind's default storage manifest, pointed at our local-path images."""
    src = (kind_dir / "pkg/build/nodeimage/const_storage.go").read_text()
    m = re.search(r"const defaultStorageManifest = `(.*?)`\s*$", src, re.S)
    if not m:
        raise DucklakeInfraError("cannot find defaultStorageManifest in kind's const_storage.go")
    text = m.group(1)
    text = text.replace("` + storageProvisionerImage + `", L.LOCAL_PATH_PROVISIONER_IMAGE)
    text = text.replace("` + storageHelperImage + `", L.LOCAL_PATH_HELPER_IMAGE)
    if "` +" in text:
        raise DucklakeInfraError("unexpected template in kind's storage manifest")
    return text


def cni_manifest() -> str:
    return (FILES / "cni.yaml").read_text().replace("@CNI_IMAGE@", L.CNI_IMAGE) \
        .replace("@KUBE_ROUTER_IMAGE@", L.KUBE_ROUTER_IMAGE)


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


def build_node_base(runner: Runner, lay: L.Layout, kind_dir: Path) -> bool:
    stamp = I.stamp_of(pins.DEBIAN_SUITE, I.NODE_PACKAGES, pins.KIND_VERSION, "node-base-v2")
    if I.image_stamp(runner, NODE_BASE_IMAGE) == stamp:
        return False
    root = I.debootstrap(runner, lay, "kind-node-base", I.NODE_PACKAGES)
    prepare_node_rootfs(runner, root, kind_dir)
    I.import_rootfs(runner, root, NODE_BASE_IMAGE,
                    ("ENV container=docker",
                     'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]'), stamp)
    shutil.rmtree(root)
    return True


def build_node_image(runner: Runner, lay: L.Layout, kind_dir: Path, bins: Path,
                     node_images: list[str]) -> bool:
    """Node base + Kubernetes binaries + manifests + images in containerd."""
    ids = [local_image_id(runner, r) for r in node_images]
    if None in ids:
        missing = [r for r, i in zip(node_images, ids) if i is None]
        raise DucklakeInfraError(f"node images missing before node assembly: {missing}")
    storage, cni = storage_manifest(kind_dir), cni_manifest()
    stamp = I.stamp_of(I.image_stamp(runner, NODE_BASE_IMAGE), ids, storage, cni,
                       *[bins / b for b in ("kubeadm", "kubelet", "kubectl", "crictl")],
                       "node-v2")
    if I.image_stamp(runner, L.NODE_IMAGE) == stamp:
        return False
    work = lay.root / "build" / "node"
    shutil.rmtree(work, ignore_errors=True)
    integrity.atomic_write(work / "default-storage.yaml", storage)
    integrity.atomic_write(work / "default-cni.yaml", cni)
    integrity.atomic_write(work / "version", pins.K8S_VERSION + "\n")
    tar = work / "images.tar"
    I.save_images(runner, node_images, tar)
    name = f"dli-node-build-{int(time.time())}"
    runner.run([DOCKER, "run", "-d", "--name", name, "--privileged", "--entrypoint", "sleep",
                NODE_BASE_IMAGE, "infinity"], timeout=120)
    try:
        for b in ("kubeadm", "kubelet", "kubectl"):
            runner.run([DOCKER, "cp", str(bins / b), f"{name}:/usr/bin/{b}"], timeout=300)
        runner.run([DOCKER, "cp", str(bins / "crictl"), f"{name}:/usr/local/bin/crictl"],
                   timeout=120)
        runner.run([DOCKER, "cp", str(work / "version"), f"{name}:/kind/version"], timeout=60)
        for f in ("default-storage.yaml", "default-cni.yaml"):
            runner.run([DOCKER, "cp", str(work / f), f"{name}:/kind/manifests/{f}"], timeout=60)
        runner.run([DOCKER, "cp", str(tar), f"{name}:/kind/images.tar"], timeout=900)
        setup = (
            "set -e; chmod 0755 /usr/bin/kubeadm /usr/bin/kubelet /usr/bin/kubectl "
            "/usr/local/bin/crictl; "
            "(containerd > /var/log/containerd-build.log 2>&1 &); "
            "for i in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done; "
            "ctr oci spec | jq '.hooks.createContainer[.hooks.createContainer|length] |= . + "
            "{\"path\": \"/kind/bin/mount-product-files.sh\"}' | jq 'del(.process.rlimits)' "
            "> /etc/containerd/cri-base.json; "
            "ctr -n k8s.io images import --all-platforms --no-unpack /kind/images.tar; "
            "rm -f /kind/images.tar; "
            f"sed -i 's#sandbox_image = .*#sandbox_image = \"{L.PAUSE_IMAGE}\"#' "
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
        res = runner.run([DOCKER, "exec", name, "bash", "-c", setup], timeout=1200)
        have = set(res.stdout.split())
        for ref in node_images:
            full = ref if "/" in ref.split(":")[0] and "." in ref.split("/")[0] else f"docker.io/{ref}"
            if full not in have:
                raise DucklakeInfraError(f"image {ref} did not land in the node's containerd "
                                         f"(have: {sorted(have)})")
        committed = f"{L.NODE_IMAGE}-commit"
        runner.run([DOCKER, "commit",
                    "--change", 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]',
                    "--change", "CMD []", "--change", "ENV container=docker",
                    name, committed], timeout=900)
        # docker commit/import cannot set STOPSIGNAL (systemd stops on SIGRTMIN+3):
        # one Dockerfile line on top does, together with the stamp label.
        integrity.atomic_write(work / "Dockerfile", f"FROM {committed}\nSTOPSIGNAL SIGRTMIN+3\n"
                               f"LABEL {I.STAMP_LABEL}={stamp}\n")
        tar.unlink(missing_ok=True)
        runner.run([DOCKER, "build", "-q", "-t", L.NODE_IMAGE, str(work)], timeout=600,
                   env={"DOCKER_BUILDKIT": "0"})
        runner.run([DOCKER, "rmi", committed], timeout=120, check=False)
    finally:
        runner.run([DOCKER, "rm", "-f", name], timeout=120, check=False)
        shutil.rmtree(work, ignore_errors=True)
    return True
