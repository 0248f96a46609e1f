"""The ducklake-infra pytest plugin (entry point ``pytest11``): options and session fixtures.

Installed with the package, so ``pytest --cluster=CONTEXT --readonly`` works from any
directory: with no test paths it runs the packaged conformance suites.
``pytest --cluster=kind`` creates (or reuses) the kind cluster from the bundle's
node image, installs the stack and deploys the backend; the suites then check
the spec. ``pytest --cluster=<context> --readonly`` audits an existing cluster
and refuses every test or fixture marked ``mutating``.
"""


from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from ducklake_infra.provision.bundle import layout
from ducklake_infra.provision.cluster import select_cluster
from ducklake_infra.provision.errors import DucklakeInfraError
from ducklake_infra.provision.runner import Runner

import ducklake_infra
from ducklake_infra.provision import spec_file
from ducklake_infra.provision.spec import SpecError

# The conformance suites' plugin: controls, the stack fixture, reports.
pytest_plugins = ["ducklake_infra.suites.plugin"]
SUITES = Path(ducklake_infra.__file__).resolve().parent / "suites"


def pytest_addoption(parser):
    g = parser.getgroup("ducklake-infra", "DuckLake stack conformance")
    g.addoption("--cluster", default=None, metavar="kind|CONTEXT",
                help="'kind' (default) creates or reuses the kind cluster from the bundle; "
                     "any other value is an existing kube context, never created or deleted. "
                     "Tests that need no cluster: pytest tests -m 'not cluster'")
    g.addoption("--readonly", action="store_true",
                help="audit mode: nothing may change; mutating tests are refused")
    g.addoption("--keep-cluster", action="store_true",
                help="keep the kind cluster after the run (a later run reuses it)")
    g.addoption("--kubeconfig", default=None, help="kubeconfig file for --cluster CONTEXT")
    g.addoption("--stack", default=None,
                help=f"stack spec file (default: ${spec_file.SPEC_ENV}, else ./stack.yaml, else the "
                     "packaged default)")
    g.addoption("--report-dir", default="reports", help="where reports are written (./reports)")
    g.addoption("--cache-dir", default=None, help="bundle cache directory")
    g.addoption("--sbom-dir", default=None,
                help="the bundle's SBOMs and digests.json, matched against the images that "
                     "run (SUPPLY-SBOM-001; default: <cache>/sbom)")


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config):
    """Defaults that depend on what was asked: an explicit ``--cluster`` with no test
    paths (an installed auditor in an empty directory) runs the packaged suites; the
    stack spec is located once (see :func:`ducklake_infra.provision.spec_file.locate`)."""
    explicit = config.option.cluster is not None
    config.stash[CLUSTER_GIVEN] = explicit
    if config.option.cluster is None:
        config.option.cluster = "kind"
    if explicit and config.args_source == pytest.Config.ArgsSource.INVOCATION_DIR:
        config.args[:] = [str(SUITES)]
        config.args_source = pytest.Config.ArgsSource.ARGS
    path, how = spec_file.locate(config.option.stack, Path(config.invocation_params.dir))
    config.option.stack = str(path)
    config.stash[SPEC_SOURCE] = how
    config.stash[RUN_STARTED] = time.time()


@pytest.fixture(scope="session")
def run_started(pytestconfig) -> float:
    """Wall-clock time this run started: tests that read cluster history (events, audit
    logs) look only at what happened since, so a kept cluster's past cannot fail them."""
    return pytestconfig.stash[RUN_STARTED]


SPEC_SOURCE = pytest.StashKey[str]()
CLUSTER_GIVEN = pytest.StashKey[bool]()
RUN_STARTED = pytest.StashKey[float]()
_VERIFIED = pytest.StashKey["ExistingCluster"]()   # the existing cluster checked at session start


def pytest_report_header(config):
    if not config.stash.get(CLUSTER_GIVEN, False):
        return None      # another project's tests in a venv that holds this package
    return (f"ducklake-infra {ducklake_infra.__version__}: cluster {config.option.cluster}"
            f"{' (read-only audit)' if config.option.readonly else ''}; stack spec "
            f"{config.option.stack} ({config.stash.get(SPEC_SOURCE, '?')})")


def pytest_configure(config):
    cluster = config.getoption("--cluster")
    if config.getoption("--readonly") and cluster == "kind":
        raise pytest.UsageError("--readonly audits an existing cluster: name its context with "
                                "--cluster CONTEXT (a kind cluster's is kind-<name>)")
    if config.getoption("--keep-cluster") and cluster != "kind":
        raise pytest.UsageError("--keep-cluster only applies to --cluster=kind")
    if config.getoption("--kubeconfig") and cluster == "kind":
        raise pytest.UsageError("--kubeconfig only applies to --cluster CONTEXT; kind clusters "
                                "get their own kubeconfig file")
    kc = config.getoption("--kubeconfig")
    if kc and not Path(kc).expanduser().is_file():
        raise pytest.UsageError(f"--kubeconfig {kc}: no such file")
    if config.getoption("--readonly") and \
            config.args_source == pytest.Config.ArgsSource.ARGS:
        outside = [a for a in config.args if not _in_suites(a.split("::")[0], config)]
        if outside:
            raise pytest.UsageError(f"--readonly runs the conformance suites only ({SUITES}); "
                                    f"not an audit: {' '.join(outside)}")


