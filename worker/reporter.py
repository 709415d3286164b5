"""What a running job writes to the store: progress and events, heartbeats, and cancellation.

- :class:`StoreReporter` is the library's reporter: stages and progress go to the job row, and
  everything worth showing becomes an event (progress events at most once a second).
- :class:`StoreCancelToken` is the library's cancel token: it fires when the job is being
  cancelled or when this attempt no longer owns the job. It reads the store at most once a second.
- :class:`Heartbeat` refreshes the job's heartbeat from a thread while the library works, so the
  reconciler can tell a slow job from a dead worker.

Store errors never stop a job here: a missed progress write is logged and the run goes on.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import PurePath
from typing import Any

from layerfuse.compression.progress import Progress
from layerfuse.service.store import CANCELLED, CANCELLING, Database
from layerfuse.service.store import jobs as job_store
from layerfuse.service.store.jobs import Claim

log = logging.getLogger(__name__)

PROGRESS_EVENT_INTERVAL_S = 1.0


def json_safe(data: dict[str, Any] | None) -> dict[str, Any] | None:
    """``data`` with numpy scalars as numbers and paths as bare names (no server paths)."""
    if data is None:
        return None

    def coerce(value: Any) -> Any:
        if isinstance(value, PurePath):
            return value.name
        if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
            return value.tolist()
        return str(value)

    result: dict[str, Any] = json.loads(json.dumps(data, default=coerce))
    return result


class StoreReporter:
    def __init__(self, db: Database, claim: Claim):
        self.db = db
        self.claim = claim
        self.current_stage: str | None = None
        self._last_progress_event = 0.0

    def stage(self, stage: str) -> None:
        self.current_stage = stage
        self._write(
            lambda s: (
                job_store.set_stage(s, self.claim, stage),
                job_store.add_event(
                    s,
                    self.claim.job_id,
                    type="stage",
                    stage=stage,
                    message=f"stage: {stage.replace('_', ' ')}",
                    data={"stage": stage},
                ),
            )
        )

    def progress(self, progress: Progress) -> None:
        now = time.monotonic()
        emit = now - self._last_progress_event >= PROGRESS_EVENT_INTERVAL_S
        if emit:
            self._last_progress_event = now
        data = {
            "fraction": round(progress.fraction, 4),
            "stage_fraction": round(progress.stage_fraction, 4),
            "eta_seconds": None if progress.eta_seconds is None else round(progress.eta_seconds),
        }

        def write(session: Any) -> None:
            job_store.set_progress(
                session,
                self.claim,
                fraction=progress.fraction,
                stage_fraction=progress.stage_fraction,
                eta_seconds=progress.eta_seconds,
            )
            if emit:
                job_store.add_event(
                    session,
                    self.claim.job_id,
                    type="progress",
                    stage=progress.stage,
                    message=f"{progress.stage.replace('_', ' ')}: {progress.fraction:.0%} overall",
                    data=data,
                )

        self._write(write)

    def event(
        self,
        type: str,
        message: str,
        data: dict[str, Any] | None = None,
        level: str = "info",
    ) -> None:
        self._write(
            lambda s: job_store.add_event(
                s,
                self.claim.job_id,
                type=type,
                level=level,
                stage=self.current_stage,
                message=message,
                data=json_safe(data),
            )
        )

    def _write(self, action: Any) -> None:
        try:
            with self.db.session() as session:
                action(session)
        except Exception:
            log.warning("job %s: could not record progress", self.claim.job_id, exc_info=True)


class StoreCancelToken:
    """Fires when the job is cancelling (or cancelled) or this attempt lost it."""

    def __init__(self, db: Database, claim: Claim, *, ttl_s: float = 1.0):
        self.db = db
        self.claim = claim
        self.ttl_s = ttl_s
        self._checked = -float("inf")
        self._cancelled = False
        self.lost = False

    def cancelled(self) -> bool:
        if self._cancelled or time.monotonic() - self._checked < self.ttl_s:
            return self._cancelled
        self._checked = time.monotonic()
        try:
            with self.db.session() as session:
                status = job_store.claim_state(session, self.claim)
        except Exception:
            log.warning("job %s: could not read its status", self.claim.job_id, exc_info=True)
            return self._cancelled
        self.lost = status is None
        self._cancelled = self.lost or status in (CANCELLING, CANCELLED)
        return self._cancelled


class Heartbeat:
    """A daemon thread refreshing the job's heartbeat every ``interval_s`` while in its block."""

    def __init__(self, db: Database, claim: Claim, interval_s: float):
        self.db = db
        self.claim = claim
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-{claim.job_id}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with self.db.session() as session:
                    if not job_store.heartbeat(session, self.claim):
                        log.warning(
                            "job %s: this attempt no longer owns the job", self.claim.job_id
                        )
                        return
            except Exception:
                log.warning("job %s: heartbeat failed", self.claim.job_id, exc_info=True)
