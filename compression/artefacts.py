"""The human-facing outputs of a run, written from its report (method.md, "Outputs").

Everything here reads the ``report.json`` dict and nothing else, so the files can be rebuilt from
a stored report at any time: the report itself, ``signals.csv``, the two plots and the model card.
Every file is written atomically (a temporary file in the same folder, then ``os.replace``), so a
reader never sees half a file. Plots use :class:`matplotlib.figure.Figure` directly, with no
pyplot state and no GUI backend, so they are safe to draw from worker threads.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .catalogue import FUSION_IDS, RANDOM, SIGNAL_IDS, SIGNAL_INFO

RANDOM_SEED_PREFIX = f"{RANDOM}/seed-"
CARD_TAGS = ("layerfuse", "layer-pruning", "knowledge-distillation", "text-classification")
PAPER_FACTOR_NOTE = (
    "The paper reports an average improvement factor of 18.84×. Layer pruning alone cannot reach "
    "that for BERT-base: the embeddings alone are 22% of its parameters, so removing every layer "
    "shrinks it at most about 4.5×. The factor above is reported as measured, never tuned toward."
)
NA = "n/a"


# --- files ---------------------------------------------------------------------------------------


def write_report(report: dict, path: Path) -> None:
    """Write ``report`` as indented JSON; NaN and infinities become ``null`` (strict JSON)."""
    text = json.dumps(_jsonable(report), indent=2, allow_nan=False, ensure_ascii=False)
    _write_atomic(Path(path), (text + "\n").encode("utf-8"))


def write_signals_csv(report: dict, path: Path) -> None:
    """One row per measured (state, layer): ``removed`` ("3;5", "" for the full model), ``k``,
    ``layer``, then the 12 signals in catalogue order (empty where not measured)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["removed", "k", "layer", *SIGNAL_IDS])
    for row in report.get("signals") or []:
        removed = sorted(int(i) for i in row.get("removed") or [])
        writer.writerow(
            [
                ";".join(str(i) for i in removed),
                len(removed),
                row["layer"],
                *(_csv_number(row.get(signal)) for signal in SIGNAL_IDS),
            ]
        )
    _write_atomic(Path(path), buffer.getvalue().encode("utf-8"))


