"""ONNX export of the compressed model, verified against PyTorch and timed with onnxruntime.

Needs the ``onnx`` extra (onnx, onnxscript, onnxruntime); :func:`check_available` says so up
front, before a run spends any time.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedModel

from .batching import Batch, Encoded
from .device import Runtime
from .errors import InvalidInputError, LayerfuseError
from .evaluation import EvalSet, time_batches
from .evaluation import latency_ms as pytorch_latency_ms
from .report import Latency, OnnxReport

OPSET = 18
# fp32 on both sides; what remains is summation order. A wrong graph is off by orders more.
TOLERANCE = 1e-4
CHECK_BATCHES = 4


def check_available() -> None:
    missing = [
        m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None
    ]
    if missing:
        raise InvalidInputError(
            f"ONNX export needs {', '.join(missing)}: install layerfuse with the 'onnx' extra "
            "(pip install 'layerfuse[onnx]') or drop 'onnx' from export.formats",
            code="export_onnx_unavailable",
            param="export.formats",
        )


class _Logits(nn.Module):
    """The classifier with plain tensor inputs and the logits as its only output."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits


def export_onnx(model: nn.Module, sample: Batch, path: Path) -> None:
    """Write ``model`` (fp32, CPU, eval) to ``path`` with dynamic batch and sequence axes."""
    wrapper = _Logits(model).eval()
    inputs = {k: v.cpu() for k, v in sample.inputs.items()}
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    # The exporter reports its steps with print() and warns that the axes share constraints
    # (they do: every input is (batch, sequence)); neither is for a library's caller.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _export(wrapper, inputs, path, {name: {0: batch, 1: sequence} for name in inputs})


def _export(wrapper: nn.Module, inputs: dict[str, torch.Tensor], path: Path, shapes: dict) -> None:
    torch.onnx.export(
        wrapper,
        args=(),
        kwargs=inputs,
        f=str(path),
        input_names=list(inputs),
        output_names=["logits"],
        dynamic_shapes=shapes,
        opset_version=OPSET,
        dynamo=True,
        external_data=False,
        verbose=False,
    )


class OnnxModel:
    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle onnxruntime threads spin for a while by default, taking the cores from whatever
        # runs next (a PyTorch timing, the next job's batches).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # As many threads as PyTorch uses, so the two are timed alike: onnxruntime's own default
        # is every physical core, whatever OMP_NUM_THREADS or torch.set_num_threads say.
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, batch: Batch) -> np.ndarray:
        feeds = {name: batch.inputs[name].cpu().numpy() for name in self.names}
        return self.session.run(["logits"], feeds)[0]


@torch.no_grad()
def max_abs_diff(onnx_model: OnnxModel, model: nn.Module, batches: list[Batch]) -> float:
    """Largest logit difference between onnxruntime and PyTorch (fp32, CPU) over ``batches``."""
    worst = 0.0
    for batch in batches:
        expected = model(**{k: v.cpu() for k, v in batch.inputs.items()}).logits.float().numpy()
        worst = max(worst, float(np.abs(onnx_model(batch) - expected).max()))
    return worst


def latency_ms(onnx_model: OnnxModel, encoded: Encoded, repeats: int = 10) -> Latency:
    """Mean onnxruntime CPU milliseconds per batch of 1 and of 32, after a warm-up."""
    return time_batches(onnx_model, encoded, repeats)


def export_checked(model: PreTrainedModel, validation: EvalSet, path: Path) -> OnnxReport:
    """Write ``path`` from an fp32 CPU copy of ``model``, checked against PyTorch's logits on
    the first validation batches, and both timed on the CPU.

    Raises:
        LayerfuseError: ``export_onnx_mismatch``, the file's logits are not the model's.
    """
    cpu = Runtime(torch.device("cpu"), bf16=False)
    fp32 = copy.deepcopy(model).float().cpu().eval()
    fp32.set_attn_implementation("sdpa")
    encoded, batches = validation.encoded, validation.batches
    pytorch_latency = pytorch_latency_ms(fp32, encoded, cpu)  # before onnxruntime runs
    path.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(fp32, batches[-1], path)
    session = OnnxModel(path)
    checked = batches[:CHECK_BATCHES]
    diff = max_abs_diff(session, fp32, checked)
    if diff > TOLERANCE:
        raise LayerfuseError(
            f"{path.name} differs from the PyTorch model by {diff:.2e} in logits "
            f"(tolerance {TOLERANCE:.0e})",
            code="export_onnx_mismatch",
        )
    return OnnxReport(
        file=path.name,
        bytes=path.stat().st_size,
        opset=OPSET,
        max_abs_logit_diff=diff,
        tolerance=TOLERANCE,
        checked_examples=sum(len(b) for b in checked),
        latency_ms={
            "onnxruntime_cpu": latency_ms(session, encoded),
            "pytorch_cpu_fp32": pytorch_latency,
        },
    )
