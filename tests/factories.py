"""Tiny models, tokenizers and datasets built on the fly: no network, seconds to make.

Used by the library's and the service's tests alike. The synthetic task is learnable by a
two-layer model in a few steps: the label is decided by which cue word a sentence contains.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

LABELS = ("negative", "neutral", "positive")
CUES = {
    "negative": ["awful", "terrible", "bad", "poor"],
    "neutral": ["table", "chair", "window", "paper"],
    "positive": ["great", "lovely", "good", "superb"],
}
FILLER = [
    *["the", "a", "movie", "book", "was", "is", "really", "quite", "very", "it", "this", "that"],
    *["and", "of", "day", "night", "story", "plot"],
]


def synthetic_rows(n: int, seed: int = 0, pair: bool = False) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = rng.choices(FILLER, k=rng.randint(4, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(CUES[label]))
        row = {"text": " ".join(words), "label": label}
        if pair:
            row["text_pair"] = " ".join(rng.choices(FILLER, k=rng.randint(3, 6)))
        rows.append(row)
    return rows


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return path


def train_tokenizer(corpus: list[str]):
    """A WordPiece tokenizer trained on ``corpus``, wrapped as ``BertTokenizerFast``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special)
    )
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return BertTokenizerFast(tokenizer_object=tok)


def make_model_dir(
    path: Path,
    *,
    model_type: str = "bert",
    num_layers: int = 4,
    hidden: int = 32,
    num_labels: int | None = None,
    seed: int = 0,
) -> Path:
    """Save a tiny randomly initialised model of ``model_type`` (safetensors) with a tokenizer.

    ``num_labels=None`` saves a bare encoder (``BertModel`` etc.), as a pretrained checkpoint
    without a classification head looks; a number saves a ``*ForSequenceClassification`` whose
    label maps are :data:`LABELS`.
    """
    import torch
    from transformers import (
        AutoConfig,
        AutoModel,
        AutoModelForSequenceClassification,
    )

    torch.manual_seed(seed)
    tokenizer = train_tokenizer(
        [r["text"] + " " + r.get("text_pair", "") for r in synthetic_rows(300, pair=True)]
    )
    sizes = {
        "bert": dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden,
            num_attention_heads=4,
            intermediate_size=hidden * 2,
            max_position_embeddings=128,
        ),
        "roberta": dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden,
            num_attention_heads=4,
            intermediate_size=hidden * 2,
            max_position_embeddings=130,
        ),
        "xlm-roberta": dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden,
            num_attention_heads=4,
            intermediate_size=hidden * 2,
            max_position_embeddings=130,
        ),
        "electra": dict(
            num_hidden_layers=num_layers,
            hidden_size=hidden,
            num_attention_heads=4,
            intermediate_size=hidden * 2,
            embedding_size=hidden,
            max_position_embeddings=128,
        ),
        "distilbert": dict(
            n_layers=num_layers,
            dim=hidden,
            n_heads=4,
            hidden_dim=hidden * 2,
            max_position_embeddings=128,
        ),
    }[model_type]
    config = AutoConfig.for_model(
        model_type, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, **sizes
    )
    if num_labels is None:
        model = AutoModel.from_config(config)
    else:
        config.num_labels = num_labels
        config.id2label = dict(enumerate(LABELS[:num_labels]))
        config.label2id = {v: k for k, v in config.id2label.items()}
        model = AutoModelForSequenceClassification.from_config(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