def plot_curves(report: dict, path: Path) -> None:
    """Validation accuracy against layers removed, one line per strategy.

    ``random`` is drawn as its mean with a band from the per-seed minimum to maximum; fusion
    strategies are drawn thicker; the baseline accuracy is a dashed horizontal line and the
    selected model a star.
    """
    from matplotlib.figure import Figure

    strategies: Mapping[str, Any] = report.get("strategies") or {}
    names = [name for name in strategies if not name.startswith(RANDOM_SEED_PREFIX)]
    fig = Figure(figsize=(11, 6), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    colours = _colours(names)

    for name, colour in zip(names, colours, strict=True):
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
        if name == RANDOM:
            band = _seed_band(strategies)
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

    baseline = _get(report, "baseline", "validation", "accuracy")
    if _is_number(baseline):
        ax.axhline(baseline, color="black", linestyle="--", linewidth=1, label="baseline (full)")
    selection = report.get("selection") or {}
    chosen = strategies.get(selection.get("strategy", ""))
    if chosen is not None:
        ks, accs = _curve(chosen)
        k = selection.get("layers_removed")
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

    ax.set_xlabel("layers removed")
    ax.set_ylabel("validation accuracy")
    ax.grid(True, alpha=0.3)
    num_layers = _get(report, "model", "num_layers")
    if isinstance(num_layers, int):
        ax.set_xlim(-0.2, max(num_layers - 1, 1) + 0.2)
        ax.set_xticks(range(num_layers))
    ax.set_title(_title(report, "Validation accuracy vs. layers removed"))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    else:
        _no_data(ax, "no strategy curves in the report")
    _save(fig, Path(path))


def plot_signals_heatmap(report: dict, path: Path) -> None:
    """Layers (rows, original indices) × the 12 signals of the full model (``removed == []``).

    Each column is min–max normalised to 0..1 so signals of different scales compare (a column
    whose values are all equal is drawn at 0.5); cells are annotated with the raw values.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = sorted(
        (r for r in report.get("signals") or [] if not r.get("removed")),
        key=lambda r: int(r["layer"]),
    )
    layers = [int(r["layer"]) for r in rows]
    raw = np.array(
        [[_float_or_nan(r.get(s)) for s in SIGNAL_IDS] for r in rows], dtype=float
    ).reshape(len(rows), len(SIGNAL_IDS))
    normalised = normalise_columns(raw)

    fig = Figure(figsize=(12, 1.6 + 0.45 * max(len(layers), 2)), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    if not rows:
        _no_data(ax, "no signals were measured on the full model")
        ax.set_title(_title(report, "Signals per layer (full model)"))
        _save(fig, Path(path))
        return

    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")  # unmeasured cells: light grey
    image = ax.imshow(
        np.ma.masked_invalid(normalised), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto"
    )
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            value = raw[i, j]
            shade = normalised[i, j]
            ax.text(
                j,
                i,
                NA if math.isnan(value) else f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shade < 0.6 else "black",
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
    _save(fig, Path(path))


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


def write_model_card(report: dict, path: Path, *, base_model: str, dataset_name: str) -> None:
    """Write the compressed model's ``README.md``: YAML front matter, then what was done, the
    before/after metrics, distillation, the accuracy-to-size factor and how to load the model."""
    _write_atomic(Path(path), model_card(report, base_model=base_model, dataset_name=dataset_name))


def model_card(report: dict, *, base_model: str, dataset_name: str) -> bytes:
    """The model card's text (see :func:`write_model_card`), UTF-8 encoded."""
    parts = [
        _front_matter(report, base_model=base_model, dataset_name=dataset_name),
        _card_summary(report, base_model=base_model, dataset_name=dataset_name),
        _card_metrics(report),
        _card_distillation(report),
        _card_strategies(report),
        _card_factor(report),
        _card_usage(report),
    ]
    return ("\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n").encode("utf-8")


# --- model card sections -------------------------------------------------------------------------


def _front_matter(report: dict, *, base_model: str, dataset_name: str) -> str:
    final = report.get("final") or {}
    model_name = (
        f"{base_model.rstrip('/').split('/')[-1]}-layerfuse-{final.get('num_layers', 'x')}L"
    )
    results = []
    for split in ("validation", "test"):
        metrics = final.get(split)
        if not metrics:
            continue
        entries = [
            ("accuracy", metrics.get("accuracy"), f"{split.capitalize()} accuracy"),
            ("f1", metrics.get("macro_f1"), f"{split.capitalize()} macro-F1"),
        ]
        metric_lines = []
        for kind, value, label in entries:
            if not _is_number(value):
                continue
            metric_lines.append(
                f"      - type: {kind}\n        value: {_yaml_number(value)}\n"
                f"        name: {_yaml_str(label)}"
                + ("\n        args:\n          average: macro" if kind == "f1" else "")
            )
        if not metric_lines:
            continue
        results.append(
            "  - task:\n      type: text-classification\n      name: Text Classification\n"
            f"    dataset:\n      name: {_yaml_str(dataset_name)}\n"
            f"      type: {_yaml_str(dataset_name)}\n      split: {split}\n"
            "    metrics:\n" + "\n".join(metric_lines)
        )
    lines = [
        "---",
        f"base_model: {_yaml_str(base_model)}",
        "datasets:",
        f"- {_yaml_str(dataset_name)}",
        "tags:",
        *(f"- {tag}" for tag in CARD_TAGS),
        "library_name: transformers",
        "pipeline_tag: text-classification",
    ]
    if results:
        lines += ["model-index:", f"- name: {_yaml_str(model_name)}", "  results:", *results]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _card_summary(report: dict, *, base_model: str, dataset_name: str) -> str:
    selection = report.get("selection") or {}
    model = report.get("model") or {}
    dataset = report.get("dataset") or {}
    total = _fmt_int(model.get("num_layers"))
    removed = list(selection.get("removed_layers") or [])
    kept = list(selection.get("kept_layers") or [])
    labels = ", ".join(f"`{label}`" for label in dataset.get("labels") or []) or NA
    sizes = (
        f"{_fmt_int(dataset.get('train'))} training, {_fmt_int(dataset.get('validation'))} "
        f"validation and {_fmt_int(dataset.get('test'))} test examples"
    )
    return "\n".join(
        [
            f"# {base_model.rstrip('/').split('/')[-1]}, compressed by layerfuse",
            "",
            f"`{base_model}` ({model.get('architecture', NA)}, {total} layers) on "
            f"**{dataset_name}** (classes: {labels}), compressed by removing whole transformer "
            "layers and recovering accuracy with knowledge distillation, after Rahman, "
            '"Strategic Fusion Optimizes Transformer Compression" (arXiv 2501.03273).',
            "",
            "## What was done",
            "",
            f"- **Strategy:** `{selection.get('strategy', NA)}`",
            f"- **Target:** {_fmt_target(selection.get('target'))}",
            f"- **Removed layers** ({len(removed)} of {total}; original indices, 0 = next to the "
            f"embeddings): {_fmt_layers(removed)}",
            f"- **Kept layers:** {_fmt_layers(kept)}",
            f"- **Data:** {sizes}. The strategy and depth were chosen on validation only; the test "
            "split is reported, never used to choose.",
        ]
    )


def _card_metrics(report: dict) -> str:
    model = report.get("model") or {}
    baseline = report.get("baseline") or {}
    final = report.get("final") or {}
    base_latency = baseline.get("latency_ms") or {}
    final_latency = final.get("latency_ms") or {}
    rows: list[tuple[str, Any, Any, str]] = [
        ("Encoder layers", model.get("num_layers"), final.get("num_layers"), "int"),
        ("Parameters", model.get("parameters"), final.get("parameters"), "int"),
        ("Size (MB, fp32)", model.get("size_mb"), final.get("size_mb"), "mb"),
    ]
    for split in ("validation", "test"):
        before, after = baseline.get(split) or {}, final.get(split) or {}
        rows.append(
            (f"{split.capitalize()} accuracy", before.get("accuracy"), after.get("accuracy"), "pct")
        )
        rows.append(
            (f"{split.capitalize()} macro-F1", before.get("macro_f1"), after.get("macro_f1"), "pct")
        )
    rows += [
        ("Latency, batch 1 (ms)", base_latency.get("batch_1"), final_latency.get("batch_1"), "ms"),
        (
            "Latency, batch 32 (ms)",
            base_latency.get("batch_32"),
            final_latency.get("batch_32"),
            "ms",
        ),
    ]
    lines = [
        "## Before and after",
        "",
        "| | original | compressed | change |",
        "|---|---:|---:|---:|",
    ]
    for label, before, after, kind in rows:
        lines.append(
            f"| {label} | {_fmt(before, kind)} | {_fmt(after, kind)} | "
            f"{_fmt_change(before, after, kind)} |"
        )
    if not final.get("test"):
        lines += ["", "No test split was given, so test metrics are n/a."]
    lines += [
        "",
        "Latency is the mean time per batch on the device the job ran on. Size is parameters × 4 "
        "bytes (fp32).",
    ]
    return "\n" + "\n".join(lines) + "\n"


def _card_distillation(report: dict) -> str:
    kd = report.get("distillation") or {}
    if not kd.get("enabled"):
        return "\n## Knowledge distillation\n\nDistillation was not run for this model.\n"
    options = (report.get("options") or {}).get("distillation") or {}
    settings = ", ".join(
        f"{name} {options[key]}"
        for key, name in (("temperature", "temperature"), ("alpha", "α"))
        if key in options
    )
    lines = [
        "## Knowledge distillation",
        "",
        "The pruned student was trained to match the full model's softened outputs "
        f"({settings + ', ' if settings else ''}{_fmt_int(kd.get('epochs_run'))} epochs run; "
        "best epoch kept by validation accuracy).",
        "",
        "| | before KD | after KD | change |",
        "|---|---:|---:|---:|",
    ]
    before, after = kd.get("before") or {}, kd.get("after") or {}
    for split in ("validation", "test"):
        b, a = before.get(split) or {}, after.get(split) or {}
        for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
            lines.append(
                f"| {split.capitalize()} {name} | {_fmt(b.get(key), 'pct')} | "
                f"{_fmt(a.get(key), 'pct')} | {_fmt_change(b.get(key), a.get(key), 'pct')} |"
            )
    return "\n" + "\n".join(lines) + "\n"


def _card_strategies(report: dict) -> str:
    """Every strategy's validation accuracy at the selected depth, best first."""
    strategies = report.get("strategies") or {}
    k = (report.get("selection") or {}).get("layers_removed")
    scored = []
    for name, entry in strategies.items():
        if name.startswith(RANDOM_SEED_PREFIX):
            continue
        ks, accs = _curve(entry)
        if k in ks:
            scored.append((accs[ks.index(k)], name))
    if not scored:
        return ""
    scored.sort(key=lambda item: (-item[0], item[1]))
    chosen = (report.get("selection") or {}).get("strategy")
    lines = [
        f"## Strategies compared at {k} layer(s) removed (before distillation)",
        "",
        "| strategy | validation accuracy |",
        "|---|---:|",
    ]
    for acc, name in scored:
        mark = " (selected)" if name == chosen else ""
        lines.append(f"| `{name}`{mark} | {_fmt(acc, 'pct')} |")
    return "\n" + "\n".join(lines) + "\n"


def _card_factor(report: dict) -> str:
    final = report.get("final") or {}
    ratio = final.get("accuracy_to_size_ratio")
    factor = final.get("improvement_factor")
    original = ratio / factor if _is_number(ratio) and _is_number(factor) and factor else None
    return "\n".join(
        [
            "## Accuracy-to-size improvement",
            "",
            f"Accuracy-to-size ratio (accuracy in % / size in MB): {_fmt(original, 'ratio')} for "
            f"the original model, {_fmt(ratio, 'ratio')} for the compressed one: an **improvement "
            f"factor of {_fmt(factor, 'factor')}**.",
            "",
            PAPER_FACTOR_NOTE,
        ]
    )


def _card_usage(report: dict) -> str:
    pair = ((report.get("options") or {}).get("columns") or {}).get("text_pair_column")
    call = (
        'tokenizer("first text", "second text", return_tensors="pt")'
        if pair
        else ('tokenizer("a text to classify", return_tensors="pt")')
    )
    return f"""
## How to use

A standard Hugging Face model directory (`config.json` with `num_hidden_layers` and the label
maps, `model.safetensors`, tokenizer files):

```python
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

model = AutoModelForSequenceClassification.from_pretrained("path/to/this/model")
tokenizer = AutoTokenizer.from_pretrained("path/to/this/model")
inputs = {call}
with torch.no_grad():
    label_id = model(**inputs).logits.argmax(-1).item()
print(model.config.id2label[label_id])
```
"""


# --- formatting helpers --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _fmt(value: Any, kind: str) -> str:
    if not _is_number(value):
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


def _fmt_change(before: Any, after: Any, kind: str) -> str:
    if not (_is_number(before) and _is_number(after)):
        return NA
    if kind == "pct":
        return f"{100 * (after - before):+.2f} pts"
    if not before:
        return NA
    return f"{100 * (after - before) / before:+.1f}%"


def _fmt_int(value: Any) -> str:
    return _fmt(value, "int")


def _fmt_layers(layers: Sequence[int]) -> str:
    return ", ".join(str(i) for i in layers) if layers else "none"


def _fmt_target(target: Any) -> str:
    if not isinstance(target, Mapping) or not target:
        return NA
    return ", ".join(f"`{key}` = {value}" for key, value in target.items())


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string escapes are a subset of YAML's)."""
    return json.dumps(str(text), ensure_ascii=False)


def _yaml_number(value: float) -> str:
    return repr(round(float(value), 6))


def _csv_number(value: Any) -> str:
    return repr(float(value)) if _is_number(value) else ""


def _float_or_nan(value: Any) -> float:
    return float(value) if _is_number(value) else math.nan


def _get(mapping: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(key)
    return mapping


def _jsonable(value: Any) -> Any:
    """``value`` with NaN/inf as ``None``, tuples as lists and numpy scalars as Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _jsonable(value.tolist())  # numpy scalars and arrays
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --- plotting helpers ----------------------------------------------------------------------------


def _curve(entry: Any) -> tuple[list[int], list[float]]:
    """(layers removed, validation accuracy) of a strategy's curve, skipping missing points."""
    ks, accs = [], []
    for point in (entry or {}).get("curve") or []:
        acc = _get(point, "validation", "accuracy")
        if _is_number(acc):
            ks.append(int(point["layers_removed"]))
            accs.append(float(acc))
    return ks, accs


def _seed_band(strategies: Mapping[str, Any]) -> tuple[list[int], list[float], list[float]] | None:
    by_k: dict[int, list[float]] = {}
    for name, entry in strategies.items():
        if name.startswith(RANDOM_SEED_PREFIX):
            for k, acc in zip(*_curve(entry), strict=True):
                by_k.setdefault(k, []).append(acc)
    if not by_k:
        return None
    ks = sorted(by_k)
    return ks, [min(by_k[k]) for k in ks], [max(by_k[k]) for k in ks]


# Fusion lines get colours no other strategy uses; random is grey, like its seed band.
_FIXED_COLOURS = {
    "fusion-random-forest": "#d62728",
    "fusion-linear-regression": "#6a3d9a",
    RANDOM: "#7f7f7f",
}


def _colours(names: Sequence[str]) -> list[Any]:
    from matplotlib import colormaps

    tab20 = colormaps["tab20"]
    reserved = (6, 7, 8, 9, 14, 15)  # tab20's reds, purples and greys, used above
    palette = [tab20(i) for i in range(20) if i not in reserved]
    others = iter(palette * (len(names) // len(palette) + 1))
    return [_FIXED_COLOURS.get(name) or next(others) for name in names]


def _title(report: dict, what: str) -> str:
    model = report.get("model") or {}
    dataset = report.get("dataset") or {}
    sizes = ", ".join(
        f"{split} {_fmt_int(dataset.get(split))}"
        for split in ("train", "validation", "test")
        if _is_number(dataset.get(split))
    )
    head = f"{model.get('architecture', 'model')}, {_fmt_int(model.get('num_layers'))} layers"
    return f"{what}\n{head}; {len(dataset.get('labels') or [])} classes; {sizes or 'sizes n/a'}"


def _no_data(ax: Any, message: str) -> None:
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _save(fig: Any, path: Path) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    _write_atomic(path, buffer.getvalue())


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from the API's process
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
