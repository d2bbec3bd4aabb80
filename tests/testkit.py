"""Helpers every test suite here shares: Result checks, polling, collecting, unique names.

What users of the library get for their own tests lives in ``qi.base.streaming.testing``
(the pytest plugin); the suites use it where it fits. These are the helpers the
library's own suites need besides, written once so that each has one signature.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

from qi.base import QiError, Result, Success
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    StreamingConsumer,
)

T = TypeVar("T")

# Generous bounds: on success a wait ends as soon as its condition holds, so only a
# failing test pays for them. Real brokers need seconds for a group join.
WAIT: Final = 30.0


def unique(prefix: str) -> str:
    """A topic, group, client or transactional id no other test (or earlier run against
    the same broker) uses."""
    return f"qi-{prefix}-{uuid.uuid4().hex[:12]}"


def ok(result: Result[T, QiError]) -> T:
    """The value of a Success; fails the test with the error otherwise."""
    assert isinstance(result, Success), f"expected a Success, got {result!r}"
    return result.value


async def wait_until(
    condition: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    within: float = WAIT,
    interval: float = 0.02,
) -> None:
    """Poll ``condition`` (sync or async) until it holds; after ``within`` seconds fail the
    test saying it timed out waiting for ``what``."""
    deadline = time.monotonic() + within
    while True:
        outcome = condition()
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {within:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Collector:
    """Records what a running consumer hands its handlers and its on_error.

    Its message handler can also fail (``fail_when``) or take its time (``delay``) on
    purpose; collectors given one ``seen`` list record into it together, so that list
    shows the order in which the members handled their messages.
    """

    name: str = "consumer"
    """Which member handled a message, in ``seen``."""
    seen: list[tuple[str, ConsumedMessage]] = field(default_factory=list)
    """(collector name, message) per message handled without failing, in handling order."""
    batches: list[EachBatchPayload] = field(default_factory=list)
    """What ``each_batch`` was given, in order."""
    errors: list[QiError] = field(default_factory=list)
    """What ``on_error`` was given, in order."""
    fail_when: Callable[[ConsumedMessage], bool] | None = None
    """``each_message`` raises on a message this is true of (the message is not recorded)."""
    delay: float = 0.0
    """Seconds ``each_message`` sleeps before recording a message."""

    async def each_message(self, payload: EachMessagePayload) -> None:
        if self.fail_when is not None and self.fail_when(payload.message):
            raise RuntimeError(f"handler failure on offset {payload.message.offset}")
        if self.delay:
            await asyncio.sleep(self.delay)
        assert (payload.topic, payload.partition) == (
            payload.message.topic,
            payload.message.partition,
        )
        self.seen.append((self.name, payload.message))

    async def each_batch(self, payload: EachBatchPayload) -> None:
        self.batches.append(payload)
        self.seen.extend((self.name, message) for message in payload.messages)

    async def on_error(self, error: QiError) -> None:
        self.errors.append(error)

    def run_config(self, *, batches: bool = False, **changes: Any) -> ConsumerRunConfig:
        """A run config that feeds this collector (``changes``: other run settings)."""
        if batches:
            return ConsumerRunConfig(each_batch=self.each_batch, on_error=self.on_error, **changes)
        return ConsumerRunConfig(each_message=self.each_message, on_error=self.on_error, **changes)

    @property
    def messages(self) -> list[ConsumedMessage]:
        """The messages in ``seen``, in handling order."""
        return [message for _, message in self.seen]

    async def wait_for(self, count: int, within: float = WAIT) -> list[ConsumedMessage]:
        """Wait until at least ``count`` messages arrived; return them all."""
        await wait_until(
            lambda: len(self.seen) >= count,
            f"{count} messages (have {len(self.seen)})",
            within=within,
        )
        return self.messages

    def offsets(self, topic: str, partition: int) -> list[int]:
        """Offsets received from one partition, in arrival order."""
        return [m.offset for m in self.messages if (m.topic, m.partition) == (topic, partition)]

    def values(self) -> list[bytes | None]:
        """The values of the messages in ``seen``, in handling order."""
        return [message.value for _, message in self.seen]


async def run_stopping_itself(consumer: StreamingConsumer, run_config: ConsumerRunConfig) -> None:
    """``consumer.run(run_config)`` for a handler or an on_error that may disconnect the
    consumer: when that happens before run() returned, run() says so (NOT_CONNECTED)."""
    ran = await consumer.run(run_config)
    assert isinstance(ran, Success) or ran.error.code == "STREAMING_NOT_CONNECTED", ran
