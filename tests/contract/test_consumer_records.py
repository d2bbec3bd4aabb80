"""Contract section 5: records written by other clients reach the handler whatever they hold.

A Kafka record's timestamp is any int64 its producer chose. Python's ``datetime``
stops at the year 9999, so a producer that wrote microseconds instead of
milliseconds makes a timestamp that cannot be represented: the message still
arrives, with ``timestamp=None``, and so does everything fetched with it.
"""

from __future__ import annotations

import gc
import time
from datetime import UTC, datetime

from qi.base.streaming import (
    ConsumedMessage,
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    create_streaming_client,
)
from testkit import ok, wait_until

from ._support import (
    ON_MEMORY_BROKER,
    CollectingConsumerFactory,
    ConsumerConfigFactory,
    TopicFactory,
)

# Milliseconds no datetime holds: beyond the year 9999.
FAR_FUTURE = 2**62


def _write(
    backend: str, config: StreamingConfig, topic: str, records: list[tuple[int, int]]
) -> None:
    """Write (partition, timestamp in ms) records as a foreign producer would, in order.

    Each record's value is ``b"<partition>:<index within its partition>"``.
    """
    counts: dict[int, int] = {}
    values = []
    for partition, _ in records:
        values.append(f"{partition}:{counts.get(partition, 0)}".encode())
        counts[partition] = counts.get(partition, 0) + 1
    if backend in ON_MEMORY_BROKER:
        from qi.base.streaming.backends.memory import broker_for

        broker = broker_for(config.brokers)
        for value, (partition, stamp) in zip(values, records, strict=True):
            broker.append_record(topic, partition, value, timestamp_ms=stamp)
        return
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": ",".join(config.brokers), "linger.ms": 0})
    for value, (partition, stamp) in zip(values, records, strict=True):
        producer.produce(topic, value, partition=partition, timestamp=stamp)
    assert producer.flush(10.0) == 0, "the raw producer did not deliver everything"


async def test_a_timestamp_datetime_cannot_hold_is_none_and_nothing_around_it_is_lost(
    streaming_config: StreamingConfig,
    make_topic: TopicFactory,
    backend: str,
    collecting: CollectingConsumerFactory,
) -> None:
    topic = await make_topic(2)
    now = time.time_ns() // 1_000_000
    in_microseconds = time.time_ns() // 1_000  # the classic mistake: year 50,000 and more
    stamps = [now, in_microseconds, now + 1, FAR_FUTURE, now + 2]
    records = [(partition, stamp) for stamp in stamps for partition in (0, 1)]
    _write(backend, streaming_config, topic, records)

    _, collector = await collecting(topic)
    await collector.wait_for(len(records))

    assert not collector.errors, collector.errors
    for partition in (0, 1):
        handled = [m for m in collector.messages if m.partition == partition]
        assert [m.value for m in handled] == [f"{partition}:{i}".encode() for i in range(5)]
        assert [m.timestamp is None for m in handled] == [False, True, False, True, False]
        for message, stamp in zip(handled, stamps, strict=True):
            if message.timestamp is not None:
                assert isinstance(message.timestamp, datetime)
                assert round(message.timestamp.timestamp() * 1000) == stamp


async def test_a_message_kept_past_disconnect_reads_as_it_did_in_its_handler(
    backend: str,
    streaming_config: StreamingConfig,
    make_topic: TopicFactory,
    producer: StreamingProducer,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # Backends may hand over views that read their fields from the client's own record:
    # a message must not depend on its consumer or client, whenever its fields are read.
    topic = await make_topic()
    # Recent: a broker's retention (7 days by default) may delete older records at once.
    now = datetime.now(UTC)
    stamp = now.replace(microsecond=now.microsecond // 1000 * 1000)
    sent = StreamingMessage(b"value", key="key", timestamp=stamp, headers={"h": "x", "i": b"y"})
    results = [ok(await producer.send(topic, sent)) for _ in range(2)]
    client = create_streaming_client(backend, streaming_config)
    kept: list[ConsumedMessage] = []
    read_in_handler: list[str] = []

    async def each_message(payload: EachMessagePayload) -> None:
        if not kept:  # the first is read in its handler, the second only afterwards
            read_in_handler.append(repr(payload.message))
        kept.append(payload.message)

    try:
        consumer = ok(await client.get_consumer(consumer_config()))
        ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
        ok(await consumer.run(ConsumerRunConfig(each_message=each_message)))
        await wait_until(lambda: len(kept) == 2, what="both messages handled")
        ok(await consumer.disconnect())
    finally:
        await client.disconnect()
    del consumer, client
    gc.collect()

    expected = [
        ConsumedMessage(topic, 0, result.offset, b"key", b"value", stamp, {"h": b"x", "i": b"y"})
        for result in results
    ]
    assert kept == expected
    assert read_in_handler == [repr(kept[0])]
    for message, want in zip(kept, expected, strict=True):
        assert (
            message.topic,
            message.partition,
            message.offset,
            message.key,
            message.value,
            message.timestamp,
            dict(message.headers),
        ) == (want.topic, 0, want.offset, b"key", b"value", stamp, {"h": b"x", "i": b"y"})
