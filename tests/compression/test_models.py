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
