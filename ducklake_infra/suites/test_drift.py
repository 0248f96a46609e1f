"""Drift: the live stack vs what `ducklake-infra up` would install now (read-only).

Chart versions and values fingerprint (Helm metadata), image references,
replicas, Service types/ports, resource requests/limits and PVC sizes; the
checks are in ducklake_infra/suites/drift.py, expectations come from ducklake_infra.provision.stack.
"""

from __future__ import annotations

import pytest

from ducklake_infra.suites import drift, drift_expected
from ducklake_infra.suites.live import images_loaded
from ducklake_infra.suites.catalog import verdict

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def refs(spec):
    return drift_expected.expected_images(spec)


def _chart(objs, spec, cluster, refs, component):
    h = drift_expected.release_spec_hash(spec, component, refs) if images_loaded(cluster, spec) else None
    return drift.check_chart_drift(objs, spec, component, spec_hash=h)


def _image(objs, spec, cluster, refs, component):
    return drift.check_image_drift(objs, spec, component, refs=refs,
                                   overridable=not images_loaded(cluster, spec))


@pytest.mark.control("DRIFT-CHART-001")
def test_drift_minio_chart(objs, spec, cluster, refs):
    verdict(_chart(objs, spec, cluster, refs, "minio"))


@pytest.mark.control("DRIFT-CHART-002")
def test_drift_postgresql_chart(objs, spec, cluster, refs):
    verdict(_chart(objs, spec, cluster, refs, "postgresql"))


@pytest.mark.control("DRIFT-IMG-001")
def test_drift_minio_images(objs, spec, cluster, refs):
    verdict(_image(objs, spec, cluster, refs, "minio"))


@pytest.mark.control("DRIFT-IMG-002")
def test_drift_postgresql_image(objs, spec, cluster, refs):
    verdict(_image(objs, spec, cluster, refs, "postgresql"))


@pytest.mark.control("DRIFT-IMG-003")
def test_drift_backend_image(objs, spec, cluster, refs):
    verdict(_image(objs, spec, cluster, refs, "backend"))


@pytest.mark.control("DRIFT-REPL-001")
def test_drift_minio_replicas(objs, spec):
    verdict(drift.check_replicas_drift(objs, spec, "minio"))


@pytest.mark.control("DRIFT-REPL-002")
def test_drift_postgresql_replicas(objs, spec):
    verdict(drift.check_replicas_drift(objs, spec, "postgresql"))


@pytest.mark.control("DRIFT-REPL-003")
def test_drift_backend_replicas(objs, spec):
    verdict(drift.check_replicas_drift(objs, spec, "backend"))


@pytest.mark.control("DRIFT-SVC-001")
def test_drift_minio_services(objs, spec):
    verdict(drift.check_service_drift(objs, spec, "minio"))


@pytest.mark.control("DRIFT-SVC-002")
def test_drift_postgresql_services(objs, spec):
    verdict(drift.check_service_drift(objs, spec, "postgresql"))


@pytest.mark.control("DRIFT-SVC-003")
def test_drift_backend_service(objs, spec):
    verdict(drift.check_service_drift(objs, spec, "backend"))


@pytest.mark.control("DRIFT-RES-001")
def test_drift_minio_resources(objs, spec):
    verdict(drift.check_resources_drift(objs, spec, "minio"))


@pytest.mark.control("DRIFT-RES-002")
def test_drift_postgresql_resources(objs, spec):
    verdict(drift.check_resources_drift(objs, spec, "postgresql"))


@pytest.mark.control("DRIFT-RES-003")
def test_drift_backend_resources(objs, spec):
    verdict(drift.check_resources_drift(objs, spec, "backend"))


@pytest.mark.control("DRIFT-PVC-001")
def test_drift_minio_pvc(objs, spec):
    verdict(drift.check_pvc_drift(objs, spec, "minio"))


@pytest.mark.control("DRIFT-PVC-002")
def test_drift_postgresql_pvc(objs, spec):
    verdict(drift.check_pvc_drift(objs, spec, "postgresql"))
