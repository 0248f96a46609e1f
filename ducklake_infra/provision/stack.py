"""Provision the DuckLake stack described by ``stack.yaml``: up, down, plan (status:
:mod:`ducklake_infra.provision.status`).

``up`` is idempotent: a second run creates no Secret, skips every Helm release
whose chart version and values hash are unchanged (the hash is stored in the
release's own values as ``ducklakeInfra.specHash``), skips the backend image
build when the content hash tag exists, and re-applies unchanged manifests.
Names come from the spec only; every command goes through the one Runner.
"""

from __future__ import annotations

import copy
import time
from concurrent.futures import ThreadPoolExecutor

from ducklake_infra.provision import kube, netpol, oci, stack_steps
from ducklake_infra.provision.cluster import KindCluster, Unreachable
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.render import (BACKEND_IMAGE_KEY, Options, backend_objects, check_charts,
                                           image_refs)
from ducklake_infra.provision.runner import CommandError, PlannedCommand, Runner
from ducklake_infra.provision.spec import StackSpec


def push_only(spec: StackSpec, runner: Runner, progress: Progress,
              opts: Options) -> list[oci.Pushed]:
    """``ducklake-infra images push``: build the backend if needed, push what the
    registry lacks; no cluster involved. Returns the digest references."""
    if opts.registry is None:
        raise DucklakeInfraError("images push needs --registry HOST[:PORT]/PREFIX")
    ctx = stack_steps.Context(None, spec, runner, progress, opts)
    refs = image_refs(spec, opts)
    with progress.step("backend image") as info:
        info["note"] = stack_steps.build_backend_image(ctx, refs)
    with progress.step(f"push images to {opts.registry.base}") as info:
        info["note"] = stack_steps.push_images(ctx, refs)
    return ctx.pushed


def _step(progress: Progress, name: str, fn, *args) -> None:
    with progress.step(name) as info:
        info["note"] = fn(*args)


def up(cluster, spec: StackSpec, runner: Runner, progress: Progress,
       opts: Options | None = None, *, _ctx: stack_steps.Context | None = None) -> dict[str, str]:
    """Create or update the whole stack; returns the resolved image references."""
    opts = opts or Options()
    runner.redactor.allow(*spec.public_names())
    ctx = _ctx or stack_steps.Context(cluster, spec, runner, progress, opts)
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
    overlap = cluster.is_kind and opts.registry is None and not runner.dry_run
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="images") as pool:
        loading = stack_loaded = None
        if overlap:
            # the backend image builds while the kind cluster starts, then loads into the
            # node while the namespaces, Secrets and Helm releases go in: only the backend
            # Deployment needs it. The releases' images (baked into the node image; an
            # image of another profile, e.g. postgresql-ha, is not) are loaded meanwhile
            # when the node lacks them, and the Helm releases wait for that. A plan keeps
            # the sequential order instead.
            built = pool.submit(_step, progress, "backend image",
                                stack_steps.build_backend_image, ctx, refs)
            _step(progress, "cluster", stack_steps.ensure_cluster, ctx)
            built.result()
            release_keys = [k for k in stack_steps.cluster_image_keys(spec)
                            if k != BACKEND_IMAGE_KEY]
            stack_loaded = pool.submit(_step, progress, "release images into kind",
                                       stack_steps.load_images, ctx, refs, release_keys)
            loading = pool.submit(_load_and_record, progress, ctx, refs, stack_loaded)
        else:
            _step(progress, "cluster", stack_steps.ensure_cluster, ctx)
            if opts.registry is not None:
                _step(progress, "backend image", stack_steps.build_backend_image, ctx, refs)
                _step(progress, f"push images to {opts.registry.base}",
                      stack_steps.push_images, ctx, refs)
            elif cluster.is_kind:
                _step(progress, "backend image", stack_steps.build_backend_image, ctx, refs)
                _step(progress, "load images into kind", stack_steps.load_images, ctx, refs)
            if not runner.dry_run and (cluster.is_kind or opts.registry is not None):
                _step(progress, "provenance (SBOM, digests)", stack_steps.record_provenance,
                      ctx, refs)
        _install_cluster_objects(ctx, refs, stack_loaded)
        if spec.profile == "distributed":
            _step(progress, "patroni in-sync standby", stack_steps.wait_sync_standby, ctx)
            _step(progress, "minio servers serve the stack's identities",
                  stack_steps.minio_serves_identities, ctx)
        if loading is not None:
            loading.result()
    with progress.step("backend deployment") as info:
        info["note"] = stack_steps.deploy_backend(ctx, refs[BACKEND_IMAGE_KEY])
    if not runner.dry_run:
        progress.say(up_summary(spec, cluster, progress, time.monotonic() - start))
    return refs


