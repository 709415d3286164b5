from __future__ import annotations

import csv
import json
import math
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from layerfuse.compression.artifacts import (
    plot_curves,
    plot_signals_heatmap,
    write_model_card,
    write_report,
    write_signals_csv,
)
from layerfuse.compression.catalogue import BLOCK_INFLUENCE, SIGNAL_IDS, STRATEGY_IDS
from layerfuse.compression.model_card import _table
from layerfuse.compression.plots import normalise_columns
from layerfuse.compression.report import Report
from layerfuse.compression.spec import MethodSpec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
L = 4


def metrics(accuracy: float, loss: float = 0.5) -> dict:
    return {"accuracy": accuracy, "macro_f1": accuracy - 0.02, "loss": loss}


def curve(order: list[int], accuracies: list[float], with_test: bool) -> dict:
    points = []
    for k, acc in enumerate(accuracies):
        points.append(
            {
                "layers_removed": k,
                "removed": sorted(order[:k]),
                "validation": metrics(acc),
                "test": metrics(acc - 0.01) if with_test else None,
            }
        )
    return {"removal_order": order, "curve": points}


def signal_rows() -> list[dict]:
    """Signals of the full model (all layers), then of two deeper states."""
    rows = []
    for removed in ([], [3], [1, 3]):
        for layer in (i for i in range(L) if i not in removed):
            row: dict = {"removed": removed, "layer": layer}
            for j, signal in enumerate(SIGNAL_IDS):
                row[signal] = (layer + 1) * (j + 1) * 0.1
            row[BLOCK_INFLUENCE] = 0.05 * (layer + 1)
            rows.append(row)
    full = rows[:L]
    for row in full:
        row["weight-entropy"] = 7.25  # constant across layers
    full[2]["gradient-fisher"] = float("nan")  # not measured
    return rows


def options(*, pair: bool = False) -> dict:
    """The resolved spec of a job on sst2-like files."""
    spec = MethodSpec(strategy="fusion-random-forest", target={"max_accuracy_drop": 0.01})
    return {
        **spec.model_dump(mode="json"),
        "columns": {
            "text_column": "text",
            "text_pair_column": "text_b" if pair else None,
            "label_column": "label",
        },
        "dataset_name": "sst2",
        "files": {"model": "bert", "train": "train.jsonl", "validation": None, "test": None},
        "walked_strategies": list(STRATEGY_IDS),
        "runtime": {"device": "cpu", "precision": "fp32"},
    }


def make_report(*, with_test: bool = True) -> Report:
    return Report.model_validate(report_data(with_test=with_test))


