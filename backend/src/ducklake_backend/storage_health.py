"""GET /storage/health: what MinIO's own unauthenticated health endpoints say about the
erasure set, asked from inside the cluster (the backend may reach every server on the API
port; an auditor outside may not). Statuses and quorum headers only: no credential is
sent or returned.

- ``cluster`` (the Service): ``/minio/health/cluster`` answers 200 while every erasure set
  has its write quorum (header ``x-minio-write-quorum``), ``/minio/health/cluster/read``
  200 while it has its read quorum (``x-minio-read-quorum``: the data drives, so the
  parity shows); both add ``x-minio-healing-drives`` while drives heal.
- ``servers`` (each one by name, from ``DUCKLAKE_MINIO_SERVERS``): ``/minio/health/live``,
  ``/minio/health/cluster?maintenance=true``, which answers 412 when taking that server
  down would cost the quorum, and ``access``: whether that server serves the backend's own
  identity (a signed bucket check; a server that lost its peers may deny it while the
  health endpoints still answer 200).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

HEADERS = {"x-minio-write-quorum": "write_quorum", "x-minio-read-quorum": "read_quorum",
           "x-minio-healing-drives": "healing_drives"}


def _ask(url: str, timeout_s: float) -> dict:
    """One GET: its status and MinIO's quorum headers as integers, or why it had none."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"),
                                    timeout=timeout_s) as r:
            status, headers = r.status, r.headers
    except urllib.error.HTTPError as e:
        status, headers = e.code, e.headers
    except (OSError, ValueError) as e:       # refused, reset, timed out, no such host
        reason = getattr(e, "reason", None) or e
        return {"status": None, "error": type(reason).__name__}
    out: dict = {"status": status}
    for header, key in HEADERS.items():
        value = headers.get(header) if headers is not None else None
        if value is not None and value.strip().isdigit():
            out[key] = int(value)
    return out


def probe(endpoint: str, servers: tuple[str, ...], use_ssl: bool,
          access: Callable[[str], str] | None = None, timeout_s: float = 3.0) -> dict:
    """Every question at once (a dead server costs one timeout, not one per question).
    ``access(server)``: "ok" or why the server refused the backend's identity."""
    scheme = "https" if use_ssl else "http"
    urls = {("cluster", "write"): f"{scheme}://{endpoint}/minio/health/cluster",
            ("cluster", "read"): f"{scheme}://{endpoint}/minio/health/cluster/read"}
    for host in servers:
        urls[(host, "live")] = f"{scheme}://{host}/minio/health/live"
        urls[(host, "maintenance")] = f"{scheme}://{host}/minio/health/cluster?maintenance=true"
    with ThreadPoolExecutor(max_workers=min(8, len(urls) + len(servers))) as pool:
        granted = {h: pool.submit(access, h) for h in servers} if access else {}
        answers = dict(zip(urls, pool.map(lambda u: _ask(u, timeout_s), urls.values())))
        return {"cluster": {"write": answers[("cluster", "write")],
                            "read": answers[("cluster", "read")]},
                "servers": [{"host": h, "live": answers[(h, "live")],
                             "maintenance": answers[(h, "maintenance")],
                             **({"access": granted[h].result()} if access else {})}
                            for h in servers]}
