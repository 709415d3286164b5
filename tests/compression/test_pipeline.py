"""The whole method on tiny models: outputs, report schema, progress, cancellation, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from layerfuse.compression import CompressionCancelled, CompressionSpec, compress
from layerfuse.compression.batching import Encoded
from layerfuse.compression.catalogue import STRATEGY_IDS
from layerfuse.compression.datasets import read_split
from layerfuse.compression.evaluation import EvalSet
from layerfuse.compression.progress import STAGES
from layerfuse.compression.report import Report
from tests.compression.helpers import FP32
from tests.factories import LABELS, synthetic_rows

FAST = {
    "n_calib": 32,
    "max_length": 32,
    "random_seeds": 2,
    "precision": "fp32",
    "teacher_epochs": 6,
    "teacher_learning_rate": 5e-3,
    "leave_one_out_probe": True,
}


def spec_for(model: Path, data: dict[str, Path], **overrides) -> CompressionSpec:
    fields = {
        "model_dir": model,
        "train": data["train"],
        "validation": data["validation"],
        "test": data["test"],
        "options": FAST,
        "distillation": {"epochs": 1},
    }
    fields.update(overrides)
    return CompressionSpec(**fields)


def two_strategy_spec(model: Path, data: dict[str, Path], strategy: str, **overrides):
    """A quick run: two strategies walked, one layer removed."""
    fields = {"strategies": ["drop-top", "weight-magnitude"], "target": {"layers_to_remove": 1}}
    return spec_for(model, data, strategy=strategy, **{**fields, **overrides})


class Recorder:
    def __init__(self):
        self.stages, self.fractions, self.events = [], [], []

    def stage(self, stage):
        self.stages.append(stage)

    def progress(self, progress):
        self.fractions.append(progress.fraction)

    def event(self, type, message, data=None, level="info"):
        self.events.append((type, message, data))


@pytest.fixture(scope="module")
def run(tiny_classifier, synthetic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "out"
    recorder = Recorder()
    spec = spec_for(
        tiny_classifier, synthetic_data, strategy="auto", target={"layers_to_remove": 2}
    )
    result = compress(spec, out, reporter=recorder)
    return result, recorder, out


METRICS = {"accuracy", "macro_f1", "loss"}


def test_report_json_is_exactly_the_typed_report(run):
    result, _, out = run
    report = json.loads((out / "report.json").read_text())
    # Every key is one the definition knows (unknown keys are refused) and none is lost.
    typed = Report.model_validate(report)
    assert typed == result.report
    assert typed.to_json() == report
    assert list(report) == list(Report.model_fields)
    assert set(report["baseline"]["validation"]) == METRICS
    assert set(report["baseline"]["latency_ms"]) == {"batch_1", "batch_32"}
    # Both latencies come from one side-by-side timing, and the speedup is in the summary.
    side_by_side = report["final"]["latency"]
    for size in ("batch_1", "batch_32"):
        assert report["baseline"]["latency_ms"][size] == side_by_side[size]["original_ms"]
        assert report["final"]["latency_ms"][size] == side_by_side[size]["compressed_ms"]
        assert side_by_side[size]["speedup"] > 0
    assert result.summary["latency"] == side_by_side
    assert report["fusion"]["linear-regression"]["coefficients"]
    assert report["fusion"]["random-forest"]["feature_importances"]
    assert set(report["distillation"]["after"]["validation"]) == METRICS
    assert report["options"]["target"] == {"layers_to_remove": 2}
    assert "/" not in json.dumps(report["options"]["files"])  # no server paths leak
    assert {"preparing", "sweeping", "fusing", "distilling", "exporting"} <= set(report["timings"])


def test_summary_is_derived_from_the_report(run):
    result, _, _ = run
    summary, report = result.summary, result.report
    assert summary == report.summary(result.artifacts).model_dump(mode="json")
    assert summary["removed_layers"] == report.selection.removed_layers
    assert summary["final"]["validation"] == report.final.validation
    assert summary["parameters"] == {
        "before": report.model.parameters,
        "after": report.final.parameters,
    }


def test_probe_is_reported_and_fusion_starts_from_its_best_removal(run):
    report = run[0].report.to_json()
    probe = report["probe"]
    assert [p["layer"] for p in probe] == [0, 1, 2, 3]
    best = max(probe, key=lambda p: (p["validation"]["accuracy"], -p["validation"]["loss"]))
    for sid in ("fusion-random-forest", "fusion-linear-regression"):
        first = report["fusion"]["decisions"][sid][0]
        assert first["decided_by"] == "measured"
        assert report["strategies"][sid]["removal_order"][0] == best["layer"] == first["layer"]


def test_every_strategy_walks_a_full_curve(run):
    report = run[0].report.to_json()
    expected = set(STRATEGY_IDS) | {"random/seed-0", "random/seed-1"}
    assert set(report["strategies"]) == expected
    for sid, entry in report["strategies"].items():
        ks = [p["layers_removed"] for p in entry["curve"]]
        assert ks == [0, 1, 2, 3], sid
        assert entry["curve"][0]["validation"] == report["baseline"]["validation"]
        if sid != "random":
            assert [len(p["removed"]) for p in entry["curve"]] == ks
            assert entry["curve"][-1]["removed"] == sorted(entry["removal_order"])
    assert report["strategies"]["drop-top"]["removal_order"] == [3, 2, 1]


def test_signals_cover_every_state_left_by_a_walk(run):
    report = run[0].report.to_json()
    states = {tuple(row["removed"]) for row in report["signals"]}
    for sid, entry in report["strategies"].items():
        if sid != "random":
            for point in entry["curve"][:-1]:
                assert tuple(point["removed"]) in states, (sid, point["removed"])
    full = [row for row in report["signals"] if row["removed"] == []]
    assert [row["layer"] for row in full] == [0, 1, 2, 3]


def test_selected_model_reloads_smaller_with_the_reported_accuracy(run, synthetic_data):
    result, _, out = run
    report = result.report.to_json()
    selection = report["selection"]
    assert selection["layers_removed"] == 2
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_hidden_layers == 2
    assert model.config.id2label == dict(enumerate(sorted(LABELS)))
    tokenizer = AutoTokenizer.from_pretrained(out / "model")
    split = read_split(synthetic_data["validation"], name="validation")
    labels = [model.config.label2id[label] for label in split.labels]
    metrics = EvalSet(Encoded(split, labels, tokenizer, 32), 64).evaluate(model, FP32)
    assert metrics["accuracy"] == pytest.approx(report["final"]["validation"]["accuracy"])
    assert report["export"]["reload_max_abs_logit_diff"] < 1e-4
    assert report["final"]["parameters"] < report["model"]["parameters"]
    assert result.summary["kept_layers"] == selection["kept_layers"]


def test_outputs_and_model_card(run):
    result, _, out = run
    for name in (
        "report.json",
        "model_card.md",
        "signals.csv",
        "curves.png",
        "signals.png",
        "model/config.json",
        "model/model.safetensors",
        "model/README.md",
    ):
        assert (out / name).is_file(), name
        assert name in result.artifacts
    card = (out / "model_card.md").read_text()
    assert card.startswith("---\n")
    assert result.report.selection.strategy in card


def test_progress_goes_through_the_stages_in_order(run):
    _, recorder, _ = run
    assert [s for s in STAGES if s in recorder.stages] == recorder.stages
    assert recorder.stages[0] == "preparing" and recorder.stages[-1] == "exporting"
    assert recorder.fractions == sorted(recorder.fractions)
    assert recorder.fractions[-1] > 0.9
    steps = [d for t, _, d in recorder.events if t == "metrics" and d and "strategy" in d]
    assert {"strategy", "k", "layer", "val_accuracy"} <= set(steps[0])


def test_same_seed_same_run(run, tiny_classifier, synthetic_data, tmp_path):
    spec = spec_for(
        tiny_classifier, synthetic_data, strategy="auto", target={"layers_to_remove": 2}
    )
    again = compress(spec, tmp_path / "again")
    assert again.report.strategies == run[0].report.strategies
    assert again.report.selection == run[0].report.selection


def test_fine_tunes_a_teacher_when_the_model_has_no_head(tiny_encoder, synthetic_data, tmp_path):
    spec = spec_for(
        tiny_encoder,
        {**synthetic_data, "validation": None},
        strategies=["drop-top", "gradient-norm"],
        strategy="drop-top",
        target={"select": "best"},
        distillation={"enabled": False, "batch_size": 8},
        options={**FAST, "teacher_epochs": 20},
    )
    result = compress(spec, tmp_path / "out")
    report = result.report
    assert report.teacher.fine_tuned and report.teacher.epochs_run == 20
    # The synthetic task is learnable: the fine-tuned teacher beats chance (1/3) clearly.
    assert report.baseline.validation["accuracy"] > 0.6
    assert report.dataset.validation_carved_from_train
    assert not report.distillation.enabled
    assert (
        AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "out" / "model"
        ).config.num_labels
        == 3
    )


class CancelAfter:
    def __init__(self, polls: int):
        self.polls = polls

    def cancelled(self) -> bool:
        self.polls -= 1
        return self.polls < 0


def test_cancellation_stops_between_batches(tiny_classifier, synthetic_data, tmp_path):
    recorder = Recorder()
    with pytest.raises(CompressionCancelled):
        compress(
            spec_for(tiny_classifier, synthetic_data),
            tmp_path / "out",
            reporter=recorder,
            cancel=CancelAfter(20),
        )
    assert "exporting" not in recorder.stages
    assert not (tmp_path / "out" / "report.json").exists()


def test_checkpointed_sweep_resumes_without_measuring_again(
    tiny_classifier, synthetic_data, tmp_path
):
    spec = two_strategy_spec(tiny_classifier, synthetic_data, "weight-magnitude")
    first = compress(spec, tmp_path / "a", checkpoint_dir=tmp_path / "ckpt")
    assert first.report.sweep.measurements > 0
    second = compress(spec, tmp_path / "b", checkpoint_dir=tmp_path / "ckpt")
    assert second.report.sweep.measurements == 0
    assert second.report.strategies == first.report.strategies


def test_a_checkpoint_of_other_inputs_is_not_resumed(tiny_classifier, synthetic_data, tmp_path):
    """Another validation file in the same directory took the first run's curves as its own."""
    spec = two_strategy_spec(tiny_classifier, synthetic_data, "weight-magnitude")
    compress(spec, tmp_path / "a", checkpoint_dir=tmp_path / "ckpt")
    other = two_strategy_spec(
        tiny_classifier,
        {**synthetic_data, "validation": synthetic_data["test"]},
        "weight-magnitude",
    )
    recorder = Recorder()
    second = compress(other, tmp_path / "b", reporter=recorder, checkpoint_dir=tmp_path / "ckpt")
    assert second.report.sweep.measurements > 0
    assert any("other inputs" in message for _, message, _ in recorder.events)
    fresh = compress(other, tmp_path / "c")
    assert second.report.strategies == fresh.report.strategies
    # And the directory is now the second run's: the same inputs resume again.
    third = compress(other, tmp_path / "d", checkpoint_dir=tmp_path / "ckpt")
    assert third.report.sweep.measurements == 0


