"""``ducklake-infra bundle build|status``: the registry-free bring-up.

Order: host (Docker engine, packages) -> Go tools -> host tools into bin/ -> pause ->
images (``imagegraph``: Debian rootfs images, privileged-container check, node component
and stack images, node image) -> MinIO chart. A step is skipped when what it made is
verified current -- files by size and sha256 against their stamps (``integrity``), images
by the inputs their label records, the chart by its file record -- so a warm re-run only
inspects. A step that has work checks free space first (``disk.STEP_NEEDS_GIB``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ducklake_infra.provision import host
from ducklake_infra.provision.bundle import disk, gobuild, imagegraph, integrity
from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import CommandError, Runner

HOST_TOOLS = ("kind", "helm", "kubectl", "crictl", "minio", "mc")
CHART_SOURCE = f"go: github.com/minio/minio@{pins.MINIO_VERSION} helm/minio"


def module_dir(runner: Runner, module: str, version: str, offline: bool = False) -> Path:
    """The module's directory in the Go module cache (``offline``: only if already there)."""
    env = {"GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local", **({"GOPROXY": "off"} if offline else {})}
    res = runner.run(["go", "mod", "download", "-json", f"{module}@{version}"], timeout=900,
                     env=env, mutating=False)
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


def build_minio_chart(minio_dir: Path, lay: layout.Layout,
                      check_space: Callable[[str], None] = lambda step: None) -> str:
    """Copy the chart unless the copy holds the source's files; record what it holds.
    Returns "cached", "recorded" (the copy was right but unrecorded) or "copied"."""
    dst = lay.chart("minio")
    src = minio_dir / "helm" / "minio"
    if f"version: {pins.MINIO_CHART_VERSION}" not in (src / "Chart.yaml").read_text():
        raise DucklakeInfraError(
            f"MinIO module's helm/minio is not chart {pins.MINIO_CHART_VERSION}")
    want = {"source": CHART_SOURCE, "files": integrity.tree_records(src)}
    if integrity.tree_records(dst) == want["files"]:
        if integrity.read_json(lay.chart_record("minio")) == want:
            return "cached"
        note = "recorded"
    else:
        check_space("chart")
        integrity.atomic_tree(src, dst)
        note = "copied"
    integrity.atomic_write(lay.chart_record("minio"), json.dumps(want, indent=1, sort_keys=True))
    return note


def build(runner: Runner, progress: Progress, lay: layout.Layout, skip_host: bool = False,
          optional: Sequence[str] = ()) -> None:
    """Everything the standalone stack needs, plus the optional images named
    (``images.OPTIONAL_ROOTFS_IMAGES``)."""
    imagegraph.optional_specs(optional)          # an unknown name fails before any work
    host.check_root()
    lay.root.mkdir(parents=True, exist_ok=True)
    if not lay.manifest.exists():
        disk.check("first build", {"cache": lay.root})
    if not skip_host:
        host.ensure_engine(runner, progress, lay.logs)
    if not runner.which("go"):
        raise DucklakeInfraError("the go toolchain is needed to build the bundle "
                                 "(install Go 1.24+ and put it on PATH)")
    integrity.sweep_partials(lay.root, lay.root / "build", lay.bin, lay.node_bin, lay.charts,
                             lay.root / "build" / "wheels")
    integrity.use_hash_store(lay.hash_store)
    where = disk.places(runner, lay)
    try:
        _build_steps(runner, progress, lay, skip_host, lambda step: disk.check(step, where),
                     optional)
    finally:
        integrity.save_hash_store()


def _build_steps(runner: Runner, progress: Progress, lay: layout.Layout, skip_host: bool,
                 check_space: Callable[[str], None], optional: Sequence[str] = ()) -> None:
    bins = lay.node_bin
    go_version = gobuild.go_version(runner)
    for tool in pins.GO_TOOLS:
        with progress.step(f"go build {tool.name} {tool.version}") as info:
            if gobuild.is_built(tool, bins, go_version):
                info["note"] = "cached"
            else:
                check_space("go build")
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

    ctx = imagegraph.Context(runner, lay, imagegraph.sources(lay, minio_dir), kind_dir)
    after = {} if skip_host else {images.DEBIAN_BASE.ref: lambda: host.ensure_privileged(
        runner, progress, lay.logs, probe_image=images.DEBIAN_BASE.ref)}
    imagegraph.build_images(ctx, progress, check_space, after, optional)
    with progress.step(f"chart minio {pins.MINIO_CHART_VERSION}") as info:
        info["note"] = build_minio_chart(minio_dir, lay, check_space)
    write_manifest(runner, lay, ctx)


# --------------------------------------------------------------------------
# status
# --------------------------------------------------------------------------
STATES = ("present", "missing", "corrupt", "stale")


@dataclass
class Artifact:
    """One thing the bundle provides. ``state``: present; missing; corrupt (a file that is
    not the bytes that were built or copied); stale (an image or chart whose inputs changed
    since it was made, or anything made without a record: ``detail`` says which)."""
    name: str
    version: str
    source: str
    id: str | None
    state: str
    size: int | None = None
    detail: str = ""
    sbom: str = "-"                # its SBOM in <cache>/sbom, when asked (sbom.mark_states)
    present: bool = field(init=False, default=False)   # state == "present": usable as is

    def __post_init__(self):
        assert self.state in STATES, self.state
        self.present = self.state == "present"


