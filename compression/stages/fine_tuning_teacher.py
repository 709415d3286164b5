"""Stage 2, ``fine_tuning_teacher``: train a classification head (and the body) for the labels.

Skipped when the model already classifies the dataset's labels: :func:`keep_teacher` then hands
the loaded model on as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import safetensors.torch
from transformers import PreTrainedModel

from ..checkpoints import TEACHER_CHECKPOINT
from ..progress import ProgressTracker
from ..report import TeacherReport
from ..training import TrainResult, epoch_events, train
from .preparing import Prepared


@dataclass(frozen=True)
class Teacher:
    """The full model every later stage measures against and distills from."""

    model: PreTrainedModel
    report: TeacherReport


def keep_teacher(prepared: Prepared) -> Teacher:
    """The loaded model as the teacher, untouched."""
    return Teacher(prepared.model, TeacherReport(fine_tuned=False))


def fine_tune_teacher(
    prepared: Prepared, tracker: ProgressTracker, checkpoint_dir: Path | None = None
) -> Teacher:
    """Fine-tune ``prepared.model`` in place (method.md, "prepare"), or restore it.

    Args:
        checkpoint_dir: where the trained weights are kept; when they are already there the
            teacher is restored from them instead of trained again.
    """
    model, options = prepared.model, prepared.spec.options
    checkpoint = checkpoint_dir / TEACHER_CHECKPOINT if checkpoint_dir else None
    if checkpoint is not None and checkpoint.is_file():
        safetensors.torch.load_model(model, checkpoint, device=str(prepared.runtime.device))
        tracker.event("message", "teacher restored from the job's checkpoint")
        return Teacher(model, TeacherReport(fine_tuned=True, resumed_from_checkpoint=True))
    result = train_on_labels(
        prepared,
        model,
        tracker,
        epochs=options.teacher_epochs,
        learning_rate=options.teacher_learning_rate,
        what="teacher",
    )
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_model(model, str(checkpoint))
    report = TeacherReport(
        fine_tuned=True,
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        history=result.history,
    )
    return Teacher(model, report)


def train_on_labels(
    prepared: Prepared,
    model: PreTrainedModel,
    tracker: ProgressTracker,
    *,
    epochs: int,
    learning_rate: float | None,
    what: str,
) -> TrainResult:
    """Train ``model`` in place on the labels alone (cross-entropy), with the job's data, batch
    size and seed: the teacher's recipe, which distillation's label-only control shares.

    Args:
        learning_rate: the spec's, None for the default for the model's size.
        what: names the epochs in their events.
    """
    return train(
        model,
        prepared.train_set,
        prepared.validation,
        prepared.runtime,
        epochs=epochs,
        learning_rate=prepared.learning_rate(learning_rate),
        batch_size=prepared.spec.distillation.batch_size,
        seed=prepared.seed,
        on_batch=tracker.update,
        on_epoch=epoch_events(tracker, what),
    )
