"""The aiokafka producer: one delivery future per message, each message its own result.

aiokafka's ``send()`` queues a message into a per-partition batch and returns a
future that resolves to that message's own offset (batch base offset plus its
index), so a batch of ours is simply its messages queued in input order: the
order within a partition is the queue order, and every message keeps its own
outcome. Every wait is bounded by ``request_timeout`` because aiokafka's own
waits are not (an idempotent batch never expires while brokers are down).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    UnsupportedVersionError,
    for_code,
)
from aiokafka.protocol.transaction import InitProducerIdRequest

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode
from qi.base.streaming._config import ProducerConfig, StreamingConfig
from qi.base.streaming._endpoint import OperationFailed
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming._types import ProduceResult, StreamingMessage
from qi.base.streaming.backends.aiokafka import _errors
from qi.base.streaming.backends.aiokafka._batch import (
    Layout,
    QueuedBatch,
    Stamps,
    UnknownPartition,
    acknowledged,
)
from qi.base.streaming.backends.aiokafka._budget import QueueBudget
from qi.base.streaming.backends.aiokafka._connect import start_within
from qi.base.streaming.backends.aiokafka._metadata import (
    forbid_topic_auto_creation,
    topic_metadata,
)
from qi.base.streaming.backends.aiokafka._settings import producer_settings

IMPLEMENTATION: Final = "aiokafka"
# Seconds aiokafka's stop() may take after the flush: closing sockets, ending its sender task.
_STOP_GRACE: Final = 3.0
# What aiokafka itself sends as the transaction timeout of a non-transactional producer id.
_NO_TRANSACTION_TIMEOUT_MS: Final = 2**31 - 1
# InitProducerId answers that mean "this broker will not give an idempotent producer an id";
# other errors (coordinator loading, ...) are transient and aiokafka retries them itself.
_NO_IDEMPOTENCE_ERRORS: Final = frozenset({-1, 35})


def _retrieve(future: asyncio.Future[Any]) -> None:
    # A future whose caller gave up (timeout, disconnect) must not log "exception never retrieved".
    if not future.cancelled():
        future.exception()


class AiokafkaProducer(StreamingProducer):
    """A StreamingProducer over ``aiokafka.AIOKafkaProducer``."""

    def __init__(
        self,
        config: StreamingConfig,
        producer_config: ProducerConfig,
        *,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(config, producer_config, implementation=IMPLEMENTATION, logger=logger)
        self._producer: Any = None
        # One wake-up future per send waiting for acknowledgements; _close resolves them so
        # callers still waiting stop waiting.
        self._waits: set[asyncio.Future[None]] = set()
        # send() calls of this loop iteration, by topic, not yet handed to a flush task.
        self._pending: dict[str, tuple[list[StreamingMessage], list[asyncio.Future[Any]]]] = {}
        self._flushes: set[asyncio.Future[None]] = set()
        self._budget = QueueBudget()
        self._rotation = 0

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            producer = AIOKafkaProducer(**producer_settings(self._config, self._producer_config))
        except (ValueError, RuntimeError) as exc:  # a codec library missing, a bad combination
            raise OperationFailed(
                self._error(
                    ErrorCode.INVALID_CONFIG, f"aiokafka refused the settings: {exc}", "connect"
                )
            ) from exc
        self._producer = producer
        forbid_topic_auto_creation(producer.client)

        async def start() -> None:
            if self._producer_config.idempotent:
                # aiokafka's start() would retry a refused producer id forever: ask first.
                await producer.client.bootstrap()
                await self._check_idempotence(producer.client)
            await producer.start()

        await start_within(self._config, start, self._error)

    async def _check_idempotence(self, client: Any) -> None:
        node_id = client.get_random_node()
        if node_id is None:
            raise KafkaConnectionError("the broker listed no brokers in its metadata")
        request = InitProducerIdRequest(None, _NO_TRANSACTION_TIMEOUT_MS)
        try:
            response = await client.send(node_id, request)
            error_code = response.error_code
        except (IncompatibleBrokerVersion, UnsupportedVersionError):
            error_code = UnsupportedVersionError.errno
        if error_code not in _NO_IDEMPOTENCE_ERRORS:
            return
        name = for_code(error_code).message
        raise OperationFailed(
            self._error(
                ErrorCode.INVALID_CONFIG,
                "idempotence is not supported by the broker (it answered the producer-id "
                f"request with {name}): use ProducerConfig(idempotent=False) with this broker",
                "connect",
                kafka_error=name,
                retriable=False,
            )
        )

    async def _close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            async with asyncio.timeout(self._config.request_timeout):
                await producer.flush()
        except TimeoutError:
            self._logger.warning(
                "aiokafka producer: messages still unacknowledged after %.1fs are reported failed",
                self._config.request_timeout,
            )
        finally:
            waits, self._waits = self._waits, set()
            for wake in waits:
                if not wake.done():
                    wake.set_result(None)
            await self._stop(producer)

    async def _stop(self, producer: Any) -> None:
        # stop() waits for every queued batch; fail the ones the flush could not deliver so it
        # cannot hang (aiokafka offers no public way to abandon them).
        accumulator = getattr(producer, "_message_accumulator", None)
        if accumulator is not None:
            # Not ProducerClosed: a batch already sent may have been written.
            accumulator.fail_all(KafkaConnectionError("the producer was disconnected"))
        stopping = asyncio.ensure_future(producer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=_STOP_GRACE)
        if not done:
            stopping.cancel()
            self._logger.warning("aiokafka producer did not stop within %.1fs", _STOP_GRACE)
        elif stopping.exception() is not None:
            self._logger.debug("aiokafka producer stop failed", exc_info=stopping.exception())

    def _close_bound(self) -> float:
        return self._config.request_timeout + _STOP_GRACE

    def _native_client(self) -> object:
        return self._producer

    def _translate(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return _errors.translate(exc, operation, fallback, implementation=IMPLEMENTATION)

    # -- sending -------------------------------------------------------------------------------

    async def _send(self, topic: str, message: StreamingMessage) -> Result[ProduceResult, QiError]:
        # Sends issued in the same loop iteration go out together as one send of many messages:
        # a few record batches and one wait instead of a coroutine, a timer and a future per
        # message. One send alone is a one-record batch queued at once, without lingering.
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Result[ProduceResult, QiError]] = loop.create_future()
        pending = self._pending
        if not pending:
            loop.call_soon(self._flush_pending)
        entry = pending.get(topic)
        if entry is None:
            pending[topic] = ([message], [waiter])
        else:
            entry[0].append(message)
            entry[1].append(waiter)
        return await waiter

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for topic, (messages, waiters) in pending.items():
            task = asyncio.ensure_future(self._deliver_pending(topic, messages, waiters))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _deliver_pending(
        self,
        topic: str,
        messages: list[StreamingMessage],
        waiters: list[asyncio.Future[Result[ProduceResult, QiError]]],
    ) -> None:
        try:
            outcomes: Sequence[ProduceResult | QiError] = await self._deliver(
                topic, messages, "send"
            )
        except OperationFailed as exc:
            outcomes = [exc.error] * len(messages)
        except Exception as exc:  # the boundary would translate it; this task is ours to do so
            error = self._translate(exc, "send", ErrorCode.PRODUCE_FAILED).with_context(
                topic=topic, delivery=DELIVERY_UNKNOWN
            )
            outcomes = [error] * len(messages)
        except BaseException:  # cancelled: every caller still waiting learns it
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
            raise
        for waiter, outcome in zip(waiters, outcomes, strict=True):
            if not waiter.done():  # a caller that was cancelled no longer waits
                waiter.set_result(
                    Failure(outcome) if isinstance(outcome, QiError) else Success(outcome)
                )

    async def _send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        outcomes = await self._deliver(topic, messages, "send_batch")
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, QiError):
                outcomes[index] = outcome.with_context(index=index)
        return outcomes

    async def _deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> list[ProduceResult | QiError]:
        """Queue every message in order, then wait for each acknowledgement, all within
        ``request_timeout``; one outcome per message, in input order."""
        producer = self._producer
        if producer is None:
            raise OperationFailed(
                self._not_connected(operation).with_context(topic=topic, delivery=NOT_WRITTEN)
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.request_timeout
        if producer.client.cluster.partitions_for_topic(topic) is None:
            problem = await self._find_topic(producer, topic, operation)
            if problem is not None:
                return [problem] * len(messages)
        results: list[Any] = [None] * len(messages)
        batches: list[QueuedBatch] = []
        layout = Layout(producer, topic, self._rotation)
        if operation == "send" and layout.queued_anything(topic):
            # aiokafka still holds a batch of ours for this topic (sends arriving one loop
            # iteration after another): join its open batches, or every iteration's few
            # messages would wait for a request of their own.
            await self._join(producer, topic, layout, messages, results, deadline)
            self._rotation = layout.rotation
            return results
        budget, total, start = self._budget, len(messages), 0
        while start < total:
            count = min(total - start, budget.capacity)
            if not budget.try_acquire(count) and not await budget.acquire(
                count, deadline - loop.time()
            ):
                full = self._queue_full(operation, topic)
                results[start:] = [full] * (total - start)
                break
            try:
                queued = await self._lay_out(
                    producer, topic, layout, messages, start, count, results
                )
            except BaseException:
                budget.release(count)
                raise
            await self._queue(producer, topic, queued, deadline)
            batches.extend(queued)
            start += count
        self._rotation = layout.rotation
        futures = [batch.future for batch in batches if batch.future is not None]
        if futures:
            await self._wait(futures, deadline)
        stamps = Stamps()
        for batch in batches:
            outcome = self._batch_failure(batch, topic, operation)
            if outcome is None:
                acknowledged(
                    topic, batch, batch.future.result() if batch.future else None, results, stamps
                )
            else:
                for index in batch.indexes:
                    results[index] = outcome
        return results

    async def _lay_out(
        self,
        producer: Any,
        topic: str,
        layout: Layout,
        messages: Sequence[StreamingMessage],
        start: int,
        count: int,
        results: list[Any],
    ) -> list[QueuedBatch]:
        try:
            queued, unknown = layout.build(messages, start, start + count, strict=False)
        except UnknownPartition:
            # Partitions may have been added since the metadata was cached: look once more.
            async with asyncio.timeout(self._config.request_timeout):
                await producer.client.force_metadata_update()
            rotation = layout.rotation
            layout.__init__(producer, topic, rotation)  # type: ignore[misc]
            queued, unknown = layout.build(messages, start, start + count, strict=True)
        if unknown:
            self._budget.release(len(unknown))
            for index in unknown:
                wanted = messages[index].partition
                results[index] = self._failed(
                    ErrorCode.INVALID_MESSAGE,
                    f"topic {topic!r} has no partition {wanted} (it has {len(layout.every)})",
                    "send" if len(messages) == 1 else "send_batch",
                    topic,
                    NOT_WRITTEN,
                    partition=wanted,
                )
        return queued

    async def _join(
        self,
        producer: Any,
        topic: str,
        layout: Layout,
        messages: Sequence[StreamingMessage],
        results: list[Any],
        deadline: float,
    ) -> None:
        """Each message through aiokafka's ``send()``, into the partition's open batch."""
        loop, budget = asyncio.get_running_loop(), self._budget
        now = int(time.time() * 1000)
        joined: list[tuple[int, int, int, asyncio.Future[Any]]] = []
        held = 0  # room taken in the budget for messages not handed to aiokafka yet
        index = 0
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                if not budget.try_acquire(len(messages)) and not await budget.acquire(
                    len(messages), deadline - loop.time()
                ):
                    raise TimeoutError
                held = len(messages)
                for index, message in enumerate(messages):
                    routed = layout.native(message, now)
                    if routed is None:
                        held -= 1
                        budget.release(1)
                        results[index] = self._no_partition(topic, message.partition, layout)
                        continue
                    partition, native = routed
                    future = await producer.send(topic, **native)
                    held -= 1
                    future.add_done_callback(_retrieve)
                    budget.release_when_done(future, 1)
                    joined.append((index, partition, native["timestamp_ms"], future))
        except (TimeoutError, KafkaError) as exc:
            refused = self._refused(exc, "send", topic)
            for rest in range(index, len(messages)):
                if results[rest] is None and not (joined and joined[-1][0] == rest):
                    results[rest] = refused
        finally:
            if held:
                budget.release(held)
        if joined:
            await self._wait([future for _, _, _, future in joined], deadline)
        stamps = Stamps()
        for index, partition, stamp_ms, future in joined:
            batch = QueuedBatch(partition, None, [index], [stamp_ms], future)
            failure = self._batch_failure(batch, topic, "send")
            if failure is not None:
                results[index] = failure
                continue
            metadata = future.result()
            if metadata is None:  # acks=0
                results[index] = ProduceResult(topic, partition, -1, stamps(stamp_ms))
            else:
                results[index] = ProduceResult(
                    topic, metadata.partition, metadata.offset, stamps(metadata.timestamp)
                )

    def _no_partition(self, topic: str, wanted: int | None, layout: Layout) -> QiError:
        return self._failed(
            ErrorCode.INVALID_MESSAGE,
            f"topic {topic!r} has no partition {wanted} (it has {len(layout.every)})",
            "send",
            topic,
            NOT_WRITTEN,
            partition=wanted,
        )

    async def _queue(
        self, producer: Any, topic: str, batches: list[QueuedBatch], deadline: float
    ) -> None:
        """Hand the batches to aiokafka in order; each keeps its room in the budget until
        aiokafka resolves it."""
        budget, loop = self._budget, asyncio.get_running_loop()
        for batch in batches:
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise KafkaTimeoutError("request_timeout passed before the batch was queued")
                # aiokafka waits (up to its request timeout) for the partition's previous batch.
                async with asyncio.timeout(remaining):
                    future = await producer.send_batch(
                        batch.builder, topic, partition=batch.partition
                    )
            except (TimeoutError, KafkaError) as exc:
                batch.refused = exc
                budget.release(len(batch.indexes))
                continue
            batch.future = future
            future.add_done_callback(_retrieve)
            budget.release_when_done(future, len(batch.indexes))

    async def _wait(self, futures: list[asyncio.Future[Any]], deadline: float) -> None:
        """Until every future is resolved, the deadline passes or the producer closes."""
        loop = asyncio.get_running_loop()
        everything = (
            futures[0] if len(futures) == 1 else asyncio.gather(*futures, return_exceptions=True)
        )
        # One wake-up future per wait (not one shared by all: asyncio.wait adds and removes a
        # callback on each future it watches, which is linear in the callbacks already there).
        wake: asyncio.Future[None] = loop.create_future()
        self._waits.add(wake)
        try:
            await asyncio.wait(
                {everything, wake},
                timeout=max(0.0, deadline - loop.time()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            self._waits.discard(wake)
        if not everything.done():
            everything.add_done_callback(_retrieve)

    def _batch_failure(self, batch: QueuedBatch, topic: str, operation: str) -> QiError | None:
        """The error every record of ``batch`` shares, or None when the broker took it."""
        if batch.refused is not None:
            return self._refused(batch.refused, operation, topic)
        future = batch.future
        assert future is not None
        if not future.done():
            if self._producer is None:
                return self._failed(
                    ErrorCode.PRODUCE_FAILED,
                    "the producer was disconnected before the broker acknowledged the message",
                    operation,
                    topic,
                    DELIVERY_UNKNOWN,
                )
            return self._failed(
                ErrorCode.TIMEOUT,
                f"no acknowledgement within {self._config.request_timeout:.1f}s",
                operation,
                topic,
                DELIVERY_UNKNOWN,
            )
        exc = future.exception()
        if exc is not None:
            delivery = NOT_WRITTEN if _errors.rejects(exc) else DELIVERY_UNKNOWN
            return self._translate(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
                topic=topic, delivery=delivery
            )
        return None

    # -- helpers -------------------------------------------------------------------------------

    async def _find_topic(self, producer: Any, topic: str, operation: str) -> QiError | None:
        """Fetch the metadata of a topic not cached yet; a missing topic is found out without
        creating it."""
        try:
            async with asyncio.timeout(self._config.request_timeout):
                metadata = await topic_metadata(producer.client, [topic])
                for entry in metadata["topics"]:
                    if entry["topic"] == topic and entry["error_code"] != 0:
                        exc = for_code(entry["error_code"])()
                        return self._translate(
                            exc, operation, ErrorCode.PRODUCE_FAILED
                        ).with_context(topic=topic, delivery=NOT_WRITTEN)
                await producer.partitions_for(topic)
        except TimeoutError:
            return self._failed(
                ErrorCode.TIMEOUT,
                f"no metadata for topic {topic!r} within {self._config.request_timeout:.1f}s",
                operation,
                topic,
                NOT_WRITTEN,
            )
        return None

    def _queue_full(self, operation: str, topic: str) -> QiError:
        return self._failed(
            ErrorCode.QUEUE_FULL,
            f"{self._budget.capacity} messages stayed queued for "
            f"{self._config.request_timeout:.1f}s (are the brokers reachable?)",
            operation,
            topic,
            NOT_WRITTEN,
            retriable=True,
        )

    def _refused(self, exc: Exception, operation: str, topic: str) -> QiError:
        """A message aiokafka would not take: nothing of it was sent."""
        if isinstance(exc, TimeoutError | KafkaTimeoutError):
            return self._failed(
                ErrorCode.QUEUE_FULL,
                f"the send buffer stayed full for {self._config.request_timeout:.1f}s",
                operation,
                topic,
                NOT_WRITTEN,
                kafka_error=_errors.kafka_error_name(exc),
                retriable=True,
            )
        return self._translate(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
            topic=topic, delivery=NOT_WRITTEN
        )

    def _failed(
        self,
        code: ErrorCode,
        message: str,
        operation: str,
        topic: str,
        delivery: str,
        **context: Any,
    ) -> QiError:
        return self._error(code, message, operation, topic=topic, delivery=delivery, **context)
