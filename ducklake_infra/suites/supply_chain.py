"""Provenance of what runs (issue 15, item 2): read-only checks of the stack's images.

* SUPPLY-PIN-001: every container and init container of the stack's workloads runs a
  pinned image. Per container, in this order:

  - FAIL: no image, no tag and no digest (the runtime takes ``latest``), or a tag of
    :data:`MUTABLE_TAGS` without a digest;
  - PASS: referenced by digest (``repo@sha256:...``; a tag beside it is decoration);
  - WARN: a tag only, and no pod reports the digest it runs (not started, or gone), or
    pods of one workload run different digests under that one tag;
  - PASS: a tag only on a cluster whose images ``ducklake-infra up`` loads into the node
    (kind: no registry can move the tag), with the running digest recorded;
  - WARN: a tag only on any other cluster: the registry can move it, and the next pull
    (a new node, an eviction) may run other content.

  A tag that names a release or a content hash (``RELEASE.2026-...``, the backend's
  source hash) is not "mutable" the way ``latest`` is; it still is a tag.
* SUPPLY-SRC-001: no image comes from a source known to be withdrawn or archived
  (``withdrawn_sources.yaml``), by its reference or by the repository its running
  imageID names; a digest does not help, nothing there gets fixes.

Evidence: one line per workload container with the reference, the imageID(s) its pods
report (``containerStatuses[].imageID``) and the verdict.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ducklake_infra.provision.oci import DIGEST, ImageRef, familiar
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.checks.core import CheckInputMissing, _stack_namespaces, check
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec
from ducklake_infra.suites.catalog import FAIL, PASS, WARN, ControlsError, Result, _read_yaml, \
    result

WITHDRAWN_FILE = Path(__file__).resolve().parent / "withdrawn_sources.yaml"

# tags that move by design: FAIL without a digest, whatever the cluster
MUTABLE_TAGS = frozenset({"latest", "stable", "edge", "main", "master", "nightly", "dev",
                          "develop", "canary", "rolling", "current", "lts"})

# kinds whose pod template is judged; a ReplicaSet or Pod with an owner is judged
# through its owner (whose pods report what runs)
TEMPLATE_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod")


# ---- what runs ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Image:
    """One container of a workload: its reference and the imageIDs its pods report."""
    where: str                   # "Deployment/storage/minio container minio"
    ref: str                     # as written in the pod template ("" when none)
    image_ids: tuple[str, ...]   # containerStatuses[].imageID of the pods running that ref

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(sorted({d for d in map(running_digest, self.image_ids) if d}))

    def line(self) -> str:
        return (f"{self.where}: image {self.ref or '(none)'}; running "
                f"{', '.join(self.image_ids) or '(no pod reports an imageID)'}")


def running_digest(image_id: str) -> str | None:
    """The digest of a containerStatus imageID: ``sha256:...`` (an image loaded into the
    node), ``repo@sha256:...`` (pulled, or imported under a name), either behind Docker's
    ``docker-pullable://`` or ``docker://``; None when there is none."""
    d = image_id.split("://", 1)[-1].rpartition("@")[2]
    return d if DIGEST.fullmatch(d) else None


def running_repo(image_id: str) -> str | None:
    """The repository a ``repo@sha256:...`` imageID names (familiar form), else None."""
    repo, at, _ = image_id.split("://", 1)[-1].partition("@")
    return familiar(repo) if at and repo else None


def _controlled(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("ownerReferences"))


def _ids_for(pod: dict, name: str, ref: str) -> list[str]:
    """imageIDs the pod reports for its container ``name`` when that runs ``ref``."""
    spec = {c.get("name"): c.get("image") for c in containers(pod_spec(pod), init=True)}
    if name not in spec or familiar(spec[name] or "") != familiar(ref):
        return []
    st = pod.get("status") or {}
    return [cs["imageID"] for cs in (st.get("containerStatuses") or [])
            + (st.get("initContainerStatuses") or [])
            if cs.get("name") == name and cs.get("imageID")]


