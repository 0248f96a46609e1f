"""Cluster backends: a kind cluster we may own, or an existing kube context.

``KindCluster`` creates (or reuses) a kind cluster from the bundle's node image,
with an isolated kubeconfig file per cluster, and deletes it only when it
created it (and was not asked to keep it). ``ExistingCluster`` never creates,
never deletes and never edits kubeconfig files. Both hand out the argument
prefixes for kubectl and helm, so ``--kubeconfig/--context`` are always explicit
and ``os.environ`` is never touched.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ducklake_infra.provision import kubeconfig
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.oci import local_image_id
from ducklake_infra.provision.runner import CommandError, Runner


class Unreachable(DucklakeInfraError):
    """The context is configured but its API server does not answer (or refuses us)."""


class Cluster(Protocol):
    name: str
    context: str
    kubeconfig: Path | None
    is_kind: bool
    owned: bool

    def kubectl(self) -> list[str]: ...
    def helm(self) -> list[str]: ...
    def ensure(self) -> None: ...
    def delete(self) -> None: ...
    def load_images(self, images: list[str]) -> list[str]: ...


# API server audit logging in every kind cluster we create: it is how the read-only
# audit proves, from outside, that it changed nothing (tests/cluster).
AUDIT_DIR_IN_NODE = "/etc/kubernetes/audit"
AUDIT_LOG_IN_NODE = "/var/log/kubernetes/audit/audit.log"
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # who did what to which object: metadata only, never request bodies (Secrets!)
  - level: Metadata
"""


def kind_config(audit_dir: Path, containerd_patches: tuple[str, ...] = (),
                workers: int = 0) -> str:
    """kind cluster config: one control plane with API server audit logging, ``workers``
    worker nodes (the distributed profile), plus optional ``containerdConfigPatches``
    (TOML snippets, e.g. a registry mirror)."""
    patches = ""
    if containerd_patches:
        patches = "containerdConfigPatches:\n" + "".join(
            "  - |\n" + "".join(f"    {line}\n" for line in p.strip("\n").splitlines())
            for p in containerd_patches)
    return f"""\
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
{patches}nodes:
  - role: control-plane
    extraMounts:
      - hostPath: {audit_dir}
        containerPath: {AUDIT_DIR_IN_NODE}
        readOnly: true
    kubeadmConfigPatches:
      - |
        apiVersion: kubeadm.k8s.io/v1beta3
        kind: ClusterConfiguration
        apiServer:
          extraArgs:
            audit-policy-file: {AUDIT_DIR_IN_NODE}/policy.yaml
            audit-log-path: {AUDIT_LOG_IN_NODE}
            audit-log-maxsize: "100"
            audit-log-maxbackup: "2"
          extraVolumes:
            - name: audit-policy
              hostPath: {AUDIT_DIR_IN_NODE}
              mountPath: {AUDIT_DIR_IN_NODE}
              readOnly: true
              pathType: DirectoryOrCreate
            - name: audit-log
              hostPath: {AUDIT_LOG_IN_NODE.rsplit('/', 1)[0]}
              mountPath: {AUDIT_LOG_IN_NODE.rsplit('/', 1)[0]}
              pathType: DirectoryOrCreate
""" + "  - role: worker\n" * workers


def _kubeconfig_args(kubeconfig: Path | None) -> list[str]:
    return ["--kubeconfig", str(kubeconfig)] if kubeconfig else []


