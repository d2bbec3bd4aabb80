"""The confluent producer: ``produce()`` on the loop, delivery reports via the poll thread.

``produce()`` never blocks, so it is called directly from the coroutine; what
waits (``poll``, ``flush``, metadata requests) runs on the producer's own
threads. See ``_delivery`` for how reports come back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import DELIVERY_UNKNOWN, NOT_WRITTEN, ErrorCode
from qi.base.streaming._config import ProducerConfig, StreamingConfig
from qi.base.streaming._endpoint import OperationFailed
from qi.base.streaming._producer import StreamingProducer
from qi.base.streaming._types import ProduceResult, StreamingMessage
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._delivery import DeliveryHub, Outcome, Sends
from qi.base.streaming.backends.confluent._errors import (
    IMPLEMENTATION,
    kafka_error,
    translate_exception,
)
from qi.base.streaming.backends.confluent._settings import (
    TOPIC_PROPAGATION_MS,
    producer_settings,
    redacted,
)
from qi.base.streaming.backends.confluent._worker import BlockingWorker

# How long disconnect() waits for the metadata thread to finish what it is doing.
_WORKER_PATIENCE: Final = 1.0
# Longest wait for librdkafka to make room in a full queue before trying again; the
# poll thread normally wakes the waiter sooner.
_SPACE_WAIT: Final = 0.05
# Pause between metadata look-ups while librdkafka still refuses a topic the broker has.
_TOPIC_RECHECK: Final = 0.1


def _produce(
    produce: Callable[..., None],
    topic: str,
    message: StreamingMessage,
    report: Callable[[KafkaError | None, Message], None],
) -> None:
    """Hand one validated message to librdkafka (raises what ``Producer.produce`` raises)."""
    value = message.value
    timestamp = message.timestamp
    headers = message.headers
    produce(
        topic,
        value if type(value) is bytes else bytes(value),
        message.key,
        -1 if message.partition is None else message.partition,
        report,
        None,
        0 if timestamp is None else int(timestamp.timestamp() * 1000),
        list(headers.items()) if headers else None,
    )


class ConfluentProducer(StreamingProducer):
    """A StreamingProducer over ``confluent_kafka.Producer``."""

    def __init__(
        self,
        config: StreamingConfig,
        producer_config: ProducerConfig,
        logger: logging.Logger | None = None,
    ) -> None:
        super().__init__(config, producer_config, implementation=IMPLEMENTATION, logger=logger)
        self._producer: Producer | None = None
        self._hub: DeliveryHub | None = None
        self._worker: BlockingWorker | None = None
        self._finish_one = self._finish_send  # bound once, not per send

    # -- lifecycle -----------------------------------------------------------------------------

    async def _open(self) -> None:
        settings = producer_settings(self._config, self._producer_config)
        self._logger.debug("creating a confluent producer with %s", redacted(settings))
        errors = ClientErrors(self._logger)
        producer = Producer(client_settings(settings, self._logger, errors))
        self._producer = producer
        self._worker = BlockingWorker("qi-confluent-producer")
        self._hub = DeliveryHub(
            producer,
            asyncio.get_running_loop(),
            self._logger,
            "qi-confluent-producer-poll",
            lingers=self._producer_config.linger > 0,
        )
        self._hub.start()
        await prove_broker(
            self._worker, producer.list_topics, self._config.connection_timeout, errors
        )

    async def _close(self) -> None:
        hub, self._hub = self._hub, None
        worker, self._worker = self._worker, None
        try:
            if hub is not None:
                # Flushes, fails what is left, and completes every send still waiting.
                await hub.stop(self._config.request_timeout)
        finally:
            # Only metadata look-ups run there, each bounded by connection_timeout.
            if worker is not None and not await worker.close(_WORKER_PATIENCE):
                self._logger.warning("a confluent producer metadata request is still running")
            self._producer = None

    def _native_client(self) -> object:
        return self._producer

    def _translate(self, exc: BaseException, operation: str, fallback: ErrorCode) -> QiError:
        return translate_exception(exc, operation, fallback)

    # -- sending -------------------------------------------------------------------------------

    def _send(
        self, topic: str, message: StreamingMessage
    ) -> Awaitable[Result[ProduceResult, QiError]]:
        hub, producer = self._hub, self._producer
        if hub is None or producer is None:
            raise OperationFailed(self._not_connected("send"))
        sends = Sends(topic, 1, asyncio.get_running_loop().create_future(), self._finish_one)
        # The common case needs no coroutine of its own: librdkafka takes the message at
        # once and send() awaits the future the hub resolves with the Result. A full queue
        # or an unknown topic goes the long way round.
        report = hub.callback(sends, 0)
        try:
            _produce(producer.produce, topic, message, report)
        except Exception:
            hub.release(report)
            return self._send_slowly(hub, producer, sends, message)
        hub.handed_over(sends, 1)
        return sends.future

    async def _send_slowly(
        self, hub: DeliveryHub, producer: Producer, sends: Sends, message: StreamingMessage
    ) -> Result[ProduceResult, QiError]:
        produced = await self._produce(hub, producer, sends, (message,), "send")
        hub.handed_over(sends, produced)
        result: Result[ProduceResult, QiError] = await sends.future
        return result

    def _finish_send(self, sends: Sends) -> Result[ProduceResult, QiError]:
        """The Result of a single send, once its outcome is known (on the loop)."""
        outcome = self._outcome(sends.outcomes[0], "send", sends.topic)
        return Success(outcome) if isinstance(outcome, ProduceResult) else Failure(outcome)

    async def _send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        return await self._deliver(topic, messages, "send_batch")

    async def _deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> list[ProduceResult | QiError]:
        hub, producer = self._hub, self._producer
        if hub is None or producer is None:
            raise OperationFailed(self._not_connected(operation))
        sends = Sends(topic, len(messages), asyncio.get_running_loop().create_future())
        produced = await self._produce(hub, producer, sends, messages, operation)
        hub.handed_over(sends, produced)
        # No timer of our own: librdkafka reports every message within message.timeout.ms
        # (= request_timeout), and the hub completes whatever is left if it stops.
        await sends.future
        outcomes = sends.outcomes
        if sends.failed or sends.delivered != len(outcomes):
            return [self._outcome(outcome, operation, topic) for outcome in outcomes]
        return outcomes  # type: ignore[return-value]  # every message was acknowledged

    async def _produce(
        self,
        hub: DeliveryHub,
        producer: Producer,
        sends: Sends,
        messages: Sequence[StreamingMessage],
        operation: str,
    ) -> int:
        """Hand every message to librdkafka, in order; return how many it accepted."""
        produce = producer.produce
        callback = hub.callback
        release = hub.release
        outcomes = sends.outcomes
        deadline: float | None = None
        topic_deadline: float | None = None
        produced = 0
        index = 0
        count = len(messages)
        topic = sends.topic
        while index < count:
            report = callback(sends, index)
            try:
                _produce(produce, topic, messages[index], report)
            except BufferError:
                release(report)
                # Back-pressure: wait for librdkafka to deliver something, then retry this
                # message; only after request_timeout is the rest of the batch refused.
                now = time.monotonic()
                deadline = now + self._config.request_timeout if deadline is None else deadline
                if hub.closing:
                    refused = self._not_connected(operation).with_context(delivery=NOT_WRITTEN)
                    self._fail_rest(sends, index, refused)
                    return produced
                if now >= deadline:
                    self._fail_rest(sends, index, self._queue_full(operation, sends.topic))
                    return produced
                hub.want_space()
                try:
                    async with asyncio.timeout(min(_SPACE_WAIT, deadline - now)):
                        await hub.space.wait()
                except TimeoutError:
                    pass
                continue
            except KafkaException as exc:
                release(report)
                error = exc.args[0]
                if error.code() == KafkaError._UNKNOWN_TOPIC and (
                    topic_deadline is None or time.monotonic() < topic_deadline
                ):
                    # librdkafka remembers a topic it found missing; it may exist by now.
                    # If it does and librdkafka still refuses it, the broker gives topics no
                    # id (noida-db): librdkafka then cannot tell the topic's return from a
                    # stale answer and waits out topic.metadata.propagation.max.ms, after
                    # which a fresh look-up lets it in.
                    if topic_deadline is None:
                        topic_deadline = time.monotonic() + self._topic_patience()
                    else:
                        await asyncio.sleep(_TOPIC_RECHECK)
                    try:
                        exists = await self._topic_exists(sends.topic)
                    except Exception as lookup:
                        self._fail_rest(sends, index, self._unsent(lookup, operation, sends))
                        return produced
                    if exists:
                        continue
                    self._fail_rest(sends, index, error)
                    return produced
                outcomes[index] = error
            except Exception as exc:  # never strand the messages already handed over
                release(report)
                outcomes[index] = self._unsent(exc, operation, sends)
            else:
                produced += 1
            index += 1
        return produced

    def _topic_patience(self) -> float:
        """How long a topic the broker has may still be refused (see producer_settings)."""
        propagation = min(TOPIC_PROPAGATION_MS / 1000, self._config.request_timeout / 2)
        return propagation + 2 * _TOPIC_RECHECK

    async def _topic_exists(self, topic: str) -> bool:
        """Refresh librdkafka's metadata of ``topic`` and say whether it exists."""
        producer, worker = self._producer, self._worker
        if producer is None or worker is None:
            return False
        timeout = min(self._config.request_timeout, self._config.connection_timeout)
        metadata = await worker.run(functools.partial(producer.list_topics, topic, timeout))
        found = metadata.topics.get(topic)
        return found is not None and found.error is None

    def _unsent(self, exc: BaseException, operation: str, sends: Sends) -> QiError:
        return translate_exception(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
            topic=sends.topic, delivery=NOT_WRITTEN
        )

    @staticmethod
    def _fail_rest(sends: Sends, start: int, error: KafkaError | QiError) -> None:
        outcomes = sends.outcomes
        for index in range(start, len(outcomes)):
            outcomes[index] = error

    def _queue_full(self, operation: str, topic: str) -> QiError:
        return self._error(
            ErrorCode.QUEUE_FULL,
            f"the local producer queue stayed full for {self._config.request_timeout:.1f}s",
            operation,
            topic=topic,
            delivery=NOT_WRITTEN,
            kafka_error="_QUEUE_FULL",
            retriable=True,
        )

    def _outcome(self, outcome: Outcome, operation: str, topic: str) -> ProduceResult | QiError:
        if isinstance(outcome, ProduceResult | QiError):
            return outcome
        if isinstance(outcome, KafkaError):
            return kafka_error(
                outcome, operation, ErrorCode.PRODUCE_FAILED, delivery=True, topic=topic
            )
        return self._error(
            ErrorCode.PRODUCE_FAILED,
            "the producer was disconnected before the message was acknowledged",
            operation,
            topic=topic,
            delivery=DELIVERY_UNKNOWN,
        )
