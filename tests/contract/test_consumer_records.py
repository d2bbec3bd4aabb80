"""Contract section 5: records written by other clients reach the handler whatever they hold.

A Kafka record's timestamp is any int64 its producer chose. Python's ``datetime``
stops at the year 9999, so a producer that wrote microseconds instead of
milliseconds makes a timestamp that cannot be represented: the message still
arrives, with ``timestamp=None``, and so does everything fetched with it.
"""

from __future__ import annotations

import time
from datetime import datetime

from qi.base.streaming import StreamingConfig

from ._support import ON_MEMORY_BROKER, CollectingConsumerFactory, TopicFactory

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
