"""The resilience suite's load generator: a Pod in the backend's namespace that writes
through the backend's Service (cluster-internal traffic, the Service's own load
balancing; it outlives any one backend pod) and keeps a ledger of what was acknowledged.

Several writers append batches of known rows with unique ids (batch ``b`` holds ids
``b*rows .. (b+1)*rows-1``; writer ``w`` takes batches ``1+w``, ``1+w+writers``, ...;
batch 0 creates the table), each an upload (``POST /datasets``) then an ingest. Beside
them, ``/readyz`` is polled every 0.5 s from the fault on, so the time the backend was
last not ready is measured from inside the cluster too. At the end the Pod prints one
line, ``LEDGER {json}``: when it started (epoch), batches sent (attempts, batch 0 too),
the acknowledged ones, the errors its clients saw (HTTP status, or the exception's name)
and the last not-ready moment. The script uses the standard library only and runs in the
backend's own image (present on every node that runs the backend).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from ducklake_infra.provision.spec import StackSpec

LEDGER_PREFIX = "LEDGER "
STARTED_PREFIX = "STARTED "
LABELS = {"app.kubernetes.io/name": "ducklake-loadgen",
          "app.kubernetes.io/part-of": "ducklake-resilience"}

SCRIPT = r'''
import json, os, threading, time, urllib.error, urllib.request
E = os.environ
base, token, table = E["BASE_URL"], E["TOKEN"], E["TABLE"]
rows, pad, writers = int(E["BATCH_ROWS"]), int(E["ROW_PAD"]), int(E["WRITERS"])
write_s, fault_at, limit = float(E["WRITE_S"]), float(E["FAULT_AT_S"]), float(E["MAX_RECOVERY_S"])
steady, min_watch = float(E["STEADY_S"]), float(E["MIN_WATCH_S"])
lock, acked, errors, sent = threading.Lock(), set(), {}, [1]   # batch 0 made the table

def call(method, path, body=None, ctype="application/json", timeout=60):
    req = urllib.request.Request(base + path, data=body, method=method, headers={
        "X-DuckLake-Token": token, "content-type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        return e.code

def csv(b):
    fill = "x" * pad
    return ("id,name\n" + "".join("%d,%srow-%d\n" % (i, fill, i)
                                  for i in range(b * rows, (b + 1) * rows))).encode()

def append(b, mode):
    name = "%s-%d.csv" % (table, b)
    st = call("POST", "/datasets/" + name, csv(b), "text/csv")
    if st == 201:
        st = call("POST", "/tables/%s/ingest" % table,
                  json.dumps({"dataset": name, "mode": mode}).encode())
    return st

def writer(w, stop_at):
    b = 1 + w
    while time.time() < stop_at:
        try:
            st = append(b, "append")
            key = None if st == 200 else str(st)
        except Exception as exc:     # urllib wraps a refused or reset connection
            key = type(getattr(exc, "reason", None) or exc).__name__
        with lock:
            if key is None:
                acked.add(b)
            else:
                errors[key] = errors.get(key, 0) + 1
            sent[0] += 1
        b += writers

for _ in range(120):
    try:
        if append(0, "create") == 200:
            acked.add(0)
            break
    except Exception:
        pass
    time.sleep(1)
start = time.time()
print("STARTED %.3f" % start, flush=True)
threads = [threading.Thread(target=writer, args=(w, start + write_s)) for w in range(writers)]
for t in threads:
    t.start()
last_bad, ready_since, fault = None, None, start + fault_at
while time.time() < fault + limit + 30:
    now = time.time()
    if now >= fault:
        try:
            ok = call("GET", "/readyz", timeout=5) == 200
        except Exception:
            ok = False
        if ok:
            ready_since = ready_since or now
            if now - ready_since >= steady and now - fault >= min_watch and now >= start + write_s:
                break
        else:
            last_bad, ready_since = now, None
    time.sleep(0.5)
for t in threads:
    t.join()
print("LEDGER " + json.dumps({"started": start, "sent": sent[0], "acked": sorted(acked),
                              "errors": errors, "last_not_ready": last_bad,
                              "ready": ready_since is not None}), flush=True)
'''


@dataclass(frozen=True)
class Load:
    table: str
    batch_rows: int = 20
    row_pad: int = 0           # extra bytes per row: large uploads
    writers: int = 3
    write_s: float = 30
    fault_at_s: float = 5
    max_recovery_s: float = 180
    steady_s: float = 10       # ready this long in a row after the fault: recovered
    min_watch_s: float = 15    # and watched at least this long after it
    avoid_node: str | None = None  # never scheduled there (the node a drain empties)


def environment(load: Load, base_url: str) -> dict[str, str]:
    """The script's settings (the token comes separately: a Secret in the cluster)."""
    return {"BASE_URL": base_url, "TABLE": load.table, "BATCH_ROWS": str(load.batch_rows),
            "ROW_PAD": str(load.row_pad), "WRITERS": str(load.writers),
            "WRITE_S": str(load.write_s), "FAULT_AT_S": str(load.fault_at_s),
            "MAX_RECOVERY_S": str(load.max_recovery_s), "STEADY_S": str(load.steady_s),
            "MIN_WATCH_S": str(load.min_watch_s)}


