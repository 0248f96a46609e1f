"""stack.yaml loads into dataclasses; malformed specs fail with one clear line."""

from __future__ import annotations

import copy

import pytest
import yaml

from ducklake_infra.provision import spec, spec_file, spec_parse
from ducklake_infra.provision.bundle import layout


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
    assert spec.image("minio") == layout.MINIO_IMAGE
    assert spec.image("mc") == layout.MC_IMAGE
    assert spec.image("postgresql") == layout.POSTGRES_IMAGE
    assert spec.image("minio", {"minio": "reg.example/minio:1"}) == "reg.example/minio:1"


def _raw():
    return yaml.safe_load(spec_file.DEFAULT_SPEC.read_text())


def _parse(raw):
    return spec_parse.parse(raw, spec_file.DEFAULT_SPEC)


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
    with pytest.raises(spec.SpecError) as exc:
        _parse(raw)
    text = str(exc.value)
    assert message in text
    assert "\n" not in text


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "stack.yaml"
    bad.write_text("releases: [\n")
    with pytest.raises(spec.SpecError, match=r"^stack.yaml: not valid YAML"):
        spec_file.load(bad)
    with pytest.raises(spec.SpecError, match="cannot read the stack spec"):
        spec_file.load(tmp_path / "missing.yaml")


def test_spec_error_is_an_expected_error():
    from ducklake_infra.provision.errors import DucklakeInfraError
    assert issubclass(spec.SpecError, DucklakeInfraError)


# ---- strict: a key the parser never reads is refused (issue 11, item 5) -------------------
@pytest.mark.parametrize("mutate,message", [
    (lambda r: r["releases"]["minio"].__setitem__("timout", 60),
     "stack.yaml: releases.minio.timout: unknown key (did you mean 'timeout'?)"),
    (lambda r: r.__setitem__("monitoring", {"enabled": True}),
     "stack.yaml: monitoring: unknown key"),
    (lambda r: r["minio"]["services"][1].__setitem__("nodePort", 30001),
     "stack.yaml: minio.services[1].nodePort: unknown key"),
    (lambda r: r["postgresql"]["catalog"]["reader"].__setitem__("statement_timout", "1s"),
     "stack.yaml: postgresql.catalog.reader.statement_timout: unknown key "
     "(did you mean 'statement_timeout'?)"),
    (lambda r: r["backend"]["image"].__setitem__("Dockerfile", "x"),
     "stack.yaml: backend.image.Dockerfile: unknown key (did you mean 'dockerfile'?)"),
    (lambda r: r["registry"].__setitem__("image_pull_secrets", "x"),
     "stack.yaml: registry.image_pull_secrets: unknown key (did you mean 'image_pull_secret'?)"),
    (lambda r: r["cluster"].__setitem__("name", "x"),
     "stack.yaml: cluster.name: unknown key (did you mean 'kind_name'?)"),
    (lambda r: r["cluster"].__setitem__("zone", "x"),
     "stack.yaml: cluster.zone: unknown key (valid: kind_name)"),
    (lambda r: r.__setitem__("apiVersion", "ducklake-infra/v2"),
     "stack.yaml: apiVersion: 'ducklake-infra/v2' is not supported (expected 'ducklake-infra/v1')"),
    (lambda r: r.pop("apiVersion"), "stack.yaml: apiVersion: missing"),
    (lambda r: r.__setitem__("kind", "Stak"), "stack.yaml: kind: expected 'Stack'"),
])
def test_unknown_keys_and_versions_are_refused(mutate, message):
    raw = _raw()
    mutate(raw)
    with pytest.raises(spec.SpecError) as exc:
        _parse(raw)
    assert str(exc.value).startswith(message), str(exc.value)


def test_every_mapping_of_the_spec_is_read_by_the_parser():
    """refuse_unknown only sees mappings the parser asked for a key: a section read any
    other way would escape the check. The repository spec must load (no false alarm),
    and a mapping the parser never looks into is itself refused."""
    _parse(_raw())
    root = {"a": {"b": 1}}
    v = spec_parse._V("f.yaml", root)
    v.get(root, "", "a")         # read "a" but never look inside it
    with pytest.raises(spec.SpecError, match=r"^f.yaml: a: unexpected mapping$"):
        v.refuse_unknown()


def test_unknown_key_in_a_file_is_reported_with_the_file_name(tmp_path):
    text = spec_file.DEFAULT_SPEC.read_text().replace("  replicas: 1", "  replicas: 1\n  replica: 2")
    assert text != spec_file.DEFAULT_SPEC.read_text()
    f = tmp_path / "prod-stack.yaml"
    f.write_text(text)
    for d in ("values", "charts", "k8s", "backend"):
        (tmp_path / d).symlink_to(spec_file.DEFAULT_SPEC.parent / d)
    (tmp_path / "Dockerfile").symlink_to(spec_file.DEFAULT_SPEC.parent / "Dockerfile")
    with pytest.raises(spec.SpecError) as exc:
        spec_file.load(f)
    assert str(exc.value) == ("prod-stack.yaml: backend.replica: unknown key "
                              "(did you mean 'replicas'?)")
