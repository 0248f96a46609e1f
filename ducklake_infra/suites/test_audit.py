"""The audit's own credentials: a read-only audit should hold read-only credentials.

A self rules review (through the read-only API wrapper, run with the session's gather) lists what these
credentials could change in each namespace of the stack; any write permission
is a WARN ("audit credentials are over-privileged"), since --readonly then
rests on our enforcement alone rather than on RBAC too.
"""

from __future__ import annotations

import pytest

from ducklake_infra.suites.live import stack_namespaces
from ducklake_infra.suites.catalog import CheckError, Result, verdict

pytestmark = [pytest.mark.cluster]


@pytest.mark.control("AUDIT-PRIV-001")
def test_audit_credentials_not_over_privileged(pytestconfig, objs, spec):
    if not pytestconfig.getoption("--readonly"):
        pytest.skip("applies to --readonly audits (a provisioning run needs write access)")
    if objs.write_rules is None:
        raise CheckError("could not evaluate: the session's gather did not review the rules")
    warnings, good = [], []
    for ns in stack_namespaces(spec):
        # the review ran with the gather's reads (live.gather: rules_review)
        rules = objs.write_rules.get(ns)
        if isinstance(rules, Exception) or rules is None:
            raise CheckError(f"could not evaluate: the self rules review of namespace {ns} "
                             f"failed: {type(rules).__name__}: {rules}")
        if rules:
            shown = "; ".join(rules[:4]) + (f"; ... ({len(rules)} rules)" if len(rules) > 4 else "")
            warnings.append(f"warning: in namespace {ns} these credentials can {shown}")
        else:
            good.append(f"namespace {ns}: read-only (self rules review)")
    verdict(Result("WARN" if warnings else "PASS", warnings + good))
