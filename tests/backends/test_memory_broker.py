"""The in-process broker itself: sharing by ``brokers`` value, partitioning, storage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    MessageBatch,
    ProducerConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.memory import (
    MemoryBroker,
    broker_for,
    discard_broker,
    partition_for_key,
)
from qi.base.streaming.backends.memory._consumed import Record, consumed_messages
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import ok, wait_until

from ._memory import config_for, failed


async def test_clients_with_the_same_brokers_share_one_broker() -> None:
    brokers = private_memory_brokers()
    async with (
        create_streaming_client("memory", config_for(brokers)) as one,
        create_streaming_client("memory", config_for(brokers)) as two,
    ):
        admin_one = ok(await one.get_admin())
        ok(await admin_one.create_topics([TopicConfig("shared", num_partitions=2)]))
        assert ok(await ok(await two.get_admin()).list_topics()) == ("shared",)
        sent = ok(await ok(await one.get_producer()).send("shared", StreamingMessage(b"x")))
        assert broker_for(brokers).messages("shared", sent.partition)[0].value == b"x"
        native = ok(ok(await two.get_producer()).get_native_client())
        assert isinstance(native, MemoryBroker)
        assert native is broker_for(brokers)
        assert native.brokers == brokers
    discard_broker(brokers)


async def test_different_brokers_values_are_isolated() -> None:
    first, second = private_memory_brokers(), private_memory_brokers()
    async with (
        create_streaming_client("memory", config_for(first)) as one,
        create_streaming_client("memory", config_for(second)) as two,
    ):
        ok(await ok(await one.get_admin()).create_topics([TopicConfig("only-here")]))
        assert ok(await ok(await two.get_admin()).list_topics()) == ()
        producer = ok(await two.get_producer())
        failed(
            await producer.send("only-here", StreamingMessage(b"x")), "STREAMING_TOPIC_NOT_FOUND"
        )
    assert broker_for(first) is not broker_for(second)
    for brokers in (first, second):
        discard_broker(brokers)


async def test_a_discarded_broker_is_replaced_by_an_empty_one() -> None:
    brokers = private_memory_brokers()
    broker_for(brokers).create_topic(TopicConfig("old"))
    discard_broker(brokers)
    assert broker_for(brokers).topic_names() == []
    discard_broker(brokers)


async def test_same_key_same_partition() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("keys", num_partitions=4))
    async with create_streaming_client("memory", config_for(brokers)) as client:
        producer = ok(await client.get_producer())
        for key in ("alpha", b"beta", "gamma"):
            expected = partition_for_key(key.encode() if isinstance(key, str) else key, 4)
            batch = MessageBatch("keys", tuple(StreamingMessage(b"v", key=key) for _ in range(5)))
            results = ok(await producer.send_batch(batch)).results
            assert {result.partition for result in results} == {expected}
            single = ok(await producer.send("keys", StreamingMessage(b"v", key=key)))
            assert single.partition == expected
    discard_broker(brokers)


async def test_unkeyed_messages_stick_to_one_partition_then_move_on() -> None:
    # Kafka's clients since KIP-480 (librdkafka: sticky.partitioning.linger.ms, twice linger)
    # keep a producer's unkeyed records on one partition for a while: no round robin.
    brokers = private_memory_brokers()
    broker_for(brokers).create_topic(TopicConfig("unkeyed", num_partitions=4))
    async with create_streaming_client("memory", config_for(brokers)) as client:
        producer = ok(await client.get_producer(ProducerConfig(linger=60.0)))
        burst = MessageBatch("unkeyed", tuple(StreamingMessage(b"v") for _ in range(8)))
        first = {result.partition for result in ok(await producer.send_batch(burst)).results}
        sent = [ok(await producer.send("unkeyed", StreamingMessage(b"v"))) for _ in range(8)]
        assert len(first) == 1
        assert {result.partition for result in sent} == first  # still within the window

        moving = ok(await client.get_producer(ProducerConfig(linger=0.0)))
        partitions = [
            ok(await moving.send("unkeyed", StreamingMessage(b"v"))).partition for _ in range(8)
        ]
        # A window of 0: every call moves on, and always to another partition.
        assert all(a != b for a, b in zip(partitions, partitions[1:], strict=False))
    discard_broker(brokers)


async def test_offsets_timestamps_and_headers_are_stored_as_kafka_does() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    broker.create_topic(TopicConfig("records", num_partitions=2))
    eastern = timezone(timedelta(hours=-5))
    stamp = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=eastern)
    async with create_streaming_client("memory", config_for(brokers)) as client:
        producer = ok(await client.get_producer())
        before = datetime.now(UTC).replace(microsecond=0)
        results = ok(
            await producer.send_batch(
                MessageBatch(
                    "records",
                    (
                        StreamingMessage(b"a", partition=1, timestamp=stamp),
                        StreamingMessage(
                            b"b", key="k", partition=1, headers={"h": "v", "b": b"\x00"}
                        ),
                        StreamingMessage(b"c", partition=0),
                    ),
                )
            )
        ).results
        assert [(r.partition, r.offset) for r in results] == [(1, 0), (1, 1), (0, 0)]
        first, second = broker.messages("records", 1)
        # Milliseconds, as an aware UTC datetime: what a Kafka consumer would read.
        assert first.timestamp == datetime(2024, 5, 1, 17, 30, 15, 123000, tzinfo=UTC)
        assert results[0].timestamp == first.timestamp
        assert first.key is None and dict(first.headers) == {}
        assert second.key == b"k"
        assert dict(second.headers) == {"h": b"v", "b": b"\x00"}
        assert second.timestamp is not None and second.timestamp.tzinfo is UTC
        assert before <= second.timestamp <= datetime.now(UTC)
        assert broker.end_offsets("records") == (1, 2)

        fire_and_forget = ok(await client.get_producer(ProducerConfig(idempotent=False, acks=0)))
        blind = ok(await fire_and_forget.send("records", StreamingMessage(b"d", partition=0)))
        assert blind.offset == -1
        assert broker.end_offsets("records") == (2, 2)
    discard_broker(brokers)


async def test_topic_settings_and_deletion() -> None:
    brokers = private_memory_brokers()
    broker = broker_for(brokers)
    async with create_streaming_client("memory", config_for(brokers)) as client:
        admin = ok(await client.get_admin())
        settings = {"retention.ms": "1000", "cleanup.policy": "compact"}
        ok(await admin.create_topics([TopicConfig("t", 3, 1, settings)]))
        assert broker.topic_config("t") == settings
        (metadata,) = ok(await admin.get_topic_metadata(["t"]))
        assert [(p.partition_id, p.leader, p.replicas, p.isr) for p in metadata.partitions] == [
            (index, 0, (0,), (0,)) for index in range(3)
        ]
        broker.create_topic(TopicConfig("__internal"))
        assert ok(await admin.list_topics()) == ("t",)
        assert sorted(broker.topic_names()) == ["__internal", "t"]

        producer = ok(await client.get_producer())
        ok(await producer.send("t", StreamingMessage(b"x", key="k", partition=2)))  # compacted
        seen: list[EachMessagePayload] = []

        async def handle(payload: EachMessagePayload) -> None:
            seen.append(payload)

        consumer = ok(await client.get_consumer(ConsumerConfig("g", 6.0, 0.5, auto_commit=False)))
        ok(await consumer.subscribe(SubscriptionConfig(("t",), from_beginning=True)))
        ok(await consumer.run(ConsumerRunConfig(each_message=handle)))
        await wait_until(lambda: bool(seen), "the message")
        ok(await consumer.commit_offsets())
        assert broker.committed("g") == {("t", 2): 1}

        ok(await admin.delete_topics(["t"]))
        assert broker.committed("g") == {}
        assert broker.messages("t", 2) == ()
        failed(await admin.delete_topics(["t"]), "STREAMING_TOPIC_NOT_FOUND")
        ok(await admin.create_topics([TopicConfig("t")]))
        assert broker.end_offsets("t") == (0,)
    discard_broker(brokers)


def test_fetched_messages_equal_constructed_ones() -> None:
    stamp = datetime(2024, 1, 2, tzinfo=UTC)
    millis = int(stamp.timestamp() * 1000)
    records: list[Record] = [
        (b"k", b"v", millis, None),
        (None, b"w", millis, {"h": b"1"}),
        (None, b"x", 2**62, None),  # beyond the year 9999: no datetime holds it
    ]
    built = consumed_messages("t", 3, 7, records, {})
    assert built == [
        ConsumedMessage("t", 3, 7, b"k", b"v", stamp, {}),
        ConsumedMessage("t", 3, 8, None, b"w", stamp, {"h": b"1"}),
        ConsumedMessage("t", 3, 9, None, b"x", None, {}),
    ]


async def test_topic_names_found_valid_are_remembered_within_a_bound() -> None:
    # The producer remembers valid names so a send skips the name check; a caller inventing
    # names must not grow that memory without end, nor make an invalid name pass.
    from qi.base.streaming._producer import _VALID_TOPICS_KEPT

    async with create_streaming_client("memory", config_for(private_memory_brokers())) as client:
        producer = ok(await client.get_producer(ProducerConfig()))
        message = StreamingMessage(b"v")
        for number in range(_VALID_TOPICS_KEPT + 50):
            failed(await producer.send(f"missing-{number}", message), "STREAMING_TOPIC_NOT_FOUND")
            assert len(producer._valid_topics) <= _VALID_TOPICS_KEPT
        failed(await producer.send("not valid", message), "STREAMING_INVALID_TOPIC")
        failed(await producer.send("missing-1", message), "STREAMING_TOPIC_NOT_FOUND")
        assert "missing-1" in producer._valid_topics and "not valid" not in producer._valid_topics