def pod(spec: StackSpec, image: str, name: str, load: Load) -> dict:
    """The load generator's Pod (restricted Pod Security: non-root, no privilege, no
    capabilities, read-only root, RuntimeDefault seccomp, no API token)."""
    b = spec.backend
    t = b.token_secret
    env = environment(load, f"http://{b.service.name}.{b.namespace}.svc:{b.service.ports[0]}")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": b.namespace, "labels": dict(LABELS)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 5,
            **({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "kubernetes.io/hostname", "operator": "NotIn",
                    "values": [load.avoid_node]}]}]}}}} if load.avoid_node else {}),
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "loadgen", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["python3", "-c", SCRIPT],
                "env": [{"name": k, "value": v} for k, v in env.items()] + [
                    {"name": "TOKEN", "valueFrom": {"secretKeyRef": {
                        "name": t.name, "key": t.keys[0]}}}],
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"memory": "256Mi"}},
            }],
        },
    }


@dataclass(frozen=True)
class Ledger:
    started: float
    sent: int
    acked: frozenset[int]
    errors: dict[str, int]
    last_not_ready: float | None
    ready: bool

    def recovery_s(self, fault: float) -> float | None:
        """Seconds from the fault to the last not-ready answer (0: never not ready); None
        when the backend was not ready at the end."""
        if not self.ready:
            return None
        return 0.0 if self.last_not_ready is None else max(0.0, self.last_not_ready + 0.5 - fault)


def started_at(log: str) -> float | None:
    for line in log.splitlines():
        if line.startswith(STARTED_PREFIX):
            return float(line[len(STARTED_PREFIX):])
    return None


def parse_ledger(log: str) -> Ledger:
    """The ledger line of the Pod's log; ValueError when there is none (the Pod died)."""
    for line in reversed(log.splitlines()):
        if line.startswith(LEDGER_PREFIX):
            d = json.loads(line[len(LEDGER_PREFIX):])
            return Ledger(float(d["started"]), int(d["sent"]), frozenset(d["acked"]),
                          {str(k): int(v) for k, v in d["errors"].items()},
                          d["last_not_ready"], bool(d["ready"]))
    raise ValueError("the load generator printed no ledger: " + (log.strip()[-500:] or "(no log)"))


def wait_started(read_log, timeout: float = 120) -> float:
    """Poll the Pod's log until it says when it started writing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        at = started_at(read_log() or "")
        if at is not None:
            return at
        time.sleep(1)
    raise TimeoutError(f"the load generator did not start writing within {timeout:.0f}s")
