"""Provision the DuckLake stack described by ``stack.yaml``: up, down, plan (status:
:mod:`ducklake_infra.provision.status`).

``up`` is idempotent: a second run creates no Secret, skips every Helm release
whose chart version and values hash are unchanged (the hash is stored in the
release's own values as ``ducklakeInfra.specHash``), skips the backend image
build when the content hash tag exists, and re-applies unchanged manifests.
Names come from the spec only; every command goes through the one Runner.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence


from ducklake_infra.provision import oci
from ducklake_infra.provision import kube, netpol
from ducklake_infra.provision.cluster import KindCluster, Unreachable
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import CommandError, Result, Runner
from ducklake_infra.provision.spec import ReleaseSpec, StackSpec

from ducklake_infra.provision.render import (BACKEND_IMAGE_KEY, CACERT, Options, backend_objects, check_charts, helm_upgrade_argv, image_refs)


# ---- the stateful part ----------------------------------------------------------------
class _Ctx:
    def __init__(self, cluster, spec: StackSpec, runner: Runner, progress: Progress,
                 opts: Options, offline: bool = False):
        self.cluster, self.spec, self.runner, self.progress, self.opts = \
            cluster, spec, runner, progress, opts
        self.offline = offline          # plan without a reachable cluster: reads are listed
        self.read_marks: set[int] = set()
        self.stdin: dict[int, list[str]] = {}   # plan: index -> objects on its stdin
        self.pushed: list[oci.Pushed] = []

    def kubectl(self, *args: str) -> list[str]:
        return [*self.cluster.kubectl(), *args]

    def helm(self, *args: str) -> list[str]:
        return [*self.cluster.helm(), *args]

    @property
    def local_runner(self) -> Runner:
        """Reads of this machine's state (the Docker engine) run even when the cluster is
        absent, so the plan shows the real values (e.g. image IDs)."""
        return getattr(self.runner, "base", self.runner)

    def read(self, argv: Sequence[str], timeout: float = 60) -> Result | None:
        """A read: runs (even in dry-run), or is only listed when the cluster is absent."""
        if self.offline:
            self.read_marks.add(len(self.runner.planned))
            self.runner.planned.append([str(a) for a in argv])
            return None
        return self.runner.run(argv, timeout=timeout, check=False, mutating=False)

    def apply(self, objects: Sequence[dict], timeout: float = 120) -> None:
        if self.runner.dry_run:
            self.stdin[len(self.runner.planned)] = [
                f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                .replace(" /", " ") for o in objects]
        # Server-side apply: client-side apply would copy every object, Secrets
        # included, into a last-applied-configuration annotation (SEC-ANN-001).
        self.runner.run(self.kubectl("apply", "--server-side", "--field-manager",
                                     "ducklake-infra", "--force-conflicts", "-f", "-"),
                        input=kube.as_list(objects), timeout=timeout, mutating=True)


def _get_secret(ctx: _Ctx, name: str, namespace: str) -> dict[str, str] | None:
    res = ctx.read(ctx.kubectl("get", "secret", name, "-n", namespace, "-o", "json",
                               "--ignore-not-found"))
    if res is None or res.returncode != 0 or not res.stdout.strip():
        return None
    data = kube.decode_secret(json.loads(res.stdout))
    ctx.runner.redactor.add(*data.values())
    return data


def ensure_namespaces(ctx: _Ctx) -> str:
    names = sorted(set(ctx.spec.namespaces.values()))
    res = ctx.read(ctx.kubectl("get", "namespaces", "-o", "name"))
    have = {line.split("/", 1)[-1] for line in (res.stdout.split() if res else [])}
    missing = [n for n in names if n not in have]
    # namespaces that exist but do not enforce the restricted Pod Security profile yet
    label = "pod-security.kubernetes.io/enforce=restricted"
    res = ctx.read(ctx.kubectl("get", "namespaces", "-l", label, "-o", "name"))
    restricted = {line.split("/", 1)[-1] for line in (res.stdout.split() if res else [])}
    relabel = [n for n in names if n in have and n not in restricted]
    if missing or relabel:
        ctx.apply([kube.namespace_manifest(n) for n in missing] +
                  [kube.namespace_manifest(n, managed=False) for n in relabel])
    notes = ([f"created {', '.join(missing)}"] if missing else []) + \
        ([f"restricted Pod Security on {', '.join(relabel)}"] if relabel else [])
    return "; ".join(notes) or "present"


def ensure_secrets(ctx: _Ctx) -> str:
    """Generate the stack's credentials once; reuse them on every later run.

    Values are registered with the runner's redactor and only ever sent on stdin.
    """
    s = ctx.spec
    created: list[str] = []

    def ensure(sec, want: dict[str, str], generated: set[str]) -> dict[str, str]:
        have = _get_secret(ctx, sec.name, sec.namespace)
        if have is not None and all(k in have for k in want):
            fixed = {k: v for k, v in want.items() if k not in generated}
            if all(have[k] == v for k, v in fixed.items()):
                return have
            want = {**want, **{k: have[k] for k in generated if k in have}}
        ctx.runner.redactor.add(*[want[k] for k in generated])
        ctx.apply([kube.secret_manifest(sec.name, sec.namespace, want)])
        created.append(f"{sec.namespace}/{sec.name}")
        return want

    root = s.minio.root_secret
    ensure(root, {root.keys[0]: "admin-" + kube.random_password(8),
                  root.keys[1]: kube.random_password(40)}, set(root.keys))
    user = s.minio.backend_user
    user_data = ensure(user.secret, {user.secret.keys[0]: kube.random_password(40)},
                       {user.secret.keys[0]})
    cat = s.postgresql.catalog
    cat_data = ensure(cat.secret, {cat.secret.keys[0]: cat.owner,
                                   cat.secret.keys[-1]: kube.random_password(32)},
                      {cat.secret.keys[-1]})
    pg, s3 = s.backend.postgres_secret, s.backend.s3_secret
    ensure(pg, {pg.keys[0]: cat.owner, pg.keys[1]: cat_data.get(cat.secret.keys[-1], "")},
           set())
    ensure(s3, {s3.keys[0]: user.access_key, s3.keys[1]: user_data.get(user.secret.keys[0], "")},
           set())
    tok = s.backend.token_secret
    ensure(tok, {tok.keys[0]: kube.random_password(40)}, {tok.keys[0]})
    # the query path's read-only identities (a MinIO user, a PostgreSQL role) and copies
    quser = s.minio.query_user
    quser_data = ensure(quser.secret, {quser.secret.keys[0]: kube.random_password(40)},
                        {quser.secret.keys[0]})
    rd = s.postgresql.catalog.reader
    rd_data = ensure(rd.secret, {rd.secret.keys[0]: rd.role,
                                 rd.secret.keys[1]: kube.random_password(32)}, {rd.secret.keys[1]})
    qpg, qs3 = s.backend.query_postgres_secret, s.backend.query_s3_secret
    ensure(qpg, {qpg.keys[0]: rd.role, qpg.keys[1]: rd_data.get(rd.secret.keys[1], "")}, set())
    ensure(qs3, {qs3.keys[0]: quser.access_key,
                 qs3.keys[1]: quser_data.get(quser.secret.keys[0], "")}, set())
    return f"created {', '.join(created)}" if created else "all present (reused)"


def release_is_current(ctx: _Ctx, rel: ReleaseSpec, digest: str) -> bool:
    res = ctx.read(ctx.helm("list", "--namespace", rel.namespace, "--filter", f"^{rel.name}$",
                            "--output", "json"))
    try:
        items = json.loads(res.stdout or "[]") if res and res.returncode == 0 else []
    except ValueError:
        items = []
    item = next((i for i in items if i.get("name") == rel.name), None)
    if not item or item.get("status") != "deployed" or \
            item.get("chart") != f"{rel.chart.name}-{rel.chart.version}":
        return False
    res = ctx.read(ctx.helm("get", "values", rel.name, "--namespace", rel.namespace,
                            "--output", "json"))
    try:
        values = json.loads(res.stdout or "{}") if res and res.returncode == 0 else {}
    except ValueError:
        return False
    return (values.get("ducklakeInfra") or {}).get("specHash") == digest


def install_releases(ctx: _Ctx, refs: Mapping[str, str]) -> str:
    """helm upgrade --install every release in parallel; skip unchanged ones."""
    notes: dict[str, str] = {}
    errors: list[tuple[str, BaseException]] = []
    lock = threading.Lock()

    def one(rel: ReleaseSpec) -> None:
        start = time.monotonic()
        argv, digest = helm_upgrade_argv(ctx.cluster.helm(), ctx.spec, rel, refs, ctx.opts)
        try:
            if release_is_current(ctx, rel, digest):
                note = "unchanged"
            else:
                ctx.runner.run(argv, timeout=rel.timeout + 60, mutating=True)
                note = "installed"
        except BaseException as exc:
            with lock:
                errors.append((rel.name, exc))
            note = "failed"
        took = time.monotonic() - start
        with lock:
            notes[rel.name] = f"{rel.name} {note} {took:.1f}s"
            ctx.progress.timings.append((f"  release {rel.name}", took, note))
            ctx.progress.say(f"    {rel.name}: {note} ({took:.1f}s)")

    rels = list(ctx.spec.releases.values())
    with ThreadPoolExecutor(max_workers=len(rels) or 1) as pool:
        list(pool.map(one, rels))
    if errors:
        name, exc = errors[0]
        rel = ctx.spec.releases[name]
        detail = exc.stderr_tail if isinstance(exc, CommandError) else str(exc)
        pulls = oci.pull_problems(ctx.runner, ctx.cluster.kubectl(), rel.namespace)
        diag = kube.diagnose(ctx.runner, ctx.cluster.kubectl(), rel.namespace)
        raise DucklakeInfraError(ctx.runner.redactor(
            pull_failure(f"helm release {name} (namespace {rel.namespace})", pulls, ctx.opts)
            or f"helm release {name} (namespace {rel.namespace}) failed: {detail.strip()}"
            ) + f"\n{ctx.runner.redactor(diag)}")
    return ", ".join(notes[r.name] for r in rels)


BASE_LABEL = "ducklake-infra.python-base"


def build_backend_image(ctx: _Ctx, refs: Mapping[str, str]) -> str:
    ref = refs[BACKEND_IMAGE_KEY]
    if BACKEND_IMAGE_KEY in ctx.opts.images:
        return f"{ref} (given)"
    # The tag hashes our sources; the base image is tracked by a label, so a rebuilt
    # base (e.g. a new bundle) rebuilds the backend under the same source tag.
    base_id = oci.local_image_id(ctx.local_runner, refs["python-base"]) or ""
    res = ctx.read(["docker", "image", "inspect", "--format",
                    f'{{{{index .Config.Labels "{BASE_LABEL}"}}}}', ref])
    if res is not None and res.returncode == 0 and res.stdout.strip() == base_id and base_id:
        return f"{ref} (cached)"
    img = ctx.spec.backend.image
    if not ctx.runner.dry_run and not img.dockerfile.is_file():
        raise DucklakeInfraError(f"backend image: no {img.dockerfile}")
    argv = ["docker", "build", "--file", str(img.dockerfile), "--tag", ref,
            "--build-arg", f"PYTHON_BASE={refs['python-base']}",
            "--label", f"{BASE_LABEL}={base_id or 'unknown'}",
            "--secret", f"id=cacert,src={CACERT}", str(img.context)]
    ctx.runner.run_logged(argv, timeout=ctx.opts.build_timeout, env={"DOCKER_BUILDKIT": "1"},
                          cwd=img.context)
    return f"{ref} (built)"


def load_images(ctx: _Ctx, refs: Mapping[str, str]) -> str:
    keys = sorted({k for r in ctx.spec.releases.values() for k in r.images.values()}
                  | {BACKEND_IMAGE_KEY})
    images = [refs[k] for k in keys]
    try:
        loaded = ctx.cluster.load_images(images)
    except DucklakeInfraError:
        if not ctx.runner.dry_run:
            raise
        # plan: an image that `up` would build first is not there yet
        ctx.runner.planned.append(["kind", "load", "docker-image", "--name",
                                   ctx.cluster.name, *images])
        return f"{len(images)} images"
    held = len(images) - len(loaded)
    return (f"loaded {', '.join(loaded)}" if loaded else "none loaded") + \
        (f"; {held} already in the node" if held else "")


def record_provenance(ctx: _Ctx, refs: Mapping[str, str]) -> str:
    """What the audit needs to match a running image to its SBOM (SUPPLY-SBOM-001): the
    backend's SBOM (the bundle's own are written by ``bundle sbom``) and every digest the
    images now run under that is not their image ID (``image_digests``)."""
    from ducklake_infra.provision.bundle import image_digests, sbom
    sbom_dir = ctx.opts.layout.sbom
    notes = [sbom.ensure_backend(ctx.local_runner, ctx.opts.layout, ctx.spec)]
    if ctx.pushed:
        ids = {p.key: I.local_image_id(ctx.local_runner, p.local) for p in ctx.pushed}
        seen = [image_digests.Alias(d, ids[p.key], p.ref, f"registry {ctx.opts.registry.base}")
                for p in ctx.pushed if ids[p.key] and (d := image_digests.digest_of(p.ref))]
    elif ctx.cluster.is_kind:
        images = [refs[k] for k in cluster_image_keys(ctx.spec)]
        seen = [image_digests.Alias(d, i, r, f"kind node {ctx.cluster.node_container()}")
                for r, i, d in ctx.cluster.image_digests(images)]
    else:
        seen = []
    new = image_digests.record(sbom_dir, seen)
    notes.append(f"{len(seen)} digest(s) known" + (f", {new} new" if new else ""))
    return "; ".join(notes)


def deploy_backend(ctx: _Ctx, image: str) -> str:
    b = ctx.spec.backend
    ctx.apply(backend_objects(ctx.spec, image))
    argv = ctx.kubectl("rollout", "status", f"deployment/{b.deployment}", "-n", b.namespace,
                       "--timeout", f"{b.rollout_timeout}s")
    if ctx.offline:
        ctx.read(argv)
        return image
    if ctx.runner.dry_run:
        ctx.runner.planned.append(argv)
        return image
    res = ctx.runner.run(argv, timeout=b.rollout_timeout + 30, check=False, mutating=False)
    if res.returncode != 0:
        pulls = oci.pull_problems(ctx.runner, ctx.cluster.kubectl(), b.namespace)
        diag = kube.diagnose(ctx.runner, ctx.cluster.kubectl(), b.namespace)
        raise DucklakeInfraError(ctx.runner.redactor(
            pull_failure(f"backend deployment {b.namespace}/{b.deployment}", pulls, ctx.opts)
            or f"backend deployment {b.namespace}/{b.deployment} did not become ready within "
            f"{b.rollout_timeout}s: {(res.stderr or res.stdout).strip()}") +
            ctx.runner.redactor(f"\n{diag}"))
    return image


def pull_failure(what: str, pulls: Sequence[str], opts: Options) -> str:
    """'Images could not be pulled' with each image and the node's message, or ''."""
    if not pulls:
        return ""
    hint = (f"the registry {opts.registry.host} must be reachable from the nodes under the "
            "same name, and they must be allowed to pull (node credentials, or "
            "registry.image_pull_secret in the stack spec)" if opts.registry else
            "push the images to a registry the nodes can pull from (--registry)")
    return (f"{what} is not ready: the node could not pull its image(s):\n  "
            + "\n  ".join(pulls) + f"\n  what to do: {hint}")


