"""Vocabulary trimming: a smaller embedding matrix, a tokenizer emitting the new ids, and the
same predictions as the full model on text made of the kept tokens."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from layerfuse.compression import CompressionSpec, compress, vocabulary
from layerfuse.compression.spec import MethodSpec
from tests.factories import make_model_dir, synthetic_rows


@pytest.mark.parametrize("model_type", ["bert", "roberta"])
def test_trimmed_directory_reloads_and_predicts_like_the_full_one(tmp_path, model_type):
    full_dir = make_model_dir(tmp_path / "full", model_type=model_type, num_labels=3)
    tokenizer = AutoTokenizer.from_pretrained(full_dir)
    model = AutoModelForSequenceClassification.from_pretrained(full_dir).eval()
    seen_texts = [r["text"] for r in synthetic_rows(8, seed=4)]
    seen = [i for row in tokenizer(seen_texts)["input_ids"] for i in row]
    data = json.loads((full_dir / "tokenizer.json").read_text())
    trimmed = vocabulary.kept_ids(data, seen, vocabulary.special_ids(tokenizer))
    assert len(trimmed.kept) < trimmed.before
    out = tmp_path / "trimmed"
    expected = model(**tokenizer(seen_texts, padding=True, return_tensors="pt")).logits
    vocabulary.trim_model(model, trimmed)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    vocabulary.trim_directory(out, trimmed)

    reloaded_tokenizer = AutoTokenizer.from_pretrained(out)
    reloaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert len(reloaded_tokenizer) == reloaded.config.vocab_size == len(trimmed.kept)
    inputs = reloaded_tokenizer(seen_texts, padding=True, return_tensors="pt")
    torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=0, atol=1e-5)
    # An unseen word of known letters still splits into kept single-character pieces, not [UNK].
    unseen = "yadthgin"
    assert tokenizer.unk_token_id not in tokenizer(unseen)["input_ids"]
    assert reloaded_tokenizer.unk_token_id not in reloaded_tokenizer(unseen)["input_ids"]
    classify = pipeline("text-classification", model=str(out))
    labels = [p["label"] for p in classify(seen_texts)]
    full_labels = [model.config.id2label[int(i)] for i in expected.argmax(-1)]
    assert labels == full_labels


def test_compress_with_trimming_writes_a_smaller_standard_directory(
    tmp_path, tiny_classifier, synthetic_data
):
    spec = CompressionSpec(
        model_dir=tiny_classifier,
        train=synthetic_data["train"],
        validation=synthetic_data["validation"],
        test=synthetic_data["test"],
        strategies=["drop-top"],
        strategy="drop-top",
        target={"layers_to_remove": 1},
        distillation={"epochs": 1},
        export={"vocabulary": "trim"},
        options={"n_calib": 16, "max_length": 32, "precision": "fp32", "measure_latency": False},
    )
    result = compress(spec, tmp_path / "out")
    report = result.report.to_json()
    trimmed = report["export"]["vocabulary"]
    assert trimmed["after"] < trimmed["before"]
    assert 0 < trimmed["test_coverage"] <= 1
    assert trimmed["parameters_after"] == report["final"]["parameters"]
    assert trimmed["parameters_after"] < trimmed["parameters_before"]
    assert report["final"]["test"]["accuracy"] == trimmed["test_accuracy_trimmed"]
    model_dir = tmp_path / "out" / "model"
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    assert model.config.vocab_size == trimmed["after"]
    assert len(AutoTokenizer.from_pretrained(model_dir)) == trimmed["after"]
    assert "vocabulary was trimmed" in (model_dir / "README.md").read_text()


def test_vocabulary_field_is_full_by_default_and_checked():
    assert MethodSpec().export.vocabulary == "full"
    with pytest.raises(ValueError, match="vocabulary"):
        MethodSpec(export={"vocabulary": "half"})


def test_a_model_without_a_fast_tokenizer_cannot_be_trimmed(tmp_path):
    from layerfuse.compression.errors import ModelError

    with pytest.raises(ModelError, match="fast tokenizer") as raised:
        vocabulary.read_tokenizer_json(tmp_path)
    assert raised.value.code == "vocabulary_unsupported"
