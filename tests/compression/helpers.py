"""Small builders shared by the library tests."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from layerfuse.compression.architectures import adapter_for
from layerfuse.compression.batching import Encoded
from layerfuse.compression.datasets import TextSplit
from layerfuse.compression.device import Runtime
from tests.factories import LABELS, synthetic_rows

FP32 = Runtime(torch.device("cpu"), bf16=False)


def load_eager(path: Path):
    model = AutoModelForSequenceClassification.from_pretrained(path, attn_implementation="eager")
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model.eval(), tokenizer, adapter_for(model.config.model_type)


def encoded_rows(tokenizer, n: int = 48, seed: int = 0, pair: bool = False) -> Encoded:
    rows = synthetic_rows(n, seed=seed, pair=pair)
    split = TextSplit(
        texts=[r["text"] for r in rows],
        text_pairs=[r["text_pair"] for r in rows] if pair else None,
        labels=[r["label"] for r in rows],
        name="train",
    )
    return Encoded(split, [LABELS.index(r["label"]) for r in rows], tokenizer, max_length=32)
