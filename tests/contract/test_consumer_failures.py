"""Contract section 5, at-least-once: failed handlers are retried in place, never skipped."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from qi.base import ErrorCategory, Failure, QiError, create_error
from qi.base.streaming import (
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    StreamingClient,
    StreamingProducer,
    SubscriptionConfig,
)
from testkit import wait_until

from ._support import (
    ConsumerConfigFactory,
    TopicFactory,
    consume,
    expect_failure,
    numbered,
    produce,
    start_consumer,
)

BACKOFF = 0.3


class Boom(Exception):
    """What a failing handler raises."""


def _handler_failures(errors: list[QiError]) -> list[QiError]:
    return [error for error in errors if error.code == "STREAMING_HANDLER_FAILED"]


async def test_failed_message_is_redelivered_before_anything_after_it(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 5))]
    flaky = offsets[1]
    raised = Boom("first attempt")
    returned = create_error("APP_NOT_READY", "second attempt", ErrorCategory.BUSINESS)
    calls: list[tuple[int, float]] = []
    errors: list[QiError] = []

    async def handler(payload: EachMessagePayload) -> object:
        offset = payload.message.offset
        calls.append((offset, time.monotonic()))
        attempt = sum(1 for seen, _ in calls if seen == offset)
        if offset == flaky and attempt == 1:
            raise raised
        if offset == flaky and attempt == 2:
            return Failure(returned)
        return None

    def on_error(error: QiError) -> None:  # a plain function is allowed too
        errors.append(error)

    await start_consumer(
        client,
        consumer_config(),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler, on_error=on_error, retry_backoff=BACKOFF),
    )
    await wait_until(lambda: len(calls) >= 7, "all messages and the retries")

    order = [offset for offset, _ in calls]
    assert order == [offsets[0], flaky, flaky, flaky, *offsets[2:]]
    retry_times = [at for offset, at in calls if offset == flaky]
    for earlier, later in zip(retry_times, retry_times[1:], strict=False):
        assert later - earlier >= BACKOFF * 0.9, "redelivered before retry_backoff"
    failures = _handler_failures(errors)
    assert len(failures) == 2
    for error in failures:
        expect_failure(Failure(error), "STREAMING_HANDLER_FAILED", implementation=backend)
    assert failures[0].context["cause"] is raised
    assert failures[1].context["cause"] == returned


async def test_failing_message_holds_its_partition_and_is_never_committed(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 5))]
    poison = offsets[2]
    calls: list[int] = []
    errors: list[QiError] = []

    async def handler(payload: EachMessagePayload) -> None:
        calls.append(payload.message.offset)
        if payload.message.offset == poison:
            raise Boom("always")

    async def on_error(error: QiError) -> None:
        errors.append(error)

    # Auto-commit runs often, and must still never commit past the failing message.
    config = consumer_config(auto_commit=True, auto_commit_interval=0.1)
    consumer = await start_consumer(
        client,
        config,
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler, on_error=on_error, retry_backoff=0.05),
    )
    await wait_until(lambda: calls.count(poison) >= 4, "repeated redeliveries")
    assert set(calls) == {offsets[0], offsets[1], poison}
    assert calls[:2] == offsets[:2]
    assert all(error.context.get("offset", poison) == poison for error in _handler_failures(errors))
    assert consumer.is_connected()
    ok_disconnect = await consumer.disconnect()
    assert ok_disconnect.is_success(), ok_disconnect

    # The next member of the group starts exactly at the message that never succeeded.
    resumed = await consume(client, dataclasses.replace(config, heartbeat_interval=0.6), [topic], 3)
    assert [m.offset for m in resumed[:3]] == offsets[2:]


async def test_failed_batch_is_redelivered_whole(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
    backend: str,
) -> None:
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 6))]
    calls: list[tuple[int, ...]] = []
    handled: list[int] = []
    errors: list[QiError] = []

    async def handler(payload: EachBatchPayload) -> None:
        calls.append(tuple(m.offset for m in payload.messages))
        if len(calls) == 1:
            raise Boom("first batch fails")
        handled.extend(m.offset for m in payload.messages)

    async def on_error(error: QiError) -> None:
        errors.append(error)

    await start_consumer(
        client,
        consumer_config(max_batch_size=4),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_batch=handler, on_error=on_error, retry_backoff=0.05),
    )
    await wait_until(lambda: len(handled) >= 6, "every message after the retry")
    failed, retried = calls[0], calls[1]
    assert failed[0] == offsets[0]
    assert retried[: len(failed)] == failed
    assert handled == offsets
    (failure,) = _handler_failures(errors)
    expect_failure(Failure(failure), "STREAMING_HANDLER_FAILED", implementation=backend)
    assert isinstance(failure.context["cause"], Boom)


async def test_a_handler_raising_cancelled_error_of_its_own_fails_and_is_redelivered(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # A handler awaiting something another task cancelled raises CancelledError although
    # nobody cancelled the consumer: it is a failure like any other, not the loop's end.
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 4))]
    unlucky = offsets[1]
    raised = asyncio.CancelledError("an awaited future was cancelled")
    calls: list[int] = []
    errors: list[QiError] = []

    async def handler(payload: EachMessagePayload) -> None:
        calls.append(payload.message.offset)
        if payload.message.offset == unlucky and calls.count(unlucky) == 1:
            raise raised

    await start_consumer(
        client,
        consumer_config(),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=handler, on_error=errors.append, retry_backoff=BACKOFF),
    )
    await wait_until(lambda: offsets[-1] in calls, "every message handled")
    assert calls == [offsets[0], unlucky, unlucky, *offsets[2:]]
    (failure,) = _handler_failures(errors)
    assert failure.context["cause"] is raised


async def test_a_batch_handler_raising_cancelled_error_of_its_own_is_redelivered_whole(
    client: StreamingClient,
    producer: StreamingProducer,
    make_topic: TopicFactory,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    offsets = [r.offset for r in await produce(producer, topic, numbered("m", 3))]
    batches: list[list[int]] = []
    errors: list[QiError] = []

    async def handler(payload: EachBatchPayload) -> None:
        batches.append([message.offset for message in payload.messages])
        if len(batches) == 1:
            raise asyncio.CancelledError("an awaited future was cancelled")

    await start_consumer(
        client,
        consumer_config(),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_batch=handler, on_error=errors.append, retry_backoff=BACKOFF),
    )
    await wait_until(lambda: len(batches) >= 2, "the batch redelivered")
    assert batches[1][0] == batches[0][0] == offsets[0]
    assert len(_handler_failures(errors)) == 1
