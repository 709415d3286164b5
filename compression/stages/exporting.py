from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from transformers import PreTrainedModel

from .. import artifacts, onnx_export
from ..errors import LayerfuseError
from ..evaluation import EvalSet, latency_ms, parameter_count, size_mb
from ..latency import sides
from ..models import reload_max_abs_diff, save_model
from ..progress import ProgressTracker
from ..report import (
    Evaluation,
    ExportReport,
    FinalReport,
    FormatReport,
    LatencyComparison,
    OnnxReport,
    Report,
)
from .distilling import Recovered
from .evaluating_baseline import Baseline
from .exporting_formats import ONNX_DIR, ONNX_FILE, TRIMMED, hf_row, onnx_rows
from .exporting_vocabulary import trim_export
from .preparing import Prepared

MODEL_DIR = "model"
WEIGHTS_FILE = "model.safetensors"
# A reloaded export whose logits differ by more than this was not saved faithfully (a layer
# re-initialised, a wrong config); bf16 vs fp32 noise stays orders of magnitude below it.
MAX_RELOAD_DIFF = 1e-2
FACTOR_NOTE = (
    "Layer pruning alone cannot reach the paper's 18.84x: the embeddings stay. "
    "The factor is reported as measured."
)


@dataclass(frozen=True)
class Exported:
    final: FinalReport
    export: ExportReport
    formats: dict[str, FormatReport]


def export(
    prepared: Prepared,
    baseline: Baseline,
    recovered: Recovered,
    out_dir: Path,
    tracker: ProgressTracker,
    latency: LatencyComparison | None = None,
) -> Exported:
    """Write ``out_dir/model/`` in place of what was there (its vocabulary trimmed when asked;
    ``onnx/model.onnx`` and ``onnx/model_int8.onnx`` in it when asked) and measure the final
    model and every format.

    With a trimmed vocabulary the untrimmed formats are measured first (on temporary files, for
    the formats table) and the trimmed ones are written.

    Raises:
        LayerfuseError: a written model does not reproduce the trained one's logits.
    """
    student = recovered.student
    model_dir = out_dir / MODEL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    # model/ is this run's alone: an earlier run's files left in it (an ONNX export this run did
    # not ask for) would be listed, and downloaded, as this run's output.
    shutil.rmtree(model_dir, ignore_errors=True)
    save_model(student, prepared.loaded.tokenizer, model_dir)
    validation, test, metrics = prepared.validation, prepared.test, recovered.metrics
    options = prepared.spec.export
    table: dict[str, FormatReport] = {}
    vocabulary = None
    suffix = ""
    if options.vocabulary == "trim":
        table = _untrimmed_rows(prepared, recovered, latency, model_dir, tracker)
        trimmed = trim_export(prepared, student, recovered.metrics, model_dir, tracker)
        validation, test, metrics = trimmed.validation, trimmed.test, trimmed.metrics
        vocabulary = trimmed.report
        suffix = TRIMMED
    diff = _check_reload(model_dir, student, validation)
    final = _final_report(prepared, baseline, recovered, metrics, latency, model_dir)
    hf_latency = final.latency_ms
    if suffix and latency is not None:
        # The side-by-side timing ran before trimming; the trimmed model is timed on its own.
        hf_latency = latency_ms(student, validation.encoded, prepared.runtime)
    table[f"hf-fp32{suffix}"] = hf_row(
        f"{MODEL_DIR}/{WEIGHTS_FILE}", final.safetensors_bytes, metrics, hf_latency
    )
    onnx = None
    if "onnx" in options.formats:
        path = model_dir / ONNX_DIR / ONNX_FILE
        onnx = onnx_export.export_checked(student, validation, path)
        # Named as the formats rows and the artifacts name it: relative to the job's output.
        onnx = onnx.model_copy(update={"file": str(path.relative_to(out_dir))})
        _announce(onnx, path.relative_to(out_dir), tracker)
        table |= onnx_rows(
            path,
            onnx.latency_ms["onnxruntime_cpu"],
            validation,
            test,
            _int8_tolerance(prepared),
            tracker,
            root=out_dir,
            suffix=suffix,
        )
    report = ExportReport(
        formats=options.formats, reload_max_abs_logit_diff=diff, onnx=onnx, vocabulary=vocabulary
    )
    return Exported(final, report, table)


