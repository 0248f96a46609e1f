"""What ``up`` installs, computed without touching anything: image references, the
backend's content-hash tag, Helm arguments and values hashes, MinIO policies, the
backend's ConfigMap, Secrets wiring and manifests. Pure functions of the stack spec (and
options), used by the provisioner (stack.py) and by the drift checks alike."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from ducklake_infra import yamlio
from ducklake_infra.provision import oci
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.spec import BUNDLE_PREFIX, ReleaseSpec, StackSpec


CACERT = "/etc/ssl/certs/ca-certificates.crt"
HASH_VALUE = "ducklakeInfra.specHash"
BACKEND_IMAGE_KEY = "backend"
_HASH_SKIP = {"__pycache__", ".pytest_cache", ".venv", ".mypy_cache", ".ruff_cache"}


@dataclass
class Options:
    layout: layout.Layout = field(default_factory=layout.layout)
    images: Mapping[str, str] = field(default_factory=dict)   # key -> image ref overrides
    online: bool = False          # install charts from their repo instead of local copies
    build_timeout: float = 1800
    registry: oci.Registry | None = None   # push there, install by digest (real clusters)


def image_refs(spec: StackSpec, opts: Options) -> dict[str, str]:
    """Every stack image resolved (overrides applied), the backend's included."""
    refs = {k: spec.image(k, opts.images) for k in spec.images}
    refs[BACKEND_IMAGE_KEY] = opts.images.get(BACKEND_IMAGE_KEY) or \
        f"{spec.backend.image.repository}:{backend_image_tag(spec)}"
    return refs


def content_hash(paths: Sequence[Path], root: Path) -> str:
    """sha256 over the names and bytes of files under ``paths`` (sorted, caches skipped)."""
    h = hashlib.sha256()
    for p in paths:
        if not p.exists():
            h.update(f"missing:{p.relative_to(root)}\0".encode())
            continue
        files = [p] if p.is_file() else sorted(
            f for f in p.rglob("*")
            if f.is_file() and not (_HASH_SKIP & set(f.relative_to(p).parts))
            and f.suffix not in (".pyc", ".pyo"))
        for f in files:
            h.update(f"{f.relative_to(root)}\0".encode())
            h.update(f.read_bytes())
            h.update(b"\0")
    return h.hexdigest()


def backend_image_tag(spec: StackSpec) -> str:
    return content_hash(spec.backend.image.hash_paths, spec.root)[:12]


