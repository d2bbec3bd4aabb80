"""A retry policy and a dead-letter topic, built on top of the at-least-once run loop.

The run loop never skips a message whose handler fails: it hands it over again after
``retry_backoff``, as often as it takes, and the partition waits behind it. What to do
with a message that never succeeds is the application's choice, and a handler wrapper
is the place to make it: ``with_dead_letter(handler, producer, topic, policy)`` tries
the handler up to ``policy.max_attempts`` times with growing pauses, then sends the
message to a dead-letter topic with headers saying where it came from and why it
failed, and returns, so the loop commits past it and the partition moves on.

- A handler that returns a Failure whose ``retry_strategy`` is ``"never"`` (a
  validation error, say) goes to the dead-letter topic at once: retrying cannot help.
- If the dead-letter send fails, the wrapper raises: the loop hands the message over
  again later, so no message is lost, only delayed.
- The retries run inside one handler call and hold the partition meanwhile; keep
  ``max_attempts`` times the pauses well below ``request_timeout``, which bounds how
  long a rebalance waits for a running handler.

``python examples/dead_letter.py`` runs it on the memory backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from qi.base import Failure, QiError, is_failure
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachMessagePayload,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)

Handler = Callable[[EachMessagePayload], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often to try a message, and how long to pause between the tries."""

    max_attempts: int = 3
    """Tries before the message goes to the dead-letter topic."""
    first_pause: float = 0.05
    """Seconds before the second try; each later pause doubles, up to ``max_pause``."""
    max_pause: float = 1.0
    """Longest pause between two tries, in seconds."""

    def pause_after(self, attempt: int) -> float:
        return min(self.first_pause * 2.0 ** (attempt - 1), self.max_pause)


class DeadLetterUnavailable(Exception):
    """The dead-letter send failed: the run loop will hand the message over again."""

    def __init__(self, error: QiError) -> None:
        super().__init__(f"could not park the message: {error}")
        self.error = error


def with_dead_letter(
    handler: Handler,
    producer: StreamingProducer,
    dead_letter_topic: str,
    policy: RetryPolicy = RetryPolicy(),
) -> Callable[[EachMessagePayload], Awaitable[None]]:
    """``handler`` with retries; a message it keeps failing goes to ``dead_letter_topic``."""

    async def handle(payload: EachMessagePayload) -> None:
        attempt = 0
        while True:
            attempt += 1
            problem, retrying_helps = await _attempt(handler, payload)
            if problem is None:
                return
            if not retrying_helps or attempt >= policy.max_attempts:
                break
            await asyncio.sleep(policy.pause_after(attempt))
        parked = await producer.send(dead_letter_topic, _dead_letter(payload, problem, attempt))
        if is_failure(parked):
            raise DeadLetterUnavailable(parked.error)

    return handle


async def _attempt(handler: Handler, payload: EachMessagePayload) -> tuple[str | None, bool]:
    """Run the handler once: what went wrong (None: nothing), and whether to try again."""
    try:
        outcome = await handler(payload)
    except Exception as raised:  # the handler's own failure, whatever it is
        return f"{type(raised).__name__}: {raised}", True
    if isinstance(outcome, Failure) and isinstance(outcome.error, QiError):
        return str(outcome.error), outcome.error.retry_strategy != "never"
    return None, False


def _dead_letter(payload: EachMessagePayload, problem: str, attempts: int) -> StreamingMessage:
    message = payload.message
    return StreamingMessage(
        message.value,
        key=message.key,
        headers={
            **message.headers,
            "dead-letter.topic": message.topic,
            "dead-letter.partition": str(message.partition),
            "dead-letter.offset": str(message.offset),
            "dead-letter.attempts": str(attempts),
            "dead-letter.error": problem,
        },
    )


async def main() -> int:
    config = StreamingConfig(client_id="shipping", brokers=("memory-dead-letter:9092",))
    async with create_streaming_client("memory", config) as client:
        admin = (await client.get_admin()).unwrap()
        (await admin.create_topics([TopicConfig("parcels"), TopicConfig("parcels.dlq")])).unwrap()
        producer = (await client.get_producer()).unwrap()
        for label in (b"parcel-1", b"unreadable", b"parcel-2"):
            (await producer.send("parcels", StreamingMessage(label))).unwrap()

        shipped: list[bytes | None] = []
        all_done = asyncio.Event()

        async def ship(payload: EachMessagePayload) -> None:
            if payload.message.value == b"unreadable":
                raise ValueError("no address on the label")
            shipped.append(payload.message.value)
            if len(shipped) == 2:
                all_done.set()

        consumer = (await client.get_consumer(ConsumerConfig("shipping"))).unwrap()
        await consumer.subscribe(SubscriptionConfig(("parcels",), from_beginning=True))
        handle = with_dead_letter(ship, producer, "parcels.dlq")
        (await consumer.run(ConsumerRunConfig(each_message=handle))).unwrap()
        await asyncio.wait_for(all_done.wait(), timeout=10)
        print("shipped", shipped)

        parked: asyncio.Queue[EachMessagePayload] = asyncio.Queue()
        watcher = (await client.get_consumer(ConsumerConfig("dlq-watcher"))).unwrap()
        await watcher.subscribe(SubscriptionConfig(("parcels.dlq",), from_beginning=True))
        await watcher.run(ConsumerRunConfig(each_message=parked.put))
        dead = (await asyncio.wait_for(parked.get(), timeout=10)).message
        print("dead letter", dead.value, dead.headers["dead-letter.error"].decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
