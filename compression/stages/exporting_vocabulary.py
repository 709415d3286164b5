"""Part of stage 8, ``exporting``: the written model's vocabulary trimmed to the job's data, and
the trimmed model measured with the trimmed tokenizer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel

from .. import vocabulary
from ..batching import Encoded
from ..evaluation import EvalSet, parameter_count
from ..progress import ProgressTracker
from ..report import Evaluation, VocabularyReport
from .preparing import Prepared


@dataclass(frozen=True)
class TrimmedExport:
    """The trimmed model's eval sets (ids of the new vocabulary), metrics and report."""

    validation: EvalSet
    test: EvalSet | None
    metrics: Evaluation
    report: VocabularyReport


def trim_export(
    prepared: Prepared,
    student: PreTrainedModel,
    full: Evaluation,
    model_dir: Path,
    tracker: ProgressTracker,
) -> TrimmedExport:
    """Trim ``student`` in place and rewrite ``model_dir`` (already holding the full model and
    its tokenizer) with the trimmed embeddings and tokenizer."""
    seen = [
        i
        for split in (prepared.train_set, prepared.validation.encoded)
        for row in split.input_ids
        for i in row
    ]
    parameters_before = parameter_count(student)
    special = vocabulary.special_ids(prepared.loaded.tokenizer)
    trimmed, tokenizer = vocabulary.trim_saved(student, model_dir, seen, special)
    validation = _reencode(prepared, prepared.validation, tokenizer)
    test = _reencode(prepared, prepared.test, tokenizer) if prepared.test else None
    metrics = Evaluation(
        validation=validation.evaluate(student, prepared.runtime),
        test=test.evaluate(student, prepared.runtime) if test else None,
    )
    report = VocabularyReport(
        before=trimmed.before,
        after=len(trimmed.kept),
        parameters_before=parameters_before,
        parameters_after=parameter_count(student),
        test_coverage=(
            vocabulary.coverage(prepared.test.encoded.input_ids, trimmed) if prepared.test else None
        ),
        validation_accuracy_full=full.validation["accuracy"],
        validation_accuracy_trimmed=metrics.validation["accuracy"],
        test_accuracy_full=full.test["accuracy"] if full.test else None,
        test_accuracy_trimmed=metrics.test["accuracy"] if metrics.test else None,
    )
    tracker.event(
        "message",
        f"trimmed the vocabulary from {report.before} to {report.after} tokens",
        before=report.before,
        after=report.after,
    )
    return TrimmedExport(validation, test, metrics, report)


def _reencode(prepared: Prepared, eval_set: EvalSet, tokenizer) -> EvalSet:
    old = eval_set.encoded
    encoded = Encoded(old.split, old.labels, tokenizer, old.max_length)
    return EvalSet(encoded, prepared.spec.options.eval_batch_size)
