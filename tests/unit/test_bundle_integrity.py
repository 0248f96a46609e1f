"""Issue 17: no half-written artifacts (partial names, renamed when complete), and sha256
verification that does not re-read unchanged files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import integrity

BUNDLE_SRC = Path(integrity.__file__).parent


def test_every_file_the_bundle_writes_goes_through_integrity():
    """One helper for the job: no module of the bundle writes or copies a file itself."""
    pattern = re.compile(r"\.write_text\(|\.write_bytes\(|shutil\.copy2?\(|shutil\.copyfile\(|"
                         r"open\([^)]*[\"'][wa]b?[\"']")
    offenders = [f"{p.name}:{n}" for p in BUNDLE_SRC.glob("*.py") if p.name != "integrity.py"
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_atomic_write_and_copy_leave_only_the_final_name(tmp_path):
    integrity.atomic_write(tmp_path / "a.json", "{}")
    integrity.atomic_copy(tmp_path / "a.json", tmp_path / "b", mode=0o700)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b"]
    assert (tmp_path / "b").stat().st_mode & 0o777 == 0o700
    (tmp_path / ".c.partial").write_text("left by a kill")
    assert integrity.sweep_partials(tmp_path) == [tmp_path / ".c.partial"]


# --------------------------------------------------------------------------
# verification does not re-read unchanged files
# --------------------------------------------------------------------------
@pytest.fixture
def hash_reads(monkeypatch):
    reads: list[str] = []
    real = integrity._hash_file
    monkeypatch.setattr(integrity, "_hash_file", lambda p: reads.append(p.name) or real(p))
    return reads


def test_a_file_is_read_again_only_when_its_stat_changed(tmp_path, hash_reads, monkeypatch):
    cache = integrity.HashCache()
    f = tmp_path / "kube-apiserver"
    f.write_bytes(b"v1" * 1000)
    first = cache.sha256(f)
    assert cache.sha256(f) == first and hash_reads == ["kube-apiserver"] * 2   # racy: re-read
    monkeypatch.setattr(integrity, "RACY_NS", -10**12)      # as if hashed long after writing
    cache.sha256(f)
    hash_reads.clear()
    assert cache.sha256(f) == first and hash_reads == []
    f.write_bytes(b"v2" * 1000)                              # same size, other bytes
    assert cache.sha256(f) != first and hash_reads == ["kube-apiserver"]
