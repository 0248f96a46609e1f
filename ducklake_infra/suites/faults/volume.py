"""The stack on a small volume, for the full-volume fault (RES-DISK-001, kind only).

kind's local-path volumes do not enforce their size, and filling the real one would fill
the machine's disk. So for the fault, MinIO moves onto a size-limited filesystem of its
own, and the backend onto a catalog database of its own, and both move back afterwards:

1. a tmpfs of ``SIZE_MIB`` is mounted in the kind node and offered as a local
   PersistentVolume, claimed by ``CLAIM`` in MinIO's namespace;
2. ``helm upgrade`` of the MinIO release with the same values plus
   ``persistence.existingClaim=CLAIM`` (the chart's post-upgrade job makes the buckets,
   users and policies on the new volume; the real claim is kept by its resource policy);
3. a fresh catalog database ``FAULT_DB`` owned by the catalog owner, with the reader's
   grants (as the chart gives them on the real one), and the backend Deployment's
   ``DUCKLAKE_PG_DB`` set to it;

so the real data and catalog are never touched, and no catalog entry ever points at a
file that leaves with the tmpfs. :func:`restore` undoes each step (the backend's env, the
release's values, the database, the claim, the volume, the mount), each attempted even
when an earlier one failed.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from ducklake_infra.provision.netpol import backend_pod_labels
from ducklake_infra.provision.render import Options, helm_upgrade_argv, image_refs
from ducklake_infra.provision.spec import StackSpec
from ducklake_infra.suites.catalog import CheckError

MOUNT = "/mnt/ducklake-fault-volume"
SIZE_MIB = 128
CLAIM = "ducklake-fault-volume"
PV = "ducklake-fault-volume"
FAULT_DB = "ducklake_fault_volume"
STORAGE_CLASS = "ducklake-fault-volume"     # no provisioner: binds only to our PV


@dataclass
class Moved:
    node: str
    steps: list[str]


def volume_objects(spec: StackSpec, node: str) -> list[dict]:
    size = f"{SIZE_MIB}Mi"
    m = spec.minio
    return [
        {"apiVersion": "v1", "kind": "PersistentVolume",
         "metadata": {"name": PV},
         "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                  "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
                  "local": {"path": MOUNT},
                  "claimRef": {"namespace": m.namespace, "name": CLAIM},
                  "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                      {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": CLAIM, "namespace": m.namespace},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                  "volumeName": PV, "resources": {"requests": {"storage": size}}}},
    ]


def catalog_sql(spec: StackSpec, create: bool) -> str:
    """psql input, run as the superuser: the fault's catalog database with the grants the
    chart gives on the real one (see charts/postgresql configmap), or its removal."""
    c = spec.postgresql.catalog
    if not create:
        return f'DROP DATABASE IF EXISTS "{FAULT_DB}" WITH (FORCE);\n'
    return "\n".join([
        f'DROP DATABASE IF EXISTS "{FAULT_DB}" WITH (FORCE);',
        f'CREATE DATABASE "{FAULT_DB}" OWNER "{c.owner}" ENCODING \'UTF8\' TEMPLATE template0;',
        f'REVOKE ALL ON DATABASE "{FAULT_DB}" FROM PUBLIC;',
        f'GRANT CONNECT ON DATABASE "{FAULT_DB}" TO "{c.reader.role}";',
        f"\\connect {FAULT_DB}",
        f'REVOKE CREATE ON SCHEMA public FROM "{c.reader.role}";',
        f'GRANT USAGE ON SCHEMA public TO "{c.reader.role}";',
        f'ALTER DEFAULT PRIVILEGES FOR ROLE "{c.owner}" IN SCHEMA public '
        f'GRANT SELECT ON TABLES TO "{c.reader.role}";', ""])


def psql_as_superuser(kubectl, spec: StackSpec, sql: str) -> None:
    """Run ``sql`` in the PostgreSQL pod as the superuser; the password is read from the
    Secret the pod mounts, inside the pod: it never reaches this process."""
    p = spec.postgresql
    script = ('PGPASSWORD="$(cat /opt/postgresql-secrets/superuser/password)" exec '
              f"/usr/lib/postgresql/15/bin/psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 "
              f"-p {p.port} -U postgres -d postgres")
    kubectl("-n", p.namespace, "exec", "-i", f"{p.fullname}-0", "-c", "postgresql", "--",
            "sh", "-c", script, input=sql, timeout=120)


def _minio_upgrade(spec: StackSpec, cluster, runner, extra: list[str]) -> None:
    rel = spec.releases["minio"]
    argv, _ = helm_upgrade_argv(cluster.helm(), spec, rel, image_refs(spec, Options()), Options())
    runner.run([*argv, *extra], timeout=rel.timeout + 60, mutating=True)


def _backend_db(spec: StackSpec, kubectl, db: str | None) -> None:
    """Point the backend at catalog database ``db`` (None: its own again), and wait until
    no pod of the old setting is left: a terminating one still answers for a moment."""
    b = spec.backend
    sel = ",".join(f"{k}={v}" for k, v in backend_pod_labels(spec).items())
    old = kubectl("-n", b.namespace, "get", "pods", "-l", sel, "-o", "name").stdout.split()
    kubectl("-n", b.namespace, "set", "env", f"deployment/{b.deployment}",
            f"DUCKLAKE_PG_DB={db}" if db else "DUCKLAKE_PG_DB-")
    kubectl("-n", b.namespace, "rollout", "status", f"deployment/{b.deployment}",
            "--timeout=180s", timeout=200)
    if old:
        kubectl("-n", b.namespace, "wait", "--for=delete", *old, "--timeout=120s",
                timeout=150, check=False)


def move(spec: StackSpec, cluster, runner, kubectl) -> Moved:
    """Steps 1 to 3 of the module's doc; on any failure, what was done is undone."""
    node = cluster.node_container()
    moved = Moved(node, [])
    try:
        runner.run(["docker", "exec", node, "sh", "-c",
                    f"mkdir -p {MOUNT} && mount -t tmpfs -o size={SIZE_MIB}m,mode=0777 "
                    f"ducklake-fault-volume {MOUNT}"], timeout=60, mutating=True)
        moved.steps.append("mount")
        kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "List", "items": volume_objects(spec, node)}))
        moved.steps.append("claim")
        _minio_upgrade(spec, cluster, runner, ["--set", f"persistence.existingClaim={CLAIM}"])
        moved.steps.append("minio")
        psql_as_superuser(kubectl, spec, catalog_sql(spec, create=True))
        moved.steps.append("database")
        _backend_db(spec, kubectl, FAULT_DB)
        moved.steps.append("backend")
    except BaseException:
        restore(spec, cluster, runner, kubectl, moved)
        raise
    return moved


