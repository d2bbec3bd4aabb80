"""Contract section 5, offsets: what is committed, when, and where a group resumes."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingClient,
    StreamingConfig,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)
from testkit import ok

from ._support import (
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    numbered,
    produce,
    start_consumer,
)


async def _noop(payload: EachMessagePayload) -> None:
    del payload


# -- offsets ---------------------------------------------------------------------------------


async def test_committed_offsets_survive_a_new_consumer_in_the_group(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    first = consumer_config(auto_commit=True)
    await produce(producer, topic, numbered("first", 5))
    received = await consume(client, first, [topic], 5)
    assert [m.value for m in received] == numbered("first", 5)

    later = await produce(producer, topic, numbered("second", 3))
    # A new instance in the same group; from_beginning loses against committed offsets.
    second = dataclasses.replace(first, heartbeat_interval=0.6)
    received = await consume(client, second, [topic], 3, from_beginning=True)
    assert [m.value for m in received[:3]] == numbered("second", 3)
    assert received[0].offset == later[0].offset


async def test_disconnect_waits_for_the_running_handler_and_commits_it(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 5))
    slow_offset = sent[2].offset
    handled: list[int] = []
    slow_started = asyncio.Event()

    async def handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == slow_offset:
            slow_started.set()
            await asyncio.sleep(0.5)
        handled.append(payload.message.offset)

    config = consumer_config(auto_commit=False)
    consumer = await start_consumer(
        client,
        config,
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler),
    )
    await asyncio.wait_for(slow_started.wait(), 30.0)
    ok(await consumer.disconnect())
    # disconnect() returned only after the running handler finished, and started no other.
    assert handled == [r.offset for r in sent[:3]]

    rest = await consume(client, dataclasses.replace(config, heartbeat_interval=0.6), [topic], 2)
    assert [m.offset for m in rest] == [r.offset for r in sent[3:]]


async def test_disconnect_cancels_a_handler_that_outlives_the_request_timeout(
    client: StreamingClient,
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 3))
    stuck = sent[1].offset
    started = asyncio.Event()
    cancelled: list[int] = []

    async def handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == stuck:
            started.set()
            try:
                await asyncio.Event().wait()  # never returns on its own
            except asyncio.CancelledError:
                cancelled.append(payload.message.offset)
                raise

    config = consumer_config(auto_commit=False)
    impatient = dataclasses.replace(streaming_config, request_timeout=1.0)
    async with create_streaming_client(backend, impatient) as other:
        consumer = await start_consumer(
            other,
            config,
            SubscriptionConfig(topics=(topic,), from_beginning=True),
            ConsumerRunConfig(each_message=handler),
        )
        await asyncio.wait_for(started.wait(), 30.0)
        began = time.monotonic()
        await consumer.disconnect()
        elapsed = time.monotonic() - began
    assert elapsed < impatient.request_timeout + 4.0, f"disconnect took {elapsed:.1f}s"
    assert cancelled == [stuck]
    # What was handled before it is committed; the cancelled message is not.
    rest = await consume(client, dataclasses.replace(config, heartbeat_interval=0.6), [topic], 2)
    assert [m.offset for m in rest[:2]] == [stuck, sent[2].offset]


async def test_commit_offsets_commits_what_was_handled(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 4))
    config = consumer_config(auto_commit=False)
    consumer, collector = await collecting(topic, config=config)
    await collector.wait_for(4)
    ok(await consumer.commit_offsets())
    ok(await consumer.commit_offsets())  # nothing new: still a Success
    ok(await consumer.disconnect())

    more = await produce(producer, topic, numbered("more", 2))
    rest = await consume(client, dataclasses.replace(config, heartbeat_interval=0.6), [topic], 2)
    assert [m.offset for m in rest] == [r.offset for r in more]
    assert sent[-1].offset < more[0].offset
