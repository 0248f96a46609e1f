"""``ducklake-infra bundle sbom``: one CycloneDX 1.6 SBOM per artifact of the bundle.

The artifacts are the ones ``bundle status`` lists -- the host tools in ``bin/`` and every
image ``bundle build`` makes (``imagegraph``), the node image among them -- and the
backend image ``up`` builds from this repository. Each document's subject
(``metadata.component``) is the artifact itself: a host tool with its sha256, an image
with its ID (property ``ducklake-infra:image-id``). What it holds is read from the
artifact, offline (``contents``):

* every Go binary: its main module, each module built into it (purl ``pkg:golang``, the
  go.sum ``h1:`` hash as SHA-256) and the Go standard library of its toolchain;
* every Debian image: its installed packages (``pkg:deb/debian/...?arch=&distro=``) and
  the release, as an operating-system component; and the pinned wheels its build unpacked
  (``pkg:pypi``, the wheel's sha256), which dpkg does not list;
* an image built from binaries: the files the bundle copies in, from the cache;
* the node image: its packages, the Kubernetes binaries, and every image baked into its
  containerd, each with what it holds;
* the backend: its base's Debian packages and the Python packages ``backend/uv.lock``
  installs (``pkg:pypi``, the sha256 of the wheel chosen for the image).

Files go to ``<cache>/sbom/<artifact>.cdx.json`` (or ``--out``), each written whole
(``integrity.atomic_write``). CycloneDX: see ``cyclonedx``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ducklake_infra.provision.bundle import build
from ducklake_infra.provision.bundle import contents
from ducklake_infra.provision.bundle import cyclonedx
from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import imagegraph, integrity, nodeimage, pins
from ducklake_infra.provision.bundle import pywheel
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.runner import Runner

SUFFIX = ".cdx.json"


def file_name(artifact: str) -> str:
    """``image/ducklake-infra/minio:TAG`` -> ``image_ducklake-infra_minio_TAG.cdx.json``."""
    return artifact.replace("/", "_").replace(":", "_") + SUFFIX


def tool_artifacts() -> list[str]:
    return [f"bin/{t}" for t in build.HOST_TOOLS]


def image_artifacts(optional: Iterable[str] = ()) -> list[str]:
    """Every image of a plain build, and the optional images named."""
    return [f"image/{s.ref}" for s in imagegraph.steps(optional)]


# --------------------------------------------------------------------------
# what an image holds, as the bundle builds it
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    debian: bool                                  # has a dpkg database
    files: tuple[tuple[str, str], ...] = ()       # (source key, path in the image)
    images: tuple[str, ...] = ()                  # images baked into it (the node's)
    wheels: tuple[pins.Wheel, ...] = ()           # pinned wheels unpacked into it (no dpkg entry)


def recipes() -> dict[str, Recipe]:
    rootfs = (*images.ROOTFS_IMAGES, *images.OPTIONAL_ROOTFS_IMAGES.values())
    out = {spec.ref: Recipe(True, wheels=spec.wheels) for spec in rootfs}
    out.update({img.ref: Recipe(img.base != "scratch", img.files)
                for img in imagegraph.binary_images()})
    out[nodeimage.NODE_BASE_IMAGE] = Recipe(True)
    out[layout.NODE_IMAGE] = Recipe(True, tuple(nodeimage.NODE_BINARIES.items()),
                               tuple(nodeimage.component_refs()))
    return out


def _repo_tag(ref: str) -> tuple[str, str]:
    repo, _, tag = ref.rpartition(":")
    return (repo, tag) if repo and "/" not in tag else (ref, "latest")


# --------------------------------------------------------------------------
# assembling documents
# --------------------------------------------------------------------------
@dataclass
class Generator:
    """Reads each binary and image once per run, however many documents hold it."""
    runner: Runner
    lay: layout.Layout
    sources: dict[str, Path]
    go: dict[Path, contents.GoBinary | None] = field(default_factory=dict)
    debian: dict[str, contents.DebianImage] = field(default_factory=dict)

    def go_binary(self, path: Path) -> contents.GoBinary | None:
        if path not in self.go:
            self.go[path] = contents.go_binary(self.runner, path)
        return self.go[path]

    def debian_image(self, ref: str) -> contents.DebianImage:
        if ref not in self.debian:
            self.debian[ref] = contents.read_debian_image(self.runner, ref)
        return self.debian[ref]

    # -- pieces --------------------------------------------------------------
    def add_go_modules(self, bom: cyclonedx.Bom, info: contents.GoBinary, holder: str) -> None:
        for mod in (info.main, *info.deps):
            props = {"go-sum": mod.sum or "", "go-replaces": mod.replaces or ""}
            # a directory on the build machine (no version, no sum): named as required
            path = mod.replaces.split()[0] if mod.replaces and mod.path.startswith((".", "/")) \
                else mod.path
            version = None if mod.version == "(devel)" else mod.version
            ref = cyclonedx.purl("golang", path, version)
            bom.add(cyclonedx.Component(ref, "library", path, mod.version, ref, cyclonedx.go_sum_sha256(mod.sum),
                                properties={k: v for k, v in props.items() if v}), holder)
        std = info.go.removeprefix("go")
        bom.add(cyclonedx.Component(cyclonedx.purl("golang", "stdlib", std), "library", "stdlib", info.go,
                            cyclonedx.purl("golang", "stdlib", std),
                            description="Go standard library of the toolchain"), holder)

    def file_component(self, ref: str, name: str, path: Path | None,
                       props: dict[str, str]) -> tuple[cyclonedx.Component, contents.GoBinary | None]:
        """A file the artifact holds; a Go binary is an application with its build info."""
        if path is None or not path.is_file():
            where = f"{path} is missing" if path else "its source is unknown here"
            return cyclonedx.Component(ref, "file", name, description=where, properties=props), None
        with open(path, "rb") as fh:
            elf = fh.read(4) == b"\x7fELF"
        info = self.go_binary(path) if elf else None
        sha = integrity.sha256(path)
        if info is None:
            return cyclonedx.Component(ref, "application" if elf else "file", name, sha256=sha,
                               properties=props), None
        props = {**props, "go-toolchain": info.go, "go-package": info.package}
        return cyclonedx.Component(ref, "application", name, info.main.version, sha256=sha,
                           properties=props), info

    def add_file(self, bom: cyclonedx.Bom, ref: str, name: str, path: Path | None, props: dict,
                 holder: str) -> None:
        comp, info = self.file_component(ref, name, path, props)
        bom.add(comp, holder)
        if info:
            self.add_go_modules(bom, info, comp.ref)

    def add_debian(self, bom: cyclonedx.Bom, image: contents.DebianImage, holder: str) -> None:
        major = image.release.split(".")[0]
        bom.add(cyclonedx.Component(f"os:debian@{image.release}", "operating-system", "debian",
                            image.release, description=f"Debian {pins.DEBIAN_SUITE}"), holder)
        for p in image.packages:
            upstream = p.source if p.source_version == p.version else \
                f"{p.source}@{p.source_version}"
            quals = {"arch": p.arch, "distro": f"debian-{major}",
                     "upstream": upstream if upstream != p.name else ""}
            ref = cyclonedx.purl("deb", f"debian/{p.name}", p.version, quals)
            bom.add(cyclonedx.Component(ref, "library", p.name, p.version, ref), holder)

    def add_wheel(self, bom: cyclonedx.Bom, wheel: pins.Wheel, holder: str) -> None:
        """A wheel the build unpacked into the image: dpkg does not list it, so its pin
        does (name, version, the sha256 the build verified)."""
        ref = cyclonedx.purl("pypi", wheel.name, wheel.version)
        bom.add(cyclonedx.Component(ref, "library", wheel.name, wheel.version, ref, wheel.sha256,
                                    properties={"dist": wheel.filename,
                                                "path": pywheel.SITE_PACKAGES}), holder)

    def image_component(self, ref: str, state: imagegraph.ImageState | None) -> cyclonedx.Component:
        repo, tag = _repo_tag(ref)
        props = {"image": ref}
        if state and state.image:
            props["image-id"] = state.image.id
        if state and state.state != "present":
            props["bundle-state"] = state.state + (f": {state.detail}" if state.detail else "")
        return cyclonedx.Component(f"image:{ref}", "container", repo, tag, properties=props)

    def add_image_contents(self, bom: cyclonedx.Bom, ref: str, recipe: Recipe, holder: str,
                           states: dict[str, imagegraph.ImageState]) -> None:
        if recipe.debian:
            self.add_debian(bom, self.debian_image(ref), holder)
        for wheel in recipe.wheels:
            self.add_wheel(bom, wheel, holder)
        for key, dest in recipe.files:
            src = self.sources.get(key, self.lay.node_bin / key)
            self.add_file(bom, f"{holder}#{dest}", key, src, {"path": dest}, holder)
        every = recipes()
        for inner in recipe.images:
            comp = bom.add(self.image_component(inner, states.get(inner)), holder)
            if states.get(inner) and states[inner].image:
                self.add_image_contents(bom, inner, every[inner], comp, states)

    # -- documents ------------------------------------------------------------
    def tool_bom(self, name: str) -> cyclonedx.Bom:
        path = self.lay.tool(name)
        subject, info = self.file_component(f"bin:{name}", name, path, {"path": f"bin/{name}"})
        bom = cyclonedx.Bom(subject)
        if info:
            self.add_go_modules(bom, info, subject.ref)
        return bom

    def image_bom(self, state: imagegraph.ImageState,
                  states: dict[str, imagegraph.ImageState]) -> cyclonedx.Bom:
        bom = cyclonedx.Bom(self.image_component(state.step.ref, state))
        self.add_image_contents(bom, state.step.ref, recipes()[state.step.ref],
                                bom.subject.ref, states)
        return bom

    def backend_bom(self, ref: str, base_ref: str, lock: Path,
                    states: dict[str, imagegraph.ImageState]) -> cyclonedx.Bom:
        """The backend image: ``FROM`` the Python base (Debian packages), plus the
        packages uv installs from the lock. Not built yet: its sources still say what it
        will hold, and the packages are read from its base image."""
        have = images.inspect_image(self.runner, ref)
        subject = self.image_component(ref, None)
        if have:
            subject.properties["image-id"] = have.id
        else:
            subject.description = f"not built yet (ducklake-infra up builds it): Debian " \
                                  f"packages of its base {base_ref}, Python packages of {lock.name}"
        bom = cyclonedx.Bom(subject)
        debian_ref = ref if have else base_ref
        if have or (states.get(base_ref) and states[base_ref].image):
            image = self.debian_image(debian_ref)
            self.add_debian(bom, image, subject.ref)
            target = contents.PyTarget.of_debian(image, pins.PYTHON_VERSION)
        else:
            target = contents.PyTarget(pins.PYTHON_VERSION + ".0")
        project, *packages = contents.lock_packages(lock, "ducklake-backend", target)
        root = bom.add(cyclonedx.Component(f"python:{project.name}@{project.version}", "application",
                                   project.name, project.version,
                                   properties={"source": "backend/ of this repository"}))
        for p in packages:
            ref_ = cyclonedx.purl("pypi", p.name.lower().replace("_", "-"), p.version)
            props = {"dist": p.dist} if p.dist else {}
            bom.add(cyclonedx.Component(ref_, "library", p.name, p.version, ref_, p.sha256,
                                properties=props), root)
        return bom


# --------------------------------------------------------------------------
# the command
# --------------------------------------------------------------------------
@dataclass
class Written:
    artifact: str
    path: Path | None
    components: int = 0
    note: str = ""                 # why there is no SBOM, or the artifact's state


def backend_image(spec) -> tuple[str, str, Path]:
    """The backend image's reference, its Python base and the lock it installs."""
    from ducklake_infra.provision import render
    refs = render.image_refs(spec, render.Options())
    lock = spec.backend.image.context / "backend" / "uv.lock"
    return refs[render.BACKEND_IMAGE_KEY], refs["python-base"], lock


