"""A checkpoint directory holds one run's state, and only a run of the same inputs resumes from it.

``compress(..., checkpoint_dir=...)`` keeps the fine-tuned teacher and the sweep's caches there so
that a restarted run (a redelivered job) skips work already done. Another run pointed at the same
directory (another spec, or the same paths with edited files) would otherwise take that state as
its own: a teacher of another label set, or a sweep measured on other data, reported as this run's.
:func:`claim` writes what the state was made from (the spec, and each input file's size and
modification time) beside it, and clears the state when the next run's inputs differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .progress import ProgressTracker
from .spec import CompressionSpec

TEACHER_CHECKPOINT = "teacher.safetensors"
SWEEP_CHECKPOINT = "sweep.json"
INPUTS_FILE = "inputs.json"
# Only these are removed: the directory is the caller's, and may hold other files.
STATE_FILES = (TEACHER_CHECKPOINT, SWEEP_CHECKPOINT)


def claim(checkpoint_dir: Path, spec: CompressionSpec, tracker: ProgressTracker) -> None:
    """Make ``checkpoint_dir`` this run's: keep its state when it was made from the same inputs,
    else remove it (with an event saying so) and record this run's inputs."""
    inputs = fingerprint(spec)
    record = checkpoint_dir / INPUTS_FILE
    state = [checkpoint_dir / name for name in STATE_FILES if (checkpoint_dir / name).is_file()]
    if state and _read(record) != inputs:
        for path in state:
            path.unlink()
        tracker.event(
            "message",
            "the checkpoint directory held the state of a run with other inputs; starting afresh",
        )
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(inputs, sort_keys=True))


def fingerprint(spec: CompressionSpec) -> dict[str, Any]:
    """The spec, and the size and modification time of every file it reads."""
    files = [path for path in (spec.train, spec.validation, spec.test) if path is not None]
    if spec.model_dir.is_dir():
        files.extend(sorted(p for p in spec.model_dir.iterdir() if p.is_file()))
    stats = {str(path): _stat(path) for path in files}
    return {"spec": spec.model_dump(mode="json"), "files": stats}


def _stat(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def _read(record: Path) -> Any:
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):
        return None
