"""qi-base subjects, through the public API (``qi.base.streaming``) only.

Messages are built before the clock starts, like the raw clients' values: the
harness measures the transport, not the caller's object construction.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TypeVar

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming import (
    ConsumerConfig,
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    ErrorCode,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    StreamingProducer,
    SubscriptionConfig,
    TelemetryConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming.bench._measure import (
    ConsumeClock,
    Stopwatch,
    latency_measurement,
    payload,
)
from qi.base.streaming.bench._model import MEMORY_BROKERS, BenchError, Job, Measurement, Unavailable

T = TypeVar("T")

TELEMETRY_OPTION = "telemetry"
"""Job option: the client gets OpenTelemetry on (``telemetry_config``)."""

_WARM_UP = StreamingMessage(b"warm-up")


def ok(result: Result[T, QiError], what: str) -> T:
    """The value of a Success; a Failure becomes Unavailable (backend missing) or BenchError."""
    if isinstance(result, Failure):
        error = result.error
        if error.code == ErrorCode.UNKNOWN_IMPLEMENTATION:
            raise Unavailable(error.message)
        raise BenchError(f"{what}: {error}")
    return result.value


@asynccontextmanager
async def qi_client(
    job: Job, backend: str, *, request_timeout: float = 30.0, connection_timeout: float = 10.0
) -> AsyncIterator[StreamingClient]:
    """A client for ``backend``; for the memory backend the job's topic is created in-process."""
    brokers = MEMORY_BROKERS if backend == "memory" else (job.bootstrap,)
    config = StreamingConfig(
        client_id="qi-bench",
        brokers=brokers,
        request_timeout=request_timeout,
        connection_timeout=connection_timeout,
        telemetry=telemetry_config() if job.options.get(TELEMETRY_OPTION) else None,
    )
    client = create_streaming_client(backend, config)
    try:
        if backend == "memory":
            admin = ok(await client.get_admin(), "get_admin")
            topic = TopicConfig(job.topic, num_partitions=job.partitions)
            ok(await admin.create_topics([topic]), "create_topics")
        yield client
    finally:
        await client.disconnect()


