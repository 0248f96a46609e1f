"""Command lines of up / plan / down / status, checked with a fake runner."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest
import yaml

from ducklake_infra.provision import stack, stack_steps, status

from ducklake_infra.provision import render
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.cluster import ExistingCluster, KindCluster
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.runner import CommandError

from .fakes import FakeRunner, minio_only_runner


def _opts(lay, **kw):
    return render.Options(layout=lay, **kw)


def _kind(runner, spec):
    return KindCluster(runner, name=spec.kind_cluster, node_image=layout.NODE_IMAGE)


def fresh_runner(**kw) -> FakeRunner:
    """No cluster, no images in kind, no secrets, no releases, backend not built."""
    r = FakeRunner(**kw)
    r.on(r"^kind get clusters", stdout="")
    r.on(r"^docker image inspect", stdout="sha256:abc\n")
    r.on(r"^docker image inspect .*backend", rc=1, stderr="No such image", times=1)
    r.on(r"crictl inspecti", rc=1)
    r.on(r" get namespaces", stdout="namespace/default\n")
    r.on(r" get secret ", stdout="")
    r.on(r"^helm .* list ", stdout="[]")
    return r


def test_up_on_fresh_kind_runs_every_phase(spec, progress, fake_layout):
    r = fresh_runner()
    refs = stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))

    create = r.executed(r"^kind create cluster")
    assert len(create) == 1
    assert create[0].argv[create[0].argv.index("--image") + 1] == layout.NODE_IMAGE
    assert "--name ducklake" in create[0].line

    build = r.executed(r"^docker build")
    assert len(build) == 1
    b = build[0]
    assert b.env == {"DOCKER_BUILDKIT": "1"}
    assert f"PYTHON_BASE={layout.PYTHON_BASE_IMAGE}" in b.argv
    assert "id=cacert,src=/etc/ssl/certs/ca-certificates.crt" in b.argv
    tag = refs["backend"].rsplit(":", 1)[1]
    assert tag == render.backend_image_tag(spec) and len(tag) == 12

    load = r.executed(r"^kind load docker-image")
    assert len(load) == 2      # the releases' images, and the backend's meanwhile
    (releases,) = [c for c in load if refs["backend"] not in c.argv]
    for image in (layout.MINIO_IMAGE, layout.MC_IMAGE, layout.POSTGRES_IMAGE):
        assert image in releases.argv
    assert any(c.argv[-1] == refs["backend"] for c in load)
    # a release's pod never starts before its image is in the node (it would try to pull)
    order = [c.line for c in r.calls]
    first_release = min(i for i, c in enumerate(r.calls) if "upgrade --install" in c.line)
    assert order.index(releases.line) < first_release

    helm = r.executed(r"^helm .* upgrade --install")
    assert len(helm) == 2
    by_name = {c.argv[c.argv.index("--install") + 1]: c for c in helm}
    m = by_name["minio"]
    assert m.argv[:5] == ["helm", "--kubeconfig", str(_kind(r, spec).kubeconfig),
                          "--kube-context", "kind-ducklake"]
    assert str(fake_layout.chart("minio")) in m.argv
    for expected in ("existingSecret=minio-root", "fullnameOverride=minio",
                     f"image.tag={layout.MINIO_IMAGE.rsplit(':', 1)[1]}", "persistence.size=5Gi",
                     "persistence.storageClass=standard"):
        assert expected in m.argv
    assert m.argv[m.argv.index("--namespace") + 1] == "storage"
    assert "--wait" in m.argv and m.argv[m.argv.index("--timeout") + 1] == "600s"
    users = json.loads(next(a for a in m.argv if a.startswith("users="))[6:])
    assert users == [{"accessKey": "ducklake-backend", "existingSecret": "minio-backend-user",
                      "existingSecretKey": "secretKey", "policy": "ducklake-backend-rw"},
                     {"accessKey": "ducklake-query", "existingSecret": "minio-query-user",
                      "existingSecretKey": "secretKey", "policy": "ducklake-query-ro"},
                     {"accessKey": "ducklake-maintenance", "existingSecret": "minio-maintenance-user",
                      "existingSecretKey": "secretKey", "policy": "ducklake-maintenance-rm"}]
    policies = json.loads(next(a for a in m.argv if a.startswith("policies="))[9:])
    actions = {pol["name"]: {a for st in pol["statements"] for a in st["actions"]}
               for pol in policies}
    assert actions["ducklake-query-ro"] == {
        "s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject"}       # reads only
    # only maintenance deletes (issue 16's ambiguous commit: a writer's rollback must not)
    assert [n for n, a in actions.items() if "s3:DeleteObject" in a] == ["ducklake-maintenance-rm"]
    assert actions["ducklake-maintenance-rm"] == {
        "s3:GetBucketLocation", "s3:ListBucket", "s3:DeleteObject"}
    assert {r for st in next(p for p in policies if p["name"] == "ducklake-query-ro")["statements"] for r in st["resources"]} == {
        "arn:aws:s3:::lake", "arn:aws:s3:::lake/*"}                     # the lake only
    p = by_name["postgresql"]
    assert str(spec.root / "charts/postgresql") in p.argv
    assert "catalog.existingSecret=ducklake-catalog" in p.argv
    assert "catalog.database=ducklake_catalog" in p.argv
    assert "catalog.reader.role=ducklake_reader" in p.argv
    assert "catalog.reader.existingSecret=ducklake-catalog-reader" in p.argv

    rollout = r.executed(r"rollout status deployment/ducklake-backend -n ducklake")
    assert len(rollout) == 1
    # order: cluster and image side by side; then the load beside namespaces, secrets and
    # helm (they need the API server only); the backend last, after both
    first = {k: next(i for i, c in enumerate(r.calls) if k in c.line)
             for k in ("kind create", "docker build", "kind load", "get namespaces",
                       "get secret", "upgrade --install", "rollout status")}
    assert max(first["kind create"], first["docker build"]) < first["kind load"]
    api = [first[k] for k in ("get namespaces", "get secret", "upgrade --install")]
    assert first["kind create"] < api[0] and api == sorted(api)
    assert max(first["kind load"], *api) < first["rollout status"]
    # the node turns Ready while those run: kind does not wait for it
    assert "--wait" not in r.executed(r"^kind create cluster")[0].argv


def test_up_generates_secrets_only_on_stdin_and_redacts_them(spec, progress, fake_layout):
    r = fresh_runner()
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    applied = [json.loads(c.input) for c in r.executed(r" apply --server-side .* -f -")]
    secrets = {f"{o['metadata']['namespace']}/{o['metadata']['name']}":
               {k: base64.b64decode(v).decode() for k, v in o["data"].items()}
               for lst in applied for o in lst["items"] if o["kind"] == "Secret"}
    assert set(secrets) == {"storage/minio-root", "storage/minio-backend-user",
                            "storage/ducklake-catalog", "ducklake/ducklake-postgres",
                            "ducklake/ducklake-s3", "ducklake/ducklake-backend-token",
                            "storage/minio-query-user", "storage/ducklake-catalog-reader",
                            "ducklake/ducklake-query-postgres", "ducklake/ducklake-query-s3",
                            "storage/minio-maintenance-user", "ducklake/ducklake-maintenance-s3"}
    root = secrets["storage/minio-root"]
    assert root["rootPassword"] != "minioadmin" and len(root["rootPassword"]) >= 32
    assert root["rootUser"] != "minioadmin"
    # the backend copies carry the same credentials
    assert secrets["ducklake/ducklake-postgres"] == {
        "username": "ducklake", "password": secrets["storage/ducklake-catalog"]["password"]}
    assert secrets["ducklake/ducklake-s3"] == {
        "access-key": "ducklake-backend",
        "secret-key": secrets["storage/minio-backend-user"]["secretKey"]}
    values = [root["rootPassword"], secrets["storage/ducklake-catalog"]["password"],
              secrets["storage/minio-backend-user"]["secretKey"]]
    for v in values:
        assert v in r.redactor.secrets
        assert not any(v in c.line for c in r.calls), "secret value in a command line"
        assert r.redactor(f"x {v} y") == "x *** y"


def existing_runner(spec, fake_layout) -> FakeRunner:
    """Everything already in place, as after a first `up`."""
    r = FakeRunner()
    r.on(r"^kind get clusters", stdout="ducklake\n")
    r.on(r"^kind get nodes --name ducklake", stdout="ducklake-control-plane\n")
    r.on(r"^docker inspect --format \{\{\.State\.Running\}\}", stdout="true\n")
    r.on(r"^docker inspect --format \{\{\.Image\}\}", stdout="sha256:abc\n")
    r.on(r"^docker image inspect", stdout="sha256:abc\n")
    r.on(r"crictl inspecti", stdout=json.dumps({"status": {"id": "sha256:abc"}}))
    r.on(r" get namespaces", stdout="namespace/storage\nnamespace/ducklake\n")

    def secret(name, ns, data):
        obj = {"metadata": {"name": name, "namespace": ns},
               "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}
        r.on(rf" get secret {name} -n {ns} ", stdout=json.dumps(obj))

    secret("minio-root", "storage", {"rootUser": "admin-x", "rootPassword": "p" * 40})
    secret("minio-backend-user", "storage", {"secretKey": "s" * 40})
    secret("ducklake-catalog", "storage", {"username": "ducklake", "password": "c" * 32})
    secret("ducklake-postgres", "ducklake", {"username": "ducklake", "password": "c" * 32})
    secret("ducklake-s3", "ducklake", {"access-key": "ducklake-backend", "secret-key": "s" * 40})
    secret("ducklake-backend-token", "ducklake", {"token": "t" * 40})
    secret("minio-query-user", "storage", {"secretKey": "q" * 40})
    secret("ducklake-catalog-reader", "storage", {"username": "ducklake_reader", "password": "r" * 32})
    secret("ducklake-query-postgres", "ducklake", {"username": "ducklake_reader", "password": "r" * 32})
    secret("ducklake-query-s3", "ducklake", {"access-key": "ducklake-query", "secret-key": "q" * 40})
    secret("minio-maintenance-user", "storage", {"secretKey": "m" * 40})
    secret("ducklake-maintenance-s3", "ducklake", {"access-key": "ducklake-maintenance",
                                                   "secret-key": "m" * 40})
    opts = _opts(fake_layout)
    refs = render.image_refs(spec, opts)
    for rel in spec.releases.values():
        _, digest = render.helm_upgrade_argv(["helm"], spec, rel, refs, opts)
        r.on(rf"^helm .* list --namespace {rel.namespace} --filter \^{rel.name}\$",
             stdout=json.dumps([{"name": rel.name, "status": "deployed",
                                 "chart": f"{rel.chart.name}-{rel.chart.version}"}]))
        r.on(rf"^helm .* get values {rel.name} ",
             stdout=json.dumps({"ducklakeInfra": {"specHash": digest}}))
    return r


def test_second_up_changes_nothing(spec, progress, fake_layout):
    r = existing_runner(spec, fake_layout)
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    assert not r.executed(r"^kind create|^kind load|^docker build|upgrade --install")
    applies = r.executed(r" apply --server-side .* -f -")
    assert len(applies) == 2, ("only the (unchanged) network policies and backend manifests "
                               "are re-applied (server-side apply: no change)")
    kinds = [{o["kind"] for o in json.loads(c.input)["items"]} for c in applies]
    assert kinds == [{"NetworkPolicy"}, {"ConfigMap", "Deployment", "Service"}]
    notes = {name.strip(): note for name, _, note in progress.timings}
    assert notes["release minio"] == "unchanged"
    assert notes["release postgresql"] == "unchanged"


def test_changed_values_trigger_upgrade(spec, progress, fake_layout):
    r = existing_runner(spec, fake_layout)
    r.on(r"^helm .* get values minio ", stdout=json.dumps({"ducklakeInfra": {"specHash": "old"}}))
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    helm = r.executed(r"upgrade --install")
    assert [c.argv[c.argv.index("--install") + 1] for c in helm] == ["minio"]


def test_helm_failure_is_one_clear_error_with_diagnostics(spec, progress, fake_layout):
    r = fresh_runner()
    r.on(r"upgrade --install postgresql", rc=1, stderr="Error: context deadline exceeded")
    r.on(r" get pods -n storage -o wide", stdout="postgresql-0   0/1   CrashLoopBackOff")
    with pytest.raises(DucklakeInfraError) as exc:
        stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    msg = str(exc.value)
    assert msg.startswith("helm release postgresql (namespace storage) failed: "
                          "Error: context deadline exceeded")
    assert "CrashLoopBackOff" in msg


def test_missing_bundle_chart_says_what_to_do(spec, progress, tmp_path):
    r = fresh_runner()
    with pytest.raises(DucklakeInfraError, match=r"run: ducklake-infra bundle build; or pass "
                                                 r"--online"):
        stack.up(_kind(r, spec), spec, r, progress, _opts(layout.Layout(tmp_path)))
    assert not r.calls


def test_online_uses_the_chart_repository(spec, fake_layout):
    rel = spec.releases["minio"]
    argv, _ = render.helm_upgrade_argv(["helm"], spec, rel, render.image_refs(spec, _opts(fake_layout)),
                                      _opts(fake_layout, online=True))
    i = argv.index("--install")
    assert argv[i + 1:i + 7] == ["minio", "minio", "--repo", "https://charts.min.io/",
                                 "--version", "5.4.0"]


def test_real_context_needs_backend_image_and_never_touches_kind(spec, progress, fake_layout):
    r = FakeRunner()
    r.on(r"config get-contexts", stdout="prod\n")
    cluster = ExistingCluster(r, context="prod")
    with pytest.raises(DucklakeInfraError, match="--image backend="):
        stack.up(cluster, spec, r, progress, _opts(fake_layout))
    r.on(r" get namespaces", stdout="namespace/storage\nnamespace/ducklake\n")
    r.on(r"^helm .* list ", stdout="[]")
    stack.up(cluster, spec, r, progress,
             _opts(fake_layout, images={"backend": "reg.example/backend:1"}))
    assert not r.find(r"^kind |^docker ")
    assert all("--context prod" in c.line or "--kube-context prod" in c.line
               for c in r.calls if c.argv[0] in ("kubectl", "helm") and "get-contexts" not in c.argv)
    deploy = json.loads(r.executed(r" apply --server-side .* -f -")[-1].input)["items"]
    d = next(o for o in deploy if o["kind"] == "Deployment")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "reg.example/backend:1"


def test_plan_without_cluster_lists_everything_and_changes_nothing(spec, progress, fake_layout):
    r = fresh_runner(dry_run=True)
    cluster = _kind(r, spec)
    lines = stack.plan(cluster, spec, r, progress, _opts(fake_layout))
    assert cluster.runner is r              # the plan records with a copy of the cluster
    text = "\n".join(lines)
    assert "kind create cluster --name ducklake" in text
    assert "docker build" in text and "kind load docker-image" in text
    assert text.count("upgrade --install") == 2
    assert "rollout status deployment/ducklake-backend" in text
    assert "get secret minio-root -n storage -o json --ignore-not-found   # read" in text
    assert "# stdin: Secret storage/minio-root" in text
    # only reads ran for real: the cluster's existence and the local base image's ID
    # (the backend build line carries it as a label)
    assert [c.line for c in r.executed()] == [
        "kind get clusters",
        "docker image inspect --format {{.Id}} ducklake-infra/python:3.11-bookworm"]


def test_plan_with_cluster_runs_reads_only(spec, progress, fake_layout):
    r = existing_runner(spec, fake_layout)
    r.dry_run = True
    lines = stack.plan(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    assert not any("upgrade --install" in x for x in lines)
    executed = r.executed()
    assert executed and all(c.mutating is False for c in executed)
    assert any(" apply --server-side" in x for x in lines)


def test_down_kind_deletes_our_cluster(spec, progress):
    r = FakeRunner().on(r"^kind get clusters", stdout="ducklake\n")
    stack.down(_kind(r, spec), spec, r, progress)
    assert [c.argv[:4] for c in r.executed(r"^kind delete")] == [["kind", "delete", "cluster",
                                                                   "--name"]]
    assert not r.find(r"^helm")


def test_down_kind_keep_cluster_uninstalls(spec, progress):
    r = FakeRunner().on(r"^kind get clusters", stdout="ducklake\n")
    stack.down(_kind(r, spec), spec, r, progress, keep_cluster=True)
    assert not r.find(r"^kind delete")
    assert len(r.executed(r"^helm .* uninstall")) == 2


def test_down_real_context_never_deletes_clusters_or_data(spec, progress):
    r = FakeRunner()
    msg = stack.down(ExistingCluster(r, context="prod"), spec, r, progress)
    assert not r.find(r"^kind")
    assert not r.find(r"delete .* (pvc|persistentvolumeclaims?|secrets?|namespaces?|ns)(/| |$)")
    uninstall = r.executed(r"^helm .* uninstall")
    assert [c.argv[c.argv.index("uninstall") + 1] for c in uninstall] == ["minio", "postgresql"]
    delete = r.executed(r"^kubectl .* delete")[0]
    for obj in ("deployment/ducklake-backend", "service/ducklake-backend",
                "configmap/ducklake-backend-config"):
        assert obj in delete.argv
    assert "kept PVCs storage/minio, storage/data-postgresql-0" in msg


def test_status_is_read_only_and_reports_readiness(spec):
    r = minio_only_runner()
    f = status.facts(ExistingCluster(r, context="prod"), spec, r)
    ok, text = f["ok"], status.text(f)
    assert not ok   # postgresql is not installed
    assert "release storage/minio: deployed chart minio-5.4.0" in text
    assert "release storage/postgresql: NOT INSTALLED (want postgresql-0.1.0)" in text
    assert "deployment ducklake/ducklake-backend: 1/1 ready" in text


def test_status_lists_the_nodes_with_the_stack_s_pods_on_each(spec):
    """Per pod its node and Patroni role; per node Ready, cordoned and the stack's pods (a
    drain's state at a glance). Nodes are facts, not the verdict: a cordoned node with
    every pod ready is still status OK."""
    r = minio_only_runner()
    r.on(r"get pods --namespace storage", stdout=json.dumps({"items": [
        {"metadata": {"name": f"postgresql-{i}", "labels": {"role": role}},
         "spec": {"nodeName": f"w{i}"},
         "status": {"phase": "Running", "containerStatuses": [{"ready": True}]}}
        for i, role in ((0, "primary"), (1, "replica"))]}))
    r.on(r"get nodes --output json", stdout=json.dumps({"items": [
        {"metadata": {"name": "w0"}, "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "w1"}, "spec": {"unschedulable": True},
         "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
        {"metadata": {"name": "w2"}, "spec": {},
         "status": {"conditions": [{"type": "Ready", "status": "False"}]}}]}))
    text = status.text(status.facts(ExistingCluster(r, context="prod"), spec, r))
    assert "pod storage/postgresql-0: Running 1/1 ready on w0 (primary)" in text
    assert "node w0: Ready: storage/postgresql-0 (primary)" in text
    assert "node w1: Ready, cordoned: storage/postgresql-1 (replica)" in text
    assert "node w2: NOT READY: no pod of the stack" in text
    assert all(c.mutating is False for c in r.executed())


def test_status_says_why_it_cannot_list_nodes_and_goes_on(spec):
    r = minio_only_runner()
    r.on(r"get nodes --output json", rc=1, stderr='nodes is forbidden: User "auditor" '
                                                  'cannot list resource "nodes"')
    f = status.facts(ExistingCluster(r, context="prod"), spec, r)
    text = status.text(f)
    assert "nodes: cannot list nodes: nodes is forbidden" in text
    assert "release storage/minio: deployed" in text


def test_command_error_redacts_registered_secrets():
    r = FakeRunner()
    r.redactor.add("hunter2hunter2")
    r.on("kubectl", rc=1, stderr="auth failed for password hunter2hunter2")
    with pytest.raises(CommandError) as exc:
        r.run(["kubectl", "get", "pods"])
    assert "hunter2hunter2" not in str(exc.value) and "***" in str(exc.value)


def test_policy_is_limited_to_the_two_buckets(spec):
    pol = render.minio_backend_policy(spec)
    resources = {res for st in pol["statements"] for res in st["resources"]}
    assert resources == {"arn:aws:s3:::raw", "arn:aws:s3:::lake",
                         "arn:aws:s3:::raw/*", "arn:aws:s3:::lake/*"}
    actions = {a for st in pol["statements"] for a in st["actions"]}
    assert not any(a.endswith("*") or a.startswith("admin:") for a in actions)
    assert "s3:CreateBucket" not in actions and "s3:DeleteBucket" not in actions


def test_committed_manifests_match_the_spec(spec):
    """k8s/*.yaml as committed == what the provisioner applies (apart from the image)."""
    committed = [d for f in spec.backend.manifests for d in yaml.safe_load_all(f.read_text()) if d]
    image = next(d for d in committed if d["kind"] == "Deployment")[
        "spec"]["template"]["spec"]["containers"][0]["image"]
    assert render.backend_objects(spec, image) == committed


def test_backend_config_has_no_credentials(spec):
    cfg = render.backend_config(spec)
    assert cfg["DUCKLAKE_S3_ENDPOINT"] == "minio.storage.svc.cluster.local:9000"
    assert cfg["DUCKLAKE_PG_DB"] == "ducklake_catalog"
    assert not any(k.endswith(("PASSWORD", "SECRET_KEY", "ACCESS_KEY", "USER")) for k in cfg)


def test_backend_image_tag_follows_content(spec, tmp_path):
    (tmp_path / "backend").mkdir()
    (tmp_path / "backend" / "app.py").write_text("a")
    (tmp_path / "Dockerfile").write_text("FROM x")
    paths = [tmp_path / "backend", tmp_path / "Dockerfile"]
    h1 = render.content_hash(paths, tmp_path)
    (tmp_path / "backend" / "__pycache__").mkdir()
    (tmp_path / "backend" / "__pycache__" / "app.pyc").write_bytes(b"zz")
    assert render.content_hash(paths, tmp_path) == h1
    (tmp_path / "backend" / "app.py").write_text("b")
    assert render.content_hash(paths, tmp_path) != h1


def test_stopped_kind_cluster_is_recreated_not_reused(spec, progress):
    """After a Docker engine restart the node is stopped: delete and create again."""
    r = FakeRunner().on(r"^kind get clusters", stdout="ducklake\n")
    r.on(r"^docker inspect --format", stdout="false\n")
    c = _kind(r, spec)
    c.ensure()
    lines = [x.line for x in r.executed(r"^kind ")]
    assert lines[1].startswith("kind delete cluster --name ducklake")
    assert lines[2].startswith("kind create cluster --name ducklake")
    assert c.owned


def test_a_cluster_from_an_older_node_image_is_recreated(spec, progress, fake_layout):
    """A kept kind cluster whose node runs another image than the bundle's node image now
    (e.g. built before the NetworkPolicy enforcer was added) is recreated, not reused."""
    r = FakeRunner()
    r.on(r"^kind get clusters", stdout="ducklake\n")
    r.on(r"^docker inspect --format \{\{\.State\.Running\}\}", stdout="true\n")
    r.on(r"^docker inspect --format \{\{\.Image\}\}", stdout="sha256:old\n")
    r.on(r"^docker image inspect", stdout="sha256:new\n")
    _kind(r, spec).ensure()
    assert r.executed(r"^kind delete cluster --name ducklake")
    assert r.executed(r"^kind create cluster --name ducklake")


def test_decode_secret_is_one_function_for_provisioner_and_suites():
    """Issue 12: two copies, and only one handled stringData and bad base64."""
    from ducklake_infra.provision import kube
    from ducklake_infra.suites import checks, objects
    assert objects.decode_secret is kube.decode_secret is checks.decode_secret
    s = {"data": {"a": "aHVudGVyMg==", "bad": "not base64!", "none": None,
                  "b": "b2xk"}, "stringData": {"b": "new", "n": None}}
    assert kube.decode_secret(s) == {"a": "hunter2", "bad": "", "none": "", "b": "new", "n": ""}


def test_bringup_reads_only_events_of_its_own_run():
    """Issue 12: test_no_image_was_pulled failed on a Pulling event an hour older than
    the run on a kept cluster. It now keeps only events since the run started."""
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).parents[1] / "cluster" / "test_bringup.py"
    spec = importlib.util.spec_from_file_location("bringup_for_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    old = {"lastTimestamp": "2026-11-29T10:00:00Z", "metadata": {}}
    new = {"eventTime": "2026-11-29T11:00:05.123456Z", "metadata": {}}
    started = mod.event_time({"lastTimestamp": "2026-11-29T11:00:00Z", "metadata": {}})
    assert mod.event_time(old) < started - 2 <= mod.event_time(new)
    assert mod.event_time({"metadata": {"creationTimestamp": "2026-11-29T11:00:01Z"}}) > started


def test_up_builds_the_backend_image_while_the_kind_cluster_starts(spec, progress, fake_layout,
                                                                    monkeypatch):
    """Issue 14, item 3: on a cold run both take a while and neither needs the other."""
    import threading
    import time
    spans = {}

    def slow(name, real):
        def run(*a):
            start = time.monotonic()
            time.sleep(0.3)
            out = real(*a)
            spans[name] = (start, time.monotonic(), threading.current_thread().name)
            return out
        return run
    monkeypatch.setattr(stack_steps, "ensure_cluster", slow("cluster", stack_steps.ensure_cluster))
    monkeypatch.setattr(stack_steps, "build_backend_image",
                        slow("image", stack_steps.build_backend_image))
    r = fresh_runner()
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    (c0, c1, ct), (i0, i1, it) = spans["cluster"], spans["image"]
    assert c0 < i1 and i0 < c1, spans            # the two spans overlap
    assert ct != it
    lines = [c.line for c in r.calls]
    first = lambda pat: next(i for i, x in enumerate(lines) if re.search(pat, x))  # noqa: E731
    # images are loaded only once the image is built and the cluster is up
    assert first(r"^kind load docker-image") > max(first(r"^docker build"),
                                                    first(r"^kind create cluster"))


def test_a_plan_lists_the_cluster_before_the_backend_image(spec, progress, fake_layout):
    """A plan keeps the sequential order (its commands are a script to read)."""
    r = fresh_runner(dry_run=True)
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    lines = [c.line for c in r.calls]
    cluster = [i for i, x in enumerate(lines) if x.startswith("kind ") and " load " not in x]
    image = [i for i, x in enumerate(lines) if x.startswith("docker build")]
    assert cluster and image and max(cluster) < min(image), lines


def test_up_on_kind_records_the_digest_the_node_runs_each_image_under(spec, progress,
                                                                       fake_layout):
    """SUPPLY-SBOM-001 needs it: a `kind load`ed image runs as import-<date>@sha256:<manifest>,
    not under its image ID; what the node's runtime says is written to <sbom>/digests.json."""
    from ducklake_infra.provision.bundle import image_digests
    image_id, manifest = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    r = existing_runner(spec, fake_layout)
    r.on(r"crictl inspecti -o json \S*backend", stdout=json.dumps({"status": {
        "id": image_id, "repoDigests": [f"docker.io/library/import-2026-11-29@{manifest}"]}}))
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    got = image_digests.read(fake_layout.sbom)
    assert list(got) == [manifest]
    assert got[manifest].image_id == image_id and "backend" in got[manifest].ref
    assert got[manifest].where == "kind node ducklake-control-plane"
    assert "provenance (SBOM, digests)" in [t[0] for t in progress.timings]


def test_plan_records_nothing(spec, progress, fake_layout):
    r = existing_runner(spec, fake_layout)
    r.dry_run = True
    stack.plan(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    assert not (fake_layout.sbom / "digests.json").exists()


def test_up_asks_the_node_about_each_image_once(spec, progress, fake_layout):
    """load_images' crictl answers serve the provenance step too (one docker exec per
    image, not two)."""
    r = existing_runner(spec, fake_layout)
    stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    asked = [c.argv[-1] for c in r.executed(r"crictl inspecti")]
    assert asked and len(asked) == len(set(asked)), asked


def test_a_cluster_of_another_shape_is_recreated(spec, progress, fake_layout):
    """The profile decides the nodes: a kept one-node cluster is not reused for a spec that
    asks for workers (nor the other way round)."""
    r = existing_runner(spec, fake_layout)
    c = _kind(r, spec)
    c.workers = 3
    c.ensure()
    assert r.executed(r"^kind delete cluster --name ducklake")
    create = r.executed(r"^kind create cluster --name ducklake")[0]
    cfg = Path(create.argv[create.argv.index("--config") + 1]).read_text()
    assert cfg.count("- role: worker") == 3 and cfg.count("- role: control-plane") == 1
    assert c.node_containers() == ["ducklake-control-plane", "ducklake-worker",
                                   "ducklake-worker2", "ducklake-worker3"]


def test_a_whole_cluster_restart_restarts_every_node(spec):
    r = FakeRunner()
    c = _kind(r, spec)
    c.workers = 2
    c.restart_node()
    assert [x.argv for x in r.executed(r"^docker restart")] == [
        ["docker", "restart", "ducklake-control-plane", "ducklake-worker", "ducklake-worker2"]]
