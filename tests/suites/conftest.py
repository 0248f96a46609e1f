"""Hand-written objects of a conforming stack, built from stack.yaml and k8s/.

Unit tests of the pure checks start from ``good`` (every check PASSes) and
break one thing at a time.
"""

from __future__ import annotations

import base64
import copy
import json

import pytest
import yaml

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects
from .report_schemas import check_written_reports

ROOT_PW = "r00t-Pa55word-very-long-xyz"
CATALOG_PW = "catalog-pw-0123456789"
SUPER_PW = "super-pw-0123456789"
BACKEND_SK = "backend-secret-key-0123456789"
API_TOKEN = "api-token-0123456789abcdef"
READER_PW = "reader-pw-0123456789"
QUERY_SK = "query-secret-key-0123456789"
MAINTENANCE_SK = "maintenance-secret-key-0123456789"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def secret(name, ns, data, **kw):
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": ns, **kw},
            "data": {k: b64(v) for k, v in data.items()}}


def digest(ch: str) -> str:
    return "sha256:" + ch * 64


# the conforming stack runs every image by digest (as `up --registry` installs it)
IMAGES = {"minio": f"ducklake-infra/minio@{digest('a')}",
          "postgresql": f"ducklake-infra/postgresql@{digest('b')}",
          "backend": f"ducklake-infra/backend@{digest('c')}"}


def ready_pod(name, ns, labels, uid=1000, *, owner=("ReplicaSet", "rs"), container="c",
              image=""):
    """A Ready pod of ``owner`` running ``image`` in ``container``; its imageID is the
    digest the runtime reports for it (``docker.io/<repo>@<digest>``)."""
    image_id = f"docker.io/{image}" if "@" in image else ""
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": labels,
                         "ownerReferences": [{"kind": owner[0], "name": owner[1],
                                              "controller": True}]},
            "spec": {"securityContext": {"runAsUser": uid, "runAsNonRoot": True},
                     "containers": [{"name": container, "image": image}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": container, "ready": True,
                                              "state": {"running": {}}, "image": image,
                                              "imageID": image_id}]}}


RES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}


