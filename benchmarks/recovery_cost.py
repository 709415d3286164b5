"""What the healed comparison costs: the distilling stage's wall time with the default recipe
(the job's candidate plus ``drop-top`` and ``uniform``, early stopping) against the former single
recovery (one candidate, logit KD for 3 fixed epochs), on MiniLM-L6 and a trec subset.

    OMP_NUM_THREADS=1 python benchmarks/recovery_cost.py --train-size 600 --k 2

Both runs share the teacher (fine-tuned once, checkpointed) and the sweep; only recovery differs.
Results: ``results/recovery_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import quality

from layerfuse.compression import CompressionSpec, compress

RESULTS = quality.RESULTS_DIR / "recovery_cost.json"
OLD_RECIPE = {"epochs": 3, "epochs_per_layer": 0, "patience": 20, "compare": []}


def subset(shared: Path, work: Path, size: int, seed: int) -> dict[str, Path]:
    rows = quality.read_jsonl(shared / "trec" / "train.jsonl")
    random.Random(seed).shuffle(rows)
    paths = {"train": work / "train.jsonl", "test": work / "test.jsonl"}
    quality.write_jsonl(paths["train"], rows[:size])
    quality.write_jsonl(paths["test"], quality.read_jsonl(shared / "trec" / "test.jsonl"))
    return paths


def run(args: argparse.Namespace, data: dict[str, Path], model: Path, recipe: dict) -> dict:
    spec = CompressionSpec(
        model_dir=model,
        train=data["train"],
        test=data["test"],
        strategy=args.strategy,
        strategies=sorted({"drop-top", args.strategy}),
        target={"layers_to_remove": args.k},
        distillation=recipe,
        options={
            "n_calib": 32,
            "leave_one_out_probe": False,
            "measure_latency": False,
            "fine_tune_teacher": "always",
            "device": "cpu",
        },
    )
    result = compress(spec, args.work / "out", checkpoint_dir=args.work / "checkpoint")
    report = result.report
    return {
        "distilling_seconds": round(report.timings["distilling"], 1),
        "teacher_logits_seconds": round(report.recovery.teacher_seconds, 1),
        "candidates": [
            {
                "candidate": c.candidate,
                "removed": c.removed_layers,
                "validation_accuracy": round(c.after.validation["accuracy"], 4),
                "test_accuracy": round(c.after.test["accuracy"], 4) if c.after.test else None,
                "epochs": c.epochs_run,
                "seconds": round(c.seconds, 1),
            }
            for c in report.recovery.candidates
        ],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--train-size", type=int, default=600)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--strategy", default="weight-magnitude", help="the job's strategy")
    p.add_argument("--work", type=Path, default=quality.REPO / "runs" / "recovery_cost")
    p.add_argument("--shared", type=Path, default=quality.DEFAULT_SHARED)
    args = p.parse_args()
    args.device, args.commit = "cpu", None
    args.work.mkdir(parents=True, exist_ok=True)
    data = subset(args.shared, args.work, args.train_size, seed=0)
    model, _ = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    old = run(args, data, model, OLD_RECIPE)
    new = run(args, data, model, {})
    out = {
        "settings": {
            "dataset": "trec",
            "train_examples": args.train_size,
            "layers_removed": args.k,
            "model": "MiniLM-L6 (fine-tuned 3 epochs on the subset)",
            "strategy": args.strategy,
            "old": "one candidate (the job's strategy), logit KD, 3 fixed epochs",
            "new": "library defaults: drop-top + uniform compared, early stopping",
            **quality.environment(args, "fp32 checkpoint"),
        },
        "old": old,
        "new": new,
        "ratio": round(new["distilling_seconds"] / old["distilling_seconds"], 2),
    }
    quality.write_json_atomic(RESULTS, out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
