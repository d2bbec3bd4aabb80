"""Hostile input to producers: arbitrary topics, messages, batches and lifecycle orders.

Every call must return a Result within its bound, with the outcome the contract
allows for that input, and the producer must still deliver afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    BatchProduceResult,
    MessageBatch,
    ProduceResult,
    StreamingMessage,
    StreamingProducer,
    create_connector,
)

from ._harness import PARTITIONS, Harness, examples
from ._hostile import Expect, batches, messages, topic_arguments
from ._support import DELIVERY_VALUES, check_result, code_of, producer_config_for

# Hypothesis warns when it prints a failing example holding megabytes (the oversized
# messages); the warning would turn a clear failure report into a warning error.
pytestmark = pytest.mark.filterwarnings("ignore:Generating overly large repr")


def _assert_outcome(result: Result[Any, Any], expect: Expect, where: str) -> None:
    assert code_of(result) in expect, f"{where}: got {result}, expected one of {set(expect)}"


def _assert_delivery_said(result: Result[Any, Any], where: str) -> None:
    if isinstance(result, Failure):
        delivery = result.error.context.get("delivery")
        assert delivery in DELIVERY_VALUES, f"{where}: produce failure without delivery: {result}"


def test_send_with_hostile_arguments(harness: Harness) -> None:
    @examples(harness.backend, memory=500, real=120)
    @given(topic=topic_arguments(harness.topic), drawn=messages(PARTITIONS))
    def check(topic: tuple[Any, bool], drawn: tuple[Any, Expect]) -> None:
        name, topic_valid = topic
        message, expect = drawn
        if not topic_valid:
            # Both wrong: the contract does not say which problem is reported first.
            expect = (expect - {None}) | {"STREAMING_INVALID_TOPIC"}
        result = harness.call(harness.producer.send(name, message), "send")
        _assert_outcome(result, expect, "send")
        _assert_delivery_said(result, "send")
        if isinstance(result, Success):
            produced = result.value
            assert isinstance(produced, ProduceResult)
            assert produced.topic == harness.topic
            assert 0 <= produced.partition < PARTITIONS and produced.offset >= 0
            if isinstance(message, StreamingMessage) and message.partition is not None:
                assert produced.partition == message.partition

    check()
    harness.assert_still_works()


def test_send_batch_with_hostile_arguments(harness: Harness) -> None:
    @examples(harness.backend, memory=300, real=80)
    @given(drawn=batches(harness.topic, PARTITIONS))
    def check(drawn: tuple[Any, Expect, list[Expect]]) -> None:
        batch, expect, each = drawn
        result = harness.call(harness.producer.send_batch(batch), "send_batch")
        _assert_outcome(result, expect, "send_batch")
        if isinstance(result, Success):
            assert isinstance(result.value, BatchProduceResult)
            assert len(result.value.results) == len(each)
            return
        error = result.error
        if error.code != "STREAMING_BATCH_PARTIAL_FAILURE":
            _assert_delivery_said(result, "send_batch")
            return
        outcomes = error.context["results"]
        assert isinstance(outcomes, tuple) and len(outcomes) == len(each), error
        for index, (outcome, allowed) in enumerate(zip(outcomes, each, strict=True)):
            where = f"send_batch message {index}"
            check_result(outcome, where)
            _assert_outcome(outcome, allowed, where)
            _assert_delivery_said(outcome, where)

    check()
    harness.assert_still_works()


def _independent_producer(harness: Harness) -> StreamingProducer:
    """A producer of its own (the client would hand out its cached one), not yet connected."""
    connector = create_connector(harness.backend, harness.config).unwrap()
    return connector.create_producer(producer_config_for(harness.backend)).unwrap()


_ACTIONS = ("connect", "disconnect", "send", "native", "is_connected")


def test_lifecycle_calls_in_any_order(harness: Harness) -> None:
    """connect/disconnect/send/get_native_client in arbitrary order behave as the state says."""
    producer = _independent_producer(harness)

    @examples(harness.backend, memory=200, real=25)
    @given(actions=st.lists(st.sampled_from(_ACTIONS), min_size=1, max_size=8))
    def check(actions: list[str]) -> None:
        harness.call(producer.disconnect(), "disconnect")  # every example starts from one state
        for action in actions:
            connected = producer.is_connected()
            if action == "connect":
                assert isinstance(harness.call(producer.connect(), "connect"), Success)
                assert producer.is_connected()
            elif action == "disconnect":
                assert isinstance(harness.call(producer.disconnect(), "disconnect"), Success)
                assert not producer.is_connected()
            elif action == "send":
                sent = harness.call(producer.send(harness.topic, StreamingMessage(b"x")), "send")
                assert code_of(sent) == (None if connected else "STREAMING_NOT_CONNECTED"), sent
            elif action == "native":
                native = check_result(producer.get_native_client(), "get_native_client")
                assert code_of(native) == (None if connected else "STREAMING_NOT_CONNECTED")
            else:
                assert isinstance(producer.is_connected(), bool)

    check()
    harness.call(producer.connect(), "connect")
    sent = harness.call(producer.send(harness.topic, StreamingMessage(b"after")), "send")
    assert isinstance(sent, Success), sent
    harness.call(producer.disconnect(), "disconnect")
    harness.assert_still_works()


def test_concurrent_lifecycle_calls_never_raise(harness: Harness) -> None:
    """Sends racing connects and disconnects: every call still ends in a Result."""
    producer = _independent_producer(harness)

    async def race(actions: list[str]) -> list[object]:
        calls: list[Awaitable[Result[Any, QiError]]] = []
        for action in actions:
            if action == "connect":
                calls.append(producer.connect())
            elif action == "disconnect":
                calls.append(producer.disconnect())
            else:
                calls.append(producer.send(harness.topic, StreamingMessage(b"race")))
        outcomes: list[object] = list(await asyncio.gather(*calls))
        return outcomes

    @examples(harness.backend, memory=150, real=20)
    @given(actions=st.lists(st.sampled_from(["connect", "disconnect", "send"]), max_size=10))
    def check(actions: list[str]) -> None:
        harness.call(producer.connect(), "connect")  # every example starts from one state
        outcomes = harness.runner.run(asyncio.wait_for(race(actions), harness.bound))
        for action, outcome in zip(actions, outcomes, strict=True):
            result = check_result(outcome, action)
            if action in ("connect", "disconnect"):
                assert isinstance(result, Success), f"{action}: {result}"
            else:
                assert code_of(result) in (None, "STREAMING_NOT_CONNECTED"), result

    check()
    harness.call(producer.disconnect(), "disconnect")
    harness.assert_still_works()


def test_a_send_refused_for_not_being_connected_says_not_written(harness: Harness) -> None:
    """Contract 5: every produce failure says whether the message may have been written."""
    producer = _independent_producer(harness)
    single = harness.call(producer.send(harness.topic, StreamingMessage(b"x")), "send")
    batch = harness.call(
        producer.send_batch(MessageBatch(harness.topic, (StreamingMessage(b"x"),))), "send_batch"
    )
    for result in (single, batch):
        assert code_of(result) == "STREAMING_NOT_CONNECTED", result
        _assert_delivery_said(result, "send on an unconnected producer")


_UNENCODABLE = "lone\ud800surrogate"


@pytest.mark.parametrize(
    "message",
    [
        StreamingMessage(b"v", key=_UNENCODABLE),
        StreamingMessage(b"v", headers={_UNENCODABLE: b"value"}),
        StreamingMessage(b"v", headers={"name": _UNENCODABLE}),
    ],
    ids=["key", "header-name", "header-value"],
)
def test_unencodable_text_is_an_invalid_message(
    harness: Harness, message: StreamingMessage
) -> None:
    """A str that UTF-8 cannot encode is a bad message: rejected before sending, not written."""
    single = harness.call(harness.producer.send(harness.topic, message), "send")
    batch = harness.call(
        harness.producer.send_batch(MessageBatch(harness.topic, (message,))), "send_batch"
    )
    assert code_of(single) == "STREAMING_INVALID_MESSAGE", single
    _assert_delivery_said(single, "send")
    assert code_of(batch) == "STREAMING_BATCH_PARTIAL_FAILURE", batch
    assert isinstance(batch, Failure)
    (outcome,) = batch.error.context["results"]
    assert code_of(outcome) == "STREAMING_INVALID_MESSAGE", outcome
    _assert_delivery_said(outcome, "send_batch")
