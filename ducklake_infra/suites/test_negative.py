"""The suite can fail: MinIO rendered with a NodePort Service and the default
credentials (``helm template`` of the stack's own chart, values and overrides,
plus a bad override) must FAIL the matching controls, with remediation.

Nothing is installed: the rendered objects go through the same pure check
functions as the live ones. Not a control test (it proves the checks)."""

from __future__ import annotations

import pytest

from ducklake_infra.provision import stack as stackmod
from ducklake_infra.suites import checks
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.registry import FAIL, PASS, registry

pytestmark = [pytest.mark.cluster]

BAD = ["--set", "service.type=NodePort", "--set", "service.nodePort=32000",
       "--set-string", "existingSecret=",
       "--set-string", "rootUser=minioadmin", "--set-string", "rootPassword=minioadmin"]


def render(spec, runner, extra: list[str]) -> Objects:
    rel = spec.releases[spec.minio.release]
    opts = stackmod.Options()
    refs = stackmod.image_refs(spec, opts)
    chart_args, local = stackmod.chart_source(spec, rel, opts)
    if local is not None and not local.is_dir():
        pytest.fail(f"chart {local} is missing: run `ducklake-infra bundle build`", pytrace=False)
    argv = ["helm", "template", rel.name, *chart_args, "--namespace", rel.namespace,
            *[a for f in rel.values for a in ("-f", str(f))],
            *stackmod.release_overrides(spec, rel, refs), *extra]
    out = runner.run(argv, timeout=120, mutating=False).stdout
    return Objects.from_manifests(out, rel.namespace)


@pytest.fixture(scope="module")
def rendered_bad(spec, runner):
    objs = render(spec, runner, BAD)
    objs.helm_values[spec.minio.release] = {"mode": "standalone", "existingSecret": "",
                                           "rootUser": "minioadmin", "rootPassword": "minioadmin"}
    return objs


def test_nodeport_service_fails_minio_svc_001(rendered_bad, spec):
    res = checks.check_minio_services(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert any("NodePort" in e for e in res.evidence), res.evidence
    assert res.remediation == registry()["MINIO-SVC-001"].remediation


def test_default_credentials_fail_minio_sec_002(rendered_bad, spec):
    res = checks.check_minio_not_default_credentials(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert any("well-known default" in e for e in res.evidence), res.evidence
    assert res.remediation == registry()["MINIO-SEC-002"].remediation


def test_inline_credentials_fail_minio_sec_001(rendered_bad, spec):
    res = checks.check_minio_root_secret(rendered_bad, spec)
    assert res.status == FAIL, res.evidence
    assert res.remediation == registry()["MINIO-SEC-001"].remediation


def test_the_stack_values_render_conforming(spec, runner):
    """Control: the same render without the bad override passes those checks."""
    objs = render(spec, runner, [])
    assert checks.check_minio_services(objs, spec).status == PASS
    res = checks.check_minio_standalone(objs, spec)
    assert res.status == PASS, res.evidence
