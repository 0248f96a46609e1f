"""ExistingCluster.ensure: one line per failure, with the tool's own reason, redacted."""

from __future__ import annotations

import pytest

from ducklake_infra.provision import kubeconfig
from ducklake_infra.provision.cluster import ExistingCluster
from ducklake_infra.provision.errors import DucklakeInfraError

from .fakes import FakeRunner

TOKEN = "s3cr3t-t0ken"


@pytest.fixture
def kc(tmp_path):
    p = tmp_path / "kubeconfig"
    p.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "https://127.0.0.1:9"}}}}]
users: [{{name: u, user: {{token: {TOKEN}}}}}]
contexts: [{{name: dead, context: {{cluster: c, user: u}}}}]
""")
    return p


def _ensure_error(runner, context="dead", kubeconfig=None) -> str:
    with pytest.raises(DucklakeInfraError) as exc:
        ExistingCluster(runner, context=context, kubeconfig=kubeconfig).ensure()
    msg = str(exc.value)
    assert "\n" not in msg and TOKEN not in msg
    return msg


def test_missing_kubeconfig_file_is_not_an_unknown_context(tmp_path):
    r = FakeRunner()
    msg = _ensure_error(r, kubeconfig=tmp_path / "nope.yaml")
    assert msg == f"kubeconfig {tmp_path / 'nope.yaml'}: no such file"
    assert not r.calls


def test_invalid_kubeconfig_keeps_kubectl_reason_redacted(kc):
    r = FakeRunner().on("config get-contexts", rc=1, stderr=(
        f'error: error loading config file "{kc}": illegal base64 data near {TOKEN}\n'))
    msg = _ensure_error(r, kubeconfig=kc)
    assert msg == (f'kubeconfig {kc} is not usable: error loading config file "{kc}": '
                   "illegal base64 data near ***")


def test_unknown_context_says_which_contexts_there_are(kc):
    r = FakeRunner().on("config get-contexts", stdout="dev\nstaging\n")
    msg = _ensure_error(r, context="prod", kubeconfig=kc)
    assert msg == (f"unknown kube context 'prod' in {kc} (it has dev, staging); "
                   "see: kubectl config get-contexts")
    r = FakeRunner()
    assert "(it has no contexts)" in _ensure_error(r, context="prod", kubeconfig=kc)


def test_unreachable_api_server_first_meaningful_line(kc):
    r = FakeRunner().on("config get-contexts", stdout="dead\n").on("get --raw", rc=1, stderr=(
        "E0101 12:00:00.000000   42 memcache.go:265] couldn't get current server API group "
        "list\nUnable to connect to the server: token " + TOKEN + " refused\nsecond line\n"))
    msg = _ensure_error(r, kubeconfig=kc)
    assert msg == ("API server of context 'dead' is unreachable or refused us: Unable to "
                   "connect to the server: token *** refused")


def test_reason_and_credentials():
    assert kubeconfig.reason("") == "no answer"
    assert kubeconfig.reason("E0101 12:00:00.123456   7 x.go:1] only klog\n") == "only klog"
    assert kubeconfig.reason("\nerror: context \"x\" does not exist\n") == \
        'context "x" does not exist'
    assert kubeconfig.credentials([]) == []


def test_credentials_block_and_flow_style(tmp_path):
    p = tmp_path / "k"
    p.write_text("users:\n- name: a\n  user:\n    token: tok-block-1\n    password: 'pw-quoted'\n"
                 "- {name: b, user: {client-key-data: KEYDATA==, token: \"tok-flow\"}}\n")
    assert sorted(kubeconfig.credentials([p, tmp_path / "absent"])) == \
        ["KEYDATA==", "pw-quoted", "tok-block-1", "tok-flow"]


def test_default_kubeconfig_is_kubeconfig_env_then_home(tmp_path):
    assert kubeconfig.files(None, {"KUBECONFIG": f"{tmp_path}/a:{tmp_path}/b"}) == \
        [tmp_path / "a", tmp_path / "b"]
    assert kubeconfig.files(None, {})[0].name == "config"
    assert kubeconfig.files(tmp_path / "x", {"KUBECONFIG": "/y"}) == [tmp_path / "x"]


def test_a_context_verified_once_is_not_asked_again_but_its_credentials_are_registered(kc):
    first = FakeRunner().on("config get-contexts", stdout="dead\n").on(
        "get --raw /version", stdout='{"major": "1", "gitVersion": "v1.34.0"}')
    checked = ExistingCluster(first, context="dead", kubeconfig=kc)
    checked.ensure()
    assert checked.server_version == {"major": "1", "gitVersion": "v1.34.0"}
    second = FakeRunner()
    again = ExistingCluster(second, context="dead", kubeconfig=kc)
    again.ensure(verified=checked)
    assert not second.calls and again.server_version == checked.server_version
    assert second.redactor(f"token {TOKEN}") == "token ***"


@pytest.mark.parametrize("other", [{"context": "prod"}, {"kubeconfig": None}, {"unchecked": True}])
def test_a_different_or_unchecked_context_is_asked_again(kc, other):
    first = FakeRunner().on("config get-contexts", stdout="dead\nprod\n").on(
        "get --raw /version", stdout='{"gitVersion": "v1.34.0"}')
    checked = ExistingCluster(first, context=other.get("context", "dead"),
                              kubeconfig=other.get("kubeconfig", kc))
    if not other.get("unchecked"):
        checked.ensure()
    second = FakeRunner().on("config get-contexts", stdout="dead\n").on(
        "get --raw /version", stdout="{}")
    ExistingCluster(second, context="dead", kubeconfig=kc).ensure(verified=checked)
    assert [c.argv[-1] for c in second.calls] == ["name", "10s"]
