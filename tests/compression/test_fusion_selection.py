"""Fusion recovers a known relation; selection applies every target form."""

from __future__ import annotations

import numpy as np
import pytest

from layerfuse.compression.catalogue import FUSION_IDS, SIGNAL_IDS, STRATEGY_IDS
from layerfuse.compression.errors import InvalidInputError
from layerfuse.compression.fusion import FEATURES, FusionData, fit_fusion, state_features
from layerfuse.compression.report import CurvePoint, Decision
from layerfuse.compression.selection import select
from layerfuse.compression.spec import Options, Target
from layerfuse.compression.strategies import BUILDERS, EMPTY, build_strategies


def test_fusion_recovers_a_known_linear_relation():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, len(FEATURES)))
    fisher, entropy = FEATURES.index("gradient-fisher"), FEATURES.index("attention-entropy")
    y = 0.8 + 0.05 * x[:, fisher] - 0.02 * x[:, entropy] + rng.normal(scale=0.002, size=400)
    models = fit_fusion(FusionData(x, y), seed=0)
    explained = models.explain({})
    coefficients = explained.linear_regression.coefficients
    # Standardized features with unit variance: coefficients equal the true slopes.
    assert coefficients["gradient-fisher"] == pytest.approx(0.05, abs=0.005)
    assert coefficients["attention-entropy"] == pytest.approx(-0.02, abs=0.005)
    others = [
        abs(v) for k, v in coefficients.items() if k not in ("gradient-fisher", "attention-entropy")
    ]
    assert max(others) < 0.003
    importances = explained.random_forest.feature_importances
    top_two = sorted(importances, key=importances.get, reverse=True)[:2]
    assert top_two == ["gradient-fisher", "attention-entropy"]
    assert sum(importances.values()) == pytest.approx(1.0)
    assert explained.rows == 400


class FakeSweep:
    num_layers = 4

    def __init__(self, signals):
        self._signals = signals

    def state_signals(self, state):
        return self._signals


def test_state_features_zscore_each_signal_across_candidates():
    signals = {layer: {sid: float(layer) for sid in SIGNAL_IDS} for layer in range(4)}
    signals[2]["weight-magnitude"] = signals[1]["weight-magnitude"] = 5.0
    for layer in signals.values():
        layer["attention-weight"] = 0.3  # no spread: the feature is 0 for every candidate
    features = state_features(EMPTY, FakeSweep(signals))
    column = np.array([features[c][SIGNAL_IDS.index("gradient-norm")] for c in range(4)])
    assert column.mean() == pytest.approx(0.0, abs=1e-12)
    assert column.std() == pytest.approx(1.0)
    assert [features[c][SIGNAL_IDS.index("attention-weight")] for c in range(4)] == [0.0] * 4
    assert [features[c][-2] for c in range(4)] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert {features[c][-1] for c in range(4)} == {0.0}


def curve(accuracies: list[float], order: list[int]) -> list[CurvePoint]:
    return [
        CurvePoint(
            layers_removed=k,
            removed=sorted(order[:k]),
            validation={"accuracy": a, "macro_f1": a, "loss": 1 - a},
            test=None,
        )
        for k, a in enumerate(accuracies)
    ]


CURVES = {
    "drop-top": curve([0.90, 0.89, 0.85, 0.70], [3, 2, 1]),
    "weight-magnitude": curve([0.90, 0.90, 0.895, 0.80], [1, 3, 0]),
    "random/seed-0": curve([0.90, 0.91, 0.60, 0.50], [0, 2, 1]),
}


