"""The dispatching half of the consumer run loop: handler calls, one at a time.

The dispatcher takes partitions round-robin and calls the user's handler for
up to one batch of a partition's buffered messages per turn, so no partition
starves the others. A partition whose handler failed waits ``retry_backoff``
and gets the same messages again, while the other partitions go on. Offsets
are recorded as processed only after the handler returned. A partition whose
revocation has begun gets no new handler call; the revocation waits for the
running one (:meth:`Dispatcher.wait_for_handler`).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

from qi.base import Failure, QiError
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import ConsumerRunConfig
from qi.base.streaming._fast_values import EACH_MESSAGE_SETTERS
from qi.base.streaming._types import ConsumedMessage, EachBatchPayload, EachMessagePayload
from qi.base.streaming.backend import PartitionSource, TopicPartition


class ErrorFactory(Protocol):
    """Builds the endpoint's QiError for a code, a message and an operation."""

    def __call__(
        self, code: ErrorCode, message: str, operation: str, **context: Any
    ) -> QiError: ...


Report = Callable[[QiError], Awaitable[None]]
"""Tells on_error; never raises."""


@dataclass(slots=True, eq=False)
class PartitionState:
    """What the run loop knows of one assigned partition."""

    key: TopicPartition
    buffer: deque[ConsumedMessage] = field(default_factory=deque)
    retry_at: float = 0.0
    """Monotonic time before which a failed message is not retried."""
    attempts: int = 0
    """Consecutive failed deliveries of the head of the buffer."""
    processed: int | None = None
    """Next offset to commit: one past the last handled message (see ``progress``)."""
    last_handled: ConsumedMessage | None = None
    """The last message each_message handled, not yet in ``processed``: a view's offset is
    a native call, so it is read once, when the progress is asked for."""
    committed: int | None = None
    generation: int = 0
    paused: bool = False
    next_offset: int | None = None
    """First offset the source has not handed over since the assignment or the last seek,
    None until it is known (the source knows where the partition started)."""
    revoking: bool = False
    """A revocation began: no handler call for it may start any more."""
    fetched_to: int | None = None
    """One past the last record the source moved over since the assignment or the last
    seek, visible or not (transaction markers, aborted records); None until reported."""

    def progress(self) -> int | None:
        """The offset to commit: past the invisible records the source moved over too, once
        everything handed over was handled (a handler's message stays buffered until it
        returned), else one past the last handled message."""
        handled = self.last_handled
        if handled is not None:
            self.processed = handled.offset + 1
            self.last_handled = None
        fetched_to = self.fetched_to
        if fetched_to is not None and not self.buffer:
            processed = self.processed
            if processed is None or fetched_to > processed:
                return fetched_to
        return self.processed


