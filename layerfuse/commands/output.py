"""What the commands print: JSON for ``--json``, and the lines a person reads."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any

from layerfuse.compression.formatting import fmt_speedup

NO_TARGET_HINT = (
    "no depth kept validation accuracy within the target before distillation, so the model was "
    "kept whole; try --max-accuracy-drop 0.05, --layers-to-remove K or --select-best "
    "(distillation then recovers accuracy)"
)


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout (nothing else)"
    )


def print_json(value: Any) -> None:
    """One JSON document on stdout: what scripts parse (messages go to stderr)."""
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    sys.stdout.flush()


def format_lines(formats: Mapping[str, Any]) -> list[str]:
    """One line per written format: size, accuracy, latency and accuracy per MB."""
    lines = []
    for name, row in formats.items():
        basis = "test" if row.get("test_accuracy") is not None else "validation"
        accuracy = row[f"{basis}_accuracy"]
        latency = row.get("latency_ms") or {}
        timing = f", {latency['batch_1']:.2f} ms/batch of 1" if latency else ""
        flag = " (beyond the int8 tolerance)" if row.get("within_tolerance") is False else ""
        kept = "" if row.get("file") else " (measured, not kept)"
        lines.append(
            f"{name}: {row['bytes'] / 2**20:.1f} MB, {basis} accuracy {accuracy:.4f}{timing}, "
            f"{row['accuracy_to_size_ratio']:.2f} %/MB{flag}{kept}"
        )
    return lines


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """A compression result (the library's summary, or a job's ``result``) in a few lines."""
    lines = [
        f"{summary.get('strategy')}: removed layers {summary.get('removed_layers')}, "
        f"kept {summary.get('kept_layers')}"
    ]
    if summary.get("met_target") is False:
        lines.append(NO_TARGET_HINT)
    try:
        base = summary["baseline"]["validation"]["accuracy"]
        final = summary["final"]["validation"]["accuracy"]
        params = summary["parameters"]
        lines.append(
            f"validation accuracy {base:.4f} -> {final:.4f}; "
            f"parameters {params['before']:,} -> {params['after']:,}"
        )
    except (KeyError, TypeError):
        pass
    lines += latency_lines(summary.get("latency"))
    lines += format_lines(summary.get("formats") or {})
    for integration in summary.get("integrations") or []:
        if integration.get("status") == "succeeded":
            registered = integration.get("registered_model")
            lines.append(
                f"{integration['type']}: run {integration.get('run_id')}"
                + (f", {registered['name']} version {registered['version']}" if registered else "")
            )
        else:
            error = integration.get("error") or {}
            lines.append(
                f"{integration['type']}: failed [{error.get('code')}] {error.get('message')}"
            )
    return lines


def latency_lines(latency: Mapping[str, Any] | None) -> list[str]:
    """The side-by-side latency: milliseconds and speedup at batch 32 and 1, and a warning when
    the machine was too busy for the milliseconds to be trusted."""
    if not latency:
        return []
    try:
        parts = [
            f"{fmt_speedup(latency[key]['speedup'])} at batch {size} "
            f"({latency[key]['original_ms']:.1f} -> {latency[key]['compressed_ms']:.1f} ms)"
            for key, size in (("batch_32", 32), ("batch_1", 1))
        ]
    except (KeyError, TypeError):
        return []
    lines = ["latency (timed side by side): " + ", ".join(parts)]
    if latency.get("busy"):
        lines.append("the machine was busy while timing: latency figures are only indicative")
    return lines
