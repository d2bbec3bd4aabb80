"""Delivery reports from librdkafka's thread world back to the event loop, in batches.

One *poll thread* per producer calls ``producer.poll()``, which runs the
delivery callbacks. A callback only records its message's outcome in the
:class:`Sends` slot of the ``send``/``send_batch`` call it belongs to; when a
slot's last report arrives, the slot (not the message) is queued for the loop.
After each ``poll()`` the thread wakes the loop once, and only if no wake-up is
already pending, so a burst of ten thousand reports costs one thread hop.

    loop: produce() x N ──> librdkafka ──> poll thread: callback x N ──┐
    loop: slot.future resolved  <── drain() <── one call_soon_threadsafe ┘

Threads: a slot's ``delivered`` counter is written only by the poll thread;
``expected`` only by the loop, once everything was handed to librdkafka. Both
sides check for completion after their own write, so a slot is completed at
least once, and completing is idempotent on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, cast

from confluent_kafka import KafkaError, Message, Producer

from qi.base import QiError
from qi.base.streaming._types import ProduceResult

# poll() timeout: only bounds how quickly the thread notices a stop request, since
# poll() returns as soon as there is something to serve.
_POLL_SECONDS: Final = 0.1
# flush() step while closing, so reports reach the loop while the flush goes on.
_FLUSH_STEP: Final = 0.1

Outcome = ProduceResult | KafkaError | QiError | None
"""A message's outcome: acknowledged, failed by librdkafka, failed before it, or pending."""


class Sends:
    """The outcomes of one send or send_batch call, filled in by delivery callbacks."""

    __slots__ = ("delivered", "expected", "future", "outcomes", "topic")

    def __init__(self, topic: str, size: int, future: asyncio.Future[None]) -> None:
        self.topic = topic
        self.outcomes: list[Outcome] = [None] * size
        self.delivered = 0
        self.expected: int | None = None
        self.future = future


def _timestamp(message: Message) -> datetime | None:
    kind, millis = message.timestamp()
    if not kind:  # TIMESTAMP_NOT_AVAILABLE
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


class DeliveryHub:
    """Owns a producer's poll thread and brings completed sends back to the loop."""

    def __init__(
        self,
        producer: Producer,
        loop: asyncio.AbstractEventLoop,
        logger: logging.Logger,
        name: str,
    ) -> None:
        self._producer = producer
        self._loop = loop
        self._logger = logger
        self._completed: deque[Sends] = deque()
        self._wake_pending = False
        self._stop_at: float | None = None
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._space_wanted = False
        self.space = asyncio.Event()
        """Set when librdkafka served reports after a producer found its queue full."""
        self.pending: set[Sends] = set()
        """Slots whose outcomes are not all known yet (loop thread only)."""
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    # -- loop side -----------------------------------------------------------------------------

    def callback(self, sends: Sends, index: int) -> Callable[[KafkaError | None, Message], None]:
        """The delivery callback for message ``index`` of ``sends``."""
        return functools.partial(self._delivered, sends, index)

    @property
    def closing(self) -> bool:
        """Whether stop() was called: nothing new should be produced."""
        return self._stop_at is not None

    def handed_over(self, sends: Sends, produced: int) -> None:
        """All of ``sends`` was given to librdkafka, ``produced`` messages of it accepted.

        After stop() no report will come any more, so ``sends`` completes at once
        with what it has.
        """
        sends.expected = produced
        if sends.delivered == produced or self._stopped.done():
            self._complete(sends)
        else:
            self.pending.add(sends)

    def want_space(self) -> None:
        """Ask to have ``space`` set when librdkafka next serves delivery reports."""
        self.space.clear()
        self._space_wanted = True

    async def stop(self, flush_seconds: float) -> None:
        """Flush for up to ``flush_seconds``, purge the rest (reported failed), end the thread."""
        if self._thread.ident is None:
            return
        self._stop_at = time.monotonic() + flush_seconds
        await self._stopped
        self._thread.join(timeout=1.0)

    def _drain(self) -> None:
        self._wake_pending = False
        completed = self._completed
        while completed:
            self._complete(completed.popleft())

    def _complete(self, sends: Sends) -> None:
        self.pending.discard(sends)
        if not sends.future.done():
            sends.future.set_result(None)

    # -- poll thread ---------------------------------------------------------------------------

    def _delivered(
        self, sends: Sends, index: int, error: KafkaError | None, message: Message
    ) -> None:
        try:
            if error is None:
                offset = message.offset()
                sends.outcomes[index] = ProduceResult(
                    sends.topic,
                    cast(int, message.partition()),
                    offset if offset is not None and offset >= 0 else -1,
                    _timestamp(message),
                )
            else:
                sends.outcomes[index] = error
        except Exception as exc:  # never let a report be lost to an exception in poll()
            sends.outcomes[index] = KafkaError(KafkaError._FAIL, f"bad delivery report: {exc}")
        sends.delivered += 1
        if sends.delivered == sends.expected:
            self._completed.append(sends)

    def _hand_back(self, served: int) -> None:
        try:
            if self._completed and not self._wake_pending:
                self._wake_pending = True
                self._loop.call_soon_threadsafe(self._drain)
            if served and self._space_wanted:
                self._space_wanted = False
                self._loop.call_soon_threadsafe(self.space.set)
        except RuntimeError:  # the loop is closed; nobody waits for these any more
            pass

    def _main(self) -> None:
        producer = self._producer
        try:
            while self._stop_at is None:
                self._hand_back(producer.poll(_POLL_SECONDS))
            self._finish(producer)
        except Exception:
            self._logger.exception("confluent producer poll thread failed")
        finally:
            self._signal_stopped()

    def _finish(self, producer: Producer) -> None:
        assert self._stop_at is not None
        while (remaining := self._stop_at - time.monotonic()) > 0:
            left = producer.flush(min(_FLUSH_STEP, remaining))
            self._hand_back(1)
            if not left:
                return
        # Out of time: fail what is left. librdkafka reports each purged message
        # (_PURGE_QUEUE: never sent; _PURGE_INFLIGHT: sent, fate unknown).
        producer.purge(in_queue=True, in_flight=True)
        producer.poll(0)
        self._hand_back(1)

    def _signal_stopped(self) -> None:
        try:
            self._loop.call_soon_threadsafe(self._stopped_on_loop)
        except RuntimeError:
            pass

    def _stopped_on_loop(self) -> None:
        # No report comes any more: what is still pending completes with what it has
        # (its missing outcomes read as "delivery unknown").
        self._drain()
        for sends in list(self.pending):
            self._complete(sends)
        if not self._stopped.done():
            self._stopped.set_result(None)
