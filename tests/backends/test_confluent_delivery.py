"""The confluent producer's delivery hub: a send completes whichever comes first, its
report or the loop's note that librdkafka took its message.

The poll thread may serve a report between ``produce()`` returning and the loop
marking the send handed over; both orders must complete the send exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Message, Producer

from qi.base import Failure, Success
from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming.backends.confluent._delivery import DeliveryHub, OneSend


class _Report:
    """What the hub reads of librdkafka's Message in a delivery report."""

    def offset(self) -> int:
        return 7

    def partition(self) -> int:
        return 2

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_700_000_000_000


@pytest.fixture
async def hub() -> AsyncIterator[DeliveryHub]:
    # Never started: the test plays the poll thread's part itself.
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    yield DeliveryHub(producer, asyncio.get_running_loop(), logging.getLogger("test"), "test")
    producer.purge()


def _one(hub: DeliveryHub) -> OneSend:
    def finish(one: OneSend) -> object:
        outcome = one.outcome
        return Success(outcome) if isinstance(outcome, ProduceResult) else Failure(outcome)

    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    return OneSend(hub, "orders", StreamingMessage(b"v"), future, finish)


async def test_a_report_served_before_the_send_was_handed_over_completes_it(
    hub: DeliveryHub,
) -> None:
    one = _one(hub)
    one(None, cast(Message, _Report()))  # the poll thread was quicker than the loop
    assert not one.future.done()
    hub.handed_over_one(one)
    result = await asyncio.wait_for(one.future, 1.0)
    assert isinstance(result, Success)
    assert (result.value.topic, result.value.partition, result.value.offset) == ("orders", 2, 7)
    assert not hub.pending


async def test_a_report_after_the_hand_over_completes_the_send_once(hub: DeliveryHub) -> None:
    one = _one(hub)
    hub.handed_over_one(one)
    assert one in hub.pending
    one(KafkaError(KafkaError._MSG_TIMED_OUT), cast(Message, _Report()))
    result = await asyncio.wait_for(one.future, 1.0)
    assert isinstance(result, Failure)
    assert result.error.code() == KafkaError._MSG_TIMED_OUT
    assert not hub.pending
