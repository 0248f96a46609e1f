"""What the pure checks look at: Kubernetes objects plus Helm facts and logs.

The same :class:`Objects` is built from a live cluster (``ducklake_infra.suites.live.gather``)
or from ``helm template`` output / hand-written dicts (negative and unit
tests), so every check runs identically on both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping


from ducklake_infra import yamlio
from ducklake_infra.provision.guard import MIN_SECRET_LEN, secret_forms  # noqa: F401 (one definition)
from ducklake_infra.provision.kube import decode_secret  # noqa: F401 (one definition)

# Secret types that hold no credentials of the stack (and can be huge)
_NON_CREDENTIAL_SECRET_TYPES = ("helm.sh/release.v1", "kubernetes.io/service-account-token")


@dataclass
class Objects:
    items: list[dict] = field(default_factory=list)
    helm_releases: list[dict] | None = None        # `helm list -o json` rows (None: unknown)
    helm_values: dict[str, dict] = field(default_factory=dict)  # release -> user-supplied values
    logs: dict[str, str] = field(default_factory=dict)          # "ns/pod/container" -> text
    # (Kind, namespace) -> what the API server said when it refused to list them;
    # checks reading those objects become ERROR ("could not evaluate"), not FAIL
    forbidden: dict[tuple[str, str], str] = field(default_factory=dict)
    helm_error: str = ""   # why helm_releases is None, when it is
    namespace_objects: dict[str, dict] | None = None  # the stack's Namespace objects (None: not read)
    namespace_error: str = ""                   # why one of them is missing, when one is
    # namespace -> what these credentials could change there, or the error of the self
    # rules review (AUDIT-PRIV-001); None: not asked (runs that are not read-only audits)
    write_rules: dict[str, list[str] | Exception] | None = None

    def __post_init__(self):
        flat: list[dict] = []
        for it in self.items:
            if not it:
                continue
            if it.get("kind") == "List" or (it.get("kind", "").endswith("List") and "items" in it):
                flat.extend(x for x in it.get("items", []) if x)
            else:
                flat.append(it)
        self.items = flat

    # -- construction -----------------------------------------------------------------
    @classmethod
    def from_manifests(cls, text: str, namespace: str, **kw) -> "Objects":
        """Objects from rendered YAML (``helm template``); objects without a
        namespace get ``namespace`` (what helm install would do)."""
        items = [d for d in yamlio.load_all(text) if isinstance(d, dict) and d.get("kind")]
        for d in items:
            d.setdefault("metadata", {}).setdefault("namespace", namespace)
        return cls(items, **kw)

    def merged(self, other: "Objects") -> "Objects":
        return Objects(self.items + other.items,
                       None if self.helm_releases is None and other.helm_releases is None
                       else (self.helm_releases or []) + (other.helm_releases or []),
                       {**self.helm_values, **other.helm_values}, {**self.logs, **other.logs},
                       {**self.forbidden, **other.forbidden})

    # -- lookup -----------------------------------------------------------------------
    def all(self, kind: str, namespace: str | None = None) -> list[dict]:
        for (k, ns), why in self.forbidden.items():
            if k == kind and namespace in (None, ns):
                from ducklake_infra.suites.catalog import CheckError
                raise CheckError(f"could not evaluate: forbidden ({why})")
        return [o for o in self.items if o.get("kind") == kind
                and (namespace is None or o.get("metadata", {}).get("namespace") == namespace)]

    def get(self, kind: str, name: str, namespace: str) -> dict | None:
        for o in self.all(kind, namespace):
            if o.get("metadata", {}).get("name") == name:
                return o
        return None

    def namespaces(self) -> set[str]:
        return {o.get("metadata", {}).get("namespace") for o in self.items} - {None}

    def secret_data(self, name: str, namespace: str) -> dict[str, str] | None:
        """Decoded data of a Secret (None when the Secret is not among the objects)."""
        s = self.get("Secret", name, namespace)
        if s is None:
            return None
        return decode_secret(s)

    def secret_values(self, namespaces: Iterable[str] | None = None) -> set[str]:
        """Every credential value in the Secrets of ``namespaces`` (default: all)."""
        out: set[str] = set()
        ns = set(namespaces) if namespaces is not None else None
        for s in self.all("Secret"):
            if ns is not None and s.get("metadata", {}).get("namespace") not in ns:
                continue
            if s.get("type") in _NON_CREDENTIAL_SECRET_TYPES:
                continue
            for v in decode_secret(s).values():
                if v and len(v) >= MIN_SECRET_LEN:
                    out.add(v)
        return out

    def pods_of(self, workload: Mapping[str, Any]) -> list[dict]:
        """Pods selected by a Deployment/StatefulSet's matchLabels in its namespace."""
        ns = workload.get("metadata", {}).get("namespace")
        sel = workload.get("spec", {}).get("selector", {}).get("matchLabels") or {}
        if not sel:
            return []
        return [p for p in self.all("Pod", ns)
                if all(p.get("metadata", {}).get("labels", {}).get(k) == v for k, v in sel.items())]


# -- pod spec helpers ---------------------------------------------------------------------
def pod_spec(obj: Mapping[str, Any]) -> dict:
    """The pod spec of a Pod, Deployment, StatefulSet, DaemonSet, Job or CronJob."""
    kind = obj.get("kind")
    spec = obj.get("spec", {}) or {}
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {}) or {}
    return spec.get("template", {}).get("spec", {}) or {}


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet")


def containers(ps: Mapping[str, Any], init: bool = False) -> list[dict]:
    out = list(ps.get("containers") or [])
    if init:
        out += list(ps.get("initContainers") or [])
    return out


def name_of(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata", {})
    return f"{obj.get('kind')}/{md.get('namespace', '?')}/{md.get('name', '?')}"


# ---- quantities: the one parser (PVC sizes, requests and limits) ------------------------
_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9,
           "T": 10 ** 12, "P": 10 ** 15, "E": 10 ** 18, "Ki": 2 ** 10, "Mi": 2 ** 20,
           "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def quantity(q: Any) -> Decimal | None:
    """A Kubernetes quantity as a number ("100m" == "0.1", "1Gi" == "1024Mi")."""
    if q is None:
        return None
    m = _QTY.match(str(q).strip())
    if not m:
        return None
    try:
        return Decimal(m.group(1)) * Decimal(_SUFFIX[m.group(2) or ""])
    except InvalidOperation:
        return None


def same_quantity(a: Any, b: Any) -> bool:
    qa, qb = quantity(a), quantity(b)
    if qa is None or qb is None:
        return str(a) == str(b)
    return qa == qb
