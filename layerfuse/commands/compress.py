"""``layerfuse compress``: the whole method in-process, no service needed."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: ARG001
    """Adds ``compress``; filled in with the library."""
