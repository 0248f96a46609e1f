"""PostgreSQL replicated with Patroni (issue 16, docs/design/distributed-profile.md section
3), rendered by the real chart: with ``ha.enabled`` off the chart renders exactly what it
rendered before HA existed (golden files, generated passwords masked)."""

from __future__ import annotations

import pytest

from .golden_render import GOLDEN, renders


@pytest.mark.bundle        # the bundle's helm
def test_with_ha_off_the_chart_renders_as_before(helm):
    for fname, text in renders(helm).items():
        assert text == (GOLDEN / fname).read_text(), \
            f"the standalone render changed ({fname}); see tests/charts/golden_render.py"
