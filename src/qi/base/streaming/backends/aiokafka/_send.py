"""Pooled sends: messages handed to aiokafka in order, then one bounded wait for them all.

A batch of ours is laid out into aiokafka record batches (``_batch``) and queued with
``send_batch``; sends arriving while aiokafka still holds a batch of ours join its open
batches through ``send()``. At most ``QueueBudget.capacity`` messages are handed to
aiokafka unresolved. Every wait is bounded by ``request_timeout`` because aiokafka's own
waits are not (an idempotent batch never expires while brokers are down).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, Protocol

from aiokafka.errors import IllegalOperation, KafkaError, KafkaTimeoutError, for_code

from qi.base import QiError
from qi.base.streaming import ErrorCode, ProduceResult, StreamingConfig, StreamingMessage
from qi.base.streaming._fast_values import LastTimestamp, produce_result
from qi.base.streaming.backend import DELIVERY_UNKNOWN, NOT_WRITTEN, OperationFailed, not_connected
from qi.base.streaming.backends.aiokafka import _errors, _private
from qi.base.streaming.backends.aiokafka._batch import (
    Acknowledged,
    Layout,
    QueuedBatch,
    UnknownPartition,
)
from qi.base.streaming.backends.aiokafka._budget import QueueBudget
from qi.base.streaming.backends.aiokafka._errors import (
    IMPLEMENTATION,
    contract_error,
    translate_native,
)
from qi.base.streaming.backends.aiokafka._metadata import topic_metadata


def retrieve(future: asyncio.Future[Any]) -> None:
    """Done callback: a future whose caller gave up (timeout, disconnect) must not log
    "exception never retrieved"."""
    if not future.cancelled():
        future.exception()


class SenderOwner(Protocol):
    """What a Sender needs of its producer: the native client of the moment."""

    _producer: Any


class Sender:
    """Delivers one topic's messages for an AiokafkaProducer; one outcome per message."""

    def __init__(self, owner: SenderOwner, config: StreamingConfig) -> None:
        self._owner = owner
        self._config = config
        # One wake-up future per call waiting for acknowledgements; wake_all() ends them.
        self._waits: set[asyncio.Future[None]] = set()
        self._budget = QueueBudget()
        self._rotation = 0

    def wake_all(self) -> None:
        """The producer is closing: every call still waiting stops waiting."""
        waits, self._waits = self._waits, set()
        for wake in waits:
            if not wake.done():
                wake.set_result(None)

    async def deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> Sequence[ProduceResult | QiError]:
        """Queue every message in order, then wait for each acknowledgement, all within
        ``request_timeout``; one outcome per message, in input order (an Acknowledged,
        built when read, when every message was acknowledged)."""
        producer = self._owner._producer
        if producer is None:
            raise OperationFailed(
                not_connected(IMPLEMENTATION, "producer", operation).with_context(
                    topic=topic, delivery=NOT_WRITTEN
                )
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
        if (
            operation == "send"
            and len(messages) <= self._budget.capacity
            and _private.holds_unsent(producer, topic, layout.every)
        ):
            # aiokafka still holds a batch of ours for this topic (sends arriving one loop
            # iteration after another): join its open batches, or every iteration's few
            # messages would wait for a request of their own. More than the budget holds at
            # once go the batch way, in turns.
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
                queued, unknown = await self._lay_out(
                    producer, topic, layout, messages, start, count
                )
            except BaseException:
                budget.release(count)
                raise
            if unknown:
                budget.release(len(unknown))
                for index in unknown:
                    results[index] = self._no_partition(
                        topic, messages[index].partition, layout, operation
                    )
            # From here the room of every queued batch is _queue's to give back.
            await self._queue(producer, topic, layout, queued, deadline)
            batches.extend(queued)
            start += count
        self._rotation = layout.rotation
        futures = [batch.future for batch in batches if batch.future is not None]
        if futures:
            await self._wait(futures, deadline)
        acknowledged = Acknowledged(topic, len(messages))
        for batch in batches:
            outcome = self._batch_failure(batch, topic, operation)
            if outcome is None:
                acknowledged.add(batch, batch.future.result() if batch.future else None)
            else:
                for index in batch.indexes:
                    results[index] = outcome
        if acknowledged.messages == len(messages):
            return acknowledged  # every message acknowledged: results built when read
        acknowledged.fill(results)
        return results

    async def _lay_out(
        self,
        producer: Any,
        topic: str,
        layout: Layout,
        messages: Sequence[StreamingMessage],
        start: int,
        count: int,
    ) -> tuple[list[QueuedBatch], list[int]]:
        try:
            return layout.build(messages, start, start + count, strict=False)
        except UnknownPartition:
            # Partitions may have been added since the metadata was cached: look once more.
            async with asyncio.timeout(self._config.request_timeout):
                await producer.client.force_metadata_update()
            rotation = layout.rotation
            layout.__init__(producer, topic, rotation)  # type: ignore[misc]
            return layout.build(messages, start, start + count, strict=True)

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
        joined: list[tuple[int, int, int, asyncio.Future[Any], Any]] = []
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
                        results[index] = self._no_partition(
                            topic, message.partition, layout, "send"
                        )
                        continue
                    partition, native = routed
                    future = await producer.send(topic, **native)
                    held -= 1
                    future.add_done_callback(retrieve)
                    budget.release_when_done(future, 1)
                    queued_in = _private.last_queued(producer, topic, partition)
                    joined.append((index, partition, native["timestamp_ms"], future, queued_in))
        except (TimeoutError, KafkaError, IllegalOperation) as exc:
            refused = self._refused(exc, "send", topic)
            for rest in range(index, len(messages)):
                if results[rest] is None and not (joined and joined[-1][0] == rest):
                    results[rest] = refused
        finally:
            if held:
                budget.release(held)
        if joined:
            await self._wait([future for _, _, _, future, _ in joined], deadline)
        last_timestamp = LastTimestamp()
        for index, partition, stamp_ms, future, queued_in in joined:
            batch = QueuedBatch(partition, None, [index], [stamp_ms], future, native=queued_in)
            failure = self._batch_failure(batch, topic, "send")
            if failure is not None:
                results[index] = failure
                continue
            metadata = future.result()
            if metadata is None:  # acks=0
                results[index] = produce_result(topic, partition, -1, last_timestamp(stamp_ms))
            else:
                # CreateTime (type 0): the record keeps its own timestamp. aiokafka reports the
                # batch's first one for every record that joined a batch, so use ours.
                appended = stamp_ms if metadata.timestamp_type == 0 else metadata.timestamp
                results[index] = produce_result(
                    topic, metadata.partition, metadata.offset, last_timestamp(appended)
                )

    def _no_partition(
        self, topic: str, wanted: int | None, layout: Layout, operation: str
    ) -> QiError:
        return self._failed(
            ErrorCode.INVALID_MESSAGE,
            f"topic {topic!r} has no partition {wanted} (it has {len(layout.every)})",
            operation,
            topic,
            NOT_WRITTEN,
            partition=wanted,
        )

    async def _queue(
        self,
        producer: Any,
        topic: str,
        layout: Layout,
        batches: list[QueuedBatch],
        deadline: float,
    ) -> None:
        """Hand the batches to aiokafka in order; each keeps its room in the budget until
        aiokafka resolves it, and a batch not handed over gives its room back at once."""
        budget, loop = self._budget, asyncio.get_running_loop()
        for position, batch in enumerate(batches):
            remaining = deadline - loop.time()
            try:
                if remaining <= 0:
                    raise KafkaTimeoutError("request_timeout passed before the batch was queued")
                # aiokafka waits (up to its request timeout) for the partition's previous batch.
                # It appends the batch after its last wait, so a cancelled call queued nothing.
                async with asyncio.timeout(remaining):
                    future = await producer.send_batch(
                        batch.builder, topic, partition=batch.partition
                    )
            # IllegalOperation: a transactional producer not in a transaction (its commit
            # under way) refuses before appending anything.
            except (TimeoutError, KafkaError, IllegalOperation) as exc:
                batch.refused = exc
                budget.release(len(batch.indexes))
                continue
            except BaseException:  # cancelled: this batch and the later ones were never handed over
                budget.release(sum(len(rest.indexes) for rest in batches[position:]))
                raise
            batch.future = future
            batch.native = _private.last_queued(producer, topic, batch.partition)
            future.add_done_callback(retrieve)
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
            everything.add_done_callback(retrieve)

    def _batch_failure(self, batch: QueuedBatch, topic: str, operation: str) -> QiError | None:
        """The error every record of ``batch`` shares, or None when the broker took it."""
        if batch.refused is not None:
            return self._refused(batch.refused, operation, topic)
        future = batch.future
        assert future is not None
        if not future.done():
            if self._owner._producer is None:
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
            delivery = _errors.delivery_after(exc, batch.native.retry_count)
            return translate_native(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
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
                        return translate_native(
                            exc, operation, ErrorCode.PRODUCE_FAILED
                        ).with_context(topic=topic, delivery=NOT_WRITTEN)
                await producer.partitions_for(topic)
        except KafkaError as exc:  # no connection: nothing of the call was sent
            return translate_native(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
                topic=topic, delivery=NOT_WRITTEN
            )
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
        return translate_native(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
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
        return contract_error(code, message, operation, topic=topic, delivery=delivery, **context)
