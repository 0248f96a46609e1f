"""Issue 17: no half-written artifacts (partial names, renamed when complete), free space
checked before each large step, and sha256 verification that does not re-read unchanged
files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import disk, gobuild, integrity, pins
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.errors import DucklakeInfraError

from .bundleworld import World, fake_host, free_space

BUNDLE_SRC = Path(integrity.__file__).parent


def _tree(root: Path) -> dict[str, bytes | str]:
    """Every file (bytes) and symlink (target) under ``root``, but logs, the hash store and
    the Go build's wrapper modules (written by a Go build, not artifacts)."""
    out: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if rel.startswith(("logs", "build/gomod")) or p.name == layout.Layout(root).hash_store.name:
            continue
        if p.is_symlink():
            out[rel] = os.readlink(p)
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def _built_world(path: Path, monkeypatch) -> World:
    fake_host(monkeypatch)
    w = World(path)
    w.build()
    return w


@pytest.fixture
def world(tmp_path, monkeypatch):
    return _built_world(tmp_path / "w", monkeypatch)


@pytest.fixture
def reference(tmp_path, monkeypatch):
    """What an uninterrupted build leaves (a second world, built once)."""
    return _tree(_built_world(tmp_path / "ref", monkeypatch).lay.root)


def _same_as(world: World, reference: dict) -> None:
    """The world's cache holds what the reference holds (paths under the cache relative)."""
    got = _tree(world.lay.root)
    assert sorted(got) == sorted(reference)
    for rel, data in got.items():
        if rel not in ("bundle.json", "charts/.minio.files.json") and isinstance(data, bytes):
            assert data == reference[rel], rel


# --------------------------------------------------------------------------
# item 3: partial names
# --------------------------------------------------------------------------
def test_a_copy_killed_with_sigkill_leaves_the_old_file_whole_and_the_next_build_repairs(
        world, reference, tmp_path):
    """A real SIGKILL mid-copy: the source is a FIFO the test feeds half-way, so the copy
    is caught with some bytes written. bin/kind is never half-written under its name;
    status never calls it present; the next build ends as an uninterrupted one did."""
    kind = world.lay.tool("kind")
    kind.write_bytes(b"\x7fELF an older kind, whole")      # what the killed copy replaces
    old = kind.read_bytes()
    fifo = tmp_path / "kind.fifo"
    os.mkfifo(fifo)
    code = textwrap.dedent(f"""
        from pathlib import Path
        from ducklake_infra.provision.bundle import integrity
        integrity.atomic_copy(Path({str(fifo)!r}), Path({str(kind)!r}))
    """)
    child = subprocess.Popen([sys.executable, "-c", code])
    partial = integrity.partial_name(kind)
    with open(fifo, "wb") as feed:
        feed.write(b"\x7fELF" + b"n" * (3 * integrity.CHUNK))
        feed.flush()
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size >= integrity.CHUNK):
            assert time.monotonic() < deadline, "the copy never started"
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert partial.exists() and kind.read_bytes() == old       # old file whole, beside it the partial
    art = world.states()["bin/kind"]
    assert art.state == "corrupt" and not art.present          # the old bytes are not what was built
    world.build()
    assert not partial.exists()
    _same_as(world, reference)


def test_a_go_build_killed_midway_is_never_present_and_is_rebuilt(world, reference):
    """build_tool removes the tool's stamp before `go build` and writes it after: outputs
    of a build that did not finish have no record, whatever their bytes."""
    tool = pins.go_tool("kubernetes")
    gobuild.stamp_path(tool, world.lay.node_bin).unlink()
    kubelet = world.lay.node_bin / "kubelet"
    kubelet.write_bytes(kubelet.read_bytes()[:100])             # killed mid-write
    art = world.states()["node-bin/kubelet"]
    assert (art.state, art.detail, art.present) == ("stale", "no finished build recorded it", False)
    assert world.build() == []                                  # same bytes again: no image rebuilt
    assert world.runner.executed(r"^go build .*k8s.io/kubernetes/cmd/kubelet")
    _same_as(world, reference)


def test_an_altered_go_output_is_rebuilt_not_stamped(world, reference):
    """Found on the real cache: a byte appended to build/bin/mc left its build ID intact,
    so `go build` kept the file and the build stamped the altered bytes as built (and
    rebuilt the mc and node images from them). build_tool now removes the outputs first."""
    kubelet = world.lay.node_bin / "kubelet"
    kubelet.write_bytes(kubelet.read_bytes() + b"\0")
    assert world.states()["node-bin/kubelet"].state == "corrupt"
    world.build()
    assert kubelet.read_bytes() == World.built_bytes("kubelet")
    _same_as(world, reference)


def test_a_write_that_fails_midway_leaves_no_file_under_the_real_name(world, reference,
                                                                      monkeypatch):
    def broken(src, dst):
        dst.write(src.read(10))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(integrity, "copy_stream", broken)
    world.lay.tool("helm").unlink()
    with pytest.raises(OSError):
        world.build()
    assert not world.lay.tool("helm").exists()
    assert not integrity.partial_name(world.lay.tool("helm")).exists()
    assert world.states()["bin/helm"].state == "missing"
    monkeypatch.undo()
    fake_host(monkeypatch)
    world.build()
    _same_as(world, reference)


def test_a_chart_swap_killed_between_its_renames_is_missing_then_restored(world, reference,
                                                                       monkeypatch):
    (world.lay.chart("minio") / "values.yaml").write_text("altered\n")
    real_replace, calls = os.replace, []

    def dies_second_time(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt          # as good as a kill for what is on disk
        real_replace(src, dst)

    monkeypatch.setattr(integrity.os, "replace", dies_second_time)
    with pytest.raises(KeyboardInterrupt):
        world.build()
    monkeypatch.setattr(integrity.os, "replace", real_replace)
    assert not world.lay.chart("minio").exists()
    assert world.states()["chart/minio"].state == "missing"
    world.build()
    assert not list(world.lay.charts.glob(".*.partial"))
    _same_as(world, reference)


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
        from ducklake_infra.provision.bundle import disk, gobuild, integrity, pins
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


def test_a_no_op_build_reads_no_binary_and_the_memory_survives_the_process(
        world, hash_reads, monkeypatch):
    monkeypatch.setattr(integrity, "RACY_NS", 0)
    world.build()                       # entries hashed right after writing are re-read once
    hash_reads.clear()
    assert world.build() == []
    assert not [n for n in hash_reads if (world.lay.node_bin / n).exists()]
    integrity.HASHES.entries.clear()    # a new process: only the store remains
    integrity.HASHES.store = None
    hash_reads.clear()
    world.states()
    assert not [n for n in hash_reads if (world.lay.node_bin / n).exists()]
