"""Tokenize each split once; serve padded batches sorted by length.

Batches carry the example indices so per-example data (teacher logits) can follow them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .datasets import TextSplit

# Attention-map elements per layer (examples x heads x width^2) that one forward and backward pass
# may hold: a wider batch runs as row slices (see attention_slices).
ATTENTION_SLICE_ELEMENTS = 1 << 24


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask (+ token_type_ids), (batch, seq)
    labels: torch.Tensor  # (batch,)
    indices: torch.Tensor  # (batch,) positions in the split

    def to(self, device: torch.device) -> Batch:
        return Batch(
            {k: v.to(device, non_blocking=True) for k, v in self.inputs.items()},
            self.labels.to(device, non_blocking=True),
            self.indices,
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def split(self, parts: int) -> list[Batch]:
        """The batch as ``parts`` consecutive row slices whose sizes differ by at most one."""
        if parts <= 1:
            return [self]
        inputs = {k: v.tensor_split(parts) for k, v in self.inputs.items()}
        labels, indices = self.labels.tensor_split(parts), self.indices.tensor_split(parts)
        return [
            Batch({k: v[i] for k, v in inputs.items()}, labels[i], indices[i]) for i in range(parts)
        ]


def attention_slices(batch: Batch, heads: int) -> list[Batch]:
    """``batch`` as the row slices a forward and backward pass runs it in, their gradients added
    up to the whole batch's: backward keeps every layer's attention maps (and in training their
    dropout masks), which grow with the square of the width. MiniLM (12 heads) at max_length 512,
    batches of 32: a state measurement peaked at 5.9 GB resident whole and 1.9 GB in slices, a
    training epoch at 10.9 GB whole and 2.7 GB in slices, in 0.88 of the time
    (benchmarks/memory.py). Up to a width of 209 a batch of 32 is one slice, so the usual lengths
    run exactly as before.
    """
    width = int(batch.inputs["input_ids"].shape[1])
    rows = max(1, ATTENTION_SLICE_ELEMENTS // (heads * width * width))
    return batch.split(math.ceil(len(batch) / rows))


class Encoded:
    """A tokenized split: unpadded token ids per example plus integer labels."""

    def __init__(self, split: TextSplit, label_ids: list[int], tokenizer, max_length: int):
        pairs = split.text_pairs
        enc = tokenizer(
            split.texts,
            pairs,
            truncation=True,
            max_length=max_length,
            padding=False,
            return_attention_mask=False,
        )
        self.name = split.name
        self.split = split
        self.max_length = max_length
        self.input_ids: list[list[int]] = enc["input_ids"]
        self.token_type_ids: list[list[int]] | None = (
            enc["token_type_ids"] if "token_type_ids" in tokenizer.model_input_names else None
        )
        self.labels = label_ids
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __len__(self) -> int:
        return len(self.labels)

    def collate(self, indices: list[int]) -> Batch:
        width = max(len(self.input_ids[i]) for i in indices)
        ids = torch.full((len(indices), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(indices), width), dtype=torch.long)
        types = torch.zeros((len(indices), width), dtype=torch.long)
        for row, i in enumerate(indices):
            n = len(self.input_ids[i])
            ids[row, :n] = torch.tensor(self.input_ids[i])
            mask[row, :n] = 1
            if self.token_type_ids is not None:
                types[row, :n] = torch.tensor(self.token_type_ids[i])
        inputs = {"input_ids": ids, "attention_mask": mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = types
        return Batch(inputs, torch.tensor([self.labels[i] for i in indices]), torch.tensor(indices))

    def sorted_batches(self, batch_size: int, subset: list[int] | None = None) -> list[Batch]:
        """Length-sorted batches, for evaluation: padding is minimal and the order is fixed."""
        order = sorted(
            subset if subset is not None else range(len(self)), key=lambda i: len(self.input_ids[i])
        )
        return [self.collate(order[s : s + batch_size]) for s in range(0, len(order), batch_size)]

    def shuffled_batches(self, batch_size: int, rng: random.Random) -> Iterator[Batch]:
        """Training batches: shuffled, then bucketed by length in windows of 50 batches so padding
        stays low without making batch composition deterministic."""
        order = list(range(len(self)))
        rng.shuffle(order)
        window = batch_size * 50
        batches: list[list[int]] = []
        for s in range(0, len(order), window):
            chunk = sorted(order[s : s + window], key=lambda i: len(self.input_ids[i]))
            batches += [chunk[b : b + batch_size] for b in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        for idx in batches:
            yield self.collate(idx)


def stratified_subset(labels: list[int], n: int, seed: int) -> list[int]:
    """``n`` indices drawn per class in proportion to its frequency (at least one each)."""
    if n >= len(labels):
        return list(range(len(labels)))
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(y, []).append(i)
    chosen: list[int] = []
    for members in by_class.values():
        rng.shuffle(members)
        take = max(1, round(n * len(members) / len(labels)))
        chosen += members[:take]
    rng.shuffle(chosen)
    return sorted(chosen[:n])