def build(spec: StackSpec) -> Objects:
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    sns, bns = m.namespace, b.namespace
    items = []
    # ---- MinIO
    mlabels = {"app": "minio", "release": m.release}
    items.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": m.fullname, "namespace": sns, "labels": {**mlabels, "chart": "minio-5.4.0"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": mlabels},
                 "strategy": {"type": "Recreate"},
                 "template": {"metadata": {"labels": mlabels}, "spec": {
                     "securityContext": {"runAsUser": 1000, "runAsNonRoot": True, "fsGroup": 1000},
                     "containers": [{
                         "name": "minio", "image": IMAGES["minio"],
                         "command": ["/bin/sh", "-ce", "/usr/bin/docker-entrypoint.sh minio server /export -S /etc/minio/certs/ --address :9000 --console-address :9001"],
                         "volumeMounts": [{"name": "export", "mountPath": "/export"}],
                         "env": [{"name": "MINIO_ROOT_USER", "valueFrom": {"secretKeyRef": {"name": m.root_secret.name, "key": "rootUser"}}},
                                 {"name": "MINIO_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": m.root_secret.name, "key": "rootPassword"}}}],
                         "resources": RES}],
                     "volumes": [{"name": "export", "persistentVolumeClaim": {"claimName": m.pvcs[0].name}}]}}},
        "status": {"availableReplicas": 1}})
    for s in m.services:
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": s.name, "namespace": sns, "labels": mlabels},
                      "spec": {"type": "ClusterIP", "ports": [{"port": p} for p in s.ports]}})
    items.append({"apiVersion": "v1", "kind": "Service",
                  "metadata": {"name": f"{m.fullname}-svc", "namespace": sns, "labels": mlabels},
                  "spec": {"type": "ClusterIP", "clusterIP": "None", "ports": [{"port": 9000}]}})
    for p in m.pvcs:
        items.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": p.name, "namespace": sns, "labels": mlabels},
                      "spec": {"storageClassName": p.storage_class, "volumeName": "pvc-1",
                               "accessModes": ["ReadWriteOnce"],
                               "resources": {"requests": {"storage": p.size}}},
                      "status": {"phase": "Bound"}})
    items.append(ready_pod("minio-abc", sns, mlabels, owner=("ReplicaSet", f"{m.fullname}-1"),
                           container="minio", image=IMAGES["minio"]))
    items.append(secret(m.root_secret.name, sns, {"rootUser": "root-user-xyz", "rootPassword": ROOT_PW}))
    items.append(secret(m.backend_user.secret.name, sns, {"secretKey": BACKEND_SK}))
    # ---- PostgreSQL
    plabels = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": pg.release}
    tmpl_name = pg.pvcs[0].name.rsplit(f"-{pg.fullname}-", 1)[0]
    items.append({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": pg.fullname, "namespace": sns, "labels": plabels},
        "spec": {"replicas": 1, "selector": {"matchLabels": plabels},
                 "template": {"metadata": {"labels": plabels}, "spec": {
                     "securityContext": {"runAsUser": 999, "runAsNonRoot": True},
                     "containers": [{"name": "postgresql", "image": IMAGES["postgresql"], "env": [{"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}],
                                     "volumeMounts": [{"name": tmpl_name, "mountPath": "/var/lib/postgresql/data"}],
                                     "resources": RES}],
                     "volumes": [{"name": "su", "secret": {"secretName": pg.superuser_secret.name}},
                                 {"name": "cat", "secret": {"secretName": pg.catalog.secret.name}}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": tmpl_name},
                                           "spec": {"storageClassName": spec.storage_class,
                                                    "resources": {"requests": {"storage": pg.pvcs[0].size}}}}]},
        "status": {"readyReplicas": 1}})
    for s in pg.services:
        items.append({"apiVersion": "v1", "kind": "Service",
                      "metadata": {"name": s.name, "namespace": sns, "labels": plabels},
                      "spec": {"type": "ClusterIP", "ports": [{"port": p} for p in s.ports]}})
    for p in pg.pvcs:
        items.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                      "metadata": {"name": p.name, "namespace": sns},
                      "spec": {"storageClassName": p.storage_class, "volumeName": "pvc-2",
                               "resources": {"requests": {"storage": p.size}}},
                      "status": {"phase": "Bound"}})
    items.append(ready_pod(f"{pg.fullname}-0", sns, plabels, uid=999,
                           owner=("StatefulSet", pg.fullname), container="postgresql",
                           image=IMAGES["postgresql"]))
    items.append(secret(pg.superuser_secret.name, sns, {"postgres-password": SUPER_PW}))
    items.append(secret(pg.catalog.secret.name, sns, {"username": pg.catalog.owner, "password": CATALOG_PW}))
    items.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": pg.fullname, "namespace": sns},
                  "data": {"postgresql.conf": "port = 5432\nlc_messages = 'C'\npassword_encryption = scram-sha-256\n",
                           "entrypoint.sh": 'PGPASSWORD="$(cat "$SUPERUSER_PW_FILE")"\n'}})
    # ---- backend: the repository's manifests
    for f in b.manifests:
        for d in yaml.safe_load_all(f.read_text()):
            if d:
                items.append(d)
    dep = next(i for i in items if i["kind"] == "Deployment" and i["metadata"]["name"] == b.deployment)
    dep["status"] = {"availableReplicas": 1, "updatedReplicas": 1,
                     "conditions": [{"type": "Available", "status": "True"}]}
    blabels = dep["spec"]["template"]["metadata"]["labels"]
    bc = next(c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == b.container)
    bc["image"] = IMAGES["backend"]   # what the provisioner sets (k8s/deployment.yaml: latest)
    items.append(ready_pod("ducklake-backend-xyz", bns, blabels, uid=10001,
                           owner=("ReplicaSet", f"{b.deployment}-1"), container=b.container,
                           image=IMAGES["backend"]))
    items.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": "be-1", "namespace": bns,
                               "labels": {"kubernetes.io/service-name": b.service.name}},
                  "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": True}}]})
    items.append(secret(b.postgres_secret.name, bns, {"username": pg.catalog.owner, "password": CATALOG_PW}))
    items.append(secret(b.s3_secret.name, bns, {"access-key": m.backend_user.access_key,
                                                 "secret-key": BACKEND_SK}))
    items.append(secret(b.token_secret.name, bns, {b.token_secret.keys[0]: API_TOKEN}))
    rd, qu = pg.catalog.reader, m.query_user
    items.append(secret(rd.secret.name, sns, {"username": rd.role, "password": READER_PW}))
    items.append(secret(qu.secret.name, sns, {qu.secret.keys[0]: QUERY_SK}))
    items.append(secret(b.query_postgres_secret.name, bns, {"username": rd.role, "password": READER_PW}))
    items.append(secret(b.query_s3_secret.name, bns, {"access-key": qu.access_key,
                                                       "secret-key": QUERY_SK}))
    mu = m.maintenance_user
    items.append(secret(mu.secret.name, sns, {mu.secret.keys[0]: MAINTENANCE_SK}))
    items.append(secret(b.maintenance_s3_secret.name, bns, {"access-key": mu.access_key,
                                                             "secret-key": MAINTENANCE_SK}))
    from ducklake_infra.provision import netpol
    items += netpol.network_policies(spec)
    releases = [
        {"name": r.name, "namespace": r.namespace, "chart": f"{r.chart.name}-{r.chart.version}",
         "status": "deployed", "revision": "1", "app_version": "x"} for r in spec.releases.values()]
    from ducklake_infra.provision import render
    values = {m.release: {"mode": "standalone", "existingSecret": m.root_secret.name,
                          "rootUser": "", "rootPassword": "",
                          "users": [{"accessKey": u.access_key, "policy": u.policy}
                                    for u in (m.backend_user, m.query_user, m.maintenance_user)],
                          "policies": render.minio_policies(spec)}}
    logs = {f"{sns}/minio-abc/minio": "API: http://10.0.0.1:9000\n",
            f"{bns}/ducklake-backend-xyz/backend": '{"msg": "starting"}\n'}
    return Objects(items, helm_releases=releases, helm_values=values, logs=logs)


