"""A send or batch its caller cancels leaves the producer whole.

A producer's local queue is bounded (100,000 messages on the real backends). A
cancelled call must give back the room of every message it had not handed over,
or an idle producer ends up refusing work with STREAMING_QUEUE_FULL.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Final

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    BatchProduceResult,
    MessageBatch,
    StreamingMessage,
    StreamingProducer,
)
from testkit import ok

from ._support import TopicFactory

QUEUE_ROOM: Final = 100_000
"""Messages a producer queues at once (librdkafka's queue.buffering.max.messages)."""


def _assert_all_acknowledged(outcome: Result[BatchProduceResult, QiError]) -> None:
    if isinstance(outcome, Failure):
        codes = Counter(
            failure.error.code
            for failure in outcome.error.context["results"]
            if isinstance(failure, Failure)
        )
        raise AssertionError(f"{outcome.error.message}: {dict(codes)}")
    assert len(outcome.value.results) == QUEUE_ROOM


def _batch(topic: str, size: int) -> MessageBatch:
    return MessageBatch(topic, tuple(StreamingMessage(b"m%d" % i) for i in range(size)))


async def test_a_cancelled_send_batch_gives_back_its_queue_room(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(1)
    ok(await producer.send(topic, StreamingMessage(b"metadata known")))
    full = _batch(topic, QUEUE_ROOM)
    # Cancelled at its first wait: part of it handed over, the rest not yet.
    cancelled = asyncio.ensure_future(producer.send_batch(full))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    # Once what was handed over is answered, the whole queue is free again.
    _assert_all_acknowledged(await producer.send_batch(full))


async def test_cancelled_sends_give_back_their_queue_room(
    producer: StreamingProducer, make_topic: TopicFactory
) -> None:
    topic = await make_topic(1)
    ok(await producer.send(topic, StreamingMessage(b"metadata known")))
    for round_ in range(3):
        sending = [
            asyncio.ensure_future(producer.send(topic, StreamingMessage(b"%d" % i)))
            for i in range(2_000)
        ]
        # Let the first sends go out, so that later ones join batches aiokafka still holds.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        for send in sending[round_::2]:
            send.cancel()
        await asyncio.gather(*sending, return_exceptions=True)
    _assert_all_acknowledged(await producer.send_batch(_batch(topic, QUEUE_ROOM)))
