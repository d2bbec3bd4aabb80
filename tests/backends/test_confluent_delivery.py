"""The confluent producer's delivery hub: a send completes whichever comes first, its
report or the loop's note that librdkafka took its message.

The poll thread may serve a report between ``produce()`` returning and the loop
marking the send handed over; both orders must complete the send exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, Message, Producer

from qi.base import Failure, Success
from qi.base.streaming import ProduceResult, StreamingMessage
from qi.base.streaming.backends.confluent import _delivery as delivery_module
from qi.base.streaming.backends.confluent._delivered import Delivered
from qi.base.streaming.backends.confluent._delivery import DeliveryHub, OneSend, Sends


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


class _Reported:
    """A delivery report's Message with the given partition, offset and timestamp."""

    def __init__(self, partition: int, offset: int, timestamp: tuple[int, int]) -> None:
        self._partition, self._offset, self._timestamp = partition, offset, timestamp

    def offset(self) -> int:
        return self._offset

    def partition(self) -> int:
        return self._partition

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


CREATE_TIME, LOG_APPEND_TIME, NOT_AVAILABLE = 1, 2, 0
STAMPED = (CREATE_TIME, 1_700_000_000_000)
REPORTS = (  # in input order; served below in another order
    _Reported(0, 40, STAMPED),
    _Reported(1, 7, (LOG_APPEND_TIME, 1_700_000_000_005)),
    _Reported(0, 41, STAMPED),
    _Reported(2, 3, (NOT_AVAILABLE, 0)),
    _Reported(1, 8, (CREATE_TIME, 1_700_000_000_009)),
    # An acks=0 batch in partition 2: librdkafka numbers it -1, 0, 1 (all "not said").
    _Reported(2, -1, STAMPED),
    _Reported(2, 0, STAMPED),
    _Reported(2, 1, STAMPED),
)
SERVED = (5, 6, 1, 0, 7, 3, 4, 2)  # the acks=0 batch in its order, others in between


def _one_by_one(hub: DeliveryHub) -> list[object]:
    """Each report's result as a single send builds it, at once."""
    results = []
    for index in SERVED:
        one = _one(hub)
        one(None, cast(Message, REPORTS[index]))
        results.append((index, one.outcome))
    return [outcome for _, outcome in sorted(results, key=lambda pair: pair[0])]


def _batch(hub: DeliveryHub, failed: int | None = None) -> Sends:
    sends = Sends("orders", len(REPORTS), asyncio.get_running_loop().create_future())
    callbacks = [hub.callback(sends, index) for index in range(len(REPORTS))]
    for index in SERVED:
        error = KafkaError(KafkaError._MSG_TIMED_OUT) if index == failed else None
        callbacks[index](error, cast(Message, REPORTS[index]))
    return sends


async def test_a_batch_builds_on_first_read_the_results_a_single_send_builds_at_once(
    hub: DeliveryHub,
) -> None:
    eager = _one_by_one(hub)
    hub.unplaced.clear()  # a new poll() call
    sends = _batch(hub)
    assert sends.delivered == len(REPORTS) and not sends.failed
    assert sends.outcomes == [None] * len(REPORTS)  # no result built yet
    delivered = Delivered(sends.acks)
    assert delivered.partition_counts() == {0: 2, 1: 2, 2: 4}  # telemetry's, without results
    assert delivered._built is None
    results = delivered.results()
    assert list(results) == eager
    assert [result.offset for result in results] == [40, 7, 41, 3, 8, -1, -1, -1]
    assert results[3].timestamp is None  # the report said no timestamp
    assert results[1].timestamp == datetime(2023, 11, 14, 22, 13, 20, 5000, tzinfo=UTC)


async def test_a_batch_with_a_failure_keeps_the_acknowledged_results_by_position(
    hub: DeliveryHub,
) -> None:
    eager = _one_by_one(hub)
    hub.unplaced.clear()
    sends = _batch(hub, failed=4)
    assert sends.failed == 1
    assert isinstance(sends.outcomes[4], KafkaError)
    assert [sends.acks.result(index) for index in range(len(REPORTS))] == [
        None if index == 4 else result for index, result in enumerate(eager)
    ]