@dataclass
class KindCluster:
    runner: Runner
    name: str = "ducklake"
    node_image: str = ""
    kubeconfig_dir: Path = Path("~/.cache/ducklake-infra/kubeconfig")
    config_path: Path | None = None
    keep: bool = False
    create_timeout: float = 600
    containerd_patches: tuple[str, ...] = ()
    workers: int = 0                 # worker nodes beside the control plane
    is_kind: bool = True
    owned: bool = field(default=False, init=False)
    # what the node's runtime said of each image load_images looked at (crictl status),
    # so that image_digests does not ask again
    node_images: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def context(self) -> str:
        return f"kind-{self.name}"

    @property
    def kubeconfig(self) -> Path:
        return Path(self.kubeconfig_dir).expanduser() / f"kind-{self.name}.yaml"

    def kubectl(self) -> list[str]:
        return ["kubectl", "--kubeconfig", str(self.kubeconfig), "--context", self.context]

    def helm(self) -> list[str]:
        return ["helm", "--kubeconfig", str(self.kubeconfig), "--kube-context", self.context]

    def exists(self) -> bool:
        out = self.runner.run(["kind", "get", "clusters"], timeout=60, mutating=False).stdout
        return self.name in out.split()

    def node_container(self) -> str:
        return f"{self.name}-control-plane"

    def node_containers(self) -> list[str]:
        """Every node's container, the control plane first (kind's names)."""
        return [self.node_container()] + [
            f"{self.name}-worker{'' if i == 1 else i}" for i in range(1, self.workers + 1)]

    def restart_node(self) -> None:
        """Restart every node's container (a whole-cluster restart: what a host reboot or
        a Docker engine update does to a kind cluster)."""
        self.runner.run(["docker", "restart", *self.node_containers()], timeout=300,
                        mutating=True)

    def nodes_match(self) -> bool:
        """The cluster has the nodes the spec asks for (a control plane and ``workers``)."""
        out = self.runner.run(["kind", "get", "nodes", "--name", self.name], timeout=60,
                              check=False, mutating=False).stdout.split()
        return sorted(out) == sorted(self.node_containers())

    def node_running(self) -> bool:
        res = self.runner.run(["docker", "inspect", "--format", "{{.State.Running}}",
                               self.node_container()], timeout=60, check=False, mutating=False)
        return res.stdout.strip() == "true"

    def node_image_current(self) -> bool:
        """The node runs the node image the bundle holds now (by image ID)."""
        have = self.runner.run(["docker", "inspect", "--format", "{{.Image}}",
                                self.node_container()], timeout=60, check=False,
                               mutating=False).stdout.strip()
        return bool(have) and have == local_image_id(self.runner, self.node_image)

    def ensure(self) -> None:
        """Create the cluster, or reuse a running one of the same name that runs the
        current node image."""
        if self.exists():
            if self.node_running() and self.node_image_current() and self.nodes_match():
                self.runner.run(["kind", "export", "kubeconfig", "--name", self.name,
                                 "--kubeconfig", str(self.kubeconfig)], timeout=60)
                return
            # A kind node does not survive a Docker engine restart (its address and
            # mounts change), and one from an older node image lacks what the bundle
            # now puts in a node (e.g. the NetworkPolicy enforcer), and one of another
            # shape (the profile's workers) is another cluster: recreated, not reused.
            self.runner.run(["kind", "delete", "cluster", "--name", self.name,
                             "--kubeconfig", str(self.kubeconfig)], timeout=300)
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        # No --wait: kind returns once kubeadm's API server answers (kind applies the CNI
        # and the StorageClass through it); the node turns Ready about 19 s later, and
        # everything up does next needs only the API server (Helm waits for its pods).
        argv = self.create_argv()
        try:
            self.runner.run(argv, timeout=self.create_timeout + 120)
        except CommandError as exc:
            raise DucklakeInfraError(
                f"kind could not create cluster {self.name!r}: {exc.stderr_tail.strip() or exc}\n"
                f"  node logs: kind export logs --name {self.name}; then "
                f"kind delete cluster --name {self.name}") from None
        self.owned = True

    def create_argv(self, wait: bool = False) -> list[str]:
        """``kind create cluster`` for this cluster (with ``wait``: until the nodes are
        Ready, as the benchmark's floor measures it)."""
        config = self.config_path or self.write_default_config()
        return ["kind", "create", "cluster", "--name", self.name, "--image", self.node_image,
                "--kubeconfig", str(self.kubeconfig),
                *(["--wait", f"{int(self.create_timeout)}s"] if wait else []),
                "--retain", "--config", str(config)]

    def write_default_config(self) -> Path:
        base = Path(self.kubeconfig_dir).expanduser().parent / "kind" / self.name
        audit = base / "audit"
        audit.mkdir(parents=True, exist_ok=True)
        (audit / "policy.yaml").write_text(AUDIT_POLICY)
        cfg = base / "kind-config.yaml"
        cfg.write_text(kind_config(audit, tuple(self.containerd_patches), self.workers))
        return cfg

    def audit_log(self) -> str:
        """The API server's audit log (JSON lines), read from the node."""
        return self.runner.run(["docker", "exec", self.node_container(), "cat",
                                AUDIT_LOG_IN_NODE], timeout=120, mutating=False).stdout

    def delete(self) -> None:
        if self.keep:
            return
        self.runner.run(["kind", "delete", "cluster", "--name", self.name,
                         "--kubeconfig", str(self.kubeconfig)], timeout=300)

    def load_images(self, images: list[str]) -> list[str]:
        """Load images that the node's containerd does not hold yet (by image ID); the
        ones loaded."""
        missing = [i for i in images if not self.node_has_image(i)]
        if missing:
            self.runner.run(["kind", "load", "docker-image", "--name", self.name, *missing],
                            timeout=900)
            for i in missing:          # loaded now: what the node holds has changed
                self.node_images.pop(i, None)
        return missing

    def image_digests(self, images: list[str]) -> list[tuple[str, str, str]]:
        """(ref, image ID, digest) for each repository digest the node's runtime holds an
        image under: the ``imageID`` its Pods report (``kind load`` names an image
        ``import-<date>@sha256:<manifest>``); images without one report their ID."""
        out = []
        for ref in images:
            st = (self.node_images[ref] if ref in self.node_images
                  else self.node_image_status(ref)) or {}
            for rd in st.get("repoDigests") or []:
                digest = str(rd).rpartition("@")[2]
                if st.get("id") and digest.startswith("sha256:"):
                    out.append((ref, str(st["id"]), digest))
        return out

    def node_has_image(self, image: str) -> bool:
        want = local_image_id(self.runner, image)
        if want is None:
            raise DucklakeInfraError(f"image {image} is not in the local Docker engine; "
                                     "run: ducklake-infra bundle build")
        self.node_images[image] = self.node_image_status(image)
        return (self.node_images[image] or {}).get("id") == want

    def node_image_status(self, image: str) -> dict | None:
        """What the node's runtime holds under ``image`` (``crictl inspecti`` status: id,
        repoTags, repoDigests); None when it holds nothing under that name."""
        res = self.runner.run(["docker", "exec", self.node_container(), "crictl", "inspecti",
                               "-o", "json", image], timeout=60, check=False, mutating=False)
        if res.returncode != 0:
            return None
        try:
            status = json.loads(res.stdout)["status"]
        except (ValueError, KeyError, TypeError):
            return None
        return status if isinstance(status, dict) else None


