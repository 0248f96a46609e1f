"""Seed plan 2.1: MinIO (official chart, standalone, ClusterIP, PVC, credentials in a Secret)."""

from __future__ import annotations

import io
import json
import uuid

import pytest

from ducklake_infra.suites import checks
from ducklake_infra.suites.live import PortForward, service_get
from ducklake_infra.suites.catalog import CheckError, evidence, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("MINIO-REL-001")
def test_minio_release_pinned(objs, spec):
    verdict(checks.check_minio_release(objs, spec))


@pytest.mark.control("MINIO-MODE-001")
def test_minio_mode(objs, spec):
    verdict(checks.check_minio_mode(objs, spec))


@pytest.mark.control("MINIO-SVC-001")
def test_minio_services_clusterip(objs, spec):
    verdict(checks.check_minio_services(objs, spec))


@pytest.mark.control("MINIO-PVC-001")
def test_minio_pvc(objs, spec):
    verdict(checks.check_minio_pvc(objs, spec))


@pytest.mark.control("MINIO-SEC-001")
def test_minio_root_credentials_from_secret(objs, spec):
    verdict(checks.check_minio_root_secret(objs, spec))


@pytest.mark.control("MINIO-SEC-002")
def test_minio_root_credentials_not_default(objs, spec):
    verdict(checks.check_minio_not_default_credentials(objs, spec))


@pytest.mark.control("MINIO-IAM-001")
def test_backend_s3_user_is_not_root(objs, spec):
    verdict(checks.check_backend_s3_user_not_root(objs, spec))


@pytest.mark.control("MINIO-IAM-003")
def test_only_maintenance_deletes_lake_files(objs, spec):
    verdict(checks.check_only_maintenance_deletes(objs, spec))


@pytest.mark.control("MINIO-POD-001")
def test_minio_pods_ready(objs, spec):
    verdict(checks.check_minio_pods_ready(objs, spec))


@pytest.mark.control("MINIO-POD-002")
def test_minio_pods_non_root_with_resources(objs, spec):
    verdict(checks.check_minio_pod_security(objs, spec))


def minio_client(port: int, access_key: str, secret_key: str, spec):
    from minio import Minio
    return Minio(f"127.0.0.1:{port}", access_key=access_key, secret_key=secret_key,
                 secure=spec.minio.use_ssl, region=spec.minio.region)


def s3_service(spec):
    return next(s for s in spec.minio.services if spec.minio.api_port in s.ports)


@pytest.mark.control("MINIO-BKT-001")
def test_buckets_exist(objs, spec, runner, cluster, kubectl, pytestconfig):
    m = spec.minio
    if pytestconfig.getoption("--readonly"):
        # no port-forward in read-only mode: the backend's /readyz checks both buckets
        # (their names come from its ConfigMap, checked against the spec by BE-CFG-001)
        cm = objs.get("ConfigMap", spec.backend.configmap, spec.backend.namespace) or {}
        got = {(cm.get("data") or {}).get(k) for k in ("DUCKLAKE_RAW_BUCKET", "DUCKLAKE_LAKE_BUCKET")}
        assert got == {spec.raw_bucket, spec.lake_bucket}, \
            f"the backend is configured for buckets {got}, the spec names {spec.raw_bucket}, {spec.lake_bucket}"
        svc = spec.backend.service
        ok, body = service_get(kubectl, svc.namespace, svc.name, svc.ports[0], spec.backend.readiness_path)
        if not body.lstrip().startswith("{"):
            raise CheckError(f"/readyz did not answer through the service proxy: {body[-300:]}")
        checks_ = json.loads(body[body.index("{"):]).get("checks", {})
        assert checks_.get("storage") == "ok", f"backend storage check: {checks_.get('storage')}"
        evidence(f"backend /readyz: storage ok (buckets {spec.raw_bucket}, {spec.lake_bucket} exist)")
        return
    root = objs.secret_data(m.root_secret.name, m.namespace)
    if not root:
        raise CheckError(f"Secret {m.namespace}/{m.root_secret.name} is not readable")
    with PortForward(runner, cluster, m.namespace, f"svc/{s3_service(spec).name}", m.api_port) as pf:
        mc = minio_client(pf.local_port, root["rootUser"], root["rootPassword"], spec)
        missing = [b for b in (spec.raw_bucket, spec.lake_bucket) if not mc.bucket_exists(b)]
        assert not missing, f"bucket(s) {missing} do not exist"
        evidence(f"buckets {spec.raw_bucket}, {spec.lake_bucket} exist "
                 f"(all buckets: {sorted(b.name for b in mc.list_buckets())})")


@pytest.mark.mutating
@pytest.mark.control("MINIO-IAM-002")
def test_backend_user_reads_and_writes_its_buckets_only(objs, spec, runner, cluster):
    from minio.error import S3Error
    b = spec.backend
    creds = objs.secret_data(b.s3_secret.name, b.namespace)
    if not creds:
        raise CheckError(f"Secret {b.namespace}/{b.s3_secret.name} is not readable")
    akey, skey = (creds.get(k) for k in b.s3_secret.keys)
    m = spec.minio
    root = objs.secret_data(m.root_secret.name, m.root_secret.namespace) or {}
    if not (root.get("rootUser") and root.get("rootPassword")):
        raise CheckError(f"Secret {m.root_secret.namespace}/{m.root_secret.name} is not readable "
                         "(its root user takes the probe objects away)")
    with PortForward(runner, cluster, m.namespace, f"svc/{s3_service(spec).name}", m.api_port) as pf:
        mc = minio_client(pf.local_port, akey, skey, spec)
        admin = minio_client(pf.local_port, root["rootUser"], root["rootPassword"], spec)
        for bucket in (spec.raw_bucket, spec.lake_bucket):
            key = f"conformance/probe-{uuid.uuid4().hex[:8]}.txt"
            data = uuid.uuid4().hex.encode()
            mc.put_object(bucket, key, io.BytesIO(data), len(data))
            try:
                got = mc.get_object(bucket, key)
                try:
                    assert got.read() == data, f"read back different bytes from s3://{bucket}/{key}"
                finally:
                    got.close()
                    got.release_conn()
                try:
                    mc.remove_object(bucket, key)
                except S3Error as exc:
                    assert exc.code == "AccessDenied", \
                        f"remove_object failed with {exc.code}, expected AccessDenied"
                else:
                    raise AssertionError(f"the backend user could delete s3://{bucket}/{key}: "
                                         "a failed COMMIT's rollback could delete committed files "
                                         "(MINIO-IAM-003)")
            finally:
                admin.remove_object(bucket, key)
            evidence(f"backend user wrote and read s3://{bucket}/{key}; its delete: AccessDenied")
        probe = f"conformance-{uuid.uuid4().hex[:8]}"
        try:
            mc.make_bucket(probe)
        except S3Error as exc:
            assert exc.code == "AccessDenied", f"make_bucket failed with {exc.code}, expected AccessDenied"
            evidence("backend user may not create buckets (AccessDenied)")
        else:
            mc.remove_bucket(probe)
            raise AssertionError("the backend user could create a bucket: its policy is wider "
                                 "than the raw and lake buckets")


@pytest.mark.control("STORE-RWO-001")
def test_single_volume_workloads_never_run_twice(objs, spec):
    from ducklake_infra.suites import resilience
    verdict(resilience.check_single_volume_workloads_never_run_twice(objs, spec))
