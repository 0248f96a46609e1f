"""The pure check functions on hand-written objects: a conforming stack passes
every check; each broken variant fails the matching control with remediation."""

from __future__ import annotations

import base64

import pytest

from ducklake_infra.suites import checks, drift, security
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, WARN, catalog

# the drift controls have their own conforming stack (tests/suites/test_drift.py: `ok`, with the
# values up renders); every other registered check runs on `good` here
# (the distributed profile's HA controls have theirs: tests/suites/test_checks_ha.py)
PURE = sorted(c for c in checks.CHECKS if c not in set(drift.CONTROL_IDS.values())
              and catalog().controls[c].applies_to("standalone"))


def test_every_pure_check_has_a_control():
    reg = catalog()
    for cid in PURE:
        assert cid in reg, cid


@pytest.mark.parametrize("cid", PURE)
def test_conforming_stack_passes(cid, good, spec, good_sboms):
    # facts that are not objects: the SBOMs of the images `good` runs
    facts = {"index": good_sboms} if cid == "SUPPLY-SBOM-001" else {}
    res = checks.run(cid, good, spec, **facts)
    assert res.status == PASS, (cid, res.evidence)
    assert res.control == cid and res.evidence


def _fails(cid, objs, spec, needle):
    res = checks.run(cid, objs, spec)
    assert res.status == FAIL, (cid, res.evidence)
    assert any(needle in e for e in res.evidence), res.evidence
    assert res.remediation == catalog()[cid].remediation and res.remediation
    return res


def test_nodeport_service_fails(good, spec, find):
    svc = find(good, "Service", spec.minio.services[0].name)
    svc["spec"]["type"] = "NodePort"
    svc["spec"]["ports"][0]["nodePort"] = 30900
    _fails("MINIO-SVC-001", good, spec, "NodePort")


def test_extra_loadbalancer_of_the_release_fails(good, spec, find):
    find(good, "Service", f"{spec.minio.fullname}-svc")["spec"]["type"] = "LoadBalancer"
    _fails("MINIO-SVC-001", good, spec, "LoadBalancer")


def test_default_credentials_fail(good, spec, find):
    s = find(good, "Secret", spec.minio.root_secret.name)
    s["data"] = {"rootUser": base64.b64encode(b"minioadmin").decode(),
                 "rootPassword": base64.b64encode(b"minioadmin").decode()}
    res = _fails("MINIO-SEC-002", good, spec, "well-known default")
    assert "minioadmin" not in "".join(e for e in res.evidence if "password" in e.split("(")[0])


def test_short_root_password_warns(good, spec, find):
    s = find(good, "Secret", spec.minio.root_secret.name)
    s["data"]["rootPassword"] = base64.b64encode(b"short-pw-1").decode()
    assert checks.run("MINIO-SEC-002", good, spec).status == WARN


def test_inline_root_credentials_fail(good, spec, find):
    dep = find(good, "Deployment", spec.minio.fullname)
    dep["spec"]["template"]["spec"]["containers"][0]["env"][1] = {"name": "MINIO_ROOT_PASSWORD",
                                                                  "value": "x" * 20}
    good.helm_values[spec.minio.release]["rootPassword"] = "x" * 20
    res = _fails("MINIO-SEC-001", good, spec, "inline literal")
    assert any("chart value rootPassword" in e for e in res.evidence)


def test_unreadable_secret_is_error_not_fail(good, spec):
    objs = Objects([o for o in good.items if o["kind"] != "Secret"], good.helm_releases)
    res = checks.run("MINIO-SEC-002", objs, spec)
    assert res.status == ERROR and "could not evaluate" in res.evidence[0]


def test_statefulset_minio_is_not_standalone(good, spec, find):
    dep = find(good, "Deployment", spec.minio.fullname)
    sts = {**dep, "kind": "StatefulSet"}
    good.items.remove(dep)
    good.items.append(sts)
    good.helm_values[spec.minio.release]["mode"] = "distributed"
    res = _fails("MINIO-MODE-001", good, spec, "distributed")
    assert any("no Deployment" in e for e in res.evidence)


