"""``layerfuse serve | worker | up | submit | status | cancel`` (owned by the service work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # noqa: ARG001
    """Adds the service subcommands; filled in with the job service."""
