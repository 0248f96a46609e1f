"""stack.yaml loads into dataclasses; malformed specs fail with one clear line."""

from __future__ import annotations

import copy

import pytest
import yaml

from ducklake_infra.provision import spec as S
from ducklake_infra.provision.bundle import layout as L


def test_repository_spec_loads(spec):
    assert spec.kind_cluster == "ducklake"
    assert spec.namespaces["storage"] == "storage"
    assert (spec.raw_bucket, spec.lake_bucket) == ("raw", "lake")
    assert spec.releases["minio"].chart.version == "5.4.0"
    assert spec.releases["minio"].chart.repo == "https://charts.min.io/"
    assert spec.releases["postgresql"].chart.local == "charts/postgresql"
    assert spec.minio.endpoint == "minio.storage.svc.cluster.local:9000"
    assert all(s.type == "ClusterIP" for s in spec.all_services())
    assert {p.storage_class for p in spec.all_pvcs()} == {"standard"}
    assert spec.backend.namespace == "ducklake"


def test_bundle_images_resolve_through_layout(spec):
    assert spec.image("minio") == L.MINIO_IMAGE
    assert spec.image("mc") == L.MC_IMAGE
    assert spec.image("postgresql") == L.POSTGRES_IMAGE
    assert spec.image("minio", {"minio": "reg.example/minio:1"}) == "reg.example/minio:1"


@pytest.mark.parametrize("ref,expected", [
    ("ducklake-infra/minio:RELEASE.2026", ("ducklake-infra/minio", "RELEASE.2026")),
    ("reg.example:5000/x/y:1.2", ("reg.example:5000/x/y", "1.2")),
    ("reg.example:5000/x/y", ("reg.example:5000/x/y", "latest")),
])
def test_split_image(ref, expected):
    assert S.split_image(ref) == expected


def _raw():
    return yaml.safe_load(S.DEFAULT_SPEC.read_text())


def _parse(raw):
    return S.parse(raw, S.DEFAULT_SPEC)


@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["releases"]["minio"]["chart"].__setitem__("version", 5.4),
     "stack.yaml: releases.minio.chart.version: expected a string"),
    (lambda r: r["buckets"].pop("raw"), "stack.yaml: buckets.raw: missing"),
    (lambda r: r["buckets"].__setitem__("lake", "Lake_Bucket"),
     "stack.yaml: buckets.lake: 'Lake_Bucket' is not a valid bucket name"),
    (lambda r: r["releases"]["postgresql"].__setitem__("namespace", "nope"),
     "stack.yaml: releases.postgresql.namespace: unknown namespace key 'nope'"),
    (lambda r: r["minio"]["services"][0].__setitem__("type", "Clusterip"),
     "stack.yaml: minio.services[0].type: expected one of ClusterIP"),
    (lambda r: r["minio"].__setitem__("api_port", 70000),
     "stack.yaml: minio.api_port: 70000 is not a port number"),
    (lambda r: r["images"].__setitem__("minio", "bundle:nosuch"),
     "unknown bundle image 'nosuch'"),
    (lambda r: r["releases"]["minio"].__setitem__("values", ["values/nope.yaml"]),
     "stack.yaml: releases.minio.values[0]: no such file 'values/nope.yaml'"),
    (lambda r: r["minio"]["pvcs"][0].__setitem__("size", "five"),
     "stack.yaml: minio.pvcs[0].size: 'five' is not a valid quantity"),
    (lambda r: r.__setitem__("namespaces", ["storage"]), "stack.yaml: namespaces: expected a mapping"),
    (lambda r: r["minio"].__setitem__("release", "s3"), "stack.yaml: minio.release: no release 's3'"),
    (lambda r: r["minio"].__setitem__("use_ssl", "no"), "stack.yaml: minio.use_ssl: expected true or false"),
])
def test_malformed_specs_fail_with_one_line(mutate, message):
    raw = copy.deepcopy(_raw())
    mutate(raw)
    with pytest.raises(S.SpecError) as exc:
        _parse(raw)
    text = str(exc.value)
    assert message in text
    assert "\n" not in text


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "stack.yaml"
    bad.write_text("releases: [\n")
    with pytest.raises(S.SpecError, match=r"^stack.yaml: not valid YAML"):
        S.load(bad)
    with pytest.raises(S.SpecError, match="cannot read the stack spec"):
        S.load(tmp_path / "missing.yaml")


def test_spec_error_is_an_expected_error():
    from ducklake_infra.provision.errors import DucklakeInfraError
    assert issubclass(S.SpecError, DucklakeInfraError)
