"""Stack images through the user's registry: push, skip by digest, digest references.

``ducklake-infra up --registry host[:port]/prefix`` (and ``images push``) tag every
image the cluster needs as ``<registry>/<name>:<tag>``, push only what the registry
does not hold yet (the local image's RepoDigest for that repository + a manifest
presence check), and hand back references BY DIGEST (``repo@sha256:...``) for the
Helm releases and the backend Deployment.

Credentials: ``docker push`` and ``docker manifest inspect`` read the user's Docker
configuration themselves; nothing here reads, writes or prints a credential.
Every command goes through the one Runner (fake-runner unit tests).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Mapping, Sequence

from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.runner import CommandError, Runner

PLACEHOLDER_DIGEST = "sha256:<digest-after-push>"
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PUSH_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64})")
_HOST = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+|\[[0-9a-fA-F:]+\]|[A-Za-z0-9-]+)"
                   r"(:[0-9]{1,5})?$")
_PATH = re.compile(r"^[a-z0-9]+([._-]+[a-z0-9]+)*(/[a-z0-9]+([._-]+[a-z0-9]+)*)*$")

# what the registry said, classified from docker's stderr
_UNREACHABLE = ("connection refused", "no such host", "i/o timeout", "dial tcp",
                "network is unreachable", "tls: ", "x509:", "server gave http response",
                "context deadline exceeded", "no route to host", "eof")
_DENIED = ("denied", "unauthorized", "authentication required", "forbidden",
           "insufficient_scope")
_MISSING = ("no such manifest", "manifest unknown", "not found")


class RegistryError(DucklakeInfraError):
    """The registry could not be reached, refused us, or lacks an image."""


@dataclass(frozen=True)
class Registry:
    host: str          # host[:port]
    prefix: str        # repository path prefix (may be "")
    insecure: bool     # plain http (localhost, 127.x, or asked for)

    @property
    def base(self) -> str:
        return f"{self.host}/{self.prefix}" if self.prefix else self.host

    def target(self, local_ref: str) -> str:
        """``ducklake-infra/minio:TAG`` -> ``<host>/<prefix>/minio:TAG``."""
        repo, tag = split_ref(local_ref)
        name = repo.rsplit("/", 1)[-1]
        return f"{self.base}/{name}:{tag}"

    def owns(self, ref: str) -> bool:
        return ref.startswith(self.base + "/")


def parse_registry(text: str, *, insecure: bool | None = None) -> Registry:
    """``host[:port]/prefix`` (no scheme). localhost and 127.x are plain http, as for dockerd."""
    where = f"--registry {text!r}"
    if "://" in text:
        raise DucklakeInfraError(f"{where}: give host[:port]/prefix without a scheme, "
                                 f"e.g. --registry {text.split('://', 1)[1]}")
    host, _, prefix = text.strip("/").partition("/")
    if not host or not _HOST.match(host):
        raise DucklakeInfraError(f"{where}: expected host[:port]/prefix, "
                                 "e.g. registry.example.com/team/ducklake or localhost:5000/ducklake")
    if prefix and not _PATH.match(prefix):
        raise DucklakeInfraError(f"{where}: {prefix!r} is not a valid repository path "
                                 "(lowercase letters, digits, '.', '_', '-', '/')")
    bare = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    local = bare in ("localhost", "[::1]") or bare.startswith("127.")
    return Registry(host=host, prefix=prefix, insecure=local if insecure is None else insecure)


@dataclass(frozen=True)
class ImageRef:
    """An image reference ``repo[:tag][@digest]``, parsed once for every user (the
    provisioner's pushes and Helm values, the suites' drift checks)."""
    repo: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, ref: str) -> "ImageRef":
        name, _, digest = ref.partition("@")
        slash, colon = name.rfind("/"), name.rfind(":")
        if colon > slash:        # a registry port (host:5000/x) is not a tag
            return cls(name[:colon], name[colon + 1:], digest or None)
        return cls(name, None, digest or None)

    @property
    def version(self) -> str:
        """What pins the content: the digest if any, else the tag (``latest`` if none)."""
        return self.digest or self.tag or "latest"


_DOCKER_HUB = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")


def familiar(ref: str) -> str:
    """``ref`` in Docker's familiar form, so that two spellings of one image compare equal:
    Docker Hub's registry names and its ``library/`` namespace dropped
    (``docker.io/library/postgres:16`` -> ``postgres:16``, ``index.docker.io/bitnami/x`` ->
    ``bitnami/x``); a reference to any other registry is kept as it is."""
    for host in _DOCKER_HUB:
        if ref.startswith(host):
            ref = ref[len(host):]
            break
    return ref.removeprefix("library/")


def split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` -> (repo, tag or ``latest``); the digest is dropped."""
    r = ImageRef.parse(ref)
    return r.repo, r.tag or "latest"


