"""Progress reporting and cooperative cancellation, injected into the library.

The library never knows who is listening: the CLI draws a progress bar, the worker writes events
to the job store. Both implement :class:`Reporter`; :class:`NullReporter` ignores everything.
Cancellation works the same way: the library polls a :class:`CancelToken` between batches and
steps and raises :class:`~layerfuse.compression.errors.CompressionCancelled` when it fires.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from .errors import CompressionCancelled

Stage = Literal[
    "preparing",
    "fine_tuning_teacher",
    "evaluating_baseline",
    "sweeping",
    "fusing",
    "selecting",
    "distilling",
    "exporting",
]
STAGES: tuple[Stage, ...] = (
    "preparing",
    "fine_tuning_teacher",
    "evaluating_baseline",
    "sweeping",
    "fusing",
    "selecting",
    "distilling",
    "exporting",
)
EventType = Literal["status", "stage", "progress", "metrics", "message", "artifact"]
Level = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class Progress:
    stage: Stage
    stage_fraction: float  # 0..1 within the stage
    fraction: float  # 0..1 over the whole job
    eta_seconds: float | None


class Reporter(Protocol):
    """Receives what a run is doing. Implementations must be cheap: they are called per batch."""

    def stage(self, stage: Stage) -> None: ...

    def progress(self, progress: Progress) -> None: ...

    def event(
        self,
        type: EventType,
        message: str,
        data: dict[str, Any] | None = None,
        level: Level = "info",
    ) -> None: ...


class NullReporter:
    def stage(self, stage: Stage) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def event(
        self,
        type: EventType,
        message: str,
        data: dict[str, Any] | None = None,
        level: Level = "info",
    ) -> None:
        pass


class CancelToken(Protocol):
    def cancelled(self) -> bool: ...


class NeverCancel:
    def cancelled(self) -> bool:
        return False


class ProgressTracker:
    """Turns per-stage fractions into a job-wide fraction and an ETA, and checks cancellation.

    Stage weights are rough shares of wall time on a 6-layer model; they only shape the bar.
    """

    WEIGHTS: ClassVar[dict[Stage, float]] = {
        "preparing": 0.03,
        "fine_tuning_teacher": 0.25,
        "evaluating_baseline": 0.02,
        "sweeping": 0.40,
        "fusing": 0.08,
        "selecting": 0.01,
        "distilling": 0.18,
        "exporting": 0.03,
    }

    def __init__(self, reporter: Reporter, cancel: CancelToken, skipped: set[Stage] | None = None):
        self.reporter = reporter
        self.cancel = cancel
        self._skipped = skipped or set()
        self._stage: Stage = "preparing"
        self._started = time.monotonic()
        self._fraction = 0.0
        self._last_emit = 0.0

    def skip(self, stage: Stage) -> None:
        self._skipped.add(stage)

    def _weights(self) -> dict[Stage, float]:
        live = {s: w for s, w in self.WEIGHTS.items() if s not in self._skipped}
        total = sum(live.values())
        return {s: w / total for s, w in live.items()}

    def enter(self, stage: Stage) -> None:
        self.check()
        self._stage = stage
        self.reporter.stage(stage)
        self.update(0.0, force=True)

    def update(self, stage_fraction: float, *, force: bool = False) -> None:
        """Record progress inside the current stage; also the cancellation point between batches."""
        self.check()
        stage_fraction = min(max(stage_fraction, 0.0), 1.0)
        weights = self._weights()
        done = sum(w for s, w in weights.items() if STAGES.index(s) < STAGES.index(self._stage))
        fraction = min(done + weights.get(self._stage, 0.0) * stage_fraction, 1.0)
        self._fraction = max(self._fraction, fraction)
        now = time.monotonic()
        # Throttled: a reporter may write to a database, and batches can be fast.
        if not force and now - self._last_emit < 0.5:
            return
        self._last_emit = now
        elapsed = now - self._started
        eta = elapsed * (1 - self._fraction) / self._fraction if self._fraction > 0.02 else None
        self.reporter.progress(Progress(self._stage, stage_fraction, self._fraction, eta))

    def check(self) -> None:
        if self.cancel.cancelled():
            raise CompressionCancelled()

    def event(self, type: EventType, message: str, **data: Any) -> None:
        """Pass an event to the reporter, with ``data`` when there is any."""
        self.reporter.event(type, message, data or None)

    def warn(self, message: str, **data: Any) -> None:
        """A warning the run goes on after (a result the caller should look at)."""
        self.reporter.event("message", message, data or None, level="warning")


class StageClock:
    """Enters each stage on the tracker and times it, for the report's ``timings``."""

    def __init__(self, tracker: ProgressTracker):
        self.tracker = tracker
        self._started = time.perf_counter()
        self._stage: Stage | None = None
        self._stage_started = self._started
        self._timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        self.tracker.enter(stage)
        self._stage, self._stage_started = stage, time.perf_counter()
        yield
        self._timings.setdefault(stage, self._elapsed(self._stage_started))
        self._stage = None

    def timings(self) -> dict[str, float]:
        """Seconds per stage so far, the running stage and ``total`` included.

        The report is written before its own stage ends; those figures are the ones kept.
        """
        if self._stage is not None:
            self._timings[self._stage] = self._elapsed(self._stage_started)
        self._timings["total"] = self._elapsed(self._started)
        return dict(self._timings)

    @staticmethod
    def _elapsed(since: float) -> float:
        return round(time.perf_counter() - since, 3)