def _untrimmed_rows(
    prepared: Prepared,
    recovered: Recovered,
    latency: LatencyComparison | None,
    model_dir: Path,
    tracker: ProgressTracker,
) -> dict[str, FormatReport]:
    """The formats of the model before trimming: the weights just saved in ``model_dir`` (soon
    rewritten) and the ONNX files, exported and measured in a temporary folder."""
    size = (model_dir / WEIGHTS_FILE).stat().st_size
    hf_latency = sides(latency)[1] if latency else None
    rows = {"hf-fp32": hf_row(None, size, recovered.metrics, hf_latency)}
    if "onnx" not in prepared.spec.export.formats:
        return rows
    with tempfile.TemporaryDirectory(prefix="layerfuse-untrimmed-") as tmp:
        path = Path(tmp) / ONNX_FILE
        onnx = onnx_export.export_checked(recovered.student, prepared.validation, path)
        fp32_latency = onnx.latency_ms["onnxruntime_cpu"]
        tolerance = _int8_tolerance(prepared)
        validation, test = prepared.validation, prepared.test
        rows |= onnx_rows(path, fp32_latency, validation, test, tolerance, tracker, root=None)
    return rows


def _int8_tolerance(prepared: Prepared) -> float | None:
    """The int8 tolerance when int8 is asked, else ``None`` (no int8 file)."""
    options = prepared.spec.export
    return options.int8_tolerance if "onnx-int8" in options.formats else None


def _announce(onnx: OnnxReport, name: Path, tracker: ProgressTracker) -> None:
    diff = onnx.max_abs_logit_diff
    tracker.event(
        "artifact",
        f"wrote {name} (max logit difference to PyTorch {diff:.1e})",
        name=str(name),
        max_abs_diff=diff,
    )


def _check_reload(model_dir: Path, student: PreTrainedModel, validation: EvalSet) -> float:
    diff = reload_max_abs_diff(model_dir, student, validation.batches[0].inputs)
    if diff > MAX_RELOAD_DIFF:
        raise LayerfuseError(
            f"the saved model's logits differ from the trained model's by {diff:.2e}",
            code="export_failed",
        )
    return diff


def _final_report(
    prepared: Prepared,
    baseline: Baseline,
    recovered: Recovered,
    after: Evaluation,
    latency: LatencyComparison | None,
    model_dir: Path,
) -> FinalReport:
    """The exported model's metrics, and its accuracy-to-size ratio against the original's."""
    parameters = parameter_count(recovered.student)
    final_size = size_mb(parameters)
    basis = "test" if after.test else "validation"
    original = baseline.report.test if basis == "test" else baseline.report.validation
    final = after.test if basis == "test" else after.validation
    assert original is not None and final is not None
    original_ratio = 100 * original["accuracy"] / size_mb(prepared.parameters)
    final_ratio = 100 * final["accuracy"] / final_size
    return FinalReport(
        validation=after.validation,
        test=after.test,
        num_layers=len(recovered.kept_layers),
        parameters=parameters,
        size_mb=final_size,
        safetensors_bytes=sum(p.stat().st_size for p in model_dir.glob("*.safetensors")),
        latency_ms=sides(latency)[1] if latency else None,
        latency=latency,
        accuracy_to_size_ratio=final_ratio,
        original_accuracy_to_size_ratio=original_ratio,
        improvement_factor=final_ratio / original_ratio if original_ratio else None,
        ratio_basis=f"{basis} accuracy in % / size in MB",
        note=FACTOR_NOTE,
    )


def write_outputs(report: Report, out_dir: Path, tracker: ProgressTracker) -> list[str]:
    """The report, model card (also as ``model/README.md``), signals.csv and plots; returns
    every file the run left in ``out_dir``, by name relative to it (``model/onnx/...`` too)."""
    artifacts.write_all(report, out_dir, model_dir=out_dir / MODEL_DIR)
    for name in artifacts.REPORT_FILES:
        tracker.event("artifact", f"wrote {name}", name=name)
    model_files = [
        str(p.relative_to(out_dir))
        for folder in (out_dir / MODEL_DIR, out_dir / MODEL_DIR / ONNX_DIR)
        if folder.is_dir()
        for p in folder.iterdir()
        if p.is_file()
    ]
    return sorted([*artifacts.REPORT_FILES, *model_files])