def _in_suites(path, config) -> bool:
    p = (Path(config.invocation_params.dir) / path).resolve()
    return p == SUITES or SUITES in p.parents


def pytest_ignore_collect(collection_path, config):
    """Under --readonly nothing outside the conformance suites is collected (tests/ holds
    docker builds, local services and bring-up tests: none of them is an audit)."""
    if not config.getoption("--readonly"):
        return None
    p = Path(collection_path).resolve()
    if p == SUITES or SUITES in p.parents or p in SUITES.parents:
        return None
    return True


def pytest_sessionstart(session):
    """An existing context is checked before anything runs: unknown context, missing
    credentials or an unreachable API server end the run with one clear line, exit 2,
    and reports that say why (see :func:`ducklake_infra.suites.report_hooks.stop_run`)."""
    config = session.config
    name = config.getoption("--cluster")
    if name == "kind" or config.getoption("--collect-only", default=False):
        return
    kc = config.getoption("--kubeconfig")
    r = layout.bundle_runner(layout.layout(config.getoption("--cache-dir")), readonly=True)
    try:
        checked = select_cluster(r, layout.layout(config.getoption("--cache-dir")).root, name,
                                 kind_name="", node_image="", kubeconfig=kc)
        checked.ensure()
        config.stash[_VERIFIED] = checked   # the cluster fixture does not ask again
    except DucklakeInfraError as exc:
        # not pytest.exit: it prints the reason twice and skips every report
        from ducklake_infra.suites.report_hooks import stop_run
        stop_run(config, str(exc), r.redactor.secrets)


def pytest_collection_modifyitems(config, items):
    readonly = config.getoption("--readonly")
    for item in items:
        if readonly and item.get_closest_marker("mutating"):
            item.add_marker(pytest.mark.skip(reason="not evaluated (read-only): this check "
                                             "changes the cluster"))
    # tests that restart the cluster or reinstall the stack go after the others (in their
    # own order): the snapshot the others judge is the stack that was installed
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)


@pytest.fixture(scope="session")
def bundle_layout(pytestconfig) -> layout.Layout:
    return layout.layout(pytestconfig.getoption("--cache-dir"))


@pytest.fixture(scope="session")
def runner(pytestconfig, bundle_layout) -> Runner:
    return layout.bundle_runner(bundle_layout, "pytest", readonly=pytestconfig.getoption("--readonly"))


@pytest.fixture(scope="session")
def cluster(pytestconfig, runner, bundle_layout):
    """The cluster under test. kind: created from the bundle (or reused), deleted
    afterwards when we created it, unless --keep-cluster."""
    name = pytestconfig.getoption("--cluster")
    if name == "kind":
        if not runner.which("kind"):
            pytest.fail(f"kind is not built: run `ducklake-infra bundle build` "
                        f"(looked in {bundle_layout.bin})")
        try:
            kind_spec = spec_file.load(pytestconfig.getoption("--stack"))
        except SpecError as exc:
            pytest.fail(str(exc), pytrace=False)
        kind_name, workers = kind_spec.kind_cluster, kind_spec.kind_workers
    else:
        kind_name, workers = "", 0
    c = select_cluster(runner, bundle_layout.root, name, kind_name=kind_name,
                       node_image=layout.NODE_IMAGE, kubeconfig=pytestconfig.getoption("--kubeconfig"),
                       keep=pytestconfig.getoption("--keep-cluster"), workers=workers)
    start = time.monotonic()
    try:
        if name == "kind":
            c.ensure()
        else:
            c.ensure(verified=pytestconfig.stash.get(_VERIFIED, None))
    except DucklakeInfraError as exc:
        pytest.fail(f"cluster {name!r} is not usable: {exc}", pytrace=False)
    c.ready_seconds = time.monotonic() - start
    yield c
    if c.is_kind and c.owned:
        c.delete()


class Kubectl:
    """kubectl through the shared runner, with the cluster's explicit context."""

    def __init__(self, runner: Runner, prefix: list[str], cluster=None):
        self.runner = runner
        self.prefix = prefix
        self.cluster = cluster   # for reads through the read-only API client

    def __call__(self, *args: str, input: str | None = None, timeout: float = 120,
                 check: bool = True, sensitive: bool = False):
        return self.runner.run([*self.prefix, *args], input=input, timeout=timeout, check=check,
                               sensitive=sensitive)

    def json(self, *args: str, timeout: float = 60) -> dict:
        return json.loads(self(*args, "-o", "json", timeout=timeout).stdout)

    def apply(self, manifest: str, namespace: str | None = None):
        ns = ["-n", namespace] if namespace else []
        return self(*ns, "apply", "-f", "-", input=manifest)


@pytest.fixture(scope="session")
def kubectl(cluster, runner) -> Kubectl:
    return Kubectl(runner, cluster.kubectl(), cluster)
