"""How the aiokafka producer queues: coalesced sends, joining queued batches, a bounded queue."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from qi.base import Failure
from qi.base.streaming import (
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.backends.aiokafka._budget import QueueBudget
from qi.base.streaming.devbroker import DevBroker
from testkit import ok, unique

NOT_IDEMPOTENT = ProducerConfig(idempotent=False)


# -- the budget, without a broker -----------------------------------------------------------


async def test_budget_serves_waiters_in_order_and_gives_room_back() -> None:
    budget = QueueBudget(10)
    assert budget.try_acquire(8)
    first = asyncio.ensure_future(budget.acquire(5, 1.0))
    await asyncio.sleep(0)
    assert not budget.try_acquire(1), "a small request must not overtake a waiting one"
    budget.release(8)
    assert await first
    assert budget.used == 5
    assert budget.try_acquire(5)
    assert budget.used == 10


async def test_budget_times_out_and_lets_the_next_waiter_in() -> None:
    budget = QueueBudget(10)
    assert budget.try_acquire(9)
    began = time.monotonic()
    assert not await budget.acquire(5, 0.05)
    assert time.monotonic() - began < 1.0
    assert budget.try_acquire(1), "a waiter that gave up must not block the queue"


async def test_budget_returns_room_granted_to_a_cancelled_waiter() -> None:
    budget = QueueBudget(10)
    assert budget.try_acquire(10)
    waiting = asyncio.ensure_future(budget.acquire(4, 5.0))
    await asyncio.sleep(0)
    budget.release(10)  # grants the waiter its room ...
    waiting.cancel()  # ... but it is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert budget.used == 0


async def test_budget_lets_the_next_waiter_in_when_the_head_is_cancelled() -> None:
    budget = QueueBudget(10)
    assert budget.try_acquire(8)
    head = asyncio.ensure_future(budget.acquire(5, 5.0))
    await asyncio.sleep(0)
    behind = asyncio.ensure_future(budget.acquire(2, 5.0))
    await asyncio.sleep(0)
    head.cancel()  # the room behind it fits at once: nobody must wait for the next release
    with pytest.raises(asyncio.CancelledError):
        await head
    began = time.monotonic()
    assert await behind
    assert time.monotonic() - began < 1.0
    assert budget.used == 10


# -- against a broker -----------------------------------------------------------------------


@pytest.fixture
async def client(dev_broker: DevBroker) -> AsyncIterator[StreamingClient]:
    config = StreamingConfig(
        client_id=unique("client"),
        brokers=(dev_broker.bootstrap,),
        connection_timeout=3.0,
        request_timeout=5.0,
    )
    streaming_client = create_streaming_client("aiokafka", config)
    yield streaming_client
    await streaming_client.disconnect()


async def _producer(client: StreamingClient, partitions: int = 3) -> tuple[StreamingProducer, str]:
    topic = unique("topic")
    admin = ok(await client.get_admin())
    ok(await admin.create_topics([TopicConfig(topic, num_partitions=partitions)]))
    return ok(await client.get_producer(NOT_IDEMPOTENT)), topic


def _positions(results: list[Any]) -> set[tuple[int, int]]:
    return {(result.partition, result.offset) for result in results}


@pytest.mark.broker
async def test_sends_arriving_one_iteration_apart_join_queued_batches(
    client: StreamingClient,
) -> None:
    # Every send in a loop iteration of its own while earlier ones are still queued: each
    # must join aiokafka's open batch instead of waiting for a request of its own.
    producer, topic = await _producer(client)
    began = time.monotonic()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [base + timedelta(milliseconds=i) for i in range(2000)]
    sending = []
    for i, stamp in enumerate(stamps):
        message = StreamingMessage(b"%d" % i, timestamp=stamp)
        sending.append(asyncio.ensure_future(producer.send(topic, message)))
        await asyncio.sleep(0)
    results = [ok(outcome) for outcome in await asyncio.gather(*sending)]
    assert len(_positions(results)) == 2000
    assert time.monotonic() - began < 5.0
    # Each result carries its own record's timestamp, also when it joined a batch.
    assert [result.timestamp for result in results] == stamps


@pytest.mark.broker
async def test_keyed_and_explicit_partitions_are_kept(client: StreamingClient) -> None:
    producer, topic = await _producer(client)
    keyed = [StreamingMessage(b"v", key="same-key") for _ in range(50)]
    explicit = [StreamingMessage(b"v", partition=2) for _ in range(50)]
    batch = ok(await producer.send_batch(MessageBatch(topic, tuple(keyed + explicit))))
    assert len({result.partition for result in batch.results[:50]}) == 1
    assert {result.partition for result in batch.results[50:]} == {2}
    single = await asyncio.gather(*(producer.send(topic, message) for message in keyed))
    assert {ok(outcome).partition for outcome in single} == {batch.results[0].partition}


@pytest.mark.broker
async def test_a_full_queue_fails_with_queue_full_not_written(
    dev_broker: DevBroker, client: StreamingClient
) -> None:
    producer, topic = await _producer(client, partitions=1)
    ok(await producer.send(topic, StreamingMessage(b"before")))
    budget = QueueBudget(100)
    producer._backend._sender._budget = budget  # type: ignore[attr-defined]
    await asyncio.to_thread(dev_broker.stop)
    batch = MessageBatch(topic, tuple(StreamingMessage(b"x") for _ in range(300)))
    began = time.monotonic()
    outcome = await producer.send_batch(batch)
    assert time.monotonic() - began < 5.0 + 1.0
    assert isinstance(outcome, Failure)
    results = outcome.error.context["results"]
    codes = [result.error.code for result in results]
    assert codes[:100] == ["STREAMING_TIMEOUT"] * 100  # queued, never acknowledged
    assert codes[100:] == ["STREAMING_QUEUE_FULL"] * 200
    assert {result.error.context["delivery"] for result in results[100:]} == {"not_written"}
    assert budget.used <= budget.capacity


@pytest.mark.broker
async def test_more_sends_at_once_than_the_queue_holds_join_in_turns(
    client: StreamingClient,
) -> None:
    producer, topic = await _producer(client, partitions=1)
    ok(await producer.send(topic, StreamingMessage(b"before")))
    producer._backend._sender._budget = QueueBudget(100)  # type: ignore[attr-defined]
    first = [asyncio.ensure_future(producer.send(topic, StreamingMessage(b"a"))) for _ in range(50)]
    await asyncio.sleep(0)  # queued: aiokafka holds their batch while the next sends arrive
    more = [asyncio.ensure_future(producer.send(topic, StreamingMessage(b"b"))) for _ in range(150)]
    results = [ok(outcome) for outcome in await asyncio.gather(*first, *more)]
    assert len(_positions(results)) == 200


@dataclasses.dataclass
class _Metadata:
    """What aiokafka's send_batch future gives for an acknowledged record batch."""

    offset: int
    timestamp: int


