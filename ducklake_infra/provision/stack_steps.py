"""The steps of ``up``, each a function of one :class:`Context`: the cluster, the
namespaces, the generated Secrets, the Helm releases, the backend image and deployment,
images pushed to a registry. Orchestration (the order, plan, down) is in
:mod:`ducklake_infra.provision.stack`."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from ducklake_infra.provision import kube, oci
from ducklake_infra.provision.cluster import KindCluster
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.render import (BACKEND_IMAGE_KEY, CACERT, Options, backend_objects,
                                             helm_upgrade_argv)
from ducklake_infra.provision.runner import CommandError, Result, Runner
from ducklake_infra.provision.spec import ReleaseSpec, StackSpec


class Context:
    """What every step works with: the cluster, the spec, the one Runner, the options;
    in a plan also what it listed (reads, objects on stdin)."""


    def __init__(self, cluster, spec: StackSpec, runner: Runner, progress: Progress,
                 opts: Options, offline: bool = False):
        self.cluster, self.spec, self.runner, self.progress, self.opts = \
            cluster, spec, runner, progress, opts
        self.offline = offline          # plan without a reachable cluster: reads are listed
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
            self.runner.record(argv, read=True)
            return None
        return self.runner.run(argv, timeout=timeout, check=False, mutating=False)

    def apply(self, objects: Sequence[dict], timeout: float = 120) -> None:
        # Server-side apply: client-side apply would copy every object, Secrets
        # included, into a last-applied-configuration annotation (SEC-ANN-001).
        argv = self.kubectl("apply", "--server-side", "--field-manager", "ducklake-infra",
                            "--force-conflicts", "-f", "-")
        if self.runner.dry_run:     # a plan names the objects on stdin, never their values
            self.runner.check_allowed(argv)
            self.runner.record(argv, input=kube.as_list(objects), stdin=[
                f"{o['kind']} {o['metadata'].get('namespace', '')}/{o['metadata']['name']}"
                .replace(" /", " ") for o in objects])
            return
        self.runner.run(argv, input=kube.as_list(objects), timeout=timeout, mutating=True)


def _get_secret(ctx: Context, name: str, namespace: str) -> dict[str, str] | None:
    res = ctx.read(ctx.kubectl("get", "secret", name, "-n", namespace, "-o", "json",
                               "--ignore-not-found"))
    if res is None or res.returncode != 0 or not res.stdout.strip():
        return None
    data = kube.decode_secret(json.loads(res.stdout))
    ctx.runner.redactor.add(*data.values())
    return data


def ensure_namespaces(ctx: Context) -> str:
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


def ensure_secrets(ctx: Context) -> str:
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
    # maintenance's identity: the only one that deletes lake files (render.py says why)
    muser, ms3 = s.minio.maintenance_user, s.backend.maintenance_s3_secret
    muser_data = ensure(muser.secret, {muser.secret.keys[0]: kube.random_password(40)},
                        {muser.secret.keys[0]})
    ensure(ms3, {ms3.keys[0]: muser.access_key,
                 ms3.keys[1]: muser_data.get(muser.secret.keys[0], "")}, set())
    return f"created {', '.join(created)}" if created else "all present (reused)"


def release_is_current(ctx: Context, rel: ReleaseSpec, digest: str) -> bool:
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


def installed_profile(workloads: Sequence[dict], spec) -> dict[str, str]:
    """What the installed workloads say the profile is, per component ('minio',
    'postgresql'); absent: not installed. MinIO: a Deployment (standalone) or StatefulSet
    (distributed) of its name; PostgreSQL: Patroni in its pod template (distributed)."""
    out: dict[str, str] = {}
    for w in workloads:
        md = w.get("metadata") or {}
        name, ns, kind = md.get("name"), md.get("namespace"), w.get("kind")
        if (name, ns) == (spec.minio.fullname, spec.minio.namespace):
            out["minio"] = "distributed" if kind == "StatefulSet" else "standalone"
        elif (name, ns, kind) == (spec.postgresql.fullname, spec.postgresql.namespace,
                                  "StatefulSet"):
            cmds = " ".join(" ".join([*(c.get("command") or []), *(c.get("args") or [])])
                            for c in (((w.get("spec") or {}).get("template") or {}).get("spec")
                                      or {}).get("containers") or [])
            out["postgresql"] = "distributed" if "patroni" in cmds else "standalone"
    return out


def refuse_profile_switch(ctx: Context) -> None:
    """A release installed in another profile is not converted in place: MinIO's
    Deployment volume does not become a StatefulSet's claims, a single PostgreSQL's data
    directory does not become a Patroni cluster. Refused, with the way out."""
    spec = ctx.spec
    namespaces = sorted({spec.minio.namespace, spec.postgresql.namespace})
    workloads: list[dict] = []
    for ns in namespaces:
        res = ctx.read(ctx.kubectl("get", "deployments,statefulsets", "-n", ns, "-o", "json"))
        if res is None or res.returncode != 0:
            return      # nothing readable (no namespace yet, or a plan offline): nothing to refuse
        workloads += json.loads(res.stdout or "{}").get("items", [])
    wrong = {c: p for c, p in installed_profile(workloads, spec).items() if p != spec.profile}
    if wrong:
        raise DucklakeInfraError(
            f"the stack runs in another profile than the spec's {spec.profile!r} ("
            + ", ".join(f"{c}: {p}" for c, p in sorted(wrong.items())) + "): a release is not "
            "converted in place (its data would not follow). Either keep the installed profile "
            "in the spec, or remove the stack with its data first (`ducklake-infra down --purge`; "
            "copy the lake out before, e.g. `mc mirror`), then `up`")


SYNC_STANDBY_WAIT_S = 180


def wait_sync_standby(ctx: Context, timeout_s: float = SYNC_STANDBY_WAIT_S) -> str:
    """Distributed profile: Helm's --wait ends when the members are Ready, but Patroni
    publishes the in-sync standby on a later loop (up to loop_wait). ``up`` returns once
    the planned number is published, so a commit acknowledged from then on is on two
    members (HA-PG-001 checks the same)."""
    spec, d = ctx.spec, ctx.spec.distributed
    pg = spec.postgresql
    argv = ctx.kubectl("get", "configmap", f"{pg.release}-sync", "-n", pg.namespace, "-o", "json")
    if ctx.offline or ctx.runner.dry_run:       # a plan lists the read
        ctx.runner.record(argv, read=True)
        return "listed"
    deadline = time.monotonic() + timeout_s
    standbys: list[str] = []
    while True:
        res = ctx.read(argv)
        if res is not None and res.returncode == 0:
            standbys = kube.sync_standbys(json.loads(res.stdout or "{}"))
            if len(standbys) >= d.pg_sync_count:
                return f"in sync: {', '.join(standbys)}"
        if time.monotonic() > deadline:
            diag = kube.diagnose(ctx.runner, ctx.cluster.kubectl(), pg.namespace)
            raise DucklakeInfraError(ctx.runner.redactor(
                f"PostgreSQL (Patroni) published {len(standbys)} in-sync standby(s) within "
                f"{timeout_s:.0f}s, the plan says {d.pg_sync_count}: see `kubectl -n "
                f"{pg.namespace} logs` of the members") + f"\n{ctx.runner.redactor(diag)}")
        time.sleep(1)


def install_releases(ctx: Context, refs: Mapping[str, str]) -> str:
    """helm upgrade --install every release in parallel; skip unchanged ones."""
    refuse_profile_switch(ctx)
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


def build_backend_image(ctx: Context, refs: Mapping[str, str]) -> str:
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


def load_images(ctx: Context, refs: Mapping[str, str], keys: list[str] | None = None) -> str:
    """Load into the kind node(s) the images of ``keys`` (default: every image the cluster
    runs) that the node lacks."""
    images = [refs[k] for k in (cluster_image_keys(ctx.spec) if keys is None else keys)]
    try:
        loaded = ctx.cluster.load_images(images)
    except DucklakeInfraError:
        if not ctx.runner.dry_run:
            raise
        # plan: an image that `up` would build first is not there yet
        ctx.runner.record(["kind", "load", "docker-image", "--name", ctx.cluster.name, *images])
        return f"{len(images)} images"
    held = len(images) - len(loaded)
    return (f"loaded {', '.join(loaded)}" if loaded else "none loaded") + \
        (f"; {held} already in the node" if held else "")


def record_provenance(ctx: Context, refs: Mapping[str, str]) -> str:
    """What the audit needs to match a running image to its SBOM (SUPPLY-SBOM-001): the
    backend's SBOM (the bundle's own are written by ``bundle sbom``) and every digest the
    images now run under that is not their image ID (``image_digests``)."""
    from ducklake_infra.provision.bundle import image_digests, sbom
    sbom_dir = ctx.opts.layout.sbom
    notes = [sbom.ensure_backend(ctx.local_runner, ctx.opts.layout, ctx.spec)]
    if ctx.pushed:
        ids = {p.key: oci.local_image_id(ctx.local_runner, p.local) for p in ctx.pushed}
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


def deploy_backend(ctx: Context, image: str) -> str:
    b = ctx.spec.backend
    ctx.apply(backend_objects(ctx.spec, image))
    argv = ctx.kubectl("rollout", "status", f"deployment/{b.deployment}", "-n", b.namespace,
                       "--timeout", f"{b.rollout_timeout}s")
    if ctx.offline:
        ctx.read(argv)
        return image
    if ctx.runner.dry_run:
        ctx.runner.record(argv)
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


def push_images(ctx: Context, refs: dict[str, str]) -> str:
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


def ensure_pull_secret(ctx: Context) -> str:
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


def ensure_cluster(ctx: Context) -> str:
    c = ctx.cluster
    if c.is_kind:
        existed = c.exists() if isinstance(c, KindCluster) else True
        c.ensure()
        return f"{c.context} ({'reused' if existed else 'created'})"
    if ctx.offline:   # plan: the context's API server did not answer (checked once)
        return f"context {c.context} (unreachable)"
    c.ensure()
    return f"context {c.context}"


IDENTITY_ANSWER_S = 60      # a (re)started server answers AccessDenied until its IAM is loaded


def minio_serves_identities(ctx: Context) -> str:
    """Distributed profile: every MinIO server serves the backend's and the query path's
    identities, each asked directly through a port-forward to its pod; a server that
    refuses them for IDENTITY_ANSWER_S (a server just started answers AccessDenied until
    it has loaded its users: found in CI right after `up`) is restarted
    (provision/minio_identity.py says why)."""
    from ducklake_infra.provision import minio_identity
    from ducklake_infra.provision.portforward import PortForward
    spec, m = ctx.spec, ctx.spec.minio
    pods = list(spec.minio_server_pods)
    if ctx.offline or ctx.runner.dry_run:       # a plan lists what it would ask
        for pod in pods:
            ctx.runner.record(ctx.kubectl("-n", m.namespace, "port-forward", f"pod/{pod}",
                                          f":{m.api_port}"), read=True)
        return "listed"
    users = []
    for user, bucket in ((m.backend_user, spec.raw_bucket), (m.query_user, spec.lake_bucket),
                         (m.maintenance_user, spec.lake_bucket)):
        data = _get_secret(ctx, user.secret.name, user.secret.namespace) or {}
        if not data.get(user.secret.keys[0]):
            raise DucklakeInfraError(f"Secret {user.secret.namespace}/{user.secret.name} has no "
                                     f"key {user.secret.keys[0]}: run `ducklake-infra up` again")
        users.append((user.access_key, data[user.secret.keys[0]], bucket))

    def refused(pod: str) -> str | None:
        deadline = time.monotonic() + IDENTITY_ANSWER_S
        while True:                         # asked at least once, whatever the window
            why = None
            try:
                with PortForward(ctx.runner, ctx.cluster, m.namespace, f"pod/{pod}",
                                 m.api_port, timeout=20) as pf:
                    for key, secret, bucket in users:
                        why = minio_identity.bucket_check(f"127.0.0.1:{pf.local_port}", key,
                                                          secret, bucket, m.use_ssl)
                        if why:
                            break
            except CommandError as exc:
                why = f"port-forward: {exc.reason or exc}"
            if why is None or time.monotonic() >= deadline:
                return why
            time.sleep(2)   # starting, or loading its users: a refusal must last to count

    def restart(pod: str) -> None:
        ctx.runner.run(ctx.kubectl("-n", m.namespace, "delete", "pod", pod, "--wait=true"),
                       timeout=120, mutating=True)
        ctx.runner.run(ctx.kubectl("-n", m.namespace, "rollout", "status",
                                   f"statefulset/{m.fullname}", "--timeout=180s"),
                       timeout=200, mutating=False)

    return minio_identity.serve_identities(pods, refused, restart)
