"""ducklake_infra/provision/guard.py, attacked: every bypass found in review, and more of the same class.

Mirrors the module: commands, API requests, secrets. The transports of the Python
client are attacked in test_kubeapi.py; the real kubectl in test_guard_kubectl.py.
"""

from __future__ import annotations

import base64
import html
import json
from xml.sax.saxutils import escape as xml_escape

import pytest

from ducklake_infra.provision.guard import (ReadOnlyViolation, Redactor, check_command, check_request,
                             find_leaks, normalise_path, secret_forms)
from ducklake_infra.provision.runner import Runner

# ---- commands --------------------------------------------------------------------------------
K = ["kubectl", "--kubeconfig", "/k", "--context", "prod"]
H = ["helm", "--kubeconfig", "/k", "--kube-context", "prod"]
PROXY = "/api/v1/namespaces/ducklake/services/ducklake-backend:80/proxy/readyz"

# every shape of read the project runs under --readonly (ducklake_infra/suites/live.py, stack.status, ...)
ALLOWED = [
    [*K, "-n", "storage", "get", "deployments,pods,services", "-o", "json"],
    [*K, "-n", "storage", "get", "secrets", "-o", "json"],
    [*K, "get", "--raw", PROXY],
    [*K, "get", "--raw=/version", "--request-timeout", "10s"],
    [*K, "-n", "storage", "get", "events", "--sort-by=.lastTimestamp"],
    [*K, "-n", "storage", "get", "pods", "-o", "wide"],
    [*K, "-n", "storage", "logs", "minio-0", "-c", "minio", "--tail=2000"],
    [*K, "version", "-o", "json"],
    ["kubectl", "--kubeconfig", "/k", "config", "get-contexts", "-o", "name"],
    [*K, "get", "pods", "--namespace", "storage", "--output", "json"],
    [*K, "auth", "can-i", "--list"],
    [*H, "list", "-n", "storage", "-o", "json"],
    [*H, "list", "--namespace", "storage", "--filter", "^minio$", "--output", "json"],
    [*H, "get", "values", "minio", "-n", "storage", "-a", "-o", "json"],
    ["helm", "template", "minio", "/charts/minio", "--namespace", "storage", "-f", "v.yaml",
     "--set-string", "image.tag=x", "--version", "5.4.0"],
    [*K, "get", "pods", "-A", "--ignore-not-found=true"],
]

REFUSED = [
    # findings of the review: unknown flags taken as switches moved the verb
    [*K, "--cache-dir", "get", "delete", "namespace", "prod"],
    ["kubectl", "--certificate-authority", "get", "delete", "ns", "prod"],
    ["kubectl", "--tls-server-name", "get", "delete", "ns", "prod"],
    ["kubectl", "--as-uid", "get", "delete", "ns", "prod"],
    ["kubectl", "--client-key", "get", "delete", "ns", "prod"],
    ["helm", "--kube-ca-file", "list", "uninstall", "minio"],
    ["helm", "--kube-as-group", "list", "uninstall", "minio"],
    ["helm", "--burst-limit", "list", "uninstall", "minio"],
    # more of the class: flags the project never passes, attached short values, odd forms
    [*K, "--as", "system:admin", "get", "pods"],
    [*K, "--as=system:admin", "get", "pods"],
    [*K, "--token", "x", "get", "pods"],
    [*K, "-s", "https://elsewhere", "get", "pods"],
    [*K, "-ojson", "get", "pods"],
    [*K, "-nstorage", "delete", "pod", "x"],
    [*K, "get", "pods", "--watch-only", "x"],
    [*K, "get", "-f", "manifest.yaml"],
    [*K, "get", "-k", "."],
    [*K, "--", "delete", "ns", "prod"],
    [*K, "get", "--", "delete"],
    [*K, "-", "delete"],
    [*K, "get", "pods", "--ignore-not-found=yes"],
    [*K, "--kubeconfig"],
    [*K, "get", "-o"],
    # subcommands that write, exec or forward
    [*K, "apply", "-f", "-"],
    [*K, "delete", "ns", "storage"],
    [*K, "-n", "get", "exec", "pod", "--", "sh"],  # '-n get' is a namespace named get
    [*K, "exec", "minio-0", "--", "sh"],
    [*K, "port-forward", "svc/minio", "9000"],
    [*K, "proxy"],
    [*K, "cp", "x", "y"],
    [*K, "annotate", "ns", "x", "a=b"],
    [*K, "config", "use-context", "prod"],
    [*K, "config", "view", "--raw"],
    [*K, "config", "set-credentials", "x"],
    [*K, "auth", "reconcile", "-f", "x"],
    [*K, "config"],
    [*K, "auth"],
    [*K, "plugin", "list"],
    [*K, "wait", "--for=delete", "pod/x"],
    # raw paths are API requests: the same rules
    [*K, "get", "--raw", "/api/v1/nodes/kind-control-plane/proxy/run/storage/minio-0/minio"],
    [*K, "get", "--raw=/api/v1/namespaces/storage/pods/minio-0/exec?command=sh"],
    [*K, "get", "--raw", "/api/v1/namespaces/storage/pods/minio-0/%65xec"],
    [*K, "get", "--raw", "/api/v1/namespaces/storage/pods/minio-0/proxy/"],
    # helm: writes, plugins, rendering that reaches out or runs programs
    [*H, "upgrade", "--install", "minio", "chart"],
    [*H, "uninstall", "minio"],
    [*H, "rollback", "minio", "1"],
    [*H, "get", "all", "minio", "--kube-token", "x"],
    [*H, "get"],
    ["helm", "template", "minio", "c", "--post-renderer", "./evil"],
    ["helm", "template", "minio", "c", "--validate"],
    ["helm", "template", "minio", "c", "--dry-run=server"],
    [*H, "plugin", "install", "x"],
    [*H, "list", "--kube-apiserver", "https://elsewhere"],
    # other tools and spellings
    ["kind", "delete", "cluster"],
    ["docker", "run", "x"],
    ["sh", "-c", "kubectl get pods"],
    ["kubectl-delete", "ns", "x"],
    ["KUBECTL", "get", "pods"],
    ["/tmp/evil/kubectl", "get", "pods"],       # another program with the same name
    ["./helm", "list"],
    [],
]


