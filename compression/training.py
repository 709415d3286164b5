"""Training loops: fine-tuning the teacher and distilling it into the pruned student.

Both use AdamW with linear decay after a 6% warm-up, keep the best epoch by validation accuracy
(epoch 0, the starting weights, included: a run never ends worse on validation than it began),
and honour cancellation between batches through ``on_batch``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from .architectures import attention_heads
from .batching import Batch, Encoded, attention_slices
from .device import Runtime
from .evaluation import EvalSet
from .fast_dropout import cpu_dropout
from .progress import ProgressTracker
from .report import EpochMetrics, Metrics, StoppedBy
from .seen_rows import seen_rows

WARMUP_FRACTION = 0.06
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0


def default_learning_rate(parameters: int) -> float:
    """method.md: 5e-5 for models under 50M parameters, else 2e-5."""
    return 5e-5 if parameters < 50_000_000 else 2e-5


@dataclass
class Distill:
    """Knowledge-distillation settings; ``teacher_logits`` are (n_train, labels), computed once."""

    teacher_logits: torch.Tensor
    temperature: float
    alpha: float


class ExtraLoss(Protocol):
    """A term added to the training loss (the hidden-state and attention terms of recovery).

    ``forward_kwargs`` are passed to the model's forward (``output_hidden_states=True``) so the
    term can read what it needs from the outputs. The term is a mean over the batch's valid
    tokens, which lets a long batch run as slices (each weighted by its share of the tokens).
    """

    forward_kwargs: dict[str, bool]

    def __call__(self, outputs: Any, batch: Batch) -> torch.Tensor: ...


@dataclass
class TrainResult:
    best_epoch: int
    epochs_run: int
    best: Metrics
    history: list[EpochMetrics] = field(default_factory=list)
    stopped_by: StoppedBy = "max-epochs"

    def best_by_epoch(self) -> list[float]:
        """The best validation accuracy reached by each epoch (index 0: the starting weights)."""
        best, curve = float("-inf"), []
        for row in self.history:
            best = max(best, float(row["accuracy"]))
            curve.append(best)
        return curve


def epoch_events(tracker: ProgressTracker, what: str) -> Callable[[int, Metrics], None]:
    """An ``on_epoch`` callback that reports each epoch's validation metrics as an event."""

    def on_epoch(epoch: int, metrics: Metrics) -> None:
        tracker.event(
            "metrics",
            f"{what} epoch {epoch}: validation accuracy {metrics['accuracy']:.3f}",
            epoch=epoch,
            val_accuracy=metrics["accuracy"],
            val_loss=metrics["loss"],
        )

    return on_epoch


def kd_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
) -> torch.Tensor:
    """α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)."""
    kl = F.kl_div(
        F.log_softmax(student / temperature, dim=-1),
        F.log_softmax(teacher / temperature, dim=-1),
        log_target=True,
        reduction="batchmean",
    )
    return alpha * temperature**2 * kl + (1 - alpha) * F.cross_entropy(student, labels)


def train(
    model: nn.Module,
    data: Encoded,
    validation: EvalSet,
    runtime: Runtime,
    *,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
    distill: Distill | None = None,
    extra_loss: ExtraLoss | None = None,
    patience: int | None = None,
    keep_going: Callable[[int, float], bool] = lambda epoch, best: True,
    on_batch: Callable[[float], None] = lambda fraction: None,
    on_epoch: Callable[[int, Metrics], None] = lambda epoch, metrics: None,
) -> TrainResult:
    """Train ``model`` in place and leave it at its best epoch by validation accuracy.

    Args:
        extra_loss: added to the cross-entropy or distillation loss of every batch.
        patience: stop once this many epochs in a row have not improved on the best; the
            learning-rate schedule still spans ``epochs``, so stopping early changes no step.
    """
    torch.manual_seed(seed)
    rng = random.Random(seed)
    # Only the embedding rows this data contains can change; training just those is the same
    # run in 13-15% less time per step on MiniLM (see seen_rows).
    with seen_rows(model, data.input_ids):
        steps_per_epoch = -(-len(data) // batch_size)
        total = steps_per_epoch * epochs
        warmup = max(1, int(WARMUP_FRACTION * total))
        # The fused kernel updates every parameter in one pass; the default per-tensor loop on CPUs
        # cost ~16% of a MiniLM training step (benchmarks/throughput.py).
        optimizer = torch.optim.AdamW(
            model.parameters(), lr=learning_rate, weight_decay=WEIGHT_DECAY, fused=True
        )
        # max(1, ...): a run of one step is all warm-up, and its decay would divide by zero.
        decay_steps = max(1, total - warmup)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / decay_steps),
        )
        best = validation.evaluate(model, runtime)
        result = TrainResult(0, 0, best, [_row(0, best)])
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        step = 0
        heads = attention_heads(model)
        for epoch in range(1, epochs + 1):
            model.train()
            for batch in data.shuffled_batches(batch_size, rng):
                batch = batch.to(runtime.device)
                optimizer.zero_grad(set_to_none=True)
                # One step per batch; a long batch's gradient is accumulated over row slices.
                tokens = batch.inputs["attention_mask"].sum()
                for part in attention_slices(batch, heads):
                    shares = (len(part) / len(batch), part.inputs["attention_mask"].sum() / tokens)
                    _loss(model, part, runtime, distill, extra_loss, shares).backward()
                # foreach: one batched norm instead of a norm per parameter (not the CPU default).
                torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM, foreach=True)
                optimizer.step()
                scheduler.step()
                step += 1
                on_batch(step / total)
            metrics = validation.evaluate(model, runtime)
            result.history.append(_row(epoch, metrics))
            result.epochs_run = epoch
            on_epoch(epoch, metrics)
            if metrics["accuracy"] > result.best["accuracy"]:
                result.best, result.best_epoch = metrics, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            elif patience is not None and epoch - result.best_epoch >= patience:
                result.stopped_by = "early-stopping"
                break
            if epoch < epochs and not keep_going(epoch, result.best["accuracy"]):
                result.stopped_by = "race"
                break
        model.load_state_dict(best_state)
    model.eval()
    return result


def _loss(
    model: nn.Module,
    batch: Batch,
    runtime: Runtime,
    distill: Distill | None,
    extra_loss: ExtraLoss | None,
    shares: tuple[float, torch.Tensor],
) -> torch.Tensor:
    """One batch's training loss: cross-entropy or distillation, plus the extra term; for a slice
    of a batch, each weighted by the slice's ``shares`` (of the examples, of the valid tokens)."""
    # Dropout masks from 16-bit random integers on CPUs, whose forward costs 2.5x less than native
    # bernoulli_ masks (see fast_dropout).
    with runtime.autocast(), cpu_dropout(runtime.device):
        outputs = model(**batch.inputs, **(extra_loss.forward_kwargs if extra_loss else {}))
        extra = extra_loss(outputs, batch) if extra_loss else None
    logits = outputs.logits.float()
    if distill is None:
        loss = F.cross_entropy(logits, batch.labels)
    else:
        teacher = distill.teacher_logits[batch.indices].to(logits.device)
        loss = kd_loss(logits, teacher, batch.labels, distill.temperature, distill.alpha)
    examples, tokens = shares
    return examples * loss if extra is None else examples * loss + tokens * extra.float()


def _row(epoch: int, metrics: Metrics) -> EpochMetrics:
    return {"epoch": epoch, **metrics}
