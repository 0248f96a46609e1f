"""Faults while data flows (issue 13): the load generator (``loadgen``: a Pod, several
writers through the backend's Service) appends known rows and keeps a ledger of what was
acknowledged; mid-stream a pod of the stack is deleted; afterwards every acknowledged
row must be in the lake exactly once, nothing in part, and the backend Ready again (as
seen from inside the cluster). Mutating: never under --readonly."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from ducklake_infra.suites.faults import loadgen
from ducklake_infra.suites.faults import volume as fault_volume
from ducklake_infra.suites.catalog import (FAIL, PASS, WARN, CheckError, Result, evidence, figures,
                                           verdict)
from ducklake_infra.suites.checks.core import minio_workload_kind
from ducklake_infra.suites.live import PortForward, backend_token, gather
from ducklake_infra.suites.faults.loadgen import Load
from ducklake_infra.suites.resilience import (judge_full_volume, judge_ledger, ledger_figures,
                                              pods_ready_since)

pytestmark = [pytest.mark.cluster, pytest.mark.mutating]


@pytest.mark.control("RES-MINIO-001")
def test_minio_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    m = spec.minio
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "Deployment", m.fullname, m.namespace,
                      Load(_table()))


@pytest.mark.control("RES-PG-001")
def test_postgresql_pod_deleted_mid_stream(objs, spec, runner, cluster, kubectl):
    p = spec.postgresql
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "StatefulSet", p.fullname, p.namespace,
                      Load(_table()))


@pytest.mark.control("RES-BE-001")
def test_backend_pod_deleted_mid_upload(objs, spec, runner, cluster, kubectl):
    """Uploads of about 4 MB each (20,000 rows of about 200 bytes) are in flight when the
    backend's only pod is deleted (with replicas, the distributed profile: one of them):
    the writers reach the new pod, or the other replica, through the same Service.
    (Rows of 4 kB made the lake's maintenance run out of memory compacting them later:
    issue 13's notes.)"""
    b = spec.backend
    _fault_mid_stream(objs, spec, runner, cluster, kubectl, "Deployment", b.deployment,
                      b.namespace, Load(_table(), batch_rows=20_000, row_pad=180, writers=2,
                                        write_s=16, fault_at_s=8),
                      one=spec.backend_replicas > 1)


def _table() -> str:
    return f"resilience_{uuid.uuid4().hex[:8]}"


def _fault_mid_stream(objs, spec, runner, cluster, kubectl, kind: str, name: str, ns: str,
                      load: Load, one: bool = False) -> None:
    """Every pod of the workload deleted mid-stream; ``one``: only one of its replicas
    (an HA workload: the others must carry the load)."""
    workload = objs.get(kind, name, ns)
    if workload is None:
        raise CheckError(f"{kind} {ns}/{name} does not exist")
    selector = ",".join(f"{k}={v}" for k, v in workload["spec"]["selector"]["matchLabels"].items())
    deleted: list[str] = []

    def delete_pods():
        if not one:
            kubectl("-n", ns, "delete", "pod", "-l", selector, "--wait=false")
            return
        pods = kubectl("-n", ns, "get", "pods", "-l", selector, "-o", "name").stdout.split()
        if not pods:
            raise CheckError(f"{kind} {ns}/{name} has no pod to delete")
        deleted.append(sorted(pods)[0].split("/", 1)[-1])
        kubectl("-n", ns, "delete", "pod", deleted[0], "--wait=false")

    ledger, fault = run_load(objs, spec, kubectl, load, delete_pods)
    kubectl("-n", ns, "rollout", "status", f"{kind.lower()}/{name}", "--timeout=180s", timeout=200)
    what = f"one of its pods ({deleted[0]})" if deleted else "pod"
    judge(objs, spec, runner, cluster, kubectl, load, ledger, fault,
          f"{kind} {ns}/{name}: {what} deleted {load.fault_at_s:.0f}s into the writes")


def run_load(objs, spec, kubectl, load: Load, fault_fn) -> tuple[loadgen.Ledger, float]:
    """Run the load generator; ``fault_fn`` at ``load.fault_at_s`` after it starts writing.
    The ledger and the fault's epoch."""
    b = spec.backend
    dep = objs.get("Deployment", b.deployment, b.namespace)
    if dep is None:
        raise CheckError(f"Deployment {b.namespace}/{b.deployment} does not exist")
    image = dep["spec"]["template"]["spec"]["containers"][0]["image"]
    pod = f"ducklake-loadgen-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input=json.dumps(loadgen.pod(spec, image, pod, load)))
    try:
        def log() -> str:
            return kubectl("-n", b.namespace, "logs", pod, check=False, timeout=30).stdout
        started = loadgen.wait_started(log)
        time.sleep(max(0.0, started + load.fault_at_s - time.time()))
        fault = time.time()
        fault_fn()
        limit = load.write_s + load.max_recovery_s + 90
        kubectl("-n", b.namespace, "wait", f"pod/{pod}", "--for=jsonpath={.status.phase}=Succeeded",
                f"--timeout={int(limit)}s", timeout=limit + 30, check=False)
        return loadgen.parse_ledger(log()), fault
    except ValueError as exc:
        raise CheckError(str(exc)) from None
    finally:
        kubectl("-n", b.namespace, "delete", "pod", pod, "--wait=false", "--ignore-not-found",
                check=False)


def read_back(objs, spec, runner, cluster, table: str, batch_rows: int) -> tuple[dict, int]:
    """Rows per batch and duplicate ids, read through the backend (retried while it comes
    back: a fault may leave it starting)."""
    import httpx
    b = spec.backend
    deadline = time.monotonic() + 120
    last, answered = "", False
    while time.monotonic() < deadline:
        try:
            with PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}",
                             b.service.ports[0]) as pf, \
                    httpx.Client(base_url=f"http://127.0.0.1:{pf.local_port}", timeout=60, headers={
                        "Authorization": f"Bearer {backend_token(objs, spec)}"}) as http:
                counts = http.post("/query", json={"sql": f"SELECT id // {batch_rows} AS b, "
                                                          f"count(*) AS n FROM {table} GROUP BY 1"})
                dups = http.post("/query", json={"sql": f"SELECT count(*) - count(DISTINCT id) "
                                                        f"AS d FROM {table}"})
                if counts.status_code == 200 and dups.status_code == 200:
                    return ({int(r[0]): int(r[1]) for r in counts.json()["rows"]},
                            int(dups.json()["rows"][0][0]))
                bad = counts if counts.status_code != 200 else dups
                last, answered = f"{bad.status_code} {bad.text[:300]}", True
        except Exception as exc:           # the port-forward or the backend not back yet
            last, answered = f"{type(exc).__name__}: {exc}", False
        time.sleep(3)
    if answered:    # the backend is up and says the data cannot be read: that is the finding
        raise AssertionError(f"the backend answers, but table {table} cannot be read back "
                             f"(its acknowledged rows are lost to readers): {last}")
    raise CheckError(f"could not read table {table} back: {last}")


