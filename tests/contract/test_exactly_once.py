"""Exactly-once in the run loop: ``ConsumerRunConfig.transactional_producer``, on every backend.

A pipeline reads an input topic and writes one output per input through the
payload's transaction; a ``read_committed`` reader of the output must see each
output exactly once whatever fails, and the group's committed offsets must
match what was handled. Real backends run against noida-db (the ``kafka_rules``
marker): Tansu's ``read_committed`` shows aborted records.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from qi.base import QiError, Success
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    MessageBatch,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    Transaction,
)
from testkit import Collector, ok, run_stopping_itself, unique, wait_until

from ._support import (
    ConsumerConfigFactory,
    LoopTurns,
    TopicFactory,
    expect_failure,
    numbered,
    produce,
)
from ._transactions import (
    caught_up,
    read_committed,
    start_from_beginning,
    transactional,
    transactional_producer,
    wait_caught_up,
)

pytestmark = pytest.mark.kafka_rules

Handler = Callable[[EachMessagePayload], Awaitable[None]]


class Pipeline:
    """Forwards every input message to ``sink`` within the run loop's transaction."""

    def __init__(self, sink: str) -> None:
        self.sink = sink
        self.handled: list[ConsumedMessage] = []
        self.transactions: list[Transaction] = []
        """The transaction each handled message was given (kept alive: told apart by id)."""
        self.errors: list[QiError] = []

    async def forward(self, payload: EachMessagePayload) -> None:
        transaction = payload.transaction
        assert transaction is not None
        self.handled.append(payload.message)
        self.transactions.append(transaction)
        ok(await transaction.send(self.sink, StreamingMessage(payload.message.value)))

    async def on_error(self, error: QiError) -> None:
        self.errors.append(error)

    def run_config(
        self, producer: StreamingProducer, handler: Handler | None = None, **changes: Any
    ) -> ConsumerRunConfig:
        changes.setdefault("retry_backoff", 0.05)
        return ConsumerRunConfig(
            each_message=handler or self.forward,
            on_error=self.on_error,
            transactional_producer=producer,
            **changes,
        )


async def spread(
    producer: StreamingProducer, topic: str, values: list[bytes], partitions: int
) -> None:
    """Send ``values`` round-robin over the partitions of ``topic``."""
    for index, value in enumerate(values):
        ok(await producer.send(topic, StreamingMessage(value, partition=index % partitions)))


async def both_assigned(client: StreamingClient, group_id: str) -> bool:
    admin = ok(await client.get_admin())
    members = ok(await admin.describe_group(group_id)).members
    return len(members) == 2 and all(member.assignment for member in members)


async def start_pipeline(
    client: StreamingClient,
    consumer_config: ConsumerConfigFactory,
    source: str,
    run_config: ConsumerRunConfig,
    group_id: str | None = None,
) -> StreamingConsumer:
    config = consumer_config(group_id, auto_commit=False)
    return await start_from_beginning(client, config, source, run_config)


async def run_to_the_end(
    client: StreamingClient,
    consumer_config: ConsumerConfigFactory,
    source: str,
    run_config: ConsumerRunConfig,
) -> None:
    """Run a pipeline of a new group until it has committed all of ``source``."""
    group_id = unique("group")
    await start_pipeline(client, consumer_config, source, run_config, group_id)
    await wait_caught_up(client, group_id, source)


async def expect_each_input_once(
    client: StreamingClient, consumer_config: ConsumerConfigFactory, sink: str, inputs: list[bytes]
) -> None:
    """A read_committed reader of ``sink`` sees every input exactly once (in any order)."""
    outputs = await read_committed(client, consumer_config, sink, len(inputs))
    assert sorted(outputs) == sorted(inputs)


async def _topics_with_inputs(
    producer: StreamingProducer, make_topic: TopicFactory, count: int
) -> tuple[str, str, list[bytes]]:
    """A source topic holding ``count`` inputs, an empty sink topic, and the inputs."""
    source, sink = await make_topic(), await make_topic()
    inputs = numbered("in", count)
    await produce(producer, source, inputs)
    return source, sink, inputs


