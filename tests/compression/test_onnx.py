"""model/onnx/model.onnx: dynamic batch and sequence axes, the same logits as the PyTorch model;
the Hugging Face directory holding it still loads as any other."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from layerfuse.compression import CompressionSpec, compress
from tests.factories import make_model_dir, synthetic_rows

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_onnx_export_matches_pytorch_on_new_shapes(tmp_path, synthetic_data, model_type):
    from layerfuse.compression.batching import Batch
    from layerfuse.compression.onnx_export import OnnxModel

    model_dir = make_model_dir(tmp_path / model_type, model_type=model_type, num_labels=3)
    spec = CompressionSpec(
        model_dir=model_dir,
        train=synthetic_data["train"],
        strategies=["drop-top", "weight-magnitude"],
        strategy="drop-top",
        target={"layers_to_remove": 1},
        distillation={"epochs": 1},
        export={"formats": ["hf", "onnx"]},
        options={"n_calib": 16, "max_length": 32, "precision": "fp32"},
    )
    result = compress(spec, tmp_path / "out")
    onnx = result.report.to_json()["export"]["onnx"]
    assert "model/onnx/model.onnx" in result.artifacts
    assert onnx["file"] == "model/onnx/model.onnx"
    assert onnx["bytes"] == (tmp_path / "out" / onnx["file"]).stat().st_size
    assert onnx["max_abs_logit_diff"] <= onnx["tolerance"] == 1e-4
    assert set(onnx["latency_ms"]["onnxruntime_cpu"]) == {"batch_1", "batch_32"}
    # A batch size and lengths the export never saw, against the reloaded Hugging Face model.
    out = tmp_path / "out"
    reloaded = AutoModelForSequenceClassification.from_pretrained(out / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    texts = [r["text"] * 3 for r in synthetic_rows(5, seed=9)]
    inputs = dict(
        tokenizer(texts, padding=True, truncation=True, max_length=60, return_tensors="pt")
    )
    expected = reloaded(**inputs).logits.detach()
    got = torch.from_numpy(
        OnnxModel(out / "model" / "onnx" / "model.onnx")(
            Batch(inputs, torch.zeros(5), torch.arange(5))
        )
    )
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    classify = pipeline("text-classification", model=str(out / "model"))
    labels = [p["label"] for p in classify(texts)]
    assert labels == [reloaded.config.id2label[int(i)] for i in expected.argmax(-1)]


def test_onnx_is_opt_in_and_hf_is_always_written():
    from layerfuse.compression.spec import MethodSpec

    assert MethodSpec().export.formats == ["hf"]
    with pytest.raises(ValueError, match="must include 'hf'"):
        MethodSpec(export={"formats": ["onnx"]})


@pytest.mark.parametrize("tolerance", [1.0, 0.0])
def test_int8_is_written_measured_and_flagged_beyond_its_tolerance(
    tmp_path, tiny_classifier, synthetic_data, tolerance
):
    spec = CompressionSpec(
        model_dir=tiny_classifier,
        train=synthetic_data["train"],
        test=synthetic_data["test"],
        strategies=["drop-top"],
        strategy="drop-top",
        target={"layers_to_remove": 1},
        distillation={"enabled": False},
        export={"formats": ["hf", "onnx", "onnx-int8"], "int8_tolerance": tolerance},
        options={"n_calib": 16, "max_length": 32, "precision": "fp32", "measure_latency": False},
    )
    result = compress(spec, tmp_path / "out")
    formats = result.report.to_json()["formats"]
    assert set(formats) == {"hf-fp32", "onnx-fp32", "onnx-int8"}
    assert "model/onnx/model_int8.onnx" in result.artifacts
    int8, fp32 = formats["onnx-int8"], formats["onnx-fp32"]
    assert int8["file"] == "model/onnx/model_int8.onnx"
    assert int8["bytes"] == (tmp_path / "out" / int8["file"]).stat().st_size < fp32["bytes"]
    assert set(int8["latency_ms"]) == {"batch_1", "batch_32"}
    loss = max(
        fp32["validation_accuracy"] - int8["validation_accuracy"],
        fp32["test_accuracy"] - int8["test_accuracy"],
    )
    assert int8["within_tolerance"] is (loss <= tolerance)
    ratio = 100 * int8["test_accuracy"] / (int8["bytes"] / 2**20)
    assert int8["accuracy_to_size_ratio"] == pytest.approx(ratio)
    card = (tmp_path / "out" / "model" / "README.md").read_text()
    assert "onnx-int8" in card
    # Its accuracy depends on the batching (activation ranges span the batch): the card says which.
    assert "length-sorted batches of 64" in card


def test_int8_needs_the_fp32_onnx_and_a_bounded_tolerance():
    from layerfuse.compression.spec import MethodSpec

    with pytest.raises(ValueError, match="onnx-int8"):
        MethodSpec(export={"formats": ["hf", "onnx-int8"]})
    with pytest.raises(ValueError, match="int8_tolerance"):
        MethodSpec(export={"formats": ["hf", "onnx", "onnx-int8"], "int8_tolerance": 2})
