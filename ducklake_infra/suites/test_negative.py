"""The suite can fail: MinIO rendered with a NodePort Service and the default
credentials (``helm template`` of the stack's own chart, values and overrides,
plus a bad override) must FAIL the matching controls, with remediation; so must
MinIO rendered with the chart's own default image (MinIO's frozen quay.io image) beside
the backend's manifests at ``:latest``.

Nothing is installed: the rendered objects go through the same pure check
functions as the live ones. Not a control test (it proves the checks)."""

from __future__ import annotations

import pytest

from ducklake_infra.provision import render
from ducklake_infra.suites import checks, supply_chain
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.catalog import FAIL, PASS, WARN, catalog

pytestmark = [pytest.mark.cluster]

BAD = ["--set", "service.type=NodePort", "--set", "service.nodePort=32000",
       "--set-string", "existingSecret=",
       "--set-string", "rootUser=minioadmin", "--set-string", "rootPassword=minioadmin"]

# the MinIO chart's own default image (values.yaml of chart 5.4.0), which up overrides
STALE = ["--set-string", "image.repository=quay.io/minio/minio",
         "--set-string", "image.tag=RELEASE.2024-12-18T13-15-44Z"]


def render_minio(spec, runner, extra: list[str]) -> Objects:
    rel = spec.releases[spec.minio.release]
    opts = render.Options()
    refs = render.image_refs(spec, opts)
    chart_args, local = render.chart_source(spec, rel, opts)
    if local is not None and not local.is_dir():
        pytest.fail(f"chart {local} is missing: run `ducklake-infra bundle build`", pytrace=False)
    argv = ["helm", "template", rel.name, *chart_args, "--namespace", rel.namespace,
            *[a for f in rel.values for a in ("-f", str(f))],
            *render.release_overrides(spec, rel, refs), *extra]
    out = runner.run(argv, timeout=120, mutating=False).stdout
    return Objects.from_manifests(out, rel.namespace)


@pytest.fixture(scope="module")
def renders(spec, runner) -> dict[str, Objects]:
    """The three renders this module checks, side by side (each is a ``helm template``
    process: an audit waits for the slowest, not for their sum)."""
    from ducklake_infra.suites.live import parallel
    extras = {"bad": BAD, "stale": STALE, "stack": []}
    done = parallel([lambda e=e: render_minio(spec, runner, e) for e in extras.values()])
    return dict(zip(extras, done))


@pytest.fixture(scope="module")
def rendered_bad(renders, spec):
    objs = renders["bad"]
    objs.helm_values[spec.minio.release] = {"mode": "standalone", "existingSecret": "",
                                           "rootUser": "minioadmin", "rootPassword": "minioadmin"}
    return objs


@pytest.fixture(scope="module")
def rendered_stale(renders, spec):
    """MinIO from a withdrawn source, the backend's manifests at :latest (nothing runs:
    no pod reports a digest)."""
    backend = render.backend_objects(spec, f"{spec.backend.image.repository}:latest")
    return renders["stale"].merged(Objects(backend))


def test_nodeport_service_fails_minio_svc_001(rendered_bad, spec):
    res = checks.check_minio_services(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert any("NodePort" in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()["MINIO-SVC-001"].remediation


def test_default_credentials_fail_minio_sec_002(rendered_bad, spec):
    res = checks.check_minio_not_default_credentials(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert any("well-known default" in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()["MINIO-SEC-002"].remediation


def test_inline_credentials_fail_minio_sec_001(rendered_bad, spec):
    res = checks.check_minio_root_secret(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert res.remediation == catalog()["MINIO-SEC-001"].remediation


def test_the_stack_values_render_conforming(renders, spec):
    """Control: the same render without the bad override passes those checks."""
    objs = renders["stack"]
    assert checks.check_minio_services(objs, spec).status == PASS
    res = checks.check_minio_mode(objs, spec)
    assert res.status == PASS, res.evidence
    assert supply_chain.check_image_sources(objs, spec).status == PASS
    # rendered, nothing runs: tags without a running digest are a WARN, never a FAIL
    assert supply_chain.check_images_pinned(objs, spec, loaded=True).status == WARN


def test_a_latest_backend_fails_supply_pin_001_even_on_kind(rendered_stale, spec):
    res = supply_chain.check_images_pinned(rendered_stale, spec, loaded=True)
    assert res.status == FAIL, res.evidence
    assert any(f"container {spec.backend.container}: image {spec.backend.image.repository}:latest"
               in e and "-> FAIL" in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()["SUPPLY-PIN-001"].remediation


def test_minio_from_a_withdrawn_source_fails_supply_src_001(rendered_stale, spec):
    res = supply_chain.check_image_sources(rendered_stale, spec)
    assert res.status == FAIL, res.evidence
    assert any("image quay.io/minio/minio:RELEASE.2024-12-18T13-15-44Z;" in e
               and "withdrawn source quay.io/minio/minio" in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()["SUPPLY-SRC-001"].remediation
