"""Part of stage 8, ``exporting``: the formats table, one row per written format with its real
file size, its accuracy measured in that format, its CPU latency and its accuracy-to-size ratio;
and the int8 ONNX model, flagged when it loses more than the tolerance against fp32."""

from __future__ import annotations

from pathlib import Path

from .. import onnx_export, quantization
from ..evaluation import EvalSet
from ..progress import ProgressTracker
from ..report import FinalReport, FormatReport, Latency

INT8_FILE = "model_int8.onnx"
MIB = 2**20


def hf_row(model_dir: Path, final: FinalReport) -> FormatReport:
    """The Hugging Face directory's weights, with the final (PyTorch) metrics."""
    return _row(
        file=f"{model_dir.name}/model.safetensors",
        size=final.safetensors_bytes,
        validation=final.validation["accuracy"],
        test=final.test["accuracy"] if final.test else None,
        latency=final.latency_ms,
    )


def onnx_rows(
    fp32: Path,
    fp32_latency: Latency,
    validation: EvalSet,
    test: EvalSet | None,
    int8_tolerance: float | None,
    tracker: ProgressTracker,
) -> dict[str, FormatReport]:
    """``onnx-fp32`` measured with onnxruntime, and ``onnx-int8`` when a tolerance is given."""
    fp32_row = _measured(fp32, validation, test, fp32_latency)
    rows = {"onnx-fp32": fp32_row}
    if int8_tolerance is None:
        return rows
    int8 = fp32.with_name(INT8_FILE)
    quantization.quantize_int8(fp32, int8)
    int8_row = _measured(int8, validation, test, None)
    loss = max(
        fp32_row.validation_accuracy - int8_row.validation_accuracy,
        (fp32_row.test_accuracy or 0.0) - (int8_row.test_accuracy or 0.0),
    )
    within = loss <= int8_tolerance
    rows["onnx-int8"] = int8_row.model_copy(update={"within_tolerance": within})
    tracker.event("artifact", f"wrote {INT8_FILE}", name=INT8_FILE, bytes=int8_row.bytes)
    if not within:
        tracker.warn(
            f"the int8 model loses {100 * loss:.2f} accuracy points against fp32 "
            f"(tolerance {100 * int8_tolerance:.2f})",
            accuracy_loss=loss,
        )
    return rows


def _measured(
    path: Path, validation: EvalSet, test: EvalSet | None, latency: Latency | None
) -> FormatReport:
    session = onnx_export.OnnxModel(path)
    return _row(
        file=path.name,
        size=path.stat().st_size,
        validation=quantization.onnx_metrics(session, validation)["accuracy"],
        test=quantization.onnx_metrics(session, test)["accuracy"] if test else None,
        latency=latency or onnx_export.latency_ms(session, validation.encoded),
    )


def _row(
    file: str, size: int, validation: float, test: float | None, latency: Latency | None
) -> FormatReport:
    basis = test if test is not None else validation
    return FormatReport(
        file=file,
        bytes=size,
        validation_accuracy=validation,
        test_accuracy=test,
        latency_ms=latency,
        accuracy_to_size_ratio=100 * basis / (size / MIB),
    )
