"""Part of stage 8, ``exporting``: the formats table, one row per format with its real file size,
its accuracy measured in that format, its CPU latency and its accuracy-to-size ratio; and the
int8 ONNX model, flagged when it loses more than the tolerance against fp32.

With a trimmed vocabulary every format is measured twice: untrimmed (``hf-fp32``, ...) and
trimmed (``hf-fp32-trimmed``, ...). Only the trimmed files are written as the product (they are
what was asked for); the untrimmed rows are measured on temporary files, kept for comparison, and
have ``file: null``.
"""

from __future__ import annotations

from pathlib import Path

from .. import onnx_export, quantization
from ..evaluation import EvalSet
from ..progress import ProgressTracker
from ..report import Evaluation, FormatReport, Latency

# The ONNX files live in the Hugging Face directory's ``onnx/`` folder, so model.zip carries
# them and a loader of the directory ignores them.
ONNX_DIR = "onnx"
ONNX_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
TRIMMED = "-trimmed"
MIB = 2**20


def accuracy_to_size(accuracy: float, size_bytes: int) -> float:
    """Accuracy in % per MB (2^20 bytes) of the real file."""
    return 100 * accuracy / (size_bytes / MIB)


def hf_row(
    file: str | None, size: int, metrics: Evaluation, latency: Latency | None
) -> FormatReport:
    """The Hugging Face weights, with the PyTorch metrics measured on them."""
    return _row(
        file=file,
        size=size,
        validation=metrics.validation["accuracy"],
        test=metrics.test["accuracy"] if metrics.test else None,
        latency=latency,
    )


def onnx_rows(
    fp32: Path,
    fp32_latency: Latency,
    validation: EvalSet,
    test: EvalSet | None,
    int8_tolerance: float | None,
    tracker: ProgressTracker,
    *,
    root: Path | None,
    suffix: str = "",
) -> dict[str, FormatReport]:
    """``onnx-fp32`` measured with onnxruntime, and ``onnx-int8`` (quantized next to ``fp32``)
    when a tolerance is given; ids end in ``suffix``.

    ``root`` is the run's output folder, for the rows' file names; ``None`` when the files are
    measured only (the untrimmed variants): no artifact is announced and ``file`` is null.
    """
    fp32_row = _measured(fp32, validation, test, fp32_latency, root)
    rows = {f"onnx-fp32{suffix}": fp32_row}
    if int8_tolerance is None:
        return rows
    int8 = fp32.with_name(INT8_FILE)
    quantization.quantize_int8(fp32, int8)
    int8_row = _measured(int8, validation, test, None, root)
    loss = max(
        fp32_row.validation_accuracy - int8_row.validation_accuracy,
        (fp32_row.test_accuracy or 0.0) - (int8_row.test_accuracy or 0.0),
    )
    within = loss <= int8_tolerance
    rows[f"onnx-int8{suffix}"] = int8_row.model_copy(update={"within_tolerance": within})
    if root is not None:
        name = int8_row.file
        tracker.event("artifact", f"wrote {name}", name=name, bytes=int8_row.bytes)
    if not within:
        variant = " with the full vocabulary" if root is None else ""
        tracker.warn(
            f"the int8 model{variant} loses {100 * loss:.2f} accuracy points against fp32 "
            f"(tolerance {100 * int8_tolerance:.2f})",
            accuracy_loss=loss,
        )
    return rows


def _measured(
    path: Path,
    validation: EvalSet,
    test: EvalSet | None,
    latency: Latency | None,
    root: Path | None,
) -> FormatReport:
    session = onnx_export.OnnxModel(path)
    return _row(
        file=str(path.relative_to(root)) if root is not None else None,
        size=path.stat().st_size,
        validation=quantization.onnx_metrics(session, validation)["accuracy"],
        test=quantization.onnx_metrics(session, test)["accuracy"] if test else None,
        latency=latency or onnx_export.latency_ms(session, validation.encoded),
    )


def _row(
    file: str | None, size: int, validation: float, test: float | None, latency: Latency | None
) -> FormatReport:
    basis = test if test is not None else validation
    return FormatReport(
        file=file,
        bytes=size,
        validation_accuracy=validation,
        test_accuracy=test,
        latency_ms=latency,
        accuracy_to_size_ratio=accuracy_to_size(basis, size),
    )
