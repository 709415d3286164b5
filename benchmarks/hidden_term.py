"""Does the layer-mapped hidden-state term earn its cost? The evidence behind ``hidden_weight``.

On the depth benchmark's datasets, subsets, teacher and sweep (``depth.py``; it reuses
``--work/<name>/checkpoint``, so run it after ``depth.py`` has covered the dataset), the job's
fused choice (``fusion-random-forest``) at ``k`` layers removed is recovered once with the
hidden-state term on (``hidden_weight`` and ``hidden_distance`` below, every other recovery
setting the library's default, no healed comparison) and set beside the same candidate after the
default recovery (term off), read from ``depth.json``: same layers, same seed, same epoch limit
and early stopping, so the term is the only difference.

    python benchmarks/hidden_term.py --datasets imdb,ag_news,mr --depths 3

Results: ``results/hidden_term.json``, written after every (dataset, depth), resumable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import depth
import quality

RESULTS = quality.RESULTS_DIR / "hidden_term.json"


def run(args: argparse.Namespace) -> None:
    reference = json.loads(args.depth_results.read_text())["datasets"]
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    args.model_dir, model_note = quality.fp32_model_dir(quality.default_model_dir(), args.work)
    recipe = {"compare": [], "hidden_weight": args.weight, "hidden_distance": args.distance}
    results["settings"] = {
        **results.get("settings", {}),
        "term_on": recipe,
        "term_off": f"the {quality.FUSION_FOREST} row of depth.json (library defaults)",
        "command": "python benchmarks/hidden_term.py",
        **quality.environment(args, model_note),
    }
    datasets = results.setdefault("datasets", {})
    for name in args.datasets:
        for k in args.depths:
            key = str(k)
            if key in datasets.get(name, {}) and not args.force:
                print(f"{name} k={k}: already in {args.results}, skipped", flush=True)
                continue
            off = reference[name]["depths"][key][quality.FUSION_FOREST]
            report = depth.run_job(name, args, k, "-hidden", recipe)
            on = depth.logit_only_row(report)
            if on["removed"] != off["removed"]:
                raise SystemExit(f"{name} k={k}: the sweep chose other layers than depth.json's")
            datasets.setdefault(name, {})[key] = {
                "original_test_accuracy": reference[name]["original"]["test_accuracy"],
                "term_off": off,
                "term_on": on,
                "test_gain_points": round(100 * (on["test_accuracy"] - off["test_accuracy"]), 2),
                "validation_gain_points": round(
                    100 * (on["validation_accuracy"] - off["validation_accuracy"]), 2
                ),
                "seconds_per_epoch_ratio": round(
                    (on["seconds"] / on["epochs"]) / (off["seconds"] / off["epochs"]), 2
                ),
            }
            quality.write_json_atomic(args.results, results)
            print(f"{name} k={k}: {datasets[name][key]}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--datasets", default=",".join(depth.ORDER), help="comma-separated")
    p.add_argument("--depths", default="3", help="layers removed, comma-separated")
    p.add_argument("--weight", type=float, default=1.0, help="hidden_weight with the term on")
    p.add_argument("--distance", default="cosine", choices=("cosine", "mse"))
    depth.add_rerun_arguments(p)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--force", action="store_true", help="redo what is already in --results")
    args = p.parse_args()
    args.datasets = args.datasets.split(",")
    args.depths = [int(k) for k in args.depths.split(",")]
    args.subsets = args.work / "subsets"
    args.n_calib, args.epochs, args.commit = None, None, None
    run(args)


if __name__ == "__main__":
    main()
