"""The recorder: wraps the user's handler and the public calls, and logs what they did.

Shared by every driver: the memory driver keeps events in a list, a child process
appends them to a file (one ``os.write`` per line). Message values carry their own
test plan (``plan:SEQ:FAILS:DELAY_MS``), so a handler knows how to behave in any
process: write its outputs (exactly-once members), sleep ``DELAY_MS``, then fail the
first ``FAILS`` deliveries (raising, or returning a Failure for odd ``SEQ``) and
succeed afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TypeVar

from qi.base import ErrorCategory, Failure, QiError, Result, create_error
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    ProduceResult,
    StreamingMessage,
    StreamingProducer,
    Transaction,
)

from ._events import (
    Call,
    Event,
    HandlerEnded,
    HandlerStarted,
    Leftovers,
    Outcome,
    Output,
    Produced,
    Wrote,
)

T = TypeVar("T")
Record = Callable[[Event], None]

now = time.monotonic
"""The clock of every event: CLOCK_MONOTONIC, shared by the processes of one machine."""

TRANSACTION_MAX_MESSAGES = 50
"""Small, so a run commits many transactions and a failure aborts a few dozen messages."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How handlers treat one message."""

    seq: int
    fails: int = 0
    """Deliveries that fail before one succeeds (counted per process)."""
    delay_ms: int = 0
    """Each delivery sleeps this long first."""

    def value(self) -> bytes:
        """The message value that carries this plan."""
        return f"plan:{self.seq}:{self.fails}:{self.delay_ms}".encode()

    @classmethod
    def of(cls, value: bytes | None) -> Plan:
        """The plan a value carries; a value without one is handled at once."""
        if not value or not value.startswith(b"plan:"):
            return cls(-1)
        _, seq, fails, delay = value.decode().split(":")
        return cls(int(seq), int(fails), int(delay))


def transformed(topic: str, partition: int, message: ConsumedMessage) -> StreamingMessage:
    """What an exactly-once member writes for an input: same partition, the input named in
    the key, its value carried over (``output_of`` reads it back)."""
    key = f"{topic}:{partition}:{message.offset}".encode()
    return StreamingMessage(b"out:" + (message.value or b""), key=key, partition=partition)


def output_of(partition: int, offset: int, key: bytes | None, value: bytes | None) -> Output:
    """The event for a record of the output topic (see ``transformed``)."""
    topic, source_partition, source_offset = (key or b"?:-1:-1").decode().rsplit(":", 2)
    carried = (value or b"").removeprefix(b"out:").decode(errors="backslashreplace")
    source = (topic, int(source_partition), int(source_offset))
    return Output(now(), partition, offset, source, carried)


def record_produced(
    record: Record, results: Sequence[ProduceResult], values: Sequence[bytes]
) -> None:
    """Log acknowledged messages (their results, with the values they were sent with)."""
    at = now()
    for result, value in zip(results, values, strict=True):
        text = value.decode(errors="backslashreplace")
        record(Produced(at, result.topic, result.partition, result.offset, text))


