"""`bundle sbom` on the real bundle (issue 15): every artifact that `bundle build` made gets
an SBOM valid against the CycloneDX 1.6 schema, with the entries we know are there.
Reads the real cache and images; writes only to a temporary directory. FAILS (never
skips) when the bundle is missing: build it first."""

from __future__ import annotations

import tomllib

import pytest

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import nodeimage, pins, sbom
from provision.bundle.sbomcheck import holders, load_valid, named

pytestmark = pytest.mark.bundle


def test_every_artifact_of_the_real_bundle_has_a_valid_sbom(tmp_path):
    lay = layout.layout()
    if not lay.manifest.is_file():
        pytest.fail(f"no bundle at {lay.root}: run `ducklake-infra bundle build`", pytrace=False)
    spec = spec_file.load()
    runner = layout.bundle_runner(lay)              # no log: nothing is written in the cache
    written = sbom.generate(runner, lay, tmp_path, spec)
    assert [w.artifact for w in written if w.path is None] == []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(w.path.name for w in written)
    docs = {w.artifact: load_valid(w.path) for w in written}
    for w in written:
        assert w.components == len(docs[w.artifact]["components"]) > 0, w.artifact

    node = docs[f"image/{layout.NODE_IMAGE}"]
    kubelet = f"image:{layout.NODE_IMAGE}#{nodeimage.NODE_BINARIES['kubelet']}"
    k8s = [c for c in named(node, "k8s.io/kubernetes") if c["version"] == pins.K8S_VERSION]
    assert k8s and kubelet in holders(node, k8s[0]["bom-ref"])

    base = docs["image/" + layout.DEBIAN_BASE_IMAGE]
    libc = named(base, "libc6")
    assert libc and libc[0]["purl"].startswith("pkg:deb/debian/libc6@")

    ref, _, lock = sbom.backend_image(spec)
    wanted = next(p for p in tomllib.loads(lock.read_text())["package"] if p["name"] == "duckdb")
    duckdb = named(docs[f"image/{ref}"], "duckdb")
    assert [c["version"] for c in duckdb] == [wanted["version"]]
    assert duckdb[0]["hashes"][0]["content"] in {w["hash"].split(":")[1] for w in wanted["wheels"]}
