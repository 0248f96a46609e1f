"""The conformance suites' session fixtures: the stack spec, the stack (installed once
per session on kind), the live objects, and the evidence bundle of what was inspected.
Registered by ducklake_infra.suites.plugin (its ``pytest_plugins``)."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest

from ducklake_infra.suites.plugin import State, _state


# ---- session fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def spec(pytestconfig):
    """The stack spec from --stack (every name of the stack comes from here)."""
    from ducklake_infra.provision import spec_file
    from ducklake_infra.provision.spec import SpecError
    try:
        s = spec_file.load(pytestconfig.getoption("--stack"))
    except SpecError as exc:
        pytest.fail(str(exc), pytrace=False)
    _state(pytestconfig).spec = s
    return s


@pytest.fixture(scope="session")
def stack(pytestconfig, cluster, spec, runner, kubectl):
    """The stack under test. --cluster=kind: installed (idempotently) once per
    session; an existing context is audited as it is; --readonly never installs."""
    st = _state(pytestconfig)
    st.kubectl = kubectl
    st.redactor = runner.redactor  # one Redactor: the runner's, fed with the cluster's Secrets
    if cluster.is_kind and not pytestconfig.getoption("--readonly"):
        from ducklake_infra.provision.errors import DucklakeInfraError
        from ducklake_infra.provision.progress import Progress
        from ducklake_infra.provision.stack import up
        start = time.monotonic()
        # shown as it happens (helm waits and rollouts take minutes), not captured
        capman = pytestconfig.pluginmanager.getplugin("capturemanager")
        live = capman.global_and_fixture_disabled() if capman else contextlib.nullcontext()
        try:
            with live:
                progress = Progress(log_path=runner.log_path)
                up(cluster, spec, runner, progress)
        except DucklakeInfraError as exc:
            pytest.fail(f"the stack could not be installed: {runner.redactor(str(exc))}",
                        pytrace=False)
        cluster.stack_seconds = time.monotonic() - start
        if getattr(cluster, "ready_seconds", None) is not None:
            st.phases.append(("cluster create/reuse", cluster.ready_seconds, cluster.context))
        st.phases += [(f"up: {n}", t, note) for n, t, note in progress.timings]
    return spec


@pytest.fixture(scope="session")
def objs(pytestconfig, stack, kubectl, runner, cluster, spec):
    """The live objects of the stack (one consistent snapshot per session); every
    Secret value read is registered with the runner's Redactor."""
    from ducklake_infra.suites.live import gather
    o = gather(kubectl, runner, cluster, spec, rules_review=pytestconfig.getoption("--readonly"))
    _evidence_start(pytestconfig, cluster, kubectl)  # evidence bundle
    record_inspected(pytestconfig, o)                # evidence bundle
    _state(pytestconfig).objects = o                 # the picture's nodes
    return o


# ---- evidence bundle (ducklake_infra/suites/evidence.py) -------------------------------------------------------
def _evidence_start(config, cluster, kubectl) -> None:
    from ducklake_infra.suites import evidence as ev
    st = _state(config)
    if st.evidence is None:
        st.evidence = ev.Recorder()
    if st.evidence.context is None:
        st.evidence.context = getattr(cluster, "context", None)
        st.evidence.server_version = (getattr(cluster, "server_version", None)
                                      or ev.server_version(kubectl))


def record_inspected(config, *objects) -> None:
    """Record objects a check read (dicts, Lists, Objects) for the evidence bundle."""
    from ducklake_infra.suites import evidence as ev
    st = _state(config)
    if st.evidence is None:
        st.evidence = ev.Recorder()
    st.evidence.record(*objects)


def record_provenance(config, rows) -> None:
    """Per workload container: the image, the digest it runs and the SBOM that digest
    matched (SUPPLY-SBOM-001), for the evidence bundle."""
    from ducklake_infra.suites import evidence as ev
    st = _state(config)
    if st.evidence is None:
        st.evidence = ev.Recorder()
    st.evidence.provenance.extend(rows)


@pytest.fixture(scope="session")
def sbom_index(pytestconfig, bundle_layout):
    """The SBOMs the running images are matched against (``--sbom-dir``)."""
    from ducklake_infra.suites.supply_chain import read_sboms
    given = pytestconfig.getoption("--sbom-dir")
    return read_sboms(Path(given).expanduser() if given else bundle_layout.sbom)


@pytest.fixture(scope="session")
def inspected(pytestconfig):
    """``inspected(obj, ...)``: add objects a test read itself to the evidence bundle."""
    return lambda *objects: record_inspected(pytestconfig, *objects)


def _write_evidence(config, st: State, results, rd: Path) -> None:
    if st.evidence is None or st.evidence.empty:
        return  # no cluster was inspected
    from ducklake_infra.suites import evidence as ev
    bundle = ev.build(st.evidence, readonly=bool(config.getoption("--readonly", default=False)),
                      run_id=ev.run_id_now(), cluster_option=config.getoption("--cluster",
                                                                              default=None),
                      stack=str(config.getoption("--stack", default="")),
                      controls=ev.controls_of(results), redact=st.redactor)
    st.written.append(ev.write(rd, bundle))
# ---- end evidence bundle ------------------------------------------------------------------------
