"""up and plan with the distributed profile: they refuse to convert an installed stack to
another profile in place (design note section 1: MinIO's Deployment volume does not become
a StatefulSet's claims, a single PostgreSQL's data directory does not become a Patroni
cluster), and up returns once Patroni published its in-sync standby."""

from __future__ import annotations

import dataclasses
import json

import pytest

from ducklake_infra.provision import stack, stack_steps
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.spec import DistributedSpec

from .fakes import FakeRunner
from .test_stack import _kind, _opts


def _distributed(spec):
    return dataclasses.replace(spec, profile="distributed", distributed=DistributedSpec())


def _workloads(minio_kind: str | None, patroni: bool | None) -> str:
    items = []
    if minio_kind:
        items.append({"kind": minio_kind, "metadata": {"name": "minio", "namespace": "storage"}})
    if patroni is not None:
        cmd = ["/bin/sh", "/opt/postgresql-chart/patroni.sh"] if patroni else \
            ["/bin/sh", "/opt/postgresql-chart/entrypoint.sh"]
        items.append({"kind": "StatefulSet", "metadata": {"name": "postgresql", "namespace": "storage"},
                      "spec": {"template": {"spec": {"containers": [{"name": "postgresql",
                                                                     "command": cmd}]}}}})
    return json.dumps({"kind": "List", "items": items})


@pytest.mark.parametrize("minio_kind,patroni,profile,refused", [
    ("Deployment", False, "standalone", None),
    ("StatefulSet", True, "distributed", None),
    (None, None, "distributed", None),                       # nothing installed yet
    ("Deployment", False, "distributed", "minio: standalone"),
    ("StatefulSet", True, "standalone", "minio: distributed, postgresql: distributed"),
    ("StatefulSet", False, "distributed", "postgresql: standalone"),
])
def test_a_profile_switch_over_installed_releases_is_refused(spec, progress, fake_layout,
                                                             minio_kind, patroni, profile, refused):
    s = _distributed(spec) if profile == "distributed" else spec
    r = FakeRunner()
    r.on(r"get deployments,statefulsets -n storage", stdout=_workloads(minio_kind, patroni))
    r.on(r"^helm .* list ", stdout="[]")
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    if refused is None:
        stack_steps.refuse_profile_switch(ctx)
        return
    with pytest.raises(DucklakeInfraError) as exc:
        stack_steps.refuse_profile_switch(ctx)
    msg = str(exc.value)
    assert refused in msg and "down --purge" in msg and "\n" not in msg


def test_up_installs_nothing_when_the_profile_would_switch(spec, progress, fake_layout):
    from .test_stack import fresh_runner
    r = fresh_runner()
    r.on(r"get deployments,statefulsets -n storage", stdout=_workloads("StatefulSet", True))
    r.on(r"^helm .* list ", stdout="[]")
    with pytest.raises(DucklakeInfraError, match="another profile"):
        stack.up(_kind(r, spec), spec, r, progress, _opts(fake_layout))
    assert not r.executed(r"upgrade --install")


def _sync(standbys: str) -> str:
    return json.dumps({"kind": "ConfigMap", "metadata": {
        "name": "postgresql-sync", "annotations": {"leader": "postgresql-0",
                                                   "sync_standby": standbys}}})


def test_up_waits_for_the_in_sync_standby(spec, progress, fake_layout, monkeypatch):
    monkeypatch.setattr(stack_steps.time, "sleep", lambda s: None)
    s = _distributed(spec)
    r = FakeRunner()
    r.on(r"get configmap postgresql-sync", stdout=_sync("postgresql-2"))
    r.on(r"get configmap postgresql-sync", stdout=_sync(""), times=3)   # newest rule first
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    assert stack_steps.wait_sync_standby(ctx) == "in sync: postgresql-2"
    assert len(r.executed(r"get configmap postgresql-sync")) == 4