@pytest.fixture(scope="session")
def spec():
    return spec_file.load()


@pytest.fixture
def good(spec) -> Objects:
    return build(spec)


@pytest.fixture
def find():
    def _find(objs: Objects, kind: str, name: str):
        return next(o for o in objs.items if o["kind"] == kind and o["metadata"]["name"] == name)
    return _find


def clone(objs: Objects) -> Objects:
    return copy.deepcopy(objs)


__all__ = ["build", "clone", "digest", "json", "IMAGES"]


@pytest.fixture
def pytester(pytester):
    """These tests host the suites plugin alone, under a stand-in conftest: the
    installed entry-point plugin (real options, cluster fixtures) stays out. Every
    report such a run writes is then checked against its schema (report_schemas)."""
    pytester.makeini("[pytest]\naddopts = -p no:ducklake-infra\n")
    yield pytester
    check_written_reports(pytester.path)


def pytest_collection_modifyitems(config, items):
    """The upstream PolicyReport CRD and SARIF schema may not be committed here (they are
    fetched data): tests that need them run when $DUCKLAKE_INFRA_UPSTREAM_SCHEMAS names a
    folder holding them (tests/suites/data/README.md), and are deselected, visibly,
    otherwise."""
    from .report_schemas import upstream_available
    if upstream_available():
        return
    out = [i for i in items if i.get_closest_marker("upstream_schemas")]
    if out:
        config.hook.pytest_deselected(items=out)
        items[:] = [i for i in items if not i.get_closest_marker("upstream_schemas")]
        _DESELECTED.append(len(out))


_DESELECTED: list[int] = []


def pytest_terminal_summary(terminalreporter):
    if _DESELECTED:
        terminalreporter.write_line(
            f"{_DESELECTED[0]} upstream-schema tests not run: set DUCKLAKE_INFRA_UPSTREAM_SCHEMAS "
            "to a folder with the pinned files (tests/suites/data/README.md)", yellow=True)


@pytest.fixture(autouse=True)
def _no_leaked_gather():
    """After every test of this folder the real gather is in place: in-process pytester
    runs replace it with a fake, and the live suites later in the same process must
    never read a unit test's objects (seen once in CI). Checked per test, so no test
    has to run last."""
    import ducklake_infra.suites.live as live_module
    real = live_module.gather
    yield
    assert live_module.gather is real, "a test left suites.live.gather patched"


def write_sbom(d, ref: str, image_id: str, parts: int = 2) -> str:
    """A CycloneDX document whose subject is ``ref`` with ``image_id``, as `bundle sbom`
    writes one, holding ``parts`` components; its file name."""
    from ducklake_infra.provision.bundle import cyclonedx
    repo, _, tag = ref.rpartition(":")
    bom = cyclonedx.Bom(cyclonedx.Component(f"image:{ref}", "container", repo, tag,
                                            properties={"image": ref, "image-id": image_id}))
    for i in range(parts):
        bom.add(cyclonedx.Component(f"pkg:deb/debian/p{i}@1", "library", f"p{i}", "1"))
    name = ref.replace("/", "_").replace(":", "_") + ".cdx.json"
    (d / name).write_text(cyclonedx.dumps(bom.document()))
    return name


@pytest.fixture
def good_sboms(tmp_path):
    """SBOMs of the three images the conforming stack runs (their IDs: the digests)."""
    from ducklake_infra.suites.supply_chain import read_sboms
    for key, ref in IMAGES.items():
        write_sbom(tmp_path, f"ducklake-infra/{key}:t1", ref.rpartition("@")[2])
    return read_sboms(tmp_path)