def judge(objs, spec, runner, cluster, kubectl, load: Load, ledger: loadgen.Ledger,
          fault: float, what: str) -> None:
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
            ledger.recovery_s(fault), ledger.errors)
    figures(fault=what, writers=load.writers, **ledger_figures(*args))
    verdict(judge_ledger(*args, load.max_recovery_s))


# ---- a full volume ------------------------------------------------------------------------
FULL_WRITE_S = 12        # writes against the full volume: every one must be refused clearly
WRITE_AGAIN_LIMIT_S = 60


def write_again_s(objs, spec, runner, cluster, table: str) -> tuple[float, dict[str, int]]:
    """After space was freed: seconds until an upload and an ingest succeed again (a
    client retrying its 503s), and the answers before that."""
    import httpx
    b = spec.backend
    start, seen = time.monotonic(), {}
    body = "id,name\n" + "".join(f"{i},again-{i}\n" for i in range(100))
    with PortForward(runner, cluster, b.namespace, f"svc/{b.service.name}",
                     b.service.ports[0]) as pf, \
            httpx.Client(base_url=f"http://127.0.0.1:{pf.local_port}", timeout=60, headers={
                "Authorization": f"Bearer {backend_token(objs, spec)}"}) as http:
        while time.monotonic() - start < WRITE_AGAIN_LIMIT_S:
            r = http.post(f"/datasets/{table}.csv", content=body.encode(),
                          headers={"content-type": "text/csv"})
            if r.status_code == 201:
                r = http.post(f"/tables/{table}/ingest", json={"dataset": f"{table}.csv",
                                                                "mode": "create"})
                if r.status_code == 200:
                    return time.monotonic() - start, seen
            seen[str(r.status_code)] = seen.get(str(r.status_code), 0) + 1
            time.sleep(1)
    raise AssertionError(f"writes were still refused {WRITE_AGAIN_LIMIT_S}s after space was "
                         f"freed: {seen}")


