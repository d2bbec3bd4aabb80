"""examples/dead_letter.py: retries, then the dead-letter topic; the partition moves on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import dead_letter
from qi.base import Failure, QiError
from qi.base.streaming import (
    ConsumerRunConfig,
    EachMessagePayload,
    ErrorCode,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
)
from qi.base.streaming.testing import assert_produced, read_topic, wait_for_group
from testkit import unique

from ._support import ExampleRun, quick_group

QUICK = dead_letter.RetryPolicy(max_attempts=3, first_pause=0.01)


@dataclass(frozen=True, slots=True)
class Parcels:
    """The topics and group of one test: parcels in, dead letters out."""

    topic: str = field(default_factory=lambda: unique("parcels"))
    dead_letters: str = field(default_factory=lambda: unique("parcels-dlq"))
    group: str = field(default_factory=lambda: unique("shipping"))


async def run_parcels(
    run: ExampleRun,
    parcels: Parcels,
    handler: Callable[[EachMessagePayload], Awaitable[object]],
    labels: list[bytes],
    *,
    on_error: Callable[[QiError], object] | None = None,
) -> None:
    """Send ``labels`` to a new topic and run ``handler`` wrapped with the dead letter."""
    admin = (await run.client.get_admin()).unwrap()
    created = [TopicConfig(parcels.topic), TopicConfig(parcels.dead_letters)]
    (await admin.create_topics(created)).unwrap()
    producer = (await run.client.get_producer()).unwrap()
    for label in labels:
        (await producer.send(parcels.topic, StreamingMessage(label, key=label))).unwrap()
    consumer = (await run.client.get_consumer(quick_group(parcels.group))).unwrap()
    subscription = SubscriptionConfig((parcels.topic,), from_beginning=True)
    (await consumer.subscribe(subscription)).unwrap()
    handle = dead_letter.with_dead_letter(handler, producer, parcels.dead_letters, QUICK)
    (await consumer.run(ConsumerRunConfig(each_message=handle, on_error=on_error))).unwrap()


async def test_a_message_that_keeps_failing_is_parked_and_the_others_are_handled(
    example_run: ExampleRun,
) -> None:
    attempts: dict[bytes | None, int] = {}

    async def ship(payload: EachMessagePayload) -> None:
        attempts[payload.message.value] = attempts.get(payload.message.value, 0) + 1
        if payload.message.value == b"unreadable":
            raise ValueError("no address")

    parcels = Parcels()
    await run_parcels(example_run, parcels, ship, [b"parcel-1", b"unreadable", b"parcel-2"])

    await wait_for_group(example_run.client, parcels.group, [parcels.topic], within=30)
    assert attempts == {b"parcel-1": 1, b"unreadable": 3, b"parcel-2": 1}
    await assert_produced(
        example_run.client,
        parcels.dead_letters,
        key=b"unreadable",
        value=b"unreadable",
        headers={
            "dead-letter.topic": parcels.topic.encode(),
            "dead-letter.partition": b"0",
            "dead-letter.offset": b"1",
            "dead-letter.attempts": b"3",
            "dead-letter.error": b"ValueError: no address",
        },
        within=30,
    )


async def test_a_failure_retrying_cannot_help_is_parked_at_once(memory_run: ExampleRun) -> None:
    attempts = 0
    refusal = QiError(ErrorCode.INVALID_MESSAGE, "not a parcel", ErrorCode.INVALID_MESSAGE.category)

    async def ship(payload: EachMessagePayload) -> Failure[QiError]:
        nonlocal attempts
        attempts += 1
        return Failure(refusal)

    parcels = Parcels()
    await run_parcels(memory_run, parcels, ship, [b"junk"])

    await assert_produced(
        memory_run.client, parcels.dead_letters, headers={"dead-letter.attempts": b"1"}
    )
    assert attempts == 1


async def test_a_refused_dead_letter_is_parked_when_the_loop_hands_the_message_over_again(
    memory_run: ExampleRun,
) -> None:
    assert memory_run.memory_broker is not None
    parcels = Parcels()
    memory_run.memory_broker.fail_next_produces(parcels.dead_letters)
    errors: list[QiError] = []

    async def ship(payload: EachMessagePayload) -> None:
        raise ValueError("no address")

    await run_parcels(memory_run, parcels, ship, [b"unreadable"], on_error=errors.append)

    await wait_for_group(memory_run.client, parcels.group, [parcels.topic])
    messages = await read_topic(memory_run.client, parcels.dead_letters)
    assert [message.value for message in messages] == [b"unreadable"]
    assert [error.code for error in errors] == ["STREAMING_HANDLER_FAILED"]
    assert isinstance(errors[0].context["cause"], dead_letter.DeadLetterUnavailable)
