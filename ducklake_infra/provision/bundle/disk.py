"""Free space, checked before each large step of the bundle build, not only at its start.

``STEP_NEEDS_GIB`` says how much each step needs and where: ``cache`` is the bundle cache,
``docker`` the Docker engine's root directory, ``gocache`` Go's build cache. Needs that
fall on one filesystem add up. A step that would not fit fails before it starts, in one
line: what needs how much, how much is free, and where.
"""

from __future__ import annotations

from pathlib import Path

from ducklake_infra.provision import host
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.runner import Runner

# GiB each step needs, per place it writes to: estimates, rounded up, from what the CI
# machine's bundle holds (build/bin 0.97 GiB, Go build cache 8.5 GiB for every tool,
# node image 1.76 GB of which ~1.5 GB are the images in its containerd).
STEP_NEEDS_GIB: dict[str, dict[str, float]] = {
    # Before anything, on an empty cache: Go's caches (~9 GiB for every tool), the
    # binaries (~1.3 GiB), the images (~5 GiB). The steps below check again as they go.
    "first build": {"cache": 20},
    # The Go build cache grows by up to ~4 GiB (Kubernetes, cold); the outputs (~600 MiB
    # for Kubernetes' seven binaries) land in build/bin.
    "go build": {"gocache": 5, "cache": 1},
    # debootstrap: the unpacked rootfs (~700 MiB for the node base) and its tar, under the
    # cache; docker import keeps it once more as a layer.
    "rootfs image": {"cache": 2, "docker": 1},
    # docker build of one binary (up to ~110 MiB) over a base: the build context under
    # the cache, one layer in the engine.
    "binary image": {"cache": 0.5, "docker": 0.5},
    # Node assembly: docker save of the node's ~1.5 GiB of images under the cache; in the
    # engine, that tar copied into the build container, containerd's copy, the commit.
    "node assembly": {"cache": 2, "docker": 5},
    # The MinIO chart (~100 KiB) is copied whole before it replaces the old copy.
    "chart": {"cache": 0.01},
}


def places(runner: Runner, lay: layout.Layout) -> dict[str, Path]:
    """Where each place of STEP_NEEDS_GIB is on this machine."""
    docker = runner.run([host.DOCKER, "info", "--format", "{{.DockerRootDir}}"], timeout=60,
                        check=False, mutating=False).stdout.strip()
    gocache = runner.run(["go", "env", "GOCACHE"], timeout=60, check=False,
                         mutating=False).stdout.strip()
    return {"cache": lay.root, "docker": Path(docker or "/var/lib/docker"),
            "gocache": Path(gocache) if gocache else lay.root}


def check(step: str, where: dict[str, Path]) -> None:
    """Fail when ``step`` would not fit (its needs summed per filesystem)."""
    by_fs: dict[int, tuple[Path, float, list[str]]] = {}
    for place, gib in STEP_NEEDS_GIB[step].items():
        path = host.existing_ancestor(where[place])
        first, total, names = by_fs.get(path.stat().st_dev, (path, 0.0, []))
        by_fs[path.stat().st_dev] = (first, total + gib, [*names, place])
    for path, gib, names in by_fs.values():
        host.check_disk(path, gib, f"{step} ({' + '.join(names)})")