def report_data(*, with_test: bool = True) -> dict:
    """A whole report.json, as JSON values, that tests may change before validating it."""
    strategies = {
        "gradient-fisher": curve([3, 1, 2], [0.90, 0.89, 0.85, 0.70], with_test),
        "weight-magnitude": curve([0, 3, 1], [0.90, 0.82, 0.75, 0.60], with_test),
        "drop-top": curve([3, 2, 1], [0.90, 0.88, 0.80, 0.65], with_test),
        "random": curve([], [0.90, 0.84, 0.76, 0.62], with_test),
        "random/seed-0": curve([2, 0, 1], [0.90, 0.86, 0.78, 0.64], with_test),
        "random/seed-1": curve([0, 1, 3], [0.90, 0.81, 0.74, 0.60], with_test),
        "random/seed-2": curve([1, 2, 0], [0.90, 0.85, 0.76, 0.62], with_test),
        "fusion-linear-regression": curve([3, 1, 0], [0.90, 0.89, 0.86, 0.71], with_test),
        "fusion-random-forest": curve([3, 1, 2], [0.90, 0.895, 0.87, 0.72], with_test),
    }
    strategies["random"]["removal_order"] = []
    test = metrics(0.88) if with_test else None
    return {
        "model": {
            "architecture": "BertForSequenceClassification",
            "model_type": "bert",
            "base_model": "google-bert/bert-base-uncased",
            "num_layers": L,
            "parameters": 4_400_000,
            "size_mb": 16.78,
        },
        "dataset": {
            "labels": ["negative", "neutral", "positive"],
            "train": 240,
            "validation": 60,
            "test": 60 if with_test else None,
            "validation_carved_from_train": False,
            "calibration": 32,
        },
        "options": options(),
        "teacher": {"fine_tuned": False},
        "baseline": {
            "validation": metrics(0.90),
            "test": test,
            "latency_ms": {"batch_1": 3.2, "batch_32": 21.5},
        },
        "fusion": {
            "rows": 20,
            "features": [*SIGNAL_IDS, "depth", "removed_fraction"],
            "linear-regression": {"coefficients": {"depth": 0.12, "gradient-fisher": -0.3}},
            "random-forest": {"feature_importances": {"depth": 0.4, "gradient-fisher": 0.6}},
        },
        "strategies": strategies,
        "probe": [],
        "signals": signal_rows(),
        "selection": {
            "strategy": "fusion-random-forest",
            "target": {"max_accuracy_drop": 0.01},
            "layers_removed": 1,
            "removed_layers": [3],
            "kept_layers": [0, 1, 2],
            "validation_accuracy": 0.895,
            "met_target": True,
        },
        "distillation": {
            "enabled": True,
            "before": {"validation": metrics(0.895), "test": test},
            "after": {"validation": metrics(0.905), "test": metrics(0.89) if with_test else None},
            "epochs_run": 3,
            "temperature": 2.0,
            "alpha": 0.5,
        },
        "recovery": {
            "schedule": "one-shot",
            "teacher_seconds": 1.5,
            "depth_search": [],
            "candidates": [
                {
                    "candidate": "fusion-random-forest",
                    "removed_layers": [4, 5, 6],
                    "before": {"validation": metrics(0.895), "test": test},
                    "after": {
                        "validation": metrics(0.905),
                        "test": metrics(0.89) if with_test else None,
                    },
                    "epochs_run": 3,
                    "best_epoch": 2,
                    "seconds": 20.0,
                    "exported": True,
                },
                {
                    "candidate": "uniform",
                    "removed_layers": [1, 3, 5],
                    "before": {"validation": metrics(0.5), "test": test},
                    "after": {"validation": metrics(0.871), "test": None},
                    "epochs_run": 2,
                    "best_epoch": 1,
                    "seconds": 14.0,
                    "exported": False,
                },
            ],
            "exported": "fusion-random-forest",
        },
        "final": {
            "validation": metrics(0.905),
            "test": metrics(0.89) if with_test else None,
            "num_layers": 3,
            "parameters": 3_300_000,
            "size_mb": 12.59,
            "safetensors_bytes": 13_200_000,
            "latency_ms": {"batch_1": 2.5, "batch_32": 16.0},
            "latency": {
                "batch_1": latency_pair(3.2, 2.5),
                "batch_32": latency_pair(21.5, 16.0),
                "threads": 2,
                "busy": False,
            },
            "accuracy_to_size_ratio": 7.188,
            "original_accuracy_to_size_ratio": 5.362,
            "improvement_factor": 1.3406,
            "ratio_basis": "test accuracy in % / size in MB",
            "note": "reported as measured",
        },
        "export": {"formats": ["hf"], "reload_max_abs_logit_diff": 1e-6},
        "timings": {"preparing": 1.5, "sweeping": 12.0, "total": 20.0},
        "sweep": {"measurements": 12, "cache_hits": 30},
    }


def latency_pair(original_ms: float, compressed_ms: float) -> dict:
    return {
        "original_ms": original_ms,
        "compressed_ms": compressed_ms,
        "speedup": original_ms / compressed_ms,
        "spread": 0.05,
        "repeats": 6,
    }


def front_matter(text: str) -> dict:
    """The card's YAML front matter; without PyYAML, only its top-level scalars and lists."""
    assert text.startswith("---\n")
    block = text.split("---\n", 2)[1]
    try:
        import yaml
    except ImportError:
        meta: dict = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("- ") and key:
                meta.setdefault(key, []).append(json.loads(line[2:]) if '"' in line else line[2:])
            elif not line.startswith(" ") and ":" in line:
                key, _, value = line.partition(":")
                if value.strip():
                    meta[key] = json.loads(value) if '"' in value else value.strip()
        return meta
    return yaml.safe_load(block)


