"""Depth benchmark: what recovery holds at one third and one half of MiniLM-L6's layers removed.

On the quality benchmark's subsets, teacher and settings (``quality.py``: train 4,000, validation
500, test 1,000, max_length 64, seed 0, the library fine-tuning MiniLM-L6 as the teacher), for each
dataset and each depth k (default 2 and 3 of 6 layers):

* ``layerfuse``: the model a job exports with ``target: {"layers_to_remove": k}`` and the library's
  default recovery (layer-mapped KD with early stopping, healed comparison with drop-top and
  uniform; the exported one is the best on validation);
* ``drop-top`` and ``uniform``: the same job's healed baselines, recovered with the same recipe;
* ``logit-only``: the job's strategy's layers (``fusion-random-forest``) recovered with the old
  recipe: logit KD only, 3 fixed epochs, no comparison;
* ``control``: the unpruned teacher trained with cross-entropy for as many extra epochs as the
  exported model's recovery ran (is the recovered model's edge recovery, or just more training?).

Every accuracy is the epoch kept by validation; test is measured once on that model.

    python benchmarks/depth.py                             # every dataset, results/depth.json
    python benchmarks/depth.py --datasets trec,sst2 --depths 2
    python benchmarks/depth.py --render-only               # results/depth.md from depth.json

Results are written after every (dataset, depth), atomically, so a run started again skips what
is done. The teacher checkpoint and the sweep's caches live under ``--work/<name>/checkpoint``:
every run of a dataset after the first reuses them. ``--work/<name>/teacher`` keeps the teacher
as a Hugging Face directory and ``--work/<name>/k<k>/out`` each job's whole output (the inputs of
``formats.py``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import kd_control
import quality

RESULTS = quality.RESULTS_DIR / "depth.json"
DEFAULT_WORK = quality.REPO / "runs" / "depth"
# Cheapest teachers first, so an interrupted run has covered as many datasets as it could.
ORDER = ("trec", "emotion", "sst2", "mrpc", "ag_news", "dbpedia", "mr", "20newsgroups", "imdb")
CANDIDATES = ("layerfuse", "drop-top", "uniform", "logit-only", "control")
# The recipe before layer-mapped recovery: logit KD for 3 epochs, every epoch run, no comparison.
OLD_RECIPE = {"epochs": 3, "epochs_per_layer": 0, "patience": 3, "compare": []}
GOALS = {"2": 1.0, "3": 3.0}  # points of test accuracy the exported model may lose, per depth


def spec_for(name: str, args: argparse.Namespace, k: int, distillation: dict[str, Any]) -> Any:
    spec = quality.dataset_spec(name, args, args.model_dir)
    return spec.model_copy(
        update={
            "target": spec.target.model_validate({"layers_to_remove": k}),
            "distillation": spec.distillation.model_validate(distillation),
        }
    )


def draw_subsets(name: str, args: argparse.Namespace) -> None:
    """``name``'s subsets under ``args.subsets`` (kept when already drawn)."""
    quality.draw_subsets(
        name,
        args.shared,
        args.subsets / name,
        train_size=args.train_size,
        validation_size=args.validation_size,
        test_size=args.test_size,
    )


