"""Registry push by digest, and `up --registry` on a real context, with the fake runner."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.provision import oci
from ducklake_infra.provision import stack
from ducklake_infra.provision import render
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.cluster import ExistingCluster
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress

from .fakes import FakeRunner

REG = "reg.example.com:5000/team/ducklake"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def _opts(lay, **kw):
    return render.Options(layout=lay, registry=oci.parse_registry(REG), **kw)


def _repo(local: str) -> str:
    return f"{REG}/{local.split(':')[0].rsplit('/', 1)[-1]}"


def registry_runner(*, present: bool = False) -> FakeRunner:
    """Every local image exists; the registry holds nothing (or everything, by digest)."""
    r = FakeRunner()
    r.on(r"^docker image inspect --format \{\{\.Id\}\}", stdout="sha256:abc\n")
    r.on(r"^docker manifest inspect", rc=1, stderr="no such manifest: x")
    r.on(r"^docker push (\S+)", stdout=f"latest: digest: {D1} size: 527\n")
    r.on(rf"^docker manifest inspect \S+@{D1}$", stdout="{}")   # what we pushed is there
    if present:
        for local in (layout.MINIO_IMAGE, layout.MC_IMAGE, layout.POSTGRES_IMAGE, "ducklake-infra/backend"):
            repo = _repo(local)
            r.on(rf"RepoDigests.* {local}", stdout=json.dumps([f"{repo}@{D2}"]))
            r.on(rf"^docker manifest inspect {repo}@{D2}$", stdout="{}")
    else:
        r.on(r"RepoDigests", stdout="[]")
    r.on(r"config get-contexts", stdout="prod\n")
    r.on(r" get namespaces", stdout="namespace/storage\nnamespace/ducklake\n")
    r.on(r" get secret ", stdout="")
    r.on(r"^helm .* list ", stdout="[]")
    return r


def test_parse_registry():
    reg = oci.parse_registry("localhost:5000/ducklake")
    assert (reg.host, reg.prefix, reg.insecure) == ("localhost:5000", "ducklake", True)
    reg = oci.parse_registry(REG)
    assert (reg.host, reg.prefix, reg.insecure) == ("reg.example.com:5000", "team/ducklake",
                                                    False)
    assert reg.target(layout.MINIO_IMAGE) == f"{REG}/minio:{layout.MINIO_IMAGE.rsplit(':', 1)[1]}"
    assert oci.parse_registry("127.0.0.1:5000").insecure
    with pytest.raises(DucklakeInfraError, match="without a scheme"):
        oci.parse_registry("http://localhost:5000/x")
    with pytest.raises(DucklakeInfraError, match="not a valid repository path"):
        oci.parse_registry("localhost:5000/Team")


def test_helm_parts_render_a_pure_digest_reference():
    repo, tag = oci.helm_image_parts(f"{REG}/minio@{D1}")
    assert f"{repo}:{tag}" == f"{REG}/minio@{D1}"
    assert oci.helm_image_parts("ducklake-infra/minio:v1") == ("ducklake-infra/minio", "v1")
    assert oci.helm_image_parts("localhost:5000/x") == ("localhost:5000/x", "latest")


def test_up_on_real_context_pushes_and_installs_by_digest(spec, progress, fake_layout):
    r = registry_runner()
    refs = stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    pushes = r.executed(r"^docker push ")
    assert sorted(c.argv[2].split(":")[-2].rsplit("/", 1)[-1] if c.argv[2].count(":") > 1
                  else c.argv[2].split(":")[0].rsplit("/", 1)[-1] for c in pushes) == \
        ["backend", "mc", "minio", "postgresql"]
    assert all(c.argv[2].startswith(REG + "/") for c in pushes)
    tags = r.executed(r"^docker tag ")
    assert len(tags) == 4 and (layout.MINIO_IMAGE, f"{REG}/minio:{layout.MINIO_IMAGE.split(':')[1]}") in \
        [tuple(c.argv[2:4]) for c in tags]
    for key in ("minio", "mc", "postgresql", "backend"):
        assert refs[key].startswith(REG + "/") and refs[key].endswith("@" + D1)
    assert not r.find(r"^kind ")
    helm = {c.argv[c.argv.index("--install") + 1]: c for c in r.executed(r"upgrade --install")}
    m = helm["minio"].argv
    assert f"image.repository={REG}/minio@sha256" in m and f"image.tag={'1' * 64}" in m
    assert f"mcImage.repository={REG}/mc@sha256" in m
    assert f"image.repository={REG}/postgresql@sha256" in helm["postgresql"].argv
    deploy = json.loads(r.executed(r" apply --server-side .* -f -")[-1].input)["items"]
    d = next(o for o in deploy if o["kind"] == "Deployment")
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == f"{REG}/backend@{D1}"
    assert "imagePullSecrets" not in d["spec"]["template"]["spec"]
    # manifest checks are plain https (not localhost), never --insecure
    assert not r.find(r"manifest inspect --insecure")


def test_second_push_skips_images_present_by_digest(spec, progress, fake_layout):
    r = registry_runner(present=True)
    pushed = stack.push_only(spec, r, progress, _opts(fake_layout))
    assert not r.executed(r"^docker (push|tag) ")
    assert [p.action for p in pushed] == ["present"] * 4
    assert oci.push_summary(pushed) == "0 pushed, 4 already present (all present)"
    assert all(p.ref.endswith("@" + D2) for p in pushed)


def test_registry_unreachable_is_one_clear_error(spec, progress, fake_layout):
    r = registry_runner()
    r.on(r"^docker manifest inspect", rc=1, stderr='failed to configure transport: error '
         'pinging v2 registry: Get "https://reg.example.com:5000/v2/": dial tcp: lookup '
         'reg.example.com: no such host')
    with pytest.raises(oci.RegistryError, match=r"registry reg.example.com:5000 is unreachable: "
                       r".*no such host"):
        stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    assert not r.executed(r"^docker push|^helm .* upgrade")


def test_push_denied_says_docker_login(spec, progress, fake_layout):
    r = registry_runner()
    r.on(r"^docker push", rc=1,
         stderr="denied: requested access to the resource is denied")
    with pytest.raises(oci.RegistryError) as exc:
        stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    msg = str(exc.value)
    assert "denied the push of" in msg and "docker login reg.example.com:5000" in msg
    assert not r.executed(r"^helm .* upgrade")


def test_image_missing_from_registry_at_install_time(spec, progress, fake_layout):
    r = registry_runner()
    pushed_repo = f"{REG}/postgresql@{D1}"
    # pushed fine, but gone when checked right before the install
    r.on(rf"^docker manifest inspect {pushed_repo}$", rc=1,
         stderr=f"no such manifest: {pushed_repo}")
    with pytest.raises(oci.RegistryError, match=r"postgresql\) is missing from registry "
                       r"reg.example.com:5000 at install time"):
        stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    assert not r.executed(r"^helm .* upgrade")


def _pod_json(reason: str, image: str) -> str:
    return json.dumps({"items": [{"metadata": {"name": "minio-0"}, "status": {
        "phase": "Pending", "containerStatuses": [{"name": "minio", "image": image,
                                                   "ready": False, "state": {"waiting": {
                                                       "reason": reason,
                                                       "message": "Back-off pulling image"}}}]}}]})


def test_image_pull_backoff_reported_with_image_and_node_message(spec, progress, fake_layout):
    r = registry_runner()
    image = f"{REG}/minio@{D1}"
    r.on(r"^helm .* upgrade --install minio", rc=1,
         stderr="Error: UPGRADE FAILED: context deadline exceeded")
    r.on(r"get pods -n storage -o json$", stdout=_pod_json("ImagePullBackOff", image))
    r.on(r"get events -n storage -o json$", stdout=json.dumps({"items": [{
        "involvedObject": {"kind": "Pod", "name": "minio-0"}, "reason": "Failed",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "message": f'Failed to pull image "{image}": failed to resolve reference: '
                   "unexpected status from HEAD request: 401 Unauthorized"}]}))
    with pytest.raises(DucklakeInfraError) as exc:
        stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    msg = str(exc.value)
    first = msg.splitlines()[0]
    assert "helm release minio (namespace storage) is not ready: the node could not pull" in first
    assert f"ImagePullBackOff for image {image}: Failed to pull image" in msg
    assert "401 Unauthorized" in msg
    assert "registry.image_pull_secret" in msg


def test_backend_rollout_pull_failure(spec, progress, fake_layout):
    r = registry_runner()
    r.on(r"rollout status", rc=1, stderr="error: timed out waiting for the condition")
    r.on(r"get pods -n ducklake -o json$", stdout=_pod_json("ErrImagePull",
                                                             f"{REG}/backend@{D1}"))
    with pytest.raises(DucklakeInfraError, match=r"backend deployment ducklake/ducklake-backend "
                       r"is not ready: the node could not pull"):
        stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))


def test_image_pull_secret_wired_and_checked(spec, progress, fake_layout):
    import dataclasses
    s2 = dataclasses.replace(spec, image_pull_secret="team-registry")
    r = registry_runner()
    with pytest.raises(DucklakeInfraError, match=r"imagePullSecret 'team-registry' .* missing "
                       r"in namespace\(s\) ducklake, storage"):
        stack.up(ExistingCluster(r, context="prod"), s2, r, progress, _opts(fake_layout))
    r = registry_runner()
    r.on(r"get secret team-registry", stdout="secret/team-registry\n")
    stack.up(ExistingCluster(r, context="prod"), s2, r, progress, _opts(fake_layout))
    helm = {c.argv[c.argv.index("--install") + 1]: c for c in r.executed(r"upgrade --install")}
    assert 'imagePullSecrets=[{"name": "team-registry"}]' in helm["minio"].argv
    applied = [json.loads(c.input)["items"] for c in r.executed(r" apply --server-side")]
    sa = [o for objs in applied for o in objs if o["kind"] == "ServiceAccount"]
    assert sa == [{"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "default", "namespace": "storage"},
                   "imagePullSecrets": [{"name": "team-registry"}]}]
    d = next(o for objs in applied for o in objs if o["kind"] == "Deployment")
    assert d["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "team-registry"}]


def test_plan_shows_every_push_and_install(spec, progress, fake_layout):
    r = registry_runner()
    r.dry_run = True
    lines = stack.plan(ExistingCluster(r, context="prod"), spec, r, progress,
                       _opts(fake_layout))
    pushes = [ln for ln in lines if ln.startswith("docker push ")]
    assert len(pushes) == 4
    assert len([ln for ln in lines if " upgrade --install " in ln]) == 2
    assert not r.executed(r"^docker (push|tag)|upgrade --install| apply ")


def test_down_purge_deletes_data_and_only_our_namespaces(spec, progress):
    r = FakeRunner()
    r.on(r"get namespaces -l", stdout="namespace/ducklake\n")
    msg = stack.down(ExistingCluster(r, context="prod"), spec, r, progress, purge=True)
    dels = [c.line for c in r.executed(r" delete ")]
    assert any("persistentvolumeclaim/minio" in d for d in dels)
    assert any("secret/minio-root" in d for d in dels)
    assert any("namespace/ducklake" in d for d in dels)
    assert not any("namespace/storage" in d for d in dels)
    assert "left behind: namespaces storage" in msg


def test_kind_config_registry_mirror_patch(tmp_path):
    import yaml
    from ducklake_infra.provision.cluster import kind_config
    patch = ('[plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:5001"]\n'
             '  endpoint = ["http://172.18.0.1:5001"]\n')
    cfg = yaml.safe_load(kind_config(tmp_path, (patch,)))
    assert cfg["containerdConfigPatches"] == [patch]
    assert cfg["nodes"][0]["role"] == "control-plane"
    assert "containerdConfigPatches" not in yaml.safe_load(kind_config(tmp_path))


def test_plan_lists_every_push_when_the_registry_cannot_be_asked(spec, progress, fake_layout):
    r = registry_runner()
    r.on(r"^docker manifest inspect", rc=1, stderr="dial tcp 10.0.0.1:443: i/o timeout")
    r.dry_run = True
    lines = stack.plan(ExistingCluster(r, context="prod"), spec, r, progress,
                       _opts(fake_layout))
    assert len([ln for ln in lines if ln.startswith("docker push ")]) == 4
    assert any(f"image.repository={REG}/minio@sha256" in ln for ln in lines)


def test_plan_for_an_unreachable_context_lists_reads(spec, fake_layout, capsys):
    """An API server that does not answer: plan lists everything (reads marked) and says
    why; it used to end in a false "unknown kube context"."""
    r = registry_runner()
    r.on(r" get --raw /version", rc=1, stderr="The connection to the server x:6443 was refused")
    r.dry_run = True
    lines = stack.plan(ExistingCluster(r, context="prod"), spec, r, Progress(quiet=True),
                       _opts(fake_layout))
    assert len([ln for ln in lines if ln.startswith("docker push ")]) == 4
    assert any(ln.endswith("   # read") and " get secret " in ln for ln in lines)
    assert "note: cluster not reachable (API server of context 'prod' is unreachable or " \
           "refused us: The connection to the server x:6443 was refused)" in capsys.readouterr().err


def test_plan_for_an_unknown_context_is_an_error(spec, progress, fake_layout):
    r = registry_runner()
    r.on(r"config get-contexts", stdout="dev\n")
    r.dry_run = True
    with pytest.raises(DucklakeInfraError, match=r"unknown kube context 'prod' .*it has dev"):
        stack.plan(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))


# ---- one parser of image references (issue 12: split_image and split_ref disagreed) -------
@pytest.mark.parametrize("ref,repo,tag,digest,version", [
    ("ducklake-infra/minio:RELEASE.2026", "ducklake-infra/minio", "RELEASE.2026", None,
     "RELEASE.2026"),
    ("reg.example:5000/x/y:1.2", "reg.example:5000/x/y", "1.2", None, "1.2"),
    ("reg.example:5000/x/y", "reg.example:5000/x/y", None, None, "latest"),
    ("reg.example:5000/x/y@sha256:ab12", "reg.example:5000/x/y", None, "sha256:ab12",
     "sha256:ab12"),
    ("x/y:1.2@sha256:ab12", "x/y", "1.2", "sha256:ab12", "sha256:ab12"),
])
def test_image_ref_parse(ref, repo, tag, digest, version):
    r = oci.ImageRef.parse(ref)
    assert (r.repo, r.tag, r.digest, r.version) == (repo, tag, digest, version)
    assert oci.split_ref(ref) == (repo, tag or "latest")


@pytest.mark.parametrize("ref,want", [
    ("docker.io/library/postgres:16", "postgres:16"),
    ("index.docker.io/library/postgres", "postgres"),
    ("registry-1.docker.io/bitnami/postgresql:16", "bitnami/postgresql:16"),
    ("docker.io/bitnami/postgresql@sha256:ab12", "bitnami/postgresql@sha256:ab12"),
    ("library/postgres:16", "postgres:16"),
    ("bitnami/postgresql:16", "bitnami/postgresql:16"),
    ("quay.io/minio/minio:RELEASE.x", "quay.io/minio/minio:RELEASE.x"),
    ("reg.example:5000/library/x:1", "reg.example:5000/library/x:1"),
])
def test_familiar_names_one_docker_hub_image_one_way(ref, want):
    assert oci.familiar(ref) == want


def test_up_with_a_registry_records_each_pushed_digest(spec, progress, fake_layout):
    """The digest a push answered is what the cluster's pods report: kept in
    <sbom>/digests.json beside the image ID it was pushed from (SUPPLY-SBOM-001)."""
    from ducklake_infra.provision.bundle import image_digests
    r = registry_runner()
    local_id = "sha256:" + "e" * 64
    r.on(r"^docker image inspect --format \{\{\.Id\}\}", stdout=f"{local_id}\n")
    stack.up(ExistingCluster(r, context="prod"), spec, r, progress, _opts(fake_layout))
    got = image_digests.read(fake_layout.sbom)
    assert list(got) == [D1]                    # every push answered the same digest here
    assert got[D1].image_id == local_id and got[D1].where == f"registry {REG}"


def test_down_purge_of_the_distributed_profile_deletes_every_claim_and_patronis_configmaps(
        spec, progress):
    import dataclasses
    from ducklake_infra.provision.spec import DistributedSpec
    dspec = dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec())
    r = FakeRunner()
    r.on(r"get namespaces -l", stdout="")
    stack.down(ExistingCluster(r, context="prod"), dspec, r, progress, purge=True)
    deleted = " ".join(c.line for c in r.executed(r" delete "))
    for i in range(4):
        assert f"persistentvolumeclaim/export-minio-{i}" in deleted
    for i in range(3):
        assert f"persistentvolumeclaim/data-postgresql-{i}" in deleted
    for k in ("config", "leader", "sync", "failover"):
        assert f"configmap/postgresql-{k}" in deleted
    r = FakeRunner()       # standalone: the spec's claims, no Patroni ConfigMap
    r.on(r"get namespaces -l", stdout="")
    stack.down(ExistingCluster(r, context="prod"), spec, r, progress, purge=True)
    deleted = " ".join(c.line for c in r.executed(r" delete "))
    assert "configmap/postgresql-" not in deleted and "export-minio" not in deleted
