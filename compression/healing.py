"""Recovering pruned candidates with one recipe (method.md, "Recovery"): the depth search and the
healed comparison both call :meth:`Healer.heal`, which shares the teacher's logits (computed once
per job) and never recovers the same layers twice.

A recovered student is a full copy of the model's kept layers, so the healer keeps only those the
caller may still export (:meth:`Healer.keep_only`, :meth:`Healer.release`); every recovery's
measurements stay for the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from transformers import PreTrainedModel

from .evaluation import predict
from .models import pruned_copy
from .progress import ProgressTracker
from .pruning import layers_removed
from .recovery import LayerMappedLoss
from .report import Evaluation, RecoveredCandidate
from .sweep import StateMetrics
from .training import Distill, TrainResult, epoch_events, train

if TYPE_CHECKING:  # the stages hand these over; importing them here would be circular
    from .stages.fine_tuning_teacher import Teacher
    from .stages.preparing import Prepared


@dataclass(frozen=True)
class Healed:
    """What recovering a candidate measured; its student (at its best epoch) is the healer's,
    :meth:`Healer.student`."""

    candidate: str
    removed: list[int]
    kept: list[int]
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
            stopped_by=self.result.stopped_by,
            seconds=self.seconds,
            exported=exported,
        )

    @property
    def key(self) -> frozenset[int]:
        """The removal: the same layers removed in any order make the same pruned model."""
        return frozenset(self.removed)

    @property
    def validation_accuracy(self) -> float:
        return float(self.after.validation["accuracy"])


class Healer:
    """Recovers candidates of one job against its frozen teacher.

    Args:
        planned: how many recoveries the stage expects, to spread its progress over them.
        measured: the sweep's metrics per removal (:attr:`Sweep.metrics`): a candidate's
            metrics before recovery are read there when the sweep evaluated its removal.
    """

    def __init__(
        self,
        prepared: Prepared,
        teacher: Teacher,
        tracker: ProgressTracker,
        planned: int,
        measured: StateMetrics,
    ):
        self.prepared, self.teacher, self.tracker = prepared, teacher, tracker
        self.kd = prepared.spec.distillation
        self.planned, self.done = max(planned, 1), 0
        self.measured = measured
        self.healed: dict[frozenset[int], Healed] = {}
        self.students: dict[frozenset[int], PreTrainedModel] = {}
        start = time.perf_counter()
        batches = prepared.train_set.sorted_batches(prepared.spec.options.eval_batch_size)
        self.logits = predict(teacher.model, batches, prepared.runtime, len(prepared.train_set))
        self.teacher_seconds = time.perf_counter() - start

    def heal(self, candidate: str, order: list[int], pace: list[float] | None = None) -> Healed:
        """Remove the layers of ``order`` (in that order for the iterative schedule) and recover.

        A removal already recovered under another candidate's name is answered from it.

        Args:
            pace: the leading candidate's best validation accuracy by epoch
                (:meth:`TrainResult.best_by_epoch`): the recovery stops after the first epoch at
                which its own best is below the leader's at the same epoch (after the leader's
                last epoch, below its final best). Such a candidate can no longer be exported,
                since the leader's best only grows.
        """
        key = frozenset(order)
        if key in self.healed:
            return _renamed(self.healed[key], candidate)
        start = time.perf_counter()
        kept = [i for i in range(self.prepared.num_layers) if i not in key]
        before = self._before(key)
        if self.kd.schedule == "iterative" and len(order) > 1:
            student = self._iterate(order)
        else:
            student = pruned_copy(self.teacher.model, self.prepared.loaded.adapter, kept)
        result = self._train(
            student, kept, self.kd.max_epochs(len(order)), self.kd.patience, _pacer(pace)
        )
        after = self._evaluate(student, result)
        healed = Healed(
            candidate, list(order), kept, before, after, result, time.perf_counter() - start
        )
        self.healed[key], self.students[key] = healed, student
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

    def compare(
        self, orders: list[tuple[str, list[int]]], race: bool
    ) -> tuple[list[Healed], Healed]:
        """Recover each ``(candidate, order)`` in turn; returns them all and the best on
        validation (ties: the earlier). With ``race`` the best so far paces the next
        (:meth:`heal`'s ``pace``). Only the best's student is kept: no other can be exported."""
        healed: list[Healed] = []
        best: Healed | None = None
        for candidate, order in orders:
            pace = best.result.best_by_epoch() if best is not None and race else None
            healed.append(self.heal(candidate, order, pace))
            best = max(healed, key=lambda h: h.validation_accuracy)
            self.keep_only(best)
        if best is None:
            raise ValueError("compare needs at least one candidate")
        return healed, best

    def student(self, healed: Healed) -> PreTrainedModel:
        """The recovered student of ``healed`` (kept unless released)."""
        if healed.key not in self.students:
            raise LookupError(f"the student of {healed.candidate} was released")
        return self.students[healed.key]

    def release(self, healed: Healed) -> None:
        """Free the student of ``healed``, which will not be exported; its measurements stay."""
        self.students.pop(healed.key, None)

    def keep_only(self, healed: Healed) -> None:
        """Free every student but the one of ``healed`` (under any of its names)."""
        self.students = {healed.key: self.student(healed)}

    def _before(self, removal: frozenset[int]) -> Evaluation:
        """The pruned model's metrics before recovery: the sweep's when it evaluated ``removal``
        (the same model on the same data), else measured as the sweep would."""
        measured = self.measured.get(removal)
        if measured is not None and measured["validation"] is not None:
            return Evaluation(validation=measured["validation"], test=measured["test"])
        model, adapter = self.teacher.model, self.prepared.loaded.adapter
        with layers_removed(model, adapter, list(adapter.layers(model)), removal):
            return self._evaluate(model)

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
        self,
        student: PreTrainedModel,
        kept: list[int],
        epochs: int,
        patience: int | None,
        keep_going: Callable[[int, float], bool] = lambda epoch, best: True,
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
            keep_going=keep_going,
            on_batch=lambda f: self.tracker.update((self.done + f) / self.planned),
            on_epoch=epoch_events(self.tracker, "distillation"),
        )

    def _evaluate(self, model: PreTrainedModel, result: TrainResult | None = None) -> Evaluation:
        """Validation (the training result's best, when trained) and test metrics of ``model``."""
        prepared = self.prepared
        validation = (
            result.best if result else prepared.validation.evaluate(model, prepared.runtime)
        )
        test = prepared.test.evaluate(model, prepared.runtime) if prepared.test else None
        return Evaluation(validation=validation, test=test)


def _pacer(pace: list[float] | None) -> Callable[[int, float], bool]:
    """``keep_going`` for :func:`train`: go on while not behind ``pace`` (``None``: always)."""
    if not pace:
        return lambda epoch, best: True
    return lambda epoch, best: best >= pace[min(epoch, len(pace) - 1)]


def _renamed(healed: Healed, candidate: str) -> Healed:
    """``healed`` under another candidate's name: the same layers, recovered once."""
    return Healed(
        candidate,
        healed.removed,
        healed.kept,
        healed.before,
        healed.after,
        healed.result,
        0.0,
    )