@pytest.mark.parametrize(
    ("strategy", "target", "expected"),
    [
        ("drop-top", Target(layers_to_remove=2), ("drop-top", [2, 3])),
        ("drop-top", Target(keep_layers=3), ("drop-top", [3])),
        ("weight-magnitude", Target(max_accuracy_drop=0.01), ("weight-magnitude", [1, 3])),
        ("drop-top", Target(max_accuracy_drop=0.01), ("drop-top", [3])),
        ("auto", Target(max_accuracy_drop=0.01), ("weight-magnitude", [1, 3])),
        ("auto", Target(layers_to_remove=1), ("random/seed-0", [0])),
        ("auto", Target(select="best"), ("random/seed-0", [0])),
        ("weight-magnitude", Target(select="best"), ("weight-magnitude", [1])),
        ("random", Target(layers_to_remove=1), ("random/seed-0", [0])),
    ],
)
def test_selection_applies_each_target(strategy, target, expected):
    chosen = select(CURVES, strategy, target, num_layers=4, baseline_accuracy=0.90)
    assert (chosen.strategy, chosen.removed_layers) == expected
    assert chosen.kept_layers == [i for i in range(4) if i not in expected[1]]
    assert chosen.met_target


def test_unreachable_accuracy_target_keeps_the_model_whole():
    chosen = select(
        CURVES, "drop-top", Target(max_accuracy_drop=0.0), num_layers=4, baseline_accuracy=0.95
    )
    assert chosen.layers_removed == 0 and not chosen.met_target


def test_fixed_depth_beyond_the_sweep_is_refused():
    with pytest.raises(InvalidInputError) as info:
        select(CURVES, "drop-top", Target(keep_layers=0 + 4), num_layers=4, baseline_accuracy=0.9)
    assert info.value.param == "target.keep_layers"


def test_select_best_prefers_the_deeper_of_equal_accuracies():
    curves = {"drop-top": curve([0.9, 0.88, 0.88, 0.5], [3, 2, 1])}
    assert select(curves, "drop-top", Target(select="best"), 4, 0.9).layers_removed == 2


class ConstantModel:
    """A fitted model that prefers higher layer indices, whatever the signals say."""

    def predict(self, x):
        return x[:, -2]  # relative depth


class MeasuredSweep(FakeSweep):
    def __init__(self, signals, metrics):
        super().__init__(signals)
        self.metrics = metrics

    def state_metrics(self, state):
        return self.metrics[state]

    def evaluated(self, state):
        return state in self.metrics


def metrics_of(accuracy: float) -> dict:
    return {"validation": {"accuracy": accuracy, "macro_f1": accuracy, "loss": 0.5}, "test": None}


def test_a_measured_removal_outranks_the_models_prediction():
    from layerfuse.compression.fusion import FusionStrategy

    signals = {layer: {sid: 1.0 for sid in SIGNAL_IDS} for layer in range(4)}
    # The probe measured every single-layer removal: removing layer 1 hurts least.
    metrics = {frozenset({c}): metrics_of(a) for c, a in enumerate([0.5, 0.9, 0.6, 0.7])}
    sweep = MeasuredSweep(signals, metrics)
    measured = FusionStrategy("fusion-random-forest", ConstantModel(), use_measured=True)
    assert measured.choose(EMPTY, sweep) == 1
    assert measured.decisions == [
        Decision(layers_removed=1, layer=1, decided_by="measured", measured_candidates=[0, 1, 2, 3])
    ]
    predicted = FusionStrategy("fusion-random-forest", ConstantModel(), use_measured=False)
    assert predicted.choose(EMPTY, sweep) == 3
    assert predicted.decisions[0].decided_by == "model"
    # Where nothing is measured the model decides, with measured and predicted scores compared.
    sweep.metrics = {frozenset({1}): metrics_of(0.2)}
    assert measured.choose(EMPTY, sweep) == 3
    assert measured.decisions[-1].decided_by == "model"


def test_every_strategy_of_the_catalogue_is_built_from_the_registry_or_by_fusion():
    assert set(BUILDERS) | set(FUSION_IDS) == set(STRATEGY_IDS)
    assert not set(BUILDERS) & set(FUSION_IDS)
    built = build_strategies(STRATEGY_IDS, Options(random_seeds=2))
    ids = [s.id for s in built]
    # In catalogue order, random expanded to its seeds, fusion left to the fusion stage.
    assert ids == [
        *SIGNAL_IDS,
        "random/seed-0",
        "random/seed-1",
        "drop-top",
        "block-influence",
    ]
