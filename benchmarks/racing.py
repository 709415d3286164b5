"""What racing the healed comparison costs and changes, against the depth benchmark's full one.

For each dataset and depth k of ``depth.json`` (same subsets, teacher and settings): the three
candidates the depth job recovered (``fusion-random-forest``'s layers, then ``drop-top`` and
``uniform``) are recovered again in the job's order with the library's default recipe, now with
``distillation.race`` on (a later candidate stops after the first epoch at which its best
validation accuracy trails the leader's at the same epoch), and the former single recovery
(the fused choice, logit KD for 3 fixed epochs) runs beside it on the same machine in the same
process. Recorded per depth:

* ``raced``: per candidate its epochs, why it stopped, validation and test accuracy and seconds;
  the exported candidate (best on validation) and its test accuracy;
* ``full``: the unraced comparison (every candidate recovered fully): the candidates the race
  did not stop are the same runs (seeded; the pace only ends a run early), so only the stopped
  ones are recovered again, fully; whether racing changed the exported model (``same_export``);
* ``depth_json``: what the depth job exported, for reference (this teacher and these recoveries
  are rebuilt, not the job's: up to a few examples apart, see ``rebuild.py``);
* ``cost``: the raced comparison's seconds (teacher logits and the recoveries, as the job's
  distilling stage) over the single logit-only recovery's, the issue's "at most 3x";
  ``full_cost`` the same for the unraced comparison.

The sweep is not rerun: its only effect on recovery is which layers the fused choice removes,
and that is in ``depth.json``; the metrics before recovery are measured once up front, outside the
timings, as the job reads them from its sweep. The teacher is fine-tuned with its seed (or read
from ``--work/<name>/checkpoint``), as ``rebuild.py`` does.

    python benchmarks/racing.py --datasets trec,emotion,sst2,mr     # results/racing.json
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import depth
import quality

RESULTS = quality.RESULTS_DIR / "racing.json"
ORDER = ("fusion-random-forest", "drop-top", "uniform")  # the depth job's healed comparison
COST_GOAL = 3.0


def timed_comparison(
    prepared, teacher, tracker, measured, rows, candidates: tuple[str, ...], race: bool
) -> dict[str, Any]:
    """The distilling stage's healed comparison of ``candidates`` (in that order), timed."""
    from layerfuse.compression.healing import Healer

    started = time.perf_counter()
    healer = Healer(prepared, teacher, tracker, len(candidates), measured)
    healed, best = healer.compare([(c, rows[c]["removed"]) for c in candidates], race)
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 1),
        "teacher_logits_seconds": round(healer.teacher_seconds, 1),
        "exported": best.candidate,
        "candidates": {
            h.candidate: {
                "removed": sorted(h.removed),
                "epochs": h.result.epochs_run,
                "stopped_by": h.result.stopped_by,
                "validation_accuracy": round(h.validation_accuracy, 6),
                "validation_loss": round(float(h.after.validation["loss"]), 6),
                "test_accuracy": round(float(h.after.test["accuracy"]), 6),
                "seconds": round(h.seconds, 1),
            }
            for h in healed
        },
    }


def rebuild_depth(name: str, args: argparse.Namespace, k: int, recorded: dict, label: str):
    """The depth job at ``k`` up to its distilling stage: the prepared job, its teacher, a
    tracker (in ``distilling``), the candidates' metrics before recovery and their rows of
    ``depth.json``."""
    from layerfuse.compression.models import pruned_copy
    from layerfuse.compression.progress import NeverCancel, ProgressTracker
    from layerfuse.compression.stages import fine_tune_teacher, prepare

    rows = {c: recorded[c] for c in ORDER}
    tracker = ProgressTracker(quality.PrintReporter(f"{name} {label} k={k}"), NeverCancel())
    prepared = prepare(depth.spec_for(name, args, k, {}), tracker)
    tracker.enter("fine_tuning_teacher")
    teacher = fine_tune_teacher(prepared, tracker, args.work / name / "checkpoint")
    measured = {}
    for row in rows.values():
        kept = [i for i in range(prepared.num_layers) if i not in row["removed"]]
        copy = pruned_copy(teacher.model, prepared.loaded.adapter, kept)
        measured[frozenset(row["removed"])] = {
            "validation": prepared.validation.evaluate(copy, prepared.runtime),
            "test": prepared.test.evaluate(copy, prepared.runtime),
        }
    tracker.enter("distilling")
    return prepared, teacher, tracker, measured, rows


