"""The file names an upload may carry (api.md, Models and datasets). Imports nothing heavy:
the worker uses it to fetch models from the Hub with the same allowlist."""

from __future__ import annotations

import re

MODEL_FILES = frozenset(
    {
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
        "special_tokens_map.json",
        "merges.txt",
        "vocab.json",
        "sentencepiece.bpe.model",
        "spm.model",
    }
)
SHARD_PATTERN = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spm.model",
)
DATASET_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
