"""``profile`` and the ``distributed`` section of stack.yaml (issue 16): standalone by
default and unchanged; every wrong value a one-line error naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import DistributedSpec, SpecError

ROOT = Path(__file__).resolve().parents[2]


def load_with(tmp_path: Path, **top) -> object:
    raw = yaml.safe_load((ROOT / "stack.yaml").read_text())
    raw.update(top)
    for k in [k for k, v in top.items() if v is None]:
        del raw[k]
    out = ROOT / f".test-stack-{tmp_path.name}.yaml"   # beside stack.yaml: relative paths hold
    out.write_text(yaml.safe_dump(raw))
    try:
        return spec_file.load(out)
    finally:
        out.unlink()


def test_the_repository_spec_is_standalone_on_one_node():
    spec = spec_file.load(ROOT / "stack.yaml")
    assert spec.profile == "standalone" and spec.kind_workers == 0


def test_distributed_defaults(tmp_path):
    spec = load_with(tmp_path, profile="distributed", distributed={})
    assert spec.distributed == DistributedSpec() and spec.kind_workers == 3
    assert (spec.distributed.minio_servers, spec.distributed.minio_parity) == (4, 2)


def test_a_distributed_section_is_checked_but_unused_under_standalone(tmp_path):
    spec = load_with(tmp_path, distributed={"workers": 4, "minio": {"servers": 5}})
    assert spec.profile == "standalone" and spec.kind_workers == 0
    assert spec.distributed.minio_servers == 5
    with pytest.raises(SpecError, match=r"distributed\.minio\.servers: expected at least 4"):
        load_with(tmp_path, distributed={"minio": {"servers": 2}})


@pytest.mark.parametrize("top,message", [
    ({"profile": "ha"}, r"profile: 'ha' is not a profile \(valid: standalone, distributed\)"),
    ({"profile": "distributed"}, r"distributed: missing \(profile: distributed needs it\)"),
    ({"profile": "distributed", "distributed": {"workers": 0}}, r"distributed\.workers: expected between 1"),
    ({"profile": "distributed", "distributed": {"workers": "3"}}, r"distributed\.workers: expected an integer"),
    ({"profile": "distributed", "distributed": {"minio": {"servers": 3}}}, r"at least 4 servers"),
    ({"profile": "distributed", "distributed": {"workers": 2}}, r"at most workers \+ 1 = 3 servers"),
    ({"profile": "distributed", "distributed": {"minio": {"parity": 3}}}, r"parity: expected between 1 and servers / 2 = 2"),
    ({"profile": "distributed", "distributed": {"minio": {"parity": 0}}}, r"parity: expected between 1"),
    ({"profile": "distributed", "distributed": {"postgresql": {"members": 1}}}, r"members: expected at least 2"),
    ({"profile": "distributed", "distributed": {"postgresql": {"synchronous_node_count": 3}}},
     r"synchronous_node_count: expected between 1 and members - 1 = 2"),
    ({"profile": "distributed", "distributed": {"postgresql": {"strict": "yes"}}}, r"strict: expected true or false"),
    ({"profile": "distributed", "distributed": {"backend": {"replicas": 1}}}, r"replicas: expected at least 2"),
    ({"profile": "distributed", "distributed": {"wokers": 3}}, r"distributed\.wokers: unknown key \(did you mean 'workers'\?\)"),
    ({"profile": "distributed", "distributed": {"minio": {"server": 4}}}, r"unknown key \(did you mean 'servers'\?\)"),
])
def test_every_wrong_value_is_a_one_line_error(tmp_path, top, message):
    with pytest.raises(SpecError, match=message) as err:
        load_with(tmp_path, **top)
    assert "\n" not in str(err.value)
