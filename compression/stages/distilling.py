"""Stage 7, ``distilling`` (method.md's "recover"): knowledge distillation from the full teacher
into pruned students, judged after recovery.

With ``max_accuracy_drop`` the depth is searched here, on recovered validation accuracy; at the
chosen depth the job's candidate and every ``distillation.compare`` baseline are recovered with
the same recipe, and the best on validation becomes the exported model.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from transformers import PreTrainedModel

from ..evaluation import fast_attention
from ..healing import Healed, Healer
from ..models import pruned_copy
from ..progress import ProgressTracker
from ..recovery import baseline_removal
from ..report import DepthTrial, DistillationReport, Evaluation, RecoveryReport, SelectionReport
from ..selection import deepest_within, point_at
from ..training import TrainResult
from .fine_tuning_teacher import Teacher, train_on_labels
from .preparing import Prepared
from .selecting import Selected


@dataclass(frozen=True)
class Recovered:
    """The model to export (original layers ``kept_layers``), its metrics, and the final
    selection (the exported candidate's layers)."""

    student: PreTrainedModel
    kept_layers: list[int]
    metrics: Evaluation
    report: DistillationReport
    recovery: RecoveryReport
    selection: SelectionReport


def recover(
    prepared: Prepared, teacher: Teacher, selected: Selected, tracker: ProgressTracker
) -> Recovered:
    """Recover the selected depth's candidates and keep the best on validation.

    Nothing is trained when distillation is off or no depth is removed; the student then keeps
    the metrics the sweep measured for it.
    """
    spec = prepared.spec
    kd, selection = spec.distillation, selected.selection
    searching = spec.target.max_accuracy_drop is not None
    if not kd.enabled or (selection.layers_removed == 0 and not searching):
        return _unrecovered(prepared, teacher, selected, [])
    search_steps = math.ceil(math.log2(prepared.max_removed + 1)) if searching else 0
    healer = Healer(
        prepared, teacher, tracker, 1 + len(kd.compare) + search_steps, selected.state_metrics
    )
    # Without the attention term the frozen teacher runs only for its states: sdpa is faster.
    teacher_attention = (
        contextlib.nullcontext() if kd.attention_weight > 0 else fast_attention(teacher.model)
    )
    with teacher_attention:
        trials: list[DepthTrial] = []
        k = _search(prepared, selected, healer, trials) if searching else selection.layers_removed
        if k == 0:
            return _unrecovered(prepared, teacher, selected, trials, healer.teacher_seconds)
        strategy, _ = point_at(selected.curves, spec.strategy, k)
        orders = [(strategy, _order(selected, strategy, k))]
        orders += [(c, _candidate_order(prepared, selected, c, k)) for c in kd.compare]
        # The job's own candidate first: it wins ties and sets the race's pace.
        healed, best = healer.compare(orders, kd.race)
    report = RecoveryReport(
        schedule=kd.schedule,
        teacher_seconds=healer.teacher_seconds,
        depth_search=trials,
        candidates=[h.report(h is best) for h in healed],
        exported=best.candidate,
    )
    final = _selection_report(prepared, selected, best, strategy, trials)
    student, kd_report = healer.student(best), _kd_report(prepared, best)
    return Recovered(student, best.kept, best.after, kd_report, report, final)


def _search(
    prepared: Prepared, selected: Selected, healer: Healer, trials: list[DepthTrial]
) -> int:
    """The deepest depth whose recovered validation accuracy meets ``max_accuracy_drop``."""
    spec, selection = prepared.spec, selected.selection
    floor = selected.baseline_accuracy - (spec.target.max_accuracy_drop or 0.0)

    def recovered_accuracy(k: int) -> float:
        strategy, point = point_at(selected.curves, spec.strategy, k)
        healed = healer.heal(strategy, _order(selected, strategy, k))
        accuracy, met = healed.validation_accuracy, healed.validation_accuracy >= floor
        # The bisection only goes deeper after a pass, so the depth exported is the last passing
        # one (or ``start``, never recovered here): no other trial's student is needed.
        if met:
            healer.keep_only(healed)
        else:
            healer.release(healed)
        trials.append(
            DepthTrial(
                layers_removed=k,
                strategy=strategy,
                removed_layers=point.removed,
                validation_accuracy=accuracy,
                met_target=met,
            )
        )
        return accuracy

    start = selection.layers_removed if selection.met_target else 0
    return deepest_within(floor, start, prepared.max_removed, recovered_accuracy)


def _order(selected: Selected, strategy: str, k: int) -> list[int]:
    """The first ``k`` removals of a walked trajectory, in the order it removed them."""
    report = selected.strategies[strategy]
    return report.removal_order[:k]


def _candidate_order(prepared: Prepared, selected: Selected, candidate: str, k: int) -> list[int]:
    fixed = baseline_removal(candidate, prepared.num_layers, k)
    if fixed is not None:
        return fixed
    strategy, _ = point_at(selected.curves, candidate, k)
    return _order(selected, strategy, k)


def _selection_report(
    prepared: Prepared,
    selected: Selected,
    best: Healed,
    depth_strategy: str,
    trials: list[DepthTrial],
) -> SelectionReport:
    """The exported candidate's layers; the target is met by construction at a recovered depth."""
    k = len(best.removed)
    met = selected.selection.met_target or any(
        t.met_target and t.layers_removed == k for t in trials
    )
    return SelectionReport(
        strategy=best.candidate,
        target=prepared.spec.target,
        layers_removed=k,
        removed_layers=sorted(best.removed),
        kept_layers=best.kept,
        validation_accuracy=best.before.validation["accuracy"],
        met_target=met,
        depth_strategy=depth_strategy,
        depths_tried=[t.layers_removed for t in trials] if trials else None,
    )


def _kd_report(prepared: Prepared, best: Healed) -> DistillationReport:
    kd = prepared.spec.distillation
    return DistillationReport(
        enabled=True,
        before=best.before,
        after=best.after,
        epochs_run=best.result.epochs_run,
        temperature=kd.temperature,
        alpha=kd.alpha,
        best_epoch=best.result.best_epoch,
        history=best.result.history,
    )


def _unrecovered(
    prepared: Prepared,
    teacher: Teacher,
    selected: Selected,
    trials: list[DepthTrial],
    teacher_seconds: float = 0.0,
) -> Recovered:
    """The selected (before-recovery) model as it is: distillation off, or the model kept whole."""
    kd, selection = prepared.spec.distillation, selected.selection
    student = pruned_copy(teacher.model, prepared.loaded.adapter, selection.kept_layers)
    before = selection.before_recovery()
    report = DistillationReport(
        enabled=False,
        before=before,
        after=before,
        epochs_run=0,
        temperature=kd.temperature,
        alpha=kd.alpha,
    )
    recovery = RecoveryReport(
        schedule=kd.schedule, teacher_seconds=teacher_seconds, depth_search=trials, candidates=[]
    )
    final = selected.report
    if trials:
        final = final.model_copy(update={"depths_tried": [t.layers_removed for t in trials]})
    return Recovered(student, selection.kept_layers, before, report, recovery, final)


def train_student(
    prepared: Prepared, model: PreTrainedModel, tracker: ProgressTracker
) -> TrainResult:
    """Train ``model`` in place on the labels alone (cross-entropy) with the distillation's
    epochs, learning rate, batch size, schedule and seed: the control that tells distillation's
    gain from the extra epochs'."""
    kd = prepared.spec.distillation
    return train_on_labels(
        prepared,
        model,
        tracker,
        epochs=kd.epochs,
        learning_rate=kd.learning_rate,
        what="training",
    )
