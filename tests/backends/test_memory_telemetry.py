"""Telemetry on the memory backend alone: cancelled sends (its fault hooks), span attributes."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from qi.base.streaming import (
    MessageBatch,
    StreamingMessage,
    TelemetryConfig,
    TopicConfig,
    create_streaming_client,
)
from qi.base.streaming._fast_values import unbuilt_results
from qi.base.streaming.backends.memory import broker_for
from qi.base.streaming.testing._cluster import private_memory_brokers
from testkit import ok

from ._memory import config_for


def _error_types(reader: InMemoryMetricReader, metric: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        (point.attributes or {}).get("error.type")
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for found in scope.metrics
        if found.name == metric
        for point in found.data.data_points
    ]


async def test_a_cancelled_send_fails_its_span_as_it_fails_the_metrics() -> None:
    # OpenTelemetry leaves a span cancelled by a BaseException unmarked: the metrics said
    # CancelledError while the span looked like a success.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    brokers = private_memory_brokers()
    config = dataclasses.replace(
        config_for(brokers), telemetry=TelemetryConfig(tracer_provider, meter_provider)
    )
    client = create_streaming_client("memory", config)
    try:
        ok(await ok(await client.get_admin()).create_topics([TopicConfig("cancelled")]))
        producer = ok(await client.get_producer())
        broker_for(brokers).set_unreachable()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await producer.send("cancelled", StreamingMessage(b"one"))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await producer.send_batch(MessageBatch("cancelled", (StreamingMessage(b"two"),)))
        broker_for(brokers).set_unreachable(False)
    finally:
        await client.disconnect()
        meter_provider.shutdown()
        tracer_provider.shutdown()

    finished = spans.get_finished_spans()
    assert len(finished) == 2
    for span in finished:
        assert span.status.status_code is StatusCode.ERROR
        assert dict(span.attributes or {})["error.type"] == "CancelledError"
    assert _error_types(reader, "messaging.client.sent.messages") == ["CancelledError"]


async def test_an_ipv6_broker_is_the_server_address_without_its_brackets() -> None:
    # server.address is the address itself: "::1", not "[::1]" as host:port writes it.
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    port = random.randrange(1_024, 65_536)  # the memory broker of this name is the test's own
    brokers = (f"[::1]:{port}",)
    config = dataclasses.replace(config_for(brokers), telemetry=TelemetryConfig(tracer_provider))
    client = create_streaming_client("memory", config)
    try:
        ok(await ok(await client.get_admin()).create_topics([TopicConfig("ipv6")]))
        ok(await ok(await client.get_producer()).send("ipv6", StreamingMessage(b"one")))
    finally:
        await client.disconnect()
        tracer_provider.shutdown()

    (span,) = spans.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert (attributes["server.address"], attributes["server.port"]) == ("::1", port)


async def test_telemetry_counts_a_batch_without_building_its_results() -> None:
    # The per-partition count of messaging.client.sent.messages read every result of a
    # batch: with telemetry on, the results built on first read were built at once,
    # doubling what send_batch cost.
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    brokers = private_memory_brokers()
    config = dataclasses.replace(
        config_for(brokers), telemetry=TelemetryConfig(meter_provider=meter_provider)
    )
    client = create_streaming_client("memory", config)
    try:
        ok(await ok(await client.get_admin()).create_topics([TopicConfig("counted", 2)]))
        producer = ok(await client.get_producer())
        batch = MessageBatch(
            "counted", tuple(StreamingMessage(b"v", partition=index % 2) for index in range(5))
        )
        sent = ok(await producer.send_batch(batch))
        assert unbuilt_results(sent) is not None
        assert [result.partition for result in sent.results] == [0, 1, 0, 1, 0]
        assert unbuilt_results(sent) is None
    finally:
        await client.disconnect()
        meter_provider.shutdown()
