"""Issue 15: `bundle sbom` writes one CycloneDX 1.6 SBOM per artifact (Go modules from the
binaries' build info, Debian packages from the images, Python packages from uv.lock),
each valid against the official schema. No real cache: a FakeDocker world whose `go
version -m` and `docker run ... cat` answer from fixtures, a tiny Go binary built here,
the real backend/uv.lock."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packageurl import PackageURL

from ducklake_infra.provision import cli
from ducklake_infra.provision import spec_file
from ducklake_infra.provision.bundle import contents
from ducklake_infra.provision.bundle import cyclonedx
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import nodeimage, pins
from ducklake_infra.provision.bundle import sbom
from ducklake_infra.provision.errors import DucklakeInfraError

from .bundleworld import FakeDocker, World, fake_host
from .sbomcheck import held_by, holders, load_valid, named, schema_errors

REPO = Path(__file__).resolve().parents[3]
BACKEND_LOCK = REPO / "backend" / "uv.lock"
GO = "go1.26.8"


def h1(text: str) -> str:
    return "h1:" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


def go_version_m(path: str, tool: pins.GoTool) -> str:
    """What `go version -m` prints for a binary of ``tool`` (two deps, one replaced)."""
    return "\n".join([
        f"{path}: {GO}", f"\tpath\t{tool.packages[0]}",
        f"\tmod\t{tool.module}\t{tool.version}\t{h1(tool.module)}",
        f"\tdep\tgithub.com/euank/go-kmsg-parser\tv2.0.0+incompatible\t{h1('kmsg')}",
        "\tdep\tk8s.io/api\tv0.0.0", f"\t=>\tk8s.io/api\tv0.34.12\t{h1('api')}", "\t",
        "\tbuild\t-trimpath=true", "\tbuild\tCGO_ENABLED=0", ""])


DPKG_STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u13
Description: Debian base system miscellaneous files
 This package contains the basic filesystem hierarchy of a Debian system.

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u14
Description: GNU C Library: Shared libraries

Package: zlib1g
Status: install ok installed
Architecture: amd64
Source: zlib
Version: 1:1.2.13.dfsg-1

Package: libfoo1
Status: install ok installed
Architecture: amd64
Source: foo (1.0-1)
Version: 1.0-1+b1

Package: python3.11
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6+deb12u8

Package: removed-long-ago
Status: deinstall ok config-files
Architecture: amd64
Version: 0.9
Conffiles:
 /etc/removed 0123456789abcdef
"""


class SbomDocker(FakeDocker):
    """The bundle world's engine, plus what `bundle sbom` reads: `go version -m` of the
    built outputs, and `cat` of every Debian image's release and dpkg status."""

    def _answer_for(self, argv, cwd=None):
        if argv[:3] == ["go", "version", "-m"]:
            name = Path(argv[3]).name
            tool = next((t for t in pins.GO_TOOLS if name in t.outputs), None)
            if tool is None:
                return 1, f"{argv[3]}: could not read Go build info: not a Go executable"
            return 0, go_version_m(argv[3], tool)
        if argv[0].endswith("docker") and argv[1] == "run" and "cat" in argv:
            return 0, "12.15\n" + DPKG_STATUS
        return super()._answer_for(argv, cwd)


# --------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------
def test_go_build_info_main_module_deps_and_replacements():
    info = contents.parse_go_version_m(go_version_m("/b/kubelet", pins.go_tool("kubernetes")))
    assert (info.go, info.package) == (GO, "k8s.io/kubernetes/cmd/kube-apiserver")
    assert info.main == contents.GoModule("k8s.io/kubernetes", pins.K8S_VERSION, h1("k8s.io/kubernetes"))
    assert [(d.path, d.version, d.replaces) for d in info.deps] == [
        ("github.com/euank/go-kmsg-parser", "v2.0.0+incompatible", None),
        ("k8s.io/api", "v0.34.12", "k8s.io/api v0.0.0")]       # what is built in: the replacement
    assert info.settings == {"-trimpath": "true", "CGO_ENABLED": "0"}
    with pytest.raises(ValueError):
        contents.parse_go_version_m("pause: could not read Go build info")


