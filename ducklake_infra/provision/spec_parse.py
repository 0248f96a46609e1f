"""Validating the stack spec's YAML into the data classes of :mod:`.spec`. Malformed
files fail with one line naming the file and the dotted path, e.g.
``stack.yaml: releases.minio.chart.version: expected a string``; a key the parser never
reads is refused, so the parser itself is the schema.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Mapping

from ducklake_infra.provision.spec import (
    BUNDLE_PREFIX, PROFILES, SERVICE_TYPES, BackendImageSpec, BackendSpec, CatalogReaderSpec,
    CatalogSpec, ChartSpec, MinioSpec, MinioUserSpec, PostgresSpec, PvcSpec, ReleaseSpec,
    DistributedSpec, SecretSpec, ServiceSpec, SpecError, StackSpec, resolve_image)

API_VERSION = "ducklake-infra/v1"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")          # a PostgreSQL identifier
_DURATION = re.compile(r"^[0-9]+(ms|s|min)$")


# ---- validation helpers ---------------------------------------------------------
class _V:
    """Walks the raw YAML, raising one-line errors with the dotted path. Every key it is
    asked for is remembered, so that afterwards :meth:`refuse_unknown` can refuse any key
    the parser never asked for: the parser itself is the schema (one of each)."""

    def __init__(self, fname: str, root: Any = None):
        self.fname = fname
        self._root = root
        self._asked: dict[int, tuple[Mapping, str, set]] = {}

    def refuse_unknown(self) -> None:
        """A key nobody reads is a typo or a setting that does nothing: refuse it."""
        for d, path, asked in self._asked.values():
            for key in d:
                if key not in asked:
                    near = difflib.get_close_matches(str(key), sorted(asked), n=1, cutoff=0.6)
                    hint = f" (did you mean {near[0]!r}?)" if near else \
                        f" (valid: {', '.join(sorted(asked))})"
                    raise self.fail(_join(path, str(key)), "unknown key" + hint)
        unread = [p for p in _mapping_paths(self._root, "") if id(p[0]) not in self._asked]
        if unread:   # a mapping the parser never looked into: nothing in it would be checked
            raise self.fail(unread[0][1], "unexpected mapping")

    def fail(self, path: str, msg: str) -> SpecError:
        return SpecError(f"{self.fname}: {path}: {msg}" if path else f"{self.fname}: {msg}")

    def get(self, d: Mapping, path: str, key: str, optional: bool = False):
        full = f"{path}.{key}" if path else key
        self._asked.setdefault(id(d), (d, path, set()))[2].add(key)
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


def _mapping_paths(x: Any, path: str):
    """(mapping, dotted path) of every mapping inside ``x``."""
    if isinstance(x, Mapping):
        yield x, path
        for k, val in x.items():
            yield from _mapping_paths(val, _join(path, str(k)))
    elif isinstance(x, list):
        for i, val in enumerate(x):
            yield from _mapping_paths(val, _join(path, i))


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key



def parse(raw: Any, path: Path) -> StackSpec:
    v = _V(path.name, raw)
    if not isinstance(raw, dict):
        raise v.fail("", "expected a mapping at the top level")
    if v.get(raw, "", "kind") != "Stack":
        raise v.fail("kind", "expected 'Stack'")
    if v.get(raw, "", "apiVersion") != API_VERSION:
        raise v.fail("apiVersion", f"{raw.get('apiVersion')!r} is not supported "
                                   f"(expected {API_VERSION!r})")
    # the sections in the order they were always read: a file with several mistakes
    # keeps failing on the same first one
    ps = _Parser(v, path)
    cluster = v.map(raw, "", "cluster")
    kind_cluster = v.str(cluster, "cluster", "kind_name", pattern=_DNS_LABEL, what="cluster name")
    ps.namespaces = ps.parse_namespaces(raw)
    images = ps.parse_images(raw)
    ps.storage_class = v.name(raw, "", "storage_class")
    buckets = ps.parse_buckets(raw)
    ps.releases = ps.parse_releases(raw, images)
    minio = ps.parse_minio(raw)
    postgresql = ps.parse_postgresql(raw)
    backend = ps.parse_backend(raw, postgresql)

    reg = v.map(raw, "", "registry", optional=True)
    pull_secret = v.name(reg, "registry", "image_pull_secret", optional=True)
    profile, distributed = parse_profile(v, raw)

    v.refuse_unknown()
    return StackSpec(path=path, kind_cluster=kind_cluster, namespaces=ps.namespaces,
                     images=images, storage_class=ps.storage_class, buckets=buckets,
                     releases=ps.releases, minio=minio, postgresql=postgresql, backend=backend,
                     raw=raw, image_pull_secret=pull_secret, profile=profile,
                     distributed=distributed)


def parse_profile(v: _V, raw: Mapping) -> tuple[str, DistributedSpec | None]:
    """``profile`` (standalone by default) and the ``distributed`` section, checked
    whenever it is there; ``profile: distributed`` needs it."""
    profile = v.str(raw, "", "profile", optional=True) or "standalone"
    if profile not in PROFILES:
        raise v.fail("profile", f"{profile!r} is not a profile (valid: {', '.join(PROFILES)})")
    d = v.map(raw, "", "distributed", optional=True)
    if raw.get("distributed") is None:
        if profile == "distributed":
            raise v.fail("distributed", "missing (profile: distributed needs it)")
        return profile, None
    base = DistributedSpec()
    m = v.map(d, "distributed", "minio", optional=True)
    pg = v.map(d, "distributed", "postgresql", optional=True)
    be = v.map(d, "distributed", "backend", optional=True)
    spec = DistributedSpec(
        workers=v.int(d, "distributed", "workers", optional=True, default=base.workers),
        minio_servers=v.int(m, "distributed.minio", "servers", optional=True,
                            default=base.minio_servers),
        minio_parity=v.int(m, "distributed.minio", "parity", optional=True,
                           default=base.minio_parity),
        pg_members=v.int(pg, "distributed.postgresql", "members", optional=True,
                         default=base.pg_members),
        pg_sync_count=v.int(pg, "distributed.postgresql", "synchronous_node_count",
                            optional=True, default=base.pg_sync_count),
        pg_strict=(base.pg_strict if v.get(pg, "distributed.postgresql", "strict", optional=True)
                   is None else v.bool(pg, "distributed.postgresql", "strict")),
        backend_replicas=v.int(be, "distributed.backend", "replicas", optional=True,
                               default=base.backend_replicas))
    checks = [
        ("distributed.workers", 1 <= spec.workers <= 8, "between 1 and 8 worker nodes"),
        ("distributed.minio.servers", spec.minio_servers >= 4,
         "at least 4 servers (MinIO's erasure coding needs 4 drives)"),
        ("distributed.minio.servers", spec.minio_servers <= spec.workers + 1,
         f"at most workers + 1 = {spec.workers + 1} servers: one per node, or a node's loss "
         "takes two drives"),
        ("distributed.minio.parity", 1 <= spec.minio_parity <= spec.minio_servers // 2,
         f"between 1 and servers / 2 = {spec.minio_servers // 2} (MinIO refuses more)"),
        ("distributed.postgresql.members", spec.pg_members >= 2,
         "at least 2 members (a primary and a replica)"),
        ("distributed.postgresql.synchronous_node_count",
         1 <= spec.pg_sync_count < spec.pg_members,
         f"between 1 and members - 1 = {spec.pg_members - 1}"),
        ("distributed.backend.replicas", spec.backend_replicas >= 2, "at least 2 replicas"),
    ]
    for path, ok, want in checks:
        if not ok:
            raise v.fail(path, f"expected {want}")
    return profile, spec


class _Parser:
    """One parse, a section at a time; later sections refer back to what earlier ones
    found (namespaces, releases, the default storage class)."""

    def __init__(self, v: _V, path: Path):
        self.v = v
        self.path = path
        self.root = path.parent
        self.namespaces: dict[str, str] = {}
        self.releases: dict[str, ReleaseSpec] = {}
        self.storage_class = ""

    # ---- the sections -------------------------------------------------------------
    def parse_namespaces(self, raw: Mapping) -> dict[str, str]:
        v = self.v
        ns_raw = v.map(raw, "", "namespaces")
        namespaces = {k: v.str(ns_raw, "namespaces", k, pattern=_DNS_LABEL, what="namespace")
                      for k in ns_raw}
        for needed in ("storage", "backend"):
            if needed not in namespaces:
                raise v.fail(f"namespaces.{needed}", "missing")
        return namespaces

    def parse_images(self, raw: Mapping) -> dict[str, str]:
        v = self.v
        img_raw = v.map(raw, "", "images")
        images = {k: v.str(img_raw, "images", k) for k in img_raw}
        for k, ref in images.items():
            if ref.startswith(BUNDLE_PREFIX):
                resolve_image(ref, f"{self.path.name}: images.{k}")
        return images

    def parse_buckets(self, raw: Mapping) -> dict[str, str]:
        v = self.v
        b_raw = v.map(raw, "", "buckets")
        buckets = {}
        for k in ("raw", "lake"):
            buckets[k] = v.str(b_raw, "buckets", k, pattern=_BUCKET, what="bucket name")
        if buckets["raw"] == buckets["lake"]:
            raise v.fail("buckets", "raw and lake must be different buckets")
        return buckets

    def parse_releases(self, raw: Mapping, images: Mapping[str, str]) -> dict[str, ReleaseSpec]:
        v = self.v
        rel_raw = v.map(raw, "", "releases")
        releases: dict[str, ReleaseSpec] = {}
        for key in rel_raw:
            p = f"releases.{key}"
            r = v.map(rel_raw, "releases", key)
            chart = self.chart(v.map(r, p, "chart"), f"{p}.chart")
            values = self.files(r, p, "values", optional=True)
            imgs = v.map(r, p, "images", optional=True)
            for prefix in imgs:
                ikey = v.str(imgs, f"{p}.images", prefix)
                if ikey not in images:
                    raise v.fail(f"{p}.images.{prefix}", f"unknown image key {ikey!r}")
            releases[key] = ReleaseSpec(key=key, name=key, namespace=self.ns_key(r, p),
                                        chart=chart, values=values, images=dict(imgs),
                                        timeout=v.int(r, p, "timeout", optional=True,
                                                      default=600))
        return releases

    def parse_minio(self, raw: Mapping) -> MinioSpec:
        v = self.v
        m = v.map(raw, "", "minio")
        mrel = self.release_ref(m, "minio")
        mns = self.releases[mrel].namespace

        def minio_user(key: str) -> MinioUserSpec:
            u = v.map(m, "minio", key)
            return MinioUserSpec(access_key=v.str(u, f"minio.{key}", "access_key"),
                                 policy=v.str(u, f"minio.{key}", "policy"),
                                 secret=self.secret(u, f"minio.{key}", "secret", mns))

        minio = MinioSpec(
            release=mrel, fullname=v.name(m, "minio", "fullname"),
            api_port=v.port(m, "minio", "api_port"),
            console_port=v.port(m, "minio", "console_port"),
            region=v.str(m, "minio", "region"), use_ssl=v.bool(m, "minio", "use_ssl"),
            root_secret=self.secret(m, "minio", "root_secret", mns),
            backend_user=minio_user("backend_user"), query_user=minio_user("query_user"),
            maintenance_user=minio_user("maintenance_user"),
            services=self.services(m, "minio", mns), pvcs=self.pvcs(m, "minio", mns),
            namespace=mns)
        if list(minio.root_secret.keys) != ["rootUser", "rootPassword"]:
            raise v.fail("minio.root_secret.keys",
                         "the MinIO chart reads [rootUser, rootPassword]")
        return minio

    def parse_postgresql(self, raw: Mapping) -> PostgresSpec:
        v = self.v
        pg = v.map(raw, "", "postgresql")
        prel = self.release_ref(pg, "postgresql")
        pns = self.releases[prel].namespace
        cat = v.map(pg, "postgresql", "catalog")
        rd = v.map(cat, "postgresql.catalog", "reader")
        return PostgresSpec(
            release=prel, fullname=v.name(pg, "postgresql", "fullname"),
            port=v.port(pg, "postgresql", "port"),
            superuser_secret=self.secret(pg, "postgresql", "superuser_secret", pns),
            catalog=CatalogSpec(
                database=v.str(cat, "postgresql.catalog", "database", pattern=_IDENT,
                               what="identifier"),
                owner=v.str(cat, "postgresql.catalog", "owner", pattern=_IDENT,
                            what="identifier"),
                secret=self.secret(cat, "postgresql.catalog", "secret", pns),
                reader=CatalogReaderSpec(
                    role=v.str(rd, "postgresql.catalog.reader", "role", pattern=_IDENT,
                               what="identifier"),
                    statement_timeout=v.str(rd, "postgresql.catalog.reader",
                                            "statement_timeout", pattern=_DURATION,
                                            what="duration (e.g. 30s)"),
                    secret=self.secret(rd, "postgresql.catalog.reader", "secret", pns))),
            services=self.services(pg, "postgresql", pns),
            pvcs=self.pvcs(pg, "postgresql", pns), namespace=pns)

    def parse_backend(self, raw: Mapping, postgresql: PostgresSpec) -> BackendSpec:
        v, root = self.v, self.root
        be = v.map(raw, "", "backend")
        bns = self.ns_key(be, "backend")
        bsec = v.map(be, "backend", "secrets")
        bimg = v.map(be, "backend", "image")
        manifests = self.files(be, "backend", "manifests")
        mnt = v.map(be, "backend", "maintenance", optional=True)
        backend = BackendSpec(
            namespace=bns, deployment=v.name(be, "backend", "deployment"),
            container=v.name(be, "backend", "container"),
            replicas=v.int(be, "backend", "replicas", optional=True, default=1),
            port=v.port(be, "backend", "port"),
            liveness_path=v.str(be, "backend", "liveness_path"),
            readiness_path=v.str(be, "backend", "readiness_path"),
            service=_service(v, v.map(be, "backend", "service"), "backend.service", bns),
            configmap=v.name(be, "backend", "configmap"),
            postgres_secret=self.secret(bsec, "backend.secrets", "postgres", bns),
            s3_secret=self.secret(bsec, "backend.secrets", "s3", bns),
            token_secret=self.secret(bsec, "backend.secrets", "api_token", bns),
            query_postgres_secret=self.secret(bsec, "backend.secrets", "query_postgres", bns),
            query_s3_secret=self.secret(bsec, "backend.secrets", "query_s3", bns),
            maintenance_s3_secret=self.secret(bsec, "backend.secrets", "maintenance_s3", bns),
            image=BackendImageSpec(
                repository=v.str(bimg, "backend.image", "repository"),
                dockerfile=root / v.str(bimg, "backend.image", "dockerfile"),
                context=root / v.str(bimg, "backend.image", "context"),
                hash_paths=tuple(root / p
                                 for p in v.strlist(bimg, "backend.image", "hash_paths"))),
            manifests=manifests,
            rollout_timeout=v.int(be, "backend", "rollout_timeout", optional=True, default=300),
            maintenance_interval=_non_negative(v, mnt, "backend.maintenance",
                                               "interval_seconds", 0),
            maintenance_keep=_non_negative(v, mnt, "backend.maintenance", "keep_seconds", 86400))
        if len(backend.postgres_secret.keys) != 2 or len(backend.s3_secret.keys) != 2:
            raise v.fail("backend.secrets", "postgres and s3 secrets need exactly two keys "
                                            "(user/access key first, password/secret key second)")
        for key, sec in (("query_postgres", backend.query_postgres_secret),
                         ("query_s3", backend.query_s3_secret),
                         ("maintenance_s3", backend.maintenance_s3_secret),
                         ("", postgresql.catalog.reader.secret)):
            if len(sec.keys) != 2:
                raise v.fail(f"backend.secrets.{key}" if key else "postgresql.catalog.reader.secret",
                             "needs exactly two keys (user first, password second)")
        if len(backend.token_secret.keys) != 1:
            raise v.fail("backend.secrets.api_token", "needs exactly one key (the token)")
        return backend

    # ---- pieces the sections share ------------------------------------------------
    def ns_key(self, d: Mapping, p: str, key: str = "namespace") -> str:
        k = self.v.str(d, p, key)
        if k not in self.namespaces:
            raise self.v.fail(_join(p, key), f"unknown namespace key {k!r} "
                                             f"(known: {', '.join(self.namespaces)})")
        return self.namespaces[k]

    def chart(self, c: Mapping, cp: str) -> ChartSpec:
        v = self.v
        chart = ChartSpec(name=v.str(c, cp, "name"), version=v.str(c, cp, "version"),
                          repo=v.str(c, cp, "repo", optional=True),
                          local=v.str(c, cp, "local", optional=True))
        if not chart.repo and not chart.local:
            raise v.fail(cp, "needs repo or local (or both)")
        if chart.local and not chart.local.startswith(BUNDLE_PREFIX) and \
                not (self.root / chart.local).is_dir():
            raise v.fail(f"{cp}.local", f"no chart directory {chart.local!r}")
        return chart

    def files(self, d: Mapping, p: str, key: str, optional: bool = False) -> tuple[Path, ...]:
        """A list of files relative to the spec, each of which must exist."""
        out = []
        for i, f in enumerate(self.v.strlist(d, p, key, optional=optional)):
            if not (self.root / f).is_file():
                raise self.v.fail(f"{p}.{key}[{i}]", f"no such file {f!r}")
            out.append(self.root / f)
        return tuple(out)

    def secret(self, d: Mapping, p: str, key: str, ns: str) -> SecretSpec:
        v = self.v
        s = v.map(d, p, key)
        sp = _join(p, key)
        keys = v.strlist(s, sp, "keys")
        if not keys:
            raise v.fail(f"{sp}.keys", "expected at least one key")
        return SecretSpec(name=v.name(s, sp, "name"), namespace=ns, keys=tuple(keys))

    def _mappings(self, d: Mapping, p: str, key: str):
        """(dotted path, mapping) of each item of the list ``key``."""
        for i, s in enumerate(self.v.list(d, p, key)):
            sp = f"{p}.{key}[{i}]"
            if not isinstance(s, dict):
                raise self.v.fail(sp, "expected a mapping")
            yield sp, s

    def services(self, d: Mapping, p: str, ns: str) -> tuple[ServiceSpec, ...]:
        return tuple(_service(self.v, s, sp, ns) for sp, s in self._mappings(d, p, "services"))

    def pvcs(self, d: Mapping, p: str, ns: str) -> tuple[PvcSpec, ...]:
        v = self.v
        return tuple(PvcSpec(name=v.name(s, sp, "name"), namespace=ns,
                             size=v.str(s, sp, "size", pattern=_QUANTITY, what="quantity"),
                             storage_class=v.name(s, sp, "storage_class", optional=True)
                             or self.storage_class)
                     for sp, s in self._mappings(d, p, "pvcs"))

    def release_ref(self, d: Mapping, p: str) -> str:
        name = self.v.str(d, p, "release")
        if name not in self.releases:
            raise self.v.fail(f"{p}.release", f"no release {name!r} under releases")
        return name


def _non_negative(v: _V, d: Mapping, path: str, key: str, default: int) -> int:
    n = v.int(d, path, key, optional=True, default=default)
    if n < 0:
        raise v.fail(f"{path}.{key}", f"{n} is negative")
    return n


def _service(v: _V, s: Mapping, sp: str, ns: str) -> ServiceSpec:
    stype = v.str(s, sp, "type")
    if stype not in SERVICE_TYPES:
        raise v.fail(f"{sp}.type", f"expected one of {', '.join(SERVICE_TYPES)}")
    ports = v.list(s, sp, "ports")
    for i, port in enumerate(ports):
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise v.fail(f"{sp}.ports[{i}]", "expected a port number")
    return ServiceSpec(name=v.name(s, sp, "name"), namespace=ns, type=stype, ports=tuple(ports))
