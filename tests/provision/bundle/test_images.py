"""Issue 17: images record their inputs; status says stale; build rebuilds exactly what
changed and what is built on it. The MinIO chart's copy is verified file by file."""

from __future__ import annotations

import pytest

from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import nodeimage

from .bundleworld import World, fake_host, image

APISERVER = layout.k8s_image("kube-apiserver")
EVERY_IMAGE = {r.ref for r in images.ROOTFS_IMAGES} | {i.ref for i in images.node_component_images()} | \
    {i.ref for i in images.stack_images()} | {nodeimage.NODE_BASE_IMAGE, layout.NODE_IMAGE}


@pytest.fixture
def world(tmp_path, monkeypatch):
    fake_host(monkeypatch)
    w = World(tmp_path)
    assert set(w.build()) == EVERY_IMAGE            # cold: every image built once
    return w


def _not_present(w: World) -> dict[str, str]:
    return {name: f"{a.state}: {a.detail}" for name, a in w.states().items() if not a.present}


def test_a_warm_build_builds_nothing_and_everything_is_present(world):
    assert _not_present(world) == {}
    assert world.build() == []


def test_every_image_records_its_inputs_in_its_label(world):
    labels = {ref: world.runner.images[ref]["labels"][images.STAMP_LABEL] for ref in EVERY_IMAGE}
    apiserver = images.parse_inputs(labels[APISERVER])
    assert set(apiserver) == {"dockerfile", "file:kube-apiserver"}
    proxy = images.parse_inputs(labels[layout.k8s_image("kube-proxy")])
    assert set(proxy) == {"dockerfile", "base", "file:kube-proxy"}
    assert proxy["base"] == images.short_id(world.runner.images[layout.NODE_NET_BASE_IMAGE]["id"])
    node = images.parse_inputs(labels[layout.NODE_IMAGE])
    assert {"base", "storage", "cni", "assembly", "file:kubelet", "file:kubeadm",
            f"image:{APISERVER}", f"image:{layout.MINIO_IMAGE}"} <= set(node)
    assert set(images.parse_inputs(labels[layout.DEBIAN_BASE_IMAGE])) == {"recipe"}


def test_a_rebuilt_binary_makes_its_image_and_the_node_image_stale_and_only_they_rebuild(world):
    world.rebuild_output("kubernetes", "kube-apiserver", b"patched apiserver")
    assert _not_present(world) == {
        image(APISERVER): "stale: changed: file:kube-apiserver",
        image(layout.NODE_IMAGE): f"stale: built on {APISERVER} is stale",
    }
    assert world.build() == [APISERVER, layout.NODE_IMAGE]
    assert _not_present(world) == {}


def test_a_node_binary_rebuilds_the_node_image_only(world):
    world.rebuild_output("kubernetes", "kubelet", b"patched kubelet")
    assert _not_present(world) == {image(layout.NODE_IMAGE): "stale: changed: file:kubelet"}
    assert world.build() == [layout.NODE_IMAGE]


def test_a_missing_base_image_makes_what_is_built_on_it_stale(world):
    del world.runner.images[layout.NODE_NET_BASE_IMAGE]
    on_net = [layout.k8s_image("kube-proxy"), layout.CNI_IMAGE, layout.KUBE_ROUTER_IMAGE]
    assert _not_present(world) == {
        image(layout.NODE_NET_BASE_IMAGE): "missing: ",
        **{image(r): f"stale: built on {layout.NODE_NET_BASE_IMAGE} is missing" for r in on_net},
        image(layout.NODE_IMAGE): f"stale: built on {on_net[0]} is stale",
    }
    assert world.build() == [layout.NODE_NET_BASE_IMAGE, *on_net, layout.NODE_IMAGE]


def test_an_image_stamped_before_inputs_were_recorded(world):
    """Old labels held one digest: a debootstrapped image's recipe digest is computed as
    before (no rebuild); any other image is stale until rebuilt once."""
    old_recipe = images.DEBIAN_BASE.inputs()["recipe"]
    world.runner.images[layout.DEBIAN_BASE_IMAGE]["labels"] = {images.STAMP_LABEL: old_recipe}
    world.runner.images[layout.MC_IMAGE]["labels"] = {images.STAMP_LABEL: "37e1177b9f0e00e6"}
    assert _not_present(world) == {
        image(layout.MC_IMAGE): "stale: built before its inputs were recorded",
        image(layout.NODE_IMAGE): f"stale: built on {layout.MC_IMAGE} is stale"}
    assert world.build() == [layout.MC_IMAGE, layout.NODE_IMAGE]


def test_labels_hold_only_what_a_dockerfile_label_word_can():
    assert images.format_inputs({"b": "2", "a": "1"}) == "a=1,b=2"
    assert images.parse_inputs("a=1,b=2") == {"a": "1", "b": "2"}
    with pytest.raises(ValueError):
        images.format_inputs({"a b": "1"})
    assert images.changed_inputs({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}) == ["b", "c"]


# --------------------------------------------------------------------------
# the MinIO chart
# --------------------------------------------------------------------------
def _chart(world):
    return world.states()["chart/minio"]


def _source_chart(world):
    return world.tmp / "mod" / "minio" / "helm" / "minio"


def test_an_altered_or_deleted_chart_file_is_corrupt_and_build_restores_it(world):
    chart = world.lay.chart("minio")
    assert _chart(world).state == "present"
    (chart / "values.yaml").write_text("replicas: 1\n")
    assert (_chart(world).state, _chart(world).detail) == ("corrupt", "altered: values.yaml")
    world.build()
    assert (chart / "values.yaml").read_bytes() == (_source_chart(world) / "values.yaml").read_bytes()
    assert _chart(world).state == "present"
    (chart / "templates" / "deployment.yaml").unlink()
    (chart / "stray.yaml").write_text("x")
    art = _chart(world)
    assert art.state == "corrupt" and not art.present
    assert art.detail == "missing: templates/deployment.yaml, unexpected: stray.yaml"
    world.build()
    assert _chart(world).state == "present" and not (chart / "stray.yaml").exists()


def test_a_chart_copied_before_files_were_recorded_is_recorded_not_recopied(world):
    world.lay.chart_record("minio").unlink()
    assert (_chart(world).state, _chart(world).detail) == \
        ("stale", "copied before its files were recorded")
    ino = (world.lay.chart("minio") / "Chart.yaml").stat().st_ino
    world.build()
    assert _chart(world).state == "present"
    assert (world.lay.chart("minio") / "Chart.yaml").stat().st_ino == ino
