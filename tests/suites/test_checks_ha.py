"""The distributed profile's HA checks (checks/ha.py) on hand-written objects: a
conforming distributed MinIO passes; each way of breaking it FAILs; and the controls are
part of a distributed run only."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import DistributedSpec
from ducklake_infra.suites import checks
from ducklake_infra.suites import report as rep
from ducklake_infra.suites.catalog import FAIL, PASS, TestRecord, catalog
from ducklake_infra.suites.checks.ha import write_quorum
from ducklake_infra.suites.objects import Objects

HA = ("HA-MINIO-001", "HA-MINIO-002", "HA-PDB-001")
LABELS = {"app": "minio", "release": "minio"}


@pytest.fixture
def spec():
    return dataclasses.replace(spec_file.load(), profile="distributed", distributed=DistributedSpec())


def minio(servers=4, nodes=("cp", "w1", "w2", "w3"), parity="EC:2", pdb=1, allowed=1,
          ready=True) -> list[dict]:
    sts = {"kind": "StatefulSet", "metadata": {"name": "minio", "namespace": "storage"},
           "spec": {"replicas": servers, "selector": {"matchLabels": dict(LABELS)},
                    "template": {"metadata": {"labels": dict(LABELS)}, "spec": {"containers": [
                        {"name": "minio", "env": [] if parity is None else [
                            {"name": "MINIO_STORAGE_CLASS_STANDARD", "value": parity}]}]}}}}
    pods = [{"kind": "Pod", "metadata": {"name": f"minio-{i}", "namespace": "storage",
                                         "labels": dict(LABELS)},
             "spec": {"nodeName": nodes[i % len(nodes)], "containers": [{"name": "minio"}]},
             "status": {"phase": "Running", "conditions": [
                 {"type": "Ready", "status": "True" if ready else "False"}]}}
            for i in range(servers)]
    out = [sts, *pods]
    if pdb is not None:
        out.append({"kind": "PodDisruptionBudget", "metadata": {"name": "minio", "namespace": "storage"},
                    "spec": {"maxUnavailable": pdb, "selector": {"matchLabels": {"app": "minio"}}},
                    "status": {"disruptionsAllowed": allowed, "currentHealthy": 4, "expectedPods": 4}})
    return out


def run(cid, items, spec):
    return checks.run(cid, Objects(items=copy.deepcopy(items)), spec)


@pytest.mark.parametrize("cid", HA)
def test_a_conforming_distributed_minio_passes(cid, spec):
    res = run(cid, minio(), spec)
    assert res.status == PASS and res.evidence, (cid, res.evidence)


@pytest.mark.parametrize("cid,items,needle", [
    ("HA-MINIO-001", [o for o in minio() if o["kind"] != "StatefulSet"], "does not run distributed"),
    ("HA-MINIO-001", minio(nodes=("w1", "w1", "w2", "w3")), "share node w1"),
    ("HA-MINIO-001", minio(servers=3, nodes=("w1", "w2", "w3")), "3 servers, the plan says 4"),
    ("HA-MINIO-001", minio(ready=False), "minio-0"),
    ("HA-MINIO-002", minio(parity=None), "is None, the plan says 'EC:2'"),
    ("HA-MINIO-002", minio(parity="EC:1"), "is 'EC:1', the plan says 'EC:2'"),
    ("HA-PDB-001", minio(pdb=None), "no PodDisruptionBudget"),
    ("HA-PDB-001", minio(pdb=2), "lets 2 servers go at once"),
    ("HA-PDB-001", minio(pdb=0), "lets no server go"),
    ("HA-PDB-001", minio(pdb="50%"), "a percentage"),
    ("HA-PDB-001", minio(allowed=0), "allows no disruption now"),
])
def test_each_way_of_breaking_it_fails(spec, cid, items, needle):
    res = run(cid, items, spec)
    assert res.status == FAIL and any(needle in e for e in res.evidence), (cid, res.evidence)


def test_write_quorum_is_minio_s():
    assert write_quorum(4, 2) == 3 and write_quorum(4, 1) == 3 and write_quorum(8, 4) == 5
    assert write_quorum(6, 2) == 4 and write_quorum(16, 4) == 12


def test_ha_controls_are_part_of_a_distributed_run_only():
    reg = catalog()
    assert all(reg.controls[c].profiles == ("distributed",) for c in HA)
    recs = [TestRecord(f"t::{c}", reg.controls[c]) for c in HA]
    standalone = {r.control.id for r in rep.aggregate(reg, recs, profile="standalone")}
    distributed = {r.control.id for r in rep.aggregate(reg, recs, profile="distributed")}
    assert not set(HA) & standalone and set(HA) <= distributed
    assert "MINIO-SVC-001" in standalone and "MINIO-SVC-001" in distributed


def postgresql(members=3) -> list[dict]:
    labels = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "postgresql"}
    sts = {"kind": "StatefulSet", "metadata": {"name": "postgresql", "namespace": "storage",
                                               "labels": dict(labels)},
           "spec": {"replicas": members, "selector": {"matchLabels": dict(labels)},
                    "template": {"metadata": {"labels": dict(labels)}, "spec": {"containers": [
                        {"name": "postgresql"}]}}}}
    pods = [{"kind": "Pod", "metadata": {"name": f"postgresql-{i}", "namespace": "storage",
                                         "labels": dict(labels)},
             "spec": {"containers": [{"name": "postgresql"}]}, "status": {"phase": "Running"}}
            for i in range(members)]
    return [sts, *pods]


@pytest.mark.parametrize("cid", ["PG-REP-001", "DRIFT-REPL-002"])
def test_postgresql_members_follow_the_profile(cid, spec):
    standalone = spec_file.load()
    assert run(cid, postgresql(3), spec).status == PASS            # distributed: 3 members
    res = run(cid, postgresql(1), spec)
    assert res.status == FAIL and any("expected 3" in e for e in res.evidence), res.evidence
    res = run(cid, postgresql(3), standalone)                      # standalone: one
    assert res.status == FAIL and any("expected 1" in e for e in res.evidence), res.evidence
    assert run(cid, postgresql(1), standalone).status == PASS


PG_LABELS = {"app.kubernetes.io/name": "postgresql", "app.kubernetes.io/instance": "postgresql"}


def patroni(primary=1, sync="postgresql-2", nodes=("w1", "w2", "w3"), strict=True, sync_count=1,
            selector_role=True, endpoints=None, pdb=1, state="running", failsafe=True,
            leader=None, roles=None) -> list[dict]:
    """A healthy Patroni cluster of 3 as the API server shows it (ConfigMap mode)."""
    import json
    roles = roles or {i: "primary" if i == primary else "replica" for i in range(3)}
    ip = lambda i: f"10.244.{i}.4"  # noqa: E731
    sts = {"kind": "StatefulSet", "metadata": {"name": "postgresql", "namespace": "storage"},
           "spec": {"replicas": 3, "selector": {"matchLabels": dict(PG_LABELS)},
                    "template": {"metadata": {"labels": dict(PG_LABELS)},
                                 "spec": {"containers": [{"name": "postgresql"}]}}}}
    pods = [{"kind": "Pod", "metadata": {
        "name": f"postgresql-{i}", "namespace": "storage",
        "labels": {**PG_LABELS, **({"role": roles[i]} if roles.get(i) else {})},
        "annotations": {"status": json.dumps({"state": state, "role": roles.get(i),
                                              "replication_state": None if roles.get(i) == "primary"
                                              else "streaming"})}},
        "spec": {"nodeName": nodes[i], "containers": [{"name": "postgresql"}]},
        "status": {"phase": "Running", "podIP": ip(i),
                   "conditions": [{"type": "Ready", "status": "True"}]}} for i in range(3)]
    name = f"postgresql-{primary}"
    cms = [{"kind": "ConfigMap", "metadata": {"name": f"postgresql-{k}", "namespace": "storage",
                                              "annotations": a}} for k, a in (
        ("leader", {"leader": leader or name, "transitions": "0"}),
        ("sync", {"leader": name, "sync_standby": sync}),
        ("config", {"config": json.dumps({"synchronous_mode": True,
                                          "synchronous_mode_strict": strict,
                                          "synchronous_node_count": sync_count,
                                          "failsafe_mode": failsafe})}))]
    svc = {"kind": "Service", "metadata": {"name": "postgresql", "namespace": "storage"},
           "spec": {"clusterIP": "10.96.0.9", "selector": {
               **PG_LABELS, **({"role": "primary"} if selector_role else {})}}}
    es = {"kind": "EndpointSlice", "metadata": {
        "name": "postgresql-abc", "namespace": "storage",
        "labels": {"kubernetes.io/service-name": "postgresql"}},
        "endpoints": [{"addresses": [a]} for a in (endpoints or [ip(primary)])]}
    out = [sts, *pods, *cms, svc, es]
    if pdb is not None:
        out.append({"kind": "PodDisruptionBudget", "metadata": {"name": "postgresql",
                                                                "namespace": "storage"},
                    "spec": {"maxUnavailable": pdb, "selector": {"matchLabels": dict(PG_LABELS)}},
                    "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "expectedPods": 3}})
    return out


@pytest.mark.parametrize("cid", ["HA-PG-001", "HA-PG-002"])
def test_a_healthy_patroni_cluster_passes(cid, spec):
    res = run(cid, patroni(), spec)
    assert res.status == PASS and res.evidence, (cid, res.evidence)


@pytest.mark.parametrize("cid,items,needle", [
    ("HA-PG-001", patroni(roles={0: "primary", 1: "primary", 2: "replica"}),
     "2 members labelled role=primary"),
    ("HA-PG-001", patroni(roles={0: "replica", 1: "replica", 2: "replica"}),
     "0 members labelled role=primary"),
    ("HA-PG-001", patroni(leader="postgresql-0"), "names 'postgresql-0'"),
    ("HA-PG-001", patroni(sync=""), "0 in-sync standby(s)"),
    ("HA-PG-001", patroni(sync="postgresql-7"), "postgresql-7 is not a running member"),
    ("HA-PG-001", patroni(state="starting"), "is 'starting'"),
    ("HA-PG-001", patroni(strict=False), "synchronous_mode_strict False"),
    ("HA-PG-001", patroni(sync_count=0), "synchronous_node_count 0"),
    ("HA-PG-001", patroni(selector_role=False), "without role=primary"),
    ("HA-PG-001", patroni(endpoints=["10.244.1.4", "10.244.0.4"]), "the primary is 10.244.1.4"),
    ("HA-PG-001", [o for o in patroni() if o["metadata"]["name"] != "postgresql-sync"],
     "synchronous replication is not on"),
    ("HA-PG-002", patroni(nodes=("w1", "w1", "w2")), "share node w1"),
    ("HA-PG-002", patroni(pdb=None), "no PodDisruptionBudget"),
    ("HA-PG-002", patroni(pdb=2), "expected maxUnavailable 1"),
    ("HA-PG-002", [o for o in patroni() if o["metadata"]["name"] != "postgresql-2"],
     "2 members, the plan says 3"),
])
def test_each_way_of_breaking_patroni_fails(spec, cid, items, needle):
    res = run(cid, items, spec)
    assert res.status == FAIL and any(needle in e for e in res.evidence), (cid, res.evidence)


def test_failsafe_off_is_a_warning(spec):
    res = run("HA-PG-001", patroni(failsafe=False), spec)
    assert res.status == "WARN" and any("failsafe_mode is off" in e for e in res.evidence)


def _ledger(status="PASS"):
    from ducklake_infra.suites.catalog import Result
    return Result(status, ["10 batch(es) sent, 10 acknowledged, lost 0"] if status == "PASS"
                  else ["2 acknowledged batch(es) not found whole: [3, 4]", "ok: duplicates 0"])


def test_a_clean_failover_passes():
    from ducklake_infra.suites.resilience import judge_failover
    res = judge_failover(_ledger(), "postgresql-1", "postgresql-2", ["postgresql-2"], 6.5, 30, 1)
    assert res.status == PASS
    assert any("postgresql-2 primary 6.5s after" in e for e in res.evidence)


@pytest.mark.parametrize("kw,needle", [
    ({"ledger": "FAIL"}, "not found whole"),
    ({"new": None, "after": None}, "no member took over"),
    ({"after": 45.0}, "limit 30s"),
    ({"new": "postgresql-0"}, "the in-sync standby was postgresql-2"),
    ({"most": 2}, "split brain"),
])
def test_each_way_a_failover_goes_wrong_fails(kw, needle):
    from ducklake_infra.suites.resilience import judge_failover
    res = judge_failover(_ledger(kw.get("ledger", "PASS")), "postgresql-1",
                         kw.get("new", "postgresql-2"), ["postgresql-2"],
                         kw.get("after", 6.5), 30, kw.get("most", 1))
    assert res.status == FAIL and any(needle in e for e in res.evidence), res.evidence


def health(write=200, wq=3, read=200, rq=2, healing=0, servers=None, live=200, maint=200,
           access="ok") -> dict:
    """GET /storage/health of a healthy EC:2 set of 4, as the backend answers it."""
    hosts = servers if servers is not None else [
        f"minio-{i}.minio-svc.storage.svc.cluster.local:9000" for i in range(4)]
    w = {"status": write} if write is None or write != 200 else {"status": 200, "write_quorum": wq}
    if write is None:
        w = {"status": None, "error": "TimeoutError"}
    r = {"status": read, **({"read_quorum": rq} if read == 200 else {})}
    if healing:
        w["healing_drives"] = healing
    return {"cluster": {"write": w, "read": r},
            "servers": [{"host": h, "live": {"status": live if i == 0 else 200},
                         "maintenance": {"status": maint if i == 0 else 200},
                         "access": access if i == 1 else "ok"}
                        for i, h in enumerate(hosts)]}


def test_a_healthy_erasure_set_passes(spec):
    res = checks.run("HA-MINIO-003", Objects(items=[]), spec, health=health())
    assert res.status == PASS, res.evidence
    assert any("all 4 servers live" in e for e in res.evidence)
    assert any("EC:2 in force" in e for e in res.evidence)


@pytest.mark.parametrize("kw,needle", [
    ({"write": 503}, "lacks its write quorum"),
    ({"write": None}, "no answer (TimeoutError)"),
    ({"wq": 4}, "write quorum 4, EC:2 on 4 drives gives 3"),
    ({"read": 503}, "objects cannot be read"),
    ({"rq": 3}, "the parity in force is EC:1, the plan says EC:2"),
    ({"live": None}, "is not live"),
    ({"access": "AccessDenied"}, "minio-1.minio-svc.storage.svc.cluster.local:9000 refuses the "
                                 "stack's own identity (AccessDenied)"),
    ({"access": "MaxRetryError"}, "refuses the stack's own identity (MaxRetryError)"),
    ({"servers": [f"minio-{i}.minio-svc.storage.svc.cluster.local:9000" for i in range(3)]},
     "does not ask minio-3.minio-svc"),
])
def test_each_way_of_an_unhealthy_erasure_set_fails(spec, kw, needle):
    res = checks.run("HA-MINIO-003", Objects(items=[]), spec, health=health(**kw))
    assert res.status == FAIL and any(needle in e for e in res.evidence), res.evidence


@pytest.mark.parametrize("kw,needle", [
    ({"healing": 1}, "1 drive(s) healing"),
    ({"maint": 412}, "would cost the write quorum"),
])
def test_healing_or_no_room_for_maintenance_warns(spec, kw, needle):
    res = checks.run("HA-MINIO-003", Objects(items=[]), spec, health=health(**kw))
    assert res.status == "WARN" and any(needle in e for e in res.evidence), res.evidence


def test_without_the_backend_s_answer_it_cannot_be_evaluated(spec):
    res = checks.run("HA-MINIO-003", Objects(items=[]), spec)
    assert res.status == "ERROR" and "GET /storage/health" in res.evidence[0]


def test_the_backend_is_given_every_server_by_name_only_in_the_distributed_profile(spec):
    from ducklake_infra.provision.render import backend_config
    assert backend_config(spec)["DUCKLAKE_MINIO_SERVERS"] == ",".join(
        f"minio-{i}.minio-svc.storage.svc.cluster.local:9000" for i in range(4))
    assert "DUCKLAKE_MINIO_SERVERS" not in backend_config(spec_file.load())