async def test_the_sweep_times_out_only_the_messages_still_without_a_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # librdkafka reports every message within message.timeout.ms; a call whose reports do
    # not come is completed by the loop's sweep, its missing messages timed out.
    monkeypatch.setattr(delivery_module, "_SWEEP_SECONDS", 0.05)
    monkeypatch.setattr(delivery_module, "_REPORT_GRACE", 0.1)
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    hub = DeliveryHub(
        producer,
        asyncio.get_running_loop(),
        logging.getLogger("test"),
        "test",
        report_timeout=0.1,
    )
    try:
        sends = Sends("orders", 3, asyncio.get_running_loop().create_future())
        callbacks = [hub.callback(sends, index) for index in range(3)]
        refused = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
        sends.outcomes[2] = refused  # produce() refused it: never handed over
        hub.handed_over(sends, 2)
        callbacks[0](None, cast(Message, REPORTS[0]))  # one report came, one never does
        one = _one(hub)
        hub.handed_over_one(one)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.gather(sends.future, one.future), 2.0)
        assert time.monotonic() - started >= 0.2  # not before the timeout and its grace
        assert sends.acks.result(0) is not None and sends.outcomes[0] is None
        timed_out = sends.outcomes[1]
        assert isinstance(timed_out, KafkaError)
        assert timed_out.code() == KafkaError._MSG_TIMED_OUT
        assert sends.outcomes[2] is refused
        result = one.future.result()
        assert isinstance(result, Failure)
        assert result.error.code() == KafkaError._MSG_TIMED_OUT
        assert not hub.pending
    finally:
        producer.purge()


async def test_a_call_handed_over_while_the_hub_stops_starts_no_sweep_timer() -> None:
    # A send_batch waiting for queue space sees the hub closing and hands over what
    # librdkafka took while stop() waits for the poll thread: stop() bounds that call, and
    # no sweep timer may outlive it.
    loop = asyncio.get_running_loop()
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    hub = DeliveryHub(producer, loop, logging.getLogger("test"), "test-poll")
    hub.start()
    sends = Sends("orders", 1, loop.create_future())
    producer.produce("orders", b"v", on_delivery=hub.callback(sends, 0))
    stopping = asyncio.ensure_future(hub.stop(0.3))
    await asyncio.sleep(0)  # stop() has begun
    hub.handed_over(sends, 1)
    await asyncio.wait_for(stopping, 10)
    assert sends.future.done()
    scheduled = cast(list[asyncio.TimerHandle], getattr(loop, "_scheduled", []))
    assert not [
        handle
        for handle in scheduled
        if not handle.cancelled()
        and getattr(getattr(handle, "_callback", None), "__self__", None) is hub
    ]


async def test_a_stop_cut_short_answers_the_calls_still_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # stop() cancelled (its caller's own bound, or its task cancelled) while the poll thread
    # is stuck in librdkafka: the sweep is gone and the thread may never come back, so the
    # calls still waiting are answered on the way out.
    held = threading.Event()

    def stuck(hub: DeliveryHub, producer: Producer, waiting: threading.Event) -> None:
        held.wait(30)

    monkeypatch.setattr(DeliveryHub, "_serve", stuck)
    loop = asyncio.get_running_loop()
    producer = Producer({"bootstrap.servers": "127.0.0.1:9", "log_level": 0})
    hub = DeliveryHub(producer, loop, logging.getLogger("test"), "test-poll")
    hub.start()
    try:
        one = _one(hub)
        hub.handed_over_one(one)
        stopping = asyncio.ensure_future(hub.stop(5.0))
        await asyncio.sleep(0.1)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        assert one.future.done() and not hub.pending
        assert isinstance(one.future.result(), Failure)
    finally:
        held.set()
        producer.purge()
