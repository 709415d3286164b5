"""Recovering pruned candidates with one recipe (method.md, "Recovery"): the depth search and the
healed comparison both call :meth:`Healer.heal`, which shares the teacher's logits (computed once
per job) and never recovers the same layers twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedModel

from .evaluation import predict
from .models import pruned_copy
from .progress import ProgressTracker
from .recovery import LayerMappedLoss
from .report import Evaluation, RecoveredCandidate
from .training import Distill, TrainResult, epoch_events, train

if TYPE_CHECKING:  # the stages hand these over; importing them here would be circular
    from .stages.fine_tuning_teacher import Teacher
    from .stages.preparing import Prepared


@dataclass(frozen=True)
class Healed:
    """A recovered candidate: its student (at its best epoch) and what the recovery measured."""

    candidate: str
    removed: list[int]
    kept: list[int]
    student: PreTrainedModel
    before: Evaluation
    after: Evaluation
    result: TrainResult
    seconds: float

    def report(self, exported: bool) -> RecoveredCandidate:
        return RecoveredCandidate(
            candidate=self.candidate,
            removed_layers=sorted(self.removed),
            before=self.before,
            after=self.after,
            epochs_run=self.result.epochs_run,
            best_epoch=self.result.best_epoch,
            seconds=self.seconds,
            exported=exported,
        )

    @property
    def validation_accuracy(self) -> float:
        return float(self.after.validation["accuracy"])


class Healer:
    """Recovers candidates of one job against its frozen teacher.

    Args:
        planned: how many recoveries the stage expects, to spread its progress over them.
    """

    def __init__(
        self, prepared: Prepared, teacher: Teacher, tracker: ProgressTracker, planned: int
    ):
        self.prepared, self.teacher, self.tracker = prepared, teacher, tracker
        self.kd = prepared.spec.distillation
        self.planned, self.done = max(planned, 1), 0
        self.healed: dict[frozenset[int], Healed] = {}
        start = time.perf_counter()
        batches = prepared.train_set.sorted_batches(prepared.spec.options.eval_batch_size)
        self.logits = predict(teacher.model, batches, prepared.runtime, len(prepared.train_set))
        self.teacher_seconds = time.perf_counter() - start

    def heal(self, candidate: str, order: list[int]) -> Healed:
        """Remove the layers of ``order`` (in that order for the iterative schedule) and recover.

        A removal already recovered under another candidate's name is answered from it.
        """
        key = frozenset(order)
        if key in self.healed:
            return _renamed(self.healed[key], candidate)
        start = time.perf_counter()
        num_layers = self.prepared.num_layers
        kept = [i for i in range(num_layers) if i not in key]
        student = pruned_copy(self.teacher.model, self.prepared.loaded.adapter, kept)
        before = self._evaluate(student)
        if self.kd.schedule == "iterative" and len(order) > 1:
            student = self._iterate(order)
        result = self._train(student, kept, self.kd.max_epochs(len(order)), self.kd.patience)
        healed = Healed(
            candidate,
            list(order),
            kept,
            student,
            before,
            self._evaluate(student, result),
            result,
            time.perf_counter() - start,
        )
        self.healed[key] = healed
        self.done += 1
        self.tracker.event(
            "metrics",
            f"recovered {candidate} (removed {sorted(order)}): validation accuracy "
            f"{before.validation['accuracy']:.3f} -> {healed.validation_accuracy:.3f} in "
            f"{result.epochs_run} epochs",
            candidate=candidate,
            removed_layers=sorted(order),
            val_accuracy=healed.validation_accuracy,
        )
        return healed

    def _iterate(self, order: list[int]) -> PreTrainedModel:
        """The iterative schedule: remove one layer at a time, recovering briefly after each,
        up to the last removal (whose full recovery :meth:`heal` runs)."""
        adapter, num_layers = self.prepared.loaded.adapter, self.prepared.num_layers
        kept, student = list(range(num_layers)), self.teacher.model
        for removed, layer in enumerate(order, start=1):
            positions = [p for p, original in enumerate(kept) if original != layer]
            student = pruned_copy(student, adapter, positions)
            kept = [kept[p] for p in positions]
            if removed < len(order):
                self._train(student, kept, self.kd.iterative_epochs, None)
        return student

    def _train(
        self, student: PreTrainedModel, kept: list[int], epochs: int, patience: int | None
    ) -> TrainResult:
        prepared, kd = self.prepared, self.kd
        extra = (
            LayerMappedLoss(self.teacher.model, kept, prepared.num_layers, kd)
            if LayerMappedLoss.wanted(kd)
            else None
        )
        return train(
            student,
            prepared.train_set,
            prepared.validation,
            prepared.runtime,
            epochs=epochs,
            learning_rate=prepared.learning_rate(kd.learning_rate),
            batch_size=kd.batch_size,
            seed=prepared.seed,
            distill=Distill(self.logits, kd.temperature, kd.alpha),
            extra_loss=extra,
            patience=patience,
            on_batch=lambda f: self.tracker.update((self.done + f) / self.planned),
            on_epoch=epoch_events(self.tracker, "distillation"),
        )

    def _evaluate(self, student: PreTrainedModel, result: TrainResult | None = None) -> Evaluation:
        """Validation (the training result's best, when trained) and test metrics of ``student``."""
        prepared = self.prepared
        validation = (
            result.best if result else prepared.validation.evaluate(student, prepared.runtime)
        )
        test = prepared.test.evaluate(student, prepared.runtime) if prepared.test else None
        return Evaluation(validation=validation, test=test)


def _renamed(healed: Healed, candidate: str) -> Healed:
    """``healed`` under another candidate's name: the same layers, recovered once."""
    return Healed(
        candidate,
        healed.removed,
        healed.kept,
        healed.student,
        healed.before,
        healed.after,
        healed.result,
        0.0,
    )
