"""The whole method, top to bottom: prepare, baseline, sweep, fuse, select, distill, export."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .progress import CancelToken, Reporter
from .spec import CompressionSpec

ARTIFACT_NAMES = ("report.json", "model_card.md", "signals.csv", "curves.png", "signals.png")


@dataclass
class CompressionResult:
    """What a run leaves in ``out_dir``.

    ``out_dir`` holds ``model/`` (a Hugging Face directory), ``report.json``, ``model_card.md``,
    ``signals.csv``, ``curves.png`` and ``signals.png``. ``summary`` is the short result the
    service shows on the job (api.md, ``result``).
    """

    out_dir: Path
    report: dict[str, Any]
    summary: dict[str, Any]
    artifacts: list[str] = field(default_factory=list)


def compress(
    spec: CompressionSpec,
    out_dir: str | Path,
    *,
    reporter: Reporter | None = None,
    cancel: CancelToken | None = None,
    checkpoint_dir: str | Path | None = None,
) -> CompressionResult:
    raise NotImplementedError("the pipeline lands with the library")
