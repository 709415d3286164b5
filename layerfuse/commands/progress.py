"""The progress bar of ``layerfuse compress`` and ``layerfuse submit``: one tqdm bar over the
whole job, the current stage as its label, messages and warnings printed above it (stderr)."""

from __future__ import annotations

import sys
from typing import Any

# The bar counts per mille of the whole job: fine enough for a smooth bar, in whole steps.
STEPS = 1000


class ProgressBar:
    """Stages, fractions and messages of one job on stderr.

    Args:
        verbose: also print the ``metrics`` events (every sweep step).
    """

    def __init__(self, verbose: bool = False) -> None:
        from tqdm import tqdm

        self.verbose = verbose
        self._bar = tqdm(
            total=STEPS,
            unit="‰",
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}",
        )

    def stage(self, stage: str) -> None:
        self._bar.set_description(stage.replace("_", " "))

    def fraction(self, fraction: float) -> None:
        """Move to ``fraction`` of the job (never backwards: a retried stage keeps the bar)."""
        self._bar.update(max(int(fraction * STEPS) - self._bar.n, 0))

    def event(self, type: str, message: str, level: str = "info") -> None:
        """Print an event above the bar if a person wants to read it: messages, status changes,
        warnings and errors (and, when verbose, the sweep's metrics)."""
        if type in ("message", "status") or level != "info" or (self.verbose and type == "metrics"):
            self._bar.write(message, file=sys.stderr)

    def finish(self) -> None:
        self.fraction(1.0)

    def close(self) -> None:
        self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
