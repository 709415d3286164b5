"""Each signal on a case whose answer is known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from layerfuse.compression import batching, signals
from layerfuse.compression.catalogue import BLOCK_INFLUENCE, SIGNAL_IDS
from layerfuse.compression.signals import REGISTRY, canonical_correlations, measure_state
from tests.compression.helpers import FP32, encoded_rows, load_eager
from tests.factories import make_model_dir


@pytest.fixture()
def bert(tiny_classifier):
    model, tokenizer, adapter = load_eager(tiny_classifier)
    batches = encoded_rows(tokenizer).sorted_batches(16)
    return model, adapter, batches


def measure(model, adapter, batches):
    return measure_state(
        model, adapter, list(range(len(adapter.layers(model)))), batches, FP32, seed=0
    )


def test_registry_has_exactly_the_catalogue():
    assert sorted(REGISTRY) == sorted(SIGNAL_IDS)


def test_every_signal_is_finite_for_every_layer(bert):
    values = measure(*bert)
    assert sorted(values) == [0, 1, 2, 3]
    for layer in values.values():
        assert set(layer) == {*SIGNAL_IDS, BLOCK_INFLUENCE}
        assert all(math.isfinite(v) for v in layer.values())


def test_zeroed_weights_have_zero_magnitude_and_entropy(bert):
    model, adapter, batches = bert
    with torch.no_grad():
        for module in adapter.layers(model)[2].modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.zero_()
    values = measure(model, adapter, batches)
    assert values[2]["weight-magnitude"] == 0.0
    assert values[2]["weight-entropy"] == 0.0
    assert values[1]["weight-magnitude"] > 0.0
    assert values[1]["weight-entropy"] > 1.0


def test_uniform_attention_has_entropy_one_and_max_weight_one_over_keys(bert):
    model, adapter, batches = bert
    uniform = adapter.self_attention_of(adapter.layers(model)[1])
    sharp = adapter.self_attention_of(adapter.layers(model)[0])
    with torch.no_grad():
        for proj in (uniform.query, uniform.key):
            proj.weight.zero_()
            proj.bias.zero_()
        for proj in (sharp.query, sharp.key):
            proj.weight.mul_(40.0)
    values = measure(model, adapter, batches)
    assert values[1]["attention-entropy"] == pytest.approx(1.0, abs=1e-5)
    assert values[0]["attention-entropy"] < 0.95
    assert values[0]["attention-weight"] > values[1]["attention-weight"]
    # Uniform over n valid keys: the largest probability is 1/n, averaged over valid queries.
    mask = torch.cat([b.inputs["attention_mask"].flatten(1).sum(1) for b in batches]).float()
    expected = float((mask * (1 / mask)).sum() / mask.sum())
    assert values[1]["attention-weight"] == pytest.approx(expected, rel=1e-5)


def test_identity_layer_has_zero_block_influence(bert):
    model, adapter, batches = bert
    layer = adapter.layers(model)[0]
    with torch.no_grad():
        # Zero residual branches leave LayerNorm(x) = x: the embeddings are already normalised.
        for linear in (layer.attention.output.dense, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
        adapter.layers(model)[1].output.dense.weight.mul_(50.0)  # a layer that rewrites its input
    values = measure(model, adapter, batches)
    assert values[0][BLOCK_INFLUENCE] == pytest.approx(0.0, abs=1e-4)
    assert values[1][BLOCK_INFLUENCE] > 0.05


def test_zero_intermediate_gives_zero_activation_signals(bert):
    model, adapter, batches = bert
    intermediate = adapter.layers(model)[3].intermediate.dense
    with torch.no_grad():
        intermediate.weight.zero_()
        intermediate.bias.zero_()
    values = measure(model, adapter, batches)
    for sid in ("activation-inhibition", "activation-intensity", "activation-energy"):
        assert values[3][sid] == pytest.approx(0.0, abs=1e-7)
        assert values[2][sid] != 0.0


def test_activation_energy_bounds_intensity_squared(bert):
    # Jensen: mean ‖a‖² ≥ (mean ‖a‖)², equality only if every token has the same norm.
    for layer in measure(*bert).values():
        assert layer["activation-energy"] >= layer["activation-intensity"] ** 2


def test_gradient_signals_match_autograd_on_one_micro_batch(bert):
    model, adapter, batches = bert
    batch = batches[0]
    values = measure(model, adapter, [batch])
    model.zero_grad()
    F.cross_entropy(model(**batch.inputs).logits, batch.labels).backward()
    params = list(adapter.layers(model)[1].parameters())
    fisher = sum(float((p.grad**2).sum()) for p in params)
    taylor = sum(float((p.detach() * p.grad).abs().sum()) for p in params)
    assert values[1]["gradient-fisher"] == pytest.approx(fisher, rel=1e-4)
    assert values[1]["gradient-norm"] == pytest.approx(math.sqrt(fisher), rel=1e-4)
    assert values[1]["gradient-taylor"] == pytest.approx(taylor, rel=1e-4)


def test_zero_classifier_means_zero_gradient_signals(bert):
    model, adapter, batches = bert
    with torch.no_grad():
        model.classifier.weight.zero_()
    values = measure(model, adapter, batches)
    for layer in values.values():
        assert layer["gradient-fisher"] == 0.0
        assert layer["gradient-taylor"] == 0.0


def test_canonical_correlations_of_copies_and_of_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 4))
    assert canonical_correlations(x, x @ rng.normal(size=(4, 4))) == pytest.approx(
        np.ones(4), abs=1e-6
    )
    assert canonical_correlations(x, rng.normal(size=(500, 4))).max() < 0.25


def test_redundancy_mi_is_high_for_identity_layer(bert):
    model, adapter, batches = bert
    layer = adapter.layers(model)[0]
    with torch.no_grad():
        for linear in (layer.attention.output.dense, layer.output.dense):
            linear.weight.zero_()
            linear.bias.zero_()
        adapter.layers(model)[2].output.dense.weight.mul_(50.0)
    values = measure(model, adapter, batches)
    # Output equals input: every canonical correlation hits the 0.999 clip.
    ceiling = -0.5 * math.log(1 - 0.999**2)
    assert values[0]["redundancy-mi"] > 0.9 * ceiling * min(16, 15)
    assert values[0]["redundancy-mi"] > values[2]["redundancy-mi"]


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "electra", "distilbert"])
def test_every_architecture_gives_every_signal(tmp_path, model_type):
    model, tokenizer, adapter = load_eager(
        make_model_dir(tmp_path / model_type, model_type=model_type, num_labels=3, num_layers=3)
    )
    values = measure(model, adapter, encoded_rows(tokenizer, n=24, pair=True).sorted_batches(12))
    assert sorted(values) == [0, 1, 2]
    assert all(math.isfinite(v) for layer in values.values() for v in layer.values())
    assert all(0.0 < layer["attention-entropy"] <= 1.0 + 1e-6 for layer in values.values())


def test_measuring_needs_no_gradient_outside_the_layers_and_leaves_trainability_as_it_was(bert):
    model, adapter, batches = bert
    before = measure(model, adapter, batches)
    user_frozen = model.bert.embeddings.position_embeddings.weight
    user_frozen.requires_grad_(False)
    seen = []
    handle = model.bert.embeddings.word_embeddings.weight.register_hook(seen.append)
    after = measure(model, adapter, batches)
    handle.remove()
    assert seen == []  # backward stopped at the first layer's input
    assert after == before  # the layers' gradients, and so every signal, are the same
    assert not user_frozen.requires_grad
    assert all(p.requires_grad for n, p in model.named_parameters() if "position_emb" not in n)


def test_attention_maps_taken_a_few_examples_at_a_time_give_the_whole_batch_values(
    bert, monkeypatch
):
    model, adapter, batches = bert
    assert len({int(n) for n in batches[0].inputs["attention_mask"].sum(dim=1)}) > 1
    whole = measure(model, adapter, batches)
    monkeypatch.setattr(signals, "ATTENTION_BLOCK", 1)  # one example per block
    blocks = measure(model, adapter, batches)
    for layer, values in whole.items():
        for sid in ("attention-entropy", "attention-weight"):
            assert blocks[layer][sid] == pytest.approx(values[sid], rel=1e-6)


def test_micro_batches_run_as_slices_give_the_whole_batches_signals(bert, monkeypatch):
    model, adapter, batches = bert
    whole = measure(model, adapter, batches)
    # A budget of one example's maps: every micro-batch of 16 runs as 16 slices.
    width = batches[0].inputs["input_ids"].shape[1]
    heads = model.config.num_attention_heads
    monkeypatch.setattr(batching, "ATTENTION_SLICE_ELEMENTS", heads * width * width)
    assert len(batching.attention_slices(batches[0], heads)) == len(batches[0])
    sliced = measure(model, adapter, batches)
    for layer, values in whole.items():
        for sid, value in values.items():
            assert sliced[layer][sid] == pytest.approx(value, rel=1e-4, abs=1e-6), sid