class PlannedHandler:
    """A member's handler: follows each message's plan and records every call's start and end."""

    def __init__(
        self,
        record: Record,
        member: str,
        attempts: dict[tuple[str, int, int], int],
        output_topic: str | None = None,
    ) -> None:
        self._record = record
        self.member = member
        self._attempts = attempts
        """Deliveries so far per message, shared by the members of one process."""
        self._calls = itertools.count()
        self._output_topic = output_topic
        """Exactly-once members write each input's transformation here, in the transaction."""

    def run_config(
        self,
        each_batch: bool,
        retry_backoff: float,
        on_error: Callable[[QiError], object] | None = None,
        transactional_producer: StreamingProducer | None = None,
    ) -> ConsumerRunConfig:
        """A run config calling this handler per message or per batch (in transactions of
        ``transactional_producer``, if given: a few dozen messages each)."""
        if each_batch:
            config = ConsumerRunConfig(
                each_batch=self.each_batch, on_error=on_error, retry_backoff=retry_backoff
            )
        else:
            config = ConsumerRunConfig(
                each_message=self.each_message, on_error=on_error, retry_backoff=retry_backoff
            )
        if transactional_producer is None:
            return config
        return dataclasses.replace(
            config,
            transactional_producer=transactional_producer,
            transaction_max_messages=TRANSACTION_MAX_MESSAGES,
        )

    async def each_message(self, payload: EachMessagePayload) -> object:
        return await self._handle(
            payload.topic, payload.partition, (payload.message,), payload.transaction
        )

    async def each_batch(self, payload: EachBatchPayload) -> object:
        return await self._handle(
            payload.topic, payload.partition, payload.messages, payload.transaction
        )

    async def _handle(
        self,
        topic: str,
        partition: int,
        messages: Sequence[ConsumedMessage],
        transaction: Transaction | None,
    ) -> object:
        first, last, call = messages[0].offset, messages[-1].offset, next(self._calls)
        self._record(HandlerStarted(now(), self.member, topic, partition, first, last, call))
        outcome: Outcome = "failed"
        # No finally: a crashed member's coroutine closed later must record nothing.
        try:
            failure = await self._behave(topic, partition, messages, transaction)
            outcome = "ok" if failure is None else "failed"
        except asyncio.CancelledError:
            self._record(
                HandlerEnded(now(), self.member, topic, partition, first, last, call, "cancelled")
            )
            raise
        except Exception:
            self._record(
                HandlerEnded(now(), self.member, topic, partition, first, last, call, outcome)
            )
            raise
        self._record(HandlerEnded(now(), self.member, topic, partition, first, last, call, outcome))
        return failure

    async def _behave(
        self,
        topic: str,
        partition: int,
        messages: Sequence[ConsumedMessage],
        transaction: Transaction | None,
    ) -> Failure[QiError] | None:
        plans = [Plan.of(message.value) for message in messages]
        if transaction is not None and self._output_topic is not None:
            # Written first: a member paused in the delay holds them in its open transaction,
            # and the abort that follows a planned failure must hide them.
            for message in messages:
                sent = await transaction.send(
                    self._output_topic, transformed(topic, partition, message)
                )
                if isinstance(sent, Failure):
                    return sent
                source = (topic, partition, message.offset)
                self._record(
                    Wrote(now(), self.member, sent.value.partition, sent.value.offset, source)
                )
        delay = max(plan.delay_ms for plan in plans)
        if delay:
            await asyncio.sleep(delay / 1000)
        for message, plan in zip(messages, plans, strict=True):
            key = (topic, partition, message.offset)
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            if attempt <= plan.fails:
                where = f"{topic}[{partition}]@{message.offset}"
                reason = f"planned failure {attempt}/{plan.fails} of {where}"
                if plan.seq % 2:
                    return Failure(create_error("PLANNED", reason, ErrorCategory.BUSINESS))
                raise RuntimeError(reason)
        return None


async def timed(
    record: Record,
    member: str,
    name: str,
    bound: float,
    rule: str,
    call: Awaitable[Result[T, QiError]],
) -> Result[T, QiError]:
    """Await a public call and log how long it took against its contract bound."""
    started = now()
    result = await call
    outcome = result.error.code if isinstance(result, Failure) else "ok"
    record(Call(now(), started, member, name, outcome, bound, rule))
    return result


def library_leftovers(
    member: str,
    ignore_tasks: Sequence[str] = (),
    ignore_threads: Collection[threading.Thread] = (),
) -> Leftovers:
    """The library's tasks on the running loop (but the caller's) and its threads, now.

    ``ignore_threads`` are threads that ran before the schedule began: in a shared test
    process another test's client may still be winding down.
    """
    current = asyncio.current_task()
    tasks = sorted(
        task.get_name()
        for task in asyncio.all_tasks()
        if task is not current and task.get_name() not in ignore_tasks
    )
    # The development broker's spawner thread lives for the whole test session (a broker
    # of an earlier test started it): it is the test's infrastructure, not a client's.
    threads = sorted(
        thread.name
        for thread in threading.enumerate()
        if thread.name.startswith("qi-")
        and not thread.name.startswith("qi-devbroker")
        and thread not in ignore_threads
    )
    return Leftovers(now(), member, tuple(tasks), tuple(threads))
