"""BE-HA-001 (checks/ha_backend.py) on the backend objects `up` renders for the
distributed profile, given the status a cluster would add: the render passes; each way of
breaking it FAILs; the standalone render is unchanged (one replica, no spread, no budget)."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.render import backend_objects
from ducklake_infra.provision.spec import DistributedSpec
from ducklake_infra.suites import checks
from ducklake_infra.suites.catalog import FAIL, PASS, catalog
from ducklake_infra.suites.objects import Objects


@pytest.fixture
def spec():
    return dataclasses.replace(spec_file.load(), profile="distributed", distributed=DistributedSpec())


def cluster(spec, nodes=("w1", "w2"), ready=True, available=None, allowed=1, pdb=True,
            spread=True, replicas=None, extra_pdb=False, budget=None) -> list[dict]:
    """The rendered objects plus the status, pods and budget status a cluster would show."""
    objs = backend_objects(spec, "ducklake-infra/backend:x")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    if replicas is not None:
        dep["spec"]["replicas"] = replicas
    if not spread:
        dep["spec"]["template"]["spec"].pop("topologySpreadConstraints", None)
    n = dep["spec"]["replicas"]
    dep["status"] = {"replicas": n, "updatedReplicas": n,
                     "availableReplicas": n if available is None else available}
    labels = dep["spec"]["template"]["metadata"]["labels"]
    pods = [{"kind": "Pod", "metadata": {"name": f"ducklake-backend-{i}",
                                         "namespace": dep["metadata"]["namespace"],
                                         "labels": dict(labels)},
             "spec": {"nodeName": node, "containers": [{"name": "backend"}]},
             "status": {"phase": "Running", "conditions": [
                 {"type": "Ready", "status": "True" if ready else "False"}]}}
            for i, node in enumerate(nodes)]
    out = []
    for o in objs:
        if o["kind"] == "PodDisruptionBudget":
            if not pdb:
                continue
            if budget is not None:
                o["spec"] = {**budget, "selector": o["spec"]["selector"]}
            o["status"] = {"disruptionsAllowed": allowed, "currentHealthy": len(nodes),
                           "expectedPods": len(nodes)}
            if extra_pdb:
                out.append({**copy.deepcopy(o), "metadata": {**o["metadata"], "name": "other"}})
        out.append(o)
    return out + pods


def run(items, spec):
    return checks.run("BE-HA-001", Objects(items=copy.deepcopy(items)), spec)


def test_the_distributed_render_passes(spec):
    res = run(cluster(spec), spec)
    assert res.status == PASS, res.evidence
    assert any("2 Ready replicas on distinct nodes (w1, w2)" in e for e in res.evidence)
    assert any("hostname spread constraint" in e for e in res.evidence)
    assert any("keeps 1 of 2 serving" in e for e in res.evidence)


def test_a_required_anti_affinity_keeps_them_apart_too(spec):
    items = cluster(spec, spread=False)
    dep = next(o for o in items if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["affinity"] = {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {"matchLabels": dict(dep["spec"]["selector"]["matchLabels"])}}]}}
    assert run(items, spec).status == PASS


def _schedule_anyway(spec):
    items = cluster(spec)
    dep = next(o for o in items if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["whenUnsatisfiable"] = \
        "ScheduleAnyway"
    return items


def _foreign_selector(spec):
    items = cluster(spec)
    dep = next(o for o in items if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["topologySpreadConstraints"][0]["labelSelector"] = {
        "matchLabels": {"app": "something-else"}}
    return items


@pytest.mark.parametrize("make,needle", [
    (lambda s: cluster(s, replicas=1, nodes=("w1",)), "has 1 replica(s), the plan says 2"),
    (lambda s: cluster(s, replicas=3, nodes=("w1", "w2", "w3")), "has 3 replica(s), the plan says 2"),
    (lambda s: cluster(s, available=1), "1 available"),
    (lambda s: cluster(s, nodes=("w1", "w1")), "share node w1"),
    (lambda s: cluster(s, ready=False), "0 available"),
    (lambda s: cluster(s, spread=False), "distinct nodes only by luck"),
    (_schedule_anyway, "distinct nodes only by luck"),
    (_foreign_selector, "distinct nodes only by luck"),
    (lambda s: cluster(s, pdb=False), "no PodDisruptionBudget"),
    (lambda s: cluster(s, extra_pdb=True), "2 PodDisruptionBudgets select"),
    (lambda s: cluster(s, budget={"minAvailable": 2}), "no eviction is ever allowed"),
    (lambda s: cluster(s, budget={"maxUnavailable": 0}), "no eviction is ever allowed"),
    (lambda s: cluster(s, budget={"minAvailable": 0}), "may be left with none"),
    (lambda s: cluster(s, budget={"minAvailable": "50%"}), "a percentage"),
    (lambda s: cluster(s, allowed=0), "allows no disruption now"),
    (lambda s: [o for o in cluster(s) if o["kind"] != "Deployment"], "no Deployment"),
])
def test_each_way_of_breaking_it_fails(spec, make, needle):
    items = make(spec)
    if needle == "0 available":                    # not Ready pods: the Deployment says so
        next(o for o in items if o["kind"] == "Deployment")["status"]["availableReplicas"] = 0
    res = run(items, spec)
    assert res.status == FAIL and any(needle in e for e in res.evidence), res.evidence


def test_the_standalone_render_is_one_replica_without_spread_or_budget():
    standalone = spec_file.load()
    objs = backend_objects(standalone, "x")
    dep = next(o for o in objs if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == standalone.backend.replicas == 1
    assert "topologySpreadConstraints" not in dep["spec"]["template"]["spec"]
    assert [o["kind"] for o in objs] == ["ConfigMap", "Deployment", "Service"]


def test_the_distributed_render_takes_the_profile_s_count(spec):
    spec3 = dataclasses.replace(spec, distributed=DistributedSpec(backend_replicas=3))
    dep = next(o for o in backend_objects(spec3, "x") if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 3
    assert run(cluster(spec3, nodes=("w1", "w2", "w3")), spec3).status == PASS


@pytest.mark.parametrize("cid", ["BE-HA-001", "HA-MINIO-003", "RES-DRAIN-001"])
def test_this_session_s_controls_are_the_distributed_profile_s(cid):
    assert catalog().controls[cid].profiles == ("distributed",)
