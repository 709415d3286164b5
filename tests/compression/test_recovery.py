"""Recovery on tiny models: the layer map, the extra loss terms, early stopping, the healed
comparison and the depth search on recovered accuracy."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from layerfuse.compression import batching, compress
from layerfuse.compression.evaluation import EvalSet
from layerfuse.compression.model_card import model_card
from layerfuse.compression.models import pruned_copy
from layerfuse.compression.recovery import (
    LayerMappedLoss,
    baseline_removal,
    layer_map,
    uniform_kept,
)
from layerfuse.compression.selection import deepest_within
from layerfuse.compression.spec import Distillation
from layerfuse.compression.training import Distill, train
from tests.compression.helpers import FP32, encoded_rows, load_eager
from tests.compression.test_pipeline import spec_for


def test_each_kept_layer_is_matched_to_the_state_before_the_next_kept_one():
    assert layer_map([0, 2, 5], 6) == [1, 4, 5]
    assert layer_map([0, 1, 2, 3], 4) == [0, 1, 2, 3]
    assert layer_map([3], 4) == [3]


def test_uniform_keeps_layers_spread_from_first_to_last():
    assert uniform_kept(12, 6) == [0, 2, 4, 7, 9, 11]  # DistilBERT's initialisation
    assert uniform_kept(6, 3) == [0, 3, 5]
    assert baseline_removal("uniform", 6, 3) == [4, 2, 1]
    assert baseline_removal("drop-top", 6, 2) == [5, 4]
    assert baseline_removal("weight-magnitude", 6, 2) is None


@pytest.mark.parametrize("distance", ["mse", "cosine"])
def test_extra_loss_is_zero_for_a_student_equal_to_the_teacher(tiny_classifier, distance):
    teacher, tokenizer, adapter = load_eager(tiny_classifier)
    batch = encoded_rows(tokenizer, n=8).collate(list(range(8)))
    kd = Distillation(hidden_weight=1.0, hidden_distance=distance, attention_weight=1.0)

    def extra(kept: list[int]) -> float:
        student = pruned_copy(teacher, adapter, kept)
        loss = LayerMappedLoss(teacher, kept, 4, kd)
        with torch.no_grad():
            return float(loss(student(**batch.inputs, **loss.forward_kwargs), batch))

    assert extra([0, 1, 2, 3]) == pytest.approx(0.0, abs=1e-7)
    assert extra([0, 2]) > 1e-4  # a pruned student is not where the teacher is


def test_pruned_layers_follow_the_copys_attention_implementation(tiny_classifier):
    teacher, tokenizer, adapter = load_eager(tiny_classifier)
    student = pruned_copy(teacher, adapter, [1, 3])
    student.set_attn_implementation("sdpa")
    student.set_attn_implementation("eager")
    batch = encoded_rows(tokenizer, n=4).collate(list(range(4)))
    with torch.no_grad():
        attentions = student(**batch.inputs, output_attentions=True).attentions
    assert len(attentions) == 2 and all(a is not None for a in attentions)
    assert teacher.config._attn_implementation == "eager"


def test_early_stopping_ends_training_after_patience_epochs_without_gain(tiny_classifier):
    model, tokenizer, _ = load_eager(tiny_classifier)
    data = encoded_rows(tokenizer, n=32)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    common = {"learning_rate": 1e-12, "batch_size": 16, "seed": 0}  # nothing can improve
    stopped = train(copy.deepcopy(model), data, validation, FP32, epochs=6, patience=2, **common)
    full = train(copy.deepcopy(model), data, validation, FP32, epochs=6, **common)
    assert (stopped.epochs_run, stopped.best_epoch) == (2, 0)
    assert full.epochs_run == 6


def test_a_batch_run_as_slices_gets_the_whole_batchs_gradient(tiny_classifier, monkeypatch):
    model, tokenizer, adapter = load_eager(tiny_classifier)
    for module in model.modules():  # the one thing slices change: where dropout draws fall
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    data = encoded_rows(tokenizer, n=32)
    validation = EvalSet(encoded_rows(tokenizer, n=16, seed=5), 64)
    kd = Distillation(hidden_weight=1.0, attention_weight=1.0)
    logits = torch.randn(len(data), model.config.num_labels)
    heads = model.config.num_attention_heads

    def first_gradient() -> dict[str, torch.Tensor]:
        """Every parameter's gradient at the first step, clipped as the optimizer saw it."""
        student = pruned_copy(model, adapter, [0, 2])
        grads: list[dict[str, torch.Tensor]] = []
        train(
            student,
            data,
            validation,
            FP32,
            epochs=1,
            learning_rate=1e-3,
            batch_size=16,
            seed=0,
            distill=Distill(logits, temperature=2.0, alpha=0.5),
            extra_loss=LayerMappedLoss(model, [0, 2], 4, kd),
            on_batch=lambda _: grads.append(
                {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
            ),
        )
        return grads[0]

    whole = first_gradient()
    # One example per slice: the slices' shares of the valid tokens (the extra terms' weights)
    # differ from their shares of the examples (the distillation loss's), 7 to 15 tokens each.
    monkeypatch.setattr(batching, "ATTENTION_SLICE_ELEMENTS", 1)
    assert len(batching.attention_slices(data.collate(list(range(16))), heads)) == 16
    sliced = first_gradient()
    assert sorted(sliced) == sorted(whole) and len(whole) > 10
    for name, grad in whole.items():
        torch.testing.assert_close(sliced[name], grad, rtol=1e-4, atol=1e-7, msg=name)


def test_bisection_finds_the_deepest_passing_depth_with_few_recoveries():
    accuracy = {1: 0.95, 2: 0.93, 3: 0.91, 4: 0.80, 5: 0.50}
    tried: list[int] = []

    def recovered(k: int) -> float:
        tried.append(k)
        return accuracy[k]

    assert deepest_within(0.9, 0, 5, recovered) == 3
    assert len(tried) <= 3 and 3 in tried
    assert deepest_within(0.99, 0, 5, lambda k: accuracy[k]) == 0  # keep the model whole


@pytest.fixture(scope="module")
def healed(tiny_classifier, synthetic_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("healed") / "out"
    spec = spec_for(
        tiny_classifier,
        synthetic_data,
        strategy="weight-magnitude",
        strategies=["drop-top", "weight-magnitude"],
        target={"layers_to_remove": 2},
        distillation={"epochs": 1, "epochs_per_layer": 0},
    )
    return compress(spec, out), out


def test_report_holds_every_candidate_recovered_with_the_same_recipe(healed):
    report = healed[0].report
    candidates = report.recovery.candidates
    assert [c.candidate for c in candidates] == ["weight-magnitude", "drop-top", "uniform"]
    assert [c.removed_layers for c in candidates][1:] == [[2, 3], [1, 2]]
    for c in candidates:
        assert c.epochs_run == 1 and len(c.removed_layers) == 2
        assert c.after.validation["accuracy"] >= c.before.validation["accuracy"]
        assert c.after.test is not None
    assert "Candidates compared after recovery" in (healed[1] / "model_card.md").read_text()


def test_exported_model_is_the_validation_best_candidate(healed):
    report, out = healed[0].report, healed[1]
    candidates = report.recovery.candidates
    best = max(c.after.validation["accuracy"] for c in candidates)
    (exported,) = [c for c in candidates if c.exported]
    assert exported.after.validation["accuracy"] == best
    assert report.selection.strategy == exported.candidate == report.recovery.exported
    assert report.selection.removed_layers == exported.removed_layers
    assert report.final.validation == exported.after.validation
    model = AutoModelForSequenceClassification.from_pretrained(out / "model")
    assert model.config.num_hidden_layers == 2


def test_model_card_names_candidates_the_validation_set_cannot_separate(healed):
    report = healed[0].report

    exported_removal = report.recovery.candidates[0].removed_layers
    assert exported_removal not in [c.removed_layers for c in report.recovery.candidates[1:]]

    def noise(*accuracies: float, drop_top_removes: list[int] | None = None) -> str:
        """The card's validation-noise sentence for these accuracies ("" when it has none)."""
        pairs = zip(report.recovery.candidates, accuracies, strict=True)
        candidates = [
            c.model_copy(
                update={
                    "after": c.after.model_copy(
                        update={"validation": {**c.after.validation, "accuracy": accuracy}}
                    ),
                    "exported": i == 0,
                    "removed_layers": drop_top_removes
                    if c.candidate == "drop-top" and drop_top_removes
                    else c.removed_layers,
                }
            )
            for i, (c, accuracy) in enumerate(pairs)
        ]
        changed = report.model_copy(
            update={
                "recovery": report.recovery.model_copy(update={"candidates": candidates}),
                "dataset": report.dataset.model_copy(update={"validation": 500}),
            }
        )
        text = model_card(changed).decode()
        lines = [line for line in text.splitlines() if "standard errors" in line]
        assert len(lines) <= 1
        return lines[0] if lines else ""

    # p = (450 + 2) / 504, 2 * sqrt(p(1 - p) / 504) = 2.7 points: drop-top (1 point behind) is
    # within it, uniform (10 behind) not.
    line = noise(0.90, 0.89, 0.80)
    assert "500 validation examples" in line and "±2.7 points" in line
    assert "`drop-top` recovered within" in line and "uniform" not in line
    assert noise(0.90, 0.85, 0.80) == ""
    line = noise(0.90, 0.89, 0.89)
    assert "`drop-top` and `uniform` recovered within" in line and "any of them" in line
    # A tie at 100% is still a tie: the margin does not collapse to zero there.
    line = noise(1.0, 1.0, 0.9)
    assert "±0.6 points" in line and "`drop-top`" in line and "uniform" not in line
    # The same layers removed under another name are the same model, not a rival.
    assert noise(0.90, 0.89, 0.80, drop_top_removes=exported_removal) == ""


def test_compare_off_runs_one_recovery(tiny_classifier, synthetic_data, tmp_path):
    spec = spec_for(
        tiny_classifier,
        synthetic_data,
        strategy="drop-top",
        strategies=["drop-top", "weight-magnitude"],
        target={"layers_to_remove": 1},
        distillation={"epochs": 1, "compare": []},
    )
    report = compress(spec, tmp_path / "out").report
    assert [c.candidate for c in report.recovery.candidates] == ["drop-top"]
    assert report.selection.strategy == "drop-top"


def test_accuracy_drop_is_judged_after_recovery(tiny_encoder, synthetic_data, tmp_path):
    # A fine-tuned teacher, so removing layers costs accuracy before recovery.
    spec = spec_for(
        tiny_encoder,
        synthetic_data,
        strategy="drop-top",
        strategies=["drop-top", "weight-magnitude"],
        target={"max_accuracy_drop": 0.0},
        distillation={"epochs": 1, "epochs_per_layer": 0, "compare": []},
    )
    report = compress(spec, tmp_path / "out").report
    floor = report.baseline.validation["accuracy"]
    curve = report.strategies["drop-top"].curve
    met_before = [p.layers_removed for p in curve if p.validation["accuracy"] >= floor]
    k = report.selection.layers_removed
    trials = report.recovery.depth_search
    assert k >= max(met_before)  # recovery never chooses shallower than before it
    if max(met_before) < 3:
        # Only depths deeper than those met before recovery are recovered to decide.
        assert trials and all(t.layers_removed > max(met_before) for t in trials)
        assert report.selection.depths_tried == [t.layers_removed for t in trials]
    for t in trials:
        assert t.met_target == (t.validation_accuracy >= floor)
        assert t.layers_removed <= k or not t.met_target
    if k:
        assert report.final.validation["accuracy"] >= floor
        assert report.recovery.candidates[0].removed_layers == report.selection.removed_layers


def test_training_ends_when_its_caller_says_so_and_is_not_asked_after_the_last_epoch(
    tiny_classifier,
):
    model, tokenizer, _ = load_eager(tiny_classifier)
    data = encoded_rows(tokenizer, n=32)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    common = {"learning_rate": 1e-4, "batch_size": 16, "seed": 0}
    asked: list[int] = []

    def stop_after_two(epoch: int, best: float) -> bool:
        asked.append(epoch)
        return epoch < 2

    raced = train(
        copy.deepcopy(model), data, validation, FP32, epochs=4, keep_going=stop_after_two, **common
    )
    assert (raced.epochs_run, raced.stopped_by) == (2, "race") and asked == [1, 2]
    asked.clear()
    full = train(
        copy.deepcopy(model), data, validation, FP32, epochs=2, keep_going=stop_after_two, **common
    )
    assert (full.epochs_run, full.stopped_by) == (2, "max-epochs") and asked == [1]
    assert full.best_by_epoch() == sorted(full.best_by_epoch())
    assert len(full.best_by_epoch()) == 3  # the starting weights and both epochs


def test_a_run_of_a_single_step_trains(tiny_classifier):
    """At most one batch of data for one epoch: the whole run is warm-up, and the decay's
    (total - s) / (total - warmup) divided by zero."""
    model, tokenizer, _ = load_eager(tiny_classifier)
    validation = EvalSet(encoded_rows(tokenizer, n=24, seed=5), 64)
    data = encoded_rows(tokenizer, n=8)
    result = train(
        model, data, validation, FP32, epochs=1, learning_rate=5e-2, batch_size=32, seed=0
    )
    assert result.epochs_run == 1 and len(result.history) == 2
