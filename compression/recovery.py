"""What recovery trains a pruned student on beyond logit KD (method.md, "Recovery"): the
layer-mapped hidden-state term and the optional attention term, and the layers the healed
comparison's fixed baselines keep.

The student keeps original layers o₁ < … < oₘ. Its j-th layer is matched to the teacher's state
just before the next kept layer, m(j) = oⱼ₊₁ − 1 (the teacher's last layer for j = m), so it learns
to do the work of the layers removed after it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .batching import Batch
from .catalogue import DROP_TOP
from .spec import UNIFORM, Distillation


def layer_map(kept: list[int], num_layers: int) -> list[int]:
    """The teacher layer whose output each kept student layer is matched to.

    ``layer_map([0, 2, 5], 6) == [1, 4, 5]``: the student's layers then stand for teacher layers
    0-1, 2-4 and 5.
    """
    return [following - 1 for following in kept[1:]] + [num_layers - 1]


def hidden_distance(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor, distance: str
) -> torch.Tensor:
    """Mean distance between two (batch, seq, hidden) states over the valid tokens of ``mask``.

    ``mse`` compares layer-normalised states (their scale grows with depth, the direction is what
    a later layer reads); ``cosine`` is 1 − cosine similarity.
    """
    valid = mask.bool()
    s, t = student[valid].float(), teacher[valid].float()  # (tokens, hidden)
    if distance == "mse":
        return F.mse_loss(F.layer_norm(s, s.shape[-1:]), F.layer_norm(t, t.shape[-1:]))
    return (1 - F.cosine_similarity(s, t, dim=-1)).mean()


def attention_divergence(
    student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """KL(teacher ‖ student) of (batch, heads, seq, seq) attention rows, over valid queries."""
    eps = 1e-8
    kl = (teacher * ((teacher + eps).log() - (student.float() + eps).log())).sum(-1)
    valid = mask.bool()[:, None, :].expand_as(kl)  # (batch, heads, seq) query rows
    return kl[valid].mean()


class LayerMappedLoss:
    """The hidden-state and attention terms for one student, a training-loop extra loss.

    The frozen teacher runs on each batch under no_grad, giving only the outputs the terms read.
    """

    def __init__(self, teacher: nn.Module, kept: list[int], num_layers: int, kd: Distillation):
        self.teacher = teacher
        self.targets = layer_map(kept, num_layers)
        self.kd = kd
        self.forward_kwargs = {
            "output_hidden_states": kd.hidden_weight > 0,
            "output_attentions": kd.attention_weight > 0,
        }

    @staticmethod
    def wanted(kd: Distillation) -> bool:
        return kd.hidden_weight > 0 or kd.attention_weight > 0

    def __call__(self, outputs: Any, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            teacher = self.teacher(**batch.inputs, **self.forward_kwargs)
        mask = batch.inputs["attention_mask"]
        loss = torch.zeros((), device=mask.device)
        if self.kd.hidden_weight > 0:
            # hidden_states[0] is the embeddings: layer i's output is hidden_states[i + 1].
            hidden = sum(
                hidden_distance(
                    outputs.hidden_states[j + 1],
                    teacher.hidden_states[m + 1],
                    mask,
                    self.kd.hidden_distance,
                )
                for j, m in enumerate(self.targets)
            )
            loss = loss + self.kd.hidden_weight * hidden
        if self.kd.attention_weight > 0:
            attention = sum(
                attention_divergence(outputs.attentions[j], teacher.attentions[m], mask)
                for j, m in enumerate(self.targets)
            )
            loss = loss + self.kd.attention_weight * attention
        return loss


def uniform_kept(num_layers: int, keep: int) -> list[int]:
    """``keep`` layers spread evenly from the first to the last, DistilBERT's initialisation
    (layers 0, 2, 4, 7, 9, 11 of 12); one layer kept is the first."""
    if keep <= 1:
        return [0]
    return sorted({int(i * (num_layers - 1) / (keep - 1) + 0.5) for i in range(keep)})


def baseline_removal(candidate: str, num_layers: int, k: int) -> list[int] | None:
    """The removal order of a fixed baseline at ``k`` removed (``drop-top`` from the top,
    ``uniform`` top-down too), or None for a strategy that needs its walked trajectory."""
    if candidate == DROP_TOP:
        return list(range(num_layers - 1, num_layers - 1 - k, -1))
    if candidate == UNIFORM:
        kept = set(uniform_kept(num_layers, num_layers - k))
        return [i for i in range(num_layers - 1, -1, -1) if i not in kept]
    return None
