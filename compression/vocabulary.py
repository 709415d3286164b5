"""Vocabulary trimming: keep the embedding rows of the tokens a job's data uses.

Kept: every token id seen in the train and validation splits, the special tokens, and every
single-character piece (so any unseen word still splits into known pieces instead of ``[UNK]``).
The ids are renumbered in their original order; the tokenizer's ``tokenizer.json`` is rewritten
so that it produces the new ids, and the model's embedding matrix keeps only the kept rows. The
result is a standard Hugging Face directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel

from .errors import ModelError

TOKENIZER_FILE = "tokenizer.json"
# Prefixes that mark a piece's position in a word, not its text: WordPiece's continuation mark,
# SentencePiece's word start, byte-level BPE's space.
_POSITION_MARKS = ("##", "\u2581", "\u0120")


@dataclass(frozen=True)
class Trimmed:
    """The kept old ids, in new-id order, and the new id of each kept old id."""

    kept: list[int]
    before: int

    @property
    def new_id(self) -> dict[int, int]:
        return {old: new for new, old in enumerate(self.kept)}


def kept_ids(tokenizer_json: dict, seen: Iterable[int], special: Iterable[int]) -> Trimmed:
    """The ids to keep: ``seen`` and ``special`` ones, single-character pieces and, for BPE, every
    piece a kept piece is merged from (otherwise the kept piece could no longer be produced)."""
    vocab = _vocab(tokenizer_json)
    keep = set(seen) | set(special)
    keep |= {i for piece, i in vocab.items() if _is_single_character(piece)}
    keep |= {a["id"] for a in tokenizer_json.get("added_tokens", [])}
    model = tokenizer_json["model"]
    if model["type"] == "BPE":
        keep |= _merge_ancestors(model, vocab, keep)
    if model.get("unk_token") in vocab:
        keep.add(vocab[model["unk_token"]])
    return Trimmed(kept=sorted(i for i in keep if 0 <= i < len(vocab)), before=len(vocab))


def _vocab(tokenizer_json: dict) -> dict[str, int]:
    model = tokenizer_json["model"]
    if model["type"] in ("WordPiece", "BPE", "WordLevel"):
        return dict(model["vocab"])
    if model["type"] == "Unigram":
        return {piece: i for i, (piece, _score) in enumerate(model["vocab"])}
    raise ModelError(
        f"vocabulary trimming supports WordPiece, BPE and Unigram tokenizers, not {model['type']}",
        code="vocabulary_unsupported",
    )


def _is_single_character(piece: str) -> bool:
    for mark in _POSITION_MARKS:
        if piece.startswith(mark) and len(piece) > len(mark):
            piece = piece[len(mark) :]
            break
    return len(piece) == 1


def _merge_ancestors(model: dict, vocab: dict[str, int], keep: set[int]) -> set[int]:
    parents: dict[str, tuple[str, str]] = {}
    for merge in model.get("merges", []):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        parents.setdefault(left + right, (left, right))
    pieces = {piece for piece, i in vocab.items() if i in keep}
    stack = list(pieces)
    while stack:
        for part in parents.get(stack.pop(), ()):
            if part not in pieces and part in vocab:
                pieces.add(part)
                stack.append(part)
    return {vocab[p] for p in pieces}


def remap_tokenizer_json(tokenizer_json: dict, trimmed: Trimmed) -> dict:
    """A copy of ``tokenizer_json`` whose vocabulary, special tokens and post-processor use the
    new ids."""
    out = json.loads(json.dumps(tokenizer_json))
    new_id = trimmed.new_id
    model = out["model"]
    if model["type"] == "Unigram":
        model["vocab"] = [model["vocab"][old] for old in trimmed.kept]
        if model.get("unk_id") is not None:
            model["unk_id"] = new_id[model["unk_id"]]
    else:
        model["vocab"] = {p: new_id[i] for p, i in model["vocab"].items() if i in new_id}
        if model["type"] == "BPE":
            model["merges"] = [m for m in model.get("merges", []) if _merge_kept(m, model["vocab"])]
    for added in out.get("added_tokens", []):
        added["id"] = new_id[added["id"]]
    _remap_post_processor(out.get("post_processor"), new_id)
    if out.get("padding") and out["padding"].get("pad_id") in new_id:
        out["padding"]["pad_id"] = new_id[out["padding"]["pad_id"]]
    return out


def _merge_kept(merge: str | list[str], vocab: dict[str, int]) -> bool:
    left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
    return left in vocab and right in vocab and left + right in vocab


def _remap_post_processor(processor: dict | None, new_id: dict[int, int]) -> None:
    if not processor:
        return
    for inner in processor.get("processors", []):
        _remap_post_processor(inner, new_id)
    for special in processor.get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    for key in ("sep", "cls"):
        if key in processor:
            processor[key] = [processor[key][0], new_id[processor[key][1]]]


@torch.no_grad()
def trim_model(model: PreTrainedModel, trimmed: Trimmed) -> None:
    """Keep only the kept rows of ``model``'s input embeddings, in new-id order (in place)."""
    old = model.get_input_embeddings()
    assert isinstance(old, nn.Embedding), "an encoder's input embedding is an nn.Embedding"
    rows = torch.tensor(trimmed.kept, device=old.weight.device)
    new = nn.Embedding.from_pretrained(old.weight.index_select(0, rows).clone(), freeze=False)
    model.set_input_embeddings(new)
    model.config.vocab_size = len(trimmed.kept)
    new_id = trimmed.new_id
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id"):
        value = getattr(model.config, name, None)
        if isinstance(value, int):
            setattr(model.config, name, new_id.get(value))


