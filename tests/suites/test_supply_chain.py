"""ducklake_infra/suites/supply_chain.py on hand-written objects: the conforming stack (every
image by digest) passes both controls; each PASS/WARN/FAIL path of SUPPLY-PIN-001 and
each withdrawn source of SUPPLY-SRC-001 is reached by breaking one thing; every verdict
carries one evidence line per container (reference, running imageID, verdict)."""

from __future__ import annotations

import copy
import datetime as _dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from .conftest import IMAGES, digest
from ducklake_infra.provision.bundle import image_digests
from ducklake_infra.suites import evidence
from ducklake_infra.suites import supply_chain as sc
from ducklake_infra.suites.checks import CheckInputMissing
from ducklake_infra.suites.checks import CHECKS
from ducklake_infra.suites.live import images_loaded
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, WARN, ControlsError, catalog

PIN, SRC = CHECKS["SUPPLY-PIN-001"], CHECKS["SUPPLY-SRC-001"]
HASH_TAG = "ducklake-infra/backend:75b6f3fa4759"          # what `up` runs on kind
LOADED_ID = digest("d")                                    # kind: the loaded image's id


def backend(objs: Objects, spec):
    """(template container, its pod) of the backend."""
    b = spec.backend
    dep = objs.get("Deployment", b.deployment, b.namespace)
    pod = objs.pods_of(dep)[0]
    return dep["spec"]["template"]["spec"]["containers"][0], pod


def run_image(objs, spec, ref: str, image_id: str | None = "") -> Objects:
    """The backend's template and pod run ``ref``; its pod reports ``image_id`` (None: the
    pod is gone)."""
    c, pod = backend(objs, spec)
    c["image"] = ref
    pod["spec"]["containers"][0]["image"] = ref
    if image_id is None:
        objs.items.remove(pod)
    else:
        pod["status"]["containerStatuses"][0]["imageID"] = image_id
    return objs


def line_of(res, container="container backend"):
    lines = [e for e in res.evidence if container in e]
    assert len(lines) == 1, res.evidence
    return lines[0]


def verdict_is(res, status, cid, needle=""):
    assert res.status == status, res.evidence
    assert res.control == cid
    if status != PASS:
        assert res.remediation == catalog()[cid].remediation
    if needle:
        assert needle in line_of(res), res.evidence
    return res


# ---- SUPPLY-PIN-001 ---------------------------------------------------------------------------
def test_the_conforming_stack_runs_every_image_by_digest(good, spec):
    res = verdict_is(PIN(good, spec), PASS, "SUPPLY-PIN-001")
    assert len(res.evidence) == 3                    # MinIO, PostgreSQL, backend
    for ref in IMAGES.values():
        line = next(e for e in res.evidence if f"image {ref};" in e)
        assert f"running docker.io/{ref}" in line and "-> PASS: pinned by digest" in line


@pytest.mark.parametrize("loaded", [False, True])
@pytest.mark.parametrize("ref,needle", [
    ("ducklake-infra/backend:latest", "tag 'latest' moves"),
    ("ducklake-infra/backend:LATEST", "moves by design"),
    ("ducklake-infra/backend:stable", "tag 'stable' moves"),
    ("ducklake-infra/backend", "no tag and no digest"),
    ("reg.example:5000/team/backend", "no tag and no digest"),
])
def test_latest_no_tag_or_a_moving_tag_fails_even_on_kind(good, spec, ref, needle, loaded):
    objs = run_image(good, spec, ref, LOADED_ID)
    res = verdict_is(PIN(objs, spec, loaded=loaded), FAIL, "SUPPLY-PIN-001", needle)
    assert f"image {ref};" in line_of(res) and f"running {LOADED_ID}" in line_of(res)


def test_a_digest_wins_over_a_moving_tag_beside_it(good, spec):
    objs = run_image(good, spec, f"ducklake-infra/backend:latest@{digest('e')}", LOADED_ID)
    verdict_is(PIN(objs, spec), PASS, "SUPPLY-PIN-001")


def test_a_release_or_hash_tag_of_a_loaded_image_passes_on_kind(good, spec):
    objs = run_image(good, spec, HASH_TAG, LOADED_ID)
    res = verdict_is(PIN(objs, spec, loaded=True), PASS, "SUPPLY-PIN-001", "loaded into the node")
    assert f"running {LOADED_ID}" in line_of(res)


