"""SUPPLY-SBOM-001 on the real stack, from outside: the read-only audit matches every
running image to the bundle's SBOM of it (the backend through the digest the kind node
gave it when `up` loaded it), and FAILs, with the remediation, when the SBOM directory it
is given does not hold the running backend's build: an old build's SBOM, or none."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import image_digests
from ducklake_infra.suites.catalog import catalog

pytestmark = [pytest.mark.cluster]

ROOT = Path(__file__).resolve().parents[2]


def audit_sbom_control(cluster, sbom_dir: Path, report_dir: Path) -> dict:
    argv = [sys.executable, "-m", "pytest", str(ROOT / "ducklake_infra" / "suites"),
            f"--cluster={cluster.context}", f"--kubeconfig={cluster.kubeconfig}", "--readonly",
            "--control", "SUPPLY-SBOM-001", f"--sbom-dir={sbom_dir}",
            f"--report-dir={report_dir}", "-p", "no:cacheprovider", "-q", "--no-header"]
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    doc = json.loads((report_dir / "results.json").read_text())
    row = next(c for c in doc["controls"] if c["id"] == "SUPPLY-SBOM-001")
    return {"rc": res.returncode, "out": res.stdout[-2000:], **row}


def evidence_images(report_dir: Path) -> list[dict]:
    return json.loads(next(report_dir.glob("*/evidence.json")).read_text())["images"]


def test_every_running_image_matches_the_bundles_sbom(cluster, stack, bundle_layout, tmp_path):
    row = audit_sbom_control(cluster, bundle_layout.sbom, tmp_path / "r")
    assert row["rc"] == 0 and row["status"] == "PASS", row
    backend = next(e for e in row["evidence"] if "container backend" in e)
    assert "is the image of SBOM image_ducklake-infra_backend_" in backend, backend
    rows = evidence_images(tmp_path / "r")
    assert {r["workload"].split()[0] for r in rows} >= {
        "Deployment/ducklake/ducklake-backend", "Deployment/storage/minio",
        "StatefulSet/storage/postgresql"}
    assert all(r["sbom"] and r["digest"].startswith("sha256:") for r in rows), rows


@pytest.mark.parametrize("damage", ["backend SBOM removed", "backend digests forgotten"])
def test_a_running_backend_no_sbom_describes_fails(cluster, stack, bundle_layout, tmp_path,
                                                    damage):
    sboms = tmp_path / "sbom"
    shutil.copytree(bundle_layout.sbom, sboms)
    if damage == "backend SBOM removed":
        for p in sboms.glob("image_ducklake-infra_backend_*.cdx.json"):
            p.unlink()
    else:
        # on kind the backend runs under the manifest digest `kind load` gave it: without
        # the record of it, no SBOM can be matched (the baked-in images still can)
        (sboms / image_digests.FILE_NAME).unlink()
    row = audit_sbom_control(cluster, sboms, tmp_path / "r")
    assert row["status"] == "FAIL", row
    assert row["remediation"] == catalog()["SUPPLY-SBOM-001"].remediation
    # (the plugin repeats the first failing line as the last, "failure: ...")
    bad = [e for e in row["evidence"] if "-> FAIL" in e and not e.startswith("failure:")]
    assert len(bad) == 1 and "container backend" in bad[0], row["evidence"]
    assert [r for r in evidence_images(tmp_path / "r") if r["sbom"] is None]
