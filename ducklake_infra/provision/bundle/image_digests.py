"""The other digests a built image runs under: ``<sbom dir>/digests.json``.

An SBOM names its image by the image ID (the config digest). A Pod's ``imageID`` is that
ID only when the node holds the image without a repository digest (the images baked into
the node image). Otherwise it is a manifest digest, which no one can derive from the
image ID alone:

* kind: ``kind load`` imports the image as ``import-<date>@sha256:<manifest>``, a manifest
  the node's containerd writes on import;
* a registry: the manifest ``docker push`` wrote (``up --registry``).

So whoever makes such a digest writes it down as it happens -- ``up`` asks the node's
runtime after loading (``crictl inspecti``: its ID and repoDigests), ``up --registry``
keeps what each push answered -- and the audit maps a running digest through this file
to an image ID, then to the SBOM of that ID. The file lives beside the SBOMs, so the
directory handed to an auditor elsewhere (``--sbom-dir``) carries both.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ducklake_infra.provision.bundle.integrity import atomic_write
from ducklake_infra.provision.oci import DIGEST

FILE_NAME = "digests.json"
FORMAT = "ducklake-infra/image-digests/v1"


@dataclass(frozen=True)
class Alias:
    digest: str        # sha256:... as a Pod's imageID or a registry names it
    image_id: str      # the image ID (config digest) an SBOM's subject names
    ref: str           # the reference it was loaded or pushed under
    where: str         # "kind node <name>" | "registry <host/prefix>"
    recorded: str = ""  # UTC time it was seen


def digest_of(repo_digest: str) -> str | None:
    """``repo@sha256:...`` or ``sha256:...`` -> ``sha256:...``; None when not a digest."""
    d = repo_digest.rpartition("@")[2]
    return d if DIGEST.fullmatch(d) else None


def read(sbom_dir: Path) -> dict[str, Alias]:
    """digest -> Alias; {} when there is no file. A file that is not ours is an error
    (ValueError naming it): a silently empty map would FAIL every image for no reason."""
    path = Path(sbom_dir) / FILE_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: not readable as JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT \
            or not isinstance(doc.get("digests"), dict):
        raise ValueError(f"{path}: not a {FORMAT} file")
    out = {}
    for digest, e in doc["digests"].items():
        if not (DIGEST.fullmatch(digest) and isinstance(e, dict)
                and DIGEST.fullmatch(str(e.get("image_id", "")))):
            raise ValueError(f"{path}: bad entry {digest!r}")
        out[digest] = Alias(digest, e["image_id"], str(e.get("ref", "")),
                            str(e.get("where", "")), str(e.get("recorded", "")))
    return out


def record(sbom_dir: Path, aliases: Iterable[Alias]) -> int:
    """Merge ``aliases`` into the file (a digest seen again is updated); the number new or
    changed. A digest equal to its own image ID says nothing and is not kept."""
    known = read(sbom_dir)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    changed = 0
    for a in aliases:
        # an image ID that is its own digest says nothing; a malformed one is not kept
        # (the audit would refuse the file, and FAIL every image for it)
        if a.digest == a.image_id or not (DIGEST.fullmatch(a.digest)
                                           and DIGEST.fullmatch(a.image_id)):
            continue
        old = known.get(a.digest)
        if old is None or (old.image_id, old.ref, old.where) != (a.image_id, a.ref, a.where):
            changed += 1
        known[a.digest] = Alias(a.digest, a.image_id, a.ref, a.where, a.recorded or now)
    if changed:
        body = {d: {k: v for k, v in asdict(a).items() if k != "digest"}
                for d, a in sorted(known.items())}
        atomic_write(Path(sbom_dir) / FILE_NAME,
                     json.dumps({"format": FORMAT, "digests": body}, indent=1) + "\n")
    return changed
