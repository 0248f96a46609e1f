"""Host preparation: a Docker engine that can run privileged kind nodes.

* refuse clearly when not root or when disk space is short;
* install Debian's ``docker.io`` (plus iptables, jq, debootstrap) when no engine
  answers, and start ``dockerd`` in the background (no systemd here);
* install the capability workaround only when ``docker run --privileged`` fails
  with "unable to apply caps": some VMs lack CAP_SYS_RESOURCE in the bounding
  set, so a runc wrapper strips that capability from every OCI spec runc gets.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.progress import Progress
from ducklake_infra.provision.runner import CommandError, Runner

APT_PACKAGES = ("docker.io", "iptables", "jq", "debootstrap")
RUNC_WRAPPER = Path("/usr/local/sbin/runc-nosysres")
DAEMON_JSON = Path("/etc/docker/daemon.json")
RUNTIME_NAME = "runc-nosysres"
# The docker client that matches Debian's engine (BuildKit with --secret works
# with it; a newer standalone client needs the buildx plugin we do not have).
DOCKER = "/usr/bin/docker"

_WRAPPER = r"""#!/bin/sh
# Installed by ducklake-infra: this host's capability bounding set lacks
# CAP_SYS_RESOURCE, so strip it from every OCI spec runc receives
# (create: <bundle>/config.json, exec: --process file). Then run the real runc.
strip() {
  [ -f "$1" ] || return 0
  jq 'def s: if type=="object" then with_entries(.value |= (if type=="array" then map(select(. != "CAP_SYS_RESOURCE")) else . end)) else . end;
      if has("process") then .process.capabilities |= s else .capabilities |= s end' "$1" > "$1.tmp" && mv "$1.tmp" "$1"
}
prev=""
for a in "$@"; do
  case "$prev" in --bundle|-b) strip "$a/config.json" ;; --process|-p) strip "$a" ;; esac
  case "$a" in --bundle=*) strip "${a#--bundle=}/config.json" ;; --process=*) strip "${a#--process=}" ;; esac
  prev="$a"
done
exec /usr/sbin/runc "$@"
"""

MIN_FREE_GB = 20


def check_root() -> None:
    if os.geteuid() != 0:
        raise DucklakeInfraError("bundle build must run as root (it installs Debian packages, "
                                 "runs debootstrap and starts dockerd); re-run with sudo")


def existing_ancestor(path: Path) -> Path:
    """``path`` or its nearest parent that exists (where space for it would be taken)."""
    while not path.exists():
        path = path.parent
    return path


def check_disk(path: Path, need_gb: float = MIN_FREE_GB,
               what: str = "the bundle (Go caches, images)") -> None:
    """Fail in one line when less than ``need_gb`` GiB are free on ``path``'s filesystem."""
    probe = existing_ancestor(path)
    free = shutil.disk_usage(probe).free / 2**30
    if free < need_gb:
        raise DucklakeInfraError(f"{what} needs {need_gb:g} GiB free under {probe}, only "
                                 f"{free:.1f} GiB free there: free space or use --cache-dir")


def docker_answers(runner: Runner) -> bool:
    if not Path(DOCKER).exists():
        return False
    return runner.run([DOCKER, "info", "--format", "{{.ServerVersion}}"], timeout=30,
                      check=False, mutating=False).returncode == 0


def install_packages(runner: Runner, packages: tuple[str, ...] = APT_PACKAGES) -> None:
    missing = [p for p in packages
               if runner.run(["dpkg-query", "-W", "-f=${Status}", p], timeout=30, check=False,
                             mutating=False).stdout.strip() != "install ok installed"]
    if not missing:
        return
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    runner.run_logged(["apt-get", "update", "-q"], timeout=600, env=env)
    runner.run_logged(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                      timeout=1200, env=env)


def start_dockerd(runner: Runner, log_dir: Path, timeout: float = 60) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_dir / "dockerd.log", "ab")
    subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                     stdin=subprocess.DEVNULL, start_new_session=True, env=runner.base_env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if docker_answers(runner):
            return
        time.sleep(1)
    raise DucklakeInfraError(f"dockerd did not answer within {timeout:.0f}s; "
                             f"see {log_dir / 'dockerd.log'}")


def privileged_works(runner: Runner, image: str) -> tuple[bool, str]:
    res = runner.run([DOCKER, "run", "--rm", "--privileged", "--entrypoint", "/bin/true", image],
                     timeout=120, check=False)
    return res.returncode == 0, res.stderr


def install_caps_workaround(runner: Runner, log_dir: Path) -> None:
    RUNC_WRAPPER.write_text(_WRAPPER)
    RUNC_WRAPPER.chmod(0o755)
    cfg = json.loads(DAEMON_JSON.read_text()) if DAEMON_JSON.exists() else {}
    cfg.setdefault("runtimes", {})[RUNTIME_NAME] = {"path": str(RUNC_WRAPPER)}
    cfg["default-runtime"] = RUNTIME_NAME
    DAEMON_JSON.parent.mkdir(parents=True, exist_ok=True)
    DAEMON_JSON.write_text(json.dumps(cfg, indent=2) + "\n")
    # dockerd re-reads runtimes on SIGHUP, but the default runtime needs a restart.
    runner.run(["pkill", "-TERM", "-x", "dockerd"], timeout=30, check=False)
    for _ in range(30):
        if runner.run(["pgrep", "-x", "dockerd"], timeout=10, check=False,
                      mutating=False).returncode != 0:
            break
        time.sleep(1)
    start_dockerd(runner, log_dir)


def ensure_engine(runner: Runner, progress: Progress, log_dir: Path) -> None:
    """Make sure a Docker engine answers (install Debian's and start it if not)."""
    with progress.step("host: Docker engine") as info:
        if docker_answers(runner):
            info["note"] = "already running"
        else:
            install_packages(runner)
            start_dockerd(runner, log_dir)
            info["note"] = "installed and started"
    install_packages(runner)  # jq and debootstrap are needed even with a running engine


def ensure_privileged(runner: Runner, progress: Progress, log_dir: Path, probe_image: str) -> None:
    """Privileged containers (kind nodes) must run; install the workaround if not."""
    with progress.step("host: privileged containers") as info:
        ok, err = privileged_works(runner, probe_image)
        if ok:
            info["note"] = "work as is"
            return
        if "unable to apply caps" not in err and "operation not permitted" not in err:
            raise DucklakeInfraError(f"docker run --privileged fails: {err.strip()[-300:]}")
        install_caps_workaround(runner, log_dir)
        ok, err = privileged_works(runner, probe_image)
        if not ok:
            raise DucklakeInfraError("docker run --privileged still fails after installing "
                                     f"the capability workaround: {err.strip()[-300:]}")
        info["note"] = f"installed runtime {RUNTIME_NAME} (drops CAP_SYS_RESOURCE)"


__all__ = ["ensure_engine", "ensure_privileged", "check_root", "check_disk", "docker_answers", "CommandError"]
