"""Model loading refuses what it cannot load safely or faithfully, with actionable errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from layerfuse.compression import CompressionSpec, compress
from layerfuse.compression.errors import InvalidInputError, ModelError
from layerfuse.compression.inspection import inspect_model_dir
from layerfuse.compression.models import head_label_order, load_model
from tests.factories import make_model_dir


def test_pickle_only_directory_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "bert", "num_hidden_layers": 4})
    )
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError) as info:
        inspect_model_dir(tmp_path)
    assert info.value.code == "model_pickle_refused"
    assert "pytorch_model.bin" in info.value.message and "safetensors" in info.value.message


def test_pickle_next_to_safetensors_is_never_loaded(tiny_classifier, tmp_path):
    model = shutil.copytree(tiny_classifier, tmp_path / "both")
    (model / "pytorch_model.bin").write_bytes(b"\x80 a pickle that would fail to unpickle")
    info = inspect_model_dir(model)
    loaded = load_model(info, info.head_labels or [], head_matches=True)
    assert loaded.has_trained_head


@pytest.mark.parametrize(
    ("config", "code"),
    [
        ({"model_type": "gpt2", "n_layer": 4}, "model_architecture_unsupported"),
        (
            {"model_type": "bert", "num_hidden_layers": 4, "auto_map": {"AutoModel": "x.Y"}},
            "model_architecture_unsupported",
        ),
        ({"model_type": "bert", "num_hidden_layers": 1}, "model_too_shallow"),
    ],
)
def test_unsupported_configs_are_refused(tmp_path, config, code):
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelError) as info:
        inspect_model_dir(tmp_path)
    assert info.value.code == code
    if config["model_type"] == "gpt2":
        assert "bert" in info.value.message and "distilbert" in info.value.message


def test_missing_directory_and_config(tmp_path):
    with pytest.raises(ModelError) as info:
        inspect_model_dir(tmp_path / "nope")
    assert info.value.code == "model_not_found"
    with pytest.raises(ModelError) as info:
        inspect_model_dir(tmp_path)
    assert info.value.code == "model_config_missing"


def test_checkpoint_with_fewer_layers_than_its_config_is_refused(tmp_path):
    """The silent failure of from_pretrained: missing layers would be randomly initialised."""
    model = make_model_dir(tmp_path / "m", num_labels=3, num_layers=4)
    weights = load_file(model / "model.safetensors")
    save_file(
        {k: v for k, v in weights.items() if ".layer.3." not in k}, model / "model.safetensors"
    )
    with pytest.raises(ModelError) as error:
        inspect_model_dir(model)
    assert error.value.code == "model_weights_mismatch"
    assert "num_hidden_layers=4" in error.value.message and "0-2 (3)" in error.value.message


def test_head_labels_match_by_name_or_by_generic_position():
    from layerfuse.compression.models import ModelInfo

    def info(labels: list[str]) -> ModelInfo:
        return ModelInfo(Path("m"), "bert", "BertModel", 4, labels, "m", 0, 0)

    named, generic = info(["neg", "pos"]), info(["LABEL_0", "LABEL_1"])
    assert head_label_order(named, {"pos", "neg"}) == ["neg", "pos"]
    assert head_label_order(named, {"pos", "neg", "mixed"}) is None
    assert head_label_order(generic, {"0", "1"}) == ["0", "1"]
    assert head_label_order(generic, {"a", "b"}) is None


def test_every_architecture_compresses(tmp_path, synthetic_data):
    for model_type in ("roberta", "electra", "distilbert"):
        model = make_model_dir(
            tmp_path / model_type, model_type=model_type, num_labels=3, num_layers=3
        )
        spec = CompressionSpec(
            model_dir=model,
            train=synthetic_data["train"],
            strategies=["drop-top", "weight-magnitude"],
            strategy="weight-magnitude",
            target={"keep_layers": 2},
            distillation={"epochs": 1},
            options={
                "n_calib": 16,
                "max_length": 512,
                "precision": "fp32",
                "measure_latency": False,
            },
        )
        result = compress(spec, tmp_path / f"out-{model_type}")
        assert result.report.final.num_layers == 2, model_type
        assert result.report.export.reload_max_abs_logit_diff < 1e-4


def test_fixed_target_beyond_the_model_fails_before_any_work(
    tiny_classifier, synthetic_data, tmp_path
):
    spec = CompressionSpec(
        model_dir=tiny_classifier, train=synthetic_data["train"], target={"layers_to_remove": 4}
    )
    with pytest.raises(InvalidInputError) as info:
        compress(spec, tmp_path / "out")
    assert info.value.param == "target.layers_to_remove"
    assert "between 1 and 3" in info.value.message


def test_no_head_and_no_fine_tuning_allowed_is_refused(tiny_encoder, synthetic_data, tmp_path):
    spec = CompressionSpec(
        model_dir=tiny_encoder,
        train=synthetic_data["train"],
        options={"fine_tune_teacher": "never"},
    )
    with pytest.raises(InvalidInputError) as info:
        compress(spec, tmp_path / "out")
    assert info.value.code == "model_head_missing"


def test_half_precision_checkpoints_load_in_fp32(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification

    path = make_model_dir(tmp_path / "m", num_labels=3)
    AutoModelForSequenceClassification.from_pretrained(path).half().save_pretrained(path)
    info = inspect_model_dir(path)
    loaded = load_model(info, info.head_labels or [], head_matches=True)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.float32}


def _edited(tmp_path, name, *, config=None, weights=None):
    """A copy of the tiny classifier with ``config`` keys set and ``weights(tensors)`` applied."""
    path = make_model_dir(tmp_path / name, num_labels=3)
    if config:
        data = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**data, **config}))
    if weights:
        tensors = load_file(path / "model.safetensors")
        weights(tensors)
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    return path


def _shrink_layer_1(tensors):
    name = next(k for k in tensors if k.endswith("layer.1.intermediate.dense.weight"))
    tensors[name] = tensors[name][:16].clone()


@pytest.mark.parametrize(
    ("config", "weights", "needle"),
    [
        ({"num_attention_heads": 3}, None, "hidden_size=32"),
        ({"pad_token_id": 100_000}, None, "pad_token_id=100000"),
        ({"num_hidden_layers": "4"}, None, 'num_hidden_layers="4"'),
        (None, _shrink_layer_1, "every layer"),
    ],
)
def test_configs_and_weights_the_model_class_cannot_build_are_refused_at_inspection(
    tmp_path, config, weights, needle
):
    """Each was accepted, then failed the job at loading with an internal error."""
    path = _edited(tmp_path, "m", config=config, weights=weights)
    with pytest.raises(ModelError) as error:
        inspect_model_dir(path)
    assert error.value.code in {"model_config_invalid", "model_weights_mismatch"}
    assert needle in error.value.message


def _nan_layer_0(tensors):
    name = next(k for k in tensors if k.endswith("layer.0.output.dense.weight"))
    tensors[name][0, 0] = float("nan")


def _cut_embedding(tensors):
    name = next(k for k in tensors if k.endswith("word_embeddings.weight"))
    tensors[name] = tensors[name][:20].clone()


@pytest.mark.parametrize(
    ("config", "weights", "code", "needle"),
    [
        ({"hidden_act": "nope"}, None, "model_config_invalid", "nope"),
        (None, _nan_layer_0, "model_weights_invalid", "layer.0.output.dense.weight"),
        ({"vocab_size": 20}, _cut_embedding, "model_tokenizer_invalid", "20 rows"),
    ],
)
def test_what_only_loading_shows_is_a_model_error(tmp_path, config, weights, code, needle):
    """An unknown activation (KeyError), NaN weights (the regressions failed in sweeping) and a
    tokenizer with more ids than embedding rows (an IndexError in the baseline) were internal
    errors."""
    path = _edited(tmp_path, "m", config=config, weights=weights)
    info = inspect_model_dir(path)
    with pytest.raises(ModelError) as error:
        load_model(info, info.head_labels or [], head_matches=True)
    assert error.value.code == code
    assert needle in error.value.message
