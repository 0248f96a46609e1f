"""PostgreSQL replicated with Patroni (issue 16, docs/design/distributed-profile.md section
3), rendered by the real chart with the arguments `up` passes plus the distributed
profile's ``ha.*`` overrides: Patroni's least rights, the primary-only Service, one member
per node, a PodDisruptionBudget of one, the Secret's new keys, Patroni's configuration.
With ``ha.enabled`` off the chart renders exactly what it rendered before HA existed
(golden files, generated passwords masked)."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shlex
import shutil
import string
import subprocess
import kubernetes_validate
import pytest
import yaml

from ducklake_infra.provision import netpol
from ducklake_infra.provision import render
from ducklake_infra.provision.spec import DistributedSpec

from .conftest import K8S_SCHEMA_VERSION, helm_args, render_chart, run_helm
from .golden_render import CHART, GOLDEN, masked, renders

pytestmark = pytest.mark.bundle        # renders the chart with the bundle's helm

PG_LABELS = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "postgresql"}
SUBSTITUTED = {"POD_NAME": "postgresql-1", "POD_IP": "10.244.2.5", "NAMESPACE": "storage",
               "SUPERUSER_PASSWORD": json.dumps('su"per'), "REPLICATION_PASSWORD": json.dumps("repl"),
               "RESTAPI_PASSWORD": json.dumps("rest")}


def distributed(spec, **kw):
    return dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec(**kw))


def ha_objects(helm, spec, opts, **kw) -> list[dict]:
    d = distributed(spec, **kw)
    return render_chart(helm, d, opts, "postgresql", *render.postgresql_distributed_overrides(d))


def one(objs, kind, name=None) -> dict:
    found = [o for o in objs if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"{kind} {name}: {len(found)} rendered"
    return found[0]


def kinds(objs) -> set[str]:
    return {o["kind"] for o in objs}


@pytest.fixture(scope="module")
def ha(helm, spec, opts) -> list[dict]:
    return ha_objects(helm, spec, opts)


def patroni_config(objs) -> dict:
    """patroni.yml as patroni.sh writes it (the same substitution, test values)."""
    tmpl = one(objs, "ConfigMap")["data"]["patroni.yml.tmpl"]
    return yaml.safe_load(string.Template(tmpl).substitute(SUBSTITUTED))


def template_fails(helm, spec, opts, *extra: str) -> str:
    name, chart, args = helm_args(spec, opts, "postgresql")
    res = subprocess.run([str(helm), "template", name, chart, *args, *extra],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0, "helm template should have failed"
    return res.stderr


# --------------------------------------------------------------------------
# HA off: as before
# --------------------------------------------------------------------------
def test_with_ha_off_the_chart_renders_as_before(helm):
    for fname, text in renders(helm).items():
        assert text == (GOLDEN / fname).read_text(), \
            f"the standalone render changed ({fname}); see tests/charts/golden_render.py"


def test_the_golden_comparison_sees_a_one_byte_change(helm, tmp_path):
    chart = tmp_path / "postgresql"
    shutil.copytree(CHART, chart)
    svc = chart / "templates" / "service.yaml"
    svc.write_text(svc.read_text().replace("type: {{", "type:  {{", 1))
    res = subprocess.run([str(helm), "template", "postgresql", str(chart), "--namespace", "storage",
                          "--kube-version", "1.34.0"], capture_output=True, text=True, check=True)
    golden = (GOLDEN / "postgresql-defaults.yaml").read_text()
    assert masked(res.stdout) != golden
    assert masked(res.stdout).replace("type:  ClusterIP", "type: ClusterIP") == golden


def test_ha_off_has_no_patroni_objects(postgres_objects):
    assert not kinds(postgres_objects) & {"ServiceAccount", "Role", "RoleBinding",
                                          "PodDisruptionBudget"}
    cm = one(postgres_objects, "ConfigMap")["data"]
    assert not {"patroni.yml.tmpl", "patroni.sh", "on-role.sh"} & set(cm)
    assert "replication" not in cm["pg_hba.conf"]


# --------------------------------------------------------------------------
# HA on
# --------------------------------------------------------------------------
def test_helm_lint_strict_with_ha(helm, spec, opts):
    d = distributed(spec)
    name, chart, args = helm_args(d, opts, "postgresql")
    args = [a for a in args if a not in ("--namespace", spec.releases["postgresql"].namespace)]
    res = run_helm(helm, "lint", "--strict", chart, *args,
                   *render.postgresql_distributed_overrides(d))
    assert "0 chart(s) failed" in res.stdout


def test_every_ha_object_validates_and_passes_the_restricted_profile(ha):
    from ducklake_infra.suites.objects import pod_spec
    from ducklake_infra.suites.security import restricted_violations
    for o in ha:
        kubernetes_validate.validate(o, K8S_SCHEMA_VERSION, strict=True)
    sts = one(ha, "StatefulSet")
    assert restricted_violations(pod_spec(sts)) == []
    assert not kinds(ha) & {"ClusterRole", "ClusterRoleBinding"}      # nothing cluster-wide


def test_patroni_gets_exactly_the_rights_it_needs_in_its_namespace(ha):
    role = one(ha, "Role")
    assert role["metadata"]["namespace"] == "storage"
    verbs: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""]
        for res in rule["resources"]:
            verbs.setdefault(res, set()).update(rule["verbs"])
    assert verbs == {"configmaps": {"get", "list", "watch", "create", "update", "patch"},
                     "pods": {"get", "list", "watch", "update", "patch"}}
    # update and patch only on Patroni's own ConfigMaps and the members' pods
    narrowed = {r["resources"][0]: r.get("resourceNames") for r in role["rules"]
                if {"update", "patch"} & set(r["verbs"])}
    assert narrowed == {"configmaps": ["postgresql-config", "postgresql-leader",
                                       "postgresql-sync", "postgresql-failover"],
                        "pods": ["postgresql-0", "postgresql-1", "postgresql-2"]}
    assert all(not ({"update", "patch"} & set(r["verbs"])) or r.get("resourceNames")
               for r in role["rules"])
    sa, binding = one(ha, "ServiceAccount"), one(ha, "RoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "storage"}]
    pod = one(ha, "StatefulSet")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is True
    assert sa["automountServiceAccountToken"] is False      # only pods that ask get a token


def test_the_service_routes_to_the_primary_only(ha):
    svc = one(ha, "Service", "postgresql")
    assert svc["spec"]["selector"] == {**PG_LABELS, "role": "primary"}
    assert one(ha, "Service", "postgresql-hl")["spec"]["selector"] == PG_LABELS   # DNS: all
    sts = one(ha, "StatefulSet")
    assert sts["spec"]["selector"]["matchLabels"] == PG_LABELS      # never the role label


def test_members_one_per_node_parallel_with_a_pdb_of_one(ha):
    sts = one(ha, "StatefulSet")
    assert sts["spec"]["replicas"] == 3 and sts["spec"]["podManagementPolicy"] == "Parallel"
    pod = sts["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term == {"labelSelector": {"matchLabels": PG_LABELS},
                    "topologyKey": "kubernetes.io/hostname"}
    pdb = one(ha, "PodDisruptionBudget")
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": PG_LABELS}}


def test_patroni_runs_with_its_api_probed_and_no_password_in_the_environment(ha):
    sts = one(ha, "StatefulSet")
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["/bin/sh", "/opt/postgresql-chart/patroni.sh"]
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == \
        {"tcp-postgresql": 5432, "patroni": netpol.PATRONI_API_PORT}
    for probe, path in (("readinessProbe", "/readiness"), ("livenessProbe", "/liveness"),
                        ("startupProbe", "/liveness")):
        assert c[probe]["httpGet"] == {"path": path, "port": "patroni"}
    env = {e["name"]: e for e in c["env"]}
    assert {k: env[k]["valueFrom"]["fieldRef"]["fieldPath"] for k in ("POD_NAME", "POD_IP", "NAMESPACE")} \
        == {"POD_NAME": "metadata.name", "POD_IP": "status.podIP", "NAMESPACE": "metadata.namespace"}
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in c["env"])
    assert not any("PASSWORD" in name for name in env)
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts["run-patroni"] == "/run/patroni"
    assert mounts["replication-password"] == "/opt/postgresql-secrets/replication"
    assert mounts["restapi-password"] == "/opt/postgresql-secrets/restapi"
    vols = {v["name"]: v for v in sts["spec"]["template"]["spec"]["volumes"]}
    assert vols["run-patroni"]["emptyDir"]["medium"] == "Memory"
    for key in ("replication", "restapi"):
        assert vols[f"{key}-password"]["secret"]["items"] == [{"key": f"{key}-password",
                                                               "path": "password"}]
    script = one(ha, "ConfigMap")["data"]["patroni.sh"]
    assert "umask 0077" in script and "0o600" in script
    assert script.rstrip().endswith("exec python3 -m patroni /run/patroni/patroni.yml")


def test_the_secret_gains_the_replication_and_api_passwords(ha, spec):
    sec = one(ha, "Secret", spec.postgresql.superuser_secret.name)
    assert set(sec["data"]) == {*spec.postgresql.superuser_secret.keys, "replication-password",
                                "restapi-password"}
    values = [base64.b64decode(v).decode() for v in sec["data"].values()]
    assert len(set(values)) == len(values) and all(len(v) == 32 for v in values)
    for cm_key, text in one(ha, "ConfigMap")["data"].items():
        assert not any(v in text for v in values), cm_key


def test_patroni_configuration(ha):
    conf = patroni_config(ha)
    assert conf["scope"] == "postgresql" and conf["name"] == "postgresql-1"
    assert conf["kubernetes"] == {"namespace": "storage", "use_endpoints": False,
                                  "scope_label": "app.kubernetes.io/instance", "role_label": "role",
                                  "labels": {"app.kubernetes.io/name": "postgresql"},
                                  "pod_ip": "10.244.2.5"}
    assert conf["bootstrap"]["dcs"] == {
        "ttl": 30, "loop_wait": 10, "retry_timeout": 10, "synchronous_mode": True,
        "synchronous_mode_strict": True, "synchronous_node_count": 1, "failsafe_mode": True,
        "postgresql": {"use_pg_rewind": True, "parameters": {"max_connections": 100}}}
    assert conf["bootstrap"]["initdb"] == [{"encoding": "UTF8"}, {"locale": "C"}, "data-checksums",
                                           {"auth-local": "scram-sha-256"},
                                           {"auth-host": "scram-sha-256"}]
    # Patroni splits these like a shell and runs them as they are: the ConfigMap's files
    # are not executable, so sh runs the script
    on_role = "/bin/sh /opt/postgresql-chart/on-role.sh"
    assert conf["bootstrap"]["post_bootstrap"] == on_role
    pg = conf["postgresql"]
    assert pg["callbacks"] == {"on_start": on_role, "on_role_change": on_role}
    assert pg["connect_address"] == "10.244.2.5:5432" and pg["listen"] == "0.0.0.0:5432"
    assert conf["restapi"]["connect_address"] == "10.244.2.5:8008"
    assert pg["authentication"] == {"superuser": {"username": "postgres", "password": 'su"per'},
                                    "replication": {"username": "replicator", "password": "repl"}}
    assert conf["restapi"]["authentication"] == {"username": "patroni", "password": "rest"}
    assert pg["pgpass"].startswith("/run/patroni/")                    # memory, not disk
    assert pg["parameters"]["hba_file"] == "/opt/postgresql-chart/pg_hba.conf"
    assert pg["parameters"]["lc_messages"] == "C"
    assert pg["data_dir"] == "/var/lib/postgresql/data/pgdata"
    # a new replica does not wait for a spread checkpoint (minutes) before copying
    assert pg["basebackup"] == [{"checkpoint": "fast"}]


def test_replication_is_allowed_by_pg_hba(ha):
    hba = one(ha, "ConfigMap")["data"]["pg_hba.conf"]
    assert "host    replication  replicator  0.0.0.0/0  scram-sha-256" in hba.splitlines()


def test_the_catalog_is_made_on_the_primary_only_without_waiting_for_a_standby(ha):
    cm = one(ha, "ConfigMap")["data"]
    script = cm["on-role.sh"]
    assert 'if [ "$#" -ge 3 ] && [ "$2" != primary ]; then' in script
    assert "PGOPTIONS='-c synchronous_commit=local'" in script
    assert "SELECT pg_is_in_recovery()" in script
    # the very psql line the single server's entrypoint runs
    start = cm["entrypoint.sh"].index('"$BIN/psql"')
    psql = cm["entrypoint.sh"][start:cm["entrypoint.sh"].index(".sql", start) + 4]
    assert "-f /opt/postgresql-chart/ensure-catalog.sql" in psql and psql in script


def test_the_spec_drives_members_and_synchronous_settings(helm, spec, opts):
    objs = ha_objects(helm, spec, opts, pg_members=5, pg_sync_count=2, pg_strict=False)
    assert one(objs, "StatefulSet")["spec"]["replicas"] == 5
    dcs = patroni_config(objs)["bootstrap"]["dcs"]
    assert (dcs["synchronous_node_count"], dcs["synchronous_mode_strict"]) == (2, False)
    pods = [r for r in one(objs, "Role")["rules"] if r["resources"] == ["pods"] and "resourceNames" in r]
    assert pods[0]["resourceNames"] == [f"postgresql-{i}" for i in range(5)]


def test_preferred_anti_affinity_when_asked(helm, spec, opts):
    objs = render_chart(
        helm, distributed(spec), opts, "postgresql",
        *render.postgresql_distributed_overrides(distributed(spec)),
        "--set-string", "ha.antiAffinity=preferred")
    aff = one(objs, "StatefulSet")["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(aff) == ["preferredDuringSchedulingIgnoredDuringExecution"]
    (term,) = aff["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["weight"] == 100 and term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_the_chart_refuses_one_member_and_an_unknown_anti_affinity(helm, spec, opts):
    assert "ha.members: at least 2" in template_fails(helm, spec, opts, "--set", "ha.enabled=true",
                                                      "--set", "ha.members=1")
    assert "ha.antiAffinity: required or preferred" in template_fails(
        helm, spec, opts, "--set", "ha.enabled=true", "--set-string", "ha.antiAffinity=sometimes")


# --------------------------------------------------------------------------
# the spec's side: overrides and the network policy
# --------------------------------------------------------------------------
def test_the_distributed_overrides_come_from_the_spec(spec):
    args = render.postgresql_distributed_overrides(distributed(spec, pg_members=4, pg_sync_count=2,
                                                               pg_strict=False))
    sets = dict(a.split("=", 1) for a in args[1::2])
    assert sets == {"ha.enabled": "true", "ha.members": "4", "ha.synchronousNodeCount": "2",
                    "ha.synchronousModeStrict": "false", "ha.pdb.maxUnavailable": "1",
                    "ha.antiAffinity": "required"}
    # not yet part of what `up` passes (design step 9: the image must come with it)
    assert "ha.enabled=true" not in render.postgres_overrides(distributed(spec), render.image_refs(spec, render.Options()))


def test_the_replication_policy_opens_the_charts_ports_to_the_charts_pods(spec, ha):
    """netpol.py names the members' ports and labels: they must be the chart's."""
    (rule,) = {p["metadata"]["name"]: p for p in netpol.network_policies(distributed(spec))}[
        "ducklake-postgresql-replication"]["spec"]["ingress"]
    (c,) = one(ha, "StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert {p["containerPort"] for p in c["ports"]} == {p["port"] for p in rule["ports"]}
    pod_labels = one(ha, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in netpol.postgres_pod_labels(spec).items())


# --------------------------------------------------------------------------
# Patroni itself reads the configuration (the image postgresql-ha: scripts/bootstrap.sh builds it)
# --------------------------------------------------------------------------
def test_patroni_accepts_the_configuration_patroni_sh_writes(ha, tmp_path):
    from ducklake_infra.provision.bundle import layout
    docker = shutil.which("docker")
    image = layout.POSTGRES_HA_IMAGE
    if not docker or subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode:
        pytest.fail(f"image {image} is not built: run `ducklake-infra bundle build --with "
                    "postgresql-ha` (scripts/bootstrap.sh does)", pytrace=False)
    chart, secrets, run = tmp_path / "chart", tmp_path / "secrets", tmp_path / "run"
    for key, text in one(ha, "ConfigMap")["data"].items():
        chart.mkdir(exist_ok=True)
        (chart / key).write_text(text)
    for name, pw in (("superuser", 'su"per\\x'), ("replication", "repl"), ("restapi", "rest")):
        (secrets / name).mkdir(parents=True)
        (secrets / name / "password").write_text(pw)
    run.mkdir()
    for p in (tmp_path, chart, secrets, *secrets.iterdir(), run):
        p.chmod(0o777 if p == run else 0o755)
    # patroni.sh as it is, but Patroni only validates what it was given
    script = (chart / "patroni.sh").read_text().replace(
        "exec python3 -m patroni ", "exec python3 -m patroni --validate-config ")
    res = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--read-only",
         "-v", f"{chart}:/opt/postgresql-chart:ro", "-v", f"{secrets}:/opt/postgresql-secrets:ro",
         "-v", f"{run}:/run/patroni", "--tmpfs", "/var/lib/postgresql/data:uid=999,gid=999",
         "-e", "POD_NAME=postgresql-0", "-e", "POD_IP=10.244.1.7", "-e", "NAMESPACE=storage",
         image, "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    written = run / "patroni.yml"
    assert oct(written.stat().st_mode & 0o777) == "0o600"
    if os.access(written, os.R_OK):              # owned by the image's postgres (999)
        conf = yaml.safe_load(written.read_text())
        assert conf["postgresql"]["authentication"]["superuser"]["password"] == 'su"per\\x'


ON_ROLE_RUN = r"""
set -e
B=/usr/lib/postgresql/15/bin
PGDATA=/var/lib/postgresql/data/pgdata
$B/initdb -D $PGDATA -U postgres --pwfile=/opt/postgresql-secrets/superuser/password \
  --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C >/dev/null
