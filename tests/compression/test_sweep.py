"""The per-state caches: a state reached twice is measured once, and equals a fresh measurement."""

from __future__ import annotations

import pytest

from layerfuse.compression.evaluation import EvalSet
from layerfuse.compression.models import pruned_copy
from layerfuse.compression.signals import measure_state
from layerfuse.compression.strategies import DropTopStrategy, SignalStrategy
from layerfuse.compression.sweep import Sweep
from tests.compression.helpers import FP32, encoded_rows, load_eager


def make_sweep(path):
    model, tokenizer, adapter = load_eager(path)
    calibration = encoded_rows(tokenizer, n=32, seed=1).sorted_batches(16)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=2), 8)
    return Sweep(model, adapter, calibration, validation, None, FP32, seed=0), model, adapter


def test_cached_state_equals_a_recomputation_on_a_pruned_copy(tiny_classifier):
    sweep, model, adapter = make_sweep(tiny_classifier)
    state = frozenset({1, 3})
    cached_signals = sweep.state_signals(state)
    cached_metrics = sweep.state_metrics(state)
    copy = pruned_copy(model, adapter, [0, 2])
    fresh = measure_state(copy, adapter, [0, 2], sweep.calibration, FP32, seed=0)
    assert fresh == cached_signals
    recomputed = sweep.validation.evaluate(copy, FP32)
    assert recomputed["accuracy"] == cached_metrics["validation"]["accuracy"]
    assert recomputed["macro_f1"] == cached_metrics["validation"]["macro_f1"]
    # sdpa kernels may sum in another order for another tensor layout: last-bit differences.
    assert recomputed["loss"] == pytest.approx(cached_metrics["validation"]["loss"], rel=1e-6)
    # Asking again is answered from the cache, with the very same values.
    measured = sweep.measurements
    assert sweep.state_signals(state) is cached_signals
    assert sweep.measurements == measured


def test_trajectories_share_states_instead_of_measuring_them_again(tiny_classifier):
    sweep, _, _ = make_sweep(tiny_classifier)
    first = sweep.walk(DropTopStrategy(), max_removed=3)
    after_first = sweep.measurements
    assert first.removal_order == [3, 2, 1]
    assert after_first == 3 + 4  # signals of k = 0, 1, 2; metrics of k = 0..3
    again = sweep.walk(DropTopStrategy(), max_removed=3)
    assert again.removal_order == first.removal_order
    assert sweep.measurements == after_first
    sweep.walk(SignalStrategy("weight-magnitude"), max_removed=3)
    assert sweep.measurements < 2 * after_first  # at least the full model's state is shared
