"""A bound on what the producer has handed to aiokafka and not yet seen answered.

aiokafka's accumulator has no memory limit: while brokers are unreachable every
queued batch stays in memory until it expires. This is our local queue, like
librdkafka's ``queue.buffering.max.messages``: a send takes room for its
messages before they are laid out as record batches and gives it back when
aiokafka resolves the batch. Waiters are served first come, first served, so a
large send cannot be overtaken forever by small ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Final

MAX_QUEUED_MESSAGES: Final = 100_000
"""Messages queued in aiokafka at once (librdkafka's default for its local queue)."""


class QueueBudget:
    """Room for ``capacity`` messages; ``acquire`` waits for room, ``release`` gives it back."""

    def __init__(self, capacity: int = MAX_QUEUED_MESSAGES) -> None:
        self.capacity = capacity
        self.used = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_acquire(self, count: int) -> bool:
        """Take room for ``count`` messages if there is room now and nobody waits before us."""
        if self._waiters or self.used + count > self.capacity:
            return False
        self.used += count
        return True

    async def acquire(self, count: int, patience: float) -> bool:
        """Take room for ``count`` (at most ``capacity``) messages; False if none within
        ``patience`` seconds."""
        if self.try_acquire(count):
            return True
        if patience <= 0:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (count, waiter)
        self._waiters.append(entry)
        cancelled = True
        try:
            async with asyncio.timeout(patience):
                await waiter
            cancelled = False
        except TimeoutError:
            cancelled = False
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
            granted = waiter.done() and not waiter.cancelled()  # _wake() took the room for us
            if granted and cancelled:
                self.release(count)  # cancelled once the room was ours: it goes back
            elif not granted:
                self._wake()  # we may have been the head blocking smaller sends behind us
        return granted

    def release(self, count: int) -> None:
        """Give back room for ``count`` messages."""
        self.used -= count
        self._wake()

    def release_when_done(self, future: asyncio.Future[Any], count: int) -> None:
        """Give back room for ``count`` messages when ``future`` (a queued batch) resolves."""
        future.add_done_callback(lambda _: self.release(count))

    def _wake(self) -> None:
        waiters = self._waiters
        while waiters:
            count, waiter = waiters[0]
            if waiter.done():  # cancelled: its acquire() removes it, skip it here
                waiters.popleft()
                continue
            if self.used + count > self.capacity:
                return
            waiters.popleft()
            self.used += count
            waiter.set_result(None)
