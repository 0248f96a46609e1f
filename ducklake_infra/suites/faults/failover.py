"""Watching a PostgreSQL failover (distributed profile, Patroni): who is primary, who is
the in-sync standby, and, after the primary's pod is deleted, how long until another
member is labelled primary, sampled every 0.5 s (and whether two ever were at once)."""

from __future__ import annotations

import json
import threading
import time

from ducklake_infra.provision import kube


def primaries(kubectl, ns: str, selector: str) -> list[str]:
    """Live (not terminating) pods labelled role=primary."""
    res = kubectl("-n", ns, "get", "pods", "-l", f"{selector},role=primary", "-o", "json",
                  check=False, timeout=20)
    if res.returncode != 0:
        return []
    return [p["metadata"]["name"] for p in json.loads(res.stdout).get("items", [])
            if not p["metadata"].get("deletionTimestamp")]


def sync_standbys(kubectl, ns: str, scope: str) -> list[str]:
    """The members Patroni publishes as in-sync (ConfigMap <scope>-sync)."""
    res = kubectl("-n", ns, "get", "configmap", f"{scope}-sync", "-o", "json", check=False,
                  timeout=20)
    return kube.sync_standbys(json.loads(res.stdout)) if res.returncode == 0 else []


class Watch:
    """Started right after the old primary's deletion: samples the primaries until another
    member holds the role (or ``limit_s`` passes)."""

    def __init__(self, kubectl, ns: str, selector: str, old: str, limit_s: float = 90):
        self.kubectl, self.ns, self.selector, self.old, self.limit_s = kubectl, ns, selector, old, limit_s
        self.new: str | None = None
        self.after_s: float | None = None
        self.most = 0
        self._thread = threading.Thread(target=self._run, name="failover-watch", daemon=True)

    def start(self, since: float) -> "Watch":
        self.since = since
        self._thread.start()
        return self

    def _run(self) -> None:
        while time.time() - self.since < self.limit_s:
            now = primaries(self.kubectl, self.ns, self.selector)
            self.most = max(self.most, len(now))
            others = [p for p in now if p != self.old]
            if others and self.new is None:
                self.new, self.after_s = others[0], time.time() - self.since
            if self.new is not None and time.time() - self.since > self.after_s + 5:
                return       # a few more samples after the takeover: any second primary?
            time.sleep(0.5)

    def join(self) -> None:
        self._thread.join(self.limit_s + 30)