def stack_images(objs: Objects, spec: StackSpec) -> list[Image]:
    """Every container and init container of the stack's workloads (not the history:
    ReplicaSets and Pods with an owner are seen through it)."""
    out = []
    for ns in sorted(_stack_namespaces(spec)):
        for kind in TEMPLATE_KINDS:
            for w in objs.all(kind, ns):
                if kind in ("ReplicaSet", "Pod") and _controlled(w):
                    continue
                pods = [w] if kind == "Pod" else objs.pods_of(w)
                for c in containers(pod_spec(w), init=True):
                    ref = c.get("image") or ""
                    ids = sorted({i for p in pods for i in _ids_for(p, c.get("name"), ref)})
                    out.append(Image(f"{name_of(w)} container {c.get('name')}", ref, tuple(ids)))
    if not out:
        raise CheckInputMissing("no workload of the stack was found in namespaces "
                                f"{sorted(_stack_namespaces(spec))}")
    return out


# ---- SUPPLY-PIN-001 ---------------------------------------------------------------------------
def pin_verdict(img: Image, loaded: bool) -> tuple[str, str]:
    """(PASS|WARN|FAIL, why) for one container, by the rule in the module docstring."""
    if not img.ref:
        return FAIL, "no image reference"
    r = ImageRef.parse(img.ref)
    if r.digest:
        return PASS, "pinned by digest"
    if r.tag is None:
        return FAIL, "no tag and no digest: the runtime takes latest, whatever it is that day"
    if r.tag.lower() in MUTABLE_TAGS:
        return FAIL, f"tag {r.tag!r} moves by design and there is no digest"
    digests = img.digests
    if not digests:
        return WARN, f"tag {r.tag!r} only, and no pod reports the digest it runs"
    if len(digests) > 1:
        return WARN, f"pods run {len(digests)} different digests under the one tag {r.tag!r}"
    if loaded:
        return PASS, (f"tag {r.tag!r} of an image loaded into the node (no registry can "
                        "move it), its running digest recorded")
    pulled = [i for i in img.image_ids if running_repo(i) == familiar(r.repo)]
    pin = f"; pin it as {r.repo}@{digests[0]}" if pulled else ""
    return WARN, (f"tag {r.tag!r} without a digest: the registry can move it and the next "
                    f"pull may run other content{pin}")


@check("SUPPLY-PIN-001")
def check_images_pinned(objs: Objects, spec: StackSpec, *, loaded: bool = False) -> Result:
    """``loaded``: the cluster's images were loaded into its nodes by ``ducklake-infra up``
    (the spec's kind cluster; ``live.images_loaded``); on any other cluster a tag alone
    is a WARN."""
    lists: dict[str, list[str]] = {FAIL: [], WARN: [], PASS: []}
    for img in stack_images(objs, spec):
        status, why = pin_verdict(img, loaded)
        lists[status].append(f"{img.line()} -> {status}: {why}")
    fails, warns = lists[FAIL], lists[WARN]
    # a FAIL keeps every container's line: the warnings too
    return result(fails + [f"warning: {w}" for w in warns] if fails else [], lists[PASS], warns)


# ---- SUPPLY-SRC-001 ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Withdrawn:
    prefix: str                  # as written; ending in "/": a whole namespace
    reason: str
    since: str
    references: tuple[str, ...]

    def matches(self, repo: str) -> bool:
        repo, key = familiar(repo), familiar(self.prefix)
        return repo.startswith(key) if key.endswith("/") else repo == key

    def describe(self) -> str:
        return (f"withdrawn source {self.prefix} since {self.since}: {self.reason} "
                f"({', '.join(self.references)})")


_FIELDS = {"prefix", "reason", "since", "references"}
_SINCE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")
_HOST = re.compile(r"^(localhost|[a-z0-9-]+(\.[a-z0-9-]+)+)(:\d+)?$")


