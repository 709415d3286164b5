"""Parsing JSON from outside (config files, safetensors headers, JSON lines) with bounded depth.

``json.loads`` recurses once per nesting level and raises ``RecursionError`` near the interpreter's
recursion limit, which callers cannot tell from a bug; real documents of these kinds nest a few
levels deep. :func:`parse_json` refuses anything deeper than :data:`MAX_DEPTH` with a
:class:`ValueError` whose message says so.
"""

from __future__ import annotations

import json
from typing import Any

# config.json nests 3 levels (id2label, task_specific_params...); 64 leaves a wide margin.
MAX_DEPTH = 64


class JsonTooDeep(ValueError):
    """The document nests deeper than :data:`MAX_DEPTH`."""


def parse_json(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that refuses nesting deeper than ``max_depth`` and non-finite numbers.

    Raises:
        JsonTooDeep: nested deeper than ``max_depth``.
        ValueError: not valid JSON, or ``NaN`` / ``Infinity`` (Python's json accepts them).
    """
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonTooDeep(f"nested more than {max_depth} levels deep") from None
    if depth(value, max_depth) > max_depth:
        raise JsonTooDeep(f"nested more than {max_depth} levels deep")
    return value


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