def test_distillation_uses_cached_teacher_logits(
    tiny_classifier, synthetic_data, tmp_path, monkeypatch
):
    from layerfuse.compression import healing

    calls = []
    real = healing.predict
    monkeypatch.setattr(healing, "predict", lambda *a, **k: calls.append(1) or real(*a, **k))
    spec = two_strategy_spec(
        tiny_classifier, synthetic_data, "drop-top", distillation={"epochs": 3, "patience": 3}
    )
    result = compress(spec, tmp_path / "out")
    # The teacher ran over the training set once for three epochs of every candidate.
    assert len(calls) == 1
    assert len(result.report.recovery.candidates) == 3
    kd = result.report.distillation
    assert kd.epochs_run == 3
    assert kd.after.validation["accuracy"] >= kd.before.validation["accuracy"]


def test_bf16_autocast_is_chosen_only_where_supported():
    from layerfuse.compression.device import Runtime, cpu_has_bf16

    assert Runtime.resolve("cpu", "auto").bf16 == cpu_has_bf16()
    assert not Runtime.resolve("cpu", "fp32").bf16
    if not torch.cuda.is_available():
        assert Runtime.resolve("auto", "auto").device.type == "cpu"


def test_checkpointed_teacher_is_restored_not_trained_again(tiny_encoder, synthetic_data, tmp_path):
    spec = two_strategy_spec(
        tiny_encoder, synthetic_data, "drop-top", distillation={"enabled": False}
    )
    first = compress(spec, tmp_path / "a", checkpoint_dir=tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "teacher.safetensors").is_file()
    second = compress(spec, tmp_path / "b", checkpoint_dir=tmp_path / "ckpt")
    assert second.report.teacher.resumed_from_checkpoint
    assert second.report.baseline.validation == first.report.baseline.validation


