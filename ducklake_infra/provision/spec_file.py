"""Finding and loading the stack spec file: ``--stack``/``--spec``, ``$DUCKLAKE_INFRA_STACK``,
``./stack.yaml`` or the packaged default, read and handed to
:func:`~ducklake_infra.provision.spec_parse.parse`."""

from __future__ import annotations

import os
from pathlib import Path

from ducklake_infra import yamlio
from ducklake_infra.provision.spec import SpecError, StackSpec
from ducklake_infra.provision.spec_parse import parse

PACKAGE_DIR = Path(__file__).resolve().parent.parent      # ducklake_infra/
# the stack spec and everything it names (values, charts, manifests, the backend's
# source): package data in a wheel, the repository itself in a source checkout
DATA_DIR = PACKAGE_DIR / "data" if (PACKAGE_DIR / "data" / "stack.yaml").is_file() \
    else PACKAGE_DIR.parent
DEFAULT_SPEC = DATA_DIR / "stack.yaml"
SPEC_ENV = "DUCKLAKE_INFRA_STACK"


def locate(option: str | Path | None = None, cwd: Path | None = None) -> tuple[Path, str]:
    """Which stack spec a run uses, and why: ``--stack``/``--spec``, then
    ``$DUCKLAKE_INFRA_STACK``, then ``./stack.yaml``, then the packaged default."""
    if option:
        return Path(option).expanduser().resolve(), "from the command line"
    if os.environ.get(SPEC_ENV):
        return Path(os.environ[SPEC_ENV]).expanduser().resolve(), f"from ${SPEC_ENV}"
    here = (cwd or Path.cwd()) / "stack.yaml"
    if here.is_file():
        return here.resolve(), "./stack.yaml"
    return DEFAULT_SPEC, "the packaged default"


def load(path: str | Path | None = None) -> StackSpec:
    """Load and validate the stack spec (``path``, or as :func:`locate` finds it)."""
    path = locate(path)[0]
    fname = path.name
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read the stack spec: {exc.strerror}") from None
    try:
        raw = yamlio.load(text)
    except yamlio.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{fname}: not valid YAML{where}: {problem}") from None
    return parse(raw, path)

