"""ducklake_infra/suites/faults/loadgen.py without a cluster: the Pod passes the restricted Pod
Security profile the stack's namespaces enforce and holds no token in its spec; the
ledger line is parsed, a run that printed none is an error, and recovery is measured
from the fault. The script itself runs for real in tests/backend/test_loadgen.py."""

from __future__ import annotations

import json

import pytest

from ducklake_infra.suites.faults import loadgen
from ducklake_infra.suites.security import restricted_violations


def test_the_pod_passes_restricted_and_carries_no_token(spec):
    pod = loadgen.pod(spec, "ducklake-infra/backend:abc", "lg-1", loadgen.Load("t1"))
    assert restricted_violations(pod["spec"]) == []
    assert pod["metadata"]["namespace"] == spec.backend.namespace
    env = pod["spec"]["containers"][0]["env"]
    token = next(e for e in env if e["name"] == "TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == spec.backend.token_secret.name
    assert "value" not in token and pod["spec"]["automountServiceAccountToken"] is False
    b = spec.backend
    assert {"name": "BASE_URL", "value": f"http://{b.service.name}.{b.namespace}.svc:"
                                         f"{b.service.ports[0]}"} in env


def test_the_ledger_is_read_from_the_last_ledger_line():
    line = {"started": 100.0, "sent": 7, "acked": [0, 1, 3], "errors": {"503": 2},
            "last_not_ready": 112.0, "ready": True}
    log = f"STARTED 100.000\nnoise\n{loadgen.LEDGER_PREFIX}{json.dumps(line)}\n"
    ledger = loadgen.parse_ledger(log)
    assert loadgen.started_at(log) == 100.0
    assert ledger.acked == frozenset({0, 1, 3}) and ledger.sent == 7
    assert ledger.errors == {"503": 2}
    assert ledger.recovery_s(fault=105.0) == pytest.approx(7.5)
    assert loadgen.Ledger(100, 1, frozenset(), {}, None, True).recovery_s(105) == 0.0
    assert loadgen.Ledger(100, 1, frozenset(), {}, 120.0, False).recovery_s(105) is None


def test_a_run_that_printed_no_ledger_is_an_error_naming_its_log():
    with pytest.raises(ValueError, match=r"printed no ledger: (?s:.*)boom"):
        loadgen.parse_ledger("STARTED 1.0\nTraceback (most recent call last): boom")
