"""The exit status every ``layerfuse`` command returns (README, docs/service.md)."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1  # a failed or cancelled job, an unreachable server, an error in the run
EXIT_BAD_INPUT = 2  # bad arguments or input; the message names the field
EXIT_INTERRUPTED = 130  # Ctrl-C (a job on a server keeps running)
EXIT_BROKEN_PIPE = 141  # stdout's reader left (`| head`), as 128 + SIGPIPE for Unix tools
