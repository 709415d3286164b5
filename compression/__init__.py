"""layerfuse's compression library: strategic-fusion layer pruning with knowledge distillation.

Importing this package is cheap and torch-free; the heavy entry points load on first use, so the
service can share :mod:`layerfuse.compression.spec` and :mod:`layerfuse.compression.datasets`
without importing torch.

    from layerfuse.compression import CompressionSpec, compress
    result = compress(CompressionSpec(model_dir=..., train=...), out_dir="out")
    result.report.final.validation  # report.json, typed (:class:`Report`)

The stages ``compress`` runs are public in :mod:`layerfuse.compression.stages`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# PyTorch's CPU allocator maps each large tensor afresh, so the word-embedding gradient of a 30k
# vocabulary (47 MB, zero-filled every training step) costs a page fault per 4 KB: a quarter of a
# bf16 MiniLM training step in the profile (benchmarks/README.md, Throughput). Transparent huge
# pages for large allocations cut that fill about 4x. PyTorch reads the variable once, at its
# first allocation, so it is set here, before torch loads; a value the user set wins.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from .errors import (
    CompressionCancelled,
    DatasetError,
    InvalidInputError,
    LayerfuseError,
    ModelError,
)
from .progress import CancelToken, NeverCancel, NullReporter, Progress, Reporter
from .report import Report
from .spec import Columns, CompressionSpec, Distillation, MethodSpec, Options, Target

if TYPE_CHECKING:
    from .pipeline import CompressionResult, compress

__all__ = [
    "CancelToken",
    "Columns",
    "CompressionCancelled",
    "CompressionResult",
    "CompressionSpec",
    "DatasetError",
    "Distillation",
    "InvalidInputError",
    "LayerfuseError",
    "MethodSpec",
    "ModelError",
    "NeverCancel",
    "NullReporter",
    "Options",
    "Progress",
    "Report",
    "Reporter",
    "Target",
    "compress",
]


def __getattr__(name: str) -> Any:
    if name in ("compress", "CompressionResult"):
        from . import pipeline

        return getattr(pipeline, name)
    raise AttributeError(f"module 'compression' has no attribute {name!r}")
