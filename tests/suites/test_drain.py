"""RES-DRAIN-001's parts without a cluster: the verdict (each way of failing it FAILs),
the drain in its thread with a fake kubectl (command line, success, refusal, and the
uncordon), the pods a drain would evict, and the load generator kept off the node."""

from __future__ import annotations

import dataclasses
import types

import pytest

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import DistributedSpec
from ducklake_infra.suites.catalog import FAIL, PASS, Result
from ducklake_infra.suites.faults import drain, loadgen
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.resilience import judge_drain

GOOD_LEDGER = Result(PASS, ["50 batch(es) of 20 rows sent, 50 acknowledged, 50 acknowledged "
                            "found whole, lost 0"])
LOST_LEDGER = Result(FAIL, ["2 acknowledged batch(es) not found whole: [3, 4]",
                            "ok: duplicates 0, batches in part 0"])
EVICTED = ["minio-1", "postgresql-0 (primary)", "ducklake-backend-x"]


def judge(**kw):
    args = dict(ledger=GOOD_LEDGER, node="w1", drain_s=22.5, drain_error=None, limit_s=180,
                evicted=EVICTED, worse=[], not_ready_again=None)
    args.update(kw)
    return judge_drain(**args)


def test_a_clean_drain_passes():
    res = judge(storage_during={"write": 200, "live": "3 of 4"})
    assert res.status == PASS, res.evidence
    assert "MinIO kept its write quorum during the drain (3 of 4 servers live)" in res.evidence
    assert "w1 drained in 22.5s" in res.evidence
    assert any("evicted: minio-1" in e for e in res.evidence)


@pytest.mark.parametrize("kw,needle", [
    ({"ledger": LOST_LEDGER}, "not found whole"),
    ({"drain_s": None, "drain_error": "exit 1: error when evicting pods/\"postgresql-0\" "
                                      "(will retry after 5s): Cannot evict pod as it would "
                                      "violate the pod's disruption budget."},
     "did not finish: exit 1"),
    ({"drain_s": 240.0}, "took 240.0s (limit 180s)"),
    ({"evicted": []}, "the drain proved nothing"),
    ({"not_ready_again": "after the uncordon: PostgreSQL (storage/postgresql) was not Ready "
                         "again within 300s"}, "not Ready again"),
    ({"worse": ["HA-PG-001: PASS before the drain, FAIL after"]}, "HA-PG-001: PASS before"),
    ({"storage_during": {"write": 503, "live": "2 of 4"}}, "write quorum was not held"),
    ({"storage_during": {"error": "HTTP 503: not ready"}}, "write quorum was not held"),
])
def test_each_way_of_failing_a_drain_fails(kw, needle):
    res = judge(**kw)
    assert res.status == FAIL and any(needle in e for e in res.evidence), res.evidence


class FakeKubectl:
    def __init__(self, rc=0, err=""):
        self.calls, self.rc, self.err = [], rc, err

    def __call__(self, *argv, check=True, timeout=None, **kw):
        self.calls.append(argv)
        return types.SimpleNamespace(returncode=self.rc if argv[0] == "drain" else 0,
                                     stdout="", stderr=self.err)


def test_the_drain_asks_the_eviction_api_and_times_out_and_the_uncordon_follows():
    k = FakeKubectl()
    d = drain.Drain(k, "w1", 180).start()
    d.join()
    d.uncordon()
    assert k.calls == [("drain", "w1", "--ignore-daemonsets", "--delete-emptydir-data",
                        "--timeout=180s"), ("uncordon", "w1")]
    assert d.error is None and d.seconds is not None
    assert "--disable-eviction" not in k.calls[0] and "--force" not in k.calls[0]


def test_a_refused_drain_keeps_its_last_line():
    k = FakeKubectl(rc=1, err="evicting pod storage/minio-1\nerror: timed out waiting for "
                              "the condition")
    d = drain.Drain(k, "w1", 5).start()
    d.join()
    assert d.seconds is None
    assert d.error == "exit 1: error: timed out waiting for the condition"


def _pod(name, ns, node, phase="Running", role=None):
    return {"kind": "Pod", "metadata": {"name": name, "namespace": ns,
                                        "labels": {"role": role} if role else {}},
            "spec": {"nodeName": node}, "status": {"phase": phase}}


def test_the_stack_pods_on_a_node_leave_out_other_namespaces_and_finished_jobs():
    spec = spec_file.load()
    objs = Objects([_pod("minio-1", "storage", "w1"),
                    _pod("postgresql-0", "storage", "w1", role="primary"),
                    _pod("minio-post-job-x", "storage", "w1", "Succeeded"),
                    _pod("coredns-x", "kube-system", "w1"), _pod("minio-2", "storage", "w2")])
    assert drain.stack_pods_on(objs, spec, "w1") == ["minio-1", "postgresql-0 (primary)"]
    assert drain.stack_pods_on(objs, spec, "w9") == []
    assert drain.node_of(objs, "storage", "minio-2") == "w2"
    assert drain.node_of(objs, "storage", "nope") is None


def test_the_load_generator_is_kept_off_the_drained_node():
    spec = dataclasses.replace(spec_file.load(), profile="distributed", distributed=DistributedSpec())
    pod = loadgen.pod(spec, "img", "lg", loadgen.Load("t", avoid_node="w1"))
    terms = pod["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [{"key": "kubernetes.io/hostname",
                                            "operator": "NotIn", "values": ["w1"]}]}]
    assert "affinity" not in loadgen.pod(spec, "img", "lg", loadgen.Load("t"))["spec"]