async def test_every_input_gives_exactly_one_committed_output(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink = await make_topic(2), await make_topic()
    inputs = numbered("in", 40)
    await produce(producer, source, inputs[:20])
    pipeline = Pipeline(sink)
    txn_producer = await transactional_producer(client)
    group_id = unique("group")
    consumer = await start_pipeline(
        client, consumer_config, source, pipeline.run_config(txn_producer), group_id
    )
    await produce(producer, source, inputs[20:])
    await wait_caught_up(client, group_id, source)
    await expect_each_input_once(client, consumer_config, sink, inputs)
    assert pipeline.errors == []
    ok(await consumer.disconnect())
    # Disconnecting committed nothing of its own: the transactions already had.
    assert await caught_up(client, group_id, source)


async def test_a_failed_handler_aborts_and_its_transaction_is_redelivered(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink, inputs = await _topics_with_inputs(producer, make_topic, 10)
    pipeline = Pipeline(sink)
    failures = [b"in-5"]

    async def fail_once(payload: EachMessagePayload) -> None:
        await pipeline.forward(payload)  # its output joins the transaction, then it fails
        if payload.message.value in failures:
            failures.remove(payload.message.value)
            raise RuntimeError("transform broke")

    txn_producer = await transactional_producer(client)
    run_config = pipeline.run_config(txn_producer, fail_once, transaction_max_messages=10)
    await run_to_the_end(client, consumer_config, source, run_config)
    await expect_each_input_once(client, consumer_config, sink, inputs)
    assert [error.code for error in pipeline.errors] == ["STREAMING_HANDLER_FAILED"]
    handled = [message.value for message in pipeline.handled]
    # Handled up to the failure, then again from the start of the aborted transaction
    # (the last committed offset, at or before in-5), in order, to the end.
    again = handled[6:]
    assert handled[:6] == inputs[:6]
    assert len(again) >= 5 and again == inputs[len(inputs) - len(again) :]


async def test_a_handler_that_disconnects_its_consumer_leaves_no_output_twice(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # disconnect() from the handler returns at once, aborts the open transaction (the
    # handler's output in it included) and commits nothing else; the member taking over
    # writes what the aborted transaction held, once.
    source, sink, inputs = await _topics_with_inputs(producer, make_topic, 10)
    pipeline = Pipeline(sink)
    stopped: list[object] = []

    async def stop_after_in_5(payload: EachMessagePayload) -> None:
        await pipeline.forward(payload)
        if payload.message.value == b"in-5" and not stopped:
            stopped.append(await consumer.disconnect())

    group_id = unique("group")
    run_config = pipeline.run_config(
        await transactional_producer(client), stop_after_in_5, transaction_max_messages=4
    )
    consumer = ok(await client.get_consumer(consumer_config(group_id, auto_commit=False)))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(source,), from_beginning=True)))
    await run_stopping_itself(consumer, run_config)
    await wait_until(lambda: bool(stopped), what="the handler's disconnect() returned")
    assert stopped == [Success(None)]
    assert [message.value for message in pipeline.handled] == inputs[:6]

    successor = Pipeline(sink)
    run_config = successor.run_config(await transactional_producer(client))
    await start_pipeline(client, consumer_config, source, run_config, group_id)
    await wait_caught_up(client, group_id, source)
    await expect_each_input_once(client, consumer_config, sink, inputs)
    assert pipeline.errors == successor.errors == []


