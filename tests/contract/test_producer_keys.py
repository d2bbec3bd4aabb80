"""Where a keyed message lands: where Kafka's Java client would put it, on every backend.

A service that moves between backends, or shares a topic with Java services, keeps its
per-key order only if every producer places a key on the same partition.
"""

from __future__ import annotations

import asyncio
from typing import Final

from qi.base.streaming import MessageBatch, StreamingMessage, StreamingProducer
from qi.base.streaming._murmur2 import partition_for_key
from testkit import WAIT, ok

from ._support import TopicFactory

# Kafka's Java client's hashes of these keys (Utils.murmur2, a signed int), as published in
# Kafka's own tests: apache/kafka clients/src/test/java/org/apache/kafka/common/utils/
# UtilsTest.java, testMurmur2.
JAVA_MURMUR2: Final = {
    "21": -973932308,
    "foobar": -790332482,
    "a-little-bit-long-string": -985981536,
    "a-little-bit-longer-string": -1486304829,
    "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    "abc": 479470107,
}
PARTITIONS: Final = 7


def java_partition(java_hash: int, partitions: int) -> int:
    """The Java client's DefaultPartitioner: toPositive(murmur2(key)) % partitions."""
    return (java_hash & 0x7FFFFFFF) % partitions


async def test_a_key_lands_where_the_java_client_puts_it(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(PARTITIONS)
    expected = {key: java_partition(hashed, PARTITIONS) for key, hashed in JAVA_MURMUR2.items()}
    assert len(set(expected.values())) > 1, "the keys must tell partitions apart"
    for key, partition in expected.items():
        sent = ok(await producer.send(topic, StreamingMessage(b"one", key=key)))
        assert sent.partition == partition, key
        as_bytes = ok(await producer.send(topic, StreamingMessage(b"one", key=key.encode())))
        assert as_bytes.partition == partition, key
    batch = MessageBatch(topic, tuple(StreamingMessage(b"many", key=key) for key in expected))
    results = ok(await producer.send_batch(batch)).results
    assert [result.partition for result in results] == list(expected.values())


async def test_every_backend_places_keys_alike(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(5)
    # A str key is hashed as its UTF-8 bytes; an empty key is a key (the Java client hashes it).
    keys = [f"user-{i}" for i in range(200)] + ["ключ", "キー", "clé-ü", ""]
    batch = MessageBatch(topic, tuple(StreamingMessage(b"v", key=key) for key in keys))
    placed = [result.partition for result in ok(await producer.send_batch(batch)).results]
    assert placed == [partition_for_key(key.encode(), 5) for key in keys]


async def test_unkeyed_messages_are_spread_over_the_partitions(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(3)
    # librdkafka keeps unkeyed messages on one partition for a few milliseconds at a time
    # (sticky partitioning), so they are spread over time rather than message by message.
    seen: set[int] = set()
    deadline = asyncio.get_running_loop().time() + WAIT
    while seen != {0, 1, 2} and asyncio.get_running_loop().time() < deadline:
        sent = ok(await producer.send(topic, StreamingMessage(b"unkeyed")))
        seen.add(sent.partition)
    assert seen == {0, 1, 2}