def model_index(meta: dict) -> list[dict]:
    if "model-index" not in meta:
        pytest.importorskip("yaml", reason="model-index is nested YAML; parsing it needs PyYAML")
    return meta["model-index"][0]["results"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    return struct.unpack(">II", data[16:24])


# --- report.json ---------------------------------------------------------------------------------


def test_report_round_trips_as_strict_json(tmp_path: Path) -> None:
    data = report_data()
    data["model"]["size_mb"] = np.float32(16.5)  # numpy scalars are written as numbers
    data["signals"][1]["weight-magnitude"] = float("inf")
    path = tmp_path / "out" / "report.json"
    write_report(Report.model_validate(data), path)

    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert loaded["signals"][2]["gradient-fisher"] is None
    assert loaded["signals"][1]["weight-magnitude"] is None
    assert loaded["model"]["size_mb"] == 16.5
    assert loaded["strategies"]["random/seed-1"] == data["strategies"]["random/seed-1"]
    assert loaded["selection"] == data["selection"]
    assert loaded["fusion"]["linear-regression"] == data["fusion"]["linear-regression"]
    assert "intercept" not in loaded["fusion"]["linear-regression"]  # unset: left out, not null
    assert loaded["teacher"] == {"fine_tuned": False}
    assert text.startswith('{\n  "model"')  # indented
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]  # no temporary left
    # A stored report reads back as the same report: the files can be rebuilt from it.
    assert Report.model_validate(loaded).to_json() == loaded


def test_report_refuses_keys_it_does_not_define() -> None:
    data = report_data()
    data["selection"]["layers"] = [3]
    with pytest.raises(ValueError, match="layers"):
        Report.model_validate(data)


def test_report_overwrites_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    write_report(make_report(), path)
    assert json.loads(path.read_text())["model"]["num_layers"] == L


# --- signals.csv ---------------------------------------------------------------------------------


def test_signals_csv_has_one_row_per_measured_state_and_layer(tmp_path: Path) -> None:
    report = make_report()
    path = tmp_path / "signals.csv"
    write_signals_csv(report, path)

    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["removed", "k", "layer", *SIGNAL_IDS]
    body = rows[1:]
    assert len(body) == len(report.signals) == 4 + 3 + 2
    assert [(r[0], r[1]) for r in body] == [("", "0")] * 4 + [("3", "1")] * 3 + [("1;3", "2")] * 2
    assert [r[2] for r in body[:4]] == ["0", "1", "2", "3"]
    col = {s: 3 + i for i, s in enumerate(SIGNAL_IDS)}
    assert body[2][col["gradient-fisher"]] == ""  # NaN is left empty
    assert float(body[1][col["activation-energy"]]) == pytest.approx(2 * 3 * 0.1)


# --- plots ---------------------------------------------------------------------------------------


def test_curves_plot_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "curves.png"
    plot_curves(make_report(), path)
    width, height = png_size(path)
    assert width > 600 and height > 300
    assert path.stat().st_size > 20_000


def test_curves_plot_draws_lines_random_band_and_baseline(tmp_path: Path) -> None:
    report = make_report()
    seedless = report_data()
    for name in ("random/seed-0", "random/seed-1", "random/seed-2"):
        del seedless["strategies"][name]
    plot_curves(report, tmp_path / "with.png")
    plot_curves(Report.model_validate(seedless), tmp_path / "without.png")
    # The band changes the picture; the seeds themselves are not drawn as extra lines.
    assert (tmp_path / "with.png").read_bytes() != (tmp_path / "without.png").read_bytes()


def test_curves_plot_without_strategies_still_writes_a_png(tmp_path: Path) -> None:
    data = report_data()
    data["strategies"] = {}
    plot_curves(Report.model_validate(data), tmp_path / "curves.png")
    png_size(tmp_path / "curves.png")


def test_heatmap_is_a_png(tmp_path: Path) -> None:
    path = tmp_path / "signals.png"
    plot_signals_heatmap(make_report(), path)
    width, height = png_size(path)
    assert width > 600 and height > 200
    assert path.stat().st_size > 20_000


def test_heatmap_without_full_model_signals_still_writes_a_png(tmp_path: Path) -> None:
    data = report_data()
    data["signals"] = [r for r in data["signals"] if r["removed"]]
    plot_signals_heatmap(Report.model_validate(data), tmp_path / "signals.png")
    png_size(tmp_path / "signals.png")


