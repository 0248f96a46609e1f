"""The optional PostgreSQL + Patroni image (distributed profile, docs/design/distributed-
profile.md section 3.1): built only with `bundle build --with postgresql-ha`, on the very
recipe of the standalone PostgreSQL image (which stays as it is) plus Debian's Python
packages and the Patroni wheel, fetched by pip with the pinned sha256 and checked again;
its SBOM lists the wheel, which dpkg does not."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from ducklake_infra.provision import cli
from ducklake_infra.provision.bundle import images
from ducklake_infra.provision.bundle import imagegraph
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.bundle import nodeimage, pins
from ducklake_infra.provision.bundle import pywheel
from ducklake_infra.provision.bundle import sbom
from ducklake_infra.provision.errors import DucklakeInfraError

from .bundleworld import World, fake_host, image
from .sbomcheck import load_valid, named
from .test_sbom import SbomDocker

HA = layout.POSTGRES_HA_IMAGE
WHEEL_BYTES = b"PK\x03\x04 a wheel, as far as these tests go"
FAKE_WHEEL = pins.Wheel("patroni", pins.PATRONI.version, hashlib.sha256(WHEEL_BYTES).hexdigest())


class PipDocker(SbomDocker):
    """The bundle world's engine (with what `bundle sbom` reads), plus `python3 -m pip
    download`, which writes ``served`` under the wheel's name. ``at_unpack`` records
    whether the wheel was in the rootfs's /tmp when it was unpacked."""

    served = WHEEL_BYTES
    at_unpack: list[bool]

    def _answer_for(self, argv, cwd=None):
        if argv[:4] == ["python3", "-m", "pip", "download"]:
            dest = Path(argv[argv.index("-d") + 1])
            (dest / FAKE_WHEEL.filename).write_bytes(self.served)
            return 0, ""
        if argv[0] == "chroot" and argv[2:5] == ["python3", "-m", "zipfile"]:
            self.at_unpack = [*getattr(self, "at_unpack", []),
                              (Path(argv[1]) / argv[6].lstrip("/")).is_file()]
        return super()._answer_for(argv, cwd)


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A built bundle (no optional image); the HA image's wheel pin is a fake wheel's."""
    fake_host(monkeypatch)
    ha = dataclasses.replace(images.POSTGRES_HA, wheels=(FAKE_WHEEL,))
    monkeypatch.setitem(images.OPTIONAL_ROOTFS_IMAGES, "postgresql-ha", ha)
    w = World(tmp_path, docker=PipDocker)
    assert HA not in w.build()
    return w


def build_with_ha(w: World) -> list[str]:
    w.runner.built.clear()
    from ducklake_infra.provision.bundle import build
    from ducklake_infra.provision.progress import Progress
    build.build(w.runner, Progress(quiet=True), w.lay, skip_host=True, optional=["postgresql-ha"])
    return list(w.runner.built)


# --------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------
def test_the_standalone_postgresql_image_keeps_its_recipe_and_place():
    # the digest the standalone image's stamp holds on main: a change would rebuild it (CI)
    assert images.POSTGRES.inputs() == {"recipe": "547ae4450e37f552"}
    assert images.POSTGRES.wheels == ()
    assert images.POSTGRES_HA not in images.ROOTFS_IMAGES
    assert HA not in nodeimage.component_refs()          # not baked into the node image
    assert HA not in {s.ref for s in imagegraph.steps()}   # nor built by a plain build


def test_the_ha_image_is_the_postgresql_recipe_plus_python_and_the_wheel():
    ha, pg = images.POSTGRES_HA, images.POSTGRES
    assert ha.ref == HA == "ducklake-infra/postgresql-ha:15-patroni4.1.5-bookworm"
    assert layout.STACK_IMAGES["postgresql-ha"] == HA
    assert ha.packages == (*pg.packages, "python3", "python3-yaml", "python3-urllib3",
                           "python3-click", "python3-prettytable", "python3-dateutil",
                           "python3-psutil", "python3-psycopg2")
    assert ha.changes == pg.changes
    whl = "/tmp/patroni-4.1.5-py3-none-any.whl"
    assert ha.post == (*pg.post,
                       ("python3", "-m", "zipfile", "-e", whl,
                        "/usr/local/lib/python3.11/dist-packages"),
                       ("env", "PYTHONDONTWRITEBYTECODE=1", "python3", "-c",
                        "import patroni.__main__; import patroni.dcs.kubernetes"),
                       ("rm", "-f", whl))
    assert ha.wheels == (pins.PATRONI,)
    assert pins.PATRONI.sha256 == "7aad8c1539e6c51c269a8005169dd54ddc7668437b7900fa6099d7894e224c84"
    # the wheel's pin is an input of the recipe: another wheel, another image
    other = dataclasses.replace(ha, wheels=(FAKE_WHEEL,))
    assert other.inputs() != ha.inputs() != pg.inputs()


def test_unknown_optional_images_are_refused():
    with pytest.raises(DucklakeInfraError, match="no optional image postgres-ha"):
        imagegraph.steps(["postgres-ha"])
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["bundle", "build", "--with", "postgres-ha"])
    args = cli.build_parser().parse_args(["bundle", "build", "--with", "postgresql-ha"])
    assert args.optional == ["postgresql-ha"]


# --------------------------------------------------------------------------
# building it
# --------------------------------------------------------------------------
def test_only_an_explicit_request_builds_it_and_only_it(world):
    assert not world.runner.find(r"pip")                  # a plain build: no wheel, no image
    assert image(HA) not in world.states()
    assert build_with_ha(world) == [HA]                   # the rest is current
    (pip,) = world.runner.find(r"pip download")
    tmp = Path(pip.argv[-1])
    assert pip.argv == ["python3", "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                        "--require-hashes", "--no-input", "-r", str(tmp / "requirements.txt"),
                        "-d", str(tmp)]
    assert not tmp.exists()                               # the download's directory is gone
    cached = pywheel.cached(world.lay, FAKE_WHEEL)
    assert cached.read_bytes() == WHEEL_BYTES
    (boot,) = [c for c in world.runner.find(r"^debootstrap") if "postgresql-ha" in c.line]
    assert "--include=ca-certificates,postgresql-15,python3,python3-yaml," in boot.line
    chroots = [c.argv[2:] for c in world.runner.find(r"^chroot .*postgresql-ha")]
    assert chroots == [list(cmd) for cmd in images.POSTGRES_HA.post]
    assert world.runner.at_unpack == [True]               # the wheel was in the rootfs's /tmp
    label = world.runner.images[HA]["labels"][images.STAMP_LABEL]
    assert images.parse_inputs(label) == images.OPTIONAL_ROOTFS_IMAGES["postgresql-ha"].inputs()
    # status lists it now, present; a plain build leaves it alone; a warm one is offline
    assert world.states()[image(HA)].state == "present"
    assert world.build() == []
    world.runner.calls.clear()
    assert build_with_ha(world) == []
    assert not world.runner.find(r"pip")


def test_a_wheel_that_is_not_the_pinned_one_is_never_used(world):
    world.runner.served = b"PK\x03\x04 something else"
    with pytest.raises(DucklakeInfraError, match="sha256 .* pinned .* not used"):
        build_with_ha(world)
    assert not pywheel.cached(world.lay, FAKE_WHEEL).exists()
    assert not [c for c in world.runner.find(r"^debootstrap") if "postgresql-ha" in c.line]
    assert HA not in world.runner.images
    assert not list((world.lay.root / "build" / "wheels").iterdir())   # no leftovers


def test_an_altered_cached_wheel_is_fetched_again(world):
    cached = pywheel.cached(world.lay, FAKE_WHEEL)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 truncated")
    assert build_with_ha(world) == [HA]
    assert len(world.runner.find(r"pip download")) == 1
    assert cached.read_bytes() == WHEEL_BYTES


def test_a_failed_download_says_what_is_needed(world):
    world.runner.served = None

    def no_pip(argv, cwd=None, _orig=world.runner._answer_for):
        if argv[:4] == ["python3", "-m", "pip", "download"]:
            return 1, ""
        return _orig(argv, cwd)
    world.runner._answer_for = no_pip

    def run_logged(argv, **kw):                           # FakeDocker does not check rc
        res = world.runner.run(argv)
        if res.returncode:
            from ducklake_infra.provision.runner import CommandError
            raise CommandError(argv, res.returncode, "No module named pip")
        return res
    world.runner.run_logged = run_logged
    with pytest.raises(DucklakeInfraError, match="python3 -m pip.*python3-pip"):
        build_with_ha(world)


# --------------------------------------------------------------------------
# its SBOM
# --------------------------------------------------------------------------
def test_its_sbom_lists_the_wheel_with_its_sha256(world):
    written = {w.artifact for w in sbom.generate(world.runner, world.lay, world.lay.sbom)}
    assert image(HA) not in written                        # not built: no SBOM, no failure
    build_with_ha(world)
    written = {w.artifact: w for w in sbom.generate(world.runner, world.lay, world.lay.sbom)}
    doc = load_valid(written[image(HA)].path)
    (patroni,) = named(doc, "patroni")
    assert patroni["purl"] == f"pkg:pypi/patroni@{pins.PATRONI.version}"
    assert patroni["hashes"] == [{"alg": "SHA-256", "content": FAKE_WHEEL.sha256}]
    props = {p["name"]: p["value"] for p in patroni["properties"]}
    assert props == {"ducklake-infra:dist": "patroni-4.1.5-py3-none-any.whl",
                     "ducklake-infra:path": "/usr/local/lib/python3.11/dist-packages"}
    assert named(doc, "python3.11")                        # and its Debian packages
    # the standalone image's SBOM has no wheel
    assert not named(load_valid(written[image(layout.POSTGRES_IMAGE)].path), "patroni")