@pytest.mark.disruptive
@pytest.mark.control("RES-DISK-001")
def test_minio_volume_full(objs, spec, runner, cluster, kubectl):
    _only_on_the_suites_kind_cluster(cluster, "moves MinIO onto a small volume of its own")
    moved = fault_volume.move(spec, cluster, runner, kubectl)
    try:
        load = Load(_table(), writers=2, write_s=4 + FULL_WRITE_S, fault_at_s=4, steady_s=1,
                    min_watch_s=1)
        filled = {}

        def fill():
            filled["kib"] = fault_volume.fill(runner, moved.node, leave_mib=1)
        ledger, fault_at = run_load(objs, spec, kubectl, load, fill)
        fault_volume.free(runner, moved.node)
        again, before_again = write_again_s(objs, spec, runner, cluster, load.table + "_after")
        found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    finally:
        undo_errors = fault_volume.restore(spec, cluster, runner, kubectl, moved)
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups,
            ledger.recovery_s(fault_at), ledger.errors)
    figures(fault=f"MinIO's volume full ({fault_volume.SIZE_MIB} MiB, filled to 1 MiB free "
                  f"{load.fault_at_s:.0f}s into the writes)", writers=load.writers,
            **ledger_figures(*args), writes_accepted_again_s=round(again, 1))
    verdict(judge_full_volume(judge_ledger(*args, load.max_recovery_s), ledger.errors, again,
                              before_again, undo_errors))


# ---- the whole cluster, and the stack's lifecycle ----------------------------------------------
RESTART_LIMIT_S = 300


def _only_on_the_suites_kind_cluster(cluster, what: str) -> None:
    """A whole-cluster restart or a reinstall only where these suites installed the stack
    themselves (the spec's kind cluster, ``up`` with its defaults): on an existing context
    they know neither how it was installed nor whether it may go down. Not evaluated
    there, with the reason; on the kind cluster CI uses, always run."""
    if not cluster.is_kind:
        pytest.skip(f"not evaluated: this check {what}, which it does only on the spec's kind "
                    f"cluster that the suites install; {cluster.context!r} is an existing "
                    "context")


def _check_statuses(objs, spec, sbom_index, storage_health: dict | None = None
                    ) -> dict[str, str]:
    """The status of every registered check of the spec's profile but drift's (which
    compare with what `up` renders, not with the cluster's health) on ``objs``;
    ``storage_health``: the backend's GET /storage/health for HA-MINIO-003."""
    from ducklake_infra.suites import checks, drift
    from ducklake_infra.suites.catalog import catalog
    facts = {"SUPPLY-SBOM-001": {"index": sbom_index}, "SUPPLY-PIN-001": {"loaded": True},
             "HA-MINIO-003": {"health": storage_health}}
    skip = set(drift.CONTROL_IDS.values())
    controls = catalog().controls
    return {cid: checks.run(cid, objs, spec, **facts.get(cid, {})).status
            for cid in sorted(checks.CHECKS)
            if cid not in skip and controls[cid].applies_to(spec.profile)}


def _wait_stack_ready(spec, kubectl, deadline: float, since: float | None = None
                      ) -> dict[str, float]:
    """Seconds (from now) until the API server answers and each workload of the stack
    is Ready again (with ``since``: in containers started after it); CheckError past
    ``deadline``."""
    start, out = time.monotonic(), {}
    while kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode != 0:
        if time.time() > deadline:
            raise CheckError("the API server did not answer again")
        time.sleep(1)
    out["API server"] = time.monotonic() - start
    m, p, b = spec.minio, spec.postgresql, spec.backend
    for what, ns, kind, name in (("CoreDNS", "kube-system", "Deployment", "coredns"),
                                 ("MinIO", m.namespace, minio_workload_kind(spec), m.fullname),
                                 ("PostgreSQL", p.namespace, "StatefulSet", p.fullname),
                                 ("backend", b.namespace, "Deployment", b.deployment)):
        while True:
            res = kubectl("-n", ns, "get", kind.lower(), name, "-o",
                          "jsonpath={.spec.selector.matchLabels}", check=False, timeout=20)
            pods = []
            if res.returncode == 0 and res.stdout.strip():
                sel = ",".join(f"{k}={v}" for k, v in json.loads(res.stdout).items())
                got = kubectl("-n", ns, "get", "pods", "-l", sel, "-o", "json", check=False,
                              timeout=20)
                pods = json.loads(got.stdout or "{}").get("items", []) if got.returncode == 0 else []
            if pods_ready_since(pods, since):
                break
            if time.time() > deadline:
                raise CheckError(f"{what} ({ns}/{name}) was not Ready again within "
                                 f"{RESTART_LIMIT_S}s")
            time.sleep(1)
        out[what] = time.monotonic() - start
    return out


