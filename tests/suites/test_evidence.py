"""The evidence bundle (ducklake_infra/suites/evidence.py): objects by identity, Secrets by key name
and value length only, a sha256 that verifies, and the plugin writing it at the end
of a session that inspected a cluster (pytester, fake cluster, no kubectl)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path


from ducklake_infra.suites import evidence as ev
from ducklake_infra.suites.objects import Objects

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]
VALUE = "s3cr3t-Value-that-must-never-appear"
VALUE2 = "another-Secret-value-42"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def objects() -> Objects:
    return Objects([
        {"apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": "minio-root", "namespace": "storage", "uid": "u-1",
                          "resourceVersion": "101",
                          "annotations": {"kubectl.kubernetes.io/last-applied-configuration":
                                          json.dumps({"data": {"rootPassword": b64(VALUE)}})}},
             "data": {"rootUser": b64("admin-user"), "rootPassword": b64(VALUE)},
             "stringData": {"extra": VALUE2}},
            {"apiVersion": "apps/v1", "kind": "Deployment",
             "metadata": {"name": "minio", "namespace": "storage", "uid": "u-2",
                          "resourceVersion": "202", "generation": 3},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "minio", "env": [{"name": "X", "value": VALUE}]}]}}}},
        ]}], helm_releases=[{"name": "minio", "namespace": "storage", "chart": "minio-5.4.0",
                             "status": "deployed", "revision": "2", "app_version": "x"}])


def bundle(**kw) -> dict:
    rec = ev.Recorder()
    rec.context = "kind-ducklake"
    rec.server_version = {"gitVersion": "v1.31.0", "major": "1", "minor": "31"}
    rec.record(objects())
    args = dict(readonly=True, run_id="20250101T000000Z", cluster_option="kind-ducklake",
                stack="stack.yaml", controls={"MINIO-SVC-001": "PASS"})
    args.update(kw)
    return ev.build(rec, **args)


def test_secrets_only_by_key_name_and_length():
    b = bundle()
    text = json.dumps(b)
    for v in (VALUE, VALUE2, "admin-user"):
        assert v not in text and b64(v) not in text
    sec = next(o for o in b["objects"] if o["kind"] == "Secret")
    assert sec["keys"] == {"extra": {"length": len(VALUE2)},
                           "rootPassword": {"length": len(VALUE)},
                           "rootUser": {"length": len("admin-user")}}
    # nothing but identity: no data, annotations, spec
    assert set(sec) == {"apiVersion", "kind", "namespace", "name", "uid", "resourceVersion",
                        "generation", "type", "keys"}


def test_objects_by_identity_and_run_metadata():
    b = bundle()
    dep = next(o for o in b["objects"] if o["kind"] == "Deployment")
    assert dep == {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "storage",
                   "name": "minio", "uid": "u-2", "resourceVersion": "202", "generation": 3}
    assert b["object_count"] == 2
    assert b["context"] == "kind-ducklake" and b["readonly"] is True
    assert b["cluster_version"]["gitVersion"] == "v1.31.0"
    assert b["time"].endswith("Z") and b["run_id"] == "20250101T000000Z"
    assert b["helm_releases"][0]["chart"] == "minio-5.4.0"
    assert b["controls"] == {"MINIO-SVC-001": "PASS"}


def test_a_pod_records_what_runs_reference_and_imageid():
    """SUPPLY-PIN-001's evidence in the hashed bundle: each container's reference and the
    imageID its runtime reports (none yet: null); nothing else of the spec or status."""
    digest = "sha256:" + "7" * 64
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "minio-1", "namespace": "storage", "uid": "u-3"},
           "spec": {"initContainers": [{"name": "init", "image": "busybox:1.36"}],
                    "containers": [{"name": "minio", "image": "ducklake-infra/minio:R1",
                                    "env": [{"name": "X", "value": VALUE}]}]},
           "status": {"containerStatuses": [{"name": "minio", "imageID": digest,
                                             "image": "docker.io/ducklake-infra/minio:R1"}]}}
    rec = ev.object_record(pod)
    assert rec["containers"] == [
        {"name": "minio", "image": "ducklake-infra/minio:R1", "imageID": digest},
        {"name": "init", "image": "busybox:1.36", "imageID": None}]
    assert VALUE not in json.dumps(rec)


def test_recording_twice_keeps_one_entry_per_object():
    rec = ev.Recorder()
    rec.record(objects(), objects(), objects().items[1])
    assert len(rec.objects) == 2


def test_hash_verifies_and_detects_tampering(tmp_path):
    b = bundle()
    assert b["sha256"] == hashlib.sha256(ev.canonical(
        {k: v for k, v in b.items() if k != "sha256"})).hexdigest()
    path = ev.write(tmp_path, b)
    assert path == tmp_path / "20250101T000000Z" / "evidence.json"
    assert ev.verify(path) == []
    side = (path.parent / "evidence.json.sha256").read_text()
    assert side == f"{hashlib.sha256(path.read_bytes()).hexdigest()}  evidence.json\n"
    # the bundle hash survives re-serialisation (canonical JSON)
    assert ev.bundle_hash(json.loads(path.read_text())) == b["sha256"]
    doc = json.loads(path.read_text())
    doc["readonly"] = False
    path.write_text(json.dumps(doc))
    problems = ev.verify(path)
    assert "bundle sha256 does not match its content" in problems
    assert "evidence.json.sha256 does not match evidence.json" in problems


def test_a_second_run_in_the_same_second_gets_its_own_directory(tmp_path):
    p1 = ev.write(tmp_path, bundle())
    p2 = ev.write(tmp_path, bundle())
    assert p1 != p2 and p2.parent.name == "20250101T000000Z-2"
    assert ev.verify(p1) == [] and ev.verify(p2) == []


def test_redactor_applies_before_hashing():
    b = bundle(redact=lambda s: s.replace("u-2", "***"))
    assert any(o["uid"] == "***" for o in b["objects"])
    assert ev.bundle_hash(b) == b["sha256"]


# ---- the plugin: written at the end of a session that inspected a cluster ------------------
CONFTEST = f'''
import pytest
from types import SimpleNamespace
pytest_plugins = ["ducklake_infra.suites.plugin"]

def pytest_addoption(parser):
    parser.addoption("--cluster", default="kind")
    parser.addoption("--readonly", action="store_true")
    parser.addoption("--stack", default={str(ROOT / "stack.yaml")!r})
    parser.addoption("--report-dir", default="reports")

@pytest.fixture(scope="session")
def runner():
    from ducklake_infra.provision.runner import Runner
    return Runner()

@pytest.fixture(scope="session")
def cluster():
    return SimpleNamespace(context="prod-ctx", is_kind=False)

@pytest.fixture(scope="session")
def kubectl():
    def k(*args, **kw):
        assert args[:1] == ("version",), args
        return SimpleNamespace(returncode=0, stdout='{{"serverVersion": {{"gitVersion": "v1.31.2"}}}}')
    return k

@pytest.fixture(scope="session")
def stack(spec, runner):
    runner.redactor.add({VALUE!r})
    return spec
'''

TESTS = f'''
import base64, pytest
import ducklake_infra.suites.live as live_module
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.catalog import verdict, Result

def _gather(kubectl, runner, cluster, spec, **kw):
    b = lambda s: base64.b64encode(s.encode()).decode()
    return Objects([{{"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {{"name": "minio-root", "namespace": "storage", "uid": "u1",
                                   "resourceVersion": "7"}},
                      "data": {{"rootPassword": b({VALUE!r})}}}}], helm_releases=[])

live_module.gather = _gather

@pytest.mark.control("MINIO-SVC-001")
def test_reads(objs, inspected):
    inspected({{"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {{"name": "later", "namespace": "ducklake", "uid": "u2",
                            "resourceVersion": "9"}}}})
    verdict(Result("PASS", ["ok"]))
'''


def test_plugin_writes_the_bundle_and_prints_its_path(pytester, monkeypatch):
    import ducklake_infra.suites.live as live_module
    # the in-process run replaces suites.live.gather with a fake: put the real one
    # back afterwards, or every later suite in this process reads the fake objects
    monkeypatch.setattr(live_module, "gather", live_module.gather)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_ev=TESTS)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", "out",
                                       "--cluster", "prod-ctx", "--readonly")
    res.assert_outcomes(passed=1)
    found = list((pytester.path / "out").glob("*/evidence.json"))
    assert len(found) == 1, res.stdout.str()
    path = found[0]
    assert f"report: {path.relative_to(pytester.path)}" in res.stdout.str() or \
        f"report: {path}" in res.stdout.str()
    assert ev.verify(path) == []
    doc = json.loads(path.read_text())
    assert doc["context"] == "prod-ctx" and doc["readonly"] is True
    assert doc["cluster_version"] == {"gitVersion": "v1.31.2"}
    assert {(o["kind"], o["name"]) for o in doc["objects"]} == {("Secret", "minio-root"),
                                                               ("ConfigMap", "later")}
    sec = next(o for o in doc["objects"] if o["kind"] == "Secret")
    assert sec["keys"] == {"rootPassword": {"length": len(VALUE)}}
    assert doc["controls"]["MINIO-SVC-001"] == "PASS"
    raw = path.read_text()
    assert VALUE not in raw and b64(VALUE) not in raw


def test_no_bundle_without_a_cluster(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_x='''
import pytest
from ducklake_infra.suites.catalog import verdict, Result

@pytest.mark.control("MINIO-SVC-001")
def test_x():
    verdict(Result("PASS", ["ok"]))
''')
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--report-dir", "out")
    res.assert_outcomes(passed=1)
    assert not list((pytester.path / "out").glob("*/evidence.json"))