@pytest.mark.parametrize("argv", ALLOWED, ids=lambda a: " ".join(a[5:9]) or " ".join(a[:3]))
def test_reads_are_allowed(argv):
    check_command(argv)


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: " ".join(a[:8]) or "(empty)")
def test_everything_else_is_refused_before_running(argv, tmp_path):
    with pytest.raises(ReadOnlyViolation):
        check_command(argv)
    if argv:
        r = Runner(readonly=True, log_path=tmp_path / "log")
        with pytest.raises(ReadOnlyViolation):
            r.run(argv)
        assert not (tmp_path / "log").exists()  # nothing ran


def test_refusal_is_one_line_naming_the_flag():
    with pytest.raises(ReadOnlyViolation) as ei:
        check_command([*K, "--cache-dir", "get", "delete", "namespace", "prod"])
    msg = str(ei.value)
    assert "--cache-dir" in msg and "\n" not in msg


def test_readonly_commands_get_no_variables_that_change_them(tmp_path):
    """HELM_KUBEASUSER, HELM_KUBETOKEN, HELM_KUBEAPISERVER do what the refused
    --kube-* flags do; KUBECTL_* and a kuberc file can add flags we never see."""
    fake = tmp_path / "kubectl"
    fake.write_text("#!/bin/sh\nenv\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HELM_KUBEASUSER": "admin",
           "HELM_KUBETOKEN": "t", "HELM_KUBEAPISERVER": "https://x", "KUBECTL_EXTERNAL_DIFF": "x",
           "KUBERC": "/tmp/evil-kuberc", "HOME": "/root"}
    out = Runner(readonly=True, env=env).run(["kubectl", "get", "pods"]).stdout
    assert "HELM_KUBE" not in out and "KUBECTL_" not in out and "KUBERC=off" in out
    assert "HOME=/root" in out
    out_rw = Runner(env=env).run(["kubectl", "get", "pods"]).stdout
    assert "HELM_KUBEASUSER=admin" in out_rw  # only read-only mode drops them


