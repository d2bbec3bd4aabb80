"""Helpers every test suite here shares: Result checks, polling, collecting, unique names.

What users of the library get for their own tests lives in ``qi.base.streaming.testing``
(the pytest plugin); the suites use it where it fits. These are the helpers the
library's own suites need besides, written once so that each has one signature.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

from qi.base import QiError, Result, Success

T = TypeVar("T")

# Generous bounds: on success a wait ends as soon as its condition holds, so only a
# failing test pays for them. Real brokers need seconds for a group join.
WAIT: Final = 30.0


def ok(result: Result[T, QiError]) -> T:
    """The value of a Success; fails the test with the error otherwise."""
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    return result.value


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within: float = WAIT,
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` (sync or async) until it holds; after ``within`` seconds fail the
    test saying it timed out waiting for ``what``."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:.1f}s waiting for {what}")
        await asyncio.sleep(interval)
