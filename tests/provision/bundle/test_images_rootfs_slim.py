"""Rootfs slimming keeps what programs need and drops what nothing in our images reads."""

from ducklake_infra.provision.bundle.images import slim, stamp_of


def test_slim_drops_docs_lists_and_translations(tmp_path):
    for rel in ("var/lib/apt/lists/deb.debian.org_Packages", "var/lib/apt/lists/lock",
                "usr/share/doc/bash/copyright", "usr/share/man/man1/ls.1.gz",
                "usr/share/locale/de/LC_MESSAGES/x.mo", "usr/share/postgresql/15/timezonesets/Default",
                "usr/share/zoneinfo/UTC", "usr/bin/python3"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    slim(tmp_path)
    assert not (tmp_path / "var/lib/apt/lists/deb.debian.org_Packages").exists()
    assert (tmp_path / "var/lib/apt/lists/lock").exists()  # the directory stays usable
    assert not any((tmp_path / "usr/share/doc").iterdir())
    assert not any((tmp_path / "usr/share/locale").iterdir())
    for kept in ("usr/share/postgresql/15/timezonesets/Default", "usr/share/zoneinfo/UTC",
                 "usr/bin/python3"):
        assert (tmp_path / kept).exists(), kept


def test_stamp_changes_with_inputs(tmp_path):
    f = tmp_path / "bin"
    f.write_text("v1")
    a = stamp_of("ref", ("pkg",), f)
    f.write_text("v2")
    assert stamp_of("ref", ("pkg",), f) != a
    assert stamp_of("ref", ("pkg",), f) == stamp_of("ref", ("pkg",), f)
