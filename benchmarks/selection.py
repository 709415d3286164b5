"""Which validation statistic should pick the exported model among the healed candidates?

The job exports the candidate best on validation accuracy. On the depth benchmark the three
candidates are usually within a point of each other, where one standard error of accuracy on 500
validation examples is about 1.5 points, and the exported model trails the best healed baseline
on test about half the time (results/depth.md). This script recovers the depth job's three
candidates again (``fusion-random-forest``'s layers, ``drop-top``, ``uniform``; the library's
default recipe, unraced, so each runs its whole recovery) and records per candidate its
validation accuracy and cross-entropy loss (at its best epoch) and its test accuracy; then it
applies each rule of ``RULES`` to the same runs:

* ``accuracy``: the highest validation accuracy, ties to the earlier candidate (the job's rule);
* ``loss``: the lowest validation loss;
* ``accuracy_then_loss``: among the candidates within one standard error of the best validation
  accuracy, the lowest validation loss;
* ``fused`` (for reference): no comparison, the fused choice whatever it scored.

and counts, per rule, the depths at which its pick is at least as good on test as the best
healed baseline (``drop-top``, ``uniform``), the issue's measure. The picks are made in the
summary from the recorded candidates, so a rule added later applies to every run already made.
Teachers and subsets as ``racing.py`` (rebuilt from their seeds, or read from ``--work``).

    python benchmarks/selection.py --datasets trec,sst2,emotion,mr    # results/selection.json
"""

from __future__ import annotations

import math
from typing import Any

import quality
import racing

RESULTS = quality.RESULTS_DIR / "selection.json"
BASELINES = ("drop-top", "uniform")


def _by_accuracy(candidates: dict[str, dict], n: int) -> str:
    return racing.best_on_validation(candidates)


def _by_loss(candidates: dict[str, dict], n: int) -> str:
    return min(racing.ORDER, key=lambda c: candidates[c]["validation_loss"])


def _by_accuracy_then_loss(candidates: dict[str, dict], n: int) -> str:
    best = max(c["validation_accuracy"] for c in candidates.values())
    standard_error = math.sqrt(best * (1 - best) / n)
    close = [
        c for c in racing.ORDER if candidates[c]["validation_accuracy"] >= best - standard_error
    ]
    return min(close, key=lambda c: candidates[c]["validation_loss"])


def _fused(candidates: dict[str, dict], n: int) -> str:
    return racing.ORDER[0]


RULES = {
    "accuracy": _by_accuracy,
    "loss": _by_loss,
    "accuracy_then_loss": _by_accuracy_then_loss,
    # For reference: no comparison at all, the fused choice exported whatever it scored.
    "fused": _fused,
}


def run_depth(name: str, args, k: int, recorded: dict) -> dict[str, Any]:
    prepared, teacher, tracker, measured, rows = racing.rebuild_depth(
        name, args, k, recorded, "selection"
    )
    comparison = racing.timed_comparison(
        prepared, teacher, tracker, measured, rows, racing.ORDER, race=False
    )
    return {
        "validation_size": len(prepared.validation.encoded),
        "seconds": comparison["seconds"],
        "candidates": comparison["candidates"],
    }


def picks(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each rule's pick at one depth, its test accuracy and whether that is at least the best
    healed baseline's."""
    candidates = entry["candidates"]
    best_baseline = max(candidates[c]["test_accuracy"] for c in BASELINES)
    chosen = {rule: pick(candidates, entry["validation_size"]) for rule, pick in RULES.items()}
    return {
        rule: {
            "exported": c,
            "test_accuracy": candidates[c]["test_accuracy"],
            "at_least_best_baseline": candidates[c]["test_accuracy"] >= best_baseline,
        }
        for rule, c in chosen.items()
    }


def summary(results: dict[str, Any]) -> dict[str, Any]:
    by_depth = {
        f"{name} k={k}": picks(entry)
        for name, depths in results["datasets"].items()
        for k, entry in depths.items()
    }
    rows = list(by_depth.values())
    return {
        "depths_measured": len(rows),
        "rules": {
            rule: {
                "at_least_best_baseline": sum(r[rule]["at_least_best_baseline"] for r in rows),
                "mean_test_accuracy": round(
                    sum(r[rule]["test_accuracy"] for r in rows) / len(rows), 4
                )
                if rows
                else None,
            }
            for rule in RULES
        },
        "by_depth": {
            depth: {rule: (p["exported"], p["at_least_best_baseline"]) for rule, p in row.items()}
            for depth, row in by_depth.items()
        },
    }


def main() -> None:
    settings = {
        "depth_settings": "as results/depth.json",
        "recipe": "library defaults, distillation.race off (every candidate recovered fully)",
        "rules": list(RULES),
        "command": "python benchmarks/selection.py",
    }
    racing.rerun_each_depth(__doc__, RESULTS, settings, run_depth, summary)


if __name__ == "__main__":
    main()