@pytest.mark.skipif(shutil.which("go") is None, reason="needs the Go toolchain")
def test_build_info_of_a_real_go_binary(tmp_path):
    """A tiny binary built here: its module, and a dependency replaced by a local directory
    (no version, no sum), as the real `go version -m` prints them."""
    (tmp_path / "dep").mkdir()
    (tmp_path / "dep" / "go.mod").write_text("module example.com/dep\n\ngo 1.22\n")
    (tmp_path / "dep" / "dep.go").write_text("package dep\n\nconst Word = \"hello\"\n")
    (tmp_path / "go.mod").write_text("module example.com/tiny\n\ngo 1.22\n\n"
                                     "require example.com/dep v0.0.0\n\n"
                                     "replace example.com/dep => ./dep\n")
    (tmp_path / "main.go").write_text('package main\n\nimport "example.com/dep"\n\n'
                                      "func main() { println(dep.Word) }\n")
    env = {"PATH": f"{Path(shutil.which('go')).parent}:/usr/bin:/bin", "HOME": str(Path.home()),
           "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod", "GOPROXY": "off", "CGO_ENABLED": "0"}
    subprocess.run(["go", "build", "-trimpath", "-o", "tiny", "."], cwd=tmp_path, env=env,
                   check=True, timeout=300)
    runner = layout.bundle_runner(layout.Layout(tmp_path / "cache"))
    info = contents.go_binary(runner, tmp_path / "tiny")
    assert info.go.startswith("go1.") and info.package == "example.com/tiny"
    assert info.main.path == "example.com/tiny"
    assert [(d.path, d.version, d.sum, d.replaces) for d in info.deps] == [
        ("./dep", "(devel)", None, "example.com/dep v0.0.0")]
    bom = cyclonedx.Bom(cyclonedx.Component("bin:tiny", "application", "tiny"))
    sbom.Generator(runner, layout.Layout(tmp_path), {}).add_go_modules(bom, info, "bin:tiny")
    assert schema_errors(cyclonedx.dumps(bom.document())) is None
    assert {c.purl for c in bom.components.values()} == {
        "pkg:golang/example.com/tiny", "pkg:golang/example.com/dep",
        f"pkg:golang/stdlib@{info.go.removeprefix('go')}"}
    (tmp_path / "script").write_text("#!/bin/sh\n")
    (tmp_path / "script").chmod(0o755)
    with pytest.raises(DucklakeInfraError, match="exit 1"):
        contents.go_binary(runner, tmp_path / "script")             # not a binary at all


def test_dpkg_status_lists_installed_packages_with_their_source():
    pkgs = {p.name: p for p in contents.parse_dpkg_status(DPKG_STATUS)}
    assert set(pkgs) == {"base-files", "libc6", "zlib1g", "libfoo1", "python3.11"}
    assert pkgs["libc6"] == contents.DebPackage("libc6", "2.36-9+deb12u14", "amd64", "glibc",
                                         "2.36-9+deb12u14")
    assert (pkgs["libfoo1"].source, pkgs["libfoo1"].source_version) == ("foo", "1.0-1")
    image = contents.DebianImage("12.15", tuple(pkgs.values()))
    assert contents.PyTarget.of_debian(image, "3.11") == contents.PyTarget("3.11.2", (2, 36), "x86_64")


def _lock_entry(name: str) -> dict:
    lock = tomllib.loads(BACKEND_LOCK.read_text())
    return next(p for p in lock["package"] if p["name"] == name)


