"""A job's artifacts: listed with size and sha256, downloaded by listed name only.

The worker lists what the library wrote (:func:`describe_outputs`). ``model.zip`` (the Hugging
Face directory, zipped, with its ``onnx/`` folder when ONNX was exported) is built by the API on
first request, deterministically (sorted entries, fixed timestamps), written to a temporary name
and renamed, so concurrent builders agree.
Fastapi- and torch-free: the worker uses it too.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import zipfile
from pathlib import Path
from typing import Any

MODEL_ZIP = "model.zip"
MODEL_DIR = "model"
# The one subfolder of the model directory the library writes (model/onnx/model.onnx, ...).
ONNX_DIR = "onnx"
CONTENT_TYPES = {
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
    ".zip": "application/zip",
}
_zip_lock = threading.Lock()


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(output: Path, name: str) -> dict[str, Any]:
    path = output / name
    return {
        "name": name,
        "bytes": path.stat().st_size,
        "sha256": sha256_of(path),
        "content_type": content_type(name),
    }


def describe_outputs(output: Path) -> list[dict[str, Any]]:
    """Every regular file the run left in ``output``: top-level files, then ``model/...`` and
    ``model/onnx/...``."""
    names = [p.name for p in _files(output)]
    names += [str(p.relative_to(output)) for p in _model_files(output / MODEL_DIR)]
    return [describe(output, name) for name in names if name != MODEL_ZIP]


def _files(folder: Path) -> list[Path]:
    """``folder``'s regular files (no links, no folders), sorted; none when it is missing."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.is_symlink())


def _model_files(model: Path) -> list[Path]:
    return _files(model) + _files(model / ONNX_DIR)


def ensure_model_zip(output: Path) -> dict[str, Any]:
    """Build ``output/model.zip`` from ``output/model/`` once; returns its artifact entry."""
    target = output / MODEL_ZIP
    with _zip_lock:
        if not target.is_file():
            temporary = output / f".{MODEL_ZIP}.{os.getpid()}.{threading.get_ident()}.tmp"
            try:
                _write_zip(output / MODEL_DIR, temporary)
                os.replace(temporary, target)
            finally:
                temporary.unlink(missing_ok=True)
    return describe(output, MODEL_ZIP)


def _write_zip(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in _model_files(folder):
            name = f"{MODEL_DIR}/{path.relative_to(folder).as_posix()}"
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with path.open("rb") as src, zf.open(info, "w", force_zip64=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
