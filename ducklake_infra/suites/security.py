"""Checks of the stack's security posture (issue 10): the backend's API token, the query
path's own read-only identities, DuckDB's memory bound, network isolation, Pod Security,
and the data-access surface. Pure functions, like ducklake_infra/suites/checks.py, whose registry and
helpers they use; the live probes that feed the judge_* functions are in the suites."""

from __future__ import annotations

from typing import Mapping

from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.checks.core import (CheckInputMissing, _backend_deployment, _env_value, _stack_namespaces,
                           as_control, check)
from ducklake_infra.suites.objects import Objects, containers, name_of, pod_spec
from ducklake_infra.suites.catalog import ERROR, FAIL, PASS, WARN, Result, result

@check("BE-MEM-001")
def check_backend_memory_bound(objs: Objects, spec: StackSpec) -> Result:
    """DuckDB's memory_limit follows the container's limit (cgroup): so the container needs
    one, and an explicit DUCKLAKE_MEMORY_LIMIT_BYTES may not exceed it."""
    from ducklake_infra.suites.objects import quantity
    b = spec.backend
    dep = _backend_deployment(objs, spec)
    if dep is None:
        raise CheckInputMissing(f"Deployment {b.namespace}/{b.deployment} does not exist")
    c = next((x for x in containers(pod_spec(dep)) if x.get("name") == b.container), None)
    if c is None:
        raise CheckInputMissing(f"container {b.container} is not in the backend Deployment")
    limit = quantity(((c.get("resources") or {}).get("limits") or {}).get("memory"))
    if limit is None:
        return Result(FAIL, [f"container {b.container} has no memory limit: DuckDB would size "
                             "itself from the host (80% of its memory)"])
    explicit = None
    e = _env_value(c, "DUCKLAKE_MEMORY_LIMIT_BYTES")
    if e is not None and "value" in e:
        explicit = quantity(e["value"])
    cm = objs.get("ConfigMap", b.configmap, b.namespace)
    if explicit is None and cm is not None and (cm.get("data") or {}).get("DUCKLAKE_MEMORY_LIMIT_BYTES"):
        explicit = quantity(cm["data"]["DUCKLAKE_MEMORY_LIMIT_BYTES"])
    if explicit is not None and explicit > limit:
        return Result(FAIL, [f"DUCKLAKE_MEMORY_LIMIT_BYTES {explicit} exceeds the container's "
                             f"memory limit {limit}"])
    how = f"DUCKLAKE_MEMORY_LIMIT_BYTES {explicit}" if explicit is not None else "the cgroup limit"
    return Result(PASS, [f"container limit {limit} bytes; DuckDB sized from {how} "
                         "(35% per database)"])


# Pod Security Standards, restricted profile (Kubernetes 1.34): what a pod may not do
_PSS_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                "persistentVolumeClaim", "projected", "secret"}


def restricted_violations(ps: Mapping) -> list[str]:
    """Why a pod spec would be refused by the restricted profile (empty: it passes)."""
    out = []
    psc = ps.get("securityContext") or {}
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if ps.get(f):
            out.append(f"{f} is set")
    for v in ps.get("volumes") or []:
        kinds = set(v) - {"name"}
        if not kinds <= _PSS_VOLUMES:
            out.append(f"volume {v.get('name')} is of type {sorted(kinds - _PSS_VOLUMES)}")
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type")
    for c in containers(ps, init=True):
        sc, name = c.get("securityContext") or {}, c.get("name")
        if sc.get("privileged"):
            out.append(f"container {name} is privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"container {name} does not set allowPrivilegeEscalation: false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"container {name} does not drop ALL capabilities")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"container {name} adds capabilities {caps.get('add')}")
        non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
        if non_root is not True:
            out.append(f"container {name} does not run as non-root (runAsNonRoot)")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"container {name} runs as uid 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"container {name} has no RuntimeDefault/Localhost seccomp profile")
        if any(p.get("hostPort") for p in c.get("ports") or []):
            out.append(f"container {name} uses a hostPort")
    return out


