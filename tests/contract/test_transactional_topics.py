"""A group that handled everything of a topic written by transactions has no lag left.

Commit and abort markers (and, read_committed, aborted records) take offsets no
consumer sees. The run loop commits past them once it handled everything it was
given, as Kafka's own clients commit their position: the group's lag reaches 0
and a new member of the group fetches nothing again. Real backends run against
noida-db (the ``kafka_rules`` marker): Tansu's ``read_committed`` shows aborted
records.
"""

from __future__ import annotations

import pytest

from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    ProducerConfig,
    StreamingClient,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
)
from testkit import Collector, ok, unique, wait_until

from ._support import CollectingConsumerFactory, ConsumerConfigFactory, TopicFactory, start_consumer

pytestmark = pytest.mark.kafka_rules

COMMITTED = (b"a0", b"a1", b"b0", b"c0")
ABORTED = (b"x0", b"y1")


async def write_transactions(producer: StreamingProducer, topic: str) -> None:
    """Over partitions 0 and 1: a committed, an aborted, then a committed transaction."""
    first = ok(await producer.transaction())
    ok(await first.send(topic, StreamingMessage(b"a0", partition=0)))
    ok(await first.send(topic, StreamingMessage(b"a1", partition=1)))
    ok(await first.commit())
    aborted = ok(await producer.transaction())
    ok(await aborted.send(topic, StreamingMessage(b"x0", partition=0)))
    ok(await aborted.send(topic, StreamingMessage(b"y1", partition=1)))
    ok(await aborted.abort())
    last = ok(await producer.transaction())
    ok(await last.send(topic, StreamingMessage(b"b0", partition=0)))
    ok(await last.send(topic, StreamingMessage(b"c0", partition=0)))
    ok(await last.commit())


async def lag_is_zero(client: StreamingClient, group_id: str, topic: str) -> bool:
    admin = ok(await client.get_admin())
    lags = ok(await admin.get_group_lag(group_id, [topic]))
    return len(lags) == 2 and all(lag.lag == 0 for lag in lags)


@pytest.mark.parametrize(
    ("isolation", "expected"),
    [("read_committed", COMMITTED), ("read_uncommitted", COMMITTED + ABORTED)],
)
async def test_group_reaches_the_end_of_a_transactional_topic(
    client: StreamingClient,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    isolation: str,
    expected: tuple[bytes, ...],
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic(2)
    producer = ok(await client.get_producer(ProducerConfig(transactional_id=unique("txn"))))
    await write_transactions(producer, topic)
    config = consumer_config(isolation_level=isolation, auto_commit=False)
    consumer, collector = await collecting(topic, config=config)
    try:
        await collector.wait_for(len(expected))

        # The final markers may come in a fetch of their own, after the last message.
        async def committed_to_the_end() -> bool:
            ok(await consumer.commit_offsets())
            return await lag_is_zero(client, config.group_id, topic)

        await wait_until(committed_to_the_end, f"lag 0 of {config.group_id}")
    finally:
        ok(await consumer.disconnect())
    assert sorted(value or b"" for value in collector.values()) == sorted(expected)
    assert not collector.errors
    assert await lag_is_zero(client, config.group_id, topic)

    # A new member of the group starts at the end: the first message it gets is a new one.
    ok(await producer.disconnect())
    plain = ok(await client.get_producer(ProducerConfig()))
    ok(await plain.send(topic, StreamingMessage(b"after", partition=1)))
    second, again = await collecting(topic, config=config)
    try:
        await again.wait_for(1)
    finally:
        ok(await second.disconnect())
    assert again.values() == [b"after"]


async def test_commit_never_passes_a_message_not_handled(
    client: StreamingClient, make_topic: TopicFactory, consumer_config: ConsumerConfigFactory
) -> None:
    topic = await make_topic(2)
    producer = ok(await client.get_producer(ProducerConfig(transactional_id=unique("txn"))))
    await write_transactions(producer, topic)
    config = consumer_config(auto_commit=False)
    collector = Collector()

    async def refuse_c0(payload: EachMessagePayload) -> None:
        if payload.message.value == b"c0":  # the last message, before the last marker
            raise RuntimeError("not this one")
        await collector.each_message(payload)

    run = ConsumerRunConfig(each_message=refuse_c0, on_error=collector.on_error)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    consumer = await start_consumer(client, config, subscription, run)
    admin = ok(await client.get_admin())
    try:
        await collector.wait_for(3)
        await wait_until(lambda: bool(collector.errors), "the refused message")
        error = collector.errors[0]
        refused = error.context["offset"]
        assert error.code == "STREAMING_HANDLER_FAILED" and isinstance(refused, int)

        async def settled() -> bool:
            ok(await consumer.commit_offsets())
            lags = ok(await admin.get_group_lag(config.group_id, [topic]))
            return [(lag.partition, lag.committed, lag.lag) for lag in lags] == [
                (0, refused, lags[0].end - refused),
                (1, lags[1].end, 0),  # partition 1 ends with a marker: nothing left to handle
            ]

        await wait_until(settled, "committed offsets up to the refused message")
    finally:
        ok(await consumer.disconnect())
