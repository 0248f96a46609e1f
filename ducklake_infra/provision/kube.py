"""Small kubectl helpers shared by the stack provisioner: Secret manifests and
diagnostics for failed waits. Argument lists only; the cluster gives the
``kubectl --kubeconfig ... --context ...`` prefix."""

from __future__ import annotations

import base64
import binascii
import json
import secrets as _secrets
import string
from typing import Mapping, Sequence

from ducklake_infra.provision.runner import Runner, tail

MANAGED_BY = {"app.kubernetes.io/managed-by": "ducklake-infra"}
_ALPHABET = string.ascii_letters + string.digits


def random_password(length: int = 40) -> str:
    """Letters and digits only: safe in the charts' shell scripts and URLs."""
    return "".join(_secrets.choice(_ALPHABET) for _ in range(length))


def secret_manifest(name: str, namespace: str, data: Mapping[str, str],
                    labels: Mapping[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {**MANAGED_BY, **(labels or {})}},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


# Pod Security Admission: every stack namespace enforces the restricted profile
PSS_RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
                  "pod-security.kubernetes.io/enforce-version": "latest",
                  "pod-security.kubernetes.io/warn": "restricted",
                  "pod-security.kubernetes.io/audit": "restricted"}


def namespace_manifest(name: str, managed: bool = True) -> dict:
    """A stack namespace: restricted Pod Security; MANAGED_BY only when we create it
    (down --purge deletes only namespaces carrying it)."""
    labels = {**(MANAGED_BY if managed else {}), **PSS_RESTRICTED}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def as_list(objects: Sequence[dict]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})


def decode_secret(secret: Mapping) -> dict[str, str]:
    """A Secret's values as text: ``data`` (base64; an undecodable value reads as "") and
    ``stringData`` (as written), the latter winning as the API server does."""
    out: dict[str, str] = {}
    for k, v in (secret.get("data") or {}).items():
        try:
            out[k] = base64.b64decode(v or "", validate=True).decode("utf-8", errors="replace")
        except (binascii.Error, ValueError):
            out[k] = ""
    for k, v in (secret.get("stringData") or {}).items():
        out[k] = "" if v is None else str(v)
    return out


def sync_standbys(configmap: Mapping | None) -> list[str]:
    """The members Patroni publishes as in-sync standbys: annotation ``sync_standby``
    (comma list) of its ``<scope>-sync`` ConfigMap (Kubernetes DCS, ConfigMap mode)."""
    ann = ((configmap or {}).get("metadata") or {}).get("annotations") or {}
    return [s for s in (ann.get("sync_standby") or "").split(",") if s]


def diagnose(runner: Runner, kubectl: Sequence[str], namespace: str,
             selector: str | None = None) -> str:
    """Pods, recent warning events and log tails of unready pods (never raises)."""
    sel = ["-l", selector] if selector else []
    out: list[str] = []

    def run(argv: list[str]) -> str:
        try:
            res = runner.run(argv, timeout=30, check=False, mutating=False)
            return (res.stdout or res.stderr).strip()
        except Exception as exc:  # diagnostics must not hide the real error
            return f"(could not run: {exc})"

    out.append(f"pods in {namespace}:\n" + run([*kubectl, "get", "pods", "-n", namespace,
                                                 "-o", "wide", *sel]))
    out.append("warning events:\n" + tail(run([*kubectl, "get", "events", "-n", namespace,
                                               "--field-selector", "type=Warning",
                                               "--sort-by", ".lastTimestamp"]), 10))
    raw = run([*kubectl, "get", "pods", "-n", namespace, "-o", "json", *sel])
    try:
        pods = json.loads(raw).get("items", [])
    except ValueError:
        pods = []
    for pod in pods:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        if statuses and all(s.get("ready") for s in statuses):
            continue
        name = pod["metadata"]["name"]
        out.append(f"last log lines of {name}:\n" + tail(run(
            [*kubectl, "logs", "-n", namespace, name, "--all-containers", "--tail", "20"]), 20))
    return "\n".join(out)
