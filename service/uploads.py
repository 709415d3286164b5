"""Receiving uploads: streamed to disk under size limits, names from an allowlist.

The multipart body is parsed as it arrives (no spooling elsewhere first): every file part is
checked by name before a byte of it is written, written to a temporary folder, and counted; past
the limit the upload stops with 413 and the folder is removed. Callers validate the files and
then rename the folder into place, so a half-written upload is never visible. No archive is
ever extracted.

Model files are inspected without torch, by the library's own rules
(:func:`layerfuse.compression.inspection.inspect_model_dir`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from layerfuse.compression.datasets import DATASET_SUFFIXES
from layerfuse.compression.inspection import (
    MODEL_FILES,
    PICKLE_SUFFIXES,
    SHARD_PATTERN,
    ModelInfo,
    inspect_model_dir,
)

from .errors import ApiError, PayloadTooLarge, Unprocessable

MAX_FILES = 64


@dataclass
class Received:
    """Files written into ``folder`` (by their validated names) and their total size."""

    folder: Path
    files: dict[str, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return sum(self.files.values())


def check_model_filename(name: str) -> None:
    """Accept only the file names of a Hugging Face model directory (api.md).

    Raises:
        Unprocessable: ``upload_file_not_allowed`` naming the file and why.
    """
    _check_plain_name(name, "files")
    lowered = name.lower()
    if lowered.endswith(PICKLE_SUFFIXES):
        raise Unprocessable(
            f"{name!r} is a pickle-based weight file; upload safetensors (model.safetensors) "
            "instead: pickle files can run code when loaded",
            code="upload_file_not_allowed",
            param="files",
        )
    if name not in MODEL_FILES and not SHARD_PATTERN.match(name):
        raise Unprocessable(
            f"{name!r} is not a file of a Hugging Face model directory; allowed: "
            f"{', '.join(sorted(MODEL_FILES))} and model-0000x-of-0000y.safetensors shards",
            code="upload_file_not_allowed",
            param="files",
        )


def check_dataset_filename(name: str) -> None:
    _check_plain_name(name, "file")
    if not name.lower().endswith(DATASET_SUFFIXES):
        raise Unprocessable(
            f"{name!r}: upload JSON lines (.jsonl), CSV (.csv), TSV (.tsv) or Parquet (.parquet)",
            code="dataset_format_unsupported",
            param="file",
        )


def _check_plain_name(name: str, param: str) -> None:
    if (
        not name
        or len(name) > 255
        or "/" in name
        or "\\" in name
        or "\x00" in name
        or name in (".", "..")
        or name.startswith(".")
    ):
        raise Unprocessable(
            f"file name {name[:100]!r} is not allowed: send plain file names, without folders",
            code="upload_file_not_allowed",
            param=param,
        )


async def receive_files(
    request: Request,
    folder: Path,
    *,
    limit: int,
    check_name: Any,
    max_files: int = MAX_FILES,
) -> Received:
    """Stream the multipart body's file parts into ``folder`` (created here).

    On any error the folder is removed before the error propagates.

    Raises:
        PayloadTooLarge: the body exceeds ``limit`` bytes (announced or counted).
        Unprocessable: not multipart, a refused or repeated file name, no file at all.
    """
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise Unprocessable(
            "send the files as multipart/form-data", code="invalid_upload", param="files"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(_too_large(limit))
    folder.mkdir(parents=True, exist_ok=False)
    receiver = _PartWriter(folder, check_name=check_name, max_files=max_files)
    try:
        parser = MultipartParser(options[b"boundary"], receiver.callbacks())
        async for chunk in request.stream():
            receiver.seen += len(chunk)
            if receiver.seen > limit:
                raise PayloadTooLarge(_too_large(limit))
            parser.write(chunk)
            await receiver.flush()
        parser.finalize()
        await receiver.flush()
        if not receiver.ended:
            # The body stopped before its closing boundary (a proxy or client cut it short at a
            # request boundary): the last file is a fragment that could pass for a whole one.
            raise Unprocessable(
                "the multipart body ends before its closing boundary: the upload is incomplete; "
                "send it again",
                code="upload_incomplete",
                param="files",
            )
        if not receiver.received.files:
            raise Unprocessable("the upload holds no file", code="invalid_upload", param="files")
        return receiver.received
    except ClientDisconnect:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise Unprocessable(
            "the client disconnected before the upload was complete", code="upload_incomplete"
        ) from None
    except Exception as exc:
        receiver.close()
        shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, ApiError):
            raise
        raise Unprocessable(
            "the multipart body is malformed", code="invalid_upload", param="files"
        ) from exc


def _too_large(limit: int) -> str:
    return f"the upload exceeds this server's limit of {limit} bytes ({limit / 2**20:.0f} MiB)"


class _PartWriter:
    """python-multipart callbacks that write file parts; writes happen off the event loop."""

    def __init__(self, folder: Path, *, check_name: Any, max_files: int):
        self.received = Received(folder)
        self.check_name = check_name
        self.max_files = max_files
        self.seen = 0
        self.ended = False  # the closing boundary was read
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._current: BinaryIO | None = None
        self._current_name: str | None = None
        self._pending: list[tuple[BinaryIO, bytes]] = []

    def callbacks(self) -> Any:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value,
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_end(self) -> None:
        self.ended = True

    def _on_part_begin(self) -> None:
        self._disposition = b""
        self._current = None
        self._current_name = None

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name = self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"filename" not in options:
            return  # a plain form field: ignored
        name = options[b"filename"].decode("utf-8", errors="replace")
        self.check_name(name)
        if name in self.received.files:
            raise Unprocessable(
                f"{name!r} appears twice in the upload", code="invalid_upload", param="files"
            )
        if len(self.received.files) >= self.max_files:
            allowed = "one file" if self.max_files == 1 else f"at most {self.max_files} files"
            raise Unprocessable(
                f"this upload takes {allowed}", code="invalid_upload", param="files"
            )
        self._current_name = name
        self.received.files[name] = 0
        self._current = (self.received.folder / name).open("xb")

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current is not None and self._current_name is not None and end > start:
            self.received.files[self._current_name] += end - start
            self._pending.append((self._current, bytes(data[start:end])))

    def _on_part_end(self) -> None:
        if self._current is not None:
            self._pending.append((self._current, b""))
            self._current = None

    async def flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending:
            await anyio.to_thread.run_sync(_write_all, pending)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
        for handle, _ in self._pending:
            handle.close()


def _write_all(pending: list[tuple[BinaryIO, bytes]]) -> None:
    for handle, data in pending:
        if data:
            handle.write(data)
        else:
            handle.close()


# --- Inspecting what arrived ----------------------------------------------------------------


def inspect_model(folder: Path, files: dict[str, int]) -> ModelInfo:
    """Validate a model upload by the library's rules (:mod:`layerfuse.compression.inspection`),
    reading only JSON and safetensors headers.

    Raises:
        ModelError: 422 with its code, naming ``files``.
    """
    return inspect_model_dir(folder, files, param="files", name="the upload")
