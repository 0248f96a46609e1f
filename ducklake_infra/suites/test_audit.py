"""The audit's own credentials: a read-only audit should hold read-only credentials.

A self rules review (through the read-only API wrapper) lists what these
credentials could change in each namespace of the stack; any write permission
is a WARN ("audit credentials are over-privileged"), since --readonly then
rests on our enforcement alone rather than on RBAC too.
"""

from __future__ import annotations

import pytest

from ducklake_infra.provision.kubeapi import read_only_client, write_rules
from ducklake_infra.suites.live import stack_namespaces
from ducklake_infra.suites.catalog import Result, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("AUDIT-PRIV-001")
def test_audit_credentials_not_over_privileged(pytestconfig, cluster, spec):
    if not pytestconfig.getoption("--readonly"):
        pytest.skip("applies to --readonly audits (a provisioning run needs write access)")
    api = read_only_client(cluster)            # the session's one guarded client
    warnings, good = [], []
    for ns in stack_namespaces(spec):
        rules = write_rules(api, ns)
        if rules:
            shown = "; ".join(rules[:4]) + (f"; ... ({len(rules)} rules)" if len(rules) > 4 else "")
            warnings.append(f"warning: in namespace {ns} these credentials can {shown}")
        else:
            good.append(f"namespace {ns}: read-only (self rules review)")
    verdict(Result("WARN" if warnings else "PASS", warnings + good))