@dataclass
class ExistingCluster:
    """A cluster we did not create: addressed only by its kube context."""

    runner: Runner
    context: str
    kubeconfig: Path | None = None
    is_kind: bool = False
    owned: bool = False
    # the API server's /version, read by ensure() (None until then)
    server_version: dict | None = None

    @property
    def name(self) -> str:
        return self.context

    def kubectl(self) -> list[str]:
        return ["kubectl", *_kubeconfig_args(self.kubeconfig), "--context", self.context]

    def helm(self) -> list[str]:
        return ["helm", *_kubeconfig_args(self.kubeconfig), "--kube-context", self.context]

    def ensure(self, verified: "ExistingCluster | None" = None) -> None:
        """Check that the kubeconfig reads, the context exists and the API server
        answers; create nothing. Each failure is one line with the tool's reason; the
        kubeconfig's credentials are redacted from it (and from every later error).
        ``verified``: the same context, already checked in this process (pytest's session
        start): only the credentials are registered with this runner's Redactor."""
        paths = kubeconfig.files(self.kubeconfig, self.runner.base_env)
        self.runner.redactor.add(*kubeconfig.credentials(paths))
        if verified is not None and (verified.context, verified.kubeconfig) == \
                (self.context, self.kubeconfig) and verified.server_version is not None:
            self.server_version = verified.server_version
            return
        where = self.kubeconfig or f"the default kubeconfig ({os.pathsep.join(map(str, paths))})"
        if self.kubeconfig and not paths[0].is_file():
            raise DucklakeInfraError(f"kubeconfig {self.kubeconfig}: no such file")
        res = self.runner.run(["kubectl", *_kubeconfig_args(self.kubeconfig), "config",
                               "get-contexts", "-o", "name"], timeout=30, check=False,
                              mutating=False)
        if res.returncode != 0:
            raise DucklakeInfraError(f"kubeconfig {where} is not usable: "
                                     f"{self.runner.redactor(kubeconfig.reason(res.stderr))}")
        contexts = res.stdout.split()
        if self.context not in contexts:
            has = (f"it has {', '.join(contexts[:5])}" + (", ..." if len(contexts) > 5 else "")
                   if contexts else "it has no contexts")
            raise DucklakeInfraError(f"unknown kube context {self.context!r} in {where} "
                                     f"({has}); see: kubectl config get-contexts")
        res = self.runner.run([*self.kubectl(), "get", "--raw", "/version",
                               "--request-timeout", "10s"], timeout=30, check=False,
                              mutating=False)
        if res.returncode != 0:
            raise Unreachable(
                f"API server of context {self.context!r} is unreachable or refused us: "
                f"{self.runner.redactor(kubeconfig.reason(res.stderr))}")
        try:
            version = json.loads(res.stdout)
        except ValueError:
            version = None
        self.server_version = version if isinstance(version, dict) else {}

    def delete(self) -> None:
        """Never deletes a cluster we did not create."""

    def load_images(self, images: list[str]) -> list[str]:
        raise DucklakeInfraError(
            f"context {self.context!r} is not a kind cluster: images cannot be loaded into it; "
            "push them to a registry the cluster can pull from")


