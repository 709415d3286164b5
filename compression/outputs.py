"""The output folder a run or a download writes to, checked before any work (torch-free: the
service commands of the CLI use it too)."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidInputError


def check_out_dir(out_dir: Path) -> None:
    """Refuse, before any work, an output folder that cannot be made or written: a file, below
    one, or in a folder this process may not write to.

    Raises:
        InvalidInputError: ``output_invalid``.
    """
    for folder in (out_dir, *out_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise InvalidInputError(
                    f"the output folder {str(out_dir)!r} cannot be made: {str(folder)!r} is a file",
                    code="output_invalid",
                    param="out",
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise InvalidInputError(
                    f"the output folder {str(out_dir)!r} cannot be written: {str(folder)!r} is "
                    "not writable",
                    code="output_invalid",
                    param="out",
                )
            return
