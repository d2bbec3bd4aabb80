"""The exactly-once run loop on the memory broker: its time bound, and a handler that
outlives a revocation (timings only an in-process broker makes exact)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import pytest

from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TopicConfig,
    Transaction,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import broker_for
from testkit import ok, wait_until

from ._memory import client_with_topics, config_for


@pytest.fixture
async def client(brokers: tuple[str, ...]) -> AsyncIterator[StreamingClient]:
    async with client_with_topics(brokers, TopicConfig("in", 2), TopicConfig("out")) as client:
        yield client


def group_config() -> ConsumerConfig:
    return ConsumerConfig("g", session_timeout=3.0, heartbeat_interval=0.1, auto_commit=False)


async def start(client: StreamingClient, run_config: ConsumerRunConfig) -> StreamingConsumer:
    consumer = ok(await client.get_consumer(group_config()))
    ok(await consumer.subscribe(SubscriptionConfig(topics=("in",), from_beginning=True)))
    ok(await consumer.run(run_config))
    return consumer


async def start_transactional(
    client: StreamingClient, transactional_id: str, **run: Any
) -> tuple[StreamingConsumer, StreamingProducer]:
    """Run the group's consumer of "in" exactly-once, through a new producer of that id."""
    producer = ok(await client.get_producer(ProducerConfig(transactional_id=transactional_id)))
    consumer = await start(client, ConsumerRunConfig(transactional_producer=producer, **run))
    return consumer, producer


async def wait_committed(
    brokers: tuple[str, ...], offsets: dict[tuple[str, int], int], what: str
) -> None:
    """Wait until the group's committed offsets are ``offsets``."""
    await wait_until(lambda: broker_for(brokers).committed("g") == offsets, what)


async def send_inputs(client: StreamingClient, values: list[tuple[bytes, int]]) -> None:
    producer = ok(await client.get_producer())
    for value, partition in values:
        ok(await producer.send("in", StreamingMessage(value, partition=partition)))


def committed_outputs(brokers: tuple[str, ...]) -> list[bytes | None]:
    """What a read_committed reader of "out" sees: the records of committed transactions."""
    topic = broker_for(brokers).topic("out")
    assert topic is not None
    end = topic.readable_end(0, committed_only=True)
    return [message.value for message in topic.read(0, 0, end, committed_only=True)]


async def test_a_transaction_ends_after_transaction_max_interval(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    await send_inputs(client, [(f"in-{index}".encode(), 0) for index in range(8)])
    given: list[Transaction] = []

    async def slow(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        given.append(payload.transaction)
        await asyncio.sleep(0.03)
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))

    await start_transactional(
        client,
        "slow",
        each_message=slow,
        transaction_max_messages=100,
        transaction_max_interval=0.05,
    )
    await wait_committed(brokers, {("in", 0): 8}, "all committed")
    sizes = collections.Counter(map(id, given)).values()
    # A message starts only while its transaction is younger than 0.05 s: two at most.
    assert sum(sizes) == 8
    assert max(sizes) <= 2


async def test_a_handler_outliving_the_revocation_has_its_transaction_aborted(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    await send_inputs(client, [(b"quick", 0), (b"stuck", 1)])
    release = asyncio.Event()
    stuck = asyncio.Event()

    async def forward(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))
        if payload.message.value == b"stuck" and not release.is_set():
            stuck.set()
            await release.wait()

    await start_transactional(client, "first", each_message=forward)
    await wait_until(stuck.is_set, "the handler stuck on its message")

    other = create_streaming_client("memory", config_for(brokers))
    await start_transactional(other, "second", each_message=forward)
    group = broker_for(brokers).group("g")
    # The revocation gave up waiting for the handler (request_timeout, 1 s): the
    # partitions moved on while the first member's transaction held their outputs.
    await wait_until(lambda: all(group.assignment().values()), "both members own a partition")
    release.set()
    await wait_committed(brokers, {("in", 0): 1, ("in", 1): 1}, "both inputs committed")
    assert sorted(value for value in committed_outputs(brokers) if value) == [b"quick", b"stuck"]
    await other.disconnect()


async def test_a_handler_cancelled_at_disconnect_leaves_no_transaction_open(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    await send_inputs(client, [(b"never-finished", 0)])
    started = asyncio.Event()

    async def hang(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))
        started.set()
        await asyncio.Event().wait()

    consumer, producer = await start_transactional(client, "hang", each_message=hang)
    await wait_until(started.is_set, "the handler running")
    # The handler outlives request_timeout (1 s): it is cancelled, its transaction aborted.
    ok(await consumer.disconnect())
    ok(await (ok(await producer.transaction())).abort())  # no transaction was left open
    assert committed_outputs(brokers) == []
    assert broker_for(brokers).committed("g") == {}


