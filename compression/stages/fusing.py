"""Stage 5, ``fusing``: fit the fusion models on the sweep's rows, then walk their trajectories."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import FUSION_IDS
from ..fusion import build_rows, fit_fusion
from ..progress import ProgressTracker
from ..report import ForestFit, FusionReport, LinearFit
from ..sweep import Sweep, Trajectory
from .preparing import Prepared
from .sweeping import Swept, WalkProgress

# The report's ``fusion`` when the job walks no fusion strategy.
NO_FUSION = FusionReport(
    rows=0,
    features=[],
    linear_regression=LinearFit(coefficients={}),
    random_forest=ForestFit(feature_importances={}),
)


@dataclass(frozen=True)
class Fused:
    """Every trajectory of the job (the sweep's, then fusion's) and what fusion learned."""

    swept: Swept
    trajectories: dict[str, Trajectory]
    report: FusionReport

    @property
    def sweep(self) -> Sweep:
        return self.swept.sweep


def fuse(prepared: Prepared, swept: Swept, tracker: ProgressTracker) -> Fused:
    """Fit fusion on every step walked so far (the probe's included) and walk the fusion
    strategies the spec asks for; without any, hand the sweep's trajectories on."""
    wanted = [sid for sid in prepared.spec.walked_strategies() if sid in FUSION_IDS]
    if not wanted:
        return Fused(swept, dict(swept.trajectories), NO_FUSION)
    steps = swept.probe + [s for t in swept.trajectories.values() for s in t.steps]
    models = fit_fusion(build_rows(steps, swept.sweep), prepared.seed)
    progress = WalkProgress(tracker, swept.sweep, len(wanted) * prepared.max_removed)
    trajectories = dict(swept.trajectories)
    decisions = {}
    for strategy in models.strategies(prepared.spec.options.fusion_uses_measured):
        if strategy.id in wanted:
            trajectories[strategy.id] = progress.walk(strategy, prepared.max_removed)
            decisions[strategy.id] = strategy.decisions
    return Fused(swept, trajectories, models.explain(decisions))
