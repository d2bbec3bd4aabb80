"""Helpers of the contract suite: Result assertions, polling, message collection.

The error table below is copied from the contract (section 6) on purpose: the
suite checks the library against the document, not against the library's own table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, Final, Protocol

import pytest

from qi.base import ErrorCategory, Failure, QiError
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    ProduceResult,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
)
from qi.base.streaming.devbroker import kind_from_environment
from testkit import Collector, ok

CATEGORIES: Final[dict[str, ErrorCategory]] = {
    "STREAMING_INVALID_CONFIG": ErrorCategory.CONFIGURATION,
    "STREAMING_UNKNOWN_IMPLEMENTATION": ErrorCategory.CONFIGURATION,
    "STREAMING_INVALID_MESSAGE": ErrorCategory.VALIDATION,
    "STREAMING_INVALID_TOPIC": ErrorCategory.VALIDATION,
    "STREAMING_MESSAGE_TOO_LARGE": ErrorCategory.VALIDATION,
    "STREAMING_TOPIC_ALREADY_EXISTS": ErrorCategory.VALIDATION,
    "STREAMING_NOT_SUBSCRIBED": ErrorCategory.VALIDATION,
    "STREAMING_INVALID_ARGUMENT": ErrorCategory.VALIDATION,
    "STREAMING_TOPIC_NOT_FOUND": ErrorCategory.RESOURCE,
    "STREAMING_QUEUE_FULL": ErrorCategory.RESOURCE,
    "STREAMING_NOT_CONNECTED": ErrorCategory.SYSTEM,
    "STREAMING_CONNECTION_FAILED": ErrorCategory.NETWORK,
    "STREAMING_PRODUCE_FAILED": ErrorCategory.NETWORK,
    "STREAMING_BATCH_PARTIAL_FAILURE": ErrorCategory.NETWORK,
    "STREAMING_COMMIT_FAILED": ErrorCategory.CONCURRENCY,
    "STREAMING_TIMEOUT": ErrorCategory.TIMEOUT,
    "STREAMING_AUTHENTICATION_FAILED": ErrorCategory.AUTHENTICATION,
    "STREAMING_AUTHORIZATION_FAILED": ErrorCategory.AUTHORIZATION,
    "STREAMING_ADMIN_FAILED": ErrorCategory.SYSTEM,
    "STREAMING_HANDLER_FAILED": ErrorCategory.BUSINESS,
    "STREAMING_TRANSACTION_FAILED": ErrorCategory.CONCURRENCY,
    "STREAMING_PRODUCER_FENCED": ErrorCategory.CONCURRENCY,
}

ON_MEMORY_BROKER: Final = frozenset({"memory", "fourth"})
"""Backends whose broker is the in-process one: ``memory``, and the test-only ``fourth``
that wraps it (tests/fourth_backend)."""
DELIVERY_VALUES: Final = ("not_written", "unknown")


def expect_failure(
    result: object,
    code: str,
    *,
    implementation: str | None = None,
) -> QiError:
    """Assert ``result`` is a Failure with ``code``, its contract category and required context."""
    assert isinstance(result, Failure), f"expected a Failure {code}, got {result!r}"
    error = result.error
    assert isinstance(error, QiError), f"a Failure must carry a QiError, got {error!r}"
    assert error.code == code, f"expected {code}, got {error.code}: {error.message}"
    assert error.category == CATEGORIES[code], (
        f"{code} must have category {CATEGORIES[code]}, got {error.category}"
    )
    operation = error.context.get("operation")
    assert isinstance(operation, str) and operation, f"no context['operation'] in {error!r}"
    shown = error.context.get("implementation")
    assert isinstance(shown, str) and shown, f"no context['implementation'] in {error!r}"
    if implementation is not None:
        assert shown == implementation, f"context['implementation'] is {shown!r}"
    return error


def expect_produce_failure(result: object, code: str, *, implementation: str) -> QiError:
    """A produce failure: also says whether the message may have been written."""
    error = expect_failure(result, code, implementation=implementation)
    assert error.context.get("delivery") in DELIVERY_VALUES, (
        f"a produce failure needs context['delivery'] in {DELIVERY_VALUES}: {error!r}"
    )
    return error


def expect_broker_error(error: QiError) -> None:
    """Errors that come from a broker name the broker's error and whether it is retriable."""
    kafka_error = error.context.get("kafka_error")
    assert isinstance(kafka_error, str) and kafka_error, f"no context['kafka_error']: {error!r}"
    assert isinstance(error.context.get("retriable"), bool), f"no context['retriable']: {error!r}"


class TopicFactory(Protocol):
    """Creates a topic with a unique name (deleted after the test) and returns its name."""

    def __call__(
        self,
        partitions: int = 1,
        *,
        name: str | None = None,
        config: Mapping[str, str] | None = None,
    ) -> Awaitable[str]: ...


