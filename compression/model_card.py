"""The compressed model's card (``README.md``, Hugging Face style), written from the report."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .formatting import NA, fmt, fmt_change, fmt_int, fmt_speedup, is_number
from .report import RANDOM_SEED_PREFIX, LatencyComparison, Metrics, Report, StrategyReport

CARD_TAGS = ("layerfuse", "layer-pruning", "knowledge-distillation", "text-classification")
PAPER_FACTOR_NOTE = (
    "The paper reports an average improvement factor of 18.84×. Layer pruning alone cannot reach "
    "that for BERT-base: the embeddings alone are 22% of its parameters, so removing every layer "
    "shrinks it at most about 4.5×. The factor above is reported as measured, never tuned toward."
)
SPLITS = ("validation", "test")


def model_card(report: Report) -> bytes:
    """The card's text, UTF-8 encoded: YAML front matter, then what was done, the before/after
    metrics, distillation, the strategies compared, the accuracy-to-size factor and usage."""
    parts = [
        _front_matter(report),
        _summary(report),
        _metrics(report),
        _distillation(report),
        _vocabulary(report),
        _formats(report),
        _recovery(report),
        _strategies(report),
        _factor(report),
        _usage(report),
    ]
    return ("\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n").encode("utf-8")


def _short_name(report: Report) -> str:
    return report.model.base_model.rstrip("/").split("/")[-1]


def _front_matter(report: Report) -> str:
    base_model, dataset_name = report.model.base_model, report.options.dataset_name
    model_name = f"{_short_name(report)}-layerfuse-{report.final.num_layers}L"
    results = []
    for split in SPLITS:
        metrics: Metrics | None = getattr(report.final, split)
        lines = _index_metrics(metrics, split.capitalize()) if metrics else []
        if not lines:
            continue
        results.append(
            "  - task:\n      type: text-classification\n      name: Text Classification\n"
            f"    dataset:\n      name: {_yaml_str(dataset_name)}\n"
            f"      type: {_yaml_str(dataset_name)}\n      split: {split}\n"
            "    metrics:\n" + "\n".join(lines)
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


def _index_metrics(metrics: Metrics, split: str) -> list[str]:
    """The model-index entries of one split: accuracy and macro-F1, where they are numbers."""
    entries = [
        ("accuracy", metrics["accuracy"], f"{split} accuracy"),
        ("f1", metrics["macro_f1"], f"{split} macro-F1"),
    ]
    return [
        f"      - type: {kind}\n        value: {_yaml_number(value)}\n"
        f"        name: {_yaml_str(label)}"
        + ("\n        args:\n          average: macro" if kind == "f1" else "")
        for kind, value, label in entries
        if is_number(value)
    ]


def _summary(report: Report) -> str:
    selection, model, dataset = report.selection, report.model, report.dataset
    total = fmt_int(model.num_layers)
    labels = ", ".join(f"`{label}`" for label in dataset.labels) or NA
    sizes = (
        f"{fmt_int(dataset.train)} training, {fmt_int(dataset.validation)} "
        f"validation and {fmt_int(dataset.test)} test examples"
    )
    target = ", ".join(f"`{key}` = {value}" for key, value in selection.target.describe().items())
    return "\n".join(
        [
            f"# {_short_name(report)}, compressed by layerfuse",
            "",
            f"`{model.base_model}` ({model.architecture}, {total} layers) on "
            f"**{report.options.dataset_name}** (classes: {labels}), compressed by removing whole "
            "transformer layers and recovering accuracy with knowledge distillation, after "
            'Rahman, "Strategic Fusion Optimizes Transformer Compression" (arXiv 2501.03273).',
            "",
            "## What was done",
            "",
            f"- **Strategy:** `{selection.strategy}`",
            f"- **Target:** {target or NA}",
            f"- **Removed layers** ({len(selection.removed_layers)} of {total}; original indices, "
            f"0 = next to the embeddings): {_layers(selection.removed_layers)}",
            f"- **Kept layers:** {_layers(selection.kept_layers)}",
            f"- **Data:** {sizes}. The strategy and depth were chosen on validation only; the test "
            "split is reported, never used to choose.",
        ]
    )


def _metrics(report: Report) -> str:
    model, baseline, final = report.model, report.baseline, report.final
    rows: list[tuple[str, Any, Any, str]] = [
        ("Encoder layers", model.num_layers, final.num_layers, "int"),
        ("Parameters", model.parameters, final.parameters, "int"),
        ("Size (MB, fp32)", model.size_mb, final.size_mb, "mb"),
    ]
    for split in SPLITS:
        rows += _metric_rows(split, getattr(baseline, split), getattr(final, split))
    before, after = baseline.latency_ms, final.latency_ms
    rows += [
        ("Latency, batch 1 (ms)", before and before["batch_1"], after and after["batch_1"], "ms"),
        (
            "Latency, batch 32 (ms)",
            before and before["batch_32"],
            after and after["batch_32"],
            "ms",
        ),
    ]
    lines = [
        "## Before and after",
        "",
        *_table(["", "original", "compressed", "change"], "lrrr", (_row(*r) for r in rows)),
    ]
    if not final.test:
        lines += ["", "No test split was given, so test metrics are n/a."]
    lines += ["", *_latency_lines(final.latency), "Size is parameters × 4 bytes (fp32)."]
    return "\n" + "\n".join(lines) + "\n"


def _latency_lines(latency: LatencyComparison | None) -> list[str]:
    """How latency was timed, the speedup per batch size, and whether the machine was busy."""
    if latency is None:
        return ["Latency was not measured for this job."]
    speedups = ", ".join(
        f"{fmt_speedup(pair.speedup)} at batch {size}"
        for size, pair in (("1", latency.batch_1), ("32", latency.batch_32))
    )
    lines = [
        f"Latency is the median time per batch on the device the job ran on, the two models timed "
        f"interleaved ({latency.threads} threads): the compressed model is {speedups}.",
    ]
    return [*lines, *([latency.note] if latency.note else [])]


def _metric_rows(
    split: str, before: Metrics | None, after: Metrics | None
) -> list[tuple[str, Any, Any, str]]:
    """Accuracy and macro-F1 of ``split`` before and after, as table rows."""
    name = split.capitalize()
    return [
        (f"{name} accuracy", before and before["accuracy"], after and after["accuracy"], "pct"),
        (f"{name} macro-F1", before and before["macro_f1"], after and after["macro_f1"], "pct"),
    ]


def _row(label: str, before: Any, after: Any, kind: str) -> list[str]:
    return [label, fmt(before, kind), fmt(after, kind), fmt_change(before, after, kind)]


def _table(header: Sequence[str], align: str, rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table's lines; ``align`` has a letter per column: ``l`` left, ``r`` right (for
    numbers)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return [_cells(header), rule, *(_cells(row) for row in rows)]


def _cells(cells: Sequence[str]) -> str:
    return "|" + "|".join(f" {cell} " if cell else " " for cell in cells) + "|"


def _distillation(report: Report) -> str:
    kd = report.distillation
    if not kd.enabled:
        return "\n## Knowledge distillation\n\nDistillation was not run for this model.\n"
    options = report.options.distillation
    lines = [
        "## Knowledge distillation",
        "",
        "The pruned student was trained to match the full model's softened outputs "
        f"(temperature {options.temperature}, α {options.alpha}, {fmt_int(kd.epochs_run)} "
        "epochs run; best epoch kept by validation accuracy).",
        "",
    ]
    rows = [
        _row(*row)
        for split in SPLITS
        for row in _metric_rows(split, getattr(kd.before, split), getattr(kd.after, split))
    ]
    lines += _table(["", "before KD", "after KD", "change"], "lrrr", rows)
    return "\n" + "\n".join(lines) + "\n"


def _vocabulary(report: Report) -> str:
    trimmed = report.export.vocabulary
    if trimmed is None:
        return ""
    lines = [
        "## Vocabulary",
        "",
        f"The vocabulary was trimmed from {fmt_int(trimmed.before)} to "
        f"{fmt_int(trimmed.after)} tokens: only the tokens of the training and validation data, "
        "the special tokens and single characters were kept (parameters "
        f"{fmt_int(trimmed.parameters_before)} → {fmt_int(trimmed.parameters_after)}). "
        "The tokenizer in this directory produces the new ids.",
    ]
    if trimmed.test_coverage is not None:
        lines += [
            "",
            f"Test tokens keeping their original piece: {fmt(trimmed.test_coverage, 'pct')}; "
            f"test accuracy {fmt(trimmed.test_accuracy_full, 'pct')} with the full vocabulary, "
            f"{fmt(trimmed.test_accuracy_trimmed, 'pct')} trimmed.",
        ]
    return "\n" + "\n".join(lines) + "\n"


def _formats(report: Report) -> str:
    if not report.formats:
        return ""
    lines = [
        "## Formats",
        "",
        "Accuracy measured in each format (ONNX with onnxruntime); latency on the CPU; the ratio "
        "is accuracy in % per MB of the real file. A format without a file was measured for "
        "comparison and not kept (the untrimmed variants of a trimmed model).",
        "",
    ]
    if any("int8" in name for name in report.formats):
        lines += [
            "int8 accuracy was measured in the evaluation's length-sorted batches of "
            f"{report.options.options.eval_batch_size}. Dynamic quantization takes each "
            "activation's range over the whole batch, padding included, so served at another "
            "batch size "
            "the int8 model's predictions (and accuracy, by about a point on a few hundred "
            "examples) can differ a little; fp32 does not.",
            "",
        ]
    rows = []
    for name, row in report.formats.items():
        latency = row.latency_ms
        flag = " (beyond tolerance)" if row.within_tolerance is False else ""
        rows.append(
            [
                f"{name}{flag}",
                f"`{row.file}`" if row.file else "not kept",
                fmt(row.bytes / 2**20, "mb"),
                fmt(row.validation_accuracy, "pct"),
                fmt(row.test_accuracy, "pct"),
                fmt(latency and latency["batch_1"], "ms"),
                fmt(latency and latency["batch_32"], "ms"),
                fmt(row.accuracy_to_size_ratio, "ratio"),
            ]
        )
    header = [
        "format",
        "file",
        "MB",
        "validation accuracy",
        "test accuracy",
        "batch 1 ms",
        "batch 32 ms",
        "accuracy / MB",
    ]
    lines += _table(header, "llrrrrrr", rows)
    return "\n" + "\n".join(lines) + "\n"


def _recovery(report: Report) -> str:
    """The healed comparison: every candidate recovered with the same recipe, the export marked."""
    recovery = report.recovery
    if not recovery.candidates:
        return ""
    k = report.selection.layers_removed
    lines = [
        f"## Candidates compared after recovery ({k} layer(s) removed)",
        "",
        "Each candidate was recovered with the same recipe; the best on validation was exported.",
        "",
    ]
    if any(c.stopped_by == "race" for c in recovery.candidates):
        lines += [
            "A candidate *stopped behind* trailed the leading candidate's best validation "
            "accuracy at the same epoch and was stopped there (`distillation.race`).",
            "",
        ]
    rows = [
        [
            f"`{c.candidate}`" + (" (exported)" if c.exported else ""),
            _layers(c.removed_layers),
            fmt(c.before.validation["accuracy"], "pct"),
            fmt(c.after.validation["accuracy"], "pct"),
            fmt(c.after.test["accuracy"] if c.after.test else None, "pct"),
            fmt_int(c.epochs_run) + (" (stopped behind)" if c.stopped_by == "race" else ""),
        ]
        for c in recovery.candidates
    ]
    header = [
        "candidate",
        "removed layers",
        "validation before",
        "validation after",
        "test after",
        "epochs",
    ]
    lines += _table(header, "llrrrr", rows)
    lines += _validation_noise(report)
    if recovery.depth_search:
        tried = ", ".join(
            f"k={t.layers_removed} {'met' if t.met_target else 'missed'} "
            f"({fmt(t.validation_accuracy, 'pct')})"
            for t in recovery.depth_search
        )
        lines += ["", f"Depths recovered to choose the depth: {tried}."]
    return "\n" + "\n".join(lines) + "\n"


def _validation_noise(report: Report) -> list[str]:
    """Which candidates the validation set cannot tell from the exported one.

    Candidates often recover to within a few examples of each other, and a table of percentages
    invites reading a 0.4-point lead as a better model. Two standard errors of the exported
    accuracy on this many examples is the yardstick: a simple, slightly generous one, since two
    models scored on the same examples differ by less noise than that. The accuracy is taken as
    (correct + 2) / (n + 4) (Agresti-Coull), so that 100% on a small set is not read as certain.
    """
    candidates, n = report.recovery.candidates, report.dataset.validation
    exported = next((c for c in candidates if c.exported), None)
    if exported is None or n <= 0:
        return []
    best = float(exported.after.validation["accuracy"])
    adjusted = (best * n + 2) / (n + 4)
    margin = 2 * math.sqrt(adjusted * (1 - adjusted) / (n + 4))
    close = [
        f"`{c.candidate}`"
        for c in candidates
        # The same removal under another name is the same model, not a rival.
        if c.removed_layers != exported.removed_layers
        and best - float(c.after.validation["accuracy"]) <= margin
    ]
    if not close:
        return []
    names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} and {close[-1]}"
    which = "either may be the better one" if len(close) == 1 else "any of them may be the best"
    return [
        "",
        f"On {fmt_int(n)} validation examples an accuracy near {fmt(best, 'pct')} is known to "
        f"about ±{100 * margin:.1f} points (two standard errors). {names} recovered within that "
        f"of the exported candidate: on new data {which}, and only a larger validation set would "
        "tell them apart.",
    ]


def _strategies(report: Report) -> str:
    """Every strategy's validation accuracy at the selected depth, best first."""
    k, chosen = report.selection.layers_removed, report.selection.strategy
    scored = []
    for name, entry in report.strategies.items():
        accuracy = None if name.startswith(RANDOM_SEED_PREFIX) else _accuracy_at(entry, k)
        if accuracy is not None:
            scored.append((accuracy, name))
    if not scored:
        return ""
    scored.sort(key=lambda item: (-item[0], item[1]))
    rows = [
        [f"`{name}`" + (" (selected)" if name == chosen else ""), fmt(accuracy, "pct")]
        for accuracy, name in scored
    ]
    lines = [
        f"## Strategies compared at {k} layer(s) removed (before distillation)",
        "",
        *_table(["strategy", "validation accuracy"], "lr", rows),
    ]
    return "\n" + "\n".join(lines) + "\n"


