"""The whole method, top to bottom: prepare, fine-tune, baseline, sweep, fuse, select, distill,
export (method.md, "Stages of a job"). :func:`compress` is the library's one entry point; the
stages themselves are in :mod:`layerfuse.compression.stages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoints import claim as claim_checkpoints
from .latency import sides
from .outputs import check_out_dir
from .progress import CancelToken, NeverCancel, NullReporter, ProgressTracker, Reporter, StageClock
from .report import BaselineReport, LatencyComparison, Report, SweepStats
from .spec import CompressionSpec
from .stages import (
    Baseline,
    Exported,
    Fused,
    Prepared,
    Recovered,
    Selected,
    Teacher,
    evaluate_baseline,
    export,
    fine_tune_teacher,
    fuse,
    keep_teacher,
    prepare,
    recover,
    run_sweep,
    select_depth,
    write_outputs,
)
from .strategies import build_strategies


@dataclass
class CompressionResult:
    """What a run leaves in ``out_dir``.

    ``out_dir`` holds ``model/`` (a Hugging Face directory), ``report.json``, ``model_card.md``,
    ``signals.csv``, ``curves.png`` and ``signals.png``; ``report`` is ``report.json`` typed.
    ``summary`` is the short result the service shows on the job (api.md, ``result``), as JSON.
    """

    out_dir: Path
    report: Report
    summary: dict[str, Any]
    artifacts: list[str] = field(default_factory=list)


def compress(
    spec: CompressionSpec,
    out_dir: str | Path,
    *,
    reporter: Reporter | None = None,
    cancel: CancelToken | None = None,
    checkpoint_dir: str | Path | None = None,
) -> CompressionResult:
    """Run the whole method on ``spec`` and write the compressed model and report to ``out_dir``.

    Args:
        reporter: receives stages, progress and events (default: ignored).
        cancel: polled between batches; when it fires the run raises ``CompressionCancelled``.
        checkpoint_dir: where the fine-tuned teacher and the sweep's caches are kept, so a run
            restarted with the same spec and directory resumes instead of starting over; a run
            of other inputs (spec or files) clears them first (:mod:`.checkpoints`).

    Raises:
        InvalidInputError: the model, the data or the spec cannot be used (``.code``, ``.param``).
        CompressionCancelled: the cancel token fired.
    """
    out = Path(out_dir)
    check_out_dir(out)
    checkpoints = Path(checkpoint_dir) if checkpoint_dir else None
    tracker = ProgressTracker(reporter or NullReporter(), cancel or NeverCancel())
    if checkpoints is not None:
        claim_checkpoints(checkpoints, spec, tracker)
    clock = StageClock(tracker)
    with clock.stage("preparing"):
        prepared = prepare(spec, tracker)
    if prepared.needs_teacher:
        with clock.stage("fine_tuning_teacher"):
            teacher = fine_tune_teacher(prepared, tracker, checkpoints)
    else:
        tracker.skip("fine_tuning_teacher")
        teacher = keep_teacher(prepared)
    with clock.stage("evaluating_baseline"):
        baseline = evaluate_baseline(prepared, teacher, tracker)
    with clock.stage("sweeping"):
        strategies = build_strategies(spec.walked_strategies(), spec.options)
        swept = run_sweep(prepared, teacher, baseline, strategies, tracker, checkpoints)
    with clock.stage("fusing"):
        fused = fuse(prepared, swept, tracker)
    with clock.stage("selecting"):
        selected = select_depth(prepared, baseline, fused, tracker)
    with clock.stage("distilling"):
        recovered = recover(prepared, teacher, selected, tracker)
    with clock.stage("exporting"):
        latency = prepared.compare_latency(teacher.model, recovered.student)
        exported = export(prepared, baseline, recovered, out, tracker, latency)
        report = assemble_report(
            prepared, teacher, baseline, fused, selected, recovered, exported, clock.timings()
        )
        artifacts = write_outputs(report, out, tracker)
    summary = report.summary(artifacts).model_dump(mode="json")
    return CompressionResult(out, report, summary, artifacts)


def assemble_report(
    prepared: Prepared,
    teacher: Teacher,
    baseline: Baseline,
    fused: Fused,
    selected: Selected,
    recovered: Recovered,
    exported: Exported,
    timings: dict[str, float],
) -> Report:
    """``report.json`` from every stage's hand-off."""
    sweep = fused.sweep
    return Report(
        model=prepared.model_report,
        dataset=prepared.dataset_report,
        options=prepared.options_report,
        teacher=teacher.report,
        baseline=with_latency(baseline.report, exported.final.latency),
        fusion=fused.report,
        strategies=selected.strategies,
        probe=fused.swept.probe_report(),
        signals=fused.swept.signals_report(),
        selection=recovered.selection,
        distillation=recovered.report,
        recovery=recovered.recovery,
        final=exported.final,
        export=exported.export,
        formats=exported.formats,
        timings=timings,
        sweep=SweepStats(measurements=sweep.measurements, cache_hits=sweep.cache_hits),
    )


def with_latency(baseline: BaselineReport, latency: LatencyComparison | None) -> BaselineReport:
    """The baseline with the original's milliseconds from the side-by-side timing at export, so
    the report's two latencies were measured under the same load."""
    if latency is None:
        return baseline
    return baseline.model_copy(update={"latency_ms": sides(latency)[0]})
