"""Read-only mode is enforced in the runner, before any command starts."""

import pytest

from provision.runner import ReadOnlyViolation, Runner

ALLOWED = [
    ["kubectl", "--kubeconfig", "k", "--context", "prod", "get", "pods", "-A"],
    ["kubectl", "-n", "storage", "logs", "minio-0"],
    ["kubectl", "config", "get-contexts", "-o", "name"],
    ["kubectl", "auth", "can-i", "--list"],
    ["helm", "--kube-context", "prod", "list", "-A"],
    ["helm", "get", "values", "minio", "-n", "storage"],
]
REFUSED = [
    ["kubectl", "--context", "prod", "apply", "-f", "-"],
    ["kubectl", "delete", "ns", "storage"],
    ["kubectl", "-n", "get", "exec", "pod", "--", "sh"],  # '-n get' is a namespace named get
    ["kubectl", "port-forward", "svc/minio", "9000"],
    ["kubectl", "config", "use-context", "prod"],
    ["kubectl", "auth", "reconcile", "-f", "x"],
    ["helm", "upgrade", "--install", "minio", "chart"],
    ["helm", "uninstall", "minio"],
    ["kind", "delete", "cluster"],
    ["docker", "run", "x"],
]


@pytest.mark.parametrize("argv", ALLOWED, ids=lambda a: " ".join(a[:4]))
def test_reads_are_allowed(argv):
    from provision.readonly import check_command
    check_command(argv)


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: " ".join(a[:4]))
def test_writes_are_refused_before_running(argv, tmp_path):
    r = Runner(readonly=True, log_path=tmp_path / "log")
    with pytest.raises(ReadOnlyViolation):
        r.run(argv)
    assert not (tmp_path / "log").exists()  # nothing ran
