"""``ducklake-infra bundle build|status``: the registry-free bring-up.

Order: host (Docker engine, packages) -> Go tools -> Debian rootfs images ->
privileged-container check -> node component images -> node image -> stack
images -> MinIO chart. Each step is skipped when its stamp says it is current,
so a warm re-run only inspects.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from ducklake_infra.provision import host
from ducklake_infra.provision.bundle import gobuild, integrity
from ducklake_infra.provision.bundle import images as I
from ducklake_infra.provision.images import local_image_id
from ducklake_infra.provision.bundle import layout as L
from ducklake_infra.provision.bundle import nodeimage, pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import Runner

HOST_TOOLS = ("kind", "helm", "kubectl", "crictl", "minio", "mc")


def module_dir(runner: Runner, module: str, version: str) -> Path:
    res = runner.run(["go", "mod", "download", "-json", f"{module}@{version}"], timeout=900,
                     env={"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}, mutating=False)
    return Path(json.loads(res.stdout)["Dir"])


def build_pause(runner: Runner, k8s_dir: Path, out: Path) -> bool:
    """gcc -static of kubernetes' pause.c, unless its stamp records these pins and the
    very bytes ``out`` holds. True if built."""
    stamp = out.with_name(".pause.stamp.json")
    want = {"kubernetes": pins.K8S_VERSION, "pause": pins.PAUSE_VERSION}
    data = integrity.read_json(stamp)
    if data.get("inputs") == want and integrity.same_file(out, data.get("output")):
        return False
    tmp = integrity.partial_name(out)
    runner.run(["gcc", "-Os", "-Wall", "-Werror", "-static",
                f"-DVERSION=v{pins.PAUSE_VERSION}-ducklake", "-o", str(tmp),
                str(k8s_dir / "build/pause/linux/pause.c")], timeout=300)
    integrity.publish(tmp, out, 0o755)
    integrity.atomic_write(stamp, json.dumps({"inputs": want,
                                              "output": integrity.file_record(out)}))
    out.with_name(".pause.stamp").unlink(missing_ok=True)     # the stamp's old, unchecked form
    return True


def copy_if_changed(src: Path, dst: Path) -> bool:
    """Copy ``src`` over ``dst`` unless they are the same bytes (size, then sha256): a
    truncated or stale copy is replaced, through a partial name. True if copied."""
    if integrity.same_file(dst, integrity.file_record(src)):
        return False
    integrity.atomic_copy(src, dst, mode=0o755)
    return True


def build_minio_chart(minio_dir: Path, lay: L.Layout) -> bool:
    dst = lay.chart("minio")
    src = minio_dir / "helm" / "minio"
    chart_yaml = (src / "Chart.yaml").read_text()
    if f"version: {pins.MINIO_CHART_VERSION}" not in chart_yaml:
        raise DucklakeInfraError(f"MinIO module's helm/minio is not chart {pins.MINIO_CHART_VERSION}")
    if dst.exists() and (dst / "Chart.yaml").read_text() == chart_yaml:
        return False
    integrity.atomic_tree(src, dst)
    return True


def build(runner: Runner, progress: Progress, lay: L.Layout, skip_host: bool = False) -> None:
    host.check_root()
    lay.root.mkdir(parents=True, exist_ok=True)
    host.check_disk(lay.root, need_gb=5 if (lay.root / "bundle.json").exists() else host.MIN_FREE_GB)
    if not skip_host:
        host.ensure_engine(runner, progress, lay.logs)
    if not runner.which("go"):
        raise DucklakeInfraError("the go toolchain is needed to build the bundle "
                                 "(install Go 1.24+ and put it on PATH)")
    integrity.sweep_partials(lay.root, lay.root / "build", lay.bin, lay.node_bin, lay.charts)
    integrity.use_hash_store(lay.hash_store)
    try:
        _build_steps(runner, progress, lay, skip_host)
    finally:
        integrity.save_hash_store()


def _build_steps(runner: Runner, progress: Progress, lay: L.Layout, skip_host: bool) -> None:
    bins = lay.node_bin
    for tool in pins.GO_TOOLS:
        with progress.step(f"go build {tool.name} {tool.version}") as info:
            if gobuild.is_built(tool, bins, gobuild.go_version(runner)):
                info["note"] = "cached"
            else:
                gobuild.build_tool(runner, tool, lay.gowork, bins)
    with progress.step("host tools into bin/") as info:
        copied = [t for t in HOST_TOOLS if copy_if_changed(bins / t, lay.tool(t))]
        info["note"] = f"copied {' '.join(copied)}" if copied else "cached"
        # Our PATH starts with bin/: make `docker` (for us and for kind) the client that
        # matches Debian's engine, whose built-in BuildKit handles --secret without buildx.
        link = lay.tool("docker")
        if Path(host.DOCKER).exists() and not link.is_symlink():
            link.unlink(missing_ok=True)
            link.symlink_to(host.DOCKER)
    with progress.step(f"pause {pins.PAUSE_VERSION} (gcc -static)") as info:
        k8s_dir = module_dir(runner, "k8s.io/kubernetes", pins.K8S_VERSION)
        info["note"] = "built" if build_pause(runner, k8s_dir, bins / "pause") else "cached"
    kind_dir = module_dir(runner, "sigs.k8s.io/kind", pins.KIND_VERSION)
    minio_dir = module_dir(runner, "github.com/minio/minio", pins.MINIO_VERSION)

    for spec in I.ROOTFS_IMAGES:
        with progress.step(f"image {spec.ref} (debootstrap)") as info:
            info["note"] = "built" if I.build_rootfs_image(runner, lay, spec) else "cached"
        if spec is I.DEBIAN_BASE and not skip_host:
            host.ensure_privileged(runner, progress, lay.logs, probe_image=spec.ref)

    sources = {b: bins / b for b in ("kube-apiserver", "kube-controller-manager",
                                     "kube-scheduler", "kube-proxy", "etcd", "coredns",
                                     "pause", "local-path-provisioner", "minio", "mc",
                                     "kube-router")}
    sources["ducklake-cni.sh"] = nodeimage.FILES / "ducklake-cni.sh"
    sources["docker-entrypoint.sh"] = minio_dir / "dockerscripts" / "docker-entrypoint.sh"
    node_images = nodeimage_component_refs()
    for img in I.node_component_images() + I.stack_images():
        with progress.step(f"image {img.ref}") as info:
            info["note"] = "built" if I.build_binary_image(runner, img, sources) else "cached"
    with progress.step(f"image {nodeimage.NODE_BASE_IMAGE} (debootstrap + kind base files)") as info:
        info["note"] = "built" if nodeimage.build_node_base(runner, lay, kind_dir) else "cached"
    with progress.step(f"image {L.NODE_IMAGE} (node assembly)") as info:
        built = nodeimage.build_node_image(runner, lay, kind_dir, bins, node_images)
        info["note"] = "built" if built else "cached"
    with progress.step(f"chart minio {pins.MINIO_CHART_VERSION}") as info:
        info["note"] = "copied" if build_minio_chart(minio_dir, lay) else "cached"
    write_manifest(runner, lay)


def nodeimage_component_refs() -> list[str]:
    """Every image baked into the node's containerd: the cluster's own components, and the
    stack images that do not change with the project's code (MinIO, mc, PostgreSQL), so
    a new cluster starts with them and `up` loads only what the node lacks (by image ID):
    the backend image (issue 14: image loads were 43% of a cold `up`)."""
    return [img.ref for img in I.node_component_images()] + \
        [img.ref for img in I.stack_images()] + [L.POSTGRES_IMAGE]


# --------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------
@dataclass
class Artifact:
    name: str
    version: str
    source: str
    id: str | None
    present: bool
    size: int | None = None
    state: str = ""          # present | missing | corrupt (not the bytes that were built)

    def __post_init__(self):
        if not self.state:
            self.state = "present" if self.present else "missing"


def _built_file(name: str, path: Path, tool: pins.GoTool, lay: L.Layout,
                output: str) -> Artifact:
    """A file the Go build produced, checked against the size and sha256 it was built with."""
    if not path.is_file():
        return Artifact(name, tool.version, f"go: {tool.module}", None, False)
    rec = integrity.file_record(path)
    want = gobuild.recorded_outputs(tool, lay.node_bin).get(output)
    corrupt = want is not None and (rec["size"], rec["sha256"]) != (want["size"], want["sha256"])
    return Artifact(name, tool.version, f"go: {tool.module}", "sha256:" + rec["sha256"],
                    not corrupt, rec["size"], "corrupt" if corrupt else "present")


def artifacts(runner: Runner, lay: L.Layout) -> list[Artifact]:
    integrity.use_hash_store(lay.hash_store)     # read only: status writes nothing
    out: list[Artifact] = []
    tools = {t.name: t for t in pins.GO_TOOLS}
    for name in HOST_TOOLS:
        t = tools.get(name) or tools["kubernetes"]
        out.append(_built_file(f"bin/{name}", lay.tool(name), t, lay, name))
    for name in ("kubeadm", "kubelet"):
        out.append(_built_file(f"node-bin/{name}", lay.node_bin / name, tools["kubernetes"],
                               lay, name))
    docker_ok = host.docker_answers(runner)
    image_rows = [(s.ref, f"debian {pins.DEBIAN_SUITE}: {' '.join(s.packages)}")
                  for s in I.ROOTFS_IMAGES]
    image_rows += [(i.ref, i.why) for i in I.node_component_images() + I.stack_images()]
    image_rows += [(nodeimage.NODE_BASE_IMAGE, f"debian {pins.DEBIAN_SUITE} + kind {pins.KIND_VERSION} base files"),
                   (L.NODE_IMAGE, f"kind node image, Kubernetes {pins.K8S_VERSION}")]
    for ref, source in image_rows:
        iid = local_image_id(runner, ref) if docker_ok else None
        out.append(Artifact(f"image/{ref}", ref.rsplit(":", 1)[1], source, iid, iid is not None,
                            I.image_size(runner, ref) if iid else None))
    chart = lay.chart("minio") / "Chart.yaml"
    out.append(Artifact("chart/minio", pins.MINIO_CHART_VERSION,
                        f"go: github.com/minio/minio@{pins.MINIO_VERSION} helm/minio",
                        "sha256:" + integrity.sha256(chart) if chart.exists() else None,
                        chart.exists()))
    return out


def write_manifest(runner: Runner, lay: L.Layout) -> None:
    data = {"artifacts": [asdict(a) for a in artifacts(runner, lay)]}
    integrity.atomic_write(lay.manifest, json.dumps(data, indent=2) + "\n")


def status_table(arts: list[Artifact]) -> str:
    rows = [("ARTIFACT", "VERSION", "STATE", "ID", "SOURCE")]
    for a in arts:
        ident = (a.id or "-")
        ident = ident.replace("sha256:", "")[:12]
        rows.append((a.name, a.version, a.state if a.present else a.state.upper(), ident,
                     a.source))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(4)]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i])[:max(widths[i], 1)] for i in range(4))
                     + "  " + r[4])
    return "\n".join(lines)


def status_json(arts: list[Artifact]) -> str:
    return json.dumps({"artifacts": [{k: v for k, v in asdict(a).items() if k != "size"}
                                     for a in arts]}, indent=2)


__all__ = ["build", "artifacts", "status_table", "status_json", "subprocess"]
