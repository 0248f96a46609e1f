"""`ducklake-infra up --registry` against a registry-backed cluster treated as real.

A local registry (Debian's ``docker-registry``, run here as a subprocess, storage in
a temp dir) and a SECOND kind cluster (``ducklake-reg``) whose containerd maps
``localhost:<port>`` to ``http://<kind network gateway>:<port>`` (kind's local
registry pattern). The cluster is then addressed only by its context and
kubeconfig, like a team's own cluster: nothing is loaded into it, every image
arrives by a pull from the registry, by digest. Then the conformance suites run
against it, and a second ``up`` must push nothing and change nothing.

Traffic stays local: the registry on this machine and the kind node.
Does not use the session ``cluster`` fixture (kind-ducklake belongs to others).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.cluster import KindCluster
from ducklake_infra.provision.runner import Runner

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_NAME = "ducklake-reg"
REGISTRY_BIN = "/usr/bin/docker-registry"
PREFIX = "ducklake"
_MIRROR = re.compile(r'registry\.mirrors\."localhost:(\d+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
            return True
        except OSError:
            return False


def mirror_patch(port: int, gateway: str) -> str:
    return (f'[plugins."io.containerd.grpc.v1.cri".registry.mirrors."localhost:{port}"]\n'
            f'  endpoint = ["http://{gateway}:{port}"]\n')


@pytest.fixture(scope="module")
def host_runner(pytestconfig) -> Runner:
    lay = layout.layout(pytestconfig.getoption("--cache-dir"))
    r = Runner(log_path=lay.logs / f"test-registry-{time.strftime('%Y%m%d-%H%M%S')}.log")
    r.base_env["PATH"] = lay.path_env(r.base_env.get("PATH", ""))
    if not r.which("kind"):
        pytest.fail(f"kind is not built: run `ducklake-infra bundle build` (looked in {lay.bin})")
    return r


@pytest.fixture(scope="module")
def kind_gateway(host_runner) -> str:
    """The IPv4 gateway of kind's Docker network: the host as the nodes see it."""
    res = host_runner.run(["docker", "network", "inspect", "kind", "--format",
                           "{{json .IPAM.Config}}"], check=False, mutating=False)
    if res.returncode != 0:
        # no kind cluster yet on this machine: make the network kind would reuse
        host_runner.run(["docker", "network", "create", "-d", "bridge", "-o",
                         "com.docker.network.bridge.enable_ip_masquerade=true", "kind"])
        res = host_runner.run(["docker", "network", "inspect", "kind", "--format",
                               "{{json .IPAM.Config}}"], mutating=False)
    gw = [c.get("Gateway") for c in json.loads(res.stdout) if ":" not in c.get("Gateway", ":")]
    assert gw and gw[0], f"kind network has no IPv4 gateway: {res.stdout}"
    return gw[0]


@pytest.fixture(scope="module")
def kind_cluster(pytestconfig, host_runner) -> KindCluster:
    lay = layout.layout(pytestconfig.getoption("--cache-dir"))
    return KindCluster(host_runner, name=CLUSTER_NAME, node_image=layout.NODE_IMAGE,
                       kubeconfig_dir=lay.root / "kubeconfig",
                       keep=pytestconfig.getoption("--keep-cluster"))


@pytest.fixture(scope="module")
def registry(kind_cluster, tmp_path_factory):
    """Debian's docker-registry on 0.0.0.0:<free port>, storage in a temp dir; stopped
    at the end. A kept cluster from an earlier run fixes the port (its mirror)."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.fail(f"{REGISTRY_BIN} missing: apt-get install -y docker-registry "
                    "(scripts/bootstrap.sh installs it)")
    port = None
    cfg_old = Path(kind_cluster.kubeconfig_dir).expanduser().parent / "kind" / CLUSTER_NAME / \
        "kind-config.yaml"
    if kind_cluster.exists() and cfg_old.is_file():
        m = _MIRROR.search(cfg_old.read_text())
        if m and _port_free(int(m.group(1))):
            port = int(m.group(1))
    port = port or _free_port()
    d = tmp_path_factory.mktemp("registry")
    (d / "data").mkdir()
    cfg = d / "config.yml"
    cfg.write_text(f"""\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {d / 'data'}
  delete:
    enabled: true
http:
  addr: 0.0.0.0:{port}
