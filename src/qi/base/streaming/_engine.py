"""The consumer run loop, shared by every backend: at-least-once, in order, bounded.

Two tasks cooperate. The *fetcher* pulls messages from the backend's
:class:`PartitionSource` into one buffer per partition, pausing a partition
whose buffer is full (so a slow handler bounds memory). The *dispatcher*
calls the user's handler one call at a time, taking partitions round-robin:
a partition whose handler failed waits ``retry_backoff`` and gets the same
messages again, while the other partitions go on. Offsets are recorded as
processed only after the handler returned, and only processed offsets are
ever committed.

A partition's ``generation`` changes when it is sought or revoked, so a
handler call that started before the change records nothing, and messages of
a fetch that was under way when the partition was sought are dropped (the
source already moved to the new position). A partition assigned during a
fetch is new state: what the fetch returns for it is current and is kept.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._build import EACH_MESSAGE_SETTERS
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import ConsumerConfig, ConsumerRunConfig
from qi.base.streaming._source import PartitionSource, SeekTarget, TopicPartition
from qi.base.streaming._types import ConsumedMessage, EachBatchPayload, EachMessagePayload

# How long one fetch may block: short, so stop() and pauses take effect promptly.
_FETCH_WAIT: Final = 0.25
# Most messages taken from the source in one fetch.
_FETCH_MAX: Final = 10_000
# Pause after a fetch error before fetching again, so a dead broker is not hammered.
_FETCH_ERROR_BACKOFF: Final = 0.5


class _ErrorFactory(Protocol):
    def __call__(
        self, code: ErrorCode, message: str, operation: str, **context: Any
    ) -> QiError: ...


_Translate = Callable[[BaseException, str, ErrorCode], QiError]


@dataclass(slots=True, eq=False)
class _Partition:
    """What the engine knows of one assigned partition."""

    key: TopicPartition
    buffer: deque[ConsumedMessage] = field(default_factory=deque)
    retry_at: float = 0.0
    """Monotonic time before which a failed message is not retried."""
    attempts: int = 0
    """Consecutive failed deliveries of the head of the buffer."""
    processed: int | None = None
    """Next offset to commit: one past the last handled message."""
    committed: int | None = None
    generation: int = 0
    paused: bool = False


class ConsumerEngine:
    """Runs a consumer's handler over a :class:`PartitionSource` with at-least-once semantics."""

    def __init__(
        self,
        source: PartitionSource,
        run_config: ConsumerRunConfig,
        consumer_config: ConsumerConfig,
        *,
        request_timeout: float,
        error: _ErrorFactory,
        translate: _Translate,
        logger: logging.Logger,
    ) -> None:
        self._source = source
        self._run = run_config
        self._config = consumer_config
        self._request_timeout = request_timeout
        self._error = error
        self._translate = translate
        self._logger = logger
        self._batch_size = consumer_config.max_batch_size
        # Per-partition bound on buffered messages: enough for two full batches, so the
        # dispatcher rarely waits on the fetcher, and never unbounded behind a slow handler.
        self.buffer_limit = max(2 * consumer_config.max_batch_size, 1_000)
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._rotation: deque[TopicPartition] = deque()
        self._work = asyncio.Event()
        self._busy: TopicPartition | None = None
        # Set only while a revocation waits for the running handler, so the per-message
        # path pays for no event when nobody is waiting.
        self._handler_returned: asyncio.Future[None] | None = None
        self._assigned = asyncio.Event()
        # Set by the fetcher when the broker refuses to let this member in at all.
        self._refused: asyncio.Future[QiError] | None = None
        self._stopping = False
        self._commit_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, startup_timeout: float) -> Result[None, QiError]:
        """Join the group and start the loops; wait for the first assignment.

        A join the broker refuses for good (a session timeout outside its bounds, say)
        fails at once with the broker's answer rather than waiting out the bound.
        """
        refused = self._refused = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(startup_timeout):
                await self._source.start(self)
                self._tasks = [
                    asyncio.create_task(self._fetch_loop(), name="qi-consumer-fetch"),
                    asyncio.create_task(self._dispatch_loop(), name="qi-consumer-dispatch"),
                ]
                if self._config.auto_commit:
                    self._tasks.append(
                        asyncio.create_task(self._auto_commit_loop(), name="qi-consumer-commit")
                    )
                assigned = asyncio.ensure_future(self._assigned.wait())
                try:
                    await asyncio.wait({assigned, refused}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    assigned.cancel()
                if not self._assigned.is_set():
                    return Failure(refused.result())
        except TimeoutError:
            return Failure(
                self._error(
                    ErrorCode.TIMEOUT,
                    f"no partitions were assigned within {startup_timeout:.1f}s",
                    "run",
                    group_id=self._config.group_id,
                )
            )
        return Success(None)

    async def stop(self) -> None:
        """Stop the loops, let a running handler finish (within request_timeout), commit, leave."""
        self._stopping = True
        self._work.set()
        if self._tasks:
            fetcher, dispatcher, *others = self._tasks
            # A pending fetch holds nothing we owe anyone: what it would return is uncommitted.
            fetcher.cancel()
            for task in others:
                task.cancel()
            done, _ = await asyncio.wait({dispatcher}, timeout=self._request_timeout)
            if not done:
                self._logger.warning(
                    "a handler still ran after %.1fs: cancelled, its message stays uncommitted",
                    self._request_timeout,
                )
                dispatcher.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        committed = await self.commit("disconnect")
        if isinstance(committed, Failure):
            await self._report(committed.error)
        await self._source.stop()

    # -- operations ----------------------------------------------------------------------------

    async def commit(self, operation: str) -> Result[None, QiError]:
        """Commit the processed offsets not committed yet."""
        async with self._commit_lock:
            pending = {
                key: part.processed
                for key, part in self._partitions.items()
                if part.processed is not None and part.processed != part.committed
            }
            if not pending:
                return Success(None)
            try:
                async with asyncio.timeout(self._request_timeout):
                    await self._source.commit(pending)
            except TimeoutError:
                return Failure(
                    self._error(
                        ErrorCode.TIMEOUT,
                        f"commit did not finish within {self._request_timeout:.1f}s",
                        operation,
                    )
                )
            except Exception as exc:
                return Failure(self._translate(exc, operation, ErrorCode.COMMIT_FAILED))
            for key, offset in pending.items():
                part = self._partitions.get(key)
                if part is not None:
                    part.committed = offset
            return Success(None)

    async def seek(self, key: TopicPartition, target: SeekTarget) -> Result[None, QiError]:
        """Reposition an assigned partition; what was buffered for it is dropped."""
        part = self._partitions.get(key)
        if part is None:
            return Failure(
                self._error(
                    ErrorCode.INVALID_ARGUMENT,
                    f"partition {key[1]} of {key[0]!r} is not assigned to this consumer",
                    "seek",
                    topic=key[0],
                    partition=key[1],
                    assigned=tuple(sorted(self._partitions)),
                )
            )
        part.generation += 1
        part.buffer.clear()
        part.retry_at = 0.0
        part.attempts = 0
        await self._source.seek(key, target)
        if part.paused:
            part.paused = False
            self._source.resume([key])
        return Success(None)

    def assignment(self) -> frozenset[TopicPartition]:
        """Partitions currently assigned to this consumer."""
        return frozenset(self._partitions)

    # -- RebalanceListener ---------------------------------------------------------------------

    async def partitions_assigned(self, partitions: Collection[TopicPartition]) -> None:
        for key in partitions:
            if key not in self._partitions:
                self._partitions[key] = _Partition(key)
                self._rotation.append(key)
        self._assigned.set()
        self._work.set()

    async def partitions_revoked(
        self, partitions: Collection[TopicPartition]
    ) -> Mapping[TopicPartition, int]:
        revoked = set(partitions)
        if self._busy in revoked:
            if self._handler_returned is None:
                self._handler_returned = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(self._request_timeout):
                    await asyncio.shield(self._handler_returned)
            except TimeoutError:
                self._logger.warning(
                    "handler on %s still running at revocation; its message stays uncommitted",
                    self._busy,
                )
        to_commit: dict[TopicPartition, int] = {}
        for key in revoked:
            part = self._partitions.pop(key, None)
            if part is None:
                continue
            part.generation += 1
            if part.processed is not None and part.processed != part.committed:
                to_commit[key] = part.processed
        self._rotation = deque(key for key in self._rotation if key not in revoked)
        return to_commit

    def report_commit_failure(self, exc: BaseException) -> None:
        """Backends call this when committing revoked partitions failed."""
        error = self._translate(exc, "rebalance_commit", ErrorCode.COMMIT_FAILED)
        task = asyncio.get_running_loop().create_task(self._report(error))
        self._tasks.append(task)

    # -- loops -------------------------------------------------------------------------------

    async def _fetch_loop(self) -> None:
        while not self._stopping:
            before = {key: (part, part.generation) for key, part in self._partitions.items()}
            try:
                fetched = await self._source.fetch(_FETCH_MAX, _FETCH_WAIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = self._translate(exc, "fetch", ErrorCode.CONNECTION_FAILED)
                refused = self._refused
                if refused is not None and not self._assigned.is_set() and not refused.done():
                    if error.context.get("retriable") is False:  # it will not let us in
                        refused.set_result(self._translate(exc, "run", ErrorCode.CONNECTION_FAILED))
                        return
                await self._report(error)
                await asyncio.sleep(_FETCH_ERROR_BACKOFF)
                continue
            if not fetched:
                continue
            full: list[TopicPartition] = []
            for key, messages in fetched.items():
                part = self._partitions.get(key)
                if part is None or not messages:
                    continue  # revoked while the fetch ran: the next owner reads them
                seen = before.get(key)
                if seen is not None and seen[0] is part and seen[1] != part.generation:
                    continue  # sought while the fetch ran: these are from the old position
                part.buffer.extend(messages)
                if not part.paused and len(part.buffer) >= self.buffer_limit:
                    part.paused = True
                    full.append(key)
            if full:
                self._source.pause(full)
            self._work.set()

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            part, wait = self._next_ready()
            if part is None:
                self._work.clear()
                try:
                    async with asyncio.timeout(wait):
                        await self._work.wait()
                except TimeoutError:
                    pass
                continue
            if self._run.each_batch is not None:
                await self._deliver_batch(part)
            else:
                await self._deliver_messages(part)
            if part.paused and len(part.buffer) < self.buffer_limit // 2:
                part.paused = False
                self._source.resume([part.key])

    def _next_ready(self) -> tuple[_Partition | None, float | None]:
        """The next partition with messages and no pending backoff, round-robin."""
        now = time.monotonic()
        soonest: float | None = None
        for _ in range(len(self._rotation)):
            key = self._rotation[0]
            self._rotation.rotate(-1)
            part = self._partitions[key]
            if not part.buffer:
                continue
            if part.retry_at <= now:
                return part, None
            delay = part.retry_at - now
            soonest = delay if soonest is None else min(soonest, delay)
        return None, soonest

    async def _deliver_messages(self, part: _Partition) -> None:
        handler = self._run.each_message
        assert handler is not None
        key = part.key
        topic, partition = key
        generation = part.generation
        buffer = part.buffer
        new, setters = object.__new__, EACH_MESSAGE_SETTERS
        # Up to one batch per turn, so other partitions are not starved. This runs once per
        # message, so _call() and the payload's constructor are written out: a coroutine and
        # a call of our own per message cost more than the rest of the bookkeeping.
        for _ in range(self._batch_size):
            if not buffer or self._stopping or part.generation != generation:
                return
            message = buffer[0]
            if setters is None:
                payload = EachMessagePayload(topic, partition, message)
            else:
                set_topic, set_partition, set_message = setters
                payload = new(EachMessagePayload)
                set_topic(payload, topic)
                set_partition(payload, partition)
                set_message(payload, message)
            self._busy = key
            failure: object = None
            try:
                outcome = await handler(payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failure = exc
            else:
                if outcome is not None and isinstance(outcome, Failure):
                    failure = outcome.error
            finally:
                self._busy = None
                if self._handler_returned is not None:
                    self._release_revocation()
            if part.generation != generation:
                return
            if failure is not None:
                await self._handler_failed(part, failure, message)
                return
            buffer.popleft()
            part.processed = message.offset + 1
            part.attempts = 0

    async def _deliver_batch(self, part: _Partition) -> None:
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
        self, handler: Callable[[Any], Any], payload: object, part: _Partition
    ) -> object:
        """Call the handler; return what failed (an exception or a QiError), or None."""
        self._busy = part.key
        try:
            outcome = await handler(payload)
        except asyncio.CancelledError:
            raise
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
        self, part: _Partition, cause: object, first: ConsumedMessage, **context: Any
    ) -> None:
        part.attempts += 1
        part.retry_at = time.monotonic() + self._run.retry_backoff
        description = (
            f"{type(cause).__name__}: {cause}" if isinstance(cause, Exception) else str(cause)
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

    async def _auto_commit_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._config.auto_commit_interval)
            committed = await self.commit("auto_commit")
            if isinstance(committed, Failure):
                await self._report(committed.error)

    async def _report(self, error: QiError) -> None:
        """Tell on_error (sync or async); a failing on_error is logged, never propagated."""
        self._logger.debug("consumer error: %s", error)
        on_error = self._run.on_error
        if on_error is None:
            if error.code != ErrorCode.HANDLER_FAILED:
                self._logger.warning("%s", error)
            return
        try:
            outcome = on_error(error)
            if inspect.isawaitable(outcome):
                await outcome
        except asyncio.CancelledError:
            raise
        except Exception:
            self._logger.exception("on_error raised while reporting %s", error.code)
