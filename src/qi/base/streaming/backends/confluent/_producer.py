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
from qi.base.streaming import (
    ErrorCode,
    ProducerConfig,
    ProduceResult,
    StreamingConfig,
    StreamingMessage,
)
from qi.base.streaming.backend import (
    DELIVERY_UNKNOWN,
    NO_HEADERS,
    NOT_WRITTEN,
    NativeTransactions,
    OperationFailed,
    ProducerBackend,
    not_connected,
)
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._delivered import Delivered
from qi.base.streaming.backends.confluent._delivery import (
    STOP_GRACE,
    DeliveryHub,
    OneSend,
    Outcome,
    Sends,
)
from qi.base.streaming.backends.confluent._errors import (
    IMPLEMENTATION,
    contract_error,
    kafka_error,
    reported_delivery,
    translate_exception,
)
from qi.base.streaming.backends.confluent._settings import producer_settings, redacted
from qi.base.streaming.backends.confluent._transactions import ConfluentTransactions
from qi.base.streaming.backends.confluent._worker import BlockingWorker

# How long disconnect() waits for the metadata thread to finish what it is doing.
_WORKER_PATIENCE: Final = 1.0
# Longest wait for librdkafka to make room in a full queue before trying again; the
# poll thread normally wakes the waiter sooner.
_SPACE_WAIT: Final = 0.05
# Pause between metadata requests while librdkafka still believes a topic that exists
# (deleted and created again) to be missing.
_TOPIC_RECHECK: Final = 0.1


def _disconnected(operation: str) -> QiError:
    """A send that found the producer disconnected under it: nothing was handed over."""
    return not_connected(IMPLEMENTATION, "producer", operation).with_context(delivery=NOT_WRITTEN)


class EpochTimestamp(ValueError):
    """librdkafka cannot send a timestamp of 0 ms: it reads 0 as "now" (rd_kafka_msg_new0),
    so such a message is refused rather than stamped with another time."""


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
    if timestamp is None:
        millis = 0  # librdkafka stamps the message with the current time
    else:
        millis = int(timestamp.timestamp() * 1000)
        if not millis:
            raise EpochTimestamp
    produce(
        topic,
        value if type(value) is bytes or value is None else bytes(value),
        message.key,
        -1 if message.partition is None else message.partition,
        report,
        None,
        millis,
        # By identity first: the shared empty headers' truth test is a Python-level call.
        None if headers is NO_HEADERS or not headers else list(headers.items()),
    )


