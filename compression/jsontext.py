"""Parsing JSON from outside (config files, safetensors headers, JSON lines) with bounded depth.

``json.loads`` recurses once per nesting level and raises ``RecursionError`` near the interpreter's
recursion limit, which callers cannot tell from a bug; real documents of these kinds nest a few
levels deep. :func:`parse_json` refuses anything deeper than :data:`MAX_DEPTH` with a
:class:`ValueError` whose message says so.

JSON may also spell a lone UTF-16 surrogate (``"\\ud800"``), which ``json.loads`` returns as a
Python string that is not Unicode text: it cannot be encoded as UTF-8, so it fails far from where
it came in (storing a job, serialising an answer, writing a model card). :func:`parse_json`
refuses it and names where it stands; :func:`lone_surrogate` does the same check for callers
that parse with ``json.loads`` themselves.
"""

from __future__ import annotations

import json
import re
from typing import Any

# config.json nests 3 levels (id2label, task_specific_params...); 64 leaves a wide margin.
MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    """The document nests deeper than :data:`MAX_DEPTH`."""


class JsonNotText(ValueError):
    """A string (key or value) holds a lone surrogate; ``path`` is where, from the top."""

    def __init__(self, path: tuple[str, ...]) -> None:
        self.path = path
        where = ".".join(path) or "the document"
        super().__init__(
            f"{where}: a \\ud800-\\udfff escape without its pair is not text; send valid "
            "Unicode (UTF-8, or \\u escapes of whole characters)"
        )


# Only an escape can spell a surrogate (UTF-8 cannot encode one), so the walk over every string
# runs only for documents whose raw text holds one: nearly never, and valid pairs (emoji) cost a
# walk that finds nothing.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_json(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` and non-finite numbers.

    Raises:
        JsonTooDeep: nested deeper than ``max_depth``.
        JsonNotText: a string holds a lone surrogate.
        ValueError: not valid JSON, or ``NaN`` / ``Infinity`` (Python's json accepts them).
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonTooDeep(f"nested more than {max_depth} levels deep") from None
    if depth(value, max_depth) > max_depth:
        raise JsonTooDeep(f"nested more than {max_depth} levels deep")
    path = lone_surrogate(value, text)
    if path is not None:
        raise JsonNotText(path)
    return value


def lone_surrogate(value: Any, text: str | bytes) -> tuple[str, ...] | None:
    """Where the first string of ``value`` (parsed from ``text``) holding a lone surrogate is.

    ``None`` when there is none; ``()`` when ``value`` itself is such a string.
    """
    if isinstance(text, bytes):
        escaped = _SURROGATE_ESCAPE_BYTES.search(text) is not None
    else:
        escaped = _SURROGATE_ESCAPE.search(text) is not None
    found = find_string(value, _SURROGATE) if escaped else None
    return found[0] if found else None


def find_string(value: Any, pattern: re.Pattern[str]) -> tuple[tuple[str, ...], bool] | None:
    """The first string of ``value`` (a key or a value, at any depth) that ``pattern`` finds
    in: where it stands (the keys and indices down to it; a key's own container) and whether it
    is a key. ``None`` when there is none. Iterative, as :func:`depth` is."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(value, ())]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return where, False
        elif isinstance(item, dict):
            for key, child in item.items():
                if pattern.search(key):
                    return where, True
                stack.append((child, (*where, key)))
        elif isinstance(item, list):
            stack.extend((child, (*where, str(i))) for i, child in enumerate(item))
    return None


def depth(value: Any, limit: int) -> int:
    """How deep ``value`` nests (a scalar is 0), counted up to ``limit + 1``; iterative."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level > limit:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level) for child in children if isinstance(child, dict | list))
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
