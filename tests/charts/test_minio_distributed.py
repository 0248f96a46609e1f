"""MinIO in the distributed profile (issue 16), rendered by the real chart with the
arguments `up` passes: one StatefulSet of 4 servers, one claim each, EC:2, one server
per node, a PodDisruptionBudget of one; standalone renders as before."""

from __future__ import annotations

import dataclasses

import pytest

from ducklake_infra.provision.spec import DistributedSpec

from .conftest import render_chart


def distributed(spec, **kw):
    return dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec(**kw))


def kinds(objs) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for o in objs:
        out.setdefault(o["kind"], []).append(o)
    return out


@pytest.mark.bundle        # the bundle's helm and MinIO chart
def test_four_servers_one_drive_each_ec2_one_per_node(helm, spec, opts, minio_chart):
    objs = kinds(render_chart(helm, distributed(spec), opts, "minio"))
    assert "Deployment" not in objs and "PersistentVolumeClaim" not in objs
    (sts,) = objs["StatefulSet"]
    assert sts["metadata"]["name"] == spec.minio.fullname and sts["spec"]["replicas"] == 4
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"] == spec.minio.pvcs[0].size
    pod = sts["spec"]["template"]["spec"]
    (c,) = [c for c in pod["containers"] if c["name"] == "minio"]
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    assert env["MINIO_STORAGE_CLASS_STANDARD"] == "EC:2"
    command = " ".join(c["command"])
    assert "{0...3}" in command                    # the 4 servers' URLs, one drive each
    (term,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {"app": "minio", "release": spec.minio.release}
    # 4 servers, 3 workers: MinIO (only) may run on the control plane
    assert pod["tolerations"] == [{"key": "node-role.kubernetes.io/control-plane",
                                   "operator": "Exists", "effect": "NoSchedule"}]
    (pdb,) = objs["PodDisruptionBudget"]
    assert pdb["spec"]["maxUnavailable"] == 1


@pytest.mark.bundle        # the bundle's helm and MinIO chart
def test_enough_workers_means_no_control_plane(helm, spec, opts, minio_chart):
    objs = kinds(render_chart(helm, distributed(spec, workers=4, minio_servers=4, minio_parity=1),
                              opts, "minio"))
    pod = objs["StatefulSet"][0]["spec"]["template"]["spec"]
    assert not pod.get("tolerations")
    env = {e["name"]: e.get("value") for e in pod["containers"][0].get("env", [])}
    assert env["MINIO_STORAGE_CLASS_STANDARD"] == "EC:1"


@pytest.mark.bundle        # the bundle's helm and MinIO chart
def test_standalone_is_unchanged(helm, spec, opts, minio_chart):
    objs = kinds(render_chart(helm, spec, opts, "minio"))
    assert "StatefulSet" not in objs and "PodDisruptionBudget" not in objs
    (dep,) = objs["Deployment"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"


def test_the_servers_may_reach_each_other_only_in_the_distributed_profile(spec):
    from ducklake_infra.provision import netpol
    names = {p["metadata"]["name"] for p in netpol.network_policies(spec)}
    assert "ducklake-minio-internode" not in names            # standalone: one server
    pols = {p["metadata"]["name"]: p for p in netpol.network_policies(distributed(spec))}
    inter = pols["ducklake-minio-internode"]
    labels = netpol.minio_pod_labels(spec)
    assert inter["metadata"]["namespace"] == spec.minio.namespace
    assert inter["spec"]["podSelector"]["matchLabels"] == labels
    (rule,) = inter["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": labels}}]    # MinIO pods only
    assert rule["ports"] == [{"protocol": "TCP", "port": spec.minio.api_port}]
