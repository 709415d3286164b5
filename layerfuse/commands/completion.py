"""Shell completion, by argcomplete: ``eval "$(layerfuse completion bash)"`` (or ``zsh``,
``fish``) completes subcommands, options, their choices and file names.

The shell asks ``layerfuse`` itself for candidates (with ``_ARGCOMPLETE`` in the environment);
:func:`autocomplete` answers from the parser and exits before any command runs, so completion
never imports torch or the service.
"""

from __future__ import annotations

import argparse
import os

from .exit_codes import EXIT_OK

SHELLS = ("bash", "zsh", "fish")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print the shell code that enables tab completion",
        description='Enable completion in the current shell with: eval "$(layerfuse completion '
        'bash)" (zsh: the same with zsh; fish: layerfuse completion fish | source). Add the '
        "line to ~/.bashrc or ~/.zshrc to keep it.",
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(run=run)


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this process is one."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)


def run(args: argparse.Namespace) -> int:
    import argcomplete

    print(argcomplete.shellcode(["layerfuse"], shell=args.shell))
    return EXIT_OK