def test_a_tag_without_a_digest_warns_on_a_cluster_that_pulls(good, spec):
    objs = run_image(good, spec, HASH_TAG, LOADED_ID)
    res = verdict_is(PIN(objs, spec), WARN, "SUPPLY-PIN-001", "the registry can move it")
    assert line_of(res).startswith("warning: ") and "pin it as" not in line_of(res)


def test_a_pulled_tag_warns_with_the_digest_to_pin(good, spec):
    ref = "reg.example.com/team/backend:1.4.2"
    objs = run_image(good, spec, ref, f"docker-pullable://{ref.split(':')[0]}@{digest('f')}")
    verdict_is(PIN(objs, spec), WARN, "SUPPLY-PIN-001",
               f"pin it as reg.example.com/team/backend@{digest('f')}")


@pytest.mark.parametrize("loaded", [False, True])
def test_a_tag_whose_running_digest_nobody_reports_warns(good, spec, loaded):
    objs = run_image(good, spec, HASH_TAG, None)
    res = verdict_is(PIN(objs, spec, loaded=loaded), WARN, "SUPPLY-PIN-001",
                     "no pod reports the digest")
    assert "(no pod reports an imageID)" in line_of(res)


def test_an_old_pod_of_another_image_is_not_taken_for_the_new_one(good, spec):
    """Mid-rollout: the pod still runs the old reference; its imageID proves nothing of
    the template's."""
    objs = run_image(good, spec, HASH_TAG, LOADED_ID)
    backend(objs, spec)[1]["spec"]["containers"][0]["image"] = "ducklake-infra/backend:0ld"
    verdict_is(PIN(objs, spec, loaded=True), WARN, "SUPPLY-PIN-001", "no pod reports")


def test_pods_running_two_digests_under_one_tag_warn_even_on_kind(good, spec):
    objs = run_image(good, spec, HASH_TAG, LOADED_ID)
    second = copy.deepcopy(backend(objs, spec)[1])
    second["metadata"]["name"] += "-2"
    second["status"]["containerStatuses"][0]["imageID"] = digest("e")
    objs.items.append(second)
    verdict_is(PIN(objs, spec, loaded=True), WARN, "SUPPLY-PIN-001", "2 different digests")


def test_init_containers_and_a_missing_image_are_judged(good, spec, find):
    sts = find(good, "StatefulSet", spec.postgresql.fullname)
    sts["spec"]["template"]["spec"]["initContainers"] = [{"name": "init", "image": "busybox"},
                                                         {"name": "noimage"}]
    res = verdict_is(PIN(good, spec), FAIL, "SUPPLY-PIN-001")
    assert any("container init: image busybox;" in e and "no tag" in e for e in res.evidence)
    assert any("container noimage: image (none)" in e and "no image reference" in e
               for e in res.evidence)


def test_a_fail_keeps_every_containers_line(good, spec, find):
    """The evidence lists every container, whatever the worst verdict."""
    objs = run_image(good, spec, "ducklake-infra/backend:latest", LOADED_ID)
    c = find(objs, "Deployment", spec.minio.fullname)["spec"]["template"]["spec"]["containers"][0]
    c["image"] = "ducklake-infra/minio:RELEASE.2026-02-12T20-18-48Z"
    res = verdict_is(PIN(objs, spec), FAIL, "SUPPLY-PIN-001")
    assert [e.split(" ", 1)[0] for e in res.evidence] == ["Deployment/ducklake/ducklake-backend",
                                                           "warning:", "ok:"]


def test_a_bare_pod_is_judged_and_owned_ones_through_their_owner(good, spec):
    pod = copy.deepcopy(backend(good, spec)[1])
    pod["metadata"].update(name="debug", labels={"run": "debug"})
    del pod["metadata"]["ownerReferences"]
    pod["spec"]["containers"][0]["image"] = "debug:latest"
    good.items.append(pod)
    res = verdict_is(PIN(good, spec), FAIL, "SUPPLY-PIN-001")
    assert res.evidence[0].startswith("Pod/ducklake/debug container backend: image debug:latest")
    assert len(res.evidence) == 4                     # the owned pods are not lines of their own


def test_no_workload_is_an_error_not_a_pass(spec):
    for fn in (PIN, SRC):
        res = fn(Objects([]), spec)
        assert res.status == ERROR and "no workload of the stack" in res.evidence[0]