class ConsumerConfigFactory(Protocol):
    """A ConsumerConfig with a fresh group id (unless given) and test-friendly timings."""

    def __call__(self, group_id: str | None = None, **changes: Any) -> ConsumerConfig: ...


class MemberClientsFactory(Protocol):
    """Two new clients of the backend under test (on ``config``, else the test's config)
    whose group members sort first and second; disconnected after the test."""

    def __call__(
        self, config: StreamingConfig | None = None
    ) -> tuple[StreamingClient, StreamingClient]: ...


async def start_consumer(
    client: StreamingClient,
    config: ConsumerConfig,
    subscription: SubscriptionConfig,
    run_config: ConsumerRunConfig,
) -> StreamingConsumer:
    """Get a consumer, subscribe it and run it; fails the test on any Failure."""
    consumer = ok(await client.get_consumer(config))
    ok(await consumer.subscribe(subscription))
    ok(await consumer.run(run_config))
    return consumer


async def start_collecting(
    client: StreamingClient,
    config: ConsumerConfig,
    topics: Iterable[str],
    *,
    from_beginning: bool = True,
    batches: bool = False,
) -> tuple[StreamingConsumer, Collector]:
    """A running consumer of ``topics`` feeding a new Collector (through ``each_batch`` when
    ``batches``); fails the test on any Failure."""
    collector = Collector()
    consumer = await start_consumer(
        client,
        config,
        SubscriptionConfig(topics=tuple(topics), from_beginning=from_beginning),
        collector.run_config(batches=batches),
    )
    return consumer, collector


class CollectingConsumerFactory(Protocol):
    """:func:`start_collecting` on the test's client, with ``consumer_config()`` by default."""

    def __call__(
        self,
        *topics: str,
        config: ConsumerConfig | None = None,
        from_beginning: bool = True,
        batches: bool = False,
    ) -> Awaitable[tuple[StreamingConsumer, Collector]]: ...


async def consume(
    client: StreamingClient,
    config: ConsumerConfig,
    topics: Iterable[str],
    count: int,
    *,
    from_beginning: bool = True,
) -> list[ConsumedMessage]:
    """Run a consumer until it has ``count`` messages, then disconnect it (which commits)."""
    consumer, collector = await start_collecting(
        client, config, topics, from_beginning=from_beginning
    )
    try:
        return await collector.wait_for(count)
    finally:
        ok(await consumer.disconnect())


async def resumed_offsets(
    client: StreamingClient, config: ConsumerConfig, topic: str, count: int
) -> list[int]:
    """The offsets of what a new member of ``config``'s group gets from ``topic`` until it
    has ``count`` messages (more if more came at once): where the group resumes."""
    resumed = dataclasses.replace(config, heartbeat_interval=0.6)
    return [message.offset for message in await consume(client, resumed, [topic], count)]


async def produce(
    producer: StreamingProducer,
    topic: str,
    values: Iterable[bytes],
    *,
    partition: int | None = None,
    key: str | None = None,
) -> list[ProduceResult]:
    """Send values one by one; fails the test on any Failure."""
    return [
        ok(await producer.send(topic, StreamingMessage(value, key=key, partition=partition)))
        for value in values
    ]


def numbered(prefix: str, count: int, start: int = 0) -> list[bytes]:
    """Distinct payloads ``prefix-0``, ``prefix-1``, ..."""
    return [f"{prefix}-{index}".encode() for index in range(start, start + count)]


NOIDA_KEEPS_GONE_MEMBERS: Final = (
    "noida-db 0.2.3 never evicts a member that vanished, and aiokafka rejoins under a new "
    "member id after a commit refused for a newer generation: noida-db then waits for the "
    "old member for ever and the second member's run() times out (README, Development brokers)"
)
NOIDA_MOVES_THE_GENERATION_EARLY: Final = (
    "noida-db 0.2.3 moves a group's generation on when a member asks to join, before the "
    "rebalance completes, so a commit of the current generation made while the rebalance "
    "runs is refused (ILLEGAL_GENERATION); Kafka accepts it (README, Development brokers)"
)


def skip_on_noida(backend: str, backends: Iterable[str], reason: str) -> None:
    """Skip the running test of ``backend`` (one of ``backends``) on a noida-db session."""
    if backend not in backends or os.environ.get("QI_TEST_BROKERS"):
        return
    if kind_from_environment() == "noida":
        pytest.skip(reason)


class LoopTurns:
    """A handler that never awaits, and a task that counts the event loop's turns meanwhile.

    ``seen`` holds, per handled message, the turn count when it was handled: messages
    that share a count were handled without the loop running anything else between them.
    """

    def __init__(self) -> None:
        self.turns = 0
        self.seen: list[int] = []
        self._ticking: asyncio.Future[None] | None = None

    async def handle(self, payload: EachMessagePayload) -> None:
        self.seen.append(self.turns)  # never awaits

    async def _tick(self) -> None:
        while True:
            self.turns += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> LoopTurns:
        self._ticking = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._ticking is not None
        self._ticking.cancel()
