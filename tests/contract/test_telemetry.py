"""OpenTelemetry: a trace crosses producer to consumer through the headers; metrics count.

The SDK's in-memory span exporter and metric reader stand in for a collector.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from qi.base import Failure
from qi.base.streaming import (
    ConsumerRunConfig,
    EachBatchPayload,
    EachMessagePayload,
    MessageBatch,
    ProducerConfig,
    StreamingClient,
    StreamingConfig,
    StreamingMessage,
    SubscriptionConfig,
    TelemetryConfig,
    create_streaming_client,
)
from testkit import ok, unique, wait_until

from ._support import (
    ConsumerConfigFactory,
    TopicFactory,
    numbered,
    start_collecting,
    start_consumer,
)


@dataclass
class Telemetry:
    """Where the client's spans and metrics end up."""

    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader
    config: TelemetryConfig
    tracer_provider: TracerProvider

    def finished(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans.get_finished_spans() if span.name == name]

    async def wait_for_process_span(self, topic: str) -> None:
        await wait_until(lambda: bool(self.finished(f"process {topic}")), what="a process span")

    def points(self, metric: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        return [
            point
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for found in scope.metrics
            if found.name == metric
            for point in found.data.data_points
        ]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    config = TelemetryConfig(tracer_provider, meter_provider)
    yield Telemetry(spans, reader, config, tracer_provider)
    meter_provider.shutdown()
    tracer_provider.shutdown()


@pytest.fixture
async def traced_client(
    backend: str, streaming_config: StreamingConfig, telemetry: Telemetry
) -> AsyncIterator[StreamingClient]:
    """A client whose producers and consumers report to ``telemetry``."""
    traced = create_streaming_client(
        backend, dataclasses.replace(streaming_config, telemetry=telemetry.config)
    )
    yield traced
    await traced.disconnect()


def _attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _linked_span_ids(span: ReadableSpan) -> list[int]:
    return [link.context.span_id for link in span.links]


async def test_a_trace_crosses_from_producer_to_consumer_through_the_headers(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic, onward = await make_topic(2), await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    sent = ok(await producer.send(topic, StreamingMessage(b"order", key="user-1")))
    forwarded: list[EachMessagePayload] = []

    async def forward(payload: EachMessagePayload) -> None:
        # Sent within the process span: the onward send joins the consumer's trace.
        ok(await producer.send(onward, StreamingMessage(payload.message.value)))
        forwarded.append(payload)

    group = consumer_config()
    consumer = await start_consumer(
        traced_client,
        group,
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=forward),
    )
    await telemetry.wait_for_process_span(topic)
    assert forwarded[0].message.headers.get("traceparent") is not None
    ok(await consumer.disconnect())

    (send,) = telemetry.finished(f"send {topic}")
    (process,) = telemetry.finished(f"process {topic}")
    (onward_send,) = telemetry.finished(f"send {onward}")
    assert send.kind is SpanKind.PRODUCER and process.kind is SpanKind.CONSUMER
    assert _attributes(send) == _attributes(send) | {
        "messaging.system": "kafka",
        "messaging.operation.name": "send",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(sent.partition),
        "messaging.kafka.offset": sent.offset,
        "messaging.kafka.message.key": "user-1",
    }
    assert _attributes(process) == _attributes(process) | {
        "messaging.system": "kafka",
        "messaging.operation.name": "process",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(sent.partition),
        "messaging.kafka.offset": sent.offset,
        "messaging.kafka.message.key": "user-1",
        "messaging.consumer.group.name": group.group_id,
    }
    # Linked to the producer's span (the semantic conventions' choice), not its child.
    assert send.context is not None and process.context is not None
    assert _linked_span_ids(process) == [send.context.span_id]
    assert process.parent is None
    assert onward_send.parent is not None
    assert onward_send.parent.span_id == process.context.span_id


async def test_a_batch_is_one_send_span_that_each_batch_handler_links_to(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    messages = tuple(StreamingMessage(value) for value in numbered("batch", 3))
    ok(await producer.send_batch(MessageBatch(topic, messages)))
    consumer, collector = await start_collecting(
        traced_client, consumer_config(), (topic,), batches=True
    )
    await collector.wait_for(3)
    await telemetry.wait_for_process_span(topic)
    ok(await consumer.disconnect())

    (send,) = telemetry.finished(f"send {topic}")
    assert _attributes(send)["messaging.batch.message_count"] == 3
    assert send.context is not None
    for process in telemetry.finished(f"process {topic}"):
        assert _linked_span_ids(process) == [send.context.span_id]
    counted = sum(
        _attributes(process)["messaging.batch.message_count"]
        for process in telemetry.finished(f"process {topic}")
    )
    assert counted == 3


async def test_metrics_count_a_known_workload(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    for value in numbered("metric", 5):
        ok(await producer.send(topic, StreamingMessage(value, partition=0)))
    refused = await producer.send(topic, StreamingMessage("not bytes"))  # type: ignore[arg-type]
    assert isinstance(refused, Failure)
    failed_once: set[int] = set()

    async def fail_offset_two_once(payload: EachMessagePayload) -> object:
        if payload.message.offset == 2 and 2 not in failed_once:
            failed_once.add(2)
            return Failure(refused.error)  # any error will do: the handler says it failed
        return None

    consumer = await start_consumer(
        traced_client,
        consumer_config(),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=fail_offset_two_once, retry_backoff=0.01),
    )

    def consumed() -> int:
        return sum(point.value for point in telemetry.points("messaging.client.consumed.messages"))

    await wait_until(lambda: consumed() == 6, what="6 deliveries (5 messages, 1 redelivery)")

    sent = {
        point.attributes.get("error.type"): point.value
        for point in telemetry.points("messaging.client.sent.messages")
    }
    assert sent == {None: 5, "STREAMING_INVALID_MESSAGE": 1}
    durations = telemetry.points("messaging.client.operation.duration")
    assert sum(point.count for point in durations) == 6
    processed = {
        point.attributes.get("error.type"): point.count
        for point in telemetry.points("messaging.process.duration")
    }
    assert processed == {None: 5, "STREAMING_INVALID_MESSAGE": 1}

    def lag() -> list[tuple[Any, int]]:
        return [
            (point.attributes["messaging.destination.partition.id"], point.value)
            for point in telemetry.points("messaging.kafka.consumer.lag")
        ]

    await wait_until(lambda: lag() == [("0", 0)], what="the lag gauge at 0")
    ok(await consumer.disconnect())


async def test_a_running_consumer_tells_its_positions_without_a_round_trip(
    client: StreamingClient,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic(2)
    producer = ok(await client.get_producer(producer_config))
    for value in numbered("position", 4):
        ok(await producer.send(topic, StreamingMessage(value, partition=1)))
    release = asyncio.Event()
    handled: list[int] = []

    async def hold_the_first(payload: EachBatchPayload) -> None:
        await release.wait()
        handled.extend(message.offset for message in payload.messages)

    consumer = ok(await client.get_consumer(consumer_config(auto_commit=False)))
    assert ok(consumer.get_positions()) == ()
    ok(await consumer.subscribe(SubscriptionConfig(topics=(topic,), from_beginning=True)))
    ok(await consumer.run(ConsumerRunConfig(each_batch=hold_the_first)))

    def position(partition: int) -> Any:
        found = {p.partition: p for p in ok(consumer.get_positions())}
        return found.get(partition)

    await wait_until(
        lambda: position(1) is not None and position(1).lag == 4, what="a lag of 4 on partition 1"
    )
    assert (position(1).topic, position(1).position, position(1).end) == (topic, 0, 4)
    assert position(1).committed is None
    release.set()
    await wait_until(lambda: len(handled) == 4, what="4 messages handled")
    await wait_until(lambda: position(1).lag == 0, what="no lag left")
    ok(await consumer.commit_offsets())
    assert dataclasses.astuple(position(1))[2:] == (4, 4, 4, 0)
    ok(await consumer.disconnect())
    failed = consumer.get_positions()
    assert isinstance(failed, Failure) and failed.error.code == "STREAMING_NOT_CONNECTED"


async def test_a_batch_counts_each_message_by_its_outcome(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
) -> None:
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    good = StreamingMessage(b"fine", partition=0)
    bad = StreamingMessage("not bytes")  # type: ignore[arg-type]
    partly = await producer.send_batch(MessageBatch(topic, (good, bad, good)))
    assert isinstance(partly, Failure) and partly.error.code == "STREAMING_BATCH_PARTIAL_FAILURE"
    whole = await producer.send_batch(MessageBatch("bad topic name!", (good, good)))
    assert isinstance(whole, Failure) and whole.error.code == "STREAMING_INVALID_TOPIC"

    sent = {
        (
            point.attributes.get("messaging.destination.partition.id"),
            point.attributes.get("error.type"),
        ): point.value
        for point in telemetry.points("messaging.client.sent.messages")
    }
    assert sent == {
        ("0", None): 2,
        (None, "STREAMING_INVALID_MESSAGE"): 1,
        (None, "STREAMING_INVALID_TOPIC"): 2,
    }
    failed_spans = {
        span.name: _attributes(span).get("error.type")
        for span in telemetry.spans.get_finished_spans()
    }
    assert failed_spans == {
        f"send {topic}": "STREAMING_BATCH_PARTIAL_FAILURE",
        "send bad topic name!": "STREAMING_INVALID_TOPIC",
    }


async def test_an_acknowledged_batch_counts_each_partition_s_messages(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
) -> None:
    # Counted without reading the results on the backends that build them when first read.
    topic = await make_topic(3)
    producer = ok(await traced_client.get_producer(producer_config))
    partitions = (0, 2, 2, 1, 2, 0)
    messages = tuple(StreamingMessage(b"v", partition=partition) for partition in partitions)
    sent = ok(await producer.send_batch(MessageBatch(topic, messages)))
    counted = {
        point.attributes.get("messaging.destination.partition.id"): point.value
        for point in telemetry.points("messaging.client.sent.messages")
        if point.attributes.get("error.type") is None
    }
    assert counted == {"0": 2, "1": 1, "2": 3}
    assert [result.partition for result in sent.results] == list(partitions)


@pytest.mark.kafka_rules
async def test_the_sends_of_a_transaction_are_traced(
    traced_client: StreamingClient, telemetry: Telemetry, make_topic: TopicFactory
) -> None:
    topic = await make_topic()
    config = ProducerConfig(transactional_id=unique("telemetry"))
    producer = ok(await traced_client.get_producer(config))
    transaction = ok(await producer.transaction())
    ok(await transaction.send(topic, StreamingMessage(b"one", key="k")))
    ok(await transaction.send_batch(MessageBatch(topic, (StreamingMessage(b"two"),))))
    ok(await transaction.commit())

    single, batch = telemetry.finished(f"send {topic}")
    assert _attributes(single)["messaging.kafka.message.key"] == "k"
    assert _attributes(batch)["messaging.batch.message_count"] == 1
    sent = sum(point.value for point in telemetry.points("messaging.client.sent.messages"))
    assert sent == 2


async def test_get_positions_answers_at_once_while_the_consumer_waits_for_messages(
    client: StreamingClient,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # confluent-kafka lets one thread at a time into a Consumer: a get_positions() that
    # asked librdkafka from the loop waited for the worker's poll (up to 0.25 s), every call.
    topic = await make_topic()
    producer = ok(await client.get_producer(producer_config))
    ok(await producer.send(topic, StreamingMessage(b"one")))
    consumer, collector = await start_collecting(client, consumer_config(), (topic,))
    await collector.wait_for(1)
    await wait_until(lambda: ok(consumer.get_positions())[0].lag == 0, what="no lag left")
    took: list[float] = []
    for _ in range(10):
        started = time.perf_counter()
        ok(consumer.get_positions())
        took.append(time.perf_counter() - started)
        await asyncio.sleep(0.03)  # the worker is back in poll() by now
    assert sorted(took)[5] < 0.05, f"get_positions() took {sorted(took)}s"
    ok(await consumer.disconnect())


async def test_the_lag_gauge_reads_the_consumers_of_every_config_sharing_a_meter_provider(
    backend: str,
    streaming_config: StreamingConfig,
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # Another part of the service traces to its own provider but meters to the same one:
    # the meter ignored the second config's gauge callback, so its consumers went missing.
    other_config = TelemetryConfig(TracerProvider(), telemetry.config.meter_provider)
    other = create_streaming_client(
        backend, dataclasses.replace(streaming_config, telemetry=other_config)
    )
    try:
        topic = await make_topic()
        producer = ok(await traced_client.get_producer(producer_config))
        ok(await producer.send(topic, StreamingMessage(b"one")))
        groups = [consumer_config(), consumer_config()]
        consumers = []
        for client, group in zip((traced_client, other), groups, strict=True):
            consumer, collector = await start_collecting(client, group, (topic,))
            consumers.append(consumer)
            await collector.wait_for(1)

        def lagging_groups() -> set[object]:
            return {
                point.attributes["messaging.consumer.group.name"]
                for point in telemetry.points("messaging.kafka.consumer.lag")
            }

        await wait_until(
            lambda: lagging_groups() == {group.group_id for group in groups},
            what="both groups' lag in the gauge",
        )
        for consumer in consumers:  # before the topic goes (see the README on Tansu)
            ok(await consumer.disconnect())
    finally:
        await other.disconnect()


async def test_a_tombstone_is_marked_on_both_spans(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # The conventions require messaging.kafka.message.tombstone when it is true.
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    ok(await producer.send(topic, StreamingMessage(None, key="gone")))
    ok(await producer.send(topic, StreamingMessage(b"kept", key="here")))
    consumer, collector = await start_collecting(traced_client, consumer_config(), (topic,))
    await collector.wait_for(2)
    await wait_until(lambda: len(telemetry.finished(f"process {topic}")) == 2, what="2 spans")
    ok(await consumer.disconnect())

    for name in (f"send {topic}", f"process {topic}"):
        tombstone, kept = telemetry.finished(name)
        assert _attributes(tombstone)["messaging.kafka.message.tombstone"] is True
        assert "messaging.kafka.message.tombstone" not in _attributes(kept)


async def test_after_a_seek_to_latest_the_position_is_not_the_one_handled_before(
    client: StreamingClient,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    topic = await make_topic()
    producer = ok(await client.get_producer(producer_config))
    for value in numbered("seek", 10):
        ok(await producer.send(topic, StreamingMessage(value, partition=0)))
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_sixth(payload: EachMessagePayload) -> None:
        if payload.message.offset == 5 and not release.is_set():
            holding.set()
            await release.wait()

    consumer = await start_consumer(
        client,
        consumer_config(auto_commit=False),
        SubscriptionConfig(topics=(topic,), from_beginning=True),
        ConsumerRunConfig(each_message=hold_the_sixth),
    )
    await holding.wait()
    ok(await consumer.seek(topic, 0, "latest"))
    release.set()
    # Nothing comes after the end: no fetch moves the partition. It used to say position 5
    # and lag 5, for good, of a consumer standing at the end with nothing left to handle.
    (where,) = ok(consumer.get_positions())
    assert (where.position, where.lag) in {(None, None), (10, 0)}, where
    ok(await consumer.disconnect())


async def test_a_span_current_when_run_was_called_is_no_parent_of_the_process_spans(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
    consumer_config: ConsumerConfigFactory,
) -> None:
    # The run loop's tasks inherit the context run() was called in: every message handled
    # for the consumer's life became a child of a service's long-ended startup span.
    topic = await make_topic()
    tracer = telemetry.tracer_provider.get_tracer("service")
    with tracer.start_as_current_span("startup"):
        consumer, collector = await start_collecting(traced_client, consumer_config(), (topic,))
    producer = ok(await traced_client.get_producer(producer_config))
    ok(await producer.send(topic, StreamingMessage(b"one")))
    await collector.wait_for(1)
    await telemetry.wait_for_process_span(topic)
    ok(await consumer.disconnect())

    (process,) = telemetry.finished(f"process {topic}")
    (send,) = telemetry.finished(f"send {topic}")
    assert process.parent is None
    assert send.context is not None
    assert _linked_span_ids(process) == [send.context.span_id]


async def test_spans_and_metrics_of_refused_text_stay_exportable(
    traced_client: StreamingClient,
    telemetry: Telemetry,
    make_topic: TopicFactory,
    producer_config: ProducerConfig,
) -> None:
    # A lone surrogate in a key or topic (refused by validation) went into the span's
    # attributes, and OTLP's protobuf refuses it, failing the export of the whole batch.
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(producer_config))
    refused = [
        await producer.send(topic, StreamingMessage(b"one", key="\udcff")),
        await producer.send("bad\udcff", StreamingMessage(b"two")),
        await producer.send_batch(MessageBatch("bad\udcff", (StreamingMessage(b"three"),))),
    ]
    assert all(isinstance(outcome, Failure) for outcome in refused)

    texts: list[str] = []
    for span in telemetry.spans.get_finished_spans():
        texts.append(span.name)
        texts.extend(value for value in _attributes(span).values() if isinstance(value, str))
    for metric in ("messaging.client.sent.messages", "messaging.client.operation.duration"):
        for point in telemetry.points(metric):
            texts.extend(value for value in point.attributes.values() if isinstance(value, str))
    assert len(telemetry.spans.get_finished_spans()) == 3
    for text in texts:
        text.encode("utf-8")  # what an exporter does


async def test_a_send_without_acknowledgement_gives_its_span_no_offset(
    traced_client: StreamingClient, telemetry: Telemetry, make_topic: TopicFactory
) -> None:
    # With acks=0 the result's offset is -1, "unknown": no offset of the message.
    topic = await make_topic()
    producer = ok(await traced_client.get_producer(ProducerConfig(acks=0, idempotent=False)))
    sent = ok(await producer.send(topic, StreamingMessage(b"fire and forget")))
    assert sent.offset < 0
    (span,) = telemetry.finished(f"send {topic}")
    assert "messaging.kafka.offset" not in _attributes(span)