def test_the_backend_lock_gives_the_packages_and_wheels_the_image_installs():
    target = contents.PyTarget("3.11.2", (2, 36), "x86_64")
    got = {p.name: p for p in contents.lock_packages(BACKEND_LOCK, "ducklake-backend", target)}
    assert got["ducklake-backend"].local and got["ducklake-backend"].sha256 is None
    duckdb = _lock_entry("duckdb")
    assert got["duckdb"].version == duckdb["version"]
    wheel = next(w for w in duckdb["wheels"] if w["url"].endswith(got["duckdb"].dist))
    assert "cp311-cp311-manylinux" in got["duckdb"].dist and "x86_64" in got["duckdb"].dist
    assert "sha256:" + got["duckdb"].sha256 == wheel["hash"]
    assert got["uvicorn"].dist.endswith("-py3-none-any.whl")
    # another machine takes another wheel; a glibc too old for any wheel builds the sdist
    arm = contents.lock_packages(BACKEND_LOCK, "ducklake-backend", contents.PyTarget("3.11.2", (2, 36), "aarch64"))
    assert "aarch64" in next(p for p in arm if p.name == "duckdb").dist
    old = contents.lock_packages(BACKEND_LOCK, "ducklake-backend", contents.PyTarget("3.11.2", (2, 17), "x86_64"))
    assert "sha256:" + next(p for p in old if p.name == "duckdb").sha256 == duckdb["sdist"]["hash"]


