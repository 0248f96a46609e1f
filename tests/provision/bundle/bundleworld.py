"""A whole bundle build without Docker, Go, gcc or debootstrap: a temporary cache whose
Go tools are already built (files and stamps), fake kind/MinIO/Kubernetes module
directories, and a fake Docker engine that keeps images and their labels in memory."""

from __future__ import annotations

import hashlib
import itertools
import json
import shlex
import shutil
from pathlib import Path

from ducklake_infra.provision import host
from ducklake_infra.provision.bundle import build
from ducklake_infra.provision.bundle import gobuild, pins
from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import Result

from ..fakes import Call, FakeRunner

GO_VERSION = "go1.26.8"
STORAGE_GO = ("package nodeimage\n\nconst defaultStorageManifest = `kind: Deployment\n"
              "image: ` + storageProvisionerImage + `\nhelper: ` + storageHelperImage + `\n`\n")


def _labels(lines: list[str]) -> dict:
    """LABEL k=v instructions, split as Docker's parser does (words, then the first =)."""
    out = {}
    for line in lines:
        if line.startswith("LABEL "):
            for word in shlex.split(line[len("LABEL "):]):
                k, v = word.split("=", 1)
                out[k] = v
    return out


class FakeDocker(FakeRunner):
    """``docker`` (images with IDs and labels), ``go env``/``go mod download``, ``gcc``,
    ``debootstrap`` and ``tar`` as far as the bundle build needs them."""

    def __init__(self, root: Path, modules: dict[str, Path]):
        super().__init__()
        self.root, self.modules = root, modules
        self.images: dict[str, dict] = {}
        self.built: list[str] = []          # refs built or imported, in order
        self.saved: list[str] = []
        self._ids = itertools.count(1)

    def _new_image(self, ref: str, labels: dict) -> None:
        digest = hashlib.sha256(str(next(self._ids)).encode()).hexdigest()
        self.images[ref] = {"id": f"sha256:{digest}", "labels": labels}
        if not ref.endswith("-commit"):
            self.built.append(ref)

    def _answer_for(self, argv: list[str], cwd=None) -> tuple[int, str]:
        line = " ".join(argv)
        if argv[0].endswith("docker"):
            return self._docker(argv[1:])
        if argv[:3] == ["go", "env", "GOVERSION"]:
            return 0, GO_VERSION + "\n"
        if argv[:3] == ["go", "env", "GOCACHE"]:
            return 0, str(self.root / "gocache") + "\n"
        if argv[:4] == ["go", "mod", "download", "-json"]:
            module = argv[4].split("@")[0]
            gomod = self.root / "mod" / "empty.mod"
            gomod.write_text(f"module {module}\n")
            return 0, json.dumps({"Dir": str(self.modules.get(module, "")), "GoMod": str(gomod)})
        if argv[:2] == ["go", "build"]:
            target, packages = argv[argv.index("-o") + 1], argv[argv.index("-o") + 2:]
            for pkg in packages:      # a directory target: one output per package
                path = Path(target) / pkg.rsplit("/", 1)[-1] if target.endswith("/") \
                    else Path(target)
                want = World.built_bytes(path.name)
                if path.exists() and path.read_bytes()[:16] == want[:16]:
                    continue      # like go: the embedded build ID matches, the file is kept
                path.write_bytes(want)
            return 0, ""
        if argv[0] == "gcc":
            Path(argv[argv.index("-o") + 1]).write_bytes(b"\x7fELF pause, static")
            return 0, ""
        if argv[0] == "debootstrap":
            (Path(argv[-2]) / "etc").mkdir(parents=True, exist_ok=True)
            return 0, ""
        if argv[0] == "tar":
            Path(argv[argv.index("-cf") + 1]).write_bytes(b"rootfs tar")
            return 0, ""
        if argv[0] == "chroot":
            return 0, ""
        raise AssertionError(f"unexpected command: {line}")

    def _docker(self, args: list[str]) -> tuple[int, str]:
        if args[:2] == ["image", "inspect"]:
            img = self.images.get(args[-1])
            if img is None:
                return 1, ""
            return 0, f"{img['id']} 1000 {json.dumps(img['labels'])}\n"
        if args[0] == "info":
            return 0, str(self.root / "docker-root") + "\n"
        if args[0] == "import":
            changes = [args[i + 1] for i, a in enumerate(args) if a == "--change"]
            self._new_image(args[-1], _labels(changes))
            return 0, ""
        if args[0] == "build":
            dockerfile = (Path(args[-1]) / "Dockerfile").read_text().splitlines()
            self._new_image(args[args.index("-t") + 1], _labels(dockerfile))
            return 0, ""
        if args[0] == "save":
            self.saved = args[3:]
            Path(args[2]).write_bytes(b"images tar")
            return 0, ""
        if args[0] == "exec":
            refs = [r if "." in r.split("/")[0] else f"docker.io/{r}" for r in self.saved]
            return 0, "\n".join(refs) + "\n"
        if args[0] == "commit":
            self._new_image(args[-1], {})
            return 0, ""
        if args[0] == "rmi":
            self.images.pop(args[-1], None)
            return 0, ""
        if args[0] in ("run", "cp", "rm"):
            return 0, ""
        raise AssertionError(f"unexpected docker command: {args}")

    def run(self, argv, *, timeout=300, input=None, env=None, cwd=None, check=True,
            mutating=None, stream=False, sensitive=False) -> Result:
        argv = [str(a) for a in argv]
        self.calls.append(Call(argv, input, mutating, env))
        rc, out = self._answer_for(argv, cwd)
        return Result(argv, rc, out, "", 0.0)

    def run_logged(self, argv, *, timeout=300, env=None, cwd=None) -> Result:
        return self.run(argv, timeout=timeout, env=env, cwd=cwd)


