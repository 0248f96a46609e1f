"""The stack spec (``stack.yaml``): loaded and validated into dataclasses.

The provisioner installs from it and the suites audit against it, so every name
of the stack lives in that one file. Malformed files fail with one line naming
the file and the dotted path, e.g.
``stack.yaml: releases.minio.chart.version: expected a string``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from provision.errors import DucklakeInfraError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = REPO_ROOT / "stack.yaml"
BUNDLE_PREFIX = "bundle:"
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")


class SpecError(DucklakeInfraError):
    """The stack spec is malformed."""


# ---- dataclasses ---------------------------------------------------------------
@dataclass(frozen=True)
class SecretSpec:
    name: str
    namespace: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    namespace: str
    type: str
    ports: tuple[int, ...]


@dataclass(frozen=True)
class PvcSpec:
    name: str
    namespace: str
    size: str
    storage_class: str


@dataclass(frozen=True)
class ChartSpec:
    name: str
    version: str
    repo: str | None = None
    local: str | None = None      # "bundle:<name>" or a path relative to the spec file


@dataclass(frozen=True)
class ReleaseSpec:
    key: str
    name: str
    namespace: str
    chart: ChartSpec
    values: tuple[Path, ...]
    images: Mapping[str, str]     # chart value prefix -> image key
    timeout: int


@dataclass(frozen=True)
class MinioUserSpec:
    access_key: str
    policy: str
    secret: SecretSpec


@dataclass(frozen=True)
class MinioSpec:
    release: str
    fullname: str
    api_port: int
    console_port: int
    region: str
    use_ssl: bool
    root_secret: SecretSpec
    backend_user: MinioUserSpec
    services: tuple[ServiceSpec, ...]
    pvcs: tuple[PvcSpec, ...]
    namespace: str

    @property
    def host(self) -> str:
        return f"{self.fullname}.{self.namespace}.svc.cluster.local"

    @property
    def endpoint(self) -> str:
        """host:port, as DuckDB's S3 secret wants it."""
        return f"{self.host}:{self.api_port}"


@dataclass(frozen=True)
class CatalogSpec:
    database: str
    owner: str
    secret: SecretSpec


@dataclass(frozen=True)
class PostgresSpec:
    release: str
    fullname: str
    port: int
    superuser_secret: SecretSpec
    catalog: CatalogSpec
    services: tuple[ServiceSpec, ...]
    pvcs: tuple[PvcSpec, ...]
    namespace: str

    @property
    def host(self) -> str:
        return f"{self.fullname}.{self.namespace}.svc.cluster.local"


@dataclass(frozen=True)
class BackendImageSpec:
    repository: str
    dockerfile: Path
    context: Path
    hash_paths: tuple[Path, ...]


@dataclass(frozen=True)
class BackendSpec:
    namespace: str
    deployment: str
    container: str
    replicas: int
    port: int
    liveness_path: str
    readiness_path: str
    service: ServiceSpec
    configmap: str
    postgres_secret: SecretSpec
    s3_secret: SecretSpec
    image: BackendImageSpec
    manifests: tuple[Path, ...]
    rollout_timeout: int


@dataclass(frozen=True)
class StackSpec:
    path: Path
    kind_cluster: str
    namespaces: Mapping[str, str]
    images: Mapping[str, str]
    storage_class: str
    buckets: Mapping[str, str]
    releases: Mapping[str, ReleaseSpec]
    minio: MinioSpec
    postgresql: PostgresSpec
    backend: BackendSpec
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # registry.image_pull_secret: a docker-registry Secret (made by the user in every
    # stack namespace) the pods pull with; None: the nodes' own credentials
    image_pull_secret: str | None = None

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def raw_bucket(self) -> str:
        return self.buckets["raw"]

    @property
    def lake_bucket(self) -> str:
        return self.buckets["lake"]

    def all_services(self) -> list[ServiceSpec]:
        return [*self.minio.services, *self.postgresql.services, self.backend.service]

    def all_pvcs(self) -> list[PvcSpec]:
        return [*self.minio.pvcs, *self.postgresql.pvcs]

    def all_secrets(self) -> list[SecretSpec]:
        return [self.minio.root_secret, self.minio.backend_user.secret,
                self.postgresql.superuser_secret, self.postgresql.catalog.secret,
                self.backend.postgres_secret, self.backend.s3_secret]

    def public_names(self) -> frozenset[str]:
        """Every string the spec itself writes (names, namespaces, users such as the
        catalog owner): public by definition, so never redacted even when a Secret
        repeats one of them."""
        out: set[str] = set()

        def walk(x: Any) -> None:
            if isinstance(x, str):
                out.add(x)
            elif isinstance(x, Mapping):
                for k, v in x.items():
                    out.add(str(k))
                    walk(v)
            elif isinstance(x, (list, tuple)):
                for v in x:
                    walk(v)
        walk(self.raw)
        return frozenset(out)

    def image(self, key: str, overrides: Mapping[str, str] | None = None) -> str:
        """The image reference for ``key``: an override, or the spec's value resolved."""
        if overrides and key in overrides:
            return overrides[key]
        if key not in self.images:
            raise SpecError(f"{self.path.name}: images.{key}: no such image in the spec")
        return resolve_image(self.images[key], f"{self.path.name}: images.{key}")