@pytest.mark.disruptive
@pytest.mark.control("RES-NODE-001")
def test_the_whole_cluster_restarted(objs, spec, runner, cluster, kubectl, sbom_index):
    _only_on_the_suites_kind_cluster(cluster, "restarts the kind node's container")
    before = _check_statuses(objs, spec, sbom_index)
    load = Load(_table(), write_s=8, fault_at_s=0.5, steady_s=1, min_watch_s=1)
    ledger, _ = run_load(objs, spec, kubectl, load, lambda: None)
    start = time.time()
    cluster.restart_node()
    phases = _wait_stack_ready(spec, kubectl, start + RESTART_LIMIT_S, since=start)
    found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
    recovery = time.time() - start         # the backend answered a query again
    after = _check_statuses(gather(kubectl, runner, cluster, spec), spec, sbom_index)
    evidence("ready again after the restart: " + ", ".join(
        f"{k} {v:.1f}s" for k, v in phases.items()) + f", backend answering {recovery:.1f}s")
    worse = [f"{cid}: {before[cid]} before the restart, {after.get(cid)} after"
             for cid in before if before[cid] in (PASS, WARN) and after.get(cid) not in (PASS, WARN)]
    args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups, recovery, ledger.errors)
    figures(fault="the kind node's container restarted (whole cluster)", writers=load.writers,
            **ledger_figures(*args), phases_s={k: round(v, 1) for k, v in phases.items()},
            checks_worse=len(worse))
    res = judge_ledger(*args, RESTART_LIMIT_S)
    if worse:
        res = Result(FAIL, ["checks that passed before the restart and not after: "
                            + "; ".join(worse), *res.evidence])
    else:
        res.evidence.append(f"{len(before)} checks evaluated again after the restart: none "
                            "worse than before")
    verdict(res)


def _upgrade_with_changed_values(spec, cluster, runner) -> list[str]:
    """`helm upgrade` each release with a value changed that rolls its pods: a pod
    annotation on MinIO, a postgresql.conf setting (the config checksum) on PostgreSQL."""
    from ducklake_infra.provision.render import Options, helm_upgrade_argv, image_refs
    stamp = str(int(time.time()))
    changed = {"minio": ["--set-string", f"podAnnotations.resilienceUpgrade={stamp}"],
               "postgresql": ["--set-string", f"config.extra.application_name='upgrade-{stamp}'"]}
    refs, opts, done = image_refs(spec, Options()), Options(), []
    for key, rel in spec.releases.items():
        argv, _ = helm_upgrade_argv(cluster.helm(), spec, rel, refs, opts)
        runner.run([*argv, *changed.get(key, [])], timeout=rel.timeout + 60, mutating=True)
        done.append(f"{rel.name} ({' '.join(changed.get(key, [])[1:]) or 'same values'})")
    return done


@pytest.mark.disruptive
@pytest.mark.control("RES-LIFE-001")
def test_data_survives_an_upgrade_and_down_then_up(objs, spec, runner, cluster, kubectl):
    from ducklake_infra.provision.progress import Progress
    from ducklake_infra.provision.stack import down, up
    _only_on_the_suites_kind_cluster(cluster, "reinstalls the stack with `down` and `up`")
    load = Load(_table(), writers=2, write_s=4, fault_at_s=0.5, steady_s=1, min_watch_s=1)
    ledger, _ = run_load(objs, spec, kubectl, load, lambda: None)
    steps = []
    for what, act in (
            ("helm upgrade with changed values", lambda: _upgrade_with_changed_values(
                spec, cluster, runner)),
            ("down (cluster kept) then up", lambda: [
                down(cluster, spec, runner, Progress(quiet=True), keep_cluster=True),
                up(cluster, spec, runner, Progress(quiet=True)) and "up"])):
        t0 = time.monotonic()
        act()
        _wait_stack_ready(spec, kubectl, time.time() + RESTART_LIMIT_S)
        found, dups = read_back(objs, spec, runner, cluster, load.table, load.batch_rows)
        args = (load.batch_rows, set(ledger.acked), ledger.sent, found, dups, None, ledger.errors)
        figures(fault="helm upgrade (changed values), then down and up", writers=load.writers,
                **{**ledger_figures(*args), "ready_again_s": None})
        res = judge_ledger(*args[:5], 0.0, ledger.errors, RESTART_LIMIT_S)
        steps.append(f"after {what} ({time.monotonic() - t0:.1f}s): {res.status}: "
                     + "; ".join(res.evidence[:2]))
        if res.status != PASS:
            verdict(Result(FAIL, steps + res.evidence))
    verdict(Result(PASS, steps))
