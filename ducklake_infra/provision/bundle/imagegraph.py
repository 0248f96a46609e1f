"""Every image the bundle builds: what it is made of, and what it is built on.

One walk in build order serves both commands. ``bundle build`` rebuilds an image whose
recorded inputs (its stamp label) differ from the wanted ones; an image's ID is an input
of every image built on it, so what depends on a rebuilt image is rebuilt after it (the
node image when a component image or a node binary changed), and nothing else.
``bundle status`` says ``stale`` for the same images without building anything, naming
the inputs that changed, and for every image built on a stale or missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import nodeimage, pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import Runner

Inputs = dict[str, str]


@dataclass
class Context:
    """What the inputs are computed from, and what the Docker engine holds (looked up once
    per reference, forgotten when the image is rebuilt)."""
    runner: Runner
    lay: layout.Layout
    sources: dict[str, Path]     # file key of a BinaryImage -> path on the host
    kind_dir: Path
    seen: dict[str, images.LocalImage | None] = field(default_factory=dict)

    def image(self, ref: str) -> images.LocalImage | None:
        if ref not in self.seen:
            self.seen[ref] = images.inspect_image(self.runner, ref)
        return self.seen[ref]

    def image_id(self, ref: str) -> str | None:
        img = None if ref == "scratch" else self.image(ref)
        return img.id if img else None


@dataclass(frozen=True)
class ImageStep:
    ref: str
    title: str                   # the build's progress line
    source: str                  # what status shows it is built from
    space: str                   # its key in disk.STEP_NEEDS_GIB
    deps: tuple[str, ...]        # images it is built on
    inputs: Callable[[Context], Inputs]
    build: Callable[[Context, Inputs], None]


def binary_images() -> list[images.BinaryImage]:
    return images.node_component_images() + images.stack_images()


def sources(lay: layout.Layout, minio_dir: Path | None) -> dict[str, Path]:
    """Where each file an image copies in comes from: our Go/C builds, and two scripts
    (MinIO's only with its module's directory)."""
    out = {key: lay.node_bin / key for img in binary_images() for key, _ in img.files}
    out["ducklake-cni.sh"] = nodeimage.FILES / "ducklake-cni.sh"
    out.pop("docker-entrypoint.sh")
    if minio_dir is not None:
        out["docker-entrypoint.sh"] = minio_dir / "dockerscripts" / "docker-entrypoint.sh"
    return out


def _rootfs_step(spec: images.RootfsImage) -> ImageStep:
    return ImageStep(spec.ref, f"image {spec.ref} (debootstrap)",
                     f"debian {pins.DEBIAN_SUITE}: {' '.join(spec.packages)}", "rootfs image", (),
                     lambda ctx: spec.inputs(),
                     lambda ctx, want: images.build_rootfs_image(ctx.runner, ctx.lay, spec, want))


def _binary_step(img: images.BinaryImage) -> ImageStep:
    return ImageStep(img.ref, f"image {img.ref}", img.why, "binary image",
                     () if img.base == "scratch" else (img.base,),
                     lambda ctx: img.inputs(ctx.sources, ctx.image_id(img.base)),
                     lambda ctx, want: images.build_binary_image(ctx.runner, ctx.lay, img,
                                                            ctx.sources, want))


def optional_specs(names: Iterable[str]) -> list[images.RootfsImage]:
    """The optional images named (keys of images.OPTIONAL_ROOTFS_IMAGES), in that order."""
    unknown = sorted(set(names) - images.OPTIONAL_ROOTFS_IMAGES.keys())
    if unknown:
        raise DucklakeInfraError(f"no optional image {', '.join(unknown)} (known: "
                                 f"{', '.join(sorted(images.OPTIONAL_ROOTFS_IMAGES))})")
    return [spec for name, spec in images.OPTIONAL_ROOTFS_IMAGES.items() if name in names]


def optional_present(runner: Runner, ctx: Context | None = None) -> list[str]:
    """The optional images the Docker engine holds (status and SBOMs list those)."""
    look = ctx.image if ctx else (lambda ref: images.inspect_image(runner, ref))
    return [name for name, spec in images.OPTIONAL_ROOTFS_IMAGES.items()
            if look(spec.ref) is not None]


def steps(optional: Iterable[str] = ()) -> list[ImageStep]:
    """In build order: every image after the images it is built on; of the optional
    images, those named (nothing is built on them)."""
    node_deps = (nodeimage.NODE_BASE_IMAGE, *nodeimage.component_refs())
    return [
        *[_rootfs_step(spec) for spec in images.ROOTFS_IMAGES],
        *[_rootfs_step(spec) for spec in optional_specs(optional)],
        *[_binary_step(img) for img in binary_images()],
        ImageStep(nodeimage.NODE_BASE_IMAGE,
                  f"image {nodeimage.NODE_BASE_IMAGE} (debootstrap + kind base files)",
                  f"debian {pins.DEBIAN_SUITE} + kind {pins.KIND_VERSION} base files",
                  "rootfs image", (),
                  lambda ctx: nodeimage.node_base_inputs(),
                  lambda ctx, want: nodeimage.build_node_base(ctx.runner, ctx.lay,
                                                              ctx.kind_dir, want)),
        ImageStep(layout.NODE_IMAGE, f"image {layout.NODE_IMAGE} (node assembly)",
                  f"kind node image, Kubernetes {pins.K8S_VERSION}", "node assembly", node_deps,
                  lambda ctx: nodeimage.node_inputs({r: ctx.image_id(r) for r in node_deps},
                                                    ctx.kind_dir, ctx.lay.node_bin),
                  lambda ctx, want: nodeimage.build_node_image(ctx.runner, ctx.lay, ctx.kind_dir,
                                                               ctx.lay.node_bin, want)),
    ]


def build_images(ctx: Context, progress: Progress, check_space: Callable[[str], None],
                 after: dict[str, Callable[[], None]] | None = None,
                 optional: Iterable[str] = ()) -> None:
    """Rebuild every image whose recorded inputs are not the wanted ones; ``check_space``
    runs before each build, ``after[ref]`` once the image is current."""
    for step in steps(optional):
        with progress.step(step.title) as info:
            want = step.inputs(ctx)
            have = ctx.image(step.ref)
            if have is not None and have.inputs == want:
                info["note"] = "cached"
            else:
                check_space(step.space)
                step.build(ctx, want)
                ctx.seen.pop(step.ref, None)
                info["note"] = "built"
        if after and step.ref in after:
            after[step.ref]()


@dataclass
class ImageState:
    step: ImageStep
    image: images.LocalImage | None
    state: str                   # present | missing | stale
    detail: str = ""


def states(ctx: Context | None, runner: Runner) -> list[ImageState]:
    """Each image's state (of the optional images, those Docker holds). Without a context
    (no Go toolchain to find the kind and MinIO modules), inputs are not checked: present
    or missing only."""
    out: dict[str, ImageState] = {}
    for step in steps(optional_present(runner, ctx)):
        have = ctx.image(step.ref) if ctx else images.inspect_image(runner, step.ref)
        if have is None:
            out[step.ref] = ImageState(step, None, "missing")
            continue
        if ctx is None:
            out[step.ref] = ImageState(step, have, "present", "inputs not checked")
            continue
        under = [f"{d} is {out[d].state}" for d in step.deps if out[d].state != "present"]
        want = step.inputs(ctx)
        changed = images.changed_inputs(have.inputs, want)
        if under:
            out[step.ref] = ImageState(step, have, "stale", "built on " + under[0])
        elif changed:
            legacy = "recipe" in have.inputs and "recipe" not in want
            what = "built before its inputs were recorded" if legacy else \
                "changed: " + ", ".join(changed)
            out[step.ref] = ImageState(step, have, "stale", what)
        else:
            out[step.ref] = ImageState(step, have, "present")
    return list(out.values())
