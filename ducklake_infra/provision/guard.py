"""What an audit guarantees, in one place: nothing changes, and no Secret leaves.

Read-only (``pytest --readonly``, ``ducklake-infra status``):

* **Commands** (:func:`check_command`): only ``kubectl`` and ``helm``, only the read
  subcommands below, and only the flags below, each with its arity. An allowlist:
  an unknown flag is refused, since we cannot know whether it takes a value and so
  where the verb is (``kubectl --cache-dir get delete ns prod`` deletes). Before the
  verb only global flags may appear. ``--`` is refused. A ``get --raw`` path must
  pass :func:`check_request` as a GET.
* **API requests** (:func:`check_request`): GET/HEAD only, except POSTs of self
  access reviews at their exact API paths. Paths are percent-decoded (repeatedly)
  and lower-cased before matching. Refused whatever the method: exec, attach,
  port-forward (both spellings), and the node and pod proxies (the kubelet API can
  exec through ``nodes/*/proxy``). Service proxies may be read (GET): the audit's
  data-plane probes read the backend through them, and the backend's GET handlers
  only read (a read-only DuckLake attach).
  ``ducklake_infra.provision.kubeapi`` applies this to every transport of the read-only client.

No Secret value in any output (logs, errors, reports, in any encoding):

* :class:`Redactor` replaces every registered value and its encoded forms
  (:func:`secret_forms`: base64, JSON-escaped, HTML/XML-escaped); structured output
  is redacted value by value before it is encoded (:meth:`Redactor.tree`).
* :func:`find_leaks` is the probe: it searches text, its HTML/XML-unescaped form
  and, for JSON, every decoded string value for every form of every secret.
* The runner writes logs with mode 0600 and never logs the output of a command
  marked ``sensitive`` (Secret reads), whatever its exit code.

Not covered (documented, not enforceable here): a kubeconfig's ``exec`` credential
plugin runs, as it does for every kubectl call (EKS, GKE); KUBECONFIG is honoured when
no --kubeconfig is given. Read-only commands get no HELM_KUBE*/KUBECTL_* variables and
no kuberc file (:func:`readonly_env`).

The proof is external: ``tests/cluster/test_readonly_proof.py`` reads the API
server's audit log. Tests: ``tests/provision/test_guard.py`` mirrors this module.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote, quote_plus, unquote

from ducklake_infra.provision.errors import DucklakeInfraError


class ReadOnlyViolation(DucklakeInfraError):
    """A command or request that could change something was refused in read-only mode."""


# ---- commands ------------------------------------------------------------------------------
# flag -> arity (1: takes a value, as "--flag value" or "--flag=value"; 0: a switch)
_OUTPUT = {"-o": 1, "--output": 1}
KUBECTL_GLOBAL = {"--kubeconfig": 1, "--context": 1, "-n": 1, "--namespace": 1,
                  "--request-timeout": 1}
KUBECTL_VERBS: dict[tuple[str, ...], dict[str, int]] = {
    ("get",): {**_OUTPUT, "--raw": 1, "-l": 1, "--selector": 1, "--field-selector": 1,
               "--sort-by": 1, "-A": 0, "--all-namespaces": 0, "--ignore-not-found": 0,
               "--show-labels": 0, "--chunk-size": 1},
    ("describe",): {"-l": 1, "--selector": 1, "-A": 0, "--all-namespaces": 0},
    ("logs",): {"-c": 1, "--container": 1, "--tail": 1, "--since": 1, "--timestamps": 0,
                "-p": 0, "--previous": 0, "--all-containers": 0, "--limit-bytes": 1},
    ("events",): {**_OUTPUT, "-A": 0, "--all-namespaces": 0, "--for": 1},
    ("version",): {**_OUTPUT, "--client": 0},
    ("api-resources",): {**_OUTPUT, "--namespaced": 1, "--verbs": 1, "--api-group": 1},
    ("api-versions",): {},
    ("config", "get-contexts"): {**_OUTPUT, "--no-headers": 0},
    ("config", "current-context"): {},
    ("auth", "can-i"): {"--list": 0, "--no-headers": 0, "-q": 0, "--quiet": 0},
    ("auth", "whoami"): {**_OUTPUT},
}
HELM_GLOBAL = {"--kubeconfig": 1, "--kube-context": 1, "-n": 1, "--namespace": 1}
_HELM_GET = {**_OUTPUT, "-a": 0, "--all": 0, "--revision": 1}
HELM_VERBS: dict[tuple[str, ...], dict[str, int]] = {
    ("list",): {**_OUTPUT, "-a": 0, "--all": 0, "-A": 0, "--all-namespaces": 0,
                "--filter": 1, "-q": 0, "--short": 0},
    ("status",): {**_OUTPUT, "--revision": 1},
    ("history",): {**_OUTPUT, "--max": 1},
    ("get", "values"): _HELM_GET,
    ("get", "manifest"): {"--revision": 1},
    ("get", "metadata"): {**_OUTPUT, "--revision": 1},
    ("version",): {"--short": 0},
    # client-side rendering only (no --validate, no --dry-run=server, no post-renderer)
    ("template",): {"-f": 1, "--values": 1, "--set": 1, "--set-string": 1, "--set-json": 1,
                    "--version": 1,
                    "--repo": 1, "--include-crds": 0, "-s": 1, "--show-only": 1,
                    "--kube-version": 1, "--api-versions": 1},
}
_TOOLS = {"kubectl": (KUBECTL_GLOBAL, KUBECTL_VERBS), "helm": (HELM_GLOBAL, HELM_VERBS)}
_GROUPS = {"kubectl": {"config", "auth"}, "helm": {"get"}}


def _refuse(what: str) -> ReadOnlyViolation:
    return ReadOnlyViolation(f"refused in read-only mode: {what} (only read subcommands of "
                             "kubectl and helm, with known flags, may run)")


def check_command(argv: Sequence[str]) -> None:
    """Raise :class:`ReadOnlyViolation` unless ``argv`` is an allowed read."""
    tool = argv[0] if argv else ""
    if tool not in _TOOLS:   # bare names, found on the runner's PATH: no other program
        raise _refuse(tool or "(empty command)")
    global_flags, verbs = _TOOLS[tool]
    verb: tuple[str, ...] = ()      # the subcommand so far
    allowed = global_flags          # before the subcommand: global flags only
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--", "-"):
            raise _refuse(f"{tool} {a!r}")
        if a.startswith("-"):
            name, eq, value = a.partition("=")
            if name not in allowed:
                where = " ".join(verb) if verb in verbs else "before the subcommand"
                raise _refuse(f"{tool} flag {name} ({where})")
            if allowed[name] == 1 and not eq:
                if i + 1 >= len(argv):
                    raise _refuse(f"{tool} flag {name} without a value")
                i += 1
                value = argv[i]
            elif allowed[name] == 0 and eq and value not in ("true", "false"):
                raise _refuse(f"{tool} switch {a}")
            if name == "--raw":
                check_request("GET", value)
        elif verb not in verbs:     # still naming the subcommand
            verb = (*verb, a)
            if verb in verbs:
                allowed = {**global_flags, **verbs[verb]}
            elif not (len(verb) == 1 and a in _GROUPS[tool]):
                raise _refuse(f"{tool} {' '.join(verb)}")
        i += 1                      # (positionals after the subcommand: names, paths)
    if verb not in verbs:
        raise _refuse(f"{tool} {' '.join(verb) or '(no subcommand)'}")


# variables that change what kubectl or helm do beyond their flags (impersonation, other
# servers, default flags from a kuberc file): never passed to a read-only command
READONLY_ENV_DROP = ("HELM_KUBE", "HELM_PLUGINS", "HELM_POST_RENDERER", "KUBECTL_")


def readonly_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a read-only command: the variables above dropped, kuberc disabled."""
    out = {k: v for k, v in env.items() if not k.startswith(READONLY_ENV_DROP)}
    out["KUBERC"] = "off"
    return out


