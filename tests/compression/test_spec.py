"""The spec rejects what cannot run, naming the field, before any work starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from layerfuse.compression.catalogue import STRATEGY_IDS
from layerfuse.compression.spec import MethodSpec, Target


def error_fields(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_defaults_follow_the_method():
    spec = MethodSpec()
    assert spec.strategy == "fusion-random-forest"
    assert spec.target.describe() == {"max_accuracy_drop": 0.01}
    assert spec.walked_strategies() == list(STRATEGY_IDS)
    assert (spec.options.max_length, spec.options.n_calib, spec.options.random_seeds) == (
        128,
        512,
        3,
    )
    kd = spec.distillation
    assert (kd.temperature, kd.alpha, kd.epochs, kd.epochs_per_layer) == (2.0, 0.5, 2, 1)
    assert [kd.max_epochs(k) for k in (1, 2, 3)] == [2, 3, 4]
    assert (kd.hidden_weight, kd.schedule, kd.compare) == (0.0, "one-shot", ["drop-top", "uniform"])


@pytest.mark.parametrize(
    "target", [{}, {"layers_to_remove": 2, "keep_layers": 3}, {"select": "worst"}]
)
def test_target_takes_exactly_one_form(target):
    with pytest.raises(ValidationError):
        Target(**target)


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"options": {"max_length": 513}}, "options.max_length"),
        ({"options": {"n_calib": 5000}}, "options.n_calib"),
        ({"distillation": {"epochs": 21}}, "distillation.epochs"),
        ({"strategy": "magic"}, "strategy"),
        ({"strategies": ["drop-top", "nope"]}, "strategies"),
        ({"options": {"unknown": 1}}, "options.unknown"),
        ({"distillation": {"hidden_weight": 101}}, "distillation.hidden_weight"),
        ({"distillation": {"attention_weight": -0.5}}, "distillation.attention_weight"),
        ({"distillation": {"hidden_distance": "l1"}}, "distillation.hidden_distance"),
        ({"distillation": {"schedule": "gradual"}}, "distillation.schedule"),
        ({"distillation": {"compare": ["nope"]}}, "distillation.compare"),
        (
            {
                "strategies": ["drop-top"],
                "strategy": "drop-top",
                "distillation": {"compare": ["weight-magnitude"]},
            },
            "distillation",
        ),
    ],
)
def test_out_of_bounds_fields_are_named(fields, where):
    with pytest.raises(ValidationError) as info:
        MethodSpec(**fields)
    assert where in error_fields(info.value)


def test_fusion_without_enough_single_signals_names_them():
    with pytest.raises(ValidationError) as info:
        MethodSpec(strategies=["drop-top", "gradient-norm"], strategy="fusion-linear-regression")
    message = str(info.value)
    assert "fusion-linear-regression" in message and "weight-magnitude" in message
    assert error_fields(info.value) == {"strategies"}
    ok = MethodSpec(
        strategies=["gradient-norm", "weight-magnitude"], strategy="fusion-random-forest"
    )
    assert ok.walked_strategies() == ["gradient-norm", "weight-magnitude", "fusion-random-forest"]


def test_the_spec_imports_without_torch():
    code = (
        "import sys, layerfuse.compression.spec, layerfuse.compression.datasets; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
