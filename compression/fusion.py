"""Strategic fusion: learn from the sweep which signals predict the accuracy a removal leaves.

Rows are (state, candidate) removals the sweep evaluated; features are the candidate's 12 signals
z-scored across the state's candidates plus its relative depth and how much is already removed;
the target is validation accuracy after the removal, minus a tie-breaking sliver of the loss.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .catalogue import FUSION_FOREST, FUSION_LINEAR, SIGNAL_IDS
from .report import Decision, ForestFit, FusionReport, LinearFit
from .strategies import Measurements, State, pick
from .sweep import Step

FEATURES: list[str] = [*SIGNAL_IDS, "relative_depth", "fraction_removed"]
# Accuracy moves in steps of 1/n_validation (≥ 1e-3 for up to 1,000 examples); a loss of up to 10
# times this weight stays below one step, so it only orders removals of equal accuracy.
LOSS_TIE_WEIGHT = 1e-4


def state_features(state: State, sweep: Measurements) -> dict[int, list[float]]:
    """The feature vector of every candidate (remaining layer) of ``state``."""
    signals = sweep.state_signals(state)
    candidates = sorted(signals)
    columns = []
    for sid in SIGNAL_IDS:
        values = np.array([signals[c][sid] for c in candidates], dtype=np.float64)
        spread = values.std()
        columns.append((values - values.mean()) / spread if spread > 0 else np.zeros_like(values))
    depth_scale = max(sweep.num_layers - 1, 1)
    fraction = len(state) / sweep.num_layers
    return {
        c: [float(col[i]) for col in columns] + [c / depth_scale, fraction]
        for i, c in enumerate(candidates)
    }


def target(sweep: Measurements, after: State) -> float:
    validation = sweep.state_metrics(after)["validation"]
    assert validation is not None
    return validation["accuracy"] - LOSS_TIE_WEIGHT * validation["loss"]


@dataclass
class FusionData:
    x: np.ndarray  # (rows, features)
    y: np.ndarray  # (rows,)


def build_rows(steps: Iterable[Step], sweep: Measurements) -> FusionData:
    """One row per distinct (state, removed layer) among ``steps``."""
    seen: dict[tuple[State, int], Step] = {}
    for step in steps:
        seen.setdefault((step.state, step.layer), step)
    x, y = [], []
    for (state, layer), step in seen.items():
        x.append(state_features(state, sweep)[layer])
        y.append(target(sweep, step.after))
    return FusionData(np.array(x), np.array(y))


@dataclass
class FusionStrategy:
    """Removes the layer whose removal leaves the most validation accuracy, as predicted.

    A removal the sweep has already evaluated (every k = 0 removal, thanks to the probe, and any
    state another trajectory reached) is scored by its measurement instead of the prediction
    when ``use_measured`` is on: a forest fitted on a few dozen rows mostly learns how accuracy
    falls with depth and can rank a state's candidates against the very rows it was fitted on.
    ``decisions`` records, per step, whether a measurement or the model decided.
    """

    id: str
    regressor: Any
    use_measured: bool
    decisions: list[Decision] = field(default_factory=list)

    def start(self) -> None:
        self.decisions = []

    def choose(self, state: State, sweep: Measurements) -> int:
        features = state_features(state, sweep)
        layers = sorted(features)
        predicted = self.regressor.predict(np.array([features[c] for c in layers]))
        scores = {c: float(v) for c, v in zip(layers, predicted, strict=True)}
        measured = [c for c in layers if self.use_measured and sweep.evaluated(state | {c})]
        for c in measured:
            scores[c] = target(sweep, state | {c})
        layer = pick(scores, highest=True)
        self.decisions.append(
            Decision(
                layers_removed=len(state) + 1,
                layer=layer,
                decided_by="measured" if layer in measured else "model",
                measured_candidates=measured,
            )
        )
        return layer


@dataclass
class FusionModels:
    linear: Any
    forest: RandomForestRegressor
    rows: int

    def strategies(self, use_measured: bool) -> list[FusionStrategy]:
        return [
            FusionStrategy(FUSION_LINEAR, self.linear, use_measured),
            FusionStrategy(FUSION_FOREST, self.forest, use_measured),
        ]

    def explain(self, decisions: dict[str, list[Decision]]) -> FusionReport:
        """The report's ``fusion``: coefficients, importances and the walks' ``decisions``."""
        linear = self.linear[-1]
        importances = self.forest.feature_importances_
        return FusionReport(
            rows=self.rows,
            features=FEATURES,
            linear_regression=LinearFit(
                coefficients={f: float(c) for f, c in zip(FEATURES, linear.coef_, strict=True)},
                intercept=float(linear.intercept_),
            ),
            random_forest=ForestFit(
                feature_importances={
                    f: float(v) for f, v in zip(FEATURES, importances, strict=True)
                }
            ),
            decisions=decisions,
        )


def fit_fusion(data: FusionData, seed: int) -> FusionModels:
    """``LinearRegression`` on standardized features and the forest of method.md."""
    linear = make_pipeline(StandardScaler(), LinearRegression()).fit(data.x, data.y)
    forest = RandomForestRegressor(
        n_estimators=200, min_samples_leaf=2, random_state=seed, n_jobs=-1
    ).fit(data.x, data.y)
    return FusionModels(linear, forest, len(data.y))
