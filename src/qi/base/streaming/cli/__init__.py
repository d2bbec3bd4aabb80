"""The ``qi-stream`` command line: kcat-style produce, consume and topic commands over qi-base.

Run ``qi-stream --help``. The commands are a thin layer over the public API
(``qi.base.streaming`` and ``qi.base.streaming.devbroker``); they need the
``cli`` extra (click and rich). Without it, ``qi-stream`` says in one line what to
install: this package imports click only when a command runs, or when ``cli`` or
``run`` is asked for.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, NoReturn

if TYPE_CHECKING:
    from qi.base.streaming.cli._app import cli, run

__all__ = ["cli", "main", "run"]

_EXTRA_MODULES: Final = frozenset({"click", "rich"})
_INSTALL_HINT: Final = (
    "error: qi-stream needs the cli extra (click and rich): pip install 'qi-base[cli]'"
)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``qi-stream`` console script."""
    try:
        from qi.base.streaming.cli._app import main as run_command_line
    except ModuleNotFoundError as missing:
        if (missing.name or "").partition(".")[0] not in _EXTRA_MODULES:
            raise
        print(_INSTALL_HINT, file=sys.stderr)
        sys.exit(1)
    run_command_line(argv)


def __getattr__(name: str) -> Any:
    if name in {"cli", "run"}:
        from qi.base.streaming.cli import _app

        return getattr(_app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
