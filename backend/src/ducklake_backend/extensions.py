"""Offline DuckDB extensions from the duckdb-extension-* PyPI wheels.

Nothing is ever downloaded: autoinstall/autoload are off, and each extension
is installed from the file shipped inside its wheel. The postgres extension
must be installed under its canonical name ``postgres_scanner``, so its file is
copied to a cache directory as ``postgres_scanner.duckdb_extension`` first.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import duckdb

from .sqlsafety import sql_literal


@dataclass(frozen=True)
class ExtensionSpec:
    package: str  # Python package of the wheel
    file_stem: str  # file name in the wheel, without .duckdb_extension
    name: str  # the name DuckDB installs and LOADs it under


EXTENSIONS = (
    ExtensionSpec("duckdb_extension_ducklake", "ducklake", "ducklake"),
    ExtensionSpec("duckdb_extension_httpfs", "httpfs", "httpfs"),
    ExtensionSpec("duckdb_extension_postgres", "postgres", "postgres_scanner"),
)

_lock = threading.RLock()  # INSTALL writes into the shared extension_directory


class ExtensionError(RuntimeError):
    pass


def find_extension_file(spec: ExtensionSpec) -> Path:
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ExtensionError(f"package {spec.package} is not installed (pip install {spec.package.replace('_', '-')})")
    version = duckdb.__version__
    for location in found.submodule_search_locations:
        root = Path(location)
        # Prefer the file built for this DuckDB version.
        exact = root / "extensions" / f"v{version}" / f"{spec.file_stem}.duckdb_extension"
        if exact.is_file():
            return exact
        candidates = sorted(root.rglob(f"{spec.file_stem}.duckdb_extension"))
        if candidates:
            return candidates[0]
    raise ExtensionError(f"no {spec.file_stem}.duckdb_extension inside package {spec.package}")


def cache_dir() -> Path:
    base = os.environ.get("DUCKLAKE_EXTENSION_CACHE") or os.path.join(tempfile.gettempdir(), "ducklake-backend-ext")
    path = Path(base) / f"v{duckdb.__version__}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepared_files() -> dict[str, Path]:
    """Map extension name -> a file named ``<name>.duckdb_extension`` ready for INSTALL."""
    out: dict[str, Path] = {}
    with _lock:
        target_dir = cache_dir()
        for spec in EXTENSIONS:
            src = find_extension_file(spec)
            if src.name == f"{spec.name}.duckdb_extension":
                out[spec.name] = src
                continue
            dst = target_dir / f"{spec.name}.duckdb_extension"
            if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
                tmp = dst.with_suffix(f".tmp{os.getpid()}")
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
            out[spec.name] = dst
    return out


def connection_config() -> dict[str, object]:
    """DuckDB config for a database that never fetches anything from the network."""
    return {
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
        "extension_directory": str(cache_dir() / "installed"),
    }


def install_and_load(con: duckdb.DuckDBPyConnection) -> None:
    with _lock:
        for name, path in prepared_files().items():
            con.execute(f"INSTALL {sql_literal(str(path))}")
            con.execute(f"LOAD {name}")
