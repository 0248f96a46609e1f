from __future__ import annotations

import pytest

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.bundle.layout import Layout
from ducklake_infra.provision.progress import Progress


@pytest.fixture
def spec():
    return spec_file.load()


@pytest.fixture
def progress():
    return Progress(quiet=True)


@pytest.fixture
def fake_layout(tmp_path):
    """A bundle layout whose MinIO chart exists (an empty Chart.yaml is enough here)."""
    lay = Layout(tmp_path / "cache")
    lay.chart("minio").mkdir(parents=True)
    (lay.chart("minio") / "Chart.yaml").write_text("name: minio\nversion: 5.4.0\n")
    return lay
