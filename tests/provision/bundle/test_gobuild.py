"""Wrapper-module generation for Go tools that `go install` refuses."""

from ducklake_infra.provision.bundle import gobuild, pins

K8S_GOMOD = """module k8s.io/kubernetes

go 1.24.0

require (
\tk8s.io/api v0.0.0
\tgithub.com/foo/bar v1.2.3
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go // trailing comment
\tgithub.com/foo/bar v1.2.3 => github.com/foo/bar v1.2.4
)

replace go.etcd.io/etcd => ./FORBIDDEN_DEPENDENCY
"""


def test_parse_replaces_block_and_single_line():
    got = gobuild.parse_replaces(K8S_GOMOD)
    assert ("k8s.io/api", None, "./staging/src/k8s.io/api", None) in got
    assert ("k8s.io/client-go", None, "./staging/src/k8s.io/client-go", None) in got
    assert ("github.com/foo/bar", "v1.2.3", "github.com/foo/bar", "v1.2.4") in got
    assert ("go.etcd.io/etcd", None, "./FORBIDDEN_DEPENDENCY", None) in got
    assert len(got) == 4


def test_wrapper_maps_local_replaces_to_published_versions():
    tool = pins.go_tool("kubernetes")
    text = gobuild.wrapper_gomod(tool, K8S_GOMOD)
    assert f"require k8s.io/kubernetes {pins.K8S_VERSION}" in text
    assert "\tk8s.io/api => k8s.io/api v0.34.12" in text
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.12" in text
    assert "\tgithub.com/foo/bar v1.2.3 => github.com/foo/bar v1.2.4" in text
    assert "FORBIDDEN" not in text and "./staging" not in text


def test_local_replace_without_mapping_is_refused():
    tool = pins.go_tool("coredns")
    try:
        gobuild.wrapper_gomod(tool, K8S_GOMOD)
    except ValueError as exc:
        assert "local_replace_version" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_k8s_binaries_are_version_stamped():
    flags = " ".join(pins.go_tool("kubernetes").ldflags)
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion={pins.K8S_VERSION}" in flags
        assert f"-X {pkg}.gitMajor=1" in flags
        assert f"-X {pkg}.gitMinor=34" in flags


def test_stamp_detects_pin_changes(tmp_path):
    tool = pins.go_tool("kind")
    (tmp_path / "kind").write_text("binary")
    gobuild.write_stamp(tool, tmp_path, "go1.26.8")
    assert gobuild.is_built(tool, tmp_path, "go1.26.8")
    assert not gobuild.is_built(tool, tmp_path, "go1.27.0")
    (tmp_path / "kind").unlink()
    assert not gobuild.is_built(tool, tmp_path, "go1.26.8")


def _built(tmp_path, name="kind", body=b"\x7fELF" + b"x" * 4096):
    tool = pins.go_tool(name)
    (tmp_path / name).write_bytes(body)
    gobuild.write_stamp(tool, tmp_path, "go1.26.8")
    return tool


def test_a_truncated_or_altered_binary_is_not_built(tmp_path):
    """Issue 17: build/bin/mc truncated to 0 bytes was reported '[cached]' and copied."""
    tool = _built(tmp_path)
    assert gobuild.is_built(tool, tmp_path, "go1.26.8")
    (tmp_path / "kind").write_bytes(b"")                       # truncated
    assert not gobuild.is_built(tool, tmp_path, "go1.26.8")
    tool = _built(tmp_path)
    data = bytearray((tmp_path / "kind").read_bytes())
    data[100] ^= 1                                              # same size, other bytes
    (tmp_path / "kind").write_bytes(bytes(data))
    assert not gobuild.is_built(tool, tmp_path, "go1.26.8")


def test_an_old_stamp_is_adopted_only_for_whole_executables(tmp_path):
    import json
    tool = pins.go_tool("kind")
    (tmp_path / ".kind.stamp.json").write_text(json.dumps(gobuild.stamp_for(tool, "go1.26.8")))
    (tmp_path / "kind").write_bytes(b"")
    assert not gobuild.is_built(tool, tmp_path, "go1.26.8")    # empty: rebuilt
    (tmp_path / "kind").write_bytes(b"\x7fELF" + b"x" * 4096)
    assert gobuild.is_built(tool, tmp_path, "go1.26.8")        # adopted, and now recorded
    assert gobuild.recorded_outputs(tool, tmp_path)["kind"]["size"] == 4100


def test_status_says_corrupt_and_build_copy_repairs(tmp_path):
    """A truncated bin/<tool> is 'corrupt' in status, and the copy step replaces it."""
    from ducklake_infra.provision.bundle import build
    from ducklake_infra.provision.bundle import layout
    lay = layout.layout(str(tmp_path / "cache"))
    lay.node_bin.mkdir(parents=True)
    tool = _built(lay.node_bin)
    lay.tool("kind").parent.mkdir(parents=True, exist_ok=True)
    build.copy_if_changed(lay.node_bin / "kind", lay.tool("kind"))
    assert build._built_file("bin/kind", lay.tool("kind"), tool, lay, "kind").state == "present"
    lay.tool("kind").write_bytes(b"")
    art = build._built_file("bin/kind", lay.tool("kind"), tool, lay, "kind")
    assert art.state == "corrupt" and not art.present
    assert "CORRUPT" in build.status_table([art])
    build.copy_if_changed(lay.node_bin / "kind", lay.tool("kind"))
    assert build._built_file("bin/kind", lay.tool("kind"), tool, lay, "kind").state == "present"
    lay.tool("kind").unlink()
    assert build._built_file("bin/kind", lay.tool("kind"), tool, lay, "kind").state == "missing"


def test_the_node_image_holds_the_stack_images_that_do_not_change():
    """Issue 14: a new cluster starts with MinIO, mc and PostgreSQL in its containerd;
    only the backend image (built from the project's code) is loaded by `up`."""
    from ducklake_infra.provision.bundle import layout
    from ducklake_infra.provision.bundle import nodeimage
    refs = nodeimage.component_refs()
    assert {layout.MINIO_IMAGE, layout.MC_IMAGE, layout.POSTGRES_IMAGE, layout.KUBE_ROUTER_IMAGE} <= set(refs)
    assert not any("backend" in r for r in refs)
