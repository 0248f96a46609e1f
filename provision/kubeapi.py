"""Kubernetes API access through the Python client, read-only when asked.

``api_client(..., readonly=True)`` returns a client on which every request, by
every transport the client offers, passes :func:`provision.guard.check_request`
before any byte leaves the process:

* ``call_api`` (every generated API method; ``kubernetes.stream.stream()`` and
  ``portforward()`` replace it on the instance with their websocket transport);
* ``request`` and ``rest_client.request`` (the plain HTTP path);
* ``rest_client.pool_manager`` (urllib3, for callers that reach below the client);
* any of these replaced on the instance later: the replacement is wrapped too.

Not covered, and not used by this project (a test holds that): calling
``kubernetes.stream.ws_client`` functions directly with the client's configuration.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from provision.guard import SELF_REVIEWS, check_request

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "*", "escalate",
               "bind", "impersonate"}
_GUARDED = ("call_api", "request")


def _path_of(url: str) -> str:
    parts = urlsplit(str(url))
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _guard(fn):
    """``fn(method, url, ...)`` that checks ``method url`` first."""
    if getattr(fn, "_readonly_guarded", False):
        return fn

    def guarded(method, url, *args, **kwargs):
        check_request(method, _path_of(url))
        return fn(method, url, *args, **kwargs)
    guarded._readonly_guarded = True
    return guarded


class _GuardedPool:
    """A urllib3 pool manager whose request/urlopen check ``method url`` first."""

    def __init__(self, inner):
        object.__setattr__(self, "_inner", inner)

    def request(self, method, url, *args, **kwargs):
        check_request(method, _path_of(url))
        return self._inner.request(method, url, *args, **kwargs)

    def urlopen(self, method, url, *args, **kwargs):
        check_request(method, _path_of(url))
        return self._inner.urlopen(method, url, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def _guard_rest(rest):
    rest.request = _guard(rest.request)
    if not isinstance(rest.pool_manager, _GuardedPool):
        rest.pool_manager = _GuardedPool(rest.pool_manager)
    return rest


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
            for name in _GUARDED:   # instance attributes: found before the class's methods
                if hasattr(self, name):
                    setattr(self, name, getattr(self, name))

        def __setattr__(self, name, value):
            # stream()/portforward() swap call_api for a websocket transport: still guarded
            if name in _GUARDED and callable(value):
                value = _guard(value)
            elif name == "rest_client":
                value = _guard_rest(value)
            super().__setattr__(name, value)

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