def read_tokenizer_json(model_dir: Path) -> dict:
    """``model_dir``'s ``tokenizer.json``.

    Raises:
        ModelError: the tokenizer is a slow one, without that file.
    """
    path = model_dir / TOKENIZER_FILE
    if not path.is_file():
        raise ModelError(
            f"vocabulary trimming needs a fast tokenizer ({TOKENIZER_FILE}); the model has none: "
            "export the full vocabulary (export.vocabulary 'full')",
            code="vocabulary_unsupported",
        )
    return json.loads(path.read_text(encoding="utf-8"))


def trim_directory(model_dir: Path, trimmed: Trimmed) -> None:
    """Rewrite ``model_dir``'s tokenizer to the trimmed vocabulary (the model is saved by the
    caller)."""
    data = read_tokenizer_json(model_dir)
    path = model_dir / TOKENIZER_FILE
    path.write_text(json.dumps(remap_tokenizer_json(data, trimmed), ensure_ascii=False))
    # Files of a slow tokenizer would still hold the old ids; the fast file is the only source.
    for stale in ("vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model"):
        (model_dir / stale).unlink(missing_ok=True)


def trim_saved(
    model: PreTrainedModel, model_dir: Path, seen: Iterable[int], special: Iterable[int]
) -> tuple[Trimmed, Any]:
    """Trim ``model`` (in place) to the ids :func:`kept_ids` keeps and rewrite ``model_dir``,
    which holds it saved with its full tokenizer; returns the trimming and the new tokenizer.

    Raises:
        ModelError: the tokenizer has no ``tokenizer.json`` or is of an unsupported kind.
    """
    trimmed = kept_ids(read_tokenizer_json(model_dir), seen, special)
    trim_model(model, trimmed)
    model.save_pretrained(model_dir, safe_serialization=True)
    trim_directory(model_dir, trimmed)
    return trimmed, load_tokenizer(model_dir)


def special_ids(tokenizer) -> list[int]:
    return [i for i in tokenizer.all_special_ids if i is not None]


def load_tokenizer(model_dir: Path):
    return AutoTokenizer.from_pretrained(model_dir)


def coverage(ids: Iterable[Iterable[int]], trimmed: Trimmed) -> float:
    """The share of token occurrences in ``ids`` whose piece survives the trimming."""
    kept = set(trimmed.kept)
    total = hits = 0
    for row in ids:
        for i in row:
            total += 1
            hits += i in kept
    return hits / total if total else 1.0
