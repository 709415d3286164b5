"""Stage 4, ``sweeping``: walk every strategy's trajectory through the shared per-state caches."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..catalogue import FUSION_IDS
from ..checkpoints import SWEEP_CHECKPOINT
from ..progress import ProgressTracker
from ..report import ProbePoint, SignalRow
from ..strategies import EMPTY, Strategy
from ..sweep import Step, Sweep, Trajectory
from .evaluating_baseline import Baseline
from .fine_tuning_teacher import Teacher
from .preparing import Prepared


@dataclass(frozen=True)
class Swept:
    """The sweep's caches, the leave-one-out probe's steps and every trajectory walked."""

    sweep: Sweep
    probe: list[Step]
    trajectories: dict[str, Trajectory]

    def probe_report(self) -> list[ProbePoint]:
        """The metrics of every single-layer removal the probe evaluated (none without it)."""
        return [
            ProbePoint.model_validate({"layer": step.layer, **self.sweep.metrics[step.after]})
            for step in self.probe
        ]

    def signals_report(self) -> list[SignalRow]:
        """Every measured (state, layer), states by depth then by their layers."""
        signals = self.sweep.signals
        return [
            SignalRow.model_validate({"removed": sorted(state), "layer": layer, **values})
            for state in sorted(signals, key=lambda s: (len(s), sorted(s)))
            for layer, values in sorted(signals[state].items())
        ]


class WalkProgress:
    """A stage's progress counted in walk steps (one state measured each), plus step events."""

    def __init__(self, tracker: ProgressTracker, sweep: Sweep, steps: int):
        self.tracker = tracker
        self.sweep = sweep
        self.done = 0
        self.total = max(steps, 1)

    def on_work(self, fraction: float) -> None:
        self.tracker.update(min((self.done + fraction) / self.total, 1.0))

    def on_step(self, trajectory: Trajectory, step: Step) -> None:
        self.done += 1
        validation = self.sweep.metrics[step.after]["validation"]
        assert validation is not None
        k = len(step.after)
        self.tracker.event(
            "metrics",
            f"{trajectory.strategy} removed layer {step.layer} (k={k}): "
            f"validation accuracy {validation['accuracy']:.3f}",
            strategy=trajectory.strategy,
            k=k,
            layer=step.layer,
            val_accuracy=validation["accuracy"],
        )

    def walk(self, strategy: Strategy, max_removed: int) -> Trajectory:
        return self.sweep.walk(strategy, max_removed, self.on_step, self.on_work)


def run_sweep(
    prepared: Prepared,
    teacher: Teacher,
    baseline: Baseline,
    strategies: list[Strategy],
    tracker: ProgressTracker,
    checkpoint_dir: Path | None = None,
) -> Swept:
    """Walk ``strategies`` from the full teacher down to ``prepared.max_removed`` layers removed.

    When the spec walks a fusion strategy (and keeps ``options.leave_one_out_probe``), the probe
    first evaluates every single-layer removal, so fusion's first decision is fully supervised.

    Args:
        checkpoint_dir: where the caches are saved after every new state and resumed from.
    """
    probing = prepared.spec.options.leave_one_out_probe and any(
        sid in FUSION_IDS for sid in prepared.spec.walked_strategies()
    )
    sweep = _open_sweep(prepared, teacher, checkpoint_dir)
    sweep.remember(EMPTY, baseline.metrics())
    units = len(strategies) * prepared.max_removed + (prepared.num_layers if probing else 0)
    progress = WalkProgress(tracker, sweep, units)
    probe: list[Step] = []
    if probing:
        probe = sweep.probe(progress.on_work)
        progress.done += prepared.num_layers
    trajectories = {s.id: progress.walk(s, prepared.max_removed) for s in strategies}
    tracker.event(
        "message",
        f"sweep done: {sweep.measurements} measurements, "
        f"{sweep.cache_hits} answered from the per-state cache",
        measurements=sweep.measurements,
        cache_hits=sweep.cache_hits,
    )
    return Swept(sweep, probe, trajectories)


def _open_sweep(prepared: Prepared, teacher: Teacher, checkpoint_dir: Path | None) -> Sweep:
    checkpoint = checkpoint_dir / SWEEP_CHECKPOINT if checkpoint_dir else None
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
    return Sweep(
        teacher.model,
        prepared.loaded.adapter,
        prepared.calibration,
        prepared.validation,
        prepared.test,
        prepared.runtime,
        prepared.seed,
        checkpoint,
    )
