"""Contract sections 3 and 5: messages mean what Kafka means, and every backend says so.

Tombstones, the limits a broker puts on record batches, compacted topics, topic
configs, timestamps, deleted topics and where unkeyed messages go. The tests marked
``kafka_rules`` need a broker that enforces Kafka's rules (see conftest): the memory
broker must refuse exactly what it refuses.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pytest

from qi.base import Failure, Success
from qi.base.streaming import (
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    TopicConfig,
)
from testkit import ok, unique

from ._support import (
    ON_MEMORY_BROKER,
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_failure,
    expect_produce_failure,
)

COMPACT = {"cleanup.policy": "compact"}
# Kafka's defaults: message.max.bytes is 1 MiB + 12, and a lone record of a value and no key
# or headers takes 72 bytes more in its record batch (61 header, 11 framing).
LARGEST_LONE_VALUE = 1_048_588 - 72


@pytest.mark.kafka_rules
async def test_tombstones_are_sent_and_consumed_as_none(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic(1, config=COMPACT)
    ok(await producer.send(topic, StreamingMessage(b"v1", key="user-1")))
    ok(await producer.send(topic, StreamingMessage(None, key="user-1")))
    batch = (StreamingMessage(b"v2", key="user-2"), StreamingMessage(None, key="user-2"))
    sent = ok(await producer.send_batch(MessageBatch(topic, batch))).results
    assert [result.offset for result in sent] == [2, 3]

    received = await consume(client, consumer_config(), [topic], 4)

    assert [(m.key, m.value) for m in sorted(received, key=lambda m: m.offset)] == [
        (b"user-1", b"v1"),
        (b"user-1", None),
        (b"user-2", b"v2"),
        (b"user-2", None),
    ]


@pytest.mark.kafka_rules
async def test_a_compacted_topic_refuses_records_without_a_key(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic(2, config=COMPACT)
    error = expect_produce_failure(
        await producer.send(topic, StreamingMessage(b"no key")),
        "STREAMING_INVALID_MESSAGE",
        implementation=backend,
    )
    assert error.context["delivery"] == "not_written"

    # Kafka refuses a record batch holding a keyless record whole: a keyed record that went
    # in the same record batch fails with it (always on memory and aiokafka, which send a
    # call's records of a partition as one batch; mostly on confluent, whose batches are
    # what librdkafka holds when it sends). A record to another partition is written.
    batch = (
        StreamingMessage(b"elsewhere", key="k", partition=1),
        StreamingMessage(b"no key", partition=0),
        StreamingMessage(b"beside it", key="k", partition=0),
    )
    failure = expect_failure(
        await producer.send_batch(MessageBatch(topic, batch)), "STREAMING_BATCH_PARTIAL_FAILURE"
    )
    elsewhere, keyless, beside = failure.context["results"]
    assert isinstance(elsewhere, Success)
    for result in (keyless, beside) if isinstance(beside, Failure) else (keyless,):
        error = expect_produce_failure(result, "STREAMING_INVALID_MESSAGE", implementation=backend)
        assert error.context["delivery"] == "not_written"
    ok(await producer.send(topic, StreamingMessage(b"keyed", key="k", partition=0)))


@pytest.mark.kafka_rules
async def test_the_broker_limit_counts_the_record_batch(
    client: StreamingClient, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic(1)
    roomy = ok(await client.get_producer(ProducerConfig(max_message_bytes=2_000_000)))
    ok(await roomy.send(topic, StreamingMessage(b"x" * LARGEST_LONE_VALUE)))
    for size in (LARGEST_LONE_VALUE + 1, 1_100_000):
        error = expect_produce_failure(
            await roomy.send(topic, StreamingMessage(b"x" * size)),
            "STREAMING_MESSAGE_TOO_LARGE",
            implementation=backend,
        )
        assert error.context["delivery"] == "not_written"

    # Within the default max_message_bytes (1 MiB of key, value and headers), yet over the
    # broker's default limit once the record batch is counted.
    default = ok(await client.get_producer())
    error = expect_produce_failure(
        await default.send(topic, StreamingMessage(b"x" * 1_048_576)),
        "STREAMING_MESSAGE_TOO_LARGE",
        implementation=backend,
    )
    assert error.context["delivery"] == "not_written"
    # A refused record leaves the partition usable (for an idempotent producer too: the
    # broker never saw its sequence numbers).
    for producer in (roomy, default):
        ok(await producer.send(topic, StreamingMessage(b"after")))


@pytest.mark.kafka_rules
async def test_a_topic_max_message_bytes_is_enforced(
    producer: StreamingProducer, make_topic: TopicFactory, backend: str
) -> None:
    topic = await make_topic(1, config={"max.message.bytes": "1000"})
    # 930 bytes of value: a record of 937 bytes (2-byte varints), a batch of exactly 1000.
    ok(await producer.send(topic, StreamingMessage(b"x" * 930)))
    for size in (931, 2_000):
        error = expect_produce_failure(
            await producer.send(topic, StreamingMessage(b"x" * size)),
            "STREAMING_MESSAGE_TOO_LARGE",
            implementation=backend,
        )
        assert error.context["delivery"] == "not_written"


@pytest.mark.kafka_rules
async def test_create_topics_refuses_unknown_and_invalid_configs_per_topic(
    client: StreamingClient, backend: str
) -> None:
    admin = ok(await client.get_admin())
    refused = [
        TopicConfig(unique("unknown"), config_entries={"no.such.config": "1"}),
        TopicConfig(unique("policy"), config_entries={"cleanup.policy": "bogus"}),
        TopicConfig(unique("retention"), config_entries={"retention.ms": "abc"}),
        TopicConfig(unique("replicas"), replication_factor=3),
    ]
    valid = unique("valid")
    settings = TopicConfig(valid, config_entries={"retention.ms": "-1", **COMPACT})
    try:
        error = expect_failure(
            await admin.create_topics([*refused, settings]),
            "STREAMING_INVALID_CONFIG",
            implementation=backend,
        )
        assert sorted(error.context["topics"]) == sorted(config.topic for config in refused)
        listed = ok(await admin.list_topics())
        assert valid in listed
        assert not {config.topic for config in refused} & set(listed)
    finally:
        await admin.delete_topics([valid])


async def test_a_timestamp_is_kept_as_given_or_refused_never_replaced(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    # Kept for ever: a broker enforcing retention.ms (noida-db sweeps every second or so)
    # would delete records stamped in 1970 before they are read back.
    topic = await make_topic(1, config={"retention.ms": "-1"})
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    one_ms = datetime(1970, 1, 1, 0, 0, 0, 1000, tzinfo=UTC)
    kept = []
    for stamp in (epoch, one_ms):
        result = await producer.send(topic, StreamingMessage(b"old", timestamp=stamp))
        if isinstance(result, Failure):
            # librdkafka reads 0 ms as "now": the confluent backend refuses rather than
            # stamp the message with another time (README, backend caveats).
            assert stamp == epoch and backend == "confluent", result
            error = expect_produce_failure(
                result, "STREAMING_INVALID_MESSAGE", implementation=backend
            )
            assert error.context["delivery"] == "not_written"
            continue
        assert result.value.timestamp == stamp
        kept.append(stamp)

    received = await consume(client, consumer_config(), [topic], len(kept))

    assert [message.timestamp for message in sorted(received, key=lambda m: m.offset)] == kept


@pytest.mark.kafka_rules
async def test_a_deleted_topic_is_not_found_and_found_again_once_recreated(
    streaming_config: StreamingConfig,
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    backend: str,
) -> None:
    topic = await make_topic(3)
    ok(await producer.send(topic, StreamingMessage(b"before")))
    admin = ok(await client.get_admin())
    ok(await admin.delete_topics([topic]))

    started = time.monotonic()
    error = expect_produce_failure(
        await producer.send(topic, StreamingMessage(b"deleted")),
        "STREAMING_TOPIC_NOT_FOUND",
        implementation=backend,
    )
    # Memory knows the topic was gone before the send. A real client still lists it, so
    # it sends the message and, with retries, cannot rule out that an attempt whose
    # answer was lost was written before the deletion: it may only say "unknown".
    if backend in ON_MEMORY_BROKER:
        assert error.context["delivery"] == "not_written"
    assert time.monotonic() - started < streaming_config.request_timeout

    ok(await admin.create_topics([TopicConfig(topic, num_partitions=1)]))
    started = time.monotonic()
    again = ok(await producer.send(topic, StreamingMessage(b"recreated")))
    assert time.monotonic() - started < streaming_config.request_timeout
    assert (again.partition, again.offset) == (0, 0)
    batch = MessageBatch(topic, tuple(StreamingMessage(b"more") for _ in range(5)))
    assert {result.partition for result in ok(await producer.send_batch(batch)).results} == {0}


async def test_unkeyed_messages_spread_over_the_partitions(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    # Sticky (confluent, memory) or round robin (aiokafka): over time every backend uses
    # more than one partition for unkeyed messages.
    topic = await make_topic(3)
    seen: set[int] = set()
    for _ in range(100):
        seen.add(ok(await producer.send(topic, StreamingMessage(b"unkeyed"))).partition)
        if len(seen) > 1:
            break
        await asyncio.sleep(0.02)  # longer than a sticky partition lasts (twice linger)
    assert len(seen) > 1
