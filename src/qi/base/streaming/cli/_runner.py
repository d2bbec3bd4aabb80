"""Running a command's coroutine with clean Ctrl-C and SIGTERM handling.

A *graceful* command (``consume``, ``produce``) is told about the first signal
through :class:`Stop` and winds down by itself (disconnecting, committing what
it processed); a second signal cancels it. Any other command is cancelled at
the first signal, and its ``finally`` blocks still disconnect the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable

import click

from qi.base.streaming.cli._output import EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED


class Stop:
    """Set when the user asked the running command to stop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.exit_code: int | None = None
        """The status to exit with because of the signal (130 for Ctrl-C, 143 for SIGTERM)."""

    def is_set(self) -> bool:
        """True once a stop was requested."""
        return self._event.is_set()

    async def wait(self) -> None:
        """Wait until a stop is requested."""
        await self._event.wait()

    def request(self, exit_code: int) -> bool:
        """Record a stop request; True when it is the first one."""
        first = not self._event.is_set()
        if first:
            self.exit_code = exit_code
            self._event.set()
        return first


def run_async(main: Callable[[Stop], Awaitable[int]], *, graceful: bool = False) -> int:
    """Run ``main`` in a fresh event loop and return the exit status it asks for.

    A signal turns a successful status into 130 (Ctrl-C) or 143 (SIGTERM).
    """
    return asyncio.run(_entry(main, graceful))


async def _entry(main: Callable[[Stop], Awaitable[int]], graceful: bool) -> int:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    stop = Stop()

    def on_signal(exit_code: int) -> None:
        first = stop.request(exit_code)
        if (not graceful or not first) and task is not None:
            task.cancel()

    installed: list[signal.Signals] = []
    for signum, exit_code in ((signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)):
        # Not available on Windows event loops: Ctrl-C then raises KeyboardInterrupt,
        # which main() turns into status 130 as well.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, exit_code)
            installed.append(signum)
    try:
        status = await main(stop)
    except asyncio.CancelledError:
        if stop.exit_code is None:
            raise
        return stop.exit_code
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    if stop.exit_code is not None and status == EXIT_OK:
        return stop.exit_code
    return status


def exit_with(status: int) -> None:
    """End the command with ``status`` (nothing to do for 0)."""
    if status != EXIT_OK:
        raise click.exceptions.Exit(status)