def digest_ref(target: str, digest: str) -> str:
    """``host/p/minio:TAG`` + digest -> ``host/p/minio@sha256:...``."""
    return f"{split_ref(target)[0]}@{digest}"


def classify(stderr: str) -> str:
    """'missing', 'denied' or 'unreachable' (anything else: 'error')."""
    s = stderr.lower()
    if any(m in s for m in _MISSING):
        return "missing"
    if any(m in s for m in _DENIED):
        return "denied"
    if any(m in s for m in _UNREACHABLE):
        return "unreachable"
    return "error"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


# ---- reads ----------------------------------------------------------------------------------
def local_image_id(runner: Runner, ref: str) -> str | None:
    res = runner.run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], timeout=60,
                     check=False, mutating=False)
    return res.stdout.strip() if res.returncode == 0 and res.stdout.strip() else None


def local_repo_digest(runner: Runner, ref: str, repo: str) -> str | None:
    """The digest of ``ref`` in ``repo`` that the engine recorded at its last push/pull."""
    res = runner.run(["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref],
                     timeout=60, check=False, mutating=False)
    if res.returncode != 0:
        return None
    try:
        digests = json.loads(res.stdout or "null") or []
    except ValueError:
        return None
    for d in digests:
        name, _, dig = d.partition("@")
        if name == repo and DIGEST.fullmatch(dig):
            return dig
    return None


def manifest_present(runner: Runner, reg: Registry, ref: str) -> bool:
    """Does the registry hold ``ref`` (``repo@sha256:...``)? Raises RegistryError when
    the registry cannot be asked (unreachable, credentials refused)."""
    argv = ["docker", "manifest", "inspect", *(["--insecure"] if reg.insecure else []), ref]
    res = runner.run(argv, timeout=60, check=False, mutating=False)
    if res.returncode == 0:
        return True
    err = res.stderr or res.stdout
    kind = classify(err)
    if kind == "missing":
        return False
    if kind == "denied":
        raise RegistryError(
            f"registry {reg.host} refused to show {ref}: {_last_line(err)}\n"
            f"  log in with `docker login {reg.host}` (docker uses your Docker configuration) "
            f"and check read access to {reg.base}")
    raise RegistryError(
        f"registry {reg.host} is unreachable: {_last_line(err)}\n"
        f"  check the address (--registry {reg.base}), that it answers on "
        f"{'http' if reg.insecure else 'https'}://{reg.host}/v2/, and your network")


def check_reachable(runner: Runner, reg: Registry) -> None:
    """One cheap manifest query (an unknown digest): 'missing' means the registry answered."""
    probe = f"{reg.base}/ducklake-infra-probe@sha256:{'0' * 64}"
    manifest_present(runner, reg, probe)


# ---- push ------------------------------------------------------------------------------------
@dataclass
class Pushed:
    key: str
    local: str
    target: str
    ref: str          # by digest
    action: str       # "pushed" | "present" | "planned"


def push_one(runner: Runner, reg: Registry, key: str, local: str, timeout: float = 1800,
             *, registry_down: bool = False) -> Pushed:
    target = reg.target(local)
    repo = split_ref(target)[0]
    if registry_down:   # plan only: the registry cannot be asked, so every push is listed
        runner.run(["docker", "tag", local, target], mutating=True)
        runner.run(["docker", "push", target], mutating=True)
        return Pushed(key, local, target, f"{repo}@{PLACEHOLDER_DIGEST}", "planned")
    if local_image_id(runner, local) is None:
        if runner.dry_run:
            # plan: an image `up` builds first is not there yet
            runner.run(["docker", "tag", local, target], mutating=True)
            runner.run(["docker", "push", target], mutating=True)
            return Pushed(key, local, target, f"{repo}@{PLACEHOLDER_DIGEST}", "planned")
        raise RegistryError(f"image {local} ({key}) is not in the local Docker engine: "
                            "run `ducklake-infra bundle build` (or pull/build it), "
                            f"or pass --image {key}=<ref>")
    digest = local_repo_digest(runner, local, repo)
    if digest and manifest_present(runner, reg, f"{repo}@{digest}"):
        return Pushed(key, local, target, f"{repo}@{digest}", "present")
    runner.run(["docker", "tag", local, target], timeout=60, mutating=True)
    if runner.dry_run:
        runner.run(["docker", "push", target], mutating=True)
        return Pushed(key, local, target, f"{repo}@{digest or PLACEHOLDER_DIGEST}", "planned")
    try:
        res = runner.run(["docker", "push", target], timeout=timeout, mutating=True)
    except CommandError as exc:
        err = exc.stderr_tail
        kind = classify(err)
        if kind == "denied":
            raise RegistryError(
                f"registry {reg.host} denied the push of {target}: {_last_line(err)}\n"
                f"  docker pushes with your Docker configuration: run `docker login {reg.host}` "
                f"as a user that may push to {reg.base}") from None
        if kind == "unreachable":
            raise RegistryError(f"registry {reg.host} is unreachable while pushing {target}: "
                                f"{_last_line(err)}") from None
        raise RegistryError(f"docker push {target} failed: {_last_line(err)}") from None
    m = _PUSH_DIGEST.search(res.stdout)
    digest = m.group(1) if m else local_repo_digest(runner, local, repo)
    if not digest:
        raise RegistryError(f"docker push {target} reported no digest")
    return Pushed(key, local, target, f"{repo}@{digest}", "pushed")


def push_all(runner: Runner, reg: Registry, images: Mapping[str, str], *,
             workers: int = 4) -> list[Pushed]:
    """Push every ``key -> local ref`` (in parallel); registry checked first.
    A plan (dry-run runner) goes on when the registry cannot be asked, listing every push."""
    down = False
    try:
        check_reachable(runner, reg)
    except RegistryError as exc:
        if not runner.dry_run:
            raise
        down = True
        print(f"# note: {str(exc).splitlines()[0]}; every image is listed as a push",
              file=sys.stderr)
    out: dict[str, Pushed] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def one(item: tuple[str, str]) -> None:
        key, local = item
        try:
            p = push_one(runner, reg, key, local, registry_down=down)
            with lock:
                out[key] = p
        except BaseException as exc:
            with lock:
                errors.append(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(images)))) as pool:
        list(pool.map(one, sorted(images.items())))
    if errors:
        raise errors[0]
    return [out[k] for k in sorted(images)]


