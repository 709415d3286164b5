"""Choosing the final strategy and depth from the curves (method.md, "Selecting the depth").

Selection reads validation metrics only; test metrics are for reporting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .catalogue import AUTO, RANDOM
from .errors import InvalidInputError
from .report import CurvePoint, Evaluation, SelectionReport
from .spec import Target

Curve = list[CurvePoint]


@dataclass(frozen=True)
class Selection:
    """The chosen strategy and depth; ``point`` is its curve's point (the pruned model's metrics
    before recovery)."""

    strategy: str
    point: CurvePoint
    kept_layers: list[int]
    met_target: bool

    @property
    def layers_removed(self) -> int:
        return self.point.layers_removed

    @property
    def removed_layers(self) -> list[int]:
        return self.point.removed

    @property
    def validation_accuracy(self) -> float:
        return self.point.validation["accuracy"]

    def before_recovery(self) -> Evaluation:
        return Evaluation(validation=self.point.validation, test=self.point.test)

    def to_report(self, target: Target) -> SelectionReport:
        return SelectionReport(
            strategy=self.strategy,
            target=target,
            layers_removed=self.layers_removed,
            removed_layers=self.removed_layers,
            kept_layers=self.kept_layers,
            validation_accuracy=self.validation_accuracy,
            met_target=self.met_target,
        )


def max_layers_removed(requested: int | None, num_layers: int) -> int:
    """How deep the sweep goes: ``options.max_layers_removed``, or all layers but one."""
    limit = requested or num_layers - 1
    if limit > num_layers - 1:
        raise InvalidInputError(
            f"options.max_layers_removed={limit} but the model has {num_layers} layers; "
            f"at most {num_layers - 1} can be removed",
            code="options_out_of_range",
            param="options.max_layers_removed",
        )
    return limit


def validate_target(target: Target, num_layers: int, max_removed: int) -> None:
    """Reject a fixed-depth target the sweep cannot reach, before any work is done."""
    if target.layers_to_remove is not None:
        k, param = target.layers_to_remove, "target.layers_to_remove"
    elif target.keep_layers is not None:
        k, param = num_layers - target.keep_layers, "target.keep_layers"
    else:
        return
    if not 1 <= k <= max_removed:
        raise InvalidInputError(
            f"{target.describe()} asks to remove {k} of the model's {num_layers} layers; between "
            f"1 and {max_removed} can be removed (options.max_layers_removed)",
            code="target_out_of_range",
            param=param,
        )


def _accuracy(point: CurvePoint) -> float:
    return float(point.validation["accuracy"])


def select(
    curves: dict[str, Curve],
    strategy: str,
    target: Target,
    num_layers: int,
    baseline_accuracy: float,
) -> Selection:
    """Apply the job's target to the walked curves.

    ``curves`` maps real trajectories (``random/seed-N`` included, the seeds' mean excluded) to
    their curves; ``strategy`` is an id or ``auto``. With ``auto``, ties between strategies go to
    the first in method order; with ``select: best``, ties between depths go to the deeper one.
    """
    if strategy == RANDOM:
        strategy = f"{RANDOM}/seed-0"
    candidates = curves if strategy == AUTO else {strategy: curves[strategy]}
    max_k = min(len(c) - 1 for c in candidates.values())
    met = True
    if target.layers_to_remove is not None or target.keep_layers is not None:
        validate_target(target, num_layers, max_k)
        k = (
            target.layers_to_remove
            if target.layers_to_remove is not None
            else num_layers - (target.keep_layers or 0)
        )
        options = [(name, k) for name in candidates]
    elif target.select == "best":
        options = [(name, k) for name in candidates for k in range(1, max_k + 1)]
    else:
        floor = baseline_accuracy - (target.max_accuracy_drop or 0.0)
        passing = [
            (name, k)
            for name in candidates
            for k in range(1, max_k + 1)
            if _accuracy(candidates[name][k]) >= floor
        ]
        if passing:
            deepest = max(k for _, k in passing)
            options = [(name, k) for name, k in passing if k == deepest]
        else:
            # Nothing meets the target: keep the model whole rather than break the promise.
            options, met = [(name, 0) for name in candidates], False
    name, k = max(
        options,
        key=lambda o: (_accuracy(candidates[o[0]][o[1]]), o[1], -list(candidates).index(o[0])),
    )
    point = candidates[name][k]
    return Selection(name, point, [i for i in range(num_layers) if i not in point.removed], met)


def point_at(curves: dict[str, Curve], strategy: str, k: int) -> tuple[str, CurvePoint]:
    """The strategy and curve point at depth ``k``: ``strategy``'s, or with ``auto`` the one best
    on validation before recovery (ties to the first in method order), as :func:`select` picks."""
    if strategy == RANDOM:
        strategy = f"{RANDOM}/seed-0"
    if strategy != AUTO:
        return strategy, curves[strategy][k]
    names = list(curves)
    name = max(names, key=lambda n: (_accuracy(curves[n][k]), -names.index(n)))
    return name, curves[name][k]


def deepest_within(
    floor: float, start: int, max_k: int, recovered_accuracy: Callable[[int], float]
) -> int:
    """The deepest k in ``[start, max_k]`` whose recovered validation accuracy is at least
    ``floor``, by bisection: accuracy after recovery falls with depth, so about log2(max_k)
    depths are recovered rather than all of them.

    ``start`` is known to meet the floor (the deepest depth that met it before recovery, which
    recovery cannot lower; 0 for the whole model) and is never recovered here.
    """
    passing, failing = start, max_k + 1
    while failing - passing > 1:
        k = (passing + failing + 1) // 2
        if recovered_accuracy(k) >= floor:
            passing = k
        else:
            failing = k
    return passing