def test_the_public_stages_compose_to_what_compress_does(tiny_classifier, synthetic_data, tmp_path):
    from layerfuse.compression import stages
    from layerfuse.compression.progress import NeverCancel, NullReporter, ProgressTracker
    from layerfuse.compression.strategies import build_strategies

    spec = two_strategy_spec(
        tiny_classifier, synthetic_data, "weight-magnitude", distillation={"enabled": False}
    )
    whole = compress(spec, tmp_path / "whole")
    tracker = ProgressTracker(NullReporter(), NeverCancel())
    prepared = stages.prepare(spec, tracker)
    assert not prepared.needs_teacher  # the tiny classifier's head knows the labels
    teacher = stages.keep_teacher(prepared)
    baseline = stages.evaluate_baseline(prepared, teacher, tracker)
    strategies = build_strategies(spec.walked_strategies(), spec.options)
    swept = stages.run_sweep(prepared, teacher, baseline, strategies, tracker)
    fused = stages.fuse(prepared, swept, tracker)
    selected = stages.select_depth(prepared, baseline, fused, tracker)
    recovered = stages.recover(prepared, teacher, selected, tracker)
    assert baseline.report == whole.report.baseline.model_copy(
        update={"latency_ms": baseline.report.latency_ms}
    )
    assert selected.strategies == whole.report.strategies
    assert selected.report == whole.report.selection
    assert recovered.report == whole.report.distillation
    assert recovered.kept_layers == whole.report.selection.kept_layers


