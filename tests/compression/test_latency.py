"""The side-by-side latency: interleaved order, paired ratios and the busy flag, on a controlled
clock (each fake model advances it by its cost times the machine's load at that moment)."""

from __future__ import annotations

import pytest

from layerfuse.compression.latency import (
    BUSY_SPREAD,
    MAX_ROUNDS,
    WARMUP,
    comparison,
    interleave,
    measure_pair,
    pair,
)


class FakeMachine:
    """A clock, and models whose calls cost ``cost × load`` on it; ``loads`` gives the load of
    each successive call (the last one repeats)."""

    def __init__(self, loads: list[float]):
        self.now = 0.0
        self.loads = loads
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def model(self, name: str, cost: float):
        def run() -> None:
            load = self.loads[min(len(self.calls), len(self.loads) - 1)]
            self.calls.append(name)
            self.now += cost * load

        return run


def models(machine: FakeMachine):
    """The original (10 ms at load 1) and the compressed model (5 ms) on ``machine``."""
    return machine.model("original", 0.010), machine.model("compressed", 0.005)


def measure(machine: FakeMachine, repeats: int = 8):
    return interleave(*models(machine), repeats, clock=machine.clock)


def test_models_alternate_which_goes_first_after_a_warm_up():
    machine = FakeMachine([1.0])
    measure(machine, repeats=4)
    warm_up = ["original", "compressed"] * WARMUP
    timed = ["original", "compressed", "compressed", "original"] * 2
    assert machine.calls == warm_up + timed


def test_steady_machine_gives_the_true_ratio_and_consistent_milliseconds():
    result = pair(*measure(FakeMachine([1.0])))
    assert result.original_ms == pytest.approx(10.0)
    assert result.compressed_ms == pytest.approx(5.0)
    assert result.speedup == pytest.approx(result.original_ms / result.compressed_ms)
    assert result.speedup == pytest.approx(2.0)
    assert result.spread == pytest.approx(0.0)
    assert result.repeats == 8


def test_load_that_rises_midway_never_makes_the_compressed_model_slower():
    # Timed one after the other, the compressed model would get the 4x load and read 20 ms
    # against the original's 10 ms; interleaved, every pair shares the load.
    warm = 2 * WARMUP
    machine = FakeMachine([1.0] * (warm + 8) + [4.0])
    result = pair(*measure(machine))
    assert result.speedup == pytest.approx(2.0)
    assert result.compressed_ms < result.original_ms
    busy = comparison({"batch_1": result, "batch_32": result}, threads=1)
    assert not busy.busy and busy.note is None


def test_load_changing_between_calls_flags_the_machine_busy():
    # The load jumps between the two calls of a pair, so paired ratios disagree widely.
    warm = 2 * WARMUP
    machine = FakeMachine([1.0] * warm + [1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 3.0] * 2)
    noisy = pair(*measure(machine))
    steady = pair(*measure(FakeMachine([1.0])))
    assert noisy.spread > BUSY_SPREAD
    result = comparison({"batch_1": steady, "batch_32": noisy}, threads=2)
    assert result.busy
    assert result.note and "busy" in result.note
    assert result.threads == 2
    assert not comparison({"batch_1": steady, "batch_32": steady}, threads=2).busy


def measured(machine: FakeMachine, repeats: int = 6):
    return measure_pair(*models(machine), repeats, clock=machine.clock)


def test_a_steady_round_is_not_repeated():
    machine = FakeMachine([1.0])
    result = measured(machine)
    assert result.repeats == 6 and len(machine.calls) == 2 * (WARMUP + 6)


def test_one_slow_call_is_measured_again_instead_of_calling_the_machine_busy():
    # One call in the first six pairs runs 3x slower (a daemon woke on its core); alone, six
    # ratios' quartiles span it. A second round shows the machine steady.
    warm = 2 * WARMUP
    machine = FakeMachine([1.0] * warm + [1.0, 1.0, 1.0, 3.0] + [1.0])
    assert pair(*measure(FakeMachine(machine.loads), repeats=6)).spread > BUSY_SPREAD
    result = measured(machine)
    assert result.repeats == 12 and result.spread <= BUSY_SPREAD
    assert result.speedup == pytest.approx(2.0)
    assert not comparison({"batch_1": result, "batch_32": result}, threads=2).busy


def test_a_load_that_keeps_changing_is_still_called_busy_after_the_extra_rounds():
    warm = 2 * WARMUP
    machine = FakeMachine([1.0] * warm + [1.0, 1.0, 3.0, 1.0, 1.0, 1.0, 1.0, 3.0] * 12)
    result = measured(machine, repeats=4)
    assert result.repeats == 4 * MAX_ROUNDS and result.spread > BUSY_SPREAD
    assert comparison({"batch_1": result, "batch_32": result}, threads=2).busy
