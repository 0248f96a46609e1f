"""Provenance of what runs (read-only): every container of the stack runs a pinned image,
and none comes from a source known to be withdrawn or archived. The checks and the rule
are in ducklake_infra/suites/supply_chain.py; each evidence line names the reference, the
imageID the pods report and the verdict."""

from __future__ import annotations

import pytest

from ducklake_infra.suites import supply_chain
from ducklake_infra.suites.live import images_loaded
from ducklake_infra.suites.catalog import verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("SUPPLY-PIN-001")
def test_images_are_pinned(objs, spec, cluster):
    verdict(supply_chain.check_images_pinned(objs, spec, loaded=images_loaded(cluster, spec)))


@pytest.mark.control("SUPPLY-SRC-001")
def test_no_image_from_a_withdrawn_source(objs, spec):
    verdict(supply_chain.check_image_sources(objs, spec))
