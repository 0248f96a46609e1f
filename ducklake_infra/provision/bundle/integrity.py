"""How the bundle writes its files, and how it knows what a file holds.

Writing: every file the bundle keeps (binaries in bin/, charts, stamps, manifests) is
written under ``.<name>.partial`` in its own directory and renamed over its real name
only when complete (:func:`atomic_write`, :func:`atomic_copy`, :func:`atomic_tree`). A
build killed mid-write leaves a ``.partial`` name, never a half-written file under the
real one; the next build sweeps them (:func:`sweep_partials`).

Knowing: :func:`sha256` remembers each file's digest with its size, mtime, ctime and
inode, and reads the file again only when one of those changed -- or when the file changed
less than ``RACY_NS`` before it was hashed, since a rewrite within the timestamps'
granularity would keep them (git's "racy" rule). The memory is kept across runs in the
store that :func:`use_hash_store` names (``build/sha256-cache.json``): a no-op build
or ``bundle status`` reads none of the ~1.3 GB of binaries.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Iterator

PARTIAL = ".partial"
RACY_NS = 2_000_000_000
CHUNK = 1 << 20


def partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{PARTIAL}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def publish(tmp: Path, path: Path, mode: int) -> None:
    """Give a completely written partial file its mode and its real name."""
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextmanager
def _writing(path: Path, mode: int) -> Iterator[BinaryIO]:
    """An open file under ``path``'s partial name, renamed to ``path`` once the block is
    done and the bytes are on disk; removed if the block fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_name(path)
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path, mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: str | bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through its partial name."""
    with _writing(path, mode) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)


def copy_stream(src: BinaryIO, dst: BinaryIO) -> None:
    """Copy one open file to another in chunks (the one place bytes are copied)."""
    for chunk in iter(lambda: src.read(CHUNK), b""):
        dst.write(chunk)


def atomic_copy(src: Path, dst: Path, mode: int = 0o755) -> None:
    """Copy ``src`` to ``dst`` through the partial name of ``dst``."""
    with open(src, "rb") as fin, _writing(dst, mode) as fout:
        copy_stream(fin, fout)


def atomic_tree(src: Path, dst: Path, file_mode: int = 0o644, dir_mode: int = 0o755) -> None:
    """Replace the directory ``dst`` by a copy of ``src``: copied whole under the partial
    name, then swapped in (the old copy moves aside first, and is removed last)."""
    tmp, old = partial_name(dst), partial_name(dst.with_name(dst.name + ".old"))
    for p in (tmp, old):
        if p.exists():
            _remove(p)
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        tmp.mkdir()
        for path in sorted(src.rglob("*")):
            target = tmp / path.relative_to(src)
            if path.is_dir():
                target.mkdir()
                target.chmod(dir_mode)
            else:
                with open(path, "rb") as fin, open(target, "wb") as fout:
                    copy_stream(fin, fout)
                target.chmod(file_mode)
        tmp.chmod(dir_mode)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    if old.exists():
        shutil.rmtree(old)


def sweep_partials(*dirs: Path) -> list[Path]:
    """Remove what a killed build left under partial names in ``dirs``."""
    gone = []
    for d in dirs:
        if d.is_dir():
            for p in d.glob(f".*{PARTIAL}"):
                _remove(p)
                gone.append(p)
    return gone


# --------------------------------------------------------------------------
# sha256, remembered by stat
# --------------------------------------------------------------------------
def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class HashCache:
    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}
        self.store: Path | None = None

    def load(self, store: Path) -> None:
        self.store = store
        try:
            data = json.loads(store.read_text())
        except (OSError, ValueError):
            return
        if isinstance(data, dict):
            self.entries.update({k: v for k, v in data.items() if isinstance(v, dict)})

    def save(self) -> None:
        if self.store is None:
            return
        keep = {k: v for k, v in self.entries.items() if os.path.exists(k)}
        atomic_write(self.store, json.dumps(keep, sort_keys=True))

    def sha256(self, path: Path) -> str:
        key = str(Path(path).absolute())
        st = os.stat(key)
        entry = self.entries.get(key)
        if entry and entry.get("stat") == _stat_key(st) and \
                entry.get("checked_ns", 0) - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            return entry["sha256"]
        now = time.time_ns()
        digest = _hash_file(Path(key))
        self.entries[key] = {"stat": _stat_key(st), "sha256": digest, "checked_ns": now}
        return digest


HASHES = HashCache()


def use_hash_store(store: Path) -> None:
    """Remember digests across runs in ``store`` (read now, written by save_hash_store)."""
    if HASHES.store != store:
        HASHES.load(store)


def save_hash_store() -> None:
    HASHES.save()


def sha256(path: Path) -> str:
    return HASHES.sha256(path)


def file_record(path: Path) -> dict:
    """What a file is: its size and sha256 (what stamps and manifests record)."""
    return {"size": path.stat().st_size, "sha256": sha256(path)}


def same_file(path: Path, record: dict | None) -> bool:
    """``path`` is a file holding exactly the recorded bytes (size first, then sha256)."""
    if record is None or not path.is_file() or path.stat().st_size != record.get("size"):
        return False
    return sha256(path) == record.get("sha256")


def tree_records(root: Path) -> dict[str, dict]:
    """Every file under ``root`` by relative path, with its record ({} if no directory)."""
    if not root.is_dir():
        return {}
    return {str(p.relative_to(root)): file_record(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def tree_changes(recorded: dict[str, dict], actual: dict[str, dict]) -> list[str]:
    """How a tree differs from its record: ``altered: x``, ``missing: y``, ``unexpected: z``."""
    out = [f"missing: {p}" for p in sorted(recorded.keys() - actual.keys())]
    out += [f"altered: {p}" for p in sorted(recorded.keys() & actual.keys())
            if recorded[p] != actual[p]]
    return out + [f"unexpected: {p}" for p in sorted(actual.keys() - recorded.keys())]


def read_json(path: Path) -> dict:
    """A JSON object written by this module ({} when missing or unreadable)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
