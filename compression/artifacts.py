"""The human-facing outputs of a run, written from its report (method.md, "Outputs").

Everything here reads a :class:`~layerfuse.compression.report.Report` and nothing else, so the
files can be rebuilt from a stored ``report.json`` at any time (``Report.model_validate``): the
report itself, ``signals.csv``, the two plots (:mod:`~layerfuse.compression.plots`) and the model
card (:mod:`~layerfuse.compression.model_card`). Every file is written atomically (a temporary
file in the same folder, then ``os.replace``), so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from . import plots
from .catalogue import SIGNAL_IDS
from .formatting import is_number
from .model_card import model_card
from .report import Report

REPORT = "report.json"
MODEL_CARD = "model_card.md"
SIGNALS_CSV = "signals.csv"
CURVES_PNG = "curves.png"
SIGNALS_PNG = "signals.png"
# The files written from the report, in the order they are announced.
REPORT_FILES = (REPORT, MODEL_CARD, SIGNALS_CSV, CURVES_PNG, SIGNALS_PNG)


def write_all(report: Report, out_dir: Path, *, model_dir: Path) -> None:
    """Every file derived from ``report``; the card also as ``model_dir/README.md``.

    ``report.json`` comes last, so its presence means the rest is there too.
    """
    write_model_card(report, model_dir / "README.md")
    write_model_card(report, out_dir / MODEL_CARD)
    write_signals_csv(report, out_dir / SIGNALS_CSV)
    plot_curves(report, out_dir / CURVES_PNG)
    plot_signals_heatmap(report, out_dir / SIGNALS_PNG)
    write_report(report, out_dir / REPORT)


def write_report(report: Report, path: Path) -> None:
    """Write ``report`` as indented JSON; NaN and infinities become ``null`` (strict JSON)."""
    text = json.dumps(report.to_json(), indent=2, allow_nan=False, ensure_ascii=False)
    write_atomic(Path(path), (text + "\n").encode("utf-8"))


def write_signals_csv(report: Report, path: Path) -> None:
    """One row per measured (state, layer): ``removed`` ("3;5", "" for the full model), ``k``,
    ``layer``, then the 12 signals in catalogue order (empty where not measured)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["removed", "k", "layer", *SIGNAL_IDS])
    for row in report.signals:
        removed = sorted(row.removed)
        writer.writerow(
            [
                ";".join(str(i) for i in removed),
                len(removed),
                row.layer,
                *(_csv_number(row.value(signal)) for signal in SIGNAL_IDS),
            ]
        )
    write_atomic(Path(path), buffer.getvalue().encode("utf-8"))


def plot_curves(report: Report, path: Path) -> None:
    """``curves.png``: see :func:`~layerfuse.compression.plots.curves_png`."""
    write_atomic(Path(path), plots.curves_png(report))


def plot_signals_heatmap(report: Report, path: Path) -> None:
    """``signals.png``: see :func:`~layerfuse.compression.plots.signals_png`."""
    write_atomic(Path(path), plots.signals_png(report))


def write_model_card(report: Report, path: Path) -> None:
    """The compressed model's ``README.md`` (:func:`.model_card.model_card`)."""
    write_atomic(Path(path), model_card(report))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (0644)."""
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


def _csv_number(value: float | None) -> str:
    return repr(float(value)) if value is not None and is_number(value) else ""
