"""The run's results in formats other tools read, and the run-level facts.

* ``policyreport.yaml``: wgpolicyk8s.io/v1alpha2 ``PolicyReport`` objects (the Kubernetes
  policy working group's CRD, which kyverno writes and policy-reporter shows), one per
  stack namespace, holding the controls of the components that live there, and one
  ``ClusterPolicyReport`` for the rest; one result per control.
* ``results.sarif``: SARIF 2.1.0, one run; every control is a rule, every FAIL, WARN
  and ERROR a result located at the line of the stack spec, values file or manifest
  that its remediation changes (:class:`Locator`).

Like results.json, every string is redacted before it is encoded.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml

from ducklake_infra import __version__, yamlio
from ducklake_infra.provision.guard import redact_tree
from ducklake_infra.suites.catalog import (ERROR, FAIL, NOT_EVALUATED, NOT_RUN, PASS, WARN,
                                            Control)

SOURCE = "ducklake-infra"
REPORT_NAME = "ducklake-infra-conformance"
POLICY_API = "wgpolicyk8s.io/v1alpha2"
POLICY_RESULT = {PASS: "pass", FAIL: "fail", WARN: "warn", ERROR: "error",
                 NOT_EVALUATED: "skip", NOT_RUN: "skip"}
POLICY_SEVERITY = {"critical": "critical", "high": "high", "medium": "medium", "low": "low"}
SARIF_SCHEMA = ("https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/"
                "sarif-schema-2.1.0.json")
SARIF_LEVEL = {FAIL: "error", WARN: "warning", ERROR: "error"}   # other statuses: no result
# GitHub code scanning reads a rule's security-severity: 9.0+ critical, 7.0+ high, 4.0+ medium
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "2.0"}
STACK_ROOT = "STACKROOT"   # SARIF uriBaseId: the stack spec's directory

# Where a control's remediation makes its change: (file, dotted key path; list items by
# index). "spec" is the stack spec, "values:<release>" that release's values files,
# "manifest:<file name>" one of the backend's manifests. Other controls point at their
# component's section of the spec (COMPONENT_PATH).
COMPONENT_PATH = {"minio": "minio", "postgresql": "postgresql", "backend": "backend",
                  "dataplane": "backend", "secrets": "namespaces"}
_CONTAINER = "spec.template.spec.containers.0"
TARGETS = {
    "MINIO-REL-001": ("spec", "releases.minio.chart"),
    "MINIO-MODE-001": ("values:minio", "mode"),
    "MINIO-SVC-001": ("values:minio", "service"),
    "MINIO-PVC-001": ("values:minio", "persistence"),
    "MINIO-SEC-001": ("values:minio", "existingSecret"),
    "MINIO-SEC-002": ("spec", "minio.root_secret"),
    "MINIO-BKT-001": ("spec", "buckets"),
    "MINIO-IAM-001": ("spec", "minio.backend_user"),
    "MINIO-IAM-002": ("spec", "minio.backend_user.policy"),
    "MINIO-IAM-003": ("spec", "minio.maintenance_user"),
    "MINIO-POD-002": ("values:minio", "securityContext"),
    "PG-REL-001": ("spec", "releases.postgresql.chart"),
    "PG-PVC-001": ("values:postgresql", "persistence"),
    "PG-SEC-001": ("spec", "postgresql.superuser_secret"),
    "PG-SVC-001": ("spec", "postgresql.services"),
    "PG-DB-001": ("spec", "postgresql.catalog"),
    "PG-CFG-001": ("values:postgresql", "config.lcMessages"),
    "PG-PERSIST-001": ("values:postgresql", "persistence"),
    "PG-POD-001": ("values:postgresql", "podSecurityContext"),
    "BE-RES-001": ("manifest:deployment.yaml", f"{_CONTAINER}.resources"),
    "BE-PRB-001": ("spec", "backend.liveness_path"),
    "BE-SVC-001": ("spec", "backend.service"),
    "BE-CFG-001": ("spec", "backend.configmap"),
    "BE-SEC-001": ("manifest:deployment.yaml", "spec.template.spec.securityContext"),
    "BE-AUTH-001": ("spec", "backend.secrets.api_token"),
    "BE-MEM-001": ("manifest:deployment.yaml", f"{_CONTAINER}.resources.limits"),
    "BE-QRY-001": ("spec", "minio.query_user"),
    "BE-QRY-002": ("spec", "minio.query_user.policy"),
    "DP-S3-001": ("spec", "buckets.lake"),
    "DP-CAT-001": ("spec", "postgresql.catalog"),
    "NET-POL-001": ("spec", "namespaces.storage"),
    "DRIFT-CHART-001": ("spec", "releases.minio.chart.version"),
    "DRIFT-CHART-002": ("spec", "releases.postgresql.chart.version"),
    "DRIFT-IMG-001": ("spec", "images.minio"),
    "DRIFT-IMG-002": ("spec", "images.postgresql"),
    "DRIFT-IMG-003": ("spec", "backend.image"),
    "DRIFT-REPL-001": ("values:minio", "replicas"),
    "DRIFT-REPL-003": ("spec", "backend.replicas"),
    "DRIFT-SVC-001": ("spec", "minio.services"),
    "DRIFT-SVC-002": ("spec", "postgresql.services"),
    "DRIFT-SVC-003": ("spec", "backend.service"),
    "DRIFT-RES-001": ("values:minio", "resources"),
    "DRIFT-RES-002": ("values:postgresql", "resources"),
    "DRIFT-RES-003": ("manifest:deployment.yaml", f"{_CONTAINER}.resources"),
    "DRIFT-PVC-001": ("spec", "minio.pvcs"),
    "DRIFT-PVC-002": ("spec", "postgresql.pvcs"),
}


# ---- locations -------------------------------------------------------------------------------
def key_line(node: yaml.Node | None, dotted: str) -> int | None:
    """The 1-based line of the key at ``dotted`` in a composed YAML document (the
    parser's own marks), or None when the path is not there."""
    line = None
    for part in dotted.split("."):
        if isinstance(node, yaml.MappingNode):
            hit = next((kv for kv in node.value if kv[0].value == part), None)
            if hit is None:
                return None
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif isinstance(node, yaml.SequenceNode) and part.isdigit() \
                and int(part) < len(node.value):
            node = node.value[int(part)]
            line = node.start_mark.line + 1
        else:
            return None
    return line


class Locator:
    """``locator(control) -> (file, line)``: where its remediation applies, in the files
    of one stack spec. A path the files lack falls back to what names that file in the
    spec, or to the nearest enclosing key; each file is parsed once."""

    def __init__(self, spec):
        self.spec = spec
        self._docs: dict[Path, yaml.Node | None] = {}

    def line(self, path: Path, dotted: str) -> int | None:
        if path not in self._docs:
            try:
                self._docs[path] = yaml.compose(path.read_text(encoding="utf-8"),
                                                Loader=yaml.SafeLoader)
            except (OSError, yaml.YAMLError):
                self._docs[path] = None
        return key_line(self._docs[path], dotted)

    def _in_spec(self, dotted: str) -> tuple[Path, int]:
        parts = dotted.split(".")
        while parts:
            line = self.line(self.spec.path, ".".join(parts))
            if line is not None:
                return self.spec.path, line
            parts.pop()
        return self.spec.path, 1

    def __call__(self, control: Control) -> tuple[Path, int]:
        where, dotted = TARGETS.get(control.id, ("spec", COMPONENT_PATH[control.component]))
        kind, _, name = where.partition(":")
        if kind == "spec":
            return self._in_spec(dotted)
        if kind == "values":
            files, named_by = self._values(name), f"releases.{name}.values"
        else:
            files = [p for p in self.spec.backend.manifests if p.name == name]
            named_by = "backend.manifests"
        for path in files:
            line = self.line(path, dotted)
            if line is not None:
                return path, line
        return self._in_spec(named_by)

    def _values(self, release: str) -> list[Path]:
        rel = self.spec.releases.get(release)
        return list(rel.values) if rel is not None else []


# ---- shared pieces -----------------------------------------------------------------------------
def message(r) -> str:
    """What a result says: its evidence (and reasons), else what is known of it."""
    return "\n".join(r.evidence()) or {NOT_RUN: "not run in this session"}.get(
        r.status, r.control.title)


def component_namespaces(spec) -> dict[str, str]:
    """component -> namespace, for the components that live in one namespace."""
    if spec is None:
        return {}
    return {"minio": spec.minio.namespace, "postgresql": spec.postgresql.namespace,
            "backend": spec.backend.namespace}


def run_facts(*, cluster: str | None, evidence, spec_path: Path | None,
              readonly: bool) -> dict[str, str]:
    """Run-level facts (strings; what is not known is left out): the context, the
    cluster's server version and node count as the run read them, the stack spec file
    and its sha256, and whether the run was read-only."""
    facts = {}
    context = getattr(evidence, "context", None) or cluster
    if context:
        facts["context"] = str(context)
    version = (getattr(evidence, "server_version", None) or {}).get("gitVersion")
    if version:
        facts["server_version"] = str(version)
    nodes = sum(1 for o in getattr(evidence, "objects", {}).values() if o.get("kind") == "Node")
    if nodes:
        facts["node_count"] = str(nodes)
    if spec_path is not None:
        facts["stack_spec"] = str(spec_path)
        try:
            facts["stack_spec_sha256"] = hashlib.sha256(Path(spec_path).read_bytes()).hexdigest()
        except OSError:
            pass
    facts["readonly"] = "true" if readonly else "false"
    return facts


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---- PolicyReport ----------------------------------------------------------------------------
def _policy_result(r, seconds: int) -> dict:
    c = r.control
    props = {"component": c.component, "status": r.status,
             "exempt": "true" if r.exempt_reason else "false"}
    if r.exempt_reason:
        props["exemptReason"] = r.exempt_reason
    return {"policy": c.id, "rule": c.title, "category": c.section,
            "severity": POLICY_SEVERITY[c.severity], "result": POLICY_RESULT[r.status],
            "source": SOURCE, "message": message(r),
            "timestamp": {"seconds": seconds, "nanos": 0}, "properties": props}


def policy_reports(results: Iterable, spec, now: float | None = None) -> list[dict]:
    """A PolicyReport per namespace that holds controls' components, then one
    ClusterPolicyReport for the controls of no single namespace (all of them without
    a spec)."""
    seconds = int(time.time() if now is None else now)
    namespace_of = component_namespaces(spec)
    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(namespace_of.get(r.control.component, ""), []).append(
            _policy_result(r, seconds))
    docs = []
    for ns in sorted(groups, key=lambda n: (n == "", n)):
        items = groups[ns]
        meta = {"name": REPORT_NAME, **({"namespace": ns} if ns else {}),
                "labels": {"app.kubernetes.io/managed-by": SOURCE}}
        summary = {k: sum(1 for i in items if i["result"] == k)
                   for k in ("pass", "fail", "warn", "error", "skip")}
        docs.append({"apiVersion": POLICY_API,
                     "kind": "PolicyReport" if ns else "ClusterPolicyReport",
                     "metadata": meta, "summary": summary, "results": items})
    return docs


def policy_report_text(results, spec, redact: Callable[[str], str],
                       now: float | None = None) -> str:
    docs = redact_tree(policy_reports(results, spec, now), redact)
    text = yamlio.dump_all(docs, sort_keys=False, allow_unicode=True, width=1 << 30)
    return (f"# {SOURCE} conformance results as {POLICY_API} policy reports "
            "(kubectl apply needs the wgpolicyk8s.io CRDs)\n---\n" + text)


def write_policy_report(path: Path, results, spec, redact: Callable[[str], str]) -> Path:
    return _write(path, policy_report_text(results, spec, redact))


# ---- SARIF -----------------------------------------------------------------------------------
def _rule(c: Control) -> dict:
    return {"id": c.id, "shortDescription": {"text": c.title},
            "help": {"text": c.remediation},
            "properties": {"security-severity": SECURITY_SEVERITY[c.severity],
                           "severity": c.severity,
                           "tags": ["security", c.component, f"section-{c.section}"]}}


def _artifact(path: Path, spec) -> dict:
    try:
        rel = path.resolve().relative_to(spec.root.resolve())
        return {"uri": rel.as_posix(), "uriBaseId": STACK_ROOT}
    except ValueError:
        return {"uri": path.resolve().as_uri()}


def _sarif_result(r, index: int, locate: Locator | None) -> dict:
    c = r.control
    out: dict[str, Any] = {"ruleId": c.id, "ruleIndex": index, "level": SARIF_LEVEL[r.status],
                           "message": {"text": message(r)},
                           "properties": {"status": r.status, "component": c.component,
                                          "severity": c.severity}}
    if locate is not None:
        path, line = locate(c)
        out["locations"] = [{"physicalLocation": {
            "artifactLocation": _artifact(path, locate.spec), "region": {"startLine": line}}}]
    if r.exempt_reason:   # shown, but accepted: exemptions.yaml
        out["suppressions"] = [{"kind": "external", "justification": r.exempt_reason}]
    return out


def sarif(results: list, spec, *, version: str, facts: dict[str, str]) -> dict:
    locate = Locator(spec) if spec is not None else None
    run: dict[str, Any] = {
        "tool": {"driver": {"name": SOURCE, "version": version,
                            "rules": [_rule(r.control) for r in results]}},
        "results": [_sarif_result(r, i, locate) for i, r in enumerate(results)
                    if r.status in SARIF_LEVEL],
        "properties": dict(facts)}
    if spec is not None:
        run["originalUriBaseIds"] = {STACK_ROOT: {"uri": spec.root.resolve().as_uri() + "/"}}
    return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}


def sarif_text(results: list, spec, facts: dict[str, str],
               redact: Callable[[str], str]) -> str:
    doc = redact_tree(sarif(results, spec, version=__version__, facts=facts), redact)
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write_sarif(path: Path, results: list, spec, facts: dict[str, str],
                redact: Callable[[str], str]) -> Path:
    return _write(path, sarif_text(results, spec, facts, redact))
