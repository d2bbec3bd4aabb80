"""Contract section 9: transactions, on every backend.

A transaction's records reach ``read_committed`` consumers when it commits and
never when it aborts (``read_uncommitted`` consumers see them at once); offsets
sent with it are the group's only if it commits; a second producer with the same
``transactional_id`` fences the first. Real backends run against noida-db (the
``kafka_rules`` marker): Tansu's ``read_committed`` shows aborted records.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, NamedTuple, Protocol, cast

import pytest

from qi.base import Failure, QiError, Success
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConsumer,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
)
from testkit import Collector, ok, unique

from ._support import (
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_failure,
    numbered,
    produce,
    start_collecting,
    start_consumer,
)
from ._transactions import (
    begin,
    commit_values,
    committed_values,
    expect_only_committed,
    has,
    transactional,
    transactional_producer,
)

pytestmark = pytest.mark.kafka_rules


@pytest.fixture
async def txn_producer(client: StreamingClient) -> StreamingProducer:
    """A connected transactional producer of ``client``."""
    return await transactional_producer(client)


@pytest.fixture
async def topic(make_topic: TopicFactory) -> str:
    """A new topic of one partition."""
    return await make_topic()


class _Reader(NamedTuple):
    """A manually committing consumer that has processed everything sent to its topic."""

    source: str
    consumer: StreamingConsumer
    config: ConsumerConfig
    collector: Collector
    subscription: SubscriptionConfig


class _ReaderFactory(Protocol):
    """Sends ``values`` to a new topic, then runs a reader without auto-commit until it has them."""

    def __call__(self, values: list[bytes]) -> Awaitable[_Reader]: ...


@pytest.fixture
def reader_that_processed(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> _ReaderFactory:
    async def make(values: list[bytes]) -> _Reader:
        source = await make_topic()
        await produce(producer, source, values)
        config = consumer_config(auto_commit=False)
        subscription = SubscriptionConfig(topics=(source,), from_beginning=True)
        consumer, collector = await start_collecting(client, config, [source])
        await collector.wait_for(len(values))
        return _Reader(source, consumer, config, collector, subscription)

    return make


async def test_commit_makes_records_visible_to_read_committed(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    topic: str,
    consumer_config: ConsumerConfigFactory,
) -> None:
    txn = await begin(txn_producer)
    ok(await txn.send(topic, StreamingMessage(b"one")))
    batch = MessageBatch(topic, (StreamingMessage(b"two"), StreamingMessage(b"three")))
    sent = ok(await txn.send_batch(batch))
    assert [result.offset for result in sent.results] == [1, 2]
    ok(await txn.commit())
    seen = await committed_values(client, consumer_config, topic, until=has(b"three"))
    assert [message.value for message in seen] == [b"one", b"two", b"three"]


async def test_abort_hides_records_from_read_committed_only(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    topic: str,
    consumer_config: ConsumerConfigFactory,
) -> None:
    aborted = await begin(txn_producer)
    ok(await aborted.send(topic, StreamingMessage(b"aborted-0")))
    ok(await aborted.send(topic, StreamingMessage(b"aborted-1")))
    ok(await aborted.abort())
    await commit_values(txn_producer, topic, b"kept")

    committed = await committed_values(client, consumer_config, topic, until=has(b"kept"))
    assert [message.value for message in committed] == [b"kept"]
    # The abort marker took an offset, as in Kafka: records 0 and 1, marker 2, "kept" 3.
    assert committed[0].offset == 3
    everything = await committed_values(
        client, consumer_config, topic, until=has(b"kept"), isolation="read_uncommitted"
    )
    assert [message.value for message in everything] == [b"aborted-0", b"aborted-1", b"kept"]


async def test_open_transaction_is_hidden_until_it_commits(
    txn_producer: StreamingProducer,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic(2)
    txn = await begin(txn_producer)
    ok(await txn.send(topic, StreamingMessage(b"in-transaction", partition=0)))
    # A plain record behind the open transaction waits for it too (the last stable offset).
    ok(await producer.send(topic, StreamingMessage(b"behind", partition=0)))
    ok(await producer.send(topic, StreamingMessage(b"elsewhere", partition=1)))

    config = consumer_config(isolation_level="read_committed")
    consumer, collector = await collecting(topic, config=config)
    try:
        await collector.wait_for(1)
        assert collector.values() == [b"elsewhere"]
        ok(await txn.commit())
        await collector.wait_for(3)
        assert collector.offsets(topic, 0) == [0, 1]
    finally:
        ok(await consumer.disconnect())


async def test_leaving_the_block_without_commit_aborts(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    topic: str,
    consumer_config: ConsumerConfigFactory,
) -> None:
    async with await begin(txn_producer) as txn:
        ok(await txn.send(topic, StreamingMessage(b"forgotten")))
    expect_failure(await txn.commit(), "STREAMING_INVALID_ARGUMENT")
    with pytest.raises(RuntimeError, match="handler broke"):
        async with await begin(txn_producer) as txn:
            ok(await txn.send(topic, StreamingMessage(b"raised")))
            raise RuntimeError("handler broke")
    async with await begin(txn_producer) as txn:
        ok(await txn.send(topic, StreamingMessage(b"committed")))
        ok(await txn.commit())

    await expect_only_committed(client, consumer_config, topic, b"committed")


async def test_a_transaction_with_a_message_the_broker_refused_cannot_commit(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # As in Kafka: what it holds is not what the caller sent, so it can only abort. (Each
    # phase has its own producer: on noida-db, librdkafka's next transaction after such an
    # abort fails too (its first send purged; raw confluent-kafka: OUT_OF_ORDER_SEQUENCE_NUMBER
    # at commit), which this test is not about.)
    topic = await make_topic(config={"max.message.bytes": "1000"})
    txn = await begin(txn_producer)
    ok(await txn.send(topic, StreamingMessage(b"sent")))
    expect_failure(
        await txn.send(topic, StreamingMessage(b"x" * 5_000)), "STREAMING_MESSAGE_TOO_LARGE"
    )
    error = expect_failure(await txn.commit(), "STREAMING_TRANSACTION_FAILED")
    assert error.context["abortable"] is True
    ok(await txn.abort())
    batched = await begin(await transactional_producer(client))
    big = MessageBatch(topic, (StreamingMessage(b"batched"), StreamingMessage(b"y" * 5_000)))
    expect_failure(await batched.send_batch(big), "STREAMING_BATCH_PARTIAL_FAILURE")
    expect_failure(await batched.commit(), "STREAMING_TRANSACTION_FAILED")
    ok(await batched.abort())
    await commit_values(await transactional_producer(client), topic, b"whole")

    await expect_only_committed(client, consumer_config, topic, b"whole")


async def test_send_offsets_commits_the_group_offsets_with_the_transaction(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    make_topic: TopicFactory,
    reader_that_processed: _ReaderFactory,
) -> None:
    source, reader, group, _, _ = await reader_that_processed(numbered("in", 5))
    sink = await make_topic()

    committed = await begin(txn_producer)
    ok(await committed.send(sink, StreamingMessage(b"out")))
    ok(await committed.send_offsets(reader, {(source, 0): 3}))
    ok(await committed.commit())
    aborted = await begin(txn_producer)
    ok(await aborted.send_offsets(reader, {(source, 0): 4}))
    ok(await aborted.abort())
    # The reader processed all five, but its progress belongs to the transactions now:
    # leaving the group commits nothing by itself.
    ok(await reader.disconnect())

    resumed = await consume(client, group, [source], 2)
    assert [message.offset for message in resumed] == [3, 4]


async def test_send_offsets_without_offsets_sends_what_was_processed(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    producer: StreamingProducer,
    reader_that_processed: _ReaderFactory,
) -> None:
    source, reader, group, _, _ = await reader_that_processed(numbered("first", 3))
    txn = await begin(txn_producer)
    ok(await txn.send_offsets(reader))
    ok(await txn.commit())
    ok(await reader.disconnect())
    ok(await producer.send(source, StreamingMessage(b"later")))

    resumed = await consume(client, group, [source], 1)
    assert [message.value for message in resumed] == [b"later"]


async def test_a_consumer_run_again_after_its_offsets_went_through_a_transaction_commits_nothing(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    reader_that_processed: _ReaderFactory,
) -> None:
    source, reader, group, collector, subscription = await reader_that_processed(numbered("m", 3))
    txn = await begin(txn_producer)
    ok(await txn.send_offsets(reader, {(source, 0): 1}))
    ok(await txn.commit())
    ok(await reader.disconnect())
    # The same consumer again: its progress still belongs to the transactions.
    ok(await reader.connect())
    ok(await reader.subscribe(subscription))
    ok(await reader.run(collector.run_config()))
    await collector.wait_for(5)
    ok(await reader.disconnect())
    admin = ok(await client.get_admin())
    lag = ok(await admin.get_group_lag(group.group_id, [source]))
    assert [partition.committed for partition in lag] == [1]


async def test_a_second_producer_with_the_same_id_fences_the_first(
    client: StreamingClient,
    second_client: StreamingClient,
    topic: str,
    consumer_config: ConsumerConfigFactory,
) -> None:
    config = transactional()
    first = ok(await client.get_producer(config))
    zombie = await begin(first)
    ok(await zombie.send(topic, StreamingMessage(b"zombie")))
    second = ok(await second_client.get_producer(config))
    # A send of the fenced producer says so (not merely that a message was lost), and so
    # does its commit.
    late = expect_failure(
        await zombie.send(topic, StreamingMessage(b"late")), "STREAMING_PRODUCER_FENCED"
    )
    assert late.context["fatal"] is True
    fenced = expect_failure(await zombie.commit(), "STREAMING_PRODUCER_FENCED")
    assert fenced.context["fatal"] is True
    again = expect_failure(await first.transaction(), "STREAMING_PRODUCER_FENCED")
    assert again.context["fatal"] is True
    await commit_values(second, topic, b"successor")

    await expect_only_committed(client, consumer_config, topic, b"successor")


async def test_transaction_calls_out_of_turn_are_invalid_arguments(
    client: StreamingClient,
    producer: StreamingProducer,
    txn_producer: StreamingProducer,
    topic: str,
) -> None:
    expect_failure(await producer.transaction(), "STREAMING_INVALID_ARGUMENT")
    txn = await begin(txn_producer)
    expect_failure(await txn_producer.transaction(), "STREAMING_INVALID_ARGUMENT")
    expect_failure(
        await txn_producer.send(topic, StreamingMessage(b"outside")), "STREAMING_INVALID_ARGUMENT"
    )
    expect_failure(
        await txn_producer.send_batch(MessageBatch(topic, (StreamingMessage(b"outside"),))),
        "STREAMING_INVALID_ARGUMENT",
    )
    expect_failure(
        await txn.send_offsets(cast(StreamingConsumer, producer)), "STREAMING_INVALID_ARGUMENT"
    )
    expect_failure(await cast(Any, txn).send(topic), "STREAMING_INVALID_ARGUMENT")
    ok(await txn.send(topic, StreamingMessage(b"inside")))
    ok(await txn.commit())
    for ended in (
        await txn.send(topic, StreamingMessage(b"late")),
        await txn.send_batch(MessageBatch(topic, (StreamingMessage(b"late"),))),
        await txn.commit(),
        await txn.abort(),
    ):
        expect_failure(ended, "STREAMING_INVALID_ARGUMENT")
    # The producer is free for the next transaction.
    ok(await (await begin(txn_producer)).abort())


async def test_send_offsets_needs_a_running_consumer_and_valid_offsets(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    topic: str,
    consumer_config: ConsumerConfigFactory,
    collecting: CollectingConsumerFactory,
) -> None:
    idle = ok(await client.get_consumer(consumer_config(auto_commit=False)))
    txn = await begin(txn_producer)
    expect_failure(await txn.send_offsets(idle), "STREAMING_INVALID_ARGUMENT")
    running, _ = await collecting(
        topic, config=consumer_config(auto_commit=False), from_beginning=False
    )
    beyond_kafka = ({(topic, 0): 2**63}, {(topic, 2**31): 0})  # int64 offsets, int32 partitions
    for offsets in (
        {(topic, 0): -1},
        {(topic, -1): 0},
        {topic: 0},
        [((topic, 0), 1)],
        *beyond_kafka,
    ):
        error = expect_failure(
            await txn.send_offsets(running, cast(Any, offsets)), "STREAMING_INVALID_ARGUMENT"
        )
        assert isinstance(error, QiError)
    ok(await txn.abort())
    ok(await running.disconnect())


@pytest.mark.parametrize(
    "config",
    [
        ProducerConfig(transactional_id="t", idempotent=False),
        ProducerConfig(transactional_id="t", idempotent=False, acks=1),
        ProducerConfig(transactional_id=""),
        ProducerConfig(transactional_id=cast(Any, 7)),
        ProducerConfig(transactional_id="t", transaction_timeout=0),
        # Above Kafka's default transaction.max.timeout.ms (15 min): the broker refuses it.
        ProducerConfig(transactional_id=unique("txn"), transaction_timeout=3_600),
    ],
    ids=["not-idempotent", "acks-1", "empty-id", "int-id", "zero-timeout", "over-broker-max"],
)
async def test_invalid_transactional_config_is_reported(
    client: StreamingClient, backend: str, config: ProducerConfig
) -> None:
    expect_failure(
        await client.get_producer(config), "STREAMING_INVALID_CONFIG", implementation=backend
    )


async def test_invalid_isolation_level_is_reported(
    client: StreamingClient, backend: str, consumer_config: ConsumerConfigFactory
) -> None:
    result = await client.get_consumer(consumer_config(isolation_level="serializable"))
    expect_failure(result, "STREAMING_INVALID_CONFIG", implementation=backend)


async def test_disconnecting_aborts_the_open_transaction(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    producer: StreamingProducer,
    topic: str,
    consumer_config: ConsumerConfigFactory,
) -> None:
    txn = await begin(txn_producer)
    ok(await txn.send(topic, StreamingMessage(b"left open")))
    ok(await txn_producer.disconnect())
    expect_failure(await txn.commit(), "STREAMING_INVALID_ARGUMENT")
    # Without the abort, the open transaction would hold this back for transaction_timeout.
    ok(await producer.send(topic, StreamingMessage(b"after")))
    await expect_only_committed(client, consumer_config, topic, b"after")


async def test_concurrent_transactions_of_one_producer_are_refused(
    txn_producer: StreamingProducer,
) -> None:
    first, second = await asyncio.gather(txn_producer.transaction(), txn_producer.transaction())
    began = [outcome for outcome in (first, second) if isinstance(outcome, Success)]
    assert len(began) == 1
    refused = second if isinstance(first, Success) else first
    expect_failure(refused, "STREAMING_INVALID_ARGUMENT")
    ok(await began[0].value.abort())


async def test_a_send_refused_while_its_transaction_commits_says_nothing_was_written(
    txn_producer: StreamingProducer, topic: str
) -> None:
    txn = await begin(txn_producer)
    ok(await txn.send(topic, StreamingMessage(b"first")))
    # A send made while the commit is under way joins the transaction or is refused, as the
    # backend's client decides (aiokafka refuses it before handing anything over).
    committed, late = await asyncio.gather(txn.commit(), txn.send(topic, StreamingMessage(b"late")))
    ok(committed)
    if isinstance(late, Failure):
        assert late.error.context["delivery"] == "not_written", late.error


async def test_send_offsets_while_a_handler_runs_covers_every_message_handled_before_it(
    client: StreamingClient,
    txn_producer: StreamingProducer,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # Consume-transform-produce with a transaction of its own: the handler keeps its output,
    # another task commits the outputs with the offsets the consumer has processed. The
    # outputs of messages whose handler returned and their offsets go together, or a
    # restart handles those messages again and their outputs appear twice.
    source = await make_topic()
    sink = await make_topic()
    sent = await produce(producer, source, numbered("in", 6))
    slow = sent[3].offset
    outputs: list[bytes] = []
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(payload: EachMessagePayload) -> None:
        if payload.message.offset == slow:
            started.set()
            await release.wait()
        outputs.append(b"out-" + (payload.message.value or b""))

    config = consumer_config(auto_commit=False)
    reader = await start_consumer(
        client,
        config,
        SubscriptionConfig(topics=(source,), from_beginning=True),
        ConsumerRunConfig(each_message=handler),
    )
    await asyncio.wait_for(started.wait(), 30.0)
    txn = await begin(txn_producer)
    for value in outputs:
        ok(await txn.send(sink, StreamingMessage(value)))
    ok(await txn.send_offsets(reader))
    ok(await txn.commit())
    written = len(outputs)
    release.set()
    ok(await reader.disconnect())  # commits nothing: the transactions own its progress

    resumed = await consume(client, config, [source], 1)
    assert written == 3
    assert resumed[0].offset == slow