def cluster_image_keys(spec: StackSpec) -> list[str]:
    """Images the cluster runs: every release's images and the backend."""
    return sorted({k for r in spec.releases.values() for k in r.images.values()}
                  | {BACKEND_IMAGE_KEY})


def push_images(ctx: _Ctx, refs: dict[str, str]) -> str:
    """Tag + push what the registry lacks; ``refs`` becomes digest references."""
    reg = ctx.opts.registry
    assert reg is not None
    todo = {k: refs[k] for k in cluster_image_keys(ctx.spec) if "@" not in refs[k]}
    pushed = oci.push_all(ctx.runner, reg, todo)
    for p in pushed:
        refs[p.key] = p.ref
        ctx.progress.say(f"    {p.key}: {p.action} {p.ref}")
    ctx.pushed = pushed
    return oci.push_summary(pushed)


def ensure_pull_secret(ctx: _Ctx) -> str:
    """registry.image_pull_secret: it must exist in every stack namespace (we never create
    it: it holds the user's credentials). Charts without an imagePullSecrets value (our
    PostgreSQL chart) pull through the namespace's default ServiceAccount."""
    name = ctx.spec.image_pull_secret
    if not name:
        return "none (the nodes' own credentials)"
    namespaces = sorted(set(ctx.spec.namespaces.values()))
    missing = []
    for ns in namespaces:
        res = ctx.read(ctx.kubectl("get", "secret", name, "-n", ns, "-o", "name",
                                   "--ignore-not-found"))
        if res is not None and not res.stdout.strip():
            missing.append(ns)
    if missing:
        raise DucklakeInfraError(
            f"imagePullSecret {name!r} (stack spec registry.image_pull_secret) is missing in "
            f"namespace(s) {', '.join(missing)}: create it there, e.g. kubectl create secret "
            f"docker-registry {name} -n <namespace> --docker-server=<registry> "
            "--docker-username=... --docker-password=... (credentials never pass through "
            "ducklake-infra)")
    pg_ns = ctx.spec.postgresql.namespace
    ctx.apply([{"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": pg_ns},
                "imagePullSecrets": [{"name": name}]}])
    return f"{name} in {', '.join(namespaces)}"


