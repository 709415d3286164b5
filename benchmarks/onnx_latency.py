"""CPU latency of a compressed model: onnxruntime on model.onnx vs PyTorch fp32, same inputs.

    python benchmarks/onnx_latency.py MODEL_DIR [--texts ../shared/datasets/sst2/dev.jsonl]

Exports MODEL_DIR (a Hugging Face directory, e.g. a `layerfuse compress` output's model/) with
the library's exporter, checks the logits agree, times batches of 1 and 32 real sentences, and
appends the result to benchmarks/results/onnx_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument(
        "--texts", type=Path, default=ROOT.parent / "shared/datasets/sst2/dev.jsonl"
    )
    parser.add_argument(
        "--results", type=Path, default=ROOT / "benchmarks/results/onnx_latency.json"
    )
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from layerfuse.compression import onnx_export
    from layerfuse.compression.batching import Encoded
    from layerfuse.compression.datasets import read_split
    from layerfuse.compression.device import Runtime
    from layerfuse.compression.evaluation import latency_ms

    model = AutoModelForSequenceClassification.from_pretrained(args.model).eval()
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    split = read_split(args.texts, name="validation")
    encoded = Encoded(split, [0] * len(split), tokenizer, max_length=128)
    pytorch = latency_ms(model, encoded, Runtime(torch.device("cpu"), bf16=False), repeats=30)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        started = time.perf_counter()
        onnx_export.export_onnx(model, encoded.collate(list(range(8))), path)
        export_seconds = time.perf_counter() - started
        session = onnx_export.OnnxModel(path)
        diff = onnx_export.max_abs_diff(session, model, encoded.sorted_batches(32)[:8])
        onnxruntime = onnx_export.latency_ms(session, encoded, repeats=30)
        size = path.stat().st_size
    entry = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "model": str(args.model.name),
        "num_layers": model.config.num_hidden_layers,
        "onnx_bytes": size,
        "export_seconds": round(export_seconds, 1),
        "max_abs_logit_diff": diff,
        "latency_ms": {"pytorch_cpu_fp32": pytorch, "onnxruntime_cpu": onnxruntime},
    }
    history = json.loads(args.results.read_text()) if args.results.is_file() else []
    args.results.write_text(json.dumps([*history, entry], indent=2) + "\n")
    print(json.dumps(entry, indent=2))


if __name__ == "__main__":
    main()
