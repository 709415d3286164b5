"""The healer on a tiny model: it reads the sweep's measurements instead of measuring again, and
keeps only the students that can still be exported."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from types import SimpleNamespace

import pytest

from layerfuse.compression import healing, stages
from layerfuse.compression.healing import Healer
from layerfuse.compression.models import pruned_copy
from layerfuse.compression.progress import NeverCancel, NullReporter, ProgressTracker
from layerfuse.compression.spec import Target
from layerfuse.compression.stages import distilling
from layerfuse.compression.strategies import build_strategies
from tests.compression.test_pipeline import spec_for

STRATEGIES = ["drop-top", "weight-magnitude"]


def staged(model, data, strategy="weight-magnitude", **overrides):
    """The stages up to ``selecting``, as :func:`compress` runs them."""
    spec = spec_for(model, data, strategy=strategy, strategies=STRATEGIES, **overrides)
    tracker = ProgressTracker(NullReporter(), NeverCancel())
    prepared = stages.prepare(spec, tracker)
    teacher = (
        stages.fine_tune_teacher(prepared, tracker)
        if prepared.needs_teacher
        else stages.keep_teacher(prepared)
    )
    baseline = stages.evaluate_baseline(prepared, teacher, tracker)
    strategies = build_strategies(spec.walked_strategies(), spec.options)
    swept = stages.run_sweep(prepared, teacher, baseline, strategies, tracker)
    fused = stages.fuse(prepared, swept, tracker)
    return prepared, teacher, stages.select_depth(prepared, baseline, fused, tracker), tracker


@pytest.fixture(scope="module")
def selected(tiny_classifier, synthetic_data):
    return staged(
        tiny_classifier,
        synthetic_data,
        target={"layers_to_remove": 2},
        distillation={"epochs": 1, "epochs_per_layer": 0},
    )


def test_the_sweeps_measurements_are_what_evaluating_the_pruned_copy_gives(selected):
    prepared, teacher, chosen, _ = selected
    removals = [s for s in chosen.state_metrics if len(s) == 2]
    assert len(removals) >= 2  # both trajectories' second states at least
    for removal in removals:
        kept = [i for i in range(prepared.num_layers) if i not in removal]
        copy = pruned_copy(teacher.model, prepared.loaded.adapter, kept)
        assert chosen.state_metrics[removal] == {
            "validation": prepared.validation.evaluate(copy, prepared.runtime),
            "test": prepared.test.evaluate(copy, prepared.runtime),
        }


def test_before_recovery_is_read_from_the_sweep_and_measured_the_same_without_it(selected):
    prepared, teacher, chosen, tracker = selected
    order = chosen.strategies["drop-top"].removal_order[:2]
    measured = chosen.state_metrics[frozenset(order)]
    marked = {**measured, "validation": {**measured["validation"], "accuracy": -1.0}}
    read = Healer(prepared, teacher, tracker, 1, {frozenset(order): marked}).heal("a", order)
    assert read.before.validation["accuracy"] == -1.0  # taken as given, not evaluated again
    evaluated = Healer(prepared, teacher, tracker, 1, {}).heal("b", order)
    assert evaluated.before.model_dump() == measured


def test_released_students_are_freed_and_renamed_ones_shared(selected):
    prepared, teacher, chosen, tracker = selected
    healer = Healer(prepared, teacher, tracker, 3, chosen.state_metrics)
    first, second = healer.heal("a", [3]), healer.heal("b", [2])
    gone = weakref.ref(healer.student(second))
    healer.keep_only(first)
    gc.collect()
    assert gone() is None
    with pytest.raises(LookupError):
        healer.student(second)
    assert second.after == healer.heal("b", [2]).after  # its measurements stay
    renamed = healer.heal("c", [3])
    assert (renamed.candidate, renamed.seconds) == ("c", 0.0)
    assert healer.student(renamed) is healer.student(first)
    healer.release(renamed)
    assert not healer.students


def test_recovery_holds_one_student_besides_the_one_it_trains(
    tiny_classifier, synthetic_data, monkeypatch
):
    prepared, teacher, chosen, tracker = staged(
        tiny_classifier,
        synthetic_data,
        target={"layers_to_remove": 2},
        distillation={"epochs": 1, "epochs_per_layer": 0, "schedule": "one-shot"},
    )
    students: list[weakref.ref] = []
    alive_at_each_start: list[int] = []

    def counted_copy(*args):
        gc.collect()
        alive_at_each_start.append(sum(ref() is not None for ref in students))
        student = pruned_copy(*args)
        students.append(weakref.ref(student))
        return student

    monkeypatch.setattr(healing, "pruned_copy", counted_copy)
    recovered = stages.recover(prepared, teacher, chosen, tracker)
    assert len(students) == 3  # the job's candidate, drop-top and uniform
    assert max(alive_at_each_start) <= 1
    gc.collect()
    assert [ref() for ref in students if ref() is not None] == [recovered.student]


class CannedHealer:
    """A healer whose recovered accuracy is canned per depth; it tracks the students kept."""

    def __init__(self, accuracy: dict[int, float]):
        self.accuracy, self.kept = accuracy, set()

    def heal(self, candidate, order):
        healed = SimpleNamespace(
            key=frozenset(order), validation_accuracy=self.accuracy[len(order)]
        )
        self.kept.add(healed.key)
        return healed

    def keep_only(self, healed):
        self.kept = {healed.key}

    def release(self, healed):
        self.kept.discard(healed.key)


def test_the_depth_search_keeps_only_the_deepest_passing_depths_student(selected):
    prepared, _, chosen, _ = selected
    target = Target(max_accuracy_drop=0.05)
    prepared = replace(prepared, spec=prepared.spec.model_copy(update={"target": target}))
    unmet = replace(chosen.selection, met_target=False)  # so the search starts from k = 0
    chosen = replace(chosen, selection=unmet, baseline_accuracy=0.9)
    healer = CannedHealer({1: 0.9, 2: 0.9, 3: 0.5})
    trials: list = []
    assert distilling._search(prepared, chosen, healer, trials) == 2
    assert [t.layers_removed for t in trials] == [2, 3]
    order = chosen.strategies["weight-magnitude"].removal_order
    assert healer.kept == {frozenset(order[:2])}


def _with_epochs(prepared, epochs):
    # Patience beyond the epochs, so only the limit or the race can end a recovery.
    kd = prepared.spec.distillation.model_copy(update={"epochs": epochs, "patience": 10})
    return replace(prepared, spec=prepared.spec.model_copy(update={"distillation": kd}))


def test_a_candidate_behind_the_leaders_pace_stops_and_one_level_runs_on(selected):
    prepared, teacher, chosen, tracker = selected
    prepared = _with_epochs(prepared, 3)
    healer = Healer(prepared, teacher, tracker, 3, chosen.state_metrics)
    free = healer.heal("free", [3, 2])
    assert (free.result.epochs_run, free.result.stopped_by) == (3, "max-epochs")
    behind = healer.heal("behind", [1, 2], pace=[2.0])  # no accuracy reaches 2.0
    assert (behind.result.epochs_run, behind.result.stopped_by) == (1, "race")
    assert behind.report(exported=False).stopped_by == "race"
    level = healer.heal("level", [0, 2], pace=[-1.0])  # every accuracy keeps up
    assert (level.result.epochs_run, level.result.stopped_by) == (3, "max-epochs")


def test_the_healed_comparison_races_only_when_asked(selected, monkeypatch):
    prepared, teacher, chosen, tracker = selected
    paces: list = []
    original = Healer.heal

    def recorded(self, candidate, order, pace=None):
        paces.append(pace)
        return original(self, candidate, order, pace)

    monkeypatch.setattr(Healer, "heal", recorded)
    for race in (True, False):
        paces.clear()
        kd = prepared.spec.distillation.model_copy(update={"epochs": 2, "race": race})
        raced = replace(prepared, spec=prepared.spec.model_copy(update={"distillation": kd}))
        recovered = stages.recover(raced, teacher, chosen, tracker)
        assert paces[0] is None  # the job's own candidate sets the pace
        assert all((p is not None) is race for p in paces[1:]) and len(paces) == 3
        best = max(c.after.validation["accuracy"] for c in recovered.recovery.candidates)
        for c in recovered.recovery.candidates:
            assert c.stopped_by != "race" or c.after.validation["accuracy"] < best