def test_an_original_that_scores_zero_gets_no_improvement_factor(
    tiny_classifier, synthetic_data, tmp_path
):
    """A test split of only the rows the original gets wrong: the factor over 0% is undefined,
    and the run still exports (it failed with a ZeroDivisionError in exporting)."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_classifier)
    rows = [json.loads(line) for line in synthetic_data["test"].read_text().splitlines()]
    with torch.no_grad():
        encoded = tokenizer(
            [r["text"] for r in rows],
            truncation=True,
            max_length=32,
            padding=True,
            return_tensors="pt",
        )
        predicted = model(**encoded).logits.argmax(-1).tolist()
    wrong = [
        r for r, p in zip(rows, predicted, strict=True) if model.config.id2label[p] != r["label"]
    ]
    assert len(wrong) >= 10
    test = tmp_path / "wrong.jsonl"
    test.write_text("".join(json.dumps(r) + "\n" for r in wrong))

    spec = two_strategy_spec(
        tiny_classifier,
        {**synthetic_data, "test": test},
        "drop-top",
        distillation={"enabled": False},
    )
    result = compress(spec, tmp_path / "out")
    assert result.report.baseline.test["accuracy"] == 0
    assert result.report.final.improvement_factor is None
    assert result.summary["improvement_factor"] is None
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["final"]["improvement_factor"] is None
    assert "improvement factor of n/a" in (tmp_path / "out" / "model_card.md").read_text()


def test_an_unused_text_pair_column_is_warned_about(tiny_classifier, tmp_path):
    """A pair task read as single texts trained a worse model without a word."""
    from layerfuse.compression.progress import NeverCancel, ProgressTracker
    from layerfuse.compression.stages import prepare
    from tests.factories import write_jsonl

    train = write_jsonl(tmp_path / "train.jsonl", synthetic_rows(60, pair=True))
    warned = []
    for pair_column in (None, "text_pair"):
        recorder = Recorder()
        spec = spec_for(
            tiny_classifier,
            {"train": train, "validation": None, "test": None},
            columns={"text_pair_column": pair_column},
        )
        prepare(spec, ProgressTracker(recorder, NeverCancel()))
        warned.append([m for _, m, _ in recorder.events if "'text_pair' column" in m])
    assert len(warned[0]) == 1 and "--text-pair-column text_pair" in warned[0][0]
    assert warned[1] == []
