"""The round trip behind ``demo``: produce a batch, consume it back, verify it.

For one backend: create a fresh topic, send ``messages`` keyed messages with a
header through ``send_batch`` (one batch in flight at a time), read them back
with a fresh consumer group through ``each_batch``, check that every message
arrived exactly once, intact, at the partition and offset its acknowledgement
named, in order within each partition; then time sequential single ``send``
calls. Nothing here raises: a step that fails ends the run with a report that
names the step and the library's error line.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Final, TypeVar

from qi.base import Failure, QiError, Result
from qi.base.streaming import (
    ConsumedMessage,
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    MessageBatch,
    ProducerConfig,
    ProduceResult,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.cli._output import one_line

T = TypeVar("T")

_SEQUENCE_HEADER: Final = "seq"
_KEYS: Final = 64
# The consumer side uses a short session: some brokers (Tansu) make a group join
# wait about half of it.
_SESSION_TIMEOUT: Final = 6.0
_HEARTBEAT_INTERVAL: Final = 2.0


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """How big a round trip to run."""

    messages: int
    """Messages produced and consumed back."""
    size: int
    """Bytes of each value."""
    batch_size: int
    """Messages per send_batch call."""
    latency_sends: int
    """Sequential single sends timed for the latency figure (0 to skip)."""
    partitions: int = 3
    """Partitions of the topic created for the run."""
    consume_timeout: float = 60.0
    """Seconds the consumer may take to read everything back."""


@dataclass(frozen=True, slots=True)
class WorkloadReport:
    """What one backend's round trip measured, or where it failed."""

    backend: str
    """Backend name."""
    messages: int
    """Messages consumed back (the number asked for when everything worked)."""
    produce_rate: float | None
    """Messages acknowledged per second through send_batch."""
    consume_rate: float | None
    """Messages fetched and handled per second, from the group's assignment to the last one."""
    latency_p50: float | None
    """Median seconds of one send() awaited on its own."""
    latency_p99: float | None
    """99th percentile seconds of one send() awaited on its own."""
    problem: str | None
    """Why the run failed or did not verify; None when everything checked out."""

    @property
    def verified(self) -> bool:
        """True when every message came back intact and in order."""
        return self.problem is None


class _StepFailed(Exception):
    """Ends a run at a failed step with the line to show."""


def _unwrap(step: str, result: Result[T, QiError]) -> T:
    if isinstance(result, Failure):
        raise _StepFailed(f"{step}: {one_line(str(result.error))}")
    return result.value


def build_messages(spec: WorkloadSpec) -> tuple[StreamingMessage, ...]:
    """``spec.messages`` keyed messages whose value starts with their sequence number."""
    filler = os.urandom(spec.size + 4096)
    messages = []
    for sequence in range(spec.messages):
        prefix = b"%010d:" % sequence
        start = sequence % 4096
        value = (prefix + filler[start : start + spec.size])[: spec.size]
        messages.append(
            StreamingMessage(
                value=value,
                key=f"key-{sequence % _KEYS}",
                headers={_SEQUENCE_HEADER: str(sequence)},
            )
        )
    return tuple(messages)


def verify(
    sent: Sequence[StreamingMessage],
    acknowledged: Sequence[ProduceResult],
    received: Sequence[ConsumedMessage],
) -> str | None:
    """The first thing wrong with what came back, or None when it matches what was sent."""
    if len(received) != len(sent):
        distinct = len({(message.partition, message.offset) for message in received})
        duplicates = (
            f" ({len(received) - distinct} duplicates)" if distinct != len(received) else ""
        )
        return f"received {len(received)} messages for {len(sent)} sent{duplicates}"
    seen: set[int] = set()
    last_offset: dict[int, int] = {}
    last_sequence: dict[int, int] = {}
    for message in received:
        try:
            sequence = int(message.headers[_SEQUENCE_HEADER])
        except (KeyError, ValueError):
            return (
                f"message at partition {message.partition} offset {message.offset} lost its header"
            )
        if not 0 <= sequence < len(sent) or sequence in seen:
            return f"message {sequence} unexpected or received twice"
        seen.add(sequence)
        original, ack = sent[sequence], acknowledged[sequence]
        key = original.key.encode() if isinstance(original.key, str) else original.key
        if message.value != original.value or message.key != key:
            return f"message {sequence} came back altered"
        if (message.partition, message.offset) != (ack.partition, ack.offset):
            return (
                f"message {sequence} read at {message.partition}/{message.offset}, "
                f"acknowledged at {ack.partition}/{ack.offset}"
            )
        partition = message.partition
        if message.offset <= last_offset.get(partition, -1) or sequence < last_sequence.get(
            partition, -1
        ):
            return f"partition {partition} delivered out of order at offset {message.offset}"
        last_offset[partition] = message.offset
        last_sequence[partition] = sequence
    return None


class _Collector:
    """The each_batch handler: keeps every message and notes when all have arrived."""

    def __init__(self, expected: int) -> None:
        self.messages: list[ConsumedMessage] = []
        self.expected = expected
        self.done_at: float | None = None
        self.done = asyncio.Event()

    async def handle(self, payload: EachBatchPayload) -> None:
        self.messages.extend(payload.messages)
        if len(self.messages) >= self.expected and not self.done.is_set():
            self.done_at = time.perf_counter()
            self.done.set()


