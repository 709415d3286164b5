"""A job's memory budget, enforced twice: softly between batches and hard at allocation.

A worker runs one job at a time in its own process. While a job runs, :class:`MemoryGuard`

- samples the process's resident memory every ``interval_s``; once the job has grown it past its
  budget, :meth:`MemoryGuard.exceeded` turns true, the cancel token reports cancellation and the
  library stops at its next batch, so the job fails cleanly (``job_memory_limit_exceeded``);
- lowers the process's ``RLIMIT_DATA`` (private writable memory: what malloc, numpy and torch's
  CPU allocator take) to what it held at the start plus twice the budget, so one runaway
  allocation fails with ``MemoryError`` instead of growing the machine into the kernel's OOM
  killer, which would starve the heartbeat and get the job retried on the next worker.

The budget comes from the model's size
(:meth:`layerfuse.service.settings.Settings.job_memory_budget`).
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE")
# Virtual private memory runs ahead of resident memory (allocator arenas, thread stacks).
HARD_LIMIT_FACTOR = 2


def resident_bytes() -> int:
    """This process's resident set size."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * _PAGE


def data_bytes() -> int:
    """This process's private writable memory (``VmData``), which ``RLIMIT_DATA`` bounds."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def weight_bytes(model_dir: Path) -> int:
    """The bytes of a model directory's safetensors files."""
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors") if p.is_file())


def is_out_of_memory(exc: BaseException) -> bool:
    """An allocation refused: Python's and numpy's ``MemoryError``, or torch's allocator error."""
    return isinstance(exc, MemoryError) or (
        isinstance(exc, RuntimeError) and "can't allocate memory" in str(exc)
    )


class MemoryGuard:
    """Enforce ``budget`` bytes of growth over what the process holds when entered."""

    def __init__(self, budget: int, *, interval_s: float = 0.2):
        self.budget = budget
        self.interval_s = interval_s
        self.peak_growth = 0
        self._tripped = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="memory-guard", daemon=True)
        self._previous: tuple[int, int] | None = None

    def exceeded(self) -> bool:
        return self._tripped.is_set()

    def __enter__(self) -> MemoryGuard:
        self._start = resident_bytes()
        soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
        limit = data_bytes() + HARD_LIMIT_FACTOR * self.budget
        if hard == resource.RLIM_INFINITY or limit < hard:
            self._previous = (soft, hard)
            resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self._previous is not None:
            resource.setrlimit(resource.RLIMIT_DATA, self._previous)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            growth = resident_bytes() - self._start
            self.peak_growth = max(self.peak_growth, growth)
            if growth > self.budget:
                self._tripped.set()
                return