def add_rerun_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments of the scripts that redo part of this benchmark from ``depth.json``
    (``rebuild.py``, ``hidden_term.py``, ``racing.py``): where its data, work and results are,
    and its settings."""
    p.add_argument("--shared", type=Path, default=quality.DEFAULT_SHARED)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--depth-results", type=Path, default=RESULTS)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)


def run_job(name: str, args: argparse.Namespace, k: int, tag: str, kd: dict[str, Any]) -> dict:
    """One library job at depth ``k``; returns its report.json."""
    from layerfuse.compression import compress

    out = args.work / name / f"k{k}{tag}" / "out"
    if out.exists():
        shutil.rmtree(out)
    result = compress(
        spec_for(name, args, k, kd),
        out,
        reporter=quality.PrintReporter(f"{name} k={k}{tag}"),
        checkpoint_dir=args.work / name / "checkpoint",
    )
    return result.report.to_json()


def _acc(evaluation: dict[str, Any], split: str) -> float:
    return round(float(evaluation[split]["accuracy"]), 6)


def candidate_row(c: dict[str, Any]) -> dict[str, Any]:
    return {
        "removed": sorted(c["removed_layers"]),
        "validation_accuracy": _acc(c["after"], "validation"),
        "test_accuracy": _acc(c["after"], "test"),
        "epochs": c["epochs_run"],
        "best_epoch": c["best_epoch"],
        "before": {
            "validation_accuracy": _acc(c["before"], "validation"),
            "test_accuracy": _acc(c["before"], "test"),
        },
        "seconds": round(c["seconds"], 1),
    }


def healed_rows(report: dict[str, Any]) -> dict[str, Any]:
    """``layerfuse`` (the exported candidate, named) and the healed baselines of one job."""
    recovery = report["recovery"]
    by_name = {c["candidate"]: c for c in recovery["candidates"]}
    exported = by_name[recovery["exported"]]
    rows = {"layerfuse": {"candidate": recovery["exported"], **candidate_row(exported)}}
    for baseline in ("drop-top", "uniform"):
        rows[baseline] = candidate_row(by_name[baseline])
    # The fused choice after the same recovery, also when a baseline was exported instead.
    rows[quality.FUSION_FOREST] = candidate_row(by_name[quality.FUSION_FOREST])
    return rows


def logit_only_row(report: dict[str, Any]) -> dict[str, Any]:
    (only,) = report["recovery"]["candidates"]
    return candidate_row(only)


def control_row(name: str, args: argparse.Namespace, epochs: int) -> tuple[dict, dict]:
    """The unpruned teacher trained ``epochs`` more with cross-entropy; also the original's
    accuracies, and the teacher saved as a Hugging Face directory for ``formats.py``."""
    started = time.perf_counter()
    original, result, test_accuracy = kd_control.train_longer(
        f"{name} control",
        spec_for(name, args, 1, {"epochs": epochs}),
        args.work / name / "checkpoint",
        save_teacher=args.work / name / "teacher",
    )
    row = {
        "removed": [],
        "validation_accuracy": round(result.best["accuracy"], 6),
        "test_accuracy": test_accuracy,
        "epochs": epochs,
        "best_epoch": result.best_epoch,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return original, row


def run_depth(name: str, args: argparse.Namespace, k: int) -> dict[str, Any]:
    started = time.perf_counter()
    report = run_job(name, args, k, "", {})
    rows = healed_rows(report)
    rows["logit-only"] = logit_only_row(run_job(name, args, k, "-logit-only", OLD_RECIPE))
    original, rows["control"] = control_row(name, args, rows["layerfuse"]["epochs"])
    return {
        "original": original,
        "rows": rows,
        "distilling_seconds": round(report["timings"]["distilling"], 1),
        "job_seconds": round(report["timings"]["total"], 1),
        "seconds": round(time.perf_counter() - started, 1),
    }


def run(args: argparse.Namespace) -> None:
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    args.model_dir, model_note = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    results["settings"] = {
        **results.get("settings", {}),
        "model": quality.MODEL_NAME,
        "train_size": args.train_size,
        "validation_size": args.validation_size,
        "test_size": args.test_size,
        "max_length": args.max_length,
        "seed": args.seed,
        "strategy": quality.FUSION_FOREST,
        "strategies": "all",
        "new_recipe": "library defaults (spec distillation {})",
        "old_recipe": OLD_RECIPE,
        "control": "unpruned teacher, cross-entropy, as many epochs as layerfuse's recovery ran",
        "command": "python benchmarks/depth.py",
        **quality.environment(args, model_note),
    }
    results.setdefault("datasets", {})
    for name in args.datasets:
        draw_subsets(name, args)
        entry = results["datasets"].setdefault(name, {"depths": {}})
        for k in args.depths:
            if str(k) in entry["depths"] and not args.force:
                print(f"{name} k={k}: already in {args.results}, skipped", flush=True)
                continue
            done = run_depth(name, args, k)
            entry["original"] = done.pop("original")
            entry["depths"][str(k)] = {**done.pop("rows"), "timing": done}
            entry["library_commit"] = results["settings"]["library_commit"]
            quality.write_json_atomic(args.results, results)
            print(f"{name} k={k}: done in {done['seconds']:.0f}s", flush=True)
            render(results, args.results.with_suffix(".md"))


# -- rendering ------------------------------------------------------------------------------------


def _pct(x: float | None, bold: bool = False) -> str:
    if x is None:
        return "–"
    text = f"{100 * x:.1f}"
    return f"**{text}**" if bold else text


def render(results: dict[str, Any], path: Path) -> None:
    lines = [
        "# Depth benchmark: recovery at one third and one half of MiniLM-L6's layers removed",
        "",
        "Test accuracy (%) of each candidate after recovery; the best of the pruned candidates in "
        "bold. `layerfuse` is the model a job exports (the best on validation among the fused "
        "choice, drop-top and uniform after the same recovery); `logit-only` the fused choice "
        "after the old recipe (logit KD, 3 fixed epochs); `control` the unpruned original trained "
        "as many extra epochs with cross-entropy. Produced by `python benchmarks/depth.py`; "
        "settings in `depth.json`.",
        "",
    ]
    datasets = results["datasets"]
    for k in ("2", "3"):
        rows = [(n, d) for n, d in datasets.items() if k in d.get("depths", {})]
        if not rows:
            continue
        lines += [
            f"## k = {k} ({k} of 6 layers removed)",
            "",
            "| dataset | original | " + " | ".join(CANDIDATES) + " | exported | layers removed |",
            "|---" * (len(CANDIDATES) + 4) + "|",
        ]
        within = beats = 0
        gains, costs = [], []
        for name, d in rows:
            depth = d["depths"][k]
            test = {c: depth[c]["test_accuracy"] for c in CANDIDATES}
            best = max(v for c, v in test.items() if c != "control")
            cells = [_pct(v, c != "control" and v == best) for c, v in test.items()]
            lf, original = depth["layerfuse"]["test_accuracy"], d["original"]["test_accuracy"]
            within += (original - lf) * 100 <= GOALS[k]
            beats += lf >= max(test["drop-top"], test["uniform"])
            gains.append(lf - test["logit-only"])
            costs.append(depth["timing"]["distilling_seconds"] / depth["logit-only"]["seconds"])
            lines.append(
                f"| {name} | {_pct(original)} | "
                + " | ".join(cells)
                + f" | {depth['layerfuse']['candidate']} | {depth['layerfuse']['removed']} |"
            )
        n = len(rows)
        lines += [
            "",
            f"Within {GOALS[k]:.1f} points of the original: {within} of {n}. At least as good as "
            f"the best healed baseline: {beats} of {n}. Mean gain over logit-only: "
            f"{100 * sum(gains) / n:+.2f} points. Recovery wall time (the job's healed "
            f"comparison against the old recipe's single KD): {min(costs):.1f}x to "
            f"{max(costs):.1f}x, mean {sum(costs) / n:.1f}x.",
            "",
        ]
    missing = [n for n in ORDER if n not in datasets or len(datasets[n].get("depths", {})) < 2]
    if missing:
        lines += [f"Not yet run (or only one depth): {', '.join(missing)}.", ""]
    # The reading of the numbers, written by whoever ran it (``notes`` in depth.json).
    if results.get("notes"):
        lines += ["## What the numbers say", "", *(f"{note}\n" for note in results["notes"])]
    path.write_text("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=",".join(ORDER), help="comma-separated, in run order")
    p.add_argument("--depths", default="2,3", help="layers removed, comma-separated")
    p.add_argument("--shared", type=Path, default=quality.DEFAULT_SHARED)
    p.add_argument("--work", type=Path, default=DEFAULT_WORK)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--max-length", type=int, default=64)
    # Smaller subsets are for dry runs of the script only; the results use quality.py's sizes.
    p.add_argument("--train-size", type=int, default=quality.TRAIN_SIZE)
    p.add_argument("--validation-size", type=int, default=quality.VALIDATION_SIZE)
    p.add_argument("--test-size", type=int, default=quality.TEST_SIZE)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo depths already in --results")
    p.add_argument("--render-only", action="store_true", help="write depth.md and stop")
    args = p.parse_args()
    if args.render_only:
        render(json.loads(args.results.read_text()), args.results.with_suffix(".md"))
        return
    args.datasets = args.datasets.split(",")
    args.depths = [int(k) for k in args.depths.split(",")]
    args.subsets = args.work / "subsets"
    args.n_calib, args.epochs, args.commit = None, None, None
    args.work.mkdir(parents=True, exist_ok=True)
    run(args)


if __name__ == "__main__":
    main()