# ---- API requests ----------------------------------------------------------------------------
READ_METHODS = {"GET", "HEAD"}
SELF_REVIEW_PATHS = {
    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
    "/apis/authentication.k8s.io/v1/selfsubjectreviews",
}
SELF_REVIEWS = {p.rsplit("/", 1)[1] for p in SELF_REVIEW_PATHS}
_STREAMING = {"exec", "attach", "portforward", "port-forward"}


def normalise_path(path: str) -> str:
    """The path as the API server routes it: query and fragment dropped from the raw
    string, then percent-decoding applied until stable, lower-cased, empty and '.'
    segments dropped. (Never split again after decoding: an encoded '?' must not hide
    the rest of the path; check_request refuses such characters instead.)"""
    p = path.split("?", 1)[0].split("#", 1)[0]
    for _ in range(5):
        q = unquote(p)
        if q == p:
            break
        p = q
    p = p.lower()
    return "/" + "/".join(s for s in p.split("/") if s not in ("", "."))


_ODD = set("?#%;\\\x00")


def check_request(method: str, path: str) -> None:
    """Raise :class:`ReadOnlyViolation` unless ``method path`` is a read."""
    m = (method or "").upper()
    norm = normalise_path(path)
    segments = norm.split("/")
    if ".." in segments or _ODD & set(norm) or any(ord(c) < 32 for c in norm):
        raise ReadOnlyViolation(f"refused in read-only mode: {m} {path} (relative path or "
                                "characters no Kubernetes name holds)")
    if _STREAMING & set(segments):
        raise ReadOnlyViolation(f"refused in read-only mode: {m} {path} "
                                "(exec, attach and port-forward can change a running pod)")
    for i, s in enumerate(segments[:-1]):
        if s in ("nodes", "pods") and "proxy" in segments[i + 1:i + 3]:
            raise ReadOnlyViolation(f"refused in read-only mode: {m} {path} "
                                    f"({s[:-1]} proxies reach the kubelet or a pod directly)")
    if m in READ_METHODS:
        return
    if m == "POST" and path.split("?", 1)[0].rstrip("/") in SELF_REVIEW_PATHS:  # exact
        return
    raise ReadOnlyViolation(f"refused in read-only mode: {m} {path} (only reads are allowed)")