def test_normalisation_scales_each_column_and_survives_constant_columns() -> None:
    values = np.array([[1.0, 7.0, 100.0], [3.0, 7.0, math.nan], [2.0, 7.0, 300.0]])
    with np.errstate(all="raise"):  # a division by zero would raise here
        out = normalise_columns(values)
    assert out[:, 0].tolist() == [0.0, 1.0, 0.5]
    assert out[:, 1].tolist() == [0.5, 0.5, 0.5]
    assert out[0, 2] == 0.0 and math.isnan(out[1, 2]) and out[2, 2] == 1.0


# --- model card ----------------------------------------------------------------------------------


def test_model_card_front_matter_and_metrics(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    write_model_card(make_report(), path)
    text = path.read_text()
    meta = front_matter(text)

    assert meta["base_model"] == "google-bert/bert-base-uncased"
    assert meta["datasets"] == ["sst2"]
    assert meta["tags"] == [
        "layerfuse",
        "layer-pruning",
        "knowledge-distillation",
        "text-classification",
    ]
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-classification"
    results = model_index(meta)
    by_split = {
        r["dataset"]["split"]: {m["type"]: m["value"] for m in r["metrics"]} for r in results
    }
    assert by_split == {
        "validation": {"accuracy": 0.905, "f1": pytest.approx(0.885)},
        "test": {"accuracy": 0.89, "f1": pytest.approx(0.87)},
    }

    body = text.split("---\n", 2)[2]
    assert "`fusion-random-forest`" in body
    assert "**Removed layers** (1 of 4; original indices, 0 = next to the embeddings): 3" in body
    assert "**Kept layers:** 0, 1, 2" in body
    assert "| Encoder layers | 4 | 3 | -25.0% |" in body
    assert "| Parameters | 4,400,000 | 3,300,000 | -25.0% |" in body
    assert "| Validation accuracy | 90.00% | 90.50% | +0.50 pts |" in body
    assert "| Test accuracy | 88.00% | 89.00% | +1.00 pts |" in body
    assert "| Latency, batch 32 (ms) | 21.50 | 16.00 |" in body
    assert "1.34× faster at batch 32" in body and "busy" not in body
    assert "| Validation accuracy | 89.50% | 90.50% | +1.00 pts |" in body  # distillation
    assert "| `fusion-random-forest` (exported) | 4, 5, 6 | 89.50% | 90.50% | 89.00% | 3 |" in body
    assert "| `uniform` | 1, 3, 5 | 50.00% | 87.10% | n/a | 2 |" in body
    assert "1.34×" in body and "18.84" in body and "reported as measured" in body
    assert "AutoModelForSequenceClassification.from_pretrained" in body
    assert not re.search(r"\bnan\b", body, flags=re.IGNORECASE)


def test_model_card_says_when_the_machine_was_busy(tmp_path: Path) -> None:
    data = report_data()
    data["final"]["latency"].update(busy=True, note="The machine was busy while timing.")
    path = tmp_path / "README.md"
    write_model_card(Report.model_validate(data), path)
    assert "The machine was busy while timing." in path.read_text()


def test_model_card_without_test_split(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    write_model_card(make_report(with_test=False), path)
    text = path.read_text()
    meta = front_matter(text)
    splits = [r["dataset"]["split"] for r in model_index(meta)]
    assert splits == ["validation"]
    assert "| Test accuracy | n/a | n/a | n/a |" in text
    assert "No test split was given" in text


def test_model_card_without_distillation_or_metrics(tmp_path: Path) -> None:
    data = report_data()
    data["distillation"]["enabled"] = False
    data["final"]["validation"]["accuracy"] = float("nan")
    data["final"]["improvement_factor"] = float("nan")
    data["model"]["base_model"] = 'odd "name": x'
    path = tmp_path / "README.md"
    write_model_card(Report.model_validate(data), path)
    text = path.read_text()
    assert front_matter(text)["base_model"] == 'odd "name": x'
    assert "Distillation was not run" in text
    assert "| Validation accuracy | 90.00% | n/a | n/a |" in text
    assert "improvement factor of n/a" in text


def test_model_card_tables_align_numbers_right_and_keep_a_blank_corner() -> None:
    assert _table(["", "after"], "lr", [["Accuracy", "90.00%"]]) == [
        "| | after |",
        "|---|---:|",
        "| Accuracy | 90.00% |",
    ]