def push_only(spec: StackSpec, runner: Runner, progress: Progress,
              opts: Options) -> list[oci.Pushed]:
    """``ducklake-infra images push``: build the backend if needed, push what the
    registry lacks; no cluster involved. Returns the digest references."""
    if opts.registry is None:
        raise DucklakeInfraError("images push needs --registry HOST[:PORT]/PREFIX")
    ctx = _Ctx(None, spec, runner, progress, opts)
    refs = image_refs(spec, opts)
    with progress.step("backend image") as info:
        info["note"] = build_backend_image(ctx, refs)
    with progress.step(f"push images to {opts.registry.base}") as info:
        info["note"] = push_images(ctx, refs)
    return ctx.pushed


def _ensure_cluster(ctx: _Ctx) -> str:
    c = ctx.cluster
    if c.is_kind:
        existed = c.exists() if isinstance(c, KindCluster) else True
        c.ensure()
        return f"{c.context} ({'reused' if existed else 'created'})"
    if ctx.offline:   # plan: the context's API server did not answer (checked once)
        return f"context {c.context} (unreachable)"
    c.ensure()
    return f"context {c.context}"


def _step(progress: Progress, name: str, fn, *args) -> None:
    with progress.step(name) as info:
        info["note"] = fn(*args)


def up(cluster, spec: StackSpec, runner: Runner, progress: Progress,
       opts: Options | None = None, *, _ctx: _Ctx | None = None) -> dict[str, str]:
    """Create or update the whole stack; returns the resolved image references."""
    opts = opts or Options()
    runner.redactor.allow(*spec.public_names())
    ctx = _ctx or _Ctx(cluster, spec, runner, progress, opts)
    start = time.monotonic()
    if not cluster.is_kind and opts.registry is None and BACKEND_IMAGE_KEY not in opts.images:
        raise DucklakeInfraError(
            f"context {cluster.context!r} is not a kind cluster: images cannot be loaded into "
            "it. Pass --registry HOST[:PORT]/PREFIX, a registry the cluster pulls from (up "
            "pushes the images there and installs them by digest), or give every image with "
            "--image backend=<ref> (and --image minio=/mc=/postgresql=<ref>)")
    refs = image_refs(spec, opts)
    if not runner.dry_run:
        check_charts(spec, opts)
    if cluster.is_kind and opts.registry is None and not runner.dry_run:
        # the backend image builds while the kind cluster starts: neither needs the
        # other, and both take a while on a cold run (a plan keeps its order instead)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backend-image") as pool:
            built = pool.submit(_step, progress, "backend image", build_backend_image, ctx, refs)
            _step(progress, "cluster", _ensure_cluster, ctx)
            built.result()
        _step(progress, "load images into kind", load_images, ctx, refs)
    else:
        _step(progress, "cluster", _ensure_cluster, ctx)
        if opts.registry is not None:
            _step(progress, "backend image", build_backend_image, ctx, refs)
            _step(progress, f"push images to {opts.registry.base}", push_images, ctx, refs)
        elif cluster.is_kind:
            _step(progress, "backend image", build_backend_image, ctx, refs)
            _step(progress, "load images into kind", load_images, ctx, refs)
    if not runner.dry_run and (cluster.is_kind or opts.registry is not None):
        _step(progress, "provenance (SBOM, digests)", record_provenance, ctx, refs)
    with progress.step("namespaces") as info:
        info["note"] = ensure_namespaces(ctx)
    with progress.step("secrets") as info:
        info["note"] = ensure_secrets(ctx)
    with progress.step("network policies") as info:
        pols = netpol.network_policies(spec)
        ctx.apply(pols)
        info["note"] = f"{len(pols)} applied"
    if opts.registry is not None or spec.image_pull_secret:
        with progress.step("image pull secret") as info:
            info["note"] = ensure_pull_secret(ctx)
    if opts.registry is not None and not runner.dry_run:
        with progress.step("images in the registry") as info:
            oci.verify_present(runner, opts.registry,
                             {k: refs[k] for k in cluster_image_keys(spec)})
            info["note"] = "all present by digest"
    with progress.step("helm releases (parallel)") as info:
        info["note"] = install_releases(ctx, refs)
    with progress.step("backend deployment") as info:
        info["note"] = deploy_backend(ctx, refs[BACKEND_IMAGE_KEY])
    if not runner.dry_run:
        progress.say(up_summary(spec, cluster, progress, time.monotonic() - start))
    return refs