def _being_cancelled() -> bool:
    """Whether the running task itself is being cancelled (disconnect's or a revocation's
    bound), rather than a handler raising a CancelledError of its own (an awaited future
    that another task cancelled): only the former ends the loop; the latter is a failure."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


class Dispatcher:
    """Calls the handler over the partitions the engine shares with it."""

    def __init__(
        self,
        partitions: dict[TopicPartition, PartitionState],
        run_config: ConsumerRunConfig,
        source: PartitionSource,
        *,
        batch_size: int,
        buffer_limit: int,
        error: ErrorFactory,
        report: Report,
    ) -> None:
        self._partitions = partitions
        self._run = run_config
        self._source = source
        self._batch_size = batch_size
        self._buffer_limit = buffer_limit
        self._error = error
        self._report = report
        self._rotation: deque[TopicPartition] = deque()
        self.work = asyncio.Event()
        """Set when there may be something to do: messages buffered, a stop."""
        self.stopping = False
        """Set by the engine: start no more handler calls."""
        self._busy: TopicPartition | None = None
        self._task: asyncio.Task[None] | None = None
        """The task the loop runs in: the one a handler call's own code runs in."""
        # Set only while a revocation waits for the running handler, so the per-message
        # path pays for no event when nobody is waiting.
        self._handler_returned: asyncio.Future[None] | None = None

    def start(self) -> asyncio.Task[None]:
        """Run the loop in a task of its own (see ``called_by_handler``)."""
        self._task = asyncio.create_task(self.run(), name="qi-consumer-dispatch")
        return self._task

    def called_by_handler(self, caller: asyncio.Task[Any] | None) -> bool:
        """Whether ``caller`` (the task a disconnect() was called in) is the running handler
        call itself: the handler's code runs in this loop's task, and awaited its
        disconnect(), which therefore cannot wait for it. Any other task, one the handler
        started included, may be fire-and-forget: the handler may go on meanwhile, so such
        a disconnect() waits for it, as a disconnect() from anywhere else does (else the
        partition's next owner would handle its message while it still does)."""
        return self._busy is not None and caller is not None and caller is self._task

    def add(self, key: TopicPartition) -> None:
        """A partition newly in ``partitions`` takes its turn from now on."""
        self._rotation.append(key)
        self.work.set()

    def forget(self, keys: Collection[TopicPartition]) -> None:
        """Partitions gone from ``partitions`` take no more turns."""
        self._rotation = deque(key for key in self._rotation if key not in keys)

    async def wait_for_handler(
        self, keys: Collection[TopicPartition], patience: float
    ) -> TopicPartition | None:
        """If the running handler call is on one of ``keys``, wait for it (``patience`` s).

        Returns the partition of a call still running then, else None.
        """
        if self._busy not in keys:
            return None
        if self._handler_returned is None:
            self._handler_returned = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(patience):
                await asyncio.shield(self._handler_returned)
        except TimeoutError:
            return self._busy
        return None

    async def before_revocation(
        self, keys: Collection[TopicPartition], patience: float
    ) -> TopicPartition | None:
        """Settle what the handler did on ``keys`` before they go; see wait_for_handler."""
        return await self.wait_for_handler(keys, patience)

    def handler_awaits_stop(self) -> None:
        """The running handler awaits the stop: a revocation already waiting for it goes on
        at once (what was handled before it is settled; its own message is not)."""
        self._release_revocation()

    async def after_stop(self) -> None:
        """run() ended or was cancelled: settle what is left (nothing, at least once)."""

    async def run(self) -> None:
        """Call the handler until ``stopping``."""
        since_yield = 0
        while not self.stopping:
            part, wait = self._next_ready()
            if part is None:
                self.work.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self.work.wait()
                except TimeoutError:
                    pass
                continue
            buffered = len(part.buffer)
            if self._run.each_batch is not None:
                await self._deliver_batch(part)
            else:
                await self._deliver_messages(part)
            if part.paused and len(part.buffer) < self._buffer_limit // 2:
                part.paused = False
                self._source.resume([part.key])
            # A handler that never awaits would otherwise hold the event loop for every
            # buffered message of every partition: the fetches, the service's other tasks
            # and (on aiokafka) the group heartbeat get a turn at least once per batch of
            # messages handled (a turn counts one at least: a failing one too), not after
            # every turn, which would cost more than the dispatch itself when partitions
            # hold a message or two each.
            since_yield += max(1, buffered - len(part.buffer))
            if since_yield >= self._batch_size:
                since_yield = 0
                await asyncio.sleep(0)

    def _next_ready(self) -> tuple[PartitionState | None, float | None]:
        """The next partition with messages and no pending backoff, round-robin."""
        now = time.monotonic()
        soonest: float | None = None
        for _ in range(len(self._rotation)):
            key = self._rotation[0]
            self._rotation.rotate(-1)
            part = self._partitions[key]
            if not part.buffer or part.revoking:
                continue
            if part.retry_at <= now:
                return part, None
            delay = part.retry_at - now
            soonest = delay if soonest is None else min(soonest, delay)
        return None, soonest

    async def _deliver_messages(self, part: PartitionState) -> None:
        handler = self._run.each_message
        assert handler is not None
        key = part.key
        topic, partition = key
        generation = part.generation
        buffer = part.buffer
        new = object.__new__
        set_topic, set_partition, set_message, _ = EACH_MESSAGE_SETTERS
        # Up to one batch per turn, so other partitions are not starved. This runs once per
        # message, so _call() and the payload's constructor are written out: a coroutine and
        # a call of our own per message cost more than the rest of the bookkeeping.
        failure: object = None
        succeeded = False
        try:
            for _ in range(self._batch_size):
                if not buffer or self.stopping or part.generation != generation or part.revoking:
                    return
                message = buffer[0]
                payload = new(EachMessagePayload)
                set_topic(payload, topic)
                set_partition(payload, partition)
                set_message(payload, message)
                self._busy = key
                try:
                    outcome = await handler(payload)
                except asyncio.CancelledError as exc:
                    if _being_cancelled():
                        raise
                    failure = exc
                except Exception as exc:
                    failure = exc
                else:
                    if outcome is not None and isinstance(outcome, Failure):
                        failure = outcome.error
                finally:
                    self._busy = None
                    if self._handler_returned is not None:
                        self._release_revocation()
                if part.generation != generation or failure is not None:
                    break
                buffer.popleft()
                part.last_handled = message
                succeeded = True
        finally:
            # Once per turn, before a failure of the turn is counted: the head's failed
            # attempts end with its success.
            if succeeded:
                part.attempts = 0
        if failure is not None and part.generation == generation:
            await self._handler_failed(part, failure, message)

    async def _deliver_batch(self, part: PartitionState) -> None:
        handler = self._run.each_batch
        assert handler is not None
        topic, partition = part.key
        generation = part.generation
        messages = tuple(itertools.islice(part.buffer, self._batch_size))
        failure = await self._call(handler, EachBatchPayload(topic, partition, messages), part)
        if part.generation != generation:
            return
        if failure is not None:
            await self._handler_failed(part, failure, messages[0], batch_size=len(messages))
            return
        buffer = part.buffer
        if len(messages) == len(buffer):
            buffer.clear()
        else:
            for _ in messages:
                buffer.popleft()
        part.processed = messages[-1].offset + 1
        part.attempts = 0

    async def _call(
        self, handler: Callable[[Any], Any], payload: object, part: PartitionState
    ) -> object:
        """Call the handler; return what failed (an exception or a QiError), or None."""
        self._busy = part.key
        try:
            outcome = await handler(payload)
        except asyncio.CancelledError as exc:
            if _being_cancelled():
                raise
            return exc
        except Exception as exc:
            return exc
        finally:
            self._busy = None
            if self._handler_returned is not None:
                self._release_revocation()
        if isinstance(outcome, Failure):
            return outcome.error
        return None

    def _release_revocation(self) -> None:
        """The handler returned: a revocation waiting for it may go on."""
        waiter, self._handler_returned = self._handler_returned, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _handler_failed(
        self, part: PartitionState, cause: object, first: ConsumedMessage, **context: Any
    ) -> None:
        part.attempts += 1
        part.retry_at = time.monotonic() + self._run.retry_backoff
        description = (
            f"{type(cause).__name__}: {cause}" if isinstance(cause, BaseException) else str(cause)
        )
        await self._report(
            self._error(
                ErrorCode.HANDLER_FAILED,
                f"handler failed on {first.topic}[{first.partition}]@{first.offset} "
                f"(attempt {part.attempts}): {description}",
                "run",
                cause=cause,
                topic=first.topic,
                partition=first.partition,
                offset=first.offset,
                attempt=part.attempts,
                **context,
            )
        )
