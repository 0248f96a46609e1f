"""What the bundle's artifacts are made of, read from the artifacts themselves.

Three readers, each of one kind of evidence, none of which needs the network:

* Go binaries: the build info every Go binary embeds, as ``go version -m`` prints it
  (the main module, each dependency with its ``h1:`` sum, replacements, the toolchain);
* Debian images: ``/var/lib/dpkg/status`` (packages that are installed) and
  ``/etc/debian_version``, read from the image by ``cat`` in a throwaway container;
* the backend: the packages ``uv sync --frozen --no-dev`` installs from ``backend/uv.lock``,
  with the one wheel an installer picks for the image's Python, glibc and machine.
"""

from __future__ import annotations

import platform
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging import tags
from packaging.markers import Marker
from packaging.utils import canonicalize_name, parse_wheel_filename

from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.host import DOCKER
from ducklake_infra.provision.runner import Runner


# --------------------------------------------------------------------------
# Go build info
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class GoModule:
    path: str
    version: str
    sum: str | None = None           # h1:<base64 sha256>, None for a local replacement
    replaces: str | None = None      # "path version" of the requirement it replaced


@dataclass(frozen=True)
class GoBinary:
    go: str                          # toolchain, e.g. go1.26.8
    package: str                     # main package path
    main: GoModule
    deps: tuple[GoModule, ...]
    settings: dict = field(default_factory=dict, compare=False)


def parse_go_version_m(text: str) -> GoBinary:
    """Parse ``go version -m <one binary>``: ``<file>: go1.x`` then tab-separated
    ``path``/``mod``/``dep``/``=>``/``build`` lines; a ``=>`` line replaces the
    ``dep`` (or ``mod``) line before it."""
    lines = text.splitlines()
    if not lines or ": go" not in lines[0]:
        raise ValueError(f"not go version -m output: {lines[:1]}")
    go = lines[0].rsplit(": ", 1)[1].strip()
    package, main, deps, settings, last = "", None, [], {}, ""
    for line in lines[1:]:
        kind, *rest = line.strip("\t").split("\t")
        if kind == "path" and rest:
            package = rest[0]
        elif kind in ("mod", "dep", "=>") and rest:
            replaced = None
            if kind == "=>":
                old = main if last == "mod" else deps.pop() if last == "dep" else None
                if old is None:
                    continue
                replaced, kind = f"{old.path} {old.version}", last
            mod = GoModule(rest[0], rest[1] if len(rest) > 1 else "(devel)",
                           rest[2] if len(rest) > 2 else None, replaced)
            if kind == "mod":
                main = mod
            else:
                deps.append(mod)
            last = kind
        elif kind == "build" and rest:
            key, _, value = rest[0].partition("=")
            settings[key] = value
    if main is None:
        main = GoModule(package or "command-line-arguments", "(devel)")
    return GoBinary(go, package, main, tuple(deps), settings)


def go_binary(runner: Runner, path: Path) -> GoBinary | None:
    """The build info of ``path``; None when it is not a Go binary (pause is C)."""
    res = runner.run(["go", "version", "-m", str(path)], timeout=60, check=False,
                     mutating=False, env={"GOTOOLCHAIN": "local"})
    if res.returncode != 0:
        if "not a Go executable" in res.stderr + res.stdout:
            return None
        raise DucklakeInfraError(f"go version -m {path}: exit {res.returncode}: "
                                 f"{(res.stderr or res.stdout).strip()}")
    return parse_go_version_m(res.stdout)


# --------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str
    source: str                      # source package name (== name when none is given)
    source_version: str


@dataclass(frozen=True)
class DebianImage:
    release: str                     # /etc/debian_version, e.g. 12.13
    packages: tuple[DebPackage, ...]

    def package(self, name: str) -> DebPackage | None:
        return next((p for p in self.packages if p.name == name), None)


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """Installed packages of a dpkg status file (``Status: install ok installed``);
    half-removed ones (``deinstall ok config-files``) are not in the image's files."""
    out = []
    for para in re.split(r"\n\s*\n", text.strip()):
        fields: dict[str, str] = {}
        for line in para.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue                 # continuation lines (descriptions, conffiles)
            k, _, v = line.partition(":")
            fields[k] = v.strip()
        if not fields.get("Package") or not fields.get("Status", "").endswith(" installed"):
            continue
        version = fields.get("Version", "")
        src = fields.get("Source", fields["Package"])
        m = re.match(r"^(\S+)(?:\s+\((\S+)\))?$", src)
        src_name, src_version = (m.group(1), m.group(2) or version) if m else (src, version)
        out.append(DebPackage(fields["Package"], version, fields.get("Architecture", ""),
                              src_name, src_version))
    return sorted(out, key=lambda p: (p.name, p.arch))


DPKG_STATUS = "/var/lib/dpkg/status"
DEBIAN_VERSION = "/etc/debian_version"