def parse_withdrawn(raw: Any, fname: str = WITHDRAWN_FILE.name) -> tuple[Withdrawn, ...]:
    """The entries of ``withdrawn_sources.yaml``; a ControlsError names what is wrong."""
    def bad(where: str, msg: str) -> ControlsError:
        return ControlsError(f"{fname}: {where}: {msg}")
    if not isinstance(raw, dict) or set(raw) != {"sources"} \
            or not isinstance(raw["sources"], list) or not raw["sources"]:
        raise ControlsError(f"{fname}: expected a mapping with one key, 'sources', a "
                            "non-empty list")
    out: dict[str, Withdrawn] = {}
    for i, e in enumerate(raw["sources"]):
        where = f"sources[{i}]"
        if not isinstance(e, dict):
            raise bad(where, "expected a mapping")
        if set(e) != _FIELDS:
            unknown, missing = sorted(set(e) - _FIELDS), sorted(_FIELDS - set(e))
            raise bad(where, "; ".join(x for x in (
                unknown and f"unknown key(s) {', '.join(unknown)}",
                missing and f"missing key(s) {', '.join(missing)}") if x))
        prefix, reason, since, refs = e["prefix"], e["reason"], e["since"], e["references"]
        if not isinstance(prefix, str) or not _HOST.match(prefix.split("/", 1)[0]) \
                or "/" not in prefix.rstrip("/") or prefix != prefix.strip().lower():
            raise bad(f"{where}.prefix", f"{prefix!r} is not a lowercase registry/repository "
                      "prefix naming its registry (docker.io/..., quay.io/...)")
        r = ImageRef.parse(prefix.rstrip("/"))
        if r.tag or r.digest:
            raise bad(f"{where}.prefix", f"{prefix!r} names a tag or digest, not a source")
        if not isinstance(reason, str) or not reason.strip():
            raise bad(f"{where}.reason", "missing or not a string")
        if isinstance(since, _dt.date):
            since = since.isoformat()
        if not isinstance(since, str) or not _SINCE.match(since):
            raise bad(f"{where}.since", f"{since!r} is not YYYY, YYYY-MM or YYYY-MM-DD (quoted)")
        if not isinstance(refs, list) or not refs or not all(
                isinstance(u, str) and re.match(r"^https://\S+$", u) for u in refs):
            raise bad(f"{where}.references", "expected a non-empty list of https URLs")
        key = familiar(prefix)
        if not key.strip("/"):
            raise bad(f"{where}.prefix", f"{prefix!r} names no repository")
        if key in out:
            raise bad(f"{where}.prefix", f"{prefix!r} is listed twice")
        out[key] = Withdrawn(prefix, " ".join(reason.split()), since, tuple(refs))
    return tuple(out.values())


def load_withdrawn(path: Path | None = None) -> tuple[Withdrawn, ...]:
    path = Path(path or WITHDRAWN_FILE)
    return parse_withdrawn(_read_yaml(path), path.name)


@functools.lru_cache(maxsize=1)
def withdrawn_sources() -> tuple[Withdrawn, ...]:
    """The package's list (loaded once)."""
    return load_withdrawn()


def withdrawn_matches(img: Image, sources: tuple[Withdrawn, ...]
                      ) -> Iterator[tuple[str, Withdrawn]]:
    """(what, entry) for the reference and each running repository of ``img`` that a
    withdrawn source covers."""
    names = [("image", ImageRef.parse(img.ref).repo)] if img.ref else []
    running = sorted({running_repo(i) for i in img.image_ids} - {None})
    names += [("running imageID of", r) for r in running]
    for what, repo in names:
        for w in sources:
            if w.matches(repo):
                yield f"{what} {repo}", w


@check("SUPPLY-SRC-001")
def check_image_sources(objs: Objects, spec: StackSpec, *,
                        sources: tuple[Withdrawn, ...] | None = None) -> Result:
    """``sources``: the withdrawn sources (default: the package's withdrawn_sources.yaml)."""
    sources = withdrawn_sources() if sources is None else sources
    problems, good = [], []
    for img in stack_images(objs, spec):
        hits = list(withdrawn_matches(img, sources))
        for what, w in hits:
            problems.append(f"{img.line()} -> FAIL: {what} is a {w.describe()}")
        if not hits:
            good.append(f"{img.line()} -> PASS: no withdrawn source")
    return result(problems, good)


# ---- SUPPLY-SBOM-001 --------------------------------------------------------------------------
@dataclass(frozen=True)
class Sbom:
    """One SBOM of the directory, by what its subject is (``metadata.component``)."""
    file: str           # its name in the directory
    image_id: str       # the image ID it describes
    image: str          # the reference it describes
    components: int
    sha256: str         # of the file, for the evidence

    def describe(self) -> str:
        return f"SBOM {self.file} ({self.components} components, sha256 {self.sha256[:12]})"


@dataclass(frozen=True)
class SbomIndex:
    directory: str
    by_id: dict[str, Sbom]
    aliases: dict[str, Any]        # digest -> image_digests.Alias
    unreadable: tuple[str, ...] = ()

    def resolve(self, digest: str) -> tuple[Sbom | None, str]:
        """The SBOM of the image a running digest is, and how the digest was known."""
        if digest in self.by_id:
            return self.by_id[digest], "its image ID"
        alias = self.aliases.get(digest)
        if alias is None:
            return None, ""
        how = f"{alias.where} recorded it for image {alias.image_id[:19]}"
        return self.by_id.get(alias.image_id), how


