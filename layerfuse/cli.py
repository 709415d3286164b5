"""``layerfuse``: one console script, one module per group of subcommands.

Exit status (:mod:`layerfuse.commands.exit_codes`): 0 on success, 2 on bad arguments or input,
1 on a failure, 130 when interrupted, 141 when stdout's reader left. Subcommand modules import
their heavy dependencies (torch, the service, httpx) only when they run, so ``layerfuse --help``
and shell completion stay instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import __version__
from .commands import completion, compress, processes, remote
from .commands.exit_codes import EXIT_BROKEN_PIPE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="layerfuse",
        description="Compress fine-tuned transformer classifiers by removing whole layers.",
    )
    parser.add_argument("--version", action="version", version=f"layerfuse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    compress.register(subparsers)
    processes.register(subparsers)
    remote.register(subparsers)
    completion.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    completion.autocomplete(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader went away (`layerfuse jobs --json | head`): what it read was whole; stop
        # quietly, as Unix tools do, and keep Python from failing again flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
