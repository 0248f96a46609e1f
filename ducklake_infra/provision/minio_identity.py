"""``up``, distributed profile: every MinIO server serves the stack's own identities.

A MinIO server can refuse a user it should know while its health endpoints answer 200:
after a peer's pod came back with a new address, a server kept dialing the old one for
a minute or two (MinIO's peer connections resolve names through a cache), and an IAM
reload that ran meanwhile left it without the stack's users (AccessDenied for the
backend, found on kind after a drain; HA-MINIO-003 reports it). Restarting that server
makes it load every user again. ``up`` asks each server directly (a port-forward to its
pod, a signed bucket check as each stack identity) and restarts, one at a time, those
that refuse; it fails in one line when a restart does not help."""

from __future__ import annotations

from typing import Callable, Sequence

from ducklake_infra.provision.errors import DucklakeInfraError

DENIED = ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch")
RESTARTS = 2


def serve_identities(pods: Sequence[str], refused: Callable[[str], str | None],
                     restart: Callable[[str], None]) -> str:
    """``refused(pod)``: None when the pod's server serves every identity, else why (a
    MinIO error code); ``restart(pod)``: delete it and wait until it is Ready again. A
    server refusing for another reason than IAM (no answer at all) is an error at once:
    a restart is not the cure for that."""
    restarted: list[str] = []
    for pod in pods:
        for attempt in range(RESTARTS + 1):
            why = refused(pod)
            if why is None:
                break
            if why not in DENIED:
                raise DucklakeInfraError(f"MinIO server {pod} did not answer the stack's "
                                         f"identity check: {why}")
            if attempt == RESTARTS:
                raise DucklakeInfraError(
                    f"MinIO server {pod} still refuses the stack's identity ({why}) after "
                    f"{RESTARTS} restart(s): read its log (`kubectl logs {pod}`)")
            restart(pod)
            restarted.append(f"{pod} ({why})")
    if restarted:
        return f"{len(pods)} servers serve the stack's identities; restarted " + \
            ", ".join(restarted)
    return f"{len(pods)} servers serve the stack's identities"


def bucket_check(host: str, access_key: str, secret_key: str, bucket: str,
                 secure: bool = False, timeout_s: float = 15.0) -> str | None:
    """A signed bucket check as one identity against one server: None, or MinIO's error
    code, or the transport error's type (never the credentials); "TimeoutError" past
    ``timeout_s`` (minio's own client retries; the product reaches no HTTP pool directly:
    tests/provision/test_kubeapi.py)."""
    import threading

    from minio import Minio
    from minio.error import S3Error
    out: list[str | None] = []

    def ask() -> None:
        try:
            Minio(host, access_key=access_key, secret_key=secret_key,
                  secure=secure).bucket_exists(bucket)
            out.append(None)
        except S3Error as exc:
            out.append(exc.code or "S3Error")
        except Exception as exc:  # noqa: BLE001 - refused, reset, timed out
            out.append(type(exc).__name__)
    worker = threading.Thread(target=ask, name="minio-identity", daemon=True)
    worker.start()
    worker.join(timeout_s)
    return out[0] if out else "TimeoutError"
