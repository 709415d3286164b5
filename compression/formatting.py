"""Numbers as the model card and the plots print them: ``n/a`` for anything not a finite number."""

from __future__ import annotations

import math
from typing import Any

NA = "n/a"


def is_number(value: Any) -> bool:
    """A finite int or float (never a bool)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def fmt(value: Any, kind: str) -> str:
    """``value`` as ``kind``: ``int``, ``pct`` (a fraction shown in %), ``mb``, ``ms``,
    ``factor`` or ``ratio``."""
    if not is_number(value):
        return NA
    if kind == "int":
        return f"{int(value):,}"
    if kind == "pct":
        return f"{100 * value:.2f}%"
    if kind == "mb":
        return f"{value:,.1f}"
    if kind == "ms":
        return f"{value:,.2f}"
    if kind == "factor":
        return f"{value:.2f}×"
    return f"{value:.3f}"


def fmt_change(before: Any, after: Any, kind: str) -> str:
    """Percentage points for ``pct``, else the relative change in %."""
    if not (is_number(before) and is_number(after)):
        return NA
    if kind == "pct":
        return f"{100 * (after - before):+.2f} pts"
    if not before:
        return NA
    return f"{100 * (after - before) / before:+.1f}%"


def fmt_speedup(speedup: Any) -> str:
    """An original ÷ compressed time ratio in words: ``1.50× faster`` or ``1.25× slower``."""
    if not is_number(speedup) or speedup <= 0:
        return NA
    if speedup >= 1:
        return f"{speedup:.2f}× faster"
    return f"{1 / speedup:.2f}× slower"


def fmt_int(value: Any) -> str:
    return fmt(value, "int")


def float_or_nan(value: Any) -> float:
    return float(value) if is_number(value) else math.nan
