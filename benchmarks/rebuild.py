"""Rebuild a depth run's exported model without running its whole job again.

``formats.py`` reads the depth benchmark's exported k = 2 model and teacher from ``runs/depth``,
which does not outlive the machine it ran on. The job is deterministic (seeded teacher
fine-tuning, seeded training per recovery), so the exported model is rebuilt from what
``depth.json`` recorded: the teacher fine-tuned again with the same seed (or read from the
checkpoint), then the exported candidate's layers (``layerfuse.removed``) recovered once with
the job's recipe by the library's own :class:`Healer`. The sweep and the other candidates are
not needed: their only effect on the exported model was choosing it, and that choice is in
``depth.json``.

    python benchmarks/rebuild.py --datasets trec,sst2         # into runs/depth/<name>/k2/out/model

The rebuilt model is checked against the recorded validation and test accuracy (a mismatch of
more than one example stops the script: the model would not be the one ``depth.json`` reports).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import depth
import quality

K = 2
# One example in 500 (validation) or in 1,000 (test) may fall the other way (trec: 0.934 against
# 0.932 on validation, test the same).
TOLERANCE = 0.0025


def rebuild(name: str, args: argparse.Namespace, k: int = K) -> Path:
    """Write ``<work>/<name>/teacher`` and ``<work>/<name>/k<k>/<args.into>/model``; returns the
    latter."""
    from layerfuse.compression.healing import Healer
    from layerfuse.compression.models import save_model
    from layerfuse.compression.progress import NeverCancel, ProgressTracker
    from layerfuse.compression.stages import fine_tune_teacher, prepare

    recorded = json.loads(args.depth_results.read_text())["datasets"][name]["depths"][str(k)]
    exported = recorded["layerfuse"]
    depth.draw_subsets(name, args)
    tracker = ProgressTracker(quality.PrintReporter(f"{name} rebuild k={k}"), NeverCancel())
    prepared = prepare(depth.spec_for(name, args, k, {}), tracker)
    tracker.enter("fine_tuning_teacher")
    teacher = fine_tune_teacher(prepared, tracker, args.work / name / "checkpoint")
    teacher_dir = args.work / name / "teacher"
    if not (teacher_dir / "config.json").is_file():
        save_model(teacher.model, prepared.loaded.tokenizer, teacher_dir)
    tracker.enter("distilling")
    healer = Healer(prepared, teacher, tracker, 1, {})
    healed = healer.heal(exported["candidate"], exported["removed"])
    got = {
        "validation_accuracy": round(healed.validation_accuracy, 6),
        "test_accuracy": round(healed.after.test["accuracy"], 6),
    }
    want = {key: exported[key] for key in got}
    # Bitwise equality is not expected (on imdb the weights differ from the job's by up to 3e-3
    # with identical accuracies; the source of the difference was not traced), the recorded
    # accuracies are.
    if any(abs(got[key] - want[key]) > TOLERANCE for key in got):
        raise SystemExit(f"{name}: rebuilt {got}, depth.json has {want}: not the same model")
    out = args.work / name / f"k{k}" / args.into / "model"
    save_model(healer.student(healed), prepared.loaded.tokenizer, out)
    print(f"{name}: rebuilt {exported['candidate']} {exported['removed']} {got}", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=",".join(depth.ORDER), help="comma-separated")
    depth.add_rerun_arguments(p)
    # Another name than the job's ``out`` keeps a model the job wrote, to compare the two.
    p.add_argument("--into", default="out", help="write <work>/<name>/k2/<into>/model")
    args = p.parse_args()
    args.subsets = args.work / "subsets"
    args.n_calib, args.epochs = None, None
    args.train_size, args.validation_size = quality.TRAIN_SIZE, quality.VALIDATION_SIZE
    args.test_size = quality.TEST_SIZE
    args.model_dir, _ = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    for name in args.datasets.split(","):
        rebuild(name, args)


if __name__ == "__main__":
    main()
