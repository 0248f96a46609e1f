"""Read-only enforcement for the subprocess runner.

In read-only mode only read subcommands of kubectl and helm may run; every other
tool (kind, docker, ...) and every other subcommand is refused before it starts.
Exec and port-forward are refused too: they can change what runs in a pod.
"""

from __future__ import annotations

import os
from typing import Sequence

from provision.runner import ReadOnlyViolation

KUBECTL_READ = {"get", "describe", "logs", "explain", "api-resources", "api-versions",
                "version", "cluster-info", "top", "events", "wait"}
KUBECTL_CONFIG_READ = {"view", "get-contexts", "current-context", "get-clusters", "get-users"}
KUBECTL_AUTH_READ = {"can-i", "whoami"}
HELM_READ = {"list", "ls", "status", "get", "history", "show", "version", "env", "search",
             "template", "lint"}

# flags of kubectl/helm that take a value (so the value is not mistaken for the verb)
_VALUE_FLAGS = {"--kubeconfig", "--context", "--kube-context", "-n", "--namespace",
                "--cluster", "--user", "--request-timeout", "-s", "--server", "--token",
                "--as", "--as-group", "--kube-apiserver", "--kube-token", "--kube-as-user",
                "--registry-config", "--repository-config", "--repository-cache"}


def _words(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a in _VALUE_FLAGS:
            skip = True
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


def check_command(argv: Sequence[str]) -> None:
    tool = os.path.basename(argv[0]) if argv else ""
    words = _words(argv)
    verb = words[0] if words else ""
    if tool == "kubectl":
        if verb in KUBECTL_READ:
            return
        if verb == "config" and len(words) > 1 and words[1] in KUBECTL_CONFIG_READ:
            return
        if verb == "auth" and len(words) > 1 and words[1] in KUBECTL_AUTH_READ:
            return
    elif tool == "helm":
        if verb in HELM_READ:
            return
    raise ReadOnlyViolation(f"refused in read-only mode: {' '.join([tool, *words[:2]])} "
                            "(only read subcommands of kubectl and helm may run)")
