"""Several event loops driven in turn by one thread, so one of them can die mid-flight.

Each member of a memory-backend group runs on its own loop: a crash closes that loop
with its tasks still pending (nothing of the member runs again, no ``finally`` clause,
no leave), as a killed process would. The loops take turns in this one thread rather
than running in threads of their own because the in-process broker is not thread-safe
("everything runs on the caller's event loop and thread"): threads would race on its
state and report the races as the library's.

One turn of a loop is the documented ``call_soon(stop)`` + ``run_forever()``: it polls
for I/O without blocking, runs what is ready, and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import warnings
from collections.abc import Callable, Coroutine
from typing import Any, Final, TypeVar

T = TypeVar("T")

_IDLE: Final = 0.0003
"""Seconds slept after each round of turns, so waiting on timers does not spin a core."""


class SteppedLoops:
    """Owns event loops and runs them round-robin from the calling thread."""

    def __init__(self) -> None:
        self._live: list[asyncio.AbstractEventLoop] = []
        self._paused: list[asyncio.AbstractEventLoop] = []
        self._dead: list[asyncio.AbstractEventLoop] = []
        self.graveyard: list[object] = []
        """What crashed loops left (their consumers and clients), dropped only in close()."""

    def new_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh loop that takes turns from now on."""
        loop = asyncio.new_event_loop()
        self._live.append(loop)
        return loop

    def step(self) -> None:
        """One turn of every live loop, then a short sleep."""
        for loop in list(self._live):
            loop.call_soon(loop.stop)
            loop.run_forever()
        time.sleep(_IDLE)

    def run(
        self,
        loop: asyncio.AbstractEventLoop,
        coroutine: Coroutine[Any, Any, T],
        within: float,
        what: str,
    ) -> T:
        """Run ``coroutine`` on ``loop`` while every loop takes turns; a hang fails the test."""
        task = loop.create_task(coroutine)
        deadline = time.monotonic() + within
        while not task.done():
            if time.monotonic() > deadline:
                task.cancel()
                self._drain(loop, task)
                raise AssertionError(f"{what} did not return within {within:.1f}s (a hang)")
            self.step()
        return task.result()

    def run_for(self, seconds: float) -> None:
        """Let every loop run for ``seconds``."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.step()

    def run_until(self, condition: Callable[[], bool], within: float) -> bool:
        """Let every loop run until ``condition()`` holds (True) or ``within`` s pass (False)."""
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                return False
            self.step()
        return True

    def pause(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop giving ``loop`` turns: everything on it freezes mid-flight (a SIGSTOP)."""
        self._live.remove(loop)
        self._paused.append(loop)

    def resume(self, loop: asyncio.AbstractEventLoop) -> None:
        """Give a paused loop turns again: it carries on as if nothing happened."""
        self._paused.remove(loop)
        self._live.append(loop)

    def crash(self, loop: asyncio.AbstractEventLoop, *remains: object) -> None:
        """Close ``loop`` as it stands: its pending tasks never run again.

        ``remains`` (the consumer and client that lived on it) are kept until close(),
        so nothing of theirs is collected, and nothing runs, while the test goes on.
        """
        self._live.remove(loop)
        loop.close()
        self._dead.append(loop)
        self.graveyard.extend(remains)

    def close(self) -> None:
        """Finish the live loops (cancelling what is left) and bury the crashed ones."""
        self._live.extend(self._paused)
        self._paused.clear()
        for loop in self._live:
            with contextlib.suppress(Exception):
                loop.run_until_complete(_cancel_everything())
            loop.close()
        self._live.clear()
        if not self._dead:
            return
        # A crashed member's coroutines are closed now, by hand: collected later they would
        # run their finally clauses against closed loops in some other test. Its consumer,
        # dropped while "connected" by design, would warn, and asyncio would log each of its
        # pending tasks as destroyed: both are the crash, not news.
        asyncio_logger = logging.getLogger("asyncio")
        level = asyncio_logger.level
        asyncio_logger.setLevel(logging.CRITICAL)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ResourceWarning)
                _close_coroutines(self._dead)
                self.graveyard.clear()
                self._dead.clear()
                gc.collect()
        finally:
            asyncio_logger.setLevel(level)

    def _drain(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> None:
        deadline = time.monotonic() + 1.0
        while not task.done() and time.monotonic() < deadline:
            self.step()


def _close_coroutines(loops: list[asyncio.AbstractEventLoop]) -> None:
    """Close the coroutines of the crashed loops' tasks.

    A function of its own so that no variable outlives it: one left holding the last task
    would keep that task past close()'s gc.collect(), and with it the task's context, which
    holds the payload of the member's last handler call (the run loop marks each call in
    it); that payload's transaction holds the member's producer, still connected, which
    would be dropped once the warnings are back on."""
    for loop in loops:
        for task in asyncio.all_tasks(loop):
            with contextlib.suppress(BaseException):
                task.get_coro().close()


async def _cancel_everything() -> None:
    """On the loop being closed: cancel its other tasks, let them end, close its generators."""
    current = asyncio.current_task()
    pending = [task for task in asyncio.all_tasks() if task is not current]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.get_running_loop().shutdown_asyncgens()
