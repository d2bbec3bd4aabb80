"""Spans and metrics of a producer's sends, and the trace context they put in the headers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, cast

from opentelemetry import propagate
from opentelemetry.trace import SpanKind

from qi.base import Failure, QiError, Result, Success
from qi.base.streaming._codes import ErrorCode
from qi.base.streaming._config import StreamingConfig
from qi.base.streaming._fast_values import unbuilt_results
from qi.base.streaming._telemetry import (
    SYSTEM,
    Attributes,
    client_attributes,
    destination,
    instruments_for,
    key_attribute,
    mark_failed,
    mark_raised,
    span_name,
    tracer_for,
)
from qi.base.streaming._types import (
    BatchProduceResult,
    MessageBatch,
    ProduceResult,
    StreamingMessage,
)

SendOne = Callable[[str, Any, str], Awaitable[Result[ProduceResult, QiError]]]
"""The producer's send after its state checks: (topic, message, operation)."""
SendBatch = Callable[[Any, str], Awaitable[Result[BatchProduceResult, QiError]]]
"""The producer's send_batch after its state checks: (batch, operation)."""


class ProducerTelemetry:
    """Spans and metrics of one producer's sends; the trace context rides in the headers."""

    def __init__(self, config: StreamingConfig) -> None:
        assert config.telemetry is not None
        instruments = instruments_for(config.telemetry)
        self._tracer = tracer_for(config.telemetry)
        self._duration = instruments.operation_duration
        self._sent = instruments.sent
        self._span_attributes = {
            **client_attributes(config),
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
        }
        self._metric_attributes: Attributes = {
            "messaging.system": SYSTEM,
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
        }

    async def send(
        self, topic: str, message: object, operation: str, deliver: SendOne
    ) -> Result[ProduceResult, QiError]:
        """``deliver`` one message inside a PRODUCER span, its context in the headers."""
        name = destination(topic)
        attributes = self._span_attributes | {"messaging.destination.name": name}
        if isinstance(message, StreamingMessage):
            key = key_attribute(message.key)
            if key is not None:
                attributes["messaging.kafka.message.key"] = key
            if isinstance(message.partition, int):
                attributes["messaging.destination.partition.id"] = str(message.partition)
            if message.value is None:
                attributes["messaging.kafka.message.tombstone"] = True
        error_type: str | None = None
        partition: int | None = None
        started = time.perf_counter()
        try:
            with self._tracer.start_as_current_span(
                span_name("send", topic), kind=SpanKind.PRODUCER, attributes=attributes
            ) as span:
                try:
                    outcome = await deliver(topic, _carrying_context(message), operation)
                except BaseException as exc:
                    error_type = mark_raised(span, exc)
                    raise
                if isinstance(outcome, Success):
                    partition = outcome.value.partition
                    span.set_attribute("messaging.destination.partition.id", str(partition))
                    if outcome.value.offset >= 0:  # acks=0: no broker said where it went
                        span.set_attribute("messaging.kafka.offset", outcome.value.offset)
                else:
                    error_type = mark_failed(span, outcome.error)
        except BaseException as exc:
            if error_type is None:  # the span could not be started
                error_type = type(exc).__qualname__
            raise
        finally:
            metric = self._metric_attributes | {"messaging.destination.name": name}
            if partition is not None:
                metric["messaging.destination.partition.id"] = str(partition)
            if error_type is not None:
                metric["error.type"] = error_type
            self._duration.record(time.perf_counter() - started, metric)
            self._sent.add(1, metric)
        return outcome

    async def send_batch(
        self, batch: object, operation: str, deliver: SendBatch
    ) -> Result[BatchProduceResult, QiError]:
        """``deliver`` a batch inside one PRODUCER span whose context every message carries."""
        if not isinstance(batch, MessageBatch) or not isinstance(batch.messages, tuple | list):
            return await deliver(batch, operation)  # refused whole, as without telemetry
        topic, count = batch.topic, len(batch.messages)
        name = destination(topic)
        attributes = self._span_attributes | {
            "messaging.destination.name": name,
            "messaging.batch.message_count": count,
        }
        metric = self._metric_attributes | {"messaging.destination.name": name}
        started = time.perf_counter()
        outcome: Result[BatchProduceResult, QiError] | None = None
        try:
            with self._tracer.start_as_current_span(
                span_name("send", topic), kind=SpanKind.PRODUCER, attributes=attributes
            ) as span:
                carrier = _current_context()
                carried = MessageBatch(
                    topic,
                    tuple(
                        cast(StreamingMessage, _with_headers(message, carrier))
                        for message in batch.messages
                    ),
                )
                try:
                    outcome = await deliver(carried, operation)
                except BaseException as exc:
                    metric["error.type"] = mark_raised(span, exc)
                    raise
                if isinstance(outcome, Failure):
                    metric["error.type"] = mark_failed(span, outcome.error)
        except BaseException as exc:
            metric.setdefault("error.type", type(exc).__qualname__)
            raise
        finally:
            self._duration.record(time.perf_counter() - started, metric)
            for attributes_of_some, sent in _sent_counts(outcome, count, metric):
                self._sent.add(sent, attributes_of_some)
        return outcome


def _sent_counts(
    outcome: Result[BatchProduceResult, QiError] | None, count: int, metric: Attributes
) -> Iterator[tuple[Attributes, int]]:
    """How many messages of a batch went to which partition, or failed with which code."""
    counts: dict[tuple[str, object], int] = {}
    unbuilt = unbuilt_results(outcome.value) if isinstance(outcome, Success) else None
    if unbuilt is not None:  # counted from what the backend kept: no result built per message
        for partition, sent in unbuilt.partition_counts().items():
            counts[("messaging.destination.partition.id", partition)] = sent
    elif isinstance(outcome, Success):
        for produced in outcome.value.results:
            group: tuple[str, object] = ("messaging.destination.partition.id", produced.partition)
            counts[group] = counts.get(group, 0) + 1
    elif isinstance(outcome, Failure) and outcome.error.code == ErrorCode.BATCH_PARTIAL_FAILURE:
        results = cast(Sequence[Result[ProduceResult, QiError]], outcome.error.context["results"])
        for result in results:
            if isinstance(result, Success):
                group = ("messaging.destination.partition.id", result.value.partition)
            else:
                group = ("error.type", result.error.code)
            counts[group] = counts.get(group, 0) + 1
    else:  # failed whole (or raised): every message failed alike
        yield metric, count
        return
    base = {name: value for name, value in metric.items() if name != "error.type"}
    for (name, value), how_many in counts.items():
        yield base | {name: str(value)}, how_many


def _current_context() -> Mapping[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def _with_headers(message: object, carrier: Mapping[str, str]) -> object:
    """The message with the trace context in its headers; anything else as it is, for
    validation to refuse."""
    if not carrier or not isinstance(message, StreamingMessage):
        return message
    headers = message.headers
    if not isinstance(headers, Mapping):
        return message
    # The constructor, not dataclasses.replace: a batch does this per message.
    return StreamingMessage(
        message.value, message.key, message.timestamp, message.partition, {**headers, **carrier}
    )


def _carrying_context(message: object) -> object:
    return _with_headers(message, _current_context())
