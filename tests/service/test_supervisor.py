"""The loop ``up`` and ``worker --gpus`` supervise their processes with, on stand-in children."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from layerfuse.commands.exit_codes import EXIT_FAILED, EXIT_OK
from layerfuse.commands.supervisor import supervise

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM, as a worker finishing its job would: only the grace period's SIGKILL stops it.
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)",
]


@pytest.fixture(autouse=True)
def own_signal_handlers():
    """supervise installs SIGTERM and SIGINT handlers: give pytest its own back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


def test_a_child_that_stops_stops_the_others_and_fails(capsys):
    seen = []
    code = supervise(
        [(SLEEPER, dict(os.environ)), ([sys.executable, "-c", "pass"], dict(os.environ))],
        failure="a child stopped",
        grace_s=15,
        started=lambda processes, stopping: seen.extend(processes),
    )
    assert code == EXIT_FAILED
    assert seen[0].returncode == -signal.SIGTERM  # stopped, not left running
    assert "error: a child stopped" in capsys.readouterr().err


def test_a_signal_stops_every_child_and_succeeds(capsys):
    seen = []

    def started(processes, stopping):
        seen.extend(processes)
        assert not stopping()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopping()

    code = supervise(
        [(SLEEPER, {**os.environ, "MARK": str(i)}) for i in range(2)],
        failure="unused",
        grace_s=15,
        started=started,
    )
    assert code == EXIT_OK
    assert [p.returncode for p in seen] == [-signal.SIGTERM] * 2
    assert capsys.readouterr().err == ""


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period():
    seen = []

    def started(processes, stopping):
        seen.extend(processes)
        time.sleep(1)  # time for the child to start ignoring SIGTERM
        os.kill(os.getpid(), signal.SIGTERM)

    start = time.monotonic()
    code = supervise([(STUBBORN, dict(os.environ))], failure="unused", grace_s=1, started=started)
    assert code == EXIT_OK
    assert seen[0].wait(timeout=5) == -signal.SIGKILL
    assert time.monotonic() - start < 10
