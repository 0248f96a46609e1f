"""Draining a worker node (distributed profile, RES-DRAIN-001): which node, what of the
stack runs there, the drain itself in the background (``kubectl drain`` evicts through
the eviction API, so each PodDisruptionBudget is asked), and the uncordon that always
follows."""

from __future__ import annotations

import threading
import time

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.objects import Objects
from ducklake_infra.suites.svg import placement


def stack_pods_on(objs: Objects, spec: StackSpec, node: str) -> list[str]:
    """The stack's pods on ``node``, a Patroni member with its role: the report's picture's
    placement (one answer for both)."""
    return placement(objs, spec).get(node, [])


def node_of(objs: Objects, namespace: str, pod: str) -> str | None:
    p = objs.get("Pod", pod, namespace)
    return ((p or {}).get("spec") or {}).get("nodeName")


class Drain:
    """``kubectl drain`` of one node in a thread: started mid-stream, joined after. The
    drain waits until every evicted pod is gone (``--timeout`` bounds it); DaemonSets stay,
    and emptyDir data goes with its pod (the members' run directory, tmpfs)."""

    def __init__(self, kubectl, node: str, timeout_s: float):
        self.kubectl, self.node, self.timeout_s = kubectl, node, timeout_s
        self.seconds: float | None = None
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="drain", daemon=True)

    def start(self) -> "Drain":
        self._thread.start()
        return self

    def _run(self) -> None:
        t0 = time.monotonic()
        res = self.kubectl("drain", self.node, "--ignore-daemonsets", "--delete-emptydir-data",
                           f"--timeout={int(self.timeout_s)}s", check=False,
                           timeout=self.timeout_s + 30)
        if res.returncode == 0:
            self.seconds = time.monotonic() - t0
        else:
            last = (res.stderr or res.stdout or "").strip().splitlines()[-1:] or ["?"]
            self.error = f"exit {res.returncode}: {last[0][:300]}"

    def join(self) -> None:
        self._thread.join(self.timeout_s + 60)

    def uncordon(self) -> None:
        self.kubectl("uncordon", self.node, check=False, timeout=60)
