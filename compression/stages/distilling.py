"""Stage 7, ``distilling`` (method.md's "recover"): knowledge distillation from the full teacher
into the selected pruned student, which becomes the exported model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import PreTrainedModel

from ..evaluation import predict
from ..models import pruned_copy
from ..progress import ProgressTracker
from ..report import DistillationReport, Evaluation
from ..training import Distill, TrainResult, epoch_events, train
from .fine_tuning_teacher import Teacher
from .preparing import Prepared
from .selecting import Selected


@dataclass(frozen=True)
class Recovered:
    """The model to export (original layers ``kept_layers``) and its metrics."""

    student: PreTrainedModel
    kept_layers: list[int]
    metrics: Evaluation
    report: DistillationReport


def recover(
    prepared: Prepared, teacher: Teacher, selected: Selected, tracker: ProgressTracker
) -> Recovered:
    """Distill ``teacher`` into the pruned copy that keeps the selected layers.

    Nothing is trained when distillation is off or no layer was removed; the student then keeps
    the metrics the sweep measured for it.
    """
    kd, selection = prepared.spec.distillation, selected.selection
    student = pruned_copy(teacher.model, prepared.loaded.adapter, selection.kept_layers)
    before = selection.before_recovery()
    if not (kd.enabled and selection.layers_removed > 0):
        report = DistillationReport(
            enabled=False,
            before=before,
            after=before,
            epochs_run=0,
            temperature=kd.temperature,
            alpha=kd.alpha,
        )
        return Recovered(student, selection.kept_layers, before, report)
    result = _distill(prepared, teacher, student, tracker)
    test = prepared.test.evaluate(student, prepared.runtime) if prepared.test else None
    after = Evaluation(validation=result.best, test=test)
    report = DistillationReport(
        enabled=True,
        before=before,
        after=after,
        epochs_run=result.epochs_run,
        temperature=kd.temperature,
        alpha=kd.alpha,
        best_epoch=result.best_epoch,
        history=result.history,
    )
    return Recovered(student, selection.kept_layers, after, report)


def _distill(
    prepared: Prepared, teacher: Teacher, student: PreTrainedModel, tracker: ProgressTracker
) -> TrainResult:
    """Train ``student`` in place on the teacher's softened logits (computed once) and labels."""
    batches = prepared.train_set.sorted_batches(prepared.spec.options.eval_batch_size)
    logits = predict(teacher.model, batches, prepared.runtime, len(prepared.train_set))
    return train_student(prepared, student, tracker, teacher_logits=logits)


def train_student(
    prepared: Prepared,
    model: PreTrainedModel,
    tracker: ProgressTracker,
    teacher_logits: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` in place with the distillation's epochs, learning rate, batch size, schedule
    and seed; without ``teacher_logits``, on the labels alone (cross-entropy): the control that
    tells distillation's gain from the extra epochs'."""
    kd = prepared.spec.distillation
    distill = (
        Distill(teacher_logits, kd.temperature, kd.alpha) if teacher_logits is not None else None
    )
    return train(
        model,
        prepared.train_set,
        prepared.validation,
        prepared.runtime,
        epochs=kd.epochs,
        learning_rate=prepared.learning_rate(kd.learning_rate),
        batch_size=kd.batch_size,
        seed=prepared.seed,
        distill=distill,
        on_batch=tracker.update,
        on_epoch=epoch_events(tracker, "distillation" if distill else "training"),
    )
