"""Provenance of what runs (read-only): every container of the stack runs a pinned image,
and none comes from a source known to be withdrawn or archived. The checks and the rule
are in ducklake_infra/suites/supply_chain.py; each evidence line names the reference, the
imageID the pods report and the verdict; SUPPLY-SBOM-001 also names the SBOM each
running digest matched, and the evidence bundle records it per workload."""

from __future__ import annotations

import pytest

from ducklake_infra.suites import supply_chain
from ducklake_infra.suites.live import images_loaded
from ducklake_infra.suites.catalog import verdict
from ducklake_infra.suites.session import record_provenance

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("SUPPLY-PIN-001")
def test_images_are_pinned(objs, spec, cluster):
    verdict(supply_chain.check_images_pinned(objs, spec, loaded=images_loaded(cluster, spec)))


@pytest.mark.control("SUPPLY-SRC-001")
def test_no_image_from_a_withdrawn_source(objs, spec):
    verdict(supply_chain.check_image_sources(objs, spec))


@pytest.mark.control("SUPPLY-SBOM-001")
def test_running_images_match_their_sboms(objs, spec, sbom_index, pytestconfig):
    record_provenance(pytestconfig, [row for *_, row in
                                     supply_chain.sbom_rows(objs, spec, sbom_index)])
    verdict(supply_chain.check_images_match_sboms(objs, spec, index=sbom_index))
