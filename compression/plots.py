"""The report's two plots: accuracy against layers removed, and the full model's signals.

Plots use :class:`matplotlib.figure.Figure` directly, with no pyplot state and no GUI backend,
so they are safe to draw from worker threads. Each returns the PNG's bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .catalogue import FUSION_IDS, RANDOM, SIGNAL_IDS, SIGNAL_INFO
from .formatting import NA, float_or_nan, fmt_int, is_number
from .report import RANDOM_SEED_PREFIX, Report, StrategyReport

# Fusion lines get colours no other strategy uses; random is grey, like its seed band.
FIXED_COLOURS = {
    "fusion-random-forest": "#d62728",
    "fusion-linear-regression": "#6a3d9a",
    RANDOM: "#7f7f7f",
}
TAB20_RESERVED = (6, 7, 8, 9, 14, 15)  # tab20's reds, purples and greys, used above


def curves_png(report: Report) -> bytes:
    """Validation accuracy against layers removed, one line per strategy.

    ``random`` is drawn as its mean with a band from the per-seed minimum to maximum; fusion
    strategies are drawn thicker; the baseline accuracy is a dashed horizontal line and the
    selected model a star.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    _draw_strategies(ax, report.strategies)
    baseline = report.baseline.validation["accuracy"]
    if is_number(baseline):
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label="baseline (full)")
    _draw_selected(ax, report)
    ax.set_xlabel("layers removed")
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3)
    num_layers = report.model.num_layers
    ax.set_xlim(-0.2, max(num_layers - 1, 1) + 0.2)
    ax.set_xticks(range(num_layers))
    ax.set_title(_title(report, "Validation accuracy vs. layers removed"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        _no_data(ax, "no strategy curves in the report")
    return _png(fig)


def _draw_strategies(ax: Any, strategies: Mapping[str, StrategyReport]) -> None:
    names = [name for name in strategies if not name.startswith(RANDOM_SEED_PREFIX)]
    for name, colour in zip(names, _colours(names), strict=True):
        ks, accs = _curve(strategies[name])
        if not ks:
            continue
        fusion = name in FUSION_IDS
        ax.plot(
            ks,
            accs,
            label=name,
            color=colour,
            linewidth=3.0 if fusion else 1.2,
            marker="o" if fusion else ".",
            markersize=5 if fusion else 3,
            zorder=3 if fusion else 2,
        )
        band = _seed_band(strategies) if name == RANDOM else None
        if band:
            bks, lows, highs = band
            ax.fill_between(
                bks,
                lows,
                highs,
                color=colour,
                alpha=0.18,
                linewidth=0,
                label="random (seed min–max)",
            )


def _draw_selected(ax: Any, report: Report) -> None:
    chosen = report.chosen()
    if chosen is None:
        return
    ks, accs = _curve(chosen)
    k = report.selection.layers_removed
    if k in ks:
        ax.plot(
            [k],
            [accs[ks.index(k)]],
            marker="*",
            markersize=16,
            color="gold",
            markeredgecolor="black",
            linestyle="none",
            zorder=4,
            label="selected",
        )


def signals_png(report: Report) -> bytes:
    """Layers (rows, original indices) × the 12 signals of the full model (``removed == []``).

    Each column is min–max normalised to 0..1 so signals of different scales compare (a column
    whose values are all equal is drawn at 0.5); cells are annotated with the raw values.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = sorted((r for r in report.signals if not r.removed), key=lambda r: r.layer)
    layers = [r.layer for r in rows]
    raw = np.array(
        [[float_or_nan(r.value(s)) for s in SIGNAL_IDS] for r in rows], dtype=float
    ).reshape(len(rows), len(SIGNAL_IDS))
    normalised = normalise_columns(raw)

    fig = Figure(figsize=(12, 1.6 + 0.45 * max(len(layers), 2)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    if not rows:
        _no_data(ax, "no signals were measured on the full model")
        ax.set_title(_title(report, "Signals per layer (full model)"))
        return _png(fig)

    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")  # unmeasured cells: light grey
    image = ax.imshow(
        np.ma.masked_invalid(normalised), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto"
    )
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            value = raw[i, j]
            ax.text(
                j,
                i,
                NA if math.isnan(value) else f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if normalised[i, j] < 0.6 else "black",
            )
    ax.set_xticks(range(len(SIGNAL_IDS)))
    ax.set_xticklabels(
        [f"{s}\n(prune {SIGNAL_INFO[s].prune_first})" for s in SIGNAL_IDS],
        rotation=40,
        ha="right",
        fontsize=8,
    )
    ax.set_yticks(range(len(layers)))
    ax.set_yticklabels([str(layer) for layer in layers])
    ax.set_ylabel("layer (original index)")
    ax.set_title(_title(report, "Signals per layer (full model), each column scaled to 0–1"))
    fig.colorbar(image, ax=ax, label="min–max normalised per signal", shrink=0.9)
    return _png(fig)


def normalise_columns(values: Any) -> Any:
    """Min–max scale each column of a 2-D array to 0..1, ignoring NaNs.

    A column whose finite values are all equal becomes 0.5 (no contrast, and no division by
    zero); NaN stays NaN.
    """
    import numpy as np

    values = np.asarray(values, dtype=float)
    out = np.full_like(values, np.nan)
    for j in range(values.shape[1]):
        column = values[:, j]
        finite = np.isfinite(column)
        if not finite.any():
            continue
        low, high = column[finite].min(), column[finite].max()
        span = high - low
        if span > 0:
            out[finite, j] = (column[finite] - low) / span
        else:
            out[finite, j] = 0.5
    return out


def _curve(entry: StrategyReport) -> tuple[list[int], list[float]]:
    """(layers removed, validation accuracy) of a strategy's curve, skipping missing points."""
    ks, accs = [], []
    for point in entry.curve:
        acc = point.validation["accuracy"]
        if is_number(acc):
            ks.append(point.layers_removed)
            accs.append(float(acc))
    return ks, accs


def _seed_band(
    strategies: Mapping[str, StrategyReport],
) -> tuple[list[int], list[float], list[float]] | None:
    by_k: dict[int, list[float]] = {}
    for name, entry in strategies.items():
        if name.startswith(RANDOM_SEED_PREFIX):
            for k, acc in zip(*_curve(entry), strict=True):
                by_k.setdefault(k, []).append(acc)
    if not by_k:
        return None
    ks = sorted(by_k)
    return ks, [min(by_k[k]) for k in ks], [max(by_k[k]) for k in ks]


def _colours(names: Sequence[str]) -> list[Any]:
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    palette = [tab20(i) for i in range(20) if i not in TAB20_RESERVED]
    others = iter(palette * (len(names) // len(palette) + 1))
    return [FIXED_COLOURS.get(name) or next(others) for name in names]


def _title(report: Report, what: str) -> str:
    model, dataset = report.model, report.dataset
    counts = {"train": dataset.train, "validation": dataset.validation, "test": dataset.test}
    sizes = ", ".join(f"{split} {fmt_int(n)}" for split, n in counts.items() if is_number(n))
    head = f"{model.architecture}, {fmt_int(model.num_layers)} layers"
    return f"{what}\n{head}; {len(dataset.labels)} classes; {sizes or 'sizes n/a'}"


def _no_data(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
