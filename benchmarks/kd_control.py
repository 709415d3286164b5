"""Control for the distillation claim: is "distilled beats the original" the method, or training?

The quality benchmark's original model is the teacher after 3 fine-tuning epochs; the distilled
student then trains 3 more epochs (on the teacher's soft labels). Where the teacher was still
improving at its third epoch, the student's edge may be those extra epochs alone. This control
trains the *unpruned* teacher for the same 3 more epochs with plain cross-entropy (same learning
rate, batch size, schedule, seed and best-epoch-by-validation rule as the library's distillation)
and records its test accuracy beside the original and the distilled model of
``results/quality.json``.

    python benchmarks/kd_control.py                       # every dataset in quality.json
    python benchmarks/kd_control.py --datasets emotion,20newsgroups

It reuses the quality run's subsets and teacher checkpoint (``runs/quality/<name>/checkpoint``);
where the checkpoint is gone it fine-tunes the teacher again with the same seed, as the quality
run did. Results: ``results/kd_control.json`` (written after every dataset, resumable), rendered
into ``results/quality.md`` by ``quality.py --render-only``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import quality

RESULTS = quality.RESULTS_DIR / "kd_control.json"


def train_longer(
    name: str, spec: Any, checkpoint: Path, save_teacher: Path | None = None
) -> tuple[dict[str, float], Any, float]:
    """Train the unpruned teacher of ``spec`` for ``spec.distillation.epochs`` more with
    cross-entropy: the original's accuracies, the training result and the test accuracy after.

    The library's own first stages, so the teacher, data and encodings are exactly the quality
    run's; only the final training differs (the control's whole point). ``save_teacher`` keeps
    the teacher, before the extra training, as a Hugging Face directory.
    """
    from layerfuse.compression.progress import NeverCancel, ProgressTracker
    from layerfuse.compression.stages import fine_tune_teacher, prepare
    from layerfuse.compression.stages.distilling import train_student

    tracker = ProgressTracker(quality.PrintReporter(name), NeverCancel())
    prepared = prepare(spec, tracker)
    tracker.enter("fine_tuning_teacher")
    teacher = fine_tune_teacher(prepared, tracker, checkpoint)
    model, runtime, test = teacher.model, prepared.runtime, prepared.test
    assert test is not None  # the spec names a test split
    if save_teacher is not None and not (save_teacher / "config.json").is_file():
        model.save_pretrained(save_teacher)
        prepared.loaded.tokenizer.save_pretrained(save_teacher)
    original = {
        "validation_accuracy": round(prepared.validation.evaluate(model, runtime)["accuracy"], 6),
        "test_accuracy": round(test.evaluate(model, runtime)["accuracy"], 6),
    }
    result = train_student(prepared, model, tracker)
    return original, result, round(test.evaluate(model, runtime)["accuracy"], 6)


def control(name: str, args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    spec = quality.dataset_spec(name, args, model_dir)
    started = time.perf_counter()
    original, result, test_accuracy = train_longer(name, spec, args.work / name / "checkpoint")
    return {
        "original": original,
        "trained_longer": {
            "validation_accuracy": round(result.best["accuracy"], 6),
            "test_accuracy": test_accuracy,
            "best_epoch": result.best_epoch,
            "validation_history": [round(h["accuracy"], 4) for h in result.history],
        },
        "extra_epochs": spec.distillation.epochs,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=None, help="comma-separated (default: quality.json's)")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--quality", type=Path, default=quality.RESULTS_DIR / "quality.json")
    p.add_argument("--work", type=Path, default=quality.DEFAULT_WORK)
    p.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    p.add_argument("--force", action="store_true", help="redo datasets already in --results")
    args = p.parse_args()
    runs = json.loads(args.quality.read_text())
    settings = runs["settings"]
    # The quality run's spec; only its teacher and data matter here.
    args.max_length, args.seed = settings["max_length"], settings["seed"]
    args.n_calib = settings.get("n_calib")
    args.epochs, args.commit = None, None
    args.subsets = args.work / "subsets"
    names = args.datasets.split(",") if args.datasets else list(runs["datasets"])
    out = json.loads(args.results.read_text()) if args.results.is_file() else {"datasets": {}}
    out["settings"] = {
        "what": "the unpruned teacher trained for the distillation's epochs more, cross-entropy "
        "only, best epoch by validation; compare with quality.json's distilled model",
        "command": "python benchmarks/kd_control.py",
        **quality.environment(args, settings["model_weights"]),
    }
    model_dir, _ = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    for name in names:
        if name in out["datasets"] and not args.force:
            print(f"{name}: already in {args.results}, skipped", flush=True)
            continue
        if not (args.subsets / name / "manifest.json").is_file():
            raise SystemExit(f"{name}: no subsets under {args.subsets}; run quality.py first")
        entry = control(name, args, model_dir)
        entry["distilled_test_accuracy"] = runs["datasets"][name]["distilled"]["test_accuracy"]
        out["datasets"][name] = entry
        quality.write_json_atomic(args.results, out)
        print(
            f"{name}: original {entry['original']['test_accuracy']:.4f}, trained longer "
            f"{entry['trained_longer']['test_accuracy']:.4f}, distilled "
            f"{entry['distilled_test_accuracy']:.4f} ({entry['seconds']:.0f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