class World:
    """A temporary bundle cache with the Go tools built, and a FakeDocker."""

    def __init__(self, tmp: Path, docker: type[FakeDocker] = FakeDocker):
        self.tmp = tmp
        self.lay = layout.layout(str(tmp / "cache"))
        modules = {"sigs.k8s.io/kind": self._kind_module(tmp / "mod" / "kind"),
                   "github.com/minio/minio": self._minio_module(tmp / "mod" / "minio"),
                   "k8s.io/kubernetes": tmp / "mod" / "kubernetes"}
        (modules["k8s.io/kubernetes"] / "build/pause/linux").mkdir(parents=True)
        self.runner = docker(tmp, modules)
        self.lay.node_bin.mkdir(parents=True)
        for tool in pins.GO_TOOLS:
            for out in tool.outputs:
                (self.lay.node_bin / out).write_bytes(self.built_bytes(out))
            gobuild.write_stamp(tool, self.lay.node_bin, GO_VERSION)

    @staticmethod
    def built_bytes(output: str) -> bytes:
        """What the fake `go build` writes for an output."""
        return b"\x7fELF" + output.encode() * 64

    def rebuild_output(self, tool_name: str, output: str, body: bytes) -> None:
        """What a Go build of the tool leaves: the output, and the stamp recording it."""
        (self.lay.node_bin / output).write_bytes(b"\x7fELF" + body * 64)
        gobuild.write_stamp(pins.go_tool(tool_name), self.lay.node_bin, GO_VERSION)

    @staticmethod
    def _kind_module(d: Path) -> Path:
        for rel, text in {"pkg/build/nodeimage/const_storage.go": STORAGE_GO,
                          "images/base/files/usr/local/bin/entrypoint": "#!/bin/sh\n",
                          "images/base/files/kind/bin/mount-product-files.sh": "#!/bin/sh\n",
                          "images/base/files/etc/systemd/system/kubelet.service": "[Unit]\n"}.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
        return d

    @staticmethod
    def _minio_module(d: Path) -> Path:
        for rel, text in {"helm/minio/Chart.yaml": f"name: minio\nversion: {pins.MINIO_CHART_VERSION}\n",
                          "helm/minio/values.yaml": "replicas: 16\n",
                          "helm/minio/templates/deployment.yaml": "kind: Deployment\n",
                          "dockerscripts/docker-entrypoint.sh": "#!/bin/sh\nexec \"$@\"\n"}.items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_text(text)
            (d / rel).chmod(0o444)          # the module cache is read-only
        return d

    def build(self) -> list[str]:
        """One ``bundle build`` (host steps skipped); the image refs it built."""
        self.runner.built.clear()
        build.build(self.runner, Progress(quiet=True), self.lay, skip_host=True)
        return list(self.runner.built)

    def states(self) -> dict[str, build.Artifact]:
        return {a.name: a for a in build.artifacts(self.runner, self.lay)}


def image(ref: str) -> str:
    return f"image/{ref}"


def free_space(monkeypatch, gib: float) -> None:
    """Every filesystem has ``gib`` GiB free (shutil.disk_usage, as host.check_disk sees it)."""
    usage = shutil.disk_usage("/")
    monkeypatch.setattr(shutil, "disk_usage",
                        lambda path: usage._replace(free=int(gib * 2**30)))


def fake_host(monkeypatch) -> None:
    """No root check; Docker 'answers' (the FakeDocker does); 100 GiB free everywhere."""
    monkeypatch.setattr(host, "check_root", lambda: None)
    monkeypatch.setattr(host, "docker_answers", lambda runner: True)
    free_space(monkeypatch, 100)


__all__ = ["World", "FakeDocker", "fake_host", "free_space", "image"]