def read_debian_image(runner: Runner, ref: str) -> DebianImage:
    """The image's Debian release and installed packages. ``docker run --rm`` of the
    image's own ``cat``: one command, with no network, the root filesystem read-only, no
    log kept, never a pull, and nothing left behind (the engine removes the container)."""
    res = runner.run([DOCKER, "run", "--rm", "--network", "none", "--read-only",
                      "--log-driver", "none", "--pull", "never", "--user", "0",
                      "--entrypoint", "cat", ref, DEBIAN_VERSION, DPKG_STATUS],
                     timeout=120, mutating=False)
    release, _, status = res.stdout.partition("\n")
    return DebianImage(release.strip(), tuple(parse_dpkg_status(status)))


# --------------------------------------------------------------------------
# Python packages from uv.lock
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class PyPackage:
    name: str
    version: str
    dist: str | None = None          # file name of the wheel (or sdist) it installs from
    sha256: str | None = None
    local: bool = False              # the project itself (not from a registry)


@dataclass(frozen=True)
class PyTarget:
    """Where the packages are installed: CPython version, glibc, machine."""
    python: str                      # full version, e.g. 3.11.2
    glibc: tuple[int, int] = (2, 17)
    machine: str = field(default_factory=platform.machine)

    @classmethod
    def of_debian(cls, image: DebianImage, python_minor: str) -> "PyTarget":
        """The target an image's Debian packages describe: its python3.X and libc6."""
        py = image.package(f"python{python_minor}")
        libc = image.package("libc6")
        python = re.match(r"[\d.]+", py.version).group(0).rstrip(".") if py else python_minor
        glibc = tuple(int(x) for x in libc.version.split("-")[0].split(".")[:2]) if libc \
            else (2, 17)
        machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(libc.arch, libc.arch) if libc \
            else platform.machine()
        return cls(python, glibc, machine)

    def environment(self) -> dict[str, str]:
        """PEP 508 marker values of CPython on Linux."""
        major_minor = ".".join(self.python.split(".")[:2])
        return {"implementation_name": "cpython", "implementation_version": self.python,
                "os_name": "posix", "platform_machine": self.machine,
                "platform_python_implementation": "CPython", "platform_release": "",
                "platform_system": "Linux", "platform_version": "", "python_full_version":
                self.python, "python_version": major_minor, "sys_platform": "linux"}

    def tag_order(self) -> list[tags.Tag]:
        """Wheel tags this target accepts, most preferred first (as an installer ranks them)."""
        major, minor = (int(x) for x in self.python.split(".")[:2])
        m = self.machine
        legacy = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}
        plats = []
        for glibc_minor in range(self.glibc[1], 4, -1):
            plats.append(f"manylinux_2_{glibc_minor}_{m}")
            if (2, glibc_minor) in legacy:
                plats.append(f"{legacy[(2, glibc_minor)]}_{m}")
        plats.append(f"linux_{m}")
        abi = f"cp{major}{minor}"
        return [*tags.cpython_tags((major, minor), [abi], plats),
                *tags.compatible_tags((major, minor), abi, plats)]


def _chosen_dist(pkg: dict, order: dict[tags.Tag, int]) -> tuple[str | None, str | None]:
    """The wheel an installer takes for the target (best-ranked tag), else the sdist."""
    best = None
    for wheel in pkg.get("wheels", []):
        name = wheel["url"].rsplit("/", 1)[-1]
        rank = min((order[t] for t in parse_wheel_filename(name)[3] if t in order), default=None)
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, name, wheel.get("hash"))
    if best:
        return best[1], best[2]
    sdist = pkg.get("sdist")
    if sdist:
        return (sdist.get("url") or "").rsplit("/", 1)[-1] or None, sdist.get("hash")
    return None, None


def _applies(dep: dict, env: dict[str, str]) -> bool:
    marker = dep.get("marker")
    return not marker or Marker(marker).evaluate(env)


def lock_packages(lock_path: Path, project: str, target: PyTarget) -> list[PyPackage]:
    """Every package ``uv sync --frozen --no-dev`` installs for ``project`` on ``target``:
    the project's dependencies and theirs (extras followed), markers evaluated for the
    target, the dev groups left out; the project itself first."""
    lock = tomllib.loads(lock_path.read_text())
    by_name = {canonicalize_name(p["name"]): p for p in lock.get("package", [])}
    env, order = target.environment(), {t: i for i, t in enumerate(target.tag_order())}
    root = canonicalize_name(project)
    if root not in by_name:
        raise ValueError(f"{lock_path}: no package {project}")
    seen, todo = {root}, [root]
    while todo:
        pkg = by_name[todo.pop()]
        wanted = [d for d in pkg.get("dependencies", []) if _applies(d, env)]
        for dep in list(wanted):
            for extra in dep.get("extra", []):
                opt = by_name[canonicalize_name(dep["name"])].get("optional-dependencies", {})
                wanted += [d for d in opt.get(extra, []) if _applies(d, env)]
        for dep in wanted:
            name = canonicalize_name(dep["name"])
            if name not in seen:
                seen.add(name)
                todo.append(name)
    out = []
    for name in [root, *sorted(seen - {root})]:
        pkg = by_name[name]
        local = "registry" not in pkg.get("source", {})
        dist, digest = (None, None) if local else _chosen_dist(pkg, order)
        sha = digest.split(":", 1)[1] if digest and digest.startswith("sha256:") else None
        out.append(PyPackage(pkg["name"], pkg.get("version", ""), dist, sha, local))
    return out
