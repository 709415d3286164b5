"""``layerfuse``: one console script, one module per group of subcommands.

Exit status (api.md): 0 on success, 2 on bad arguments or input, 1 on a failed job.
Subcommand modules import their heavy dependencies (torch, the service) only when they run, so
``layerfuse --help`` stays instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import compress, service

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerfuse",
        description="Compress fine-tuned transformer classifiers by removing whole layers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compress.register(subparsers)
    service.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