def telemetry_config() -> TelemetryConfig:
    """OpenTelemetry as a service would run it: the SDK, every span kept and handed to a
    batching processor (whose exporter drops them: no collector to pay for), every metric
    aggregated (read by nobody)."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )
    except ImportError as exc:
        raise Unavailable(f"traced subjects need the OpenTelemetry SDK: {exc}") from None

    class Dropped(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Dropped()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return TelemetryConfig(tracer_provider, meter_provider)


def count_failures(result: Result[object, QiError], size: int) -> tuple[int, QiError | None]:
    """Failed messages of a send or send_batch Result, and the first error."""
    if isinstance(result, Success):
        return 0, None
    error = result.error
    per_message = error.context.get("results")
    if error.code == ErrorCode.BATCH_PARTIAL_FAILURE and isinstance(per_message, tuple):
        failures = [outcome.error for outcome in per_message if isinstance(outcome, Failure)]
        return len(failures), failures[0] if failures else error
    return size, error  # the batch failed as a whole


def _messages(job: Job) -> list[StreamingMessage]:
    value = payload(job.size)
    return [StreamingMessage(value) for _ in range(job.messages)]


def _chunks(job: Job, messages: Sequence[StreamingMessage]) -> list[MessageBatch]:
    return [
        MessageBatch(job.topic, tuple(messages[start : start + job.chunk]))
        for start in range(0, len(messages), job.chunk)
    ]


def _raise_on_failures(failed: int, first: QiError | None, total: int) -> None:
    if failed:
        raise BenchError(f"{failed} of {total} messages failed, first: {first}")


def producer_config(backend: str, variant: str = "") -> ProducerConfig:
    """qi-base's defaults, but aiokafka without idempotence: Tansu 0.6 rejects its
    InitProducerId (the raw aiokafka baselines run without it too). The ``linger0``
    variant sets ``linger=0``."""
    config = ProducerConfig(idempotent=backend != "aiokafka")
    return dataclasses.replace(config, linger=0.0) if variant == "linger0" else config


async def _producer(
    client: StreamingClient, backend: str, topic: str, variant: str = ""
) -> StreamingProducer:
    producer = ok(await client.get_producer(producer_config(backend, variant)), "get_producer")
    ok(await producer.send(topic, _WARM_UP), "warm-up send")  # connection and metadata
    return producer


async def produce_batch(job: Job, backend: str) -> Measurement:
    """send_batch of ``job.chunk`` messages at a time, each awaited before the next."""
    async with qi_client(job, backend) as client:
        producer = await _producer(client, backend, job.topic)
        batches = _chunks(job, _messages(job))
        failed, first = 0, None
        watch = Stopwatch()
        watch.start()
        for batch in batches:
            result = await producer.send_batch(batch)
            if isinstance(result, Failure):
                lost, error = count_failures(result, len(batch.messages))
                failed, first = failed + lost, first or error
        watch.stop()
    _raise_on_failures(failed, first, job.messages)
    return watch.measurement(job.messages, job.size)


async def produce_transactions(job: Job, backend: str) -> Measurement:
    """Per transaction: ``transaction()``, one send_batch of its messages, ``commit()``."""
    per_transaction = int(job.options["transaction_size"])
    async with qi_client(job, backend) as client:
        config = ProducerConfig(transactional_id=f"qi-bench-{uuid.uuid4().hex}")
        producer = ok(await client.get_producer(config), "get_producer")
        # Outside the clock: the producer id, the coordinator, the topic's metadata.
        await _commit_transaction(producer, MessageBatch(job.topic, (_WARM_UP,)))
        messages = _messages(job)
        batches = [
            MessageBatch(job.topic, tuple(messages[start : start + per_transaction]))
            for start in range(0, len(messages), per_transaction)
        ]
        watch = Stopwatch()
        watch.start()
        for batch in batches:
            await _commit_transaction(producer, batch)
        watch.stop()
    return watch.measurement(job.messages, job.size)


async def _commit_transaction(producer: StreamingProducer, batch: MessageBatch) -> None:
    transaction = ok(await producer.transaction(), "transaction")
    sent = await transaction.send_batch(batch)
    if isinstance(sent, Failure):
        await transaction.abort()
        failed, first = count_failures(sent, len(batch.messages))
        _raise_on_failures(failed, first, len(batch.messages))
    ok(await transaction.commit(), "commit")


async def produce_concurrent(job: Job, backend: str) -> Measurement:
    """Every message through its own ``send`` call, all at once with asyncio.gather."""
    async with qi_client(job, backend) as client:
        producer = await _producer(client, backend, job.topic)
        messages, topic = _messages(job), job.topic
        watch = Stopwatch()
        watch.start()
        outcomes = await asyncio.gather(*(producer.send(topic, message) for message in messages))
        watch.stop()
    failures = [outcome.error for outcome in outcomes if isinstance(outcome, Failure)]
    _raise_on_failures(len(failures), failures[0] if failures else None, job.messages)
    return watch.measurement(job.messages, job.size)


async def send_latency(job: Job, backend: str, variant: str) -> Measurement:
    """One awaited ``send`` at a time (default linger of 5 ms, or 0 for ``linger0``)."""
    async with qi_client(job, backend) as client:
        producer = await _producer(client, backend, job.topic, variant)
        messages, topic = _messages(job), job.topic
        latencies: list[float] = []
        watch = Stopwatch()
        watch.start()
        for message in messages:
            started = time.perf_counter()
            result = await producer.send(topic, message)
            latencies.append((time.perf_counter() - started) * 1000)
            if isinstance(result, Failure):
                raise BenchError(f"send failed: {result.error}")
        watch.stop()
    return latency_measurement(watch, latencies, job.size)


async def prefill_memory(client: StreamingClient, job: Job) -> None:
    """The memory broker lives in this process, so its consume scenarios fill it here."""
    producer = ok(await client.get_producer(ProducerConfig()), "get_producer")
    for batch in _chunks(job, _messages(job)):
        failed, first = count_failures(await producer.send_batch(batch), len(batch.messages))
        _raise_on_failures(failed, first, job.messages)


def consumer_config(max_batch_size: int) -> ConsumerConfig:
    return ConsumerConfig(
        group_id=f"qi-bench-{uuid.uuid4().hex}",
        session_timeout=6.0,
        heartbeat_interval=0.5,
        max_batch_size=max_batch_size,
    )


async def consume(job: Job, backend: str, handler_kind: str) -> Measurement:
    """Read the prefilled topic with a fresh group; timed from first to last message."""
    async with qi_client(job, backend) as client:
        if backend == "memory":
            await prefill_memory(client, job)
        consumer = ok(await client.get_consumer(consumer_config(10_000)), "get_consumer")
        subscription = SubscriptionConfig(topics=(job.topic,), from_beginning=True)
        ok(await consumer.subscribe(subscription), "subscribe")
        clock = ConsumeClock(job.messages)
        done = asyncio.Event()
        errors: list[QiError] = []

        def account(received: int) -> None:
            if clock.arrived(received):
                done.set()

        async def each_batch(batch: EachBatchPayload) -> None:
            account(len(batch.messages))

        handled = 0

        async def each_message(message: EachMessagePayload) -> None:
            # Told of the first message (the clock starts) and of the last only: the clock's
            # work per message would cost more than the floors' handlers, which count per
            # fetch, do in all.
            nonlocal handled
            handled += 1
            if handled == 1 or handled == job.messages:
                account(handled - clock.received)

        def on_error(error: QiError) -> None:
            errors.append(error)

        run = (
            ConsumerRunConfig(each_batch=each_batch, on_error=on_error)
            if handler_kind == "each_batch"
            else ConsumerRunConfig(each_message=each_message, on_error=on_error)
        )
        ok(await consumer.run(run), "run")
        try:
            async with asyncio.timeout(job.timeout):
                await done.wait()
        except TimeoutError:
            raise BenchError(
                f"consumed {max(clock.received, handled)} of {job.messages} in {job.timeout}s; "
                f"errors: {errors[:2]}"
            ) from None
    return clock.measurement(job.size, errors=len(errors))