# a strict synchronous primary with no standby: a commit that waits for one never returns
$B/pg_ctl -D $PGDATA -w -l /tmp/pg.log -o "-c hba_file=/opt/postgresql-chart/pg_hba.conf \
  -c unix_socket_directories=/var/run/postgresql -c listen_addresses='' \
  -c synchronous_standby_names='*'" start >/dev/null
export PGPASSWORD="$(cat /opt/postgresql-secrets/superuser/password)"
catalogs() { $B/psql --no-psqlrc -tAq -h /var/run/postgresql -U postgres -d postgres \
  -c "SELECT count(*) FROM pg_database WHERE datname = 'ducklake_catalog'"; }
# as Patroni calls them: the configured command, then its arguments
@ON_START@ on_start replica postgresql
echo "replica: $(catalogs)"
@ON_ROLE_CHANGE@ on_role_change primary postgresql
echo "primary: $(catalogs)"
@POST_BOOTSTRAP@ 'postgres://postgres@/postgres?host=/var/run/postgresql'
echo "post_bootstrap again: $(catalogs)"
# the same script without its PGOPTIONS: its first write waits for a standby forever
sed '/^export PGOPTIONS/d' /opt/postgresql-chart/on-role.sh > /tmp/no-pgoptions.sh
set +e
timeout 5 sh /tmp/no-pgoptions.sh on_role_change primary postgresql >/dev/null 2>&1
echo "without PGOPTIONS: $?"
"""


def test_on_role_makes_the_catalog_on_a_strict_primary_and_nothing_on_a_replica(ha, tmp_path):
    """on-role.sh against a real PostgreSQL 15 (in the optional image) configured as a
    strict synchronous primary with no standby: the script's commits must not wait."""
    from ducklake_infra.provision.bundle import layout
    docker = shutil.which("docker")
    image = layout.POSTGRES_HA_IMAGE
    if not docker or subprocess.run([docker, "image", "inspect", image], capture_output=True).returncode:
        pytest.fail(f"image {image} is not built: run `ducklake-infra bundle build --with "
                    "postgresql-ha` (scripts/bootstrap.sh does)", pytrace=False)
    chart, secrets = tmp_path / "chart", tmp_path / "secrets"
    chart.mkdir()
    for key, text in one(ha, "ConfigMap")["data"].items():
        (chart / key).write_text(text)
    for name in ("superuser", "catalog", "reader"):
        (secrets / name).mkdir(parents=True)
        (secrets / name / "password").write_text(f"{name}-pw")
    for p in (tmp_path, *tmp_path.rglob("*")):
        p.chmod(0o755 if p.is_dir() else 0o644)
    conf = patroni_config(ha)
    script = ON_ROLE_RUN
    for mark, cmd in (("@ON_START@", conf["postgresql"]["callbacks"]["on_start"]),
                      ("@ON_ROLE_CHANGE@", conf["postgresql"]["callbacks"]["on_role_change"]),
                      ("@POST_BOOTSTRAP@", conf["bootstrap"]["post_bootstrap"])):
        script = script.replace(mark, shlex.join(shlex.split(cmd)))
    res = subprocess.run(
        [docker, "run", "--rm", "--network", "none", "--read-only",
         "-v", f"{chart}:/opt/postgresql-chart:ro", "-v", f"{secrets}:/opt/postgresql-secrets:ro",
         "--tmpfs", "/var/lib/postgresql/data:uid=999,gid=999,mode=0700",
         "--tmpfs", "/var/run/postgresql:uid=999,gid=999", "--tmpfs", "/tmp",
         image, "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "on-role: on_start as replica: nothing to do" in res.stdout
    assert [ln for ln in res.stdout.splitlines() if ": " in ln and ln.split(": ")[0] in
            ("replica", "primary", "post_bootstrap again", "without PGOPTIONS")] == \
        ["replica: 0", "primary: 1", "post_bootstrap again: 1", "without PGOPTIONS: 124"]