@pytest.mark.parametrize("image_id,want", [
    (digest("a"), digest("a")),
    (f"docker.io/library/import-2026-11-29@{digest('b')}", digest("b")),
    (f"docker-pullable://reg.example/x@{digest('c')}", digest("c")),
    (f"docker://{digest('d')}", digest("d")),
    ("sha256:abc", None),
    ("", None),
])
def test_running_digest(image_id, want):
    assert sc.running_digest(image_id) == want


def test_images_loaded_means_the_specs_kind_cluster(spec):
    assert images_loaded(SimpleNamespace(is_kind=True, context="x"), spec)
    assert images_loaded(SimpleNamespace(is_kind=False, context=f"kind-{spec.kind_cluster}"), spec)
    assert not images_loaded(SimpleNamespace(is_kind=False, context="prod"), spec)


# ---- SUPPLY-SRC-001 ---------------------------------------------------------------------------
def test_the_conforming_stack_uses_no_withdrawn_source(good, spec):
    res = verdict_is(SRC(good, spec), PASS, "SUPPLY-SRC-001")
    assert len(res.evidence) == 3 and all("-> PASS: no withdrawn source" in e
                                          for e in res.evidence)


@pytest.mark.parametrize("ref,prefix", [
    ("docker.io/bitnami/postgresql:16", "docker.io/bitnami/"),
    (f"bitnami/postgresql@{digest('e')}", "docker.io/bitnami/"),          # a digest is no help
    ("index.docker.io/bitnami/postgresql:16.4.0-debian-12-r0", "docker.io/bitnami/"),
    ("registry-1.docker.io/bitnamilegacy/postgresql:16", "docker.io/bitnamilegacy/"),
    ("quay.io/minio/minio:RELEASE.2025-09-07T16-13-09Z", "quay.io/minio/minio"),
    ("quay.io/minio/mc:RELEASE.2025-08-13T08-35-41Z", "quay.io/minio/mc"),
    ("minio/minio", "docker.io/minio/"),
    ("docker.io/minio/mc:RELEASE.2024-09-16T17-43-14Z", "docker.io/minio/"),
])
def test_an_image_from_a_withdrawn_source_fails(good, spec, ref, prefix):
    objs = run_image(good, spec, ref, LOADED_ID)
    res = verdict_is(SRC(objs, spec), FAIL, "SUPPLY-SRC-001", f"withdrawn source {prefix} since")
    entry = next(w for w in sc.withdrawn_sources() if w.prefix == prefix)
    assert entry.references[0] in line_of(res) and f"image {ref};" in line_of(res)


@pytest.mark.parametrize("ref", [
    "quay.io/minio/aistor/minio:RELEASE.2026",   # not the community repository
    "quay.io/minio/minio-extra:1",               # a repository, not a prefix
    "bitnamisecure/postgresql:latest",           # Bitnami's remaining free images
    "docker.io/library/postgres:16",
    "ghcr.io/bitnami/postgresql:16",             # another registry
])
def test_other_sources_pass(good, spec, ref):
    objs = run_image(good, spec, ref, LOADED_ID)
    verdict_is(SRC(objs, spec), PASS, "SUPPLY-SRC-001", "no withdrawn source")


def test_a_mirror_of_a_withdrawn_image_fails_by_its_running_imageid(good, spec):
    objs = run_image(good, spec, "reg.example.com/mirror/postgresql:16",
                     f"docker.io/bitnami/postgresql@{digest('e')}")
    verdict_is(SRC(objs, spec), FAIL, "SUPPLY-SRC-001",
               "running imageID of bitnami/postgresql is a withdrawn source docker.io/bitnami/")


def test_withdrawn_and_latest_fail_both_controls_independently(good, spec):
    objs = run_image(good, spec, "minio/minio:latest", LOADED_ID)
    verdict_is(PIN(objs, spec, loaded=True), FAIL, "SUPPLY-PIN-001", "latest")
    verdict_is(SRC(objs, spec), FAIL, "SUPPLY-SRC-001", "docker.io/minio/")


# ---- withdrawn_sources.yaml ----------------------------------------------------------------
def test_the_shipped_list_names_a_dated_public_reference_for_every_source():
    sources = sc.load_withdrawn()
    assert {w.prefix for w in sources} >= {"docker.io/bitnami/", "docker.io/minio/",
                                          "quay.io/minio/minio"}
    for w in sources:
        assert w.reason and w.since[:4] >= "2025" and w.references
        assert all(u.startswith("https://") for u in w.references)


