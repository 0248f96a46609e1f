"""Drift, the expected side: what the provisioner would install now, computed by the
same code it installs with (:mod:`ducklake_infra.provision.render`: ``image_refs``,
``backend_objects``, ``helm_upgrade_argv``) and from the values files of ``stack.yaml``
(chart defaults of a local chart underneath). The comparisons are in
:mod:`ducklake_infra.suites.drift`."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from ducklake_infra import yamlio
from ducklake_infra.provision.spec import ReleaseSpec, StackSpec
from ducklake_infra.suites.objects import containers, pod_spec


def release_of(spec: StackSpec, component: str) -> ReleaseSpec:
    name = {"minio": spec.minio.release, "postgresql": spec.postgresql.release}[component]
    return spec.releases[name]


def deep_merge(base: Any, over: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else is replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(over)


def chart_defaults(spec: StackSpec, rel: ReleaseSpec) -> dict:
    """The chart's own values.yaml when the chart is on disk (repo or bundle), else {}."""
    local = rel.chart.local
    path: Path | None = None
    if local and local.startswith("bundle:"):
        try:
            from ducklake_infra.provision.bundle import layout
            path = layout.layout().chart(local[len("bundle:"):]) / "values.yaml"
        except Exception:  # no bundle here: the values files alone
            path = None
    elif local:
        path = spec.root / local / "values.yaml"
    if path is None or not path.is_file():
        return {}
    try:
        return yamlio.load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def release_values(spec: StackSpec, rel: ReleaseSpec) -> dict:
    """Chart defaults overlaid with the release's values files from stack.yaml."""
    vals = chart_defaults(spec, rel)
    for f in rel.values:
        vals = deep_merge(vals, yamlio.load(Path(f).read_text(encoding="utf-8")) or {})
    return vals


def expected_images(spec: StackSpec, images: Mapping[str, str] | None = None) -> dict[str, str]:
    """Image key -> reference, exactly as ``ducklake-infra up`` resolves them."""
    from ducklake_infra.provision.render import Options, image_refs
    return image_refs(spec, Options(images=dict(images or {})))


def component_images(spec: StackSpec, component: str,
                     refs: Mapping[str, str]) -> dict[str, str]:
    """Chart value prefix (or ``container <name>``) -> expected reference."""
    if component == "backend":
        from ducklake_infra.provision.render import BACKEND_IMAGE_KEY
        return {f"container {spec.backend.container}": refs[BACKEND_IMAGE_KEY]}
    rel = release_of(spec, component)
    return {prefix: refs[key] for prefix, key in rel.images.items()}


def expected_backend(spec: StackSpec, image: str) -> dict[str, dict]:
    """The backend objects ``up`` applies (kind -> object)."""
    from ducklake_infra.provision.render import backend_objects
    return {o["kind"]: o for o in backend_objects(spec, image)}


def replicas_source(spec: StackSpec, component: str) -> str:
    """Where :func:`expected_replicas` takes the count from, as the drift message says it."""
    if component == "backend":
        return "stack.yaml " + ("distributed.backend.replicas" if spec.active_distributed
                                else "backend.replicas")
    if component == "minio" and spec.active_distributed:
        return "stack.yaml distributed.minio.servers"
    if component == "postgresql" and spec.active_distributed:
        return "stack.yaml distributed.postgresql.members"
    return ", ".join(Path(f).name for f in release_of(spec, component).values)


def expected_replicas(spec: StackSpec, component: str) -> int:
    if component == "backend":
        return spec.backend_replicas
    d = spec.active_distributed                     # up renders these counts from the spec
    if component == "minio" and d:
        return d.minio_servers
    if component == "postgresql" and d:
        return d.pg_members
    vals = release_values(spec, release_of(spec, component))
    r = vals.get("replicas", 1)
    # standalone MinIO and the single-node PostgreSQL chart run exactly one pod
    if component == "minio" and vals.get("mode", "standalone") == "standalone":
        return 1
    return r if isinstance(r, int) and not isinstance(r, bool) else 1


def expected_resources(spec: StackSpec, component: str) -> dict[str, dict]:
    """Container name (or ``*main*`` for the chart's main container) -> resources."""
    if component == "backend":
        dep = expected_backend(spec, "x")["Deployment"]
        ps = pod_spec(dep)
        return {c["name"]: c.get("resources") or {} for c in containers(ps, init=True)}
    vals = release_values(spec, release_of(spec, component))
    return {"*main*": vals.get("resources") or {}}


def release_spec_hash(spec: StackSpec, component: str, refs: Mapping[str, str]) -> str | None:
    """The ducklakeInfra.specHash ``up`` would store now (None: chart not on disk)."""
    from ducklake_infra.provision.render import Options, helm_upgrade_argv
    rel = release_of(spec, component)
    try:
        return helm_upgrade_argv(["helm"], spec, rel, refs, Options())[1]
    except Exception:  # local chart missing etc.: no fingerprint comparison
        return None