def resolve_image(ref: str, where: str = "image") -> str:
    if ref.startswith(BUNDLE_PREFIX):
        from provision.bundle.layout import STACK_IMAGES
        name = ref[len(BUNDLE_PREFIX):]
        if name not in STACK_IMAGES:
            raise SpecError(f"{where}: unknown bundle image {name!r} "
                            f"(known: {', '.join(sorted(STACK_IMAGES))})")
        return STACK_IMAGES[name]
    return ref


def split_image(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a registry port is not a tag; digests kept in repo."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


# ---- validation helpers ---------------------------------------------------------
class _V:
    """Walks the raw YAML, raising one-line errors with the dotted path."""

    def __init__(self, fname: str):
        self.fname = fname

    def fail(self, path: str, msg: str) -> SpecError:
        return SpecError(f"{self.fname}: {path}: {msg}" if path else f"{self.fname}: {msg}")

    def get(self, d: Mapping, path: str, key: str, optional: bool = False):
        full = f"{path}.{key}" if path else key
        if key not in d or d[key] is None:
            if optional:
                return None
            raise self.fail(full, "missing")
        return d[key]

    def map(self, d, path, key, optional=False) -> dict:
        v = self.get(d, path, key, optional)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.fail(_join(path, key), "expected a mapping")
        return v

    def str(self, d, path, key, optional=False, pattern=None, what="") -> str | None:
        v = self.get(d, path, key, optional)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise self.fail(_join(path, key), "expected a string")
        if pattern is not None and not pattern.match(v):
            raise self.fail(_join(path, key), f"{v!r} is not a valid {what}")
        return v

    def name(self, d, path, key, optional=False) -> str | None:
        return self.str(d, path, key, optional, _DNS_SUBDOMAIN, "Kubernetes name")

    def int(self, d, path, key, optional=False, default=None) -> int:
        v = self.get(d, path, key, optional)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(_join(path, key), "expected an integer")
        return v

    def port(self, d, path, key) -> int:
        v = self.int(d, path, key)
        if not 1 <= v <= 65535:
            raise self.fail(_join(path, key), f"{v} is not a port number")
        return v

    def bool(self, d, path, key) -> bool:
        v = self.get(d, path, key)
        if not isinstance(v, bool):
            raise self.fail(_join(path, key), "expected true or false")
        return v

    def strlist(self, d, path, key, optional=False) -> list[str]:
        v = self.get(d, path, key, optional)
        if v is None:
            return []
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise self.fail(_join(path, key), "expected a list of strings")
        return v

    def list(self, d, path, key) -> list:
        v = self.get(d, path, key)
        if not isinstance(v, list):
            raise self.fail(_join(path, key), "expected a list")
        return v


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


# ---- loading ------------------------------------------------------------------------
def load(path: str | Path | None = None) -> StackSpec:
    """Load and validate the stack spec (default: the repository's stack.yaml)."""
    path = Path(path or DEFAULT_SPEC).resolve()
    fname = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the stack spec: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{fname}: not valid YAML{where}: {problem}") from None
    return parse(raw, path)


def parse(raw: Any, path: Path) -> StackSpec:
    v = _V(path.name)
    if not isinstance(raw, dict):
        raise v.fail("", "expected a mapping at the top level")
    if raw.get("kind") != "Stack":
        raise v.fail("kind", "expected 'Stack'")
    root = path.parent

    cluster = v.map(raw, "", "cluster")
    kind_cluster = v.str(cluster, "cluster", "kind_name", pattern=_DNS_LABEL, what="cluster name")

    ns_raw = v.map(raw, "", "namespaces")
    namespaces = {k: v.str(ns_raw, "namespaces", k, pattern=_DNS_LABEL, what="namespace")
                  for k in ns_raw}
    for needed in ("storage", "backend"):
        if needed not in namespaces:
            raise v.fail(f"namespaces.{needed}", "missing")

    def ns_key(d, p, key="namespace") -> str:
        k = v.str(d, p, key)
        if k not in namespaces:
            raise v.fail(_join(p, key), f"unknown namespace key {k!r} "
                                        f"(known: {', '.join(namespaces)})")
        return namespaces[k]

    img_raw = v.map(raw, "", "images")
    images = {k: v.str(img_raw, "images", k) for k in img_raw}
    for k, ref in images.items():
        if ref.startswith(BUNDLE_PREFIX):
            resolve_image(ref, f"{path.name}: images.{k}")

    storage_class = v.name(raw, "", "storage_class")

    b_raw = v.map(raw, "", "buckets")
    buckets = {}
    for k in ("raw", "lake"):
        buckets[k] = v.str(b_raw, "buckets", k, pattern=re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"),
                           what="bucket name")
    if buckets["raw"] == buckets["lake"]:
        raise v.fail("buckets", "raw and lake must be different buckets")

    rel_raw = v.map(raw, "", "releases")
    releases: dict[str, ReleaseSpec] = {}
    for key in rel_raw:
        p = f"releases.{key}"
        r = v.map(rel_raw, "releases", key)
        c = v.map(r, p, "chart")
        cp = f"{p}.chart"
        chart = ChartSpec(name=v.str(c, cp, "name"), version=v.str(c, cp, "version"),
                          repo=v.str(c, cp, "repo", optional=True),
                          local=v.str(c, cp, "local", optional=True))
        if not chart.repo and not chart.local:
            raise v.fail(cp, "needs repo or local (or both)")
        if chart.local and not chart.local.startswith(BUNDLE_PREFIX) and \
                not (root / chart.local).is_dir():
            raise v.fail(f"{cp}.local", f"no chart directory {chart.local!r}")
        values = []
        for i, f in enumerate(v.strlist(r, p, "values", optional=True)):
            if not (root / f).is_file():
                raise v.fail(f"{p}.values[{i}]", f"no such file {f!r}")
            values.append(root / f)
        imgs = v.map(r, p, "images", optional=True)
        for prefix, ikey in imgs.items():
            if ikey not in images:
                raise v.fail(f"{p}.images.{prefix}", f"unknown image key {ikey!r}")
        releases[key] = ReleaseSpec(key=key, name=key, namespace=ns_key(r, p), chart=chart,
                                    values=tuple(values), images=dict(imgs),
                                    timeout=v.int(r, p, "timeout", optional=True, default=600))

    def secret(d, p, key, ns) -> SecretSpec:
        s = v.map(d, p, key)
        sp = _join(p, key)
        keys = v.strlist(s, sp, "keys")
        if not keys:
            raise v.fail(f"{sp}.keys", "expected at least one key")
        return SecretSpec(name=v.name(s, sp, "name"), namespace=ns, keys=tuple(keys))

    def services(d, p, ns) -> tuple[ServiceSpec, ...]:
        out = []
        for i, s in enumerate(v.list(d, p, "services")):
            sp = f"{p}.services[{i}]"
            if not isinstance(s, dict):
                raise v.fail(sp, "expected a mapping")
            out.append(_service(v, s, sp, ns))
        return tuple(out)

    def pvcs(d, p, ns) -> tuple[PvcSpec, ...]:
        out = []
        for i, s in enumerate(v.list(d, p, "pvcs")):
            sp = f"{p}.pvcs[{i}]"
            if not isinstance(s, dict):
                raise v.fail(sp, "expected a mapping")
            out.append(PvcSpec(name=v.name(s, sp, "name"), namespace=ns,
                               size=v.str(s, sp, "size", pattern=_QUANTITY, what="quantity"),
                               storage_class=v.name(s, sp, "storage_class", optional=True)
                               or storage_class))
        return tuple(out)

    def release_ref(d, p) -> str:
        name = v.str(d, p, "release")
        if name not in releases:
            raise v.fail(f"{p}.release", f"no release {name!r} under releases")
        return name

    m = v.map(raw, "", "minio")
    mrel = release_ref(m, "minio")
    mns = releases[mrel].namespace
    bu = v.map(m, "minio", "backend_user")
    minio = MinioSpec(
        release=mrel, fullname=v.name(m, "minio", "fullname"),
        api_port=v.port(m, "minio", "api_port"), console_port=v.port(m, "minio", "console_port"),
        region=v.str(m, "minio", "region"), use_ssl=v.bool(m, "minio", "use_ssl"),
        root_secret=secret(m, "minio", "root_secret", mns),
        backend_user=MinioUserSpec(
            access_key=v.str(bu, "minio.backend_user", "access_key"),
            policy=v.str(bu, "minio.backend_user", "policy"),
            secret=secret(bu, "minio.backend_user", "secret", mns)),
        services=services(m, "minio", mns), pvcs=pvcs(m, "minio", mns), namespace=mns)
    if list(minio.root_secret.keys) != ["rootUser", "rootPassword"]:
        raise v.fail("minio.root_secret.keys", "the MinIO chart reads [rootUser, rootPassword]")

    pg = v.map(raw, "", "postgresql")
    prel = release_ref(pg, "postgresql")
    pns = releases[prel].namespace
    cat = v.map(pg, "postgresql", "catalog")
    ident = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
    postgresql = PostgresSpec(
        release=prel, fullname=v.name(pg, "postgresql", "fullname"),
        port=v.port(pg, "postgresql", "port"),
        superuser_secret=secret(pg, "postgresql", "superuser_secret", pns),
        catalog=CatalogSpec(
            database=v.str(cat, "postgresql.catalog", "database", pattern=ident, what="identifier"),
            owner=v.str(cat, "postgresql.catalog", "owner", pattern=ident, what="identifier"),
            secret=secret(cat, "postgresql.catalog", "secret", pns)),
        services=services(pg, "postgresql", pns), pvcs=pvcs(pg, "postgresql", pns), namespace=pns)

    be = v.map(raw, "", "backend")
    bns = ns_key(be, "backend")
    bsec = v.map(be, "backend", "secrets")
    bimg = v.map(be, "backend", "image")
    manifests = []
    for i, f in enumerate(v.strlist(be, "backend", "manifests")):
        if not (root / f).is_file():
            raise v.fail(f"backend.manifests[{i}]", f"no such file {f!r}")
        manifests.append(root / f)
    backend = BackendSpec(
        namespace=bns, deployment=v.name(be, "backend", "deployment"),
        container=v.name(be, "backend", "container"),
        replicas=v.int(be, "backend", "replicas", optional=True, default=1),
        port=v.port(be, "backend", "port"),
        liveness_path=v.str(be, "backend", "liveness_path"),
        readiness_path=v.str(be, "backend", "readiness_path"),
        service=_service(v, v.map(be, "backend", "service"), "backend.service", bns),
        configmap=v.name(be, "backend", "configmap"),
        postgres_secret=secret(bsec, "backend.secrets", "postgres", bns),
        s3_secret=secret(bsec, "backend.secrets", "s3", bns),
        image=BackendImageSpec(
            repository=v.str(bimg, "backend.image", "repository"),
            dockerfile=root / v.str(bimg, "backend.image", "dockerfile"),
            context=root / v.str(bimg, "backend.image", "context"),
            hash_paths=tuple(root / p for p in v.strlist(bimg, "backend.image", "hash_paths"))),
        manifests=tuple(manifests),
        rollout_timeout=v.int(be, "backend", "rollout_timeout", optional=True, default=300))
    if len(backend.postgres_secret.keys) != 2 or len(backend.s3_secret.keys) != 2:
        raise v.fail("backend.secrets", "postgres and s3 secrets need exactly two keys "
                                        "(user/access key first, password/secret key second)")

    reg = v.map(raw, "", "registry", optional=True)
    pull_secret = v.name(reg, "registry", "image_pull_secret", optional=True)

    return StackSpec(path=path, kind_cluster=kind_cluster, namespaces=namespaces, images=images,
                     storage_class=storage_class, buckets=buckets, releases=releases,
                     minio=minio, postgresql=postgresql, backend=backend, raw=raw,
                     image_pull_secret=pull_secret)


def _service(v: _V, s: Mapping, sp: str, ns: str) -> ServiceSpec:
    stype = v.str(s, sp, "type")
    if stype not in SERVICE_TYPES:
        raise v.fail(f"{sp}.type", f"expected one of {', '.join(SERVICE_TYPES)}")
    ports = v.list(s, sp, "ports")
    for i, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise v.fail(f"{sp}.ports[{i}]", "expected a port number")
    return ServiceSpec(name=v.name(s, sp, "name"), namespace=ns, type=stype, ports=tuple(ports))
