"""Stage 6, ``selecting``: apply the job's target to the walked curves (validation only)."""

from __future__ import annotations

from dataclasses import dataclass
from statistics import fmean

from ..catalogue import RANDOM
from ..progress import ProgressTracker
from ..report import RANDOM_SEED_PREFIX, CurvePoint, Metrics, SelectionReport, StrategyReport
from ..selection import Curve, Selection, select
from ..sweep import StateMetrics, Trajectory
from .evaluating_baseline import Baseline
from .fusing import Fused
from .preparing import Prepared


@dataclass(frozen=True)
class Selected:
    """The chosen strategy and depth before recovery, every strategy's curve (``random`` as its
    mean too) and the real trajectories' curves, from which recovery may choose another depth;
    ``state_metrics`` is the sweep's metrics of every removal it evaluated, probe included."""

    selection: Selection
    report: SelectionReport
    strategies: dict[str, StrategyReport]
    curves: dict[str, Curve]
    baseline_accuracy: float
    state_metrics: StateMetrics


def select_depth(
    prepared: Prepared, baseline: Baseline, fused: Fused, tracker: ProgressTracker
) -> Selected:
    spec = prepared.spec
    curves = {sid: fused.sweep.curve(t) for sid, t in fused.trajectories.items()}
    selection = select(curves, spec.strategy, spec.target, prepared.num_layers, baseline.accuracy)
    note = "" if selection.met_target else " (no depth met the target before recovery)"
    tracker.event(
        "message",
        f"selected {selection.strategy}: remove layers {selection.removed_layers} "
        f"(k={selection.layers_removed}), validation accuracy "
        f"{selection.validation_accuracy:.3f}{note}",
        strategy=selection.strategy,
        removed_layers=selection.removed_layers,
        met_target=selection.met_target,
    )
    return Selected(
        selection,
        selection.to_report(spec.target),
        strategy_reports(fused.trajectories, curves),
        curves,
        baseline.accuracy,
        fused.sweep.metrics,
    )


def strategy_reports(
    trajectories: dict[str, Trajectory], curves: dict[str, Curve]
) -> dict[str, StrategyReport]:
    """Each trajectory's removal order and curve; ``random`` (the seeds' mean) before its seeds."""
    seeds = [sid for sid in curves if sid.startswith(RANDOM_SEED_PREFIX)]
    report: dict[str, StrategyReport] = {}
    for sid, trajectory in trajectories.items():
        if seeds and sid == seeds[0]:
            report[RANDOM] = StrategyReport(
                removal_order=[], seeds=seeds, curve=_mean_curve([curves[s] for s in seeds])
            )
        report[sid] = StrategyReport(removal_order=trajectory.removal_order, curve=curves[sid])
    return report


def _mean_curve(curves: list[Curve]) -> Curve:
    """The seeds' mean at each depth (validation and test metrics averaged key by key)."""
    return [
        CurvePoint(
            layers_removed=points[0].layers_removed,
            removed=[],
            validation=_mean([p.validation for p in points]),
            test=None if points[0].test is None else _mean([p.test for p in points]),
        )
        for points in zip(*curves, strict=True)
    ]


def _mean(metrics: list[Metrics | None]) -> Metrics:
    present = [m for m in metrics if m is not None]
    return {
        "accuracy": fmean(m["accuracy"] for m in present),
        "macro_f1": fmean(m["macro_f1"] for m in present),
        "loss": fmean(m["loss"] for m in present),
    }
