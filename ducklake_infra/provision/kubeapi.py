"""Kubernetes API access through the Python client, read-only when asked.

``api_client(..., readonly=True)`` returns a client on which every request, by
every transport the client offers, passes :func:`ducklake_infra.provision.guard.check_request`
before any byte leaves the process:

* ``call_api`` (every generated API method; ``kubernetes.stream.stream()`` and
  ``portforward()`` replace it on the instance with their websocket transport);
* ``request`` and ``rest_client.request`` (the plain HTTP path);
* ``rest_client.pool_manager`` and every urllib3 pool it makes (for callers that
  reach below the client), with redirects never followed;
* any of these replaced on the instance later: the replacement is wrapped too.

Not covered, and not used by this project (a test holds that): calling
``kubernetes.stream.ws_client`` functions directly with the client's configuration,
or building a new client from it.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ducklake_infra.provision.guard import SELF_REVIEWS, check_request

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


def _guarded_pool_class(base):
    """A urllib3 connection pool class whose every request is checked, redirects off."""
    class Guarded(base):
        def urlopen(self, method, url, *args, **kwargs):
            check_request(method, _path_of(url))
            kwargs["redirect"] = False
            return super().urlopen(method, url, *args, **kwargs)
    Guarded.__name__ = f"ReadOnly{base.__name__}"
    return Guarded


def _guard_pool_manager(pm) -> None:
    """Every way into urllib3 (request, request_encode_*, urlopen, connection_from_*)
    ends in a pool's urlopen: guard the pool manager's and the pools' own. Redirects are
    never followed: a service behind the API server's proxy could otherwise send the
    client, and its credentials, elsewhere."""
    if getattr(pm, "_readonly_guarded", False):
        return
    inner = pm.urlopen

    def urlopen(method, url, *args, **kwargs):
        check_request(method, _path_of(url))
        kwargs["redirect"] = False
        return inner(method, url, *args, **kwargs)
    pm.urlopen = urlopen
    pm.pool_classes_by_scheme = {k: _guarded_pool_class(v)
                                 for k, v in pm.pool_classes_by_scheme.items()}
    pm.clear()
    pm._readonly_guarded = True


def _guard_rest(rest):
    rest.request = _guard(rest.request)
    _guard_pool_manager(rest.pool_manager)
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


_CLIENTS: dict = {}


def read_only_client(cluster):
    """One read-only client per cluster (kubeconfig, context), made on first use."""
    kc = Path(cluster.kubeconfig).expanduser() if cluster.kubeconfig else None
    key = (str(kc or ""), cluster.context, kc.stat().st_mtime if kc and kc.exists() else 0)
    if key not in _CLIENTS:
        _CLIENTS[key] = api_client(cluster.kubeconfig, cluster.context, readonly=True)
    return _CLIENTS[key]


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