DROP = object()
ENTRY = {"prefix": "docker.io/x/", "reason": "gone", "since": "2025",
         "references": ["https://example.org/a"]}


@pytest.mark.parametrize("change,msg", [
    ({"extra": 1}, "unknown key(s) extra"),
    ({"reason": DROP}, "missing key(s) reason"),
    ({"reason": "  "}, "reason: missing or not a string"),
    ({"since": "Aug 2025"}, "not YYYY"),
    ({"since": 2025}, "not YYYY"),
    ({"references": ["http://example.org"]}, "https URLs"),
    ({"references": []}, "https URLs"),
    ({"prefix": "bitnami/"}, "naming its registry"),
    ({"prefix": "docker.io/"}, "naming its registry"),
    ({"prefix": "Docker.io/Bitnami/"}, "lowercase"),
    ({"prefix": "docker.io/x/y:1"}, "names a tag or digest"),
    ({"prefix": "docker.io/library/"}, "names no repository"),
])
def test_the_list_is_validated_strictly(change, msg):
    entry = {**ENTRY, **change}
    entry = {k: v for k, v in entry.items() if v is not DROP}
    with pytest.raises(ControlsError, match="withdrawn_sources.yaml: sources\\[0\\]") as exc:
        sc.parse_withdrawn({"sources": [entry]})
    assert msg in str(exc.value)


@pytest.mark.parametrize("raw", [None, [], {"sources": []}, {"sources": [ENTRY], "more": 1}])
def test_the_list_has_exactly_one_non_empty_key(raw):
    with pytest.raises(ControlsError, match="one key, 'sources'"):
        sc.parse_withdrawn(raw)


def test_one_source_spelled_two_ways_is_listed_twice():
    with pytest.raises(ControlsError, match="listed twice"):
        sc.parse_withdrawn({"sources": [ENTRY, {**ENTRY, "prefix": "index.docker.io/x/"}]})


def test_an_unquoted_date_is_taken(tmp_path):
    f = tmp_path / "w.yaml"
    f.write_text("sources:\n  - prefix: quay.io/a/b\n    reason: r\n    since: 2025-10-15\n"
                 "    references: [https://example.org/x]\n")
    (w,) = sc.load_withdrawn(f)
    assert w.since == "2025-10-15" and w.matches("quay.io/a/b") and not w.matches("quay.io/a/bc")
    assert isinstance(_dt.date.fromisoformat(w.since), _dt.date)


# ---- SUPPLY-SBOM-001 --------------------------------------------------------------------------
SBOM = CHECKS["SUPPLY-SBOM-001"]


@pytest.fixture
def sbom_dir(good_sboms):
    return Path(good_sboms.directory)


def test_every_running_digest_matches_its_sbom(good, spec, sbom_dir):
    res = verdict_is(SBOM(good, spec, index=sc.read_sboms(sbom_dir)), PASS, "SUPPLY-SBOM-001")
    assert len(res.evidence) == 3
    assert "is the image of SBOM ducklake-infra_backend_t1.cdx.json (2 components" \
        in line_of(res)


def test_a_digest_up_recorded_on_load_or_push_matches_through_digests_json(good, spec, sbom_dir):
    # kind load: the pod reports the manifest the node wrote; a registry: the pushed one
    for image_id, ref, where in [("docker.io/library/import-2026-11-29@" + digest("e"),
                                  "ducklake-infra/backend:t1", "kind node ducklake-control-plane"),
                                 ("reg.example:5000/team/backend@" + digest("f"),
                                  "reg.example:5000/team/backend@" + digest("f"),
                                  "registry reg.example:5000/team")]:
        image_digests.record(sbom_dir, [image_digests.Alias(
            image_digests.digest_of(image_id), digest("c"), ref, where)])
        objs = run_image(copy.deepcopy(good), spec, ref, image_id)
        verdict_is(SBOM(objs, spec, index=sc.read_sboms(sbom_dir)), PASS,
                   "SUPPLY-SBOM-001", f"({where} recorded it for image sha256:ccc")


