"""Contract section 5 across rebalances: what was handled is committed before a partition
goes, a slow member goes on after one, and no partition is handled by two members at once."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from qi.base import Success
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)
from testkit import Collector, ok, unique, wait_until

from ._support import (
    NOIDA_KEEPS_GONE_MEMBERS,
    NOIDA_MOVES_THE_GENERATION_EARLY,
    ConsumerConfigFactory,
    MemberClientsFactory,
    TopicFactory,
    expect_failure,
    numbered,
    produce,
    skip_on_noida,
    start_consumer,
)


async def test_a_new_topic_matching_the_pattern_commits_what_was_handled_before(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    prefix = unique("pattern")
    first = await make_topic(name=f"{prefix}-a")
    await produce(producer, first, numbered("a", 10))
    subscription = SubscriptionConfig(pattern=f"{prefix}-.*", from_beginning=True)
    # No commit but the rebalance's: what the new topic's rebalance commits is all there is.
    config = consumer_config(auto_commit=False)
    before = Collector()
    member = await start_consumer(client, config, subscription, before.run_config())
    await before.wait_for(10)

    second = await make_topic(name=f"{prefix}-b")
    await produce(producer, second, [b"b-0"])
    # Once the new topic's message is handled, the rebalance it caused is over.
    await before.wait_for(11)
    assert not before.errors, before.errors
    # Leaving commits what was handled since the rebalance: only the new topic's message.
    await member.disconnect()

    after = Collector()
    await start_consumer(client, config, subscription, after.run_config())
    await produce(producer, first, [b"a-late"])
    await produce(producer, second, [b"b-late"])
    # Each partition is handled in offset order: anything redelivered would come first.
    await after.wait_for(2)
    assert len(after.values()) == 2, after.values()
    assert set(after.values()) == {b"a-late", b"b-late"}, "handled messages came again"


async def test_a_revoked_partition_is_never_handled_by_two_members_at_once(
    backend: str,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    member_clients: MemberClientsFactory,
) -> None:
    skip_on_noida(backend, ("aiokafka",), NOIDA_KEEPS_GONE_MEMBERS)
    topic = await make_topic(2)
    # Everything in partition 1, which goes to the second member when it joins: member ids
    # start with the client ids, and every assignor here gives partition 1 to the later one.
    count = 6
    await produce(producer, topic, numbered("m", count), partition=1)
    calls: list[tuple[str, int, float, float]] = []  # member, offset, start, end
    started = asyncio.Event()

    def handler(member: str, seconds: float) -> Callable[[EachMessagePayload], Awaitable[None]]:
        async def handle(payload: EachMessagePayload) -> None:
            begin = time.monotonic()
            started.set()
            await asyncio.sleep(seconds)
            calls.append((member, payload.message.offset, begin, time.monotonic()))

        return handle

    group = consumer_config()
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first, second = member_clients()
    try:
        # The first member is slow, so a revocation always finds it in a handler.
        run = ConsumerRunConfig(each_message=handler("first", 4.0))
        await start_consumer(first, group, subscription, run)
        await asyncio.wait_for(started.wait(), 30.0)
        run = ConsumerRunConfig(each_message=handler("second", 0.0))
        await start_consumer(second, group, subscription, run)
        await wait_until(
            lambda: {offset for _, offset, _, _ in calls} >= set(range(count)),
            "every message handled",
        )
    finally:
        await second.disconnect()
        await first.disconnect()
    assert {member for member, *_ in calls} == {"first", "second"}, calls
    spans = sorted((begin, end, member, offset) for member, offset, begin, end in calls)
    for (_, end, member, offset), (begin, _, other, next_offset) in itertools.pairwise(spans):
        assert begin >= end, (
            f"{other} started offset {next_offset} while {member} still handled offset {offset}"
        )


async def test_a_partition_paused_behind_a_slow_handler_is_handled_after_a_rebalance(
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    skip_on_noida(backend, ("aiokafka",), NOIDA_KEEPS_GONE_MEMBERS)
    topic = await make_topic(2)
    per_partition = 3000  # far more than a partition buffers before it is paused
    for partition in (0, 1):
        values = numbered(f"p{partition}", per_partition)
        for start in range(0, per_partition, 500):
            batch = tuple(
                StreamingMessage(v, partition=partition) for v in values[start : start + 500]
            )
            ok(await producer.send_batch(MessageBatch(topic, batch)))
    prefix = unique("paused")
    handled: dict[str, set[tuple[int, int]]] = {"first": set(), "second": set()}
    slow = True

    def handler(member: str) -> Callable[[EachMessagePayload], Awaitable[None]]:
        async def handle(payload: EachMessagePayload) -> None:
            if slow and member == "first":
                await asyncio.sleep(0.005)  # the buffers fill up and their partitions pause
            handled[member].add((payload.partition, payload.message.offset))

        return handle

    # Small batches, so the first member takes turns between its partitions.
    group = consumer_config(max_batch_size=10)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first = create_streaming_client(backend, replace(streaming_config, client_id=f"{prefix}-a"))
    try:
        await start_consumer(
            first, group, subscription, ConsumerRunConfig(each_message=handler("first"))
        )
        await wait_until(lambda: len(handled["first"]) >= 20, "the first member to be busy")
        async with create_streaming_client(
            backend, replace(streaming_config, client_id=f"{prefix}-b")
        ) as second:
            run = ConsumerRunConfig(each_message=handler("second"))
            await start_consumer(second, group, subscription, run)
            await wait_until(lambda: bool(handled["second"]), "the second member to start")
            slow = False
        # The second member left: both partitions are the first member's again.
        everything = {(p, o) for p in (0, 1) for o in range(per_partition)}
        await wait_until(
            lambda: handled["first"] | handled["second"] >= everything,
            "every message handled after the rebalances",
        )
    finally:
        await first.disconnect()


async def test_a_handler_commits_and_seeks_at_once_while_its_partition_is_revoked(
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    member_clients: MemberClientsFactory,
) -> None:
    skip_on_noida(backend, ("aiokafka",), NOIDA_KEEPS_GONE_MEMBERS)
    skip_on_noida(backend, ("confluent",), NOIDA_MOVES_THE_GENERATION_EARLY)
    topic = await make_topic(2)
    # As above: partition 1 goes to the second member, so the first one's is revoked.
    await produce(producer, topic, numbered("m", 3), partition=1)
    bound = streaming_config.request_timeout
    in_handler = asyncio.Event()
    durations: dict[str, tuple[object, float]] = {}
    consumers: list[StreamingConsumer] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.message.offset != 1 or in_handler.is_set():
            return
        in_handler.set()
        await asyncio.sleep(5.0)  # meanwhile the second member joins and this one revokes
        (consumer,) = consumers
        for name, call in (
            ("commit_offsets", consumer.commit_offsets()),
            ("seek", consumer.seek(topic, 1, 0)),
        ):
            began = time.monotonic()
            durations[name] = (await call, time.monotonic() - began)

    group = consumer_config(auto_commit=False)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first, second = member_clients()
    try:
        run = ConsumerRunConfig(each_message=handle)
        consumers.append(await start_consumer(first, group, subscription, run))
        await asyncio.wait_for(in_handler.wait(), 30.0)
        collector = Collector()
        await start_consumer(second, group, subscription, collector.run_config())
        await wait_until(lambda: len(durations) == 2, "the handler's calls")
    finally:
        await second.disconnect()
        await first.disconnect()
    for name, (outcome, seconds) in durations.items():
        assert isinstance(outcome, Success), f"{name} returned {outcome!r}"
        # Its bound is request_timeout; waiting on the revocation would take all of it.
        assert seconds < bound / 4, f"{name} took {seconds:.1f}s (bound {bound:.1f}s)"


async def test_a_seek_queued_just_before_its_partition_is_revoked_never_times_out(
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    member_clients: MemberClientsFactory,
) -> None:
    topic = await make_topic(2)
    # As above: partition 1 goes to the second member, so the first one's is revoked.
    await produce(producer, topic, numbered("m", 3), partition=1)
    bound = streaming_config.request_timeout
    in_handler = asyncio.Event()
    joining = asyncio.Event()
    seeks: list[tuple[object, float]] = []
    consumers: list[StreamingConsumer] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.partition != 1 or in_handler.is_set():
            return
        in_handler.set()
        await joining.wait()
        (consumer,) = consumers
        # Seek again and again while the second member joins, so that one of the seeks is
        # queued just before the revocation begins (a revocation waits for this handler).
        until = time.monotonic() + 4.0
        while time.monotonic() < until:
            began = time.monotonic()
            outcome = await consumer.seek(topic, 1, payload.message.offset)
            seeks.append((outcome, time.monotonic() - began))
            await asyncio.sleep(0.005)

    group = consumer_config(auto_commit=False)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first, second = member_clients()
    try:
        consumers.append(
            await start_consumer(first, group, subscription, ConsumerRunConfig(each_message=handle))
        )
        await asyncio.wait_for(in_handler.wait(), 30.0)
        joining.set()
        collector = Collector()
        await start_consumer(second, group, subscription, collector.run_config())
        await collector.wait_for(1)
    finally:
        await second.disconnect()
        await first.disconnect()
    assert seeks, "the handler never sought"
    for outcome, seconds in seeks:
        # Success, or INVALID_ARGUMENT once the partition is no longer assigned here; a
        # healthy broker never makes it wait out its bound.
        if not isinstance(outcome, Success):
            expect_failure(outcome, "STREAMING_INVALID_ARGUMENT")
        assert seconds < bound / 4, f"seek took {seconds:.1f}s (bound {bound:.1f}s): {outcome!r}"


async def test_a_handler_outlasting_its_revocation_is_cancelled_before_the_next_owner_starts(
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    member_clients: MemberClientsFactory,
) -> None:
    topic = await make_topic(2)
    # As above: partition 1 goes to the second member, so the first one's is revoked.
    await produce(producer, topic, numbered("m", 2), partition=1)
    # A revocation waits request_timeout for the running handler: a short one keeps this fast.
    config = replace(streaming_config, request_timeout=3.0)
    spans: list[tuple[str, int, float, float, bool]] = []  # member, offset, start, end, cancelled
    started = asyncio.Event()

    def handler(member: str, seconds: float) -> Callable[[EachMessagePayload], Awaitable[None]]:
        async def handle(payload: EachMessagePayload) -> None:
            if payload.partition != 1:
                return
            begin = time.monotonic()
            started.set()
            cancelled = False
            try:
                await asyncio.sleep(seconds)
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                spans.append((member, payload.message.offset, begin, time.monotonic(), cancelled))

        return handle

    group = consumer_config()
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first, second = member_clients(config)
    try:
        # Far longer than request_timeout: the revocation gives up waiting for it.
        await start_consumer(
            first, group, subscription, ConsumerRunConfig(each_message=handler("first", 60.0))
        )
        await asyncio.wait_for(started.wait(), 30.0)
        await start_consumer(
            second, group, subscription, ConsumerRunConfig(each_message=handler("second", 0.0))
        )
        await wait_until(
            lambda: {o for m, o, *_ in spans if m == "second"} >= {0, 1},
            "the second member to handle the partition",
        )
    finally:
        await second.disconnect()
        await first.disconnect()
    (cut,) = [span for span in spans if span[0] == "first"]
    assert cut[4], f"the first member's handler was not cancelled: {spans}"
    next_start = min(begin for member, _, begin, _, _ in spans if member == "second")
    assert cut[3] <= next_start, f"the next owner started while the handler still ran: {spans}"


async def test_a_handler_that_disconnects_during_its_revocation_does_not_wait_for_it(
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    member_clients: MemberClientsFactory,
) -> None:
    # A revocation under way waits (up to request_timeout) for the running handler; if that
    # handler then calls disconnect(), leaving the group must not wait for that revocation
    # (which waits for the handler, which waits for the leaving).
    topic = await make_topic(2)
    # As above: partition 1 goes to the second member, so the first one's is revoked.
    await produce(producer, topic, numbered("m", 3), partition=1)
    config = replace(streaming_config, request_timeout=20.0)
    in_handler = asyncio.Event()
    outcome: list[tuple[object, float]] = []
    consumers: list[StreamingConsumer] = []

    async def handle(payload: EachMessagePayload) -> None:
        if payload.partition != 1 or in_handler.is_set():
            return
        in_handler.set()
        # Meanwhile the second member joins and this one's revocation begins (within a
        # second on every broker here), then waits for this handler.
        await asyncio.sleep(3.0)
        (consumer,) = consumers
        began = time.monotonic()
        outcome.append((await consumer.disconnect(), time.monotonic() - began))

    group = consumer_config(auto_commit=False)
    subscription = SubscriptionConfig(topics=(topic,), from_beginning=True)
    first, second = member_clients(config)
    joining: list[asyncio.Task[object]] = []
    try:
        consumer = ok(await first.get_consumer(group))  # the handler needs it
        consumers.append(consumer)
        ok(await consumer.subscribe(subscription))
        ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
        await asyncio.wait_for(in_handler.wait(), 30.0)
        other = ok(await second.get_consumer(group))
        ok(await other.subscribe(subscription))
        # Its run() may outlast the test: Tansu does not form a group whose leader left
        # during the rebalance (README, Development brokers). disconnect() ends it.
        joining.append(asyncio.create_task(other.run(Collector().run_config())))
        await wait_until(lambda: bool(outcome), "the handler's disconnect()")
    finally:
        await second.disconnect()
        await first.disconnect()
        await asyncio.gather(*joining)
    ((disconnected, seconds),) = outcome
    assert isinstance(disconnected, Success), disconnected
    bound = config.request_timeout
    assert seconds < bound / 2, f"disconnect() took {seconds:.1f}s (request_timeout {bound:.1f}s)"
