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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
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
from qi.base.streaming.backends.aiokafka._batch import BatchLayout, Placement, choose_partition
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


def _encoded(value: str | bytes | bytearray) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def _timestamp(milliseconds: int | None) -> datetime | None:
    if milliseconds is None or milliseconds < 0:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=UTC)


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
        # Resolved by _close so callers still waiting for an acknowledgement stop waiting.
        self._closed_signal: asyncio.Future[None] | None = None

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
        self._closed_signal = asyncio.get_running_loop().create_future()
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
        signal, self._closed_signal = self._closed_signal, None
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
            if signal is not None and not signal.done():
                signal.set_result(None)
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
        (outcome,) = await self._deliver(topic, (message,), "send")
        return Failure(outcome) if isinstance(outcome, QiError) else Success(outcome)

    async def _send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        outcomes = await self._deliver(topic, messages, "send_batch")
        return [
            outcome.with_context(index=index) if isinstance(outcome, QiError) else outcome
            for index, outcome in enumerate(outcomes)
        ]

    async def _deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> list[ProduceResult | QiError]:
        """Queue every message in order, then wait for each acknowledgement, all within
        ``request_timeout``; one outcome per message, in input order."""
        producer, signal = self._producer, self._closed_signal
        if producer is None or signal is None:
            raise OperationFailed(
                self._not_connected(operation).with_context(topic=topic, delivery=NOT_WRITTEN)
            )
        deadline = time.monotonic() + self._config.request_timeout
        try:
            async with asyncio.timeout(self._config.request_timeout):
                partitions = await self._partitions(producer, topic, operation)
        except TimeoutError:
            partitions = self._failed(
                ErrorCode.TIMEOUT,
                f"no metadata for topic {topic!r} within {self._config.request_timeout:.1f}s",
                operation,
                topic,
                NOT_WRITTEN,
            )
        if isinstance(partitions, QiError):
            return [partitions] * len(messages)
        outcomes: dict[int, ProduceResult | QiError] = {}
        natives: dict[int, dict[str, Any]] = {}
        for index, message in enumerate(messages):
            rejection = await self._check_partition(producer, topic, message, partitions, operation)
            if rejection is None:
                natives[index] = _native_message(message)
            else:
                outcomes[index] = rejection
        # One message joins the shared per-partition batches of send(); a batch of ours is
        # laid out as record batches of its own, which is about three times as fast.
        if len(messages) == 1:
            placements, refused = await self._queue_each(producer, topic, natives, deadline)
        else:
            placements, refused = await self._queue_batches(producer, topic, natives, deadline)
        for index, exc in refused.items():
            outcomes[index] = self._refused(exc, operation, topic)
        if placements:
            await self._wait(
                {id(p.future): p.future for p in placements.values()}, signal, deadline
            )
        for index, placement in placements.items():
            outcomes[index] = self._delivery_outcome(placement, topic, operation)
        return [outcomes[index] for index in range(len(messages))]

    async def _queue_each(
        self, producer: Any, topic: str, natives: dict[int, dict[str, Any]], deadline: float
    ) -> tuple[dict[int, Placement], dict[int, Exception]]:
        placements: dict[int, Placement] = {}
        refused: dict[int, Exception] = {}
        for index, native in natives.items():
            if native["partition"] is None and self._producer_config.acks == 0:
                # Without acknowledgements aiokafka never says where a message went: choose here.
                native["partition"] = choose_partition(producer, topic, native["key"])
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise KafkaTimeoutError("request_timeout passed before the message was queued")
                async with asyncio.timeout(remaining):
                    future = await producer.send(topic, **native)
            except (TimeoutError, KafkaError) as exc:
                refused[index] = exc
                continue
            future.add_done_callback(_retrieve)
            partition = -1 if native["partition"] is None else native["partition"]
            placements[index] = Placement(future, partition, None, native["timestamp_ms"])
        return placements, refused

    async def _queue_batches(
        self, producer: Any, topic: str, natives: dict[int, dict[str, Any]], deadline: float
    ) -> tuple[dict[int, Placement], dict[int, Exception]]:
        layout = BatchLayout(producer, topic, deadline)
        for index, native in natives.items():
            partition = native["partition"]
            if partition is None:
                partition = choose_partition(producer, topic, native["key"])
            await layout.add(index, partition, native)
        await layout.finish()
        for placement in layout.placements.values():
            placement.future.add_done_callback(_retrieve)
        return layout.placements, layout.refused

    async def _wait(
        self,
        futures: Mapping[int, asyncio.Future[Any]],
        signal: asyncio.Future[None],
        deadline: float,
    ) -> None:
        everything: asyncio.Future[Any] = asyncio.gather(*futures.values(), return_exceptions=True)
        remaining = max(0.0, deadline - time.monotonic())
        await asyncio.wait(
            {everything, signal}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
        if not everything.done():
            everything.add_done_callback(_retrieve)

    def _delivery_outcome(
        self, placement: Placement, topic: str, operation: str
    ) -> ProduceResult | QiError:
        future = placement.future
        if not future.done():
            if self._closed_signal is None:
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
        metadata = future.result()
        if metadata is None:  # acks=0: the broker does not answer
            return ProduceResult(topic, placement.partition, -1, _timestamp(placement.timestamp_ms))
        if placement.position is None:  # the message's own metadata
            return ProduceResult(
                topic, metadata.partition, metadata.offset, _timestamp(metadata.timestamp)
            )
        # A record batch's metadata: -1 means CreateTime, i.e. the record's own timestamp.
        timestamp = metadata.timestamp
        if timestamp is None or timestamp < 0:
            timestamp = placement.timestamp_ms
        return ProduceResult(
            topic, metadata.partition, metadata.offset + placement.position, _timestamp(timestamp)
        )

    # -- helpers -------------------------------------------------------------------------------

    async def _partitions(self, producer: Any, topic: str, operation: str) -> set[int] | QiError:
        """The topic's partitions; a missing topic is found out without creating it."""
        partitions = producer.client.cluster.partitions_for_topic(topic)
        if partitions is not None:
            return set(partitions)
        metadata = await topic_metadata(producer.client, [topic])
        for entry in metadata["topics"]:
            if entry["topic"] == topic and entry["error_code"] != 0:
                exc = for_code(entry["error_code"])()
                return self._translate(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
                    topic=topic, delivery=NOT_WRITTEN
                )
        return set(await producer.partitions_for(topic))

    async def _check_partition(
        self,
        producer: Any,
        topic: str,
        message: StreamingMessage,
        partitions: set[int],
        operation: str,
    ) -> QiError | None:
        wanted = message.partition
        if wanted is None or wanted in partitions:
            return None
        # Partitions may have been added since the metadata was cached: look once more.
        await producer.client.force_metadata_update()
        partitions.update(producer.client.cluster.partitions_for_topic(topic) or ())
        if wanted in partitions:
            return None
        return self._failed(
            ErrorCode.INVALID_MESSAGE,
            f"topic {topic!r} has no partition {wanted} (it has {len(partitions)})",
            operation,
            topic,
            NOT_WRITTEN,
            partition=wanted,
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


def _native_message(message: StreamingMessage) -> dict[str, Any]:
    """aiokafka's send() arguments for one message."""
    timestamp = message.timestamp
    return {
        "value": _encoded(message.value),
        "key": None if message.key is None else _encoded(message.key),
        "partition": message.partition,
        "timestamp_ms": None if timestamp is None else int(timestamp.timestamp() * 1000),
        "headers": [(name, _encoded(value)) for name, value in message.headers.items()],
    }
