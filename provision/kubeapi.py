"""Kubernetes API access through the Python client, read-only when asked.

``api_client(..., readonly=True)`` returns a client that refuses, before any
byte leaves the process, every request that is not a read: only GET/HEAD
(and POSTs of self access reviews, which change nothing) pass; exec, attach and
port-forward are refused whatever the method. The subprocess runner enforces the
same for kubectl and helm (provision/readonly.py).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from provision.runner import ReadOnlyViolation

READ_METHODS = {"GET", "HEAD"}
SELF_REVIEWS = ("selfsubjectaccessreviews", "selfsubjectrulesreviews", "selfsubjectreviews")
_STREAMING = re.compile(r"/(exec|attach|portforward)(/|$|\?)")
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*", "escalate",
               "bind", "impersonate"}


def check_request(method: str, path: str) -> None:
    """Raise :class:`ReadOnlyViolation` unless ``method path`` is a read."""
    m = method.upper()
    bare = path.split("?", 1)[0].rstrip("/")
    if _STREAMING.search(bare + "/"):
        raise ReadOnlyViolation(f"refused in read-only mode: {m} {bare} "
                                "(exec, attach and port-forward can change a running pod)")
    if m in READ_METHODS:
        return
    if m == "POST" and bare.rsplit("/", 1)[-1] in SELF_REVIEWS:
        return
    raise ReadOnlyViolation(f"refused in read-only mode: {m} {bare} (only reads are allowed)")


def api_client(kubeconfig: str | Path | None, context: str | None, readonly: bool):
    """A ``kubernetes.client.ApiClient`` for ``context``; read-only when asked."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig) if kubeconfig else None,
                            context=context, client_configuration=cfg,
                            persist_config=False)
    if not readonly:
        return client.ApiClient(cfg)

    class ReadOnlyApiClient(client.ApiClient):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            # The one gate every HTTP call of the generated client passes through
            # (rest_client.request(method, url, ...)), whatever the client version.
            inner = self.rest_client.request

            def guarded(method, url, *args, **kwargs):
                check_request(method, urlsplit(url).path)
                return inner(method, url, *args, **kwargs)

            self.rest_client.request = guarded

    return ReadOnlyApiClient(cfg)


def write_rules(api, namespace: str) -> list[str]:
    """What these credentials could change in ``namespace`` (a self rules review)."""
    from kubernetes import client

    review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(
            namespace=namespace)))
    out = []
    for rule in review.status.resource_rules or []:
        verbs = set(rule.verbs or [])
        bad = sorted(verbs & WRITE_VERBS)
        # every identity may create self access reviews (system:basic-user): no change
        resources = [r for r in (rule.resources or []) if r not in SELF_REVIEWS]
        if bad and resources:
            groups = ",".join(g or "core" for g in (rule.api_groups or [""]))
            res = ",".join(resources)
            out.append(f"{'/'.join(bad)} on {res} ({groups})")
    return out
