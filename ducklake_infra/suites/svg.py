"""An SVG picture of the deployed stack, coloured by control results.

Drawn from the stack spec (names) and, when available, the live objects
(e.g. the Service type actually found); each box lists the controls that
cover it and takes the colour of the worst of their statuses.
"""

from __future__ import annotations

from html import escape
from typing import Iterable, Mapping

from ducklake_infra.provision.spec import StackSpec

from ducklake_infra.suites.catalog import (BOXES, ERROR, FAIL, NOT_EVALUATED, NOT_RUN, PASS, WARN,
                                          Control, catalog, worst)

COLOURS = {PASS: "#2e7d32", WARN: "#f9a825", FAIL: "#c62828", ERROR: "#6a1b9a",
           NOT_EVALUATED: "#78909c", NOT_RUN: "#b0bec5"}
FILL = {PASS: "#e8f5e9", WARN: "#fff8e1", FAIL: "#ffebee", ERROR: "#f3e5f5",
        NOT_EVALUATED: "#eceff1", NOT_RUN: "#fafafa"}

def box_controls(controls: Iterable[Control] | None = None) -> dict[str, list[str]]:
    """Box key -> the IDs of the controls that colour it (``boxes`` in controls.yaml)."""
    out: dict[str, list[str]] = {box: [] for box in BOXES}
    for c in (catalog() if controls is None else controls):
        for box in c.boxes:
            out[box].append(c.id)
    return out


def box_status(key: str, statuses: Mapping[str, str]) -> str:
    got = [statuses[c] for c in box_controls().get(key, []) if c in statuses]
    return worst(got) if got else NOT_RUN


def _box(x, y, w, h, title, lines, key, statuses, rx=6) -> str:
    st = box_status(key, statuses)
    ids = [c for c in box_controls().get(key, []) if c in statuses]
    tip = escape(f"{title}: {st}\n" + "\n".join(f"{c}: {statuses[c]}" for c in ids))
    out = [f'<g class="node" data-key="{key}" data-status="{st}"><title>{tip}</title>',
           f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="{rx}" fill="{FILL[st]}" '
           f'stroke="{COLOURS[st]}" stroke-width="2"/>',
           f'<text x="{x + 8}" y="{y + 17}" font-weight="bold">{escape(title)}</text>']
    for i, line in enumerate(lines):
        out.append(f'<text x="{x + 8}" y="{y + 34 + 15 * i}" font-size="11">{escape(line)}</text>')
    out.append(f'<text x="{x + w - 8}" y="{y + 17}" text-anchor="end" font-size="10" '
               f'fill="{COLOURS[st]}">{st}</text></g>')
    return "\n".join(out)


def _ns(x, y, w, h, name) -> str:
    return (f'<rect x="{x}" y="{y}" width="{w}" height="{h}" rx="10" fill="none" stroke="#455a64" '
            f'stroke-dasharray="6 4"/><text x="{x + 10}" y="{y + 20}" font-size="13" '
            f'fill="#455a64">namespace {escape(name)}</text>')


