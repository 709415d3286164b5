"""Dropout with cheaper random masks on CPUs, for training.

Native CPU dropout draws one Bernoulli sample per element (``bernoulli_``), a float random number
each: 12-13% of a MiniLM training epoch on a bf16 CPU, 6% on an fp32 one (benchmarks/README.md,
Throughput), more than the attention matmuls. While ``cpu_dropout`` is active, every
``torch.nn.functional.dropout`` call in training mode (``nn.Dropout`` modules and the functional
attention-probability dropout of Hugging Face's eager attention both come through it) builds its
mask from 16 random bits per element instead, four elements from each 64-bit draw: the forward
costs 2.5x less, forward and backward together 1.3-1.6x less.

It is the same dropout: an element is kept when its 16 bits, read as a signed integer, reach a
threshold, which keeps it with probability ``1 - p'`` for ``p' = round(p * 65536) / 65536`` (0.1
becomes 0.100006), and kept elements are scaled by ``1 / (1 - p')``, so the expectation is the
input's exactly. The bits come from torch's default generator, so ``torch.manual_seed`` makes a
run reproducible as before (with other masks than native dropout would draw). GPUs keep their
fused native kernel, and so does anything this does not cover: in-place dropout, ``p`` below
1/65536 or above 1 - 1/65536, inputs that are not floating point.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

_LEVELS = 1 << 16  # distinct values of the 16 bits one element's mask is drawn from


def _random_int16(numel: int) -> torch.Tensor:
    """``numel`` uniform random int16 values (every bit pattern equally likely), drawn as a
    quarter as many int64 words from the default generator."""
    # The full int64 range: ``random_()`` without bounds draws [0, 2**63), which would leave the
    # sign bit of every fourth int16 at 0.
    words = torch.empty((numel + 3) // 4, dtype=torch.int64).random_(-(2**63), None)
    return words.view(torch.int16)[:numel]


def dropout(
    input: torch.Tensor, p: float = 0.5, training: bool = True, inplace: bool = False
) -> torch.Tensor:
    """``F.dropout`` with a mask from 16-bit random integers (see the module's docstring)."""
    dropped = round(p * _LEVELS)
    if (
        not training
        or inplace
        or input.device.type != "cpu"
        or not input.is_floating_point()
        or not 0 < dropped < _LEVELS
    ):
        return F.dropout(input, p, training, inplace)
    # P(bits >= threshold) = (32767 - threshold + 1) / 65536 = 1 - dropped / 65536.
    threshold = dropped - _LEVELS // 2
    keep = _random_int16(input.numel()).view(input.shape) >= threshold
    # ``where`` keeps the input's dtype (a bf16 activation stays bf16) and its backward passes
    # the gradient where the mask is set; scaling in place saves a second activation-sized copy.
    return torch.where(keep, input, 0).mul_(_LEVELS / (_LEVELS - dropped))


class _CpuDropout(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        # The mode is off while this runs, so ``func`` and the fallback in ``dropout`` run as
        # they would without it.
        if func is F.dropout:
            return dropout(*args, **(kwargs or {}))
        return func(*args, **(kwargs or {}))


@contextmanager
def cpu_dropout(device: torch.device) -> Iterator[None]:
    """Within the block, dropout on ``device`` uses 16-bit masks when it is a CPU; elsewhere the
    block runs as it is. The mode is per thread, like autocast."""
    if device.type != "cpu":
        yield
        return
    with _CpuDropout():
        yield
