"""The PostgreSQL chart's render with HA off, stored: `helm template` with the arguments
`up` passes (golden/postgresql-up.yaml) and with the chart's defaults
(golden/postgresql-defaults.yaml), generated passwords masked. Rewrite them (only for a
change meant to alter the standalone render) with:
``cd tests && ../.venv/bin/python -m charts.golden_render``."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from ducklake_infra.provision import render
from ducklake_infra.provision import spec_file
from ducklake_infra.provision.bundle import layout, pins

GOLDEN = Path(__file__).parent / "golden"
CHART = Path(__file__).resolve().parents[2] / "charts" / "postgresql"
_SECRET_VALUE = re.compile(r"^(  [A-Za-z0-9_.-]+): [A-Za-z0-9+/=]+$", re.M)


def masked(text: str) -> str:
    """The render with every value of a Secret's ``data`` replaced (random per render)."""
    def mask(doc: str) -> str:
        if "\nkind: Secret\n" not in doc or "\ndata:\n" not in doc:
            return doc
        head, data = doc.split("\ndata:\n", 1)
        return head + "\ndata:\n" + _SECRET_VALUE.sub(r"\1: <generated>", data)
    return "\n---\n".join(mask(d) for d in text.split("\n---\n"))


def renders(helm: Path, spec=None, opts: render.Options | None = None) -> dict[str, str]:
    """``{golden file name: masked render}`` of the chart in this tree."""
    from .conftest import helm_args
    spec = spec or spec_file.load()
    opts = opts or render.Options(layout=layout.layout())
    name, chart, args = helm_args(spec, opts, "postgresql")
    kube = ["--kube-version", pins.K8S_VERSION.lstrip("v")]

    def template(*argv: str) -> str:
        res = subprocess.run([str(helm), "template", *argv, *kube], capture_output=True,
                             text=True, timeout=120, check=True)
        return masked(res.stdout)
    return {"postgresql-up.yaml": template(name, chart, *args),
            "postgresql-defaults.yaml": template("postgresql", str(CHART), "--namespace", "storage")}


if __name__ == "__main__":
    GOLDEN.mkdir(exist_ok=True)
    for fname, text in renders(layout.layout().tool("helm")).items():
        (GOLDEN / fname).write_text(text)
        print(f"wrote {GOLDEN / fname}")