def test_results_are_plain_produce_results() -> None:
    from qi.base.streaming import ProduceResult
    from qi.base.streaming.backends.aiokafka._batch import Acknowledged, QueuedBatch

    batch = QueuedBatch(1, None, [2, 0], [1_700_000_000_123, 1_700_000_000_123])
    acknowledged = Acknowledged("t", 3)
    acknowledged.add(batch, _Metadata(40, -1))
    results: list[Any] = [None, None, None]
    acknowledged.fill(results)
    assert results[2] == ProduceResult("t", 1, 40, results[0].timestamp)
    assert results[0].offset == 41
    assert results[0].timestamp.timestamp() == 1_700_000_000.123
    assert results[1] is None
    assert acknowledged.messages == 2


def test_each_record_batch_has_its_own_base_offset() -> None:
    from qi.base.streaming import ProduceResult
    from qi.base.streaming._fast_values import datetime_from_millis
    from qi.base.streaming.backends.aiokafka._batch import Acknowledged, QueuedBatch

    own, appended = 1_700_000_000_100, 1_700_000_000_900
    # One partition's messages in two record batches the broker wrote apart (another
    # producer between them), a second partition under LogAppendTime, and one unanswered.
    first = QueuedBatch(0, None, [0, 2], [own, own + 1])
    later = QueuedBatch(0, None, [4], [own + 2])
    logged = QueuedBatch(1, None, [1, 3], [own, own])
    unanswered = QueuedBatch(2, None, [5], [own + 3])
    duplicate = QueuedBatch(2, None, [6], [own + 4])
    acknowledged = Acknowledged("t", 7)
    acknowledged.add(first, _Metadata(10, -1))
    acknowledged.add(later, _Metadata(50, -1))
    acknowledged.add(logged, _Metadata(7, appended))
    acknowledged.add(unanswered, None)  # acks=0
    acknowledged.add(duplicate, _Metadata(-1, -1))  # a retry answered as a duplicate
    stamp = datetime_from_millis
    assert acknowledged.messages == len(acknowledged) == 7
    assert acknowledged.partition_counts() == {0: 3, 1: 2, 2: 2}
    assert acknowledged.results() == (
        ProduceResult("t", 0, 10, stamp(own)),
        ProduceResult("t", 1, 7, stamp(appended)),
        ProduceResult("t", 0, 11, stamp(own + 1)),
        ProduceResult("t", 1, 8, stamp(appended)),
        ProduceResult("t", 0, 50, stamp(own + 2)),
        ProduceResult("t", 2, -1, stamp(own + 3)),
        ProduceResult("t", 2, -1, stamp(own + 4)),
    )