class ConfluentProducer(ProducerBackend):
    """The producer backend over ``confluent_kafka.Producer``."""

    # close(): the hub's flush (request_timeout), its wait for a stuck poll thread, and the
    # metadata worker's patience.
    close_grace = STOP_GRACE + _WORKER_PATIENCE

    def __init__(
        self, config: StreamingConfig, producer_config: ProducerConfig, logger: logging.Logger
    ) -> None:
        self._config = config
        self._producer_config = producer_config
        self._logger = logger
        self._producer: Producer | None = None
        self._hub: DeliveryHub | None = None
        self._worker: BlockingWorker | None = None
        self._transactions: ConfluentTransactions | None = None
        self._finish_one = self._finish_send  # bound once, not per send
        # Whether librdkafka may send a message more than once (the idempotent producer
        # retries until message.timeout.ms): then a failure says less about earlier attempts.
        self._retries = producer_config.idempotent or config.retry_attempts > 0
        self._transactional = producer_config.transactional_id is not None
        self._lookups: dict[str, asyncio.Future[int | None]] = {}  # topic -> lookup in flight

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
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
            report_timeout=float(settings["message.timeout.ms"]) / 1000,
        )
        self._hub.start()
        await prove_broker(
            self._worker, producer.list_topics, self._config.connection_timeout, errors
        )
        if self._producer_config.transactional_id is not None:
            # Registers the transactional id with its coordinator, which fences any older
            # producer with the same id and aborts the transaction it left open.
            await self._worker.run(
                functools.partial(producer.init_transactions, self._config.connection_timeout)
            )
            self._transactions = ConfluentTransactions(
                producer, self._worker, self._config.request_timeout
            )

    async def close(self) -> None:
        hub, self._hub = self._hub, None
        worker, self._worker = self._worker, None
        ended = True
        try:
            if hub is not None:
                # Flushes, fails what is left, and completes every send still waiting.
                ended = await hub.stop(self._config.request_timeout)
        finally:
            # Only metadata look-ups run there, each bounded by connection_timeout.
            if worker is not None and not await worker.close(_WORKER_PATIENCE):
                self._logger.warning("a confluent producer metadata request is still running")
            self._producer = None
            self._transactions = None
        if not ended:
            raise OperationFailed(
                contract_error(
                    ErrorCode.TIMEOUT,
                    "the producer's poll thread did not come back from librdkafka after the "
                    f"flush ({self._config.request_timeout:g}s and {STOP_GRACE:g}s of grace); "
                    "every call still waiting was answered, delivery unknown",
                    "disconnect",
                )
            )

    def native_client(self) -> object:
        return self._producer

    def transactions(self) -> NativeTransactions:
        # One per connection: it remembers an abort librdkafka must be asked to resume.
        assert self._transactions is not None
        return self._transactions

    # -- sending -------------------------------------------------------------------------------

    def send(
        self, topic: str, message: StreamingMessage
    ) -> Awaitable[Result[ProduceResult, QiError]]:
        hub, producer = self._hub, self._producer
        if hub is None or producer is None:
            raise OperationFailed(_disconnected("send"))
        one = OneSend(
            hub, topic, message, asyncio.get_running_loop().create_future(), self._finish_one
        )
        # The common case needs no coroutine of its own: librdkafka takes the message at
        # once and send() awaits the future the hub resolves with the Result. A full queue
        # or an unknown topic goes the long way round.
        try:
            _produce(producer.produce, topic, message, one)
        except Exception:
            sends = Sends(
                topic,
                1,
                asyncio.get_running_loop().create_future(),
                self._finish_slow_send,
                (message,),
            )
            return self._send_slowly(hub, producer, sends, message)
        hub.handed_over_one(one)
        return one.future

    async def _send_slowly(
        self, hub: DeliveryHub, producer: Producer, sends: Sends, message: StreamingMessage
    ) -> Result[ProduceResult, QiError]:
        produced = await self._produce(hub, producer, sends, (message,), "send")
        hub.handed_over(sends, produced)
        result: Result[ProduceResult, QiError] = await sends.future
        return result

    def _finish_send(
        self, one: OneSend
    ) -> Result[ProduceResult, QiError] | asyncio.Future[Result[ProduceResult, QiError]]:
        """The Result of a single send, once its outcome is known (on the loop); a future of
        it when the broker must first be asked what became of the message's partition."""
        outcome = one.outcome
        if type(outcome) is ProduceResult:  # the common case, without the calls below
            return Success(outcome)
        return self._send_result(one.topic, one.message, outcome)

    def _finish_slow_send(
        self, sends: Sends
    ) -> Result[ProduceResult, QiError] | asyncio.Future[Result[ProduceResult, QiError]]:
        """As _finish_send, for a send that went the long way round."""
        assert sends.messages is not None
        outcome = sends.outcomes[0]
        if outcome is None:
            outcome = sends.acks.result(0)
        return self._send_result(sends.topic, sends.messages[0], outcome)

    def _send_result(
        self, topic: str, message: StreamingMessage, outcome: Outcome
    ) -> Result[ProduceResult, QiError] | asyncio.Future[Result[ProduceResult, QiError]]:
        if _lost_partition(outcome):
            return asyncio.ensure_future(self._finish_lost_partition(topic, message, outcome))
        outcome = self._outcome(outcome, "send", topic)
        return Success(outcome) if isinstance(outcome, ProduceResult) else Failure(outcome)

    async def _finish_lost_partition(
        self, topic: str, message: StreamingMessage, outcome: Outcome
    ) -> Result[ProduceResult, QiError]:
        result = (await self._explained(topic, (message,), (outcome,), "send"))[0]
        return Success(result) if isinstance(result, ProduceResult) else Failure(result)

    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        return await self._deliver(topic, messages, "send_batch")

    async def _deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> Sequence[ProduceResult | QiError]:
        hub, producer = self._hub, self._producer
        if hub is None or producer is None:
            raise OperationFailed(_disconnected(operation))
        sends = Sends(topic, len(messages), asyncio.get_running_loop().create_future())
        produced = await self._produce(hub, producer, sends, messages, operation)
        hub.handed_over(sends, produced)
        # No timer of our own: librdkafka reports every message within message.timeout.ms
        # (= request_timeout); the hub's sweep times out what it does not report, and the
        # hub completes whatever is left if it stops.
        await sends.future
        outcomes = sends.outcomes
        if sends.failed or sends.delivered != len(outcomes):
            # Every message's outcome at once: the acknowledged ones' results too.
            acks = sends.acks
            for index, outcome in enumerate(outcomes):
                if outcome is None:
                    outcomes[index] = acks.result(index)
            return await self._explained(topic, messages, outcomes, operation)
        return Delivered(sends.acks)  # every message acknowledged: results built when read

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
                    refused = _disconnected(operation)
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
                if error.code() == KafkaError._UNKNOWN_TOPIC:
                    # librdkafka remembers a topic it found missing; it may exist by now. One
                    # deleted and created again, or one a broker gives no topic id (noida-db),
                    # it believes back only after one more metadata answer,
                    # topic.metadata.propagation.max.ms after it saw the topic again.
                    now = time.monotonic()
                    if topic_deadline is None:
                        topic_deadline = now + self._config.request_timeout
                    try:
                        exists = now < topic_deadline and await self._topic_exists(topic)
                    except Exception as lookup:
                        self._fail_rest(sends, index, self._unsent(lookup, operation, sends))
                        return produced
                    if not exists:
                        self._fail_rest(sends, index, self._refused(error, operation, topic))
                        return produced
                    await asyncio.sleep(_TOPIC_RECHECK)
                    continue
                outcomes[index] = self._refused(error, operation, topic)
            except EpochTimestamp:
                release(report)
                outcomes[index] = self._epoch_refused(operation, topic)
            except Exception as exc:  # never strand the messages already handed over
                release(report)
                outcomes[index] = self._unsent(exc, operation, sends)
            else:
                produced += 1
            index += 1
        return produced

    async def _topic_exists(self, topic: str) -> bool:
        """Refresh librdkafka's metadata of ``topic`` and say whether it exists."""
        return await self._partition_count(topic) is not None

    async def _partition_count(self, topic: str) -> int | None:
        """Refresh librdkafka's metadata of ``topic``: its partition count, None if it does
        not exist.

        Concurrent calls for one topic share one request: the worker runs them one at a
        time, so one per send would make the last send wait for all the others.
        """
        lookup = self._lookups.get(topic)
        if lookup is None:
            lookup = self._lookups[topic] = asyncio.ensure_future(self._look_up(topic))
            lookup.add_done_callback(functools.partial(self._looked_up, topic))
        return await asyncio.shield(lookup)

    def _looked_up(self, topic: str, lookup: asyncio.Future[int | None]) -> None:
        self._lookups.pop(topic, None)
        if not lookup.cancelled():
            lookup.exception()  # retrieved: every caller may have been cancelled meanwhile

    async def _look_up(self, topic: str) -> int | None:
        producer, worker = self._producer, self._worker
        if producer is None or worker is None:
            return None
        timeout = min(self._config.request_timeout, self._config.connection_timeout)
        metadata = await worker.run(functools.partial(producer.list_topics, topic, timeout))
        found = metadata.topics.get(topic)
        return None if found is None or found.error is not None else len(found.partitions)

    async def _explained(
        self,
        topic: str,
        messages: Sequence[StreamingMessage],
        outcomes: Sequence[Outcome],
        operation: str,
    ) -> list[ProduceResult | QiError]:
        """The results of a call some of whose messages failed.

        librdkafka reports a message whose partition vanished from its metadata as
        ``_UNKNOWN_PARTITION`` whatever the reason, so the broker is asked once: a topic
        that no longer exists was deleted under the message (``TOPIC_NOT_FOUND``; an
        attempt may have been written before), and an explicit partition beyond the
        topic's count never existed, so nothing of that message was ever written.
        """
        count: int | None = -1  # -1: not asked, or no answer
        if any(map(_lost_partition, outcomes)):
            try:
                count = await self._partition_count(topic)
            except Exception:  # no answer, or closing: the verdicts stay as reported
                count = -1
        return [
            self._outcome(outcome, operation, topic, message.partition, count)
            for message, outcome in zip(messages, outcomes, strict=True)
        ]

    def _refused(self, error: KafkaError, operation: str, topic: str) -> QiError:
        """A message ``produce()`` refused: librdkafka never took it."""
        return kafka_error(
            error,
            operation,
            ErrorCode.PRODUCE_FAILED,
            transactional=self._transactional,
            topic=topic,
            delivery=NOT_WRITTEN,
        )

    def _epoch_refused(self, operation: str, topic: str) -> QiError:
        return contract_error(
            ErrorCode.INVALID_MESSAGE,
            "the confluent backend cannot send a timestamp of 0 ms (librdkafka reads 0 as "
            '"now"): use one from 1 ms on, or the aiokafka or memory backend',
            operation,
            topic=topic,
            delivery=NOT_WRITTEN,
        )

    def _unsent(self, exc: BaseException, operation: str, sends: Sends) -> QiError:
        return translate_exception(exc, operation, ErrorCode.PRODUCE_FAILED).with_context(
            topic=sends.topic, delivery=NOT_WRITTEN
        )

    @staticmethod
    def _fail_rest(sends: Sends, start: int, error: QiError) -> None:
        outcomes = sends.outcomes
        for index in range(start, len(outcomes)):
            outcomes[index] = error

    def _queue_full(self, operation: str, topic: str) -> QiError:
        return contract_error(
            ErrorCode.QUEUE_FULL,
            f"the local producer queue stayed full for {self._config.request_timeout:.1f}s",
            operation,
            topic=topic,
            delivery=NOT_WRITTEN,
            kafka_error="_QUEUE_FULL",
            retriable=True,
        )

    def _outcome(
        self,
        outcome: Outcome,
        operation: str,
        topic: str,
        partition: int | None = None,
        partitions: int | None = -1,
    ) -> ProduceResult | QiError:
        """One message's result; ``partitions``: the topic's partition count as the broker
        gave it after the message's partition was lost (None: the topic is gone; -1: unasked)."""
        if isinstance(outcome, ProduceResult | QiError):
            return outcome
        if isinstance(outcome, KafkaError):  # from a delivery report
            delivery = reported_delivery(
                outcome, retries=self._retries, idempotent=self._producer_config.idempotent
            )
            if _lost_partition(outcome):
                if partitions is None:
                    outcome = KafkaError(
                        KafkaError.UNKNOWN_TOPIC_OR_PART, f"topic {topic!r} does not exist any more"
                    )
                elif partition is not None and 0 <= partitions <= partition:
                    delivery = NOT_WRITTEN  # Kafka never takes partitions away
            return kafka_error(
                outcome,
                operation,
                ErrorCode.PRODUCE_FAILED,
                transactional=self._transactional,
                topic=topic,
                delivery=delivery,
            )
        return contract_error(
            ErrorCode.PRODUCE_FAILED,
            "the producer was disconnected before the message was acknowledged",
            operation,
            topic=topic,
            delivery=DELIVERY_UNKNOWN,
        )


def _lost_partition(outcome: Outcome) -> bool:
    """librdkafka failed a queued message because its partition vanished from the metadata:
    the topic was deleted (Kafka never takes partitions away), or the message named one the
    topic never had."""
    return type(outcome) is KafkaError and outcome.code() == KafkaError._UNKNOWN_PARTITION