async def test_a_transaction_that_cannot_begin_is_reported_and_tried_again(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    errors: list[str] = []

    async def forward(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))

    async def on_error(error: object) -> None:
        errors.append(getattr(error, "code", ""))

    _, producer = await start_transactional(
        client, "later", each_message=forward, on_error=on_error, retry_backoff=0.01
    )
    ok(await producer.disconnect())
    await send_inputs(client, [(b"waits", 0)])
    await wait_until(lambda: "STREAMING_NOT_CONNECTED" in errors, "the failed begin reported")
    ok(await producer.connect())
    await wait_committed(brokers, {("in", 0): 1}, "committed")
    assert committed_outputs(brokers) == [b"waits"]


async def test_a_failed_batch_is_aborted_and_redelivered_whole(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    await send_inputs(client, [(f"in-{index}".encode(), 0) for index in range(6)])
    batches: list[tuple[int, ...]] = []
    errors: list[str] = []

    async def forward_then_fail_once(payload: EachBatchPayload) -> None:
        assert payload.transaction is not None
        batches.append(tuple(message.offset for message in payload.messages))
        outputs = tuple(StreamingMessage(message.value) for message in payload.messages)
        ok(await payload.transaction.send_batch(MessageBatch("out", outputs)))
        if len(batches) == 2:
            raise RuntimeError("second batch broke after sending")

    async def on_error(error: object) -> None:
        errors.append(getattr(error, "code", ""))

    await start_transactional(
        client,
        "batches",
        each_batch=forward_then_fail_once,
        on_error=on_error,
        retry_backoff=0.01,
        transaction_max_messages=4,
        transaction_max_interval=30,
    )
    await wait_committed(brokers, {("in", 0): 6}, "committed")
    # First transaction: 0-3 (committed). Second: 4-5, failed and aborted, then again.
    assert batches == [(0, 1, 2, 3), (4, 5), (4, 5)]
    assert errors == ["STREAMING_HANDLER_FAILED"]
    assert committed_outputs(brokers) == [f"in-{index}".encode() for index in range(6)]


async def test_members_joining_and_leaving_mid_stream_give_each_output_once(
    client: StreamingClient, brokers: tuple[str, ...]
) -> None:
    admin = ok(await client.get_admin())
    ok(await admin.create_topics([TopicConfig("many", 4)]))
    inputs = [f"in-{index}".encode() for index in range(3000)]

    async def forward(payload: EachMessagePayload) -> None:
        assert payload.transaction is not None
        await asyncio.sleep(0.001)  # slow enough that rebalances find transactions open
        ok(await payload.transaction.send("out", StreamingMessage(payload.message.value)))

    clients = [create_streaming_client("memory", config_for(brokers)) for _ in range(3)]
    errors: list[object] = []

    async def on_error(error: object) -> None:
        errors.append(error)

    async def member(index: int) -> StreamingConsumer:
        member_client = clients[index]
        producer = ok(
            await member_client.get_producer(ProducerConfig(transactional_id=f"member-{index}"))
        )
        consumer = ok(await member_client.get_consumer(group_config()))
        ok(await consumer.subscribe(SubscriptionConfig(topics=("many",), from_beginning=True)))
        run = ConsumerRunConfig(
            each_message=forward,
            on_error=on_error,
            transactional_producer=producer,
            transaction_max_messages=50,
        )
        ok(await consumer.run(run))
        return consumer

    sender = ok(await client.get_producer())

    async def send(values: list[bytes]) -> None:
        for index, value in enumerate(values):
            ok(await sender.send("many", StreamingMessage(value, partition=index % 4)))

    broker = broker_for(brokers)
    first = await member(0)
    await send(inputs[:1000])
    await member(1)
    await send(inputs[1000:2000])
    ok(await first.disconnect())
    await member(2)
    await send(inputs[2000:])

    def done() -> bool:
        committed = broker.committed("g")
        return sum(committed.values()) == len(inputs)

    await wait_until(done, "every input committed", within=30)
    assert sorted(value or b"" for value in committed_outputs(brokers)) == sorted(inputs)
    # Every revocation let the open transaction commit first: nothing was refused, and
    # no handled work was thrown away (no aborted record in the output).
    assert errors == []
    out = broker.topic("out")
    assert out is not None
    marks = out.marks.get(0)
    assert marks is None or not marks.aborted
    for member_client in clients:
        await member_client.disconnect()
