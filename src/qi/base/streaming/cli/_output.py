"""Terminal output: data on stdout, everything else (errors, progress, summaries) on stderr.

Rich decides colour: only on a terminal, never when ``NO_COLOR`` is set. Error
lines are printed with ``soft_wrap`` so a long message stays one line even when
stderr is a file or a pipe (where rich would otherwise wrap at 80 columns).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Final

from rich.console import Console
from rich.text import Text

from qi.base import QiError

# Exit statuses shared by every command.
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
"""An operation failed (broker, network, data)."""
EXIT_USAGE: Final = 2
"""The command line was wrong: bad option, missing brokers, invalid address or topic name."""
EXIT_INTERRUPTED: Final = 130
"""Stopped by Ctrl-C (128 + SIGINT)."""
EXIT_TERMINATED: Final = 143
"""Stopped by SIGTERM (128 + SIGTERM)."""

# Codes that mean "what you typed is wrong" rather than "the operation failed".
_USAGE_CODES: Final = frozenset({"STREAMING_INVALID_CONFIG", "STREAMING_INVALID_TOPIC"})

# Without a terminal rich assumes 80 columns, which squeezes tables written to a file.
_PIPE_WIDTH: Final = 160

_verbosity = 0
_handler: logging.Handler | None = None


def _console(stderr: bool) -> Console:
    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(stderr=stderr, highlight=False, width=_PIPE_WIDTH)
    return console


stdout: Final = _console(stderr=False)
"""Console for results (tables, confirmations)."""
stderr: Final = _console(stderr=True)
"""Console for errors, progress bars and summaries."""


class CliError(Exception):
    """A failure to report as one ``error: ...`` line, ending the command with ``exit_code``."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    @classmethod
    def from_qi_error(cls, error: QiError, prefix: str = "") -> CliError:
        """The CliError for a library error: ``[CODE] message``, exit 2 for usage mistakes."""
        exit_code = EXIT_USAGE if error.code in _USAGE_CODES else EXIT_FAILURE
        return cls(f"{prefix}{one_line(str(error))}", exit_code)


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so an error always fits on one line."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def print_error(message: str) -> None:
    """Print ``error: message`` on stderr as a single line."""
    stderr.print(Text.assemble(("error: ", "bold red"), one_line(message)), soft_wrap=True)


def print_warning(message: str) -> None:
    """Print ``warning: message`` on stderr as a single line."""
    stderr.print(Text.assemble(("warning: ", "bold yellow"), one_line(message)), soft_wrap=True)


def print_note(message: str, style: str = "") -> None:
    """Print a status line on stderr (never parsed by scripts, so free to be friendly)."""
    stderr.print(Text(message, style=style), soft_wrap=True)


def print_result(message: str, style: str = "") -> None:
    """Print a confirmation line on stdout."""
    stdout.print(Text(message, style=style), soft_wrap=True)


def print_json(data: object) -> None:
    """Print ``data`` as one line of JSON on stdout, for ``--format json``."""
    print_result(json.dumps(data, ensure_ascii=False))


def verbosity() -> int:
    """How many ``-v`` the running command was given."""
    return _verbosity


def configure_logging(level: int) -> None:
    """Send library logs to stderr: none by default, INFO with -v, DEBUG (all loggers) with -vv.

    The library reports every failure as a Result, so its logs are diagnostics only;
    by default they are silenced entirely, which also keeps error output to one line.
    """
    global _verbosity, _handler
    _verbosity = level
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    if level <= 0:
        _handler = logging.NullHandler()  # no "last resort" warnings either
        root.addHandler(_handler)
        return
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root.addHandler(_handler)
    if level == 1:
        root.setLevel(logging.WARNING)  # third-party clients: warnings only
        logging.getLogger("qi").setLevel(logging.INFO)
    else:
        root.setLevel(logging.DEBUG)


def silence_stdout() -> None:
    """Point stdout at /dev/null after its reader went away, so the final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
