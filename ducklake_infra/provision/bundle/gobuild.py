"""Build pinned Go tools from the Go module proxy through wrapper modules.

``go install mod@version`` refuses modules whose go.mod has ``replace``
directives (kubernetes' staging repos, etcd's sibling modules). A wrapper module
that requires the target and carries its replacements, with local paths mapped
to the published versions of those modules, builds the very same packages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ducklake_infra.provision.bundle.integrity import (atomic_write, file_record, read_json,
                                                      same_file)
from ducklake_infra.provision.bundle.pins import GoTool
from ducklake_infra.provision.runner import Runner

_REPLACE_LINE = re.compile(r"^\s*(\S+)(?:\s+(\S+))?\s+=>\s+(\S+)(?:\s+(\S+))?\s*$")


def parse_replaces(gomod_text: str) -> list[tuple[str, str | None, str, str | None]]:
    """Return ``(old, old_version, new, new_version)`` for every replace directive."""
    out = []
    in_block = False
    for raw in gomod_text.splitlines():
        line = raw.split("//", 1)[0].rstrip()
        if not line.strip():
            continue
        if in_block:
            if line.strip() == ")":
                in_block = False
                continue
            m = _REPLACE_LINE.match(line)
            if m:
                out.append(m.groups())
            continue
        if re.match(r"^replace\s*\(\s*$", line):
            in_block = True
            continue
        if line.startswith("replace "):
            m = _REPLACE_LINE.match(line[len("replace "):])
            if m:
                out.append(m.groups())
    return out


def wrapper_gomod(tool: GoTool, target_gomod: str) -> str:
    """The go.mod of the wrapper module that builds ``tool``."""
    lines = [f"module ducklake-infra/build/{tool.name}", "", "go 1.24.0", "",
             f"require {tool.module} {tool.version}", ""]
    replaces = []
    for old, old_v, new, new_v in parse_replaces(target_gomod):
        if new.startswith("./") or new.startswith("../"):
            if "FORBIDDEN" in new:
                continue
            if not tool.local_replace_version:
                raise ValueError(f"{tool.module} has a local replace for {old}; "
                                 "set local_replace_version")
            replaces.append(f"\t{old} => {old} {tool.local_replace_version}")
        else:
            lhs = f"{old} {old_v}" if old_v else old
            replaces.append(f"\t{lhs} => {new} {new_v}" if new_v else f"\t{lhs} => {new}")
    if replaces:
        lines += ["replace ("] + replaces + [")", ""]
    return "\n".join(lines)


def stamp_for(tool: GoTool, go_version: str) -> dict:
    return {"module": tool.module, "version": tool.version, "packages": list(tool.packages),
            "ldflags": list(tool.ldflags), "cgo": tool.cgo, "go": go_version}


def stamp_path(tool: GoTool, outdir: Path) -> Path:
    return outdir / f".{tool.name}.stamp.json"


def recorded_outputs(tool: GoTool, outdir: Path) -> dict[str, dict]:
    """The outputs' records from the tool's stamp ({} when there is none)."""
    return read_json(stamp_path(tool, outdir)).get("outputs") or {}


def is_built(tool: GoTool, outdir: Path, go_version: str) -> bool:
    """The stamp matches the pins and every output is the file that was built (size and
    sha256), not merely a file that exists: a truncated or half-written binary is rebuilt."""
    data = read_json(stamp_path(tool, outdir))
    if not data:
        return False
    if "inputs" not in data:          # a stamp from before outputs were recorded
        return _adopt_old_stamp(tool, outdir, go_version, data)
    if data["inputs"] != stamp_for(tool, go_version):
        return False
    outputs = data.get("outputs") or {}
    return all(same_file(outdir / b, outputs.get(b)) for b in tool.outputs)


def _adopt_old_stamp(tool: GoTool, outdir: Path, go_version: str, inputs: dict) -> bool:
    """One migration: an old stamp (inputs only) whose outputs are whole executables
    (ELF, not empty) is rewritten with their records; anything else is rebuilt."""
    if inputs != stamp_for(tool, go_version):
        return False
    for b in tool.outputs:
        p = outdir / b
        if not p.is_file() or p.stat().st_size < 1024 or p.read_bytes()[:4] != b"\x7fELF":
            return False
    write_stamp(tool, outdir, go_version)
    return True


def write_stamp(tool: GoTool, outdir: Path, go_version: str) -> None:
    data = {"inputs": stamp_for(tool, go_version),
            "outputs": {b: file_record(outdir / b) for b in tool.outputs}}
    atomic_write(stamp_path(tool, outdir), json.dumps(data))


def go_version(runner: Runner) -> str:
    return runner.run(["go", "env", "GOVERSION"], timeout=60, mutating=False).stdout.strip()


def build_tool(runner: Runner, tool: GoTool, workdir: Path, outdir: Path,
               timeout: float = 5400) -> None:
    """Build ``tool`` into ``outdir`` (idempotent: skipped when the stamp matches)."""
    gov = go_version(runner)
    if is_built(tool, outdir, gov):
        return
    env = {"GOFLAGS": "-mod=mod -buildvcs=false", "CGO_ENABLED": "1" if tool.cgo else "0",
           "GOTOOLCHAIN": "local"}
    info = runner.run(["go", "mod", "download", "-json", f"{tool.module}@{tool.version}"],
                      timeout=900, env=env, mutating=False)
    gomod_path = json.loads(info.stdout)["GoMod"]
    mod_dir = workdir / tool.name
    mod_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(mod_dir / "go.mod", wrapper_gomod(tool, Path(gomod_path).read_text()))
    outdir.mkdir(parents=True, exist_ok=True)
    ldflags = " ".join(("-s", "-w") + tool.ldflags)
    if len(tool.packages) == 1:
        target = str(outdir / tool.outputs[0])
    else:
        target = str(outdir) + "/"
    stamp_path(tool, outdir).unlink(missing_ok=True)   # built, or not
    # go build leaves an output alone when its embedded build ID matches, whatever else
    # changed in the file: an altered binary would be stamped as built. Remove them all.
    for b in tool.outputs:
        (outdir / b).unlink(missing_ok=True)
    runner.run_logged(["go", "build", "-trimpath", "-ldflags", ldflags, "-o", target,
                       *tool.packages], timeout=timeout, env=env, cwd=mod_dir)
    write_stamp(tool, outdir, gov)