def test_end_to_end_a_fake_kubectl_never_starts(tmp_path):
    """The review's reproduction: through Runner(readonly=True), a kubectl on PATH that
    would record being started is never started."""
    marker = tmp_path / "started"
    fake = tmp_path / "kubectl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {marker}\n")
    fake.chmod(0o755)
    r = Runner(readonly=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    for argv in REFUSED:
        if argv and argv[0] == "kubectl":
            with pytest.raises(ReadOnlyViolation):
                r.run(argv)
    assert not marker.exists()
    r.run([*K, "get", "pods"])  # the fake does run for a read: the harness is not blind
    assert marker.read_text().strip().endswith("get pods")


# ---- API requests ------------------------------------------------------------------------------
READ_REQUESTS = [
    ("GET", "/api/v1/namespaces/storage/pods"),
    ("get", "/api/v1/namespaces/storage/pods?limit=500"),
    ("HEAD", "/version"),
    ("GET", PROXY),
    ("GET", "/api/v1/namespaces/ducklake/services/http:ducklake-backend:80/proxy/tables"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews"),
    ("POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews/"),
    ("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews"),
]
REFUSED_REQUESTS = [
    ("POST", "/api/v1/namespaces/storage/configmaps"),
    ("PUT", "/api/v1/namespaces/storage/secrets/minio-root"),
    ("PATCH", "/apis/apps/v1/namespaces/ducklake/deployments/ducklake-backend"),
    ("DELETE", "/api/v1/namespaces/storage"),
    ("OPTIONS", "/api/v1/namespaces"),
    ("CONNECT", "/api/v1/namespaces/storage/pods/minio-0/exec"),
    ("", "/api/v1/namespaces"),
    # streaming, in every spelling the API server or kubelet routes
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/exec?command=sh"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/portforward"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/portForward"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/port-forward"),
    ("POST", "/api/v1/namespaces/storage/pods/minio-0/attach"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/%65xec"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/%2565xec"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/EXEC"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/exec/"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0//exec"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/./exec"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/log/../exec"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0/%61ttach"),
    # the node proxy is the kubelet API (exec over websockets with a GET); pod proxies too
    ("GET", "/api/v1/nodes/kind-control-plane/proxy/runningpods/"),
    ("GET", "/api/v1/nodes/kind-control-plane:10250/proxy/exec/storage/minio-0/minio"),
    ("GET", "/api/v1/NODES/kind-control-plane/PROXY/pods"),
    ("GET", "/api/v1/%6eodes/kind-control-plane/proxy/pods"),
    ("GET", "/api/v1/namespaces/storage/pods/minio-0:9000/proxy/minio/health"),
    ("GET", "/api/v1/namespaces/storage/pods/https:minio-0:9000/proxy/"),
    # self reviews only at their exact paths, never through a proxy or another prefix
    ("POST", "/api/v1/namespaces/ducklake/services/ducklake-backend:80/proxy/datasets/"
             "selfsubjectaccessreviews"),
    ("POST", "/api/v1/namespaces/ducklake/services/ducklake-backend:80/proxy/query"),
    ("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews"),
    ("POST", "/apis/authorization.k8s.io/v1/namespaces/x/localsubjectaccessreviews"),
    ("POST", "/apis/authorization.k8s.io/v1/%73elfsubjectaccessreviews"),
    ("POST", "/apis/authorization.k8s.io/v1/SelfSubjectAccessReviews"),
    ("POST", "/apis/authorization.k8s.io/v1/x/../selfsubjectaccessreviews"),
    ("PUT", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"),
    # an encoded '?' must not hide the rest of the path (review, finding 2)
    ("GET", "/api/v1/nodes/n%3F/../n/proxy/pods"),
    ("GET", "/api/v1/namespaces/x/pods/y%3F/../y/exec?command=sh"),
    ("GET", "/api/v1/namespaces/x/pods/y%253F/../y/proxy/"),
    ("GET", "/api/v1/namespaces/x/pods/y/exec%00"),
    ("GET", "/api/v1/namespaces/x/pods/y;/exec"),
    ("GET", "/api/v1/namespaces/x/pods/y%5Cexec"),
    ("GET", "/api/v1/namespaces/x/pods/y%23/../exec"),
]


@pytest.mark.parametrize("method,path", READ_REQUESTS)
def test_reads_and_self_reviews_pass(method, path):
    check_request(method, path)


@pytest.mark.parametrize("method,path", REFUSED_REQUESTS)
def test_writes_streams_and_proxies_are_refused(method, path):
    with pytest.raises(ReadOnlyViolation):
        check_request(method, path)


def test_normalise_path_decodes_until_stable():
    assert normalise_path("/A/%2565xec/./b//c?x=1") == "/a/exec/b/c"


# ---- secrets ---------------------------------------------------------------------------------
TRICKY = ['pa"ss\\w0rd', "a&b<c>d'e", "wört-ñ-密码", "plain-secret-1", "line\nbreak\tx"]


def test_secret_forms_cover_every_encoding():
    s = TRICKY[0]
    forms = secret_forms([s])
    assert {s, base64.b64encode(s.encode()).decode(), json.dumps(s)[1:-1]} <= forms
    assert secret_forms(["short"]) == set()  # below the minimum: would match by accident


@pytest.mark.parametrize("secret", TRICKY)
@pytest.mark.parametrize("encode", [
    lambda s: s,
    lambda s: json.dumps({"evidence": [s]}),
    lambda s: json.dumps({"evidence": [s]}, ensure_ascii=False),
    lambda s: f"<td>{html.escape(s)}</td>",
    lambda s: f"<td>{html.escape(s, quote=False)}</td>",
    lambda s: f"<property value=\"{xml_escape(s, {chr(34): '&quot;'})}\"/>",
    lambda s: base64.b64encode(s.encode()).decode(),
    lambda s: f'<div data-jsonblob="{html.escape(json.dumps({"log": "x " + s}))}"></div>',
    lambda s: "".join(f"&#{ord(c)};" for c in s),
    lambda s: html.escape(s).replace("&quot;", "&#34;").replace("&#x27;", "&#39;"),
    lambda s: __import__("xml.etree.ElementTree").etree.ElementTree.tostring(
        __import__("xml.etree.ElementTree").etree.ElementTree.Element("failure", message=s),
        encoding="unicode"),
    lambda s: base64.b64encode(s.encode()).decode().rstrip("="),
    lambda s: base64.urlsafe_b64encode(s.encode()).decode(),
    lambda s: base64.b64encode(s.encode() + b"\n").decode(),
    lambda s: base64.b64encode(b"prefix-" + s.encode() + b"-suffix").decode(),
    lambda s: base64.b64encode(b"p-" + s.encode() + b"-sfx").decode(),
    lambda s: s.encode().hex(),
    lambda s: __import__("urllib.parse").parse.quote(s, safe=""),
    lambda s: json.dumps(s)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c")
    .replace(">", "\\u003e"),
], ids=["raw", "json", "json-utf8", "html", "html-noquote", "xml", "base64", "html-json",
        "numeric-entities", "markupsafe", "xml-attr-newline", "base64-unpadded",
        "base64url", "base64-newline", "base64-mid-stream-1", "base64-mid-stream-2", "hex",
        "percent", "go-json"])
def test_find_leaks_sees_every_form_and_the_redactor_removes_it(secret, encode):
    text = f"before {encode(secret)} after"
    assert find_leaks(text, [secret]) == ["#0"]
    red = Redactor()
    red.add(secret)
    if "&#" in encode("ab") and ";&#" in encode("ab"):
        return  # every character an entity: found, not redactable (the report is withheld)
    assert find_leaks(red(text), [secret]) == [], red(text)


def test_find_leaks_is_quiet_on_clean_text():
    text = json.dumps({"evidence": ["***", "nothing to see"], "x": html.escape("<&>")})
    assert find_leaks(text, TRICKY) == []


@pytest.mark.parametrize("secret", TRICKY)
def test_redactor_redacts_every_form_and_before_encoding(secret):
    red = Redactor()
    red.add(secret)
    for text in (secret, json.dumps(secret), html.escape(secret),
                 base64.b64encode(secret.encode()).decode()):
        assert find_leaks(red(f"x {text} y"), [secret]) == [], text
    doc = red.tree({"k": [f"see {secret}", {secret: 1}]})
    assert find_leaks(json.dumps(doc), [secret]) == []
    assert find_leaks(json.dumps(doc, ensure_ascii=False), [secret]) == []


def test_public_names_are_never_redacted():
    red = Redactor()
    red.allow("ducklake")
    red.add("ducklake", "r4nd0m-pw")  # a Secret that repeats the spec's user name
    assert red("user ducklake password r4nd0m-pw") == "user ducklake password ***"
    red2 = Redactor()
    red2.add("ducklake")
    red2.allow("ducklake")  # allowing later also un-registers it
    assert red2("ducklake") == "ducklake"


def test_the_projects_own_helm_template_commands_are_allowed():
    """The negative suite renders the charts with the same overrides `up` installs
    (--set-json among them) under --readonly: every such argv must pass."""
    from ducklake_infra.provision import spec_file
    from ducklake_infra.provision import render
    spec = spec_file.load()
    opts = render.Options()
    refs = render.image_refs(spec, opts)
    for rel in spec.releases.values():
        chart_args, _ = render.chart_source(spec, rel, opts)
        argv = ["helm", "template", rel.name, *chart_args, "--namespace", rel.namespace,
                *[a for f in rel.values for a in ("-f", str(f))],
                *render.release_overrides(spec, rel, refs)]
        check_command(argv)