def generate(runner: Runner, lay: layout.Layout, out: Path, spec=None) -> list[Written]:
    """Write one SBOM per artifact into ``out``; an artifact that is missing gets none.
    ``spec``: the stack spec whose backend image to describe (None: no backend)."""
    integrity.use_hash_store(lay.hash_store)     # read only: nothing in the cache is written
    ctx = build.status_context(runner, lay)
    gen = Generator(runner, lay, ctx.sources if ctx else imagegraph.sources(lay, None))
    states = {s.step.ref: s for s in imagegraph.states(ctx, runner)}
    written: list[Written] = []
    missing = "missing: run ducklake-infra bundle build"

    def write(artifact: str, bom: cyclonedx.Bom, note: str = "") -> None:
        path = out / file_name(artifact)
        integrity.atomic_write(path, cyclonedx.dumps(bom.document()))
        written.append(Written(artifact, path, len(bom), note))

    for name in build.HOST_TOOLS:
        if lay.tool(name).is_file():
            write(f"bin/{name}", gen.tool_bom(name))
        else:
            written.append(Written(f"bin/{name}", None, note=missing))
    for ref, state in states.items():
        if state.image is None:
            written.append(Written(f"image/{ref}", None, note=missing))
        else:
            note = "" if state.state == "present" else f"image is {state.state}"
            write(f"image/{ref}", gen.image_bom(state, states), note)
    if spec is not None:
        ref, base, lock = backend_image(spec)
        bom = gen.backend_bom(ref, base, lock, states)
        write(f"image/{ref}", bom, "" if "image-id" in bom.subject.properties else "not built")
    if out == lay.sbom:
        _sweep(out, {w.path for w in written if w.path})
    return written