@pytest.mark.parametrize("change,needle", [
    ("unknown digest", "which no SBOM in"),
    ("alias to an image without SBOM", "which has no SBOM"),
    ("no SBOM of the image", "there is no SBOM of backend at all"),
])
def test_a_digest_no_sbom_describes_fails(good, spec, sbom_dir, change, needle):
    objs = good
    if change == "unknown digest":
        objs = run_image(good, spec, f"ducklake-infra/backend@{digest('9')}", f"x@{digest('9')}")
    elif change == "alias to an image without SBOM":
        image_digests.record(sbom_dir, [image_digests.Alias(digest("8"), digest("7"),
                                                            "ducklake-infra/backend:t0", "kind node n")])
        objs = run_image(good, spec, "ducklake-infra/backend:t0", f"import-x@{digest('8')}")
    else:
        (sbom_dir / "ducklake-infra_backend_t1.cdx.json").unlink()
    res = verdict_is(SBOM(objs, spec, index=sc.read_sboms(sbom_dir)), FAIL, "SUPPLY-SBOM-001",
                     needle)
    if change == "unknown digest":
        assert "the SBOMs of backend are of sha256:ccccccccccc" in line_of(res)
    assert sum("-> PASS" in e for e in res.evidence) == 2       # the others still shown


def test_no_sbom_directory_fails_every_bundle_image(good, spec, tmp_path):
    res = verdict_is(SBOM(good, spec, index=sc.read_sboms(tmp_path / "absent")), FAIL,
                     "SUPPLY-SBOM-001")
    assert sum("there is no SBOM of" in e for e in res.evidence) == 3


@pytest.mark.parametrize("ref,image_id,needle", [
    ("quay.io/someone/exporter@" + digest("5"), "x@" + digest("5"), "not an image the bundle builds"),
    ("ducklake-infra/backend:t1", None, "no pod reports the digest"),
])
def test_a_foreign_image_or_no_reported_digest_warns(good, spec, sbom_dir, ref, image_id, needle):
    objs = run_image(good, spec, ref, image_id)
    verdict_is(SBOM(objs, spec, index=sc.read_sboms(sbom_dir)), WARN, "SUPPLY-SBOM-001", needle)


def test_an_unreadable_sbom_is_a_warning_not_a_silent_pass(good, spec, sbom_dir):
    (sbom_dir / "broken.cdx.json").write_text("{not json")
    res = SBOM(good, spec, index=sc.read_sboms(sbom_dir))
    assert res.status == WARN and any("broken.cdx.json" in e for e in res.evidence)


@pytest.mark.parametrize("body", ["[]", '{"format": "other", "digests": {}}', "{",
                                  '{"format": "ducklake-infra/image-digests/v1", '
                                  '"digests": {"sha256:12": {"image_id": "x"}}}'])
def test_a_digests_file_that_is_not_ours_is_an_error(good, spec, sbom_dir, body):
    (sbom_dir / image_digests.FILE_NAME).write_text(body)
    with pytest.raises(CheckInputMissing, match="digests.json"):
        sc.read_sboms(sbom_dir)


def test_digests_are_merged_and_an_image_id_is_not_its_own_alias(tmp_path):
    a = image_digests.Alias(digest("1"), digest("2"), "r:1", "kind node n")
    assert image_digests.record(tmp_path, [a, image_digests.Alias(digest("3"), digest("3"),
                                                                  "r:1", "kind node n")]) == 1
    assert image_digests.record(tmp_path, [a]) == 0                    # seen before: unchanged
    moved = image_digests.Alias(digest("1"), digest("4"), "r:2", "kind node n")
    assert image_digests.record(tmp_path, [moved]) == 1
    got = image_digests.read(tmp_path)
    assert set(got) == {digest("1")} and got[digest("1")].image_id == digest("4")
    assert got[digest("1")].recorded


def test_the_evidence_bundle_names_the_sbom_each_workload_matched(good, spec, sbom_dir):
    rows = [row for *_, row in sc.sbom_rows(good, spec, sc.read_sboms(sbom_dir))]
    rec = evidence.Recorder()
    rec.provenance.extend(rows)
    bundle = evidence.build(rec, readonly=True, run_id="r")
    backend_row = next(r for r in bundle["images"] if "backend" in r["workload"])
    assert backend_row["digest"] == digest("c")
    assert backend_row["sbom"] == "ducklake-infra_backend_t1.cdx.json"
    assert len(backend_row["sbom_sha256"]) == 64