def restore(spec: StackSpec, cluster, runner, kubectl, moved: Moved) -> list[str]:
    """Undo what :func:`move` did, newest first; every step is attempted. The errors
    (empty: the stack is back on its own volume and catalog)."""
    m = spec.minio
    undo = {
        "backend": lambda: _backend_db(spec, kubectl, None),
        "database": lambda: psql_as_superuser(kubectl, spec, catalog_sql(spec, create=False)),
        "minio": lambda: _minio_upgrade(spec, cluster, runner, []),
        "claim": lambda: kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=120s",
                                 "-n", m.namespace, f"persistentvolumeclaim/{CLAIM}",
                                 timeout=150) and
        kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=120s",
                f"persistentvolume/{PV}", timeout=150),
        "mount": lambda: runner.run(["docker", "exec", moved.node, "sh", "-c",
                                     f"umount {shlex.quote(MOUNT)}"], timeout=60, mutating=True),
    }
    errors = []
    for step in reversed(moved.steps):
        try:
            undo[step]()
        except Exception as exc:    # noqa: BLE001 - every step is attempted; all are reported
            errors.append(f"undo {step}: {str(exc).splitlines()[0][:200]}")
    moved.steps.clear()
    return errors


def fill(runner, node: str, leave_mib: int) -> int:
    """A ballast file in MinIO's data directory (not in a bucket: MinIO never serves it)
    that leaves about ``leave_mib`` MiB free on the small volume; its size in KiB. The
    writers keep writing meanwhile, so a size that no longer fits is tried smaller."""
    out = runner.run(["docker", "exec", node, "df", "-k", "--output=avail", MOUNT],
                     timeout=30, mutating=False).stdout.split()
    size = int(out[-1]) - leave_mib * 1024
    for _ in range(16):
        res = runner.run(["docker", "exec", node, "fallocate", "-l", f"{max(size, 1)}KiB",
                          f"{MOUNT}/.ballast"], timeout=60, check=False, mutating=True)
        if res.returncode == 0:
            return size
        if "No space left" not in (res.stderr or ""):
            raise CheckError(f"could not fill the small volume: {(res.stderr or '').strip()[:200]}")
        size -= 256          # what the writers took meanwhile
    raise CheckError("could not fill the small volume: no size fitted")


def free(runner, node: str) -> None:
    runner.run(["docker", "exec", node, "rm", "-f", f"{MOUNT}/.ballast"], timeout=30,
               mutating=True)