async def run_workload(
    backend: str,
    config: StreamingConfig,
    spec: WorkloadSpec,
    producer_config: ProducerConfig,
    on_step: Callable[[str], None] = lambda step: None,
) -> WorkloadReport:
    """Run the round trip on ``backend``; every failure is reported, never raised."""
    client = create_streaming_client(backend, config)
    run = _Run(backend, client, spec, producer_config, on_step)
    try:
        return await run.execute()
    except _StepFailed as failed:
        return run.report(str(failed))
    except Exception as exc:  # the CLI must show a row, whatever a backend does
        return run.report(f"unexpected {type(exc).__name__}: {one_line(str(exc))}")
    finally:
        await run.clean_up()


class _Run:
    """One backend's round trip, remembering what it measured so far."""

    def __init__(
        self,
        backend: str,
        client: StreamingClient,
        spec: WorkloadSpec,
        producer_config: ProducerConfig,
        on_step: Callable[[str], None],
    ) -> None:
        self.backend = backend
        self.client = client
        self.spec = spec
        self.producer_config = producer_config
        self.on_step = on_step
        self.topic: str | None = None
        self.received = 0
        self.produce_rate: float | None = None
        self.consume_rate: float | None = None
        self.latencies: list[float] = []

    def report(self, problem: str | None) -> WorkloadReport:
        p50 = p99 = None
        if self.latencies:
            p50 = statistics.median(self.latencies)
            p99 = sorted(self.latencies)[
                min(len(self.latencies) - 1, int(len(self.latencies) * 0.99))
            ]
        return WorkloadReport(
            backend=self.backend,
            messages=self.received,
            produce_rate=self.produce_rate,
            consume_rate=self.consume_rate,
            latency_p50=p50,
            latency_p99=p99,
            problem=problem,
        )

    async def execute(self) -> WorkloadReport:
        spec = self.spec
        self.on_step("creating a topic")
        admin = _unwrap("connect", await self.client.get_admin())
        topic = f"qi-stream-demo-{self.backend}-{uuid.uuid4().hex[:8]}"
        _unwrap(
            "create topic",
            await admin.create_topics([TopicConfig(topic, num_partitions=spec.partitions)]),
        )
        self.topic = topic

        self.on_step(f"producing {spec.messages:,} messages")
        sent = build_messages(spec)
        producer = _unwrap("producer", await self.client.get_producer(self.producer_config))
        acknowledged: list[ProduceResult] = []
        started = time.perf_counter()
        for first in range(0, len(sent), spec.batch_size):
            batch = MessageBatch(topic, sent[first : first + spec.batch_size])
            acknowledged.extend(_unwrap("send_batch", await producer.send_batch(batch)).results)
        self.produce_rate = len(sent) / max(time.perf_counter() - started, 1e-9)

        self.on_step("consuming them back")
        collector = _Collector(len(sent))
        group = f"qi-stream-demo-{uuid.uuid4().hex[:12]}"
        consumer = _unwrap(
            "consumer",
            await self.client.get_consumer(
                ConsumerConfig(
                    group,
                    session_timeout=_SESSION_TIMEOUT,
                    heartbeat_interval=_HEARTBEAT_INTERVAL,
                )
            ),
        )
        _unwrap(
            "subscribe", await consumer.subscribe(SubscriptionConfig((topic,), from_beginning=True))
        )
        called = time.perf_counter()
        _unwrap("run", await consumer.run(ConsumerRunConfig(each_batch=collector.handle)))
        # Timed from the group's assignment (run() returning), so the join (seconds on
        # some brokers, and not what a long-running consumer pays) stays out. A broker
        # that delivers before run() returns (the in-process one) is timed from the call.
        started = time.perf_counter() if not collector.messages else called
        try:
            await asyncio.wait_for(collector.done.wait(), spec.consume_timeout)
        except TimeoutError:
            pass
        if collector.done_at is not None:
            self.consume_rate = len(sent) / max(collector.done_at - started, 1e-9)
        _unwrap("consumer disconnect", await consumer.disconnect())
        self.received = len(collector.messages)
        problem = verify(sent, acknowledged, collector.messages)
        if problem is not None and not collector.done.is_set():
            problem = f"{problem} within {spec.consume_timeout:g} s"
        if problem is not None:
            return self.report(f"verify: {problem}")

        if spec.latency_sends:
            self.on_step(f"timing {spec.latency_sends} single sends")
            # linger=0: a lone send should not wait for company that never comes.
            single = _unwrap(
                "producer",
                await self.client.get_producer(replace(self.producer_config, linger=0.0)),
            )
            message = StreamingMessage(value=bytes(spec.size), key="latency")
            for _ in range(spec.latency_sends):
                began = time.perf_counter()
                _unwrap("send", await single.send(topic, message))
                self.latencies.append(time.perf_counter() - began)
        return self.report(None)

    async def clean_up(self) -> None:
        """Delete the topic (best effort) and disconnect everything."""
        try:
            if self.topic is not None:
                admin = await self.client.get_admin()
                if not isinstance(admin, Failure):
                    await admin.value.delete_topics([self.topic])
        finally:
            await self.client.disconnect()