def _built_file(name: str, path: Path, tool: pins.GoTool, lay: layout.Layout,
                output: str) -> Artifact:
    """A file the Go build produced, checked against the size and sha256 it was built with."""
    source = f"go: {tool.module}"
    if not path.is_file():
        return Artifact(name, tool.version, source, None, "missing")
    rec = integrity.file_record(path)
    want = gobuild.recorded_outputs(tool, lay.node_bin).get(output)
    if want is None:        # the stamp goes before `go build` starts, and comes after it ends
        state, detail = "stale", "no finished build recorded it"
    elif rec != {"size": want["size"], "sha256": want["sha256"]}:
        state, detail = "corrupt", "not the bytes that were built"
    else:
        state, detail = "present", ""
    return Artifact(name, tool.version, source, "sha256:" + rec["sha256"], state, rec["size"],
                    detail)


def _chart(lay: layout.Layout) -> Artifact:
    """The MinIO chart's copy, checked file by file against its record."""
    dst, record = lay.chart("minio"), integrity.read_json(lay.chart_record("minio"))
    if not dst.is_dir():
        return Artifact("chart/minio", pins.MINIO_CHART_VERSION, CHART_SOURCE, None, "missing")
    have = integrity.tree_records(dst)
    changes = integrity.tree_changes(record.get("files") or {}, have)
    if not record:
        state, detail = "stale", "copied before its files were recorded"
    elif changes:
        state, detail = "corrupt", ", ".join(changes)
    elif record.get("source") != CHART_SOURCE:
        state, detail = "stale", f"copied from {record.get('source')}"
    else:
        state, detail = "present", ""
    digest = hashlib.sha256(json.dumps(have, sort_keys=True).encode()).hexdigest()
    return Artifact("chart/minio", pins.MINIO_CHART_VERSION, CHART_SOURCE, "sha256:" + digest,
                    state, detail=detail)


def status_context(runner: Runner, lay: layout.Layout) -> imagegraph.Context | None:
    """The inputs' sources for status, if the Go module cache already holds them."""
    if not runner.which("go"):
        return None
    try:
        kind_dir = module_dir(runner, "sigs.k8s.io/kind", pins.KIND_VERSION, offline=True)
        minio_dir = module_dir(runner, "github.com/minio/minio", pins.MINIO_VERSION, offline=True)
    except (CommandError, ValueError, KeyError):
        return None
    return imagegraph.Context(runner, lay, imagegraph.sources(lay, minio_dir), kind_dir)


def artifacts(runner: Runner, lay: layout.Layout,
              ctx: imagegraph.Context | None = None) -> list[Artifact]:
    integrity.use_hash_store(lay.hash_store)     # read only: status writes nothing
    out: list[Artifact] = []
    tools = {t.name: t for t in pins.GO_TOOLS}
    for name in HOST_TOOLS:
        t = tools.get(name) or tools["kubernetes"]
        out.append(_built_file(f"bin/{name}", lay.tool(name), t, lay, name))
    for name in ("kubeadm", "kubelet"):
        out.append(_built_file(f"node-bin/{name}", lay.node_bin / name, tools["kubernetes"],
                               lay, name))
    if host.docker_answers(runner):
        states = imagegraph.states(ctx or status_context(runner, lay), runner)
    else:
        states = [imagegraph.ImageState(s, None, "missing", "docker does not answer")
                  for s in imagegraph.steps()]
    for im in states:
        ref = im.step.ref
        out.append(Artifact(f"image/{ref}", ref.rsplit(":", 1)[1], im.step.source,
                            im.image.id if im.image else None, im.state,
                            im.image.size if im.image else None, im.detail))
    out.append(_chart(lay))
    return out


def write_manifest(runner: Runner, lay: layout.Layout, ctx: imagegraph.Context | None = None) -> None:
    data = {"artifacts": [asdict(a) for a in artifacts(runner, lay, ctx)]}
    integrity.atomic_write(lay.manifest, json.dumps(data, indent=2) + "\n")


def status_table(arts: list[Artifact]) -> str:
    rows = [("ARTIFACT", "VERSION", "STATE", "ID", "SBOM", "SOURCE")]
    for a in arts:
        ident = (a.id or "-")
        ident = ident.replace("sha256:", "")[:12]
        rows.append((a.name, a.version, a.state if a.present else a.state.upper(), ident,
                     a.sbom, f"{a.source} ({a.detail})" if a.detail else a.source))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(5)]
    lines = []
    for r in rows:
        lines.append("  ".join(r[i].ljust(widths[i])[:max(widths[i], 1)] for i in range(5))
                     + "  " + r[5])
    return "\n".join(lines)


def status_json(arts: list[Artifact]) -> str:
    return json.dumps({"artifacts": [{k: v for k, v in asdict(a).items() if k != "size"}
                                     for a in arts]}, indent=2)


__all__ = ["build", "artifacts", "status_table", "status_json"]