""")
    log = open(d / "registry.log", "w")
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"registry did not start: {(d / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield {"host": f"localhost:{port}", "port": port, "dir": d}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # drop the local tags `up --registry` made for this throwaway registry
        tags = subprocess.run(["docker", "images", "--format", "{{.Repository}}:{{.Tag}}",
                               f"localhost:{port}/*/*"], capture_output=True, text=True).stdout
        if tags.split():
            subprocess.run(["docker", "rmi", *tags.split()], capture_output=True)


@pytest.fixture(scope="module")
def reg_cluster(kind_cluster, registry, kind_gateway, pytestconfig):
    """The second kind cluster with the registry mirror; then only its context counts."""
    kind_cluster.containerd_patches = (mirror_patch(registry["port"], kind_gateway),)
    start = time.monotonic()
    kind_cluster.ensure()
    took = time.monotonic() - start
    print(f"\ncluster {kind_cluster.context}: ready in {took:.1f}s "
          f"({'created' if kind_cluster.owned else 'reused'})")
    yield {"context": kind_cluster.context, "kubeconfig": str(kind_cluster.kubeconfig)}
    if not pytestconfig.getoption("--keep-cluster"):
        kind_cluster.keep = False
        kind_cluster.delete()


def _cli() -> list[str]:
    exe = Path(sys.executable).parent / "ducklake-infra"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ducklake_infra.provision.cli"]


def _env(pytestconfig) -> dict[str, str]:
    lay = layout.layout(pytestconfig.getoption("--cache-dir"))
    env = dict(os.environ)
    env["PATH"] = lay.path_env(env.get("PATH", ""))
    return env


def _up(reg_cluster, registry, pytestconfig) -> tuple[subprocess.CompletedProcess, float]:
    argv = [*_cli(), "up", "--cluster", reg_cluster["context"], "--kubeconfig",
            reg_cluster["kubeconfig"], "--registry", f"{registry['host']}/{PREFIX}", "--yes"]
    start = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=2400, cwd=ROOT,
                         env=_env(pytestconfig))
    took = time.monotonic() - start
    print(f"\n$ {' '.join(argv)}\n# exit {res.returncode} in {took:.1f}s\n{res.stderr[-3000:]}"
          f"{res.stdout[-1500:]}")
    return res, took


def _kubectl(reg_cluster, pytestconfig, *args: str) -> dict:
    res = subprocess.run(["kubectl", "--kubeconfig", reg_cluster["kubeconfig"], "--context",
                          reg_cluster["context"], *args, "-o", "json"], capture_output=True,
                         text=True, timeout=60, env=_env(pytestconfig), check=True)
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def first_up(reg_cluster, registry, pytestconfig):
    res, took = _up(reg_cluster, registry, pytestconfig)
    return {"res": res, "took": took}


def test_first_up_pushes_and_brings_the_stack_to_ready(first_up, registry):
    res = first_up["res"]
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stderr + res.stdout
    assert re.search(r"push images to .*\[\d pushed, \d already present", out), out[-3000:]
    assert "kind load" not in out
    print(f"registry-backed up: {first_up['took']:.1f}s")


def test_every_pod_runs_a_digest_reference_pulled_from_the_registry(first_up, reg_cluster,
                                                                     registry, pytestconfig):
    assert first_up["res"].returncode == 0
    base = f"{registry['host']}/{PREFIX}/"
    seen = set()
    for ns in ("storage", "ducklake"):
        for pod in _kubectl(reg_cluster, pytestconfig, "get", "pods", "-n", ns)["items"]:
            st = pod["status"]
            if st.get("phase") == "Succeeded":
                continue
            for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
                assert c["image"].startswith(base) and re.search(r"@sha256:[0-9a-f]{64}$",
                                                                  c["image"]), c["image"]
            for cs in (st.get("initContainerStatuses") or []) + (st.get("containerStatuses") or []):
                digest = cs["image"].rsplit("@", 1)[-1] if "@" in cs["image"] else None
                assert cs["imageID"].startswith(base), cs
                assert digest is None or cs["imageID"].endswith(digest), cs
                seen.add(cs["imageID"].split("@")[0].rsplit("/", 1)[-1])
    assert {"minio", "postgresql", "backend"} <= seen, seen
    # the registry really holds what runs
    for name in ("minio", "mc", "postgresql", "backend"):
        with urllib.request.urlopen(f"http://127.0.0.1:{registry['port']}/v2/{PREFIX}/{name}"
                                    "/tags/list", timeout=5) as r:
            assert json.load(r)["tags"], name


def test_conformance_suites_pass_against_the_registry_cluster(first_up, reg_cluster,
                                                              pytestconfig, tmp_path):
    assert first_up["res"].returncode == 0
    # the fault suite is judged on the main kind cluster (about 2.5 min); here the point is
    # what pulling from a registry changes
    argv = [sys.executable, "-m", "pytest", "ducklake_infra/suites", f"--cluster={reg_cluster['context']}",
            f"--kubeconfig={reg_cluster['kubeconfig']}", "--report-dir", str(tmp_path / "reports"),
            "--ignore=ducklake_infra/suites/faults", "-q", "-p", "no:cacheprovider"]
    start = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=3600, cwd=ROOT,
                         env=_env(pytestconfig))
    print(f"\n$ {' '.join(argv)}\n# exit {res.returncode} in {time.monotonic() - start:.1f}s\n"
          f"{res.stdout[-3000:]}")
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-2000:]


def test_second_up_pushes_nothing_and_changes_nothing(first_up, reg_cluster, registry,
                                                      pytestconfig):
    assert first_up["res"].returncode == 0

    def state():
        d = _kubectl(reg_cluster, pytestconfig, "get", "deployment", "ducklake-backend",
                     "-n", "ducklake")
        sts = {s["metadata"]["name"]: s["metadata"]["generation"] for s in
               _kubectl(reg_cluster, pytestconfig, "get", "statefulsets,deployments",
                        "-n", "storage")["items"]}
        secrets = {s["metadata"]["name"]: s["metadata"]["resourceVersion"] for ns in
                   ("storage", "ducklake") for s in
                   _kubectl(reg_cluster, pytestconfig, "get", "secrets", "-n", ns)["items"]}
        return d["metadata"]["generation"], sts, secrets

    before = state()
    res, took = _up(reg_cluster, registry, pytestconfig)
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stderr + res.stdout
    assert "0 pushed, 4 already present (all present)" in out
    assert not re.search(r": pushed ", out)
    assert "minio: unchanged" in out and "postgresql: unchanged" in out
    assert state() == before
    print(f"second up: {took:.1f}s")
