"""The lake's maintenance runner: on request (POST /maintenance) or every ``interval_s``;
one run at a time among every backend sharing the catalog (a lease in the catalog
database, catalog_state.py), and the last run recorded there, so GET /maintenance (which
control BE-MAINT-001 reads) answers the same on every replica."""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from .catalog_state import CatalogState, Lease, LeaseHeld
from .config import Settings
from .errors import ApiError
from .lake import Lake

log = logging.getLogger("ducklake_backend.maintenance")

JOB = "maintenance"


class Maintenance:
    def __init__(self, lake: Lake, settings: Settings, state: CatalogState | None = None) -> None:
        self.lake, self.settings = lake, settings
        self.state = state or CatalogState(lake.catalog_db_cursor)
        self._lock = threading.Lock()    # this process: one run at a time, without asking

    def run(self) -> dict[str, Any]:
        """Run now; :class:`LeaseHeld` (409) when another replica is running it."""
        with self._lock, self._leased() as lease:
            return self._run(lease)

    def run_if_due(self) -> dict[str, Any] | None:
        """The schedule's run: none when another replica runs it, or ran it less than
        ``interval_s`` ago (the replicas' schedules then make one, not one each)."""
        with self._lock:
            try:
                with self._leased() as lease:
                    last = self.state.last_run(JOB)
                    if last is not None and last[1] < self.settings.maintenance_interval_s:
                        log.info("scheduled maintenance not due", extra={
                            "ctx_last_replica": last[0].get("replica"),
                            "ctx_last_started_s_ago": round(last[1], 1)})
                        return None
                    return self._run(lease)
            except LeaseHeld as exc:
                log.info("scheduled maintenance skipped", extra={"ctx_detail": exc.message})
                return None

    def every(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.maintenance_interval_s):
            try:
                self.run_if_due()
            except ApiError as exc:
                log.warning("scheduled maintenance failed", extra={"ctx_detail": exc.message})

    def status(self) -> dict[str, Any]:
        last = self.state.last_run(JOB)
        return {"interval_s": self.settings.maintenance_interval_s,
                "keep_s": self.settings.maintenance_keep_s, "last": last[0] if last else None}

    # ---- the run under the lease

    @contextmanager
    def _leased(self) -> Iterator[Lease]:
        """The lease, renewed every third of its time while the block runs, then released."""
        seconds = self.settings.maintenance_lease_s
        lease = self.state.acquire(JOB, self.settings.replica_name, seconds)
        done = threading.Event()

        def renew() -> None:
            while not done.wait(seconds / 3):
                try:
                    if not self.state.renew(lease, seconds):
                        log.warning("maintenance lease lost while running: another replica may "
                                    "run maintenance too", extra={"ctx_replica": lease.holder})
                        return
                except ApiError as exc:
                    log.warning("maintenance lease not renewed", extra={"ctx_detail": exc.message})

        renewer = threading.Thread(target=renew, daemon=True, name="maintenance-lease")
        renewer.start()
        try:
            yield lease
        finally:
            done.set()
            renewer.join()
            try:
                self.state.release(lease)
            except ApiError as exc:     # it runs out by itself
                log.warning("maintenance lease not released", extra={"ctx_detail": exc.message})

    def _run(self, lease: Lease) -> dict[str, Any]:
        started = {"started_at": lease.taken_at.isoformat(timespec="seconds"),
                   "replica": lease.holder}
        try:
            result = self.lake.maintain(self.settings.maintenance_keep_s)
        except ApiError as exc:
            self._record(lease, {"ok": False, **started, "error": exc.message})
            raise
        return self._record(lease, {"ok": True, **started, **result})

    def _record(self, lease: Lease, run: dict[str, Any]) -> dict[str, Any]:
        try:
            self.state.record_run(JOB, lease.holder, lease.taken_at, run)
        except ApiError as exc:     # the run stands; only GET /maintenance misses it
            log.warning("maintenance run not recorded", extra={"ctx_detail": exc.message})
        return run