def judge_pod_security(namespaces: list[dict], objs: Objects, spec: StackSpec) -> Result:
    """SEC-PSS-001: each stack namespace enforces restricted, and every pod of the stack
    (the workloads' templates and the running pods) passes it."""
    problems, good = [], []
    for ns in namespaces:
        name = ns["metadata"]["name"]
        level = (ns["metadata"].get("labels") or {}).get("pod-security.kubernetes.io/enforce")
        if level != "restricted":
            problems.append(f"namespace {name} enforces {level or 'no'} Pod Security level, "
                            "not restricted")
        else:
            good.append(f"namespace {name}: enforce=restricted")
    n = 0
    for nsname in sorted(_stack_namespaces(spec)):
        for kind in ("Deployment", "StatefulSet", "Job", "Pod"):
            for o in objs.all(kind, nsname):
                if kind == "Pod" and (o.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    continue
                n += 1
                problems += [f"{name_of(o)}: {v}" for v in restricted_violations(pod_spec(o))]
    good.append(f"{n} pod spec(s) checked against the restricted profile")
    res = result(problems, good)
    return as_control(res, "SEC-PSS-001")


def judge_access_surface(spec: StackSpec, minio_users: Mapping[str, list[str]],
                         bucket_policies: Mapping[str, str | None],
                         login_roles: Mapping[str, bool]) -> Result:
    """SEC-ACC-001 from what MinIO and PostgreSQL say: ``minio_users`` user -> attached
    policies; ``bucket_policies`` bucket -> its (anonymous) policy document or None;
    ``login_roles`` role that can log in to the catalog database -> is superuser."""
    m, cat = spec.minio, spec.postgresql.catalog
    want_users = {u.access_key: u.policy for u in (m.backend_user, m.query_user,
                                                    m.maintenance_user)}
    problems, good = [], []
    for user, pols in sorted(minio_users.items()):
        if user not in want_users:
            problems.append(f"MinIO user {user!r} is not in the spec (policies {pols})")
        elif sorted(pols) != [want_users[user]]:
            problems.append(f"MinIO user {user!r} has policies {pols}, the spec says "
                            f"[{want_users[user]!r}]")
    for user in sorted(set(want_users) - set(minio_users)):
        problems.append(f"MinIO user {user!r} of the spec does not exist")
    for bucket, doc in sorted(bucket_policies.items()):
        if doc:
            problems.append(f"bucket {bucket!r} has a bucket policy (anonymous access): {doc[:120]}")
    if not problems:
        good.append(f"MinIO: users {sorted(minio_users)}, no bucket policy on "
                    f"{sorted(bucket_policies)}")
    want_roles = {cat.owner, cat.reader.role}
    for role, superuser in sorted(login_roles.items()):
        if role not in want_roles and not (superuser and role == "postgres"):
            problems.append(f"PostgreSQL role {role!r} can log in to {cat.database} but is not "
                            "in the spec" + (" (a superuser)" if superuser else ""))
    for role in sorted(want_roles - set(login_roles)):
        problems.append(f"PostgreSQL role {role!r} of the spec cannot log in to {cat.database}")
    good.append(f"PostgreSQL: roles that can log in to {cat.database}: {sorted(login_roles)}")
    res = result(problems, good)
    return as_control(res, "SEC-ACC-001")


def _policy_shape(p: Mapping) -> dict:
    spec = p.get("spec") or {}
    return {k: spec.get(k) or ([] if k != "podSelector" else {}) for k in
            ("podSelector", "policyTypes", "ingress", "egress")}


@check("NET-POL-001")
def check_network_policies(objs: Objects, spec: StackSpec) -> Result:
    """Every policy of ducklake_infra/provision/netpol.py exists as rendered (an edited or missing one
    opens a path)."""
    from ducklake_infra.provision import netpol
    problems, good = [], []
    for want in netpol.network_policies(spec):
        md = want["metadata"]
        have = objs.get("NetworkPolicy", md["name"], md["namespace"])
        if have is None:
            problems.append(f"NetworkPolicy {md['namespace']}/{md['name']} does not exist")
        elif _policy_shape(have) != _policy_shape(want):
            problems.append(f"NetworkPolicy {md['namespace']}/{md['name']} differs from the one "
                            "rendered from stack.yaml")
        else:
            good.append(f"NetworkPolicy {md['namespace']}/{md['name']}")
    return result(problems, good)


# DaemonSet names/images of network plugins, and whether they enforce NetworkPolicy
CNI_ENFORCING = ("calico-node", "cilium", "antrea-agent", "kube-router", "weave-net",
                 "kube-network-policies", "canal", "kindnet")
CNI_NOT_ENFORCING = ("ducklake-cni", "flannel", "kube-flannel")


def judge_network_plugin(daemonsets: list[dict]) -> Result:
    """NET-CNI-001 from kube-system's DaemonSets (names and images)."""
    def words(ds):
        c = [x.get("image", "") for x in containers(pod_spec(ds))]
        return [ds["metadata"]["name"], *c]
    found_yes = sorted({k for ds in daemonsets for k in CNI_ENFORCING
                        if any(k in w for w in words(ds))})
    found_no = sorted({k for ds in daemonsets for k in CNI_NOT_ENFORCING
                       if any(k in w for w in words(ds))})
    if found_yes:
        res = Result(PASS, [f"network plugin {', '.join(found_yes)}: enforces NetworkPolicy"])
    elif found_no:
        res = Result(FAIL, [f"network plugin {', '.join(found_no)} does not enforce "
                            "NetworkPolicy: the stack's policies are decoration"])
    else:
        names = sorted(ds["metadata"]["name"] for ds in daemonsets)
        res = Result(WARN, [f"no known network plugin among kube-system DaemonSets {names}: "
                            "enforcement unknown (NET-ENF-001 probes it)"])
    return as_control(res, "NET-CNI-001")


def judge_enforcement(reached: dict[str, bool], control_reached: bool) -> Result:
    """NET-ENF-001 from a probe pod outside the allowed set: ``reached`` maps each closed
    target to whether it connected; ``control_reached``: an open target answered (so the
    probe itself works)."""
    problems = [f"a pod outside the allowed set connected to {t}" for t, ok in sorted(reached.items()) if ok]
    good = [f"{t}: refused" for t, ok in sorted(reached.items()) if not ok]
    if not control_reached:
        res = Result(ERROR, ["could not evaluate: the probe could not reach the open backend "
                             "Service either (the probe itself does not work)"])
    else:
        res = result(problems, good + ["the probe reached the backend Service (open)"])
    return as_control(res, "NET-ENF-001")


QUERY_S3_ACTIONS = {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}


@check("BE-QRY-001")
def check_query_identities(objs: Objects, spec: StackSpec) -> Result:
    """The query path's identities are their own and read-only by configuration."""
    m, b, cat = spec.minio, spec.backend, spec.postgresql.catalog
    problems, good = [], []
    qs3 = objs.secret_data(b.query_s3_secret.name, b.namespace)
    qpg = objs.secret_data(b.query_postgres_secret.name, b.namespace)
    rw_s3 = objs.secret_data(b.s3_secret.name, b.namespace)
    for name, data in ((b.query_s3_secret.name, qs3), (b.query_postgres_secret.name, qpg)):
        if not data:
            raise CheckInputMissing(f"Secret {b.namespace}/{name} does not exist or is empty")
    qkey, qpg_user = qs3.get(b.query_s3_secret.keys[0]), qpg.get(b.query_postgres_secret.keys[0])
    if qkey != m.query_user.access_key:
        problems.append(f"the query S3 identity is {qkey!r}, not the query user "
                        f"{m.query_user.access_key!r}")
    if rw_s3 and qkey == rw_s3.get(b.s3_secret.keys[0]):
        problems.append("the query path uses the read-write S3 user")
    if qpg_user in (cat.owner, "postgres"):
        problems.append(f"the query path logs in to the catalog as {qpg_user!r}, a role that can write")
    elif qpg_user != cat.reader.role:
        problems.append(f"the query path logs in as {qpg_user!r}, not {cat.reader.role!r}")
    else:
        good.append(f"query identities: S3 user {qkey}, catalog role {qpg_user}")
    from ducklake_infra.suites.checks.minio_iam import release_policy
    pol = release_policy(objs, spec, m.query_user.access_key)
    if pol is None:
        problems.append(f"MinIO user {m.query_user.access_key} has no policy from the release's "
                        "values")
    else:
        lake = {f"arn:aws:s3:::{spec.lake_bucket}", f"arn:aws:s3:::{spec.lake_bucket}/*"}
        for st in pol.get("statements") or []:
            extra = set(st.get("actions") or []) - QUERY_S3_ACTIONS
            wide = set(st.get("resources") or []) - lake
            if st.get("effect", "Allow") == "Allow" and (extra or wide):
                problems.append(f"policy {pol.get('name')} allows {sorted(extra) or ''} "
                                f"{sorted(wide) or ''} beyond list+get on the lake bucket".strip())
        if not problems:
            good.append(f"policy {pol.get('name')}: {sorted(QUERY_S3_ACTIONS)} on the lake bucket only")
    return result(problems, good)


def judge_backend_auth(anonymous: int | None, authorised: int | None) -> Result:
    """BE-AUTH-001 from two probes of GET /tables through the service: without the token
    (must be 401) and with it (must be 200, so the 401 is the token's doing)."""
    problems, good = [], []
    if anonymous == 401:
        good.append("GET /tables without the API token: 401")
    else:
        problems.append(f"GET /tables without the API token answered {anonymous}, not 401: "
                        "anyone who reaches the Service can read and query the lake")
    if authorised == 200:
        good.append("GET /tables with the API token: 200")
    else:
        problems.append(f"GET /tables with the API token answered {authorised}, not 200")
    res = result(problems, good)
    return as_control(res, "BE-AUTH-001")
