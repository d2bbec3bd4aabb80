"""The confluent consumer backend: owns the native Consumer and its worker thread."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final, Literal

from confluent_kafka import Consumer

from qi.base.streaming import ConsumerConfig, StreamingConfig, SubscriptionConfig
from qi.base.streaming.backend import ConsumerBackend, PartitionSource
from qi.base.streaming.backends.confluent._connect import (
    ClientErrors,
    client_settings,
    prove_broker,
)
from qi.base.streaming.backends.confluent._settings import consumer_settings, redacted
from qi.base.streaming.backends.confluent._source import ConfluentSource
from qi.base.streaming.backends.confluent._worker import BlockingWorker

_NativeState = Literal["fresh", "used", "closed"]

# The least time disconnect() gives the native close, even when the run loop used it all.
_MIN_PATIENCE: Final = 0.5


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


class ConfluentConsumer(ConsumerBackend):
    """The consumer backend over ``confluent_kafka.Consumer``.

    ``auto.offset.reset`` is fixed when a librdkafka consumer is created, but
    ``from_beginning`` is only known at ``subscribe``; and a run ends by closing
    the native consumer (that is how it leaves the group cleanly). So the native
    consumer created by ``connect`` is used by the first run if its reset policy
    fits, and replaced by a fresh one otherwise.
    """

    def __init__(
        self, config: StreamingConfig, consumer_config: ConsumerConfig, logger: logging.Logger
    ) -> None:
        self._config = config
        self._consumer_config = consumer_config
        self._logger = logger
        self._native_consumer: Consumer | None = None
        self._native_state: _NativeState = "closed"
        self._from_beginning = False
        self._worker: BlockingWorker | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        self._worker = BlockingWorker("qi-confluent-consumer")
        errors = ClientErrors(self._logger)
        consumer = self._build(from_beginning=False, errors=errors)
        await prove_broker(
            self._worker,
            consumer.list_topics,
            self._config.connection_timeout,
            errors,
            serve=consumer.poll,
        )

    async def close(self, deadline: float) -> None:
        worker, self._worker = self._worker, None
        consumer, state = self._native_consumer, self._native_state
        self._native_state = "closed"
        if worker is None:
            return
        patience = max(deadline - time.monotonic(), _MIN_PATIENCE)
        if consumer is not None and state != "closed":
            # Queued behind whatever the worker is doing (a commit to a dead broker can
            # take request_timeout); librdkafka's close itself leaves the group.
            closing = asyncio.ensure_future(worker.run(consumer.close))
            await asyncio.wait({closing}, timeout=patience)
            if not closing.done():
                closing.add_done_callback(_ignore_outcome)
            elif closing.exception() is not None:
                self._logger.debug("closing the confluent consumer failed: %s", closing.exception())
        patience = max(deadline - time.monotonic(), _MIN_PATIENCE)
        if not await worker.close(patience):
            self._logger.warning(
                "the confluent consumer is still closing after disconnect(); "
                "its thread ends when librdkafka returns"
            )

    def native_client(self) -> object:
        return self._native_consumer

    # -- runs ----------------------------------------------------------------------------------

    def partition_source(self, subscription: SubscriptionConfig) -> PartitionSource:
        if self._worker is None:
            raise RuntimeError("the consumer is not connected")
        return ConfluentSource(
            self,
            self._worker,
            subscription,
            request_timeout=self._config.request_timeout,
            logger=self._logger,
        )

    # -- the native consumer, lent to one run at a time (NativeConsumerLease) ------------------

    async def acquire(self, from_beginning: bool) -> Consumer:
        """A native consumer for a new run, with the reset policy it needs."""
        consumer = self._native_consumer
        if consumer is not None and self._native_state == "fresh":
            if self._from_beginning == from_beginning:
                self._native_state = "used"
                return consumer
            assert self._worker is not None
            # Spent before the close is awaited: a run cancelled meanwhile must not leave it
            # "fresh" for the next run to be handed (closed, it fails every call).
            self._native_state = "closed"
            await self._worker.run(consumer.close)  # never joined a group: closes at once
        consumer = self._build(from_beginning=from_beginning, errors=ClientErrors(self._logger))
        self._native_state = "used"
        return consumer

    async def release(self, patience: float) -> None:
        """Close the consumer the run used (librdkafka's close leaves the group), waiting at
        most ``patience`` seconds; the close goes on after that."""
        consumer, worker = self._native_consumer, self._worker
        if consumer is None or worker is None or self._native_state != "used":
            return
        # This close is the native consumer's last call: nobody must queue another.
        self._native_state = "closed"
        closing = asyncio.ensure_future(worker.run(consumer.close))
        await asyncio.wait({closing}, timeout=patience)
        if not closing.done():
            closing.add_done_callback(_ignore_outcome)
            self._logger.debug("leaving the group goes on after %.1fs", patience)
            return
        closing.result()

    def _build(self, *, from_beginning: bool, errors: ClientErrors) -> Consumer:
        settings = consumer_settings(
            self._config, self._consumer_config, from_beginning=from_beginning
        )
        self._logger.debug("creating a confluent consumer with %s", redacted(settings))
        consumer = Consumer(client_settings(settings, self._logger, errors))
        self._native_consumer = consumer
        self._native_state = "fresh"
        self._from_beginning = from_beginning
        return consumer
