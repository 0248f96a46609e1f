"""Issue 17: no half-written artifacts (partial names, renamed when complete), free space
checked before each large step, and sha256 verification that does not re-read unchanged
files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import disk, integrity
from ducklake_infra.provision.errors import DucklakeInfraError

from .bundleworld import World, fake_host, free_space

BUNDLE_SRC = Path(integrity.__file__).parent


def _built_world(path: Path, monkeypatch) -> World:
    fake_host(monkeypatch)
    w = World(path)
    w.build()
    return w


@pytest.fixture
def world(tmp_path, monkeypatch):
    return _built_world(tmp_path / "w", monkeypatch)


# --------------------------------------------------------------------------
# item 3: partial names
# --------------------------------------------------------------------------
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
# item 4: free space before each large step
# --------------------------------------------------------------------------
def test_a_step_with_work_checks_free_space_and_says_need_free_and_where(world, monkeypatch):
    world.rebuild_output("kubernetes", "kube-apiserver", b"patched")
    free_space(monkeypatch, 0.7)
    with pytest.raises(DucklakeInfraError) as exc:
        world.build()
    msg = str(exc.value)
    assert "\n" not in msg
    # cache, engine root and Go cache are one filesystem here: binary image needs add up
    need = sum(disk.STEP_NEEDS_GIB["binary image"].values())
    assert msg == (f"binary image (cache + docker) needs {need:g} GiB free under "
                   f"{world.lay.root}, only 0.7 GiB free there: free space or use --cache-dir")


def test_a_no_op_build_needs_no_free_space(world, monkeypatch):
    free_space(monkeypatch, 0.001)
    assert world.build() == []


def test_go_build_checks_the_go_cache_filesystem(tmp_path, monkeypatch):
    seen = []
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda p: seen.append(Path(p)) or usage._replace(free=10 * 2**30))
    (tmp_path / "gocache").mkdir()
    disk.check("go build", {"gocache": tmp_path / "gocache" / "x", "cache": tmp_path / "c"})
    assert seen == [tmp_path / "gocache"]        # one filesystem: checked once, needs summed
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=5.5 * 2**30))
    with pytest.raises(DucklakeInfraError, match=r"^go build \(gocache \+ cache\) needs 6 GiB"):
        disk.check("go build", {"gocache": tmp_path / "gocache", "cache": tmp_path})


def test_every_step_names_its_places():
    assert all(set(needs) <= {"cache", "docker", "gocache"} and all(v > 0 for v in needs.values())
               for needs in disk.STEP_NEEDS_GIB.values())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root and unshare for a private tmpfs")
def test_on_a_real_small_filesystem(tmp_path):
    """A 4 MiB tmpfs, mounted in a private mount namespace (gone with the process): the
    chart step is refused with the real free space, and a copy that runs out of space
    leaves the old file whole and no partial behind."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from ducklake_infra.provision.bundle import disk, integrity
        from ducklake_infra.provision.errors import DucklakeInfraError
        mnt = Path({str(mnt)!r})
        try:
            disk.check("chart", {{"cache": mnt}})
        except DucklakeInfraError as exc:
            print("refused:", exc)
        big = Path({str(tmp_path / 'big')!r})
        big.write_bytes(os.urandom(6 << 20))
        (mnt / "tool").write_bytes(b"old")
        try:
            integrity.atomic_copy(big, mnt / "tool")
        except OSError as exc:
            print("copy failed:", exc.errno)
        print("left:", sorted(p.name for p in mnt.iterdir()), (mnt / "tool").read_bytes())
    """)
    res = subprocess.run(["unshare", "-m", "sh", "-c",
                          f"mount -t tmpfs -o size=4m tmpfs {mnt} && exec {sys.executable} -c \"$0\"",
                          code], capture_output=True, text=True, timeout=60)
    if "mount" in res.stderr and res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    assert res.returncode == 0, res.stderr
    assert f"refused: chart (cache) needs 0.01 GiB free under {mnt}, only 0.0 GiB free" in res.stdout
    assert "copy failed: 28" in res.stdout
    assert "left: ['tool'] b'old'" in res.stdout


# --------------------------------------------------------------------------
# item 5: verification does not re-read unchanged files
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
