"""Stage 8, ``exporting``: the compressed model as files, checked on reload, and its final
metrics; then the report and everything derived from it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedModel

from .. import artifacts, onnx_export
from ..device import Runtime
from ..errors import LayerfuseError
from ..evaluation import latency_ms, parameter_count, size_mb
from ..latency import sides
from ..models import reload_max_abs_diff, save_model
from ..progress import ProgressTracker
from ..report import ExportReport, FinalReport, LatencyComparison, OnnxReport, Report
from .distilling import Recovered
from .evaluating_baseline import Baseline
from .preparing import Prepared

MODEL_DIR = "model"
ONNX_FILE = "model.onnx"
# A reloaded export whose logits differ by more than this was not saved faithfully (a layer
# re-initialised, a wrong config); bf16 vs fp32 noise stays orders of magnitude below it.
MAX_RELOAD_DIFF = 1e-2
FACTOR_NOTE = (
    "Layer pruning alone cannot reach the paper's 18.84x: the embeddings stay. "
    "The factor is reported as measured."
)
ONNX_CHECK_BATCHES = 4


@dataclass(frozen=True)
class Exported:
    final: FinalReport
    export: ExportReport


def export(
    prepared: Prepared,
    baseline: Baseline,
    recovered: Recovered,
    out_dir: Path,
    tracker: ProgressTracker,
    latency: LatencyComparison | None = None,
) -> Exported:
    """Write ``out_dir/model/`` (and ``model.onnx`` when asked) and measure the final model.

    Raises:
        LayerfuseError: a written model does not reproduce the trained one's logits.
    """
    student = recovered.student
    model_dir = out_dir / MODEL_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(student, prepared.loaded.tokenizer, model_dir)
    diff = reload_max_abs_diff(model_dir, student, prepared.validation.batches[0].inputs)
    if diff > MAX_RELOAD_DIFF:
        raise LayerfuseError(
            f"the saved model's logits differ from the trained model's by {diff:.2e}",
            code="export_failed",
        )
    final = _final_report(prepared, baseline, recovered, model_dir, latency)
    formats = prepared.spec.export.formats
    onnx = (
        _export_onnx(prepared, student, out_dir / ONNX_FILE, tracker) if "onnx" in formats else None
    )
    return Exported(final, ExportReport(formats=formats, reload_max_abs_logit_diff=diff, onnx=onnx))


def _final_report(
    prepared: Prepared,
    baseline: Baseline,
    recovered: Recovered,
    model_dir: Path,
    latency: LatencyComparison | None,
) -> FinalReport:
    """The exported model's metrics, and its accuracy-to-size ratio against the original's."""
    parameters = parameter_count(recovered.student)
    final_size = size_mb(parameters)
    after = recovered.metrics
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
        improvement_factor=final_ratio / original_ratio,
        ratio_basis=f"{basis} accuracy in % / size in MB",
        note=FACTOR_NOTE,
    )


def _export_onnx(
    prepared: Prepared, student: PreTrainedModel, path: Path, tracker: ProgressTracker
) -> OnnxReport:
    """model.onnx from an fp32 CPU copy of the student, checked against PyTorch's logits."""
    cpu = Runtime(torch.device("cpu"), bf16=False)
    model = copy.deepcopy(student).float().cpu().eval()
    model.set_attn_implementation("sdpa")
    encoded, batches = prepared.validation.encoded, prepared.validation.batches
    pytorch_latency = latency_ms(model, encoded, cpu)  # before onnxruntime runs
    onnx_export.export_onnx(model, batches[-1], path)
    session = onnx_export.OnnxModel(path)
    checked = batches[:ONNX_CHECK_BATCHES]
    diff = onnx_export.max_abs_diff(session, model, checked)
    if diff > onnx_export.TOLERANCE:
        raise LayerfuseError(
            f"model.onnx differs from the PyTorch model by {diff:.2e} in logits "
            f"(tolerance {onnx_export.TOLERANCE:.0e})",
            code="export_onnx_mismatch",
        )
    tracker.event(
        "artifact",
        f"wrote model.onnx (max logit difference to PyTorch {diff:.1e})",
        name=ONNX_FILE,
        max_abs_diff=diff,
    )
    return OnnxReport(
        file=path.name,
        bytes=path.stat().st_size,
        opset=onnx_export.OPSET,
        max_abs_logit_diff=diff,
        tolerance=onnx_export.TOLERANCE,
        checked_examples=sum(len(b) for b in checked),
        latency_ms={
            "onnxruntime_cpu": onnx_export.latency_ms(session, encoded),
            "pytorch_cpu_fp32": pytorch_latency,
        },
    )


def write_outputs(report: Report, out_dir: Path, tracker: ProgressTracker) -> list[str]:
    """The report, model card (also as ``model/README.md``), signals.csv and plots; returns
    every file the run left in ``out_dir``, by name relative to it."""
    artifacts.write_all(report, out_dir, model_dir=out_dir / MODEL_DIR)
    for name in artifacts.REPORT_FILES:
        tracker.event("artifact", f"wrote {name}", name=name)
    names = [*artifacts.REPORT_FILES, *([ONNX_FILE] if report.export.onnx else [])]
    model_files = sorted(p.name for p in (out_dir / MODEL_DIR).iterdir() if p.is_file())
    return sorted(names + [f"{MODEL_DIR}/{name}" for name in model_files])
