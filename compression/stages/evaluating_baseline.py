"""Stage 3, ``evaluating_baseline``: the full model's metrics."""

from __future__ import annotations

from dataclasses import dataclass

from ..progress import ProgressTracker
from ..report import BaselineReport, Metrics
from .fine_tuning_teacher import Teacher
from .preparing import Prepared


@dataclass(frozen=True)
class Baseline:
    """What the full model scores: the bar every pruned model is compared with."""

    report: BaselineReport

    @property
    def accuracy(self) -> float:
        """Validation accuracy: the only split selection reads."""
        return self.report.validation["accuracy"]

    def metrics(self) -> dict[str, Metrics | None]:
        """Both splits' metrics, as the sweep caches them per state."""
        return {"validation": self.report.validation, "test": self.report.test}


def evaluate_baseline(prepared: Prepared, teacher: Teacher, tracker: ProgressTracker) -> Baseline:
    runtime = prepared.runtime
    validation = prepared.validation.evaluate(teacher.model, runtime, tracker.update)
    test = prepared.test.evaluate(teacher.model, runtime) if prepared.test else None
    # Latency is timed at export, side by side with the compressed model (assemble_report).
    report = BaselineReport(validation=validation, test=test, latency_ms=None)
    tracker.event(
        "metrics",
        f"full model: validation accuracy {validation['accuracy']:.3f}",
        val_accuracy=validation["accuracy"],
        test_accuracy=test and test["accuracy"],
    )
    return Baseline(report)