# ---- secrets ---------------------------------------------------------------------------------
REDACTED = "***"
MIN_SECRET_LEN = 6  # shorter values would match by accident everywhere


def _b64_forms(data: bytes) -> set[str]:
    """base64 of ``data``: padded, unpadded, URL-safe, with a trailing newline, and the
    stable core at each of the three byte alignments (``data`` inside a longer stream)."""
    std = base64.b64encode(data).decode()
    out = {std, std.rstrip("="), base64.urlsafe_b64encode(data).decode().rstrip("="),
           base64.b64encode(data + b"\n").decode()[:-4]}
    for k in (1, 2):
        core = base64.b64encode(b"\0" * k + data).decode()[4:-4]
        if len(core) >= 8:
            out |= {core, core.replace("+", "-").replace("/", "_")}
    return {f for f in out if len(f) >= MIN_SECRET_LEN}


def _escapes(v: str) -> set[str]:
    """HTML/XML escapes of ``v``: html.escape, markupsafe-style numeric ones, XML
    attribute whitespace."""
    numeric = v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") \
        .replace('"', "&#34;").replace("'", "&#39;")
    xml_attr = html.escape(v, quote=False).replace('"', "&quot;").replace("\n", "&#10;") \
        .replace("\r", "&#13;").replace("\t", "&#09;")
    return {html.escape(v), html.escape(v, quote=False), numeric, xml_attr,
            xml_attr.replace("&#09;", "&#9;"),
            numeric.replace("&#34;", "&quot;"), html.escape(v).replace("&#x27;", "&apos;")}


def secret_forms(values: Iterable[str]) -> set[str]:
    """Each value and the forms it takes once encoded: base64 (Secret data, annotations;
    see _b64_forms), hex, percent-encoding, JSON string escapes (ASCII, UTF-8, Go's
    \\u0026-style), and HTML/XML escapes of each of these."""
    out: set[str] = set()
    for v in values:
        if not v or len(v) < MIN_SECRET_LEN:
            continue
        j = json.dumps(v)[1:-1]
        go = j.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
        texts = {v, j, json.dumps(v, ensure_ascii=False)[1:-1], go,
                 quote(v, safe=""), quote_plus(v)}
        for t in texts:
            out |= {t} | _escapes(t)
        out |= _b64_forms(v.encode()) | {v.encode().hex()}
    return {f for f in out if len(f) >= MIN_SECRET_LEN}


@dataclass
class Redactor:
    """Replaces every registered secret value, in every form, with ``***``."""

    secrets: set[str] = field(default_factory=set)   # the values as registered
    # values known to be public (names written in the stack spec): never redacted
    public: set[str] = field(default_factory=set)
    _forms: list[str] = field(default_factory=list, repr=False)

    def add(self, *values: str | None) -> None:
        new = {v for v in values if v and len(v) >= MIN_SECRET_LEN and v not in self.public}
        if new - self.secrets:
            self.secrets |= new
            self._reform()

    def allow(self, *values: str) -> None:
        self.public.update(values)
        self.secrets.difference_update(values)
        self._reform()

    def _reform(self) -> None:
        forms = secret_forms(self.secrets) - self.public
        self._forms = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self._forms:
            if s in text:
                text = text.replace(s, REDACTED)
        return text

    def tree(self, obj: Any) -> Any:
        return redact_tree(obj, self)


def redact_tree(obj: Any, redact: Callable[[str], str]) -> Any:
    """``obj`` with every string (keys too) redacted: apply before encoding it."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(str(k)): redact_tree(v, redact) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_tree(v, redact) for v in obj]
    return obj


def _strings(obj: Any) -> Iterable[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


_JSON_BLOB = re.compile(r"""data-jsonblob="([^"]*)\"""")


_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _unicode_unescape(text: str) -> str:
    return _UNICODE_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def find_leaks(text: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (by position in ``secrets``: '#3') found in ``text`` in any form:
    raw or encoded, after HTML/XML unescaping, or in a decoded JSON string."""
    views = [text, html.unescape(text), unquote(text), _unicode_unescape(text)]
    for candidate in (text, *(html.unescape(b) for b in _JSON_BLOB.findall(text))):
        try:
            # every decoded string, NUL-separated: one view to search, and no form (which
            # never holds a NUL) can match across two strings
            views.append("\0".join(_strings(json.loads(candidate))))
        except ValueError:
            pass
    found = []
    for n, s in enumerate(sorted(set(secrets))):
        forms = secret_forms([s])
        if any(f in v for f in forms for v in views):
            found.append(f"#{n}")
    return found
