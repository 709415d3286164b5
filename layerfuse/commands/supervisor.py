"""Child processes supervised until a signal or one of them stops: ``up`` (the API, a worker and
the webhook worker) and ``worker --gpus`` (one worker per GPU) share this loop."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from .exit_codes import EXIT_FAILED, EXIT_OK

Child = tuple[list[str], dict[str, str]]  # a command and its environment
Processes = list[subprocess.Popen[bytes]]


def _nothing(processes: Processes, stopping: Callable[[], bool]) -> None:
    pass


def supervise(
    children: list[Child],
    *,
    failure: str,
    grace_s: float | None,
    started: Callable[[Processes, Callable[[], bool]], None] = _nothing,
) -> int:
    """Run ``children`` until Ctrl-C, SIGTERM or one of them stops; then stop them all.

    Stopping sends each SIGTERM (a worker's warm shutdown lets its running job finish), then
    SIGKILL to one still running after ``grace_s`` seconds (None: wait for it however long).

    Args:
        failure: printed as the error when a child stopped on its own.
        started: called once all run, with them and whether a stop was asked (``up`` waits
            there until the API answers and prints where it is).

    Returns:
        EXIT_OK when stopped by a signal, EXIT_FAILED when a child stopped first.
    """
    processes = [subprocess.Popen(command, env=env) for command, env in children]
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        started(processes, lambda: stopping)
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.5)
        failed = not stopping
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                process.kill()
    if failed:
        print(f"error: {failure}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
