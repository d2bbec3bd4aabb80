"""Contract section 5, the producer: delivery, ordering, batches and every way a send fails."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from qi.base import Failure, Success
from qi.base.streaming import (
    BatchProduceResult,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingClient,
    StreamingMessage,
    StreamingProducer,
)
from testkit import ok, unique

from ._support import (
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_broker_error,
    expect_failure,
    expect_produce_failure,
    numbered,
    produce,
)

INVALID_TOPICS: list[Any] = ["", ".", "..", "a b", "topic/with/slash", "t" * 250, "tøpic", None, 42]


async def test_send_returns_where_the_message_was_written(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(3)
    result = ok(await producer.send(topic, StreamingMessage(b"hello")))
    assert isinstance(result, ProduceResult)
    assert result.topic == topic
    assert 0 <= result.partition < 3
    assert result.offset >= 0
    assert result.timestamp is None or isinstance(result.timestamp, datetime)


async def test_offsets_increase_per_partition(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(2)
    for partition in (0, 1):
        results = await produce(producer, topic, numbered("m", 5), partition=partition)
        offsets = [result.offset for result in results]
        assert {result.partition for result in results} == {partition}
        assert offsets == sorted(set(offsets)), offsets


async def test_same_key_goes_to_the_same_partition(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(6)
    for key in ("user-1", "user-2", "ключ"):
        by_str = await produce(producer, topic, numbered(key, 5), key=key)
        by_bytes = ok(await producer.send(topic, StreamingMessage(b"b", key=key.encode())))
        # A str key is its UTF-8 bytes: both forms must land together.
        assert {result.partition for result in by_str} == {by_bytes.partition}, key


async def test_explicit_partition_is_honoured(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(3)
    for partition in (2, 0, 1, 2):
        message = StreamingMessage(b"x", key="same-key", partition=partition)
        assert ok(await producer.send(topic, message)).partition == partition


async def test_message_fields_round_trip_to_the_consumer(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic(3)
    # A day old, to the millisecond: older than "now", yet younger than any broker's default
    # retention (7 days). noida-db deletes an older record within a second or so, before
    # the consumer may have read it (see README, "Development brokers").
    stamped = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=123000)
    full = StreamingMessage(
        b"\x00payload\xff",
        key="k-1",
        timestamp=stamped,
        partition=2,
        headers={"text": "héllo", "raw": b"\x00\xff", "empty": b""},
    )
    sent_full = ok(await producer.send(topic, full))
    sent_bare = ok(await producer.send(topic, StreamingMessage(b"bare", key=b"\x00bin")))
    sent_keyless = ok(await producer.send(topic, StreamingMessage(b"keyless", partition=1)))
    before = datetime.now(UTC)

    received = await consume(client, consumer_config(), [topic], 3)

    by_value = {message.value: message for message in received}
    assert len(received) == 3 and set(by_value) == {b"\x00payload\xff", b"bare", b"keyless"}
    got = by_value[b"\x00payload\xff"]
    assert (got.topic, got.partition, got.offset) == (topic, 2, sent_full.offset)
    assert got.key == b"k-1"
    assert got.timestamp == stamped
    # str header values arrive as their UTF-8 bytes.
    assert dict(got.headers) == {"text": "héllo".encode(), "raw": b"\x00\xff", "empty": b""}
    bare = by_value[b"bare"]
    assert (bare.partition, bare.offset) == (sent_bare.partition, sent_bare.offset)
    assert bare.key == b"\x00bin"
    assert dict(bare.headers) == {}
    # Without a timestamp the producer stamps the message with the current time.
    assert bare.timestamp is not None
    assert bare.timestamp.utcoffset() == timedelta(0)
    assert abs(bare.timestamp - before) < timedelta(minutes=5)
    keyless = by_value[b"keyless"]
    assert (keyless.partition, keyless.offset) == (1, sent_keyless.offset)
    assert keyless.key is None


async def test_send_batch_results_are_in_input_order(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(3)
    partitions = [2, 0, 1, 2, 0, 1, 0]
    messages = tuple(
        StreamingMessage(f"v{index}".encode(), partition=partition)
        for index, partition in enumerate(partitions)
    )
    batch = ok(await producer.send_batch(MessageBatch(topic, messages)))
    assert isinstance(batch, BatchProduceResult)
    assert batch.topic == topic
    assert isinstance(batch.results, tuple) and len(batch.results) == len(messages)
    assert [result.partition for result in batch.results] == partitions
    assert all(result.topic == topic for result in batch.results)
    for partition in set(partitions):
        offsets = [result.offset for result in batch.results if result.partition == partition]
        assert offsets == sorted(set(offsets)), (partition, offsets)


async def test_send_batch_keeps_input_order_within_a_partition(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic(4)
    values = numbered("ordered", 50)
    batch = MessageBatch(topic, tuple(StreamingMessage(v, key="one-key") for v in values))
    results = ok(await producer.send_batch(batch)).results
    assert len({result.partition for result in results}) == 1
    offsets = [result.offset for result in results]
    assert offsets == sorted(set(offsets))
    received = await consume(client, consumer_config(), [topic], len(values))
    assert [message.value for message in received] == values


async def test_send_batch_results_say_where_each_message_was_written(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # Partitions interleaved, some messages stamped, and 4 KiB values: more than one record
    # batch per partition on a batching client, so no offset may be guessed across them.
    topic = await make_topic(3)
    stamped = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=250000)
    messages = tuple(
        StreamingMessage(
            f"{index:04}".encode() * 1024,
            partition=(0, 2, 0, 1)[index % 4],
            timestamp=stamped + timedelta(milliseconds=index) if index % 3 == 0 else None,
        )
        for index in range(60)
    )
    results = ok(await producer.send_batch(MessageBatch(topic, messages))).results
    received = await consume(client, consumer_config(), [topic], len(messages))
    where = {(message.partition, message.offset): message for message in received}
    for message, result in zip(messages, results, strict=True):
        got = where[(result.partition, result.offset)]
        assert (got.value, result.partition) == (message.value, message.partition)
        assert result.timestamp == got.timestamp
        if message.timestamp is not None:
            assert result.timestamp == message.timestamp


async def test_empty_batch_succeeds_with_no_results(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic()
    assert ok(await producer.send_batch(MessageBatch(topic, ()))) == BatchProduceResult(topic, ())


async def test_batch_with_invalid_messages_is_a_partial_failure(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic(1)
    messages = (
        StreamingMessage(b"good-0"),
        StreamingMessage(cast(Any, "a str is not bytes")),
        StreamingMessage(b"good-1"),
        StreamingMessage(b"no such partition", partition=99),
        StreamingMessage(b"good-2"),
    )
    result = await producer.send_batch(MessageBatch(topic, messages))

    error = expect_failure(result, "STREAMING_BATCH_PARTIAL_FAILURE", implementation=backend)
    outcomes = error.context["results"]
    assert isinstance(outcomes, tuple) and len(outcomes) == len(messages)
    for index in (1, 3):
        failed = expect_produce_failure(
            outcomes[index], "STREAMING_INVALID_MESSAGE", implementation=backend
        )
        assert failed.context["delivery"] == "not_written"
        # The position in the caller's batch, though the backend never saw message 1.
        assert failed.context["index"] == index
    acknowledged = [ok(outcomes[index]) for index in (0, 2, 4)]
    assert all(isinstance(value, ProduceResult) for value in acknowledged)
    offsets = [value.offset for value in acknowledged]
    assert offsets == sorted(set(offsets))
    # The acknowledged ones were really written, in input order.
    received = await consume(client, consumer_config(), [topic], 3)
    assert [message.value for message in received] == [b"good-0", b"good-1", b"good-2"]
    assert [message.offset for message in received] == offsets


async def test_batch_where_every_message_fails_is_a_partial_failure(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic()
    messages = (cast(Any, None), StreamingMessage(b"x", key=cast(Any, 5)))
    error = expect_failure(
        await producer.send_batch(MessageBatch(topic, messages)),
        "STREAMING_BATCH_PARTIAL_FAILURE",
        implementation=backend,
    )
    outcomes = error.context["results"]
    assert isinstance(outcomes, tuple) and len(outcomes) == 2
    for outcome in outcomes:
        expect_produce_failure(outcome, "STREAMING_INVALID_MESSAGE", implementation=backend)


@pytest.mark.parametrize("name", INVALID_TOPICS, ids=repr)
async def test_invalid_topic_names_are_rejected(
    producer: StreamingProducer, backend: str, name: Any
) -> None:
    message = StreamingMessage(b"x")
    for result in (
        await producer.send(name, message),
        await producer.send_batch(MessageBatch(name, (message,))),
    ):
        error = expect_produce_failure(result, "STREAMING_INVALID_TOPIC", implementation=backend)
        assert error.context["delivery"] == "not_written"


@pytest.mark.parametrize(
    "message",
    [
        None,
        b"raw bytes",
        "a string",
        {"value": b"x"},
        StreamingMessage(cast(Any, "not bytes")),
        StreamingMessage(cast(Any, 12)),
        StreamingMessage(b"x", key=cast(Any, 12)),
        StreamingMessage(b"x", key=cast(Any, 1.5)),
        StreamingMessage(b"x", key=cast(Any, ["k"])),
        StreamingMessage(b"x", headers=cast(Any, {"h": 1})),
        StreamingMessage(b"x", headers=cast(Any, {1: b"v"})),
        StreamingMessage(b"x", headers=cast(Any, [("h", b"v")])),
        StreamingMessage(b"x", partition=-1),
        StreamingMessage(b"x", partition=2**31),  # beyond Kafka's int32
        StreamingMessage(b"x", partition=cast(Any, "0")),
        StreamingMessage(b"x", timestamp=cast(Any, "2024-01-01")),
    ],
    ids=repr,
)
async def test_invalid_messages_are_rejected(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str, message: Any
) -> None:
    topic = await make_topic()
    error = expect_produce_failure(
        await producer.send(topic, message), "STREAMING_INVALID_MESSAGE", implementation=backend
    )
    assert error.context["delivery"] == "not_written"


async def test_whole_batch_problems_fail_the_whole_batch(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic()
    for batch in (None, "batch", [StreamingMessage(b"x")], MessageBatch(topic, cast(Any, None))):
        expect_produce_failure(
            await producer.send_batch(cast(Any, batch)),
            "STREAMING_INVALID_MESSAGE",
            implementation=backend,
        )


async def test_message_over_max_message_bytes_is_too_large(
    client: StreamingClient,
    producer_config: ProducerConfig,
    make_topic: TopicFactory,
    backend: str,
) -> None:
    limit = 2000
    producer = ok(
        await client.get_producer(dataclasses.replace(producer_config, max_message_bytes=limit))
    )
    topic = await make_topic()
    too_large = [
        StreamingMessage(b"v" * (limit + 1)),
        StreamingMessage(b"v" * (limit - 10), key="k" * 11),
        StreamingMessage(b"v" * (limit - 10), key=b"k" * 5, headers={"h": "x" * 5}),
        StreamingMessage(b"v", headers={"a": b"x" * (limit // 2), "b": "y" * (limit // 2)}),
    ]
    for message in too_large:
        error = expect_produce_failure(
            await producer.send(topic, message),
            "STREAMING_MESSAGE_TOO_LARGE",
            implementation=backend,
        )
        assert error.context["delivery"] == "not_written"
    # Key, value and headers adding up to exactly the limit are fine.
    exact = StreamingMessage(b"v" * (limit - 20), key="k" * 10, headers={"hh": b"x" * 8})
    ok(await producer.send(topic, exact))
    outcome = await producer.send_batch(MessageBatch(topic, (exact, too_large[0])))
    error = expect_failure(outcome, "STREAMING_BATCH_PARTIAL_FAILURE", implementation=backend)
    ok(error.context["results"][0])
    expect_produce_failure(
        error.context["results"][1], "STREAMING_MESSAGE_TOO_LARGE", implementation=backend
    )


async def test_send_to_a_missing_topic_is_topic_not_found(
    producer: StreamingProducer, client: StreamingClient, backend: str
) -> None:
    topic = unique("missing")
    started = time.monotonic()
    error = expect_produce_failure(
        await producer.send(topic, StreamingMessage(b"x")),
        "STREAMING_TOPIC_NOT_FOUND",
        implementation=backend,
    )
    elapsed = time.monotonic() - started
    request_timeout = 10.0  # the streaming_config fixture's
    assert elapsed < request_timeout + 3.0, f"took {elapsed:.1f}s"
    expect_broker_error(error)
    # The library never asks for automatic topic creation.
    admin = ok(await client.get_admin())
    assert topic not in ok(await admin.list_topics())


async def test_a_topic_created_after_a_failed_send_is_found(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    # A client that remembered the topic as missing (librdkafka does) must look again
    # rather than answer TOPIC_NOT_FOUND forever.
    topic = unique("late")
    expect_produce_failure(
        await producer.send(topic, StreamingMessage(b"early")),
        "STREAMING_TOPIC_NOT_FOUND",
        implementation=backend,
    )
    await make_topic(name=topic)
    ok(await producer.send(topic, StreamingMessage(b"late")))
    late = await producer.send_batch(MessageBatch(topic, (StreamingMessage(b"later"),)))
    ok(late)


async def test_concurrent_sends_each_get_their_own_offset(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(3)
    outcomes = await asyncio.gather(
        *(producer.send(topic, StreamingMessage(b"%d" % i)) for i in range(500))
    )
    results = [ok(outcome) for outcome in outcomes]
    assert len({(result.partition, result.offset) for result in results}) == 500
    for partition in {result.partition for result in results}:
        offsets = sorted(r.offset for r in results if r.partition == partition)
        assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), partition


async def test_send_to_a_nonexistent_partition_is_invalid_message(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic(2)
    error = expect_produce_failure(
        await producer.send(topic, StreamingMessage(b"x", partition=2)),
        "STREAMING_INVALID_MESSAGE",
        implementation=backend,
    )
    assert error.context["delivery"] == "not_written"


async def test_acks_zero_reports_offset_minus_one(
    client: StreamingClient, make_topic: TopicFactory
) -> None:
    producer = ok(await client.get_producer(ProducerConfig(idempotent=False, acks=0)))
    topic = await make_topic()
    result = ok(await producer.send(topic, StreamingMessage(b"fire and forget", partition=0)))
    assert (result.topic, result.partition, result.offset) == (topic, 0, -1)


async def test_acks_zero_reports_offset_minus_one_for_every_message_of_a_large_batch(
    client: StreamingClient, make_topic: TopicFactory
) -> None:
    # librdkafka numbers an unacknowledged batch from -1001: past its 1,001st message
    # the numbers would pass for offsets (0, 1, ...) if taken as they come.
    config = ProducerConfig(idempotent=False, acks=0, linger=0.2)
    producer = ok(await client.get_producer(config))
    topic = await make_topic()
    messages = tuple(StreamingMessage(b"%d" % n, partition=0) for n in range(3_000))
    results = ok(await producer.send_batch(MessageBatch(topic, messages))).results
    assert {result.offset for result in results} == {-1}


async def test_not_connected_after_disconnect_and_connect_again(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic()
    message = StreamingMessage(b"x")
    ok(await producer.disconnect())
    ok(await producer.disconnect())  # idempotent

    assert not producer.is_connected()
    for result in (
        await producer.send(topic, message),
        await producer.send_batch(MessageBatch(topic, (message,))),
    ):
        expect_produce_failure(result, "STREAMING_NOT_CONNECTED", implementation=backend)
    expect_failure(producer.get_native_client(), "STREAMING_NOT_CONNECTED", implementation=backend)

    ok(await producer.connect())
    ok(await producer.connect())  # idempotent
    assert producer.is_connected()
    assert ok(await producer.send(topic, message)).topic == topic
    assert ok(await producer.send_batch(MessageBatch(topic, (message,)))).topic == topic


async def test_get_native_client_when_connected(
    producer: StreamingProducer,
) -> None:
    native = producer.get_native_client()
    assert isinstance(native, Success)
    assert native.value is not None
    assert not isinstance(native.value, Failure)
