"""Contract section 5, offsets: what is committed, when, and where a group resumes."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from qi.base import Success
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingClient,
    StreamingConfig,
    StreamingConsumer,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)
from testkit import ok, run_stopping_itself, wait_until

from ._support import (
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    numbered,
    produce,
    resumed_offsets,
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

    assert await resumed_offsets(client, config, topic, 2) == [r.offset for r in sent[3:]]


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
    assert (await resumed_offsets(client, config, topic, 2))[:2] == [stuck, sent[2].offset]


async def test_a_handler_that_disconnects_its_consumer_commits_what_was_handled_before_it(
    client: StreamingClient,
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # "Handle until told to stop, then disconnect" from inside the handler: disconnect()
    # cannot wait for the handler that awaits it. It must return promptly, commit what was
    # handled before, leave the message being handled uncommitted, and start no other.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 5))
    last = sent[2].offset
    handled: list[int] = []
    outcome: list[object] = []
    took: list[float] = []

    async def handler(payload: EachMessagePayload) -> None:
        offset = payload.message.offset
        if offset == last:
            began = time.monotonic()
            outcome.append(await consumer.disconnect())
            took.append(time.monotonic() - began)
        handled.append(offset)

    config = consumer_config(auto_commit=False)
    impatient = dataclasses.replace(streaming_config, request_timeout=5.0)
    async with create_streaming_client(backend, impatient) as other:
        consumer = ok(await other.get_consumer(config))  # the handler needs it
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handler))
        await wait_until(lambda: len(handled) == 3, what="the disconnecting handler returned")
        assert took[0] < impatient.request_timeout, f"disconnect took {took[0]:.1f}s"
        assert outcome == [Success(None)]
        assert not consumer.is_connected()
    assert handled == [r.offset for r in sent[:3]]  # and no message after it
    # The group resumes at the message whose handler disconnected: it was not committed.
    assert (await resumed_offsets(client, config, topic, 3))[:3] == [r.offset for r in sent[2:]]


async def test_a_handler_that_disconnects_while_a_disconnect_waits_for_it_is_not_cancelled(
    client: StreamingClient,
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # disconnect() from elsewhere waits for the running handler; that handler then calls
    # disconnect() itself. Waiting on for it would wait for a handler that waits for the
    # first disconnect(): both return promptly, and the handler's message stays uncommitted.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 4))
    stopper = sent[1].offset
    in_handler = asyncio.Event()
    outside_began = asyncio.Event()
    handled: list[int] = []
    inside: list[object] = []

    async def handler(payload: EachMessagePayload) -> None:
        offset = payload.message.offset
        if offset == stopper:
            in_handler.set()
            await outside_began.wait()
            await asyncio.sleep(0.2)  # the outside disconnect() now waits for this handler
            inside.append(await consumer.disconnect())
        handled.append(offset)

    config = consumer_config(auto_commit=False)
    impatient = dataclasses.replace(streaming_config, request_timeout=5.0)
    async with create_streaming_client(backend, impatient) as other:
        consumer = ok(await other.get_consumer(config))  # the handler needs it
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handler))
        await asyncio.wait_for(in_handler.wait(), 30.0)
        began = time.monotonic()
        outside_began.set()
        outcome = await consumer.disconnect()
        took = time.monotonic() - began
        await wait_until(lambda: len(handled) == 2, what="the disconnecting handler returned")
    assert outcome == Success(None)
    assert inside == [Success(None)]
    assert took < impatient.request_timeout / 2, f"disconnect took {took:.1f}s"
    assert handled == [sent[0].offset, stopper]
    assert (await resumed_offsets(client, config, topic, 3))[:3] == [r.offset for r in sent[1:]]


async def test_an_on_error_that_disconnects_its_consumer_gets_its_answer_promptly(
    client: StreamingClient,
    backend: str,
    streaming_config: StreamingConfig,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # "Stop at the first failure": on_error is called by the run loop, as the handler is,
    # and may call disconnect() as the handler may.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 3))
    outcome: list[object] = []

    async def handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == sent[1].offset:
            raise RuntimeError("stop here")

    async def on_error(error: object) -> None:
        del error
        began = time.monotonic()
        try:
            outcome.append(await consumer.disconnect())
        except BaseException as exc:  # what the caller of on_error would get
            outcome.append(exc)
            raise
        finally:
            outcome.append(time.monotonic() - began)

    config = consumer_config(auto_commit=False)
    impatient = dataclasses.replace(streaming_config, request_timeout=1.0)
    async with create_streaming_client(backend, impatient) as other:
        consumer = ok(await other.get_consumer(config))  # on_error needs it
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        await run_stopping_itself(
            consumer, ConsumerRunConfig(each_message=handler, on_error=on_error)
        )
        await wait_until(lambda: len(outcome) == 2, what="on_error's disconnect() returned")
    assert outcome[0] == Success(None), outcome
    assert isinstance(outcome[1], float) and outcome[1] < impatient.request_timeout, outcome
    # What was handled before the failure is committed; the failed message is not.
    assert (await resumed_offsets(client, config, topic, 2))[:2] == [r.offset for r in sent[1:]]


async def test_a_task_an_earlier_handler_call_started_waits_for_the_running_handler(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # A task started by one handler call (a watchdog, a fire-and-forget "stop") that calls
    # disconnect() while a later call runs is not that call's own disconnect(): nothing
    # awaits it from the running handler, so disconnect() waits for that handler as
    # disconnect() from anywhere else does, and commits its message.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 4))
    handled: list[int] = []
    second_started = asyncio.Event()
    stops: list[asyncio.Task[None]] = []

    async def stop_once_the_next_call_runs() -> None:
        await second_started.wait()
        ok(await consumer.disconnect())
        handled.append(-1)  # when disconnect() returned, among the handled offsets

    async def handler(payload: EachMessagePayload) -> None:
        offset = payload.message.offset
        if offset == sent[0].offset:
            stops.append(asyncio.create_task(stop_once_the_next_call_runs()))
        elif offset == sent[1].offset:
            second_started.set()
            await asyncio.sleep(0.5)
        handled.append(offset)

    config = consumer_config(auto_commit=False)
    consumer = ok(await client.get_consumer(config))  # the handler's task needs it
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    await run_stopping_itself(consumer, ConsumerRunConfig(each_message=handler))
    await wait_until(lambda: bool(stops), what="the first handler call")
    await asyncio.wait_for(asyncio.gather(*stops), 30.0)
    # disconnect() returned only after the running handler finished, and started no other.
    assert handled == [sent[0].offset, sent[1].offset, -1]
    assert (await resumed_offsets(client, config, topic, 2))[:2] == [r.offset for r in sent[2:]]


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
    assert await resumed_offsets(client, config, topic, 2) == [r.offset for r in more]
    assert sent[-1].offset < more[0].offset


async def test_commit_offsets_while_a_handler_runs_commits_every_message_handled_before_it(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # The slow message is in the same turn (max_batch_size) as the three before it: their
    # handlers returned, so they are processed, and commit_offsets() commits them even
    # while the handler of the slow one is still running.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 6))
    slow = sent[3].offset
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == slow:
            started.set()
            await release.wait()

    consumer = await start_consumer(
        client,
        consumer_config(auto_commit=False),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler),
    )
    await asyncio.wait_for(started.wait(), 30.0)
    ok(await consumer.commit_offsets())
    (position,) = ok(consumer.get_positions())
    release.set()
    ok(await consumer.disconnect())
    assert position.committed == slow


async def test_commit_offsets_from_the_handler_commits_the_messages_handled_before(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # A handler committing as it goes (auto_commit=False): each call commits every message
    # whose handler returned, which is all those before the one being handled.
    topic = await make_topic()
    sent = await produce(producer, topic, numbered("m", 4))
    committed: list[int | None] = []
    consumer: StreamingConsumer | None = None

    async def handler(payload: EachMessagePayload) -> None:
        assert consumer is not None
        ok(await consumer.commit_offsets())
        (position,) = ok(consumer.get_positions())
        committed.append(position.committed)

    consumer = ok(await client.get_consumer(consumer_config(auto_commit=False)))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    ok(await consumer.run(ConsumerRunConfig(each_message=handler)))
    await wait_until(lambda: len(committed) == 4, "four messages handled")
    ok(await consumer.disconnect())
    first = sent[0].offset
    assert committed == [None, first + 1, first + 2, first + 3]
