"""Metrics of a model on a tokenized split: accuracy, macro-F1, loss; and latency."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from .batching import Batch, Encoded
from .device import Runtime
from .report import Latency, Metrics


@contextlib.contextmanager
def fast_attention(model: nn.Module) -> Iterator[None]:
    """Inference through sdpa attention. Models load with eager attention because the signals
    read its probabilities and its backward is faster on CPUs. sdpa's forward gains with the
    sequence: MiniLM in bf16 on an AVX512-BF16 CPU, 600 IMDB reviews, sdpa against eager took
    38.6 against 59.6 s at max_length 512, 26.1 against 31.6 at 256, the same at 128 (the
    default) and 5% longer at 64."""
    previous = model.config._attn_implementation  # type: ignore[union-attr]
    if previous != "sdpa":
        model.set_attn_implementation("sdpa")  # type: ignore[operator]
    try:
        yield
    finally:
        if previous != "sdpa":
            model.set_attn_implementation(previous)  # type: ignore[operator]


@torch.no_grad()
def predict(
    model: nn.Module,
    batches: list[Batch],
    runtime: Runtime,
    n: int,
    on_batch: Callable[[float], None] = lambda fraction: None,
) -> torch.Tensor:
    """Logits for every example, in split order: (n, num_labels) float32 on the CPU."""
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    # One autocast region for the whole pass: autocast caches each weight's bf16 cast until the
    # region ends, so the weights are cast once, not once per batch (about 10% of a bf16
    # evaluation of MiniLM on an AMX CPU). Sound only because nothing updates them in between.
    with fast_attention(model), runtime.autocast():
        for i, batch in enumerate(batches):
            logits = model(**batch.to(runtime.device).inputs).logits.float().cpu()
            if out is None:
                out = torch.empty((n, logits.shape[1]), dtype=torch.float32)
            out[batch.indices] = logits
            on_batch((i + 1) / len(batches))
    model.train(was_training)
    assert out is not None, "no batches to predict"
    return out


def score(logits: torch.Tensor, labels: list[int]) -> Metrics:
    y = torch.tensor(labels)
    predicted = logits.argmax(dim=-1)
    return {
        "accuracy": float((predicted == y).float().mean()),
        "macro_f1": float(
            f1_score(
                y.numpy(),
                predicted.numpy(),
                average="macro",
                labels=np.arange(logits.shape[1]),
                zero_division=0,
            )
        ),
        "loss": float(F.cross_entropy(logits, y)),
    }


class EvalSet:
    """A split prepared once for repeated evaluation (fixed, length-sorted batches)."""

    def __init__(self, encoded: Encoded, batch_size: int):
        self.encoded = encoded
        self.batches = encoded.sorted_batches(batch_size)

    def evaluate(
        self,
        model: nn.Module,
        runtime: Runtime,
        on_batch: Callable[[float], None] = lambda fraction: None,
    ) -> Metrics:
        logits = predict(model, self.batches, runtime, len(self.encoded), on_batch)
        return score(logits, self.encoded.labels)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_mb(parameters: int) -> float:
    """fp32 size in MB as method.md defines it: parameters × 4 / 2²⁰."""
    return parameters * 4 / 2**20


def time_batches(
    run: Callable[[Batch], object],
    encoded: Encoded,
    repeats: int = 10,
    prepare: Callable[[Batch], Batch] = lambda batch: batch,
    sync: Callable[[], None] = lambda: None,
) -> Latency:
    """Mean milliseconds of ``run`` per batch of 1 and of 32 real examples, after a warm-up.

    ``prepare`` (moving the batch to a device) happens before the clock starts; ``sync`` waits for
    queued device work so the clock measures it.
    """
    result: dict[str, float] = {}
    for size, key in ((1, "batch_1"), (32, "batch_32")):
        batch = prepare(encoded.collate(list(range(min(size, len(encoded))))))
        runs = repeats if size == 1 else max(2, repeats // 3)
        for _ in range(2):
            run(batch)
        sync()
        start = time.perf_counter()
        for _ in range(runs):
            run(batch)
        sync()
        result[key] = (time.perf_counter() - start) * 1000 / runs
    return Latency(batch_1=result["batch_1"], batch_32=result["batch_32"])


@torch.no_grad()
def latency_ms(model: nn.Module, encoded: Encoded, runtime: Runtime, repeats: int = 10) -> Latency:
    """Mean milliseconds per batch of 1 and of 32 on the run's device and precision."""
    model.eval()

    def run(batch: Batch) -> None:
        with runtime.autocast():
            model(**batch.inputs)

    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)
    with fast_attention(model):
        return time_batches(run, encoded, repeats, lambda b: b.to(runtime.device), sync)
