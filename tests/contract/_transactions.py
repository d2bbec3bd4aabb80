"""Helpers of the transaction and exactly-once contract tests.

Both read what a transactional producer left in a topic the way Kafka's
``read_committed`` consumers do, and check group offsets through the admin.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    ProducerConfig,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    Transaction,
)
from testkit import WAIT, ok, unique, wait_until

from ._support import ConsumerConfigFactory, consume, start_collecting, start_consumer


def transactional(transactional_id: str | None = None, **changes: Any) -> ProducerConfig:
    """A transactional producer config with a fresh id (unless given)."""
    config = ProducerConfig(transactional_id=transactional_id or unique("txn"))
    return dataclasses.replace(config, **changes)


async def begin(producer: StreamingProducer) -> Transaction:
    return ok(await producer.transaction())


async def start_from_beginning(
    client: StreamingClient, config: ConsumerConfig, topic: str, run_config: ConsumerRunConfig
) -> StreamingConsumer:
    """Run a consumer of ``topic`` from its first record; fails the test on any Failure."""
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    return await start_consumer(client, config, subscription, run_config)


async def committed_values(
    client: StreamingClient,
    consumer_config: ConsumerConfigFactory,
    topic: str,
    *,
    until: Callable[[list[ConsumedMessage]], bool],
    isolation: str = "read_committed",
) -> list[ConsumedMessage]:
    """Read ``topic`` from the beginning with ``isolation`` until ``until`` holds."""
    consumer, collector = await start_collecting(
        client, consumer_config(isolation_level=isolation), [topic]
    )
    try:
        await wait_until(lambda: until(collector.messages), f"messages of {topic}")
        return list(collector.messages)
    finally:
        ok(await consumer.disconnect())


def has(value: bytes) -> Callable[[list[ConsumedMessage]], bool]:
    return lambda messages: any(message.value == value for message in messages)


async def read_committed(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, topic: str, count: int
) -> list[bytes]:
    """The first ``count`` values a read_committed reader of ``topic`` sees."""
    config = consumer_config(isolation_level="read_committed")
    return [message.value or b"" for message in await consume(client, config, [topic], count)]


async def caught_up(client: StreamingClient, group_id: str, topic: str) -> bool:
    """Whether the group's committed offsets are the end of every partition of ``topic``."""
    admin = ok(await client.get_admin())
    lags = ok(await admin.get_group_lag(group_id, [topic]))
    return bool(lags) and all(lag.lag == 0 for lag in lags)


async def wait_caught_up(
    client: StreamingClient,
    group_id: str,
    topic: str,
    *,
    what: str = "committed offsets at end",
    within: float = WAIT,
) -> None:
    """Wait until the group has committed the end of every partition of ``topic``."""
    await wait_until(lambda: caught_up(client, group_id, topic), what, within=within)


async def transactional_producer(client: StreamingClient) -> StreamingProducer:
    """A new transactional producer of ``client`` with a fresh transactional id."""
    return ok(await client.get_producer(transactional()))


async def commit_values(producer: StreamingProducer, topic: str, *values: bytes) -> None:
    """Send ``values`` to ``topic`` in one transaction of ``producer`` and commit it."""
    txn = await begin(producer)
    for value in values:
        ok(await txn.send(topic, StreamingMessage(value)))
    ok(await txn.commit())


async def expect_only_committed(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, topic: str, value: bytes
) -> None:
    """A read_committed reader of ``topic`` sees ``value`` and nothing else."""
    seen = await committed_values(client, consumer_config, topic, until=has(value))
    assert [message.value for message in seen] == [value]
