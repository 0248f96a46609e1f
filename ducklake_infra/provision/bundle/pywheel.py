"""Pure-Python wheels pinned by sha256 (``pins.Wheel``), for images built from Debian
packages: the one thing such an image takes from PyPI instead of Debian's mirror.

``fetch`` keeps the wheel in ``<cache>/build/wheels``: downloaded by pip, PyPI's own
client, with ``--require-hashes --no-deps --only-binary=:all:`` (pip refuses other
bytes), then checked again here before it is used, and on every later build (a
truncated or altered copy is fetched again). A warm build needs no network.
``install_commands`` unpacks it into the image's Debian Python (a pure wheel installs by
unpacking: its ``.dist-info`` records name and version) and imports it once, offline:
they are part of the image's recipe (``RootfsImage.post``), so its stamp covers them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ducklake_infra.provision.bundle import integrity
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import pins
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.runner import CommandError, Runner

# Debian's python3 (3.11 on bookworm) looks here for packages not installed by dpkg.
SITE_PACKAGES = f"/usr/local/lib/python{pins.PYTHON_VERSION}/dist-packages"


def cached(lay: layout.Layout, wheel: pins.Wheel) -> Path:
    return lay.root / "build" / "wheels" / wheel.filename


def is_cached(lay: layout.Layout, wheel: pins.Wheel) -> bool:
    path = cached(lay, wheel)
    return path.is_file() and integrity.sha256(path) == wheel.sha256


def download_argv(requirements: Path, dest: Path) -> list[str]:
    return ["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
            "--require-hashes", "--no-input", "-r", str(requirements), "-d", str(dest)]


def fetch(runner: Runner, lay: layout.Layout, wheel: pins.Wheel) -> Path:
    """The wheel in the cache, holding exactly the pinned bytes."""
    dest = cached(lay, wheel)
    if is_cached(lay, wheel):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a partial name: what a killed download leaves is swept by the next build
    with tempfile.TemporaryDirectory(prefix=".wheel-", suffix=integrity.PARTIAL,
                                     dir=dest.parent) as tmp:
        req = Path(tmp) / "requirements.txt"
        integrity.atomic_write(req, wheel.requirement())
        try:
            runner.run_logged(download_argv(req, Path(tmp)), timeout=600)
        except CommandError as e:
            raise DucklakeInfraError(
                f"could not download {wheel.filename} from PyPI with pip (python3 -m pip; "
                f"on Debian: apt-get install python3-pip): {e}") from e
        got = Path(tmp) / wheel.filename
        digest = integrity.sha256(got) if got.is_file() else "nothing"
        if digest != wheel.sha256:
            raise DucklakeInfraError(f"{wheel.filename}: sha256 {digest}, pinned "
                                     f"{wheel.sha256} (pins.py): not used")
        integrity.atomic_copy(got, dest, mode=0o644)
    return dest


def install_commands(wheel: pins.Wheel, *imports: str) -> tuple[tuple[str, ...], ...]:
    """Commands run in the image's root (chroot) once the build has put the wheel in its
    ``/tmp``: unpack it into Debian's site directory, import ``imports`` there (no
    network, no bytecode left behind), remove the wheel."""
    where = f"/tmp/{wheel.filename}"
    check = "; ".join(f"import {m}" for m in imports)
    return (("python3", "-m", "zipfile", "-e", where, SITE_PACKAGES),
            *([("env", "PYTHONDONTWRITEBYTECODE=1", "python3", "-c", check)] if imports else []),
            ("rm", "-f", where))
