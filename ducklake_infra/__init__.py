"""ducklake-infra: conformance suite and provisioner for the DuckLake stack on Kubernetes.

``ducklake_infra.provision`` builds the bundle and installs the stack;
``ducklake_infra.suites`` holds the conformance controls and their tests;
``ducklake_infra.pytest_plugin`` is the pytest plugin (entry point ``pytest11``).
"""



def __getattr__(name: str):
    """``__version__`` on first use: importlib.metadata costs ~50 ms, and the pytest plugin
    imports this package in every pytest run of a venv that holds it."""
    if name != "__version__":
        raise AttributeError(name)
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("ducklake-infra")
    except PackageNotFoundError:   # a source tree that was never installed
        return "0+unknown"
