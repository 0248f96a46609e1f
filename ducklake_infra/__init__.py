"""ducklake-infra: conformance suite and provisioner for the DuckLake stack on Kubernetes.

``ducklake_infra.provision`` builds the bundle and installs the stack;
``ducklake_infra.suites`` holds the conformance controls and their tests;
``ducklake_infra.pytest_plugin`` is the pytest plugin (entry point ``pytest11``).
"""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("ducklake-infra")
except PackageNotFoundError:   # a source tree that was never installed
    __version__ = "0+unknown"