def _load_and_record(progress: Progress, ctx: stack_steps.Context, refs, stack_loaded) -> None:
    _step(progress, "backend image into kind", stack_steps.load_images, ctx, refs,
          [BACKEND_IMAGE_KEY])
    stack_loaded.result()     # the digests of every image the node runs
    _step(progress, "provenance (SBOM, digests)", stack_steps.record_provenance, ctx, refs)


def _install_cluster_objects(ctx: stack_steps.Context, refs, release_images=None) -> None:
    """Namespaces, Secrets, NetworkPolicies, the pull secret and the Helm releases: what
    needs only the API server (not the backend image, not a Ready node: Helm waits for
    its pods). ``release_images``: the loading of the releases' images, which the Helm
    releases wait for (a pod whose image is missing would try to pull it and back off)."""
    progress, runner, opts, spec = ctx.progress, ctx.runner, ctx.opts, ctx.spec
    with progress.step("namespaces") as info:
        info["note"] = stack_steps.ensure_namespaces(ctx)
    with progress.step("secrets") as info:
        info["note"] = stack_steps.ensure_secrets(ctx)
    with progress.step("network policies") as info:
        pols = netpol.network_policies(spec)
        ctx.apply(pols)
        info["note"] = f"{len(pols)} applied"
    if opts.registry is not None or spec.image_pull_secret:
        with progress.step("image pull secret") as info:
            info["note"] = stack_steps.ensure_pull_secret(ctx)
    if opts.registry is not None and not runner.dry_run:
        with progress.step("images in the registry") as info:
            oci.verify_present(runner, opts.registry,
                               {k: refs[k] for k in stack_steps.cluster_image_keys(spec)})
            info["note"] = "all present by digest"
    if release_images is not None:
        release_images.result()
    with progress.step("helm releases (parallel)") as info:
        info["note"] = stack_steps.install_releases(ctx, refs)


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
        # the cluster's own commands (kind create, load) are recorded too: by a copy of it
        # bound to the recorder, so the caller's cluster keeps its runner
        rec = _RecordingRunner(runner)
        cluster = copy.copy(cluster)
        cluster.runner = rec
        ctx = stack_steps.Context(cluster, spec, rec, progress, opts, offline=True)
    else:
        ctx = stack_steps.Context(cluster, spec, runner, progress, opts)
    up(cluster, spec, ctx.runner, progress, opts, _ctx=ctx)
    if ctx.runner is not runner:
        runner.planned_commands[:] = ctx.runner.planned_commands
    return [c.redacted(runner.redactor) for c in runner.planned_commands]


class _RecordingRunner(Runner):
    """Plan without a cluster: records every command (reads marked) and runs none."""

    def __init__(self, base: Runner):
        super().__init__(readonly=base.readonly, redactor=base.redactor, env=base.base_env,
                         dry_run=True)
        self.base = base  # local reads (docker image inspect) still run through it

    def run(self, argv, *, mutating=None, **kw):  # type: ignore[override]
        argv = [str(a) for a in argv]
        self.check_allowed(argv)
        return self.record(argv, input=kw.get("input"), read=mutating is False)


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
                    "--ignore-not-found", "--wait=true",
                    *(f"{o['kind'].lower()}/{o['metadata']['name']}"
                      for o in backend_objects(spec, "-"))],
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
    return _purge(cluster, spec, runner, progress, generated, (pvcs, secrets, namespaces))


def _purge(cluster, spec: StackSpec, runner: Runner, progress: Progress, generated,
           names: tuple[list[str], list[str], list[str]]) -> str:
    """``down --purge`` after the releases went: the spec's PVCs, the Secrets we generated,
    and the namespaces ducklake-infra created (label). ``names``: the PVCs, Secrets and
    namespaces as ``down`` words them."""
    pvcs, secrets, namespaces = names
    with progress.step("delete PVCs and generated Secrets"):
        by_ns: dict[str, list[str]] = {}
        for p in spec.all_pvcs():
            by_ns.setdefault(p.namespace, []).append(f"persistentvolumeclaim/{p.name}")
        for x in generated:
            by_ns.setdefault(x.namespace, []).append(f"secret/{x.name}")
        for name in spec.patroni_configmaps:   # a fresh bootstrap must not find the old id
            by_ns.setdefault(spec.postgresql.namespace, []).append(f"configmap/{name}")
        for ns, objs in sorted(by_ns.items()):
            runner.run([*cluster.kubectl(), "delete", "--namespace", ns, "--ignore-not-found",
                        "--wait=true", *objs], timeout=300, mutating=True)
    label = ",".join(f"{k}={v}" for k, v in kube.MANAGED_BY.items())
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