def ensure_backend(runner: Runner, lay: layout.Layout, spec) -> str:
    """``up``: the SBOM of the backend image it runs, in ``<cache>/sbom``, written when
    missing or of another build (``bundle sbom`` may have run before the image existed)."""
    ref, base, lock = backend_image(spec)
    have = images.inspect_image(runner, ref)
    if have is None:
        return f"no SBOM: {ref} is not built on this machine"
    path = lay.sbom / file_name(f"image/{ref}")
    try:
        if cyclonedx.subject_id(json.loads(path.read_text())) == have.id:
            return "backend SBOM current"
    except (OSError, ValueError):
        pass
    bom = Generator(runner, lay, {}).backend_bom(ref, base, lock, {})
    integrity.atomic_write(path, cyclonedx.dumps(bom.document()))
    return f"backend SBOM written ({len(bom)} components)"


def _sweep(out: Path, keep: set[Path]) -> None:
    """Remove the SBOMs of artifacts the bundle no longer has (an old version's image, a
    backend built from older sources), so that ``sbom/*.cdx.json`` is the bundle as it is."""
    for old in out.glob(f"*{SUFFIX}"):
        if old not in keep:
            old.unlink()


def mark_states(arts: list[build.Artifact], lay: layout.Layout) -> None:
    """Each artifact's SBOM in ``<cache>/sbom``: present (of this very artifact), stale (of
    another build of it), missing, or ``-`` (none is made for this kind of artifact, or
    the artifact is missing)."""
    named = set(tool_artifacts()) | set(image_artifacts(images.OPTIONAL_ROOTFS_IMAGES))
    for a in arts:
        if a.name not in named or a.id is None:
            a.sbom = "-"
            continue
        try:
            doc = json.loads((lay.sbom / file_name(a.name)).read_text())
        except FileNotFoundError:
            a.sbom = "missing"
            continue
        except (OSError, ValueError):
            a.sbom = "stale"
            continue
        a.sbom = "present" if cyclonedx.subject_id(doc) == a.id else "stale"


def summary_json(out: Path, written: list[Written], seconds: float) -> dict:
    return {"out": str(out), "seconds": round(seconds, 1),
            "sboms": {w.artifact: {"path": str(w.path) if w.path else None,
                                   "components": w.components,
                                   **({"note": w.note} if w.note else {})} for w in written}}


def summary_table(written: list[Written]) -> str:
    rows = [("ARTIFACT", "COMPONENTS", "FILE")]
    rows += [(w.artifact, str(w.components) if w.path else "-",
              (w.path.name if w.path else "-") + (f" ({w.note})" if w.note else ""))
             for w in written]
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    return "\n".join(f"{r[0].ljust(width[0])}  {r[1].rjust(width[1])}  {r[2]}" for r in rows)