def _accuracy_at(entry: StrategyReport, k: int) -> float | None:
    point = entry.point(k)
    accuracy = point.validation["accuracy"] if point else None
    return accuracy if is_number(accuracy) else None


def _factor(report: Report) -> str:
    final = report.final
    return "\n".join(
        [
            "## Accuracy-to-size improvement",
            "",
            "Accuracy-to-size ratio (accuracy in % / size in MB): "
            f"{fmt(final.original_accuracy_to_size_ratio, 'ratio')} for the original model, "
            f"{fmt(final.accuracy_to_size_ratio, 'ratio')} for the compressed one: an "
            f"**improvement factor of {fmt(final.improvement_factor, 'factor')}**.",
            "",
            PAPER_FACTOR_NOTE,
        ]
    )


def _usage(report: Report) -> str:
    call = (
        'tokenizer("first text", "second text", return_tensors="pt")'
        if report.options.columns.text_pair_column
        else 'tokenizer("a text to classify", return_tensors="pt")'
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


def _layers(layers: Sequence[int]) -> str:
    return ", ".join(str(i) for i in layers) if layers else "none"


def _yaml_str(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string escapes are a subset of YAML's)."""
    return json.dumps(str(text), ensure_ascii=False)


def _yaml_number(value: float) -> str:
    return repr(round(float(value), 6))
