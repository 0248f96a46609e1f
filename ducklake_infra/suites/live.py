"""Cluster access for the suites: gather objects, the service proxy, port-forwards,
logs and failure diagnostics. Every command goes through the shared runner
(read-only mode refuses writes, exec and port-forward before they start).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Iterator

from ducklake_infra.provision.portforward import PortForward  # noqa: F401 (one definition)
from ducklake_infra.provision.runner import CommandError, ReadOnlyViolation, Runner
from ducklake_infra.provision.spec import StackSpec

from ducklake_infra.suites.objects import Objects, containers, pod_spec

# Secrets are read first, on their own (see gather); everything else in one call
GATHER_KINDS = (("deployments", "Deployment"), ("statefulsets", "StatefulSet"),
                ("replicasets", "ReplicaSet"), ("jobs", "Job"), ("pods", "Pod"),
                ("services", "Service"), ("endpointslices", "EndpointSlice"),
                ("persistentvolumeclaims", "PersistentVolumeClaim"),
                ("configmaps", "ConfigMap"), ("serviceaccounts", "ServiceAccount"),
                ("networkpolicies", "NetworkPolicy"),
                ("poddisruptionbudgets", "PodDisruptionBudget"))


def stack_namespaces(spec: StackSpec) -> list[str]:
    return sorted(set(spec.namespaces.values()))


def images_loaded(cluster, spec: StackSpec) -> bool:
    """Whether the cluster is the spec's own kind cluster, whose images `ducklake-infra up`
    loads into the node (never pulled, never overridden with --image)."""
    return bool(cluster.is_kind or getattr(cluster, "context", "") == f"kind-{spec.kind_cluster}")


def _import_api_client_meanwhile() -> None:
    """The Kubernetes API client (the data-plane reads and AUDIT-PRIV-001 use it) takes
    about half a second to import; import it while the reads below wait on kubectl. A
    later ``import kubernetes.client`` waits for this one (the import lock) or finds it
    done."""
    import importlib
    import threading
    threading.Thread(target=importlib.import_module, args=("kubernetes.client",),
                     name="import-kubernetes-client", daemon=True).start()


def gather(kubectl, runner: Runner, cluster, spec: StackSpec, *, with_logs: bool = False,
           log_lines: int = 2000, rules_review: bool = False) -> Objects:
    """Everything the pure checks read, from the live cluster. ``rules_review``: also ask
    what these credentials could change in each stack namespace (AUDIT-PRIV-001's self
    rules review, through the read-only API client), among the other reads."""
    items: list[dict] = []
    forbidden: dict[tuple[str, str], str] = {}
    namespaces = stack_namespaces(spec)
    # Secrets first, each namespace in a call of its own whose output is never logged
    # (runner: sensitive), and their values registered with the Redactor before any
    # other output can reach a log, an error or a report.
    runner.redactor.allow(*spec.public_names())
    _import_api_client_meanwhile()
    secret_reads = parallel([
        lambda ns=ns: kubectl("-n", ns, "get", "secrets", "-o", "json", timeout=120,
                              check=False, sensitive=True) for ns in namespaces])
    for ns, res in zip(namespaces, secret_reads):
        if res.returncode == 0:
            items.append(json.loads(res.stdout))
        else:
            _refused(res, runner, forbidden, "secrets", "Secret", ns)
    from ducklake_infra.suites.checks import secret_values_of
    runner.redactor.add(*secret_values_of(Objects(list(items)), spec))
    # then everything else, every independent read side by side (the audit's wall time):
    # the objects, the namespaces, Helm's releases and the values of every release the spec
    # names (a release that turns out not installed: its answer is dropped), the rules review
    every = ",".join(r for r, _ in GATHER_KINDS)
    release_namespaces = sorted({r.namespace for r in spec.releases.values()})
    releases = list(spec.releases.values())
    calls = ([lambda ns=ns: kubectl("-n", ns, "get", every, "-o", "json", timeout=120, check=False)
              for ns in namespaces] +
             [lambda ns=ns: runner.run([*cluster.helm(), "list", "-n", ns, "-o", "json"],
                                       timeout=60, check=False) for ns in release_namespaces] +
             [lambda rel=rel, a=a: runner.run([*cluster.helm(), "get", "values", rel.name, "-n",
                                               rel.namespace, *a, "-o", "json"], timeout=60,
                                              check=False)
              for rel in releases for a in ([], ["-a"])] +
             [lambda: kubectl("get", "namespaces", *namespaces, "-o", "json", timeout=60,
                              check=False)] +
             ([lambda ns=ns: _write_rules_or_error(kubectl.cluster, ns) for ns in namespaces]
              if rules_review else []))
    reads = parallel(calls, workers=len(calls))
    objects, reads = reads[:len(namespaces)], reads[len(namespaces):]
    lists, reads = reads[:len(release_namespaces)], reads[len(release_namespaces):]
    values, reads = reads[:2 * len(releases)], reads[2 * len(releases):]
    namespace_read, rules = reads[0], reads[1:]
    for ns, res in zip(namespaces, objects):
        if res.returncode == 0:
            items.append(json.loads(res.stdout))
            continue
        for resource, kind in GATHER_KINDS:  # something was refused: find out what
            res = kubectl("-n", ns, "get", resource, "-o", "json", timeout=120, check=False)
            if res.returncode == 0:
                items.append(json.loads(res.stdout))
            else:
                _refused(res, runner, forbidden, resource, kind, ns)
    objs = Objects(items, forbidden=forbidden)
    _read_namespaces(objs, runner, namespaces, namespace_read)
    _read_helm(objs, runner, spec, release_namespaces, lists, values)
    objs.write_rules = dict(zip(namespaces, rules)) if rules_review else None
    if with_logs:
        objs.logs = pod_logs(kubectl, objs, log_lines)
    return objs


def _write_rules_or_error(cluster, namespace: str) -> list[str] | Exception:
    """AUDIT-PRIV-001's self rules review of ``namespace``, or what stopped it (raised by
    the control, not by the gather)."""
    from ducklake_infra.provision.kubeapi import read_only_client, write_rules
    try:
        return write_rules(read_only_client(cluster), namespace)
    except ReadOnlyViolation:
        raise
    except Exception as exc:  # noqa: BLE001 - handed to the control as its ERROR
        return exc


def _read_namespaces(objs: Objects, runner: Runner, namespaces: list[str], res) -> None:
    """The stack's Namespace objects (their Pod Security labels) into ``objs.namespace_objects``;
    one that could not be read is left out and the reason kept (SEC-PSS-001 says it)."""
    found = json.loads(res.stdout).get("items", []) if res.stdout.strip() else []
    objs.namespace_objects = {n["metadata"]["name"]: n for n in found if n.get("metadata")}
    if len(objs.namespace_objects) < len(namespaces):
        objs.namespace_error = runner.redactor(res.stderr.strip()[-300:]) or \
            f"kubectl get namespaces exited {res.returncode}"


def _read_helm(objs: Objects, runner: Runner, spec: StackSpec, release_namespaces: list[str],
               lists: list, values: list) -> None:
    """The Helm side of :func:`gather`: ``lists`` (the ``helm list`` of each release
    namespace) into ``objs.helm_releases``; ``values`` (``helm get values`` and ``-a`` of
    each release of the spec, in spec order) into ``objs.helm_values`` for those installed."""
    releases: list[dict] | None = []
    for ns, res in zip(release_namespaces, lists):
        if res.returncode != 0:  # e.g. forbidden: helm keeps releases in Secrets
            releases = None
            objs.helm_error = (f"forbidden (helm list needs list on secrets in namespace {ns})"
                               if "forbidden" in res.stderr.lower()
                               else f"helm list failed: {runner.redactor(res.stderr.strip()[-300:])}")
            break
        releases += json.loads(res.stdout or "[]")
    objs.helm_releases = releases
    for i, rel in enumerate(spec.releases.values()):
        if releases is None or not any(r.get("name") == rel.name and r.get("namespace") ==
                                       rel.namespace for r in releases):
            continue
        res, res_all = values[2 * i], values[2 * i + 1]
        if res.returncode == 0:
            user = json.loads(res.stdout or "null") or {}
            # `mode` is a behaviour value: take the computed one
            if res_all.returncode == 0:
                computed = json.loads(res_all.stdout or "null") or {}
                if "mode" in computed:
                    user.setdefault("mode", computed["mode"])
                user.setdefault("existingSecret", computed.get("existingSecret"))
            objs.helm_values[rel.name] = user


def _refused(res, runner: Runner, forbidden: dict, resource: str, kind: str, ns: str) -> None:
    """A read that failed: forbidden is recorded (the checks that need it say so), a
    missing kind is nothing, anything else is an error (stderr only, redacted)."""
    if "forbidden" in res.stderr.lower():
        forbidden[(kind, ns)] = f"needs list on {resource} in namespace {ns}"
    elif "NotFound" not in res.stderr and "not found" not in res.stderr:
        raise CommandError(res.argv, res.returncode, runner.redactor(res.stderr[-2000:]))


def pod_logs(kubectl, objs: Objects, lines: int = 2000) -> dict[str, str]:
    pods = [o for o in objs.items if o.get("kind") == "Pod"]  # forbidden kinds: none
    keys = [(p["metadata"]["namespace"], p["metadata"]["name"], c["name"])
            for p in pods for c in containers(pod_spec(p), init=True)]
    reads = parallel([lambda k=k: kubectl("-n", k[0], "logs", k[1], "-c", k[2],
                                           f"--tail={lines}", timeout=60, check=False)
                       for k in keys])
    return {"/".join(k): res.stdout for k, res in zip(keys, reads) if res.returncode == 0}


def parallel(calls: list, workers: int = 6) -> list:
    """Run independent reads side by side; results in the order of ``calls`` (the
    first exception is raised, as a sequential loop would)."""
    if len(calls) <= 1:
        return [c() for c in calls]
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=min(workers, len(calls))) as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def proxy_path(ns: str, service: str, port: int | str, path: str) -> str:
    return f"/api/v1/namespaces/{ns}/services/{service}:{port}/proxy/{path.lstrip('/')}"


def backend_token(objs: Objects, spec: StackSpec) -> str:
    """The backend's API token, from its Secret (read with the others, so the Redactor
    already knows it); a CheckError ("could not evaluate") when it cannot be read."""
    from ducklake_infra.suites.catalog import CheckError
    t = spec.backend.token_secret
    data = objs.secret_data(t.name, t.namespace)
    if not data or not data.get(t.keys[0]):
        raise CheckError(f"could not evaluate: the backend's API token (Secret "
                         f"{t.namespace}/{t.name} key {t.keys[0]}) is not readable")
    return data[t.keys[0]]


def service_status(kubectl, ns: str, service: str, port: int | str, path: str,
                   timeout: float = 60, token: str | None = None) -> tuple[int | None, str]:
    """GET through the API server's service proxy (a read: allowed under --readonly).
    Returns (HTTP status, body or error text); the status is None when nothing answered.
    ``token``: the backend's API token, sent as X-DuckLake-Token (the API server
    consumes Authorization).

    Through the read-only API client, not ``kubectl get --raw``: kubectl follows
    redirects, with its credentials, wherever the proxied service points them; the
    client follows none (a 3xx is an answer here, never followed)."""
    from ducklake_infra.provision.kubeapi import read_only_client
    api = read_only_client(kubectl.cluster)
    method, url, headers, _, _ = api.param_serialize(
        method="GET", resource_path=proxy_path(ns, service, port, path),
        header_params={"Accept": "*/*", **({"X-DuckLake-Token": token} if token else {})},
        auth_settings=["BearerToken"])
    try:
        resp = api.call_api(method, url, header_params=headers, _request_timeout=timeout)
        resp.read()
    except ReadOnlyViolation:
        raise
    except Exception as exc:  # transport errors: the check reports them
        return None, f"{type(exc).__name__}: {exc}"
    if 300 <= resp.status < 400:
        return resp.status, f"redirect not followed ({resp.getheader('Location')})"
    return resp.status, (resp.data or b"").decode("utf-8", errors="replace")


def service_get(kubectl, ns: str, service: str, port: int | str, path: str,
                timeout: float = 60, token: str | None = None) -> tuple[bool, str]:
    """:func:`service_status` as (ok, body or error text): ok for a 2xx."""
    status, body = service_status(kubectl, ns, service, port, path, timeout, token)
    if status is not None and 200 <= status < 300:
        return True, body
    return False, f"HTTP {status}: {body}" if status is not None else body


def component_pods(spec: StackSpec, component: str) -> list[tuple[str, str]]:
    """(namespace, pod name prefix) of the pods related to a control component."""
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    table = {
        "minio": [(m.namespace, m.fullname)],
        "postgresql": [(pg.namespace, pg.fullname)],
        "backend": [(b.namespace, b.deployment)],
        "dataplane": [(b.namespace, b.deployment), (m.namespace, m.fullname),
                      (pg.namespace, pg.fullname)],
        "secrets": [],
    }
    return table.get(component, [])


def diagnostics(kubectl, spec: StackSpec, component: str, log_lines: int = 40) -> str:
    """Events, pod statuses and last log lines of the pods related to a component."""
    out = []
    targets = component_pods(spec, component) or [(ns, "") for ns in stack_namespaces(spec)]
    for ns in sorted({ns for ns, _ in targets}):
        res = kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp", timeout=60, check=False)
        ev = res.stdout.strip().splitlines()
        out.append(f"== events in {ns} (last 25)\n" + "\n".join(ev[:1] + ev[1:][-25:]))
        res = kubectl("-n", ns, "get", "pods", "-o", "wide", timeout=60, check=False)
        out.append(f"== pods in {ns}\n{res.stdout.strip() or res.stderr.strip()}")
    for ns, prefix in targets:
        if not prefix:
            continue
        res = kubectl("-n", ns, "get", "pods", "-o", "json", timeout=60, check=False)
        try:
            pods = json.loads(res.stdout)["items"]
        except (ValueError, KeyError):
            continue
        for p in pods:
            name = p["metadata"]["name"]
            if not name.startswith(prefix):
                continue
            for cs in (p.get("status") or {}).get("containerStatuses") or []:
                state = json.dumps(cs.get("state"))
                out.append(f"== pod {ns}/{name} container {cs['name']}: ready={cs.get('ready')} "
                           f"restarts={cs.get('restartCount')} state={state}")
                res = kubectl("-n", ns, "logs", name, "-c", cs["name"], f"--tail={log_lines}",
                              timeout=60, check=False)
                out.append(f"-- last {log_lines} log lines\n{(res.stdout or res.stderr).rstrip()}")
    return "\n".join(out)


@contextmanager
def nothing() -> Iterator[None]:
    yield
