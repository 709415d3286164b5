"""Removing layers: the pruned model equals a model built from the kept layers alone."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification

from layerfuse.compression.models import pruned_copy
from layerfuse.compression.pruning import layers_removed
from tests.compression.helpers import encoded_rows, load_eager


def reference_model(model, kept: list[int]):
    """An independent construction: a fresh model of len(kept) layers given the kept weights."""
    config = model.config.__class__.from_dict(model.config.to_dict())
    config.num_hidden_layers = len(kept)
    fresh = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    renamed = {}
    for key, value in model.state_dict().items():
        if ".layer." in key:
            prefix, rest = key.split(".layer.", 1)
            index, tail = rest.split(".", 1)
            if int(index) not in kept:
                continue
            key = f"{prefix}.layer.{kept.index(int(index))}.{tail}"
        renamed[key] = value
    fresh.load_state_dict(renamed, strict=True)
    return fresh.eval()


@torch.no_grad()
def test_removing_layers_equals_a_pass_through_the_kept_layers(tiny_classifier):
    model, tokenizer, adapter = load_eager(tiny_classifier)
    batch = encoded_rows(tokenizer, n=16).collate(list(range(16)))
    full = model(**batch.inputs).logits
    all_layers = list(adapter.layers(model))
    with layers_removed(model, adapter, all_layers, {1, 2}) as kept:
        assert kept == [0, 3]
        assert len(adapter.layers(model)) == 2
        pruned = model(**batch.inputs).logits
    expected = reference_model(model, [0, 3])(**batch.inputs).logits
    torch.testing.assert_close(pruned, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(pruned, full)
    # Leaving the block restores the full model exactly, by reference (no copies made).
    assert list(adapter.layers(model)) == all_layers
    torch.testing.assert_close(model(**batch.inputs).logits, full, rtol=0, atol=0)


@torch.no_grad()
def test_pruned_copy_is_standalone_and_equal(tiny_classifier):
    model, tokenizer, adapter = load_eager(tiny_classifier)
    batch = encoded_rows(tokenizer, n=8).collate(list(range(8)))
    with layers_removed(model, adapter, list(adapter.layers(model)), {0}):
        expected = model(**batch.inputs).logits
    copy = pruned_copy(model, adapter, [1, 2, 3])
    assert copy.config.num_hidden_layers == 3
    assert model.config.num_hidden_layers == 4
    torch.testing.assert_close(copy(**batch.inputs).logits, expected, rtol=0, atol=1e-6)
    for p in adapter.layers(copy).parameters():
        p.data.zero_()
    assert adapter.layers(model)[1].output.dense.weight.abs().sum() > 0