def push_summary(pushed: Sequence[Pushed]) -> str:
    n = sum(1 for p in pushed if p.action == "pushed")
    have = sum(1 for p in pushed if p.action == "present")
    planned = sum(1 for p in pushed if p.action == "planned")
    text = f"{n} pushed, {have} already present"
    if planned:
        text += f", {planned} to push"
    if pushed and have == len(pushed):
        text += " (all present)"
    return text


def verify_present(runner: Runner, reg: Registry, refs: Mapping[str, str]) -> None:
    """Right before installing: every digest reference in the registry must be there."""
    for key, ref in sorted(refs.items()):
        if not reg.owns(ref) or PLACEHOLDER_DIGEST in ref:
            continue
        if not manifest_present(runner, reg, ref):
            raise RegistryError(
                f"image {ref} ({key}) is missing from registry {reg.host} at install time "
                "(deleted or garbage-collected after the push?): run "
                f"`ducklake-infra images push --registry {reg.base}` or up again")


# ---- digest references in Helm values ----------------------------------------------------------
def helm_image_parts(ref: str) -> tuple[str, str]:
    """(repository, tag) for charts that render ``{{repository}}:{{tag}}``.

    A digest reference becomes repository ``repo@sha256`` and tag ``<hex>`` so that the
    rendered image is exactly ``repo@sha256:<hex>``."""
    if "@" in ref:
        repo, digest = ref.split("@", 1)
        repo = split_ref(repo)[0]
        algo, _, hexpart = digest.partition(":")
        return f"{repo}@{algo}", hexpart
    return split_ref(ref)


# ---- pull failures, explained ------------------------------------------------------------------
PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull",
                "RegistryUnavailable")


def pull_problems(runner: Runner, kubectl: Sequence[str], namespace: str) -> list[str]:
    """Pods stuck pulling an image: pod, container, image and the node's message
    (container status + the latest 'Failed' event of the pod). Never raises."""
    try:
        res = runner.run([*kubectl, "get", "pods", "-n", namespace, "-o", "json"], timeout=30,
                         check=False, mutating=False)
        pods = json.loads(res.stdout or "{}").get("items", []) if res.returncode == 0 else []
    except Exception:
        return []
    stuck: list[tuple[str, str, str, str, str]] = []
    for pod in pods:
        st = pod.get("status") or {}
        name = pod.get("metadata", {}).get("name", "?")
        for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in PULL_REASONS:
                stuck.append((name, cs.get("name", "?"), cs.get("image", "?"),
                              waiting["reason"], waiting.get("message", "")))
    if not stuck:
        return []
    events: dict[str, str] = {}
    try:
        res = runner.run([*kubectl, "get", "events", "-n", namespace, "-o", "json"], timeout=30,
                         check=False, mutating=False)
        items = json.loads(res.stdout or "{}").get("items", []) if res.returncode == 0 else []
        items.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
        for e in items:
            obj = e.get("involvedObject") or {}
            msg = e.get("message", "")
            if obj.get("kind") == "Pod" and e.get("reason") == "Failed" and "pull" in msg.lower():
                events[obj.get("name", "")] = msg
    except Exception:
        pass
    lines = []
    for pod, container, image, reason, message in stuck:
        node = events.get(pod) or message or "(no message)"
        lines.append(f"pod {namespace}/{pod} container {container}: {reason} for image {image}: "
                     f"{node}")
    return lines