def test_up_fails_clearly_when_no_standby_gets_in_sync(spec, progress, fake_layout):
    s = _distributed(spec)
    r = FakeRunner()
    r.on(r"get configmap postgresql-sync", stdout=_sync(""))
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    with pytest.raises(DucklakeInfraError) as exc:
        stack_steps.wait_sync_standby(ctx, timeout_s=0)
    assert str(exc.value).splitlines()[0].startswith(
        "PostgreSQL (Patroni) published 0 in-sync standby(s) within 0s, the plan says 1")


def test_a_plan_lists_the_read_and_waits_for_nothing(spec, progress, fake_layout):
    s = _distributed(spec)
    r = FakeRunner(dry_run=True)
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    assert stack_steps.wait_sync_standby(ctx) == "listed"
    assert any("get configmap postgresql-sync" in " ".join(p.argv) for p in r.planned_commands)


def test_a_plan_lists_the_identity_check_of_every_minio_server(spec, progress, fake_layout):
    s = _distributed(spec)
    r = FakeRunner(dry_run=True)
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    assert stack_steps.minio_serves_identities(ctx) == "listed"
    forwards = [" ".join(p.argv) for p in r.planned_commands if "port-forward" in p.argv]
    assert [f.split("pod/")[1].split()[0] for f in forwards] == [f"minio-{i}" for i in range(4)]
    assert not r.executed(r"delete")


def _identity_check(spec, progress, fake_layout, monkeypatch, answers):
    """up's MinIO identity step with faked port-forwards and bucket checks: ``answers``
    maps a pod to what its checks say in turn (None, or nothing left: it serves). Returns
    the step's note, the runner and the (access key, bucket) pairs asked."""
    import contextlib

    from ducklake_infra.provision import minio_identity, portforward
    monkeypatch.setattr(stack_steps.time, "sleep", lambda s: None)
    s = _distributed(spec)
    r = FakeRunner()
    r.on(r"get secret minio-(backend|query|maintenance)-user", stdout=json.dumps(
        {"data": {"secretKey": "c2VjcmV0LXZhbHVlLWZvci10ZXN0"}}))
    current, seen = [""], []

    @contextlib.contextmanager
    def forward(runner, cluster, ns, target, port, timeout=60):
        current[0] = target.split("/", 1)[1]
        yield type("PF", (), {"local_port": 1})()

    def check(host, key, secret, bucket, secure=False):
        seen.append((key, bucket))
        return answers[current[0]].pop(0) if answers.get(current[0]) else None
    monkeypatch.setattr(portforward, "PortForward", forward)
    monkeypatch.setattr(minio_identity, "bucket_check", check)
    ctx = stack_steps.Context(_kind(r, s), s, r, progress, _opts(fake_layout))
    return stack_steps.minio_serves_identities(ctx), r, seen


def test_a_refusing_server_is_restarted_through_the_runner(spec, progress, fake_layout,
                                                          monkeypatch):
    """The restart is a pod deletion and a wait for the StatefulSet (no other change);
    secrets are read as secrets (their values go to the Redactor)."""
    monkeypatch.setattr(stack_steps, "IDENTITY_ANSWER_S", 0)   # a refusal counts at once
    note, r, seen = _identity_check(spec, progress, fake_layout, monkeypatch,
                                    {"minio-2": ["AccessDenied"]})   # served after the restart
    assert note.endswith("restarted minio-2 (AccessDenied)")
    assert [c.argv[-3:] for c in r.executed(r"delete pod")] == [["pod", "minio-2", "--wait=true"]]
    assert r.executed(r"rollout status statefulset/minio")
    assert ("ducklake-backend", "raw") in seen and ("ducklake-query", "lake") in seen
    assert "secret-value-for-test" not in r.redactor("key secret-value-for-test")


def test_a_server_still_loading_its_users_is_waited_for_not_restarted(spec, progress, fake_layout,
                                                                     monkeypatch):
    """Right after `up` (or a restart) a server answers AccessDenied until it has loaded
    its users: found in CI, where `up` restarted a server twice and gave up. A refusal
    counts only when it lasts."""
    note, r, _ = _identity_check(spec, progress, fake_layout, monkeypatch,
                                 {"minio-1": ["AccessDenied"] * 3})
    assert note == "4 servers serve the stack's identities"
    assert not r.executed(r"delete pod")
