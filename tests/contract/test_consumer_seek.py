"""Contract section 5, seek: repositioning an assigned partition, committing nothing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingClient,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
)
from testkit import ok, wait_until

from ._support import (
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_failure,
    numbered,
    produce,
    start_consumer,
)

BAD_OFFSETS: list[Any] = [-1, "-1", "abc", "", " 1", "1.5", 1.5, None, True, b"1", [0]]


async def test_seek_repositions_an_assigned_partition(
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic()
    other = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 5))]
    consumer, collector = await collecting(topic, config=consumer_config(auto_commit=False))
    await collector.wait_for(5)

    async def seek_and_expect(target: int | str, expected: list[int]) -> None:
        before = len(collector.messages)
        ok(await consumer.seek(topic, 0, target))
        await collector.wait_for(before + len(expected))
        assert [m.offset for m in collector.messages[before:]] == expected, target

    await seek_and_expect(offsets[1], offsets[1:])
    await seek_and_expect("earliest", offsets)
    await seek_and_expect(str(offsets[3]), offsets[3:])

    # Partitions this consumer does not own, and offsets that are not offsets.
    for topic_name, partition in ((topic, 1), (other, 0)):
        expect_failure(
            await consumer.seek(topic_name, partition, 0),
            "STREAMING_INVALID_ARGUMENT",
            implementation=backend,
        )
    for offset in BAD_OFFSETS:
        expect_failure(
            await consumer.seek(topic, 0, offset),
            "STREAMING_INVALID_ARGUMENT",
            implementation=backend,
        )

    before = len(collector.messages)
    ok(await consumer.seek(topic, 0, "latest"))
    # Nothing old comes back: the next message handled is one produced after the seek.
    fresh: list[int] = []
    for attempt in range(20):
        fresh.append(ok(await producer.send(topic, StreamingMessage(b"new"))).offset)
        try:
            await wait_until(lambda: len(collector.messages) > before, "a new message", within=1.5)
            break
        except AssertionError:
            if attempt == 19:
                raise
    assert collector.messages[before].offset in fresh
    assert collector.messages[before].value == b"new"


async def test_seek_commits_nothing_by_itself(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 10))]
    good, held, far = offsets[:5], offsets[5], offsets[8]
    calls: list[int] = []

    async def handler(payload: EachMessagePayload) -> None:
        calls.append(payload.message.offset)
        if payload.message.offset >= held:
            raise RuntimeError("hold the partition")  # nothing from here on is processed

    config = consumer_config(auto_commit=False)
    consumer = await start_consumer(
        client,
        config,
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler, on_error=lambda error: None, retry_backoff=0.05),
    )
    await wait_until(lambda: held in calls, "the held message")
    assert calls[:5] == good
    ok(await consumer.commit_offsets())
    ok(await consumer.seek(topic, 0, far))
    await wait_until(lambda: far in calls, "the sought offset")
    ok(await consumer.disconnect())

    # Had the seek committed anything, the group would resume at the sought offset.
    resumed = await consume(client, dataclasses.replace(config, heartbeat_interval=0.6), [topic], 5)
    assert [m.offset for m in resumed[:5]] == offsets[5:]


@pytest.mark.parametrize("offset", [0, "0", "earliest", "latest"], ids=repr)
async def test_seek_without_a_running_consumer_is_invalid_argument(
    client: StreamingClient,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
    offset: int | str,
) -> None:
    topic = await make_topic()
    consumer = ok(await client.get_consumer(consumer_config()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
    # Nothing is assigned before run(): no partition can be sought.
    expect_failure(
        await consumer.seek(topic, 0, offset), "STREAMING_INVALID_ARGUMENT", implementation=backend
    )


async def test_seek_to_latest_hands_over_a_message_produced_right_after_it(
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic()
    await produce(producer, topic, numbered("old", 5))
    consumer, collector = await collecting(topic, config=consumer_config(auto_commit=False))
    await collector.wait_for(5)
    for round_ in range(3):
        before = len(collector.messages)
        ok(await consumer.seek(topic, 0, "latest"))
        # "latest" is where the partition ended when seek returned: a message produced
        # right after it is the next one handled, and nothing older comes again.
        (sent,) = await produce(producer, topic, [f"new-{round_}".encode()])
        await collector.wait_for(before + 1)
        assert collector.messages[before].offset == sent.offset, collector.messages[before:]
        assert collector.messages[before].value == f"new-{round_}".encode()
    assert not collector.errors, collector.errors
    ok(await consumer.disconnect())
