"""``kubectl port-forward`` in the background, for the suites' data-plane checks and for
``up``'s check that every MinIO server serves the stack's identities."""

from __future__ import annotations

import re
import subprocess
import threading
import time

from ducklake_infra.provision.runner import CommandError, Runner


class PortForward:
    """``kubectl port-forward`` in the background; ``local_port`` once ready.

    Started through the runner's read-only check (refused under --readonly)."""

    def __init__(self, runner: Runner, cluster, namespace: str, target: str, remote_port: int,
                 timeout: float = 60):
        self.argv = [*cluster.kubectl(), "-n", namespace, "port-forward", "--address", "127.0.0.1",
                     target, f":{remote_port}"]
        self.runner = runner
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.local_port: int | None = None
        self._out: list[str] = []

    def __enter__(self) -> "PortForward":
        self.runner.check_allowed(self.argv)
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=dict(self.runner.base_env))
        found = threading.Event()

        def read():
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self._out.append(line)
                m = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                if m and self.local_port is None:
                    self.local_port = int(m.group(1))
                    found.set()
        threading.Thread(target=read, daemon=True).start()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline and not found.is_set():
            if self.proc.poll() is not None:
                break
            found.wait(0.2)
        if self.local_port is None:
            self.__exit__(None, None, None)
            raise CommandError(self.argv, self.proc.returncode,
                               self.runner.redactor("".join(self._out)[-1500:]),
                               reason="port-forward did not become ready")
        return self

    def __exit__(self, *exc):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
