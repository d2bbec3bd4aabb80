"""The memory producer: appends straight to the broker's partition logs.

A batch is appended in one synchronous loop (no await per message), which is
what makes the memory backend fast enough to benchmark the layers above it.
The only awaits are the fault-injection ones: waiting for an unreachable
broker and a delayed acknowledgement.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import cast

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
    NOT_WRITTEN,
    NativeTransactions,
    OperationFailed,
    ProducerBackend,
    TopicPartition,
)
from qi.base.streaming.backends.memory._broker import MemoryBroker, broker_for
from qi.base.streaming.backends.memory._errors import (
    BrokerError,
    MemoryBrokerError,
    broker_error,
    produce_outcomes,
    translate,
    unreachable,
)
from qi.base.streaming.backends.memory._records import StickyPartitions
from qi.base.streaming.backends.memory._transactions import (
    MemoryGroupMetadata,
    ProducerSession,
)


class MemoryTransactions:
    """A memory producer's transactions, run by its broker's coordinator."""

    def __init__(
        self, broker: MemoryBroker, session: ProducerSession, config: StreamingConfig
    ) -> None:
        self._broker = broker
        self._session = session
        self._config = config
        # An abort that could not reach the broker: the next begin finishes it first, as a
        # Kafka client retries its abort, rather than leave the transaction open (holding
        # read_committed readers back) until the timeout aborts it and fences the producer.
        self._abort_owed = False

    async def begin(self) -> None:
        await self._reachable("transaction")
        coordinator = self._broker.transactions
        if self._abort_owed:
            coordinator.abort(self._session)
            self._abort_owed = False
        coordinator.begin(self._session)

    async def send_offsets(self, offsets: Mapping[TopicPartition, int], group: object) -> None:
        assert isinstance(group, MemoryGroupMetadata)
        await self._reachable("transaction.send_offsets")
        self._broker.transactions.add_offsets(self._session, group, offsets)

    async def commit(self) -> None:
        await self._reachable("transaction.commit")
        self._broker.transactions.commit(self._session)

    async def abort(self) -> None:
        self._abort_owed = True
        await self._reachable("transaction.abort")
        self._broker.transactions.abort(self._session)
        self._abort_owed = False

    async def _reachable(self, operation: str) -> None:
        if not await self._broker.wait_reachable(self._config.request_timeout):
            raise OperationFailed(unreachable(self._config, operation))


class MemoryProducer(ProducerBackend):
    """Writes to the in-process broker of its ``brokers`` value."""

    def __init__(self, config: StreamingConfig, producer_config: ProducerConfig) -> None:
        self._config = config
        self._producer_config = producer_config
        self._broker: MemoryBroker | None = None
        # Where messages with neither key nor partition go: one partition for a while, as
        # librdkafka's default sticky.partitioning.linger.ms (twice linger.ms) does.
        self._sticky = StickyPartitions(2 * producer_config.linger)
        self._acks_none = producer_config.acks == 0
        self._waiting = 0
        self._drained: asyncio.Event | None = None
        self._session: ProducerSession | None = None
        self._transactions: MemoryTransactions | None = None

    async def open(self) -> None:
        broker = broker_for(self._config.brokers)
        if not await broker.wait_reachable(self._config.connection_timeout):
            raise OperationFailed(unreachable(self._config, "connect"))
        transactional_id = self._producer_config.transactional_id
        if transactional_id is not None:
            # As a Kafka producer's init_transactions(): fences every older instance.
            session = self._session = broker.transactions.init_producer(
                transactional_id, self._producer_config.transaction_timeout
            )
            self._transactions = MemoryTransactions(broker, session, self._config)
        self._broker = broker
        self._drained = asyncio.Event()
        self._drained.set()

    async def close(self) -> None:
        # Sends still waiting on a fault end by themselves within request_timeout.
        if self._drained is not None:
            await self._drained.wait()

    def native_client(self) -> object:
        return self._broker

    def transactions(self) -> NativeTransactions:
        assert self._transactions is not None
        return self._transactions

    async def send(self, topic: str, message: StreamingMessage) -> Result[ProduceResult, QiError]:
        outcomes = await self._deliver(topic, (message,), "send")
        outcome = outcomes if isinstance(outcomes, QiError) else outcomes[0]
        return Failure(outcome) if isinstance(outcome, QiError) else Success(outcome)

    async def send_batch(
        self, topic: str, messages: Sequence[StreamingMessage]
    ) -> Sequence[ProduceResult | QiError]:
        outcomes = await self._deliver(topic, messages, "send_batch")
        if isinstance(outcomes, QiError):
            return [outcomes] * len(messages)
        return outcomes

    async def _deliver(
        self, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> Sequence[ProduceResult | QiError] | QiError:
        broker = self._broker
        assert broker is not None
        if broker.reachable and not broker.delivery_delay:
            return self._append(broker, topic, messages, operation)
        return await self._deliver_slowly(broker, topic, messages, operation)

    def _append(
        self, broker: MemoryBroker, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> Sequence[ProduceResult | QiError] | QiError:
        session = self._session
        try:
            if session is None:
                produced = broker.produce(topic, messages, self._sticky, self._acks_none)
            else:
                produced = broker.transactions.produce(session, topic, messages, self._sticky)
        except MemoryBrokerError as refused:  # fenced, or no transaction open: nothing written
            return translate(refused, operation, ErrorCode.PRODUCE_FAILED).with_context(
                topic=topic, delivery=NOT_WRITTEN
            )
        # The broker answers with native errors; they become QiErrors here, by the table.
        if isinstance(produced, MemoryBrokerError):
            return translate(produced, operation, ErrorCode.PRODUCE_FAILED)
        outcomes, failures = produced
        if failures:
            return produce_outcomes(outcomes, operation)
        # Every one a ProduceResult (an Appended: built when first read).
        return cast(Sequence[ProduceResult | QiError], outcomes)

    async def _deliver_slowly(
        self, broker: MemoryBroker, topic: str, messages: Sequence[StreamingMessage], operation: str
    ) -> Sequence[ProduceResult | QiError] | QiError:
        """Delivery under an injected fault: an unreachable broker or a delayed acknowledgement."""
        timeout = self._config.request_timeout
        self._waiting += 1
        assert self._drained is not None
        self._drained.clear()
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            if not await broker.wait_reachable(timeout):
                return unreachable(self._config, operation, topic=topic, delivery=NOT_WRITTEN)
            outcomes = self._append(broker, topic, messages, operation)
            delay = broker.delivery_delay
            if isinstance(outcomes, QiError) or self._acks_none or not delay:
                return outcomes
            left = timeout - (loop.time() - started)
            await asyncio.sleep(max(0.0, min(delay, left)))
            if delay <= left:
                return outcomes
            lost = broker_error(
                BrokerError.REQUEST_TIMED_OUT,
                f"no acknowledgement from the broker within request_timeout={timeout:.1f}s",
                operation,
                topic=topic,
                delivery=DELIVERY_UNKNOWN,
            )
            return [
                lost.with_context(partition=outcome.partition)
                if isinstance(outcome, ProduceResult)
                else outcome
                for outcome in outcomes
            ]
        finally:
            self._waiting -= 1
            if not self._waiting:
                self._drained.set()