def test_pvc_pending_wrong_size_and_not_mounted(good, spec, find):
    pvc = find(good, "PersistentVolumeClaim", spec.minio.pvcs[0].name)
    pvc["status"]["phase"] = "Pending"
    pvc["spec"]["resources"]["requests"]["storage"] = "1Gi"
    _fails("MINIO-PVC-001", good, spec, "Pending")
    dep = find(good, "Deployment", spec.minio.fullname)
    dep["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = "/data"
    res = _fails("MINIO-PVC-001", good, spec, "data path is /export")
    assert any("requests '1Gi'" in e for e in res.evidence)


@pytest.mark.parametrize("size,status", [("5120Mi", PASS), (str(5 * 2 ** 30), PASS),
                                         ("5121Mi", FAIL), ("5G", FAIL)])
def test_pvc_size_is_compared_as_a_quantity(good, spec, find, size, status):
    """Issue 12: 2048Mi against a spec of 2Gi FAILed here and PASSed in drift. Both now
    use the one quantity parser (suites.objects)."""
    from ducklake_infra.suites import drift, objects
    assert spec.minio.pvcs[0].size == "5Gi"
    find(good, "PersistentVolumeClaim", spec.minio.pvcs[0].name)["spec"]["resources"][
        "requests"]["storage"] = size
    assert checks.run("MINIO-PVC-001", good, spec).status == status
    assert drift.same_quantity is objects.same_quantity is checks.same_quantity


def test_pg_pvc_from_claim_template(good, spec, find):
    sts = find(good, "StatefulSet", spec.postgresql.fullname)
    sts["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"] = "/pgdata"
    _fails("PG-PVC-001", good, spec, "data path is /pgdata")


def test_release_wrong_chart_version(good, spec):
    good.helm_releases[0]["chart"] = "minio-5.0.0"
    good.helm_releases[1]["status"] = "failed"
    _fails("MINIO-REL-001", good, spec, "minio-5.0.0")
    _fails("PG-REL-001", good, spec, "'failed'")


def test_missing_release_metadata_is_error(good, spec):
    good.helm_releases = None
    assert checks.run("MINIO-REL-001", good, spec).status == ERROR


def test_backend_uses_root_credentials(good, spec, find):
    s = find(good, "Secret", spec.backend.s3_secret.name)
    s["data"]["secret-key"] = base64.b64encode(b"r00t-Pa55word-very-long-xyz").decode()
    _fails("MINIO-IAM-001", good, spec, "root password")


def test_pod_not_ready_and_root(good, spec, find):
    pod = find(good, "Pod", "minio-abc")
    pod["status"]["conditions"][0]["status"] = "False"
    pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    _fails("MINIO-POD-001", good, spec, "CrashLoopBackOff")
    dep = find(good, "Deployment", spec.minio.fullname)
    dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"] = 0
    del dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    res = _fails("MINIO-POD-002", good, spec, "uid 0")
    assert any("limits.memory" in e for e in res.evidence)


def test_pg_two_replicas(good, spec, find):
    find(good, "StatefulSet", spec.postgresql.fullname)["spec"]["replicas"] = 2
    _fails("PG-REP-001", good, spec, "replicas 2")


def test_pg_password_literal_env(good, spec, find):
    sts = find(good, "StatefulSet", spec.postgresql.fullname)
    sts["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "POSTGRES_PASSWORD", "value": "hunter2hunter2"})
    _fails("PG-SEC-001", good, spec, "POSTGRES_PASSWORD is a literal")
    _fails("SEC-ENV-001", good, spec, "POSTGRES_PASSWORD")


@pytest.mark.parametrize("value,ok", [("'C'", True), ("en_US.UTF-8", True), ("POSIX", True),
                                      ("'de_DE.UTF-8'", False), ("fr_FR", False)])
def test_lc_messages(good, spec, find, value, ok):
    cm = find(good, "ConfigMap", spec.postgresql.fullname)
    cm["data"]["postgresql.conf"] = f"lc_messages = {value}\n"
    assert checks.run("PG-CFG-001", good, spec).status == (PASS if ok else FAIL)


def test_backend_probes_and_resources(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    del c["readinessProbe"]
    c["livenessProbe"]["httpGet"]["path"] = "/"
    del c["resources"]["requests"]["cpu"]
    res = _fails("BE-PRB-001", good, spec, "readinessProbe: missing")
    assert any("path '/'" in e for e in res.evidence)
    _fails("BE-RES-001", good, spec, "requests.cpu")


def test_backend_unavailable_and_no_endpoints(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    dep["status"] = {"availableReplicas": 0, "conditions": [{"type": "Available", "status": "False"}]}
    _fails("BE-DEP-001", good, spec, "0/1 available")
    good.items = [o for o in good.items if o["kind"] != "EndpointSlice"]
    _fails("BE-SVC-001", good, spec, "no ready endpoints")


def test_backend_literal_credentials_and_wrong_config(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["env"] = [e for e in c["env"] if e["name"] != "DUCKLAKE_PG_PASSWORD"] + \
        [{"name": "DUCKLAKE_PG_PASSWORD", "value": "catalog-pw-0123456789"}]
    find(good, "ConfigMap", spec.backend.configmap)["data"]["DUCKLAKE_LAKE_BUCKET"] = "other"
    res = _fails("BE-CFG-001", good, spec, "DUCKLAKE_PG_PASSWORD is an inline literal")
    assert any("DUCKLAKE_LAKE_BUCKET" in e for e in res.evidence)
    res = _fails("SEC-ENV-001", good, spec, "holds a Secret value")
    assert all("catalog-pw-0123456789" not in e for e in res.evidence)


def test_backend_runs_as_root(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    dep["spec"]["template"]["spec"]["securityContext"] = {"runAsUser": 0}
    dep["spec"]["template"]["spec"]["containers"][0]["securityContext"] = {}
    _fails("BE-SEC-001", good, spec, "uid 0")


def test_secret_in_configmap(good, spec, find):
    cm = find(good, "ConfigMap", spec.backend.configmap)
    cm["data"]["DUCKLAKE_PG_HOST"] = "x catalog-pw-0123456789"
    cm["data"]["S3_SECRET_KEY"] = "abc"
    res = _fails("SEC-CM-001", good, spec, "contains a Secret value")
    assert any("credential-looking key 'S3_SECRET_KEY'" in e for e in res.evidence)
    assert all("catalog-pw" not in e for e in res.evidence)


def test_base64_secret_in_annotation(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    dep["metadata"]["annotations"] = {"note": base64.b64encode(b"backend-secret-key-0123456789").decode()}
    _fails("SEC-ANN-001", good, spec, "annotation note")


def test_secret_last_applied_is_a_warning(good, spec, find):
    s = find(good, "Secret", spec.backend.s3_secret.name)
    s["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration":
                                    '{"data": %s}' % list(s["data"].values())}
    assert checks.run("SEC-ANN-001", good, spec).status == WARN


def test_secret_in_logs(good, spec):
    good.logs["storage/minio-abc/minio"] += "root password: r00t-Pa55word-very-long-xyz\n"
    res = _fails("SEC-LOG-001", good, spec, "storage/minio-abc/minio")
    assert all("r00t" not in e for e in res.evidence)


def test_no_logs_is_error(good, spec):
    good.logs = {}
    assert checks.run("SEC-LOG-001", good, spec).status == ERROR


@pytest.mark.parametrize("anonymous,authorised,status", [
    (401, 200, PASS),
    (200, 200, FAIL),      # a backend without authentication (the weakened copy)
    (None, 200, FAIL),     # no answer is no proof
    (401, 401, FAIL),      # refuses everyone: the 401 is not the token's doing
    (403, 200, FAIL),
])
def test_backend_auth_probe(anonymous, authorised, status):
    res = security.judge_backend_auth(anonymous, authorised)
    assert res.status == status and res.control == "BE-AUTH-001"
    if status == FAIL:
        assert res.remediation == catalog()["BE-AUTH-001"].remediation


def test_backend_without_its_token_env_fails_config(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    c = dep["spec"]["template"]["spec"]["containers"][0]
    c["env"] = [e for e in c["env"] if e["name"] != "DUCKLAKE_API_TOKEN"]
    res = checks.check_backend_config(good, spec)
    assert res.status == FAIL and any("DUCKLAKE_API_TOKEN is not set" in e for e in res.evidence)


def _set_secret(objs, name, ns, data):
    for o in objs.items:
        if o["kind"] == "Secret" and o["metadata"]["name"] == name and o["metadata"]["namespace"] == ns:
            o["data"] = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}


@pytest.mark.parametrize("which,user,needle", [
    ("query_s3_secret", lambda spec: {"access-key": spec.minio.backend_user.access_key,
                                      "secret-key": "x" * 30}, "read-write S3 user"),
    ("query_postgres_secret", lambda spec: {"username": spec.postgresql.catalog.owner,
                                            "password": "x" * 30}, "can write"),
])
def test_query_path_with_a_read_write_identity_fails(good, spec, which, user, needle):
    sec = getattr(spec.backend, which)
    _set_secret(good, sec.name, spec.backend.namespace, user(spec))
    res = security.check_query_identities(good, spec)
    assert res.status == FAIL and any(needle in e for e in res.evidence)


def test_query_user_policy_that_writes_fails(good, spec):
    pol = next(p for p in good.helm_values[spec.minio.release]["policies"]
               if p["name"] == spec.minio.query_user.policy)
    pol["statements"][1]["actions"].append("s3:PutObject")
    res = security.check_query_identities(good, spec)
    assert res.status == FAIL and any("s3:PutObject" in e for e in res.evidence)


def test_query_user_policy_on_the_raw_bucket_fails(good, spec):
    pol = next(p for p in good.helm_values[spec.minio.release]["policies"]
               if p["name"] == spec.minio.query_user.policy)
    pol["statements"][1]["resources"].append(f"arn:aws:s3:::{spec.raw_bucket}/*")
    res = security.check_query_identities(good, spec)
    assert res.status == FAIL


def test_missing_or_edited_network_policy_fails(good, spec):
    pols = [o for o in good.items if o["kind"] == "NetworkPolicy"]
    good.items.remove(next(p for p in pols if p["metadata"]["name"] == "ducklake-default-deny-ingress"))
    edited = next(p for p in pols if p["metadata"]["name"] == "ducklake-postgresql-from-backend")
    edited["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]   # from everywhere
    res = security.check_network_policies(Objects(good.items), spec)
    text = " ".join(res.evidence)
    assert res.status == FAIL and "does not exist" in text and "differs" in text


def _ds(name, image):
    return {"metadata": {"name": name}, "spec": {"template": {"spec": {"containers": [{"image": image}]}}}}


@pytest.mark.parametrize("daemonsets,status", [
    ([_ds("kube-proxy", "k8s/kube-proxy"), _ds("calico-node", "calico/node:v3")], PASS),
    ([_ds("cilium", "quay.io/cilium/cilium")], PASS),
    ([_ds("kube-proxy", "x"), _ds("ducklake-cni", "ducklake-infra/debian-base")], FAIL),
    ([_ds("kube-flannel-ds", "flannel/flannel")], FAIL),
    ([_ds("kube-proxy", "x"), _ds("mystery", "y")], WARN),
])
def test_network_plugin_judgement(daemonsets, status):
    res = security.judge_network_plugin(daemonsets)
    assert res.status == status and res.control == "NET-CNI-001"


@pytest.mark.parametrize("reached,control,status", [
    ({"pg": False, "minio": False}, True, PASS),
    ({"pg": True, "minio": False}, True, FAIL),     # not enforced (the weakened copy)
    ({"pg": False, "minio": False}, False, ERROR),  # the probe reaches nothing at all
])
def test_enforcement_judgement(reached, control, status):
    res = security.judge_enforcement(reached, control)
    assert res.status == status and res.control == "NET-ENF-001"


def test_backend_without_memory_limit_fails(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].pop("memory")
    assert security.check_backend_memory_bound(good, spec).status == FAIL


def test_explicit_memory_above_the_limit_fails(good, spec, find):
    dep = find(good, "Deployment", spec.backend.deployment)
    dep["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "DUCKLAKE_MEMORY_LIMIT_BYTES", "value": str(8 * 1024**3)})
    res = security.check_backend_memory_bound(good, spec)
    assert res.status == FAIL and "exceeds" in res.evidence[0]


RESTRICTED_POD = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                        "seccompProfile": {"type": "RuntimeDefault"}},
    "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": False,
                                                     "capabilities": {"drop": ["ALL"]}}}],
    "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "x"}},
                {"name": "t", "emptyDir": {}}],
}


def test_restricted_pod_passes():
    assert security.restricted_violations(RESTRICTED_POD) == []


@pytest.mark.parametrize("mutate,needle", [
    (lambda p: p["securityContext"].pop("runAsNonRoot"), "non-root"),
    (lambda p: p["securityContext"].pop("seccompProfile"), "seccomp"),
    (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"), "allowPrivilegeEscalation"),
    (lambda p: p["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}), "drop ALL"),
    (lambda p: p["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    (lambda p: p.update(hostNetwork=True), "hostNetwork"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath"),
    (lambda p: p["containers"][0].update(ports=[{"containerPort": 80, "hostPort": 80}]), "hostPort"),
    (lambda p: p["securityContext"].update(runAsUser=0), "uid 0"),
])
def test_restricted_pod_violations(mutate, needle):
    import copy as _copy
    pod = _copy.deepcopy(RESTRICTED_POD)
    mutate(pod)
    assert any(needle in v for v in security.restricted_violations(pod))


def test_namespace_without_restricted_enforcement_fails(spec):
    nss = [{"metadata": {"name": n, "labels": {}}} for n in {spec.minio.namespace, spec.backend.namespace}]
    res = security.judge_pod_security(nss, Objects([]), spec)
    assert res.status == FAIL and res.control == "SEC-PSS-001"
    nss = [{"metadata": {"name": n, "labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
           for n in {spec.minio.namespace, spec.backend.namespace}]
    assert security.judge_pod_security(nss, Objects([]), spec).status == PASS


def _surface(spec):
    m, cat = spec.minio, spec.postgresql.catalog
    users = {u.access_key: [u.policy] for u in (m.backend_user, m.query_user, m.maintenance_user)}
    return users, {spec.raw_bucket: None, spec.lake_bucket: None}, \
        {cat.owner: False, cat.reader.role: False, "postgres": True}


def test_access_surface_of_the_spec_passes(spec):
    assert security.judge_access_surface(spec, *_surface(spec)).status == PASS


@pytest.mark.parametrize("weaken,needle", [
    (lambda u, b, r: u.update(intruder=["readwrite"]), "'intruder' is not in the spec"),
    (lambda u, b, r: u["ducklake-query"].append("readwrite"), "has policies"),
    (lambda u, b, r: b.update(lake='{"Statement":[{"Principal":"*"}]}'), "anonymous access"),
    (lambda u, b, r: r.update(app_admin=True), "'app_admin' can log in"),
    (lambda u, b, r: r.pop("ducklake_reader"), "cannot log in"),
])
def test_access_surface_beyond_the_spec_fails(spec, weaken, needle):
    users, buckets, roles = _surface(spec)
    weaken(users, buckets, roles)
    res = security.judge_access_surface(spec, users, buckets, roles)
    assert res.status == FAIL and any(needle in e for e in res.evidence), res.evidence


@pytest.mark.parametrize("strategy,needle", [
    (None, "strategy RollingUpdate with maxSurge 25%"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "100%"}}, "maxSurge 100%"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}, "maxSurge 1"),
])
def test_rolling_update_on_a_single_volume_fails(good, spec, find, strategy, needle):
    """Issue 13: the chart's default started a second MinIO on the same volume."""
    dep = find(good, "Deployment", spec.minio.fullname)
    if strategy is None:
        del dep["spec"]["strategy"]
    else:
        dep["spec"]["strategy"] = strategy
    _fails("STORE-RWO-001", good, spec, needle)


def test_single_volume_workload_with_two_replicas_fails(good, spec, find):
    find(good, "Deployment", spec.minio.fullname)["spec"]["replicas"] = 2
    _fails("STORE-RWO-001", good, spec, "2 replicas on one ReadWriteOnce volume")


def test_rolling_update_without_surge_passes(good, spec, find):
    dep = find(good, "Deployment", spec.minio.fullname)
    dep["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}}
    assert checks.run("STORE-RWO-001", good, spec).status == PASS


@pytest.mark.parametrize("interval,status,want,needle", [
    ("3600", None, PASS, "scheduled every 3600s"),
    ("0", None, FAIL, "small files pile up"),
    (None, None, FAIL, "DUCKLAKE_MAINTENANCE_INTERVAL_S is '0'"),
    ("3600", {"interval_s": 3600, "last": None}, WARN, "has not run yet"),
    ("3600", {"interval_s": 3600, "last": {"ok": False, "started_at": "t", "error": "boom"}},
     FAIL, "failed: boom"),
    ("3600", {"interval_s": 3600, "last": {"ok": True, "started_at": "t", "files_merged": 3,
                                           "snapshots_expired": 1, "files_deleted": 2}},
     PASS, "3 file(s) merged"),
])
def test_lake_maintenance_control(good, spec, find, interval, status, want, needle):
    """Issue 13: nothing compacted the small files every append leaves."""
    from ducklake_infra.suites.resilience import check_lake_maintenance
    cm = find(good, "ConfigMap", spec.backend.configmap)
    cm.setdefault("data", {}).pop("DUCKLAKE_MAINTENANCE_INTERVAL_S", None)
    if interval is not None:
        cm["data"]["DUCKLAKE_MAINTENANCE_INTERVAL_S"] = interval
    res = check_lake_maintenance(good, spec, status=status)
    assert res.status == want and any(needle in e for e in res.evidence), res


@pytest.mark.parametrize("found,dups,recovery,ok,needle", [
    ({0: 20, 1: 20, 2: 20}, 0, 12.0, True, "lost 0"),
    ({0: 20, 1: 0, 2: 20}, 0, 12.0, False, "acknowledged batch(es) not found whole: [1]"),
    ({0: 20, 1: 20, 2: 20, 3: 7}, 0, 12.0, False, "present in part: [3]"),
    ({0: 20, 1: 20, 2: 20}, 5, 12.0, False, "5 row(s) present more than once"),
    ({0: 20, 1: 20, 2: 20}, 0, None, False, "did not become Ready"),
    ({0: 20, 1: 20, 2: 20}, 0, 500.0, False, "took 500.0s"),
    ({0: 20, 1: 20, 2: 20, 3: 20}, 0, 12.0, True, "unacknowledged but committed (a timeout after the commit): 1"),
    ({0: 20, 1: 20, 2: 20}, 0, 12.0, False, "neither clear nor retryable: 500 x1"),
    ({0: 20, 1: 20, 2: 20}, 0, 12.0, False, "ReadTimeout x2"),
])
def test_the_ledger_judges_every_way_a_write_can_go_wrong(found, dups, recovery, ok, needle):
    """Issue 13: the accounting behind every fault test, broken deliberately each way."""
    from ducklake_infra.suites.resilience import judge_ledger
    errors = {"503": 3}
    if "500" in needle:
        errors["500"] = 1
    if "ReadTimeout" in needle:
        errors["ReadTimeout"] = 2
    res = judge_ledger(20, {0, 1, 2}, 4, found, dups, recovery, errors, max_recovery_s=180)
    assert (res.status == PASS) is ok and any(needle in e for e in res.evidence), res


@pytest.mark.parametrize("errors,undo,ok,needle", [
    ({"503": 40}, [], True, "40 write(s) refused with 503"),
    ({}, [], False, "the fault did not bite"),                      # the volume never filled
    ({"503": 40, "500": 2}, [], False, "neither clear nor retryable"),  # a refusal as a 500
    ({"503": 40, "ReadTimeout": 1}, [], False, "neither clear nor retryable"),  # a hang
    ({"503": 40}, ["undo minio: helm failed"], False, "could not be moved back"),
])
def test_the_full_volume_verdict_fails_each_way(errors, undo, ok, needle):
    """RES-DISK-001, broken deliberately each way (the ledger's own cases are above)."""
    from ducklake_infra.suites.resilience import judge_full_volume, judge_ledger
    ledger = judge_ledger(20, {0, 1}, 50, {0: 20, 1: 20}, 0, 0.0, errors, max_recovery_s=180)
    res = judge_full_volume(ledger, errors, 0.4, {}, undo)
    assert (res.status == PASS) is ok and any(needle in e for e in res.evidence), res


def test_the_full_volume_verdict_fails_on_a_lost_row():
    from ducklake_infra.suites.resilience import judge_full_volume, judge_ledger
    ledger = judge_ledger(20, {0, 1}, 50, {0: 20}, 0, 0.0, {"503": 9}, max_recovery_s=180)
    res = judge_full_volume(ledger, {"503": 9}, 0.4, {}, [])
    assert res.status == FAIL and any("not found whole" in e for e in res.evidence), res


@pytest.mark.parametrize("lifecycle,grace,status,needle", [
    (None, None, FAIL, "has no preStop pause"),
    ({"preStop": {"sleep": {"seconds": 1}}}, None, FAIL, "less than the 3s"),
    ({"preStop": {"sleep": {"seconds": 30}}}, None, FAIL, "not less than the 30s grace"),
    ({"preStop": {"sleep": {"seconds": 5}}}, 5, FAIL, "not less than the 5s grace"),
    ({"preStop": {"exec": {"command": ["/bin/sh", "-c", "sleep 5"]}}}, None, PASS, "pauses 5s"),
    ({"preStop": {"exec": {"command": ["/bin/true"]}}}, None, FAIL, "has no preStop pause"),
])
def test_a_backend_that_stops_serving_before_its_endpoint_is_gone_fails(
        good, spec, lifecycle, grace, status, needle):
    """BE-STOP-001 (found by RES-BE-001): without a preStop pause, uploads sent to a deleted
    pod in the moment before its endpoint was removed hung to the client's timeout."""
    b = spec.backend
    dep = good.get("Deployment", b.deployment, b.namespace)
    pod = dep["spec"]["template"]["spec"]
    c = next(c for c in pod["containers"] if c["name"] == b.container)
    assert c["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}   # the repository's
    c.pop("lifecycle")
    if lifecycle:
        c["lifecycle"] = lifecycle
    if grace is not None:
        pod["terminationGracePeriodSeconds"] = grace
    res = checks.run("BE-STOP-001", good, spec)
    assert res.status == status and any(needle in e for e in res.evidence), res.evidence


def _pod(ready: bool, started: str | None) -> dict:
    state = {"running": {"startedAt": started}} if started else {"waiting": {}}
    return {"status": {"conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"name": "c", "state": state}]}}


@pytest.mark.parametrize("pods,since,ok", [
    ([_pod(True, "2026-11-29T15:00:10Z")], None, True),
    ([_pod(True, "2026-11-29T15:00:10Z")], 1795964400.0, True),       # 15:00:00 UTC
    ([_pod(True, "2026-11-29T14:59:00Z")], 1795964400.0, False),      # a status from before
    ([_pod(False, "2026-11-29T15:00:10Z")], None, False),
    ([_pod(True, None)], None, False),
    ([], None, False),
])
def test_a_workload_is_ready_again_only_in_containers_started_after_the_restart(pods, since, ok):
    """RES-NODE-001: right after a node restart the API still shows the old Ready pods."""
    from ducklake_infra.suites.resilience import pods_ready_since
    assert pods_ready_since(pods, since) is ok


def test_the_full_volume_fault_offers_only_its_tmpfs_and_grants_the_reader_reads():
    """RES-DISK-001's small volume: a local PV pinned to the node, bound only to its claim;
    the fault's catalog database gets the reader's grants and nothing more."""
    from pathlib import Path

    from ducklake_infra.provision import spec_file
    from ducklake_infra.suites.faults import volume as fv
    spec = spec_file.load(Path(__file__).resolve().parents[2] / "stack.yaml")
    pv, pvc = fv.volume_objects(spec, "ducklake-control-plane")
    assert pv["spec"]["local"] == {"path": fv.MOUNT}
    assert pv["spec"]["claimRef"] == {"namespace": spec.minio.namespace, "name": fv.CLAIM}
    assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    term = pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["values"] == ["ducklake-control-plane"]
    assert pvc["spec"]["volumeName"] == fv.PV and pvc["metadata"]["namespace"] == spec.minio.namespace
    assert pv["spec"]["storageClassName"] == pvc["spec"]["storageClassName"] == fv.STORAGE_CLASS
    sql = fv.catalog_sql(spec, create=True)
    reader, owner = spec.postgresql.catalog.reader.role, spec.postgresql.catalog.owner
    assert f'OWNER "{owner}"' in sql and f'GRANT CONNECT ON DATABASE "{fv.FAULT_DB}" TO "{reader}"' in sql
    grants = [ln for ln in sql.splitlines() if "GRANT " in ln and "REVOKE" not in ln]
    assert all(("SELECT" in g or "CONNECT" in g or "USAGE" in g) for g in grants), grants
    assert fv.catalog_sql(spec, create=False).startswith(f'DROP DATABASE IF EXISTS "{fv.FAULT_DB}"')
    assert spec.postgresql.catalog.database != fv.FAULT_DB       # never the real catalog


def test_the_full_volume_ballast_shrinks_while_writers_take_space():
    """fill() races the writers: a size that no longer fits is tried smaller; any other
    error of fallocate is an error, not a smaller try."""
    from types import SimpleNamespace

    from ducklake_infra.suites.faults import volume as fv
    from ducklake_infra.suites.catalog import CheckError

    class FakeRunner:
        def __init__(self, fails: list[str]):
            self.fails, self.sizes = fails, []

        def run(self, argv, **kw):
            if "df" in argv:
                return SimpleNamespace(returncode=0, stdout="Avail\n131072\n", stderr="")
            self.sizes.append(argv[argv.index("-l") + 1])
            if self.fails:
                return SimpleNamespace(returncode=1, stdout="", stderr=self.fails.pop(0))
            return SimpleNamespace(returncode=0, stdout="", stderr="")

    r = FakeRunner(["fallocate: No space left on device"] * 2)
    assert fv.fill(r, "node", leave_mib=1) == 131072 - 1024 - 512
    assert r.sizes == ["130048KiB", "129792KiB", "129536KiB"]
    with pytest.raises(CheckError, match="Operation not permitted"):
        fv.fill(FakeRunner(["fallocate: Operation not permitted"]), "node", leave_mib=1)
    with pytest.raises(CheckError, match="no size fitted"):
        fv.fill(FakeRunner(["No space left on device"] * 16), "node", leave_mib=1)