def wait_for(predicate, timeout: float, interval: float = 2.0, what: str = "condition",
             explain=None):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes.

    On timeout raise an error that says what was not ready; ``explain()`` may add
    diagnostics (events, pod statuses, log tails).
    """
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    detail = ""
    if explain:
        try:
            detail = "\n" + explain()
        except Exception as exc:  # diagnostics must not hide the timeout
            detail = f"\n(could not collect diagnostics: {exc})"
    raise DucklakeInfraError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def select_cluster(runner: Runner, cache_root: Path, cluster: str, *, kind_name: str,
                   node_image: str, kubeconfig: str | Path | None = None,
                   keep: bool = False, workers: int = 0) -> "KindCluster | ExistingCluster":
    """The one place the CLI and the pytest plugin turn ``--cluster`` into a cluster:
    ``kind`` is the spec's kind cluster, its kubeconfig kept under the bundle cache
    (``<cache>/kubeconfig``, whatever ``--cache-dir`` says); anything else is an existing
    context, read through ``kubeconfig`` when given."""
    if cluster == "kind":
        if kubeconfig:
            raise DucklakeInfraError("--kubeconfig only applies to --cluster CONTEXT; the kind "
                                     "cluster has its own kubeconfig file")
        return KindCluster(runner, name=kind_name, node_image=node_image,
                           kubeconfig_dir=Path(cache_root) / "kubeconfig", keep=keep,
                           workers=workers)
    return ExistingCluster(runner, context=cluster,
                           kubeconfig=Path(kubeconfig).expanduser() if kubeconfig else None)
