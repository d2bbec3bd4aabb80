"""Contract section 5, the consumer: run, delivery order, batches, subscriptions and groups."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from dataclasses import replace

import pytest

from qi.base import Success
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)
from testkit import Collector, ok, unique, wait_until

from ._support import (
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    LoopTurns,
    TopicFactory,
    consume,
    expect_failure,
    numbered,
    produce,
    start_consumer,
)


async def _noop(payload: EachMessagePayload) -> None:
    del payload


# -- run: preconditions ------------------------------------------------------------------------


async def test_run_before_subscribe_is_not_subscribed(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, backend: str
) -> None:
    consumer = ok(await client.get_consumer(consumer_config()))
    expect_failure(
        await consumer.run(ConsumerRunConfig(each_message=_noop)),
        "STREAMING_NOT_SUBSCRIBED",
        implementation=backend,
    )


async def test_run_needs_exactly_one_handler(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, backend: str
) -> None:
    consumer = ok(await client.get_consumer(consumer_config()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(unique("t"),))))

    async def batch(payload: object) -> None:
        del payload

    for config in (
        ConsumerRunConfig(),
        ConsumerRunConfig(on_error=print),
        ConsumerRunConfig(each_message=_noop, each_batch=batch),
    ):
        expect_failure(
            await consumer.run(config), "STREAMING_INVALID_CONFIG", implementation=backend
        )


async def test_run_twice_is_invalid_argument(
    client: StreamingClient,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic()
    consumer = await start_consumer(
        client,
        consumer_config(),
        SubscriptionConfig(topics=(topic,)),
        ConsumerRunConfig(each_message=_noop),
    )
    expect_failure(
        await consumer.run(ConsumerRunConfig(each_message=_noop)),
        "STREAMING_INVALID_ARGUMENT",
        implementation=backend,
    )


# -- delivery --------------------------------------------------------------------------------


async def test_each_message_gets_everything_in_partition_order(
    producer: StreamingProducer,
    make_topic: TopicFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic(3)
    produced: dict[int, list[int]] = {}
    for partition in range(3):
        results = await produce(producer, topic, numbered(f"p{partition}", 7), partition=partition)
        produced[partition] = [result.offset for result in results]
    _, collector = await collecting(topic)
    await collector.wait_for(21)
    for partition in range(3):
        assert collector.offsets(topic, partition) == produced[partition]
    assert sorted(v for v in collector.values() if v is not None) == sorted(
        v for p in range(3) for v in numbered(f"p{p}", 7)
    )
    assert collector.errors == []


async def test_each_batch_gets_consecutive_messages_of_one_partition(
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic(2)
    produced = {
        partition: [
            r.offset for r in await produce(producer, topic, numbered("b", 10), partition=partition)
        ]
        for partition in (0, 1)
    }
    _, collector = await collecting(topic, config=consumer_config(max_batch_size=3), batches=True)
    await collector.wait_for(20)
    for batch in collector.batches:
        assert 1 <= len(batch.messages) <= 3
        assert isinstance(batch.messages, tuple)
        assert {(m.topic, m.partition) for m in batch.messages} == {(batch.topic, batch.partition)}
        offsets = [m.offset for m in batch.messages]
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets)))
    for partition in (0, 1):
        assert collector.offsets(topic, partition) == produced[partition]


async def test_a_handler_that_never_awaits_lets_other_tasks_run_between_turns(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # Messages are handed over in turns of up to max_batch_size; between two turns the
    # event loop runs the service's other tasks (and the fetches, and aiokafka's heartbeat),
    # even when the handler itself never gives the loop a chance.
    topic = await make_topic(1)
    await produce(producer, topic, numbered("n", 400), partition=0)
    async with LoopTurns() as loop:
        consumer = await start_consumer(
            client,
            consumer_config(max_batch_size=10),
            SubscriptionConfig(topics=(topic,), from_beginning=True),
            ConsumerRunConfig(each_message=loop.handle),
        )
        await wait_until(lambda: len(loop.seen) >= 400, "all 400 messages handled")
        ok(await consumer.disconnect())
    # At most max_batch_size messages see the same turn: the loop ran between turns.
    assert len(set(loop.seen)) >= 400 // 10


async def test_from_beginning_reads_existing_messages(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    await produce(producer, topic, numbered("old", 4))
    received = await consume(client, consumer_config(), [topic], 4, from_beginning=True)
    assert [m.value for m in received] == numbered("old", 4)


async def test_without_from_beginning_only_new_messages_are_read(
    producer: StreamingProducer,
    make_topic: TopicFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic()
    await produce(producer, topic, numbered("old", 4))
    _, collector = await collecting(topic, from_beginning=False)
    # run() returned: the consumer has its partitions, so what is produced now is "new".
    await produce(producer, topic, numbered("new", 3))
    await collector.wait_for(3)
    assert collector.values() == numbered("new", 3)


# -- subscriptions ---------------------------------------------------------------------------


async def test_pattern_subscription_uses_re_match_and_picks_up_new_topics(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    prefix = unique("pat")
    first = await make_topic(name=f"{prefix}-p1")
    second = await make_topic(2, name=f"{prefix}-p2")
    named = await make_topic()  # subscribed by name: topics and pattern are a union
    # re.search would match this one; re.match must not.
    elsewhere = await make_topic(name=f"x-{prefix}-p3")
    not_digit = await make_topic(name=f"{prefix}-px")
    # The pattern below matches this name too, but internal "__*" topics never match.
    internal = await make_topic(name=f"__{prefix}-p5")
    for topic in (first, second, named, elsewhere, not_digit, internal):
        ok(await producer.send(topic, StreamingMessage(topic.encode())))

    collector = Collector()
    await start_consumer(
        client,
        consumer_config(),
        SubscriptionConfig(
            topics=(named,),
            pattern=r"(?:__)?" + re.escape(prefix) + r"-p\d",
            from_beginning=True,
        ),
        collector.run_config(),
    )
    await wait_until(
        lambda: {m.topic for m in collector.messages} >= {first, second, named},
        "the matching topics",
    )
    late = await make_topic(name=f"{prefix}-p9")
    ok(await producer.send(late, StreamingMessage(late.encode())))
    await wait_until(
        lambda: late in {m.topic for m in collector.messages},
        "a matching topic created after run()",
        within=60.0,
    )
    assert {m.topic for m in collector.messages} == {first, second, named, late}
    assert all(m.value == m.topic.encode() for m in collector.messages)


async def test_group_members_split_partitions_and_together_get_everything(
    client: StreamingClient,
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    partitions = 4
    topic = await make_topic(partitions)
    config = consumer_config()
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    one, two = Collector(), Collector()
    await start_consumer(client, config, subscription, one.run_config())
    other_client = create_streaming_client(backend, streaming_config)
    try:
        await start_consumer(other_client, config, subscription, two.run_config())
        produced: set[tuple[int, int]] = set()

        def seen() -> set[tuple[int, int]]:
            return {(m.partition, m.offset) for m in [*one.messages, *two.messages]}

        # Rounds of one message per partition until a round is split between the two
        # members: the group may still be rebalancing when the second run() returns.
        split = False
        for attempt in range(30):
            values = numbered(f"round{attempt}", partitions)
            round_offsets = {
                (r.partition, r.offset)
                for p, value in enumerate(values)
                for r in await produce(producer, topic, [value], partition=p)
            }
            produced |= round_offsets
            await wait_until(
                lambda wanted=round_offsets: wanted <= seen(),  # type: ignore[misc]
                f"round {attempt}",
            )
            in_one = {(m.partition, m.offset) for m in one.messages} & round_offsets
            in_two = {(m.partition, m.offset) for m in two.messages} & round_offsets
            if in_one and in_two and not in_one & in_two:
                split = True
                break
            await asyncio.sleep(0.2)
        assert split, "the two group members never shared the partitions"
        assert produced <= seen()
        partitions_one = {p for p, _ in in_one}
        partitions_two = {p for p, _ in in_two}
        assert partitions_one.isdisjoint(partitions_two)
        assert partitions_one | partitions_two == set(range(partitions))
    finally:
        await other_client.disconnect()


# -- lifecycle -------------------------------------------------------------------------------


async def test_not_connected_after_disconnect_and_connect_again(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, backend: str
) -> None:
    consumer = ok(await client.get_consumer(consumer_config()))
    ok(await consumer.disconnect())
    ok(await consumer.disconnect())
    assert not consumer.is_connected()
    topic = unique("t")
    for result in (
        await consumer.subscribe(SubscriptionConfig(topics=(topic,))),
        await consumer.run(ConsumerRunConfig(each_message=_noop)),
        await consumer.commit_offsets(),
        await consumer.seek(topic, 0, 0),
        consumer.get_native_client(),
    ):
        expect_failure(result, "STREAMING_NOT_CONNECTED", implementation=backend)
    ok(await consumer.connect())
    ok(await consumer.connect())
    assert consumer.is_connected()
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
    assert ok(consumer.get_native_client()) is not None


# Tansu answers a LeaveGroup sent while the member's JoinGroup is pending only when the
# join round ends (half a session) and keeps the member in the group (README, quirks).
@pytest.mark.kafka_rules
async def test_disconnect_while_run_is_joining_leaves_nothing_behind(
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic(2)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    # A long session: a member left behind would hold its partitions for all of it.
    config = consumer_config(session_timeout=30.0)
    leftovers = {thread for thread in threading.enumerate() if thread.name.startswith("qi-")}
    # At once (from_beginning makes the run replace the native consumer connect() made),
    # and a little later (subscribing, joining).
    for delay in (0.0, 0.01, 0.1):
        first = create_streaming_client(backend, replace(streaming_config, client_id=unique("a")))
        try:
            consumer = ok(await first.get_consumer(config))
            ok(await consumer.subscribe(subscription))
            running = asyncio.ensure_future(consumer.run(ConsumerRunConfig(each_message=_noop)))
            await asyncio.sleep(delay)
            ok(await consumer.disconnect())
            # run() ends with the join: it either got going first or was cut short.
            outcome = await asyncio.wait_for(running, streaming_config.request_timeout)
            if not isinstance(outcome, Success):
                expect_failure(outcome, "STREAMING_NOT_CONNECTED", implementation=backend)
            threads = {t for t in threading.enumerate() if t.name.startswith("qi-")} - leftovers
            assert not threads, f"after a disconnect {delay}s into run(): {threads}"
        finally:
            await first.disconnect()

    # The group is empty: a new member gets every partition long before a session expires.
    collector = Collector()
    second = create_streaming_client(backend, replace(streaming_config, client_id=unique("b")))
    try:
        began = time.monotonic()
        await start_consumer(
            second, consumer_config(group_id=config.group_id), subscription, collector.run_config()
        )
        for partition in (0, 1):
            await produce(producer, topic, [b"after"], partition=partition)
        await collector.wait_for(2, within=config.session_timeout / 2)
        assert {m.partition for m in collector.messages} == {0, 1}
        assert time.monotonic() - began < config.session_timeout / 2
    finally:
        await second.disconnect()


# A run() cancelled while joining leaves the group before it returns; until then a second
# run() must not start: the first one's leaving gives back the native consumer the
# backend lent last, which would be the second run's (closed under it, it never joins).
@pytest.mark.kafka_rules
async def test_run_while_a_cancelled_run_is_leaving_is_refused_or_works(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic(2)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    consumer = ok(await client.get_consumer(consumer_config()))
    # Cut short at once, while acquiring the native consumer, and while joining.
    for delay in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1):
        ok(await consumer.subscribe(subscription))
        first = asyncio.ensure_future(consumer.run(ConsumerRunConfig(each_message=_noop)))
        await asyncio.sleep(delay)
        first.cancel()
        for _ in range(3):  # the cancellation reaches the join, then run(): it is leaving
            await asyncio.sleep(0)
        collector = Collector()
        second = await consumer.run(collector.run_config())
        with contextlib.suppress(asyncio.CancelledError):
            await first
        if isinstance(second, Success):
            for partition in (0, 1):
                await produce(producer, topic, [f"{delay}".encode()], partition=partition)
            await collector.wait_for(2, within=10.0)
        else:
            expect_failure(second, "STREAMING_INVALID_ARGUMENT", implementation=backend)
        ok(await consumer.disconnect())
        ok(await consumer.connect())


# A run with from_beginning replaces the native consumer connect() made (its reset policy
# does not fit); a run() cancelled while that one is closing must not leave it to be
# handed to the next run, whose policy it fits (closed, it fails every call).
@pytest.mark.kafka_rules
async def test_run_after_a_run_cancelled_while_replacing_the_native_consumer_works(
    client: StreamingClient, make_topic: TopicFactory, consumer_config: ConsumerConfigFactory
) -> None:
    topic = await make_topic()
    for steps in range(1, 6):  # cut short one loop step later each time
        consumer = ok(await client.get_consumer(consumer_config()))
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        first = asyncio.ensure_future(consumer.run(ConsumerRunConfig(each_message=_noop)))
        for _ in range(steps):
            await asyncio.sleep(0)
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=False)))
        ok(await consumer.run(ConsumerRunConfig(each_message=_noop)))
        ok(await consumer.disconnect())
