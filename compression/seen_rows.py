"""Train only the input-embedding rows of the tokens the training data contains.

A classifier's word embedding is a vocabulary-sized matrix (30522 × 384 on MiniLM, half of its
parameters), yet a training set touches a few thousand of its rows. Dense training still fills a
gradient for every row, clips it and runs AdamW over it on every step: 13-15% of a MiniLM training
step on a CPU (benchmarks/throughput.py). While ``seen_rows`` is active the embedding is split into
the rows the data uses (a trainable parameter) and the rest (a frozen buffer), so backward and
the optimizer touch only what can change.

The result equals dense training but for one thing: a row the data never contains has zero
gradient, so dense AdamW would only shrink it by weight decay (a factor of 1 − Σ lr·wd, about
1 − 3e-5 for a recovery); here it stays exactly as it was. The padding row, which
``nn.Embedding(padding_idx=...)`` never trains, stays frozen too.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel


class SeenRowsEmbedding(nn.Module):
    """An embedding lookup whose trainable part is ``weight[rows]``; other rows come from the
    frozen original (evaluation during training still sees every token)."""

    frozen: torch.Tensor  # (vocab, hidden)
    position: torch.Tensor  # (vocab,): the row's index in ``rows``, -1 for a frozen row
    row_ids: torch.Tensor  # (trained,): the vocabulary ids of ``rows``

    def __init__(self, embedding: nn.Embedding, rows: list[int]):
        super().__init__()
        weight = embedding.weight.detach()
        row_ids = torch.tensor(rows, dtype=torch.long, device=weight.device)
        position = torch.full((weight.shape[0],), -1, dtype=torch.long, device=weight.device)
        position[row_ids] = torch.arange(len(rows), device=weight.device)
        # Buffers follow ``.to()``; not persistent, so the best-epoch snapshots of ``train`` copy
        # only the trainable rows, not the whole frozen matrix.
        self.register_buffer("frozen", weight, persistent=False)
        self.register_buffer("position", position, persistent=False)
        self.register_buffer("row_ids", row_ids, persistent=False)
        self.rows = nn.Parameter(weight[row_ids])  # advanced indexing: already a copy

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        position = self.position[input_ids]  # (batch, seq); -1 where the row is frozen
        trained = F.embedding(position.clamp(min=0), self.rows)
        # Always both lookups and a select, not a branch on ``(position < 0).any()``: that would
        # synchronise a GPU on every batch, and the frozen lookup is a cheap gather.
        return torch.where(
            (position >= 0).unsqueeze(-1), trained, F.embedding(input_ids, self.frozen)
        )

    def write_back(self, embedding: nn.Embedding) -> None:
        with torch.no_grad():
            embedding.weight.index_copy_(
                0, self.row_ids, self.rows.detach().to(embedding.weight.dtype)
            )


@contextmanager
def seen_rows(model: nn.Module, token_ids: Iterable[Iterable[int]]) -> Iterator[None]:
    """Within the block, only the embedding rows of ``token_ids`` are parameters of ``model``.

    The trained rows are written back into the original embedding on exit. Models where the split
    would change training are left dense: a frozen embedding, one tied to an output layer, or an
    ``nn.Embedding`` with ``max_norm`` (which renormalises rows on lookup).
    """
    if (
        not isinstance(model, PreTrainedModel)
        or (embedding := _splittable_embedding(model)) is None
    ):
        yield
        return
    seen = {t for ids in token_ids for t in ids} - {embedding.padding_idx}
    split = SeenRowsEmbedding(embedding, sorted(seen))
    model.set_input_embeddings(split)
    try:
        yield
    finally:
        split.write_back(embedding)
        model.set_input_embeddings(embedding)


def _splittable_embedding(model: PreTrainedModel) -> nn.Embedding | None:
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, nn.Embedding) or embedding.max_norm is not None:
        return None
    if not embedding.weight.requires_grad:
        return None
    output = model.get_output_embeddings()
    if output is not None and getattr(output, "weight", None) is embedding.weight:
        return None
    return embedding