def run_depth(name: str, args: argparse.Namespace, k: int, recorded: dict) -> dict[str, Any]:
    prepared, teacher, tracker, measured, rows = rebuild_depth(name, args, k, recorded, "racing")
    old_kd = prepared.spec.distillation.model_validate(depth.OLD_RECIPE)
    old = replace(prepared, spec=prepared.spec.model_copy(update={"distillation": old_kd}))
    raced = timed_comparison(prepared, teacher, tracker, measured, rows, ORDER, race=True)
    single = timed_comparison(old, teacher, tracker, measured, rows, ORDER[:1], race=False)
    full = _full_comparison(prepared, teacher, tracker, measured, rows, raced)
    exported = raced["candidates"][raced["exported"]]
    return {
        "raced": raced,
        "full": full,
        "logit_only": {"seconds": single["seconds"], **single["candidates"][ORDER[0]]},
        "depth_json": {
            "exported": recorded["layerfuse"]["candidate"],
            "validation_accuracy": recorded["layerfuse"]["validation_accuracy"],
            "test_accuracy": recorded["layerfuse"]["test_accuracy"],
        },
        "cost": round(raced["seconds"] / single["seconds"], 2),
        "full_cost": round(full["seconds"] / single["seconds"], 2),
        "same_export": exported["removed"] == full["candidates"][full["exported"]]["removed"],
    }


def _full_comparison(prepared, teacher, tracker, measured, rows, raced) -> dict[str, Any]:
    """The unraced comparison: the raced candidates that ran their whole recovery are the same
    runs (seeded, the pace only ends a run), so only those the race stopped are recovered again,
    fully; the seconds add the raced ones' and the teacher logits'."""
    stopped = tuple(c for c, row in raced["candidates"].items() if row["stopped_by"] == "race")
    again = (
        timed_comparison(prepared, teacher, tracker, measured, rows, stopped, race=False)
        if stopped
        else {"candidates": {}}
    )
    candidates = {**raced["candidates"], **again["candidates"]}
    seconds = raced["teacher_logits_seconds"] + sum(c["seconds"] for c in candidates.values())
    exported = best_on_validation(candidates)
    return {"seconds": round(seconds, 1), "exported": exported, "candidates": candidates}


def best_on_validation(candidates: dict[str, dict]) -> str:
    """The job's export: the best validation accuracy, ties to the earlier candidate."""
    return max(ORDER, key=lambda c: (candidates[c]["validation_accuracy"], -ORDER.index(c)))


def _exported_test(comparison: dict[str, Any]) -> float:
    return comparison["candidates"][comparison["exported"]]["test_accuracy"]


def summary(results: dict[str, Any]) -> dict[str, Any]:
    done = [d for ds in results["datasets"].values() for d in ds.values()]
    costs = [d["cost"] for d in done]
    return {
        "depths_measured": len(done),
        "cost_range": [min(costs), max(costs)] if costs else None,
        "cost_within_goal": sum(c <= COST_GOAL for c in costs),
        "full_cost_range": [min(d["full_cost"] for d in done), max(d["full_cost"] for d in done)]
        if done
        else None,
        "same_export": sum(d["same_export"] for d in done),
        # The raced export's test accuracy minus the full comparison's, in points.
        "test_change_points": [
            round(100 * (_exported_test(d["raced"]) - _exported_test(d["full"])), 1) for d in done
        ],
    }


def rerun_each_depth(doc: str, default_results: Path, settings: dict, run, summarise) -> None:
    """The command line of a script that recovers the depth job's candidates again: for each
    dataset and depth not yet in its results, ``run(name, args, k, depth_json_row)``; the results
    (``settings``, the environment, ``summarise(results)``) are written after each depth, so an
    interrupted run resumes where it stopped."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=",".join(depth.ORDER), help="comma-separated, in order")
    p.add_argument("--depths", default="2,3")
    depth.add_rerun_arguments(p)
    p.add_argument("--results", type=Path, default=default_results)
    args = p.parse_args()
    args.subsets = args.work / "subsets"
    args.n_calib, args.epochs, args.commit = None, None, None
    args.train_size, args.validation_size = quality.TRAIN_SIZE, quality.VALIDATION_SIZE
    args.test_size = quality.TEST_SIZE
    args.model_dir, model_note = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    recorded = json.loads(args.depth_results.read_text())["datasets"]
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results["settings"] = {**settings, **quality.environment(args, model_note)}
    results.setdefault("datasets", {})
    for name in args.datasets.split(","):
        depth.draw_subsets(name, args)
        for k in args.depths.split(","):
            entry = results["datasets"].setdefault(name, {})
            if k in entry:
                print(f"{name} k={k}: already in {args.results}, skipped", flush=True)
                continue
            entry[k] = run(name, args, int(k), recorded[name]["depths"][k])
            # Runs span sessions and machines; each depth says which library and CPU it ran on.
            entry[k]["environment"] = {
                key: results["settings"][key] for key in ("library_commit", "cpu")
            }
            results["summary"] = summarise(results)
            quality.write_json_atomic(args.results, results)
            print(f"{name} k={k}: {json.dumps(entry[k])}", flush=True)
    # Also when every depth was done before: a summary changed since is brought up to date.
    results["summary"] = summarise(results)
    quality.write_json_atomic(args.results, results)


def main() -> None:
    settings = {
        "depth_settings": "as results/depth.json",
        "race": "distillation.race on (library default); everything else the library default",
        "reference": "one recovery of the fused choice, logit KD, 3 fixed epochs (OLD_RECIPE)",
        "command": "python benchmarks/racing.py",
    }
    rerun_each_depth(__doc__, RESULTS, settings, run_depth, summary)


if __name__ == "__main__":
    main()