def minio_query_policy(spec: StackSpec) -> dict:
    """The query user's policy: list and read the lake bucket, nothing else."""
    lake = spec.lake_bucket
    return {"name": spec.minio.query_user.policy, "statements": [
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{lake}"],
         "actions": ["s3:GetBucketLocation", "s3:ListBucket"]},
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{lake}/*"], "actions": ["s3:GetObject"]},
    ]}


def minio_backend_policy(spec: StackSpec) -> dict:
    """The backend user's (the writer's) policy, in the chart's ``policies[]`` form: raw +
    lake only, and no delete: DuckLake's rollback deletes the files of a transaction whose
    COMMIT failed, and a COMMIT cut by a failover may have committed (issue 16's
    ambiguous commit); without delete the files stay (an aborted multipart upload is not
    an object, so aborting stays allowed)."""
    buckets = [spec.raw_bucket, spec.lake_bucket]
    return {"name": spec.minio.backend_user.policy, "statements": [
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{b}" for b in buckets],
         "actions": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"]},
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{b}/*" for b in buckets],
         "actions": ["s3:GetObject", "s3:PutObject",
                     "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]},
    ]}


def minio_maintenance_policy(spec: StackSpec) -> dict:
    """Maintenance's policy: list the lake bucket and delete in it (cleanup of files no
    snapshot needs, and of orphans), nothing else: the only identity that deletes."""
    lake = spec.lake_bucket
    return {"name": spec.minio.maintenance_user.policy, "statements": [
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{lake}"],
         "actions": ["s3:GetBucketLocation", "s3:ListBucket"]},
        {"effect": "Allow", "resources": [f"arn:aws:s3:::{lake}/*"], "actions": ["s3:DeleteObject"]},
    ]}


def minio_policies(spec: StackSpec) -> list[dict]:
    """Every policy the release installs, each attached to one user of the spec."""
    return [minio_backend_policy(spec), minio_query_policy(spec), minio_maintenance_policy(spec)]


def _image_sets(rel: ReleaseSpec, refs: Mapping[str, str]) -> list[str]:
    out = []
    for prefix, key in rel.images.items():
        repo, tag = oci.helm_image_parts(refs[key])   # digest refs render as repo@sha256:...
        out += ["--set-string", f"{prefix}.repository={repo}", "--set-string", f"{prefix}.tag={tag}"]
    return out


def minio_overrides(spec: StackSpec, refs: Mapping[str, str]) -> list[str]:
    m = spec.minio
    rel = spec.releases[m.release]
    pvc = m.pvcs[0]
    user = m.backend_user
    buckets = [{"name": b, "policy": "none", "purge": False} for b in (spec.raw_bucket,
                                                                        spec.lake_bucket)]
    users = [{"accessKey": u.access_key, "existingSecret": u.secret.name,
              "existingSecretKey": u.secret.keys[0], "policy": u.policy}
             for u in (user, m.query_user, m.maintenance_user)]
    return [
        "--set-string", f"fullnameOverride={m.fullname}",
        "--set-string", f"existingSecret={m.root_secret.name}",
        *_image_sets(rel, refs),
        "--set-string", f"persistence.size={pvc.size}",
        "--set-string", f"persistence.storageClass={pvc.storage_class}",
        "--set", f"minioAPIPort={m.api_port}", "--set", f"service.port={m.api_port}",
        "--set", f"minioConsolePort={m.console_port}",
        "--set", f"consoleService.port={m.console_port}",
        "--set-json", f"buckets={json.dumps(buckets, separators=(',', ':'))}",
        "--set-json", f"policies={json.dumps(minio_policies(spec), separators=(',', ':'))}",
        "--set-json", f"users={json.dumps(users, separators=(',', ':'))}",
        *(["--set-json", f"imagePullSecrets={json.dumps([{'name': spec.image_pull_secret}])}"]
          if spec.image_pull_secret else []),
        *(minio_distributed_overrides(spec) if spec.profile == "distributed" else []),
    ]


CONTROL_PLANE_TAINT = "node-role.kubernetes.io/control-plane"


def minio_distributed_overrides(spec: StackSpec) -> list[str]:
    """MinIO in distributed mode through the same chart (docs/design/distributed-profile.md
    section 2): one StatefulSet of ``servers`` pods, one drive (claim) each, one erasure set
    with ``parity`` parity drives (EC:2 on 4: reads survive 2 lost servers, writes 1), at
    most one server per node (required anti-affinity: a node's loss costs one drive), and a
    PodDisruptionBudget that lets a drain take one server at a time. When there are fewer
    workers than servers (kind: 1 control plane + 3 workers, 4 servers), MinIO alone may
    run on the control plane."""
    d, m = spec.distributed, spec.minio
    assert d is not None
    one_per_node = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
        "labelSelector": {"matchLabels": {"app": "minio", "release": m.release}},
        "topologyKey": "kubernetes.io/hostname"}]}}
    out = ["--set-string", "mode=distributed", "--set", f"replicas={d.minio_servers}",
           "--set", "pools=1", "--set", "drivesPerNode=1",
           "--set-string", f"environment.MINIO_STORAGE_CLASS_STANDARD=EC:{d.minio_parity}",
           "--set", "podDisruptionBudget.enabled=true",
           "--set", "podDisruptionBudget.maxUnavailable=1",
           "--set-json", f"affinity={json.dumps(one_per_node, separators=(',', ':'))}"]
    if d.minio_servers > d.workers:
        tolerate = [{"key": CONTROL_PLANE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]
        out += ["--set-json", f"tolerations={json.dumps(tolerate, separators=(',', ':'))}"]
    return out


def postgres_overrides(spec: StackSpec, refs: Mapping[str, str]) -> list[str]:
    p = spec.postgresql
    rel = spec.releases[p.release]
    pvc = p.pvcs[0]
    cat = p.catalog
    return [
        "--set-string", f"fullnameOverride={p.fullname}",
        *_image_sets(rel, refs),
        "--set-string", f"auth.secretName={p.superuser_secret.name}",
        "--set-string", f"auth.passwordKey={p.superuser_secret.keys[0]}",
        "--set-string", f"catalog.database={cat.database}",
        "--set-string", f"catalog.owner={cat.owner}",
        "--set-string", f"catalog.existingSecret={cat.secret.name}",
        "--set-string", f"catalog.passwordKey={cat.secret.keys[-1]}",
        "--set-string", f"catalog.reader.role={cat.reader.role}",
        "--set-string", f"catalog.reader.statementTimeout={cat.reader.statement_timeout}",
        "--set-string", f"catalog.reader.existingSecret={cat.reader.secret.name}",
        "--set-string", f"catalog.reader.passwordKey={cat.reader.secret.keys[1]}",
        "--set", f"service.port={p.port}",
        "--set-string", f"persistence.size={pvc.size}",
        "--set-string", f"persistence.storageClass={pvc.storage_class}",
    ]


def postgresql_distributed_overrides(spec: StackSpec) -> list[str]:
    """PostgreSQL replicated with Patroni through the same chart (``ha.*``; docs/design/
    distributed-profile.md section 3): ``members`` pods, one per node, a synchronous
    standby count and strict mode from the spec, a PodDisruptionBudget of one.

    Needs the image ``bundle:postgresql-ha`` (Patroni; ``bundle build --with
    postgresql-ha``), which stack.distributed.yaml names for PostgreSQL."""
    d = spec.distributed
    assert d is not None
    return ["--set", "ha.enabled=true", "--set", f"ha.members={d.pg_members}",
            "--set", f"ha.synchronousNodeCount={d.pg_sync_count}",
            "--set", f"ha.synchronousModeStrict={'true' if d.pg_strict else 'false'}",
            "--set", "ha.pdb.maxUnavailable=1", "--set-string", "ha.antiAffinity=required"]


def release_overrides(spec: StackSpec, rel: ReleaseSpec, refs: Mapping[str, str]) -> list[str]:
    if rel.name == spec.minio.release:
        return minio_overrides(spec, refs)
    if rel.name == spec.postgresql.release:
        return postgres_overrides(spec, refs) + (
            postgresql_distributed_overrides(spec) if spec.profile == "distributed" else [])
    return _image_sets(rel, refs)


def chart_source(spec: StackSpec, rel: ReleaseSpec, opts: Options) -> tuple[list[str], Path | None]:
    """Helm chart arguments (``<path>`` or ``<name> --repo URL --version V``) and the local dir."""
    c = rel.chart
    local: Path | None = None
    if c.local:
        local = opts.layout.chart(c.local[len(BUNDLE_PREFIX):]) if c.local.startswith(BUNDLE_PREFIX) \
            else spec.root / c.local
    if c.repo and (opts.online or local is None):
        return [c.name, "--repo", c.repo, "--version", c.version], None
    assert local is not None  # the spec requires repo or local
    return [str(local)], local


def check_charts(spec: StackSpec, opts: Options) -> None:
    """Fail early, with what to do, when a local chart is missing."""
    for rel in spec.releases.values():
        _, local = chart_source(spec, rel, opts)
        if local is not None and not (local / "Chart.yaml").is_file():
            hint = (f"; or pass --online to install {rel.chart.name} {rel.chart.version} "
                    f"from {rel.chart.repo}") if rel.chart.repo else ""
            raise DucklakeInfraError(f"release {rel.name}: no chart at {local} "
                                     f"(run: ducklake-infra bundle build{hint})")


def release_hash(spec: StackSpec, rel: ReleaseSpec, chart_args: Sequence[str],
                 local: Path | None, overrides: Sequence[str]) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([rel.chart.name, rel.chart.version, list(chart_args[1:]),
                         list(overrides)]).encode())
    if local is not None:
        h.update(content_hash([local], local.parent).encode())
    for f in rel.values:
        h.update(f.read_bytes())
    return h.hexdigest()[:32]


def helm_upgrade_argv(helm: Sequence[str], spec: StackSpec, rel: ReleaseSpec,
                      refs: Mapping[str, str], opts: Options) -> tuple[list[str], str]:
    chart_args, local = chart_source(spec, rel, opts)
    overrides = release_overrides(spec, rel, refs)
    digest = release_hash(spec, rel, chart_args, local, overrides)
    argv = [*helm, "upgrade", "--install", rel.name, *chart_args, "--namespace", rel.namespace]
    for f in rel.values:
        argv += ["--values", str(f)]
    argv += [*overrides, "--set-string", f"{HASH_VALUE}={digest}",
             "--wait", "--timeout", f"{rel.timeout}s"]
    return argv, digest


def backend_config(spec: StackSpec) -> dict[str, str]:
    """The backend ConfigMap's data: endpoints and bucket names, never credentials."""
    p, m = spec.postgresql, spec.minio
    servers = {"DUCKLAKE_MINIO_SERVERS": ",".join(spec.minio_server_hosts)} \
        if spec.minio_server_hosts else {}          # GET /storage/health asks each one
    return {
        "DUCKLAKE_PG_HOST": p.host,
        "DUCKLAKE_PG_PORT": str(p.port),
        "DUCKLAKE_PG_DB": p.catalog.database,
        "DUCKLAKE_S3_ENDPOINT": m.endpoint,
        "DUCKLAKE_S3_REGION": m.region,
        "DUCKLAKE_S3_USE_SSL": "true" if m.use_ssl else "false",
        "DUCKLAKE_RAW_BUCKET": spec.raw_bucket,
        "DUCKLAKE_LAKE_BUCKET": spec.lake_bucket,
        "DUCKLAKE_MAINTENANCE_INTERVAL_S": str(spec.backend.maintenance_interval),
        "DUCKLAKE_MAINTENANCE_KEEP_S": str(spec.backend.maintenance_keep),
        **servers,
    }


def backend_secret_env(spec: StackSpec) -> dict[str, tuple[str, str]]:
    """Env var -> (Secret name, key) for the backend's credentials."""
    pg, s3, tok = spec.backend.postgres_secret, spec.backend.s3_secret, spec.backend.token_secret
    qpg, qs3 = spec.backend.query_postgres_secret, spec.backend.query_s3_secret
    ms3 = spec.backend.maintenance_s3_secret
    return {"DUCKLAKE_PG_USER": (pg.name, pg.keys[0]),
            "DUCKLAKE_PG_PASSWORD": (pg.name, pg.keys[1]),
            "DUCKLAKE_S3_ACCESS_KEY": (s3.name, s3.keys[0]),
            "DUCKLAKE_S3_SECRET_KEY": (s3.name, s3.keys[1]),
            "DUCKLAKE_API_TOKEN": (tok.name, tok.keys[0]),
            "DUCKLAKE_QUERY_PG_USER": (qpg.name, qpg.keys[0]),
            "DUCKLAKE_QUERY_PG_PASSWORD": (qpg.name, qpg.keys[1]),
            "DUCKLAKE_QUERY_S3_ACCESS_KEY": (qs3.name, qs3.keys[0]),
            "DUCKLAKE_QUERY_S3_SECRET_KEY": (qs3.name, qs3.keys[1]),
            "DUCKLAKE_MAINTENANCE_S3_ACCESS_KEY": (ms3.name, ms3.keys[0]),
            "DUCKLAKE_MAINTENANCE_S3_SECRET_KEY": (ms3.name, ms3.keys[1])}


def backend_objects(spec: StackSpec, image: str) -> list[dict]:
    """k8s/*.yaml with every name, namespace, port and the image set from the spec."""
    b = spec.backend
    objs: list[dict] = []
    for f in b.manifests:
        for doc in yamlio.load_all(f.read_text()):
            if doc:
                objs.append(copy.deepcopy(doc))
    for o in objs:
        o.setdefault("metadata", {})["namespace"] = b.namespace
        kind = o.get("kind")
        if kind == "ConfigMap":
            o["metadata"]["name"] = b.configmap
            o["data"] = backend_config(spec)
        elif kind == "Service":
            o["metadata"]["name"] = b.service.name
            o["spec"]["type"] = b.service.type
            o["spec"]["ports"][0]["port"] = b.service.ports[0]
        elif kind == "Deployment":
            o["metadata"]["name"] = b.deployment
            o["spec"]["replicas"] = spec.backend_replicas
            pod = o["spec"]["template"]["spec"]
            c = pod["containers"][0]
            c["name"] = b.container
            c["image"] = image
            c["ports"][0]["containerPort"] = b.port
            c["envFrom"] = [{"configMapRef": {"name": b.configmap}}]
            wanted = backend_secret_env(spec)
            env = [e for e in c.get("env", []) if e["name"] not in wanted]
            env += [{"name": n, "valueFrom": {"secretKeyRef": {"name": s, "key": k}}}
                    for n, (s, k) in wanted.items()]
            c["env"] = env
            if spec.image_pull_secret:
                pod["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
            c["livenessProbe"]["httpGet"]["path"] = b.liveness_path
            c["readinessProbe"]["httpGet"]["path"] = b.readiness_path
            if "startupProbe" in c:
                c["startupProbe"]["httpGet"]["path"] = b.liveness_path
    if spec.active_distributed:
        objs += backend_distributed(spec, objs)
    return objs


def backend_distributed(spec: StackSpec, objs: list[dict]) -> list[dict]:
    """The distributed profile's backend (docs/design/distributed-profile.md section 4):
    its replicas spread over nodes (at most one more on any node than on another, never
    placed against that: DoNotSchedule; cordoned and tainted nodes do not count), and a
    PodDisruptionBudget that keeps one serving through a drain. Sets the spread on the
    Deployment in ``objs``; returns the new objects (the budget)."""
    b = spec.backend
    dep = next(o for o in objs if o.get("kind") == "Deployment")
    selector = dep["spec"]["selector"]["matchLabels"]
    dep["spec"]["template"]["spec"]["topologySpreadConstraints"] = [{
        "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "nodeTaintsPolicy": "Honor",
        "labelSelector": {"matchLabels": dict(selector)}}]
    return [{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
             "metadata": {"name": b.deployment, "namespace": b.namespace,
                          "labels": dict(dep["metadata"].get("labels") or {})},
             "spec": {"minAvailable": 1, "selector": {"matchLabels": dict(selector)}}}]
