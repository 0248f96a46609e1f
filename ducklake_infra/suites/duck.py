"""DuckDB in the test process, offline: extensions from the duckdb-extension-* wheels
(the postgres one installed under its canonical name postgres_scanner), as the
backend does (backend/src/ducklake_backend/extensions.py)."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import duckdb

WHEELS = (("duckdb_extension_ducklake", "ducklake", "ducklake"),
          ("duckdb_extension_httpfs", "httpfs", "httpfs"),
          ("duckdb_extension_postgres", "postgres", "postgres_scanner"))


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def extension_file(package: str, stem: str) -> Path:
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        raise RuntimeError(f"the wheel {package.replace('_', '-')} is not installed")
    for loc in found.submodule_search_locations:
        exact = Path(loc) / "extensions" / f"v{duckdb.__version__}" / f"{stem}.duckdb_extension"
        if exact.is_file():
            return exact
        hits = sorted(Path(loc).rglob(f"{stem}.duckdb_extension"))
        if hits:
            return hits[0]
    raise RuntimeError(f"no {stem}.duckdb_extension in {package}")


def connect(workdir: Path | None = None) -> duckdb.DuckDBPyConnection:
    work = Path(workdir or tempfile.mkdtemp(prefix="ducklake-suite-"))
    (work / "installed").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(":memory:", config={"autoinstall_known_extensions": False,
                                             "autoload_known_extensions": False,
                                             "extension_directory": str(work / "installed")})
    for package, stem, name in WHEELS:
        src = extension_file(package, stem)
        dst = work / f"{name}.duckdb_extension"
        if src.name != dst.name:
            shutil.copyfile(src, dst)
            src = dst
        con.execute(f"INSTALL {_lit(str(src))}")
        con.execute(f"LOAD {name}")
    return con


def attach_read_only(con, *, pg_host: str, pg_port: int, database: str, user: str, password: str,
                     s3_endpoint: str, access_key: str, secret_key: str, region: str,
                     lake_bucket: str, alias: str = "lake") -> None:
    con.execute(f"CREATE OR REPLACE SECRET suite_s3 (TYPE s3, KEY_ID {_lit(access_key)}, "
                f"SECRET {_lit(secret_key)}, ENDPOINT {_lit(s3_endpoint)}, URL_STYLE 'path', "
                f"USE_SSL false, REGION {_lit(region)})")
    conninfo = f"dbname={database} host={pg_host} port={pg_port} user={user} password={password}"
    con.execute(f"ATTACH {_lit('ducklake:postgres:' + conninfo)} AS {alias} "
                f"(DATA_PATH {_lit(f's3://{lake_bucket}/')}, READ_ONLY)")
