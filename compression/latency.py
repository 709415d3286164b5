"""The original and the compressed model timed side by side, so their ratio means something.

Two models timed minutes apart are timed under different loads: on a machine busy with another
job the faster model can come out slower. Here the two run interleaved on the same batch, in the
same process and thread setting, after the same warm-up, alternating which goes first (A B B A
...) so a load that rises or falls during the measurement hits both alike. Each repeat yields one
paired ratio; the speedup is their median and the spread of those ratios says how steady the
machine was. A wide spread is measured again, and one that stays wide flags the machine as busy
rather than hiding it.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch
from torch import nn

from .batching import Batch, Encoded
from .device import Runtime
from .evaluation import fast_attention
from .report import Latency, LatencyComparison, LatencyPair

# Paired ratios whose interquartile range exceeds this fraction of their median were measured
# on a machine whose load changed within milliseconds: the speedup is then only indicative.
BUSY_SPREAD = 0.25
WARMUP = 2
REPEATS = {"batch_1": 12, "batch_32": 6}
# A round of REPEATS whose ratios spread too wide is followed by another, up to this many rounds.
# On an otherwise idle 2-core machine one repeat in six is often slowed by a daemon waking on one
# core; six ratios' quartiles then span that outlier, and 2 of 16 single-round comparisons there
# read "busy" (0 of 16 with the extra rounds; docs/method.md).
MAX_ROUNDS = 4
BUSY_NOTE = (
    "The machine was busy while the models were timed (the repeats disagreed by more than "
    f"{BUSY_SPREAD:.0%}, also when measured again): the milliseconds are only indicative; the "
    "speedup, timed interleaved, is the steadier figure."
)

Clock = Callable[[], float]


def interleave(
    first: Callable[[], object],
    second: Callable[[], object],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    clock: Clock = time.perf_counter,
    warmup: int = WARMUP,
) -> tuple[list[float], list[float]]:
    """Seconds of each call of ``first`` and ``second``, ``repeats`` each, in A B B A order
    after ``warmup`` untimed calls of both."""
    for _ in range(warmup):
        first()
        second()
    sync()
    times: dict[int, list[float]] = {0: [], 1: []}
    runs = (first, second)
    for r in range(repeats):
        for which in (0, 1) if r % 2 == 0 else (1, 0):
            start = clock()
            runs[which]()
            sync()
            times[which].append(clock() - start)
    return times[0], times[1]


def measure_pair(
    first: Callable[[], object],
    second: Callable[[], object],
    repeats: int,
    sync: Callable[[], None] = lambda: None,
    clock: Clock = time.perf_counter,
) -> LatencyPair:
    """:func:`interleave` then :func:`pair`, adding rounds of ``repeats`` (no new warm-up) while
    the ratios of all rounds so far spread wider than ``BUSY_SPREAD``, up to ``MAX_ROUNDS``."""
    original, compressed = interleave(first, second, repeats, sync, clock)
    result = pair(original, compressed)
    for _ in range(MAX_ROUNDS - 1):
        if _steady(result):
            break
        more_original, more_compressed = interleave(first, second, repeats, sync, clock, warmup=0)
        original, compressed = original + more_original, compressed + more_compressed
        result = pair(original, compressed)
    return result


def pair(original: list[float], compressed: list[float]) -> LatencyPair:
    """Medians of both sides in ms, the median paired ratio and its relative spread."""
    ratios = [o / c for o, c in zip(original, compressed, strict=True) if c > 0]
    speedup = statistics.median(ratios) if ratios else float("nan")
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (speedup,) * 3
    return LatencyPair(
        original_ms=statistics.median(original) * 1000,
        compressed_ms=statistics.median(compressed) * 1000,
        speedup=speedup,
        spread=(q3 - q1) / speedup if speedup > 0 else float("inf"),
        repeats=len(ratios),
    )


def _steady(result: LatencyPair) -> bool:
    """Whether the paired ratios agree within ``BUSY_SPREAD`` (a NaN spread does not)."""
    return result.spread <= BUSY_SPREAD


def comparison(pairs: dict[str, LatencyPair], threads: int) -> LatencyComparison:
    """The side-by-side result; busy when any batch size's ratios spread wider than allowed."""
    busy = not all(_steady(p) for p in pairs.values())
    return LatencyComparison(
        batch_1=pairs["batch_1"],
        batch_32=pairs["batch_32"],
        threads=threads,
        busy=busy,
        note=BUSY_NOTE if busy else None,
    )


@torch.no_grad()
def compare_latency(
    original: nn.Module, compressed: nn.Module, encoded: Encoded, runtime: Runtime
) -> LatencyComparison:
    """Both models timed interleaved per batch of 1 and of 32 real examples of ``encoded``."""
    sync = torch.cuda.synchronize if runtime.device.type == "cuda" else (lambda: None)
    pairs: dict[str, LatencyPair] = {}
    with _inference(original), _inference(compressed):
        for key, size in (("batch_1", 1), ("batch_32", 32)):
            batch = encoded.collate(list(range(min(size, len(encoded))))).to(runtime.device)
            pairs[key] = measure_pair(
                _caller(original, batch, runtime),
                _caller(compressed, batch, runtime),
                REPEATS[key],
                sync,
            )
    return comparison(pairs, torch.get_num_threads())


def sides(result: LatencyComparison) -> tuple[Latency, Latency]:
    """The original's and the compressed model's milliseconds, as the report's ``latency_ms``."""
    return (
        Latency(batch_1=result.batch_1.original_ms, batch_32=result.batch_32.original_ms),
        Latency(batch_1=result.batch_1.compressed_ms, batch_32=result.batch_32.compressed_ms),
    )


def _caller(model: nn.Module, batch: Batch, runtime: Runtime) -> Callable[[], object]:
    def run() -> object:
        with runtime.autocast():
            return model(**batch.inputs)

    return run


@contextlib.contextmanager
def _inference(model: nn.Module) -> Iterator[None]:
    """Eval mode and sdpa attention for the measurement; the model's own settings after."""
    was_training = model.training
    model.eval()
    try:
        with fast_attention(model):
            yield
    finally:
        model.train(was_training)