async def test_a_transaction_holds_at_most_transaction_max_messages(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink, inputs = await _topics_with_inputs(producer, make_topic, 12)
    pipeline = Pipeline(sink)
    txn_producer = await transactional_producer(client)
    run_config = pipeline.run_config(
        txn_producer, transaction_max_messages=3, transaction_max_interval=30
    )
    await run_to_the_end(client, consumer_config, source, run_config)
    sizes = list(collections.Counter(map(id, pipeline.transactions)).values())
    assert sum(sizes) == 12
    assert max(sizes) == 3
    # Each commit marker takes an offset of the output: one per transaction that wrote.
    admin = ok(await client.get_admin())
    (sink_offsets,) = ok(await admin.get_topic_offsets(sink))
    assert sink_offsets.end == 12 + len(sizes)


async def test_a_handler_that_never_awaits_lets_other_tasks_run_between_turns(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # As in the at-least-once loop: between two turns (of up to max_batch_size messages)
    # the event loop runs the service's other tasks, the fetches and aiokafka's heartbeat,
    # even inside one transaction and with a handler that never gives the loop a chance.
    topic = await make_topic()
    await produce(producer, topic, numbered("n", 400), partition=0)
    async with LoopTurns() as loop:
        run_config = ConsumerRunConfig(
            each_message=loop.handle,
            transactional_producer=await transactional_producer(client),
            transaction_max_messages=1_000,
            transaction_max_interval=60.0,
        )
        config = consumer_config(max_batch_size=10, auto_commit=False)
        consumer = await start_from_beginning(client, config, topic, run_config)
        await wait_until(lambda: len(loop.seen) >= 400, "all 400 messages handled")
        ok(await consumer.disconnect())
    # At most max_batch_size messages see the same turn: the loop ran between turns.
    assert len(set(loop.seen)) >= 400 // 10


async def test_each_batch_gets_the_transaction_and_its_bound(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink, inputs = await _topics_with_inputs(producer, make_topic, 10)
    batches: list[tuple[int, ...]] = []

    async def forward_batch(payload: EachBatchPayload) -> None:
        assert payload.transaction is not None
        batches.append(tuple(message.offset for message in payload.messages))
        outputs = tuple(StreamingMessage(message.value) for message in payload.messages)
        ok(await payload.transaction.send_batch(MessageBatch(sink, outputs)))

    run_config = ConsumerRunConfig(
        each_batch=forward_batch,
        transactional_producer=await transactional_producer(client),
        transaction_max_messages=4,
    )
    await run_to_the_end(client, consumer_config, source, run_config)
    assert all(1 <= len(batch) <= 4 for batch in batches)
    assert [offset for batch in batches for offset in batch] == list(range(10))
    await expect_each_input_once(client, consumer_config, sink, inputs)


async def test_a_member_joining_mid_stream_loses_and_repeats_nothing(
    client: StreamingClient,
    second_client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink = await make_topic(4), await make_topic()
    inputs = numbered("in", 200)
    first, second = Pipeline(sink), Pipeline(sink)

    async def slowly(payload: EachMessagePayload) -> None:
        await asyncio.sleep(0.02)  # so the rebalance finds transactions open
        await first.forward(payload)

    group_id = unique("group")
    await start_pipeline(
        client,
        consumer_config,
        source,
        first.run_config(await transactional_producer(client), slowly),
        group_id,
    )
    await spread(producer, source, inputs[:100], 4)
    await wait_until(lambda: len(first.handled) >= 20, "the first member at work")
    await start_pipeline(
        second_client,
        consumer_config,
        source,
        second.run_config(await transactional_producer(second_client)),
        group_id,
    )
    await wait_until(lambda: both_assigned(client, group_id), "both members assigned")
    await spread(producer, source, inputs[100:], 4)
    await wait_caught_up(client, group_id, source, within=60)
    assert second.handled, "the second member never got a partition"
    await expect_each_input_once(client, consumer_config, sink, inputs)
    assert not [error for error in first.errors + second.errors if error.context.get("fatal")]


async def test_a_fenced_producer_stops_the_loop_and_its_successor_takes_over(
    client: StreamingClient,
    second_client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    source, sink = await make_topic(), await make_topic()
    config = transactional()
    fenced_pipeline = Pipeline(sink)
    group_id = unique("group")
    fenced_consumer = await start_pipeline(
        client,
        consumer_config,
        source,
        # No backoff: a loop that went on after the fencing would report it again and again.
        fenced_pipeline.run_config(ok(await client.get_producer(config)), retry_backoff=0.0),
        group_id,
    )
    await produce(producer, source, [b"before"])
    await wait_caught_up(client, group_id, source, what="the first input committed")
    successor = ok(await second_client.get_producer(config))  # fences the loop's producer
    await produce(producer, source, [b"after"])
    await wait_until(
        lambda: any(e.code == "STREAMING_PRODUCER_FENCED" for e in fenced_pipeline.errors),
        "PRODUCER_FENCED reported",
    )
    # The fenced loop's output of "after" never becomes visible, nor its offset.
    assert not await caught_up(client, group_id, source)
    ok(await fenced_consumer.disconnect())
    fenced = [e for e in fenced_pipeline.errors if e.code == "STREAMING_PRODUCER_FENCED"]
    assert len(fenced) == 1, "the fenced loop went on"
    assert fenced[0].context["fatal"] is True

    # A successor with the same transactional_id (a restarted service) picks up the work.
    successor_pipeline = Pipeline(sink)
    await start_pipeline(
        second_client, consumer_config, source, successor_pipeline.run_config(successor), group_id
    )
    await wait_caught_up(client, group_id, source, what="the successor committed")
    assert await read_committed(client, consumer_config, sink, 2) == [b"before", b"after"]
    assert successor_pipeline.errors == []


async def test_at_least_once_payloads_have_no_transaction(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    await produce(producer, topic, [b"plain"])
    seen: list[object] = []

    async def remember(payload: EachMessagePayload) -> None:
        seen.append(payload.transaction)

    run_config = ConsumerRunConfig(each_message=remember)
    consumer = await start_from_beginning(client, consumer_config(), topic, run_config)
    await wait_until(lambda: bool(seen), "the message")
    assert seen == [None]
    ok(await consumer.disconnect())


@pytest.mark.parametrize(
    "problem",
    ["not-transactional", "auto-commit", "zero-messages", "zero-interval", "not-a-producer"],
)
async def test_an_unusable_transactional_run_is_an_invalid_config(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
    problem: str,
) -> None:
    topic = await make_topic()
    txn_producer = await transactional_producer(client)
    run: dict[str, Any] = {"transactional_producer": txn_producer}
    auto_commit = False
    if problem == "not-transactional":
        run["transactional_producer"] = producer
    elif problem == "auto-commit":
        auto_commit = True
    elif problem == "zero-messages":
        run["transaction_max_messages"] = 0
    elif problem == "zero-interval":
        run["transaction_max_interval"] = 0.0
    else:
        run["transactional_producer"] = object()
    consumer = ok(await client.get_consumer(consumer_config(auto_commit=auto_commit)))
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,))))
    outcome = await consumer.run(ConsumerRunConfig(each_message=Collector().each_message, **run))
    expect_failure(outcome, "STREAMING_INVALID_CONFIG", implementation=backend)


async def test_offsets_sent_in_transactions_pass_the_input_markers(
    client: StreamingClient,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # The input is itself written by a transaction: its commit marker ends the partition.
    source, sink = await make_topic(), await make_topic()
    writer = ok(await client.get_producer(transactional()))
    inputs = numbered("in", 3)
    written = ok(await writer.transaction())
    for value in inputs:
        ok(await written.send(source, StreamingMessage(value)))
    ok(await written.commit())
    pipeline = Pipeline(sink)
    txn_producer = ok(await client.get_producer(transactional()))
    group_id = unique("group")
    consumer = await start_pipeline(
        client, consumer_config, source, pipeline.run_config(txn_producer), group_id
    )
    try:
        await wait_until(lambda: caught_up(client, group_id, source), "lag 0 past the marker")
        # An aborted transaction later on shows the loop nothing, yet its offsets are passed.
        aborted = ok(await writer.transaction())
        ok(await aborted.send(source, StreamingMessage(b"never")))
        ok(await aborted.abort())
        await wait_until(lambda: caught_up(client, group_id, source), "lag 0 past the abort")
    finally:
        ok(await consumer.disconnect())
    assert [message.value for message in pipeline.handled] == inputs
    assert pipeline.errors == []
