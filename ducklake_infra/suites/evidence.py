"""The evidence bundle of an audit run: ``<report-dir>/<run-id>/evidence.json``.

What was inspected, where and when: every object read (kind, namespace, name,
uid, resourceVersion, generation; a Pod also each container's image reference and the
imageID its runtime reports: what ran, SUPPLY-PIN-001), per workload container the
image, the digest it runs and the SBOM that matched it (``images``, SUPPLY-SBOM-001), the
Helm releases, the cluster's server
version, the context, whether the run was ``--readonly``, the per-control
statuses, and a sha256 over the canonical JSON of all of that (stored in the
bundle as ``sha256``). ``evidence.json.sha256`` next to it is the usual
``sha256sum`` line of the file itself (``sha256sum -c`` verifies it).

Secrets appear ONLY as key names with value lengths, never values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from ducklake_infra.provision.guard import redact_tree
from ducklake_infra.suites.objects import containers

BUNDLE_NAME = "evidence.json"
FORMAT = "ducklake-infra/evidence/v1"


def _len_b64(v: Any) -> int:
    try:
        return len(base64.b64decode(v or "", validate=False))
    except (binascii.Error, ValueError):
        return 0


def object_record(obj: Mapping[str, Any]) -> dict:
    """Identity of one object; a Secret also by key names and value lengths."""
    md = obj.get("metadata") or {}
    rec = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
           "namespace": md.get("namespace"), "name": md.get("name"), "uid": md.get("uid"),
           "resourceVersion": md.get("resourceVersion"), "generation": md.get("generation")}
    if obj.get("kind") == "Secret":
        keys = {k: _len_b64(v) for k, v in (obj.get("data") or {}).items()}
        for k, v in (obj.get("stringData") or {}).items():
            keys[k] = len(str(v or "").encode())
        rec["type"] = obj.get("type")
        rec["keys"] = {k: {"length": n} for k, n in sorted(keys.items())}
    if obj.get("kind") == "Pod":
        st = obj.get("status") or {}
        ids = {cs.get("name"): cs.get("imageID") or None for cs in
               (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or [])}
        rec["containers"] = [{"name": c.get("name"), "image": c.get("image"),
                              "imageID": ids.get(c.get("name"))}
                             for c in containers(obj.get("spec") or {}, init=True)]
    return rec


def _key(rec: Mapping) -> tuple:
    return (rec.get("kind") or "", rec.get("namespace") or "", rec.get("name") or "",
            rec.get("uid") or "")


@dataclass
class Recorder:
    """Everything a session inspected (the plugin keeps one per session)."""

    objects: dict[tuple, dict] = field(default_factory=dict)
    helm_releases: dict[tuple, dict] = field(default_factory=dict)
    context: str | None = None
    server_version: dict | None = None
    provenance: list[dict] = field(default_factory=list)   # SUPPLY-SBOM-001's rows
    started: str = field(default_factory=lambda: utc_now())

    def record(self, *objs: Any) -> None:
        """Objects (dicts, Lists or ``ducklake_infra.suites.objects.Objects``) that a check read."""
        for o in objs:
            if o is None:
                continue
            items = getattr(o, "items", None)
            if isinstance(items, list):          # suites.objects.Objects
                self.record(*items)
                for r in getattr(o, "helm_releases", None) or []:
                    self.helm_releases[(r.get("namespace"), r.get("name"))] = {
                        k: r.get(k) for k in ("name", "namespace", "chart", "app_version",
                                              "revision", "status", "updated")}
                continue
            if isinstance(o, Mapping) and isinstance(o.get("items"), list):   # a List
                self.record(*o["items"])
                continue
            if isinstance(o, Mapping) and o.get("kind"):
                rec = object_record(o)
                self.objects[_key(rec)] = rec

    @property
    def empty(self) -> bool:
        return not self.objects and self.context is None


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat() \
        .replace("+00:00", "Z")


def run_id_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def canonical(doc: Any) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode("utf-8")


def bundle_hash(bundle: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON of everything but the ``sha256`` field."""
    return hashlib.sha256(canonical({k: v for k, v in bundle.items() if k != "sha256"})) \
        .hexdigest()


def build(rec: Recorder, *, readonly: bool, run_id: str, cluster_option: str | None = None,
          stack: str | None = None, controls: Mapping[str, str] | None = None,
          redact: Callable[[str], str] | None = None, now: str | None = None) -> dict:
    objects = sorted(rec.objects.values(), key=lambda r: (r["kind"] or "", r["namespace"] or "",
                                                          r["name"] or "", r["uid"] or ""))
    bundle = {
        "format": FORMAT,
        "run_id": run_id,
        "time": now or utc_now(),
        "started": rec.started,
        "context": rec.context or cluster_option,
        "cluster_option": cluster_option,
        "readonly": bool(readonly),
        "cluster_version": rec.server_version,
        "stack": stack,
        "objects": objects,
        "object_count": len(objects),
        "helm_releases": sorted(rec.helm_releases.values(),
                                key=lambda r: (r.get("namespace") or "", r.get("name") or "")),
        "controls": dict(sorted((controls or {}).items())),
        "images": sorted(rec.provenance, key=lambda r: (r.get("workload") or "",
                                                        r.get("digest") or "")),
    }
    if redact is not None:   # belt and braces: nothing here is a value, but never leak one
        bundle = redact_tree(bundle, redact)
    bundle["sha256"] = bundle_hash(bundle)
    return bundle


def write(report_dir: Path, bundle: Mapping[str, Any]) -> Path:
    """``<report_dir>/<run_id>/evidence.json`` and ``evidence.json.sha256``."""
    base = Path(report_dir) / bundle["run_id"]
    d, n = base, 1
    while (d / BUNDLE_NAME).exists():     # two runs in one second: never overwrite
        n += 1
        d = base.with_name(f"{base.name}-{n}")
    d.mkdir(parents=True, exist_ok=True)
    path = d / BUNDLE_NAME
    data = json.dumps(bundle, indent=2, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
    path.write_bytes(data)
    (d / f"{BUNDLE_NAME}.sha256").write_text(
        f"{hashlib.sha256(data).hexdigest()}  {BUNDLE_NAME}\n", encoding="utf-8")
    return path


def verify(path: Path) -> list[str]:
    """Problems with a written bundle ([] when both hashes verify)."""
    path = Path(path)
    problems = []
    data = path.read_bytes()
    bundle = json.loads(data)
    if bundle.get("sha256") != bundle_hash(bundle):
        problems.append("bundle sha256 does not match its content")
    side = path.with_name(path.name + ".sha256")
    if not side.is_file():
        problems.append(f"no {side.name}")
    else:
        want = side.read_text(encoding="utf-8").split()[0]
        if want != hashlib.sha256(data).hexdigest():
            problems.append(f"{side.name} does not match {path.name}")
    return problems


def server_version(kubectl) -> dict | None:
    """``kubectl version -o json`` serverVersion (a read; None when unavailable)."""
    try:
        res = kubectl("version", "-o", "json", timeout=60, check=False)
        return (json.loads(res.stdout or "{}") or {}).get("serverVersion")
    except Exception:
        return None


def controls_of(results: Iterable[Any]) -> dict[str, str]:
    return {r.control.id: r.status for r in results}