def placement(objs, spec: StackSpec) -> dict[str, list[str]]:
    """Node -> the stack's pods on it (a Patroni member with its role), from the gathered
    Pods' ``spec.nodeName``: what a read-only audit sees too."""
    out: dict[str, list[str]] = {}
    for ns in sorted(set(spec.namespaces.values())):
        for p in objs.all("Pod", ns):
            md, node = p.get("metadata") or {}, (p.get("spec") or {}).get("nodeName")
            if not node or (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            role = (md.get("labels") or {}).get("role")
            out.setdefault(node, []).append(md.get("name", "?") + (f" ({role})" if role else ""))
    return {n: sorted(ps) for n, ps in sorted(out.items())}


def _claims_line(claims) -> list[str]:
    """One line per claim, or one for a StatefulSet's claims of one size and class."""
    if len(claims) <= 2:
        return [f"{p.name} {p.size} ({p.storage_class})" for p in claims]
    first = claims[0]
    return [f"{first.name.rsplit('-', 1)[0]}-{{0..{len(claims) - 1}}} {first.size} "
            f"({first.storage_class}) x{len(claims)}"]


def _nodes_band(y: int, nodes: Mapping[str, list[str]], statuses) -> tuple[str, int]:
    """One column per node listing the stack's pods on it; the band's height."""
    rows = max((len(ps) for ps in nodes.values()), default=0)
    h = 30 + 15 * max(rows, 1)
    w = (1060 - 10 * (len(nodes) - 1)) // max(len(nodes), 1)
    parts = [_box(10 + i * (w + 10), y, w, h, f"node {n}", ps, "nodes", statuses)
             for i, (n, ps) in enumerate(nodes.items())]
    return "\n".join(parts), h


def render(spec: StackSpec, statuses: Mapping[str, str], title: str = "",
           nodes: Mapping[str, list[str]] | None = None) -> str:
    """The picture; ``nodes`` (from :func:`placement`): a band with the pods per node."""
    # long: one picture laid out by hand, its coordinates read best side by side
    m, pg, b = spec.minio, spec.postgresql, spec.backend
    mrel, prel = spec.releases[m.release], spec.releases[pg.release]
    d = spec.active_distributed
    parts = []
    W, H = 1080, 560
    parts.append(_ns(10, 40, 640, 500, m.namespace))
    parts.append(_ns(670, 40, 400, 500, b.namespace))
    # MinIO release
    parts.append(_box(25, 70, 300, 40, f"helm: {mrel.name} ({mrel.chart.name} {mrel.chart.version})",
                      [], "minio-release", statuses, rx=3))
    parts.append(_box(25, 120, 300, 80, f"{'StatefulSet' if d else 'Deployment'} {m.fullname}",
                      [f"MinIO distributed: {d.minio_servers} servers, EC:{d.minio_parity}" if d
                       else "MinIO standalone", f"buckets: {spec.raw_bucket}, {spec.lake_bucket}",
                       f"backend user: {m.backend_user.access_key}"], "minio-deploy", statuses))
    parts.append(_box(25, 210, 300, 30 + 15 * len(m.services), "Services",
                      [f"{s.name} {s.type} :{','.join(map(str, s.ports))}" for s in m.services],
                      "minio-svc", statuses))
    parts.append(_box(25, 290, 300, 30 + 15 * len(_claims_line(spec.minio_claims)), "PVC",
                      _claims_line(spec.minio_claims), "minio-pvc", statuses))
    parts.append(_box(25, 350, 300, 60, "Secrets",
                      [f"{m.root_secret.name} (root)", f"{m.backend_user.secret.name} (backend user)"],
                      "minio-secret", statuses))
    # PostgreSQL release
    parts.append(_box(340, 70, 300, 40, f"helm: {prel.name} ({prel.chart.name} {prel.chart.version})",
                      [], "pg-release", statuses, rx=3))
    parts.append(_box(340, 120, 300, 80, f"StatefulSet {pg.fullname}",
                      [f"Patroni: {d.pg_members} members, sync {d.pg_sync_count}"
                       f"{' strict' if d.pg_strict else ''}" if d else "single node",
                       f"catalog db: {pg.catalog.database}",
                       f"owner: {pg.catalog.owner}"], "pg-sts", statuses))
    parts.append(_box(340, 210, 300, 30 + 15 * len(pg.services), "Services",
                      [f"{s.name} {s.type} :{','.join(map(str, s.ports))}" for s in pg.services],
                      "pg-svc", statuses))
    parts.append(_box(340, 290, 300, 30 + 15 * len(_claims_line(spec.postgresql_claims)), "PVC",
                      _claims_line(spec.postgresql_claims), "pg-pvc", statuses))
    parts.append(_box(340, 350, 300, 60, "Secrets",
                      [f"{pg.superuser_secret.name} (superuser)", f"{pg.catalog.secret.name} (catalog owner)"],
                      "pg-secret", statuses))
    # backend
    parts.append(_box(685, 70, 370, 80, f"Deployment {b.deployment}",
                      [f"container {b.container} :{b.port}", f"probes {b.liveness_path} {b.readiness_path}",
                       f"replicas {spec.backend_replicas}"], "be-deploy", statuses))
    parts.append(_box(685, 165, 370, 45, "Service",
                      [f"{b.service.name} {b.service.type} :{','.join(map(str, b.service.ports))}"],
                      "be-svc", statuses))
    parts.append(_box(685, 225, 370, 45, "ConfigMap", [b.configmap], "be-cm", statuses))
    parts.append(_box(685, 285, 370, 60, "Secrets",
                      [f"{b.postgres_secret.name} (catalog)", f"{b.s3_secret.name} (S3)"],
                      "be-secret", statuses))
    parts.append(_box(685, 365, 370, 60, "Data plane (through the backend)",
                      ["upload, ingest > inlining limit, read back", "Parquet in S3, snapshot, time travel, DuckDB"],
                      "dataplane", statuses))
    parts.append(_box(25, 440, 615, 60, "Secrets hygiene, isolation, provenance",
                      ["ConfigMaps, env literals, annotations, pod logs, reports",
                       "every workload's images: pinned, from maintained sources"],
                      "hygiene", statuses))
    # connections: backend -> MinIO API, backend -> PostgreSQL
    parts.append('<defs><marker id="arr" markerWidth="8" markerHeight="8" refX="7" refY="4" '
                 'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#455a64"/></marker></defs>')
    parts.append('<path d="M685,110 C660,110 660,160 327,160" fill="none" stroke="#455a64" '
                 'marker-end="url(#arr)"><title>S3 API</title></path>')
    parts.append('<path d="M685,130 C665,130 665,175 642,175" fill="none" stroke="#455a64" '
                 'marker-end="url(#arr)"><title>catalog</title></path>')
    if nodes:
        band, h = _nodes_band(H - 10, nodes, statuses)
        parts.append(band)
        H += h + 10
    # legend
    lx = 10
    for st in (PASS, WARN, FAIL, ERROR, NOT_EVALUATED, NOT_RUN):
        parts.append(f'<rect x="{lx}" y="{H - 14}" width="12" height="12" fill="{FILL[st]}" '
                     f'stroke="{COLOURS[st]}"/><text x="{lx + 16}" y="{H - 4}" font-size="11">'
                     f'{st.replace("_", " ").lower()}</text>')
        lx += 120
    head = escape(title or f"DuckLake stack ({spec.path.name})")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H + 10}" width="{W}" '
            f'height="{H + 10}" font-family="sans-serif" font-size="12" role="img" '
            f'aria-label="{head}"><text x="10" y="22" font-size="15" font-weight="bold">{head}</text>'
            + "\n".join(parts) + "</svg>")
