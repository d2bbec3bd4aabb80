"""The aiokafka producer: messages laid out as record batches, each message its own result.

A call's messages are laid out into aiokafka record batches in input order
(``_batch``: ``create_batch``/``send_batch``, no future per message), so a
partition receives them in that order; each message's offset is read back from
its batch's base offset plus its position in the batch, so every message keeps
its own outcome. Handing messages over and waiting for them is ``_send.Sender``'s
part (sends arriving while aiokafka still holds a batch of ours join its open
batches); this module is the lifecycle, the transactions and the pooling of
concurrent ``send()`` calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    IncompatibleBrokerVersion,
    KafkaConnectionError,
    KafkaError,
    UnsupportedVersionError,
    for_code,
)
from aiokafka.producer.transaction_manager import TransactionState
from aiokafka.protocol.transaction import InitProducerIdRequest

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ErrorCode,
    ProducerConfig,
    ProduceResult,
    StreamingConfig,
    StreamingMessage,
)
from qi.base.streaming._fast_values import DeferredResults
from qi.base.streaming.backend import (
    DELIVERY_UNKNOWN,
    NativeTransactions,
    OperationFailed,
    ProducerBackend,
)
from qi.base.streaming.backends.aiokafka import _errors, _private
from qi.base.streaming.backends.aiokafka._connect import bootstrap_to_its_end, start_within
from qi.base.streaming.backends.aiokafka._metadata import forbid_topic_auto_creation
from qi.base.streaming.backends.aiokafka._send import Sender
from qi.base.streaming.backends.aiokafka._sequences import give_back_refused_sequences
from qi.base.streaming.backends.aiokafka._settings import producer_settings
from qi.base.streaming.backends.aiokafka._transactions import (
    AiokafkaTransactions,
    fence_offset_commits,
)
from qi.base.streaming.backends.aiokafka._vanished import DeletedTopicWatch

# Seconds aiokafka's stop() may take after the flush: closing sockets, ending its sender task.
_STOP_GRACE: Final = 3.0
# What aiokafka itself sends as the transaction timeout of a non-transactional producer id.
_NO_TRANSACTION_TIMEOUT_MS: Final = 2**31 - 1
# InitProducerId answers that mean "this broker will not give an idempotent producer an id";
# other errors (coordinator loading, ...) are transient and aiokafka retries them itself.
_NO_IDEMPOTENCE_ERRORS: Final = frozenset({-1, 35})


class AiokafkaProducer(ProducerBackend):
    """The producer backend over ``aiokafka.AIOKafkaProducer``."""

    def __init__(
        self, config: StreamingConfig, producer_config: ProducerConfig, logger: logging.Logger
    ) -> None:
        self._config = config
        self._producer_config = producer_config
        self._logger = logger
        self._producer: Any = None
        # send() calls of this loop iteration, by topic, not yet handed to a flush task.
        self._pending: dict[str, tuple[list[StreamingMessage], list[asyncio.Future[Any]]]] = {}
        self._flushes: set[asyncio.Future[None]] = set()
        self._sender = Sender(self, config)
        self._watch: DeletedTopicWatch | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            producer = AIOKafkaProducer(**producer_settings(self._config, self._producer_config))
        except (ValueError, RuntimeError) as exc:  # a codec library missing, a bad combination
            raise OperationFailed(
                _errors.contract_error(
                    ErrorCode.INVALID_CONFIG, f"aiokafka refused the settings: {exc}", "connect"
                )
            ) from exc
        self._producer = producer
        forbid_topic_auto_creation(producer.client)
        bootstrap_to_its_end(producer.client)

        async def start() -> None:
            if self._producer_config.idempotent:
                # aiokafka's start() would retry a refused producer id forever: ask first.
                await producer.client.bootstrap()
                await self._check_idempotence(producer.client)
            await producer.start()

        await start_within(self._config, start)
        if self._producer_config.transactional_id is not None:
            fence_offset_commits(producer)
        give_back_refused_sequences(producer)
        self._watch = DeletedTopicWatch(producer, self._logger)
        self._watch.start()

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
            _errors.contract_error(
                ErrorCode.INVALID_CONFIG,
                "idempotence is not supported by the broker (it answered the producer-id "
                f"request with {name}): use ProducerConfig(idempotent=False) with this broker",
                "connect",
                kafka_error=name,
                retriable=False,
            )
        )

    async def close(self) -> None:
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
            if self._watch is not None:
                self._watch.stop()
                self._watch = None
            self._sender.wake_all()
            await self._stop(producer)

    async def _stop(self, producer: Any) -> None:
        # stop() waits for every queued batch; fail the ones the flush could not deliver so it
        # cannot hang (aiokafka offers no public way to abandon them).
        # Not ProducerClosed: a batch already sent may have been written.
        _private.fail_queued(producer, KafkaConnectionError("the producer was disconnected"))
        stopping = asyncio.ensure_future(producer.stop())
        done, _ = await asyncio.wait({stopping}, timeout=_STOP_GRACE)
        if not done:
            stopping.cancel()
            self._logger.warning("aiokafka producer did not stop within %.1fs", _STOP_GRACE)
        elif stopping.exception() is not None:
            self._logger.debug("aiokafka producer stop failed", exc_info=stopping.exception())

    # Stopping aiokafka after the flush (closing sockets, ending its sender task) takes more.
    close_grace = _STOP_GRACE

    def native_client(self) -> object:
        return self._producer

    def transactions(self) -> NativeTransactions:
        assert self._producer is not None
        return AiokafkaTransactions(self._producer, self._config.request_timeout)

    # -- sending -------------------------------------------------------------------------------

    async def send(self, topic: str, message: StreamingMessage) -> Result[ProduceResult, QiError]:
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
            outcomes: Sequence[ProduceResult | QiError] = await self._sender.deliver(
                topic, messages, "send"
            )
        except OperationFailed as exc:
            outcomes = [exc.error] * len(messages)
        except Exception as exc:  # the boundary would translate it; this task is ours to do so
            error = _errors.translate_native(exc, "send", ErrorCode.PRODUCE_FAILED).with_context(
                topic=topic, delivery=DELIVERY_UNKNOWN
            )
            outcomes = [error] * len(messages)
        except BaseException:  # cancelled: every caller still waiting learns it
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
            raise
        self._spoil_transaction(outcomes)
        for waiter, outcome in zip(waiters, outcomes, strict=True):
            if not waiter.done():  # a caller that was cancelled no longer waits
                waiter.set_result(
                    Failure(outcome) if isinstance(outcome, QiError) else Success(outcome)
                )

    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        outcomes = await self._sender.deliver(topic, messages, "send_batch")
        self._spoil_transaction(outcomes)
        return outcomes

    def _spoil_transaction(self, outcomes: Sequence[ProduceResult | QiError]) -> None:
        """A message of the open transaction was not written: make the transaction abortable.

        aiokafka would commit the rest; Kafka's Java client and librdkafka refuse to commit
        a transaction with a failed send (what it holds is not what was sent), and so does
        this backend, through aiokafka's own abortable state (commit then fails with it).
        """
        producer = self._producer
        if (
            producer is None
            or self._producer_config.transactional_id is None
            or isinstance(outcomes, DeferredResults)  # every message acknowledged
        ):
            return
        failed = next((outcome for outcome in outcomes if isinstance(outcome, QiError)), None)
        manager = _private.transaction_manager(producer)
        # Only an open transaction: a fatal state (fenced) must stay fatal. Not through
        # error_transaction(): it forgets the partitions written, so the abort would end
        # the transaction locally and leave it open on the broker, holding read_committed
        # readers back until transaction_timeout.
        # A fenced send is aiokafka's to make fatal (commit then says fenced).
        if (
            failed is not None
            and failed.code != ErrorCode.PRODUCER_FENCED
            and manager.state is TransactionState.IN_TRANSACTION
        ):
            _private.make_abortable(
                manager,
                KafkaError(f"a message of this transaction was not written: {failed.message}"),
            )