class _PublicBuilder:
    """A create_batch() builder seen through its public methods only."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def append(self, **record: Any) -> object:
        return self._inner.append(**record)

    def close(self) -> None:
        self._inner.close()

    def record_count(self) -> int:
        return int(self._inner.record_count())


@pytest.mark.parametrize("public_only", [False, True], ids=["direct", "public"])
def test_records_reach_the_batch_in_order_through_either_appender(public_only: bool) -> None:
    from aiokafka.producer.message_accumulator import BatchBuilder
    from aiokafka.record.default_records import DefaultRecordBatch

    from qi.base.streaming.backends.aiokafka._batch import QueuedBatch

    inner = BatchBuilder(16384, 0)
    batch = QueuedBatch(0, _PublicBuilder(inner) if public_only else inner)
    for position in range(3):
        key = None if position else b"k"
        assert batch.append(position, 1_000 + position, key, b"v%d" % position, []) is not None
        batch.indexes.append(position)
    batch.close()
    assert inner.record_count() == 3 and inner.closed()
    records = list(DefaultRecordBatch(bytes(inner._build())))
    assert [(r.offset, r.key, r.value, r.timestamp) for r in records] == [
        (0, b"k", b"v0", 1_000),
        (1, None, b"v1", 1_001),
        (2, None, b"v2", 1_002),
    ]


def test_consumed_header_values_are_bytes_even_when_null() -> None:
    # aiokafka hands a header without a value over as None; the contract says bytes
    # (b"", as the confluent backend does), and the last of repeated names wins.
    from aiokafka.structs import ConsumerRecord

    from qi.base.streaming.backends.aiokafka._consumer import consumed_messages

    headers = (("empty", None), ("text", b"v"), ("text", b"w"))
    record = ConsumerRecord("t", 0, 5, 1_700_000_000_000, 0, b"k", b"v", None, 1, 1, headers)
    (message,) = consumed_messages([record])
    assert dict(message.headers) == {"empty": b"", "text": b"w"}
    assert (message.offset, message.key, message.value) == (5, b"k", b"v")