def up_summary(spec: StackSpec, cluster, progress: Progress, total: float) -> str:
    lines = [f"DuckLake stack is up on {cluster.context} in {total:.1f}s", "  phases:"]
    for name, took, note in progress.timings:
        lines.append(f"    {name:<28} {took:7.1f}s  {note}")
    m, p, b = spec.minio, spec.postgresql, spec.backend
    lines += [
        f"  MinIO:      {m.endpoint}  buckets {spec.raw_bucket}, {spec.lake_bucket}  "
        f"(root credentials: Secret {m.namespace}/{m.root_secret.name})",
        f"  PostgreSQL: {p.host}:{p.port}  catalog {p.catalog.database} owned by "
        f"{p.catalog.owner}",
        f"  Backend:    {b.service.name}.{b.namespace}.svc:{b.service.ports[0]}  "
        f"(deployment {b.deployment})",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class PlannedCommand:
    """One command of a plan, redacted: a read listed because the cluster is absent,
    or what goes on its stdin (names of objects, never their values)."""
    argv: list[str]
    shell: str                     # the command as one shell-quoted line
    read: bool = False
    stdin: tuple[str, ...] = ()

    @property
    def line(self) -> str:
        if self.read:
            return f"{self.shell}   # read"
        return f"{self.shell}   # stdin: {', '.join(self.stdin)}" if self.stdin else self.shell


def plan(cluster, spec: StackSpec, runner: Runner, progress: Progress,
         opts: Options | None = None) -> list[str]:
    """Every command ``up`` would run, changing nothing, one line each (see
    :func:`plan_commands`)."""
    return [c.line for c in plan_commands(cluster, spec, runner, progress, opts)]


def plan_commands(cluster, spec: StackSpec, runner: Runner, progress: Progress,
                  opts: Options | None = None) -> list[PlannedCommand]:
    """Every command ``up`` would run, changing nothing (``runner`` must be dry-run).

    Reads run when the cluster exists; otherwise they are listed too, marked ``read``.
    """
    if not runner.dry_run:
        raise ValueError("plan needs a Runner(dry_run=True)")
    opts = opts or Options()
    offline = False
    try:
        if cluster.is_kind:
            offline = isinstance(cluster, KindCluster) and not cluster.exists()
        else:
            cluster.ensure()
    except (CommandError, Unreachable) as exc:
        # said even by a quiet plan: the reads it lists were not run. A kubeconfig or
        # context that is wrong is an error, not an absent cluster.
        print(f"note: cluster not reachable ({str(exc).splitlines()[0]}); reads are listed, "
              "not run", file=progress.stream)
        offline = True
    if offline:
        rec = _RecordingRunner(runner)
        cluster.runner = rec
        ctx = _Ctx(cluster, spec, rec, progress, opts, offline=True)
    else:
        ctx = _Ctx(cluster, spec, runner, progress, opts)
    up(cluster, spec, ctx.runner, progress, opts, _ctx=ctx)
    marks = ctx.read_marks | getattr(ctx.runner, "read_marks", set())
    out = [PlannedCommand([runner.redactor(a) for a in argv],
                          runner.redactor(" ".join(_quote(a) for a in argv)),
                          read=i in marks, stdin=tuple(ctx.stdin.get(i, ())))
           for i, argv in enumerate(ctx.runner.planned)]
    if ctx.runner is not runner:
        runner.planned[:] = ctx.runner.planned
        runner.planned_inputs.clear()
        runner.planned_inputs.update(ctx.runner.planned_inputs)
    return out


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


class _RecordingRunner(Runner):
    """Plan without a cluster: records every command (reads marked) and runs none."""

    def __init__(self, base: Runner):
        super().__init__(readonly=base.readonly, redactor=base.redactor, env=base.base_env,
                         dry_run=True)
        self.base = base  # local reads (docker image inspect) still run through it
        self.read_marks: set[int] = set()

    def run(self, argv, *, mutating=None, **kw):  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.check_allowed(argv)
        if mutating is False:
            self.read_marks.add(len(self.planned))
        if kw.get("input") is not None:
            self.planned_inputs[len(self.planned)] = kw["input"]
        self.planned.append(argv)
        return Result(argv, 0, "", "", 0.0)


def down(cluster, spec: StackSpec, runner: Runner, progress: Progress, *,
         keep_cluster: bool = False, purge: bool = False) -> str:
    """Remove the stack. A kind cluster of the spec's name is ours: deleted whole
    unless ``keep_cluster``. Elsewhere: helm uninstall + our backend objects only;
    PVCs, the generated Secrets and the namespaces stay (they hold the data and its
    credentials) unless ``purge``: then the spec's PVCs and the Secrets we generated
    go too, and namespaces only when ducklake-infra created them (label)."""
    if cluster.is_kind and isinstance(cluster, KindCluster):
        if not cluster.exists():
            return f"kind cluster {cluster.name} does not exist: nothing to do"
        if not keep_cluster:
            with progress.step(f"delete kind cluster {cluster.name}"):
                cluster.keep = False
                cluster.delete()
            return f"deleted kind cluster {cluster.name}"
    b = spec.backend
    with progress.step("delete backend"):
        runner.run([*cluster.kubectl(), "delete", "--namespace", b.namespace,
                    "--ignore-not-found", "--wait=true", f"deployment/{b.deployment}",
                    f"service/{b.service.name}", f"configmap/{b.configmap}"],
                   timeout=180, mutating=True)
    with progress.step("delete network policies"):
        label = ",".join(f"{k}={v}" for k, v in netpol.MANAGED.items())
        for ns in sorted(set(spec.namespaces.values())):
            runner.run([*cluster.kubectl(), "delete", "networkpolicies", "--namespace", ns,
                        "-l", label, "--ignore-not-found"], timeout=120, mutating=True)
    with progress.step("helm uninstall"):
        for rel in spec.releases.values():
            runner.run([*cluster.helm(), "uninstall", rel.name, "--namespace", rel.namespace,
                        "--ignore-not-found", "--wait", "--timeout", f"{rel.timeout}s"],
                       timeout=rel.timeout + 60, mutating=True)
    pvcs = [f"{p.namespace}/{p.name}" for p in spec.all_pvcs()]
    generated = [x for x in spec.all_secrets() if x is not spec.postgresql.superuser_secret]
    secrets = [f"{x.namespace}/{x.name}" for x in generated]
    namespaces = sorted(set(spec.namespaces.values()))
    if not purge:
        return ("stack removed (helm releases " + ", ".join(spec.releases) +
                f", backend objects in {b.namespace}); kept PVCs " + ", ".join(pvcs) +
                " (the data), the generated Secrets " + ", ".join(secrets) +
                " and the namespaces " + ", ".join(namespaces) +
                " (delete them by hand, or run down again with --purge)")
    with progress.step("delete PVCs and generated Secrets"):
        by_ns: dict[str, list[str]] = {}
        for p in spec.all_pvcs():
            by_ns.setdefault(p.namespace, []).append(f"persistentvolumeclaim/{p.name}")
        for x in generated:
            by_ns.setdefault(x.namespace, []).append(f"secret/{x.name}")
        for ns, objs in sorted(by_ns.items()):
            runner.run([*cluster.kubectl(), "delete", "--namespace", ns, "--ignore-not-found",
                        "--wait=true", *objs], timeout=300, mutating=True)
    label = ",".join(f"{k}={v}" for k, v in kube.MANAGED_BY.items())
    ours: list[str] = []
    res = runner.run([*cluster.kubectl(), "get", "namespaces", "-l", label, "-o", "name"],
                     timeout=60, check=False, mutating=False)
    have = {ln.split("/", 1)[-1] for ln in (res.stdout or "").split()}
    ours = [n for n in namespaces if n in have]
    if ours:
        with progress.step("delete namespaces we created"):
            runner.run([*cluster.kubectl(), "delete", "--ignore-not-found", "--wait=true",
                        *[f"namespace/{n}" for n in ours]], timeout=600, mutating=True)
    kept = [n for n in namespaces if n not in ours]
    return ("stack removed with its data: PVCs " + ", ".join(pvcs) + ", Secrets " +
            ", ".join(secrets) + (", namespaces " + ", ".join(ours) if ours else "") +
            ("; left behind: namespaces " + ", ".join(kept) + " (not created by ducklake-infra)"
             if kept else ""))
