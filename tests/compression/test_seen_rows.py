"""Training only the embedding rows the data contains is the same training as the dense one."""

from __future__ import annotations

import contextlib
import copy

import torch

from layerfuse.compression import training
from layerfuse.compression.evaluation import EvalSet
from layerfuse.compression.training import train
from tests.compression.helpers import FP32, encoded_rows, load_eager

COMMON = {"epochs": 4, "learning_rate": 5e-3, "batch_size": 8, "seed": 0}


def test_training_seen_rows_matches_dense_training_and_leaves_other_rows_alone(
    tiny_classifier, monkeypatch
):
    model, tokenizer, _ = load_eager(tiny_classifier)
    data = encoded_rows(tokenizer, n=32)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    before = model.get_input_embeddings().weight.detach().clone()

    split = copy.deepcopy(model)
    split_result = train(split, data, validation, FP32, **COMMON)
    dense = copy.deepcopy(model)
    monkeypatch.setattr(training, "seen_rows", lambda model, ids: contextlib.nullcontext())
    dense_result = train(dense, data, validation, FP32, **COMMON)

    # The model comes back with its own embedding module and checkpoint keys.
    assert type(split.get_input_embeddings()) is torch.nn.Embedding
    assert split.state_dict().keys() == dense.state_dict().keys()
    assert split_result.history == dense_result.history
    seen = sorted({t for ids in data.input_ids for t in ids} - {tokenizer.pad_token_id})
    unseen = sorted(set(range(before.shape[0])) - set(seen))
    assert unseen, "the check needs tokens the training data lacks"
    weight = split.get_input_embeddings().weight.detach()
    assert not torch.allclose(weight[seen], before[seen])  # the seen rows trained
    assert torch.equal(weight[unseen], before[unseen])
    # Dense AdamW moves unseen rows by weight decay alone: a relative change of about 1e-4 here.
    torch.testing.assert_close(weight, dense.get_input_embeddings().weight, rtol=1e-3, atol=1e-5)
    dense_parameters = dict(dense.named_parameters())
    for name, value in split.named_parameters():
        if "word_embeddings" not in name:
            torch.testing.assert_close(value, dense_parameters[name], rtol=1e-4, atol=1e-5)


def test_a_frozen_embedding_stays_frozen(tiny_classifier):
    model, tokenizer, _ = load_eager(tiny_classifier)
    embedding = model.get_input_embeddings()
    embedding.weight.requires_grad_(False)
    before = embedding.weight.detach().clone()
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    train(model, encoded_rows(tokenizer, n=32), validation, FP32, **COMMON)
    assert model.get_input_embeddings() is embedding
    assert torch.equal(embedding.weight, before)