def _count(components: list) -> int:
    return sum(1 + _count(c.get("components") or []) for c in components if isinstance(c, dict))


def read_sboms(directory: Path) -> SbomIndex:
    """Every ``*.cdx.json`` of an image in ``directory`` and its ``digests.json``."""
    import hashlib
    import json
    from ducklake_infra.provision.bundle import cyclonedx, image_digests
    by_id, bad = {}, []
    for path in sorted(Path(directory).glob("*.cdx.json")):
        try:
            data = path.read_bytes()
            doc = json.loads(data)
        except (OSError, ValueError):
            bad.append(path.name)
            continue
        image = cyclonedx.subject_property(doc, "image")
        image_id = cyclonedx.subject_property(doc, "image-id")
        if image and image_id:
            by_id[image_id] = Sbom(path.name, image_id, image,
                                   _count(doc.get("components") or []),
                                   hashlib.sha256(data).hexdigest())
    try:
        aliases = image_digests.read(Path(directory))
    except ValueError as e:
        raise CheckInputMissing(str(e)) from None
    return SbomIndex(str(directory), by_id, aliases, tuple(bad))


def _name(ref: str) -> str:
    return ImageRef.parse(familiar(ref)).repo.rsplit("/", 1)[-1]


def sbom_verdicts(img: Image, index: SbomIndex, built: frozenset[str]
                  ) -> list[tuple[str, str, dict]]:
    """(status, why, evidence row) per digest one container runs. ``built``: the names
    (last path component) of the images the plan takes from the bundle; a registry keeps
    only that name (``host/prefix/minio``)."""
    row = {"workload": img.where, "image": img.ref}
    if not img.ref or _name(img.ref) not in built:
        return [(WARN, "not an image the bundle builds: no SBOM says what it holds",
                 {**row, "digest": None, "sbom": None})]
    if not img.digests:
        return [(WARN, "no pod reports the digest it runs, so none can be matched",
                 {**row, "digest": None, "sbom": None})]
    out = []
    for digest in img.digests:
        sbom, how = index.resolve(digest)
        if sbom is not None:
            out.append((PASS, f"{digest} ({how}) is the image of {sbom.describe()}",
                        {**row, "digest": digest, "sbom": sbom.file, "sbom_sha256": sbom.sha256}))
            continue
        same = sorted(s.image_id[:19] for s in index.by_id.values() if _name(s.image) == _name(img.ref))
        why = (f"runs {digest}, which no SBOM in {index.directory} describes"
               + (f" ({how}, which has no SBOM)" if how else "")
               + (f"; the SBOMs of {_name(img.ref)} are of {', '.join(same)}" if same
                  else f"; there is no SBOM of {_name(img.ref)} at all"))
        out.append((FAIL, why, {**row, "digest": digest, "sbom": None}))
    return out


def sbom_rows(objs: Objects, spec: StackSpec, index: SbomIndex
              ) -> list[tuple[Image, str, str, dict]]:
    from ducklake_infra.provision.render import Options, image_refs
    built = frozenset(_name(r) for r in image_refs(spec, Options()).values())
    return [(img, status, why, row) for img in stack_images(objs, spec)
            for status, why, row in sbom_verdicts(img, index, built)]


@check("SUPPLY-SBOM-001")
def check_images_match_sboms(objs: Objects, spec: StackSpec, *, index: SbomIndex) -> Result:
    """Every image the bundle built runs a digest that an SBOM of ``index`` describes:
    by its image ID, or by a digest ``up`` recorded when it loaded or pushed that image."""
    lists: dict[str, list[str]] = {FAIL: [], WARN: [], PASS: []}
    for img, status, why, _ in sbom_rows(objs, spec, index):
        lists[status].append(f"{img.line()} -> {status}: {why}")
    if index.unreadable:
        lists[WARN].append(f"unreadable SBOM file(s) in {index.directory}: "
                           f"{', '.join(index.unreadable)}")
    fails, warns = lists[FAIL], lists[WARN]
    return result(fails + [f"warning: {w}" for w in warns] if fails else [], lists[PASS], warns)