def test_lock_closure_follows_markers_and_extras_and_leaves_dev_out(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text('''version = 1
[[package]]
name = "app"
version = "1.0"
source = { editable = "." }
dependencies = [{ name = "web", extra = ["fast"] }, { name = "winonly", marker = "sys_platform == 'win32'" }]
[package.dev-dependencies]
dev = [{ name = "pytest" }]
[[package]]
name = "web"
version = "2.0"
source = { registry = "https://pypi.org/simple" }
sdist = { url = "https://x/web-2.0.tar.gz", hash = "sha256:''' + "ab" * 32 + '''" }
[package.optional-dependencies]
fast = [{ name = "speedups" }]
[[package]]
name = "speedups"
version = "3.0"
source = { registry = "https://pypi.org/simple" }
wheels = [{ url = "https://x/speedups-3.0-py3-none-any.whl", hash = "sha256:''' + "cd" * 32 + '''" }]
[[package]]
name = "winonly"
version = "1.0"
source = { registry = "https://pypi.org/simple" }
[[package]]
name = "pytest"
version = "9.0"
source = { registry = "https://pypi.org/simple" }
''')
    got = contents.lock_packages(lock, "app", contents.PyTarget("3.11.2"))
    assert [(p.name, p.dist, p.sha256) for p in got] == [
        ("app", None, None), ("speedups", "speedups-3.0-py3-none-any.whl", "cd" * 32),
        ("web", "web-2.0.tar.gz", "ab" * 32)]


def test_purls_and_go_sums():
    p = cyclonedx.purl("golang", "github.com/euank/go-kmsg-parser", "v2.0.0+incompatible")
    assert p == "pkg:golang/github.com/euank/go-kmsg-parser@v2.0.0%2Bincompatible"
    back = PackageURL.from_string(p)
    assert (back.namespace, back.name, back.version) == ("github.com/euank", "go-kmsg-parser",
                                                         "v2.0.0+incompatible")
    deb = cyclonedx.purl("deb", "debian/zlib1g", "1:1.2.13.dfsg-1",
                 {"upstream": "zlib", "arch": "amd64", "distro": "debian-12", "none": ""})
    assert deb == "pkg:deb/debian/zlib1g@1:1.2.13.dfsg-1?arch=amd64&distro=debian-12&upstream=zlib"
    assert PackageURL.from_string(deb).qualifiers == {"arch": "amd64", "distro": "debian-12",
                                                      "upstream": "zlib"}
    digest = hashlib.sha256(b"m").digest()
    assert cyclonedx.go_sum_sha256("h1:" + base64.b64encode(digest).decode()) == digest.hex()
    assert cyclonedx.go_sum_sha256(None) is None and cyclonedx.go_sum_sha256("h1:not base64!") is None


def test_a_broken_sbom_fails_the_schema():
    bom = cyclonedx.Bom(cyclonedx.Component("bin:x", "application", "x", sha256="ab" * 32))
    bom.add(cyclonedx.Component("pkg:golang/a@v1", "library", "a", "v1", "pkg:golang/a@v1"))
    good = bom.document()
    assert schema_errors(cyclonedx.dumps(good)) is None
    for broken in ({**good, "version": 0},                          # from 1 up
                   {**good, "components": [{"type": "library"}]},            # no name
                   {**good, "components": [{"type": "gadget", "name": "g"}]},
                   {**good, "metadata": {"component": {"type": "application", "name": "x",
                                                       "hashes": [{"alg": "SHA-256",
                                                                   "content": "not hex"}]}}},
                   {k: v for k, v in good.items() if k != "bomFormat"}):
        assert schema_errors(json.dumps(broken)) is not None


# --------------------------------------------------------------------------
# the command, in a bundle world
# --------------------------------------------------------------------------
@pytest.fixture
def world(tmp_path, monkeypatch):
    fake_host(monkeypatch)
    w = World(tmp_path, docker=SbomDocker)
    w.build()
    return w


def _doc(lay: layout.Layout, artifact: str) -> dict:
    return load_valid(lay.sbom / sbom.file_name(artifact))


def test_every_artifact_gets_a_valid_sbom_with_what_it_holds(world):
    spec = spec_file.load()
    written = sbom.generate(world.runner, world.lay, world.lay.sbom, spec)
    backend_ref = sbom.backend_image(spec)[0]
    assert {w.artifact for w in written} == \
        set(sbom.tool_artifacts()) | set(sbom.image_artifacts()) | {f"image/{backend_ref}"}
    assert all(w.path and w.components for w in written)
    assert sorted(p.name for p in world.lay.sbom.iterdir()) == sorted(w.path.name for w in written)
    for w in written:
        load_valid(w.path)
    # the node image: kubelet, built from k8s.io/kubernetes at the pinned version
    node = _doc(world.lay, f"image/{layout.NODE_IMAGE}")
    kubelet = f"image:{layout.NODE_IMAGE}#{nodeimage.NODE_BINARIES['kubelet']}"
    k8s = named(node, "k8s.io/kubernetes")
    assert [(c["version"], c["purl"]) for c in k8s] == \
        [(pins.K8S_VERSION, f"pkg:golang/k8s.io/kubernetes@{pins.K8S_VERSION}")]
    assert kubelet in holders(node, k8s[0]["bom-ref"])
    assert cyclonedx.go_sum_sha256(h1("k8s.io/kubernetes")) == k8s[0]["hashes"][0]["content"]
    assert named(node, "stdlib")[0]["version"] == GO
    # ... and every image baked into its containerd, with what that holds
    inner = {c["name"] + ":" + c["version"] for c in node["components"] if c["type"] == "container"}
    assert inner == set(nodeimage.component_refs())
    apiserver = f"image:{layout.k8s_image('kube-apiserver')}"
    assert f"{apiserver}#/usr/local/bin/kube-apiserver" in held_by(node, apiserver)
    # a debootstrapped image: Debian packages with purls a scanner matches, the release
    base = _doc(world.lay, "image/" + layout.DEBIAN_BASE_IMAGE)
    libc = named(base, "libc6")[0]
    assert libc["purl"] == ("pkg:deb/debian/libc6@2.36-9%2Bdeb12u14"
                            "?arch=amd64&distro=debian-12&upstream=glibc")
    assert named(base, "debian")[0] == {**named(base, "debian")[0], "type": "operating-system",
                                        "version": "12.15"}
    assert not named(base, "removed-long-ago")
    # the backend: duckdb at the lock's version, with the sha256 of the wheel it installs
    backend = _doc(world.lay, f"image/{backend_ref}")
    duckdb = named(backend, "duckdb")[0]
    assert duckdb["purl"] == f"pkg:pypi/duckdb@{_lock_entry('duckdb')['version']}"
    dist = {p["name"]: p["value"] for p in duckdb["properties"]}["ducklake-infra:dist"]
    wheel = next(w for w in _lock_entry("duckdb")["wheels"] if w["url"].endswith("/" + dist))
    assert duckdb["hashes"] == [{"alg": "SHA-256", "content": wheel["hash"].split(":")[1]}]
    assert "not built yet" in backend["metadata"]["component"]["description"]
    assert named(backend, "libc6")                     # its base's Debian packages
    # a host tool: its sha256 and its modules; scratch images were never run
    helm = _doc(world.lay, "bin/helm")
    assert helm["metadata"]["component"]["hashes"][0]["content"] == \
        hashlib.sha256(world.lay.tool("helm").read_bytes()).hexdigest()
    assert named(helm, "helm.sh/helm/v4")[0]["version"] == pins.HELM_VERSION
    runs = [c.argv[-3] for c in world.runner.calls if c.argv[1:2] == ["run"]]
    assert layout.k8s_image("kube-apiserver") not in runs and layout.PAUSE_IMAGE not in runs
    assert len(runs) == len(set(runs))                 # each image read once


def test_status_says_whether_each_artifact_has_its_sbom(world):
    def sboms() -> dict[str, str]:
        arts = list(world.states().values())
        sbom.mark_states(arts, world.lay)
        return {a.name: a.sbom for a in arts}

    assert set(sboms().values()) == {"missing", "-"}
    sbom.generate(world.runner, world.lay, world.lay.sbom)
    now = sboms()
    assert now["bin/kind"] == now[f"image/{layout.NODE_IMAGE}"] == "present"
    assert now["node-bin/kubelet"] == now["chart/minio"] == "-"
    world.rebuild_output("helm", "helm", b"helm v2")
    world.lay.tool("helm").write_bytes(world.lay.node_bin.joinpath("helm").read_bytes())
    (world.lay.sbom / sbom.file_name("bin/kind")).unlink()
    assert {k: v for k, v in sboms().items() if v != now[k]} == {"bin/helm": "stale",
                                                                 "bin/kind": "missing"}


def test_sbom_command_prints_a_summary(world, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(cli, "make_runner", lambda args, name: world.runner)
    out = tmp_path / "out"
    rc = cli.main(["bundle", "sbom", "--cache-dir", str(world.lay.root), "--out", str(out),
                   "-o", "json"])
    data = json.loads(capsys.readouterr().out)
    assert rc == 0 and data["out"] == str(out)
    node = data["sboms"][f"image/{layout.NODE_IMAGE}"]
    assert node["path"] == str(out / sbom.file_name(f"image/{layout.NODE_IMAGE}"))
    assert node["components"] == len(json.loads(Path(node["path"]).read_text())["components"])
    assert not world.lay.sbom.exists()                  # --out: nothing written in the cache
    rc = cli.main(["bundle", "sbom", "--cache-dir", str(world.lay.root), "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "bin/kind" in text and "SBOMs (CycloneDX 1.6)" in text


def test_a_missing_artifact_has_no_sbom_and_fails_the_command(world, tmp_path):
    world.lay.tool("mc").unlink()
    del world.runner.images[layout.MC_IMAGE]
    written = {w.artifact: w for w in sbom.generate(world.runner, world.lay, tmp_path / "o")}
    assert written["bin/mc"].path is None and "missing" in written["bin/mc"].note
    assert written[f"image/{layout.MC_IMAGE}"].path is None
    node = load_valid(written[f"image/{layout.NODE_IMAGE}"].path)
    assert "image is stale" in written[f"image/{layout.NODE_IMAGE}"].note
    mc = next(c for c in node["components"] if c["bom-ref"] == f"image:{layout.MC_IMAGE}")
    assert "image-id" not in json.dumps(mc) and not held_by(node, mc["bom-ref"])
