"""``ducklake-infra status``: what the cluster runs of the stack, read-only.

:func:`facts` gathers the releases (chart, status), the pods of every stack
namespace (ready/total, node, Patroni role), the nodes (Ready, cordoned, the stack's
pods on each) and the backend deployment as data (``-o json``); :func:`text` renders
them as the status lines.
"""

from __future__ import annotations

import json

from ducklake_infra.provision.runner import Runner
from ducklake_infra.provision.spec import StackSpec


def _json(res, default):
    try:
        return json.loads(res.stdout or "null") if res.returncode == 0 else default
    except ValueError:
        return default


def release_facts(cluster, spec: StackSpec, runner: Runner) -> list[dict]:
    out = []
    for rel in spec.releases.values():
        res = runner.run([*cluster.helm(), "list", "--namespace", rel.namespace, "--filter",
                          f"^{rel.name}$", "--output", "json"], timeout=60, check=False,
                         mutating=False)
        item = next((i for i in _json(res, None) or [] if i.get("name") == rel.name), None)
        want = f"{rel.chart.name}-{rel.chart.version}"
        fact = {"namespace": rel.namespace, "name": rel.name, "want": want,
                "installed": item is not None}
        if item is not None:
            fact.update({k: item.get(k) for k in ("status", "chart", "app_version", "revision")})
        fact["ok"] = item is not None and item.get("status") == "deployed" and \
            item.get("chart") == want
        out.append(fact)
    return out


def namespace_facts(cluster, spec: StackSpec, runner: Runner) -> list[dict]:
    """Per stack namespace: its pods (finished ones left out), or why they cannot be listed."""
    out = []
    for ns in sorted(set(spec.namespaces.values())):
        res = runner.run([*cluster.kubectl(), "get", "pods", "--namespace", ns, "--output",
                          "json"], timeout=60, check=False, mutating=False)
        fact = {"name": ns, "error": None, "pods": []}
        if res.returncode != 0:
            fact["error"] = f"cannot list pods: {res.stderr.strip()[-200:]}"
        for pod in (_json(res, None) or {}).get("items", []):
            st = pod.get("status", {})
            if st.get("phase") == "Succeeded":
                continue
            cs = st.get("containerStatuses") or []
            ready = sum(1 for c in cs if c.get("ready"))
            fact["pods"].append({"name": pod["metadata"]["name"], "phase": st.get("phase"),
                                 "ready": ready, "containers": len(cs),
                                 "ok": bool(cs) and ready == len(cs),
                                 "node": (pod.get("spec") or {}).get("nodeName"),
                                 "role": (pod["metadata"].get("labels") or {}).get("role")})
        out.append(fact)
    return out


def node_facts(cluster, runner: Runner, namespaces: list[dict]) -> dict:
    """The cluster's nodes: Ready, cordoned, and the stack's pods on each (from
    :func:`namespace_facts`); or why they cannot be listed (an audit role may not read
    nodes: then the pods' lines still name their node)."""
    res = runner.run([*cluster.kubectl(), "get", "nodes", "--output", "json"], timeout=60,
                     check=False, mutating=False)
    if res.returncode != 0:
        return {"error": f"cannot list nodes: {res.stderr.strip()[-200:]}", "items": []}
    on: dict[str, list[str]] = {}
    for n in namespaces:
        for p in n["pods"]:
            if p.get("node"):
                on.setdefault(p["node"], []).append(
                    f"{n['name']}/{p['name']}" + (f" ({p['role']})" if p.get("role") else ""))
    items = []
    for node in (_json(res, None) or {}).get("items", []):
        name = node["metadata"]["name"]
        ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (node.get("status") or {}).get("conditions") or [])
        items.append({"name": name, "ready": ready,
                      "cordoned": bool((node.get("spec") or {}).get("unschedulable")),
                      "pods": sorted(on.get(name, []))})
    return {"error": None, "items": items}


def backend_facts(cluster, spec: StackSpec, runner: Runner) -> dict:
    b = spec.backend
    res = runner.run([*cluster.kubectl(), "get", "deployment", b.deployment, "--namespace",
                      b.namespace, "--output", "json"], timeout=60, check=False, mutating=False)
    fact = {"namespace": b.namespace, "deployment": b.deployment, "found": res.returncode == 0}
    if res.returncode != 0:
        return {**fact, "ok": False}
    d = json.loads(res.stdout)
    want, ready = d["spec"].get("replicas", 1), d.get("status", {}).get("readyReplicas", 0)
    image = d["spec"]["template"]["spec"]["containers"][0]["image"]
    return {**fact, "replicas": want, "ready": ready, "image": image, "ok": ready == want}


def facts(cluster, spec: StackSpec, runner: Runner) -> dict:
    """Everything status reports, as data; ``ok``: every release deployed at the spec's
    chart version, every pod ready, the backend rolled out."""
    releases = release_facts(cluster, spec, runner)
    namespaces = namespace_facts(cluster, spec, runner)
    backend = backend_facts(cluster, spec, runner)
    nodes = node_facts(cluster, runner, namespaces)
    ok = all(r["ok"] for r in releases) and backend["ok"] and all(
        n["error"] is None and all(p["ok"] for p in n["pods"]) for n in namespaces)
    return {"cluster": cluster.context, "exists": True, "ok": ok, "releases": releases,
            "namespaces": namespaces, "nodes": nodes, "backend": backend}


def text(f: dict) -> str:
    lines = [f"cluster: {f['cluster']}"]
    for r in f["releases"]:
        where = f"release {r['namespace']}/{r['name']}"
        if not r["installed"]:
            lines.append(f"{where}: NOT INSTALLED (want {r['want']})")
            continue
        lines.append(f"{where}: {r['status']} chart {r['chart']} app {r['app_version']} "
                     f"rev {r['revision']}" + ("" if r["ok"] else f"  (want {r['want']}, deployed)"))
    for n in f["namespaces"]:
        if n["error"] is not None:
            lines.append(f"namespace {n['name']}: {n['error']}")
        for p in n["pods"]:
            lines.append(f"pod {n['name']}/{p['name']}: {p['phase']} {p['ready']}/"
                         f"{p['containers']} ready" + (f" on {p['node']}" if p.get("node") else "")
                         + (f" ({p['role']})" if p.get("role") else "")
                         + ("" if p["ok"] else "  NOT READY"))
    nodes = f.get("nodes") or {"error": None, "items": []}
    if nodes["error"]:
        lines.append(f"nodes: {nodes['error']}")
    for n in nodes["items"]:
        lines.append(f"node {n['name']}: {'Ready' if n['ready'] else 'NOT READY'}"
                     + (", cordoned" if n["cordoned"] else "") + ": "
                     + (", ".join(n["pods"]) or "no pod of the stack"))
    b = f["backend"]
    where = f"deployment {b['namespace']}/{b['deployment']}"
    lines.append(f"{where}: {b['ready']}/{b['replicas']} ready, image {b['image']}"
                 if b["found"] else f"{where}: NOT FOUND")
    lines.append("status: OK" if f["ok"] else "status: NOT READY")
    return "\n".join(lines)
